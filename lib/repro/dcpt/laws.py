"""The D-CPT Law's candidate parameterisations (paper §3.1 and App. E) in log-sum-exp form.

Every law is written as ``log L = LSE(t_1, ..., t_K)``: a sum of positive terms, each term's log
linear or nearly linear in the fitted parameters ``theta`` (the paper's App. E.3 form). A law gives
the terms and their analytic gradients; :func:`Law.log_predict` combines them (the gradient of LSE is
the softmax-weighted sum of the terms' gradients). Each law also has a plain formula in its natural
parameters (:func:`Law.predict`), written independently, so the two can check each other.

With ``r' = r + eps``:

- L1 = E + A/N^a + B/D^b + C/r'^g
- L2 = E + A/N^a + (B/D^b + C/r'^g)^eta
- L3 = E + A/N^a + B r^eta/D^b + C/r'^g                      (the paper's choice, Eq. 6)
- L3u = L3 without the constraint trick (eta > 0 and C free): a diagnostic of this workbook
- L4 = E + A/N^a + B bb^r/D^b + C/cc^r
- L5 = E + A/N^a + B/(r D + (1 - r) sigma)^b
- L6 = E + A/N^a + B e^r/D^b + C/r'^g
- L7 = E + A/N^a + B r'^eta/D^b + C/r'^g
- Cross-Domain (Eq. 7) = L3 + F/K^mu with K from a probe run: K1 = w1/k1, K2 = w2 k2,
  K3 = w1/k1 + w2 k2 (the paper's choice, Eq. 9), K4 = w1/k1 + w2 k2 + w3/k3.

Constraint trick (App. E.3) for L3, L7 and the cross-domain law: ``eta = 1 + exp(eta1) > 1`` and
``C = C0 + C1`` (C1 > 0) with C0 recomputed from the other parameters so that dL/dr < 0 for every
r in [0, 1] and D >= D_min, *provided beta >= 0* (for beta < 0 the B-term grows with D and no bound
taken at D_min covers larger D; beta is not bounded in the fit, so a fit with beta < 0 loses the
guarantee). C0 is the largest value over r in [0, 1], D >= D_min of the r-slope's positive part
divided by gamma/(r+eps)^(gamma+1):

- L3 (and the cross-domain law): dL/dr = eta B r^(eta-1)/D^b - g C/(r+eps)^(g+1) < 0 needs
  C > (eta B/g) r^(eta-1) (r+eps)^(g+1)/D^b, largest at r = 1 (eta >= 1) and D = D_min:
  ``C0 = B eta (1+eps)^(g+1) / (g D_min^b)`` (App. E.3).
- L7: dL/dr = eta B (r+eps)^(eta-1)/D^b - g C/(r+eps)^(g+1) < 0 needs
  C > (eta B/g) (r+eps)^(eta+g)/D^b, largest at r = 1 and D = D_min:
  ``C0 = B eta (1+eps)^(eta+g) / (g D_min^b)``. (L3's C0 is too small for L7 whenever eta > 1 and
  eps > 0: it lacks the factor (1+eps)^(eta-1).)

It needs g > 0, so g is bounded below (a choice the paper leaves implicit). Coefficients are fitted as
logs (E = exp(e), ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _check

# The initialisation grid of App. E.3 (card §7): 277,830 points for L3 (5 x 7^3 x 3^4 x 2)
LOG_COEF = tuple(float(v) for v in range(-1, 6))  # a, b, c in {-1, 0, ..., 5} (App. E.3)
LOG_E = (-1.0, -0.5, 0.0, 0.5, 1.0)  # e in {-1, -0.5, ..., 1}
EXPONENT = (-0.5, 0.0, 0.5)  # alpha, beta, gamma, eta1 in {-0.5, 0, 0.5}
EPS = (0.0, 0.5)  # eps in {0, 0.5}
EPS_MIN = 1e-3  # r + eps must stay positive at r = 0
GAMMA_MIN = 1e-3  # C0 needs gamma > 0

Terms = list[tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Law:
    """One parameterisation of §3.1 / App. E (L1-L7, L3u) or Eq. 7 (:class:`CrossLaw`): fit-space parameter
    names (P of them), terms with gradients, natural formula.

    ``constrained``: the law uses the constraint trick (App. E.3), so it needs D_min (``X["d_min"]``). Units are
    the caller's: N and D in the same units as the points fitted (notebook 03: millions of non-embedding parameters
    and millions of tokens; the paper: billions), r a share in [0, 1], L in nats per token."""

    name: str
    names: tuple[str, ...]
    formula: str
    terms: Callable[[Callable[[str], np.ndarray], dict[str, np.ndarray]], Terms] = field(repr=False)
    natural: Callable[[dict[str, float], dict[str, Any]], dict[str, float]] = field(repr=False)
    formula_fn: Callable[[dict[str, float], dict[str, np.ndarray]], np.ndarray] = field(repr=False)
    grid: dict[str, tuple[float, ...]] = field(repr=False, default_factory=dict)
    bounds: dict[str, tuple[float | None, float | None]] = field(repr=False, default_factory=dict)
    constrained: bool = False

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def features(self) -> tuple[str, ...]:
        """The per-point inputs beyond N, D, r (the probe features of a cross-domain law)."""
        return ()

    def _theta(self, theta: Any) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"{self.name}: theta has shape {theta.shape}, the law has {self.n_params} parameters "
                             f"({', '.join(self.names)})")
        if not np.isfinite(theta).all():
            raise ValueError(f"{self.name}: theta holds NaN or infinite values")
        return theta

    def _check_X(self, X: dict[str, Any], needed: tuple[str, ...]) -> None:
        if not isinstance(X, dict):
            raise TypeError(f"X must be a dict of point arrays (Points.X(d_min)), got {type(X).__name__}")
        missing = [k for k in needed if k not in X]
        if missing:
            raise ValueError(f"{self.name}: X lacks {', '.join(missing)}")
        if self.constrained:
            if X.get("d_min") is None:
                raise ValueError(f"d_min is needed: {self.name} uses D_min (the smallest D of the data) in its constraint")
            _check.positive("d_min", X["d_min"])

    def log_predict(self, theta: np.ndarray, X: dict[str, np.ndarray], grad: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """log L for parameter rows ``theta`` [S, P] at the points ``X`` (arrays of length n, what
        :meth:`repro.dcpt.fitting.Points.X` gives): ``(log L [S, n], gradient [S, P, n] or None)``, the gradient
        only with ``grad``. The log-sum-exp form of App. E.3: log L = LSE over the law's terms, its gradient the
        softmax-weighted sum of the terms' gradients. Raises ``ValueError`` for a theta of the wrong width or with
        non-finite values, or ``X`` lacking an input (D_min too for a constrained law), ``TypeError`` for an X
        that is not a dict."""
        theta = self._theta(theta)
        self._check_X(X, ("N", "D", "r", "lN", "lD") + self.features)
        idx = {k: i for i, k in enumerate(self.names)}

        def col(name: str) -> np.ndarray:
            return theta[:, idx[name]][:, None]

        terms = self.terms(col, X)
        shape = (theta.shape[0], len(X["lN"]))
        T = np.stack([np.broadcast_to(t, shape) for t, _ in terms])
        m = T.max(axis=0)
        w = np.exp(T - m)
        s = w.sum(axis=0)
        logL = m + np.log(s)
        if not grad:
            return logL, None
        p = w / s
        G = np.zeros((shape[0], self.n_params, shape[1]))
        for k, (_, grads) in enumerate(terms):
            for name, g in grads.items():
                G[:, idx[name], :] += np.where(p[k] > 0, p[k] * np.broadcast_to(g, shape), 0.0)
        return logL, G

    def params(self, theta: np.ndarray, X: dict[str, Any] | None = None) -> dict[str, float]:
        """The natural parameters (E, A, alpha, ...) of one fit-space vector ``theta`` [P] or [1, P] (``X["d_min"]``
        for a constrained law: C0 depends on it). ``ValueError`` for several rows, a wrong width, non-finite
        values, or a missing D_min."""
        theta = self._theta(theta)
        if theta.shape[0] != 1:
            raise ValueError(f"{self.name}: theta must be one parameter vector, got {theta.shape[0]} rows")
        X = {} if X is None else X
        if self.constrained:
            self._check_X(X, ())
        t = dict(zip(self.names, theta[0], strict=True))
        return self.natural(t, X)

    def predict(self, params: dict[str, float], N: Any, D: Any, r: Any, **extra: Any) -> np.ndarray:
        """The law's plain formula in natural parameters (independent of the log-sum-exp code): L at N, D, r
        (arrays broadcast together; the probe features k1, k2, k3 for a cross-domain law). ``TypeError`` for params
        that are not a dict or unexpected features, ``ValueError`` for missing parameters or features, N or D not
        positive, r outside [0, 1], or a law that is not finite at some point."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of natural parameters (Law.params), got {type(params).__name__}")
        unknown = sorted(set(extra) - ({"k1", "k2", "k3"} if self.features else set()))
        if unknown:
            raise TypeError(f"{self.name}.predict got unexpected argument(s) {unknown}; its features: "
                            f"{list(self.features) or 'none'}")
        missing = [k for k in self.features if k not in extra]
        if missing:
            raise ValueError(f"{self.name}.predict needs the probe features {missing}")
        X = {"N": _check.array("N", N, positive_=True), "D": _check.array("D", D, positive_=True),
             "r": _check.array("r", r, unit=True)}
        X.update({k: _check.array(k, v) for k, v in extra.items()})
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(self.formula_fn(params, X), dtype=float)
        except KeyError as e:
            raise ValueError(f"params lacks {e.args[0]!r}, which {self.name} needs") from None
        if not np.isfinite(out).all():
            bad = sorted(k for k, v in params.items() if np.ndim(v) == 0 and not np.isfinite(v))
            raise ValueError(f"{self.name}: the law is not finite at some points"
                             + (f"; params {bad} are not finite" if bad else "") + " (use log_predict for overflowing fits)")
        return out


