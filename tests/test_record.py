import json
import math

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import record

PAPER = record.paper("Table 2")
GOAL = record.goal()


def make(**kw):
    return record.start("03_dcpt_law", profile="smoke", seed=1, parameters={"steps": 3, "lr": 1e-3}, seeds=[1, 2, 3])


def claim(rec, id="c", rule=None, source=PAPER, unit="seed", **kw):
    rec.claim(id, f"claim {id}", rule=rule or record.above(0.0), source=source, unit_of_replication=unit, **kw)


def test_saved_json_validates_against_schema(tmp_path):
    rec = make()
    rec.claim("r2", "L3 fits with R^2 above 0.97", rule=record.above(0.97), source=record.paper("§1", 0.97),
              unit_of_replication="run", range=(-math.inf, 1.0))
    claim(rec, "never", record.below(1.0), source=GOAL)
    rec.fact("cut", "packing cuts lookups by 1.5 x F/G", value=1.5, expected=1.5, source=record.paper("§IV"))
    rec.value("points", 405, unit="runs")
    assert rec.observe("r2", [0.98, 0.985, 0.99]) == "reproduced"
    doc = json.loads(rec.save(tmp_path).read_text())
    jsonschema.validate(doc, record.load_schema())
    assert doc["schema_version"] == 2 and doc["paper"]["url"].endswith("2406.01375")
    assert doc["seeds"] == [1, 2, 3] and doc["profile"] == "smoke" and doc["parameters"]["steps"] == 3
    assert {"python", "torch", "numpy"} <= set(doc["versions"]) and "revision" in doc["git"]
    r2, never = doc["claims"]
    assert r2["range"] == [None, 1.0] and r2["source"] == {"kind": "paper", "ref": "§1", "value": 0.97, "note": None}
    assert r2["ours"]["interval"]["method"] == "t (fewer than 20 units)" and r2["ours"]["n"] == 3
    assert never["ours"] is None and never["verdict"] == "inconclusive" and never["reason"] == "not measured"
    assert doc["facts"][0]["holds"] is True


def test_results_go_to_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "stage"))
    assert make().save() == tmp_path / "stage" / "03_dcpt_law.json"


@pytest.mark.parametrize(
    "rule, values, verdict",
    [
        (record.above(0.0), [1.0, 1.1, 0.9], "reproduced"),
        (record.above(0.0), [-1.0, -1.1, -0.9], "not reproduced"),
        (record.above(0.0), [1.0, -1.0, 0.5], "inconclusive"),  # interval straddles zero
        (record.above(0.5), [0.2, 0.25, 0.22], "not reproduced"),
        (record.below(0.02), [0.01, 0.011, 0.012], "reproduced"),
        (record.below(0.02), [0.05, 0.06, 0.07], "not reproduced"),
        (record.below(0.02), [0.01, 0.03, 0.02], "inconclusive"),
        (record.within(0.9, 1.1), [1.0, 1.01, 0.99], "reproduced"),
        (record.within(0.9, 1.1), [2.0, 2.01, 1.99], "not reproduced"),
        (record.within(0.9, 1.1), [0.5, 0.51, 0.49], "not reproduced"),
        (record.within(0.9, 1.1), [1.05, 1.15, 1.1], "inconclusive"),
    ],
)
def test_verdict_follows_rule_on_both_sides(rule, values, verdict):
    rec = make()
    claim(rec, rule=rule)
    assert rec.observe("c", values) == verdict
    doc = rec.to_json()
    record.validate(doc)
    assert doc["claims"][0]["verdict"] == verdict  # a family of one: Holm changes nothing


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=20, max_size=40), st.floats(-100, 100))
def test_bootstrap_interval_lies_within_the_values_and_decides_by_them(values, t):
    """From 20 units on, the interval is the percentile bootstrap of the mean: it lies inside [min, max]; values all
    above t reproduce above(t), all at or below t fail it; and a decisive raw verdict always has p at most alpha
    (the test the interval inverts), so Holm's procedure over a family of one keeps it."""
    rule = record.above(t)
    out = record.interval(values, rule)
    assert out["interval"]["method"] == "bootstrap percentile"
    assert min(values) - 1e-9 <= out["ci_low"] <= out["ci_high"] <= max(values) + 1e-9
    verdict = rule.decide(out["ci_low"], out["ci_high"])
    eps = 1e-12 * (1 + abs(t))  # the mean of equal floats can differ from them in the last bit
    if min(values) > t + eps:
        assert verdict == "reproduced"
    if max(values) <= t - eps:
        assert verdict == "not reproduced"
    if verdict == "reproduced":
        assert out["p_yes"] <= rule.alpha
    if verdict == "not reproduced":
        assert out["p_no"] <= rule.alpha
    assert 0 < out["p_yes"] <= 1 and 0 < out["p_no"] <= 1  # a bootstrap p is never 0


