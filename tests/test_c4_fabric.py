"""C4P flow-level simulation (repro.c4.fabric, repro.c4.planning): max-min rates, König planning, ECMP
hashing, busbw, link failure, bad input, and a 1,024-GPU cluster."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.c4.fabric import (
    LeafSpine,
    Paths,
    allreduce_time,
    bus_bandwidth,
    connection_rates,
    draw_failed_links,
    job_busbw,
    max_min_rates,
    place_job,
    qp_links,
    ring_connections,
)
from repro.c4.planning import (
    POLICIES,
    edge_colouring,
    measure_cost,
    plan_spines,
    route,
    route_balanced,
    route_ecmp,
    route_planned,
    run_seeds,
    simulate,
)

SMALL = LeafSpine(hosts=16, leaves=4, spines=4, nics_per_host=2)


def rates_of(topo, conns, paths, failed=(), steering=True):
    qp, link = qp_links(topo, conns, paths)
    rate = max_min_rates(qp, link, topo.capacity(failed), len(paths))
    return rate, connection_rates(paths, rate, len(conns), steering=steering)


def leaf_spine_loads(topo, conns, paths, tenant=None):
    """(P, R, L, S) QPs on each leaf->spine link and (P, R, S, L) on each spine->leaf link."""
    keep = np.ones(len(paths), bool) if tenant is None else conns.tenant[paths.conn] == tenant
    c = paths.conn[keep]
    p, s, r = paths.port[keep], paths.spine[keep], conns.rail[c]
    lu, lv = topo.leaf_of(conns.src[c]), topo.leaf_of(conns.dst[c])
    x = s >= 0
    shape = (2, topo.nics_per_host, topo.leaves, topo.spines)
    up, down = np.zeros(shape, int), np.zeros(shape, int)
    np.add.at(up, (p[x], r[x], lu[x], s[x]), 1)
    np.add.at(down, (p[x], r[x], lv[x], s[x]), 1)
    return up, down


# --- max-min fairness ----------------------------------------------------------------------------
def test_max_min_known_answers():
    # two flows on one link: half each
    assert max_min_rates(np.array([0, 1]), np.array([0, 0]), np.array([10.0]), 2) == pytest.approx([5, 5])
    # flow 0 is held to 2 by link 1, so flow 1 gets the rest of link 0
    r = max_min_rates(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([10.0, 2.0]), 2)
    assert r == pytest.approx([2, 8])
    # the classic chain: a long flow over two links, one short flow on each
    r = max_min_rates(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 1]), np.array([1.0, 1.0]), 3)
    assert r == pytest.approx([0.5, 0.5, 0.5])
    # three flows, one link of 3 and one of 10: 1, 1, and the lone flow on the big link takes 9
    r = max_min_rates(np.array([0, 1, 2, 2]), np.array([0, 0, 0, 1]), np.array([3.0, 10.0]), 3)
    assert r == pytest.approx([1, 1, 1])


@st.composite
def instances(draw):
    n_links = draw(st.integers(1, 6))
    n_flows = draw(st.integers(1, 8))
    cap = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 10.0]),
                                 min_size=n_links, max_size=n_links)))
    flows, links = [], []
    for f in range(n_flows):
        crossed = draw(st.sets(st.integers(0, n_links - 1), min_size=1, max_size=n_links))
        flows += [f] * len(crossed)
        links += sorted(crossed)
    return np.array(flows), np.array(links), cap, n_flows


@settings(max_examples=150, deadline=None)
@given(instances())
def test_max_min_is_feasible_and_every_flow_has_a_bottleneck(inst):
    flow, link, cap, n = inst
    rate = max_min_rates(flow, link, cap, n)
    load = np.bincount(link, weights=rate[flow], minlength=len(cap))
    assert np.all(rate >= 0)
    assert np.all(load <= cap + 1e-9)  # feasible
    saturated = load >= cap - 1e-9
    for f in range(n):
        mine = link[flow == f]
        # a saturated link on f's path where no flow is faster than f: f cannot grow without hurting a
        # flow that is no better off (the max-min condition)
        assert any(saturated[j] and rate[flow[link == j]].max() <= rate[f] + 1e-9 for j in mine)


def test_connection_rate_is_the_sum_or_qps_times_the_slowest():
    paths = Paths(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([-1, -1, -1]))
    qp_rate = np.array([100.0, 200.0, 50.0])
    assert connection_rates(paths, qp_rate, 2) == pytest.approx([300, 50])
    assert connection_rates(paths, qp_rate, 2, steering=False) == pytest.approx([200, 50])


# --- topology ------------------------------------------------------------------------------------
def test_topology_is_one_to_one_and_link_ids_are_a_bijection():
    topo = LeafSpine(hosts=12, leaves=3, spines=2, nics_per_host=3, port_gbps=100)
    assert topo.hosts_per_leaf == 4 and topo.uplink_gbps == 200 and topo.line_rate_gbps == 200
    cap = topo.capacity()
    P, R, L, S, H = 2, 3, 3, 2, 12
    h, r, p = np.meshgrid(np.arange(H), np.arange(R), np.arange(P), indexing="ij")
    pp, rr, ll, ss = np.meshgrid(np.arange(P), np.arange(R), np.arange(L), np.arange(S), indexing="ij")
    ids = np.concatenate([topo.host_up(h, r, p).ravel(), topo.host_down(h, r, p).ravel(),
                          topo.leaf_up(pp, rr, ll, ss).ravel(), topo.spine_down(pp, rr, ss, ll).ravel()])
    assert np.array_equal(np.sort(ids), np.arange(topo.n_links))
    # 1:1: every leaf's uplinks add up to its downlinks
    for leaf in range(L):
        hosts = np.arange(leaf * 4, leaf * 4 + 4)
        down = cap[topo.host_down(hosts, 1, 0)].sum()
        assert cap[topo.leaf_up(0, 1, leaf, np.arange(S))].sum() == pytest.approx(down)
        assert cap[topo.spine_down(0, 1, np.arange(S), leaf)].sum() == pytest.approx(down)
    dead = topo.capacity([(1, 2, 0, 1)])
    assert dead[topo.leaf_up(1, 2, 0, 1)] == 0 and dead[topo.spine_down(1, 2, 1, 0)] == 0
    assert (dead == 0).sum() == 2


def test_ring_connections_are_rail_aligned():
    c = ring_connections([5, 2, 9], nics_per_host=2, tenant=3)
    assert c.src.tolist() == [5, 5, 2, 2, 9, 9]
    assert c.dst.tolist() == [2, 2, 9, 9, 5, 5]
    assert c.rail.tolist() == [0, 1, 0, 1, 0, 1]
    assert set(c.tenant.tolist()) == {3}


@pytest.mark.parametrize("background", ["none", "ring", "random"])
def test_placement_uses_each_host_in_one_tenant_with_one_flow_out_and_in_per_nic(background):
    topo = LeafSpine(hosts=20, leaves=4, spines=5, nics_per_host=2)
    conns = place_job(topo, 6, seed=3, background=background)
    job = conns.tenant == 0
    assert len(np.unique(conns.src[job])) == 6
    for r in range(2):
        on = conns.rail == r
        assert len(np.unique(conns.src[on])) == on.sum() and len(np.unique(conns.dst[on])) == on.sum()
    for t in np.unique(conns.tenant):  # tenants share no host
        others = conns.src[conns.tenant != t]
        assert not np.isin(conns.src[conns.tenant == t], others).any()
    if background != "none":
        assert len(np.unique(conns.src)) >= 19  # at most one host idle
    same = place_job(topo, 6, seed=3, background=background)
    assert np.array_equal(same.src, conns.src) and np.array_equal(same.dst, conns.dst)


# --- planning ------------------------------------------------------------------------------------
@st.composite
def multigraphs(draw, max_deg=None):
    n = draw(st.integers(2, 6))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda t: t[0] != t[1]),
                          max_size=40))
    return n, pairs


@settings(max_examples=60, deadline=None)
@given(multigraphs())
def test_edge_colouring_is_proper_with_max_degree_colours(g):
    n, pairs = g
    src = np.array([a for a, _ in pairs], dtype=int)
    dst = np.array([b for _, b in pairs], dtype=int)
    colour = edge_colouring(src, dst, n)
    if not pairs:
        assert len(colour) == 0
        return
    delta = max(np.bincount(src, minlength=n).max(), np.bincount(dst, minlength=n).max())
    assert colour.min() >= 0 and colour.max() < delta  # König: Delta colours
    for c in range(delta):
        on = colour == c
        assert len(np.unique(src[on])) == on.sum() and len(np.unique(dst[on])) == on.sum()


@settings(max_examples=60, deadline=None)
@given(multigraphs(), st.integers(1, 4), st.integers(1, 2))
def test_planned_spines_put_at_most_slots_qps_on_every_link_when_koenig_holds(g, spines, slots):
    n, pairs = g
    k = spines * slots
    out, inn, kept = np.zeros(n, int), np.zeros(n, int), []
    for a, b in pairs:  # keep only edges under König's condition: <= K out and in per leaf
        if out[a] < k and inn[b] < k:
            out[a] += 1
            inn[b] += 1
            kept.append((a, b))
    src = np.array([a for a, _ in kept], dtype=int)
    dst = np.array([b for _, b in kept], dtype=int)
    spine = plan_spines(src, dst, leaves=n, spines=spines, slots=slots)
    assert np.all((spine >= 0) & (spine < spines))
    up, down = np.zeros((n, spines), int), np.zeros((n, spines), int)
    np.add.at(up, (src, spine), 1)
    np.add.at(down, (dst, spine), 1)
    assert up.max(initial=0) <= slots and down.max(initial=0) <= slots


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ring_order", ["sorted", "random"])
def test_planned_reaches_line_rate_with_one_qp_per_link_without_background(seed, ring_order):
    topo = LeafSpine(hosts=32, leaves=4, spines=8, nics_per_host=2)
    out = simulate(topo, 24, "planned", seed, background="none", ring_order=ring_order)
    assert out["busbw_gbps"] == pytest.approx(400.0)  # the bonded NIC's line rate, not one port's
    assert out["max_flows_per_link"] <= 1 and out["full_rate_share"] == 1.0
    conns = place_job(topo, 24, seed, background="none", ring_order=ring_order)
    up, down = leaf_spine_loads(topo, conns, route_planned(topo, conns))
    assert up.max() <= 1 and down.max() <= 1


@pytest.mark.parametrize("seed", range(3))
def test_joint_planning_reaches_line_rate_on_a_full_fabric(seed):
    topo = LeafSpine(hosts=32, leaves=4, spines=8, nics_per_host=2)
    for background in ("ring", "random"):
        out = simulate(topo, 8, "planned_joint", seed, background=background, ring_order="random")
        assert out["busbw_gbps"] == pytest.approx(400.0)
        seq = simulate(topo, 8, "planned", seed, background=background, ring_order="random")
        assert 0 < seq["busbw_gbps"] <= 400.0 + 1e-9


def test_intra_leaf_qps_never_touch_a_spine():
    conns = ring_connections([0, 1, 2, 3], nics_per_host=2)  # all in leaf 0 of SMALL
    for policy in POLICIES:
        paths = route(SMALL, conns, policy, seed=1)
        assert np.all(paths.spine == -1)
        qp, link = qp_links(SMALL, conns, paths)
        assert len(link) == 2 * len(paths)  # host port up and down only
    with pytest.raises(ValueError, match="^paths"):
        qp_links(SMALL, conns, Paths(np.array([0]), np.array([0]), np.array([2])))


# --- busbw ---------------------------------------------------------------------------------------
def test_busbw_is_the_slowest_ring_edge_and_matches_a_direct_time():
    topo = LeafSpine(hosts=32, leaves=4, spines=8, nics_per_host=2)
    conns = place_job(topo, 12, seed=7, background="ring", ring_order="random")
    _, conn_rate = rates_of(topo, conns, route_balanced(topo, conns, seed=7))
    job = conns.tenant == 0
    n, size = 12, 256 * 2**20
    # direct: 2(n-1) steps; in each every ring edge moves one S/n chunk, the step ends with the slowest
    step = max((size / n) * 8 / (r * 1e9) for r in conn_rate[job])
    t = 2 * (n - 1) * step
    assert allreduce_time(size, n, conn_rate[job].min()) == pytest.approx(t)
    busbw = bus_bandwidth(size, t, n)  # nccl-tests: algbw * 2(n-1)/n
    assert busbw == pytest.approx(job_busbw(conns, conn_rate))
    assert busbw == pytest.approx(conn_rate[job].min())
    assert bus_bandwidth(size, t, n) == pytest.approx(size * 8 / t / 1e9 * 2 * (n - 1) / n)


# --- ECMP ----------------------------------------------------------------------------------------
def test_ecmp_is_sticky_per_qp_and_a_distribution_over_seeds():
    topo = LeafSpine(hosts=64, leaves=8, spines=8)
    conns = place_job(topo, 16, seed=0)
    a, b = route_ecmp(topo, conns, seed=5, qps=2), route_ecmp(topo, conns, seed=5, qps=2)
    assert np.array_equal(a.port, b.port) and np.array_equal(a.spine, b.spine)
    c = route_ecmp(topo, conns, seed=6, qps=2)
    assert not np.array_equal(a.spine, c.spine) and not np.array_equal(a.port, c.port)
    busbw = {simulate(topo, 16, "ecmp", s)["busbw_gbps"] for s in range(30)}
    assert len(busbw) > 1  # not one number
    # a failure re-hashes the same QPs: ports (bond hash) unchanged, the dead link unused
    failed = [(0, 0, 0, 3)]
    d = route_ecmp(topo, conns, seed=5, qps=2, failed_links=failed)
    assert np.array_equal(a.port, d.port)
    up, down = leaf_spine_loads(topo, conns, d)
    assert up[0, 0, 0, 3] == 0 and down[0, 0, 0, 3] == 0


def test_both_qps_on_one_port_halve_the_rate_and_dual_port_balance_restores_it():
    topo = LeafSpine(hosts=2, leaves=1, spines=1, nics_per_host=1)
    conns = ring_connections([0, 1], nics_per_host=1)
    collided = 0
    for seed in range(40):
        paths = route_ecmp(topo, conns, seed, qps=2)
        _, conn_rate = rates_of(topo, conns, paths)
        same_port = paths.port[0] == paths.port[1]  # connection 0's two QPs
        assert conn_rate[0] == pytest.approx(200.0 if same_port else 400.0)
        collided += same_port
        _, balanced = rates_of(topo, conns, route_balanced(topo, conns, seed))
        assert balanced == pytest.approx([400.0, 400.0])
    assert 0 < collided < 40  # the bond hash splits them sometimes, not always
    for seed in range(5):  # one QP per connection: the bond always puts it on one 200G port
        assert simulate(topo, 2, "ecmp", seed, background="none")["busbw_gbps"] == pytest.approx(200.0)


# --- link failure --------------------------------------------------------------------------------
def alternating_ring(k):
    """2 leaves of k hosts, K = k spines, a ring that crosses leaves on every edge: each leaf sends and
    receives exactly K cross-leaf QPs per slice, so losing one uplink leaves K QPs on K-1 links."""
    topo = LeafSpine(hosts=2 * k, leaves=2, spines=k, nics_per_host=2)
    order = np.ravel(np.column_stack([np.arange(k), np.arange(k, 2 * k)]))  # 0, k, 1, k+1, ...
    return topo, ring_connections(order, 2)


def busbw_of(topo, conns, policy, seed, failed, qps=None, steering=True):
    paths = route(topo, conns, policy, seed, qps=qps, failed_links=failed)
    _, conn_rate = rates_of(topo, conns, paths, failed, steering=steering)
    return job_busbw(conns, conn_rate), paths


@pytest.mark.parametrize("k", [4, 8])
def test_planned_keeps_k_minus_1_over_k_of_line_rate_after_a_failed_uplink(k):
    topo, conns = alternating_ring(k)
    failed = [(0, 1, 0, 2)]  # plane 0, rail 1, leaf 0 loses spine 2
    line = topo.line_rate_gbps
    assert busbw_of(topo, conns, "planned", 0, [])[0] == pytest.approx(line)
    # K-1 QPs per port: the leaf's K(K-1) QPs fill its K-1 surviving uplinks evenly, (K-1)/K each
    busbw, paths = busbw_of(topo, conns, "planned", 0, failed, qps=2 * (k - 1), steering=False)
    assert busbw == pytest.approx((k - 1) / k * line)
    up, down = leaf_spine_loads(topo, conns, paths)
    assert up[0, 1, 0, 2] == 0 and down[0, 1, 0, 2] == 0  # re-planned over the surviving links
    assert busbw_of(topo, conns, "planned", 0, failed, qps=2 * (k - 1))[0] >= (k - 1) / k * line
    # one QP per port: two share one surviving uplink, the connection steers to its healthy plane
    one = busbw_of(topo, conns, "planned", 0, failed)[0]
    assert one == pytest.approx((0.5 + 1) / 2 * line)
    if k == 4:
        assert one >= (k - 1) / k * line - 1e-9
    # ECMP re-hashes over the survivors: still random, never on the dead link
    seen = set()
    for seed in range(12):
        busbw, paths = busbw_of(topo, conns, "ecmp", seed, failed, qps=2)
        up, down = leaf_spine_loads(topo, conns, paths)
        assert up[0, 1, 0, 2] == 0 and down[0, 1, 0, 2] == 0
        seen.add(round(busbw, 6))
    assert len(seen) > 1 and max(seen) < (k - 1) / k * line


@pytest.mark.parametrize("seed", range(4))
def test_planned_loses_nothing_after_a_failure_where_the_leaf_has_spare_uplinks(seed):
    topo = LeafSpine(hosts=32, leaves=4, spines=8, nics_per_host=2)
    out = simulate(topo, 12, "planned", seed, background="none", failures=1)  # sorted ring: few cross-leaf QPs
    assert out["failed_links"] == 1 and out["busbw_gbps"] == pytest.approx(topo.line_rate_gbps)
    conns = place_job(topo, 12, seed, background="none")
    failed = draw_failed_links(topo, conns, 1, seed)
    for policy in POLICIES:
        up, down = leaf_spine_loads(topo, conns, route(topo, conns, policy, seed, failed_links=failed))
        p, r, leaf, s = failed[0]
        assert up[p, r, leaf, s] == 0 and down[p, r, leaf, s] == 0  # no QP on the dead link


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    (dict(hosts=48, leaves=5, spines=1), "leaves"),
    (dict(hosts=48, leaves=4, spines=5), "spines"),
    (dict(hosts=0, leaves=1, spines=1), "hosts"),
    (dict(hosts=8, leaves=0, spines=1), "leaves"),
    (dict(hosts=8, leaves=2, spines=-2), "spines"),
    (dict(hosts=8, leaves=2, spines=2, nics_per_host=0), "nics_per_host"),
    (dict(hosts=8, leaves=2, spines=2, port_gbps=0), "port_gbps"),
    (dict(hosts=8, leaves=2, spines=2, port_gbps=-200.0), "port_gbps"),
    (dict(hosts=8, leaves=2, spines=2, port_gbps=math.nan), "port_gbps"),
    (dict(hosts=8.0, leaves=2, spines=2), "hosts"),
])
def test_bad_topology_raises_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        LeafSpine(**kwargs)


def test_leaves_message():
    with pytest.raises(ValueError, match="^leaves: 48 hosts do not divide into 5 leaves"):
        LeafSpine(hosts=48, leaves=5, spines=1)


@pytest.mark.parametrize("call, name", [
    (lambda: place_job(SMALL, 17, 0), "job_hosts"),
    (lambda: place_job(SMALL, 1, 0), "job_hosts"),
    (lambda: place_job(SMALL, 4, 0, background="noise"), "background"),
    (lambda: place_job(SMALL, 4, 0, ring_order="zigzag"), "ring_order"),
    (lambda: place_job(SMALL, 4, -1), "seed"),
    (lambda: ring_connections([3]), "hosts"),
    (lambda: ring_connections([3, 3]), "hosts"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "spray", 0), "policy"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "balanced", 0, qps=3), "qps"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "ecmp", 0, qps=0), "qps"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "ecmp", -3), "seed"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "planned", 0, failed_links=[(0, 0, 9, 0)]), "failed_links"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "planned", 0, failed_links=[(0, 0)]), "failed_links"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "balanced", 0,
                   failed_links=[(0, 0, 0, s) for s in range(4)]), "failed_links"),
    (lambda: route(SMALL, ring_connections([0, 5], 2), "planned", 0,
                   failed_links=[(0, 0, 0, s) for s in range(4)]), "failed_links"),
    (lambda: draw_failed_links(SMALL, place_job(SMALL, 4, 0), -1, 0), "n"),
    (lambda: draw_failed_links(SMALL, place_job(SMALL, 4, 0), 99, 0), "n"),
    (lambda: measure_cost(hosts=(16,), seeds=0), "seeds"),
    (lambda: max_min_rates(np.array([0]), np.array([0]), np.array([-1.0]), 1), "capacity"),
    (lambda: max_min_rates(np.array([0]), np.array([0]), np.array([1.0]), 2), "flow"),
    (lambda: plan_spines(np.array([0, 5]), np.array([1, 0]), leaves=4, spines=2, slots=1), "src_leaf"),
    (lambda: allreduce_time(1e6, 1, 100.0), "n"),
    (lambda: allreduce_time(1e6, 4, 0.0), "r_min_gbps"),
    (lambda: bus_bandwidth(1e6, 0.0, 4), "seconds"),
    (lambda: run_seeds(SMALL, 4, [0], policies=["ecmp", "magic"]), "policies"),
    (lambda: run_seeds(SMALL, 4, [0], scenarios=["flood"]), "scenarios"),
])
def test_bad_input_raises_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()


# --- experiments ---------------------------------------------------------------------------------
def test_run_seeds_gives_one_row_per_seed_policy_and_scenario():
    topo = LeafSpine(hosts=32, leaves=4, spines=8, nics_per_host=2)
    df = run_seeds(topo, 8, range(4))
    assert len(df) == 4 * len(POLICIES) * 2
    assert {"seed", "policy", "scenario", "busbw_gbps", "max_flows_per_link", "full_rate_share"} <= set(df.columns)
    assert df.busbw_gbps.between(0, 400 + 1e-9).all()
    healthy = df[df.scenario == "healthy"].pivot(index="seed", columns="policy", values="busbw_gbps")
    assert (healthy["planned_joint"] >= healthy["balanced"] - 1e-9).all()
    assert (healthy["planned_joint"] >= healthy["ecmp"] - 1e-9).all()


_BUSBW_SCRIPT = """
import json
from repro.c4 import fabric, planning
topo = fabric.LeafSpine(hosts=64, leaves=8, spines=8)
d = planning.run_seeds(topo, 16, [9, 10, 13, 14], background="ring", ring_order="random")
print(json.dumps({f"{s}/{p}": g.sort_values("seed").busbw_gbps.tolist()
                  for (s, p), g in d.groupby(["scenario", "policy"])}))
