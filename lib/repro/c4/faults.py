"""Faults injected below C4D's monitor (card §8, Simulation A), one per trial.

Each fault is bound to a rank's *slot* (its "hardware"): after isolation the rank is re-hosted on a spare slot,
which is healthy, so the restarted job runs without the fault. The monitor never sees a :class:`Fault`; only the
evaluation reads it.

=================  ========  ==========================================================================================
kind               class     what is injected (from iteration ``iteration`` on)
=================  ========  ==========================================================================================
``slow_rank``      non-comm  the rank's compute takes ``factor`` (1.3) times as long: a straggler GPU (it stands
                             out against the ranks' median launch; with 2 ranks the median lies halfway)
``slow_send``      comm      every message the rank sends is delayed by ``delay_s`` after the monitor stamped it:
                             a slow transmit port (a *row* of the latency matrix)
``slow_recv``      comm      every message the rank receives is delayed by ``delay_s`` before the monitor sees it:
                             a slow receive port (a *column*)
``slow_pair``      comm      messages from the rank to ``peer`` only are delayed: one bad path (a *cell*)
``noncomm_hang``   non-comm  the rank stops before launching its next collective (a GPU stuck in compute)
``comm_hang``      comm      the connection rank -> ``peer`` stops delivering: messages are posted, never arrive
``crash``          -         the rank's process dies (SIGKILL)
=================  ========  ==========================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("slow_rank", "slow_send", "slow_recv", "slow_pair", "noncomm_hang", "comm_hang", "crash")
NEEDS_PEER = ("slow_pair", "comm_hang")
HANGS = ("noncomm_hang", "comm_hang", "crash")


class FaultError(ValueError):
    """A fault that cannot be injected into the job; ``param`` names the bad field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` (:data:`KINDS`) at slot ``rank`` from iteration ``iteration`` on; ``peer`` the
    other end for ``slow_pair`` and ``comm_hang`` (-1 otherwise); ``factor`` the compute slow-down of
    ``slow_rank``; ``delay_s`` the extra seconds per message of the slow connections."""

    kind: str
    rank: int
    iteration: int
    peer: int = -1
    factor: float = 1.3
    delay_s: float = 0.002

    def check(self, world: int, iterations: int, rings: list[tuple[int, ...]] | None = None) -> Fault:
        """``self`` when it can be injected into a job of ``world`` ranks and ``iterations`` iterations whose rings
        are ``rings``; :class:`FaultError` naming the field else (a rank or iteration that does not exist, a peer
        for a kind without one, a pair no ring connects)."""
        if self.kind not in KINDS:
            raise FaultError("kind", f"unknown fault {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind in ("slow_send", "slow_recv", "slow_pair") and world < 3:
            raise FaultError("kind", f"{self.kind} needs a world of at least 3: with {world} ranks each row and "
                                     "column of the latency matrix has one cell, so a port and a path look alike")
        for name in ("rank", "iteration", "peer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise FaultError(name, f"must be an int, got {v!r}")
        if not 0 <= self.rank < world:
            raise FaultError("rank", f"rank {self.rank} does not exist in a world of {world}")
        if not 0 <= self.iteration < iterations:
            raise FaultError("iteration", f"iteration {self.iteration} does not exist in a job of {iterations}")
        if self.kind in NEEDS_PEER:
            if not 0 <= self.peer < world or self.peer == self.rank:
                raise FaultError("peer", f"{self.kind} needs a peer in 0..{world - 1} other than rank {self.rank}, "
                                         f"got {self.peer}")
            if rings is not None and not any(_sends_to(r, self.rank, self.peer) for r in rings):
                raise FaultError("peer", f"no ring sends from {self.rank} to {self.peer}")
        elif self.peer != -1:
            raise FaultError("peer", f"{self.kind} takes no peer, got {self.peer}")
        if not (isinstance(self.factor, int | float) and math.isfinite(self.factor) and self.factor > 1):
            raise FaultError("factor", f"must be a finite number above 1, got {self.factor!r}")
        if not (isinstance(self.delay_s, int | float) and math.isfinite(self.delay_s) and self.delay_s > 0):
            raise FaultError("delay_s", f"must be a finite number of seconds above 0, got {self.delay_s!r}")
        return self

    def active(self, slot: int, iteration: int) -> bool:
        """Whether the fault acts on ``slot`` at ``iteration``."""
        return slot == self.rank and iteration >= self.iteration


def _sends_to(ring: tuple[int, ...], src: int, dst: int) -> bool:
    i = ring.index(src)
    return ring[(i + 1) % len(ring)] == dst


def random_fault(kind: str, world: int, first: int, last: int, rings: list[tuple[int, ...]],
                 rng: np.random.Generator, **params) -> Fault:
    """A ``kind`` fault at a uniformly random rank, iteration in ``[first, last]`` and (where the kind has one)
    a peer that some ring sends to from that rank."""
    rank = int(rng.integers(world))
    peer = -1
    if kind in NEEDS_PEER:
        peers = sorted({r[(r.index(rank) + 1) % len(r)] for r in rings})
        peer = int(rng.choice(peers))
    return Fault(kind, rank, int(rng.integers(first, last + 1)), peer, **params).check(world, last + 1, rings)