# -- shared pieces -------------------------------------------------------------------------------------
# Every law below is one block: its plain formula in the paper's symbols, then its log-sum-exp terms
# ``t_X = log(term X)`` (``log L = LSE(t_E, t_A, ...)``, App. E.3) with a comment naming each term, then its
# natural parameters and its plain formula as code (``_lN_f``, which the tests hold the terms against).
# ``c(name)`` is the column [S, 1] of the fit-space parameter ``name`` over S parameter rows; ``X`` holds the
# points' arrays [n] (N, D, r, lN = log N, lD = log D) and the scalar D_min; a term broadcasts to [S, n].
def _safe_log(x: np.ndarray) -> np.ndarray:
    return np.log(np.where(x > 0, x, 1.0))


def _head(c: Callable[[str], np.ndarray], X: dict[str, np.ndarray]) -> Terms:
    """The first two terms of every law, E + A/N^alpha, in logs with their gradients:
    t_E = log E = e, and t_A = log(A/N^alpha) = a - alpha log N."""
    return [(c("e"), {"e": np.ones(1)}),  # t_E = e
            (c("a") - c("alpha") * X["lN"], {"a": np.ones(1), "alpha": -X["lN"]})]  # t_A = a - alpha log N


def _r_term(c: Callable[[str], np.ndarray], X: dict[str, np.ndarray], coef: str) -> tuple[np.ndarray, dict]:
    """The ratio term coef/(r + eps)^gamma in logs, ``coef - gamma log(r + eps)``, with its gradient
    (L1, L2, L3u, L6: C/(r+eps)^gamma; L3, L7: C1/(r+eps)^gamma)."""
    re = X["r"] + c("eps")
    return (c(coef) - c("gamma") * np.log(re),
            {coef: np.ones(1), "gamma": -np.log(re), "eps": -c("gamma") / re})


