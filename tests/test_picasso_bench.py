"""The PICASSO benchmark's measurement and summary code, at a size that runs in seconds."""

import pytest

from repro.bench import picasso as bench


@pytest.fixture(scope="module")
def measured():
    return bench.measure_fields(26, rounds=1, n_batches=1, batch=64, peers={}, breakdown=True)


def test_measure_fields_rows_and_ops(measured):
    rows = {r["variant"]: r for r in measured["rows"]}
    assert set(rows) == {"baseline", *bench.PACKED_VARIANTS, "packed+interleaved+slowtier"}
    G = rows["baseline"]["groups"]
    assert rows["baseline"]["emb_lookups"] == 2 * 26  # deep + wide, per field
    assert rows["dpacked"]["emb_lookups"] == G + 1  # one per dim group + the wide table
    assert rows["kpacked"]["emb_lookups"] == 2
    assert rows[bench.FULL]["hit_rate"] > 0  # the cache serves some lookups
    assert rows["packed+interleaved+slowtier"]["hit_rate"] == 0
    assert rows["baseline"]["speedup_vs_baseline"] == 1.0
    assert all(r["samples_per_s"] > 0 and r["min_ms"] <= r["step_ms"] <= r["max_ms"] for r in rows.values())
    assert set(measured["stage_breakdown_s"]) == {"baseline@26", "dpacked@26", "packed+interleaved@26"}


def test_summary_matches_rows(measured):
    s = bench._summary(measured["rows"], (26,))
    rows = {r["variant"]: r for r in measured["rows"]}
    f = s["F=26"]
    assert f["lookup_cut_packed"] == pytest.approx(rows["baseline"]["emb_lookups"] / rows["dpacked"]["emb_lookups"])
    assert f["speedup_full_picasso"] == rows[bench.FULL]["speedup_vs_baseline"]
    assert f["best_packed_variant"] in bench.PACKED_VARIANTS
    assert f["speedup_best_packed"] >= f["speedup_full_picasso"]
    assert s["goals"]["op_cut_ge_F_over_G"] == (f["lookup_cut_packed"] >= f["F_over_G"])
    assert f["full_picasso_vs_ebc"] is None  # no peers measured


def test_bounds_check_cost_measures_both_alike():
    """The bounds-check benchmark times checked and unchecked D-packed steps alternately (no speed assert:
    the figures are the benchmark's, see ``python -m repro bench picasso``)."""
    out = bench.bounds_check_cost(30, steps=2, batch=32)
    assert set(out) == {"fields", "variant", "batch", "steps", "checked_ms", "unchecked_ms", "ratio", "paired_ratio",
                        "check_ms"}
    assert out["fields"] == 30 and out["variant"] == "dpacked" and out["steps"] == 2
    assert out["ratio"] == pytest.approx(out["checked_ms"] / out["unchecked_ms"])
    assert out["checked_ms"] > 0 and out["unchecked_ms"] > 0 and out["check_ms"] > 0
