"""What notebook 03 does with a grid table: fit every form, compare them, check the paper's trends,
and draw the paper's figures. Everything here works on :class:`repro.dcpt.grid.Grid` frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _check
from .fitting import Fit, Points, fit
from .generalise import check_splits, cv_split
from .grid import points as grid_points
from .grid import run_label
from .laws import LAWS
from .parallel import fit_by_name, parallel_map
from .resample import resample_runs


def _forms(forms: Sequence[str]) -> list[str]:
    if isinstance(forms, str):
        raise TypeError(f"forms must be a list of law names, got the str {forms!r}")
    unknown = [f for f in forms if f not in LAWS]
    if unknown:
        raise ValueError(f"forms: unknown law(s) {unknown}; valid: {', '.join(LAWS)}")
    if not forms:
        raise ValueError("forms must name at least one law")
    return list(forms)


def fit_forms(pts: Points, forms: Sequence[str] = tuple(LAWS), jobs: int = 1, **fit_kw: Any) -> dict[str, Fit]:
    """Fit each named form (§3.1's L1-L7, L3u) to the same points (in ``jobs`` worker processes), the fit of
    App. E.3 (:func:`repro.dcpt.fitting.fit` with ``fit_kw``). Returns ``{form: Fit}`` in the order of ``forms``.
    ``ValueError`` for unknown or no forms and what the fits raise, ``TypeError`` for pts not Points or a str."""
    _check.instance("pts", pts, Points)
    forms = _forms(forms)
    return dict(zip(forms, parallel_map(fit_by_name, [(name, pts, fit_kw) for name in forms], jobs), strict=True))


def _fits(fits: Any) -> dict[str, Fit]:
    if not isinstance(fits, dict) or not all(isinstance(f, Fit) for f in fits.values()):
        raise TypeError("fits must be a dict {form: Fit} (what fit_forms returns)")
    return fits


def convergence_table(fits: dict[tuple[str, str], dict[str, Fit]]):
    """One row per fit of ``fits[domain, side][form]``: whether L-BFGS converged (:class:`repro.dcpt.fitting.Fit`),
    how it ended (message, iterations, projected gradient) and its objective. ``TypeError`` for fits of another
    shape."""
    import pandas as pd

    if not isinstance(fits, dict):
        raise TypeError("fits must be a dict {(domain, side): {form: Fit}}")
    rows = []
    for (dom, side), by_form in fits.items():
        for form, f in _fits(by_form).items():
            rows.append({"domain": dom, "side": side, "form": form, "converged": f.converged,
                         "iterations": f.iterations, "projected gradient": f.grad_norm, "objective": f.objective,
                         "message": f.message})
    return pd.DataFrame(rows).set_index(["domain", "side", "form"])


def not_converged(fits: Any, forms: Sequence[str] = ("L3",)) -> list[str]:
    """Labels of the fits that did not converge: ``"domain/side/form"`` for the ``forms`` of a dict
    ``fits[domain, side][form]``, or the identifying columns of each row of a table of fits with a ``converged``
    column (what :func:`heldout_table` and :func:`repro.dcpt.generalise.cross_validate` give). ``TypeError`` for
    anything else, ``ValueError`` for unknown forms or a table without ``converged``."""
    if hasattr(fits, "columns"):
        _check.columns("fits", fits, ("converged",))
        keys = [c for c in ("domain", "side", "law", "form", "protocol", "split") if c in fits.columns]
        bad = fits[~fits["converged"].astype(bool)]
        return ["/".join(str(row[k]) for k in keys) for _, row in bad.iterrows()]
    if not isinstance(fits, dict):
        raise TypeError("fits must be a dict {(domain, side): {form: Fit}} or a table with a converged column")
    forms = _forms(forms)
    return [f"{d}/{s}/{form}" for (d, s), by_form in fits.items() for form in forms
            if form in _fits(by_form) and not by_form[form].converged]


def convergence_note(failed: Sequence[str]) -> str:
    """What a claim's note adds when fits it rests on did not converge ('' when all did). ``TypeError`` for a str."""
    if isinstance(failed, str):
        raise TypeError("failed must be a list of labels (not_converged), got a str")
    if not failed:
        return ""
    shown = ", ".join(list(failed)[:4]) + (f" and {len(failed) - 4} more" if len(failed) > 4 else "")
    return f"; NOTE: rests on {len(failed)} fit(s) that did not converge ({shown})"


def forms_table(fits: dict[str, Fit], pts: Points):
    """Forms x metrics on the fitted points (Table 1's comparison): parameters, R^2, mean Huber (delta 1e-3, log
    residuals), AIC, BIC, and whether L-BFGS converged; one row per form. ``TypeError`` for fits or pts of the wrong
    type."""
    import pandas as pd

    _check.instance("pts", pts, Points)
    rows = []
    for name, f in _fits(fits).items():
        m, ic = f.metrics(pts), f.information(pts)
        rows.append({"form": name, "law": f.law.formula, "params": f.law.n_params, "R2": m["r2"],
                     "Huber": m["huber"], "RMSE(log)": m["rmse_log"], "AIC": ic["aic"], "BIC": ic["bic"],
                     "converged": f.converged, "fit s": f.seconds})
    return pd.DataFrame(rows).set_index("form")


def heldout_table(pts: Points, splits: list, forms: Sequence[str], *, warm: dict[str, Fit] | None = None,
                  jobs: int = 1, **fit_kw: Any):
    """Every form cross-validated on the same splits: one row per (form, split).

    ``warm``: full-data fits by form; each split's fit then also starts from that optimum (besides its
    grid starts), which is faster and never ends at a worse optimum than the grid starts alone. ``jobs``:
    worker processes for all (form, split) fits together. Rows as :func:`repro.dcpt.generalise.cv_split` gives
    (Tables 2-4). ``ValueError`` for unknown forms, malformed splits, or ``warm`` lacking a form.
    """
    import pandas as pd

    _check.instance("pts", pts, Points)
    forms = _forms(forms)
    splits = check_splits(pts, splits)
    if warm is not None:
        missing = [f for f in forms if f not in _fits(warm)]
        if missing:
            raise ValueError(f"warm lacks fits of {missing}")
    tasks = []
    for name in forms:
        kw = dict(fit_kw)
        if warm is not None:
            kw["extra_starts"] = [warm[name].theta]
        tasks += [(LAWS[name].name, pts, s, kw) for s in splits]
    return pd.DataFrame(parallel_map(cv_split, tasks, jobs))


def trend_check(frame, which: str = "domain") -> dict[str, Any]:
    """The paper's explicit and implicit trends (§3.1), tested by finite differences on measured losses.

    dL/dD < 0: along each run, loss falls between consecutive evaluations. dL/dr < 0: at each model size
    and step, loss falls between consecutive ratios of the matching corpus. d2L/dDdr < 0: the drop with D
    is larger at the larger ratio (D differences of neighbouring ratios). Returns the share of differences
    with the claimed sign, per ratio and overall. ``which``: "domain" (L_d against r_d) or "general" (L_g against
    r_g = 1 - r_d). ``ValueError`` for another ``which`` or missing columns.
    """
    _check.which(which)
    loss = "L_d" if which == "domain" else "L_g"
    _check.columns("frame", frame, ("run", "size", "domain", "step", "r_d", "D", loss))
    f = frame[frame["step"] > 0].copy()
    f["r"] = f["r_d"] if which == "domain" else 1 - f["r_d"]
    dD, dr, dDr = [], [], []
    for _, run in f.groupby("run"):
        run = run.sort_values("D")
        dD += [(float(r), float(d)) for r, d in zip(run["r"].iloc[1:], np.diff(run[loss].to_numpy()), strict=True)]
    for _, g in f.groupby(["size", "domain", "step"]):
        g = g.sort_values("r")
        dr += [(float(r), float(d)) for r, d in zip(g["r"].iloc[1:], np.diff(g[loss].to_numpy()), strict=True)]
    for _, g in f.groupby(["size", "domain"]):
        piv = g.pivot_table(index="D", columns="r", values=loss).sort_index()
        slope = piv.diff().iloc[1:]  # loss change per evaluation interval, per ratio
        cols = list(slope.columns)
        for a, b in zip(cols[:-1], cols[1:], strict=True):
            dDr += [(float(b), float(v)) for v in (slope[b] - slope[a]).to_numpy() if np.isfinite(v)]

    def share(pairs, min_r=0.0):
        v = [d < 0 for r, d in pairs if r >= min_r]
        return float(np.mean(v)) if v else float("nan")

    ratios = sorted({r for r, _ in dD})
    return {
        "dL/dD<0": share(dD), "dL/dr<0": share(dr), "d2L/dDdr<0": share(dDr),
        "per_ratio": {r: {"dL/dD<0": share([p for p in dD if p[0] == r]),
                          "dL/dr<0": share([p for p in dr if p[0] == r]),
                          "d2L/dDdr<0": share([p for p in dDr if p[0] == r])} for r in ratios},
        "n": {"dD": len(dD), "dr": len(dr), "dDdr": len(dDr)},
        "_pairs": {"dD": dD, "dr": dr, "dDr": dDr},
    }


def trends_above(check: dict[str, Any], min_r: float) -> dict[str, float]:
    """The trend shares counting only ratios at or above ``min_r`` (the paper excludes r below the inflection,
    App. I.3). ``TypeError`` when ``check`` is not what :func:`trend_check` returned."""
    if not isinstance(check, dict) or "_pairs" not in check:
        raise TypeError("check must be what trend_check returned")
    min_r = _check.real("min_r", min_r)
    out = {}
    for key, name in (("dD", "dL/dD<0"), ("dr", "dL/dr<0"), ("dDr", "d2L/dDdr<0")):
        v = [d < 0 for r, d in check["_pairs"][key] if r >= min_r]
        out[name] = float(np.mean(v)) if v else float("nan")
    return out


def inflection_ratio(frame, which: str = "domain") -> float:
    """The largest ratio at which some run's loss rises with D over its second half (App. I.3); 0 if none.
    ``ValueError`` for a ``which`` other than "domain" or "general", or missing columns."""
    _check.which(which)
    loss = "L_d" if which == "domain" else "L_g"
    _check.columns("frame", frame, ("run", "step", "r_d", "D", loss))
    worst = 0.0
    for _, run in frame[frame["step"] > 0].groupby("run"):
        run = run.sort_values("D")
        half = run.iloc[len(run) // 2:]
        r = float(run["r_d"].iloc[0] if which == "domain" else 1 - run["r_d"].iloc[0])
        if half[loss].iloc[-1] > half[loss].iloc[0]:
            worst = max(worst, r)
    return worst


def _paired_draw(general: Points, domain: Points, fit_g: Fit, fit_d: Fit, pick: np.ndarray, seed: int,
                 n_starts: int, grid_size: int, derived: Callable | None) -> dict[str, Any] | None:
    fits = []
    for pts, base in ((general, fit_g), (domain, fit_d)):
        try:
            fits.append(fit(base.law, resample_runs(pts, pick), n_starts=n_starts, grid_size=grid_size, seed=seed,
                            d_min=base.d_min, extra_starts=[base.theta]))
        except ValueError:
            return None
    try:
        out = derived(fits[0], fits[1]) if derived else {}
    except ValueError:  # e.g. no ratio meets usage 1's budget under this draw's laws
        return None
    return {"general": fits[0].params, "domain": fits[1].params, "derived": out}


def paired_bootstrap(general: Points, domain: Points, fit_g: Fit, fit_d: Fit, *, n_boot: int = 40, seed: int = 0,
                     derived: Callable[[Fit, Fit], dict[str, float]] | None = None, n_starts: int = 2,
                     grid_size: int = 500, jobs: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap over runs for a general and a domain law together: each draw takes runs with replacement, the
    same runs for both laws, refits both (from their full-data optima and ``n_starts`` grid starts) and
    evaluates ``derived(fit_general, fit_domain)`` (e.g. usage 1's r_d*). Returns ``{"general": {param:
    samples}, "domain": {...}, "derived": {name: samples}}``; draws where a refit or ``derived`` fails
    (``ValueError``) are dropped from all."""
    for name, v in (("general", general), ("domain", domain)):
        _check.instance(name, v, Points)
        if v.run is None:
            raise ValueError(f"{name} needs the run of every point")
    _check.instance("fit_g", fit_g, Fit)
    _check.instance("fit_d", fit_d, Fit)
    n_boot, seed = _check.integer("n_boot", n_boot, 1), _check.integer("seed", seed, 0)
    n_starts, grid_size = _check.integer("n_starts", n_starts, 0), _check.integer("grid_size", grid_size, 1)
    if derived is not None:
        _check.callable_("derived", derived)
    runs = np.unique(domain.run)
    if not np.array_equal(runs, np.unique(general.run)):
        raise ValueError("the general and domain points must come from the same runs")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(runs, size=len(runs), replace=True) for _ in range(n_boot)]
    draws = parallel_map(_paired_draw, [(general, domain, fit_g, fit_d, pick, seed + b, n_starts, grid_size, derived)
                                        for b, pick in enumerate(picks)], jobs)
    out: dict[str, dict[str, list[float]]] = {"general": {}, "domain": {}, "derived": {}}
    for d in draws:
        if d is None:
            continue
        for part, vals in d.items():
            for k, v in vals.items():
                out[part].setdefault(k, []).append(float(v))
    return {part: {k: np.asarray(v) for k, v in vals.items()} for part, vals in out.items()}


def usage1_derived(N0: float, D0: float, L_g0: float, T: float) -> Callable[[Fit, Fit], dict[str, float]]:
    """Usage 1's r_d* and its predicted losses (Eq. 10) from a (general, domain) pair of fits, for
    :func:`paired_bootstrap`; N0 and D0 in the fits' units (notebook 03: millions), L_g0 in nats per token, T a
    fraction (0.03 for 3 %). ``ValueError`` for N0, D0, L_g0 not positive or T outside (0, 1)."""
    return _Usage1(_check.positive("N0", N0), _check.positive("D0", D0), _check.positive("L_g0", L_g0),
                   _check.real("T", T, lo=0.0, hi=1.0, lo_open=True, hi_open=True, hint="0.03 for 3 %"))


@dataclass(frozen=True)
class _Usage1:  # a picklable callable, so that bootstrap draws can run in worker processes
    N0: float
    D0: float
    L_g0: float
    T: float

    def __call__(self, fit_g: Fit, fit_d: Fit) -> dict[str, float]:
        from . import usage

        pred = usage.optimal_ratio_under_budget(*usage.law_curves(fit_g, fit_d, self.N0, self.D0), self.L_g0, self.T)
        return {"r_d": float(pred["r_d"]), "L_g": float(pred["L_g"]), "L_d": float(pred["L_d"])}


# -- the cross-domain law: probe features and its points --------------------------------------------
PROBE_STEPS = (10, 20, 40)  # k1 at the first, k2 over the second, k3 over the third (nearest evaluation)


def probe_features(frame, size: str, r_d: float = 1.0, steps: Sequence[int] = PROBE_STEPS):
    """Each domain's probe features from the early evaluations of one run per domain (App. H).

    The probe is the run of model ``size`` at domain share ``r_d``, read only up to ``steps[2]``:
    k1 = L_d at ``steps[0]`` (the paper: after 1k of 200k steps), k2 = L_d(0) - L_d(``steps[1]``) (the paper:
    the drop over the first 5k) and k3 = L_d(0) - 2 L_d(``steps[1]``) + L_d(``steps[2]``) (the paper's 10k; the
    card notes the printed simplification is a slip). Each step is taken at the nearest evaluation; the
    steps actually used and the probe's share of one run's steps are returned with the features (one row per
    domain). ``ValueError`` for steps that are not three increasing step numbers, a probe run without a step-0
    evaluation, no run of ``size`` at ``r_d``, or missing columns.
    """
    import pandas as pd

    _check.columns("frame", frame, ("size", "domain", "r_d", "step", "L_d"))
    r_d = _check.fraction("r_d", r_d)
    if len(steps) != 3 or any(_check.integer("steps", st, 0) < 0 for st in steps) or not steps[0] < steps[1] < steps[2]:
        raise ValueError(f"steps must be three increasing step numbers (k1, k2, k3), got {tuple(steps)}")
    rows = []
    for dom, f in frame[(frame["size"] == size) & np.isclose(frame["r_d"], r_d)].groupby("domain"):
        f = f.sort_values("step")
        if not (f["step"] == 0).any():
            raise ValueError(f"probe run {run_label(size, dom, r_d)} has no step-0 evaluation")
        at = [int(f["step"].iloc[np.abs(f["step"].to_numpy() - s).argmin()]) for s in steps]
        L = dict(zip(f["step"].astype(int), f["L_d"], strict=True))
        L0 = L[0]
        rows.append({"domain": dom, "k1": L[at[0]], "k2": L0 - L[at[1]], "k3": L0 - 2 * L[at[1]] + L[at[2]],
                     "steps": tuple(at), "probe_fraction": at[2] / float(f["step"].max())})
    if not rows:
        raise ValueError(f"no run of size {size!r} at r_d = {r_d} in the frame")
    return pd.DataFrame(rows).set_index("domain")


def cross_points(frame, which: str, probes, min_step: int = 1) -> Points:
    """The fitting points of :func:`repro.dcpt.grid.points` with each row's domain probe features k1, k2, k3 (k3 left
    out where some domain's is not positive) for the cross-domain law (Eq. 7). ``ValueError`` for a ``which`` other
    than "domain" or "general", missing columns, or a domain without probe features."""
    _check.which(which)
    _check.columns("probes", probes, ("k1", "k2", "k3"))
    _check.columns("frame", frame, ("domain",))
    missing = sorted(set(frame["domain"]) - set(probes.index))
    if missing:
        raise ValueError(f"no probe features for domains {missing}")
    pts = grid_points(frame, which, min_step)
    k = {c: probes.loc[pts.domain, c].to_numpy(float) for c in ("k1", "k2", "k3")}
    if np.any(k["k3"] <= 0):  # a concave early curve: K4 (w3/k3) is undefined, the other forms do not use k3
        k["k3"] = None
    return Points(pts.N, pts.D, pts.r, pts.L, run=pts.run, domain=pts.domain, **k)


def pool_cross_grid(frame, grid, cross_grid=None) -> tuple[Any, dict[str, dict[str, Any]], list[str]]:
    """The runs the cross-domain law (Eq. 7) is fitted to: the main grid's rows ``frame`` (its complete domains),
    pooled with a second grid table ``cross_grid`` (other domains) where there is one, at the model sizes that
    table holds. Returns ``(pooled frame, run provenance by label, sizes)``; without ``cross_grid`` the frame itself
    and the main grid's sizes. ``ValueError`` when the two tables were made with other settings (anything but
    their sizes and domains differs): they cannot be pooled."""
    import pandas as pd

    pooled, runs_meta = frame, grid.by_label()  # provenance by run label
    c_sizes = [s[0] for s in grid.meta["spec"]["sizes"]]
    if cross_grid is None:
        return pooled, runs_meta, c_sizes
    drop = ("sizes", "domains")
    if {k: v for k, v in cross_grid.meta["spec"].items() if k not in drop} != \
            {k: v for k, v in grid.meta["spec"].items() if k not in drop}:
        raise ValueError(f"{cross_grid.path}.json was made with other settings than the main grid: they cannot be "
                         "pooled")
    c_sizes = [s[0] for s in cross_grid.meta["spec"]["sizes"]]
    pooled = pd.concat([frame[frame["size"].isin(c_sizes)], cross_grid.frame()], ignore_index=True)
    runs_meta.update(cross_grid.by_label())
    return pooled, runs_meta, c_sizes


def complete_cross_domains(pooled, sizes: Sequence[str], ratios: Sequence[float]) -> tuple[Any, list[str]]:
    """The domains of ``pooled`` with every (size, ratio) run, and their rows: ``(frame or None, domains)``; the
    frame is None when fewer than 3 domains are complete (the cross-domain law needs 3 or more: fit on some,
    predict the others). ``ValueError`` for missing columns."""
    _check.columns("pooled", pooled, ("domain", "run"))
    n_runs = pooled.groupby("domain")["run"].nunique()
    c_domains = sorted(n_runs[n_runs == len(sizes) * len(ratios)].index)
    cross = pooled[pooled["domain"].isin(c_domains)] if len(c_domains) >= 3 else None
    return cross, c_domains


def probe_cost_share(probes, runs_meta: dict[str, dict[str, Any]], size: str, r_d: float, sizes: Sequence[str],
                     domains: Sequence[str]) -> float:
    """What the probes cost (App. H): the CPU time of each domain's probe (``probes``' ``probe_fraction`` of its
    probe run at model size ``size`` and share ``r_d``) over the CPU time of every run at ``sizes`` and
    ``domains`` the cross-domain law is fitted to; a share in [0, 1]. ``runs_meta``: run provenance by label
    (with ``cpu_seconds``). ``KeyError`` for a probe run that ``runs_meta`` lacks."""
    _check.columns("probes", probes, ("probe_fraction",))
    probe_cpu = sum(probes.loc[d, "probe_fraction"] * runs_meta[run_label(size, d, r_d)]["cpu_seconds"]
                    for d in domains)
    all_cpu = sum(v["cpu_seconds"] for k, v in runs_meta.items()
                  if k.split("/")[0] in sizes and k.split("/")[1] in domains)
    return probe_cpu / all_cpu


CROSS_FULL_FIT = dict(n_starts=4, grid_size=5000)  # the cross-domain laws' full-data fits (each split starts there)


def cross_domain_cv(cross, probes, forms: Sequence[str], n_test: int, *, jobs: int = 1,
                    progress: Callable | None = None, **fit_kw: Any):
    """Table 8's protocol: the cross-domain law (Eq. 7) with each K form of ``forms`` (K1-K4, Eq. 9; K4 only where
    every k3 is positive), and L3 pooled over the domains (``"L3 pooled"``, no domain term), fitted on all domains
    but ``n_test`` and measured on those (:func:`repro.dcpt.generalise.domain_splits`), for the domain and the
    general loss. Each law is first fitted to all points (:data:`CROSS_FULL_FIT`, over ``fit_kw``); each split's
    fit (``fit_kw``, in ``jobs`` worker processes) also starts at that optimum. ``progress``: a tqdm-like wrapper.

    Returns ``(cv, held)``: ``cv`` one row per (side, form, split): r2_test, huber_test, the full fit's
    r2_fit_all and huber_fit_all, converged; ``held`` one row per held-out point of the K3 fits: side, split,
    domain, run, D, r, measured and predicted loss. ``ValueError`` when "K3" is not among ``forms`` (no held-out
    predictions) and what the fits raise."""
    import pandas as pd

    from .generalise import cross_validate, domain_splits
    from .laws import CROSS_LAWS

    wrap = progress or (lambda it, **_: it)
    cross_cv, held_pred = [], []
    for side in ("domain", "general"):
        cpts = cross_points(cross, side, probes)
        splits = domain_splits(cpts, n_test)
        side_forms = [f for f in forms if f != "K4" or cpts.k3 is not None]
        for form in wrap(side_forms + ["L3 pooled"], desc=f"cross-domain fits, {side}"):
            law = LAWS["L3"] if form == "L3 pooled" else CROSS_LAWS[form]
            full = fit(law, cpts, **dict(fit_kw, **CROSS_FULL_FIT))
            m_all = full.metrics(cpts)
            rows = cross_validate(law, cpts, splits, jobs=jobs, predict=form == "K3", extra_starts=[full.theta],
                                  **fit_kw)
            for (name, _train, te), row in zip(splits, rows, strict=True):
                cross_cv.append({"side": side, "form": form, "split": name, "r2_test": row["r2_test"],
                                 "huber_test": row["huber_test"], "r2_fit_all": m_all["r2"],
                                 "huber_fit_all": m_all["huber"], "converged": row["converged"]})
                if form == "K3":
                    te_pts = cpts.subset(te)
                    held_pred.append(pd.DataFrame({"side": side, "split": name, "domain": te_pts.domain,
                                                   "run": te_pts.run, "D": te_pts.D, "r": te_pts.r,
                                                   "measured": te_pts.L, "predicted": row["predicted"]}))
    return pd.DataFrame(cross_cv), pd.concat(held_pred, ignore_index=True)


def cross_domain_table(cross_cv):
    """Table 8's layout: per form (rows) and side (columns), R^2 and Huber of the full fit, and the mean and the
    worst held-out R^2 and the mean held-out Huber over the splits (``cross_cv`` from :func:`cross_domain_cv`).
    ``ValueError`` for missing columns."""
    _check.columns("cross_cv", cross_cv, ("side", "form", "r2_test", "huber_test", "r2_fit_all", "huber_fit_all"))
    return cross_cv.groupby(["side", "form"]).agg(
        R2_all=("r2_fit_all", "first"), Huber_all=("huber_fit_all", "first"),
        R2_heldout_mean=("r2_test", "mean"), R2_heldout_min=("r2_test", "min"),
        Huber_heldout_mean=("huber_test", "mean")).unstack("side")


def _heldout_domain_fit(g):
    import pandas as pd

    from .fitting import r2

    return pd.Series({"R2_heldout": r2(g["measured"].to_numpy(), g["predicted"].to_numpy()),
                      "mean |log error|": float(np.mean(np.abs(np.log(g["predicted"] / g["measured"]))))})


def cross_per_domain(held):
    """Per held-out domain, over every split holding it out (the cross-domain claim's unit): R^2 of the K3
    predictions of the domain loss and their mean |log error| (``held`` from :func:`cross_domain_cv`); one row per
    domain (R^2 is NaN for a domain whose measured losses are constant). ``ValueError`` for missing columns."""
    _check.columns("held", held, ("side", "domain", "measured", "predicted"))
    return held[held["side"] == "domain"].groupby("domain").apply(_heldout_domain_fit, include_groups=False)


def plot_cross_heldout(axes, held, domain: str, size: str) -> None:
    """Table 8 as pictures, on three axes: K3's held-out predictions against the measured losses (domain, general;
    every held-out domain of every split), and one held-out ``domain``'s domain loss against D at three ratios
    for model size ``size``, in the first split that holds it out (``held`` from :func:`cross_domain_cv`).
    ``IndexError`` when ``held`` has no domain-loss row of ``domain``."""
    import matplotlib.pyplot as plt

    for ax, side in zip(axes[:2], ("domain", "general"), strict=True):
        h = held[held["side"] == side]
        for dom, g in h.groupby("domain"):
            ax.scatter(g["measured"], g["predicted"], s=4, alpha=0.4, label=dom)
        lo, hi = h[["measured", "predicted"]].min().min(), h[["measured", "predicted"]].max().max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_xlabel("measured loss")
        ax.set_ylabel("K3 prediction (domain held out)")
        ax.set_title(f"{side} loss, every held-out domain of every split")
        ax.legend(fontsize=7, markerscale=3)
    # one held-out domain's curves: domain loss against D at three ratios, for the first split that holds it out
    h = held[(held["side"] == "domain") & (held["domain"] == domain)]
    h = h[h["split"] == h["split"].iloc[0]]
    ax = axes[2]
    big_runs = h[h["run"].str.startswith(size + "/")]
    for r_show, color in zip((0.2, 0.5, 1.0), ("tab:blue", "tab:orange", "tab:green"), strict=True):
        g = big_runs[np.isclose(big_runs["r"], r_show)]
        ax.plot(g["D"], g["measured"], "o", ms=3, color=color, label=f"measured r_d={r_show}")
        ax.plot(g["D"], g["predicted"], "--", color=color)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # the default minor labels overlap on a short decade
    ax.set_xlabel("D (M tokens)")
    ax.set_ylabel("domain loss")
    ax.set_title(f"{domain} held out ({h['split'].iloc[0]}), size {size}: K3 dashed")
    ax.legend(fontsize=7)


# -- plots -----------------------------------------------------------------------------------------
def plot_loss_vs_ratio(ax, frame, fit_: Fit, which: str, size: str, steps: Sequence[int],
                       held_out: Sequence[float] = (), title: str | None = None) -> None:
    """The paper's Fig. 1: loss against ratio at several data sizes; fitted law dashed, held-out ratios as stars.
    D in the legend in millions of tokens; the law is evaluated with N and D in millions (as
    :func:`repro.dcpt.grid.points`). ``ValueError`` for a bad ``which``, missing columns or a size not in the frame,
    ``TypeError`` for a ``fit_`` that is not a Fit."""
    _check.which(which)
    _check.instance("fit_", fit_, Fit)
    _check.columns("frame", frame, ("size", "r_d", "step", "N", "D", "L_d", "L_g"))
    if size not in set(frame["size"]):
        raise ValueError(f"size {size!r} is not in the frame (sizes: {sorted(set(frame['size']))})")
    f = frame[(frame["size"] == size)]
    loss = "L_d" if which == "domain" else "L_g"
    r_all = f["r_d"] if which == "domain" else 1 - f["r_d"]
    colours = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for c, step in zip(colours, steps, strict=False):
        g = f[f["step"] == step]
        r = (g["r_d"] if which == "domain" else 1 - g["r_d"]).to_numpy()
        held = np.isin(np.round(r, 6), np.round(np.asarray(held_out, float), 6))
        D = float(g["D"].iloc[0]) if len(g) else float("nan")
        ax.plot(r[~held], g[loss].to_numpy()[~held], "o", color=c, ms=4, label=f"D={D / 1e6:.2f}M")
        if held.any():
            ax.plot(r[held], g[loss].to_numpy()[held], "*", color=c, ms=11, mec="k", mew=0.5)
        rr = np.linspace(max(0.0, float(r_all.min())), 1.0, 101)
        N = float(g["N"].iloc[0]) / 1e6 if len(g) else 1.0
        pts = Points(np.full_like(rr, N), np.full_like(rr, D / 1e6), rr, np.ones_like(rr))
        ax.plot(rr, fit_.predict(pts), "--", color=c, lw=1)
    ax.set_xlabel("domain ratio $r_d$" if which == "domain" else "general ratio $r_g$")
    ax.set_ylabel("domain loss $L_d$" if which == "domain" else "general loss $L_g$")
    ax.set_title(title or f"{size}: {which} loss")
    ax.legend(fontsize=7)


def plot_loss_vs_D(ax, frame, fit_: Fit, which: str, size: str, domain: str) -> None:
    """Loss against CPT tokens per ratio (log x, millions of tokens), fitted law dashed. ``ValueError`` for a bad
    ``which``, missing columns or no run of ``size`` and ``domain``; ``TypeError`` for a ``fit_`` that is not a
    Fit."""
    import matplotlib.cm as cm

    _check.which(which)
    _check.instance("fit_", fit_, Fit)
    _check.columns("frame", frame, ("size", "domain", "r_d", "step", "D", "L_d", "L_g"))
    f = frame[(frame["size"] == size) & (frame["domain"] == domain) & (frame["step"] > 0)]
    loss = "L_d" if which == "domain" else "L_g"
    if f.empty:
        raise ValueError(f"no run of size {size!r} and domain {domain!r} in the frame")
    ratios = sorted(f["r_d"].unique())
    for i, rd in enumerate(ratios):
        g = f[f["r_d"] == rd].sort_values("D")
        colour = cm.viridis(i / max(1, len(ratios) - 1))
        ax.plot(g["D"] / 1e6, g[loss], "o", ms=3, color=colour, label=f"$r_d$={rd:g}")
        pts = grid_points(g, which)
        ax.plot(g["D"] / 1e6, fit_.predict(pts), "-", lw=1, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("CPT tokens D (millions)")
    ax.set_ylabel(loss)
    ax.set_title(f"{size}, {domain}: {which} loss against D")
    ax.legend(fontsize=6, ncol=2)


# -- the claims' units ------------------------------------------------------------------------------------------
HUBER_REPORT_DELTA = 1.0  # the Huber figure set against the paper's 0.02: delta = 1 on raw losses (notebook 03 says why)


def huber_per_point(fit_: Fit, pts: Points, delta: float = HUBER_REPORT_DELTA) -> np.ndarray:
    """Huber_delta(L_hat - L) of every point on the raw losses (nats), shape ``(pts.n,)``: the figure notebook 03
    sets against the paper's "Huber < 0.02" (§1). With delta = 1 it is half the squared error for residuals
    below 1 nat. ``ValueError`` for delta <= 0."""
    from .fitting import huber

    _check.instance("fit_", fit_, Fit)
    return huber(fit_.predict(pts) - pts.L, delta)


def run_bootstrap_r2(fit_: Fit, pts: Points, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """R^2 of a fitted law on runs drawn with replacement (whole runs: the points of one run are correlated),
    ``n_boot`` draws of as many runs as ``pts`` holds; shape ``(n_boot,)``. The fit is held fixed: the spread is
    that of the fit's quality over the runs it could have been measured on. Resampled by
    ``scipy.stats.bootstrap`` (seeded). ``ValueError`` for fewer than 2 runs."""
    from scipy import stats

    from .fitting import r2

    _check.instance("fit_", fit_, Fit)
    n_boot = _check.integer("n_boot", n_boot, 1)
    runs_ = np.unique(pts.run)
    if len(runs_) < 2:
        raise ValueError(f"pts: a bootstrap over runs needs at least 2 runs, got {len(runs_)}")
    pred = fit_.predict(pts)
    rows = [np.flatnonzero(pts.run == r) for r in runs_]

    def stat(pick: np.ndarray) -> float:
        idx = np.concatenate([rows[int(i)] for i in pick])
        return r2(pts.L[idx], pred[idx])

    res = stats.bootstrap((np.arange(len(runs_)),), stat, vectorized=False, n_resamples=n_boot,
                          method="percentile", rng=np.random.default_rng(seed))
    return np.asarray(res.bootstrap_distribution, float)


def best_measured_ratio(end, L_g0: float, T: float) -> float:
    """Usage 1's measured answer (Table 5's check): among the runs' final evaluations ``end`` (columns r_d, L_g,
    L_d), the ratio with the lowest domain loss whose general loss stays within ``(1 + T) * L_g0``; NaN when no
    ratio meets the budget. ``ValueError`` for missing columns, L_g0 not positive or T outside (0, 1)."""
    _check.columns("end", end, ("r_d", "L_g", "L_d"))
    L_g0, T = _check.positive("L_g0", L_g0), _check.real("T", T, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    ok = end[end["L_g"] < L_g0 * (1 + T)]
    return float(ok.loc[ok["L_d"].idxmin(), "r_d"]) if len(ok) else float("nan")


def usage1_replicates(frame, candidates: Sequence[float], T: float):
    """Usage 1's measured side per seed: for each seed of ``frame`` (a grid frame with a ``seed`` column, one
    model size and domain), the base model's general loss ``L_g0`` (step 0), the ratios of ``candidates`` it
    holds, and :func:`best_measured_ratio` over them. A seed that lacks a candidate ratio (its runs not all trained
    yet) is marked ``complete = False`` with NaN for its answer: seeds compare the same ratios or none. One row per
    seed. ``ValueError`` for missing columns or a frame holding several sizes or domains."""
    import pandas as pd

    _check.columns("frame", frame, ("seed", "size", "domain", "r_d", "step", "L_g", "L_d"))
    if frame["size"].nunique() != 1 or frame["domain"].nunique() != 1:
        raise ValueError("frame: usage 1's replicates hold one model size and one domain")
    want = np.round(np.asarray(candidates, float), 6)
    rows = []
    for seed, f in frame.groupby("seed"):
        f = f[np.isin(np.round(f["r_d"].to_numpy(float), 6), want)]
        complete = set(want) <= set(np.round(f["r_d"].to_numpy(float), 6))
        L_g0 = float(f[f["step"] == 0]["L_g"].mean())
        end = f[f["step"] == f["step"].max()].drop_duplicates("r_d")
        rows.append({"seed": int(seed), "L_g0": L_g0, "ratios": len(end), "complete": complete,
                     "best measured r_d": best_measured_ratio(end, L_g0, T) if complete else float("nan")})
    return pd.DataFrame(rows)


def plot_usage1(axes, L_g: Callable, L_d: Callable, end, pred: dict[str, Any], L_g0: float, T: float,
                r_interval: tuple[float, float], title: str) -> None:
    """Usage 1 on two axes (Eq. 10, Table 5's check): the fitted general and domain laws against r_d (dashed), the
    measured final losses ``end`` (columns r_d, L_g, L_d, seed; one marker per seed), the budget ``(1 + T) L_g0``,
    the predicted r_d* and its bootstrap interval ``r_interval`` (grey band). Raises nothing itself; the curves
    raise what :func:`repro.dcpt.usage.law_curves` raises."""
    rr = np.linspace(0, 1, 201)
    axes[0].plot(rr, L_g(rr), "--", label="L3 general")
    axes[1].plot(rr, L_d(rr), "--", label="L3 domain")
    for seed, e in end.groupby("seed"):
        axes[0].plot(e["r_d"], e["L_g"], "o", ms=4, alpha=0.7, label=f"measured, seed {seed}")
        axes[1].plot(e["r_d"], e["L_d"], "o", ms=4, alpha=0.7, label=f"measured, seed {seed}")
    axes[0].axhline(L_g0 * (1 + T), color="r", lw=0.8, label=f"budget (seed-0 base, +{T:.0%})")
    lo, hi = r_interval
    for ax, side in zip(axes, ("general", "domain"), strict=True):
        ax.axvline(pred["r_d"], color="k", lw=0.8, ls=":", label=f"predicted r_d* = {pred['r_d']:.3f}")
        ax.axvspan(lo, hi, color="k", alpha=0.1, label=f"bootstrap 95% [{lo:.2f}, {hi:.2f}]")
        ax.set_xlabel("domain ratio $r_d$")
        ax.set_ylabel(f"{side} loss (nats/token)")
        ax.set_title(f"{title}: {side} loss")
        ax.legend(fontsize=6)


def trend_regression(frame, which: str = "domain", min_r: float = 0.0):
    """The trends of §3.1 as one regression: ``L ~ log D * r + C(size)`` by ordinary least squares on the measured
    points above step 0 with r (the matching corpus's share) at least ``min_r``, with standard errors clustered by
    run (a run's points share its noise; statsmodels' cluster-robust covariance), log D and r centred on their
    means. The explicit trends read as negative coefficients of log D (its slope at the mean r) and of r (at the
    mean log D), the implicit one (data are worth more at a larger share) as a negative ``logD:r``. Returns a DataFrame indexed by term: coef, ci_low, ci_high (95 %), p. ``ValueError`` when
    fewer than 3 runs remain."""
    import pandas as pd
    import statsmodels.formula.api as smf

    _check.which(which)
    loss = "L_d" if which == "domain" else "L_g"
    _check.columns("frame", frame, ("run", "size", "step", "r_d", "D", loss))
    min_r = _check.real("min_r", min_r)
    f = frame[frame["step"] > 0].assign(r=lambda d: d["r_d"] if which == "domain" else 1 - d["r_d"])
    f = f[f["r"] >= min_r - 1e-9]
    # both centred, so that each main effect is the slope at the other's mean (not at D = 1 token or r = 0)
    f = f.assign(logD=np.log(f["D"]) - np.log(f["D"]).mean(), r=f["r"] - f["r"].mean(), L=f[loss])
    if f["run"].nunique() < 3:
        raise ValueError(f"frame: a regression clustered by run needs 3 runs or more, got {f['run'].nunique()}")
    formula = "L ~ logD * r" + (" + C(size)" if f["size"].nunique() > 1 else "")
    res = smf.ols(formula, data=f).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(f["run"])[0]})
    ci = res.conf_int()
    terms = ["logD", "r", "logD:r"]
    return pd.DataFrame({"coef": res.params[terms], "ci_low": ci.loc[terms, 0], "ci_high": ci.loc[terms, 1],
                         "p": res.pvalues[terms]})
