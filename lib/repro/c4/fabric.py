"""C4P's network at flow level (C4, arXiv 2406.04594, §5; card §8 "Simulation C"): a rail-optimised,
dual-plane leaf-spine fabric, the collective traffic on it, max-min fair rates and nccl-tests' busbw.

Topology (:class:`LeafSpine`). ``hosts`` hosts, each with ``nics_per_host`` NICs; a NIC has two ports of
``port_gbps`` bonded to one 2 x ``port_gbps`` NIC (2 x 200 = 400 Gbps by default). Every (plane, rail)
pair is its own two-tier leaf-spine *slice*, with no links between slices:

- plane p holds port p of every NIC (dual plane: all port-0s in plane 0, all port-1s in plane 1);
- rail r holds NIC r of every host (rail-optimised: NIC r of every host goes to rail r's leaf group);
- hosts are cut into ``leaves`` segments of D = hosts/leaves consecutive hosts; leaf (p, r, l) has D
  downlinks of ``port_gbps``, one to port p of NIC r of each host in segment l;
- each leaf has one uplink to each of the slice's ``spines`` spines, of D * port_gbps / spines Gbps, so a
  leaf's uplink capacity equals its downlink capacity (1:1, no oversubscription).

So there are 2 * nics_per_host slices of ``leaves`` leaves and ``spines`` spines. Traffic is rail-aligned
(NIC r talks to NIC r, as NCCL's rings and PXN do): a connection has one rail, and no link joins rails.

Links are directed (full duplex). Their ids, in this order (``P = 2`` planes, ``R`` rails):

====================  ==============================  ===============================
link                  id                              capacity (Gbps)
====================  ==============================  ===============================
host port -> leaf     (h * R + r) * P + p              port_gbps
leaf -> host port     H*R*P + (h * R + r) * P + p      port_gbps
leaf l -> spine s     2*H*R*P + ((p*R + r)*L + l)*S + s  uplink_gbps (0 when failed)
spine s -> leaf l     ... + P*R*L*S + ((p*R + r)*S + s)*L + l  uplink_gbps (0 when failed)
====================  ==============================  ===============================

Traffic is a table of *connections* (:class:`Connections`: one per ring edge and rail), each carried by
one or more RDMA queue pairs (QPs, :class:`Paths`: port and spine per QP; the policies that choose them
are in :mod:`repro.c4.planning`). Rates are max-min fair over QPs (:func:`max_min_rates`); a connection
runs at the sum of its QPs' rates (the CCL steers chunks toward the faster QP) or, with
``steering=False``, at ``qps * min`` (equal fixed shares). The collective's busbw is nccl-tests'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import is_int

__all__ = [
    "PLANES", "LeafSpine", "Connections", "Paths", "ring_connections", "random_flows", "place_job",
    "draw_failed_links", "qp_links", "max_min_rates", "connection_rates", "allreduce_time", "bus_bandwidth",
    "job_busbw",
]

PLANES = 2  # dual plane: port 0 of every NIC in plane 0, port 1 in plane 1
BACKGROUNDS = ("none", "ring", "random")
RING_ORDERS = ("sorted", "random")


def _positive_int(name: str, v: object) -> int:
    if not is_int(v) or v < 1:
        raise ValueError(f"{name}: must be a positive integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class LeafSpine:
    """The rail-optimised, dual-plane, 1:1 leaf-spine fabric of C4's production setting (card §3, §8 C).

    ``hosts`` hosts of ``nics_per_host`` NICs with two ``port_gbps`` ports each; per (plane, rail) slice,
    ``leaves`` leaves of ``hosts/leaves`` hosts and ``spines`` spines (see the module docstring). Raises
    ValueError naming the parameter for a non-positive count or speed, hosts that do not divide into the
    leaves, or a leaf's downlink ports that do not divide into the spines (1:1 needs equal uplinks).
    """

    hosts: int
    leaves: int
    spines: int
    nics_per_host: int = 8
    port_gbps: float = 200.0

    def __post_init__(self) -> None:
        for name in ("hosts", "leaves", "spines", "nics_per_host"):
            _positive_int(name, getattr(self, name))
        p = self.port_gbps
        if isinstance(p, bool) or not isinstance(p, int | float | np.number) or not (math.isfinite(p) and p > 0):
            raise ValueError(f"port_gbps: must be a positive finite speed in Gbps, got {p!r}")
        if self.hosts % self.leaves:
            raise ValueError(f"leaves: {self.hosts} hosts do not divide into {self.leaves} leaves")
        if self.hosts_per_leaf % self.spines:
            raise ValueError(f"spines: {self.hosts_per_leaf} downlink ports per leaf do not divide into "
                             f"{self.spines} spines (a 1:1 leaf needs equal uplinks, one per spine)")

    # sizes ---------------------------------------------------------------------------------------
    @property
    def hosts_per_leaf(self) -> int:
        """D: hosts (downlink ports) per leaf."""
        return self.hosts // self.leaves

    @property
    def uplink_gbps(self) -> float:
        """Capacity of one leaf-spine link, D * port_gbps / spines (1:1)."""
        return self.hosts_per_leaf * self.port_gbps / self.spines

    @property
    def line_rate_gbps(self) -> float:
        """The bonded NIC's line rate, 2 * port_gbps (400 Gbps by default): busbw per NIC compares to this."""
        return PLANES * self.port_gbps

    @property
    def gpus(self) -> int:
        """hosts * nics_per_host (one GPU per NIC)."""
        return self.hosts * self.nics_per_host

    @property
    def n_links(self) -> int:
        """Number of directed links: host ports up and down, leaf uplinks, spine downlinks."""
        return 2 * self.hosts * self.nics_per_host * PLANES + 2 * PLANES * self.nics_per_host * self.leaves * self.spines

    def leaf_of(self, host: np.ndarray | int) -> np.ndarray:
        """The segment (leaf index within each slice) of each host: host // D."""
        return np.asarray(host) // self.hosts_per_leaf

    # link ids ------------------------------------------------------------------------------------
    def host_up(self, host, rail, port) -> np.ndarray:
        """Id of the link host port -> leaf (arrays broadcast)."""
        return (np.asarray(host) * self.nics_per_host + rail) * PLANES + port

    def host_down(self, host, rail, port) -> np.ndarray:
        """Id of the link leaf -> host port."""
        return self.hosts * self.nics_per_host * PLANES + self.host_up(host, rail, port)

    def leaf_up(self, plane, rail, leaf, spine) -> np.ndarray:
        """Id of the uplink leaf -> spine in slice (plane, rail)."""
        base = 2 * self.hosts * self.nics_per_host * PLANES
        return base + ((np.asarray(plane) * self.nics_per_host + rail) * self.leaves + leaf) * self.spines + spine

    def spine_down(self, plane, rail, spine, leaf) -> np.ndarray:
        """Id of the downlink spine -> leaf in slice (plane, rail)."""
        base = 2 * self.hosts * self.nics_per_host * PLANES + PLANES * self.nics_per_host * self.leaves * self.spines
        return base + ((np.asarray(plane) * self.nics_per_host + rail) * self.spines + spine) * self.leaves + leaf

    # failures and capacities ---------------------------------------------------------------------
    def alive(self, failed_links: Iterable[Sequence[int]] = ()) -> np.ndarray:
        """(2, R, L, S) bool: which leaf-spine links survive. ``failed_links`` holds (plane, rail, leaf,
        spine) tuples; a failed link is down in both directions. Raises ValueError naming
        ``failed_links`` for a malformed or out-of-range entry."""
        alive = np.ones((PLANES, self.nics_per_host, self.leaves, self.spines), dtype=bool)
        bounds = alive.shape
        for link in failed_links:
            if len(link) != 4 or not all(is_int(x) for x in link):
                raise ValueError(f"failed_links: each entry is (plane, rail, leaf, spine) integers, got {link!r}")
            if not all(0 <= x < b for x, b in zip(link, bounds, strict=True)):
                raise ValueError(f"failed_links: {tuple(link)} is outside (plane < {bounds[0]}, rail < {bounds[1]}, "
                                 f"leaf < {bounds[2]}, spine < {bounds[3]})")
            alive[tuple(link)] = False
        return alive

    def capacity(self, failed_links: Iterable[Sequence[int]] = ()) -> np.ndarray:
        """(n_links,) capacity of every directed link in Gbps; failed leaf-spine links have 0."""
        alive = self.alive(failed_links)
        n_host = 2 * self.hosts * self.nics_per_host * PLANES
        cap = np.empty(self.n_links)
        cap[:n_host] = self.port_gbps
        up = np.where(alive, self.uplink_gbps, 0.0)  # (P, R, L, S)
        cap[n_host:n_host + up.size] = up.ravel()
        cap[n_host + up.size:] = up.transpose(0, 1, 3, 2).ravel()  # spine -> leaf, ordered (p, r, s, l)
        return cap


