"""Tests of repro.nn.moe: routing against a plain-loop reference, capacity, the three dispatches, the balance
loss, load statistics, MoEGPT's loss and parameter counts, argument checks, and the optimizer's MoE groups."""

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.nn.gpt import GPT, GPTConfig
from repro.nn.moe import (
    DISPATCHES,
    MoE,
    MoEConfig,
    MoEGPT,
    balance_loss,
    capacity,
    load_stats,
    route,
)
from repro.train import TrainConfig, make_optimizer

CFS = [0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0]


def ref_capacity(S: int, E: int, k: int, cf: float) -> int:
    """``ceil(cf k S / E)`` in exact arithmetic (``cf`` read as the decimal it is written as), at least 1."""
    return max(1, math.ceil(Fraction(str(cf)) * k * S / E))


def make_moe(E=4, k=1, routing="topk", cf=1.0, dispatch="sorted", d=8, h=12, bias=True, seed=0,
             router_std=0.5) -> MoE:
    """A small MoE with non-trivial weights (random biases, a router wide enough to spread the tokens)."""
    torch.manual_seed(seed)
    m = MoE(d, MoEConfig(n_expert=E, k=k, routing=routing, capacity_factor=cf, dispatch=dispatch), d_expert=h,
            bias=bias)
    with torch.no_grad():
        m.router.weight.normal_(std=router_std)
        m.w1.normal_(std=0.3)
        m.w2.normal_(std=0.3)
        if bias:
            m.b1.normal_(std=0.1)
            m.b2.normal_(std=0.1)
    return m


def clones(m: MoE) -> dict[str, MoE]:
    """The same layer (same parameters) in each of the three dispatches."""
    out = {}
    for disp in DISPATCHES:
        c = make_moe(m.cfg.n_expert, m.cfg.k, m.cfg.routing, m.cfg.capacity_factor, disp, m.d_model, m.d_expert,
                     m.b1 is not None)
        c.load_state_dict(m.state_dict())
        out[disp] = c
    return out


def expert_out(m: MoE, e: int, x: torch.Tensor) -> torch.Tensor:
    """Expert ``e`` of ``m`` on one token ``x`` ``[d]``, written out."""
    h = x @ m.w1[e] + (m.b1[e, 0] if m.b1 is not None else 0)
    return F.gelu(h) @ m.w2[e] + (m.b2[e, 0] if m.b2 is not None else 0)


# ------------------------------------------------------------------------------------- plain-loop reference
def ref_route(logits: torch.Tensor, k: int, cf: float, routing: str) -> dict:
    """Routing written token by token in Python floats (float64), from the module docstring's rules."""
    L = logits.double().tolist()
    S, E = len(L), len(L[0])
    C = ref_capacity(S, E, k, cf)

    def softmax(row):
        mx = max(row)
        ex = [math.exp(v - mx) for v in row]
        tot = sum(ex)
        return [v / tot for v in ex]

    probs, choice, gate = [], [], []
    for row in L:
        if routing == "topk":
            p = softmax(row)
            order = sorted(range(E), key=lambda i, row=row: (-row[i], i))  # ties: lower index first
            ch = order[:k]
            probs.append(p)
            choice.append(ch)
            gate.append([p[i] for i in ch])
        else:
            m = E // k
            p_all, ch, g = [], [], []
            for grp in range(k):
                sub = row[grp * m:(grp + 1) * m]
                p = softmax(sub)
                best = max(range(m), key=lambda i, sub=sub: (sub[i], -i))  # the first maximum
                p_all += p
                ch.append(grp * m + best)
                g.append(p[best])
            probs.append(p_all)
            choice.append(ch)
            gate.append(g)
    # claim order: all first choices in token order, then all second choices, ...
    count = [0] * E
    position = [[0] * k for _ in range(S)]
    for j in range(k):
        for s in range(S):
            e = choice[s][j]
            position[s][j] = count[e]
            count[e] += 1
    kept = [[position[s][j] < C for j in range(k)] for s in range(S)]
    weight = []
    for s in range(S):
        w = [gate[s][j] if kept[s][j] else 0.0 for j in range(k)]
        if routing == "topk" and k > 1:
            tot = sum(w)
            w = [v / tot if tot > 0 else 0.0 for v in w]
        weight.append(w)
    # Switch's balance loss, per group, summed
    groups = k if routing == "prototypes" else 1
    m = E // groups
    f = [0.0] * E
    for s in range(S):
        for e in (choice[s] if routing == "prototypes" else choice[s][:1]):
            f[e] += 1 / S
    P = [sum(probs[s][i] for s in range(S)) / S for i in range(E)]
    aux = m * sum(f[i] * P[i] for i in range(E))
    return dict(C=C, expert=choice, position=position, kept=kept, weight=weight, probs=probs, aux=aux)


