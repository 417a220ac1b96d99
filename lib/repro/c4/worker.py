"""One rank of the monitored data-parallel job (card §8, Simulation A).

Each iteration: a forward and backward pass of a small MLP on the rank's own seeded batch, then the rank's share of
an accelerator's compute emulated by a sleep of ``compute_s`` with log-normal jitter (the slow-rank fault stretches
it), then the gradient's all-reduce, bucket ``b`` over ring ``b`` (:func:`.collective.ring_allreduce`, or gloo's
own ``all_reduce`` for the ``native`` mode), then an SGD step on the mean gradient. Rank 0 writes a checkpoint
every ``checkpoint_every`` iterations. Batches depend only on (seed, rank, iteration), so a job restarted from a
checkpoint takes the same steps as a straight run.

The worker exits when the driver that started it is gone (a thread checks every half second), so no process
outlives its trial.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from .faults import Fault

MODES = ("monitored", "ring", "native")


@dataclass(frozen=True)
class JobConfig:
    """The data-parallel job: ``world`` ranks, ``iterations`` iterations; ``compute_s`` seconds of emulated
    accelerator compute per iteration with log-normal jitter ``jitter`` (sigma of the log); a gradient of
    ``params`` float32 values (the MLP ``width``: ``params = 2 * 32 * width + width + 32``); ``mode``
    (:data:`MODES`); the process group's timeout (the watchdog of the baseline) ``pg_timeout_s``."""

    world: int = 4
    iterations: int = 40
    compute_s: float = 0.04
    jitter: float = 0.05
    width: int = 256
    lr: float = 0.05
    checkpoint_every: int = 5
    seed: int = 0
    mode: str = "monitored"
    pg_timeout_s: float = 1800.0
    rings: tuple[tuple[int, ...], ...] = field(default=())

    @property
    def params(self) -> int:
        return 2 * 32 * self.width + self.width + 32


def _model(cfg: JobConfig):
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    return torch.nn.Sequential(torch.nn.Linear(32, cfg.width), torch.nn.Tanh(), torch.nn.Linear(cfg.width, 32)), g


def _init(model, g) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def batch(cfg: JobConfig, rank: int, iteration: int):
    """The rank's batch at ``iteration``: 64 inputs of 32 features and their regression targets (a fixed random
    linear map plus noise), seeded by (seed, rank, iteration) only."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 10_007 + iteration)
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(cfg.seed)) / 32 ** 0.5
    x = torch.randn(64, 32, generator=g)
    return x, torch.tanh(x @ w) + 0.05 * torch.randn(64, 32, generator=g)


def _watch_driver(driver_pid: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            os._exit(3)


def _join(rank: int, world: int, init_method: str, driver_pid: int, timeout_s: float = 1800.0) -> None:
    """A rank's start: one torch thread, a watch on the driver, the gloo process group on ``init_method``."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    threading.Thread(target=_watch_driver, args=(driver_pid,), daemon=True).start()
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))


def run_rank(rank: int, slot: int, cfg: JobConfig, fault: Fault | None, run_dir: str, state_path: str | None,
             init_method: str, driver_pid: int, start_iteration: int = 0, checkpoint_dir: str | None = None) -> None:
    """Run rank ``rank`` of the job on hardware ``slot`` (a spare slot carries no fault) from ``start_iteration``
    (loading ``<checkpoint_dir>/checkpoint.pt`` when it is above 0; ``checkpoint_dir`` defaults to ``run_dir``) to
    the end; rank 0 writes checkpoints there and saves the final parameters to ``final.pt`` beside them. Records go
    to ``run_dir``; ground truth for the evaluation (never read by the detector) to ``<run_dir>/truth.json``."""
    import torch
    import torch.distributed as dist

    from .collective import Monitor, State, Transport, ring_allreduce

    _join(rank, cfg.world, init_method, driver_pid, cfg.pg_timeout_s)
    state = State(state_path, cfg.world) if state_path else None
    mon = Monitor(rank, cfg.world, run_dir, state, enabled=cfg.mode == "monitored")
    tr = Transport(rank, slot, fault)
    model, g = _model(cfg)
    _init(model, g)
    params = list(model.parameters())
    ckdir = Path(checkpoint_dir or run_dir)
    if start_iteration > 0:
        ck = torch.load(ckdir / "checkpoint.pt")
        assert ck["iteration"] == start_iteration, (ck["iteration"], start_iteration)
        for p, v in zip(params, ck["params"], strict=True):
            p.data.copy_(v)
    jitter = np.random.default_rng([cfg.seed, rank, start_iteration])
    flat = torch.empty(cfg.params)
    buckets = list(torch.tensor_split(flat, len(cfg.rings)))
    for it in range(start_iteration, cfg.iterations):
        tr.iteration = it
        on = fault is not None and fault.active(slot, it)
        if on and it == fault.iteration:
            (Path(run_dir) / "truth.json").write_text(f'{{"onset_s": {time.monotonic()}, "iteration": {it}}}')
            if fault.kind == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
        x, y = batch(cfg, rank, it)
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        t = cfg.compute_s * float(np.exp(jitter.normal(0.0, cfg.jitter)))
        time.sleep(t * (fault.factor if on and fault.kind == "slow_rank" else 1.0))
        if on and fault.kind == "noncomm_hang":
            time.sleep(10 * cfg.pg_timeout_s)  # stuck in compute: never launches the next collective
        torch.cat([p.grad.reshape(-1) for p in params], out=flat)
        for b, ring in zip(buckets, cfg.rings, strict=True):
            if cfg.mode == "native":
                dist.all_reduce(b)
            else:
                ring_allreduce(b, ring, mon, tr)
        with torch.no_grad():
            off = 0
            for p in params:
                p -= cfg.lr / cfg.world * flat[off:off + p.numel()].view_as(p)
                off += p.numel()
        mon.flush(it)
        if rank == 0 and (it + 1) % cfg.checkpoint_every == 0:
            tmp = ckdir / "checkpoint.tmp"
            torch.save({"iteration": it + 1, "params": [p.detach().clone() for p in params]}, tmp)
            os.replace(tmp, ckdir / "checkpoint.pt")
    mon.finished()
    if rank == 0:
        torch.save([p.detach().clone() for p in params], ckdir / "final.pt")
    dist.barrier()
    dist.destroy_process_group()