def _exp_nat(t: dict[str, float], *names: str) -> dict[str, float]:
    out = {"E": np.exp(t["e"]), "A": np.exp(t["a"]), "alpha": t["alpha"]}
    for n in names:
        out[n] = t[n]
    return out


# -- L1 ----------------------------------------------------------------------------------------------
#   L1 = E + A/N^alpha + B/D^beta + C/(r+eps)^gamma                       (§3.1, Table 1: the baseline form)
#   log L1 = LSE(t_E, t_A, t_B, t_C):  t_B = b - beta log D,  t_C = c - gamma log(r+eps)
def _l1_terms(c, X):
    return _head(c, X) + [(c("b") - c("beta") * X["lD"], {"b": np.ones(1), "beta": -X["lD"]}),  # t_B
                          _r_term(c, X, "c")]  # t_C


def _l1_nat(t, X):
    return {**_exp_nat(t, "beta", "gamma", "eps"), "B": np.exp(t["b"]), "C": np.exp(t["c"])}


def _l1_f(p, X):
    return p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] / X["D"] ** p["beta"] + p["C"] / (X["r"] + p["eps"]) ** p["gamma"]


# -- L2 ----------------------------------------------------------------------------------------------
#   L2 = E + A/N^alpha + (B/D^beta + C/(r+eps)^gamma)^eta                  (§3.1, Table 1)
#   log L2 = LSE(t_E, t_A, t_BC):  t_BC = eta u,  u = log(B/D^beta + C/(r+eps)^gamma) = LSE(u_B, u_C),
#   u_B = b - beta log D,  u_C = c - gamma log(r+eps),  eta = exp(leta) > 0
def _l2_terms(c, X):
    eta = np.exp(c("leta"))
    u1 = c("b") - c("beta") * X["lD"]  # u_B = log(B/D^beta)
    u2, g2 = _r_term(c, X, "c")  # u_C = log(C/(r+eps)^gamma)
    m = np.maximum(u1, u2)
    w1, w2 = np.exp(u1 - m), np.exp(u2 - m)
    u = m + np.log(w1 + w2)  # u = LSE(u_B, u_C): the log of the bracket
    p1, p2 = w1 / (w1 + w2), w2 / (w1 + w2)  # its softmax weights (the gradient of LSE)
    grads = {"b": eta * p1, "beta": eta * p1 * -X["lD"], "c": eta * p2 * g2["c"], "gamma": eta * p2 * g2["gamma"],
             "eps": eta * p2 * g2["eps"], "leta": eta * u}
    return _head(c, X) + [(eta * u, grads)]  # t_BC = eta u = log(bracket^eta)


