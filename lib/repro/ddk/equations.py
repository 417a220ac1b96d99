"""DDK's equations (Liu et al., NeurIPS 2024, arXiv 2407.16154, section 3), one function each, and the
DoReMi-style update the notebook sets beside them.

Notation as in the paper: ``N`` domains; ``l_S[i]``, ``l_T[i]`` the student's and the teacher's perplexity on
domain ``i``'s validation set (``exp`` of the mean token cross-entropy), so the ratio ``l_S / l_T`` is
``exp(CE_S - CE_T)``; ``r`` the domain discrepancy factor (the sampling weights over domains); ``alpha`` the
smoothing constant; ``gamma`` and ``T`` the weight and temperature of the distillation term.

The functions take mean cross-entropies in nats (what :func:`repro.train.evaluate` gives) or ratios, and work
in log space: the history product ``r^t exp(ratio)`` of Eq. (2) multiplies weights that can be tiny by
exponentials that can be huge (toy students trail their teacher by ratios of 2 to 50), and normalising in log space
keeps every weight exact where a plain product would underflow or overflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import logsumexp, softmax

__all__ = ["perplexity_ratio", "discrepancy_factor", "smooth_update", "distillation_loss", "doremi_update",
           "total_variation", "check_weights", "check_gamma_T", "ALPHA", "GAMMA", "TEMPERATURE", "DOREMI_ETA", "DOREMI_EPS"]

ALPHA = 0.5          # Eq. (2)'s smoothing constant [paper section 3.2]
GAMMA = 0.2          # Eq. (3)'s weight of the KL term [paper v1 section 4.3, Table 3]
TEMPERATURE = 1.0    # Eq. (3)'s temperature [paper section 4.1]
DOREMI_ETA = 1.0     # DoReMi's step size (Xie et al. 2023)
DOREMI_EPS = 1e-3    # DoReMi's uniform mixing weight
_SUM_TOL = 1e-6


def _vector(name: str, v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, one value per domain; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    return a


def check_weights(w: Sequence[float] | np.ndarray, name: str = "weights") -> np.ndarray:
    """``w`` as a float array after checking it is a distribution over domains: 1-D, finite, non-negative, summing
    to 1 within 1e-6. Raises ``ValueError`` naming ``name`` otherwise."""
    a = _vector(name, w)
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative, got {a.tolist()}")
    if abs(a.sum() - 1.0) > _SUM_TOL:
        raise ValueError(f"{name} must sum to 1 (tolerance {_SUM_TOL}), got sum {a.sum()!r}")
    return a


def check_gamma_T(gamma: float, T: float) -> tuple[float, float]:
    """``(gamma, T)`` as floats after checking Eq. (3)'s constants: ``gamma`` finite and >= 0, ``T`` finite and > 0.
    Raises ``ValueError`` naming the one that is not."""
    if isinstance(gamma, bool) or not isinstance(gamma, int | float | np.floating) or \
            not (gamma >= 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if isinstance(T, bool) or not isinstance(T, int | float | np.floating) or not (T > 0 and math.isfinite(T)):
        raise ValueError(f"T must be a finite number > 0, got {T!r}")
    return float(gamma), float(T)


def perplexity_ratio(loss_s: Sequence[float] | np.ndarray, loss_t: Sequence[float] | np.ndarray) -> np.ndarray:
    """``l_S[i] / l_T[i] = exp(CE_S[i] - CE_T[i])``, shape ``(N,)``, from the mean token cross-entropies (nats) of
    student and teacher on each domain's validation set. Raises ``ValueError`` when the two differ in length or
    hold a non-finite value."""
    s, t = _vector("loss_s", loss_s), _vector("loss_t", loss_t)
    if s.shape != t.shape:
        raise ValueError(f"loss_s has {s.size} domains, loss_t {t.size}: give one loss per domain to each")
    return np.exp(s - t)


def discrepancy_factor(ratio: Sequence[float] | np.ndarray) -> np.ndarray:
    """Eq. (1), the domain discrepancy factor: ``r[i] = exp(l_S[i]/l_T[i]) / sum_j exp(l_S[j]/l_T[j])``.

    ``ratio``: the perplexity ratios ``l_S / l_T`` (:func:`perplexity_ratio`), shape ``(N,)``; returns ``r``,
    shape ``(N,)``, summing to 1 (a softmax, computed after subtracting the largest ratio). Raises
    ``ValueError`` for a ratio that is not positive and finite.
    """
    q = _vector("ratio", ratio)
    if np.any(q <= 0):
        raise ValueError(f"ratio must be positive (a ratio of perplexities), got {q.tolist()}")
    return softmax(q)


def smooth_update(r_prev: Sequence[float] | np.ndarray, ratio: Sequence[float] | np.ndarray,
                  alpha: float = ALPHA) -> np.ndarray:
    """Eq. (2), factor smooth updating, at the start of interval ``t + 1``:

    ``psi[i] = r_prev[i] * exp(l_S[i]/l_T[i])`` (the history times the new discrepancy), then
    ``r[i] = alpha * psi[i] / sum_j psi[j] + (1 - alpha) / N`` (a uniform floor of ``(1 - alpha) / N``).

    ``r_prev``: the factor of interval ``t``, shape ``(N,)``, a distribution; ``ratio``: ``l_S / l_T`` measured
    now, shape ``(N,)``; ``alpha`` in ``[0, 1]`` (the paper: 0.5). ``psi`` is normalised in log space
    (``log psi = log r_prev + ratio``), so large ratios and tiny weights do not overflow or vanish. A domain
    whose ``r_prev`` is 0 stays at the floor. Raises ``ValueError`` naming the argument.
    """
    r = check_weights(r_prev, "r_prev")
    q = _vector("ratio", ratio)
    if q.shape != r.shape:
        raise ValueError(f"ratio has {q.size} domains, r_prev {r.size}")
    if np.any(q <= 0):
        raise ValueError(f"ratio must be positive (a ratio of perplexities), got {q.tolist()}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    with np.errstate(divide="ignore"):
        log_psi = np.log(r) + q                  # log r^t[i] + l_S[i]/l_T[i]
    psi = np.exp(log_psi - logsumexp(log_psi))   # psi / sum_j psi[j]
    return alpha * psi + (1.0 - alpha) / r.size


def doremi_update(w_prev: Sequence[float] | np.ndarray, loss_s: Sequence[float] | np.ndarray,
                  loss_ref: Sequence[float] | np.ndarray, eta: float = DOREMI_ETA,
                  eps: float = DOREMI_EPS) -> np.ndarray:
    """A DoReMi-style update (Xie et al. 2023, Algorithm 1) with the teacher as the reference model:

    ``lambda[i] = max(CE_S[i] - CE_ref[i], 0)`` (excess loss, nats), ``w'[i] ∝ w_prev[i] exp(eta lambda[i])``,
    then ``w[i] = (1 - eps) w'[i] + eps / N``.

    DDK's rule differs in its score (a perplexity *ratio*, not a clipped loss difference) and its floor
    (``alpha = 0.5`` against ``eps = 1e-3``). DoReMi clips each token's excess and averages over the batch; here
    the clip is on each domain's mean loss, the signal DDK gets. Shapes ``(N,)``; ``eta > 0``, ``eps`` in
    ``[0, 1]``. Raises ``ValueError`` naming the argument.
    """
    w = check_weights(w_prev, "w_prev")
    s, t = _vector("loss_s", loss_s), _vector("loss_ref", loss_ref)
    if not s.shape == t.shape == w.shape:
        raise ValueError(f"w_prev, loss_s and loss_ref must have one value per domain, got {w.size}, {s.size}, {t.size}")
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta must be a positive number, got {eta!r}")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps <= 1:
        raise ValueError(f"eps must be a number in [0, 1], got {eps!r}")
    with np.errstate(divide="ignore"):
        log_w = np.log(w) + eta * np.maximum(s - t, 0.0)
    return (1.0 - eps) * np.exp(log_w - logsumexp(log_w)) + eps / w.size


def total_variation(weights: Sequence[Sequence[float]] | np.ndarray) -> float:
    """``sum_t ||r^{t+1} - r^t||_1`` over the rows of ``weights`` (shape ``(intervals, N)``, one distribution per
    interval, in order): how far the mixture moves over a run (the card's smoothness measure; 0 for a fixed
    mixture, at most ``2 (intervals - 1)``). Raises ``ValueError`` for fewer than one row or rows that are not
    distributions."""
    a = np.asarray(weights, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"weights must be 2-D (intervals, domains) with at least one row, got shape {a.shape}")
    for i, row in enumerate(a):
        check_weights(row, f"weights[{i}]")
    return float(np.abs(np.diff(a, axis=0)).sum())


def distillation_loss(z_s: torch.Tensor, z_t: torch.Tensor | None, targets: torch.Tensor, gamma: float = GAMMA,
                      T: float = TEMPERATURE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (3), the training objective: ``CE(z_S, y) + gamma * KL(p_T || p_S)`` with ``p = softmax(z / T)``.

    ``z_s`` student logits ``(..., V)``, ``z_t`` teacher logits of the same shape (no gradient flows into them;
    ``None`` only with ``gamma == 0``), ``targets`` next tokens ``(...)`` (``-1`` ignored in both terms). Returns
    ``(loss, ce, kl)``, each the mean over the counted tokens, in nats per token.

    Choices where the paper is silent or ambiguous (card, ambiguity 2): the KL is the forward (Hinton)
    divergence ``KL(p_T || p_S) = sum_v p_T (log p_T - log p_S)`` per token, the direction the paper's MiniLLM
    baseline is said to reverse; the cross-entropy is at temperature 1; the KL is not multiplied by ``T^2``
    (Eq. 3 has no such factor; at the paper's ``T = 1`` it is moot). Raises ``ValueError`` for a ``gamma`` below
    0, a ``T`` not above 0, or logits of different shapes (a teacher with another vocabulary).
    """
    gamma, T = check_gamma_T(gamma, T)
    V = z_s.shape[-1]
    z_s, y = z_s.reshape(-1, V), targets.reshape(-1)
    keep = y >= 0
    ce = F.cross_entropy(z_s, y, ignore_index=-1)
    if gamma == 0 and z_t is None:
        return ce, ce, torch.zeros_like(ce)
    if z_t is None or z_t.shape[-1] != V or z_t.numel() != z_s.numel():
        got = None if z_t is None else tuple(z_t.shape)
        raise ValueError(f"z_t must be the teacher's logits, shaped as z_s {tuple(z_s.shape)}; got {got}")
    z_t = z_t.reshape(-1, V).detach()
    log_p_s = F.log_softmax(z_s[keep] / T, dim=-1)      # (n, V)
    log_p_t = F.log_softmax(z_t[keep] / T, dim=-1)      # (n, V)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="sum") / max(1, int(keep.sum()))
    return ce + gamma * kl, ce, kl
