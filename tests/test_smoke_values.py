"""The values the notebooks' smoke runs record, against expected values with tolerances.

`scripts/test.sh` runs this file after executing every notebook under nbval in the smoke profile, with
``REPRO_SMOKE_RESULTS`` naming the folder of their results JSON; the unit stage (no such folder yet) skips it.
Expected values were recorded on an Intel Xeon (AVX-512), 2 cores. Counts, sizes and facts must match exactly;
sampled quantities (cache hit rates) come from seeded integer draws and match to rounding; trained quantities
(losses, AUC) may drift in the fourth digit across CPU kinds (README: what reproduces where), so they get a
tolerance above that drift. Fitted law parameters are not pinned: a smoke grid of six runs leaves them poorly
identified, and a last-bit change can move the optimiser to another local minimum.
"""

import json
import os
from pathlib import Path

import pytest

from repro.dcpt.grid import RETRAIN_RTOL

RESULTS = os.environ.get("REPRO_SMOKE_RESULTS")
pytestmark = pytest.mark.skipif(not RESULTS, reason="runs after the smoke notebooks (scripts/test.sh sets "
                                "REPRO_SMOKE_RESULTS)")


def results(notebook: str) -> dict:
    path = Path(RESULTS) / f"{notebook}.json"
    assert path.exists(), f"the smoke run of {notebook} recorded no results at {path}"
    doc = json.loads(path.read_text())
    assert doc["profile"] == "smoke"
    return doc


def value(doc: dict, name: str):
    return doc["values"][name]["value"]


def claims(doc: dict) -> dict:
    return {c["id"]: c for c in doc["claims"]}


def test_dcpt_smoke_values():
    doc = results("03_dcpt_law")
    assert value(doc, "grid_runs") == 6  # 2 sizes x 3 ratios x code
    assert value(doc, "N_M") == [0.012768, 0.028368] and value(doc, "D_max_M") == 0.02048
    (u1,) = value(doc, "usage1_per_seed")
    assert u1["L_g0"] == pytest.approx(7.347620725631714, rel=RETRAIN_RTOL)  # the base model's general loss
    assert u1["complete"] and u1["ratios"] == 3
    c = claims(doc)
    assert set(c) == {"fit-r2-code-domain", "fit-huber-code-domain", "fit-r2-code-general", "fit-huber-code-general",
                      "heldout-L3-vs-L1", "heldout-L3-vs-L4", "heldout-L3-vs-L5", "trend-explicit", "trend-implicit",
                      "usage1-code", "cross-domain"}
    assert {k: c[k]["ours"]["n"] for k in c if c[k]["ours"]} == {
        "fit-r2-code-domain": 6, "fit-huber-code-domain": 6, "fit-r2-code-general": 6, "fit-huber-code-general": 6,
        "heldout-L3-vs-L1": 1, "trend-explicit": 1, "trend-implicit": 1, "usage1-code": 1}
    for k in ("heldout-L3-vs-L1", "trend-explicit", "trend-implicit", "usage1-code"):
        assert c[k]["verdict"] == "inconclusive" and c[k]["reason"] == "n < 3"
    (fact,) = doc["facts"]
    assert fact["id"] == "usage3-closed-form" and fact["holds"] and fact["value"] == pytest.approx(15.5402, abs=1e-4)


def test_picasso_smoke_values():
    doc = results("04_picasso")
    facts = {f["id"]: (f["value"], f["expected"], f["holds"]) for f in doc["facts"]}
    assert facts == {"op-cut-F26": (13.0, 13.0, True), "op-cut-F100": (50.0, 50.0, True)}
    c = claims(doc)
    assert c["cache-hit"]["ours"]["values"] == pytest.approx([0.7995447, 0.7987414, 0.7772322], abs=1e-6)
    assert c["cache-hit"]["verdict"] == "reproduced"
    aucs = {(r["seed"], r["variant"]): r["auc"] for r in value(doc, "auc")}
    assert aucs[0, "baseline"] == pytest.approx(0.8085, abs=5e-3) and aucs[1, "baseline"] == pytest.approx(0.7650, abs=5e-3)
    assert all(abs(d) < 1e-3 for d in c["auc-parity"]["ours"]["values"])  # same model, same numbers
    worst = max(v for row in value(doc, "equivalence").values() for v in row.values())
    assert worst < 1e-4  # every variant computes the baseline's outputs and losses


def test_c4_smoke_values():
    """Counts and facts only: which fault a 4-rank job on a loaded 2-core machine finds in smoke is timing, so the
    trials' outcomes are not pinned (the stored trials and tests/test_c4_diagnosis.py check them)."""
    doc = results("02_c4")
    c = claims(doc)
    kinds = ("slow_rank", "slow_send", "slow_recv", "slow_pair", "noncomm_hang", "comm_hang", "crash")
    assert set(c) == {f"c4d-recall-{k}" for k in kinds} | {
        "c4d-precision", "c4d-false-alarms", "c4d-overhead", "downtime-before", "downtime-after", "c4p-ecmp-below",
        "c4p-balance", "c4p-replan"}
    assert all(c[f"c4d-recall-{k}"]["ours"]["n"] == 1 and c[f"c4d-recall-{k}"]["reason"] == "n < 3" for k in kinds)
    assert [r["trials"] for r in value(doc, "localisation")] == [1] * 7
    assert c["c4d-overhead"]["ours"]["n"] == 5
    assert c["downtime-before"]["ours"]["n"] == c["downtime-after"]["ours"]["n"] == 200
    assert all(c[k]["ours"]["n"] == 20 for k in ("c4p-ecmp-below", "c4p-balance", "c4p-replan"))
    # the C4P simulation and the downtime Monte Carlo are seeded numpy: their values are exact
    assert c["c4p-ecmp-below"]["ours"]["estimate"] == pytest.approx(0.14666666666666667, rel=1e-12)
    assert c["c4p-replan"]["ours"]["estimate"] == pytest.approx(0.8875, rel=1e-12)
    facts = {f["id"]: f for f in doc["facts"]}
    assert set(facts) == {"ring-equals-gloo", "restart-equals-straight", "c4p-planned-line-rate", "c4p-bond-loss"}
    assert all(f["holds"] for f in facts.values())
    restart = value(doc, "restart")
    assert restart["found"] == "slow_rank" and restart["slots"] == [0, 1, 4, 3] and restart["resumed_from"] % 5 == 0


