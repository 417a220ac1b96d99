"""PICASSO training (``repro.picasso.training``, ``.interleave``, ``.optim``): every optimisation trains
identically to the per-field baseline."""

import io

import pytest
import torch

from repro.picasso.data import ClickLogGenerator, make_schema
from repro.picasso.embedding import init_field_tables
from repro.picasso.models import make_model
from repro.picasso.optim import Optimizers
from repro.picasso.stages import make_stage
from repro.picasso.training import auc, evaluate_auc, make_optimizers, train, train_step

SCHEMA = make_schema(20, seed=1, vocab_range=(10, 4000), p_empty=0.1)
TABLES = init_field_tables(SCHEMA, seed=0)
GEN = ClickLogGenerator(SCHEMA, seed=3)


def _model(kind, name="wdl"):
    """``cached``: the cache over D-packing; ``cached-k``: over K-packing."""
    kw = {"link_bytes_per_s": None, "packing": "kpacked" if kind == "cached-k" else "dpacked"}
    st = make_stage(kind.split("-")[0], SCHEMA, tables=TABLES, **(kw if kind.startswith("cached") else {}))
    if kind.startswith("cached"):
        st.warm_up(GEN, 2, 64, start=1000)
    return make_model(name, SCHEMA, st, hidden=(32, 16), seed=0)


class _Hold:
    """An optimizer that keeps gradients (step does nothing) so tests can read them."""

    def __init__(self, inner=None):
        self.inner = inner

    def zero_grad(self, set_to_none=True):
        if self.inner is not None:
            self.inner.zero_grad(set_to_none)

    def step(self):
        pass


def _grads(model, kind, micro_batches, interleave):
    opt = make_optimizers(model)
    hold = Optimizers(_Hold(opt.emb), _Hold(opt.dense))
    loss = train_step(model, hold, GEN.batch(0, 48), micro_batches=micro_batches, interleave=interleave)
    d, w = model.emb.field_grads()
    return loss, [p.grad.clone() for p in model.dense_parameters()], d + w


@pytest.mark.parametrize("kind", ["dpacked", "kpacked", "cached", "cached-k"])
@pytest.mark.parametrize("m", [2, 5])
def test_interleaved_gradients_equal_whole_batch(kind, m):
    loss0, dense0, emb0 = _grads(_model("baseline"), "baseline", 1, False)
    loss1, dense1, emb1 = _grads(_model(kind), kind, m, True)
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    for x, y in zip(dense0 + emb0, dense1 + emb1, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", ["wdl", "deepfm"])
def test_same_training_trajectory_and_auc(name):
    ev = GEN.batches(3, 256, start=500)
    runs = {}
    for kind, m, il in [("baseline", 1, False), ("dpacked", 1, False), ("kpacked", 3, True), ("cached", 3, True),
                         ("cached-k", 2, True)]:
        model = _model(kind, name)
        losses = train(model, GEN, 20, 128, micro_batches=m, interleave=il, progress=False)
        runs[kind] = (losses, evaluate_auc(model, ev))
    base_losses, base_auc = runs["baseline"]
    assert base_losses[-1] < base_losses[0]
    assert base_auc > 0.55  # the planted model is learnable (20 small steps)
    for kind, (losses, a) in runs.items():
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(base_losses), atol=1e-4, rtol=1e-4,
                                   msg=lambda s, k=kind: f"{k}: {s}")
        assert a == pytest.approx(base_auc, abs=2e-3), kind


@pytest.mark.parametrize("kind", ["cached", "cached-k"])
def test_cached_write_through_keeps_store_current(kind):
    model = _model(kind)
    train(model, GEN, 3, 64, progress=False)
    ref = _model("kpacked")
    train(ref, GEN, 3, 64, progress=False)
    for x, y in zip(model.emb.field_tables()[0], ref.emb.field_tables()[0], strict=True):
        torch.testing.assert_close(x, y.detach(), atol=1e-6, rtol=1e-5)
    st = model.emb
    for cache, rows, table in zip(st.cache, st.cached_rows, st.store.tables, strict=True):
        assert len(rows) > 0
        torch.testing.assert_close(cache, table[rows])  # cached copies equal the store


def test_auc_known_values():
    y = torch.tensor([0, 0, 1, 1.0])
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), y) == pytest.approx(0.75)
    assert auc(torch.tensor([1.0, 1, 1, 1]), y) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        auc(torch.ones(3), torch.ones(3))


# ------------------------------------------------------------------------------ issue 10, items 15 and 16
def _snapshot(model):
    deep, wide = model.emb.field_tables()
    return [t.detach().clone() for t in deep + wide] + [p.detach().clone() for p in model.dense_parameters()]


