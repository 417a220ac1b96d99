"""Tests of repro.ddk: the equations of DDK (card ddk.md section 3) against known answers and plain float64
formulas, the distillation loss and its gradient, the Distiller and the Reweighter hook, the sweep specs and their
FLOP accounting, the argument checks, and the smoke sweeps end to end through the analysis and the plots; and
repro.train.cached_weights."""

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import paths, runs
from repro.data.sampler import DomainSampler
from repro.ddk import analysis, cost
from repro.ddk import sweep as ddk_sweep
from repro.ddk.distill import MIXTURES, Distiller, Reweighter, natural_mixture
from repro.ddk.equations import (
    check_weights,
    discrepancy_factor,
    distillation_loss,
    doremi_update,
    perplexity_ratio,
    smooth_update,
    total_variation,
)
from repro.ddk.sweep import CORPORA, METHODS, DDKRun, TeacherRun, run_flops, spec_from_json, specs
from repro.nn.gpt import GPT, GPTConfig, flops_per_token, param_count
from repro.train import array_sha256, cached_weights, evaluate


def names(param: str) -> str:
    """A regex matching ``param`` as a whole word (so ``T`` does not match ``TrainConfig``)."""
    return rf"(?<![\w]){re.escape(param)}(?![\w])"


def plain_softmax(q) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    e = np.exp(q - q.max())
    return e / e.sum()


def plain_smooth(r_prev, ratio, alpha) -> np.ndarray:
    """Eq. (2) written as on the card, without log space."""
    psi = np.asarray(r_prev, dtype=float) * np.exp(np.asarray(ratio, dtype=float))
    return alpha * psi / psi.sum() + (1 - alpha) / len(psi)


def distribution(n_min=2, n_max=8):
    """A distribution over 2..8 domains, every entry positive."""
    return st.lists(st.floats(0.01, 1.0), min_size=n_min, max_size=n_max).map(
        lambda v: (np.asarray(v) / np.sum(v)).tolist())


# ============================================================================================ equations: known answers
def test_card_worked_example_eq1_and_eq2():
    """Card ambiguity 4: ratios (1.05, 1.60) -> exp (2.86, 4.95) -> (0.366, 0.634) -> alpha = 0.5: (0.433, 0.567)."""
    r = discrepancy_factor([1.05, 1.60])
    np.testing.assert_allclose(r, [0.366, 0.634], atol=5e-4)
    np.testing.assert_allclose(np.exp([1.05, 1.60]), [2.86, 4.95], atol=5e-3)
    # from the uniform history, Eq. (2)'s psi is Eq. (1)'s factor, then the floor (1 - alpha) / N = 0.25
    r1 = smooth_update([0.5, 0.5], [1.05, 1.60], alpha=0.5)
    np.testing.assert_allclose(r1, [0.433, 0.567], atol=5e-4)
    np.testing.assert_allclose(r1, 0.5 * r + 0.25, rtol=1e-12)


def test_perplexity_ratio_is_exp_of_the_loss_difference():
    np.testing.assert_allclose(perplexity_ratio([2.0, 3.5], [1.0, 3.5]), [math.e, 1.0], rtol=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.01, 60.0), min_size=1, max_size=10))
def test_discrepancy_factor_is_the_softmax_of_the_ratios(q):
    got = discrepancy_factor(q)
    want = torch.softmax(torch.tensor(q, dtype=torch.float64), 0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), alpha=st.floats(0.0, 1.0))
def test_smooth_update_equals_the_plain_formula_and_keeps_its_floor(data, alpha):
    r_prev = data.draw(distribution())
    ratio = data.draw(st.lists(st.floats(0.05, 20.0), min_size=len(r_prev), max_size=len(r_prev)))
    got = smooth_update(r_prev, ratio, alpha)
    np.testing.assert_allclose(got, plain_smooth(r_prev, ratio, alpha), rtol=1e-10, atol=1e-15)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(got >= (1 - alpha) / len(r_prev) - 1e-15)
    check_weights(got)


def test_smooth_update_does_not_overflow_for_huge_ratios():
    # exp(800) overflows float64; the update works in log space
    with np.errstate(over="raise", invalid="raise"):
        r = smooth_update([1 / 3, 1 / 3, 1 / 3], [500.0, 800.0, 1.0], alpha=0.5)
    np.testing.assert_allclose(r, [0.5 / 3, 0.5 + 0.5 / 3, 0.5 / 3], rtol=1e-12)
    r = smooth_update([0.5, 0.5], [500.0, 500.0], alpha=0.5)
    np.testing.assert_allclose(r, [0.5, 0.5], rtol=1e-12)
    with np.errstate(over="raise", invalid="raise"):
        d = discrepancy_factor([500.0, 800.0, 1.0])
    np.testing.assert_allclose(d, [0.0, 1.0, 0.0], atol=1e-120)


def test_smooth_update_tiny_and_zero_history():
    # a tiny history weight is not lost: 1e-300 * exp(700) is a fine number
    r = smooth_update([1e-300, 1 - 1e-300], [700.0, 1.0], alpha=1.0)
    want = plain_softmax([math.log(1e-300) + 700.0, 1.0])
    np.testing.assert_allclose(r, want, rtol=1e-10)
    # a domain whose history is 0 stays at the floor (1 - alpha) / N, whatever its ratio
    r = smooth_update([0.0, 0.5, 0.5], [50.0, 1.0, 2.0], alpha=0.5)
    assert r[0] == pytest.approx(0.5 / 3, rel=1e-12)
    assert r.sum() == pytest.approx(1.0, abs=1e-12)


