"""Distillation with domain re-weighting, as hooks on the workbook's one training loop (:func:`repro.train.train`).

* :class:`Distiller` wraps a student and a frozen teacher into the model the loop trains: in training mode its
  loss is Eq. (3) (:func:`~repro.ddk.equations.distillation_loss`), in evaluation mode it *is* the student (plain
  cross-entropy), so the loop's per-domain evaluation measures the student.
* :class:`Reweighter` is the loop's ``on_eval`` hook: every ``K`` steps it reads the student's per-domain validation
  loss, computes the new domain weights by the method's rule and hands them to the sampler (Algorithm 1).

The mixture rules (:data:`MIXTURES`; with the loss, they make the paper's Table 5 and section 4 baselines):

=============  ==========================================================================================
``natural``    the natural mixture (domains in proportion to their training tokens) all along (CPT, KD)
``uniform``    equal sampling, ``1 / N`` per domain (DDK-ES)
``ddk``        Eq. (1) for ``r^0``, then Eq. (2) every ``K`` steps (DDK)
``ddk-nofs``   Eq. (1) afresh every ``K`` steps, no history and no floor (DDK w/o FS)
``doremi``     :func:`~repro.ddk.equations.doremi_update` every ``K`` steps, the teacher as reference
=============  ==========================================================================================

Interval 0 (card, ambiguity 1): Algorithm 1 computes ``r^0`` from the initial student (line 1) but draws the first
``K`` steps' data "randomly" (line 2). Here interval 0 draws from the natural mixture for every method that
re-weights; ``r^0`` (Eq. 1 at step 0) is the history Eq. (2) multiplies at the first update (step ``K``). DoReMi's
history at that update is the natural mixture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..checks import is_int
from . import equations as eq

__all__ = ["Distiller", "Reweighter", "MIXTURES", "natural_mixture"]

MIXTURES = ("natural", "uniform", "ddk", "ddk-nofs", "doremi")


def natural_mixture(tokens: Mapping[str, np.ndarray | int]) -> dict[str, float]:
    """The natural mixture: each domain's share of all training tokens, ``{domain: n_d / sum n}``. ``tokens`` maps
    each domain to its token array or its token count. Raises ``ValueError`` for no domains or an empty one."""
    if not tokens:
        raise ValueError("tokens must name at least one domain")
    n = {d: (v if is_int(v) else len(v)) for d, v in tokens.items()}
    empty = [d for d, v in n.items() if v <= 0]
    if empty:
        raise ValueError(f"tokens: domain(s) {empty} have no training tokens")
    total = sum(n.values())
    return {d: v / total for d, v in n.items()}


class Distiller(nn.Module):
    """A student trained against a frozen teacher: the model :func:`repro.train.train` sees.

    ``student`` and ``teacher`` are :class:`repro.nn.gpt.GPT`-like modules (``model(x)`` gives logits ``[B, T, V]``;
    ``model(x, y, return_logits=False)`` the mean CE). In training mode ``forward(x, y)`` returns ``(None, loss)``
    with Eq. (3)'s loss (``gamma``, ``T``); with ``gamma = 0`` the teacher is never called (CE only, the student's
    own fast path). In evaluation mode it returns the student's own output, so :func:`repro.train.evaluate` measures
    the student. The teacher is frozen (no gradients, always in evaluation mode). ``last_ce`` and ``last_kl`` hold
    the last training batch's terms (floats, nats per token); ``teacher_tokens`` counts the tokens the teacher has
    read (its cost).

    Raises ``ValueError`` when ``gamma`` or ``T`` is out of range or the teacher's vocabulary or context differs
    from the student's.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, gamma: float = eq.GAMMA,
                 T: float = eq.TEMPERATURE) -> None:
        super().__init__()
        gamma, T = eq.check_gamma_T(gamma, T)
        if teacher is None and gamma:
            raise ValueError(f"teacher is needed for gamma={gamma} > 0")
        if teacher is not None:
            vs, vt = student.cfg.vocab_size, teacher.cfg.vocab_size
            if vs != vt:
                raise ValueError(f"teacher has vocab_size={vt}, the student {vs}: distillation needs one vocabulary")
            if teacher.cfg.context < student.cfg.context:
                raise ValueError(f"teacher has context={teacher.cfg.context}, shorter than the student's "
                                 f"{student.cfg.context}")
            teacher.requires_grad_(False)
            teacher.eval()
        self.student, self.gamma, self.T = student, gamma, T
        self.teacher = teacher
        self.last_ce = self.last_kl = math.nan
        self.teacher_tokens = 0

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, return_logits: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.training or y is None:
            return self.student(x, y, return_logits=return_logits)
        if self.gamma == 0:
            _, ce = self.student(x, y, return_logits=False)
            self.last_ce, self.last_kl = float(ce.detach()), math.nan
            return None, ce
        z_s, _ = self.student(x)                     # (B, T, V)
        with torch.no_grad():
            z_t, _ = self.teacher(x)                 # (B, T, V)
        self.teacher_tokens += x.numel()
        loss, ce, kl = eq.distillation_loss(z_s, z_t, y, self.gamma, self.T)
        self.last_ce, self.last_kl = float(ce.detach()), float(kl.detach())
        return (z_s if return_logits else None), loss


