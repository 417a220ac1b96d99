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

from . import _check

# the natural parameters of an L3 domain law that usage 2 reads (C may be given as logC: see _log_c)
L3_KEYS = ("E", "A", "alpha", "B", "beta", "eta", "gamma", "eps")


@dataclass(frozen=True)
class Allocation:
    """Usage 3's answer (App. G.3): the compute-optimal N_opt and D_opt (in the ``unit`` asked for: the paper's
    billions), and the closed form's G, a, b."""

    N_opt: float
    D_opt: float
    G: float
    a: float
    b: float


def chinchilla_exponents(A: float, alpha: float, B: float, beta: float) -> tuple[float, float, float]:
    """Usage 3's exponents (App. G.3, Chinchilla's closed form for L = E + A/N^alpha + B/D^beta):
    G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta). A, B in the units of
    the fitted law (the paper: N, D in billions). ``ValueError`` for an argument that is not positive and finite,
    or a G that overflows a float."""
    A, alpha = _check.positive("A", A), _check.positive("alpha", alpha)
    B, beta = _check.positive("B", B), _check.positive("beta", beta)
    s = alpha + beta
    G = (alpha * A / (beta * B)) ** (1 / s)
    if not 0 < G < np.inf:
        raise ValueError(f"G = (alpha A/(beta B))^(1/(alpha+beta)) overflows a float for A={A:g}, alpha={alpha:g}, "
                         f"B={B:g}, beta={beta:g}")
    return G, beta / s, alpha / s


