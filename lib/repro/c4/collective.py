"""A monitored collective layer: ring all-reduce over point-to-point sends and receives, recording what a collective
library can see (C4D's three layers, card §4).

* **communicator**: the world and the ring orders (:func:`ring_orders`: several rings, so each rank sends to
  several peers and the latency matrix has more than one cell per row, card §8);
* **operation**: per collective and rank, the sequence number and its launch and completion times;
* **transport**: per message (one ring step on one connection) the bytes, the sender's post time (carried in the
  message's header), the receiver's post and completion times; and live counters a node agent reads while the rank
  is blocked: launched/completed sequence numbers, last progress, which peer the rank waits on, messages posted
  per connection and messages delivered per connection.

The live counters sit in a memory-mapped file (:class:`State`), one row per rank, each row written by its rank
only. Records of finished iterations are appended as JSON lines to ``records-<rank>.jsonl``. Times are
``time.monotonic()`` seconds: one clock for every process of a host (across hosts a CCL needs synchronised clocks;
C4 stamps on the device).

Faults are injected *below* the monitor by a :class:`Transport` (:mod:`.faults`): the monitor stamps a message as
posted, then the transport delays or drops it, as a slow port or a broken link would.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .faults import Fault

# columns of a rank's row in the shared state, then ``sent[world]`` and ``delivered[world]``
LAUNCHED, COMPLETED, PROGRESS, WAIT_PEER, WAIT_SINCE, ERROR_PEER, PID, ITERATION, FINISHED = range(9)
FIXED = 9


def ring_orders(world: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Ring orders (each a permutation of ``range(world)`` starting at 0, rank ``ring[i]`` sending to
    ``ring[i + 1]``) that together send along every ordered pair of ranks: the identity ring and its reverse,
    then seeded random rings, each chosen greedily to cover the most pairs not yet covered.

    Raises ``ValueError`` for ``world`` < 2. ``world`` = 4 gives 4 rings (12 ordered pairs, 4 per ring)."""
    if world < 2:
        raise ValueError(f"world: needs at least 2 ranks, got {world}")
    rings = [tuple(range(world))]
    if world > 2:
        rings.append((0, *range(world - 1, 0, -1)))
    covered = {p for r in rings for p in _pairs(r)}
    rng = np.random.default_rng(seed)
    while len(covered) < world * (world - 1):
        cands = [(0, *(1 + rng.permutation(world - 1))) for _ in range(64)]
        best = max(cands, key=lambda r: len(set(_pairs(r)) - covered))
        rings.append(tuple(int(x) for x in best))
        covered |= set(_pairs(best))
    return rings


