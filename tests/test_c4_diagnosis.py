"""C4D: the monitored ring all-reduce, the detector's rules, real fault-injection jobs over gloo, isolation and
restart through the elastic agent, and bad input."""

import math

import numpy as np
import psutil
import pytest
import torch

from repro.c4 import collective, detect, faults, job, restart, trials
from repro.c4.collective import LAUNCHED, State, ring_orders
from repro.c4.faults import Fault, FaultError
from repro.c4.job import JobError, run_job
from repro.c4.worker import JobConfig


# ------------------------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize("world", range(2, 9))
def test_rings_cover_every_ordered_pair(world):
    rings = ring_orders(world)
    assert all(sorted(r) == list(range(world)) and r[0] == 0 for r in rings)
    pairs = {(r[i], r[(i + 1) % world]) for r in rings for i in range(world)}
    assert pairs == {(a, b) for a in range(world) for b in range(world) if a != b}
    assert ring_orders(world) == rings  # deterministic


def _matrix(world=4, base=0.2e-3, cells=(), rows=(), cols=(), slow=2e-3, seed=0):
    rng = np.random.default_rng(seed)
    m = base * np.exp(rng.normal(0, 0.1, (world, world)))
    for s, d in cells:
        m[s, d] += slow
    for r in rows:
        m[r, :] += slow
    for c in cols:
        m[:, c] += slow
    np.fill_diagonal(m, np.nan)
    return m


@pytest.mark.parametrize("world", [4, 6, 8])
def test_latency_matrix_rules_row_column_cell(world):
    f, floor = 3.0, 0.5e-3
    assert detect.classify_matrix(_matrix(world), f, floor) is None
    assert detect.classify_matrix(_matrix(world, rows=[2]), f, floor) == ("slow_send", (2,), None)
    assert detect.classify_matrix(_matrix(world, cols=[1]), f, floor) == ("slow_recv", (1,), None)
    assert detect.classify_matrix(_matrix(world, cells=[(3, 0)]), f, floor) == ("slow_pair", (3, 0), (3, 0))
    kind, ranks, _ = detect.classify_matrix(_matrix(world, rows=[0], cols=[1]), f, floor)
    assert kind == "slow_comm" and {0, 1} <= set(ranks)
    # a cell above the factor but under the floor is not anomalous
    assert detect.classify_matrix(_matrix(world, cells=[(0, 1)], slow=0.45e-3), 2.0, floor) is None


def test_latency_matrix_is_the_median_transfer_time():
    # seq, src, dst, bytes, t_send_post, t_recv_post, t_recv_done
    x = np.array([[0, 0, 1, 8, 1.0, 0.5, 1.3], [0, 0, 1, 8, 2.0, 2.5, 2.6], [0, 0, 1, 8, 3.0, 3.0, 3.2],
                  [0, 1, 0, 8, 1.0, 1.0, 1.05]])
    m = detect.latency_matrix(x, 2)
    assert m[0, 1] == pytest.approx(0.2) and m[1, 0] == pytest.approx(0.05) and np.isnan(m[0, 0])


def test_hang_rules_from_counters(tmp_path):
    s = State.create(tmp_path / "s.bin", 4)
    s.a[:, LAUNCHED] = [7, 7, 6, 7]
    d = detect.classify_hang(s, 3, 0.0)
    assert d.kind == "noncomm_hang" and d.ranks == (2,)
    s.a[:, LAUNCHED] = 7
    s.sent()[:] = 5
    s.delivered()[:] = 5
    s.sent()[1, 3] = 6  # rank 1 posted one more message to 3 than 3 received from 1
    d = detect.classify_hang(s, 3, 0.0)
    assert d.kind == "comm_hang" and d.connection == (1, 3)
    s.sent()[1, 3] = 5
    assert detect.classify_hang(s, 3, 0.0).kind == "unknown_hang"


def test_watchdog_knows_only_its_timeout():
    w = detect.Watchdog(600.0)
    assert w.delay_s("comm_hang", 0.04) == pytest.approx(600.04)
    assert w.delay_s("noncomm_hang") == 600.0
    assert math.isinf(w.delay_s("slow_rank")) and math.isinf(w.delay_s("slow_pair")) and math.isinf(w.delay_s("crash"))
    for bad in (-1.0, 0, float("inf"), True):
        with pytest.raises(ValueError, match="^timeout_s"):
            detect.Watchdog(bad)


def test_trial_scoring_needs_class_and_culprit():
    row = {"kind": "slow_pair", "rank": 2, "peer": 0, "found": "slow_pair", "found_ranks": "2 0",
           "found_connection": "2-0"}
    assert trials.correct(row)
    assert not trials.correct({**row, "found_connection": "0-2"})
    assert not trials.correct({**row, "found": "slow_send"})
    assert trials.correct({"kind": "slow_rank", "rank": 3, "peer": -1, "found": "slow_rank", "found_ranks": "3",
                           "found_connection": ""})


