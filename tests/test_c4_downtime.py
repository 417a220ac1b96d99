"""Tests of repro.c4.downtime: the Monte Carlo of error-induced downtime (C4 card §4, §8 claim C4D-4)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro.c4 import downtime as dt
from repro.c4.downtime import CATEGORIES, DowntimeInputs, renewal_reward_shares, simulate


def _inputs(**changes) -> DowntimeInputs:
    base = dict(nodes=16, failure_rate_per_node_h=1e-3, job_length_h=720.0, checkpoint_interval_h=2.0,
                detection_s=600.0, diagnosis_s=1800.0, reinit_s=900.0)
    base.update(changes)
    return DowntimeInputs(**base)


# ------------------------------------------------------------------------------------------------------
# Monte Carlo against the renewal-reward expectation
# ------------------------------------------------------------------------------------------------------

ORACLE_CASES = {
    # long jobs: the renewal-reward value is the long-run limit, and a job that starts fresh sits below
    # it by O(cycle / job length); at 20,000 h that bias is well under one standard error here
    "before_c4d": dt.before_c4d(job_length_h=20_000.0),
    "with_c4d_samples": dt.with_c4d([5.0, 20.0, 40.0, 300.0], job_length_h=20_000.0,
                                    checkpoint_interval_h=0.25, diagnosis_s=(0.0, 60.0, 600.0)),
    # failures often abort re-initialisation (Lambda R = 0.64) and checkpoints are sparse (Lambda tau = 1.9)
    "high_rate": DowntimeInputs(nodes=64, failure_rate_per_node_h=0.01, job_length_h=2_000.0,
                                checkpoint_interval_h=3.0, detection_s=(10.0, 100.0, 1000.0, 5000.0),
                                diagnosis_s=1800.0, reinit_s=3600.0),
}


@pytest.mark.parametrize("name", list(ORACLE_CASES))
def test_monte_carlo_mean_agrees_with_renewal_reward(name):
    """Mean share of every category within 4 standard errors of the analytic expectation."""
    inputs = ORACLE_CASES[name]
    res = simulate(inputs, replicates=1500, seed=11)
    expected = renewal_reward_shares(inputs)
    for c, s in res.shares().items():
        se = s.std(ddof=1) / math.sqrt(s.size)
        assert se > 0
        assert abs(s.mean() - expected[c]) < 4 * se, (c, s.mean(), expected[c], se)


def test_expected_lost_work_matches_direct_sampling_and_limits():
    rng = np.random.default_rng(0)
    lam, tau = 0.7, 2.0
    x = rng.exponential(1 / lam, 400_000)
    lost = np.mod(x, tau)
    assert abs(lost.mean() - dt.expected_lost_work_h(lam, tau)) < 4 * lost.std() / math.sqrt(x.size)
    # rare failures: half an interval; the series branch joins the exact formula smoothly
    assert dt.expected_lost_work_h(0.0, 3.0) == 1.5
    assert dt.expected_lost_work_h(1e-4 * (1 - 1e-9), 1.0) == pytest.approx(dt.expected_lost_work_h(1e-4, 1.0),
                                                                          rel=1e-9)
    # frequent failures: about the mean time to failure
    assert dt.expected_lost_work_h(100.0, 1.0) == pytest.approx(0.01)


# ------------------------------------------------------------------------------------------------------
# Properties of the simulation
# ------------------------------------------------------------------------------------------------------

def test_zero_failure_rate_gives_zero_downtime():
    inputs = _inputs(failure_rate_per_node_h=0.0)
    res = simulate(inputs, replicates=50, seed=0)
    assert (res.failures == 0).all()
    assert (res.downtime_h == 0).all()
    assert all(v == 0.0 for v in renewal_reward_shares(inputs).values())


def test_breakdown_sums_to_total_and_fits_in_the_job():
    inputs = _inputs(failure_rate_per_node_h=5e-3)
    res = simulate(inputs, replicates=300, seed=1)
    hours = res.hours()
    assert set(hours) == set(CATEGORIES)
    np.testing.assert_allclose(sum(hours.values()), res.downtime_h)
    shares = res.shares()
    np.testing.assert_allclose(sum(shares[c] for c in CATEGORIES), shares["downtime"])
    assert (res.downtime_h <= inputs.job_length_h + 1e-9).all()
    assert all((h >= 0).all() for h in hours.values())
    frame = res.to_frame()
    assert len(frame) == 300
    np.testing.assert_allclose(frame[[f"{c}_h" for c in CATEGORIES]].sum(axis=1), frame["downtime_h"])
    summary = res.summary()
    assert list(summary.index) == [*CATEGORIES, "downtime"]
    assert summary.loc["downtime", "mean_share"] == pytest.approx(summary.loc[list(CATEGORIES), "mean_share"].sum())
    assert (summary["share_lo"] <= summary["share_hi"]).all()


def test_a_job_ending_mid_phase_counts_the_phase_up_to_its_end():
    """A failure before the end is all but certain (P = 1 - exp(-10)) and detection outlasts the job: all the rest is detection."""
    inputs = _inputs(nodes=1, failure_rate_per_node_h=10.0, job_length_h=1.0, detection_s=7200.0)
    res = simulate(inputs, replicates=200, seed=2)
    np.testing.assert_allclose(res.recomputation_h + res.detection_h, 1.0)
    assert (res.diagnosis_isolation_h == 0).all() and (res.reinitialisation_h == 0).all()


def test_recomputation_never_exceeds_a_checkpoint_interval_per_failure():
    inputs = _inputs(failure_rate_per_node_h=5e-3, checkpoint_interval_h=0.5)
    res = simulate(inputs, replicates=300, seed=3)
    assert (res.recomputation_h <= 0.5 * res.failures + 1e-12).all()


@pytest.mark.parametrize("field, values", [
    ("failure_rate_per_node_h", [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3]),
    ("detection_s", [0.0, 60.0, 600.0, 1800.0, 7200.0]),
])
def test_downtime_grows_with_failure_rate_and_detection_time(field, values):
    """Means over the same seed (common random numbers) rise with each input."""
    means = [simulate(_inputs(**{field: v}), replicates=1000, seed=4).downtime_share.mean() for v in values]
    assert np.all(np.diff(means) > 0), means
    expected = [renewal_reward_shares(_inputs(**{field: v}))["downtime"] for v in values]
    assert np.all(np.diff(expected) > 0)


def test_detection_samples_shifted_up_never_lower_detection_time():
    """Inverse-CDF draws: every replicate's k-th detection is at least as long with larger samples."""
    low, high = _inputs(detection_s=(10.0, 20.0, 30.0)), _inputs(detection_s=(40.0, 50.0, 60.0))
    a, b = simulate(low, replicates=200, seed=5), simulate(high, replicates=200, seed=5)
    assert b.detection_h.mean() > a.detection_h.mean()