def test_smooth_update_alpha_one_is_psi_and_alpha_zero_is_uniform():
    r_prev, ratio = [0.2, 0.3, 0.5], [1.2, 3.0, 1.7]
    psi = np.asarray(r_prev) * np.exp(ratio)
    np.testing.assert_allclose(smooth_update(r_prev, ratio, 1.0), psi / psi.sum(), rtol=1e-12)
    np.testing.assert_allclose(smooth_update(r_prev, ratio, 0.0), [1 / 3] * 3, rtol=1e-12)
    np.testing.assert_allclose(smooth_update(r_prev, ratio, 0), [1 / 3] * 3, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------- DoReMi
def test_doremi_zero_excess_keeps_the_weights_up_to_the_eps_mixing():
    w = np.array([0.6, 0.3, 0.1])
    got = doremi_update(w, [2.0, 3.0, 1.0], [2.0, 3.0, 1.0], eta=1.0, eps=1e-3)
    np.testing.assert_allclose(got, (1 - 1e-3) * w + 1e-3 / 3, rtol=1e-12)
    np.testing.assert_allclose(doremi_update(w, [2.0, 3.0, 1.0], [2.0, 3.0, 1.0], eps=0.0), w, rtol=1e-12)


def test_doremi_known_answer_and_clipping_at_zero():
    got = doremi_update([0.5, 0.5], [3.0, 1.0], [2.0, 1.0], eta=1.0, eps=0.0)
    np.testing.assert_allclose(got, [math.e / (1 + math.e), 1 / (1 + math.e)], rtol=1e-12)
    # a domain where the student beats the reference is not boosted: the same as an excess of exactly 0
    beaten = doremi_update([0.5, 0.5], [3.0, 0.2], [2.0, 1.0], eta=1.0, eps=0.0)
    np.testing.assert_allclose(beaten, got, rtol=1e-12)
    # nor is it lowered below its share when every domain is beaten
    np.testing.assert_allclose(doremi_update([0.7, 0.3], [0.1, 0.5], [2.0, 1.0], eps=0.0), [0.7, 0.3], rtol=1e-12)
    # eta scales the excess
    got2 = doremi_update([0.5, 0.5], [3.0, 1.0], [2.0, 1.0], eta=2.0, eps=0.0)
    np.testing.assert_allclose(got2, plain_softmax([2.0, 0.0]), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), eps=st.floats(0.0, 1.0))
def test_doremi_has_an_eps_floor_and_stays_a_distribution(data, eps):
    w = data.draw(distribution())
    w[0] = 0.0  # even a domain at weight 0 keeps eps / N
    w = (np.asarray(w) / np.sum(w)).tolist()
    n = len(w)
    s = data.draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n))
    t = data.draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n))
    got = doremi_update(w, s, t, eta=1.0, eps=eps)
    assert np.all(got >= eps / n - 1e-15)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    assert got[0] == pytest.approx(eps / n, abs=1e-15)


# ---------------------------------------------------------------------------------------------- total variation
def test_total_variation():
    assert total_variation([[0.2, 0.8]] * 5) == 0.0
    assert total_variation([[0.2, 0.8]]) == 0.0
    assert total_variation([[0.5, 0.5], [0.2, 0.8]]) == pytest.approx(0.6, abs=1e-15)
    assert total_variation([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]) == pytest.approx(4.0)  # the bound 2 (rows - 1)


@pytest.mark.parametrize("w,name", [([[0.5, 0.5], [0.5, 0.6]], "weights[1]"), ([[1.2, -0.2]], "weights[0]"),
                                    ([0.5, 0.5], "weights"), (np.zeros((0, 3)), "weights")])
def test_total_variation_refuses_rows_that_are_not_distributions(w, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        total_variation(w)


# ------------------------------------------------------------------------------------------- distillation loss
def np_log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def ref_distillation(z_s, z_t, y, gamma, T):
    """CE + gamma * mean_token sum_v p_T (log p_T - log p_S), by hand in float64 NumPy, targets -1 left out."""
    V = z_s.shape[-1]
    zs, zt = z_s.detach().double().numpy().reshape(-1, V), z_t.detach().double().numpy().reshape(-1, V)
    yy = y.numpy().reshape(-1)
    keep = yy >= 0
    ls1 = np_log_softmax(zs[keep])
    ce = -ls1[np.arange(keep.sum()), yy[keep]].mean()
    lps, lpt = np_log_softmax(zs[keep] / T), np_log_softmax(zt[keep] / T)
    kl = (np.exp(lpt) * (lpt - lps)).sum(-1).mean()
    return ce + gamma * kl, ce, kl


def logits(seed, shape=(2, 3, 7), scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def targets(seed, shape=(2, 3), V=7, ignore=((0, 1), (1, 2))):
    g = torch.Generator().manual_seed(seed + 1000)
    y = torch.randint(0, V, shape, generator=g)
    for i in ignore:
        y[i] = -1
    return y


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("gamma", [0.0, 0.2])
def test_distillation_loss_equals_ce_plus_gamma_forward_kl(T, gamma):
    z_s, z_t, y = logits(0), logits(1), targets(0)
    loss, ce, kl = distillation_loss(z_s, z_t, y, gamma, T)
    want_loss, want_ce, want_kl = ref_distillation(z_s, z_t, y, gamma, T)
    assert float(ce) == pytest.approx(want_ce, rel=1e-12)
    assert float(kl) == pytest.approx(want_kl, rel=1e-12)
    assert float(loss) == pytest.approx(want_loss, rel=1e-12)
    # the forward (Hinton) direction, not the reverse KL(p_S || p_T)
    lps, lpt = np_log_softmax(z_s.numpy().reshape(-1, 7) / T), np_log_softmax(z_t.numpy().reshape(-1, 7) / T)
    keep = y.reshape(-1).numpy() >= 0
    reverse = (np.exp(lps) * (lps - lpt)).sum(-1)[keep].mean()
    assert abs(float(kl) - reverse) > 1e-3


def test_distillation_loss_float32_matches_the_float64_reference():
    z_s, z_t, y = logits(3, dtype=torch.float32), logits(4, dtype=torch.float32), targets(3)
    loss, _, _ = distillation_loss(z_s, z_t, y, 0.2, 1.0)
    assert float(loss) == pytest.approx(ref_distillation(z_s, z_t, y, 0.2, 1.0)[0], rel=1e-5)


def test_distillation_loss_without_a_teacher_is_the_ce():
    z_s, y = logits(5), targets(5)
    loss, ce, kl = distillation_loss(z_s, None, y, 0.0)
    assert float(loss) == float(ce) == pytest.approx(ref_distillation(z_s, z_s, y, 0, 1)[1], rel=1e-12)
    assert float(kl) == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 20.0), T=st.floats(0.2, 5.0))
def test_kl_is_non_negative_and_zero_for_equal_logits(seed, scale, T):
    z_s, z_t, y = logits(seed, scale=scale), logits(seed + 1, scale=scale), targets(seed)
    _, _, kl = distillation_loss(z_s, z_t, y, 0.2, T)
    assert float(kl) >= -1e-12
    _, _, kl0 = distillation_loss(z_s, z_s.clone(), y, 0.2, T)
    assert abs(float(kl0)) < 1e-12
    _, _, kl_shift = distillation_loss(z_s, z_s + 3.0, y, 0.2, T)  # softmax is shift-invariant
    assert abs(float(kl_shift)) < 1e-10