def chinchilla_allocation(C: float, *, G: float, a: float, b: float, unit: float = 1e9) -> Allocation:
    """Compute-optimal N_opt = G (C/6)^a, D_opt = (C/6)^b / G, in ``unit``s (the paper: billions).

    ``C`` is in FLOPs; C/6 is converted to unit^2 because N and D are measured in ``unit``s. The exponents
    a = beta/(alpha+beta) and b = alpha/(alpha+beta) lie in (0, 1). ``ValueError`` for C, G or unit not positive,
    a or b outside (0, 1), or an N_opt or D_opt that over- or underflows a float.
    """
    C, G, unit = _check.positive("C", C), _check.positive("G", G), _check.positive("unit", unit)
    a = _check.real("a", a, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    b = _check.real("b", b, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    x = C / 6 / unit**2
    out = Allocation(G * x**a, x**b / G, G, a, b)
    if not (0 < out.N_opt < np.inf and 0 < out.D_opt < np.inf):
        raise ValueError(f"N_opt or D_opt over- or underflows a float for C={C:g}, unit={unit:g}")
    return out


def _monotone_boundary(f: Callable[[float], float], lo: float, hi: float) -> float:
    return float(brentq(f, lo, hi, xtol=1e-10))


def _curve(name: str, fn: Callable[[np.ndarray], np.ndarray], r: np.ndarray) -> np.ndarray:
    out = np.asarray(fn(r), float)
    if out.shape != r.shape:
        raise ValueError(f"{name} must return one loss per ratio (shape {r.shape}), got shape {out.shape}")
    bad = ~np.isfinite(out) | (out <= 0)
    if bad.any():
        raise ValueError(f"{name} is not a finite positive loss at r_d = {r[bad][:3].tolist()} "
                         f"(values {out[bad][:3].tolist()})")
    return out


def optimal_ratio_under_budget(L_g: Callable[[np.ndarray], np.ndarray], L_d: Callable[[np.ndarray], np.ndarray],
                               L_g0: float, T: float, grid: int = 10001) -> dict[str, float]:
    """Usage 1: argmin_{r_d} L_d(r_d) subject to (L_g(r_d) - L_g0)/L_g0 < T.

    ``L_g`` and ``L_d`` are the fitted general and domain laws at the chosen (N0, D0) as functions of
    the domain ratio r_d (so L_g is evaluated at r_g = 1 - r_d). ``T`` is a fraction in (0, 1): 0.03 for
    the paper's 3 %. The feasible set is scanned on a dense grid and the best feasible ratio refined on the
    budget's boundary (``grid`` points on [0, 1]). Returns r_d*, the predicted losses L_g and L_d there (nats per
    token, as the laws give), the bound (1 + T) L_g0, and whether the budget binds. ``ValueError`` for L_g0 not
    positive, T outside (0, 1), grid < 3, a curve that does not give one finite positive loss per ratio, or no
    ratio meeting the budget; ``TypeError`` for curves that are not callable.
    """
    _check.callable_("L_g", L_g)
    _check.callable_("L_d", L_d)
    L_g0 = _check.positive("L_g0", L_g0)
    T = _check.real("T", T, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                    hint="T is a fraction of L_g0: 0.03 for a 3 % budget")
    grid = _check.integer("grid", grid, 3)
    r = np.linspace(0.0, 1.0, grid)
    bound = L_g0 * (1 + T)
    g, d = _curve("L_g", L_g, r), _curve("L_d", L_d, r)
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
            r_star = _monotone_boundary(lambda x: float(_curve("L_g", L_g, np.array([x]))[0]) - bound, lo, hi)
            binds = True
            break
    at = np.array([r_star])
    return {"r_d": r_star, "L_g": float(_curve("L_g", L_g, at)[0]), "L_d": float(_curve("L_d", L_d, at)[0]),
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


def check_l3_params(params: dict[str, float], name: str = "params") -> dict[str, float]:
    """The natural parameters of an L3 law (:data:`L3_KEYS` and C or logC), finite, with E, A, B >= 0 and
    eps >= 0; C may be ``inf`` where ``logC`` is finite (an overflowing fit). Returns ``params``. ``ValueError``
    naming ``name`` for a missing, non-finite or negative parameter, or a missing C and logC."""
    _check.params(name, params, L3_KEYS, nonnegative=("E", "A", "B", "eps"))
    if "logC" in params:
        lc = params["logC"]
        if not _check.is_real(lc) or np.isnan(lc) or lc == np.inf:
            raise ValueError(f"{name}['logC'] must be a number below +inf (-inf: a vanished C), got {lc!r}")
    elif "C" in params:
        _check.real(f"{name}['C']", params["C"], lo=0.0)
    else:
        raise ValueError(f"{name} lacks C (or logC)")
    return params


def fixed_domain_loss(params: dict[str, float], N0: float, D_d0: float, r: np.ndarray) -> np.ndarray:
    """Eq. (11): L_d(r) = E + A/N0^alpha + B r^(eta+beta)/(D_d0)^beta + C/(r+eps)^gamma (L3 domain law with
    D = D_d0/r), the shape of ``r``. N0 and D_d0 in the fitted law's units (notebook 03: millions of parameters and
    of tokens). ``ValueError`` for bad params (:func:`check_l3_params`), N0 or D_d0 not positive, r outside
    [0, 1], or r = 0 with eps = 0."""
    p = check_l3_params(params)
    N0, D_d0 = _check.positive("N0", N0), _check.positive("D_d0", D_d0)
    r = _check.array("r", r, unit=True)
    if p["eps"] == 0 and (r == 0).any():
        raise ValueError("r must be positive where eps = 0 (C/(r+eps)^gamma is undefined at r + eps = 0)")
    return (p["E"] + _scaled_power(_log(p["A"]), N0, -p["alpha"])
            + _scaled_power(_log(p["B"]), D_d0, -p["beta"]) * r ** (p["eta"] + p["beta"])
            + _scaled_power(_log_c(p), r + p["eps"], -p["gamma"]))


def interior_minimum_condition(params: dict[str, float]) -> float:
    """The largest D_d^0 for which L_d(r_d) has its minimum inside (0, 1) (App. G.2): where dL_d/dr_d > 0 at
    r_d = 1. Computed in logs; 0 when the B or the C term vanished (then L_d is monotone in r_d and its
    minimum sits at an end of (0, 1] whatever D_d^0), ``inf`` when the limit overflows a float. The condition
    is derived for beta > 0 and gamma > 0 (a law whose loss falls with D and with r); other values raise
    ``ValueError``, as do bad params (:func:`check_l3_params`). The limit is in the law's units of D."""
    p = check_l3_params(params)
    _check.positive("params['beta']", p["beta"], hint="the limit D_d0 < (...)^(1/beta) needs beta > 0")
    _check.positive("params['gamma']", p["gamma"], hint="the C-term must fall with r")
    log_c = _log_c(p)
    if min(p["B"], p["eta"] + p["beta"]) <= 0 or np.isneginf(log_c):
        return 0.0
    log_limit = (np.log(p["B"]) + np.log(p["eta"] + p["beta"]) + (p["gamma"] + 1) * np.log1p(p["eps"])
                 - np.log(p["gamma"]) - log_c) / p["beta"]
    with np.errstate(over="ignore"):
        return float(np.exp(log_limit))


def optimal_ratio_fixed_domain_data(params: dict[str, float], N0: float, D_d0: float) -> dict[str, float]:
    """Usage 2 (App. G.2): the r_d in (0, 1] minimising Eq. (11), the domain loss there, whether the minimum is
    interior (D_d0 below :func:`interior_minimum_condition`) and that limit. ``ValueError`` for bad params, N0 or
    D_d0 not positive, or a loss that is not finite."""
    p = check_l3_params(params)
    N0, D_d0 = _check.positive("N0", N0), _check.positive("D_d0", D_d0)
    limit = interior_minimum_condition(p)
    res = minimize_scalar(lambda x: float(fixed_domain_loss(p, N0, D_d0, np.array([x]))[0]),
                          bounds=(1e-6, 1.0), method="bounded", options={"xatol": 1e-10})
    if not np.isfinite(res.fun):
        raise ValueError(f"Eq. (11) is not finite for these params at N0={N0:g}, D_d0={D_d0:g}")
    return {"r_d": float(res.x), "L_d": float(res.fun), "interior": bool(D_d0 < limit), "D_d0_limit": float(limit)}


def law_curves(fit_general, fit_domain, N0: float, D0: float
               ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """The fitted general and domain laws at (N0, D0) as functions of the domain ratio r_d (Eq. 10's L_g, L_d).

    The general law is evaluated at r_g = 1 - r_d. N0 and D0 in the fits' units (notebook 03: millions of
    non-embedding parameters and of CPT tokens). Each curve maps an array of ratios in [0, 1] to losses of its
    shape. ``TypeError`` for fits that are not :class:`repro.dcpt.fitting.Fit`, ``ValueError`` for N0 or D0 not
    positive or a cross-domain fit (reduce it first: :func:`repro.dcpt.laws.reduce_cross`).
    """
    from .fitting import Fit, Points

    _check.instance("fit_general", fit_general, Fit)
    _check.instance("fit_domain", fit_domain, Fit)
    N0, D0 = _check.positive("N0", N0), _check.positive("D0", D0)
    for name, f in (("fit_general", fit_general), ("fit_domain", fit_domain)):
        if f.law.features:
            raise ValueError(f"{name} is a cross-domain law: reduce it to L3 for one domain first (laws.reduce_cross)")

    def at(fit_, r: np.ndarray) -> np.ndarray:
        return fit_.predict(Points(np.full_like(r, N0), np.full_like(r, D0), r, np.ones_like(r)))

    def general(rd: np.ndarray) -> np.ndarray:
        return at(fit_general, 1 - _check.array("r_d", rd, unit=True))  # exact in [0, 1] for r_d in [0, 1]

    def domain(rd: np.ndarray) -> np.ndarray:
        return at(fit_domain, _check.array("r_d", rd, unit=True))

    return general, domain