def _pairs(ring: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


class State:
    """The live counters of every rank: a ``(world, 9 + 2 * world)`` float64 array (:data:`LAUNCHED` ...
    :data:`FINISHED`, then messages posted to each peer, then messages delivered from each peer) in a file mapped
    into every process (the page cache shares it; nothing is read from disk).
    ``State.create(path, world)`` makes it (the driver), ``State(path, world)`` maps it (a rank)."""

    def __init__(self, path: str | os.PathLike, world: int) -> None:
        self.path, self.world = Path(path), world
        self.a = np.memmap(self.path, dtype=np.float64, mode="r+", shape=(world, FIXED + 2 * world))

    @classmethod
    def create(cls, path: str | os.PathLike, world: int) -> State:
        a = np.full((world, FIXED + 2 * world), 0.0)
        a[:, [WAIT_PEER, ERROR_PEER, LAUNCHED, COMPLETED, ITERATION]] = -1
        a.tofile(path)
        return cls(path, world)

    def sent(self) -> np.ndarray:
        """``(world, world)``: messages rank ``i`` posted to rank ``j``."""
        return self.a[:, FIXED:FIXED + self.world]

    def delivered(self) -> np.ndarray:
        """``(world, world)``: messages rank ``i`` received from rank ``j``."""
        return self.a[:, FIXED + self.world:]


class Monitor:
    """A rank's monitor: updates its row of the :class:`State` and buffers the records of the running iteration,
    appended to ``<run_dir>/records-<rank>.jsonl`` by :meth:`flush`. ``enabled=False`` keeps the same code path
    but records nothing (the unmonitored ring of the overhead measurement)."""

    def __init__(self, rank: int, world: int, run_dir: str | os.PathLike | None, state: State | None,
                 enabled: bool = True) -> None:
        self.rank, self.world, self.enabled = rank, world, enabled and state is not None
        self.row = state.a[rank] if self.enabled else None
        self.seq = -1
        self.ops: list[list[float]] = []
        self.xfers: list[list[float]] = []
        self.file = open(Path(run_dir) / f"records-{rank}.jsonl", "a") if self.enabled else None  # noqa: SIM115
        self.header = self.enabled  # an unmonitored ring sends bare chunks
        if self.enabled:
            self.row[PID] = os.getpid()
            self.row[PROGRESS] = time.monotonic()

    def launch(self) -> None:
        self.seq += 1
        if self.enabled:
            t = time.monotonic()
            self.ops.append([self.seq, t, float("nan")])
            self.row[LAUNCHED] = self.seq

    def complete(self) -> None:
        if self.enabled:
            t = time.monotonic()
            self.ops[-1][2] = t
            self.row[COMPLETED] = self.seq
            self.row[PROGRESS] = t

    def posted(self, peer: int) -> float:
        t = time.monotonic()
        if self.enabled:
            self.row[FIXED + peer] += 1
        return t

    def waiting(self, peer: int) -> None:
        if self.enabled:
            self.row[WAIT_SINCE] = time.monotonic()
            self.row[WAIT_PEER] = peer

    def delivered(self, src: int, nbytes: int, t_send: float, t_rpost: float) -> None:
        if self.enabled:
            t = time.monotonic()
            self.row[FIXED + self.world + src] += 1
            self.row[WAIT_PEER] = -1
            self.row[PROGRESS] = t
            self.xfers.append([self.seq, src, self.rank, nbytes, t_send, t_rpost, t])

    def finished(self) -> None:
        """The rank has run its last iteration: no progress from here on is not a hang."""
        if self.enabled:
            self.row[FINISHED] = 1

    def error(self, peer: int) -> None:
        if self.enabled:
            self.row[ERROR_PEER] = peer

    def flush(self, iteration: int) -> None:
        """Append the iteration's records as one JSON line: ``{"it", "ops": [[seq, t_launch, t_complete]],
        "xfers": [[seq, src, dst, bytes, t_send_post, t_recv_post, t_recv_done]]}``."""
        if self.enabled:
            self.file.write(json.dumps({"it": iteration, "ops": self.ops, "xfers": self.xfers}) + "\n")
            self.file.flush()
            self.row[ITERATION] = iteration
            self.ops, self.xfers = [], []


@dataclass
class Transport:
    """Point-to-point sends and receives with the faults of :mod:`.faults` injected below the monitor: ``slot`` is
    the hardware the rank runs on (a spare slot carries no fault)."""

    rank: int
    slot: int
    fault: Fault | None = None
    iteration: int = 0

    def _on(self, *kinds: str) -> bool:
        f = self.fault
        return f is not None and f.kind in kinds and f.active(self.slot, self.iteration)

    def send_delay(self, dst: int) -> float:
        """Seconds a message to ``dst`` is held back after the monitor stamped it (a slow port or path)."""
        f = self.fault
        return f.delay_s if self._on("slow_send") or (self._on("slow_pair") and dst == f.peer) else 0.0

    def isend(self, buf: torch.Tensor, dst: int):
        """Post ``buf`` to ``dst``; ``None`` when the connection drops it (posted, never delivered)."""
        if self._on("comm_hang") and dst == self.fault.peer:
            return None
        return dist.isend(buf, dst)

    def after_recv(self) -> None:
        """Hold a received message back before the monitor sees it (a slow receive port)."""
        if self._on("slow_recv"):
            time.sleep(self.fault.delay_s)


def _header(t: float) -> torch.Tensor:
    return torch.tensor([t], dtype=torch.float64).view(torch.float32)  # 8 bytes as two float32


def ring_allreduce(x: torch.Tensor, ring: tuple[int, ...], monitor: Monitor, transport: Transport) -> torch.Tensor:
    """Sum ``x`` (1-D float32, the same shape on every rank) over the ranks in place, by the ring algorithm:
    ``n - 1`` reduce-scatter steps, then ``n - 1`` all-gather steps, each step sending one of ``n`` chunks to the
    next rank of ``ring`` while receiving one from the previous (``2 (n - 1) / n`` of ``x``'s bytes sent per rank,
    the nccl-tests bus-bandwidth factor). A monitored ring's messages carry the sender's post time in an 8-byte
    header; an unmonitored one (``monitor.enabled`` False) sends bare chunks. Returns ``x``. Raises ``ValueError``
    for ``x`` that is not 1-D float32 and what ``torch.distributed`` raises (a closed connection:
    ``RuntimeError``), after the monitor noted the peer.

    A slow send port or path (:meth:`Transport.send_delay`) is emulated on the rank's one thread: its message is
    held until the rank's own receive of the step is in, then ``delay_s`` more, so the cell it slows carries the
    delay plus that wait (a fraction of a millisecond here); the receive itself is stamped when it arrives."""
    if x.dim() != 1 or x.dtype != torch.float32:
        raise ValueError(f"x: needs a 1-D float32 tensor, got {x.dim()}-D {x.dtype}")
    n = len(ring)
    pos = ring.index(transport.rank)
    nxt, prv = ring[(pos + 1) % n], ring[(pos - 1) % n]
    chunks = list(torch.tensor_split(x, n))  # views into x
    width = max(c.numel() for c in chunks)
    extra = 2 if monitor.header else 0  # the header: one float64 as two float32
    inbox = torch.empty(width + extra)
    monitor.launch()
    for step in range(2 * (n - 1)):
        gather = step >= n - 1
        s = step - (n - 1) if gather else step
        send_i, recv_i = ((pos - s + 1) % n, (pos - s) % n) if gather else ((pos - s) % n, (pos - s - 1) % n)
        m_recv = chunks[recv_i].numel()
        rbuf = inbox[:m_recv + extra]
        t_rpost = time.monotonic()
        delay = transport.send_delay(nxt)
        try:
            rreq = dist.irecv(rbuf, prv)
            t_post = monitor.posted(nxt)
            out = torch.cat([chunks[send_i], _header(t_post)]) if extra else chunks[send_i]
            sreq = None if delay else transport.isend(out, nxt)
            monitor.waiting(prv)
            rreq.wait()
            transport.after_recv()
            if extra:
                monitor.delivered(prv, 4 * m_recv, float(rbuf[m_recv:].clone().view(torch.float64)[0]), t_rpost)
            if delay:
                time.sleep(delay)
                sreq = transport.isend(out, nxt)
        except RuntimeError:
            monitor.error(prv)
            raise
        if gather:
            chunks[recv_i].copy_(rbuf[:m_recv])
        else:
            chunks[recv_i].add_(rbuf[:m_recv])
        if sreq is not None:
            try:
                sreq.wait()
            except RuntimeError:
                monitor.error(nxt)
                raise
    monitor.complete()
    return x