def test_distillation_loss_ignores_targets_minus_one_in_both_terms():
    z_s, z_t, y = logits(6, shape=(3, 4, 7)), logits(7, shape=(3, 4, 7)), targets(6, shape=(3, 4), ignore=((0, 0), (2, 3), (1, 1)))
    keep = y >= 0
    full = distillation_loss(z_s, z_t, y, 0.2, 2.0)
    kept = distillation_loss(z_s[keep], z_t[keep], y[keep], 0.2, 2.0)
    for a, b in zip(full, kept, strict=True):
        assert float(a) == pytest.approx(float(b), rel=1e-12)
    # changing the logits at the ignored positions changes nothing
    z_s2, z_t2 = z_s.clone(), z_t.clone()
    z_s2[~keep] = 50 * torch.randn_like(z_s2[~keep])
    z_t2[~keep] = -50 * torch.randn_like(z_t2[~keep])
    for a, b in zip(full, distillation_loss(z_s2, z_t2, y, 0.2, 2.0), strict=True):
        assert float(a) == pytest.approx(float(b), rel=1e-12)


@pytest.mark.parametrize("T,gamma", [(1.0, 0.2), (2.0, 0.5), (0.5, 0.0)])
def test_distillation_loss_gradient_passes_gradcheck(T, gamma):
    z_s = logits(8, shape=(2, 3, 5), scale=1.0).requires_grad_(True)
    z_t, y = logits(9, shape=(2, 3, 5), scale=1.0), targets(8, V=5, ignore=((1, 0),))
    assert torch.autograd.gradcheck(lambda z: distillation_loss(z, z_t, y, gamma, T)[0], (z_s,))


def test_distillation_loss_gradient_matches_the_closed_form():
    """d loss / d z_S = (softmax(z_S) - onehot) / n + gamma / T * (p_S^T - p_T^T) / n on counted tokens, 0 elsewhere."""
    z_s = logits(10, shape=(4, 6), scale=1.5).requires_grad_(True)
    z_t, y = logits(11, shape=(4, 6), scale=1.5), torch.tensor([2, -1, 0, 5])
    gamma, T = 0.3, 2.0
    distillation_loss(z_s, z_t, y, gamma, T)[0].backward()
    zs, zt = z_s.detach(), z_t
    n = 3
    want = torch.zeros_like(zs)
    for i, t in enumerate(y.tolist()):
        if t < 0:
            continue
        want[i] = (torch.softmax(zs[i], -1) - F.one_hot(torch.tensor(t), 6)) / n
        want[i] += gamma / T * (torch.softmax(zs[i] / T, -1) - torch.softmax(zt[i] / T, -1)) / n
    torch.testing.assert_close(z_s.grad, want, rtol=1e-10, atol=1e-12)


def test_teacher_logits_get_no_gradient():
    z_s = logits(12).requires_grad_(True)
    z_t = logits(13).requires_grad_(True)
    distillation_loss(z_s, z_t, targets(12), 0.2, 1.0)[0].backward()
    assert z_t.grad is None
    assert z_s.grad is not None and torch.isfinite(z_s.grad).all()


# ============================================================================================ bad input, by name
def tiny_gpt(vocab=11, d=8, seed=0, context=8, layers=1):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, context=context, n_layer=layers, n_head=1, d_model=d))


TL = {"a": 1.0, "b": 2.0, "c": 3.0}
NAT = {"a": 0.5, "b": 0.3, "c": 0.2}
Z = torch.zeros(2, 5)
Y = torch.zeros(2, dtype=torch.long)

BAD = [
    ("weights", lambda: check_weights([0.5, 0.6])),
    ("weights", lambda: check_weights([1.5, -0.5])),
    ("weights", lambda: check_weights([])),
    ("w_x", lambda: check_weights([0.5, math.nan], "w_x")),
    ("r_prev", lambda: smooth_update([0.3, 0.3], [1.0, 1.0])),
    ("r_prev", lambda: smooth_update([0.5, 0.5, 0.5], [1.0, 1.0, 1.0])),
    ("ratio", lambda: smooth_update([0.5, 0.5], [1.0, 0.0])),
    ("ratio", lambda: smooth_update([0.5, 0.5], [1.0, 1.0, 1.0])),
    ("ratio", lambda: discrepancy_factor([1.0, -1.0])),
    ("ratio", lambda: discrepancy_factor([1.0, math.inf])),
    ("loss_s", lambda: perplexity_ratio([1.0, 2.0], [1.0])),
    ("alpha", lambda: smooth_update([0.5, 0.5], [1.0, 1.0], alpha=1.5)),
    ("alpha", lambda: smooth_update([0.5, 0.5], [1.0, 1.0], alpha=-0.1)),
    ("alpha", lambda: smooth_update([0.5, 0.5], [1.0, 1.0], alpha=True)),
    ("alpha", lambda: smooth_update([0.5, 0.5], [1.0, 1.0], alpha=math.nan)),
    ("alpha", lambda: Reweighter("ddk", TL, NAT, 4, alpha=1.01)),
    ("alpha", lambda: Reweighter("ddk", TL, NAT, 4, alpha=-0.5)),
    ("w_prev", lambda: doremi_update([0.5, 0.6], [1.0, 1.0], [1.0, 1.0])),
    ("eta", lambda: doremi_update([0.5, 0.5], [1.0, 1.0], [1.0, 1.0], eta=0.0)),
    ("eps", lambda: doremi_update([0.5, 0.5], [1.0, 1.0], [1.0, 1.0], eps=1.5)),
    ("natural", lambda: Reweighter("ddk", TL, {"a": 0.5, "b": 0.3, "c": 0.3}, 4)),
    ("natural", lambda: Reweighter("ddk", TL, {"b": 0.3, "a": 0.5, "c": 0.2}, 4)),
    ("K", lambda: Reweighter("ddk", TL, NAT, 0)),
    ("K", lambda: Reweighter("ddk", TL, NAT, 2.0)),
    ("K", lambda: DDKRun("ddk", K=0)),
    ("method", lambda: Reweighter("ddk2", TL, NAT, 4)),
    ("method", lambda: DDKRun("ddk2")),
    ("T", lambda: distillation_loss(Z, Z, Y, 0.2, 0.0)),
    ("T", lambda: distillation_loss(Z, Z, Y, 0.2, -1.0)),
    ("T", lambda: distillation_loss(Z, Z, Y, 0.2, math.inf)),
    ("T", lambda: Distiller(tiny_gpt(), tiny_gpt(d=16), 0.2, 0.0)),
    ("T", lambda: DDKRun("ddk", T=0.0)),
    ("gamma", lambda: distillation_loss(Z, Z, Y, -0.1)),
    ("gamma", lambda: distillation_loss(Z, Z, Y, math.nan)),
    ("gamma", lambda: Distiller(tiny_gpt(), tiny_gpt(d=16), -0.2)),
    ("gamma", lambda: DDKRun("ddk", gamma=-0.2)),
    ("z_t", lambda: distillation_loss(Z, None, Y, 0.2)),
    ("z_t", lambda: distillation_loss(Z, torch.zeros(2, 6), Y, 0.2)),
    ("steps", lambda: DDKRun("ddk", steps=610, K=20)),
    ("teacher", lambda: Distiller(tiny_gpt(), None, 0.2)),
    ("vocab_size", lambda: Distiller(tiny_gpt(vocab=11), tiny_gpt(vocab=13, d=16), 0.2)),
    ("context", lambda: Distiller(tiny_gpt(context=8), tiny_gpt(d=16, context=4), 0.2)),
    ("student_loss", lambda: Reweighter("ddk", TL, NAT, 4).update(0, {"a": 1.0, "b": 2.0})),
    ("student_loss", lambda: Reweighter("ddk", TL, NAT, 4).update(0, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 1.0})),
    ("val_tokens", lambda: evaluate(tiny_gpt(), {"a": np.arange(50) % 11, "x": np.array([], dtype=np.int64)}, 8, 2)),
    ("x", lambda: evaluate(tiny_gpt(), {"x": np.arange(5)}, 8, 2)),  # fewer than context + 1 tokens
    ("x", lambda: DomainSampler({"a": np.arange(50), "x": np.array([], dtype=np.int64)}, 8, 2)),
    ("tokens", lambda: natural_mixture({"a": np.arange(5), "b": np.array([], dtype=np.int64)})),
    ("tokens", lambda: natural_mixture({"a": 10, "b": 0})),
    ("tokens", lambda: natural_mixture({})),
    ("name", lambda: specs("ddk/nope")),
    ("device", lambda: ddk_sweep.sweep("ddk/main", device="tpu")),
    ("steps", lambda: cost.measure(DDKRun("ddk"), 0, 1)),
    ("rounds", lambda: cost.measure(DDKRun("ddk"), 1, 0)),
]


