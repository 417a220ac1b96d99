"""Speed of VICTOR's pre-training with the momentum key network and memory queues: ``python -m repro bench victor
[--quick]``.

At the stored runs' sizes (:class:`repro.victor.sweep.VictorRun`: width 64, 2 layers in each Transformer, batches
of 32 pairs of 12 frames of 32 x 32 and 64 characters), three step kinds train for the same steps in the same run,
in rotating order, from the same initialisation and batches:

* ``query``: the query network alone, with the tasks that need no key network (MLM, intra-MFM);
* ``key+queues``: the same plus inter-MFM and dual-VSA, which add the key network's forward on the clean pair, the
  momentum update and the three queues (frames, visual, textual);
* ``all``: the full task set (plus the order tasks' extra pass on half the batch).

Reported: pre-training samples/s of each (median over rounds), their ratio to ``query``, and the momentum update's
and the enqueues' own times per step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ..seed import set_threads

VARIANTS = {"query": ("mlm", "intra_mfm"), "key+queues": ("mlm", "intra_mfm", "inter_mfm", "vsa"),
            "all": ("mlm", "vsa", "intra_mfm", "inter_mfm", "msom", "fom")}


def _stepper(tasks: tuple[str, ...], pairs, vocab, run):
    """A function that runs one pre-training step of ``tasks`` (as :func:`repro.victor.pretrain.pretrain` does)."""
    import torch

    from ..victor.model import MemoryQueue, VictorNet, key_copy
    from ..victor.pretrain import Batches, PretrainConfig, _optimizer, train_step

    cfg = PretrainConfig(tasks=tasks, steps=10, warmup_steps=0, batch_size=run.batch_size, seed=0)
    ncfg = run.net_config(len(vocab))
    torch.manual_seed(0)
    net = VictorNet(ncfg, vocab.pad)
    key = key_copy(net) if cfg.has("vsa", "inter_mfm") else None
    opt = _optimizer(net, cfg)
    queues = {"frames": MemoryQueue(cfg.frames_queue, ncfg.d_model), "visual": MemoryQueue(cfg.visual_queue, ncfg.d_proj),
              "textual": MemoryQueue(cfg.textual_queue, ncfg.d_proj)}
    batches = Batches(pairs.frames, vocab.encode(pairs.captions, ncfg.context), cfg.batch_size, 0)
    gen = torch.Generator().manual_seed(1)

    def step() -> None:
        frames, ids, rows = batches.next()
        train_step(net, key, queues, opt, frames, ids, rows, vocab, cfg, gen)

    return step, net, key, queues


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from ..victor import data as vd
    from ..victor.model import momentum_update
    from ..victor.sweep import VictorRun

    threads = set_threads()
    prof = "smoke" if quick else "default"
    pairs, vocab = vd.load_split("train", prof), vd.load_vocab(prof)
    run_ = VictorRun("all")
    steps, rounds = (10, 3) if quick else (40, 5)
    steppers = {name: _stepper(tasks, pairs, vocab, run_) for name, tasks in VARIANTS.items()}
    for step, *_ in steppers.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotating order
            step = steppers[name][0]
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append(steps * run_.batch_size / (time.perf_counter() - t0))
    _, net, key, queues = steppers["key+queues"]
    t0 = time.perf_counter()
    for _ in range(50):
        momentum_update(net, key, 0.995)
    momentum_ms = (time.perf_counter() - t0) / 50 * 1e3
    keys = torch.randn(run_.batch_size * 12, queues["frames"].dim)
    t0 = time.perf_counter()
    for _ in range(50):
        queues["frames"].enqueue(keys)
        queues["visual"].enqueue(keys[:run_.batch_size, :queues["visual"].dim])
        queues["textual"].enqueue(keys[:run_.batch_size, :queues["textual"].dim])
    enqueue_ms = (time.perf_counter() - t0) / 50 * 1e3
    med = {n: statistics.median(v) for n, v in times.items()}
    rows = [{"variant": n, "tasks": "+".join(VARIANTS[n]), "samples_per_s": round(med[n], 1),
             "vs_query": med[n] / med["query"], "min": round(min(times[n]), 1), "max": round(max(times[n]), 1)}
            for n in VARIANTS]
    return {"rows": rows, "baseline": "the query network alone (MLM + intra-MFM), same run, rotating order",
            "summary": {"threads": threads, "steps": steps, "rounds": rounds, "data": prof,
                        "batch_size": run_.batch_size, "params": net.num_params(),
                        "key_and_queues_vs_query": round(med["key+queues"] / med["query"], 3),
                        "momentum_update_ms": round(momentum_ms, 3), "enqueue_ms": round(enqueue_ms, 3)}}