def _l2_nat(t, X):
    return {**_exp_nat(t, "beta", "gamma", "eps"), "B": np.exp(t["b"]), "C": np.exp(t["c"]), "eta": np.exp(t["leta"])}


def _l2_f(p, X):
    inner = p["B"] / X["D"] ** p["beta"] + p["C"] / (X["r"] + p["eps"]) ** p["gamma"]
    return p["E"] + p["A"] / X["N"] ** p["alpha"] + inner ** p["eta"]


# -- L3 (the D-CPT Law, Eq. 6) -------------------------------------------------------------------------
#
#   L(N, D, r) = E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma                               (Eq. 6)
#
# with the constraint trick of App. E.3: eta = 1 + exp(eta1) > 1, and C = C0 + C1 with C1 = exp(c1) > 0 free and
#
#   C0 = B eta (1+eps)^(gamma+1) / (gamma D_min^beta)                                        (App. E.3)
#
# the smallest C for which dL/dr < 0 at every r in [0, 1] and D >= D_min (module docstring; needs gamma > 0,
# and beta >= 0 for the bound to cover every D >= D_min). Fitted in logs (App. E.3), C split in two terms:
#
#   log L = LSE(t_E, t_A, t_B, t_C1, t_C0)
#     t_E  = e                                     = log E                     E
#     t_A  = a - alpha log N                       = log(A/N^alpha)            A/N^alpha
#     t_B  = b + eta log r - beta log D            = log(B r^eta/D^beta)       B r^eta/D^beta  (-inf at r = 0)
#     t_C1 = c1 - gamma log(r+eps)                 = log(C1/(r+eps)^gamma)     } C/(r+eps)^gamma
#     t_C0 = log C0 - gamma log(r+eps)             = log(C0/(r+eps)^gamma)     }   with C = C0 + C1
#     log C0 = b + log eta + (gamma+1) log(1+eps) - log gamma - beta log D_min
#
# Parameters fitted (theta): e, a, alpha, b, beta, c1, gamma, eta1, eps (9; eps >= 1e-3, gamma >= 1e-3).
def _constraint_c0(c: Callable[[str], np.ndarray], X: dict[str, np.ndarray], eta: np.ndarray,
                   deta_deta1: np.ndarray, form: str = "L3") -> tuple[np.ndarray, dict]:
    """log C0 of App. E.3's constraint and its gradient: the power of (1+eps) is gamma+1 for L3 (and the
    cross-domain law), eta+gamma for L7 (module docstring).

    log C0 = b + log(eta) + power log(1+eps) - log(gamma) - beta log(D_min)."""
    g, eps = c("gamma"), c("eps")
    ldmin = np.log(X["d_min"])
    l1e = np.log1p(eps)
    power = g + 1 if form == "L3" else eta + g  # L3: (1+eps)^(gamma+1); L7: (1+eps)^(eta+gamma)
    c0 = c("b") + np.log(eta) + power * l1e - np.log(g) - c("beta") * ldmin  # log(B eta (1+eps)^power / (g D_min^b))
    d_eta1 = deta_deta1 / eta if form == "L3" else deta_deta1 * (1 / eta + l1e)
    return c0, {"b": np.ones(1), "eta1": d_eta1, "gamma": l1e - 1 / g, "eps": power / (1 + eps),
                "beta": -ldmin * np.ones(1)}


def _log_c0(t: dict[str, float], eta: float, d_min: float, form: str = "L3") -> float:
    """log C0 of a fit-space vector, as :func:`_constraint_c0` (one point, plain floats)."""
    power = t["gamma"] + 1 if form == "L3" else eta + t["gamma"]
    return float(t["b"] + np.log(eta) + power * np.log1p(t["eps"]) - np.log(t["gamma"]) - t["beta"] * np.log(d_min))


