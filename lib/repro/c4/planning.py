"""C4P's routing policies against ECMP, and the experiments on them (C4, arXiv 2406.04594, §5 C4P; card §8
"Simulation C").

A policy turns the :class:`~repro.c4.fabric.Connections` into :class:`~repro.c4.fabric.Paths` (QPs with a
port and a spine); paths are computed once per seed and then fixed (sticky per QP, as real hashing is):

- ``ecmp``: every QP is hashed twice. The bond picks its port, ``hash(5-tuple, NIC salt) % 2``; the source
  leaf picks its spine, ``hash(5-tuple, leaf salt) % (surviving spines)``; the spine -> destination-leaf
  downlink follows from the spine. The 5-tuple is (source NIC IP, destination NIC IP, UDP source port,
  4791, UDP); the source port (one per QP), the NIC salts and the switch salts are drawn from the seed, so
  ECMP is a distribution over seeds, not a number.
- ``balanced`` (C4P "dual-port balance"): half of a connection's QPs on port 0, half on port 1 (so the
  two planes carry equal shares); spines still by the ECMP hash.
- ``planned`` (C4P "global path allocation"): ports balanced, and per (plane, rail) slice the cross-leaf
  QPs get spines by a proper edge colouring of the source-leaf -> destination-leaf multigraph (König: if
  no leaf has more than K cross-leaf QPs out or in, K colours suffice, found by repeated maximum bipartite
  matchings, networkx's Hopcroft-Karp), colours placed on spines around the links other tenants already
  use, then a local repair (single moves and Kempe-chain swaps that lower the squared overload) for what
  does not fit. Tenants are planned in arrival order, the job under test (tenant 0) last, around the
  others' QPs, which stay where they are.
- ``planned_joint``: the same planner over every tenant's QPs at once (the master re-plans the fabric
  when the job arrives); on a healthy fabric where each NIC sends and receives one connection this is
  always line rate, while ``planned`` can be stuck with collisions the earlier tenants' plans force.

QPs per connection (``qps``): 1 for ``ecmp`` by default (the bond puts the connection on one port), 2 for
the others (one per port); more QPs per port let a plan spread a connection over several spines.
Failed leaf-spine links: ``ecmp`` and ``balanced`` re-hash the same QPs over the spines that still join
both leaves; the planners re-plan over the surviving links.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import partial

import networkx as nx
import numpy as np
import pandas as pd

from ..checks import is_int
from .fabric import (
    PLANES,
    Connections,
    LeafSpine,
    Paths,
    connection_rates,
    draw_failed_links,
    job_busbw,
    max_min_rates,
    place_job,
    qp_links,
)

__all__ = [
    "POLICIES", "SCENARIOS", "ecmp_hash", "route_ecmp", "route_balanced", "route_planned", "route",
    "edge_colouring", "plan_spines", "simulate", "run_seeds", "measure_cost",
]

POLICIES = ("ecmp", "balanced", "planned", "planned_joint")
SCENARIOS = {"healthy": 0, "link_failure": 1}  # scenario name -> failed leaf-spine links
ROCE_PORT, UDP = 4791, 17  # RoCEv2's UDP destination port, IP protocol number of UDP
_DEAD = 1e9  # the load ratio of a failed link: never chosen while a live one exists


# --- ECMP hashing --------------------------------------------------------------------------------
def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a strong 64-bit mix (stands in for a switch's CRC hash)."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ecmp_hash(src_ip: np.ndarray, dst_ip: np.ndarray, sport: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """(Q,) uint64 hash of each QP's 5-tuple (src_ip, dst_ip, sport, 4791, UDP) with a per-device salt."""
    h = np.asarray(salt, dtype=np.uint64)
    for field in (src_ip, dst_ip, sport, ROCE_PORT, UDP):
        h = _mix64(h ^ np.asarray(field, dtype=np.uint64))
    return h


def _check_seed(seed: object) -> int:
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_qps(qps: object, policy: str) -> int:
    if not is_int(qps) or qps < 1:
        raise ValueError(f"qps: QPs per connection must be a positive integer, got {qps!r}")
    if policy != "ecmp" and qps % PLANES:
        raise ValueError(f"qps: {policy!r} puts half of a connection's QPs on each port, so it needs an even "
                         f"number, got {qps}")
    return int(qps)