def routing_cases():
    return [("topk", 1), ("topk", 2), ("topk", 4), ("prototypes", 2), ("prototypes", 4)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), S=st.integers(1, 14), E=st.sampled_from([4, 6, 8]),
       case=st.sampled_from(routing_cases()), cf=st.sampled_from(CFS), grid=st.booleans())
def test_route_matches_plain_loop_reference(seed, S, E, case, cf, grid):
    routing, k = case
    if routing == "prototypes" and E % k:
        E = 8
    g = torch.Generator().manual_seed(seed)
    if grid:  # a coarse grid: many exact ties
        logits = torch.randint(-2, 3, (S, E), generator=g).float() * 0.5
    else:
        logits = torch.randn(S, E, generator=g) * 2
    r = route(logits, k, cf, routing)
    ref = ref_route(logits, k, cf, routing)
    assert r.capacity == ref["C"]
    assert r.groups == (k if routing == "prototypes" else 1)
    assert r.expert.tolist() == ref["expert"]
    assert r.position.tolist() == ref["position"]
    assert r.kept.tolist() == ref["kept"]
    torch.testing.assert_close(r.weight.double(), torch.tensor(ref["weight"], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r.probs.double(), torch.tensor(ref["probs"], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    assert r.aux.item() == pytest.approx(ref["aux"], rel=1e-5)


def test_route_ties_go_to_lower_index_and_first_choices_claim_first():
    # 3 tokens, 4 experts, all logits equal: every token picks experts 0 and 1 (top-2), in that order
    r = route(torch.zeros(3, 4), k=2, capacity_factor=1.0)  # C = ceil(2 * 3 / 4) = 2
    assert r.capacity == 2
    assert r.expert.tolist() == [[0, 1]] * 3
    assert r.position.tolist() == [[0, 0], [1, 1], [2, 2]]
    assert r.kept.tolist() == [[True, True], [True, True], [False, False]]
    torch.testing.assert_close(r.weight, torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]]))
    # second choices queue after every first choice: token 0's second choice (expert 1) comes after
    # tokens 1 and 2's first choices of expert 1
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    r = route(logits, k=2, capacity_factor=1.0)
    assert r.expert[:, 0].tolist() == [0, 1, 1]
    assert r.expert[0, 1].item() == 1 and r.position[0, 1].item() == 2 and not r.kept[0, 1]
    assert r.weight[0].tolist() == [1.0, 0.0]  # renormalised over the kept choice
    # prototypes: the first maximum in each group
    r = route(torch.zeros(2, 6), k=2, capacity_factor=2.0, routing="prototypes")
    assert r.expert.tolist() == [[0, 3], [0, 3]]
    torch.testing.assert_close(r.weight, torch.full((2, 2), 1 / 3))


def test_route_weights_k1_not_renormalised_and_prototypes_not_renormalised():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    r = route(logits, k=1, capacity_factor=1.0)
    assert r.weight.item() == pytest.approx(logits.softmax(-1)[0, 0].item())
    r = route(logits, k=2, capacity_factor=4.0, routing="prototypes")
    p0, p1 = logits[0, :2].softmax(-1), logits[0, 2:].softmax(-1)
    torch.testing.assert_close(r.weight[0], torch.stack([p0.max(), p1.max()]))
    assert r.weight.sum().item() > 1.2  # each in (1/2, 1], not renormalised to sum to 1


# ----------------------------------------------------------------------------------------------- capacity
@pytest.mark.parametrize("S,E,k,cf,C", [(1024, 16, 1, 1.0, 64), (1024, 16, 2, 1.0, 128), (1024, 16, 1, 2.0, 128),
                                        (1024, 16, 1, 1.25, 80), (10, 4, 1, 1.0, 3), (3, 8, 1, 0.1, 1),
                                        (10, 1, 1, 0.7, 7), (12, 8, 2, 0.25, 1), (100, 3, 1, 1.0, 34)])
def test_capacity_examples(S, E, k, cf, C):
    assert capacity(S, E, k, cf) == C == ref_capacity(S, E, k, cf)


