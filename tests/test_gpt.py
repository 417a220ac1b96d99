"""Tests of repro.nn.gpt: parameter counts, causality, losses, config errors, FLOPs."""

import math

import pytest
import torch
import torch.nn.functional as F

from repro.nn.gpt import GPT, GPTConfig, flops_per_token, linear_cross_entropy, param_count

CONFIGS = [
    GPTConfig(vocab_size=50, context=16, n_layer=1, n_head=1, d_model=8),
    GPTConfig(vocab_size=97, context=32, n_layer=2, n_head=4, d_model=32),
    GPTConfig(vocab_size=64, context=8, n_layer=3, n_head=2, d_model=16, d_ff=40, bias=False),
    GPTConfig(vocab_size=256, context=64, n_layer=2, n_head=6, d_model=48, dropout=0.1),
]


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    base = dict(vocab_size=61, context=16, n_layer=2, n_head=2, d_model=16)
    return GPT(GPTConfig(**{**base, **kw}))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"d{c.d_model}L{c.n_layer}b{int(c.bias)}")
def test_param_count_closed_form_matches_module(cfg):
    m = GPT(cfg)
    actual_total = sum(p.numel() for p in m.parameters())  # tied head counted once
    emb = m.wte.weight.numel() + m.wpe.weight.numel()
    pc = param_count(cfg)
    assert pc.total == actual_total == m.num_params(non_embedding=False)
    assert pc.non_embedding == actual_total - emb == m.num_params()


def test_param_count_known_value():
    # 12 d^2 + 13 d per block with biases and d_ff = 4 d, plus the final LayerNorm 2 d
    cfg = GPTConfig(vocab_size=100, context=10, n_layer=2, n_head=2, d_model=8)
    n = 2 * (12 * 64 + 13 * 8) + 16
    assert param_count(cfg) == (n, n + 100 * 8 + 10 * 8)


def test_tied_embeddings_and_gpt2_init():
    m = tiny(n_layer=4, d_model=64, n_head=4, vocab_size=500)
    assert m.lm_head.weight is m.wte.weight
    std = torch.cat([b.attn.proj.weight.flatten() for b in m.blocks] + [b.mlp.proj.weight.flatten() for b in m.blocks]).std()
    assert std.item() == pytest.approx(0.02 / math.sqrt(8), rel=0.1)
    assert m.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(m.blocks[0].attn.qkv.bias == 0)


def test_causal_future_tokens_do_not_change_past_logits():
    m = tiny().eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 61, (3, 16), generator=g)
    t = 7
    idx2 = idx.clone()
    idx2[:, t + 1:] = torch.randint(0, 61, (3, 16 - t - 1), generator=g)
    with torch.no_grad():
        a, _ = m(idx)
        b, _ = m(idx2)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_per_token_loss_matches_cross_entropy_and_mean_loss():
    m = tiny().eval()
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 61, (4, 12), generator=g)
    tgt = torch.randint(0, 61, (4, 12), generator=g)
    with torch.no_grad():
        logits, loss = m(idx, tgt)
        ptl = m.per_token_loss(idx, tgt)
    assert ptl.shape == (4, 12)
    ref = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
    torch.testing.assert_close(ptl, ref)
    torch.testing.assert_close(ptl.mean(), loss)
    assert loss.item() == pytest.approx(math.log(61), rel=0.05)  # near-uniform predictions at init


def test_forward_without_targets_and_ignore_index():
    m = tiny().eval()
    idx = torch.zeros(2, 5, dtype=torch.long)
    logits, loss = m(idx)
    assert logits.shape == (2, 5, 61) and loss is None
    tgt = torch.ones(2, 5, dtype=torch.long)
    tgt[:, 0] = -1
    assert (m.per_token_loss(idx, tgt)[:, 0] == 0).all()


@pytest.mark.parametrize(("kw", "match"), [
    (dict(d_model=30, n_head=4), "n_head"),
    (dict(d_model=0), "d_model"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(context=0), "context"),
    (dict(n_layer=0), "n_layer"),
    (dict(n_head=0), "n_head"),
    (dict(d_ff=-1), "d_ff"),
    (dict(dropout=1.0), "dropout"),
    (dict(n_layer=2.0), "n_layer"),
    (dict(bias="yes"), "bias"),
])
def test_config_errors_name_the_parameter(kw, match):
    base = dict(vocab_size=10, context=8, n_layer=1, n_head=2, d_model=8)
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**base, **kw})


def test_input_longer_than_context_is_refused():
    m = tiny()
    with pytest.raises(ValueError, match="context"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_d_ff_default_and_flops_per_token():
    cfg = GPTConfig(vocab_size=1000, context=128, n_layer=4, n_head=4, d_model=64)
    assert cfg.d_ff == 256
    n = param_count(cfg).non_embedding
    assert flops_per_token(cfg) == 6 * n + 6 * 4 * 128 * 64
    assert flops_per_token(cfg, lm_head=True) == flops_per_token(cfg) + 6 * 1000 * 64


def test_gradients_reach_every_parameter():
    m = tiny()
    idx = torch.randint(0, 61, (2, 16))
    _, loss = m(idx, idx)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_fused_linear_cross_entropy_equals_the_plain_loss_and_gradients():
    cfg = GPTConfig(vocab_size=300, context=16, n_layer=2, n_head=2, d_model=16)
    torch.manual_seed(3)
    a, b = GPT(cfg), GPT(cfg)
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 300, (5, 16))
    tgt = torch.randint(0, 300, (5, 16))
    tgt[0, :3] = -1
    la = a(idx, tgt)[1]
    lb = b(idx, tgt, return_logits=False)
    assert lb[0] is None
    la.backward()
    (2 * lb[1]).backward()  # a scaled upstream gradient reaches both inputs
    torch.testing.assert_close(lb[1], la, rtol=1e-6, atol=1e-6)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, 2 * p.grad, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_linear_cross_entropy_chunks_agree():
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(37, 8, generator=g), torch.randn(11, 8, generator=g)
    t = torch.randint(0, 11, (37,), generator=g)
    ref = F.cross_entropy(h @ w.T, t)
    for chunk in (1, 5, 37, 100):
        torch.testing.assert_close(linear_cross_entropy(h, w, t, chunk), ref)
