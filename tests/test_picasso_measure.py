"""The measurements of ``repro.picasso.measure`` (shared by notebook 04 and ``python -m repro bench picasso``),
at a size that runs in seconds: the variants table, rows against their round times, the summary's rules,
operator counts, the stage timeline and breakdown."""

import statistics

import pytest

from repro.picasso import measure
from repro.picasso.data import ClickLogGenerator, make_schema
from repro.picasso.embedding import init_field_tables
from repro.picasso.measure import count_ops, record_timeline, stage_breakdown
from repro.picasso.models import make_model
from repro.picasso.stages import make_stage
from repro.picasso.training import make_optimizers, train_step

SCHEMA = make_schema(20, seed=1, vocab_range=(10, 4000), p_empty=0.1)
TABLES = init_field_tables(SCHEMA, seed=0)
GEN = ClickLogGenerator(SCHEMA, seed=3)


def _model(kind):
    return make_model("wdl", SCHEMA, make_stage(kind, SCHEMA, tables=TABLES), hidden=(32, 16), seed=0)


@pytest.fixture(scope="module")
def measured():
    return measure.measure_fields(26, rounds=2, n_batches=1, batch=64, peers={}, breakdown=True)


def test_measure_fields_rows_and_ops(measured):
    rows = {r["variant"]: r for r in measured["rows"]}
    assert list(rows) == list(measure.VARIANTS)  # the table's order, no peers asked for
    G = rows["baseline"]["groups"]
    assert G == len(make_schema(26, seed=0, vocab_range=measure.VOCAB, alpha=measure.ALPHA).groups())
    assert rows["baseline"]["emb_lookups"] == 2 * 26  # deep + wide, per field
    assert rows["dpacked"]["emb_lookups"] == G + 1  # one per dim group + the wide table
    assert rows["kpacked"]["emb_lookups"] == 2
    assert rows[measure.FULL]["hit_rate"] > 0  # the cache serves some lookups
    assert rows["packed+interleaved+slowtier"]["hit_rate"] == 0
    assert rows["packed+interleaved+slowtier"]["slow_MB_per_step"] > rows[measure.FULL]["slow_MB_per_step"]
    assert set(measured["stage_breakdown_s"]) == {"baseline@26", "dpacked@26", "packed+interleaved@26"}


def test_rows_are_the_round_times(measured):
    """Each row's figures come from its own variant's round times (a row built from another variant's
    times, or a speed-up taken the wrong way round, fails here)."""
    base = statistics.median(measured["round_s"]["baseline"])
    for r in measured["rows"]:
        ts = measured["round_s"][r["variant"]]
        assert len(ts) == 2
        assert r["step_ms"] == pytest.approx(1e3 * statistics.median(ts))
        assert (r["min_ms"], r["max_ms"]) == pytest.approx((1e3 * min(ts), 1e3 * max(ts)))
        assert r["samples_per_s"] == pytest.approx(64 / statistics.median(ts))
        assert r["speedup_vs_baseline"] == pytest.approx(base / statistics.median(ts))
        assert r["speedup_vs_ebc"] is None  # no peers measured


def _rows(F, G, speed, lookups=None, ebc=None):
    """Hand-made measure_fields rows: ``speed`` variant -> samples/s (the baseline's 100)."""
    lookups = lookups or {"baseline": 2 * F, "dpacked": G + 1, "kpacked": 2}
    out = []
    for v in ("baseline", *measure.PACKED_VARIANTS):
        sps = speed.get(v, 100.0)
        out.append({"fields": F, "groups": G, "variant": v, "samples_per_s": sps, "speedup_vs_baseline": sps / 100,
                    "speedup_vs_ebc": None if ebc is None else sps / ebc, "emb_lookups": lookups.get(v, G + 1),
                    "aten_ops": 1000 if v == "baseline" else 250})
    return out


