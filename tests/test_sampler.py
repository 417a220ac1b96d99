"""Tests of repro.data.sampler.DomainSampler: windows, determinism, weights, shards, resume, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.data.sampler import DomainSampler


def corpus(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"code": rng.integers(0, 500, 1000).astype(np.uint16),
            "law": rng.integers(0, 500, 300).astype(np.int32),
            "math": rng.integers(0, 500, 2000).astype(np.uint16)}


def test_batch_shapes_and_windows_come_from_their_domain():
    toks = corpus()
    s = DomainSampler(toks, context=16, batch_size=32, weights=[0.2, 0.3, 0.5], seed=1)
    x, y, d = s.next_batch()
    assert x.shape == y.shape == (32, 16) and d.shape == (32,)
    assert x.dtype == y.dtype == d.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    names = list(toks)
    for row in range(32):  # test-only loop: each row is a contiguous window of its domain
        src = toks[names[d[row]]].astype(np.int64)
        w = np.concatenate([x[row].numpy(), y[row, -1:].numpy()])
        hits = np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(src, 17) == w, axis=1))
        assert len(hits) >= 1


def test_same_seed_same_batches_other_seed_differs():
    a = DomainSampler(corpus(), 8, 16, seed=3)
    b = DomainSampler(corpus(), 8, 16, seed=3)
    c = DomainSampler(corpus(), 8, 16, seed=4)
    for _ in range(3):
        xa, _, da = a.next_batch()
        xb, _, db = b.next_batch()
        xc, _, _ = c.next_batch()
        assert torch.equal(xa, xb) and torch.equal(da, db)
        assert not torch.equal(xa, xc)


def test_set_weights_between_steps_is_deterministic_and_takes_effect():
    seq = [[1, 0, 0], {"code": 0, "law": 0, "math": 1}, [0, 1, 0]]
    runs = []
    for _ in range(2):
        s = DomainSampler(corpus(), 8, 20, seed=5)
        out = []
        for w in seq:
            s.set_weights(w)
            out.append(s.next_batch())
        runs.append(out)
    for (xa, _, da), (xb, _, db) in zip(*runs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(da, db)
    assert [set(d.tolist()) for _, _, d in runs[0]] == [{0}, {2}, {1}]
    s = DomainSampler(corpus(), 8, 4, seed=0)
    s.set_weights({"code": 0.5, "law": 0.25, "math": 0.25})
    assert s.weights_dict() == {"code": 0.5, "law": 0.25, "math": 0.25}


@pytest.mark.parametrize("world", [2, 4])
def test_rank_shards_concatenate_to_the_single_process_batch(world):
    single = DomainSampler(corpus(), 8, 16, weights=[0.1, 0.6, 0.3], seed=7)
    ranks = [DomainSampler(corpus(), 8, 16, weights=[0.1, 0.6, 0.3], seed=7) for _ in range(world)]
    for _ in range(3):
        x, y, d = single.next_batch()
        parts = [r.next_batch(rank=i, world_size=world) for i, r in enumerate(ranks)]
        assert all(p[0].shape == (16 // world, 8) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert torch.equal(torch.cat([p[2] for p in parts]), d)


def test_state_dict_resumes_exactly():
    a = DomainSampler(corpus(), 8, 8, seed=11)
    a.next_batch()
    a.set_weights([0.5, 0.5, 0.0])
    state = a.state_dict()
    want = [a.next_batch() for _ in range(3)]
    b = DomainSampler(corpus(), 8, 8, seed=999)
    b.load_state_dict(state)
    got = [b.next_batch() for _ in range(3)]
    for (xa, _, da), (xb, _, db) in zip(want, got, strict=True):
        assert torch.equal(xa, xb) and torch.equal(da, db)
    assert b.weights.tolist() == [0.5, 0.5, 0.0]


def test_zero_weight_domain_never_drawn():
    s = DomainSampler(corpus(), 4, 4096, weights=[0.5, 0.0, 0.5], seed=0)
    assert 1 not in s.next_batch()[2].tolist()
    s.set_weights([0.0, 0.0, 1.0])
    assert set(s.next_batch()[2].tolist()) == {2}


@pytest.mark.parametrize(("kw", "match"), [
    (dict(weights=[0.5, 0.7, -0.2]), "non-negative"),
    (dict(weights=[0.3, 0.3, 0.3]), "sum to 1"),
    (dict(weights={"code": 0.5, "law": 0.5, "bio": 0.0}), "unknown domain"),
    (dict(weights={"code": 0.5, "law": 0.5}), "miss"),
    (dict(weights=[0.5, 0.5]), "weights"),
    (dict(context=300), "context"),
    (dict(batch_size=0), "batch_size"),
    (dict(seed=-1), "seed"),
])
def test_errors_name_the_parameter(kw, match):
    args = dict(context=8, batch_size=4, weights=None, seed=0) | kw
    with pytest.raises(ValueError, match=match):
        DomainSampler(corpus(), **args)


def test_weights_within_tolerance_accepted_and_shard_errors():
    s = DomainSampler(corpus(), 8, 6, weights=[0.5, 0.25, 0.25 + 5e-7])
    with pytest.raises(ValueError, match="world_size"):
        s.next_batch(rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        s.next_batch(rank=2, world_size=2)
    with pytest.raises(ValueError, match="unknown domain"):
        s.set_weights({"nope": 1.0, "code": 0, "law": 0, "math": 0})


@settings(max_examples=25, deadline=None)
@given(raw=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=5).filter(lambda v: sum(v) > 0.05),
       seed=st.integers(0, 2**31 - 1))
def test_empirical_domain_frequencies_follow_the_weights(raw, seed):
    w = np.array(raw) / sum(raw)
    toks = {f"d{i}": np.arange(50, dtype=np.int32) for i in range(len(w))}
    n = 4000
    s = DomainSampler(toks, context=4, batch_size=n, weights=w, seed=seed)
    counts = np.bincount(s.next_batch()[2].numpy(), minlength=len(w))
    sigma = np.sqrt(n * w * (1 - w))
    assert np.all(np.abs(counts - n * w) <= 5 * sigma + 1e-9)
    assert np.all(counts[w == 0] == 0)
