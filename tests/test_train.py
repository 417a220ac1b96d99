"""Tests of repro.train: config errors, schedules, accumulation, resume exactness, evaluation, hooks."""

import math
import sys
import types

import numpy as np
import pytest
import torch

from repro.data.sampler import DomainSampler
from repro.nn.gpt import GPT, GPTConfig
from repro.train import TrainConfig, evaluate, lr_at, make_optimizer, train

V, T = 40, 8


def model(seed: int = 0, dropout: float = 0.0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, context=T, n_layer=1, n_head=2, d_model=16, dropout=dropout))


def corpus(seed: int = 0, n: int = 600) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # a learnable pattern (counting mod V with noise) so the loss moves
    base = (np.arange(n) % V + (rng.random(n) < 0.1) * rng.integers(0, V, n)) % V
    return {"a": base.astype(np.uint16), "b": rng.integers(0, V, n).astype(np.int32)}


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(max_steps=6, lr=3e-3, min_lr=3e-4, warmup_steps=2, progress=False), **kw})


@pytest.mark.parametrize(("kw", "match"), [
    (dict(lr=-1e-3), "lr"),
    (dict(warmup_steps=20, max_steps=10), "warmup_steps"),
    (dict(schedule="linear"), "schedule"),
    (dict(min_lr=1.0), "min_lr"),
    (dict(grad_accum=0), "grad_accum"),
    (dict(grad_clip=-1.0), "grad_clip"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(betas=(0.9, 1.5)), "betas"),
    (dict(eval_every=2, eval_steps=[1, 2]), "eval_every"),
    (dict(eval_steps=[1, 99]), "eval_steps"),
    (dict(checkpoint_every=5), "checkpoint"),
    (dict(dtype="bfloat16"), "30x slower"),
    (dict(dtype="float16"), "dtype"),
    (dict(device="tpu"), "device"),
    (dict(max_steps=0), "max_steps"),
])
def test_config_errors_name_the_parameter(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**dict(max_steps=10, warmup_steps=2), **kw})


def test_cosine_schedule_shape():
    c = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    lrs = np.array([lr_at(s, c) for s in range(111)])
    np.testing.assert_allclose(lrs[:10], np.arange(1, 11) / 10)  # linear warm-up reaching lr
    assert lrs[10] == pytest.approx(1.0)
    assert np.all(np.diff(lrs[10:]) <= 1e-12)  # then non-increasing
    assert lrs[60] == pytest.approx(0.55)  # half-way: the mean of lr and min_lr
    assert lrs[110] == pytest.approx(0.1)
    assert lrs.min() >= 0.1 - 1e-12


def test_constant_schedule_shape():
    c = TrainConfig(lr=2.0, min_lr=0.0, warmup_steps=4, max_steps=20, schedule="constant")
    lrs = [lr_at(s, c) for s in range(20)]
    assert lrs[:4] == [0.5, 1.0, 1.5, 2.0] and set(lrs[4:]) == {2.0}
    assert lr_at(0, TrainConfig(warmup_steps=0, max_steps=5, schedule="constant")) == 1e-3
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, c)


def test_weight_decay_only_on_2d_weights():
    opt = make_optimizer(model(), cfg(weight_decay=0.3))
    for g in opt.param_groups:
        assert all((p.dim() >= 2) == (g["weight_decay"] == 0.3) for p in g["params"])


class FixedBatches:
    """A sampler stub serving a fixed list of batches (for accumulation tests)."""

    def __init__(self, batches, batch_size, context=T):
        self.batches, self.i, self.batch_size, self.context = batches, 0, batch_size, context

    def next_batch(self, rank=0, world_size=1):
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        return x, y, torch.zeros(len(x), dtype=torch.long)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]