class Reweighter:
    """The ``on_eval`` hook of :func:`repro.train.train` that re-weights the sampler's domains (Algorithm 1).

    ``method`` one of :data:`MIXTURES`; ``teacher_loss`` ``{domain: CE_T}`` on the validation sets (nats, measured
    once: the teacher is frozen); ``natural`` the natural mixture ``{domain: w}``; ``K`` the interval in steps;
    ``alpha`` Eq. (2)'s constant. Call it at step 0 and every ``K`` steps with the student's per-domain validation
    loss (the loop does when ``eval_steps`` are ``0, K, 2K, ...``): it records the interval's ratios and weights in
    :attr:`log` and sets the sampler's weights for the next interval.

    Each entry of :attr:`log`: ``step``, ``ratio`` (``l_S / l_T`` per domain), ``r`` (the method's factor at this
    step; for ``ddk`` at step 0, ``r^0`` of Eq. 1) and ``weights`` (what the sampler draws from until the next
    call). ``eta`` and ``eps`` are the DoReMi-style update's step and mixing weight. Raises ``ValueError`` naming the
    argument: an unknown method, ``K < 1``, ``alpha`` or ``eps`` outside ``[0, 1]``, ``eta`` not above 0, weights
    that are not a distribution, domains that differ between the arguments (a domain with no validation loss), or a
    call for a domain set other than the teacher's.
    """

    def __init__(self, method: str, teacher_loss: Mapping[str, float], natural: Mapping[str, float], K: int,
                 alpha: float = eq.ALPHA, eta: float = eq.DOREMI_ETA, eps: float = eq.DOREMI_EPS) -> None:
        if method not in MIXTURES:
            raise ValueError(f"method must be one of {MIXTURES}, got {method!r}")
        if not is_int(K) or K < 1:
            raise ValueError(f"K must be an integer >= 1 (steps per interval), got {K!r}")
        for name, v, ok in (("alpha", alpha, lambda x: 0 <= x <= 1), ("eps", eps, lambda x: 0 <= x <= 1),
                            ("eta", eta, lambda x: 0 < x < math.inf)):
            if isinstance(v, bool) or not isinstance(v, int | float | np.floating) or not ok(v):
                raise ValueError(f"{name} must be a number {'above 0' if name == 'eta' else 'in [0, 1]'}, got {v!r}")
        self.domains = list(teacher_loss)
        if not self.domains:
            raise ValueError("teacher_loss must name at least one domain (the validation sets' losses)")
        if list(natural) != self.domains:
            raise ValueError(f"natural must name the domains of the validation sets ({self.domains}) in order, "
                             f"got {list(natural)}")
        self.loss_t = eq._vector("teacher_loss", [teacher_loss[d] for d in self.domains])
        self.natural = eq.check_weights([natural[d] for d in self.domains], "natural")
        self.method, self.K, self.alpha, self.eta, self.eps = method, K, alpha, eta, eps
        self.r: np.ndarray | None = None
        self.log: list[dict[str, Any]] = []

    def initial_weights(self) -> np.ndarray:
        """The mixture of interval 0: equal for ``uniform``, else the natural mixture."""
        n = len(self.domains)
        return np.full(n, 1.0 / n) if self.method == "uniform" else self.natural.copy()

    def update(self, step: int, student_loss: Mapping[str, float]) -> np.ndarray:
        """The weights for the interval starting at ``step``, from the student's validation loss there
        (``{domain: CE_S}``, nats). Steps must be 0 first, then multiples of ``K``."""
        if sorted(student_loss) != sorted(self.domains):
            missing = sorted(set(self.domains) - set(student_loss))
            raise ValueError(f"student_loss must name the domains {self.domains}, got {list(student_loss)}"
                             + (f": no validation loss for {missing}" if missing else ""))
        if not is_int(step) or step < 0 or step % self.K:
            raise ValueError(f"step must be 0 or a multiple of K={self.K}, got {step!r}")
        if (step == 0) != (not self.log):
            raise ValueError(f"step={step}: the first update must be at step 0, and only the first")
        loss_s = np.array([student_loss[d] for d in self.domains], dtype=float)
        ratio = eq.perplexity_ratio(loss_s, self.loss_t)
        if step == 0:
            w = self.initial_weights()
            self.r = eq.discrepancy_factor(ratio) if self.method == "ddk" else w
        elif self.method == "ddk":
            self.r = w = eq.smooth_update(self.r, ratio, self.alpha)
        elif self.method == "ddk-nofs":
            self.r = w = eq.discrepancy_factor(ratio)
        elif self.method == "doremi":
            self.r = w = eq.doremi_update(self.r, loss_s, self.loss_t, self.eta, self.eps)
        else:
            w = self.r
        self.log.append({"step": int(step), "ratio": ratio.tolist(), "r": self.r.tolist(), "weights": w.tolist()})
        return w

    def __call__(self, step: int, val: Mapping[str, float], state: Mapping[str, Any]) -> None:
        """The loop's ``on_eval(step, val, state)``: :meth:`update`, then ``state["sampler"].set_weights``."""
        w = self.update(step, val)
        state["sampler"].set_weights(dict(zip(self.domains, w.tolist(), strict=True)))

    def trajectory(self) -> np.ndarray:
        """The sampled weights per interval, shape ``(intervals, N)``."""
        return np.array([e["weights"] for e in self.log])
