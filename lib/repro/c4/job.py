"""Launch the monitored job, run C4D's detector beside it, and stop every process when the job ends or a hang is
found (card §8, Simulation A).

The ranks are processes of a ``forkserver`` context that has imported torch once (a rank starts in a fraction of a
second instead of the 2-3 s of a fresh interpreter); they bind to 127.0.0.1 only. :func:`run_job` is the driver:
it polls the detector every ``poll_s`` seconds and, whatever happens, kills and reaps every rank before it
returns, so no process outlives a job.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from .collective import State, ring_orders
from .detect import Detector, Diagnosis, Thresholds, transfer_seconds
from .faults import Fault
from .worker import MODES, JobConfig, agreement_rank, run_rank, time_rank

PER_CORE = 4  # ranks per core this machine hosts (they mostly sleep or wait; card §0 allows 8 on 2 cores)


class JobError(ValueError):
    """A job that cannot run here; ``param`` names the bad setting."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def max_world() -> int:
    """The most ranks this machine hosts: :data:`PER_CORE` per core."""
    return PER_CORE * (os.cpu_count() or 1)


def check_config(cfg: JobConfig) -> JobConfig:
    """``cfg`` with its rings filled in (:func:`.collective.ring_orders`) when it names none; :class:`JobError`
    naming the setting for a world below 2 or above :func:`max_world`, and other values out of range or of the
    wrong type (every count an int, every time and rate a finite number)."""
    def count(name: str, low: int) -> None:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise JobError(name, f"must be an int of at least {low}, got {v!r}")

    def real(name: str, positive: bool = True) -> None:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
                v <= 0 if positive else v < 0):
            raise JobError(name, f"must be a finite number {'above' if positive else 'of at least'} 0, got {v!r}")

    count("world", 2)
    if cfg.world > max_world():
        raise JobError("world", f"{cfg.world} ranks exceed what this machine hosts ({max_world()}: "
                                f"{PER_CORE} per core on {os.cpu_count()} cores)")
    for name, low in (("iterations", 1), ("width", 1), ("checkpoint_every", 1), ("seed", 0)):
        count(name, low)
    for name in ("compute_s", "pg_timeout_s", "lr"):
        real(name)
    real("jitter", positive=False)
    if cfg.mode not in MODES:
        raise JobError("mode", f"unknown mode {cfg.mode!r}; valid: {', '.join(MODES)}")
    if not cfg.rings:
        cfg = replace(cfg, rings=tuple(ring_orders(cfg.world, cfg.seed)))
    for r in cfg.rings:
        if sorted(r) != list(range(cfg.world)):
            raise JobError("rings", f"a ring must order every rank 0..{cfg.world - 1} once, got {r}")
    return cfg


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CTX: mp.context.BaseContext | None = None


def context() -> mp.context.BaseContext:
    """The ``forkserver`` context the ranks start from (torch and the worker imported once)."""
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["torch", "torch.distributed", "repro.c4.worker", "repro.c4.collective"])
    return _CTX


@dataclass
class JobResult:
    """What a job left: the detector's ``diagnoses`` in order, the ``truth`` of the injected fault (its onset time
    and iteration; ``None`` without one), the median iteration time ``iteration_s``, the last iteration every rank
    finished ``iterations_done``, each rank's ``exit_codes`` (``None``: killed by the driver), whether the job
    ``finished``, its wall seconds and run folder."""

    diagnoses: list[Diagnosis]
    truth: dict | None
    iteration_s: float
    iterations_done: int
    exit_codes: list[int | None]
    finished: bool
    wall_s: float
    run_dir: Path
    iteration_times: list[float] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    params: list | None = None  # the final parameters (rank 0's), when the job finished


def run_job(cfg: JobConfig, fault: Fault | None = None, thresholds: Thresholds | None = None,
            run_dir: str | os.PathLike | None = None, *, slots: tuple[int, ...] | None = None,
            start_iteration: int = 0, stop_on_slow: bool = False, deadline_s: float = 120.0,
            poll_s: float = 0.01) -> JobResult:
    """Run the job ``cfg`` with ``fault`` injected, the detector (``thresholds``) watching, until every rank
    finished, a hang or crash is diagnosed (or, with ``stop_on_slow``, any fault), or ``deadline_s`` passed; then
    kill and reap every rank. ``slots[r]`` is the hardware rank ``r`` runs on (default ``r``; a spare slot, e.g.
    ``world``, carries no fault). ``run_dir``: the folder for records and checkpoints (a temporary one, removed
    afterwards, when ``None``). Raises :class:`JobError` or :class:`.faults.FaultError` naming a bad setting.
    The ranks start from a ``forkserver``: a script calling this needs Python's ``if __name__ == "__main__":``
    guard."""
    cfg = check_config(cfg)
    if fault is not None:
        fault.check(cfg.world, cfg.iterations, list(cfg.rings))
    slots = tuple(range(cfg.world)) if slots is None else tuple(slots)
    if len(slots) != cfg.world:
        raise JobError("slots", f"needs one slot per rank ({cfg.world}), got {len(slots)}")
    if not 0 <= start_iteration < cfg.iterations:
        raise JobError("start_iteration", f"must be in 0..{cfg.iterations - 1}, got {start_iteration}")
    tmp = run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="c4-job-")) if tmp else Path(run_dir)
    try:
        return _drive(cfg, fault, thresholds, run_dir, slots, start_iteration, stop_on_slow, deadline_s, poll_s)
    finally:
        if tmp:
            shutil.rmtree(run_dir, ignore_errors=True)