def test_gradient_accumulation_equals_the_bigger_batch():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, V, (8, T), generator=g), torch.randint(0, V, (8, T), generator=g)
    m1, m2 = model(), model()
    h1 = train(m1, FixedBatches([(x, y)], 8), cfg(max_steps=2, grad_accum=1))
    h2 = train(m2, FixedBatches([(x[:4], y[:4]), (x[4:], y[4:])], 4), cfg(max_steps=2, grad_accum=2))
    assert [h["tokens"] for h in h1] == [h["tokens"] for h in h2] == [64, 128]
    for a, b in zip(h1, h2, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_checkpoint_resume_is_exact(tmp_path):
    """A run interrupted at step 5 and resumed from its step-4 checkpoint equals one straight through."""
    data, val = corpus(), corpus(1)

    stepped = []

    def run(c, interrupt_at=None):
        stepped.clear()
        m = model(dropout=0.1)  # dropout: the torch RNG must be restored too
        s = DomainSampler(data, T, 8, weights=[0.5, 0.5], seed=3)

        def on_eval(step, losses, state):  # DDK-style re-weighting, part of the state to restore
            state["sampler"].set_weights([0.8, 0.2] if step % 4 else [0.3, 0.7])
            state["extra"]["n_evals"] = state["extra"].get("n_evals", 0) + 1

        def on_step(step, rec, state):
            stepped.append(step)
            if step == interrupt_at:
                raise KeyboardInterrupt

        return m, train(m, s, c, val_tokens=val, on_eval=on_eval, on_step=on_step)

    common = dict(max_steps=9, eval_every=2, eval_batches=1, warmup_steps=3, grad_accum=2)
    m_ref, h_ref = run(cfg(**common))
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        run(cfg(**common, checkpoint=ck, checkpoint_every=4), interrupt_at=6)
    assert ck.exists()
    m_res, h_res = run(cfg(**common, checkpoint=ck, checkpoint_every=4))
    assert stepped == [5, 6, 7, 8, 9]  # it did resume from step 4
    assert [h["step"] for h in h_res] == list(range(1, 10))
    assert [h["train_loss"] for h in h_res] == [h["train_loss"] for h in h_ref]  # tolerance 0
    assert [h.get("val") for h in h_res] == [h.get("val") for h in h_ref]
    assert [h.get("weights") for h in h_res] == [h.get("weights") for h in h_ref]
    for p, q in zip(m_ref.parameters(), m_res.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [f.name for f in tmp_path.iterdir()] == ["run.pt"]  # atomic: no temp files left
    # a finished checkpoint resumes to the same history without training
    assert run(cfg(**common, checkpoint=ck))[1] == h_res
    with pytest.raises(ValueError, match="lr"):
        run(cfg(**{**common, "checkpoint": ck}, lr=1e-2))


def test_evaluate_is_deterministic_and_uses_non_overlapping_windows():
    m = model()
    val = corpus(2, n=100)
    a = evaluate(m, val, T, batch_size=4)
    b = evaluate(m, val, T, batch_size=5)
    assert a.keys() == {"a", "b"}
    assert a["a"] == pytest.approx(b["a"], rel=1e-6)
    # by hand: windows 0..T, T..2T, ... ((100 - 1) // 8 = 12 windows)
    toks = torch.from_numpy(val["b"].astype(np.int64))
    idx = torch.arange(12)[:, None] * T + torch.arange(T + 1)
    w = toks[idx]
    with torch.no_grad():
        want = m.per_token_loss(w[:, :-1], w[:, 1:]).mean().item()
    assert a["b"] == pytest.approx(want, rel=1e-6)
    c = evaluate(m, val, T, batch_size=2, max_batches=2)  # 4 evenly spaced windows
    assert c == evaluate(m, val, T, batch_size=2, max_batches=2)
    assert m.training
    with pytest.raises(ValueError, match="val_tokens"):
        evaluate(m, {"x": np.arange(5)}, T, 2)


def test_train_learns_records_history_and_calls_hooks():
    s = DomainSampler(corpus(), T, 16, seed=0)
    seen = []
    c = cfg(max_steps=30, lr=1e-2, warmup_steps=3, eval_steps=[0, 15, 30], eval_batches=2)

    def on_eval(step, losses, state):
        seen.append(step)
        state["sampler"].set_weights({"a": 1.0, "b": 0.0})

    h = train(model(), s, c, val_tokens=corpus(1), on_eval=on_eval)
    assert seen == [0, 15, 30]
    assert h[0]["step"] == 0 and h[0]["train_loss"] is None and h[0]["val"]["a"] == pytest.approx(math.log(V), rel=0.1)
    assert [r["step"] for r in h[1:]] == list(range(1, 31))
    assert h[-1]["tokens"] == 30 * 16 * T
    assert h[-1]["val"]["a"] < h[0]["val"]["a"] - 0.3
    assert h[15]["weights"] == {"a": 1.0, "b": 0.0}
    assert [r["lr"] for r in h[1:4]] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])
    with pytest.raises(ValueError, match="val_tokens"):
        train(model(), s, c)


def test_progress_bar_quiet_under_tqdm_disable_and_off_rank_zero(monkeypatch):
    from repro.train import _progress_disable

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert _progress_disable(cfg(progress=True), rank=0) is True
    monkeypatch.delenv("TQDM_DISABLE")
    assert _progress_disable(cfg(progress=True), rank=1) is True
    assert _progress_disable(cfg(progress=False), rank=0) is True
    # outside Jupyter tqdm decides (a bar only on a terminal); inside an ipykernel the bar is forced on
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert _progress_disable(cfg(progress=True), rank=0) is None
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert _progress_disable(cfg(progress=True), rank=0) is False
    monkeypatch.setenv("TQDM_DISABLE", "1")  # the runner's setting wins over the kernel
    assert _progress_disable(cfg(progress=True), rank=0) is True


def test_is_int_is_one_check_for_every_validator():
    from repro.checks import is_int

    assert is_int(3) and is_int(np.int64(3)) and is_int(np.uint16(0)) and is_int(-1)
    assert not is_int(True) and not is_int(np.bool_(True)) and not is_int(3.0) and not is_int("3")
    assert not is_int(np.int64(3), numpy=False) and is_int(3, numpy=False) and not is_int(False, numpy=False)
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=True)
    assert TrainConfig(max_steps=np.int64(5), warmup_steps=0).max_steps == 5  # the sampler and the loop take NumPy ints
    with pytest.raises(ValueError, match="d_model"):
        GPTConfig(vocab_size=64, context=8, n_layer=1, n_head=2, d_model=np.int64(16))  # JSON-bound: Python ints
