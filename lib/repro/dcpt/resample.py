"""The bootstrap over runs (the workbook's uncertainty, not the paper's: the paper reports point fits).

A run's evaluations share its noise, so the unit drawn with replacement is the run: :func:`resample_runs`
takes the points of the runs drawn, :func:`bootstrap` refits a law on each draw, :func:`interval` gives the
percentile interval of the samples. The paired bootstrap of a general and a domain law together is
:func:`repro.dcpt.analysis.paired_bootstrap`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _check
from .fitting import Fit, Points, fit
from .laws import Law, check_law


def resample_runs(points: Points, pick: Sequence[str]) -> Points:
    """The points of the runs ``pick`` (drawn with replacement: a run drawn twice appears twice), in the order of
    ``pick``; as many rows as the picked runs hold together. ``TypeError`` when ``points`` is not :class:`Points`,
    ``ValueError`` when the points have no ``run``, ``pick`` is empty or names a run not in the points."""
    _check.instance("points", points, Points)
    if points.run is None:
        raise ValueError("resample_runs needs the run of every point")
    pick = np.asarray(pick)
    if pick.ndim != 1 or pick.size == 0:
        raise ValueError(f"pick must name at least one run, got {pick!r:.80}")
    unknown = sorted(set(pick.tolist()) - set(points.run.tolist()))
    if unknown:
        raise ValueError(f"pick names runs that are not in the points: {unknown[:5]}")
    return points.subset(np.concatenate([np.flatnonzero(points.run == r) for r in pick]))


def bootstrap(law: Law, points: Points, base: Fit, n_boot: int = 100, seed: int = 0,
              derived: dict[str, Callable[[Fit], float]] | None = None, n_starts: int = 4,
              grid_size: int = 2000, progress: Any = None) -> dict[str, np.ndarray]:
    """Refit on runs drawn with replacement; returns arrays of every natural parameter and derived value.

    Each refit starts from the full-data optimum and from the ``n_starts`` best points of a
    ``grid_size`` subsample of the grid. A draw whose refit fails (``ValueError``) is left out, so each array has
    at most ``n_boot`` samples (all arrays the same length). ``derived``: name -> function of a :class:`Fit`, each
    evaluated on every draw's fit. Raises ``TypeError`` for arguments of the wrong type, ``ValueError`` when
    ``base`` is a fit of another law, the points have no ``run``, or ``n_boot < 1``.
    """
    check_law(law)
    _check.instance("points", points, Points)
    _check.instance("base", base, Fit)
    if base.law.name != law.name:
        raise ValueError(f"base is a fit of {base.law.name}, not of {law.name}")
    n_boot = _check.integer("n_boot", n_boot, 1)
    seed = _check.integer("seed", seed, 0)
    n_starts = _check.integer("n_starts", n_starts, 0)
    grid_size = _check.integer("grid_size", grid_size, 1)
    for name, fn in (derived or {}).items():
        _check.callable_(f"derived[{name!r}]", fn)
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
    """Percentile interval of bootstrap samples; non-finite samples (a parameter that overflowed in some draws)
    are left out, and (NaN, NaN) is returned when none is finite. ``level`` in (0, 1): the interval holds the
    central ``level`` share of the samples (the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles, numpy's
    linear interpolation). ``ValueError`` for ``level`` outside (0, 1) or samples that are not one-dimensional,
    ``TypeError`` for samples that are not numbers."""
    level = _check.real("level", level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    try:
        s = np.asarray(samples, float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"samples must hold numbers: {e}") from None
    if s.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {s.shape}")
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