def test_deterministic_by_seed():
    inputs = _inputs(failure_rate_per_node_h=3e-3, detection_s=(1.0, 50.0, 900.0))
    a, b = simulate(inputs, replicates=200, seed=7), simulate(inputs, replicates=200, seed=7)
    c = simulate(inputs, replicates=200, seed=8)
    for cat in CATEGORIES:
        np.testing.assert_array_equal(a.hours()[cat], b.hours()[cat])
    np.testing.assert_array_equal(a.failures, b.failures)
    assert not np.array_equal(a.downtime_h, c.downtime_h)
    g = simulate(inputs, replicates=200, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(g.downtime_h, a.downtime_h)


def test_default_scenarios_give_tens_of_percent_before_and_a_few_percent_with_c4d():
    """With this workbook's default assumptions (128 nodes, Llama 3's failure rate, hourly checkpoints,
    a 30-min watchdog and hours-to-days of manual diagnosis before; 30 s detection and 30 s isolation
    with C4D; 15 min of re-initialisation in both), the before share is tens of percent and the
    with-C4D share a few percent or less: the shape of the paper's 31.19 % -> 1.16 % (claim C4D-4).
    This is a property of the assumptions, not evidence about the paper's cluster."""
    before = simulate(dt.before_c4d(), replicates=2000, seed=0).downtime_share
    after = simulate(dt.with_c4d(), replicates=2000, seed=0).downtime_share
    assert 0.10 <= before.mean() <= 0.50
    assert after.mean() <= 0.03
    assert np.quantile(after, 0.975) < np.quantile(before, 0.025)
    assert 0.10 <= renewal_reward_shares(dt.before_c4d())["downtime"] <= 0.50
    assert renewal_reward_shares(dt.with_c4d())["downtime"] <= 0.03


def test_scenarios_take_overrides_and_keep_c4d_out_of_restart_and_checkpoints():
    b, w = dt.before_c4d(), dt.with_c4d([1.0, 2.0])
    assert w.detection_s == (1.0, 2.0)
    for f in ("nodes", "failure_rate_per_node_h", "job_length_h", "checkpoint_interval_h", "reinit_s"):
        assert getattr(b, f) == getattr(w, f)
    assert b.mean_detection_h == 0.5 and 1 < b.mean_diagnosis_h < 48
    assert dt.before_c4d(detection_s=600.0, nodes=4).detection_s == 600.0
    assert dt.with_c4d(reinit_s=60.0, checkpoint_interval_h=0.5).reinit_s == 60.0
    assert hash(w) == hash(dt.with_c4d(np.array([1.0, 2.0])))  # samples stored as a tuple


def test_sweep_returns_a_table_for_a_plot():
    values = [0.25, 1.0, 4.0]
    table = dt.sweep(_inputs(failure_rate_per_node_h=2e-3), "checkpoint_interval_h", values, replicates=300)
    assert isinstance(table, pd.DataFrame)
    assert list(table["checkpoint_interval_h"]) == values
    for col in ("mean_share", "mean_share_se", "share_lo", "share_hi", "expected_share", "mean_failures",
                *(f"{c}_share" for c in CATEGORIES)):
        assert col in table
    assert table["mean_share"].is_monotonic_increasing
    samples = dt.sweep(_inputs(), "detection_s", [(1.0, 3.0), 600.0], replicates=50)
    assert list(samples["detection_s"]) == [2.0, 600.0]
    with pytest.raises(ValueError, match="^field"):
        dt.sweep(_inputs(), "detection", [1.0])
    with pytest.raises(ValueError, match="^values"):
        dt.sweep(_inputs(), "detection_s", [])
    with pytest.raises(ValueError, match="^checkpoint_interval_h"):
        dt.sweep(_inputs(), "checkpoint_interval_h", [1.0, 0.0])


# ------------------------------------------------------------------------------------------------------
# Bad input is refused, naming the field
# ------------------------------------------------------------------------------------------------------

BAD = [
    ("nodes", 0, ValueError), ("nodes", -3, ValueError), ("nodes", 1.5, TypeError), ("nodes", True, TypeError),
    ("failure_rate_per_node_h", -1e-4, ValueError), ("failure_rate_per_node_h", math.nan, ValueError),
    ("failure_rate_per_node_h", math.inf, ValueError), ("failure_rate_per_node_h", "0.1", TypeError),
    ("failure_rate_per_node_h", 10.0, ValueError),  # 16 * 10 * 720 failures: too many to simulate
    ("job_length_h", 0.0, ValueError), ("job_length_h", -1.0, ValueError), ("job_length_h", math.inf, ValueError),
    ("checkpoint_interval_h", 0.0, ValueError), ("checkpoint_interval_h", -2.0, ValueError),
    ("checkpoint_interval_h", math.nan, ValueError), ("checkpoint_interval_h", math.inf, ValueError),
    ("detection_s", -1.0, ValueError), ("detection_s", math.nan, ValueError), ("detection_s", [], ValueError),
    ("detection_s", np.array([]), ValueError), ("detection_s", [1.0, math.nan], ValueError),
    ("detection_s", [1.0, -1.0], ValueError), ("detection_s", [[1.0, 2.0]], ValueError),
    ("detection_s", "30", TypeError), ("detection_s", None, TypeError),
    ("diagnosis_s", -5.0, ValueError), ("diagnosis_s", [math.inf], ValueError), ("diagnosis_s", (), ValueError),
    ("reinit_s", -1.0, ValueError), ("reinit_s", math.nan, ValueError), ("reinit_s", [60.0], TypeError),
]


@pytest.mark.parametrize("field, value, exc", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_input_is_refused_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=f"^{field}"):
        _inputs(**{field: value})


def test_bad_arguments_of_the_functions_are_refused():
    with pytest.raises(ValueError, match="^detection_s"):
        dt.with_c4d([])
    with pytest.raises(ValueError, match="^diagnosis_s"):
        dt.before_c4d(diagnosis_s=[math.nan])
    with pytest.raises(ValueError, match="^replicates"):
        simulate(_inputs(), replicates=0)
    with pytest.raises(ValueError, match="^seed"):
        simulate(_inputs(), seed=-1)
    with pytest.raises(TypeError, match="^inputs"):
        simulate({"nodes": 1})
    with pytest.raises(ValueError, match="^level"):
        simulate(_inputs(), replicates=10).summary(level=1.0)
    with pytest.raises(ValueError, match="^checkpoint_interval_h"):
        dt.expected_lost_work_h(1.0, 0.0)
    with pytest.raises(ValueError, match="^job_failure_rate_h"):
        dt.expected_lost_work_h(-1.0, 1.0)