def _qp_table(conns: Connections, qps: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) connection of each QP and its index k in [0, qps) within the connection."""
    return np.repeat(np.arange(len(conns)), qps), np.tile(np.arange(qps), len(conns))


def _surviving(alive: np.ndarray, port, rail, lu, lv) -> np.ndarray:
    """(X, S) spines still joining each cross-leaf QP's two leaves; raises ValueError naming
    ``failed_links`` when a QP has none."""
    ok = alive[port, rail, lu] & alive[port, rail, lv]
    count = ok.sum(axis=1)
    if np.any(count == 0):
        i = int(np.argmin(count))
        raise ValueError(f"failed_links: no surviving spine joins leaf {lu[i]} to leaf {lv[i]} in plane "
                         f"{port[i]}, rail {rail[i]}")
    return ok


def _hash_spines(topo: LeafSpine, conns: Connections, conn: np.ndarray, port: np.ndarray, h: np.ndarray,
                 alive: np.ndarray) -> np.ndarray:
    """Spine per QP: the h-th (mod count) spine among those alive on both the source leaf's uplink and the
    destination leaf's downlink (routes through a spine that lost the destination are withdrawn); -1 for
    intra-leaf QPs."""
    rail = conns.rail[conn]
    lu, lv = topo.leaf_of(conns.src[conn]), topo.leaf_of(conns.dst[conn])
    spine = np.full(len(conn), -1, dtype=np.int64)
    x = np.flatnonzero(lu != lv)
    ok = _surviving(alive, port[x], rail[x], lu[x], lv[x])  # (X, S)
    k = (h[x] % ok.sum(axis=1).astype(np.uint64)).astype(np.int64)
    spine[x] = np.argmax(np.cumsum(ok, axis=1) > k[:, None], axis=1)  # the k-th surviving spine
    return spine


def _hashes(topo: LeafSpine, conns: Connections, conn: np.ndarray, seed: int):
    """Per-QP UDP source ports and the bond and switch hash inputs, all drawn from ``seed`` (stream 2)."""
    rng = np.random.default_rng([seed, 2])
    R = topo.nics_per_host
    nic_salt = rng.integers(0, 2**63, size=(topo.hosts, R), dtype=np.uint64)
    leaf_salt = rng.integers(0, 2**63, size=(PLANES, R, topo.leaves), dtype=np.uint64)
    sport = rng.integers(49152, 65536, size=len(conn), dtype=np.uint64)  # one source port per QP
    src, dst, rail = conns.src[conn], conns.dst[conn], conns.rail[conn]
    src_ip, dst_ip = src * R + rail + 1, dst * R + rail + 1  # one IP per (bonded) NIC
    return src_ip, dst_ip, sport, nic_salt[src, rail], leaf_salt, rail, topo.leaf_of(src)


def route_ecmp(topo: LeafSpine, conns: Connections, seed: int, *, qps: int = 1,
               failed_links: Iterable[Sequence[int]] = ()) -> Paths:
    """ECMP (the baseline of C4P): ``qps`` QPs per connection, each hashed by the bond onto a port and by
    the source leaf onto a spine (module docstring). Sticky: the same seed gives the same paths; a failure
    re-hashes the same QPs over the surviving spines. Raises ValueError naming ``seed``, ``qps`` or
    ``failed_links``."""
    seed, qps = _check_seed(seed), _check_qps(qps, "ecmp")
    alive = topo.alive(failed_links)
    conn, _ = _qp_table(conns, qps)
    src_ip, dst_ip, sport, nic_salt, leaf_salt, rail, lu = _hashes(topo, conns, conn, seed)
    port = (ecmp_hash(src_ip, dst_ip, sport, nic_salt) % np.uint64(PLANES)).astype(np.int64)
    h = ecmp_hash(src_ip, dst_ip, sport, leaf_salt[port, rail, lu])
    return Paths(conn, port, _hash_spines(topo, conns, conn, port, h, alive))


def route_balanced(topo: LeafSpine, conns: Connections, seed: int, *, qps: int = 2,
                   failed_links: Iterable[Sequence[int]] = ()) -> Paths:
    """C4P's dual-port balance alone: QPs k < qps/2 of each connection on port 0, the rest on port 1 (equal
    shares per plane); spines by the same ECMP hash as :func:`route_ecmp`. Raises ValueError naming
    ``seed``, ``qps`` (odd) or ``failed_links``."""
    seed, qps = _check_seed(seed), _check_qps(qps, "balanced")
    alive = topo.alive(failed_links)
    conn, k = _qp_table(conns, qps)
    port = (k >= qps // PLANES).astype(np.int64)
    src_ip, dst_ip, sport, _, leaf_salt, rail, lu = _hashes(topo, conns, conn, seed)
    h = ecmp_hash(src_ip, dst_ip, sport, leaf_salt[port, rail, lu])
    return Paths(conn, port, _hash_spines(topo, conns, conn, port, h, alive))


# --- C4P global path allocation ------------------------------------------------------------------
def edge_colouring(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """A proper edge colouring of a bipartite multigraph with Delta colours (König's edge-colouring theorem).

    ``src``, ``dst``: (E,) left and right vertex of each edge, both in [0, n) (here: source leaf and
    destination leaf of each cross-leaf QP). The multigraph is padded with dummy edges to a Delta-regular
    one, which has a perfect matching (Hall); Delta times, a maximum matching of its support graph
    (networkx's Hopcroft-Karp) is perfect, and one copy of each matched pair, real edges before dummies,
    takes the round's colour. Returns (E,) colours in [0, Delta): no two edges sharing a vertex share one.
    """
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    if len(src) == 0:
        return np.zeros(0, dtype=np.int64)
    real = np.zeros((n, n), dtype=np.int64)  # (left, right) multiplicities
    np.add.at(real, (src, dst), 1)
    deg_l, deg_r = real.sum(1), real.sum(0)
    delta = int(max(deg_l.max(), deg_r.max()))
    dummy = np.zeros_like(real)
    gap_l, gap_r = delta - deg_l, delta - deg_r  # both sum to n*delta - E
    i = j = 0
    while i < n and j < n:  # pad to delta-regular: pair up the remaining degree gaps
        take = min(gap_l[i], gap_r[j])
        dummy[i, j] += take
        gap_l[i] -= take
        gap_r[j] -= take
        i, j = i + (gap_l[i] == 0), j + (gap_r[j] == 0)
    # Integer node ids: left vertex a is node a, right vertex b is node n + b. networkx's Hopcroft-Karp
    # iterates over set(top_nodes), so the matching follows the set's order: for str-keyed nodes (such as
    # ("l", a)) that order depends on PYTHONHASHSEED and differs between processes; small ints hash to
    # themselves, so the order (and the plan) is the same in every process. Nodes and edges go in sorted.
    left = list(range(n))
    pairs, colours = [], []
    for c in range(delta):
        g = nx.Graph()
        g.add_nodes_from(range(2 * n))
        g.add_edges_from((int(a), n + int(b)) for a, b in zip(*np.nonzero(real + dummy), strict=True))
        match = nx.bipartite.hopcroft_karp_matching(g, top_nodes=left)
        for a in range(n):
            b = match[a] - n  # perfect: every left vertex is matched
            if real[a, b]:
                real[a, b] -= 1
                pairs.append(a * n + b)
                colours.append(c)
            else:
                dummy[a, b] -= 1
    # hand each pair's colours to that pair's edges: both sorted by pair, the counts agree
    order = np.argsort(src * n + dst, kind="stable")
    colour = np.empty(len(src), dtype=np.int64)
    colour[order] = np.asarray(colours)[np.argsort(pairs, kind="stable")]
    return colour


def _ratio(load: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Load over capacity in QP slots; a failed link (cap 0) counts as _DEAD."""
    return np.where(cap > 0, load / np.maximum(cap, 1), _DEAD + load)


def plan_spines(src_leaf: np.ndarray, dst_leaf: np.ndarray, *, leaves: int, spines: int, slots: int,
                up_load: np.ndarray | None = None, down_load: np.ndarray | None = None,
                alive: np.ndarray | None = None) -> np.ndarray:
    """C4P's global path allocation in one (plane, rail) slice: a spine for each cross-leaf QP.

    ``src_leaf``, ``dst_leaf``: (E,) leaves of each QP; ``slots``: QPs a leaf-spine link carries at full
    rate (uplink_gbps / the QP's nominal rate); ``up_load``, ``down_load``: (leaves, spines) QPs other
    tenants already put on leaf -> spine and spine -> leaf; ``alive``: (leaves, spines) surviving links.
    Steps: (1) :func:`edge_colouring` with Delta colours, each colour a matching (no leaf twice);
    (2) colours onto spines, largest first, each where it raises the busiest link it touches least (ties:
    the spine with fewest colours); (3) local repair (:func:`_repair`) of QPs left on a link over capacity:
    single moves and Kempe-chain swaps of this call's QPs (never the other tenants') that lower the squared
    overload. When every leaf has at most slots * spines QPs out and in, nothing else is planned and no link
    fails, step 2 alone keeps every link at most ``slots`` QPs (König). Otherwise the result is a heuristic
    min-max plan (around fixed other tenants an overload-free plan need not exist).
    Returns (E,) spines. Raises ValueError naming ``src_leaf`` for leaves out of range or unequal lengths.
    """
    src, dst = np.asarray(src_leaf, dtype=np.int64), np.asarray(dst_leaf, dtype=np.int64)
    if src.shape != dst.shape or src.ndim != 1 or np.any((src < 0) | (src >= leaves) | (dst < 0) | (dst >= leaves)):
        raise ValueError(f"src_leaf: src_leaf and dst_leaf must be equal-length 1-d arrays of leaves in [0, {leaves})")
    up = np.zeros((leaves, spines)) if up_load is None else np.asarray(up_load, dtype=float).copy()
    down = np.zeros((leaves, spines)) if down_load is None else np.asarray(down_load, dtype=float).copy()
    cap = np.full((leaves, spines), float(slots))
    if alive is not None:
        cap[~np.asarray(alive)] = 0.0
    spine = np.full(len(src), -1, dtype=np.int64)
    if len(src) == 0:
        return spine
    colour = edge_colouring(src, dst, leaves)
    per_spine = np.zeros(spines)
    for c in np.argsort(-np.bincount(colour), kind="stable"):  # (2) colours to spines
        e = np.flatnonzero(colour == c)
        u, v = src[e], dst[e]  # a matching: no leaf repeats, so fancy-index updates are safe
        worst = np.maximum(_ratio(up[u] + 1, cap[u]), _ratio(down[v] + 1, cap[v])).max(axis=0)  # (S,)
        s = int(np.lexsort((per_spine, worst))[0])
        spine[e] = s
        up[u, s] += 1
        down[v, s] += 1
        per_spine[s] += 1
    return _repair(src, dst, spine, up, down, cap)


def _excess(load: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Squared QPs over capacity per link, a failed link's weighted by _DEAD: the potential the repair lowers
    (squares make two links one QP over better than one link two over: min-max)."""
    over = np.maximum(load - cap, 0.0)
    return np.where(cap > 0, 1.0, _DEAD) * over**2


class _Plan:
    """A slice's plan under repair: spine per QP and link loads (up: leaf -> spine, down: spine -> leaf)."""

    def __init__(self, src, dst, spine, up, down, cap):
        self.src, self.dst, self.spine, self.up, self.down, self.cap = src, dst, spine, up, down, cap

    def put(self, e: int, s: int, sign: int) -> None:
        self.up[self.src[e], s] += sign
        self.down[self.dst[e], s] += sign
        if sign > 0:
            self.spine[e] = s

    def potential(self) -> float:
        return float(_excess(self.up, self.cap).sum() + _excess(self.down, self.cap).sum())

    def overloaded(self) -> np.ndarray:
        """(E,) whether each QP sits on a link over capacity."""
        u, v, s = self.src, self.dst, self.spine
        return (self.up[u, s] > self.cap[u, s]) | (self.down[v, s] > self.cap[v, s])

    def move(self, e: int) -> bool:
        """Move QP e to the spine where its two links end least over capacity, if that lowers the potential."""
        u, v, s0 = self.src[e], self.dst[e], self.spine[e]
        before = self.potential()
        self.put(e, s0, -1)
        cost = _excess(self.up[u] + 1, self.cap[u]) + _excess(self.down[v] + 1, self.cap[v])
        cost -= _excess(self.up[u], self.cap[u]) + _excess(self.down[v], self.cap[v])  # (S,) added potential
        s = int(np.lexsort((self.up[u] + self.down[v], cost))[0])
        self.put(e, s, +1)
        if self.potential() < before - 1e-9:
            return True
        self.put(e, s, -1)
        self.put(e, s0, +1)
        return False

    def kempe(self, e: int, alpha: int, beta: int) -> bool:
        """Put QP e on spine alpha (room on its uplink) and repair its downlink by an alternating chain of the
        slice's QPs swapping alpha <-> beta (König's proof step); keep it if the potential drops."""
        saved = self.spine.copy(), self.up.copy(), self.down.copy()
        before = self.potential()
        self.put(e, self.spine[e], -1)
        self.put(e, alpha, +1)
        used = {e}
        down_side, x, frm, to = True, self.dst[e], alpha, beta
        for _ in range(len(self.src)):
            load = self.down[x] if down_side else self.up[x]
            if load[frm] <= self.cap[x, frm]:
                break
            ends = self.dst if down_side else self.src
            cand = [f for f in np.flatnonzero((ends == x) & (self.spine == frm)) if f not in used]
            if not cand:
                break
            f = int(cand[0])
            used.add(f)
            self.put(f, frm, -1)
            self.put(f, to, +1)
            down_side, x, frm, to = not down_side, (self.src[f] if down_side else self.dst[f]), to, frm
        if self.potential() < before - 1e-9:
            return True
        self.spine[:], self.up[:], self.down[:] = saved
        return False

    def fix(self, e: int) -> bool:
        """One repair of QP e: a single move, else a Kempe chain over a (free at source, free at
        destination) pair of spines, tried from both ends."""
        if self.move(e):
            return True
        u, v = self.src[e], self.dst[e]
        room_up = np.flatnonzero(self.up[u] < self.cap[u])
        room_down = np.flatnonzero(self.down[v] < self.cap[v])
        for a in room_up:
            for b in room_down:
                if a != b and self.kempe(e, int(a), int(b)):
                    return True
        return False


def _repair(src, dst, spine, up, down, cap) -> np.ndarray:
    """Local repair of :func:`plan_spines` (step 3): while a QP sits on an overloaded link, a single move or a
    Kempe chain that lowers the potential (:func:`_excess`, an integer sum, so it ends); QPs that cannot be
    fixed are left where the min-max placement put them."""
    plan = _Plan(src, dst, spine, up, down, cap)
    stuck = np.zeros(len(src), dtype=bool)
    while True:
        todo = np.flatnonzero(plan.overloaded() & ~stuck)
        if len(todo) == 0:
            return plan.spine
        e = int(todo[0])
        if plan.fix(e):
            stuck[:] = False
        else:
            stuck[e] = True


def route_planned(topo: LeafSpine, conns: Connections, seed: int = 0, *, qps: int = 2,
                  failed_links: Iterable[Sequence[int]] = (), joint: bool = False) -> Paths:
    """C4P: dual-port balance plus global path allocation (:func:`plan_spines`) per (plane, rail) slice.

    Ports as in :func:`route_balanced`. With ``joint=False`` tenants are planned in arrival order
    (background tenants 1, 2, ..., then the job under test, tenant 0), each around the QPs already planned
    and left in place; on a full fabric the job may then find no free spine pair left (a list-colouring
    instance) even though a plan at line rate exists. With ``joint=True`` the master plans every tenant's
    QPs of a slice together (as if it re-planned the fabric when the job arrived), so König's bound holds
    for the whole traffic. A failed link is avoided by re-planning over the surviving ones. A leaf-spine link carries uplink_gbps / (port_gbps / (qps/2)) QPs at
    full rate. Deterministic (``seed`` is accepted for a uniform signature and unused). Raises ValueError
    naming ``qps`` (odd) or ``failed_links``.
    """
    _check_seed(seed)
    qps = _check_qps(qps, "planned")
    alive = topo.alive(failed_links)
    conn, k = _qp_table(conns, qps)
    port = (k >= qps // PLANES).astype(np.int64)
    rail, tenant = conns.rail[conn], conns.tenant[conn]
    lu, lv = topo.leaf_of(conns.src[conn]), topo.leaf_of(conns.dst[conn])
    slots = round(topo.uplink_gbps / (topo.port_gbps / (qps // PLANES)))
    x = lu != lv
    _surviving(alive, port[x], rail[x], lu[x], lv[x])
    spine = np.full(len(conn), -1, dtype=np.int64)
    tenants = np.unique(conns.tenant)
    # arrival order, the job last; or every tenant at once
    groups = [tenants] if joint else [[t] for t in tenants if t != 0] + [[0]]
    memo: dict[tuple[bytes, ...], np.ndarray] = {}  # slices with equal traffic, loads and failures plan alike
    for p in range(PLANES):
        for r in range(topo.nics_per_host):
            up = np.zeros((topo.leaves, topo.spines))
            down = np.zeros((topo.leaves, topo.spines))
            for g in groups:
                q = np.flatnonzero((port == p) & (rail == r) & np.isin(tenant, g) & (lu != lv))
                key = tuple(a.tobytes() for a in (lu[q], lv[q], up, down, alive[p, r]))
                if key not in memo:
                    memo[key] = plan_spines(lu[q], lv[q], leaves=topo.leaves, spines=topo.spines, slots=slots,
                                            up_load=up, down_load=down, alive=alive[p, r])
                spine[q] = memo[key]
                np.add.at(up, (lu[q], spine[q]), 1)
                np.add.at(down, (lv[q], spine[q]), 1)
    return Paths(conn, port, spine)


_ROUTERS = {"ecmp": route_ecmp, "balanced": route_balanced, "planned": route_planned,
            "planned_joint": partial(route_planned, joint=True)}


def route(topo: LeafSpine, conns: Connections, policy: str, seed: int, *, qps: int | None = None,
          failed_links: Iterable[Sequence[int]] = ()) -> Paths:
    """Paths under ``policy`` (one of :data:`POLICIES`); ``qps`` QPs per connection, by default 1 for
    ``ecmp`` (one QP per connection, the bond picks its port) and 2 for the others (one per port). Raises
    ValueError naming ``policy``, ``seed``, ``qps`` or ``failed_links``."""
    if policy not in _ROUTERS:
        raise ValueError(f"policy: must be one of {POLICIES}, got {policy!r}")
    if qps is None:
        qps = 1 if policy == "ecmp" else PLANES
    return _ROUTERS[policy](topo, conns, seed, qps=qps, failed_links=failed_links)


# --- experiments ---------------------------------------------------------------------------------
def simulate(topo: LeafSpine, job_hosts: int, policy: str, seed: int, *, background: str = "ring",
             ring_order: str = "sorted", failures: int = 0, qps: int | None = None,
             steering: bool = True) -> dict:
    """One seed of card §8 "Simulation C": place the job and its neighbours (:func:`place_job`), fail
    ``failures`` links (:func:`draw_failed_links`), route every tenant under ``policy`` (:func:`route`),
    rate every QP max-min fairly (:func:`max_min_rates`) and report the job's nccl-tests busbw.

    Returns a dict: ``busbw_gbps`` (per NIC, the slowest ring edge), ``line_rate_gbps`` (the bonded NIC,
    400 by default), ``busbw_fraction`` (their ratio), ``max_flows_per_link`` (most QPs, all tenants, on a
    leaf-spine link one of the job's QPs crosses; 0 when the job never leaves its leaves),
    ``full_rate_share`` (share of the job's connections at line rate), ``n_flows`` (QPs, all tenants),
    ``n_connections``, ``failed_links``. Raises ValueError as the functions it calls do.
    """
    conns = place_job(topo, job_hosts, seed, background=background, ring_order=ring_order)
    failed = draw_failed_links(topo, conns, failures, seed)
    paths = route(topo, conns, policy, seed, qps=qps, failed_links=failed)
    qp, link = qp_links(topo, conns, paths)
    rate = max_min_rates(qp, link, topo.capacity(failed), len(paths))
    conn_rate = connection_rates(paths, rate, len(conns), steering=steering)
    busbw = job_busbw(conns, conn_rate)
    fabric = link >= 2 * topo.hosts * topo.nics_per_host * PLANES  # leaf-spine incidences
    per_link = np.bincount(link[fabric], minlength=topo.n_links)
    job_links = link[fabric & (conns.tenant[paths.conn[qp]] == 0)]
    job = conns.tenant == 0
    line = topo.line_rate_gbps
    return dict(busbw_gbps=busbw, line_rate_gbps=line, busbw_fraction=busbw / line,
                max_flows_per_link=int(per_link[job_links].max(initial=0)),
                full_rate_share=float(np.mean(conn_rate[job] >= line * (1 - 1e-9))),
                n_flows=len(paths), n_connections=len(conns), failed_links=len(failed))


def run_seeds(topo: LeafSpine, job_hosts: int, seeds: Iterable[int], *, policies: Sequence[str] = POLICIES,
              scenarios: Sequence[str] = tuple(SCENARIOS), background: str = "ring", ring_order: str = "sorted",
              qps: int | None = None, steering: bool = True, progress: bool = False) -> pd.DataFrame:
    """The busbw distribution over seeds (card §5 / §8: ECMP is a distribution, not a number): one row per
    (seed, policy, scenario) with :func:`simulate`'s fields. ``scenarios`` are names in :data:`SCENARIOS`
    (``healthy``; ``link_failure``: one failed leaf-spine link). Placement and failures depend on the seed
    only, so the policies are compared on the same instances. Raises ValueError naming ``policies`` or
    ``scenarios`` for an unknown name."""
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise ValueError(f"policies: unknown {bad}; valid: {POLICIES}")
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise ValueError(f"scenarios: unknown {bad}; valid: {tuple(SCENARIOS)}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: needs at least one seed")
    if progress:
        from ..progress import tqdm

        seeds = tqdm(seeds, desc="C4P seeds")
    rows = []
    for seed in seeds:
        for scenario in scenarios:
            for policy in policies:
                out = simulate(topo, job_hosts, policy, seed, background=background, ring_order=ring_order,
                               failures=SCENARIOS[scenario], qps=qps, steering=steering)
                rows.append(dict(seed=seed, policy=policy, scenario=scenario, **out))
    return pd.DataFrame(rows)


def measure_cost(hosts: Sequence[int] = (16, 32, 64, 128), *, hosts_per_leaf: int = 8, spines: int = 8,
                 job_fraction: float = 0.25, policies: Sequence[str] = POLICIES, seeds: int = 3,
                 background: str = "ring") -> pd.DataFrame:
    """The simulator's cost: wall seconds per seed (time.perf_counter around one :func:`simulate`, mean over
    ``seeds`` seeds) against the number of QPs, per cluster size and policy. Each cluster has
    ``hosts_per_leaf`` hosts per leaf, ``spines`` spines per slice, 8 NICs per host, a job of
    ``job_fraction`` of the hosts and background tenants on the rest. Returns a DataFrame with columns
    hosts, gpus, policy, n_flows, n_connections, seconds_per_seed. Numbers only: nothing is asserted."""
    if not is_int(seeds) or seeds < 1:
        raise ValueError(f"seeds: must be a positive integer, got {seeds!r}")
    rows = []
    for h in hosts:
        topo = LeafSpine(hosts=h, leaves=max(1, h // hosts_per_leaf), spines=spines)
        job = max(2, int(round(job_fraction * h)))
        for policy in policies:
            t0 = time.perf_counter()
            for seed in range(seeds):
                out = simulate(topo, job, policy, seed, background=background)
            dt = (time.perf_counter() - t0) / seeds
            rows.append(dict(hosts=h, gpus=topo.gpus, policy=policy, n_flows=out["n_flows"],
                             n_connections=out["n_connections"], seconds_per_seed=dt))
    return pd.DataFrame(rows)