@dataclass(frozen=True, eq=False)
class Connections:
    """Connections of all tenants, one row each: src host -> dst host on NIC ``rail`` (rail-aligned),
    owned by ``tenant`` (0 is the job under test). All arrays (C,) int64."""

    src: np.ndarray
    dst: np.ndarray
    rail: np.ndarray
    tenant: np.ndarray

    def __len__(self) -> int:
        return len(self.src)

    @staticmethod
    def concat(parts: Sequence[Connections]) -> Connections:
        """One table from several (rows in order)."""
        if not parts:
            e = np.zeros(0, dtype=np.int64)
            return Connections(e, e, e, e)
        return Connections(*(np.concatenate([getattr(c, f) for c in parts]).astype(np.int64)
                             for f in ("src", "dst", "rail", "tenant")))


@dataclass(frozen=True, eq=False)
class Paths:
    """The QPs carrying the connections, one row each: ``conn`` (index into :class:`Connections`),
    ``port`` (0 or 1 = plane) and ``spine`` (-1 for an intra-leaf QP, which never reaches a spine). Every
    QP of a connection carries an equal share of its bytes. All arrays (Q,) int64."""

    conn: np.ndarray
    port: np.ndarray
    spine: np.ndarray

    def __len__(self) -> int:
        return len(self.conn)


