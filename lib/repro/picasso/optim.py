"""Optimizers of the PICASSO rebuild: sparse SGD for the embedding tables, and the (embedding, dense) pair.

Recommender training updates the embedding tables with a sparse optimizer that touches only the rows a
batch looked up, and the dense MLP with a dense one (card §4 "Packing": tables packed together must share
their optimizer, so one update serves the packed table). :class:`SparseSGD` is the embedding optimizer of
every stage here (the cached stage wraps it: :class:`~repro.picasso.cache.CachedSGD`), :class:`Optimizers`
the pair one training step (:func:`~repro.picasso.training.train_step`) zeroes and steps.

Layer: depends on torch only; :mod:`.cache` and :mod:`.training` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class SparseSGD(torch.optim.Optimizer):
    """Plain SGD for sparse embedding gradients, without coalescing (the embedding update of PICASSO §IV's
    training loop, card §4).

    For a table ``w`` ``[V, d]`` with a sparse gradient of ``n`` (possibly repeated) rows ``r`` ``[n]`` and
    values ``g`` ``[n, d]``: ``w.index_add_(0, r, -lr * g)``, one operator per parameter; duplicate rows sum,
    exactly as ``w -= lr * coalesce(grad)``. A dense gradient falls back to ``w.add_(grad, alpha=-lr)``.
    ``lr`` is per unit of gradient (no unit). Raises ``ValueError`` if ``lr <= 0``.
    """

    def __init__(self, params, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient (``closure`` is accepted and ignored)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    # scaling first: index_add_ with alpha= takes a much slower path on CPU (measured 2-7x)
                    p.index_add_(0, g._indices()[0], g._values() * -group["lr"])  # w[r] += -lr * g, (n, d)
                else:
                    p.add_(g, alpha=-group["lr"])


@dataclass
class Optimizers:
    """The two optimizers of a wide-and-deep model: ``emb`` over the embedding tables (:class:`SparseSGD`,
    a cached stage's :class:`~repro.picasso.cache.CachedSGD`, or ``None`` for a stage whose optimizer is
    fused into its backward, FBGEMM's TBE) and ``dense`` (Adam) over the MLP and linear parts."""

    emb: Any
    dense: torch.optim.Optimizer

    def zero_grad(self) -> None:
        """Drop both optimizers' gradients (``set_to_none``; a cached stage's working sets too)."""
        if self.emb is not None:
            self.emb.zero_grad(set_to_none=True)
        self.dense.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One update of the embedding tables, then of the dense parameters."""
        if self.emb is not None:
            self.emb.step()
        self.dense.step()

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers' states (Adam's moments, learning rates), for resuming training exactly."""
        return {"emb": None if self.emb is None else self.emb.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. Raises ``ValueError`` if one side has an embedding optimizer
        and the other none (a fused stage's state loaded into an unfused one, or back)."""
        if (state["emb"] is None) != (self.emb is None):
            raise ValueError("optimizer state: the saved and the current embedding optimizer differ "
                             f"(saved {'none' if state['emb'] is None else 'one'}, "
                             f"current {'none' if self.emb is None else 'one'})")
        if self.emb is not None:
            self.emb.load_state_dict(state["emb"])
        self.dense.load_state_dict(state["dense"])
