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
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

import torch

from ..picasso import (
    CachedEmbedding,
    ClickLogGenerator,
    DPackedEmbedding,
    KPackedEmbedding,
    PerFieldEmbedding,
    WideAndDeep,
    count_ops,
    init_field_tables,
    make_optimizers,
    make_schema,
    stage_breakdown,
    train_step,
)
from ..picasso.peers import FBGEMMTBEStage, TorchRecEBCStage, available
from ..seed import set_threads

BATCH, VOCAB, ALPHA, MICRO = 512, (100, 20_000), 1.05, 2
LINK = {"link_bytes_per_s": 1e9, "latency_s": 50e-6}
CACHE_FRAC = 0.10


FULL = "packed+interleaved+cached"  # the full PICASSO path (on D-packing)


def _variants(schema, tables, device, gen, peers: dict[str, bool], batch: int = BATCH) -> dict[str, tuple[Any, int, bool]]:
    """name -> (stage, micro_batches, interleave)."""
    v: dict[str, tuple[Any, int, bool]] = {
        "baseline": (PerFieldEmbedding(schema, tables=tables, device=device), 1, False),
        "dpacked": (DPackedEmbedding(schema, tables=tables, device=device), 1, False),
        "kpacked": (KPackedEmbedding(schema, tables=tables, device=device), 1, False),
        "packed+interleaved": (DPackedEmbedding(schema, tables=tables, device=device), MICRO, True),
    }
    slow = CachedEmbedding(schema, tables=tables, device=device, capacity=0.0, **LINK)
    slow.admit(torch.zeros(slow.total_rows))
    v["packed+interleaved+slowtier"] = (slow, MICRO, True)
    for name, packing in ((FULL, "dpacked"), ("kpacked+interleaved+cached", "kpacked")):
        cached = CachedEmbedding(schema, tables=tables, device=device, capacity=CACHE_FRAC, packing=packing, **LINK)
        cached.warm_up(gen, 4, batch, start=10_000)
        v[name] = (cached, MICRO, True)
    if peers.get("torchrec"):
        v["torchrec_ebc"] = (TorchRecEBCStage(schema, tables=tables, device=device), 1, False)
    if peers.get("fbgemm"):
        v["fbgemm_tbe"] = (FBGEMMTBEStage(schema, tables=tables, device=device), 1, False)
    return v


def _time_rounds(models: dict[str, tuple[Any, Any, int, bool]], batches, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in models}
    for m, opt, mb, il in models.values():  # warm-up step each
        train_step(m, opt, batches[0], micro_batches=mb, interleave=il)
    for r in range(rounds):
        b = batches[r % len(batches)]
        for name, (m, opt, mb, il) in models.items():
            t0 = time.perf_counter()
            train_step(m, opt, b, micro_batches=mb, interleave=il)
            times[name].append(time.perf_counter() - t0)
    return times


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run(quick: bool = False, device: str = "cpu") -> dict:
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
    summary = _summary(rows, field_counts)
    summary["bounds_check_ratio_F300"] = check["ratio"]
    return {"rows": rows, "baseline": "baseline (per-field nn.EmbeddingBag loop, deep + wide)",
            "summary": summary, "stage_breakdown_s": stages, "cache_sweep": sweep, "bounds_check": check,
            "config": {"batch": BATCH, "vocab_range": VOCAB, "alpha": ALPHA, "micro_batches": MICRO,
                       "cache_fraction": CACHE_FRAC, "link": LINK, "rounds": rounds, "threads": threads,
                       "mlp": [256, 128, 1], "device": device, "peers": peers,
                       "load_avg_end": os.getloadavg()[0]}}


def measure_fields(F: int, *, rounds: int, n_batches: int = 3, device: str = "cpu", peers: dict[str, bool] | None = None,
                   breakdown: bool = False, batch: int = BATCH) -> dict[str, Any]:
    """Every variant at ``F`` fields: operator counts and median step time over ``rounds`` alternating rounds.

    Returns ``rows`` (one per variant), ``round_s`` (each variant's step time per round, for paired ratios)
    and, with ``breakdown``, the stage times of baseline, dpacked and packed+interleaved.
    """
    peers = available() if peers is None else peers
    schema = make_schema(F, seed=0, vocab_range=VOCAB, alpha=ALPHA)
    G = len(schema.groups())
    gen = ClickLogGenerator(schema, seed=0, device=device)
    batches = gen.batches(n_batches, batch)
    tables = init_field_tables(schema, seed=0)
    variants = _variants(schema, tables, device, gen, peers, batch)
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
    times = _time_rounds(models, batches, rounds)
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
    """Hit rate and speed of the cached stage against the slow tier alone as Zipf alpha varies."""
    out = []
    for a in alphas:
        schema = make_schema(F, seed=1, vocab_range=VOCAB, alpha=a)
        gen = ClickLogGenerator(schema, seed=1, device=device)
        batches = gen.batches(2, batch)
        tables = init_field_tables(schema, seed=0)
        models = {}
        for cap in (0.0, CACHE_FRAC):
            st = CachedEmbedding(schema, tables=tables, device=device, capacity=cap, **LINK)
            st.warm_up(gen, 4, batch, start=10_000)
            m = WideAndDeep(schema, st, seed=0).to(device)
            models[cap] = (m, make_optimizers(m), MICRO, True)
        for m, *_ in models.values():
            m.emb.reset_stats()
        times = _time_rounds(models, batches, rounds)
        t0 = statistics.median(times[0.0])
        for cap, (m, *_r) in models.items():
            st = m.emb.stats()
            out.append({"alpha": a, "fields": F, "cache_fraction": cap, "hit_rate": st["hit_rate"],
                        "slow_MB_read": st["bytes_read"] / 1e6, "simulated_link_s": st["simulated_link_s"],
                        "samples_per_s": batch / statistics.median(times[cap]),
                        "speedup_vs_slowtier": t0 / statistics.median(times[cap])})
    return out


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


PACKED_VARIANTS = ("dpacked", "kpacked", "packed+interleaved", FULL, "kpacked+interleaved+cached")


def summary(rows: list[dict[str, Any]], field_counts) -> dict[str, Any]:
    """Per field count (``"F=<F>"``): the lookup cuts of D- and K-packing, the full path's speed-ups, the best
    packed variant and the ratios to the peers, from :func:`measure_fields` rows; ``goals``: the pooled checks."""
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


_summary = summary  # its name before it was public


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=1, default=str))
