"""Benchmark of PICASSO's packing, interleaving and caching against per-field execution, on this machine.

``python -m repro bench picasso [--quick]`` measures, in one run, for Wide&Deep on Criteo-like data with
F = 26, 100, 300, 1000 categorical fields (quick: 26 and 300; batch 512, Zipf alpha 1.05, vocabularies
log-uniform in [100, 20000], dims 8/16/32 by vocabulary size, MLP 256-128-1):

* samples/s of full training steps (embedding forward, dense forward/backward, embedding backward,
  sparse-SGD embedding update, Adam dense update) for: ``baseline`` (one ``nn.EmbeddingBag`` per field,
  deep and wide, a loop over fields), ``dpacked`` (D-packing: one table and one call per dim group),
  ``kpacked`` (K-packing: one flat buffer, one call for all fields of all dims), and, on D-packing,
  ``packed+interleaved`` (2 micro-batches, the embedding stage of micro-batch i+1 on a worker thread while
  micro-batch i's dense stage runs), ``packed+interleaved+cached`` (the full PICASSO path: the tables in a
  slow tier behind an emulated 1 GB/s, 50 us link - simulated - with 10 % of rows cached by warm-up
  frequency) and its uncached reference ``packed+interleaved+slowtier`` (same link, no cache); the same
  full path on K-packing, ``kpacked+interleaved+cached``; and the peers TorchRec ``EmbeddingBagCollection``
  (sparse gradients) and FBGEMM's fused TBE (optimizer fused into backward), on the same tables/batches;
* operator calls per step from ``torch.profiler``: top-level embedding lookups, all embedding operators,
  all ATen operators (interleaved variants counted with their micro-batches run on one thread: the same
  operators, since the profiler does not see the worker thread's top-level calls);
* a stage-time breakdown (embedding / dense / embedding backward / optimizer) for baseline, dpacked and
  packed+interleaved;
* the caching sweep: hit rate, slow-tier bytes and samples/s of cached vs slow-tier-only as Zipf alpha
  varies;
* the cost of the ID bounds check every stage runs (:func:`bounds_check_cost`): median training-step time
  of D-packing at 300 fields with and without the check, alternating step by step.

Variants alternate in rounds (one step each per round) and medians are reported, so a change in the load
of a shared machine hits all alike. Every variant starts from the same weights and sees the same batches.

The variants table and the measurements are :mod:`repro.picasso.measure`'s (shared with notebook 04); this
module runs them at the benchmark's sizes and adds the bounds-check cost.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch

from ..picasso import (
    ClickLogGenerator,
    DPackedEmbedding,
    KPackedEmbedding,
    WideAndDeep,
    init_field_tables,
    make_optimizers,
    make_schema,
    train_step,
)
from ..picasso.measure import (
    ALPHA,
    BATCH,
    CACHE_FRAC,
    FULL,
    LINK,
    MICRO,
    PACKED_VARIANTS,
    VOCAB,
    cache_sweep,
    measure_fields,
    summary,
)
from ..picasso.peers import available
from ..seed import set_threads

__all__ = ["ALPHA", "BATCH", "CACHE_FRAC", "FULL", "LINK", "MICRO", "PACKED_VARIANTS", "VOCAB", "bounds_check_cost",
           "cache_sweep", "measure_fields", "run", "summary"]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run(quick: bool = False, device: str = "cpu") -> dict:
    """The benchmark (module docstring): rows per field count and variant, the summary, stage breakdowns,
    the cache sweep and the bounds-check cost, with the configuration and the machine's load at the end."""
    threads = set_threads()  # $REPRO_THREADS, else the usable cores
    torch.manual_seed(0)
    field_counts = (26, 300) if quick else (26, 100, 300, 1000)
    rounds = 3 if quick else 7
    peers = available()
    rows: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    for F in field_counts:
        out = measure_fields(F, rounds=rounds, n_batches=2 if quick else 3, device=device, peers=peers,
                             breakdown=F == field_counts[-1])
        rows += out["rows"]
        stages.update(out["stage_breakdown_s"])
    sweep = cache_sweep(26 if quick else 100, rounds=2 if quick else 4, device=device)
    check = bounds_check_cost(300, steps=12 if quick else 40, device=device)
    result_summary = summary(rows, field_counts)
    result_summary["bounds_check_ratio_F300"] = check["ratio"]
    return {"rows": rows, "baseline": "baseline (per-field nn.EmbeddingBag loop, deep + wide)",
            "summary": result_summary, "stage_breakdown_s": stages, "cache_sweep": sweep, "bounds_check": check,
            "config": {"batch": BATCH, "vocab_range": VOCAB, "alpha": ALPHA, "micro_batches": MICRO,
                       "cache_fraction": CACHE_FRAC, "link": LINK, "rounds": rounds, "threads": threads,
                       "mlp": [256, 128, 1], "device": device, "peers": peers,
                       "load_avg_end": os.getloadavg()[0]}}


def bounds_check_cost(F: int = 300, *, steps: int = 40, batch: int = BATCH, device: str = "cpu",
                      kind: str = "dpacked") -> dict[str, Any]:
    """Median training-step time with and without the stages' ID bounds check (``stage.bounds_check``).

    Two Wide&Deep models over the same ``kind`` stage and tables, stepped alternately on the same batches
    (after one warm-up step each; which goes first alternates too), so machine load hits both alike.
    ``ratio`` = checked / unchecked median step time; ``paired_ratio`` = median of the per-step ratios; ``check_ms`` = median time of the check
    alone on the step's batch (the field index given, as a stage's forward has it), a figure less noisy
    than the difference of two step times on a shared machine.
    """
    schema = make_schema(F, seed=0, vocab_range=VOCAB, alpha=ALPHA)
    gen = ClickLogGenerator(schema, seed=0, device=device)
    batches = gen.batches(4, batch)
    tables = init_field_tables(schema, seed=0)
    stage_cls = {"dpacked": DPackedEmbedding, "kpacked": KPackedEmbedding}[kind]
    models = {}
    for name, check in (("checked", True), ("unchecked", False)):
        st = stage_cls(schema, tables=tables, device=device)
        st.bounds_check = check
        m = WideAndDeep(schema, st, seed=0).to(device)
        models[name] = (m, make_optimizers(m))
    times: dict[str, list[float]] = {k: [] for k in models}
    check_s: list[float] = []
    checker = models["checked"][0].emb
    for m, opt in models.values():  # warm-up step each
        train_step(m, opt, batches[0])
    for r in range(steps):  # alternate, and alternate which goes first
        for name in (("checked", "unchecked") if r % 2 == 0 else ("unchecked", "checked")):
            m, opt = models[name]
            _sync(device)
            t0 = time.perf_counter()
            train_step(m, opt, batches[r % len(batches)])
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        b = batches[r % len(batches)]
        fi = b.field_index()
        _sync(device)
        t0 = time.perf_counter()
        checker.check_ids(b, fi)
        _sync(device)
        check_s.append(time.perf_counter() - t0)
    on, off = statistics.median(times["checked"]), statistics.median(times["unchecked"])
    return {"fields": F, "variant": kind, "batch": batch, "steps": steps, "checked_ms": 1e3 * on,
            "unchecked_ms": 1e3 * off, "ratio": on / off, "check_ms": 1e3 * statistics.median(check_s),
            "paired_ratio": statistics.median(x / y for x, y in zip(times["checked"], times["unchecked"],
                                                                    strict=True))}


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=1, default=str))