@settings(max_examples=60, deadline=None)
@given(S=st.integers(1, 5000), E=st.integers(1, 64), data=st.data())
def test_capacity_is_ceil(S, E, data):
    k = data.draw(st.integers(1, E))
    cf = data.draw(st.sampled_from(CFS + [0.05, 0.3, 0.7, 1.1, 4.0]))
    assert capacity(S, E, k, cf) == ref_capacity(S, E, k, cf)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), S=st.integers(1, 40), E=st.integers(1, 12), data=st.data())
def test_kept_per_expert_is_min_of_load_and_capacity(seed, S, E, data):
    routing = data.draw(st.sampled_from(["topk", "prototypes"]))
    if routing == "topk":
        k = data.draw(st.integers(1, min(E, 4)))
    else:
        k = data.draw(st.sampled_from([d for d in range(1, E + 1) if E % d == 0]))
    cf = data.draw(st.sampled_from(CFS))
    skew = data.draw(st.floats(0, 6))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(S, E, generator=g)
    logits[:, 0] += skew  # a popular expert
    r = route(logits, k, cf, routing)
    C = r.capacity
    assert C == ref_capacity(S, E, k, cf)
    load = torch.bincount(r.expert.reshape(-1), minlength=E)
    kept = torch.bincount(r.expert[r.kept], minlength=E)
    assert int(kept.max()) <= C
    assert torch.equal(kept, load.clamp(max=C))
    assert torch.equal(r.kept, r.position < C)
    # each expert's queue places are 0 .. load-1, once each
    for e in range(E):
        assert sorted(r.position[r.expert == e].tolist()) == list(range(int(load[e])))
    # a token's choices are distinct experts; dropped choices weigh 0
    assert all(len(set(row)) == k for row in r.expert.tolist())
    assert torch.all(r.weight[~r.kept] == 0)
    assert torch.all(r.weight[r.kept] > 0)


# ------------------------------------------------------------------------------------------ the dispatches
@pytest.mark.parametrize("E", [4, 8])
@pytest.mark.parametrize("cf", [0.25, 1.0, 2.0])
@pytest.mark.parametrize("routing,k", routing_cases())
def test_dispatches_agree_outputs_gradients_and_drops(routing, k, cf, E):
    base = make_moe(E, k, routing, cf, seed=E + k)
    mods = clones(base)
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(2, 6, 8, generator=g)  # S = 12 tokens in one routing group
    gy = torch.randn(2, 6, 8, generator=g)
    res = {}
    for disp, m in mods.items():
        x = x0.clone().requires_grad_(True)
        y = m(x)
        (y * gy).sum().backward()
        grads = {"x": x.grad, "w1": m.w1.grad, "w2": m.w2.grad, "b1": m.b1.grad, "b2": m.b2.grad,
                 "router": m.router.weight.grad}
        res[disp] = (y.detach(), grads, m.routing)
    y_ref, g_ref, r_ref = res["loop"]
    dropped = ~r_ref.kept.any(dim=1)  # tokens with every choice dropped
    if cf == 0.25 and k == 1:
        assert dropped.any()
    assert g_ref["b2"].abs().sum() > 0
    # the router learns through the combine weights, except with prototype groups of one expert (weight 1)
    assert (g_ref["router"].abs().sum() > 0) == (not (routing == "prototypes" and k == E))
    for disp, (y, grads, r) in res.items():
        for f in ("expert", "position", "kept", "weight"):
            assert torch.equal(getattr(r, f), getattr(r_ref, f)), (disp, f)
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
        for name, gr in grads.items():
            torch.testing.assert_close(gr, g_ref[name], rtol=1e-4, atol=1e-5, msg=f"{disp} grad {name}")
        flat_y, flat_gx = y.reshape(-1, 8), grads["x"].reshape(-1, 8)
        assert torch.all(flat_y[dropped] == 0), disp
        assert torch.all(flat_gx[dropped] == 0), disp
        assert torch.all(flat_y[~dropped].abs().sum(dim=1) > 0), disp


@pytest.mark.parametrize("dispatch", DISPATCHES)
def test_dispatch_without_bias_matches_loop(dispatch):
    m = make_moe(8, 2, "topk", 1.0, bias=False, seed=3)
    ref = clones(m)
    x = torch.randn(3, 5, 8)
    assert m.b1 is None and m.b2 is None
    torch.testing.assert_close(ref[dispatch](x), ref["loop"](x), rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), B=st.integers(1, 3), T=st.integers(1, 7), data=st.data())