def test_random_faults_are_valid_and_seeded():
    rings = ring_orders(4)
    for kind in faults.KINDS:
        a = faults.random_fault(kind, 4, 8, 20, rings, np.random.default_rng(1))
        assert a == faults.random_fault(kind, 4, 8, 20, rings, np.random.default_rng(1))
        assert 8 <= a.iteration <= 20 and 0 <= a.rank < 4
        assert (a.peer >= 0) == (kind in faults.NEEDS_PEER)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("fault", "param"), [
    (Fault("slow_rank", 4, 3), "rank"), (Fault("slow_rank", -1, 3), "rank"), (Fault("slow_rank", 0, 40), "iteration"),
    (Fault("slow_pair", 0, 3), "peer"), (Fault("slow_pair", 0, 3, peer=0), "peer"),
    (Fault("crash", 0, 3, peer=1), "peer"), (Fault("melt", 0, 3), "kind"), (Fault("slow_rank", 0, 3, factor=1.0),
                                                                            "factor"),
    (Fault("slow_send", 0, 3, delay_s=0.0), "delay_s"), (Fault("slow_rank", 1.5, 3), "rank"),
    (Fault("crash", 1, 3.5), "iteration"), (Fault("slow_rank", 1, 3, factor=float("inf")), "factor"),
    (Fault("slow_send", 1, 3, delay_s=float("inf")), "delay_s"), (Fault("crash", True, 3), "rank")])
def test_bad_faults_are_refused_naming_the_field(fault, param):
    with pytest.raises(FaultError) as e:
        fault.check(4, 40, ring_orders(4))
    assert e.value.param == param and str(e.value).startswith(param)


def test_row_and_column_faults_need_three_ranks():
    with pytest.raises(FaultError, match="^kind"):
        Fault("slow_recv", 0, 3).check(2, 40, ring_orders(2))
    assert Fault("slow_rank", 0, 3).check(2, 40, ring_orders(2))


@pytest.mark.parametrize(("changes", "param"), [
    ({"world": 1}, "world"), ({"world": job.max_world() + 1}, "world"), ({"iterations": 0}, "iterations"),
    ({"compute_s": 0.0}, "compute_s"), ({"mode": "nccl"}, "mode"), ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"rings": ((0, 1, 1, 3),)}, "rings"), ({"pg_timeout_s": float("inf")}, "pg_timeout_s"), ({"width": True}, "width"),
    ({"width": 2.5}, "width"), ({"seed": -1}, "seed"), ({"lr": float("nan")}, "lr"), ({"iterations": True}, "iterations"),
    ({"compute_s": "a"}, "compute_s"), ({"jitter": -0.1}, "jitter")])
def test_bad_jobs_are_refused_naming_the_setting(changes, param):
    with pytest.raises(JobError) as e:
        run_job(JobConfig(**changes))
    assert e.value.param == param


@pytest.mark.parametrize(("kw", "param"), [({"lateness": 0}, "lateness"), ({"latency_factor": 1.0}, "latency_factor"),
                                           ({"persist": 0}, "persist"), ({"hang_factor": float("nan")}, "hang_factor"),
                                           ({"lateness": True}, "lateness"), ({"persist": True}, "persist"),
                                           ({"latency_factor": float("inf")}, "latency_factor"),
                                           ({"window": "3"}, "window")])
def test_bad_thresholds_are_refused(kw, param):
    with pytest.raises(ValueError, match=f"^{param}"):
        detect.Thresholds(**kw)


def test_unknown_sweeps_and_missing_tables_are_named():
    with pytest.raises(ValueError, match="^name"):
        trials.load("c4/nothing")
    with pytest.raises(ValueError, match="^name"):
        trials.sweep("c4/nothing")


def test_a_finished_job_is_not_a_hang(tmp_path):
    """Between the last iteration and the processes' exit nothing progresses: the ranks' finished flags keep the
    hang rule quiet."""
    s = State.create(tmp_path / "s.bin", 2)
    det = detect.Detector(tmp_path, s)
    det.iter_times = [0.05] * 5
    s.a[:, collective.PROGRESS] = 1.0
    assert det.poll(now=100.0)[0].kind in ("unknown_hang", "noncomm_hang", "comm_hang")
    det.hung = False
    s.a[:, collective.FINISHED] = 1
    assert det.poll(now=100.0) == []


