import json
import math

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repro import record


def make(tmp_path, **kw):
    rec = record.start("03_dcpt_law", profile="smoke", seed=1, parameters={"steps": 3, "lr": 1e-3}, seeds=[1, 2, 3])
    return rec


def test_saved_json_validates_against_schema(tmp_path):
    rec = make(tmp_path)
    rec.claim("r2", "L3 fits with R^2 above 0.97", rule=record.above(0.97), paper_value=0.97, paper_ref="Table 2")
    rec.claim("never", "a claim never measured", rule=record.below(1.0))
    rec.value("points", 405, unit="runs")
    rec.value("curve", [0.1, 0.2])
    assert rec.observe("r2", [0.98, 0.985, 0.99]) == "reproduced"
    path = rec.save(tmp_path)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, record.load_schema())
    assert doc["paper"]["url"].endswith("2406.01375")
    assert doc["seeds"] == [1, 2, 3] and doc["profile"] == "smoke" and doc["parameters"]["steps"] == 3
    assert {"python", "torch", "numpy"} <= set(doc["versions"])
    assert "revision" in doc["git"] and doc["duration_s"] >= 0
    never = next(c for c in doc["claims"] if c["id"] == "never")
    assert never["ours"] is None and never["verdict"] == "inconclusive" and never["note"] == "not measured"


def test_results_go_to_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "stage"))
    rec = make(tmp_path)
    assert rec.save() == tmp_path / "stage" / "03_dcpt_law.json"


@pytest.mark.parametrize(
    "rule, values, verdict",
    [
        (record.above(0.0), [1.0, 1.1, 0.9], "reproduced"),
        (record.above(0.0), [-1.0, -1.1, -0.9], "not reproduced"),
        (record.above(0.0), [1.0, -1.0, 0.5], "inconclusive"),  # interval straddles zero
        (record.below(0.02), [0.01, 0.011, 0.012], "reproduced"),
        (record.below(0.02), [0.05, 0.06, 0.07], "not reproduced"),
        (record.within(0.9, 1.1), [1.0, 1.01, 0.99], "reproduced"),
        (record.within(0.9, 1.1), [2.0, 2.01, 1.99], "not reproduced"),
        (record.within(0.9, 1.1), [1.05, 1.15, 1.1], "inconclusive"),
        (record.above(0.5), [0.7], "reproduced"),  # one value is its own interval
        (record.above(0.5), [0.5], "not reproduced"),  # on the threshold does not count as above
    ],
)
def test_verdict_follows_rule(tmp_path, rule, values, verdict):
    rec = make(tmp_path)
    rec.claim("c", "a claim", rule=rule)
    assert rec.observe("c", values) == verdict


def test_interval_is_the_t_interval():
    s = record.summarize([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.2910, t_{0.975,3} = 3.1824 -> half-width 2.0543
    assert s["mean"] == 2.5 and s["n"] == 4
    assert s["ci_low"] == pytest.approx(2.5 - 2.0543, abs=1e-3)
    assert s["ci_high"] == pytest.approx(2.5 + 2.0543, abs=1e-3)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12), st.floats(-1e3, 1e3))
def test_verdicts_are_exclusive_and_consistent(values, t):
    s = record.summarize(values)
    assert s["ci_low"] <= s["mean"] + 1e-9 and s["mean"] <= s["ci_high"] + 1e-9
    up, down = record.above(t).decide(s["ci_low"], s["ci_high"]), record.below(t).decide(s["ci_low"], s["ci_high"])
    assert up in record.VERDICTS and down in record.VERDICTS
    assert not (up == "reproduced" and down == "reproduced")
    if up == "reproduced":
        assert s["mean"] > t and min(values) > t or len(values) > 1
    if down == "reproduced":
        assert s["mean"] < t


def test_paired_difference_comparison(tmp_path):
    rec = make(tmp_path)
    rec.claim("better", "DDK beats uniform KD", rule=record.above(0.0))
    diffs = record.paired_difference([3.1, 3.2, 3.0], [2.9, 3.0, 2.85])
    assert rec.observe("better", diffs) == "reproduced"
    with pytest.raises(ValueError, match="same seeds"):
        record.paired_difference([1, 2], [1])