def test_moe_matches_per_token_reference_with_empty_experts(seed, B, T, data):
    E = data.draw(st.sampled_from([2, 4, 6, 8]))
    routing = data.draw(st.sampled_from(["topk", "prototypes"]))
    k = data.draw(st.sampled_from([d for d in (1, 2, 3, 4) if d <= E and (routing == "topk" or E % d == 0)]))
    cf = data.draw(st.sampled_from(CFS))
    m_per = E // k if routing == "prototypes" else E
    # dead experts: never chosen (each prototype group keeps at least one live expert; top-k keeps k)
    if routing == "prototypes":
        dead = [e for e in range(E) if e % m_per != 0 and data.draw(st.booleans())]
    else:
        dead = [e for e in range(E) if data.draw(st.booleans())][:E - k]
    d = 6
    base = make_moe(E, k, routing, cf, d=d, h=5, seed=seed % 1000)
    with torch.no_grad():  # x[..., 0] = 1 and a large negative router weight on it switches an expert off
        base.router.weight[dead, 0] = -100.0
    mods = clones(base)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, d, generator=g)
    x[..., 0] = 1.0
    outs = {}
    for disp, m in mods.items():
        m.train()
        with torch.no_grad():
            outs[disp] = m(x)
        assert m.forwards == 1
        assert int(m.load_count.sum()) == B * T * k
        assert all(int(m.load_count[e]) == 0 for e in dead)
    r = mods["sorted"].routing
    flat = x.reshape(-1, d)
    ref = torch.zeros_like(flat)
    with torch.no_grad():
        for s in range(flat.shape[0]):
            for j in range(k):
                if r.kept[s, j]:
                    e = int(r.expert[s, j])
                    ref[s] += r.weight[s, j] * expert_out(base, e, flat[s])
    for disp, y in outs.items():
        assert y.shape == x.shape
        torch.testing.assert_close(y.reshape(-1, d), ref, rtol=1e-4, atol=1e-5, msg=disp)
        assert torch.all(y.reshape(-1, d)[~r.kept.any(dim=1)] == 0)


@pytest.mark.parametrize("dispatch", DISPATCHES)
@pytest.mark.parametrize("routing,k,first", [("topk", 1, [0]), ("topk", 2, [0, 1]), ("prototypes", 2, [0, 2])])
def test_every_token_on_the_same_expert_keeps_exactly_capacity(dispatch, routing, k, first):
    # a zero router gives every token equal logits: ties go to the lowest experts
    m = make_moe(4, k, routing, 1.0, dispatch, seed=1)
    with torch.no_grad():
        m.router.weight.zero_()
    x = torch.randn(2, 5, 8)  # S = 10, C = ceil(k * 10 / 4)
    y = m(x).reshape(-1, 8)
    r = m.routing
    C = capacity(10, 4, k, 1.0)
    assert r.capacity == C
    assert r.expert.tolist() == [first] * 10
    assert r.kept.tolist() == [[s < C] * k for s in range(10)]
    assert torch.all(y[C:] == 0)
    assert torch.all(y[:C].abs().sum(dim=1) > 0)
    # k = 1: p = 1/4 (Switch, not renormalised); top-2: renormalised to 1/2 each; prototypes: 1/2 in a group of 2
    w = 1 / 4 if k == 1 else 1 / 2
    torch.testing.assert_close(r.weight[:C], torch.full((C, k), w))


@settings(max_examples=40, deadline=None)
@given(S=st.integers(1, 50), E=st.integers(1, 10), cf=st.sampled_from(CFS), data=st.data())
def test_one_dominant_expert_keeps_the_first_C_tokens(S, E, cf, data):
    e = data.draw(st.integers(0, E - 1))
    logits = torch.randn(S, E)
    logits[:, e] += 100.0
    r = route(logits, 1, cf)
    C = ref_capacity(S, E, 1, cf)
    assert r.expert[:, 0].tolist() == [e] * S
    assert r.kept[:, 0].tolist() == [s < C for s in range(S)]
    assert int(r.kept.sum()) == min(S, C)


# ------------------------------------------------------------------------------------------- balance loss
@pytest.mark.parametrize("E", [1, 2, 4, 8])
def test_balance_loss_uniform_is_one_and_collapsed_is_E(E):
    S = 3 * E
    probs = torch.full((S, E), 1 / E)
    first = (torch.arange(S) % E)[:, None]
    assert balance_loss(probs, first).item() == pytest.approx(1.0)
    probs = torch.zeros(S, E)
    probs[:, 0] = 1.0
    assert balance_loss(probs, torch.zeros(S, 1, dtype=torch.long)).item() == pytest.approx(E)
    # route on logits that send every token to expert 0 with probability ~1
    logits = torch.zeros(S, E)
    logits[:, 0] = 50.0
    assert route(logits, 1).aux.item() == pytest.approx(E, rel=1e-5)


