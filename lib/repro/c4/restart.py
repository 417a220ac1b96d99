"""Isolation and restart through torchrun's elastic agent (card §4, "Isolation and restart flow").

:func:`run_with_restart` launches the job with ``torch.distributed.launcher.api.elastic_launch`` (the API behind
``torchrun``; ``max_restarts=1``) while C4D's detector watches from a thread of the launching process. On a finding
the detector plays the scheduler: it writes ``cordon.json`` (each culprit rank's slot replaced by a spare slot,
which carries no fault) and stops the job's processes; the elastic agent sees the failed workers and starts the
group again; each new worker waits for the cordon decision, takes its slot from it and resumes from the last
checkpoint. Only the steps since that checkpoint are lost, and the finished job's parameters equal a straight
run's (a test checks both), because batches depend only on (seed, rank, iteration).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .collective import ITERATION, PID, State
from .detect import Detector, Diagnosis, Thresholds
from .faults import Fault
from .job import JobError, check_config, free_port
from .worker import JobConfig, run_rank

CORDON_WAIT_S = 60.0


def elastic_rank(cfg: JobConfig, fault: Fault | None, run_dir: str, driver_pid: int, ports: list[int]) -> None:
    """A worker under the elastic agent: rank and attempt from its environment (``RANK``,
    ``TORCHELASTIC_RESTART_COUNT``); after a restart it waits for ``cordon.json`` and resumes from the checkpoint.
    Each attempt's process group meets at its own port of ``ports`` (the agent's store keeps the first attempt's
    addresses, which a new group must not read)."""
    rank, attempt = int(os.environ["RANK"]), int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    root = Path(run_dir)
    slots = list(range(cfg.world))
    start = 0
    if attempt > 0:
        t_end = time.monotonic() + CORDON_WAIT_S
        while not (root / "cordon.json").exists() and time.monotonic() < t_end:
            time.sleep(0.05)
        if (root / "cordon.json").exists():
            slots = json.loads((root / "cordon.json").read_text())["slots"]
        if (root / "checkpoint.pt").exists():
            import torch

            start = int(torch.load(root / "checkpoint.pt")["iteration"])
    d = root / f"attempt-{attempt}"
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"  # else a tcp:// group joins the agent's store as a client
    run_rank(rank, slots[rank], cfg, fault, str(d), str(d / "state.bin"), f"tcp://127.0.0.1:{ports[attempt]}",
             driver_pid, start, str(root))


@dataclass
class RestartResult:
    """The restarted job: the ``diagnosis`` that stopped it (``None``: it ran straight), the slots of the second
    attempt, the iteration the job had finished when stopped (``stopped_at``) and the one it resumed from
    (``resumed_from``), the steps lost, the elastic agent's per-rank return values, the phases' seconds
    (``detect_s``: fault onset to finding, ``restart_s``: finding to the first iteration of the new attempt) and
    the final parameters (a list of tensors)."""

    diagnosis: Diagnosis | None
    slots: list[int]
    stopped_at: int
    resumed_from: int
    lost_steps: int
    detect_s: float
    restart_s: float
    wall_s: float
    params: list


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_with_restart(cfg: JobConfig, fault: Fault | None, run_dir: str | os.PathLike | None = None,
                     thresholds: Thresholds | None = None) -> RestartResult:
    """Run ``cfg`` under the elastic agent with ``fault`` injected; isolate and restart once on C4D's first finding
    (see the module's docstring). ``run_dir`` (an empty or new folder; a temporary one, removed afterwards, when
    ``None``) receives the checkpoints, ``cordon.json``, ``final.pt`` and one ``attempt-<n>`` folder of records per
    attempt. Raises :class:`.job.JobError` / :class:`.faults.FaultError` naming a bad setting, and the agent's
    ``ChildFailedError`` when the job fails twice."""
    cfg = check_config(cfg)
    if fault is not None:
        fault.check(cfg.world, cfg.iterations, list(cfg.rings))
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="c4-restart-") as d:
            return _run_with_restart(cfg, fault, Path(d), thresholds)
    root = Path(run_dir)
    if root.exists() and any(root.iterdir()):
        raise JobError("run_dir", f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    return _run_with_restart(cfg, fault, root, thresholds)


def _run_with_restart(cfg: JobConfig, fault: Fault | None, root: Path, thresholds: Thresholds | None
                      ) -> RestartResult:
    import psutil
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    states = []
    for a in range(2):
        (root / f"attempt-{a}").mkdir()
        states.append(State.create(root / f"attempt-{a}" / "state.bin", cfg.world))
    found: list[Diagnosis] = []
    marks: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        det = Detector(root / "attempt-0", states[0], thresholds or Thresholds())
        exited: dict[int, int] = {}
        procs: dict[int, psutil.Process] = {}  # taken when a rank first shows its pid: a reused pid is not ours
        while not done.is_set() and not found:
            for r, pid in enumerate(states[0].a[:, PID].astype(int)):
                if pid > 0 and r not in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        procs[r] = psutil.Process(int(pid))
            dead = {r: int(states[0].a[r, ITERATION] < cfg.iterations - 1)
                    for r, p in procs.items() if not _alive(p)}
            exited = exited or dead  # the first deaths seen: the agent then stops the other ranks itself
            new = det.poll(exited)
            if new:
                d = new[0]
                found.append(d)
                marks["found"] = time.monotonic()
                marks["stopped_at"] = int(states[0].a[:, ITERATION].max())  # the furthest rank's last iteration
                spares = iter(range(cfg.world, 2 * cfg.world))
                slots = [next(spares) if r in d.ranks else r for r in range(cfg.world)]
                tmp = root / "cordon.tmp"
                tmp.write_text(json.dumps({"slots": slots, "diagnosis": d.kind, "ranks": list(d.ranks)}))
                os.replace(tmp, root / "cordon.json")
                for p in procs.values():
                    with contextlib.suppress(psutil.NoSuchProcess):
                        if _alive(p):
                            p.kill()
            time.sleep(0.01)

    port = free_port()
    lc = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=cfg.world, run_id=f"c4-{port}",
                      rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{port}", max_restarts=1,
                      monitor_interval=0.05, start_method="spawn", local_addr="127.0.0.1")
    t0 = time.monotonic()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with _quiet_agent():
            elastic_launch(lc, elastic_rank)(cfg, fault, str(root), os.getpid(), [free_port(), free_port()])
    finally:
        done.set()
        watcher.join()
    import torch

    cordon = json.loads((root / "cordon.json").read_text()) if (root / "cordon.json").exists() else None
    truth = root / "attempt-0" / "truth.json"
    onset = json.loads(truth.read_text())["onset_s"] if truth.exists() else float("nan")
    resumed = _first_iteration(root / "attempt-1")
    restart_s = resumed[1] - marks["found"] if found and resumed else float("nan")
    stopped = marks.get("stopped_at", cfg.iterations - 1)
    return RestartResult(found[0] if found else None, cordon["slots"] if cordon else list(range(cfg.world)),
                         stopped, resumed[0] if resumed else -1, stopped + 1 - resumed[0] if resumed else 0,
                         marks["found"] - onset if found else float("nan"), restart_s, time.monotonic() - t0,
                         torch.load(root / "final.pt"))


@contextlib.contextmanager
def _quiet_agent():
    """Silence the agent's logs of the failure this flow causes on purpose (workers stopped by the detector, the
    others terminated): :class:`RestartResult` reports it. A second failure still raises ``ChildFailedError``."""
    names = ("torch.distributed.elastic", "torch.multiprocessing", "torch.distributed.launcher")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)


def _first_iteration(d: Path) -> tuple[int, float] | None:
    """(iteration, completion time of its first collective) of the first record of rank 0 in ``d``."""
    f = d / "records-0.jsonl"
    if not f.exists() or not f.read_text().strip():
        return None
    rec = json.loads(f.read_text().splitlines()[0])
    return rec["it"], rec["ops"][0][2]
