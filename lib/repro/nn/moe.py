"""Sparse mixture-of-experts feed-forward layers: top-k routing with expert capacity, and M6-T's expert prototyping.

A router ``W_r`` scores every token against ``E`` experts; each token goes to a few of them, each expert takes at most
``C`` tokens per routing group of ``S`` tokens, and a token over an expert's capacity is *dropped* for that expert (its
output is left out of the sum; the token still passes through the block's residual connection). The layer replaces
the dense MLP of a Transformer block (GShard, Lepikhin et al. 2020; Switch, Fedus et al. 2021; M6-T, Yang et al. 2021).

Routings (:func:`route`):

* ``"topk"``: ``p = softmax(W_r x)`` over the ``E`` experts, the ``k`` largest taken. Switch (``k = 1``) weights the
  expert's output by ``p_i``; GShard (``k > 1``) by ``p_i / sum_{j in T_k, kept} p_j``, the top-k probabilities
  renormalised over the choices that were not dropped (DeepSpeed's ``top2gating`` and fairseq's ``top2gate``
  renormalise after the capacity mask, and so does this layer).
* ``"prototypes"`` (M6-T's expert prototyping, "k top-1"): the ``E`` experts split into ``k`` groups of ``E / k``
  (expert ``i`` is in group ``i // (E / k)``); a softmax over each group's ``E / k`` logits and the top-1 in every
  group, weighted by its in-group probability, the ``k`` outputs summed (Hetu's ``ktop1gating``).

Capacity per expert, in tokens, for a routing group of ``S`` tokens: ``C = ceil(cf * k * S / E)`` in both routings
(for prototypes this is Switch's ``ceil(cf * S / (E / k))`` inside each group of ``E / k`` experts that all ``S``
tokens route over, so top-k and k top-1 get the same buffers and the same compute).

Tie-breaking and the order in which tokens claim capacity (fixed, so that every dispatch drops the same tokens):

* experts are ranked by router logit (the order of ``p``); among equal logits the lower index wins (a stable sort
  in ``"topk"``, the first maximum in each prototype);
* first choices claim capacity before second choices (GShard, DeepSpeed): the choices are queued rank by rank, and
  within a rank in token order (position ``s`` of the flattened ``[S]`` group, batch-major); a choice is kept when
  fewer than ``C`` earlier choices went to its expert. Prototype groups hold disjoint experts, so they never compete.

The balance loss is Switch's ``L_aux = E * sum_i f_i P_i`` with ``f_i`` the share of tokens whose first choice is
expert ``i`` (before dropping) and ``P_i`` the mean router probability of ``i``; for prototypes it is computed in
each group over its ``E / k`` experts and summed over the groups (Hetu). :class:`MoE` stores it unweighted
(``aux``); :class:`MoEGPT` adds ``balance_coef * aux`` of every MoE layer to the training loss.

Dispatch (:class:`MoE`, ``dispatch=``): ``"sorted"`` (the default) places every kept choice into a padded
``[E, C', d]`` buffer at its expert's slot (``C'`` the fullest expert's count, at most ``C``), runs all experts in
one batched matmul and scatters the outputs back with ``index_add``; ``"einsum"`` is GShard's one-hot dispatch and
combine tensors ``[S, E, C]``; ``"loop"`` is a plain loop over experts. All three give the same outputs and
gradients (tests check it); the last two are the baselines of ``python -m repro bench moe``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import is_int
from .gpt import GPT, GPTConfig

__all__ = ["ROUTINGS", "DISPATCHES", "MoEConfig", "Routing", "capacity", "route", "balance_loss", "LoadStats",
           "load_stats", "MoE", "MoEGPT"]

ROUTINGS = ("topk", "prototypes")
DISPATCHES = ("sorted", "einsum", "loop")


def _is_real(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_routing(n_expert: object, k: object, routing: object, capacity_factor: object) -> None:
    """``ValueError`` naming the parameter: E and k positive ints, ``k <= E``, ``k | E`` for prototypes, ``cf > 0``."""
    if not is_int(n_expert) or n_expert < 1:
        raise ValueError(f"n_expert must be a positive integer, got {n_expert!r}")
    if not is_int(k) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_expert:
        raise ValueError(f"k={k} must not exceed n_expert={n_expert} (a token cannot use more experts than exist)")
    if routing not in ROUTINGS:
        raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    if routing == "prototypes" and n_expert % k:
        raise ValueError(f"n_expert={n_expert} is not divisible into k={k} prototype groups")
    if not _is_real(capacity_factor) or capacity_factor <= 0:
        raise ValueError(f"capacity_factor must be a number above 0, got {capacity_factor!r}")


@dataclass(frozen=True)
class MoEConfig:
    """One MoE feed-forward layer's routing: ``n_expert`` experts (E), ``k`` experts per token, ``routing``
    (``"topk"`` or ``"prototypes"``: k groups of E/k with top-1 in each), ``capacity_factor`` (cf, capacity
    ``C = ceil(cf k S / E)`` per expert and routing group of S tokens), ``balance_coef`` (lambda of
    ``lambda * L_aux``, 0 turns the balance loss off), ``d_expert`` each expert's hidden width (``None``: the GPT's
    ``d_ff``), ``every`` (an MoE layer in every ``every``-th block: blocks ``every-1, 2 every-1, ...``), ``dispatch``
    (``"sorted"``, ``"einsum"``, ``"loop"``: same numbers, other speed).

    Raises ``ValueError`` naming the field: k > E, E not divisible into k groups (prototypes), cf <= 0, a balance
    coefficient below 0, a size that is not a positive int, an unknown routing or dispatch.
    """

    n_expert: int = 8
    k: int = 1
    routing: str = "topk"
    capacity_factor: float = 1.0
    balance_coef: float = 0.01
    d_expert: int | None = None
    every: int = 2
    dispatch: str = "sorted"

    def __post_init__(self) -> None:
        for name in ("n_expert", "k"):  # plain ints: the config is written to JSON as it is
            if not is_int(getattr(self, name), numpy=False):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        _check_routing(self.n_expert, self.k, self.routing, self.capacity_factor)
        if not _is_real(self.balance_coef) or self.balance_coef < 0:
            raise ValueError(f"balance_coef must be a number of at least 0, got {self.balance_coef!r}")
        for name in ("d_expert", "every"):
            v = getattr(self, name)
            if not (v is None and name == "d_expert") and (not is_int(v, numpy=False) or v < 1):
                raise ValueError(f"{name} must be a positive integer{' or None' if name == 'd_expert' else ''}, "
                                 f"got {v!r}")
        if self.dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {DISPATCHES}, got {self.dispatch!r}")

    @property
    def groups(self) -> int:
        """Routing groups the experts fall into: ``k`` prototypes, or one pool for top-k."""
        return self.k if self.routing == "prototypes" else 1

    def to_dict(self) -> dict:
        """The fields as a plain ``dict``."""
        return asdict(self)


def capacity(S: int, n_expert: int, k: int, capacity_factor: float) -> int:
    """Expert capacity ``C = ceil(cf * k * S / E)`` in tokens for a routing group of ``S`` tokens (GShard; Switch
    with ``k = 1``); at least 1. Raises ``ValueError`` naming a bad argument (``S`` below 1, as :class:`MoEConfig`)."""
    if not is_int(S) or S < 1:
        raise ValueError(f"S must be a positive integer (tokens per routing group), got {S!r}")
    _check_routing(n_expert, k, "topk", capacity_factor)
    return max(1, math.ceil(capacity_factor * k * S / n_expert - 1e-9))


class Routing(NamedTuple):
    """Where each of ``S`` tokens goes: ``k`` choices per token.

    ``expert`` ``[S, k]`` (long, expert index in ``0 .. E-1``), ``weight`` ``[S, k]`` (the combine weight, 0 for a
    dropped choice; differentiable in the router logits), ``position`` ``[S, k]`` (the choice's place in its
    expert's queue, 0-based), ``kept`` ``[S, k]`` (``position < capacity``), ``capacity`` (C), ``probs``
    ``[S, E]`` (router probabilities: softmax over all experts, or within each prototype group), ``aux`` (the
    unweighted balance loss, a scalar tensor), ``groups`` (1 for top-k, k for prototypes)."""

    expert: torch.Tensor
    weight: torch.Tensor
    position: torch.Tensor
    kept: torch.Tensor
    capacity: int
    probs: torch.Tensor
    aux: torch.Tensor
    groups: int


def balance_loss(probs: torch.Tensor, first: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Switch's load-balancing loss ``L_aux = m * sum_i f_i P_i`` summed over ``groups`` groups of ``m = E / groups``
    experts (Fedus et al. 2021, eq. 4; per prototype group for M6-T, as Hetu's ``ktop1gating``).

    ``probs`` ``[S, E]``: router probabilities (within each group for prototypes); ``first`` ``[S, groups]``: each
    token's first choice in each group (global expert index; for top-k with any k only the first choice counts, as
    in GShard's and DeepSpeed's ``top2gating``). ``f_i``: share of tokens whose first choice is ``i``;
    ``P_i``: mean of ``p_i``. Each group's term is 1 when routing is uniform and at most m when one expert takes
    every token with probability 1. Differentiable through ``P`` only."""
    S, E = probs.shape
    m = E // groups
    f = torch.bincount(first.reshape(-1), minlength=E).to(probs.dtype) / S  # [E], sums to 1 within each group
    P = probs.mean(dim=0)  # [E]
    return m * (f * P).sum()


def _positions(expert_flat: torch.Tensor, n_expert: int) -> torch.Tensor:
    """Each choice's place in its expert's queue, the queue in the order of ``expert_flat`` (a stable sort)."""
    n = expert_flat.numel()
    order = torch.sort(expert_flat, stable=True).indices  # choices grouped by expert, queue order kept
    counts = torch.bincount(expert_flat, minlength=n_expert)
    starts = counts.cumsum(0) - counts  # first slot of each expert in the sorted order
    pos = torch.empty_like(expert_flat)
    pos[order] = torch.arange(n, device=expert_flat.device) - starts[expert_flat[order]]
    return pos


def route(logits: torch.Tensor, k: int, capacity_factor: float = 1.0, routing: str = "topk") -> Routing:
    """Route ``S`` tokens with router logits ``logits`` ``[S, E]`` (see the module docstring for the equations).

    ``"topk"``: ``p = softmax(logits)``, ``T_k`` the k largest (by logit; lower index first on ties); weights ``p_i`` (k = 1,
    Switch) or ``p_i / sum_{j in T_k, kept} p_j`` (k > 1, GShard renormalised over the kept choices).
    ``"prototypes"``: ``p^(j) = softmax`` over group ``j``'s ``E/k`` logits, ``i_j = argmax`` in each group,
    weight ``p^(j)_{i_j}``. Capacity ``C = ceil(cf k S / E)``; choices claim it rank by rank, tokens in order.

    Raises ``ValueError`` naming ``logits`` (not 2-D, or no tokens), ``k``, ``capacity_factor`` or ``routing``.
    """
    if logits.dim() != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be [S, E] with S >= 1 tokens, got shape {tuple(logits.shape)}")
    S, E = logits.shape
    _check_routing(E, k, routing, capacity_factor)
    C = capacity(S, E, k, capacity_factor)
    logits = logits.float()  # routing in float32 (Switch's "selective precision")
    if routing == "topk":
        probs = logits.softmax(dim=-1)  # (S, E)
        # ranked by logit (the same order as p, without ties where p underflows to 0); ties: the lower index
        expert = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :k]  # (S, k)
        gate = probs.gather(1, expert)  # (S, k)
        groups, first = 1, expert[:, :1]
    else:
        m = E // k
        probs = logits.view(S, k, m).softmax(dim=-1)  # (S, k, m): a softmax inside each prototype group
        idx = logits.view(S, k, m).argmax(dim=-1)  # (S, k): top-1 in each group by logit, the first maximum on ties
        gate = probs.gather(2, idx[..., None]).squeeze(-1)  # (S, k)
        expert = idx + torch.arange(k, device=logits.device) * m  # global expert index
        probs = probs.reshape(S, E)
        groups, first = k, expert
    # queue the choices rank by rank (all first choices, then all second ...), tokens in order within a rank
    position = _positions(expert.t().reshape(-1), E).view(k, S).t()  # (S, k)
    kept = position < C
    weight = gate * kept
    if routing == "topk" and k > 1:  # GShard: renormalise over the kept choices
        weight = weight / weight.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weight.dtype).eps)
    return Routing(expert, weight, position, kept, C, probs, balance_loss(probs, first, groups), groups)