def test_summary_rules_on_known_rows():
    rows = _rows(26, 3, {"kpacked": 400.0, measure.FULL: 150.0}) + _rows(300, 3, {measure.FULL: 320.0}, ebc=300.0)
    s = measure.summary(rows, (26, 300))
    f = s["F=26"]
    assert f["lookup_cut_packed"] == pytest.approx(52 / 4) and f["lookup_cut_kpacked"] == pytest.approx(26)
    assert f["F_over_G"] == pytest.approx(26 / 3) and f["aten_op_cut_packed"] == pytest.approx(4)
    assert f["best_packed_variant"] == "kpacked" and f["speedup_best_packed"] == pytest.approx(4)
    assert f["speedup_full_picasso"] == pytest.approx(1.5) and f["full_picasso_vs_ebc"] is None
    assert s["F=300"]["best_packed_variant"] == measure.FULL
    assert s["F=300"]["full_picasso_vs_ebc"] == pytest.approx(320 / 300)
    assert s["goals"] == {"op_cut_ge_F_over_G": True, "picasso_3x_at_300plus": True, "picasso_ge_ebc": True}
    slow = _rows(300, 3, {measure.FULL: 250.0}, ebc=300.0)  # 2.5x the baseline, slower than EBC
    assert measure.summary(slow, (300,))["goals"] == {"op_cut_ge_F_over_G": True, "picasso_3x_at_300plus": False,
                                                      "picasso_ge_ebc": False}
    few = _rows(26, 3, {}, lookups={"baseline": 52, "dpacked": 8, "kpacked": 2})  # cut 6.5 < F/G = 8.7
    assert measure.summary(few, (26,))["goals"]["op_cut_ge_F_over_G"] is False
    assert measure.summary(_rows(26, 3, {}), (26,))["goals"]["picasso_3x_at_300plus"] is True  # F < 300: no claim


def test_make_variants_table():
    gen = ClickLogGenerator(SCHEMA, seed=0)
    v = measure.make_variants(SCHEMA, TABLES, gen, batch=32)
    assert list(v) == list(measure.VARIANTS)
    assert {k: (st.kind, mb, il) for k, (st, mb, il) in v.items()} == {
        "baseline": ("baseline", 1, False), "dpacked": ("dpacked", 1, False), "kpacked": ("kpacked", 1, False),
        "packed+interleaved": ("dpacked", 2, True), "packed+interleaved+slowtier": ("cached", 2, True),
        measure.FULL: ("cached", 2, True), "kpacked+interleaved+cached": ("cached", 2, True)}
    assert v[measure.FULL][0].packing.kind == "dpacked"
    assert v["kpacked+interleaved+cached"][0].packing.kind == "kpacked"
    assert int(v["packed+interleaved+slowtier"][0].row_cached.sum()) == 0
    full = v[measure.FULL][0]
    assert int(full.row_cached.sum()) == round(measure.CACHE_FRAC * full.total_rows)
    assert full.store.link_bytes_per_s == measure.LINK["link_bytes_per_s"]
    only = measure.make_variants(SCHEMA, TABLES, gen, names=("baseline", measure.FULL), batch=32)
    assert list(only) == ["baseline", measure.FULL]
    with pytest.raises(ValueError, match="unknown variant"):
        measure.make_variants(SCHEMA, TABLES, gen, names=("nope",))


def test_operator_counts_drop_by_fields_over_groups():
    G = len(SCHEMA.groups())
    counts = {}
    for kind in ("baseline", "dpacked", "kpacked"):
        model = _model(kind)
        opt = make_optimizers(model)
        b = GEN.batch(0, 32)
        counts[kind] = count_ops(lambda m=model, o=opt, b=b: train_step(m, o, b))
    assert counts["baseline"]["emb_lookups"] == 2 * SCHEMA.n_fields  # deep + wide per field
    assert counts["dpacked"]["emb_lookups"] == G + 1
    assert counts["kpacked"]["emb_lookups"] == 2
    assert counts["kpacked"]["aten_ops"] < counts["baseline"]["aten_ops"] / 3


def test_timeline_and_stage_breakdown():
    model = _model("kpacked")
    opt = make_optimizers(model)
    ev = record_timeline(model, opt, GEN.batch(0, 64), micro_batches=3, interleave=True)
    stages = {(e["micro_batch"], e["stage"]) for e in ev}
    assert {(i, s) for i in range(3) for s in ("embedding", "dense", "embedding_backward")} <= stages
    emb = {e["micro_batch"]: e for e in ev if e["stage"] == "embedding"}
    dense = {e["micro_batch"]: e for e in ev if e["stage"] == "dense"}
    assert all(e["thread"].startswith("picasso-embedding") for e in emb.values())
    assert all(d["thread"] == "MainThread" for d in dense.values())
    assert all(emb[i]["end"] <= dense[i]["start"] for i in range(3))  # causal order per micro-batch
    assert [e["start"] for e in ev] == sorted(e["start"] for e in ev)
    br = stage_breakdown(model, opt, GEN.batches(2, 64))
    assert set(br) == {"embedding", "dense", "embedding_backward", "optimizer", "step"}
    # one thread, one micro-batch: the stages run one after another inside the step, so their times add up
    # to no more than the step's span (a stage counted twice, or a step span cut short, breaks this)
    parts = [v for k, v in br.items() if k != "step"]
    assert all(v > 0 for v in parts)
    assert sum(parts) <= br["step"] * (1 + 1e-9)
    assert stage_breakdown(model, opt, GEN.batches(1, 64)) == {}  # the only batch is the warm-up