def _drive(cfg: JobConfig, fault: Fault | None, thresholds: Thresholds | None, run_dir: Path,
           slots: tuple[int, ...], start_iteration: int, stop_on_slow: bool, deadline_s: float,
           poll_s: float) -> JobResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in run_dir.glob("records-*.jsonl"):
        p.unlink()
    (run_dir / "truth.json").unlink(missing_ok=True)
    state = State.create(run_dir / "state.bin", cfg.world)
    ctx = context()
    init = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=run_rank, args=(r, slots[r], cfg, fault, str(run_dir), str(state.path), init,
                                                os.getpid(), start_iteration), daemon=True)
             for r in range(cfg.world)]
    det = Detector(run_dir, state, thresholds or Thresholds())
    diagnoses: list[Diagnosis] = []
    t0 = time.monotonic()
    try:
        for p in procs:
            p.start()
        while True:
            exited = {r: p.exitcode for r, p in enumerate(procs) if p.exitcode is not None}
            if cfg.mode == "monitored":
                diagnoses += det.poll(exited)
            if len(exited) == cfg.world and not any(exited.values()):
                det.poll(exited)
                break
            if det.hung or (diagnoses and stop_on_slow) or time.monotonic() - t0 > deadline_s:
                break
            if cfg.mode != "monitored" and any(exited.values()):
                break
            time.sleep(poll_s)
    finally:
        codes = stop(procs)
    truth_file, final = run_dir / "truth.json", run_dir / "final.pt"
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else None
    params = None
    if final.exists():
        import torch

        params = torch.load(final)
    return JobResult(diagnoses, truth, det.median_iteration_s(), det.done, codes, all(c == 0 for c in codes),
                     time.monotonic() - t0, run_dir, list(det.iter_times), [p.pid for p in procs], params)


def stop(procs: list) -> list[int | None]:
    """Kill every process still running (SIGKILL), reap all; their exit codes (``None`` for the killed)."""
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=10)
    return codes


def _run_ranks(target, world: int, args, timeout_s: float) -> list[int | None]:
    """Start ``world`` ranks of ``target`` (``args(rank, init_method)`` its arguments), wait up to ``timeout_s``
    for each, then kill and reap what is left; their exit codes."""
    init = f"tcp://127.0.0.1:{free_port()}"
    procs = [context().Process(target=target, args=args(r, init), daemon=True) for r in range(world)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=timeout_s)
    finally:
        codes = stop(procs)
    return codes


def time_allreduce(cfg: JobConfig, rounds: int = 30) -> list[dict]:
    """The monitor's overhead (:func:`.worker.time_rank`): per round, the seconds of one all-reduce of the job's
    gradient as the monitored ring, the unmonitored ring and gloo's ``all_reduce`` (``variant``: ``monitored``,
    ``ring``, ``native``), in one job of ``cfg.world`` ranks. Raises :class:`JobError` naming a bad setting."""
    cfg = check_config(cfg)
    if not isinstance(rounds, int) or rounds < 1:
        raise JobError("rounds", f"must be an int of at least 1, got {rounds!r}")
    with tempfile.TemporaryDirectory(prefix="c4-overhead-") as d:
        out = Path(d) / "rows.json"
        State.create(Path(d) / "state.bin", cfg.world)
        codes = _run_ranks(time_rank, cfg.world, lambda r, init: (r, cfg, init, rounds, str(out), os.getpid()),
                           timeout_s=60 + rounds * 5)
        if codes != [0] * cfg.world or not out.exists():
            raise RuntimeError(f"the overhead job failed: exit codes {codes}")
        return [{"round": r, "variant": v, "seconds": s} for r, v, s in json.loads(out.read_text())]


def allreduce_agreement(world: int = 4, numel: int = 1001) -> list[list[float]]:
    """The monitored ring against gloo's ``all_reduce`` on the same seeded tensors: per rank, per ring of
    :func:`.collective.ring_orders`, the largest absolute difference (float32 sums in another order: about 1e-6).
    Raises :class:`JobError` naming ``world`` or ``numel`` out of range."""
    check_config(JobConfig(world=world))
    if not isinstance(numel, int) or numel < world:
        raise JobError("numel", f"needs at least one value per rank ({world}), got {numel!r}")
    with tempfile.TemporaryDirectory(prefix="c4-agree-") as d:
        codes = _run_ranks(agreement_rank, world, lambda r, init: (r, world, init, numel, f"{d}/diff", os.getpid()),
                           timeout_s=60)
        if codes != [0] * world:
            raise RuntimeError(f"the agreement job failed: exit codes {codes}")
        return [json.loads(Path(f"{d}/diff-{r}.json").read_text()) for r in range(world)]


def read_transfers(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every message the monitor recorded in ``run_dir`` (one row each): iteration, seq, src, dst, bytes and the
    transfer seconds ``t_recv_done - max(t_send_post, t_recv_post)`` (the latency matrix's entries)."""
    rows = []
    for f in sorted(Path(run_dir).glob("records-*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            rows += [[rec["it"], *x] for x in rec["xfers"]]
    d = pd.DataFrame(rows, columns=["iteration", "seq", "src", "dst", "bytes", "t_send", "t_rpost", "t_rdone"])
    d["transfer_s"] = transfer_seconds(d["t_send"].to_numpy(), d["t_rpost"].to_numpy(), d["t_rdone"].to_numpy())
    return d.astype({"src": int, "dst": int, "seq": int, "bytes": int})
