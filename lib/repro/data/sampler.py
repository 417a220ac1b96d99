"""Domain-weighted sampling of language-model training windows.

Each row of a batch picks its domain from ``Categorical(w)`` over the domains, then a window start uniformly
among the ``len(tokens_d) - context`` positions of that domain; ``x`` is the window and ``y`` the same window
shifted by one token. The weights ``w`` can change between steps (:meth:`DomainSampler.set_weights`): DDK
(domain-aware distillation) re-weights the domains every ``K`` steps, D-CPT fixes a mixture ratio per run.

Everything is drawn from one seeded NumPy generator, so the same seed and the same sequence of weights give
the same batches, and :meth:`~DomainSampler.state_dict` captures the generator for an exact resume. For data
parallel training every rank draws the whole global batch and keeps its own contiguous shard of rows, so
``W`` ranks together see exactly the rows one process sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..checks import is_int

__all__ = ["DomainSampler"]

_TOL = 1e-6


class DomainSampler:
    """Batches of ``(x, y, domain_index)`` from several domains' token arrays.

    Parameters
    ----------
    tokens:
        ``{domain: 1-D integer array}`` (NumPy ``uint16``/``int32``/``int64``); the dict's order is the domain
        order used by sequences of weights and by ``domain_index``.
    context:
        window length ``T``; every domain needs at least ``T + 1`` tokens.
    batch_size:
        rows ``B`` of the global batch.
    weights:
        domain weights, a ``{domain: w}`` dict naming every domain or a sequence in domain order; non-negative,
        summing to 1 (within 1e-6). ``None`` means uniform.
    seed:
        seed of the sampler's own generator (independent of global NumPy/torch state).

    Raises ``ValueError`` naming the argument when ``tokens`` is empty, a domain's array is not 1-D or has
    fewer than ``T + 1`` tokens, a size or the seed is not a valid integer, or the weights are not a
    distribution over the domains.
    """

    def __init__(self, tokens: Mapping[str, np.ndarray], context: int, batch_size: int,
                 weights: Mapping[str, float] | Sequence[float] | None = None, seed: int = 0) -> None:
        if not isinstance(tokens, Mapping) or not tokens:
            raise ValueError("tokens must be a non-empty dict {domain: 1-D token array}")
        if not is_int(context) or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.domains: list[str] = list(tokens)
        arrays = []
        for d in self.domains:
            a = np.asarray(tokens[d])
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"tokens[{d!r}] must be a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
            if len(a) and a.min() < 0:
                raise ValueError(f"tokens[{d!r}] holds negative token ids (min {a.min()})")
            if len(a) < context + 1:
                raise ValueError(
                    f"context={context} is too long for domain {d!r}: it has {len(a)} tokens, "
                    f"a window needs context + 1 = {context + 1}"
                )
            arrays.append(a)
        self.context = context
        self.batch_size = batch_size
        self.seed = seed
        # One flat array of all domains, so a batch is a single fancy-indexing gather.
        self._flat = np.concatenate(arrays).astype(np.int64 if max(a.max() for a in arrays) > 2**31 - 1 else np.int32)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._n_starts = lengths - context  # valid window starts per domain: 0 .. len - context - 1
        self._arange = np.arange(context + 1)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.weights = self._check_weights(weights)

    # ------------------------------------------------------------------ weights
    def _check_weights(self, w: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
        k = len(self.domains)
        if w is None:
            return np.full(k, 1.0 / k)
        if isinstance(w, Mapping):
            unknown = [d for d in w if d not in self.domains]
            if unknown:
                raise ValueError(f"weights name unknown domain(s) {unknown}; domains are {self.domains}")
            missing = [d for d in self.domains if d not in w]
            if missing:
                raise ValueError(f"weights miss domain(s) {missing}; give every domain a weight (0 is allowed)")
            arr = np.array([float(w[d]) for d in self.domains])
        else:
            arr = np.asarray(w, dtype=float).reshape(-1)
            if len(arr) != k:
                raise ValueError(f"weights has {len(arr)} entries, expected one per domain ({k}: {self.domains})")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"weights must be finite, got {arr.tolist()}")
        if np.any(arr < 0):
            raise ValueError(f"weights must be non-negative, got {arr.tolist()}")
        if abs(arr.sum() - 1.0) > _TOL:
            raise ValueError(f"weights must sum to 1 (tolerance {_TOL}), got sum {arr.sum()!r}")
        return arr / arr.sum()

    def set_weights(self, weights: Mapping[str, float] | Sequence[float]) -> None:
        """Replace the domain weights from the next batch on (DDK re-weights every K steps).

        ``weights``: one non-negative finite number per domain summing to 1 (a ``{domain: w}`` dict or a
        sequence in domain order). Raises ``ValueError`` naming the defect otherwise.
        """
        self.weights = self._check_weights(weights)

    def weights_dict(self) -> dict[str, float]:
        """The current domain weights as ``{domain: w}`` (floats summing to 1)."""
        return {d: float(w) for d, w in zip(self.domains, self.weights, strict=True)}

    # ------------------------------------------------------------------ batches
    def next_batch(self, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw the next global batch and return this rank's rows: ``x [b, T]``, ``y [b, T]``, ``domain [b]``.

        ``b = batch_size / world_size``; rank ``r`` gets rows ``r b .. (r + 1) b - 1`` of the global batch, so
        every rank must call this once per batch to keep the generators in step. ``T`` is ``context``; the
        tensors are ``int64`` token ids and domain indices. Raises ``ValueError`` when ``rank`` or
        ``world_size`` is not a valid integer or ``batch_size`` is not divisible by ``world_size``.
        """
        if not is_int(world_size) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")
        B = self.batch_size
        if B % world_size:
            raise ValueError(f"batch_size={B} must be divisible by world_size={world_size} for data parallel shards")
        # The domain of each row by inverse-CDF on one uniform per row, then a start uniform in that domain.
        cdf = np.cumsum(self.weights)
        u = self._rng.random(B)
        # side="right": the first domain whose CDF exceeds u, so a zero-weight domain (flat CDF) is never hit
        dom = np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)
        starts = np.floor(self._rng.random(B) * self._n_starts[dom]).astype(np.int64)
        b = B // world_size
        sl = slice(rank * b, (rank + 1) * b)
        idx = (self._offsets[dom[sl]] + starts[sl])[:, None] + self._arange  # [b, T + 1]
        win = torch.from_numpy(self._flat[idx].astype(np.int64))
        return win[:, :-1], win[:, 1:], torch.from_numpy(dom[sl].astype(np.int64))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Generator state and weights: enough to continue exactly where this sampler is."""
        return {"rng": self._rng.bit_generator.state, "weights": self.weights.tolist(), "domains": list(self.domains),
                "context": self.context, "batch_size": self.batch_size, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``: the next batches are those the saved sampler would draw.

        Raises ``ValueError`` when ``state`` is for other domains, another ``context`` or ``batch_size``.
        """
        if list(state["domains"]) != self.domains:
            raise ValueError(f"state_dict is for domains {state['domains']}, this sampler has {self.domains}")
        for key in ("context", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state_dict has {key}={state[key]}, this sampler has {getattr(self, key)}")
        self.weights = self._check_weights(state["weights"])
        self._rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        w = ", ".join(f"{d}={x:.3g}" for d, x in self.weights_dict().items())
        return f"DomainSampler(context={self.context}, batch_size={self.batch_size}, weights=({w}))"