@pytest.mark.parametrize("param,call", BAD, ids=[f"{i}-{p}" for i, (p, _) in enumerate(BAD)])
def test_bad_input_is_refused_naming_the_parameter(param, call):
    with pytest.raises(ValueError, match=names(param)):
        call()


def test_empty_domains_name_the_empty_domain():
    """A domain with no data: evaluation and the sampler say which one (and that it has 0 tokens)."""
    with pytest.raises(ValueError, match=r"'empty'.*\b0 tokens"):
        evaluate(tiny_gpt(), {"empty": np.array([], dtype=np.int64)}, 8, 2)
    with pytest.raises(ValueError, match=r"'empty'.*\b0 tokens"):
        DomainSampler({"a": np.arange(50), "empty": np.array([], dtype=np.int64)}, 8, 2)
    with pytest.raises(ValueError, match=r"\['empty'\]"):
        natural_mixture({"a": np.arange(50), "empty": np.array([], dtype=np.int64)})


def test_natural_mixture_known_answer():
    got = natural_mixture({"a": np.arange(30), "b": 10, "c": np.zeros(60, dtype=np.int64)})
    assert got == pytest.approx({"a": 0.3, "b": 0.1, "c": 0.6})
    assert list(got) == ["a", "b", "c"]


# ==================================================================================================== Distiller
@pytest.fixture
def pair():
    student, teacher = tiny_gpt(d=8, seed=0), tiny_gpt(d=16, seed=1, layers=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 11, (2, 8), generator=g)
    y = torch.randint(0, 11, (2, 8), generator=g)
    return student, teacher, x, y


def test_distiller_in_eval_mode_is_the_student(pair):
    student, teacher, x, y = pair
    d = Distiller(student, teacher, 0.5, 2.0).eval()
    z, loss = d(x, y)
    z_ref, loss_ref = student(x, y)
    assert torch.equal(z, z_ref) and torch.equal(loss, loss_ref)
    none, loss2 = d(x, y, return_logits=False)
    assert none is None and torch.equal(loss2, student(x, y, return_logits=False)[1])
    assert d.teacher_tokens == 0


def test_distiller_with_gamma_zero_never_calls_the_teacher(pair):
    student, teacher, x, y = pair

    def boom(*args):
        raise AssertionError("the teacher was called")

    teacher.register_forward_pre_hook(boom)
    for t in (teacher, None):
        d = Distiller(student, t, 0.0).train()
        _, loss = d(x, y, return_logits=False)
        ce = F.cross_entropy(student(x)[0].reshape(-1, 11), y.reshape(-1)).detach()
        assert float(loss.detach()) == pytest.approx(float(ce), rel=1e-5)
        assert d.last_ce == pytest.approx(float(ce), rel=1e-5) and math.isnan(d.last_kl)
        assert d.teacher_tokens == 0


@pytest.mark.parametrize("gamma,T", [(0.2, 1.0), (0.5, 2.0)])
def test_distiller_loss_is_eq3_on_the_two_models_logits(pair, gamma, T):
    student, teacher, x, y = pair
    d = Distiller(student, teacher, gamma, T).train()
    _, loss = d(x, y, return_logits=False)
    with torch.no_grad():
        want, ce, kl = distillation_loss(student(x)[0], teacher(x)[0], y, gamma, T)
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
    assert d.last_ce == pytest.approx(float(ce), rel=1e-6) and d.last_kl == pytest.approx(float(kl), rel=1e-6)
    assert float(kl) > 0


def test_distiller_keeps_the_teacher_frozen_and_counts_its_tokens(pair):
    student, teacher, x, y = pair
    d = Distiller(student, teacher, 0.2).train()
    assert d.training and d.student.training and not d.teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    d.eval()
    d.train()
    assert not d.teacher.training
    _, loss = d(x, y, return_logits=False)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert d.teacher_tokens == x.numel()
    d(x[:1], y[:1])
    assert d.teacher_tokens == x.numel() + x[:1].numel()
    d.eval()
    d(x, y)  # evaluation reads the student only
    assert d.teacher_tokens == x.numel() + x[:1].numel()


def test_the_optimizer_of_a_distiller_trains_the_student_only(pair):
    from repro.train import TrainConfig, make_optimizer

    student, teacher, _, _ = pair
    opt = make_optimizer(Distiller(student, teacher, 0.2), TrainConfig(max_steps=200))
    got = {id(p) for g in opt.param_groups for p in g["params"]}
    assert got == {id(p) for p in student.parameters()}


# =================================================================================================== Reweighter
S0 = {"a": 1.5, "b": 2.1, "c": 3.9}
S1 = {"a": 1.2, "b": 2.05, "c": 3.5}
S2 = {"c": 3.2, "a": 1.1, "b": 2.2}  # any key order


