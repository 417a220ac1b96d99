"""Fitting a D-CPT law the paper's way (App. E.3): the points, the metrics, the fit.

- :class:`Points`  observed losses L at (N, D, r), one row per evaluation, length n
- :func:`huber`, :func:`r2`  the metrics (Huber on log-loss residuals; R^2 on raw losses)
- :func:`fit` -> :class:`Fit`  Huber(delta = 1e-3) on log residuals, L-BFGS from the initialisation grid

Objective (App. E.3): ``sum_i Huber_delta(log L_hat(N_i, D_i, r_i) - log L_i)`` with delta = 1e-3, minimised by
L-BFGS (scipy's L-BFGS-B, bounds only where the law needs them: eps > 0, and gamma > 0 where C0 is used).
Starts: the paper's initialisation grid (277,830 points for L3; :data:`repro.dcpt.laws.LOG_COEF` and its
neighbours). Running L-BFGS from every grid point is far beyond a CPU notebook, so the whole grid (or a seeded
random subset of it, ``grid_size``) is *evaluated* -- vectorised, in chunks -- and L-BFGS runs from the
``n_starts`` best grid points; the best local minimum wins.

Metrics: R^2 on the raw loss; Huber(delta = 1e-3) on log-loss residuals, reported as the mean per
point (the paper does not say how it normalises its reported Huber); AIC/BIC from the log residuals.

Units: the functions are unit-agnostic. The paper measures N in billions of parameters and D in billions of
tokens; notebook 03 (:func:`repro.dcpt.grid.points`) gives N in millions of non-embedding parameters and D in
millions of tokens, so that the initialisation grid sits at the same magnitudes. Losses are in nats per token.

Held-out fits (Tables 2-4, 8) are in :mod:`repro.dcpt.generalise`, the bootstrap over runs in
:mod:`repro.dcpt.resample`, the process pool in :mod:`repro.dcpt.parallel`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from . import _check
from .laws import Law, check_law

DELTA = 1e-3
SENTINEL = 1e30  # the scaled objective where the law overflows (L-BFGS backs off from it)
MAXITER = 10_000  # L-BFGS iterations per start (the stored grid's slowest fit needs about 2,700)
STALL_RTOL = 1e-10  # a restart after a line-search failure that gains less than this (relative) confirms a minimum
# Whatever L-BFGS's own stopping test says, a fit counts as converged only where the projected gradient is at
# most this times the scaled objective (sum Huber / delta): next to a region where the law overflows, L-BFGS
# stops (no relative reduction, or a failed line search) at points that are no minimum, with gradients in the
# hundreds; the 32 fits of notebook 03 (default) stop 11 to 80 times below this bar
GTOL_CONVERGED = 1e-3


# -- data ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Points:
    """Observed losses ``L`` at model size ``N``, data size ``D``, ratio ``r`` (one row per evaluation).

    ``run`` names the training run a row comes from (bootstrap resamples runs, not rows); ``domain``
    and the probe features ``k1, k2, k3`` are needed only by the cross-domain law. Every field is a 1-D array of
    length n. Units are the caller's (notebook 03: N in millions of non-embedding parameters, D in millions of
    tokens, L in nats per token; the paper: billions). Raises ``ValueError`` for a missing N, D, r or L, arrays of
    other lengths or dimensions, non-finite values, r outside [0, 1], N, D, L, k1, k2 or k3 not positive, or no
    rows; ``TypeError`` for values that are not numbers.
    """

    N: np.ndarray
    D: np.ndarray
    r: np.ndarray
    L: np.ndarray
    run: np.ndarray | None = None
    domain: np.ndarray | None = None
    k1: np.ndarray | None = None
    k2: np.ndarray | None = None
    k3: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = None
        for name in ("N", "D", "r", "L"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required (got None)")
        for name in ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3"):
            v = getattr(self, name)
            if v is None:
                continue
            try:
                arr = np.asarray(v) if name in ("run", "domain") else np.asarray(v, dtype=float)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{name} must hold numbers: {e}") from None
            object.__setattr__(self, name, arr)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, N has {n}")
            if name in ("run", "domain"):
                continue
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} holds NaN or infinite values at rows {np.flatnonzero(~np.isfinite(arr))[:10].tolist()}")
            if name == "r":
                bad = np.flatnonzero((arr < 0) | (arr > 1))
                if bad.size:
                    raise ValueError(f"ratio r must lie in [0, 1]; rows {bad[:10].tolist()} hold {arr[bad[:10]].tolist()}")
            elif name in ("N", "D", "L", "k1", "k2", "k3"):
                bad = np.flatnonzero(arr <= 0)
                if bad.size:
                    raise ValueError(f"{name} must be positive; rows {bad[:10].tolist()} hold {arr[bad[:10]].tolist()}")
        if n == 0:
            raise ValueError("no points")

    @property
    def n(self) -> int:
        return len(self.L)

    def subset(self, mask: np.ndarray) -> Points:
        """The rows where the boolean ``mask`` (one entry per row) is true, or the rows at integer indices.
        ``ValueError`` for a mask of the wrong length or indices out of range, ``TypeError`` for another dtype."""
        mask = np.asarray(mask)
        if mask.dtype == bool:
            if mask.shape != (self.n,):
                raise ValueError(f"mask must have one entry per point ({self.n}), got shape {mask.shape}")
        elif np.issubdtype(mask.dtype, np.integer) and mask.ndim == 1:
            if mask.size and (mask.min() < -self.n or mask.max() >= self.n):
                raise ValueError(f"mask holds indices outside [0, {self.n})")
        else:
            raise TypeError(f"mask must be a boolean mask or integer indices, got dtype {mask.dtype}")
        return Points(**{k: None if getattr(self, k) is None else getattr(self, k)[mask]
                         for k in ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3")})

    def X(self, d_min: float) -> dict[str, np.ndarray]:
        """The law's inputs (:meth:`repro.dcpt.laws.Law.log_predict`): N, D, r, lN = log N, lD = log D (length n),
        the scalar D_min (App. E.3's constraint), and the probe features present. ``ValueError`` for d_min <= 0."""
        d_min = _check.positive("d_min", d_min)
        X = {"N": self.N, "D": self.D, "r": self.r, "lN": np.log(self.N), "lD": np.log(self.D), "d_min": d_min}
        for k in ("k1", "k2", "k3"):
            if getattr(self, k) is not None:
                X[k] = getattr(self, k)
        return X

    @classmethod
    def from_frame(cls, df: Any, **columns: str) -> Points:
        """From a table with columns N, D, r, L (rename with keyword arguments, e.g. ``L="loss"``).

        N, D, r, L must be there; run, domain, k1, k2, k3 are taken where the table has them. ``ValueError`` for a
        missing column, ``TypeError`` for an unknown field or a ``df`` that is not a table, and what
        :class:`Points` raises."""
        fields = ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3")
        unknown = sorted(set(columns) - set(fields))
        if unknown:
            raise TypeError(f"from_frame got unknown field(s) {unknown}; fields: {', '.join(fields)}")
        if not hasattr(df, "__getitem__") or not hasattr(df, "__contains__"):
            raise TypeError(f"df must be a table (pandas DataFrame or dict of columns), got {type(df).__name__}")
        names = {k: columns.get(k, k) for k in fields}
        have = list(getattr(df, "columns", df))
        for k in ("N", "D", "r", "L"):
            if names[k] not in df:
                raise ValueError(f"column {names[k]!r} for {k} is not in the table (columns: {have}); "
                                 f"name it with {k}=\"...\"")
        return cls(**{k: (np.asarray(df[c]) if c in df else None) for k, c in names.items()})


# -- metrics ---------------------------------------------------------------------------------------------
def _huber(residual: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(residual)
    return np.where(a <= delta, 0.5 * residual**2, delta * (a - 0.5 * delta))


def huber(residual: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Huber loss per residual (App. E.3's objective, delta = 1e-3 on log-loss residuals): r^2/2 inside
    [-delta, delta], delta(|r| - delta/2) outside; the shape of ``residual``. ``ValueError`` for delta <= 0 or
    non-finite residuals."""
    delta = _check.positive("delta", delta)
    return _huber(_check.array("residual", residual), delta)


def r2(L: np.ndarray, L_hat: np.ndarray) -> float:
    """Coefficient of determination of predictions ``L_hat`` for observed ``L`` (the paper's R^2, Tables 2-4),
    1 - SS_res/SS_tot on the raw losses, arrays of one shape. NaN when L is constant: R^2 is undefined there.
    ``ValueError`` for shapes that differ, empty or non-finite arrays."""
    L, L_hat = _check.array("L", L), _check.array("L_hat", L_hat)
    if L.shape != L_hat.shape or L.size == 0:
        raise ValueError(f"L and L_hat must have the same non-empty shape, got {L.shape} and {L_hat.shape}")
    ss_res = float(np.sum((L - L_hat) ** 2))
    ss_tot = float(np.sum((L - np.mean(L)) ** 2))
    return 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")


# -- the fit -----------------------------------------------------------------------------------------
@dataclass
class Fit:
    """A fitted law.

    ``converged``: the best start's L-BFGS run stopped by its own test (relative reduction of the objective
    below ftol, or projected gradient below gtol), or stopped because its line search found no decrease and a
    fresh restart from there gains less than ``STALL_RTOL`` (relative); and in either case its projected
    gradient is at most ``GTOL_CONVERGED`` times the scaled objective: a minimum to float precision. It is
    False when the run hit the iteration limit (``maxiter``), or stopped where the gradient is still large
    (next to a region where the law overflows). ``message``, ``iterations`` (restarts included)
    and ``grad_norm`` (max-norm of the projected gradient of the scaled objective sum(Huber)/delta at the
    optimum) say how it ended."""

    law: Law
    theta: np.ndarray  # [P], fit-space (law.names)
    d_min: float
    objective: float  # sum of Huber over the fitted points
    n: int
    n_starts: int
    grid_evaluated: int
    seconds: float
    converged: bool
    params: dict[str, float] = field(default_factory=dict)
    message: str = ""
    iterations: int = 0
    grad_norm: float = float("nan")

    def _points(self, points: Points) -> dict[str, np.ndarray]:
        _check.instance("points", points, Points)
        return points.X(self.d_min)

    def log_predict(self, points: Points) -> np.ndarray:
        """log L of the fitted law at ``points``, length ``points.n``. ``TypeError`` for points not :class:`Points`."""
        return self.law.log_predict(self.theta, self._points(points))[0][0]

    def predict(self, points: Points) -> np.ndarray:
        """L of the fitted law at ``points`` (nats per token where the points are), length ``points.n``."""
        return np.exp(self.log_predict(points))

    def metrics(self, points: Points) -> dict[str, float]:
        """R^2 (raw loss), mean Huber (delta = 1e-3) on log residuals, RMSE of log residuals, and n, on any points
        (the metrics of Tables 2-4)."""
        res = self.log_predict(points) - np.log(points.L)
        return {"r2": r2(points.L, np.exp(self.log_predict(points))), "huber": float(np.mean(_huber(res, DELTA))),
                "rmse_log": float(np.sqrt(np.mean(res**2))), "n": points.n}

    def information(self, points: Points) -> dict[str, float]:
        """AIC and BIC from Gaussian log residuals: n log(RSS/n) + 2k, + k log n (k = the law's parameter count;
        a workbook addition, the paper does not report them)."""
        res = self.log_predict(points) - np.log(points.L)
        n, k = points.n, self.law.n_params
        base = n * math.log(max(float(np.sum(res**2)), 1e-300) / n)
        return {"aic": base + 2 * k, "bic": base + k * math.log(n)}


def _objective(law: Law, X: dict[str, np.ndarray], logL: np.ndarray, delta: float):
    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            lp, G = law.log_predict(theta, X, grad=True)
            res = lp[0] - logL
            val = float(np.sum(_huber(res, delta))) / delta  # scaled: L-BFGS's tolerances are absolute-ish
            g = (G[0] * np.clip(res, -delta, delta)).sum(axis=1) / delta  # no BLAS: tiny, and BLAS threads spin
        if not np.isfinite(val) or not np.all(np.isfinite(g)):
            return SENTINEL, np.zeros_like(theta)
        return val, g

    return f


def projected_gradient(g: np.ndarray, x: np.ndarray, bounds: Sequence[tuple[float | None, float | None]]) -> np.ndarray:
    """The gradient with the components that push against an active bound set to 0 (first-order optimality
    under bounds: this is 0 at a constrained minimum). ``g`` and ``x`` of length P, ``bounds`` P (lo, hi) pairs
    (None for no bound); returns length P."""
    pg = np.array(g, dtype=float)
    for j, (lo, hi) in enumerate(bounds):
        if (lo is not None and x[j] <= lo and pg[j] > 0) or (hi is not None and x[j] >= hi and pg[j] < 0):
            pg[j] = 0.0
    return pg


def grid_starts(law: Law, grid_size: int | None = None, seed: int = 0) -> np.ndarray:
    """The law's initialisation grid (App. E.3: the product of ``law.grid``'s value sets, 277,830 points for L3;
    all of it, or ``grid_size`` seeded random points), clipped to bounds and without repeats: [S, P]. Raises
    ``ValueError`` for grid_size < 1 or a full grid over 2,000,000 points, ``TypeError`` for a law that is not a
    :class:`repro.dcpt.laws.Law`."""
    check_law(law)
    grid_size = _check.optional_integer("grid_size", grid_size, 1)
    seed = _check.integer("seed", seed, 0)
    values = [np.asarray(law.grid[n], float) for n in law.names]
    total = math.prod(len(v) for v in values)
    if grid_size is None or grid_size >= total:
        if total > 2_000_000:
            raise ValueError(f"{law.name}'s grid has {total:,} points; pass grid_size to subsample it")
        rows = np.array(list(itertools.product(*values)))
    else:
        rng = np.random.default_rng(seed)
        rows = np.stack([v[rng.integers(0, len(v), grid_size)] for v in values], axis=1)
    for j, n in enumerate(law.names):
        lo, hi = law.bounds.get(n, (None, None))
        rows[:, j] = np.clip(rows[:, j], lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
    return np.unique(rows, axis=0)


def grid_objective(law: Law, starts: np.ndarray, X: dict[str, np.ndarray], logL: np.ndarray,
                   delta: float = DELTA, chunk_cells: int = 4_000_000) -> np.ndarray:
    """Sum of Huber (App. E.3's objective) at each start row of ``starts`` [S, P] against ``logL`` [n] at the
    points ``X``, vectorised over starts in chunks of about ``chunk_cells`` values: [S], inf where the law
    overflows. ``ValueError`` for delta <= 0, chunk_cells < 1, or arrays of the wrong dimension."""
    check_law(law)
    starts = _check.array("starts", starts, ndim=2)
    logL = _check.array("logL", logL, ndim=1)
    delta = _check.positive("delta", delta)
    chunk_cells = _check.integer("chunk_cells", chunk_cells, 1)
    out = np.empty(len(starts))
    step = max(1, chunk_cells // max(1, len(logL)))
    with np.errstate(all="ignore"):
        for i in range(0, len(starts), step):
            lp, _ = law.log_predict(starts[i:i + step], X)
            out[i:i + step] = _huber(lp - logL, delta).sum(axis=1)
    out[~np.isfinite(out)] = np.inf
    return out


def fit(law: Law, points: Points, *, n_starts: int = 32, grid_size: int | None = None, seed: int = 0,
        delta: float = DELTA, d_min: float | None = None, extra_starts: Sequence[np.ndarray] = (),
        maxiter: int = MAXITER) -> Fit:
    """Fit ``law`` to ``points`` the paper's way (App. E.3): evaluate the initialisation grid, L-BFGS from the best
    ``n_starts`` (plus ``extra_starts``, each of length P), minimising the sum of Huber_delta on log residuals.

    ``d_min``: D_min of the constraint trick, by default the smallest D of the points; it must be positive and
    not above the smallest D (the constraint only holds for D >= D_min). Raises ``ValueError`` when no start
    reaches a finite objective (the law overflows everywhere L-BFGS went), for n_starts < 0, grid_size < 1,
    maxiter < 1, delta <= 0, n_starts = 0 without extra starts, an extra start of the wrong length, no more points
    than parameters, or missing probe features; ``TypeError`` for a law or points of the wrong type. See
    :class:`Fit` for ``converged``.
    """
    check_law(law)
    _check.instance("points", points, Points)
    n_starts = _check.integer("n_starts", n_starts, 0)
    grid_size = _check.optional_integer("grid_size", grid_size, 1)
    seed = _check.integer("seed", seed, 0)
    delta = _check.positive("delta", delta)
    maxiter = _check.integer("maxiter", maxiter, 1)
    extra = []
    for i, x0 in enumerate(extra_starts):
        x0 = _check.array(f"extra_starts[{i}]", x0, ndim=1)
        if x0.shape != (law.n_params,):
            raise ValueError(f"extra_starts[{i}] has {x0.size} values, {law.name} has {law.n_params} parameters")
        extra.append(x0)
    if points.n <= law.n_params:
        raise ValueError(f"{law.name} has {law.n_params} parameters: it needs more than {law.n_params} points, "
                         f"got {points.n}")
    if n_starts == 0 and not extra:
        raise ValueError(f"n_starts must be at least 1 (or 0 with extra_starts), got {n_starts}")
    missing = [k for k in law.features if getattr(points, k) is None]
    if missing:
        raise ValueError(f"{law.name} needs the probe features {', '.join(missing)} in the points")
    t0 = time.perf_counter()
    if d_min is None:
        d_min = float(points.D.min())
    else:
        d_min = _check.positive("d_min", d_min)
        if d_min > points.D.min() * (1 + 1e-12):
            raise ValueError(f"d_min = {d_min:g} is above the smallest D of the points ({points.D.min():g}): the "
                             "constraint trick only holds for D >= D_min")
    X, logL = points.X(d_min), np.log(points.L)
    starts = grid_starts(law, grid_size, seed) if n_starts else np.zeros((0, law.n_params))
    scores = grid_objective(law, starts, X, logL, delta) if n_starts else np.zeros(0)
    order = np.argsort(scores, kind="stable")[:n_starts]
    chosen = [starts[i] for i in order if np.isfinite(scores[i])] + extra
    if not chosen:
        raise ValueError(f"{law.name}: the objective is not finite at any start")
    bounds = [law.bounds.get(n, (None, None)) for n in law.names]
    f = _objective(law, X, logL, delta)

    def lbfgs(x0: np.ndarray):
        return minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-14, "gtol": 1e-10})

    best = None
    # line searches probe far-out parameters where exp/power overflow; those points score inf and are left
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in chosen:
            res = lbfgs(x0)
            if best is None or res.fun < best.fun:
                best = res
        if not best.fun < SENTINEL:
            raise ValueError(f"{law.name}: no start reached a finite objective ({len(chosen)} L-BFGS runs all ended "
                             "where the law or its gradient overflows); the starts or the data are out of the law's "
                             "range")
        # status 2: the line search found no decrease. Restart with a fresh memory: no gain confirms a minimum
        iterations, stalled = int(best.nit), False
        for _ in range(3):
            if best.status != 2:
                break
            again = lbfgs(best.x)
            iterations += int(again.nit)
            gain = best.fun - again.fun
            if again.fun <= best.fun:
                best = again
            if gain <= STALL_RTOL * max(1.0, abs(float(best.fun))):
                stalled = True
                break
        theta = np.asarray(best.x)
        params = law.params(theta, {"d_min": d_min})
    pg = float(np.max(np.abs(projected_gradient(best.jac, theta, bounds))))
    converged = bool((best.status == 0 or (best.status == 2 and stalled))
                     and pg <= GTOL_CONVERGED * max(1.0, abs(float(best.fun))))
    message = best.message if isinstance(best.message, str) else best.message.decode()
    return Fit(law, theta, d_min, float(best.fun) * delta, points.n, len(chosen), len(starts),
               time.perf_counter() - t0, converged, params, message=message, iterations=iterations, grad_norm=pg)
