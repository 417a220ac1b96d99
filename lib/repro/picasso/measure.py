"""Measuring PICASSO's optimisations against per-field execution: the variants, their speeds, operator
counts, stage times and cache hit rates (shared by notebook 04 and ``python -m repro bench picasso``).

The variants table (:func:`make_variants`; PICASSO §IV, card claims P-1, P-3, P-4) names each way of running
the embedding stage of a Wide&Deep step on the same tables and batches::

    name                           embedding stage                                       micro-batches, interleave
    baseline                       per-field nn.EmbeddingBag loop, deep + wide           1, no
    dpacked                        D-packing: one table and one call per dim group       1, no
    kpacked                        K-packing: one flat buffer, one call for all fields   1, no
    packed+interleaved             D-packing                                             MICRO, yes
    packed+interleaved+slowtier    D-packing, tables behind the emulated LINK, no cache  MICRO, yes
    packed+interleaved+cached      the same with the CACHE_FRAC hottest rows cached      MICRO, yes
                                   (FULL: the full PICASSO path)
    kpacked+interleaved+cached     the full path on K-packing                            MICRO, yes
    torchrec_ebc                   TorchRec's EmbeddingBagCollection (peer, optional)    1, no
    fbgemm_tbe                     FBGEMM's fused TBE (peer, optional)                   1, no

:func:`measure_fields` times full training steps of every variant in alternating rounds (one step each per
round, so a change in a shared machine's load hits all alike) with operator counts from ``torch.profiler``
(:func:`count_ops`: on CPU the per-operator dispatch cost plays the part of GPU kernel-launch overhead, the
cost packing removes) and, optionally, a stage breakdown (:func:`stage_breakdown`); :func:`cache_sweep` the
cached stage against the slow tier alone as the Zipf skew varies; :func:`summary` the headline ratios;
:func:`record_timeline` one step's stage spans per thread.

Units: times in seconds (``*_s``) or milliseconds (``*_ms``), speeds in samples per second, byte counts
in bytes or megabytes (``*_MB``, 1e6 bytes). Layer: the top of :mod:`repro.picasso`.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections import Counter
from typing import Any

import torch

from .cache import CachedEmbedding
from .data import Batch, ClickLogGenerator, Schema, make_schema
from .embedding import DPackedEmbedding, KPackedEmbedding, PerFieldEmbedding, init_field_tables
from .interleave import Timeline
from .models import RecModel, WideAndDeep
from .optim import Optimizers
from .peers import FBGEMMTBEStage, TorchRecEBCStage, available
from .training import make_optimizers, train_step

BATCH, VOCAB, ALPHA, MICRO = 512, (100, 20_000), 1.05, 2  # samples, vocabulary range, Zipf skew, micro-batches
LINK = {"link_bytes_per_s": 1e9, "latency_s": 50e-6}  # the emulated slow-tier link: 1 GB/s, 50 us per fetch
CACHE_FRAC = 0.10  # share of the rows the cache holds
WARM_START = 10_000  # first generator batch of the cache's warm-up window (4 batches)

FULL = "packed+interleaved+cached"  # the full PICASSO path (on D-packing)
VARIANTS = ("baseline", "dpacked", "kpacked", "packed+interleaved", "packed+interleaved+slowtier", FULL,
            "kpacked+interleaved+cached")
PEERS = {"torchrec_ebc": "torchrec", "fbgemm_tbe": "fbgemm"}  # variant -> the library it needs
PACKED_VARIANTS = ("dpacked", "kpacked", "packed+interleaved", FULL, "kpacked+interleaved+cached")


def make_variant(name: str, schema: Schema, tables, gen: ClickLogGenerator, *, device: str = "cpu",
                 batch: int = BATCH, warm_start: int = WARM_START) -> tuple[Any, int, bool]:
    """One row of the variants table (module docstring): ``(stage, micro_batches, interleave)``.

    Every stage starts from ``tables`` (:func:`~repro.picasso.embedding.init_field_tables`); a cached stage
    admits its rows from 4 batches of ``batch`` samples of ``gen`` from batch ``warm_start`` on. Raises
    ``ValueError`` for an unknown name and ``ImportError`` for a peer whose library is missing."""
    kw = {"tables": tables, "device": device}
    if name == "baseline":
        return PerFieldEmbedding(schema, **kw), 1, False
    if name == "dpacked":
        return DPackedEmbedding(schema, **kw), 1, False
    if name == "kpacked":
        return KPackedEmbedding(schema, **kw), 1, False
    if name == "packed+interleaved":
        return DPackedEmbedding(schema, **kw), MICRO, True
    if name == "packed+interleaved+slowtier":
        slow = CachedEmbedding(schema, capacity=0.0, **kw, **LINK)
        slow.admit(torch.zeros(slow.total_rows))
        return slow, MICRO, True
    if name in (FULL, "kpacked+interleaved+cached"):
        packing = "dpacked" if name == FULL else "kpacked"
        cached = CachedEmbedding(schema, capacity=CACHE_FRAC, packing=packing, **kw, **LINK)
        cached.warm_up(gen, 4, batch, start=warm_start)
        return cached, MICRO, True
    if name == "torchrec_ebc":
        return TorchRecEBCStage(schema, **kw), 1, False
    if name == "fbgemm_tbe":
        return FBGEMMTBEStage(schema, **kw), 1, False
    raise ValueError(f"unknown variant {name!r}; valid: {', '.join([*VARIANTS, *PEERS])}")


def make_variants(schema: Schema, tables, gen: ClickLogGenerator, *, names: tuple[str, ...] = VARIANTS,
                  peers: dict[str, bool] | None = None, device: str = "cpu", batch: int = BATCH,
                  warm_start: int = WARM_START) -> dict[str, tuple[Any, int, bool]]:
    """The variants table: name -> ``(stage, micro_batches, interleave)`` for ``names`` (in that order),
    then each peer whose library ``peers`` says is available (``{"torchrec": bool, "fbgemm": bool}``; none
    when ``None``). See :func:`make_variant` for the arguments and what it raises."""
    peers = peers or {}
    names = (*names, *(v for v, lib in PEERS.items() if peers.get(lib)))
    return {n: make_variant(n, schema, tables, gen, device=device, batch=batch, warm_start=warm_start)
            for n in names}


def time_rounds(models: dict[Any, tuple[RecModel, Optimizers, int, bool]], batches: list[Batch],
                rounds: int) -> dict[Any, list[float]]:
    """Seconds per training step of every model over ``rounds`` alternating rounds (one step each per
    round, in ``models`` order, round ``r`` on ``batches[r % len(batches)]``), after one warm-up step each.
    ``models``: key -> ``(model, optimizers, micro_batches, interleave)``; returns key -> ``rounds`` floats."""
    times: dict[Any, list[float]] = {k: [] for k in models}
    for m, opt, mb, il in models.values():  # warm-up step each
        train_step(m, opt, batches[0], micro_batches=mb, interleave=il)
    for r in range(rounds):
        b = batches[r % len(batches)]
        for name, (m, opt, mb, il) in models.items():
            t0 = time.perf_counter()
            train_step(m, opt, b, micro_batches=mb, interleave=il)
            times[name].append(time.perf_counter() - t0)
    return times


def measure_fields(F: int, *, rounds: int, n_batches: int = 3, device: str = "cpu", peers: dict[str, bool] | None = None,
                   breakdown: bool = False, batch: int = BATCH) -> dict[str, Any]:
    """Every variant at ``F`` fields (PICASSO §IV, card claim P-1): operator counts and median step time
    over ``rounds`` alternating rounds of ``batch`` samples, on ``n_batches`` batches of
    ``make_schema(F, seed=0, vocab_range=VOCAB, alpha=ALPHA)``.

    Returns ``rows`` (one dict per variant: ``fields``, ``groups``, ``variant``, ``samples_per_s``,
    ``step_ms`` / ``min_ms`` / ``max_ms``, ``speedup_vs_baseline`` and ``speedup_vs_ebc`` (ratios of median
    step times), the :func:`count_ops` counts and, cached, ``hit_rate`` and ``slow_MB_per_step``),
    ``round_s`` (each variant's step seconds per round, for paired ratios) and ``stage_breakdown_s`` (with
    ``breakdown``: :func:`stage_breakdown` of baseline, dpacked and packed+interleaved, keyed ``name@F``).
    ``peers`` defaults to :func:`~repro.picasso.peers.available`.
    """
    peers = available() if peers is None else peers
    schema = make_schema(F, seed=0, vocab_range=VOCAB, alpha=ALPHA)
    G = len(schema.groups())
    gen = ClickLogGenerator(schema, seed=0, device=device)
    batches = gen.batches(n_batches, batch)
    tables = init_field_tables(schema, seed=0)
    variants = make_variants(schema, tables, gen, peers=peers, device=device, batch=batch)
    models = {}
    for name, (stage, mb, il) in variants.items():
        m = WideAndDeep(schema, stage, seed=0).to(device)
        models[name] = (m, make_optimizers(m), mb, il)
    b0 = batches[0]
    # counted without the worker thread (same operators; the profiler misses the worker's top level)
    ops = {name: count_ops(lambda m=m, o=o, mb=mb, b0=b0: train_step(m, o, b0, micro_batches=mb))
           for name, (m, o, mb, il) in models.items()}
    for m, *_rest in models.values():
        if isinstance(m.emb, CachedEmbedding):
            m.emb.reset_stats()
    times = time_rounds(models, batches, rounds)
    base_t = statistics.median(times["baseline"])
    ebc_t = statistics.median(times["torchrec_ebc"]) if "torchrec_ebc" in times else None
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        row = {"fields": F, "groups": G, "variant": name, "samples_per_s": batch / med,
               "step_ms": 1e3 * med, "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts),
               "speedup_vs_baseline": base_t / med,
               "speedup_vs_ebc": (ebc_t / med) if ebc_t else None, **ops[name]}
        emb = models[name][0].emb
        if isinstance(emb, CachedEmbedding):
            st = emb.stats()
            row.update(hit_rate=st["hit_rate"], slow_MB_per_step=st["bytes_read"] / 1e6 / (rounds + 1))
        rows.append(row)
    stages = {}
    if breakdown:
        for name in ("baseline", "dpacked", "packed+interleaved"):
            m, o, mb, il = models[name]
            stages[f"{name}@{F}"] = stage_breakdown(m, o, batches, micro_batches=mb, interleave=il)
    del models, variants, tables
    gc.collect()
    return {"rows": rows, "round_s": times, "stage_breakdown_s": stages}


def cache_sweep(F: int, *, rounds: int, alphas: tuple[float, ...] = (0.6, 1.05, 1.3), device: str = "cpu",
                batch: int = BATCH) -> list[dict[str, Any]]:
    """Hit rate and speed of the cached stage (``CACHE_FRAC`` of rows) against the slow tier alone as Zipf
    ``alpha`` varies (PICASSO §IV "Caching", card claim P-4; the link is simulated). One row per alpha and
    cache fraction (0 and ``CACHE_FRAC``): ``hit_rate``, ``slow_MB_read`` (MB over the timed steps),
    ``simulated_link_s`` (s), ``samples_per_s`` and ``speedup_vs_slowtier`` (ratio of median step times)."""
    out = []
    for a in alphas:
        schema = make_schema(F, seed=1, vocab_range=VOCAB, alpha=a)
        gen = ClickLogGenerator(schema, seed=1, device=device)
        batches = gen.batches(2, batch)
        tables = init_field_tables(schema, seed=0)
        models = {}
        for cap in (0.0, CACHE_FRAC):
            st = CachedEmbedding(schema, tables=tables, device=device, capacity=cap, **LINK)
            st.warm_up(gen, 4, batch, start=WARM_START)
            m = WideAndDeep(schema, st, seed=0).to(device)
            models[cap] = (m, make_optimizers(m), MICRO, True)
        for m, *_ in models.values():
            m.emb.reset_stats()
        times = time_rounds(models, batches, rounds)
        t0 = statistics.median(times[0.0])
        for cap, (m, *_r) in models.items():
            st = m.emb.stats()
            out.append({"alpha": a, "fields": F, "cache_fraction": cap, "hit_rate": st["hit_rate"],
                        "slow_MB_read": st["bytes_read"] / 1e6, "simulated_link_s": st["simulated_link_s"],
                        "samples_per_s": batch / statistics.median(times[cap]),
                        "speedup_vs_slowtier": t0 / statistics.median(times[cap])})
    return out


def summary(rows: list[dict[str, Any]], field_counts) -> dict[str, Any]:
    """Per field count (``"F=<F>"``), from :func:`measure_fields` rows: the lookup cuts of D- and K-packing
    (baseline lookups / packed lookups; card claim P-1 expects about ``F/G``), the ATen-operator cut, the
    full path's speed-ups, the best packed variant (most samples/s) and the ratios to the peers;
    ``goals``: the pooled checks (``op_cut_ge_F_over_G``; at ``F >= 300``: ``picasso_3x_at_300plus`` and
    ``picasso_ge_ebc``). Raises ``KeyError`` if a field count lacks the baseline or a packed variant."""
    by = {(r["fields"], r["variant"]): r for r in rows}
    s: dict[str, Any] = {}
    goals = {"op_cut_ge_F_over_G": True, "picasso_3x_at_300plus": True, "picasso_ge_ebc": True}
    for F in field_counts:
        b, full = by[(F, "baseline")], by[(F, FULL)]
        G = b["groups"]
        best = max((by[(F, k)] for k in PACKED_VARIANTS), key=lambda r: r["samples_per_s"])
        cut = b["emb_lookups"] / max(by[(F, "dpacked")]["emb_lookups"], 1)
        s[f"F={F}"] = {"lookup_cut_packed": cut, "F_over_G": F / G,
                       "lookup_cut_kpacked": b["emb_lookups"] / max(by[(F, "kpacked")]["emb_lookups"], 1),
                       "aten_op_cut_packed": b["aten_ops"] / max(by[(F, "dpacked")]["aten_ops"], 1),
                       "speedup_full_picasso": full["speedup_vs_baseline"],
                       "speedup_full_picasso_kpacked": by[(F, "kpacked+interleaved+cached")]["speedup_vs_baseline"],
                       "best_packed_variant": best["variant"], "speedup_best_packed": best["speedup_vs_baseline"],
                       "full_picasso_vs_ebc": full.get("speedup_vs_ebc"),
                       "best_packed_vs_ebc": best.get("speedup_vs_ebc")}
        if (F, "fbgemm_tbe") in by:
            s[f"F={F}"]["best_packed_vs_tbe"] = best["samples_per_s"] / by[(F, "fbgemm_tbe")]["samples_per_s"]
        goals["op_cut_ge_F_over_G"] &= cut >= F / G
        if F >= 300:
            goals["picasso_3x_at_300plus"] &= full["speedup_vs_baseline"] >= 3.0
            if full.get("speedup_vs_ebc") is not None:
                goals["picasso_ge_ebc"] &= full["speedup_vs_ebc"] >= 1.0
    s["goals"] = goals
    return s


def stage_breakdown(model: RecModel, opt: Optimizers, batches: list[Batch], *, micro_batches: int = 1,
                    interleave: bool = False, warmup: int = 1) -> dict[str, float]:
    """Median seconds per step spent in each stage (``embedding`` forward, ``dense`` forward+backward,
    ``embedding_backward``, ``optimizer``; summed over micro-batches) and in the whole ``step`` (first
    start to last end), over one training step per batch of ``batches`` (the first ``warmup`` not counted;
    stages synchronised on CUDA); an empty dict if every batch is a warm-up batch."""
    per_stage: dict[str, list[float]] = {}
    for i, b in enumerate(batches):
        tl = Timeline(sync=True)
        train_step(model, opt, b, micro_batches=micro_batches, interleave=interleave, timeline=tl)
        if i < warmup:
            continue
        tot = Counter()
        for e in tl.events:
            tot[e["stage"]] += e["end"] - e["start"]
        tot["step"] = max(e["end"] for e in tl.events) - min(e["start"] for e in tl.events)
        for k, v in tot.items():
            per_stage.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in per_stage.items()}


def record_timeline(model: RecModel, opt: Optimizers, batch: Batch, *, micro_batches: int = 4,
                    interleave: bool = True, sync: bool = False) -> list[dict[str, Any]]:
    """Run one training step and return its stage timeline (PICASSO §IV "Interleaving", card claim P-3):
    one dict per micro-batch and stage (``micro_batch``, ``stage``, ``thread``, ``start`` and ``end`` in
    seconds from the step's start), sorted by start, for plotting the overlap interleaving buys."""
    tl = Timeline(sync=sync)
    train_step(model, opt, batch, micro_batches=micro_batches, interleave=interleave, timeline=tl)
    return sorted(tl.events, key=lambda e: e["start"])


def count_ops(fn) -> dict[str, int]:
    """Operator calls made by ``fn()`` (one training step), from ``torch.profiler`` (card §8 "must keep" 3):
    ``aten_ops`` (every ATen operator, nested ones included), ``emb_ops`` (operators with "embedding" in the
    name, forward and backward, FBGEMM's included) and ``emb_lookups`` (top-level forward lookup calls)."""
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop lines on stderr, per call
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.name for e in prof.events()]
    lookups = 0
    for e in prof.events():  # FBGEMM lookups: top-level only
        if e.cpu_parent is None or not (e.cpu_parent.name.startswith("aten::")
                                        or e.cpu_parent.name.startswith("fbgemm::")):
            if e.name.startswith("fbgemm::") and "embedding" in e.name and "backward" not in e.name:
                lookups += 1
    lookups += sum(n in ("aten::embedding_bag", "aten::embedding") for n in names)
    return {"aten_ops": sum(n.startswith("aten::") for n in names),
            "emb_ops": sum("embedding" in n for n in names), "emb_lookups": lookups}