def ratio_of(s):
    return np.exp(np.array([s[d] for d in "abc"]) - np.array([TL[d] for d in "abc"]))


NAT_V = np.array([0.5, 0.3, 0.2])


def test_reweighter_steps_must_start_at_zero_and_be_multiples_of_k():
    h = Reweighter("ddk", TL, NAT, 4)
    with pytest.raises(ValueError, match=names("step")):
        h.update(4, S0)  # the first call must be step 0
    h.update(0, S0)
    with pytest.raises(ValueError, match=names("step")):
        h.update(0, S0)  # only the first
    for bad in (3, 6, -4, 4.0, True):
        with pytest.raises(ValueError, match=names("step")):
            h.update(bad, S1)
    h.update(4, S1)
    h.update(12, S2)
    assert [e["step"] for e in h.log] == [0, 4, 12]


def test_reweighter_natural_and_uniform_keep_their_mixture():
    for method, want in (("natural", NAT_V), ("uniform", np.full(3, 1 / 3))):
        h = Reweighter(method, TL, NAT, 4)
        np.testing.assert_allclose(h.initial_weights(), want, rtol=1e-15)
        for step, s in ((0, S0), (4, S1), (8, S2)):
            np.testing.assert_allclose(h.update(step, s), want, rtol=1e-15)
        assert total_variation(h.trajectory()) == 0.0
        np.testing.assert_allclose(h.log[1]["ratio"], ratio_of(S1), rtol=1e-12)


def test_reweighter_ddk_follows_eq1_then_eq2():
    h = Reweighter("ddk", TL, NAT, 4, alpha=0.5)
    np.testing.assert_allclose(h.initial_weights(), NAT_V)
    w0 = h.update(0, S0)
    np.testing.assert_allclose(w0, NAT_V, rtol=1e-15)  # interval 0 draws the natural mixture
    r0 = discrepancy_factor(ratio_of(S0))
    np.testing.assert_allclose(h.log[0]["r"], r0, rtol=1e-12)  # ... while r^0 is Eq. (1)
    np.testing.assert_allclose(h.log[0]["ratio"], ratio_of(S0), rtol=1e-12)
    w1 = h.update(4, S1)
    r1 = smooth_update(r0, ratio_of(S1), 0.5)
    np.testing.assert_allclose(w1, r1, rtol=1e-12)
    np.testing.assert_allclose(w1, plain_smooth(r0, ratio_of(S1), 0.5), rtol=1e-12)
    assert not np.allclose(w1, smooth_update(NAT_V, ratio_of(S1), 0.5))  # the history is r^0, not the natural mix
    w2 = h.update(8, S2)
    np.testing.assert_allclose(w2, smooth_update(r1, ratio_of(S2), 0.5), rtol=1e-12)
    np.testing.assert_allclose(h.trajectory(), [NAT_V, r1, w2], rtol=1e-12)
    # alpha is used
    h2 = Reweighter("ddk", TL, NAT, 4, alpha=0.9)
    h2.update(0, S0)
    np.testing.assert_allclose(h2.update(4, S1), smooth_update(r0, ratio_of(S1), 0.9), rtol=1e-12)


def test_reweighter_ddk_nofs_is_eq1_afresh():
    h = Reweighter("ddk-nofs", TL, NAT, 4)
    np.testing.assert_allclose(h.update(0, S0), NAT_V, rtol=1e-15)
    np.testing.assert_allclose(h.update(4, S1), discrepancy_factor(ratio_of(S1)), rtol=1e-12)
    np.testing.assert_allclose(h.update(8, S2), discrepancy_factor(ratio_of(S2)), rtol=1e-12)


def test_reweighter_doremi_starts_from_the_natural_mixture():
    h = Reweighter("doremi", TL, NAT, 4, eta=1.0, eps=1e-3)
    np.testing.assert_allclose(h.update(0, S0), NAT_V, rtol=1e-15)
    loss_t = np.array([TL[d] for d in "abc"])
    w1 = h.update(4, S1)
    np.testing.assert_allclose(w1, doremi_update(NAT_V, [S1[d] for d in "abc"], loss_t, 1.0, 1e-3), rtol=1e-12)
    w2 = h.update(8, S2)
    np.testing.assert_allclose(w2, doremi_update(w1, [S2[d] for d in "abc"], loss_t, 1.0, 1e-3), rtol=1e-12)


def test_reweighter_call_sets_the_samplers_weights():
    rng = np.random.default_rng(0)
    tokens = {d: rng.integers(0, 50, 200) for d in "abc"}
    h = Reweighter("ddk", TL, NAT, 4)
    sampler = DomainSampler(tokens, 8, 4, h.initial_weights(), seed=0)
    state = {"sampler": sampler}
    h(0, S0, state)
    np.testing.assert_allclose(sampler.weights, NAT_V, rtol=1e-12)
    h(4, S1, state)
    np.testing.assert_allclose(sampler.weights, h.log[-1]["weights"], rtol=1e-12)
    assert not np.allclose(sampler.weights, NAT_V)
    x, y, dom = sampler.next_batch(0, 1)
    assert x.shape == (4, 8) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("method", MIXTURES)
def test_every_method_gives_distributions(method):
    h = Reweighter(method, TL, NAT, 2)
    for step, s in ((0, S0), (2, S1), (4, S2)):
        check_weights(h.update(step, s))
        check_weights(h.log[-1]["r"])


# ==================================================================================================== sweep specs
@pytest.mark.parametrize("kw,field", [
    ({"method": "nope"}, "method"), ({"gamma": -0.1}, "gamma"), ({"gamma": True}, "gamma"),
    ({"gamma": math.inf}, "gamma"), ({"method": "kd", "gamma": 0.0}, "gamma"), ({"method": "cpt", "gamma": 0.2}, "gamma"),
    ({"T": 0.0}, "T"), ({"T": -1.0}, "T"), ({"T": math.nan}, "T"), ({"K": 0}, "K"), ({"K": 2.5}, "K"),
    ({"K": True}, "K"), ({"steps": 610}, "steps"), ({"steps": 0}, "steps"), ({"seed": -1}, "seed"),
    ({"seed": 1.0}, "seed"), ({"teacher": "big"}, "teacher"), ({"warmup_steps": 601}, "warmup_steps"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"pretrain_steps": 0}, "pretrain_steps"),
])
def test_bad_ddk_runs_are_refused_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=names(field)):
        DDKRun(**{"method": "ddk", **kw})