@pytest.mark.parametrize("kind", ["baseline", "dpacked", "kpacked", "cached", "cached-k"])
def test_interleaved_step_refuses_bad_id_and_updates_nothing(kind):
    """A bad ID in the last of 3 interleaved micro-batches (C2's ID = V_2 + 5, read from C3's rows when
    unchecked): ``train_step`` raises a ValueError naming C2, the ID and the range, after micro-batches 0-1
    already ran backward, and nothing is updated: the next step equals that of a model that never saw it."""
    model, ref = _model(kind), _model(kind)
    opt, ref_opt = make_optimizers(model), make_optimizers(ref)
    b = GEN.batch(0, 48)
    sample = torch.arange(48).repeat_interleave(b.lengths[1])
    pos = int(b.lengths[0].sum()) + int((sample >= 32).nonzero()[0])  # an ID of C2 in micro-batch 2
    ids = b.ids.clone()
    ids[pos] = SCHEMA.vocab[1] + 5
    before = _snapshot(model)
    bad = type(b)(ids, b.lengths, b.dense, b.labels)
    msg = rf"field C2 \(index 1\): ID {SCHEMA.vocab[1] + 5} is outside its valid range \[0, {SCHEMA.vocab[1]}\)"
    with pytest.raises(ValueError, match=msg):
        train_step(model, opt, bad, micro_batches=3, interleave=True)
    for x, y in zip(before, _snapshot(model), strict=True):
        assert torch.equal(x, y)
    assert all(p.grad is None for p in model.parameters())  # micro-batches 0-1's gradients dropped
    assert getattr(model.emb, "_pending", []) == []  # and a cache's working sets
    good = GEN.batch(1, 48)
    assert train_step(model, opt, good, micro_batches=3, interleave=True) == pytest.approx(
        train_step(ref, ref_opt, good, micro_batches=3, interleave=True), rel=1e-6)
    for x, y in zip(_snapshot(ref), _snapshot(model), strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)


def test_train_without_validation_still_refuses_negative_id():
    """Own case: ``train(validate=False)`` skips ``validate_batch``; the stage's own check still refuses a
    negative ID (K-packing would read the previous field's rows)."""
    model = _model("kpacked")

    class Bad:
        def batch(self, i, bs):
            b = GEN.batch(i, bs)
            b.ids[int(b.lengths[:6].sum())] = -1  # the first ID of C7 (index 6)
            return b

    assert int(GEN.batch(0, 32).lengths[6].sum()) > 0
    with pytest.raises(ValueError, match=rf"field C7 \(index 6\): ID -1 is outside its valid range "
                                         rf"\[0, {SCHEMA.vocab[6]}\)"):
        train(model, Bad(), 1, 32, validate=False, progress=False)


def _other_model(kind, name):
    """The same architecture from other weights (tables, MLP) and, cached, another cache membership."""
    kw = {"link_bytes_per_s": None, "packing": "kpacked" if kind == "cached-k" else "dpacked"}
    st = make_stage(kind.split("-")[0], SCHEMA, tables=init_field_tables(SCHEMA, seed=5),
                    **(kw if kind.startswith("cached") else {}))
    if kind.startswith("cached"):
        st.warm_up(GEN, 1, 32, start=2000)
    return make_model(name, SCHEMA, st, hidden=(32, 16), seed=3)


@pytest.mark.parametrize("kind, name", [("cached", "wdl"), ("cached-k", "deepfm"), ("baseline", "wdl"),
                                        ("dpacked", "deepfm"), ("kpacked", "wdl")])
def test_model_save_load_gives_same_outputs_and_training(kind, name):
    """Issue case: the full path (cached D-packing, interleaved, W&D) saved after training and loaded into a
    fresh model kept none of its deep embeddings. Now model + optimizer state round-trip through
    ``torch.save``: same outputs, and the next interleaved step gives the same loss and the same model.
    Own cases: DeepFM over the cache on K-packing, and the uncached stages."""
    src = _model(kind, name)
    opt = make_optimizers(src)
    train(src, GEN, 2, 64, micro_batches=2, interleave=True, opt=opt, progress=False)
    buf = io.BytesIO()
    torch.save({"model": src.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf)
    dst = _other_model(kind, name)
    dst_opt = make_optimizers(dst)
    probe = GEN.batch(777, 64)
    with torch.no_grad():
        assert not torch.equal(src(probe), dst(probe))
        dst.load_state_dict(state["model"])
        dst_opt.load_state_dict(state["opt"])
        assert torch.equal(src(probe), dst(probe))
    b = GEN.batch(2, 64)
    assert train_step(src, opt, b, micro_batches=2, interleave=True) == train_step(
        dst, dst_opt, b, micro_batches=2, interleave=True)
    for x, y in zip(_snapshot(src), _snapshot(dst), strict=True):
        assert torch.equal(x, y)
    with torch.no_grad():
        assert torch.equal(src(probe), dst(probe))
