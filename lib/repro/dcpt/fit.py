"""Fitting a D-CPT law the paper's way (App. E.3), with metrics, generalisation splits and bootstrap.

Objective: the sum over points of Huber_delta(log L_hat - log L), delta = 1e-3, minimised by L-BFGS
(scipy's L-BFGS-B, bounds only where the law needs them: eps > 0, and gamma > 0 where C0 is used).
Starts: the paper's initialisation grid (277,830 points for L3). Running L-BFGS from every grid point
is far beyond a CPU notebook, so the whole grid (or a seeded random subset of it, ``grid_size``) is
*evaluated* -- vectorised, in chunks -- and L-BFGS runs from the ``n_starts`` best grid points; the
best local minimum wins.

Metrics: R^2 on the raw loss; Huber(delta = 1e-3) on log-loss residuals, reported as the mean per
point (the paper does not say how it normalises its reported Huber); AIC/BIC from the log residuals.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from .laws import Law

DELTA = 1e-3


# -- data ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Points:
    """Observed losses ``L`` at model size ``N``, data size ``D``, ratio ``r`` (one row per evaluation).

    ``run`` names the training run a row comes from (bootstrap resamples runs, not rows); ``domain``
    and the probe features ``k1, k2, k3`` are needed only by the cross-domain law.
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
        for name in ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3"):
            v = getattr(self, name)
            if v is None:
                continue
            arr = np.asarray(v) if name in ("run", "domain") else np.asarray(v, dtype=float)
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
        mask = np.asarray(mask)
        return Points(**{k: None if getattr(self, k) is None else getattr(self, k)[mask]
                         for k in ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3")})

    def X(self, d_min: float) -> dict[str, np.ndarray]:
        X = {"N": self.N, "D": self.D, "r": self.r, "lN": np.log(self.N), "lD": np.log(self.D), "d_min": d_min}
        for k in ("k1", "k2", "k3"):
            if getattr(self, k) is not None:
                X[k] = getattr(self, k)
        return X

    @classmethod
    def from_frame(cls, df: Any, **columns: str) -> Points:
        """From a table with columns N, D, r, L (rename with keyword arguments, e.g. ``L="loss"``)."""
        names = {k: columns.get(k, k) for k in ("N", "D", "r", "L", "run", "domain", "k1", "k2", "k3")}
        return cls(**{k: (np.asarray(df[c]) if c in df else None) for k, c in names.items()})


# -- metrics ---------------------------------------------------------------------------------------------
def huber(residual: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Huber loss per residual: r^2/2 inside [-delta, delta], delta(|r| - delta/2) outside."""
    a = np.abs(residual)
    return np.where(a <= delta, 0.5 * residual**2, delta * (a - 0.5 * delta))


def r2(L: np.ndarray, L_hat: np.ndarray) -> float:
    """Coefficient of determination of predictions ``L_hat`` for observed ``L``."""
    ss_res = float(np.sum((L - L_hat) ** 2))
    ss_tot = float(np.sum((L - np.mean(L)) ** 2))
    return 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")


# -- the fit -----------------------------------------------------------------------------------------
@dataclass
class Fit:
    law: Law
    theta: np.ndarray
    d_min: float
    objective: float  # sum of Huber over the fitted points
    n: int
    n_starts: int
    grid_evaluated: int
    seconds: float
    converged: bool
    params: dict[str, float] = field(default_factory=dict)

    def log_predict(self, points: Points) -> np.ndarray:
        return self.law.log_predict(self.theta, points.X(self.d_min))[0][0]

    def predict(self, points: Points) -> np.ndarray:
        return np.exp(self.log_predict(points))

    def metrics(self, points: Points) -> dict[str, float]:
        """R^2 (raw loss), mean Huber on log residuals, RMSE of log residuals, on any points."""
        res = self.log_predict(points) - np.log(points.L)
        return {"r2": r2(points.L, np.exp(self.log_predict(points))), "huber": float(np.mean(huber(res))),
                "rmse_log": float(np.sqrt(np.mean(res**2))), "n": points.n}

    def information(self, points: Points) -> dict[str, float]:
        """AIC and BIC from Gaussian log residuals: n log(RSS/n) + 2k, + k log n."""
        res = self.log_predict(points) - np.log(points.L)
        n, k = points.n, self.law.n_params
        base = n * math.log(max(float(np.sum(res**2)), 1e-300) / n)
        return {"aic": base + 2 * k, "bic": base + k * math.log(n)}


def _objective(law: Law, X: dict[str, np.ndarray], logL: np.ndarray, delta: float):
    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            lp, G = law.log_predict(theta, X, grad=True)
            res = lp[0] - logL
            val = float(np.sum(huber(res, delta))) / delta  # scaled: L-BFGS's tolerances are absolute-ish
            g = (G[0] * np.clip(res, -delta, delta)).sum(axis=1) / delta  # no BLAS: tiny, and BLAS threads spin
        if not np.isfinite(val) or not np.all(np.isfinite(g)):
            return 1e30, np.zeros_like(theta)
        return val, g

    return f


def grid_starts(law: Law, grid_size: int | None = None, seed: int = 0) -> np.ndarray:
    """The law's initialisation grid (all of it, or ``grid_size`` seeded random points), clipped to bounds."""
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
    """Sum of Huber at each start row, vectorised over starts in chunks."""
    out = np.empty(len(starts))
    step = max(1, chunk_cells // max(1, len(logL)))
    with np.errstate(all="ignore"):
        for i in range(0, len(starts), step):
            lp, _ = law.log_predict(starts[i:i + step], X)
            out[i:i + step] = huber(lp - logL, delta).sum(axis=1)
    out[~np.isfinite(out)] = np.inf
    return out


def fit(law: Law, points: Points, *, n_starts: int = 32, grid_size: int | None = None, seed: int = 0,
        delta: float = DELTA, d_min: float | None = None, extra_starts: Sequence[np.ndarray] = (),
        maxiter: int = 2000) -> Fit:
    """Fit ``law`` to ``points``: evaluate the initialisation grid, L-BFGS from the best ``n_starts``."""
    if points.n <= law.n_params:
        raise ValueError(f"{law.name} has {law.n_params} parameters: it needs more than {law.n_params} points, "
                         f"got {points.n}")
    if n_starts < 0 or (n_starts == 0 and not len(extra_starts)):
        raise ValueError(f"n_starts must be at least 1 (or 0 with extra_starts), got {n_starts}")
    if law.name.startswith("cross-") and points.k1 is None:
        raise ValueError(f"{law.name} needs the probe features k1, k2 (and k3 for K4) in the points")
    t0 = time.perf_counter()
    d_min = float(points.D.min() if d_min is None else d_min)
    X, logL = points.X(d_min), np.log(points.L)
    starts = grid_starts(law, grid_size, seed) if n_starts else np.zeros((0, law.n_params))
    scores = grid_objective(law, starts, X, logL, delta) if n_starts else np.zeros(0)
    order = np.argsort(scores, kind="stable")[:n_starts]
    chosen = [starts[i] for i in order if np.isfinite(scores[i])] + [np.asarray(s, float) for s in extra_starts]
    if not chosen:
        raise ValueError(f"{law.name}: the objective is not finite at any start")
    bounds = [law.bounds.get(n, (None, None)) for n in law.names]
    f = _objective(law, X, logL, delta)
    best = None
    # line searches probe far-out parameters where exp/power overflow; those points score inf and are left
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in chosen:
            res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-10})
            if best is None or res.fun < best.fun:
                best = res
        theta = np.asarray(best.x)
        params = law.params(theta, {"d_min": d_min})
    return Fit(law, theta, d_min, float(best.fun) * delta, points.n, len(chosen), len(starts),
               time.perf_counter() - t0, bool(best.success), params)


# -- generalisation protocols -----------------------------------------------------------------------
Split = tuple[str, np.ndarray, np.ndarray]  # (name, train mask, test mask)


def ratio_splits(points: Points, n_test: int = 2) -> list[Split]:
    """Fit on all ratios but ``n_test``, test on those: every combination (36 for 9 ratios and 2)."""
    ratios = np.unique(points.r)
    if len(ratios) <= n_test:
        raise ValueError(f"need more than {n_test} distinct ratios, got {len(ratios)}")
    out = []
    for held in itertools.combinations(ratios, n_test):
        test = np.isin(points.r, held)
        out.append(("r=" + ",".join(f"{h:g}" for h in held), ~test, test))
    return out


def thirds_splits(points: Points) -> list[Split]:
    """Split each run's points into three contiguous thirds of D; fold i tests third i."""
    if points.run is None:
        raise ValueError("thirds_splits needs the run of every point")
    third = np.zeros(points.n, dtype=int)
    for run in np.unique(points.run):
        idx = np.flatnonzero(points.run == run)
        idx = idx[np.argsort(points.D[idx], kind="stable")]
        third[idx] = np.minimum(np.arange(len(idx)) * 3 // max(len(idx), 1), 2)
    return [(f"third {i + 1}", third != i, third == i) for i in range(3)]


def size_splits(points: Points) -> list[Split]:
    """Leave one model size out."""
    sizes = np.unique(points.N)
    if len(sizes) < 2:
        raise ValueError("need at least two model sizes")
    return [(f"N={s:g}", points.N != s, points.N == s) for s in sizes]


def domain_splits(points: Points, n_test: int = 2) -> list[Split]:
    """Fit on all domains but ``n_test``, test on those (15 splits for 6 domains and 2)."""
    if points.domain is None:
        raise ValueError("domain_splits needs the domain of every point")
    domains = np.unique(points.domain)
    if len(domains) <= n_test:
        raise ValueError(f"need more than {n_test} domains, got {len(domains)}")
    out = []
    for held in itertools.combinations(domains, n_test):
        test = np.isin(points.domain, held)
        out.append(("held out " + ",".join(map(str, held)), ~test, test))
    return out


def _cv_one(law_name: str, points: Points, split: Split, fit_kw: dict[str, Any], predict: bool = False
            ) -> dict[str, Any]:
    from .laws import get_law

    law = get_law(law_name)
    name, train, test = split
    tr, te = points.subset(train), points.subset(test)
    f = fit(law, tr, d_min=float(points.D.min()), **fit_kw)
    m_te, m_tr = f.metrics(te), f.metrics(tr)
    row = {"law": law.name, "split": name, "n_train": tr.n, "n_test": te.n,
           "r2_test": m_te["r2"], "huber_test": m_te["huber"], "rmse_log_test": m_te["rmse_log"],
           "r2_train": m_tr["r2"], "huber_train": m_tr["huber"]}
    if predict:
        row["predicted"] = f.predict(te)
    return row


def _fit_named(law_name: str, points: Points, fit_kw: dict[str, Any]) -> Fit:
    from .laws import get_law

    return fit(get_law(law_name), points, **fit_kw)


def _one_blas_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def parallel_map(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int = 1) -> list[Any]:
    """``[fn(*t) for t in tasks]``, in ``jobs`` forked worker processes when ``jobs > 1`` (order kept).

    The fits' linear algebra is tiny, so a multi-threaded BLAS only spins: every process here runs it on one
    thread (measured on 2 cores: 7x faster with two workers than with each worker's default BLAS pool).
    """
    from threadpoolctl import threadpool_limits

    if jobs <= 1 or len(tasks) <= 1:
        with threadpool_limits(1, user_api="blas"):
            return [fn(*t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("fork"),
                             initializer=_one_blas_thread) as ex:
        return list(ex.map(fn, *zip(*tasks, strict=True), chunksize=max(1, len(tasks) // (4 * jobs))))


def cross_validate(law: Law, points: Points, splits: list[Split], jobs: int = 1, predict: bool = False,
                   **fit_kw: Any) -> list[dict[str, Any]]:
    """Fit on each split's training points; metrics on its held-out points (and on its training points).

    ``jobs > 1`` fits the splits in that many worker processes (same results, in split order); ``predict``
    adds each split's predictions for its held-out points (``predicted``).
    """
    return parallel_map(_cv_one, [(law.name, points, s, fit_kw, predict) for s in splits], jobs)


# -- bootstrap over runs --------------------------------------------------------------------------------
def resample_runs(points: Points, pick: Sequence[str]) -> Points:
    """The points of the runs ``pick`` (drawn with replacement: a run drawn twice appears twice)."""
    return points.subset(np.concatenate([np.flatnonzero(points.run == r) for r in pick]))


def bootstrap(law: Law, points: Points, base: Fit, n_boot: int = 100, seed: int = 0,
              derived: dict[str, Callable[[Fit], float]] | None = None, n_starts: int = 4,
              grid_size: int = 2000, progress: Any = None) -> dict[str, np.ndarray]:
    """Refit on runs drawn with replacement; returns arrays of every natural parameter and derived value.

    Each refit starts from the full-data optimum and from the ``n_starts`` best points of a
    ``grid_size`` subsample of the grid.
    """
    if points.run is None:
        raise ValueError("bootstrap needs the run of every point")
    runs = np.unique(points.run)
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {}
    it = range(n_boot) if progress is None else progress(range(n_boot))
    for b in it:
        pick = rng.choice(runs, size=len(runs), replace=True)
        sample = resample_runs(points, pick)
        try:
            f = fit(law, sample, n_starts=n_starts, grid_size=grid_size, seed=seed + b, d_min=base.d_min,
                    extra_starts=[base.theta])
        except ValueError:
            continue
        vals = {k: float(v) for k, v in f.params.items()}
        for name, fn in (derived or {}).items():
            vals[name] = float(fn(f))
        for k, v in vals.items():
            out.setdefault(k, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