def test_bad_use_is_refused(tmp_path):
    rec = make(tmp_path)
    with pytest.raises(KeyError, match="not declared"):
        rec.observe("nope", [1.0])
    rec.claim("c", "a claim", rule=record.above(0))
    with pytest.raises(ValueError, match="declared twice"):
        rec.claim("c", "again", rule=record.above(0))
    with pytest.raises(ValueError, match="finite"):
        rec.observe("c", [1.0, math.nan])
    rec.observe("c", [1.0])
    with pytest.raises(ValueError, match="observed already"):
        rec.observe("c", [2.0])
    with pytest.raises(TypeError, match="rule must be made"):
        rec.claim("d", "x", rule="above 0")
    with pytest.raises(ValueError, match="low <= high"):
        record.within(2, 1)
    with pytest.raises(ValueError, match="confidence"):
        record.above(0, confidence=1.5)
    with pytest.raises(Exception, match="unknown profile"):
        record.start("x", profile="tiny", seed=0)


def test_validate_catches_a_tampered_verdict(tmp_path):
    rec = make(tmp_path)
    rec.claim("c", "a claim", rule=record.above(0.0))
    rec.observe("c", [-1.0, -2.0, -1.5])
    doc = rec.to_json()
    doc["claims"][0]["verdict"] = "reproduced"
    with pytest.raises(jsonschema.ValidationError, match="its rule gives 'not reproduced'"):
        record.validate(doc)
    doc = rec.to_json()
    doc["profile"] = "huge"
    with pytest.raises(jsonschema.ValidationError):
        record.validate(doc)


def test_numpy_values_are_recorded(tmp_path):
    np = pytest.importorskip("numpy")
    rec = make(tmp_path)
    rec.value("arr", np.arange(3))
    rec.value("scalar", np.float32(0.5))
    rec.claim("c", "a claim", rule=record.above(0.0))
    rec.observe("c", np.array([1.0, 2.0]))
    doc = json.loads(rec.save(tmp_path).read_text())
    assert doc["values"]["arr"]["value"] == [0, 1, 2] and doc["values"]["scalar"]["value"] == 0.5


def test_results_name_the_machine_and_hardware_claims(tmp_path):
    """Every results JSON names the CPU model and instruction set beside the threads; a claim whose verdict
    depends on the hardware is marked, and its rendered text names the machine."""
    from repro.machine import machine_info, machine_label

    rec = make(tmp_path)
    rec.claim("speed", "ours is faster", rule=record.above(1.0), hardware=True)
    rec.claim("fit", "a fit is good", rule=record.above(0.9))
    doc = json.loads(rec.save(tmp_path).read_text())
    m = doc["machine"]
    assert m["cpu_model"] == machine_info()["cpu_model"] and m["isa"] in ("avx512", "avx2", "other")
    assert isinstance(m["threads"], int) and m["threads"] >= 1 and m["torch_cpu_capability"]
    speed, fit = doc["claims"]
    assert speed["hardware"] is True and fit["hardware"] is False
    assert record.claim_text(speed, m).endswith(f"measured on {machine_label(m)}]")
    assert record.claim_text(fit, m) == "a fit is good"
    html = record.claims_html(doc["claims"], m)
    assert "verdict depends on the hardware" in html and html.count("depends on the hardware") == 1
    del doc["machine"]["isa"]
    with pytest.raises(jsonschema.ValidationError, match="isa"):
        record.validate(doc)


def test_machine_label_names_gpu_and_threads():
    from repro.machine import machine_label

    info = {"cpu_model": "AMD EPYC 7B13", "isa": "avx2", "threads": 1, "cpus": 2, "gpus": []}
    assert machine_label(info) == "AMD EPYC 7B13 (avx2), 1 thread"
    assert machine_label({**info, "threads": None, "gpus": ["NVIDIA H200"]}) == \
        "AMD EPYC 7B13 (avx2), 2 threads, GPU NVIDIA H200"