"""


def _busbw_in_a_fresh_process(hash_seed: str) -> dict:
    import repro

    lib = str(Path(repro.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _BUSBW_SCRIPT], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout)


def test_every_policy_gives_the_same_busbw_in_any_process_whatever_the_hash_seed():
    # Seeds 9, 10, 13, 14 gave different planned_joint busbw after a link failure under PYTHONHASHSEED 1
    # and 2 when the matching's node order followed str hashes (edge_colouring's ("l", a) nodes).
    a, b = _busbw_in_a_fresh_process("1"), _busbw_in_a_fresh_process("2")
    assert set(a) == {f"{s}/{p}" for s in ("healthy", "link_failure") for p in POLICIES}
    assert all(len(v) == 4 for v in a.values())
    assert a == b


def test_measure_cost_returns_seconds_and_flow_counts():
    df = measure_cost(hosts=(16, 32), seeds=1, policies=("ecmp", "planned"))
    assert list(df.columns) == ["hosts", "gpus", "policy", "n_flows", "n_connections", "seconds_per_seed"]
    assert (df.seconds_per_seed > 0).all() and (df.n_flows > 0).all()


@pytest.mark.parametrize("background", ["ring", "random"])
def test_1024_gpus_with_background_tenants_simulate_under_every_policy(background):
    topo = LeafSpine(hosts=128, leaves=8, spines=16)
    assert topo.gpus == 1024
    for policy in POLICIES:
        for failures in (0, 1):
            out = simulate(topo, 32, policy, seed=1, background=background, failures=failures)
            assert 0 < out["busbw_gbps"] <= topo.line_rate_gbps + 1e-9
            assert out["n_connections"] >= 1000