def time_rank(rank: int, cfg: JobConfig, init_method: str, rounds: int, out: str, driver_pid: int) -> None:
    """The overhead measurement's rank: ``rounds`` rounds, each timing one all-reduce of a gradient-sized tensor
    (every bucket over its ring) as the monitored ring, the unmonitored ring (no header, no records, no counters)
    and gloo's ``all_reduce``, in an order that rotates from round to round, ranks aligned by a barrier before
    each; rank 0 writes ``[[round, variant, seconds], ...]`` as JSON to ``out``."""
    import json

    import torch
    import torch.distributed as dist

    from .collective import Monitor, State, Transport, ring_allreduce

    _join(rank, cfg.world, init_method, driver_pid, cfg.pg_timeout_s)
    run_dir = Path(out).parent / f"overhead-{rank}"
    run_dir.mkdir(exist_ok=True)
    state = State(Path(out).parent / "state.bin", cfg.world)
    monitors = {"monitored": Monitor(rank, cfg.world, run_dir, state), "ring": Monitor(rank, cfg.world, None, None)}
    tr = Transport(rank, rank)
    flat = torch.randn(cfg.params, generator=torch.Generator().manual_seed(rank))
    buckets = list(torch.tensor_split(flat, len(cfg.rings)))
    rows = []
    variants = ("monitored", "ring", "native")
    for r in range(-2, rounds):  # two warm-up rounds
        for i in range(3):
            variant = variants[(r + i) % 3]
            dist.barrier()
            t = time.perf_counter()
            for b, ring in zip(buckets, cfg.rings, strict=True):
                if variant == "native":
                    dist.all_reduce(b)
                else:
                    ring_allreduce(b, ring, monitors[variant], tr)
            if variant == "monitored":
                monitors[variant].flush(r)
            if r >= 0:
                rows.append([r, variant, time.perf_counter() - t])
            flat.div_(cfg.world)  # keep the values bounded
    dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def agreement_rank(rank: int, world: int, init_method: str, numel: int, out: str, driver_pid: int) -> None:
    """The agreement check's rank: a seeded random tensor of ``numel`` values all-reduced by the monitored ring over
    every ring of :func:`.collective.ring_orders` and by gloo's ``all_reduce``; rank ``r`` writes the largest
    absolute difference per ring to ``<out>-<r>.json``."""
    import json

    import torch
    import torch.distributed as dist

    from .collective import Monitor, Transport, ring_allreduce, ring_orders

    _join(rank, world, init_method, driver_pid)
    x = torch.randn(numel, generator=torch.Generator().manual_seed(rank))
    ref = x.clone()
    dist.all_reduce(ref)
    diffs = []
    for ring in ring_orders(world):
        y = ring_allreduce(x.clone(), ring, Monitor(rank, world, None, None), Transport(rank, rank))
        diffs.append(float((y - ref).abs().max()))
    Path(f"{out}-{rank}.json").write_text(json.dumps(diffs))
    dist.barrier()
    dist.destroy_process_group()
