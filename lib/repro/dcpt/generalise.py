"""Generalisation protocols (Tables 2-4 and 8): fit on part of the points, measure on the rest.

- the splits, each a ``(name, train mask, test mask)`` with boolean masks of length ``points.n``:
  :func:`ratio_splits` (held-out ratios, Table 4), :func:`thirds_splits` (data-size thirds, Table 2),
  :func:`size_splits` (leave one model size out, Table 3), :func:`domain_splits` (held-out domains of the
  cross-domain law, Table 8)
- :func:`cross_validate` fits each split's training points and measures its held-out points; its worker
  :func:`cv_split` fits one split (picklable, for :func:`repro.dcpt.parallel.parallel_map`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _check
from .fitting import Points, fit
from .laws import Law, check_law, get_law
from .parallel import parallel_map

Split = tuple[str, np.ndarray, np.ndarray]  # (name, train mask, test mask)


def ratio_splits(points: Points, n_test: int = 2) -> list[Split]:
    """Fit on all ratios but ``n_test``, test on those: every combination (36 for 9 ratios and 2; Table 4).

    Masks have length ``points.n``. Raises ``TypeError`` when ``points`` is not :class:`Points`, ``ValueError``
    for ``n_test < 1`` or when the points hold ``n_test`` distinct ratios or fewer."""
    _check.instance("points", points, Points)
    n_test = _check.integer("n_test", n_test, 1)
    ratios = np.unique(points.r)
    if len(ratios) <= n_test:
        raise ValueError(f"need more than {n_test} distinct ratios, got {len(ratios)}")
    return _hold_out(points.r, ratios, n_test, lambda held: "r=" + ",".join(f"{h:g}" for h in held))


def thirds_splits(points: Points) -> list[Split]:
    """Split each run's points into three contiguous thirds of D; fold i tests third i (Table 2's data-size
    generalisation). Three splits, masks of length ``points.n``. ``ValueError`` when the points have no ``run``."""
    _check.instance("points", points, Points)
    if points.run is None:
        raise ValueError("thirds_splits needs the run of every point")
    third = np.zeros(points.n, dtype=int)
    for run in np.unique(points.run):
        idx = np.flatnonzero(points.run == run)
        idx = idx[np.argsort(points.D[idx], kind="stable")]
        third[idx] = np.minimum(np.arange(len(idx)) * 3 // max(len(idx), 1), 2)
    return [(f"third {i + 1}", third != i, third == i) for i in range(3)]


def size_splits(points: Points) -> list[Split]:
    """Leave one model size out (Table 3's model-size generalisation): one split per distinct N, masks of length
    ``points.n``. ``ValueError`` for fewer than two model sizes."""
    _check.instance("points", points, Points)
    sizes = np.unique(points.N)
    if len(sizes) < 2:
        raise ValueError("need at least two model sizes")
    return [(f"N={s:g}", points.N != s, points.N == s) for s in sizes]


def domain_splits(points: Points, n_test: int = 2) -> list[Split]:
    """Fit on all domains but ``n_test``, test on those (15 splits for 6 domains and 2; Table 8's cross-domain
    generalisation). Masks of length ``points.n``. ``ValueError`` when the points have no ``domain``, for
    ``n_test < 1``, or for ``n_test`` domains or fewer."""
    _check.instance("points", points, Points)
    n_test = _check.integer("n_test", n_test, 1)
    if points.domain is None:
        raise ValueError("domain_splits needs the domain of every point")
    domains = np.unique(points.domain)
    if len(domains) <= n_test:
        raise ValueError(f"need more than {n_test} domains, got {len(domains)}")
    return _hold_out(points.domain, domains, n_test, lambda held: "held out " + ",".join(map(str, held)))


def _hold_out(column: np.ndarray, values: np.ndarray, n_test: int, name) -> list[Split]:
    """One split per choice of ``n_test`` of ``values``: test on the points whose ``column`` is one of them."""
    out = []
    for held in itertools.combinations(values, n_test):
        test = np.isin(column, held)
        out.append((name(held), ~test, test))
    return out


def cv_split(law_name: str, points: Points, split: Split, fit_kw: dict[str, Any], predict: bool = False
             ) -> dict[str, Any]:
    """One held-out fit: the law named ``law_name`` fitted to ``split``'s training points (D_min: the smallest D
    of all ``points``), measured on its test points. Returns one row: law, split, n_train, n_test, r2/huber/
    rmse_log on the test points, r2/huber on the training points, converged, and with ``predict`` the
    predictions for the test points (``predicted``, length n_test). The worker of :func:`cross_validate` and
    :func:`repro.dcpt.analysis.heldout_table`; raises what :func:`repro.dcpt.fitting.fit` raises."""
    law = get_law(law_name)
    name, train, test = split
    tr, te = points.subset(train), points.subset(test)
    f = fit(law, tr, d_min=float(points.D.min()), **fit_kw)
    m_te, m_tr = f.metrics(te), f.metrics(tr)
    row = {"law": law.name, "split": name, "n_train": tr.n, "n_test": te.n,
           "r2_test": m_te["r2"], "huber_test": m_te["huber"], "rmse_log_test": m_te["rmse_log"],
           "r2_train": m_tr["r2"], "huber_train": m_tr["huber"], "converged": f.converged}
    if predict:
        row["predicted"] = f.predict(te)
    return row


def check_splits(points: Points, splits: Sequence[Split]) -> list[Split]:
    """Each split a (name, train mask, test mask) with boolean masks over ``points``, both non-empty; returns the
    splits as tuples with the masks as arrays. ``TypeError`` for a split that is not a triple, ``ValueError`` for a
    mask of the wrong dtype or length, or one that selects no point."""
    out = []
    for i, sp in enumerate(splits):
        if not (isinstance(sp, tuple | list) and len(sp) == 3):
            raise TypeError(f"splits[{i}] must be (name, train mask, test mask), got {sp!r:.80}")
        name, train, test = sp
        train, test = np.asarray(train), np.asarray(test)
        for what, m in (("train", train), ("test", test)):
            if m.dtype != bool or m.shape != (points.n,):
                raise ValueError(f"splits[{i}] ({name}): the {what} mask must be boolean with one entry per point "
                                 f"({points.n}), got dtype {m.dtype}, shape {m.shape}")
            if not m.any():
                raise ValueError(f"splits[{i}] ({name}): the {what} mask selects no point")
        out.append((name, train, test))
    return out


def cross_validate(law: Law, points: Points, splits: list[Split], jobs: int = 1, predict: bool = False,
                   **fit_kw: Any) -> list[dict[str, Any]]:
    """Fit on each split's training points; metrics on its held-out points (and on its training points).

    ``jobs > 1`` fits the splits in that many worker processes (same results, in split order); ``predict``
    adds each split's predictions for its held-out points (``predicted``). Returns one row per split
    (:func:`cv_split`). Raises ``TypeError`` for a ``law`` that is not a :class:`repro.dcpt.laws.Law` or a
    ``d_min`` in ``fit_kw`` (it is set here), ``ValueError`` for malformed splits (:func:`check_splits`).
    """
    check_law(law)
    _check.instance("points", points, Points)
    splits = check_splits(points, splits)
    if "d_min" in fit_kw:
        raise TypeError("cross_validate sets d_min itself (the smallest D of all points)")
    return parallel_map(cv_split, [(law.name, points, s, fit_kw, predict) for s in splits], jobs)