class LoadStats(NamedTuple):
    """Load statistics of one layer over some tokens, per routing group (``[groups]`` arrays) and overall.

    ``load`` ``[E]``: choices routed to each expert before dropping; ``cv``: coefficient of variation (std / mean,
    population std) of the load across a group's experts; ``max_mean``: its largest load over its mean; ``entropy``:
    of the load distribution within the group, divided by ``log(E / groups)`` (1 = uniform, 0 = one expert takes
    all); ``dropped``: share of the group's choices that were over capacity. The scalars ``cv_mean`` etc. average
    over groups; ``dropped_share`` is over all choices."""

    load: torch.Tensor
    cv: torch.Tensor
    max_mean: torch.Tensor
    entropy: torch.Tensor
    dropped: torch.Tensor
    dropped_share: float

    def summary(self) -> dict[str, float]:
        """``{"cv", "max_mean", "entropy", "dropped"}``: group means (dropped: share over all choices)."""
        return {"cv": float(self.cv.mean()), "max_mean": float(self.max_mean.mean()),
                "entropy": float(self.entropy.mean()), "dropped": self.dropped_share}


def load_stats(load: torch.Tensor, dropped: torch.Tensor, groups: int = 1) -> LoadStats:
    """:class:`LoadStats` from per-expert counts: ``load`` ``[E]`` choices routed to each expert, ``dropped`` ``[E]``
    of them over capacity, experts in ``groups`` equal groups. Raises ``ValueError`` naming ``load``/``dropped``
    (shapes differ, or E not divisible by ``groups``) or ``groups``."""
    if load.dim() != 1 or dropped.shape != load.shape:
        raise ValueError(f"load and dropped must be [E] alike, got {tuple(load.shape)} and {tuple(dropped.shape)}")
    if not is_int(groups) or groups < 1 or load.numel() % groups:
        raise ValueError(f"groups={groups!r} must be a positive integer dividing E={load.numel()}")
    g = load.double().view(groups, -1)  # (groups, m)
    m = g.shape[1]
    total = g.sum(dim=1)
    mean = total / m
    safe = mean.clamp_min(1e-12)
    share = g / total.clamp_min(1e-12)[:, None]
    ent = -(share * share.clamp_min(1e-300).log()).sum(dim=1)
    entropy = ent / math.log(m) if m > 1 else torch.ones_like(ent)
    drop = dropped.double().view(groups, -1).sum(dim=1)
    return LoadStats(load.clone(), g.std(dim=1, unbiased=False) / safe, g.amax(dim=1) / safe, entropy,
                     drop / total.clamp_min(1e-12), float(drop.sum() / total.sum().clamp_min(1e-12)))