def _l3_terms(c, X):
    """Eq. 6 in logs: [t_E, t_A] (:func:`_head`) + [t_B, t_C1, t_C0] (the block above), with gradients."""
    eta1 = c("eta1")
    eta = 1 + np.exp(eta1)  # eta > 1 (App. E.3)
    lr = _safe_log(X["r"])
    pos = X["r"] > 0
    # t_B = log(B r^eta / D^beta) = b + eta log r - beta log D; the term vanishes (log: -inf) at r = 0
    t_B = np.where(pos, c("b") + eta * lr - c("beta") * X["lD"], -np.inf)
    # t_C1 = log(C1 / (r+eps)^gamma) = c1 - gamma log(r+eps)
    t_C1, g1 = _r_term(c, X, "c1")
    # t_C0 = log(C0 / (r+eps)^gamma) = log C0 - gamma log(r+eps), C0 the constraint's (App. E.3)
    c0, gc0 = _constraint_c0(c, X, eta, np.exp(eta1))
    lre = np.log(X["r"] + c("eps"))
    t_C0 = c0 - c("gamma") * lre
    g4 = {**gc0, "gamma": gc0["gamma"] - lre, "eps": gc0["eps"] - c("gamma") / (X["r"] + c("eps"))}
    return _head(c, X) + [(t_B, {"b": np.ones(1), "eta1": np.exp(eta1) * lr, "beta": -X["lD"]}), (t_C1, g1), (t_C0, g4)]


def _l3_nat(t, X, form="L3"):
    """The natural parameters E, A, alpha, B, beta, eta, C1, C0, C = C0 + C1 (and logC), gamma, eps of Eq. 6."""
    B, eta = np.exp(t["b"]), 1 + np.exp(t["eta1"])
    # C0 from its log: it overflows a float (to inf, the right limit) when gamma and eps are large, while logC,
    # which the fit itself uses, stays finite
    log_c0 = _log_c0(t, eta, float(X["d_min"]), form)
    log_c = float(np.logaddexp(log_c0, t["c1"]))  # log C = log(C0 + C1)
    with np.errstate(over="ignore"):
        C0, C = float(np.exp(log_c0)), float(np.exp(log_c))
    return {**_exp_nat(t, "beta", "gamma", "eps"), "B": B, "eta": eta, "C1": np.exp(t["c1"]), "C0": C0, "C": C,
            "logC": log_c}


def _l3_f(p, X):
    # Eq. 6 as printed: E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma
    return (p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] * X["r"] ** p["eta"] / X["D"] ** p["beta"]
            + p["C"] / (X["r"] + p["eps"]) ** p["gamma"])


# -- L3u: L3 without the constraint trick (a diagnostic, not one of the paper's forms) ------------------
#   L3u = E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma with eta = exp(leta) > 0 and C = exp(c) free
#   log L3u = LSE(t_E, t_A, t_B, t_C):  t_B = b + eta log r - beta log D (-inf at r = 0),  t_C = c - gamma log(r+eps)
def _l3u_terms(c, X):
    eta = np.exp(c("leta"))
    lr = _safe_log(X["r"])
    t_B = np.where(X["r"] > 0, c("b") + eta * lr - c("beta") * X["lD"], -np.inf)  # log(B r^eta/D^beta)
    return _head(c, X) + [(t_B, {"b": np.ones(1), "leta": eta * lr, "beta": -X["lD"]}), _r_term(c, X, "c")]  # + t_C


def _l3u_nat(t, X):
    return {**_exp_nat(t, "beta", "gamma", "eps"), "B": np.exp(t["b"]), "eta": np.exp(t["leta"]), "C": np.exp(t["c"])}


# -- L4 ----------------------------------------------------------------------------------------------
#   L4 = E + A/N^alpha + B bb^r/D^beta + C/cc^r                             (§3.1, Table 1; bb, cc > 0)
#   log L4 = LSE(t_E, t_A, t_B, t_C):  t_B = b + r log bb - beta log D,  t_C = c - r log cc
def _l4_terms(c, X):
    return _head(c, X) + [
        (c("b") + X["r"] * c("lbb") - c("beta") * X["lD"], {"b": np.ones(1), "lbb": X["r"], "beta": -X["lD"]}),  # t_B
        (c("c") - X["r"] * c("lcc"), {"c": np.ones(1), "lcc": -X["r"]}),  # t_C
    ]


def _l4_nat(t, X):
    return {**_exp_nat(t, "beta"), "B": np.exp(t["b"]), "bb": np.exp(t["lbb"]), "C": np.exp(t["c"]),
            "cc": np.exp(t["lcc"])}


def _l4_f(p, X):
    return (p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] * p["bb"] ** X["r"] / X["D"] ** p["beta"]
            + p["C"] / p["cc"] ** X["r"])


# -- L5 ----------------------------------------------------------------------------------------------
#   L5 = E + A/N^alpha + B/(r D + (1 - r) sigma)^beta                       (§3.1, Table 1; sigma > 0)
#   log L5 = LSE(t_E, t_A, t_B):  t_B = b - beta log(r D + (1 - r) sigma)
def _l5_terms(c, X):
    sigma = np.exp(c("lsigma"))
    mix = X["r"] * X["D"] + (1 - X["r"]) * sigma  # the effective data r D + (1 - r) sigma
    return _head(c, X) + [(c("b") - c("beta") * np.log(mix),  # t_B
                           {"b": np.ones(1), "beta": -np.log(mix), "lsigma": -c("beta") * (1 - X["r"]) * sigma / mix})]