def test_balance_loss_prototypes_sums_over_groups():
    S, E, k = 8, 8, 2
    m = E // k
    probs = torch.full((S, E), 1 / m)
    first = torch.stack([torch.arange(S) % m, m + torch.arange(S) % m], dim=1)
    assert balance_loss(probs, first, groups=k).item() == pytest.approx(k * 1.0)
    # group 0 collapsed onto expert 0, group 1 uniform: m + 1
    probs[:, :m] = 0
    probs[:, 0] = 1
    first[:, 0] = 0
    assert balance_loss(probs, first, groups=k).item() == pytest.approx(m + 1.0)
    # route gives the same: zero logits, collapsed first choices (ties), uniform probs: 1 per group
    r = route(torch.zeros(S, E), k, 4.0, "prototypes")
    assert r.aux.item() == pytest.approx(k * 1.0)


def test_balance_loss_gradient_flows_to_router_logits():
    g = torch.Generator().manual_seed(0)
    for routing, k in [("topk", 1), ("topk", 2), ("prototypes", 2)]:
        logits = torch.randn(10, 4, generator=g, requires_grad=True)
        r = route(logits, k, 1.0, routing)
        r.aux.backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        # the gradient is that of m * sum f_i P_i with f held fixed
        lg = logits.detach().clone().requires_grad_(True)
        groups = k if routing == "prototypes" else 1
        p = lg.view(10, groups, -1).softmax(-1).reshape(10, 4)
        first = r.expert if routing == "prototypes" else r.expert[:, :1]
        f = torch.bincount(first.reshape(-1), minlength=4).float() / 10
        ((4 // groups) * (f * p.mean(0)).sum()).backward()
        torch.testing.assert_close(logits.grad, lg.grad)


# -------------------------------------------------------------------------------------------- load stats
def test_load_stats_hand_computed():
    st_ = load_stats(torch.tensor([4, 2, 2, 0]), torch.tensor([1, 0, 0, 0]))
    assert st_.cv.tolist() == pytest.approx([math.sqrt(2) / 2])
    assert st_.max_mean.tolist() == pytest.approx([2.0])
    assert st_.entropy.tolist() == pytest.approx([0.75])  # (0.5 ln 2 + 2 * 0.25 ln 4) / ln 4
    assert st_.dropped.tolist() == pytest.approx([0.125])
    assert st_.dropped_share == pytest.approx(0.125)
    assert st_.summary() == pytest.approx({"cv": math.sqrt(2) / 2, "max_mean": 2.0, "entropy": 0.75,
                                           "dropped": 0.125})
    assert st_.load.tolist() == [4, 2, 2, 0]


def test_load_stats_uniform_one_expert_and_groups():
    u = load_stats(torch.tensor([5, 5, 5, 5]), torch.zeros(4, dtype=torch.long))
    assert u.entropy.item() == pytest.approx(1.0) and u.cv.item() == pytest.approx(0.0)
    assert u.max_mean.item() == pytest.approx(1.0) and u.dropped_share == 0.0
    one = load_stats(torch.tensor([0, 9, 0, 0]), torch.tensor([0, 4, 0, 0]))
    assert one.entropy.item() == pytest.approx(0.0, abs=1e-12)
    assert one.max_mean.item() == pytest.approx(4.0) and one.cv.item() == pytest.approx(math.sqrt(3))
    assert one.dropped_share == pytest.approx(4 / 9)
    grp = load_stats(torch.tensor([4, 2, 2, 0, 3, 3, 3, 3]), torch.tensor([1, 0, 0, 0, 0, 0, 0, 3]), groups=2)
    assert grp.cv.tolist() == pytest.approx([math.sqrt(2) / 2, 0.0])
    assert grp.max_mean.tolist() == pytest.approx([2.0, 1.0])
    assert grp.entropy.tolist() == pytest.approx([0.75, 1.0])
    assert grp.dropped.tolist() == pytest.approx([0.125, 0.25])
    assert grp.dropped_share == pytest.approx(4 / 20)
    assert grp.summary()["entropy"] == pytest.approx(0.875)
    with pytest.raises(ValueError, match="groups"):
        load_stats(torch.ones(6), torch.zeros(6), groups=4)
    with pytest.raises(ValueError, match="dropped"):
        load_stats(torch.ones(6), torch.zeros(5))


def test_moe_stats_count_training_forwards_only():
    m = make_moe(4, 2, "topk", 1.0, seed=2)
    with pytest.raises(RuntimeError):
        m.stats()
    x1, x2 = torch.randn(10, 8), torch.randn(3, 4, 8)
    m.eval()
    m(x1)
    assert m.forwards == 0 and int(m.load_count.sum()) == 0
    with pytest.raises(RuntimeError):
        m.stats()
    m.train()
    m(x1)
    r1 = m.routing
    m(x2)
    r2 = m.routing
    m.eval()
    m(x2)  # not counted
    assert m.forwards == 2
    per = []
    load, drop = torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)
    for r in (r1, r2):
        ld = torch.bincount(r.expert.reshape(-1), minlength=4)
        dr = torch.bincount(r.expert[~r.kept], minlength=4)
        per.append(load_stats(ld, dr))
        load += ld
        drop += dr
    s = m.stats()
    assert torch.equal(s.load, load) and int(load.sum()) == (10 + 12) * 2
    assert s.dropped_share == pytest.approx(float(drop.sum() / load.sum()))
    assert s.cv.item() == pytest.approx((per[0].cv + per[1].cv).item() / 2)
    assert s.entropy.item() == pytest.approx((per[0].entropy + per[1].entropy).item() / 2)
    assert s.max_mean.item() == pytest.approx((per[0].max_mean + per[1].max_mean).item() / 2)
    m.reset_stats()
    assert m.forwards == 0 and int(m.load_count.sum()) == 0 and int(m.dropped_count.sum()) == 0
    assert float(m.shape_sum.abs().sum()) == 0.0
    with pytest.raises(RuntimeError):
        m.stats()


# ------------------------------------------------------------------------------------------------- MoEGPT
GCFG = dict(vocab_size=40, context=8, n_layer=4, n_head=2, d_model=16)


def moegpt(seed=0, **kw) -> MoEGPT:
    torch.manual_seed(seed)
    return MoEGPT(GPTConfig(**GCFG), MoEConfig(**{"n_expert": 4, "k": 1, "every": 2, **kw}))


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 40, (3, 8), generator=g), torch.randint(0, 40, (3, 8), generator=g)


