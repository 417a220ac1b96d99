"""Notebook 05's runs and their analysis (repro.m6t): specs, sweeps, a stored point re-trained, the GPU profile's
code path at a tiny size on the CPU, and the paired comparisons on tables with known answers."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from repro import paths, runs
from repro.m6t import analysis
from repro.m6t.profiles import PROFILES
from repro.m6t.sweep import (
    COLUMNS,
    CONFIGS,
    GRID_CONFIGS,
    MATCHED_CONFIGS,
    RETRAIN_RTOL,
    SEEDS,
    SMOKE,
    SWEEPS,
    MoERun,
    build_model,
    perform_run,
    retrain,
    smoke_sweep,
    specs,
    sweep,
)


# ------------------------------------------------------------------------------------------------ specs
@pytest.mark.parametrize("field,value", [("config", "top3"), ("lam", -0.01), ("lam", True), ("d_model", 0),
                                         ("steps", 1.5), ("n_expert", 0), ("eval_steps", (0, 900)),
                                         ("eval_steps", (0, 5)), ("eval_steps", (800, 0)), ("lam", math.inf),
                                         ("n_head", 3)])
def test_bad_run_specs_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MoERun(**{"config": "top1", field: value})


def test_labels_name_config_balance_width_and_seed():
    assert MoERun("top2", 0.0, seed=3).label == "top2-nobal/d64/s3"
    assert MoERun("2top1", 0.01, d_model=128).label == "2top1/d128/s0"
    assert MoERun("dense", 0.0).label == "dense/d64/s0"  # the dense model has no balance loss to turn off


def test_the_sweeps_hold_what_the_notebook_compares():
    grid = specs("m6t/grid")
    assert len(grid) == len(SEEDS) * (2 * (len(GRID_CONFIGS) - 1) + 1)
    for s in SEEDS:  # every seed has every config with and without the balance loss, the dense model once
        got = sorted((r.config, r.lam) for r in grid if r.seed == s)
        assert got == sorted([("dense", 0.0)] + [(c, lam) for c in GRID_CONFIGS[1:] for lam in (0.01, 0.0)])
    matched = specs("m6t/matched")
    assert {(r.config, r.seed, r.lam) for r in matched} == {(c, s, 0.01) for c in MATCHED_CONFIGS for s in SEEDS}
    width = specs("m6t/width")
    assert {r.d_model for r in width} == {128} and all(r.lam == 0.01 for r in width)
    assert {(r.config, r.seed) for r in width} == {(c, s) for c in ("top2", "2top1", "top4", "4top1") for s in SEEDS}
    ids = [runs.run_id(r) for name in SWEEPS for r in specs(name)]
    assert len(ids) == len(set(ids))


def test_sweeps_are_known_to_the_runs_layer_and_refuse_unknown_names():
    assert set(SWEEPS) <= set(runs.sweep_names())
    assert runs.get_sweep("m6t/matched").path == paths.DATA / "m6t" / "matched"
    with pytest.raises(ValueError, match="name"):
        specs("m6t/nothing")
    with pytest.raises(ValueError, match="device"):
        sweep("m6t/grid", device="tpu")
    assert {r.device for r in sweep("m6t/full", device="cuda").specs} == {"cuda"}


def test_profiles_share_keys_and_default_reads_the_stored_tables():
    assert {p: set(v) for p, v in PROFILES.items()} == {p: {"source", "tables", "jobs"} for p in PROFILES}
    assert PROFILES["default"]["source"] == "stored"
    for name in PROFILES["default"]["tables"]:
        assert paths.DATA.joinpath(name + ".csv").exists(), name


# ------------------------------------------------------------------------------------------------ training
def test_full_profile_code_path_trains_at_a_tiny_size_on_the_cpu():
    """The GPU sweep's runs are the same code; here its first sparse and its wide spec, shrunk to seconds."""
    full = specs("m6t/full")
    tiny = {k: v for k, v in SMOKE.items()}
    for spec in (full[1], full[-1]):
        run = dataclasses.replace(spec, **{**tiny, "d_model": 32 if spec.d_model == full[1].d_model else 48})
        rows = perform_run(run)
        assert [r["step"] for r in rows] == list(run.eval_steps)
        assert all(set(r) == set(COLUMNS) - {"run"} for r in rows)
        last = rows[-1]
        assert math.isfinite(last["val_loss"]) and last["val_loss"] < rows[0]["val_loss"]
        assert 0 <= last["dropped"] <= 1 and last["cv"] >= 0 and 0 <= last["entropy"] <= 1 + 1e-9


def test_matched_configs_have_top1_active_parameters_up_to_biases():
    """Experts of d_ff / k: k experts a token do top-1's work (each extra expert adds only its output bias)."""
    run = MoERun("top1", **SMOKE)
    top1 = build_model(run, 512).active_params()
    for c in MATCHED_CONFIGS:
        m = build_model(dataclasses.replace(run, config=c), 512)
        extra = len(m.moe_layers()) * (CONFIGS[c][1] - 1) * run.d_model
        assert m.active_params() == top1 + extra, c
        assert m.moe_layers()[0].d_expert == round(CONFIGS[c][3] * 2 * run.d_model)