def test_few_units_get_a_t_interval_and_equal_units_decide_nothing():
    """A percentile bootstrap of 3-19 units covers too little (with 3 it is [min, max]: all three above the bar
    would 'reproduce' at p = 1/8 in truth): below 20 units the interval is Student's t. Units without spread give
    no interval at all."""
    out = record.interval([1.0, 1.2, 0.9], record.above(0.0))
    assert out["interval"]["method"] == "t (fewer than 20 units)"
    assert out["ci_low"] < 0.9 and out["ci_high"] > 1.2  # wider than [min, max]
    rec = make()
    claim(rec, "flat", record.above(0.5), range=(0.0, 1.0))
    assert rec.observe("flat", [0.7, 0.7, 0.7]) == "inconclusive"
    flat = rec.to_json()["claims"][0]
    assert flat["reason"].startswith("no spread among the units") and flat["p"] is None and flat["p_holm"] is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=2),
       st.sampled_from([record.above(0.0), record.below(0.0), record.within(-1, 1)]))
def test_fewer_than_three_units_never_decide(values, rule):
    rec = make()
    claim(rec, rule=rule)
    assert rec.observe("c", values) == "inconclusive"
    c = rec.to_json()["claims"][0]
    assert c["reason"] == "n < 3" and c["ours"]["ci_low"] is None and c["p_holm"] is None
    assert record.fmt_verdict(c) == "inconclusive (n < 3)" and f"(n={len(values)} < 3)" in record.fmt_ours(c["ours"])