class MoE(nn.Module):
    """A mixture-of-experts feed-forward layer: ``y(x) = sum_{kept choices i} w_i(x) E_i(x)``, each expert
    ``E_i(x) = W_2,i GELU(W_1,i x + b_1,i) + b_2,i`` (a GPT-2 MLP), routed by :func:`route`.

    ``x`` ``[..., d_model]`` -> ``[..., d_model]``: all leading positions form one routing group of ``S`` tokens.
    After each forward ``aux`` holds the unweighted balance loss and ``routing`` the :class:`Routing`; in training
    mode each forward's load statistics add up (:meth:`stats`, :meth:`reset_stats`), in eval mode the dropped
    choices (``eval_dropped`` of ``eval_choices``). Evaluation applies the training capacity (GShard), or none with
    ``drop_at_eval = False`` (as an eval capacity factor of ``E / k``).

    Causality: top-1 and prototypes queue choices in token order, so a token's output depends on earlier tokens of
    its group only. Top-k with k > 1 queues all first choices before any second choice (GShard, DeepSpeed), so
    whether a token's second choice is kept also depends on the first choices of later tokens, its own sequence's
    included: in a causal LM this lets a little information flow backwards through the drops. Routing without
    capacity (``drop_at_eval = False``) has none of it. Raises ``ValueError`` naming the parameter (as :class:`MoEConfig`; ``d_model``/``d_expert``
    not positive ints) and, in forward, when ``x``'s last size is not ``d_model``.
    """

    def __init__(self, d_model: int, cfg: MoEConfig, d_expert: int | None = None, bias: bool = True,
                 n_layer: int = 1) -> None:
        super().__init__()
        if not isinstance(cfg, MoEConfig):
            raise TypeError(f"cfg must be a MoEConfig, got {type(cfg).__name__}")
        d_expert = d_expert if d_expert is not None else cfg.d_expert
        for name, v in (("d_model", d_model), ("d_expert", d_expert)):
            if not is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}"
                                 + (" (give d_expert here or in MoEConfig)" if name == "d_expert" else ""))
        E = cfg.n_expert
        self.cfg, self.d_model, self.d_expert = cfg, d_model, d_expert
        self.router = nn.Linear(d_model, E, bias=False)
        self.w1 = nn.Parameter(torch.empty(E, d_model, d_expert))  # (E, d, h)
        self.w2 = nn.Parameter(torch.empty(E, d_expert, d_model))  # (E, h, d)
        self.b1 = nn.Parameter(torch.zeros(E, 1, d_expert)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(E, 1, d_model)) if bias else None
        nn.init.normal_(self.router.weight, std=0.02)
        nn.init.normal_(self.w1, std=0.02)
        nn.init.normal_(self.w2, std=0.02 / math.sqrt(2 * n_layer))  # GPT-2's residual-branch scaling
        self.register_buffer("load_count", torch.zeros(E, dtype=torch.long), persistent=False)
        self.register_buffer("dropped_count", torch.zeros(E, dtype=torch.long), persistent=False)
        self.register_buffer("shape_sum", torch.zeros(3, cfg.groups, dtype=torch.float64), persistent=False)
        self.forwards = 0
        self.drop_at_eval = True  # False: evaluation routes without capacity (C = S, nothing dropped)
        self.eval_dropped = self.eval_choices = 0  # choices over capacity in evaluation forwards
        self.aux: torch.Tensor | None = None
        self.routing: Routing | None = None

    def no_weight_decay_params(self) -> list[nn.Parameter]:
        """The stacked biases (3-D, so a rule by dimension would decay them): :func:`repro.train.make_optimizer`
        leaves them undecayed."""
        return [p for p in (self.b1, self.b2) if p is not None]

    def expert_params(self) -> int:
        """Parameters of one expert (``2 d h`` weights plus biases)."""
        return (self.w1[0].numel() + self.w2[0].numel() + (self.b1[0].numel() + self.b2[0].numel()
                                                           if self.b1 is not None else 0))

    # -- the three dispatches: same numbers ------------------------------------------------------------------
    def _ffn(self, h: torch.Tensor) -> torch.Tensor:
        """All experts on their buffers: ``h`` ``[E, C, d]`` -> ``[E, C, d]`` in two batched matmuls."""
        a = torch.bmm(h, self.w1) if self.b1 is None else torch.baddbmm(self.b1, h, self.w1)  # (E, C, h)
        a = F.gelu(a)
        return torch.bmm(a, self.w2) if self.b2 is None else torch.baddbmm(self.b2, a, self.w2)  # (E, C, d)

    def _sorted(self, x: torch.Tensor, r: Routing) -> torch.Tensor:
        S, d = x.shape
        E, k = self.cfg.n_expert, r.expert.shape[1]
        keep = r.kept.reshape(-1)
        tok = torch.arange(S, device=x.device).repeat_interleave(k)[keep]  # token of each kept choice
        exp, pos = r.expert.reshape(-1)[keep], r.position.reshape(-1)[keep]
        fill = int(pos.max()) + 1 if pos.numel() else 1  # the fullest expert's slots (<= C)
        slot = exp * fill + pos
        buf = x.new_zeros(E * fill, d).index_copy(0, slot, x[tok])  # (E * C', d): each expert's tokens, padded
        out = self._ffn(buf.view(E, fill, d)).view(E * fill, d)
        w = r.weight.reshape(-1)[keep].to(x.dtype)
        return x.new_zeros(S, d).index_add(0, tok, out[slot] * w[:, None])  # (S, d)

    def _einsum(self, x: torch.Tensor, r: Routing) -> torch.Tensor:
        S, d = x.shape
        E, C = self.cfg.n_expert, r.capacity
        # GShard: one-hot dispatch [S, E, C] and combine [S, E, C] tensors, summed over the k choices
        dispatch = x.new_zeros(S, E, C)
        combine = x.new_zeros(S, E, C)
        for j in range(r.expert.shape[1]):
            onehot = (F.one_hot(r.expert[:, j], E).to(x.dtype)[:, :, None]
                      * F.one_hot(r.position[:, j].clamp(max=C - 1), C).to(x.dtype)[:, None, :]
                      * r.kept[:, j, None, None])  # (S, E, C)
            dispatch = dispatch + onehot
            combine = combine + onehot * r.weight[:, j, None, None].to(x.dtype)
        h = torch.einsum("sec,sd->ecd", dispatch, x)  # (E, C, d)
        return torch.einsum("sec,ecd->sd", combine, self._ffn(h))

    def _loop(self, x: torch.Tensor, r: Routing) -> torch.Tensor:
        S, k = r.expert.shape
        y = torch.zeros_like(x)
        tok_all = torch.arange(S, device=x.device)[:, None].expand(S, k)
        for e in range(self.cfg.n_expert):  # the plain reference: one expert at a time
            sel = (r.expert == e) & r.kept
            tok, w = tok_all[sel], r.weight[sel].to(x.dtype)
            h = x[tok] @ self.w1[e] + (self.b1[e] if self.b1 is not None else 0)
            out = F.gelu(h) @ self.w2[e] + (self.b2[e] if self.b2 is not None else 0)
            y = y.index_add(0, tok, out * w[:, None])
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., d_model]`` -> ``[..., d_model]``; sets ``aux`` and ``routing``."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has hidden size {x.shape[-1]}, the layer's d_model is {self.d_model}")
        shape = x.shape
        flat = x.reshape(-1, self.d_model)  # (S, d): one routing group
        cf = self.cfg.capacity_factor
        if not self.training and not self.drop_at_eval:
            cf = self.cfg.n_expert / self.cfg.k  # C = S: every choice fits
        r = route(self.router(flat), self.cfg.k, cf, self.cfg.routing)
        self.aux, self.routing = r.aux, r
        if not self.training:
            self.eval_dropped += int((~r.kept).sum())
            self.eval_choices += r.kept.numel()
        if self.training:
            with torch.no_grad():
                E = self.cfg.n_expert
                load = torch.bincount(r.expert.reshape(-1), minlength=E)
                dropped = torch.bincount(r.expert[~r.kept], minlength=E)
                st = load_stats(load, dropped, self.cfg.groups)  # imbalance within this routing group
                self.shape_sum += torch.stack([st.cv, st.max_mean, st.entropy])
                self.load_count += load
                self.dropped_count += dropped
                self.forwards += 1
        y = {"sorted": self._sorted, "einsum": self._einsum, "loop": self._loop}[self.cfg.dispatch](flat, r)
        return y.view(shape)

    def stats(self) -> LoadStats:
        """Load statistics of the training forwards since the last :meth:`reset_stats`: ``cv``, ``max_mean`` and
        ``entropy`` of each forward's routing group (the imbalance that decides what is dropped), averaged over the
        forwards; ``load`` and the dropped shares from the summed counts. Raises ``RuntimeError`` when no training
        forward was counted."""
        if not self.forwards:
            raise RuntimeError("no training forward since reset_stats(): nothing to report")
        total = load_stats(self.load_count, self.dropped_count, self.cfg.groups)
        cv, max_mean, entropy = self.shape_sum / self.forwards
        return total._replace(cv=cv, max_mean=max_mean, entropy=entropy)

    def reset_stats(self) -> None:
        """Zero the load and dropped counts and the per-forward sums."""
        self.load_count.zero_()
        self.dropped_count.zero_()
        self.shape_sum.zero_()
        self.forwards = 0
        self.eval_dropped = self.eval_choices = 0


