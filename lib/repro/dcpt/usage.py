"""The three usages of the D-CPT Law (paper §4 and App. G).

1. :func:`optimal_ratio_under_budget` (Eq. 10): the domain ratio r_d that minimises the domain loss
   while the general loss rises by less than a fraction T over its value before continual pre-training.
2. :func:`optimal_ratio_fixed_domain_data` (Eq. 11, App. G.2): with D_d^0 domain tokens, the total is
   D = D_d^0/r_d, and the domain loss has an interior minimum in r_d when
   D_d^0 < (B (eta+beta) (1+eps)^(gamma+1) / (gamma C))^(1/beta) (:func:`interior_minimum_condition`).
3. :func:`chinchilla_allocation` (Eq. 2, App. G.3): at a fixed ratio the law is Chinchilla's, and the
   compute-optimal N and D for C = 6 N D follow in closed form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar


@dataclass(frozen=True)
class Allocation:
    N_opt: float
    D_opt: float
    G: float
    a: float
    b: float


def chinchilla_exponents(A: float, alpha: float, B: float, beta: float) -> tuple[float, float, float]:
    """G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    if min(A, B, alpha, beta) <= 0:
        raise ValueError(f"A, alpha, B, beta must be positive, got {A}, {alpha}, {B}, {beta}")
    s = alpha + beta
    return (alpha * A / (beta * B)) ** (1 / s), beta / s, alpha / s


def chinchilla_allocation(C: float, *, G: float, a: float, b: float, unit: float = 1e9) -> Allocation:
    """Compute-optimal N_opt = G (C/6)^a, D_opt = (C/6)^b / G, in ``unit``s (the paper: billions).

    ``C`` is in FLOPs; C/6 is converted to unit^2 because N and D are measured in ``unit``s.
    """
    if C <= 0 or G <= 0:
        raise ValueError(f"C and G must be positive, got C={C}, G={G}")
    x = C / 6 / unit**2
    return Allocation(G * x**a, x**b / G, G, a, b)


def _monotone_boundary(f: Callable[[float], float], lo: float, hi: float) -> float:
    return float(brentq(f, lo, hi, xtol=1e-10))


def optimal_ratio_under_budget(L_g: Callable[[np.ndarray], np.ndarray], L_d: Callable[[np.ndarray], np.ndarray],
                               L_g0: float, T: float, grid: int = 10001) -> dict[str, float]:
    """Usage 1: argmin_{r_d} L_d(r_d) subject to (L_g(r_d) - L_g0)/L_g0 < T.

    ``L_g`` and ``L_d`` are the fitted general and domain laws at the chosen (N0, D0) as functions of
    the domain ratio r_d (so L_g is evaluated at r_g = 1 - r_d). The feasible set is scanned on a dense
    grid and the best feasible ratio refined on the budget's boundary. Returns r_d*, the predicted losses,
    and whether the budget binds.
    """
    if not 0 < T:
        raise ValueError(f"the budget T must be positive, got {T}")
    if L_g0 <= 0:
        raise ValueError(f"L_g0 must be positive, got {L_g0}")
    r = np.linspace(0.0, 1.0, grid)
    bound = L_g0 * (1 + T)
    g, d = np.asarray(L_g(r), float), np.asarray(L_d(r), float)
    feasible = g < bound
    if not feasible.any():
        raise ValueError(f"no ratio keeps the general loss within {T:.1%} of {L_g0}: min L_g = {g.min():.4f}")
    i = int(np.argmin(np.where(feasible, d, np.inf)))
    r_star = float(r[i])
    binds = False
    # refine where the optimum sits on the budget's edge (L_g crosses the bound between grid points)
    for j in (i - 1, i + 1):
        if 0 <= j < grid and not feasible[j]:
            lo, hi = sorted((r[i], r[j]))
            r_star = _monotone_boundary(lambda x: float(L_g(np.array([x]))[0]) - bound, lo, hi)
            binds = True
            break
    return {"r_d": r_star, "L_g": float(L_g(np.array([r_star]))[0]), "L_d": float(L_d(np.array([r_star]))[0]),
            "bound": bound, "binds": binds}