@pytest.mark.parametrize("kw,field", [
    ({"t_model": 0}, "t_model"), ({"t_layer": -1}, "t_layer"), ({"t_head": 3}, "t_head"), ({"s_head": 3}, "s_head"),
    ({"t_steps": 0}, "t_steps"), ({"s_model": 1.5}, "s_model"), ({"batch_size": 0}, "batch_size"),
    ({"context": 0}, "context"), ({"val_batches": 0}, "val_batches"), ({"test_batches": True}, "test_batches"),
    ({"t_model": 64, "t_layer": 2}, "t_model"),  # the teacher no larger than the student
])
def test_bad_teacher_runs_are_refused_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=names(field)):
        TeacherRun(**kw)


@pytest.mark.parametrize("cls,kw,field", [
    (TeacherRun, {"t_steps": 20}, "t_warmup"),  # the default t_warmup = 50 > t_steps
    (TeacherRun, {"t_lr": 0.0}, "t_lr"),
    (DDKRun, {"method": "kd", "lr": 0.0}, "lr"),
    (DDKRun, {"method": "kd", "pretrain_lr": -1e-3}, "pretrain_lr"),
])
def test_run_specs_refuse_training_settings_that_cannot_train(cls, kw, field):
    with pytest.raises(ValueError, match=names(field)):
        cls(**kw)


def test_default_and_labels():
    assert DDKRun("kd").gamma == 0.2 and DDKRun("cpt").gamma == 0.0 and DDKRun("ce-ddk").gamma == 0.0
    assert DDKRun("ddk", seed=3).label == "ddk/s3"
    assert DDKRun("ddk", gamma=0.5, T=2.0, K=10, steps=600).label == "ddk/g0.5/T2/K10/s0"
    assert DDKRun("ddk-es").mixture == "uniform" and DDKRun("kd-doremi").mixture == "doremi"


def test_sweep_labels_are_unique_and_main_and_ablation_disjoint():
    main, abl = specs("ddk/main"), specs("ddk/ablation")
    lm, la = [r.label for r in main], [r.label for r in abl]
    assert len(lm) == len(set(lm)) == len(METHODS) * len(ddk_sweep.SEEDS)
    assert len(la) == len(set(la)) == len(ddk_sweep.ABLATION_SEEDS) * sum(map(len, ddk_sweep.ABLATION.values()))
    assert all(r.method == "ddk" for r in abl)
    for knob, values in ddk_sweep.ABLATION.items():  # each ablation run moves one knob off the main DDK run
        assert {getattr(r, knob) for r in abl} >= set(values)
        assert {getattr(r, knob) for r in main if r.method == "ddk"} == {getattr(DDKRun("ddk"), knob)}
    assert not set(lm) & set(la)
    ids = [runs.run_id(r) for r in main + abl]
    assert len(ids) == len(set(ids))
    assert specs("ddk/teacher") == [TeacherRun()]
    assert all(r.steps % r.K == 0 for r in main + abl + specs("ddk/full"))
    assert {r.device for r in [s.teacher for s in specs("ddk/full", "cuda")]} == {"cuda"}


@pytest.mark.parametrize("spec", [TeacherRun(), ddk_sweep.SMOKE_TEACHER, DDKRun("ddk"),
                                  DDKRun("kd-doremi", seed=4, T=2.0, K=10, steps=100, teacher=ddk_sweep.SMOKE_TEACHER),
                                  DDKRun("ce-ddk", seed=1, **ddk_sweep.SMOKE)])
def test_spec_from_json_round_trips(spec):
    back = spec_from_json(runs.spec_json(spec))
    assert back == spec and type(back) is type(spec)
    assert runs.run_id(back) == runs.run_id(spec)


def forward_flops(cfg: GPTConfig) -> int:
    """A forward pass per token: 2 N + 2 n_layer context d_model (attention) + 2 vocab d_model (the output layer)."""
    return 2 * param_count(cfg).non_embedding + 2 * cfg.n_layer * cfg.context * cfg.d_model \
        + 2 * cfg.vocab_size * cfg.d_model


