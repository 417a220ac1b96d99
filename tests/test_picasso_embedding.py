"""PICASSO packing and caching: same outputs and gradients as the per-field baseline."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.picasso.data import Batch, ClickLogGenerator, make_schema
from repro.picasso.embedding import SparseSGD, init_field_tables, make_stage
from repro.picasso.peers import available

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
