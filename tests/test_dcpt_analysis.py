"""Notebook 03's analysis on a grid frame made from a known law (no training)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from repro.dcpt import LAWS
from repro.dcpt.analysis import (
    fit_forms,
    forms_table,
    heldout_table,
    inflection_ratio,
    plot_loss_vs_D,
    plot_loss_vs_ratio,
    trend_check,
    trends_above,
)
from repro.dcpt.generalise import ratio_splits
from repro.dcpt.grid import PAPER_RATIOS, points


def law_frame(p, sizes=(("s", 0.2e6), ("m", 0.8e6)), steps=(0, 80, 160, 320, 640)):
    rows = []
    for size, N in sizes:
        for rd in PAPER_RATIOS:
            for step in steps:
                D = step * 2048
                L = LAWS["L3"].predict(p, N / 1e6, max(D, 1) / 1e6, rd)
                rows.append(dict(run=f"{size}/code/r{rd:.2f}", size=size, N=N, n_total=N * 2, domain="code", r_d=rd,
                                 step=step, D=D, L_g=float(L) + 0.1, L_d=float(L)))
    return pd.DataFrame(rows)


P = dict(E=1.5, A=0.5, alpha=0.35, B=0.1, beta=0.3, eta=1.6, gamma=0.5, eps=0.1, C=0.8)


def test_trends_hold_on_a_law_that_has_them():
    check = trend_check(law_frame(P), "domain")
    assert check["dL/dr<0"] == 1.0 and check["d2L/dDdr<0"] == 1.0
    assert check["per_ratio"][0.0]["dL/dD<0"] == 0.0  # L3 has no D-dependence at r = 0: its B-term vanishes
    assert trends_above(check, 0.1)["dL/dD<0"] == 1.0
    assert inflection_ratio(law_frame(P)) == 0.0


def test_trend_violations_are_counted():
    f = law_frame(P)
    f.loc[(f["r_d"] == 0.1) & (f["step"] == 640), "L_d"] += 1.0  # the loss rises at the end of r=0.1 runs
    check = trend_check(f, "domain")
    assert check["per_ratio"][0.1]["dL/dD<0"] < 1.0
    assert inflection_ratio(f) == pytest.approx(0.1)
    assert trends_above(check, 0.2)["dL/dD<0"] == 1.0


@pytest.mark.slow
def test_fit_compare_and_plot():
    f = law_frame(P)
    pts = points(f, "domain")
    fits = fit_forms(pts, ["L3", "L5"], n_starts=2, grid_size=500)
    table = forms_table(fits, pts)
    assert table.loc["L3", "R2"] > 0.99 and table.loc["L3", "R2"] >= table.loc["L5", "R2"]
    cv = heldout_table(pts, ratio_splits(pts)[:2], ["L3"], n_starts=2, grid_size=300)
    assert len(cv) == 2 and set(cv.columns) >= {"r2_test", "huber_test"}
    # in two worker processes, and warm-started from the full-data fits: same splits, same order, no worse
    par = heldout_table(pts, ratio_splits(pts)[:2] + ratio_splits(pts)[:2], ["L3", "L5"], warm=fits, jobs=2,
                        n_starts=2, grid_size=300)
    assert list(par["law"]) == ["L3"] * 4 + ["L5"] * 4
    pd.testing.assert_frame_equal(par.iloc[:2].reset_index(drop=True), par.iloc[2:4].reset_index(drop=True))
    assert (par["huber_train"].iloc[:2].to_numpy() <= cv["huber_train"].to_numpy() * (1 + 1e-6)).all()
    fig, ax = plt.subplots(1, 2)
    plot_loss_vs_ratio(ax[0], f, fits["L3"], "domain", "s", [80, 640], held_out=[0.5])
    plot_loss_vs_D(ax[1], f, fits["L3"], "domain", "s", "code")
    plt.close(fig)


def test_probe_features_read_the_early_evaluations():
    from repro.dcpt.analysis import probe_features

    steps = (0, 10, 15, 20, 25, 38, 46, 250)
    L = {"code": (5.0, 4.0, 3.6, 3.3, 3.1, 2.9, 2.8, 2.0), "law": (6.0, 5.5, 5.3, 5.1, 5.0, 4.9, 4.85, 4.0)}
    rows = [dict(run=f"s/{d}/r1.00", size="s", N=1e5, n_total=2e5, domain=d, r_d=1.0, step=st, D=st * 2048,
                 L_g=6.0, L_d=v) for d, vals in L.items() for st, v in zip(steps, vals, strict=True)]
    rows += [dict(rows[0], run="m/code/r1.00", size="m", L_d=1.0)]  # another size: not the probe
    pr = probe_features(pd.DataFrame(rows), "s", 1.0, steps=(10, 20, 40))
    assert pr.loc["code", "steps"] == (10, 20, 38)  # 40 read at the nearest evaluation
    assert pr.loc["code", "k1"] == 4.0 and pr.loc["code", "k2"] == pytest.approx(5.0 - 3.3)
    assert pr.loc["law", "k3"] == pytest.approx(6.0 - 2 * 5.1 + 4.9)
    assert pr.loc["law", "probe_fraction"] == pytest.approx(38 / 250)
    with pytest.raises(ValueError, match="no run of size"):
        probe_features(pd.DataFrame(rows), "l")


def test_cross_domain_law_predicts_a_held_out_domain_of_a_known_law():
    """Frames from the K3 cross-domain law over six domains: fitted on four, it predicts the other two."""
    from repro.dcpt.analysis import cross_points
    from repro.dcpt.generalise import cross_validate, domain_splits
    from repro.dcpt.laws import CROSS_LAWS

    rng = np.random.default_rng(0)
    probes = pd.DataFrame({"k1": rng.uniform(2, 6, 6), "k2": rng.uniform(0.5, 3, 6), "k3": rng.uniform(0.1, 1, 6)},
                          index=[f"d{i}" for i in range(6)])
    p = dict(P, F=0.6, mu=0.8, w1=2.0, w2=0.5)
    frames = []
    for dom in probes.index:
        f = law_frame(P).assign(domain=dom)
        f["run"] = f["run"].str.replace("code", dom)
        k1, k2 = np.full(len(f), probes.loc[dom, "k1"]), np.full(len(f), probes.loc[dom, "k2"])
        L = CROSS_LAWS["K3"].predict(p, f["N"] / 1e6, np.maximum(f["D"], 1) / 1e6, f["r_d"], k1=k1, k2=k2)
        f["L_d"] = np.asarray(L) * np.exp(rng.normal(0, 0.002, len(f)))
        frames.append(f)
    pts = cross_points(pd.concat(frames), "domain", probes)
    assert pts.k1 is not None and len(np.unique(pts.k1)) == 6
    splits = domain_splits(pts)
    assert len(splits) == 15
    rows = cross_validate(CROSS_LAWS["K3"], pts, splits[:2], n_starts=4, grid_size=3000)
    assert min(r["r2_test"] for r in rows) > 0.95
    with pytest.raises(ValueError, match="no probe features"):
        cross_points(pd.concat(frames), "domain", probes.iloc[:3])


def test_paired_bootstrap_brackets_usage1_and_runs_in_workers():
    from repro.dcpt import fit, usage
    from repro.dcpt.analysis import paired_bootstrap, usage1_derived

    f = law_frame(P, steps=(0, 40, 80, 160, 320, 640))
    rng = np.random.default_rng(1)
    f["L_d"] *= np.exp(rng.normal(0, 0.003, len(f)))
    # a general law rising with the domain share: L_g = 3 + 0.5 r_d^2 (over D too, so the law can fit it)
    f["L_g"] = (3 + 0.5 * f["r_d"] ** 2 + 0.2 / (1 + f["D"] / 1e5)) * np.exp(rng.normal(0, 0.003, len(f)))
    pg, pd_ = points(f, "general"), points(f, "domain")
    fg, fd = fit(LAWS["L3"], pg, n_starts=4, grid_size=3000), fit(LAWS["L3"], pd_, n_starts=4, grid_size=3000)
    N0, D0, L_g0 = 0.8, float(f["D"].max()) / 1e6, 3.0
    point = usage.optimal_ratio_under_budget(*usage.law_curves(fg, fd, N0, D0), L_g0, 0.03)
    der = usage1_derived(N0, D0, L_g0, 0.03)
    boot = paired_bootstrap(pg, pd_, fg, fd, n_boot=6, seed=0, derived=der)
    assert len(boot["derived"]["r_d"]) >= 5 and set(boot["domain"]) >= {"E", "eta", "gamma"}
    r = boot["derived"]["r_d"]
    assert r.min() - 0.05 <= point["r_d"] <= r.max() + 0.05
    par = paired_bootstrap(pg, pd_, fg, fd, n_boot=6, seed=0, derived=der, jobs=2)
    np.testing.assert_allclose(par["derived"]["r_d"], r)  # the same draws in two worker processes
    with pytest.raises(ValueError, match="same runs"):
        paired_bootstrap(pg, pd_.subset(pd_.run != pd_.run[0]), fg, fd, n_boot=1)


# -- issue 11: the units of notebook 03's claims ----------------------------------------------------------------
def test_best_measured_ratio_and_its_replicates():
    from repro.dcpt import analysis as an

    end = pd.DataFrame({"r_d": [0.5, 0.6, 0.7], "L_g": [5.0, 5.1, 5.3], "L_d": [3.0, 2.9, 2.8]})
    assert an.best_measured_ratio(end, L_g0=5.0, T=0.03) == 0.6  # 5.3 breaks 5.15; 0.6 has the lower L_d
    assert np.isnan(an.best_measured_ratio(end, L_g0=4.0, T=0.03))
    rows = []
    for seed, L_g0 in ((0, 5.0), (1, 5.2)):
        for _, e in end.iterrows():
            rows += [{"seed": seed, "size": "m", "domain": "code", "r_d": e["r_d"], "step": 0, "L_g": L_g0, "L_d": 4.0},
                     {"seed": seed, "size": "m", "domain": "code", "r_d": e["r_d"], "step": 9, "L_g": e["L_g"],
                      "L_d": e["L_d"]}]
    reps = an.usage1_replicates(pd.DataFrame(rows), (0.5, 0.6, 0.7), 0.03)
    assert reps["best measured r_d"].tolist() == [0.6, 0.7] and reps["L_g0"].tolist() == [5.0, 5.2]
    part = an.usage1_replicates(pd.DataFrame(rows), (0.5, 0.6, 0.8), 0.03)  # 0.8 not trained: no answer
    assert not part["complete"].any() and part["best measured r_d"].isna().all()


def test_run_bootstrap_r2_and_huber_per_point():
    """A fit that predicts every run exactly has R^2 1 on every draw of runs; one whose error is a constant
    0.1 nats has Huber(delta=1) 0.005 at every point (half the squared error)."""
    from repro.dcpt import analysis as an
    from repro.dcpt.fitting import Points, fit

    pts = points(law_frame(P), "domain")
    exact = fit(LAWS["L3"], pts, n_starts=2, grid_size=300)
    shifted = Points(pts.N, pts.D, pts.r, exact.predict(pts) + 0.1, run=pts.run)
    assert an.huber_per_point(exact, shifted) == pytest.approx(np.full(pts.n, 0.005), rel=1e-6)
    reps = an.run_bootstrap_r2(exact, Points(pts.N, pts.D, pts.r, exact.predict(pts), run=pts.run), n_boot=50)
    assert reps.shape == (50,) and np.allclose(reps, 1.0)
    noisy = an.run_bootstrap_r2(exact, shifted, n_boot=50)
    assert np.all(noisy < 1) and noisy.std() > 0
    with pytest.raises(ValueError, match="at least 2 runs"):
        an.run_bootstrap_r2(exact, Points(pts.N, pts.D, pts.r, pts.L, run=np.array(["one"] * pts.n)))


def test_trend_regression_reads_the_trends_of_a_law_that_has_them():
    """On a planted L3 frame (three sizes, noise added so that the clustered errors are finite) the coefficients
    of log D, r and log D:r are negative with intervals below zero; on the general side, where our frame's L_g is
    L_d + 0.1 read against r_g = 1 - r_d, the sign of r flips."""
    from repro.dcpt import analysis as an

    f = law_frame(P, sizes=(("s", 0.2e6), ("m", 0.4e6), ("l", 0.8e6)))
    f["L_d"] += np.random.default_rng(0).normal(0, 1e-3, len(f))
    f["L_g"] = f["L_d"] + 0.1
    t = an.trend_regression(f, "domain", min_r=0.1)
    assert list(t.index) == ["logD", "r", "logD:r"] and (t["ci_high"] < 0).all()
    assert an.trend_regression(f, "general", min_r=0.0).loc["r", "ci_low"] > 0
    with pytest.raises(ValueError, match="3 runs or more"):
        an.trend_regression(f[f["run"].isin(f["run"].unique()[:2])], "domain")
