"""C4D's detector: finds and localises faults from what the collective layer records, never from the injected label
(card §4 "Detection logic", rules 1-4, and §8).

It reads the records the ranks append (:class:`.collective.Monitor`), the live counters in the shared
:class:`.collective.State`, and which processes have exited (what a node agent sees). Per finished iteration:

* **slow rank** (non-communication slow): homogeneous ranks launch each iteration's first collective at about
  the same time; a rank that launches last, later than the ranks' median launch by more than ``lateness`` median
  iterations, in each of the last ``persist`` iterations is a straggler;
* **slow connection** (communication slow): the latency matrix ``M[src, dst]``, the median transfer time
  ``t_recv_done - max(t_send_post, t_recv_post)`` of each connection over the last ``window`` iterations; a cell
  is anomalous above ``latency_factor`` times the median cell (and ``latency_floor_s`` above it); an anomalous
  row is a slow *sender* port, a column a slow *receiver* port, a lone cell one path; reported when the same
  finding holds for ``persist`` iterations in a row.

And at every poll, for hangs: no rank has made progress for ``hang_factor`` median iterations (ranks that ran
their last iteration excepted):

* some rank launched fewer collectives than the others -> **non-communication hang**, those ranks the culprits;
* every rank launched the same collective and it is unfinished -> **communication hang**, the connection whose
  posted messages exceed the delivered ones the culprit;
* a process exited -> **crash**, the culprit the process that exited without its collective layer reporting a
  broken connection (the survivors report one).

The thresholds are :class:`Thresholds`; their defaults were chosen on calibration runs that the evaluation does
not use (:mod:`.trials`).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .collective import ERROR_PEER, FINISHED, LAUNCHED, PROGRESS, State


@dataclass(frozen=True)
class Thresholds:
    """The detector's parameters (see the module's docstring). Units: ``lateness`` and ``hang_factor`` in median
    iteration times, ``latency_factor`` a ratio, ``latency_floor_s`` seconds, ``window`` and ``persist``
    iterations. Raises ``ValueError`` naming a parameter out of its range."""

    lateness: float = 0.1
    persist: int = 3
    window: int = 2
    latency_factor: float = 3.0
    latency_floor_s: float = 0.0005
    hang_factor: float = 1.5
    min_history: int = 3

    def __post_init__(self) -> None:
        for name in ("lateness", "latency_floor_s", "hang_factor", "latency_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: must be a finite positive number, got {v!r}")
        if not self.latency_factor > 1:
            raise ValueError(f"latency_factor: must be above 1, got {self.latency_factor!r}")
        for name in ("persist", "window", "min_history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name}: must be an int of at least 1, got {v!r}")


@dataclass(frozen=True)
class Diagnosis:
    """A finding: ``kind`` (a fault kind of :mod:`.faults`, or ``"unknown_hang"`` / ``"slow_comm"`` where the
    pattern fits no rule), the culprit ``ranks``, the connection ``(src, dst)`` where one is named, the last
    finished ``iteration`` when it was made and the monotonic time ``t``."""

    kind: str
    ranks: tuple[int, ...]
    connection: tuple[int, int] | None
    iteration: int
    t: float


@dataclass
class Detector:
    """The C4D master of one job (see the module's docstring): :meth:`poll` reads what arrived and returns the new
    diagnoses. ``reset()`` forgets the evidence (after a raised alarm, as an isolated job would start afresh)."""

    run_dir: Path
    state: State
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.world = self.state.world
        self._offsets = [0] * self.world
        self._partial: list[dict[int, dict]] = [{} for _ in range(self.world)]
        self.iter_end: dict[int, float] = {}
        self.iter_times: list[float] = []
        self.done = -1  # last iteration whose records every rank delivered
        self.hung = False
        self.reset()

    def reset(self) -> None:
        self._late: deque[int] = deque(maxlen=self.thresholds.persist)
        self._cells: deque[np.ndarray] = deque(maxlen=self.thresholds.window)
        self._findings: deque[tuple] = deque(maxlen=self.thresholds.persist)
        self.matrix: np.ndarray | None = None

    # ---------------------------------------------------------------------------------------------- reading
    def _read(self) -> None:
        for r in range(self.world):
            p = self.run_dir / f"records-{r}.jsonl"
            if not p.exists():
                continue
            with open(p) as f:
                f.seek(self._offsets[r])
                chunk = f.read()
            end = chunk.rfind("\n") + 1  # complete lines only
            self._offsets[r] += len(chunk[:end].encode())
            for line in chunk[:end].splitlines():
                rec = json.loads(line)
                self._partial[r][rec["it"]] = rec

    def median_iteration_s(self) -> float:
        """The median iteration time so far (seconds; NaN before two iterations finished)."""
        return float(np.median(self.iter_times)) if self.iter_times else float("nan")

    # --------------------------------------------------------------------------------------------- one poll
    def poll(self, exited: dict[int, int] | None = None, now: float | None = None) -> list[Diagnosis]:
        """Read new records and counters; ``exited`` maps ranks whose process has exited to their exit codes.
        Returns the diagnoses made by this poll (one per finished iteration at most, plus a hang)."""
        now = time.monotonic() if now is None else now
        self._read()
        out: list[Diagnosis] = []
        while all(self.done + 1 in p for p in self._partial):
            self.done += 1
            recs = [p.pop(self.done) for p in self._partial]
            d = self._iteration(self.done, recs)
            if d is not None:
                out.append(d)
        if not self.hung:
            d = self._hang(exited or {}, now)
            if d is not None:
                self.hung = True
                out.append(d)
        return out

    def _iteration(self, it: int, recs: list[dict]) -> Diagnosis | None:
        th = self.thresholds
        ends = [max(o[2] for o in r["ops"]) for r in recs]
        self.iter_end[it] = float(np.median(ends))
        if it - 1 in self.iter_end:
            self.iter_times.append(self.iter_end[it] - self.iter_end.pop(it - 1))
        if len(self.iter_times) < th.min_history:
            return None
        med = self.median_iteration_s()
        # rule 3, non-communication slow: who launched the iteration's first collective last, and by how much
        launch = np.array([r["ops"][0][1] for r in recs])
        late = (launch - np.median(launch)) / med
        self._late.append(int(np.argmax(late)) if late.max() > th.lateness else -1)
        # rule 4, communication slow: the latency matrix over the window
        x = np.array([t for r in recs for t in r["xfers"]])  # (messages, 7)
        self._cells.append(x)
        self.matrix = latency_matrix(np.concatenate(list(self._cells)), self.world)
        finding = classify_matrix(self.matrix, th.latency_factor, th.latency_floor_s)
        self._findings.append(finding)
        if len(self._findings) == th.persist and finding is not None and len(set(self._findings)) == 1:
            self.reset()
            kind, ranks, conn = finding
            return Diagnosis(kind, ranks, conn, it, time.monotonic())
        if len(self._late) == th.persist and self._late[0] >= 0 and len(set(self._late)) == 1:
            r = self._late[0]
            self.reset()
            return Diagnosis("slow_rank", (r,), None, it, time.monotonic())
        return None

    def _hang(self, exited: dict[int, int], now: float) -> Diagnosis | None:
        a = self.state.a
        dead = sorted(r for r, code in exited.items() if code != 0)
        if dead:
            quiet = [r for r in dead if a[r, ERROR_PEER] < 0]  # died without reporting a broken connection
            return Diagnosis("crash", tuple(quiet or dead[:1]), None, self.done, now)
        if len(self.iter_times) < self.thresholds.min_history or a[:, FINISHED].all():
            return None
        if now - a[:, PROGRESS].max() <= self.thresholds.hang_factor * self.median_iteration_s():
            return None
        return classify_hang(self.state, self.done, now)


def transfer_seconds(t_send_post: np.ndarray, t_recv_post: np.ndarray, t_recv_done: np.ndarray) -> np.ndarray:
    """A message's transfer time: from the moment both sides had posted it to its arrival,
    ``t_recv_done - max(t_send_post, t_recv_post)`` (seconds; a late sender or a late receiver is not the link's
    fault)."""
    return t_recv_done - np.maximum(t_send_post, t_recv_post)


def latency_matrix(x: np.ndarray, world: int) -> np.ndarray:
    """``(world, world)`` median transfer seconds per connection ``[src, dst]`` from transfer records ``x``
    (``(messages, 7)``: seq, src, dst, bytes, t_send_post, t_recv_post, t_recv_done); NaN where no message."""
    m = np.full((world, world), np.nan)
    if len(x) == 0:
        return m
    t = transfer_seconds(x[:, 4], x[:, 5], x[:, 6])
    src, dst = x[:, 1].astype(int), x[:, 2].astype(int)
    for s, d in set(zip(src.tolist(), dst.tolist(), strict=True)):
        m[s, d] = np.median(t[(src == s) & (dst == d)])
    return m


def classify_matrix(m: np.ndarray, factor: float, floor_s: float) -> tuple | None:
    """Card §4 rule 4 on a latency matrix: ``None`` when no cell is anomalous; else ``(kind, ranks, connection)``:
    a row with at least two thirds (and two) of its measured cells anomalous is ``slow_send`` at that row, a column
    likewise ``slow_recv``, a single anomalous cell ``slow_pair``, anything else ``slow_comm``."""
    base = np.nanmedian(m)
    bad = (m > factor * base) & (m - base > floor_s)  # NaN compares False
    if not bad.any():
        return None
    seen = ~np.isnan(m)

    def lines(axis: int) -> list[int]:
        n_bad, n_seen = bad.sum(axis), seen.sum(axis)
        return [i for i in range(len(m)) if n_bad[i] >= 2 and n_bad[i] >= 2 / 3 * n_seen[i]]

    rows, cols = lines(1), lines(0)
    if len(rows) == 1 and not cols:
        return ("slow_send", (rows[0],), None)
    if len(cols) == 1 and not rows:
        return ("slow_recv", (cols[0],), None)
    if bad.sum() == 1 and not rows and not cols:
        s, d = (int(i) for i in np.argwhere(bad)[0])
        return ("slow_pair", (s, d), (s, d))
    return ("slow_comm", tuple(sorted({int(i) for i in np.argwhere(bad).ravel()})), None)


def classify_hang(state: State, iteration: int, now: float) -> Diagnosis:
    """Card §4 rules 1-2 from the live counters of a stalled job: unequal launched sequence numbers ->
    ``noncomm_hang`` at the ranks behind; equal and unfinished -> ``comm_hang`` at the connection with more
    messages posted than delivered; else ``unknown_hang``."""
    a = state.a
    launched = a[:, LAUNCHED]
    if launched.min() < launched.max():
        behind = tuple(int(r) for r in np.flatnonzero(launched == launched.min()))
        return Diagnosis("noncomm_hang", behind, None, iteration, now)
    lost = state.sent() - state.delivered().T  # [src, dst]: posted by src, not delivered at dst
    pairs = [(int(s), int(d)) for s, d in np.argwhere(lost > 0)]
    if len(pairs) == 1:
        return Diagnosis("comm_hang", pairs[0], pairs[0], iteration, now)
    return Diagnosis("unknown_hang", tuple(sorted({r for p in pairs for r in p})), None, iteration, now)


NCCL_TIMEOUT_S = 600.0  # PyTorch's ProcessGroupNCCL default (torch.distributed.init_process_group's docs: 10 minutes)
GLOO_TIMEOUT_S = 1800.0  # torch.distributed.constants.default_pg_timeout: 30 minutes for gloo and other backends
TIMEOUTS = {"PyTorch ProcessGroupNCCL default (10 min)": NCCL_TIMEOUT_S,
            "PyTorch gloo and other backends default (30 min)": GLOO_TIMEOUT_S}


@dataclass(frozen=True)
class Watchdog:
    """The baseline for hangs: a collective library's timeout and nothing else (:data:`TIMEOUTS`: the defaults of
    common stacks). It fires ``timeout_s`` after the job stops making progress and names no class and no culprit;
    it never fires for a slow job that still progresses. A crash needs no watchdog: the launcher sees the process
    exit (torchrun's agent polls its workers every 0.1 s by default), and gloo's peers fail at once; what C4D adds
    there is the culprit. Raises ``ValueError`` naming ``timeout_s`` unless it is a finite positive number."""

    timeout_s: float

    def __post_init__(self) -> None:
        if isinstance(self.timeout_s, bool) or not (isinstance(self.timeout_s, int | float)
                                                    and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s: must be a finite positive number of seconds, got {self.timeout_s!r}")

    def delay_s(self, kind: str, stall_s: float = 0.0) -> float:
        """Seconds from the fault's onset to the watchdog's alarm: ``stall_s + timeout_s`` for the two hangs
        (``stall_s``: onset to the job's last progress), infinity for the slow faults and for a crash (not its
        case: see the class)."""
        return stall_s + self.timeout_s if kind in ("noncomm_hang", "comm_hang") else math.inf