def test_correlated_values_count_as_their_groups():
    """144 split values from 4 groups are 4 units; from 2 groups they are 2: inconclusive whatever they say."""
    vals = [0.1 + 0.001 * i for i in range(144)]
    rec = make()
    claim(rec, "four", unit="(domain, side)")
    claim(rec, "two", unit="domain")
    assert rec.observe("four", vals, groups=[i // 36 for i in range(144)]) == "reproduced"
    assert rec.observe("two", vals, groups=[i // 72 for i in range(144)]) == "inconclusive"
    four, two = rec.to_json()["claims"]
    assert four["ours"]["n"] == 4 and len(four["ours"]["values"]) == 144
    assert four["ours"]["units"] == pytest.approx([np.mean(vals[k * 36:(k + 1) * 36]) for k in range(4)])
    assert two["ours"]["n"] == 2 and two["reason"] == "n < 3"
    with pytest.raises(ValueError, match="one group per value"):
        record.group_means([1.0, 2.0], [0])


def test_interval_is_clipped_to_the_range_and_values_outside_it_are_refused():
    rec = make()
    claim(rec, "share", record.above(0.9), range=(0.0, 1.0), interval="t")
    claim(rec, "huber", record.below(0.02), range=(0.0, math.inf), interval="t")
    claim(rec, "edge", record.above(0.9), range=(0.0, 1.0))
    rec.observe("share", [1.0, 0.8, 1.0, 0.95])
    rec.observe("huber", [1e-5, 2e-4, 1e-6])
    assert rec.observe("edge", [1.0, 1.0, 0.999]) == "reproduced"  # values on the bound
    share, huber, edge = rec.to_json()["claims"]
    assert share["ours"]["ci_high"] == 1.0 and share["ours"]["interval"]["clipped"] is True
    assert huber["ours"]["ci_low"] == 0.0 and huber["ours"]["interval"]["clipped"] is True
    assert edge["ours"]["ci_high"] == 1.0 and edge["ours"]["interval"]["clipped"] is True
    claim(rec, "r", record.above(0.5), range=(0.0, 1.0))
    with pytest.raises(ValueError, match="outside the declared range"):
        rec.observe("r", [0.5, 1.2, 0.7])


def test_t_interval_is_the_textbook_one():
    out = record.interval([1.0, 2.0, 3.0, 4.0], record.above(0.0), "t")
    # mean 2.5, sd 1.2910, t_{0.975,3} = 3.1824 -> half-width 2.0543
    assert out["estimate"] == 2.5 and out["ci_low"] == pytest.approx(0.4457, abs=1e-3)
    assert out["ci_high"] == pytest.approx(4.5543, abs=1e-3)


@pytest.mark.parametrize("rule, rng, message", [
    (record.below(0.02), (0.0, 0.01), "cannot fail"),  # every value in range is below the bar
    (record.above(-0.1), (0.0, 1.0), "cannot fail"),
    (record.above(0.0), (0.0, 1.0), "cannot fail"),  # on a bound: fails only when every unit sits on it
    (record.below(1.0), (0.0, 1.0), "cannot fail"),
    (record.within(-1, 2), (0.0, 1.0), "cannot fail"),
    (record.above(1.0), (0.0, 1.0), "fails for every value"),
    (record.below(0.0), (0.0, 1.0), "fails for every value"),
    (record.within(2, 3), (0.0, 1.0), "fails for every value"),
])
def test_rules_that_cannot_fail_or_pass_are_refused(rule, rng, message):
    with pytest.raises(ValueError, match=message):
        claim(make(), rule=rule, range=rng)
    for ok in ((-math.inf, math.inf), (-5.0, 5.0)):  # the same rules on a wider range are fine
        claim(make(), rule=rule, range=ok)


def test_a_claim_resting_on_a_failure_is_inconclusive():
    rec = make()
    claim(rec)
    assert rec.observe("c", [1.0, 1.1, 0.9], rests_on={"L3 fit converged": False, "runs done": True}) == "inconclusive"
    c = rec.to_json()["claims"][0]
    assert c["reason"] == "rests on what failed: L3 fit converged" and c["p"] is None


def test_holm_turns_marginal_verdicts_inconclusive():
    """Three raw 'reproduced' with p = 0.01, 0.03, 0.04: Holm's adjusted p are 0.03, 0.06, 0.06, so only the
    first stands at alpha 0.05; the raw decisions are kept beside the final ones."""
    claims = []
    for i, p in enumerate((0.01, 0.04, 0.03)):
        ours = {"n": 3, "std": 1.0, "units": [0.1, 0.15, 0.2], "ci_low": 0.1, "ci_high": 0.2, "p_yes": p, "p_no": 1.0}
        claims.append({"id": str(i), "rule": record.above(0).to_json(), "rests_on": [], "verdict_raw": "reproduced",
                       "reason": "the interval lies on the claimed side", "ours": ours})
    record.holm(claims)
    assert [c["verdict"] for c in claims] == ["reproduced", "inconclusive", "inconclusive"]
    assert [c["p_holm"] for c in claims] == pytest.approx([0.03, 0.06, 0.06])
    assert all(c["verdict_raw"] == "reproduced" for c in claims)
    assert "not after Holm's adjustment over 3 claims" in claims[1]["reason"]
    assert record.fmt_verdict(claims[1]).startswith("inconclusive (reproduced alone, but not after Holm")


def test_paired_difference_comparison():
    rec = make()
    claim(rec, "better")
    assert rec.observe("better", record.paired_difference([3.1, 3.2, 3.0], [2.9, 3.0, 2.85])) == "reproduced"
    with pytest.raises(ValueError, match="same seeds"):
        record.paired_difference([1, 2], [1])


def test_observe_replicates_takes_a_callers_bootstrap():
    rec = make()
    claim(rec, "r2", record.above(0.97), unit="run", range=(-math.inf, 1.0))
    claim(rec, "few", record.above(0.97), unit="run", range=(-math.inf, 1.0))
    reps = np.random.default_rng(0).normal(0.99, 0.005, 400).clip(max=1.0)
    assert rec.observe_replicates("r2", 0.99, reps, n_units=27) == "reproduced"
    assert rec.observe_replicates("few", 0.99, reps, n_units=2) == "inconclusive"
    claim(rec, "ten", record.above(0.97), unit="run", range=(-math.inf, 1.0))
    assert rec.observe_replicates("ten", 0.99, reps, n_units=10) == "inconclusive"  # too few for a percentile
    r2, few, ten = rec.to_json()["claims"]
    assert ten["reason"].startswith("a bootstrapped statistic over fewer than 20 units")
    assert r2["ours"]["ci_low"] == pytest.approx(np.quantile(reps, 0.025, method="inverted_cdf")) and r2["ours"]["units"] is None
    assert few["reason"] == "n < 3"
    record.validate(rec.to_json())


def test_facts_are_exact_and_checked():
    rec = make()
    assert rec.fact("cut", "(2F/4)/(F/3)", value=1.5, expected=1.5, source=PAPER) is True
    assert rec.fact("off", "a count", value=7, expected=8, source=GOAL) is False
    doc = rec.to_json()
    record.validate(doc)
    doc["facts"][1]["holds"] = True
    with pytest.raises(jsonschema.ValidationError, match="fact 'off'"):
        record.validate(doc)
    html = record.results_html(rec.to_json())
    assert "Facts: exact quantities" in html and "does not hold" in html


def test_validate_rederives_intervals_and_verdicts():
    rec = make()
    claim(rec)
    claim(rec, "d", record.above(0.0), source=GOAL)
    rec.observe("c", [-1.0, -2.0, -1.5])
    rec.observe("d", [1.0, 2.0, 1.5])
    doc = rec.to_json()
    record.validate(doc)
    bad = json.loads(json.dumps(doc))
    bad["claims"][0]["verdict_raw"] = bad["claims"][0]["verdict"] = "reproduced"
    with pytest.raises(jsonschema.ValidationError, match="its rule gives 'not reproduced'"):
        record.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["claims"][0]["ours"]["ci_high"] = 5.0
    with pytest.raises(jsonschema.ValidationError, match="ci_high"):
        record.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["claims"][1]["p_holm"] = 0.001
    with pytest.raises(jsonschema.ValidationError, match="Holm"):
        record.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["schema_version"] = 1
    with pytest.raises(jsonschema.ValidationError, match="run the notebook again"):
        record.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["profile"] = "huge"
    with pytest.raises(jsonschema.ValidationError):
        record.validate(bad)


def test_bad_use_is_refused():
    rec = make()
    with pytest.raises(KeyError, match="not declared"):
        rec.observe("nope", [1.0])
    claim(rec)
    with pytest.raises(ValueError, match="declared twice"):
        claim(rec)
    with pytest.raises(ValueError, match="finite"):
        rec.observe("c", [1.0, math.nan, 2.0])
    rec.observe("c", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="observed already"):
        rec.observe("c", [2.0])
    with pytest.raises(TypeError, match="rule must be made"):
        rec.claim("d", "x", rule="above 0", source=PAPER, unit_of_replication="seed")
    with pytest.raises(TypeError, match="source must be made"):
        rec.claim("d", "x", rule=record.above(0), source="the paper", unit_of_replication="seed")
    with pytest.raises(ValueError, match="unit_of_replication"):
        rec.claim("d", "x", rule=record.above(0), source=PAPER, unit_of_replication=" ")
    with pytest.raises(ValueError, match="interval must be one of"):
        claim(rec, "e", interval="bca")
    with pytest.raises(ValueError, match="no paper value"):
        record.Source("workbook goal", value=3.0)
    with pytest.raises(ValueError, match="names where the paper"):
        record.paper("")
    with pytest.raises(ValueError, match="low <= high"):
        record.within(2, 1)
    with pytest.raises(ValueError, match="confidence"):
        record.above(0, confidence=1.5)
    with pytest.raises(Exception, match="unknown profile"):
        record.start("x", profile="tiny", seed=0)


def test_markdown_is_written_from_recorded_values():
    rec = make()
    rec.value("sizes_M", [0.1, 0.4])
    rec.value("runs", 54)
    assert rec.markdown("models of {sizes_M[0]:.2f}-{sizes_M[1]:.2f} M over {runs} runs").data == \
        "models of 0.10-0.40 M over 54 runs"
    with pytest.raises(KeyError, match="'steps' is not a recorded value"):
        rec.markdown("{steps}")
    claim(rec)
    rec.observe("c", [1.0, 1.2, 1.1])
    text = rec.verdicts().data
    assert text.startswith("- **c** (paper, Table 2): claim c. Ours: 1.1 [") and "one value per seed" in text


def test_numpy_values_are_recorded(tmp_path):
    rec = make()
    rec.value("arr", np.arange(3))
    rec.value("scalar", np.float32(0.5))
    claim(rec)
    rec.observe("c", np.array([1.0, 2.0, 3.0]))
    doc = json.loads(rec.save(tmp_path).read_text())
    assert doc["values"]["arr"]["value"] == [0, 1, 2] and doc["values"]["scalar"]["value"] == 0.5


def test_results_name_the_machine_and_hardware_claims(tmp_path):
    """Every results JSON names the CPU model and instruction set beside the threads; a claim whose verdict
    depends on the hardware is marked, and its rendered text names the machine."""
    from repro.machine import machine_info, machine_label

    rec = make()
    claim(rec, "speed", record.above(1.0), source=GOAL, unit="timing round", hardware=True)
    claim(rec, "fit", record.above(0.9))
    doc = json.loads(rec.save(tmp_path).read_text())
    m = doc["machine"]
    assert m["cpu_model"] == machine_info()["cpu_model"] and m["isa"] in ("avx512", "avx2", "other")
    assert isinstance(m["threads"], int) and m["threads"] >= 1 and m["torch_cpu_capability"]
    speed, fit = doc["claims"]
    assert speed["hardware"] is True and fit["hardware"] is False
    assert record.claim_text(speed, m).endswith(f"measured on {machine_label(m)}]")
    assert record.claim_text(fit, m) == "claim fit"
    html = record.results_html(doc)
    assert html.count("depends on the hardware") == 1
    assert html.index("Claims of the paper") < html.index("claim fit") < html.index("Workbook goals") \
        < html.index("claim speed")
    del doc["machine"]["isa"]
    with pytest.raises(jsonschema.ValidationError, match="isa"):
        record.validate(doc)


def test_machine_label_names_gpu_and_threads():
    from repro.machine import machine_label

    info = {"cpu_model": "AMD EPYC 7B13", "isa": "avx2", "threads": 1, "cpus": 2, "gpus": []}
    assert machine_label(info) == "AMD EPYC 7B13 (avx2), 1 thread"
    assert machine_label({**info, "threads": None, "gpus": ["NVIDIA H200"]}) == \
        "AMD EPYC 7B13 (avx2), 2 threads, GPU NVIDIA H200"


def test_review_findings_are_refused_or_caught():
    """What a review broke: rests_on read with bool(), 2-D or out-of-range replicates, and edits to a bootstrapped
    claim, its unit count or its rule's words that validate() used to pass."""
    rec = make()
    claim(rec, "a")
    with pytest.raises(TypeError, match="rests_on values must be True or False"):
        rec.observe("a", [1.0, 1.1, 0.9], rests_on={"fit": "False"})
    with pytest.raises(TypeError, match="rests_on must map"):
        rec.observe("a", [1.0, 1.1, 0.9], rests_on=["fit"])
    claim(rec, "r2", record.above(0.97), unit="run", range=(-math.inf, 1.0))
    with pytest.raises(ValueError, match="1-D array"):
        rec.observe_replicates("r2", 0.99, np.full((2, 50), 0.99), n_units=27)
    with pytest.raises(ValueError, match="outside the declared range"):
        rec.observe_replicates("r2", 0.99, np.linspace(0.98, 1.2, 50), n_units=27)
    rec.observe("a", [1.0, 1.1, 0.9])
    rec.observe_replicates("r2", 0.90, np.random.default_rng(1).normal(0.90, 0.01, 500).clip(max=1), n_units=27)
    doc = rec.to_json()
    record.validate(doc)
    for edit, says in ((lambda d: d["claims"][1]["ours"].update(ci_low=0.98, ci_high=0.99), "ci_low"),
                       (lambda d: d["claims"][1]["ours"].update(replicates=None), "without its replicates"),
                       (lambda d: d["claims"][0]["ours"].update(n=30), "n = 30"),
                       (lambda d: d["claims"][0]["rule"].update(low=-5.0), "rule's words"),
                       (lambda d: d["claims"][0]["source"].update(kind="workbook goal"), "cannot derive")):
        bad = json.loads(json.dumps(doc))
        edit(bad)
        with pytest.raises(jsonschema.ValidationError, match=says):
            record.validate(bad)


def test_binomial_claims_decide_on_the_exact_interval_even_when_every_trial_succeeds():
    """A success share over 0/1 trials: Clopper-Pearson (statsmodels) and exact binomial tails (scipy). All 20
    successes give [0.832, 1] at 95 %: above 0.8 is shown, above 0.95 is not (it needs 72 of 72)."""
    out = record.interval([1.0] * 20, record.above(0.95), "binomial", (0, 1))
    assert out["interval"]["method"] == "binomial Clopper-Pearson"
    assert out["ci_low"] == pytest.approx(0.025 ** (1 / 20)) and out["ci_high"] == 1.0  # (alpha/2)^(1/n)
    rec = make()
    for id, rule, n, verdict in [("a", record.above(0.8), 20, "reproduced"), ("b", record.above(0.95), 20,
                                                                              "inconclusive"),
                                 ("c", record.above(0.95), 72, "reproduced"), ("e", record.above(0.95), 71, "inconclusive"), ("d", record.above(0.95), 0, "x")]:
        claim(rec, id, rule, range=(0, 1), interval="binomial", unit="trial")
        if n:
            assert rec.observe(id, [1] * n) == verdict, id
    assert rec.observe("d", [1] * 10 + [0] * 10) == "not reproduced"  # [0.27, 0.73]: wholly at or below 0.95
    data = rec.to_json()
    record.validate(data)
    a = data["claims"][0]
    assert a["p"] is not None and a["p"] < 0.05
    a["ours"]["ci_low"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match="ci_low"):
        record.validate(data)


def test_binomial_claims_need_successes_and_failures_and_a_share_range():
    rec = make()
    with pytest.raises(ValueError, match="range must be"):
        claim(rec, "s", record.above(0.5), range=(0, 2), interval="binomial")
    claim(rec, "s", record.above(0.5), range=(0, 1), interval="binomial")
    with pytest.raises(ValueError, match="0 and 1"):
        rec.observe("s", [1, 0, 0.5])
