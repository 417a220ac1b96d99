"""PICASSO packing and caching: same outputs and gradients as the per-field baseline."""

import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.picasso.data import Batch, ClickLogGenerator, make_schema
from repro.picasso.embedding import init_field_tables
from repro.picasso.optim import SparseSGD
from repro.picasso.peers import available
from repro.picasso.stages import make_stage

SCHEMA = make_schema(12, seed=3, vocab_range=(5, 3000), p_empty=0.25)
TABLES = init_field_tables(SCHEMA, seed=1)
KINDS = ["dpacked", "kpacked", "cached", "cached-k"]  # cached: over D-packing; cached-k: over K-packing


def _stage(kind, **kw):
    if kind.startswith("cached"):
        kw["packing"] = "kpacked" if kind == "cached-k" else "dpacked"
    st_ = make_stage(kind.split("-")[0], SCHEMA, tables=TABLES, **kw)
    if kind.startswith("cached"):
        st_.admit(torch.arange(st_.total_rows).float())  # cache the highest-numbered rows: hits and misses
    return st_


def _run(stage, batch):
    out = stage(batch)
    w = torch.Generator().manual_seed(0)
    loss = sum((t * torch.randn(t.shape, generator=w)).sum() + (t ** 2).sum() for t in out.tensors())
    loss.backward()
    return out, stage.field_grads()