@pytest.mark.parametrize("teacher", [TeacherRun(), ddk_sweep.SMOKE_TEACHER])
def test_run_flops_parts(teacher):
    vocab = 8192
    base = dict(steps=120, K=20, teacher=teacher)
    cpt, kd, ddk = (run_flops(DDKRun(m, **base), vocab) for m in ("cpt", "kd", "ddk"))
    f_s, f_t = forward_flops(teacher.gpt_config("student", vocab)), forward_flops(teacher.gpt_config("teacher", vocab))
    assert 3 * f_s == flops_per_token(teacher.gpt_config("student", vocab), lm_head=True)
    train_tokens = 120 * teacher.batch_size * teacher.context
    val_tokens = len(CORPORA) * teacher.val_batches * teacher.batch_size * teacher.context
    assert cpt == {"student": 3 * f_s * train_tokens, "teacher": 0.0, "reweight": 0.0, "total": 3 * f_s * train_tokens}
    assert kd["teacher"] == train_tokens * f_t and kd["reweight"] == 0.0
    assert kd["student"] == cpt["student"] == ddk["student"]
    # DDK - KD: the student's forward on the validation sets at steps 0, K, ..., steps - K, and one teacher pass
    assert ddk["reweight"] == (120 // 20) * val_tokens * f_s
    assert ddk["teacher"] - kd["teacher"] == val_tokens * f_t
    assert ddk["total"] - kd["total"] == pytest.approx((120 // 20) * val_tokens * f_s + val_tokens * f_t, rel=1e-12)
    for part in (cpt, kd, ddk):
        assert part["total"] == pytest.approx(part["student"] + part["teacher"] + part["reweight"], rel=1e-15)
    # the fixed-mixture DDK-ES costs what KD costs; CE + DDK sampling has the re-weighting but no KL teacher
    assert run_flops(DDKRun("ddk-es", **base), vocab) == kd
    ce_ddk = run_flops(DDKRun("ce-ddk", **base), vocab)
    assert ce_ddk["teacher"] == val_tokens * f_t and ce_ddk["reweight"] == ddk["reweight"]
    assert run_flops(DDKRun("kd", **base), vocab, reweight=True)["reweight"] == ddk["reweight"]


def test_cost_overhead_known_answer():
    times = pd.DataFrame({"round": [0, 0, 0, 1, 1, 1], "method": ["cpt", "kd", "ddk"] * 2,
                          "seconds": [1.0, 2.0, 2.2, 1.0, 4.0, 5.0]})
    np.testing.assert_allclose(cost.overhead(times).to_numpy(), [0.1, 0.25], rtol=1e-12)
    np.testing.assert_allclose(cost.overhead(times, "kd", "cpt").to_numpy(), [1.0, 3.0], rtol=1e-12)


# ================================================================================================== end to end
TINY_TEACHER = dataclasses.replace(ddk_sweep.SMOKE_TEACHER, t_steps=20, t_warmup=5, test_batches=1, batch_size=4,
                                   context=16)
TINY = dict(ddk_sweep.SMOKE, steps=8, pretrain_steps=4, teacher=TINY_TEACHER)
SEEDS3 = (0, 1, 2)


def is_main(spec) -> bool:
    """A run at the main settings of its method (the smoke sweep's K, T = 1, the method's own gamma)."""
    return (spec.gamma, spec.T, spec.K) == (METHODS[spec.method][1], 1.0, TINY["K"])


def seeds_with(sw, **knob) -> set:
    """Seeds of the sweep's DDK runs with ``knob`` at a value, the other two knobs at the main settings."""
    (name, value), = knob.items()
    main = {"gamma": METHODS["ddk"][1], "T": 1.0, "K": TINY["K"]}
    return {s.seed for s in sw.specs if s.method == "ddk" and getattr(s, name) == value
            and all(getattr(s, k) == v for k, v in main.items() if k != name)}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke sweeps (every method and every ablation knob, 3 seeds), trained once into a fresh folder, with no
    model cache (``paths.BUILD`` points into the folder too).

    The smoke profile as shipped (tens of steps of 8 x 32 tokens per run) takes about a minute of CPU, more on a busy
    machine; here its teacher and student train fewer, smaller batches (8 distillation steps, so K = 2, 4 and 8 still
    divide them; 4 x 16 tokens), which keeps every code path and the table's shape at a fraction of the time."""
    folder = tmp_path_factory.mktemp("ddk")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "BUILD", folder / "build")
        mp.setattr(ddk_sweep, "SMOKE_TEACHER", TINY_TEACHER)
        mp.setattr(ddk_sweep, "SMOKE", TINY)
        t_sweep, m_sweep = ddk_sweep.smoke_sweeps(folder, seeds=(0, 1, 2))
        t_table = runs.run_sweep(t_sweep, progress=False, log=lambda s: None)
        m_table = runs.run_sweep(m_sweep, progress=False, log=lambda s: None)
    frame = analysis.load(["ddk-smoke"], folder)
    teacher = analysis.load_teacher("ddk-smoke-teacher", folder)
    return dict(folder=folder, sweep=m_sweep, t_table=t_table, table=m_table, frame=frame, teacher=teacher,
                runs=analysis.summary(frame))


def test_smoke_sweeps_run_every_spec(smoke):
    assert not smoke["t_table"].meta.get("failed") and not smoke["table"].meta.get("failed")
    sw = smoke["sweep"]
    main = [s for s in sw.specs if is_main(s)]
    assert sorted((s.method, s.seed) for s in main) == sorted((m, s) for m in METHODS for s in SEEDS3)
    for knob, value in (("gamma", 0.5), ("T", 2.0), ("K", 2), ("K", 8)):  # the ablation knobs, at least once
        assert seeds_with(sw, **{knob: value}), (knob, value)
    assert smoke["table"].done() == set(sw.ids())
    assert (smoke["folder"] / "build" / "ddk").is_dir()  # the model cache went into the test's folder
    t = smoke["teacher"]
    assert list(t.index) == list(CORPORA)
    assert t["natural"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (t["val_ce"] > 0).all() and (t["params"] > t["student_params"]).all()


def test_smoke_table_rows_follow_the_equations(smoke):
    """The stored rows of one run agree with the hook's rules: ratios from the CEs, DDK's r and weights."""
    from repro.data import vocab_size

    f, teacher = smoke["frame"], smoke["teacher"]
    natural = teacher["natural"].loc[list(CORPORA)].to_numpy()
    np.testing.assert_allclose(f["val_ratio"], np.exp(f["val_ce"] - f["teacher_val_ce"]), rtol=1e-9)
    spec_of = dict(zip(smoke["sweep"].ids(), smoke["sweep"].specs, strict=True))
    vocab = vocab_size()
    for rid, g in f.groupby("run"):
        spec = spec_of[rid]
        assert sorted(g["step"].unique()) == list(range(0, spec.steps + 1, spec.K))
        assert g["flops"].iloc[0] == pytest.approx(run_flops(spec, vocab)["total"], rel=1e-12)
        if spec.method != "ddk" or spec.K != 4:
            continue
        by = {s: x.set_index("domain").loc[list(CORPORA)] for s, x in g.groupby("step")}
        np.testing.assert_allclose(by[0]["weight"], natural, rtol=1e-9)
        np.testing.assert_allclose(by[0]["r"], discrepancy_factor(by[0]["val_ratio"]), rtol=1e-9)
        np.testing.assert_allclose(by[4]["weight"], smooth_update(by[0]["r"].to_numpy(), by[4]["val_ratio"]),
                                   rtol=1e-9)
        assert by[spec.steps]["weight"].isna().all()


def test_summary_has_one_row_per_run(smoke):
    s, sw = smoke["runs"], smoke["sweep"]
    assert len(s) == len(sw.specs) and set(s.index) == set(sw.ids())
    spec_of = dict(zip(sw.ids(), sw.specs, strict=True))
    assert np.isfinite(s[["worst_ratio", "mean_ratio", "mean_ce", "tv"]].to_numpy()).all()
    assert (s["mean_ratio"] > 0).all() and (s["worst_ratio"] >= s["mean_ratio"]).all()
    assert (s["worst_ratio_0"] >= s["mean_ratio_0"]).all()
    fixed = s[s["method"].isin(["cpt", "kd", "ddk-es"])]
    assert len(fixed) == 9 and (fixed["tv"] == 0).all()
    for rid, row in s.iterrows():  # total variation counts from the first update on: it needs two updates
        spec = spec_of[rid]
        if spec.mixture in ("ddk", "ddk-nofs", "doremi") and spec.steps // spec.K >= 3:
            assert row["tv"] > 0, rid
        else:
            assert row["tv"] == 0, rid
    assert (s["method"] == "ddk").sum() >= 3 and (s[s["method"] == "ddk"]["tv"] > 0).any()
    # every run of one seed starts from the same pre-trained student
    for _, g in s.groupby("seed"):
        r0 = g[[f"ratio0_{c}" for c in CORPORA]].to_numpy()
        np.testing.assert_allclose(r0, np.broadcast_to(r0[0], r0.shape), rtol=1e-12)


def test_claim_units(smoke):
    """Every claim but the timing one; the paired claims get the three seeds of the main runs. The smoke ablation
    runs K = 2 and 8 around the main K = 4, so the interior-optimum claim has units too, one per seed that ran all
    three K (it is empty only when the main K is not strictly inside the K values)."""
    s, sw = smoke["runs"], smoke["sweep"]
    units = analysis.claim_units(s)
    assert set(units) == set(analysis.CLAIMS) - {"reweight-overhead"}
    k_seeds = sorted(seeds_with(sw, K=2) & seeds_with(sw, K=8) & seeds_with(sw, K=TINY["K"]))
    assert k_seeds
    for claim, u in units.items():
        assert list(u.columns) == ["seed", "diff"], claim
        assert sorted(u["seed"]) == (k_seeds if claim == "k-interior-optimum" else [0, 1, 2]), claim
        assert np.isfinite(u["diff"]).all(), claim
    d = s[(s["method"] == "kd")].set_index("seed")["worst_ratio"] - \
        s[(s["method"] == "ddk") & (s["K"] == 4) & (s["gamma"] == 0.2) & (s["T"] == 1)].set_index("seed")["worst_ratio"]
    np.testing.assert_allclose(units["ddk-worst-vs-kd"].set_index("seed")["diff"].sort_index(), d.sort_index())
    k = analysis.ablation(s, "K").pivot(index="seed", columns="value", values="metric")
    assert list(k.columns) == [2.0, 4.0, 8.0] and list(k.index) == k_seeds
    np.testing.assert_allclose(units["k-interior-optimum"]["diff"], (k[[2.0, 8.0]].min(axis=1) - k[4.0]).to_numpy())
    # without the shorter interval the main K is an end, and the claim has no units
    no_k2 = s[s["K"] != 2]
    assert len(analysis.claim_units(no_k2)["k-interior-optimum"]) == 0


def test_trajectories_and_gap_and_ablation(smoke):
    f, s, teacher, sw = smoke["frame"], smoke["runs"], smoke["teacher"], smoke["sweep"]
    for m in METHODS:
        w = analysis.trajectories(f, m)
        assert list(w.index) == list(range(0, TINY["steps"], TINY["K"])), m
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9, err_msg=m)
    np.testing.assert_allclose(analysis.trajectories(f, "cpt").to_numpy(),
                               np.tile(teacher["natural"].loc[list(CORPORA)].to_numpy(), (2, 1)), rtol=1e-9)
    np.testing.assert_allclose(analysis.trajectories(f, "ddk-es").to_numpy(), 1 / 7, rtol=1e-12)
    gap = analysis.gap_before(s)
    assert gap.shape == (3, 7) and list(gap.index) == [0, 1, 2] and list(gap.columns) == list(CORPORA)
    assert (gap.to_numpy() > 0).all()
    g = analysis.ablation(s, "gamma")
    g_seeds = sorted(seeds_with(sw, gamma=0.5))  # gamma 0 (ce-ddk) and 0.2 (ddk) ran for every seed
    assert sorted(g["value"].unique()) == [0.0, 0.2, 0.5] and len(g) == 3 * len(g_seeds)
    assert sorted(g["seed"].unique()) == g_seeds
    assert sorted(analysis.ablation(s, "T")["value"].unique()) == [1.0, 2.0]
    assert analysis.base(s) == {"gamma": 0.2, "T": 1.0, "K": 4}
    fr = analysis.final_ratios(s)
    assert list(fr.index) == list(METHODS) and list(fr.columns) == list(CORPORA)


@pytest.mark.parametrize("call,param", [
    (lambda s, f, folder: analysis.ablation(s, "lr"), "knob"),
    (lambda s, f, folder: analysis.paired(s, "ddk", "kd", "nope"), "metric"),
    (lambda s, f, folder: analysis.paired(s, "ddk", "nope"), "method"),
    (lambda s, f, folder: analysis.load("ddk-smoke", folder), "names"),
    (lambda s, f, folder: analysis.load(["missing"], folder), "names"),
    (lambda s, f, folder: analysis.load_teacher("missing", folder), "name"),
    (lambda s, f, folder: analysis.base(s[s["method"] != "kd"]), "runs_"),
])
def test_analysis_refuses_bad_arguments(smoke, call, param):
    with pytest.raises(ValueError, match=names(param)):
        call(smoke["runs"], smoke["frame"], smoke["folder"])


def test_plots_draw(smoke):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, s = smoke["frame"], smoke["runs"]
    try:
        ax = analysis.plot_gap(analysis.gap_before(s))
        assert len(ax.patches) == 7
        axes = analysis.plot_trajectories(f)
        assert len(axes) == 4 and all(len(a.collections) == 7 for a in axes)
        ax = analysis.plot_ratios(s)
        assert len(ax.get_legend().get_texts()) == len(METHODS)
        axes = analysis.plot_ablation(s)
        assert all(len(a.lines) == 1 for a in axes)
        axes = analysis.plot_ratio_curves(f)
        assert all(len(a.lines) == 3 for a in axes)
    finally:
        plt.close("all")


# ============================================================================================== weight cache
def test_cached_weights_loads_on_the_same_key_and_refits_on_another(tmp_path):
    calls = []

    def fit(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.copy_(torch.arange(6.0).reshape(2, 3) + len(calls))
            m.bias.fill_(-len(calls))

    path = tmp_path / "cache" / "w.pt"
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    assert cached_weights(a, {"k": 1, "data": array_sha256(np.arange(4))}, path, fit) is False
    assert len(calls) == 1 and path.exists() and path.with_suffix(".json").exists()
    b = nn.Linear(3, 2)
    assert not torch.equal(a.weight, b.weight)
    assert cached_weights(b, {"data": array_sha256(np.arange(4)), "k": 1}, path, fit) is True  # key order is moot
    assert len(calls) == 1
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    c = nn.Linear(3, 2)
    assert cached_weights(c, {"k": 2, "data": array_sha256(np.arange(4))}, path, fit) is False
    assert len(calls) == 2 and not torch.equal(c.weight, a.weight)
    d = nn.Linear(3, 2)
    assert cached_weights(d, {"k": 2, "data": array_sha256(np.arange(4))}, path, fit) is True
    assert torch.equal(d.weight, c.weight) and len(calls) == 2
    with pytest.raises(TypeError):
        cached_weights(nn.Linear(3, 2), {"k": object()}, tmp_path / "x.pt", fit)


def test_array_sha256_tells_dtype_shape_and_values_apart():
    a = np.arange(12, dtype=np.int32)
    assert array_sha256(a) == array_sha256(a.copy())
    assert array_sha256(a) != array_sha256(a.astype(np.int64))
    assert array_sha256(a) != array_sha256(a.reshape(3, 4))
    assert array_sha256(a) != array_sha256(a[::-1])
    assert array_sha256(a.reshape(3, 4).T) == array_sha256(np.ascontiguousarray(a.reshape(3, 4).T))