def _log(x: float) -> float:
    return float(np.log(x)) if x > 0 else -np.inf


def _log_c(p: dict[str, float]) -> float:
    """log C of a fitted law: the law's own ``logC`` where it gives one (L3's C = C0 + C1 can overflow a
    float while its logarithm is fine), else log of ``C``."""
    return float(p["logC"]) if "logC" in p else _log(p["C"])


def _scaled_power(log_coef: float, x: np.ndarray | float, power: float) -> np.ndarray:
    """``exp(log_coef) * x**power`` for ``x > 0``, computed in logs; a vanished term (``log_coef = -inf``)
    is exactly 0 whatever the power (a fitted power law whose coefficient went to 0 leaves its exponent
    unidentified and often huge)."""
    if np.isneginf(log_coef):
        return np.zeros_like(np.asarray(x, float))
    with np.errstate(over="ignore", under="ignore"):  # inf / 0 are the right limits here
        return np.exp(log_coef + power * np.log(x))


def fixed_domain_loss(params: dict[str, float], N0: float, D_d0: float, r: np.ndarray) -> np.ndarray:
    """Eq. (11): L_d(r) = E + A/N0^alpha + B r^(eta+beta)/(D_d0)^beta + C/(r+eps)^gamma (L3 domain law)."""
    p = params
    r = np.asarray(r, float)
    return (p["E"] + _scaled_power(_log(p["A"]), N0, -p["alpha"])
            + _scaled_power(_log(p["B"]), D_d0, -p["beta"]) * r ** (p["eta"] + p["beta"])
            + _scaled_power(_log_c(p), r + p["eps"], -p["gamma"]))


def interior_minimum_condition(params: dict[str, float]) -> float:
    """The largest D_d^0 for which L_d(r_d) has its minimum inside (0, 1) (App. G.2): where dL_d/dr_d > 0 at
    r_d = 1. Computed in logs; 0 when the B or the C term vanished (then L_d is monotone in r_d and its
    minimum sits at an end of (0, 1] whatever D_d^0), ``inf`` when the limit overflows a float."""
    p = params
    log_c = _log_c(p)
    if min(p["B"], p["gamma"], p["eta"] + p["beta"]) <= 0 or np.isneginf(log_c):
        return 0.0
    log_limit = (np.log(p["B"]) + np.log(p["eta"] + p["beta"]) + (p["gamma"] + 1) * np.log1p(p["eps"])
                 - np.log(p["gamma"]) - log_c) / p["beta"]
    with np.errstate(over="ignore"):
        return float(np.exp(log_limit))


def optimal_ratio_fixed_domain_data(params: dict[str, float], N0: float, D_d0: float) -> dict[str, float]:
    """Usage 2: the r_d in (0, 1] minimising Eq. (11), and whether the minimum is interior."""
    if D_d0 <= 0 or N0 <= 0:
        raise ValueError(f"N0 and D_d0 must be positive, got {N0}, {D_d0}")
    res = minimize_scalar(lambda x: float(fixed_domain_loss(params, N0, D_d0, np.array([x]))[0]),
                          bounds=(1e-6, 1.0), method="bounded", options={"xatol": 1e-10})
    limit = interior_minimum_condition(params)
    return {"r_d": float(res.x), "L_d": float(res.fun), "interior": bool(D_d0 < limit), "D_d0_limit": float(limit)}


def law_curves(fit_general, fit_domain, N0: float, D0: float
               ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """The fitted general and domain laws at (N0, D0) as functions of the domain ratio r_d (Eq. 10's L_g, L_d).

    The general law is evaluated at r_g = 1 - r_d.
    """
    from .fit import Points

    def at(fit_, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, float)
        return fit_.predict(Points(np.full_like(r, N0), np.full_like(r, D0), r, np.ones_like(r)))

    return (lambda rd: at(fit_general, 1 - np.asarray(rd, float))), (lambda rd: at(fit_domain, rd))