def test_moegpt_replaces_every_second_mlp():
    m = moegpt()
    assert [isinstance(b.mlp, MoE) for b in m.blocks] == [False, True, False, True]
    assert m.moe_layers() == [m.blocks[1].mlp, m.blocks[3].mlp]
    m3 = MoEGPT(GPTConfig(**{**GCFG, "n_layer": 3}), MoEConfig(n_expert=4, every=3))
    assert [isinstance(b.mlp, MoE) for b in m3.blocks] == [False, False, True]
    m1 = MoEGPT(GPTConfig(**GCFG), MoEConfig(n_expert=4, every=1))
    assert len(m1.moe_layers()) == 4


def test_moegpt_loss_is_ce_plus_balance_in_training_only():
    m = moegpt(balance_coef=0.5).train()
    idx, tgt = batch()
    logits, loss = m(idx, tgt)
    ce = F.cross_entropy(logits.reshape(-1, 40), tgt.reshape(-1))
    aux = torch.stack([layer.aux for layer in m.moe_layers()]).sum()
    assert aux.item() > 1.0  # two layers, each at least ~1
    torch.testing.assert_close(loss, ce + 0.5 * aux)
    torch.testing.assert_close(m.last_ce, ce.detach())
    torch.testing.assert_close(m.last_aux, aux.detach())
    torch.testing.assert_close(loss, m.last_ce + 0.5 * m.last_aux)
    assert not m.last_ce.requires_grad and not m.last_aux.requires_grad
    loss.backward()
    assert all(layer.router.weight.grad.abs().sum() > 0 for layer in m.moe_layers())
    # the fused-CE path adds the same balance term
    _, loss2 = m(idx, tgt, return_logits=False)
    torch.testing.assert_close(loss2, loss.detach(), rtol=1e-5, atol=1e-5)
    # eval: the CE alone (no dropout, so the same CE)
    m.eval()
    logits_e, loss_e = m(idx, tgt)
    torch.testing.assert_close(loss_e, F.cross_entropy(logits_e.reshape(-1, 40), tgt.reshape(-1)))
    torch.testing.assert_close(loss_e.detach(), ce.detach())
    # without targets no loss in either mode
    assert m(idx)[1] is None and m.train()(idx)[1] is None