def _l5_nat(t, X):
    return {**_exp_nat(t, "beta"), "B": np.exp(t["b"]), "sigma": np.exp(t["lsigma"])}


def _l5_f(p, X):
    return p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] / (X["r"] * X["D"] + (1 - X["r"]) * p["sigma"]) ** p["beta"]


# -- L6 ----------------------------------------------------------------------------------------------
#   L6 = E + A/N^alpha + B e^r/D^beta + C/(r+eps)^gamma                      (§3.1, Table 1)
#   log L6 = LSE(t_E, t_A, t_B, t_C):  t_B = b + r - beta log D,  t_C = c - gamma log(r+eps)
def _l6_terms(c, X):
    return _head(c, X) + [(c("b") + X["r"] - c("beta") * X["lD"], {"b": np.ones(1), "beta": -X["lD"]}),  # t_B
                          _r_term(c, X, "c")]  # t_C


def _l6_f(p, X):
    return (p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] * np.exp(X["r"]) / X["D"] ** p["beta"]
            + p["C"] / (X["r"] + p["eps"]) ** p["gamma"])


# -- L7 ----------------------------------------------------------------------------------------------
#   L7 = E + A/N^alpha + B (r+eps)^eta/D^beta + C/(r+eps)^gamma              (§3.1, Table 1)
# with L3's constraint trick (eta = 1 + exp(eta1), C = C0 + C1) but L7's own C0 (module docstring):
#   C0 = B eta (1+eps)^(eta+gamma) / (gamma D_min^beta)
#   log L7 = LSE(t_E, t_A, t_B, t_C1, t_C0):  t_B = b + eta log(r+eps) - beta log D,
#   t_C1 = c1 - gamma log(r+eps),  t_C0 = log C0 - gamma log(r+eps)
def _l7_terms(c, X):
    eta1 = c("eta1")
    eta = 1 + np.exp(eta1)
    re = X["r"] + c("eps")
    lre = np.log(re)
    t_B = c("b") + eta * lre - c("beta") * X["lD"]  # log(B (r+eps)^eta / D^beta)
    g2 = {"b": np.ones(1), "eta1": np.exp(eta1) * lre, "beta": -X["lD"], "eps": eta / re}
    t_C1, g1 = _r_term(c, X, "c1")  # log(C1 / (r+eps)^gamma)
    c0, gc0 = _constraint_c0(c, X, eta, np.exp(eta1), form="L7")  # L7's own C0: (1+eps)^(eta+gamma)
    g4 = {**gc0, "gamma": gc0["gamma"] - lre, "eps": gc0["eps"] - c("gamma") / re}
    return _head(c, X) + [(t_B, g2), (t_C1, g1), (c0 - c("gamma") * lre, g4)]  # last: t_C0 = log(C0/(r+eps)^gamma)


def _l7_nat(t, X):
    return _l3_nat(t, X, form="L7")


def _l7_f(p, X):
    re = X["r"] + p["eps"]
    return p["E"] + p["A"] / X["N"] ** p["alpha"] + p["B"] * re ** p["eta"] / X["D"] ** p["beta"] + p["C"] / re ** p["gamma"]