def test_m6t_smoke_values():
    doc = results("05_m6t")
    assert value(doc, "runs") == 21  # 6 MoE configs x 2 balance settings + dense at width 32, 4 at 48, 4 matched
    assert value(doc, "widths") == [32, 48]
    facts = {f["id"]: f for f in doc["facts"]}
    assert set(facts) == {"equal-compute-k2", "equal-compute-k4", "dense-matches-top1", "matched-top2-half",
                          "capacity-equal"}
    assert all(f["holds"] for f in facts.values())
    assert facts["capacity-equal"]["value"] == 64  # ceil(2 * 256 tokens / 8 experts)
    assert facts["equal-compute-k2"]["value"] == 21600 and facts["equal-compute-k4"]["value"] == 29984
    assert facts["dense-matches-top1"]["value"] == 17152
    c = claims(doc)
    assert set(c) == {"balance-raises-imbalance", "balance-no-penalty", "capacity-lowers-loss", "k-lowers-loss",
                      "k-at-equal-compute", "k-beyond-capacity", "prototypes-improve", "prototypes-match",
                      "prototypes-scale", "top1-beats-dense"}
    for claim in c.values():  # one seed: every claim measured, none decided
        assert claim["ours"]["n"] == 1 and claim["verdict"] == "inconclusive" and claim["reason"] == "n < 3"
    # a top-1 router over 8 experts without the balance loss spreads its load less evenly than with it
    assert value(doc, "balance_cv_change")["top1"] > 0


def test_ddk_smoke_values():
    doc = results("01_ddk")
    assert value(doc, "runs") == 25  # 7 methods x 3 seeds + 4 ablation runs (gamma 0.5, T 2, K 2, K 8) of seed 0
    assert value(doc, "params") == {"teacher": 56640, "student": 3312}
    facts = {f["id"]: f for f in doc["facts"]}
    assert set(facts) == {"eq1-worked-example", "eq2-worked-example"} and all(f["holds"] for f in facts.values())
    assert value(doc, "flops_ratio") == {"ddk/kd": 1.4293, "kd/cpt": 2.119}  # counted, not measured
    assert value(doc, "validation_per_interval") == 1.75  # 7 corpora x 1 batch / K = 4
    c = claims(doc)
    assert set(c) == {"ddk-worst-vs-kd", "ddk-worst-vs-cpt", "ddk-mean-vs-kd", "ddk-mean-vs-cpt", "fs-smoother",
                      "fs-no-loss-penalty", "ddk-beats-es", "k-interior-optimum", "gamma-beats-zero",
                      "reweight-overhead"}
    assert {cid: claim["ours"]["n"] for cid, claim in c.items()} == {**{cid: 3 for cid in c}, "k-interior-optimum": 1}
    # trained quantities (tiny models, 24 steps): sizes and directions, with room for drift across CPU kinds
    est = value(doc, "estimate")
    assert est["fs-smoother"] == pytest.approx(0.1054, rel=0.25)  # DDK w/o FS moves its weights more than DDK
    assert est["gamma-beats-zero"] == pytest.approx(0.0864, abs=0.02)
    assert est["ddk-mean-vs-cpt"] == pytest.approx(0.0905, abs=0.02)


def test_victor_smoke_values():
    doc = results("06_victor")
    assert value(doc, "runs") == 8  # five configurations, MLM for 18 steps, {MLM + VSA} with queues of 8 and 64, seed 0
    assert value(doc, "data") == {"train": 256, "heldout": 64, "hard": 64, "random": 64, "vocab": 46, "frames": 12,
                                  "pixels": 32, "longest_caption": 52}  # rendered from seeded draws: exact
    assert value(doc, "chance_r1") == 0.0156
    assert set(value(doc, "queue_effect")) == {"q8/m0.995", "q16/m0.995", "q64/m0.995"}
    c = claims(doc)
    assert set(c) == {"contrastive-raises-t2v", "order-helps-hard-more", "dual-beats-binary", "larger-queue-helps"}
    for claim in c.values():  # one seed: every claim measured, none decided
        assert claim["ours"]["n"] == 1 and claim["verdict"] == "inconclusive" and claim["reason"] == "n < 3"
    # trained quantities (width 32, 12 steps): sizes, with room for drift across CPU kinds
    loss = value(doc, "final_loss")
    assert loss["mlm"]["mlm"] == pytest.approx(3.826, abs=0.05)
    assert loss["mlm+bin"]["binary"] == pytest.approx(0.693, abs=0.01)  # ln 2: the match head has not started
    assert loss["all"]["msom"] == pytest.approx(1.687, abs=0.1) and loss["all"]["fom"] == pytest.approx(1.941, abs=0.1)
    assert value(doc, "mlm_matched")["steps"] == 18
    assert all(0 <= v <= 1 for v in value(doc, "probe").values())
    assert value(doc, "cpu_vs_mlm")["mlm"] == 1.0
