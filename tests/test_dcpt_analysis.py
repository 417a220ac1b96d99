"""Notebook 03's analysis on a grid frame made from a known law (no training)."""

import matplotlib.pyplot as plt
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
from repro.dcpt.fit import ratio_splits
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
    fig, ax = plt.subplots(1, 2)
    plot_loss_vs_ratio(ax[0], f, fits["L3"], "domain", "s", [80, 640], held_out=[0.5])
    plot_loss_vs_D(ax[1], f, fits["L3"], "domain", "s", "code")
    plt.close(fig)