def _grid(names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    g = {}
    for n in names:
        if n == "e":
            g[n] = LOG_E
        elif n in ("a", "b", "c", "c1", "f", "lsigma"):
            g[n] = LOG_COEF
        elif n == "eps":
            g[n] = EPS
        else:  # exponents and their transforms, log-bases, log-weights
            g[n] = EXPONENT
    return g


def _bounds(names: tuple[str, ...], constrained: bool) -> dict[str, tuple[float | None, float | None]]:
    b: dict[str, tuple[float | None, float | None]] = {n: (None, None) for n in names}
    if "eps" in b:
        b["eps"] = (EPS_MIN, None)
    if constrained:
        b["gamma"] = (GAMMA_MIN, None)
    return b


def _law(name, names, formula, terms, nat, f, constrained=False) -> Law:
    names = tuple(names)
    return Law(name, names, formula, terms, nat, f, _grid(names), _bounds(names, constrained), constrained=constrained)


_L3_NAMES = ("e", "a", "alpha", "b", "beta", "c1", "gamma", "eta1", "eps")
LAWS: dict[str, Law] = {
    "L1": _law("L1", ("e", "a", "alpha", "b", "beta", "c", "gamma", "eps"), "E + A/N^α + B/D^β + C/(r+ε)^γ",
               _l1_terms, _l1_nat, _l1_f),
    "L2": _law("L2", ("e", "a", "alpha", "b", "beta", "c", "gamma", "eps", "leta"),
               "E + A/N^α + (B/D^β + C/(r+ε)^γ)^η", _l2_terms, _l2_nat, _l2_f),
    "L3": _law("L3", _L3_NAMES, "E + A/N^α + B·r^η/D^β + C/(r+ε)^γ", _l3_terms, _l3_nat, _l3_f, constrained=True),
    "L3u": _law("L3u", ("e", "a", "alpha", "b", "beta", "c", "gamma", "leta", "eps"),
                "E + A/N^α + B·r^η/D^β + C/(r+ε)^γ, η > 0 and C free (no constraint trick)",
                _l3u_terms, _l3u_nat, _l3_f),
    "L4": _law("L4", ("e", "a", "alpha", "b", "lbb", "beta", "c", "lcc"), "E + A/N^α + B·b^r/D^β + C/c^r",
               _l4_terms, _l4_nat, _l4_f),
    "L5": _law("L5", ("e", "a", "alpha", "b", "beta", "lsigma"), "E + A/N^α + B/(r·D + (1−r)·σ)^β",
               _l5_terms, _l5_nat, _l5_f),
    "L6": _law("L6", ("e", "a", "alpha", "b", "beta", "c", "gamma", "eps"), "E + A/N^α + B·e^r/D^β + C/(r+ε)^γ",
               _l6_terms, _l1_nat, _l6_f),
    "L7": _law("L7", _L3_NAMES, "E + A/N^α + B·(r+ε)^η/D^β + C/(r+ε)^γ", _l7_terms, _l7_nat, _l7_f,
               constrained=True),
}


# -- the Cross-Domain D-CPT Law (Eq. 7-9) --------------------------------------------------------------
#
#   L(N, D, r, K) = E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma + F/K^mu                   (Eq. 7)
#
# L3 (Eq. 6, with its constraint trick) plus a domain term F/K^mu, where K, the Domain-specific Learnable
# Coefficient, comes from a short probe run on the domain (k1, k2, k3: :func:`learnability`):
#
#   K1 = w1/k1,   K2 = w2 k2,   K3 = w1/k1 + w2 k2 (the paper's choice, Eq. 9),   K4 = K3 + w3/k3
#
# Fitted in logs: log L = LSE(t_E, t_A, t_B, t_C1, t_C0 (L3's five terms), t_F) with
#     t_F = f - mu log K,   K = sum of exp(lw_i) times its feature (w_i = exp(lw_i) > 0)
# Parameters: L3's nine, then f, mu, and lw1, lw2, lw3 as the form uses them.
CROSS_FORMS = {"K1": ("w1",), "K2": ("w2",), "K3": ("w1", "w2"), "K4": ("w1", "w2", "w3")}


CROSS_FEATURES = {"K1": ("k1",), "K2": ("k2",), "K3": ("k1", "k2"), "K4": ("k1", "k2", "k3")}


def learnability(form: str, w: dict[str, float], k1: Any = None, k2: Any = None, k3: Any = None) -> np.ndarray:
    """The Domain-specific Learnable Coefficient K (Eq. 9 and its rivals) from probe-run features.

    k1: domain validation loss early in a probe run (the paper: after 1k steps); k2: the loss drop over
    the probe (L_0 - L_5k); k3: the drop's second difference (L_0 - 2 L_5k + L_10k). Each form needs its
    own features (K1: k1; K2: k2; K3: k1, k2; K4: k1, k2, k3) and weights; K must come out positive.
    Features broadcast together; K has their broadcast shape. Raises ``ValueError`` for an unknown form, missing
    or negative weights, a missing feature, k1 or k3 not positive, or K not positive.
    """
    if form not in CROSS_FORMS:
        raise ValueError(f"unknown K form {form!r}; valid: {', '.join(CROSS_FORMS)}")
    _check.params("w", w, CROSS_FORMS[form], nonnegative=CROSS_FORMS[form])
    given = {"k1": k1, "k2": k2, "k3": k3}
    k = {}
    for name in CROSS_FEATURES[form]:
        if given[name] is None:
            raise ValueError(f"{name} is needed by the K form {form}")
        k[name] = _check.array(name, given[name], positive_=name != "k2")
    K = np.zeros(np.broadcast_shapes(*(v.shape for v in k.values())))
    if "w1" in CROSS_FORMS[form]:
        K = K + w["w1"] / k["k1"]
    if "w2" in CROSS_FORMS[form]:
        K = K + w["w2"] * k["k2"]
    if "w3" in CROSS_FORMS[form]:
        K = K + w["w3"] / k["k3"]
    if not (K > 0).all():
        raise ValueError(f"K = {form}(k) must be positive for F/K^mu, got {K[~(K > 0)].ravel()[:5].tolist()} "
                         "(check the signs of k2 and of the weights)")
    return K


def _cross_terms(form: str):
    parts = CROSS_FORMS[form]

    def terms(c, X):
        comps = []  # K's parts (Eq. 9 and its rivals): w1/k1, w2 k2, w3/k3
        if "w1" in parts:
            comps.append(("lw1", np.exp(c("lw1")) / X["k1"]))
        if "w2" in parts:
            comps.append(("lw2", np.exp(c("lw2")) * X["k2"]))
        if "w3" in parts:
            comps.append(("lw3", np.exp(c("lw3")) / X["k3"]))
        K = sum(v for _, v in comps)
        mu = c("mu")
        g = {"f": np.ones(1), "mu": -np.log(K)}
        for name, v in comps:
            g[name] = -mu * v / K
        return _l3_terms(c, X) + [(c("f") - mu * np.log(K), g)]  # Eq. 6's terms + t_F = log(F/K^mu)

    return terms


def _cross_nat(form: str):
    def nat(t, X):
        out = _l3_nat(t, X)
        out.update(F=np.exp(t["f"]), mu=t["mu"])
        for w in CROSS_FORMS[form]:
            out[w] = np.exp(t["l" + w])
        return out

    return nat


def _cross_f(form: str):
    def f(p, X):
        K = learnability(form, p, X.get("k1"), X.get("k2"), X.get("k3"))
        return _l3_f(p, X) + p["F"] / K ** p["mu"]  # Eq. 7 as printed: L3 + F/K^mu

    return f


@dataclass(frozen=True)
class CrossLaw(Law):
    """The Cross-Domain D-CPT Law (Eq. 7) with K of the form ``form`` (K1-K4, Eq. 9): a :class:`Law` whose points
    also carry the probe features of :data:`CROSS_FEATURES` (arrays of length n, like N, D, r)."""

    form: str = "K3"

    @property
    def features(self) -> tuple[str, ...]:
        return CROSS_FEATURES[self.form]


def _cross(form: str) -> CrossLaw:
    names = _L3_NAMES + ("f", "mu") + tuple("l" + w for w in CROSS_FORMS[form])
    return CrossLaw(f"cross-{form}", names, f"L3 + F/K^μ, K = {form}", _cross_terms(form), _cross_nat(form),
                    _cross_f(form), _grid(names), _bounds(names, True), constrained=True, form=form)


CROSS_LAWS: dict[str, CrossLaw] = {f: _cross(f) for f in CROSS_FORMS}


def get_law(name: str) -> Law:
    """A law by name: L1 ... L7 and L3u (§3.1), or cross-K1 ... cross-K4 (Eq. 7, 9). ``TypeError`` for a name that
    is not a str, ``ValueError`` for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a law's name (a str such as 'L3'), got {type(name).__name__} {name!r:.60}")
    if name in LAWS:
        return LAWS[name]
    if name.startswith("cross-") and name[6:] in CROSS_LAWS:
        return CROSS_LAWS[name[6:]]
    raise ValueError(f"unknown law {name!r}; valid: {', '.join(LAWS)}, " + ", ".join(f"cross-{k}" for k in CROSS_LAWS))


def check_law(law: Any) -> Law:
    """``law`` itself if it is a :class:`Law`; a ``TypeError`` naming the parameter otherwise (a name too)."""
    if not isinstance(law, Law):
        hint = f" (for a name use get_law({law!r}))" if isinstance(law, str) else ""
        raise TypeError(f"law must be a Law such as LAWS['L3']{hint}, got {type(law).__name__} {law!r:.60}")
    return law


def reduce_cross(law_params: dict[str, float], form: str, k1: float | None = None, k2: float | None = None,
                 k3: float | None = None) -> dict[str, float]:
    """Eq. (8): for a known domain (K = K0) the cross-domain law is an ordinary L3 with E0 = E + F/K0^mu. Returns
    ``law_params`` with E replaced. ``ValueError`` when E, F or mu are missing, E or F negative, the features are
    not one domain's scalars, or K0 is not positive (:func:`learnability`)."""
    _check.params("law_params", law_params, ("E", "F", "mu"), nonnegative=("E", "F"))
    K0 = learnability(form, law_params, k1, k2, k3)
    if K0.ndim:
        raise ValueError(f"k1, k2, k3 must be one domain's numbers (scalars), got shape {K0.shape}")
    out = dict(law_params)
    out["E"] = law_params["E"] + law_params["F"] / float(K0) ** law_params["mu"]
    return out