def test_a_stored_run_point_retrains_to_its_stored_numbers():
    """One point of the grid the notebook reads (800 steps, about a minute), trained again from scratch."""
    rows, stored = retrain("m6t/grid", "2top1/d64/s0")
    assert [r["step"] for r in rows] == [r["step"] for r in stored]
    for new, old in zip(rows, stored, strict=True):
        for key in ("val_loss", "val_loss_nodrop", "train_ce", "aux"):
            if math.isnan(old[key]):
                assert math.isnan(new[key])
            else:
                assert new[key] == pytest.approx(old[key], rel=RETRAIN_RTOL), (new["step"], key)
        for key in ("cv", "dropped"):  # routing decisions: the same, or within a few tokens' share
            if not math.isnan(old[key]):
                assert new[key] == pytest.approx(old[key], abs=0.02), (new["step"], key)


def test_retrain_refuses_a_run_the_table_does_not_hold():
    with pytest.raises(ValueError, match="rid"):
        retrain("m6t/grid", "top1/d64/s9")


def test_smoke_sweep_trains_every_configuration(tmp_path):
    table = runs.run_sweep(smoke_sweep(tmp_path), progress=False, log=lambda s: None)
    frame = analysis.load(["m6t-smoke"], tmp_path)
    assert len(table.done()) == 13 + 4 + 4
    s = analysis.summary(frame)
    assert set(s["config"]) == set(CONFIGS) and set(s["d_model"]) == {32, 48}
    assert (s["val_loss_nodrop"] <= s["val_loss"] + 0.05).all()  # (dense: the same number)
    units = analysis.claim_units(s)
    assert set(units) == set(analysis.CLAIMS) and all(len(u) for u in units.values())
    assert s[s["config"] == "dense"]["cv"].isna().all() and s[s["config"] != "dense"]["cv"].notna().all()


# ------------------------------------------------------------------------------------------------ analysis
def _frame(rows):
    base = {c: 0 for c in COLUMNS}
    out = []
    for r in rows:
        routing, k, cf, _ = CONFIGS[r["config"]]
        row = {**base, "run": f"{r['config']}{r.get('lam', 0.01)}/d{r.get('d_model', 64)}/s{r['seed']}",
               "routing": routing, "k": k, "cf": cf, "lam": 0.01, "d_model": 64, **r}
        out.append({**row, "val_loss_nodrop": row["val_loss"] - 0.001})  # the no-drop loss: the claims' metric
    return pd.DataFrame(out, columns=list(COLUMNS))


def test_summary_weights_each_interval_by_its_steps_and_takes_the_last_loss():
    f = _frame([{"config": "top1", "seed": 0, "step": 0, "val_loss": 9.0, "cv": np.nan},
                {"config": "top1", "seed": 0, "step": 100, "val_loss": 5.0, "cv": 1.0},
                {"config": "top1", "seed": 0, "step": 400, "val_loss": 4.0, "cv": 2.0}])
    s = analysis.summary(f).iloc[0]
    assert s["val_loss"] == 4.0
    assert s["cv"] == pytest.approx((1.0 * 100 + 2.0 * 300) / 400)


def test_paired_differences_match_by_seed_and_balance_setting():
    rows = []
    for seed in (0, 1, 2):
        for lam in (0.01, 0.0):
            rows.append({"config": "top1", "seed": seed, "lam": lam, "step": 800, "val_loss": 4.0 + seed + lam})
            rows.append({"config": "top2", "seed": seed, "lam": lam, "step": 800, "val_loss": 3.9 + seed})
        rows.append({"config": "dense", "seed": seed, "lam": 0.0, "step": 800, "val_loss": 4.2 + seed})
    s = analysis.summary(_frame(rows))
    p = analysis.paired(s, "top1", "top2", lam=None)
    assert len(p) == 6 and p["diff"].to_numpy() == pytest.approx([0.1, 0.11] * 3)
    assert analysis.paired(s, "top1", "top2")["diff"].to_numpy() == pytest.approx([0.11] * 3)  # lambda 0.01 only
    d = analysis.paired(s, "dense", "top1")  # the dense run pairs with the balanced top-1 of its seed
    assert d["diff"].to_numpy() == pytest.approx([0.191] * 3)  # dense: no routing, its no-drop loss is its loss
    b = analysis.balance_effect(s)
    assert set(b["config"]) == {"top1", "top2"} and b[b["config"] == "top1"]["diff"].to_numpy() == pytest.approx(
        [-0.01] * 3)
    with pytest.raises(ValueError, match="a: unknown config"):
        analysis.paired(s, "top3", "top2")


def test_prototyping_gain_is_positive_when_prototypes_are_better():
    rows = [{"config": c, "seed": 0, "step": 800, "d_model": d, "val_loss": v}
            for d, (t2, p2) in ((64, (4.0, 3.9)), (128, (3.5, 3.6))) for c, v in (("top2", t2), ("2top1", p2))]
    g = analysis.gain_by_width(analysis.summary(_frame(rows)), ks=(2,))
    assert g.set_index("d_model")["gain"].to_dict() == pytest.approx({64: 0.1, 128: -0.1})


def test_load_refuses_a_missing_table(tmp_path):
    with pytest.raises(ValueError, match="names"):
        analysis.load(["m6t/none"], tmp_path)


def test_stored_tables_record_their_runs():
    for name in PROFILES["default"]["tables"]:
        meta = json.loads(paths.DATA.joinpath(name + ".json").read_text())
        want = {runs.run_id(r) for r in specs(name)}
        assert set(meta["runs"]) == want, f"{name}: the stored table is not the whole sweep"