def _check(kind, batch, **kw):
    base_out, (bd, bw) = _run(_stage("baseline"), batch)
    out, (d, w) = _run(_stage(kind, **kw), batch)
    for x, y in zip(base_out.tensors(), out.tensors(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    for x, y in zip(bd + bw, d + w, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def _tricky_batch():
    """Empty bags, whole empty fields, repeated IDs in a bag and across samples."""
    b = ClickLogGenerator(SCHEMA, seed=5).batch(0, 9)
    lengths = b.lengths.clone()
    lengths[0] = 0  # field 0 empty for every sample
    lengths[:, 3] = 0  # sample 3 empty in every field
    lengths[2] = 4
    n = int(lengths.sum())
    V = torch.tensor(SCHEMA.vocab)
    fi = torch.arange(SCHEMA.n_fields).repeat_interleave(lengths.sum(1))
    ids = torch.randint(0, 10**6, (n,), generator=torch.Generator().manual_seed(1)) % V[fi]
    s2 = int(lengths[:2].sum())
    ids[s2:s2 + int(lengths[2].sum())] = 1  # every ID of field 2 the same (repeated within bags)
    return Batch(ids, lengths, b.dense, b.labels)


@pytest.mark.parametrize("kind", KINDS)
def test_equivalence_random_batch(kind):
    _check(kind, ClickLogGenerator(SCHEMA, seed=7).batch(0, 32))


@pytest.mark.parametrize("kind", KINDS)
def test_equivalence_empty_bags_and_repeats(kind):
    _check(kind, _tricky_batch())


def test_cache_capacity_extremes_and_stats():
    b = ClickLogGenerator(SCHEMA, seed=7).batch(0, 32)
    for packing in ("dpacked", "kpacked"):
        for cap, hit in ((0.0, 0.0), (1.0, 1.0)):
            st_ = make_stage("cached", SCHEMA, tables=TABLES, capacity=cap, link_bytes_per_s=None, packing=packing)
            st_.admit(torch.ones(st_.total_rows))
            _check("cached", b, capacity=cap, packing=packing)
            st_(b)
            assert st_.stats()["hit_rate"] == hit
            assert (st_.stats()["bytes_read"] == 0) == (cap == 1.0)
            assert st_.store.fetches == 1  # one packed transfer for every table
    with pytest.raises(ValueError, match="capacity"):
        make_stage("cached", SCHEMA, capacity=1.5)
    with pytest.raises(ValueError, match="unknown packing"):
        make_stage("cached", SCHEMA, packing="nope")


def test_sparse_sgd_matches_coalesced_update():
    st_ = _stage("kpacked")
    _run(st_, _tricky_batch())
    w0 = st_.weight.detach().clone()
    g = st_.weight.grad.coalesce().to_dense()
    SparseSGD([st_.weight], lr=0.1).step()
    torch.testing.assert_close(st_.weight.detach(), w0 - 0.1 * g)


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown embedding stage"):
        make_stage("nope", SCHEMA)


@st.composite
def bag_structures(draw):
    B = draw(st.integers(1, 6))
    lens = draw(st.lists(st.integers(0, 4), min_size=SCHEMA.n_fields * B, max_size=SCHEMA.n_fields * B))
    lengths = torch.tensor(lens, dtype=torch.int64).view(SCHEMA.n_fields, B)
    seed = draw(st.integers(0, 2**31 - 1))
    V = torch.tensor(SCHEMA.vocab)
    fi = torch.arange(SCHEMA.n_fields).repeat_interleave(lengths.sum(1))
    hot = draw(st.booleans())  # few distinct IDs: many repeats
    ids = torch.randint(0, 3 if hot else 10**6, (int(lengths.sum()),),
                        generator=torch.Generator().manual_seed(seed)) % V[fi]
    return Batch(ids, lengths, torch.randn(B, 13), torch.zeros(B))


_STAGES = {k: _stage(k) for k in ["baseline", *KINDS]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bag_structures())
def test_property_packed_equals_baseline(batch):
    ref = _STAGES["baseline"](batch)
    for k in KINDS:
        out = _STAGES[k](batch)
        for x, y in zip(ref.tensors(), out.tensors(), strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    _STAGES["cached"].discard_pending()
    _STAGES["cached-k"].discard_pending()


@pytest.mark.skipif(not all(available().values()), reason="torchrec / fbgemm_gpu not importable")
def test_peers_equal_baseline():
    from repro.picasso.peers import FBGEMMTBEStage, TorchRecEBCStage

    b = _tricky_batch()
    ref = _STAGES["baseline"](b)
    for cls in (TorchRecEBCStage, FBGEMMTBEStage):
        out = cls(SCHEMA, tables=TABLES)(b)
        for x, y in zip(ref.tensors(), out.tensors(), strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ ID bounds (issue 10, item 15)
ALL_KINDS = ["baseline", *KINDS]


def _with_id(batch, field, value, nth=0):
    """``batch`` with the ``nth`` ID of ``field`` replaced by ``value`` (and the sample that holds it)."""
    start = int(batch.lengths[:field].sum())
    pos = start + nth
    row = int(torch.repeat_interleave(torch.arange(batch.batch_size), batch.lengths[field])[nth])
    ids = batch.ids.clone()
    ids[pos] = value
    return Batch(ids, batch.lengths, batch.dense, batch.labels), row


def _bad_id_message(field, value):
    name, V = SCHEMA.names[field], SCHEMA.vocab[field]
    return rf"field {name} \(index {field}\): ID {value} is outside its valid range \[0, {V}\)"


def test_unchecked_packed_tables_read_other_fields_rows():
    """The bug the check closes: unchecked, C1's ID ``V_1 + V_2`` reads C3's row 0 (D-packing), and C2's ID
    -1 reads C1's last row (K-packing), with no error."""
    b = ClickLogGenerator(SCHEMA, seed=7).batch(0, 32)
    deep = TABLES[0]
    bad, row = _with_id(b, 0, SCHEMA.vocab[0] + SCHEMA.vocab[1])
    st_ = _stage("dpacked")
    st_.bounds_check = False
    torch.testing.assert_close(st_(bad).groups[0][row, 0], deep[2][0])
    bad, row = _with_id(b, 1, -1)
    st_ = _stage("kpacked")
    st_.bounds_check = False
    torch.testing.assert_close(st_(bad).groups[0][row, 1], deep[0][-1])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_out_of_range_id_in_C1_is_refused(kind):
    """Issue case: C1's ID past its vocabulary (into C3's rows) and a negative ID (into the previous field's
    rows): every stage raises a ValueError naming the field, the ID and the range."""
    b = ClickLogGenerator(SCHEMA, seed=7).batch(0, 32)
    st_ = _stage(kind)
    v = SCHEMA.vocab[0] + SCHEMA.vocab[1]
    with pytest.raises(ValueError, match=_bad_id_message(0, v) + "$"):
        st_(_with_id(b, 0, v)[0])
    with pytest.raises(ValueError, match=_bad_id_message(1, -1) + "$"):
        st_(_with_id(b, 1, -1)[0])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_bounds_are_exact_per_field(kind):
    """Own case: ``V_f - 1`` is valid (same output as the baseline) and ``V_f`` is not, in the last field
    (past every packed table's end) and in a multi-hot bag's second ID; several bad IDs are counted."""
    b = _tricky_batch()
    last = SCHEMA.n_fields - 1
    edge, _ = _with_id(b, last, SCHEMA.vocab[last] - 1)
    ref = _STAGES["baseline"](edge)
    out = _stage(kind)(edge)
    for x, y in zip(ref.tensors(), out.tensors(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    st_ = _stage(kind)
    with pytest.raises(ValueError, match=_bad_id_message(last, SCHEMA.vocab[last]) + "$"):
        st_(_with_id(b, last, SCHEMA.vocab[last])[0])
    multi = 4  # C5: multi-hot
    assert SCHEMA.max_bag[multi] > 1 and int(b.lengths[multi].max()) >= 2
    nth = int(b.lengths[multi, :int((b.lengths[multi] >= 2).nonzero()[0])].sum()) + 1  # 2nd ID of a bag
    bad, _ = _with_id(b, multi, -7, nth)
    bad.ids[-1] = -2  # and the last field's last ID: two bad IDs, the first (in field order) reported
    with pytest.raises(ValueError, match=_bad_id_message(multi, -7) + r" \(2 IDs out of range in this batch\)"):
        st_(bad)


def test_cache_admission_refuses_bad_ids():
    """Own case: warm-up counts would credit another field's row; admission refuses the batch."""
    st_ = _stage("cached")
    bad, _ = _with_id(ClickLogGenerator(SCHEMA, seed=7).batch(0, 32), 3, SCHEMA.vocab[3])
    with pytest.raises(ValueError, match=_bad_id_message(3, SCHEMA.vocab[3])):
        st_.row_counts([bad])


@pytest.mark.skipif(not all(available().values()), reason="torchrec / fbgemm_gpu not importable")
def test_peers_refuse_bad_ids():
    from repro.picasso.peers import FBGEMMTBEStage, TorchRecEBCStage

    bad, _ = _with_id(ClickLogGenerator(SCHEMA, seed=7).batch(0, 32), 2, SCHEMA.vocab[2])
    for cls in (TorchRecEBCStage, FBGEMMTBEStage):  # unchecked: EBC names no field, TBE reads row 0
        with pytest.raises(ValueError, match=_bad_id_message(2, SCHEMA.vocab[2])):
            cls(SCHEMA, tables=TABLES)(bad)


# ------------------------------------------------------------------------------ save / load (item 16)
def _trained(kind, seed_tables=TABLES, steps=1):
    """A stage after ``steps`` SGD steps (tables moved away from their initial values)."""
    from repro.picasso.cache import CachedSGD

    st_ = _stage(kind) if seed_tables is TABLES else _stage_from(kind, seed_tables)
    opt = CachedSGD(st_, 0.5) if kind.startswith("cached") else SparseSGD(st_.sparse_parameters(), lr=0.5)
    for i in range(steps):
        opt.zero_grad()
        _run(st_, ClickLogGenerator(SCHEMA, seed=11).batch(i, 32))
        opt.step()
    return st_


def _stage_from(kind, tables):
    kw = {"packing": "kpacked" if kind == "cached-k" else "dpacked"} if kind.startswith("cached") else {}
    st_ = make_stage(kind.split("-")[0], SCHEMA, tables=tables, **kw)
    if kind.startswith("cached"):
        st_.admit(-torch.arange(st_.total_rows).float())  # another cache: the lowest-numbered rows
    return st_


def _saved(module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_stage_state_dict_round_trip(kind):
    """Every stage: a fresh stage (other weights, other cache) loaded from a saved one gives the same
    outputs, tables and, cached, the same cache membership and hit rate."""
    src = _trained(kind)
    state = _saved(src)
    dst = _stage_from(kind, init_field_tables(SCHEMA, seed=9))
    b = ClickLogGenerator(SCHEMA, seed=7).batch(3, 32)
    assert not torch.equal(dst(b).groups[0], src(b).groups[0])
    dst.load_state_dict(state)  # strict
    for x, y in zip(src(b).tensors(), dst(b).tensors(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(sum(src.field_tables(), []), sum(dst.field_tables(), []), strict=True):
        assert torch.equal(x, y)
    if kind.startswith("cached"):
        assert torch.equal(src.row_cached, dst.row_cached)
        for cache, rows, table in zip(dst.cache, dst.cached_rows, dst.store.tables, strict=True):
            assert torch.equal(cache, table[rows])
        src.reset_stats(), dst.reset_stats()
        src(b), dst(b)
        assert src.stats() == dst.stats()
        src.discard_pending(), dst.discard_pending()


@pytest.mark.parametrize("kind", ["cached", "cached-k"])
def test_cached_state_dict_holds_deep_tables(kind):
    """Issue case: the cache's state dict held only the wide table; now the slow-tier (deep) tables and the
    cache membership, as tensors on the host."""
    st_ = _trained(kind)
    state = st_.state_dict()
    n = len(st_.store.tables)
    assert {f"store.{t}" for t in range(n)} | {"wide_table", "row_cached"} <= set(state)
    for t in range(n):
        assert torch.equal(state[f"store.{t}"], st_.store.tables[t])
    assert int(state["row_cached"].sum()) == int(round(st_.capacity * st_.total_rows))


def test_cached_load_refuses_missing_or_misshapen_tables():
    """Own case: a state dict without a deep table, or with one of another shape, is refused by name."""
    state = _saved(_trained("cached"))
    dst = _stage_from("cached", TABLES)
    broken = dict(state)
    del broken["store.0"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "store\.0"'):
        dst.load_state_dict(broken)
    broken = dict(state, **{"store.0": state["store.0"][:-1]})
    with pytest.raises(RuntimeError, match=r"size mismatch for store\.0"):
        dst.load_state_dict(broken)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "store\.7"'):
        dst.load_state_dict(dict(state, **{"store.7": state["store.0"]}))


@pytest.mark.skipif(not available()["torchrec"], reason="torchrec not importable")
def test_torchrec_peer_prints_no_fx_tracing_notice():
    """Issue 13: the TorchRec peer's forward printed torch's one-time ``W... is_fx_tracing will return true
    ...`` notice (every ``KeyedJaggedTensor`` calls the deprecated ``is_fx_tracing``) into the report. Run in
    a fresh process (the notice is printed once per process); other warnings of that logger still print."""
    import subprocess
    import sys

    code = ("import logging\n"
            "from repro.picasso.data import ClickLogGenerator, make_schema\n"
            "from repro.picasso.peers import TorchRecEBCStage\n"
            "s = make_schema(4, seed=0)\n"
            "TorchRecEBCStage(s)(ClickLogGenerator(s).batch(0, 8))\n"
            "import torch.fx._symbolic_trace as t\n"
            "assert t.is_fx_tracing() is False\n"
            "logging.getLogger('torch.fx._symbolic_trace').warning('another warning')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "is_fx_tracing will return true" not in out.stderr + out.stdout
    assert "another warning" in out.stderr