def _hosts_list(name: str, hosts: Sequence[int], topo_hosts: int | None = None) -> np.ndarray:
    h = np.asarray(hosts)
    if h.ndim != 1 or (h.size and not np.issubdtype(h.dtype, np.integer)):
        raise ValueError(f"{name}: must be a 1-d sequence of host indices, got {hosts!r}")
    if len(np.unique(h)) != len(h):
        raise ValueError(f"{name}: host indices must be distinct")
    if topo_hosts is not None and h.size and (h.min() < 0 or h.max() >= topo_hosts):
        raise ValueError(f"{name}: host indices must lie in [0, {topo_hosts})")
    return h.astype(np.int64)


def ring_connections(hosts: Sequence[int], nics_per_host: int = 8, tenant: int = 0) -> Connections:
    """A ring all-reduce's connections: for ring position i and every NIC r, host hosts[i] NIC r sends to
    host hosts[i+1] NIC r (rail-aligned, one ring per rail as NCCL builds them); n * nics_per_host rows.
    Raises ValueError naming ``hosts`` for fewer than 2 or repeated hosts."""
    h = _hosts_list("hosts", hosts)
    if len(h) < 2:
        raise ValueError(f"hosts: a ring needs at least 2 hosts, got {len(h)}")
    R = _positive_int("nics_per_host", nics_per_host)
    src = np.repeat(h, R)
    dst = np.repeat(np.roll(h, -1), R)
    rail = np.tile(np.arange(R), len(h))
    return Connections(src, dst, rail, np.full(len(src), tenant, dtype=np.int64))