class MoEGPT(GPT):
    """:class:`repro.nn.gpt.GPT` with an :class:`MoE` layer in place of the MLP of every ``moe.every``-th block
    (blocks ``every - 1, 2 every - 1, ...``; with ``every = 2`` and 4 blocks: the 2nd and 4th, as GShard and
    Switch alternate dense and sparse layers). Experts have hidden width ``moe.d_expert`` (default ``cfg.d_ff``, so
    a top-1 model has the dense model's active parameters).

    In training mode with targets the loss is ``CE + balance_coef * sum_layers L_aux`` (``last_ce`` and
    ``last_aux`` keep the two parts, detached); in eval mode it is the CE alone. Raises ``TypeError`` when ``moe``
    is not a :class:`MoEConfig`, ``ValueError`` when no block gets an MoE layer (``moe.every > n_layer``).
    """

    def __init__(self, cfg: GPTConfig, moe: MoEConfig) -> None:
        super().__init__(cfg)
        if not isinstance(moe, MoEConfig):
            raise TypeError(f"moe must be a MoEConfig, got {type(moe).__name__}")
        if moe.every > cfg.n_layer:
            raise ValueError(f"moe.every={moe.every} exceeds n_layer={cfg.n_layer}: no block would be sparse")
        self.moe_cfg = moe
        for i in range(moe.every - 1, cfg.n_layer, moe.every):
            self.blocks[i].mlp = MoE(cfg.d_model, moe, moe.d_expert or cfg.d_ff, cfg.bias, cfg.n_layer)
        self.last_ce: torch.Tensor | None = None
        self.last_aux: torch.Tensor | None = None

    def moe_layers(self) -> list[MoE]:
        """The MoE layers, bottom to top."""
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def set_drop_at_eval(self, drop: bool) -> None:
        """Whether evaluation applies the training capacity (``True``, the default) or routes without it."""
        for m in self.moe_layers():
            m.drop_at_eval = bool(drop)

    def active_params(self) -> int:
        """Non-embedding parameters a token uses: all but the experts it is not routed to (``k`` of ``E``)."""
        n = self.num_params(non_embedding=True)
        for m in self.moe_layers():
            n -= (m.cfg.n_expert - m.cfg.k) * m.expert_params()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_logits: bool = True):
        """As :meth:`GPT.forward`; in training mode the loss also carries ``balance_coef * sum L_aux``."""
        logits, loss = super().forward(idx, targets, return_logits)
        if loss is not None and self.training:
            aux = torch.stack([m.aux for m in self.moe_layers()]).sum()
            self.last_ce, self.last_aux = loss.detach(), aux.detach()
            if self.moe_cfg.balance_coef:
                loss = loss + self.moe_cfg.balance_coef * aux
        return logits, loss
