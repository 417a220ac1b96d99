"""The PICASSO benchmark module: it runs ``repro.picasso.measure``'s functions (the same objects, not
copies) and adds the bounds-check cost, at a size that runs in seconds."""

import pytest

from repro.bench import picasso as bench
from repro.picasso import measure


def test_bench_uses_the_library_measurements():
    for name in ("measure_fields", "cache_sweep", "summary", "FULL", "VOCAB", "ALPHA", "CACHE_FRAC", "LINK", "MICRO",
                 "BATCH", "PACKED_VARIANTS"):
        assert getattr(bench, name) is getattr(measure, name), name


def test_bounds_check_cost_measures_both_alike():
    """The bounds-check benchmark times checked and unchecked D-packed steps alternately (no speed assert:
    the figures are the benchmark's, see ``python -m repro bench picasso``)."""
    out = bench.bounds_check_cost(30, steps=2, batch=32)
    assert set(out) == {"fields", "variant", "batch", "steps", "checked_ms", "unchecked_ms", "ratio", "paired_ratio",
                        "check_ms"}
    assert out["fields"] == 30 and out["variant"] == "dpacked" and out["steps"] == 2
    assert out["ratio"] == pytest.approx(out["checked_ms"] / out["unchecked_ms"])
    assert out["checked_ms"] > 0 and out["unchecked_ms"] > 0 and out["check_ms"] > 0