def random_flows(hosts: Sequence[int], nics_per_host: int, rng: np.random.Generator, tenant: int) -> Connections:
    """Random long-lived flows among ``hosts``: per rail, a random derangement (every NIC sends one flow
    and receives one, never to itself), drawn independently per rail. Raises ValueError naming ``hosts``
    for fewer than 2 hosts."""
    h = _hosts_list("hosts", hosts)
    if len(h) < 2:
        raise ValueError(f"hosts: random flows need at least 2 hosts, got {len(h)}")
    parts = []
    for r in range(nics_per_host):
        while True:  # rejection sampling: a uniform derangement after about e draws
            perm = rng.permutation(len(h))
            if not np.any(perm == np.arange(len(h))):
                break
        parts.append(Connections(h, h[perm], np.full(len(h), r), np.full(len(h), tenant)))
    return Connections.concat(parts)


def place_job(topo: LeafSpine, job_hosts: int, seed: int, *, background: str = "ring",
              ring_order: str = "sorted") -> Connections:
    """Place a ring all-reduce job of ``job_hosts`` hosts at random across the leaves and fill the rest.

    The job (tenant 0) gets ``job_hosts`` hosts drawn uniformly without replacement (multi-tenant
    fragmentation); its ring visits them in host order (``ring_order="sorted"``: NCCL's ring follows rank
    order, ranks follow hosts, so ring neighbours often share a leaf) or in a random order. The other hosts
    carry ``background`` tenants: ``"ring"``: further ring jobs of ``job_hosts`` hosts each (the last one
    takes what is left; a single host left over stays idle), placed the same way; ``"random"``: one tenant
    of random long flows (:func:`random_flows`); ``"none"``: idle. Deterministic in ``seed``.

    Returns the connections of all tenants, job first. Raises ValueError naming ``job_hosts`` (fewer than 2
    or more than the cluster), ``background``, ``ring_order`` or ``seed``.
    """
    if not is_int(job_hosts) or not 2 <= job_hosts <= topo.hosts:
        raise ValueError(f"job_hosts: a ring job needs 2 to {topo.hosts} hosts (the cluster's size), got {job_hosts!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background: must be one of {BACKGROUNDS}, got {background!r}")
    if ring_order not in RING_ORDERS:
        raise ValueError(f"ring_order: must be one of {RING_ORDERS}, got {ring_order!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([seed, 0])  # stream 0: placement
    order = rng.permutation(topo.hosts)
    groups = [order[:job_hosts]]
    rest = order[job_hosts:]
    if background == "ring":
        groups += [rest[i:i + job_hosts] for i in range(0, len(rest), job_hosts)]
        groups = [g for g in groups if len(g) >= 2]
    parts = [ring_connections(g if ring_order == "random" else np.sort(g), topo.nics_per_host, tenant=t)
             for t, g in enumerate(groups)]
    if background == "random" and len(rest) >= 2:
        parts.append(random_flows(rest, topo.nics_per_host, rng, tenant=1))
    return Connections.concat(parts)


def draw_failed_links(topo: LeafSpine, conns: Connections, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """``n`` distinct failed leaf-spine links (plane, rail, leaf, spine), drawn from ``seed`` (stream 1) on
    links that matter to the job: the source leaf of a random cross-leaf connection of tenant 0 (of a random
    job host when it has none), a random plane and a random spine. Policies compared on one seed see the
    same failures. Every leaf keeps at least one spine; with several failures two leaves may still share
    no surviving spine, and routing then raises. Raises ValueError naming ``n`` when it is negative or more
    than the job's leaves can lose, ``seed`` when it is not a non-negative integer."""
    if not is_int(n) or n < 0:
        raise ValueError(f"n: must be a non-negative integer, got {n!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([seed, 1])  # stream 1: failures
    job = np.flatnonzero(conns.tenant == 0)
    cross = job[topo.leaf_of(conns.src[job]) != topo.leaf_of(conns.dst[job])]
    pool = cross if len(cross) else job
    n_leaves = len(np.unique(conns.rail[pool] * topo.leaves + topo.leaf_of(conns.src[pool])))
    if n > PLANES * n_leaves * (topo.spines - 1):
        raise ValueError(f"n: {n} failed links are more than the job's leaves can lose")
    failed: set[tuple[int, int, int, int]] = set()
    while len(failed) < n:
        c = pool[rng.integers(len(pool))]
        link = (int(rng.integers(PLANES)), int(conns.rail[c]), int(topo.leaf_of(conns.src[c])),
                int(rng.integers(topo.spines)))
        if sum(f[:3] == link[:3] for f in failed) < topo.spines - 1:
            failed.add(link)
    return sorted(failed)


def qp_links(topo: LeafSpine, conns: Connections, paths: Paths) -> tuple[np.ndarray, np.ndarray]:
    """The QP x link incidence as index pairs ``(qp, link)``, each (E,) int64: every QP crosses its source
    port's uplink to the leaf and the destination port's downlink; a cross-leaf QP also crosses the
    leaf -> spine uplink and the spine -> destination-leaf downlink of its slice (plane = port, rail).
    Raises ValueError naming ``paths`` when a cross-leaf QP has no spine, an intra-leaf QP has one, or a
    connection crosses rails."""
    if np.any(conns.rail < 0) or np.any(conns.rail >= topo.nics_per_host):
        raise ValueError(f"conns: rails must lie in [0, {topo.nics_per_host})")
    c = paths.conn
    src, dst, rail, port, spine = conns.src[c], conns.dst[c], conns.rail[c], paths.port, paths.spine
    lu, lv = topo.leaf_of(src), topo.leaf_of(dst)
    cross = lu != lv
    if np.any(cross & (spine < 0)) or np.any(~cross & (spine >= 0)) or np.any(spine >= topo.spines):
        raise ValueError("paths: every cross-leaf QP needs a spine in [0, spines) and no intra-leaf QP may have one")
    if np.any((port < 0) | (port >= PLANES)):
        raise ValueError("paths: ports must be 0 or 1")
    q = np.arange(len(paths))
    qs = [q, q, q[cross], q[cross]]
    links = [topo.host_up(src, rail, port), topo.host_down(dst, rail, port),
             topo.leaf_up(port[cross], rail[cross], lu[cross], spine[cross]),
             topo.spine_down(port[cross], rail[cross], spine[cross], lv[cross])]
    return np.concatenate(qs).astype(np.int64), np.concatenate(links).astype(np.int64)


def max_min_rates(flow: np.ndarray, link: np.ndarray, capacity: np.ndarray, n_flows: int) -> np.ndarray:
    """Max-min fair rates by progressive filling (water-filling) over all links.

    ``flow``, ``link``: (E,) incidence pairs (flow ``flow[e]`` crosses link ``link[e]``); ``capacity``:
    (n_links,) Gbps. All unfrozen flows grow at the same pace; when a link saturates, the flows crossing it
    freeze at their current rate. Each round is vectorised over the incidence (bincount); there are at most
    as many rounds as distinct bottleneck levels. Returns (n_flows,) rates in Gbps: feasible (no link over
    capacity) and max-min fair (every flow crosses a saturated link on which no flow is faster).
    Raises ValueError naming ``flow`` when a flow crosses no link (its rate would be unbounded) and
    ``capacity`` for a negative or non-finite capacity.
    """
    capacity = np.asarray(capacity, dtype=float)
    if np.any(~np.isfinite(capacity)) or np.any(capacity < 0):
        raise ValueError("capacity: link capacities must be finite and >= 0")
    if np.any(np.bincount(flow, minlength=n_flows) == 0):
        raise ValueError("flow: every flow must cross at least one link")
    tol = 1e-9 * max(float(capacity.max(initial=0.0)), 1.0)
    rate = np.zeros(n_flows)
    residual = capacity.copy()
    active = np.ones(n_flows, dtype=bool)
    while active.any():
        on = active[flow]  # (E,) incidences of unfrozen flows
        n_on = np.bincount(link[on], minlength=len(capacity))  # (n_links,) unfrozen flows per link
        used = n_on > 0
        share = np.full(len(capacity), np.inf)
        share[used] = residual[used] / n_on[used]
        inc = share.min()  # every unfrozen flow grows by the tightest link's fair share
        rate[active] += inc
        residual[used] -= inc * n_on[used]
        saturated = used & ((residual <= tol) | (share <= inc + tol))
        residual[saturated] = 0.0
        hit = np.zeros(n_flows, dtype=bool)
        hit[flow[saturated[link]]] = True  # flows crossing a saturated link freeze
        active &= ~hit
    return rate


def connection_rates(paths: Paths, qp_rate: np.ndarray, n_conns: int, *, steering: bool = True) -> np.ndarray:
    """(C,) rate of each connection in Gbps from its QPs' (Q,) rates: their sum when the CCL steers chunks
    toward the faster QP (C4P's dynamic load balancing, ``steering=True``), else ``qps * min`` (every QP
    carries a fixed equal share, so the slowest QP finishes last)."""
    if steering:
        return np.bincount(paths.conn, weights=qp_rate, minlength=n_conns)
    slowest = np.full(n_conns, np.inf)
    np.minimum.at(slowest, paths.conn, qp_rate)
    return slowest * np.bincount(paths.conn, minlength=n_conns)


def allreduce_time(size_bytes: float, n: int, r_min_gbps: float) -> float:
    """Seconds for a ring all-reduce of ``size_bytes`` over ``n`` ranks whose ring edges all run at once,
    the slowest at ``r_min_gbps``: T = 2(n-1) * (S/n) / r_min (card §5; 2(n-1) steps of one S/n chunk)."""
    if not is_int(n) or n < 2:
        raise ValueError(f"n: a ring all-reduce needs at least 2 ranks, got {n!r}")
    if not r_min_gbps > 0:
        raise ValueError(f"r_min_gbps: must be positive, got {r_min_gbps!r}")
    return 2 * (n - 1) * (size_bytes / n) * 8 / (r_min_gbps * 1e9)


def bus_bandwidth(size_bytes: float, seconds: float, n: int) -> float:
    """nccl-tests' all-reduce bus bandwidth in Gbps (doc/PERFORMANCE.md): algbw = S/t, busbw = algbw *
    2(n-1)/n. Comparable to a NIC's line rate (400 Gbps for a bonded 2 x 200 NIC)."""
    if not is_int(n) or n < 2:
        raise ValueError(f"n: a ring all-reduce needs at least 2 ranks, got {n!r}")
    if not seconds > 0:
        raise ValueError(f"seconds: must be positive, got {seconds!r}")
    algbw = size_bytes * 8 / seconds / 1e9
    return algbw * 2 * (n - 1) / n


def job_busbw(conns: Connections, conn_rate: np.ndarray, tenant: int = 0) -> float:
    """Bus bandwidth per NIC (Gbps) of ``tenant``'s ring all-reduce: every rail runs its own ring over the
    same hosts concurrently, and by the identity busbw = r_min (card §5, :func:`allreduce_time` then
    :func:`bus_bandwidth`) it is the rate of the slowest ring edge over all rails. Raises ValueError naming
    ``tenant`` when it has no connection."""
    mine = conns.tenant == tenant
    if not mine.any():
        raise ValueError(f"tenant: no connection belongs to tenant {tenant}")
    return float(conn_rate[mine].min())