def test_moegpt_balance_coef_zero_leaves_ce():
    m = moegpt(balance_coef=0.0).train()
    idx, tgt = batch(1)
    logits, loss = m(idx, tgt)
    assert loss.item() == F.cross_entropy(logits.reshape(-1, 40), tgt.reshape(-1)).item()
    assert loss.item() == m.last_ce.item()
    assert m.last_aux.item() > 0


def test_moegpt_stats_only_in_training():
    m = moegpt()
    idx, tgt = batch()
    m.eval()
    m(idx, tgt)
    assert all(layer.forwards == 0 for layer in m.moe_layers())
    m.train()
    m(idx, tgt)
    assert all(layer.forwards == 1 and int(layer.load_count.sum()) == 24 for layer in m.moe_layers())


@pytest.mark.parametrize("bias", [True, False])
def test_moegpt_active_params(bias):
    cfg = GPTConfig(**GCFG, bias=bias)
    d, f = cfg.d_model, cfg.d_ff
    dense = GPT(cfg).num_params()
    top1 = MoEGPT(cfg, MoEConfig(n_expert=4, k=1))
    assert top1.active_params() == dense + 2 * 4 * d  # the dense model plus two routers
    expert = 2 * d * f + (f + d if bias else 0)
    assert top1.moe_layers()[0].expert_params() == expert
    assert top1.num_params() == dense + 2 * (4 * d + 3 * expert)  # all experts counted
    top2 = MoEGPT(cfg, MoEConfig(n_expert=4, k=2))
    assert top2.active_params() - top1.active_params() == 2 * expert
    proto = MoEGPT(cfg, MoEConfig(n_expert=4, k=2, routing="prototypes"))
    assert proto.active_params() == top2.active_params()
    wide = MoEGPT(cfg, MoEConfig(n_expert=4, k=1, d_expert=2 * f))
    assert wide.moe_layers()[0].d_expert == 2 * f
    wide_expert = 2 * d * 2 * f + (2 * f + d if bias else 0)
    assert wide.active_params() == dense + 2 * 4 * d + 2 * (wide_expert - expert)


# -------------------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("kw,match", [
    (dict(n_expert=4, k=5), r"\bk\b"),
    (dict(n_expert=4, k=0), r"\bk\b"),
    (dict(n_expert=0), "n_expert"),
    (dict(n_expert=6, k=4, routing="prototypes"), "n_expert"),
    (dict(capacity_factor=0.0), "capacity_factor"),
    (dict(capacity_factor=-1.0), "capacity_factor"),
    (dict(capacity_factor=float("nan")), "capacity_factor"),
    (dict(capacity_factor=float("inf")), "capacity_factor"),
    (dict(balance_coef=-0.01), "balance_coef"),
    (dict(balance_coef=float("nan")), "balance_coef"),
    (dict(routing="hash"), "routing"),
    (dict(dispatch="scatter"), "dispatch"),
    (dict(every=0), "every"),
    (dict(d_expert=0), "d_expert"),
])
def test_moe_config_refuses_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        MoEConfig(**kw)


def test_route_capacity_and_layers_refuse_bad_input():
    logits = torch.randn(6, 4)
    with pytest.raises(ValueError, match=r"\bk\b"):
        route(logits, 5)
    with pytest.raises(ValueError, match="n_expert"):
        route(torch.randn(6, 6), 4, routing="prototypes")
    with pytest.raises(ValueError, match="capacity_factor"):
        route(logits, 1, float("nan"))
    with pytest.raises(ValueError, match="capacity_factor"):
        route(logits, 1, 0)
    with pytest.raises(ValueError, match="routing"):
        route(logits, 1, routing="random")
    with pytest.raises(ValueError, match="logits"):
        route(torch.randn(4), 1)
    with pytest.raises(ValueError, match="logits"):
        route(torch.randn(0, 4), 1)
    with pytest.raises(ValueError, match=r"\bS\b"):
        capacity(0, 4, 1, 1.0)
    with pytest.raises(ValueError, match="capacity_factor"):
        capacity(8, 4, 1, -0.5)
    with pytest.raises(ValueError, match=r"\bk\b"):
        capacity(8, 4, 5, 1.0)
    m = make_moe(4, 1, d=8)
    with pytest.raises(ValueError, match="hidden size") as ei:
        m(torch.randn(3, 7))
    assert "d_model" in str(ei.value)
    with pytest.raises(ValueError, match="d_model"):
        MoE(0, MoEConfig())
    with pytest.raises(TypeError):
        MoE(8, {"n_expert": 4})
    with pytest.raises(ValueError, match="every"):
        MoEGPT(GPTConfig(**GCFG), MoEConfig(n_expert=4, every=5))
    with pytest.raises(TypeError):
        MoEGPT(GPTConfig(**GCFG), {"n_expert": 4})