def test_trial_scoring_splits_false_alarms_from_findings():
    rows = [{"kind": "healthy", "found": "slow_pair", "false_alarms": 2, "rank": -1, "peer": -1, "found_ranks": "0 2",
             "found_connection": "0-2"},
            {"kind": "slow_rank", "found": "slow_rank", "false_alarms": 1, "rank": 3, "peer": -1, "found_ranks": "3",
             "found_connection": ""},
            {"kind": "crash", "found": "none", "false_alarms": 0, "rank": 1, "peer": -1, "found_ranks": "",
             "found_connection": ""}]
    import pandas as pd

    assert sorted(trials.precision_units(pd.DataFrame(rows))) == [0.0, 0.0, 0.0, 1.0]


def test_a_fault_outside_the_job_is_refused_before_any_process_starts():
    with pytest.raises(FaultError, match="^iteration"):
        run_job(JobConfig(iterations=10), Fault("slow_rank", 1, 10))


# ---------------------------------------------------------------------------------------- real gloo jobs
@pytest.mark.slow
def test_monitored_ring_equals_gloo_allreduce():
    diffs = job.allreduce_agreement(world=4, numel=1001)
    assert len(diffs) == 4 and all(len(d) == len(ring_orders(4)) for d in diffs)
    assert max(max(d) for d in diffs) < 1e-5


def _no_survivors(pids):
    for pid in pids:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"worker {pid} outlived its trial"
        except psutil.NoSuchProcess:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("fault", [Fault("slow_rank", 2, 8), Fault("slow_send", 1, 8), Fault("slow_recv", 3, 8),
                                   Fault("slow_pair", 0, 8, peer=1), Fault("noncomm_hang", 1, 8),
                                   Fault("comm_hang", 2, 8, peer=3), Fault("crash", 3, 8)],
                         ids=lambda f: f.kind)
def test_each_fault_is_found_with_its_culprit_and_no_worker_survives(fault):
    res = run_job(JobConfig(iterations=20), fault, stop_on_slow=True)
    assert res.truth["iteration"] == 8
    first = res.diagnoses[0]
    assert first.kind == fault.kind
    assert first.ranks[0] == fault.rank
    if fault.peer >= 0:
        assert first.connection == (fault.rank, fault.peer)
    assert first.t > res.truth["onset_s"]
    assert len(res.pids) == 4
    _no_survivors(res.pids)


@pytest.mark.slow
def test_a_healthy_job_finishes_without_alarm():
    res = run_job(JobConfig(iterations=30))
    assert res.finished and res.diagnoses == [] and res.iterations_done == 29 and len(res.params) == 4
    assert 0.04 < res.iteration_s < 1.0


@pytest.mark.slow
def test_overhead_rows_pair_three_variants_per_round():
    rows = job.time_allreduce(JobConfig(), rounds=3)
    assert sorted((r["round"], r["variant"]) for r in rows) == sorted(
        (i, v) for i in range(3) for v in ("monitored", "ring", "native"))
    assert all(r["seconds"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("fault", [Fault("slow_rank", 2, 12), Fault("crash", 1, 12)], ids=lambda f: f.kind)
def test_restart_isolates_the_culprit_and_matches_a_straight_run(tmp_path, fault):
    cfg = JobConfig(iterations=24, checkpoint_every=5)
    r = restart.run_with_restart(cfg, fault, tmp_path / "elastic")
    assert r.diagnosis is not None and r.diagnosis.kind == fault.kind and r.diagnosis.ranks == (fault.rank,)
    assert r.slots[fault.rank] >= cfg.world and [s for i, s in enumerate(r.slots) if i != fault.rank] == [
        i for i in range(cfg.world) if i != fault.rank]
    assert r.resumed_from % cfg.checkpoint_every == 0 and 0 <= r.lost_steps <= cfg.checkpoint_every
    straight = run_job(cfg, None)
    assert straight.finished
    for a, b in zip(straight.params, r.params, strict=True):
        assert torch.equal(a, b)


def test_restart_refuses_a_used_folder(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(JobError, match="^run_dir"):
        restart.run_with_restart(JobConfig(iterations=5), None, tmp_path)


def test_state_counters_start_empty(tmp_path):
    s = State.create(tmp_path / "s.bin", 3)
    assert (s.a[:, collective.LAUNCHED] == -1).all() and (s.sent() == 0).all() and s.delivered().shape == (3, 3)


@pytest.mark.slow
def test_a_stored_trial_runs_again_to_the_same_finding():
    """One trial of the stored calibration table made again: the same fault (rank, peer, onset from the trial's
    seed) and the same finding, class and culprit (its delay is timing and may differ by an iteration)."""
    table = trials.load("c4/calibration")
    row = table[table["kind"] == "slow_send"].iloc[0]
    spec = next(t for t in trials.specs("c4/calibration") if t.kind == "slow_send" and t.trial == row["trial"])
    (again,) = trials.run_trial(spec)
    for k in ("rank", "peer", "onset", "found", "found_ranks", "found_connection"):
        assert again[k] == row[k], k