# ------------------------------------------------------------------------------------------------ optimizer
def test_make_optimizer_does_not_decay_moe_biases():
    m = moegpt()
    cfg = TrainConfig()
    opt = make_optimizer(m, cfg)
    decay_of = {}
    for grp in opt.param_groups:
        for p in grp["params"]:
            assert id(p) not in decay_of  # each parameter in one group
            decay_of[id(p)] = grp["weight_decay"]
    assert len(decay_of) == len(list(m.parameters()))
    for layer in m.moe_layers():
        assert layer.b1.dim() == 3 and layer.b2.dim() == 3
        assert decay_of[id(layer.b1)] == 0.0 and decay_of[id(layer.b2)] == 0.0
        for p in (layer.w1, layer.w2, layer.router.weight):
            assert decay_of[id(p)] == cfg.weight_decay > 0
    assert decay_of[id(m.blocks[0].mlp.fc.bias)] == 0.0
    assert decay_of[id(m.blocks[0].mlp.fc.weight)] == cfg.weight_decay
    assert decay_of[id(m.ln_f.weight)] == 0.0


# ---------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("routing,k", [("topk", 2), ("prototypes", 2)])
def test_sorted_dispatch_is_deterministic(routing, k):
    def run():
        m = make_moe(8, k, routing, 0.5, "sorted", seed=11)
        x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(5), requires_grad=True)
        y = m(x)
        y.square().sum().backward()
        return y.detach(), x.grad, m.w1.grad, m.router.weight.grad

    a, b = run(), run()
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)


# ------------------------------------------------------------------------------------------------ causality, eval
def _later_token_changes_earlier_outputs(routing: str, k: int, drop: bool, cf: float = 1.0) -> bool:
    """Whether changing only the last token of the last sequence changes an earlier position of that sequence (the
    sequences are one routing group, batch-major: a token's own sequence's past and the earlier sequences come
    before it in the queue)."""
    torch.manual_seed(0)
    layer = MoE(8, MoEConfig(n_expert=4, k=k, routing=routing, capacity_factor=cf), 16).eval()
    layer.drop_at_eval = drop
    changed = False
    for _ in range(50):
        x = torch.randn(3, 16, 8)
        y = x.clone()
        y[-1, -1] = torch.randn(8) * 3
        with torch.no_grad():
            changed |= not torch.equal(layer(x)[-1, :-1], layer(y)[-1, :-1])
    return changed


@pytest.mark.parametrize("routing,k", [("topk", 1), ("prototypes", 2), ("prototypes", 4)])
@pytest.mark.parametrize("cf", [0.5, 1.0])
def test_token_order_claims_keep_earlier_outputs_causal(routing, k, cf):
    assert not _later_token_changes_earlier_outputs(routing, k, drop=True, cf=cf)


def test_first_choices_first_makes_top2_drops_depend_on_later_tokens_unless_nothing_is_dropped():
    """GShard's order (every first choice before any second) is documented as not causal; without capacity it is."""
    assert _later_token_changes_earlier_outputs("topk", 2, drop=True)
    assert not _later_token_changes_earlier_outputs("topk", 2, drop=False)


def test_eval_without_capacity_drops_nothing_and_counts_eval_drops():
    torch.manual_seed(1)
    layer = MoE(8, MoEConfig(n_expert=4, k=1, capacity_factor=0.25), 16).eval()
    x = torch.randn(64, 8)
    layer(x)
    assert layer.eval_choices == 64 and layer.eval_dropped > 0 and layer.forwards == 0
    layer.reset_stats()
    layer.drop_at_eval = False
    layer(x)
    assert layer.routing.capacity == 64 and layer.eval_dropped == 0 and bool(layer.routing.kept.all())
    layer.train()  # training always applies the configured capacity
    layer(x)
    assert layer.routing.capacity == capacity(64, 4, 1, 0.25)
