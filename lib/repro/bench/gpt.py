"""Benchmark of the workbook's GPT training and evaluation against a plain implementation, on this machine.

``python -m repro bench gpt [--quick]`` measures, in one run, for three sizes (about 0.1 M, 0.5 M and 2 M
non-embedding parameters; context 128, vocabulary 4096, batch 32):

* training tokens/s of :func:`repro.train.train` on :class:`repro.nn.gpt.GPT` (sampler, forward, backward,
  clipping, AdamW: the per-step times the loop itself takes), and evaluation tokens/s of
  :func:`repro.train.evaluate`;
* the same for the *plain* baseline below, on the same batches and the same thread count;
* the machine's fp32 matmul peak, the best of ``torch.mm`` on square matrices of a few large sizes;
* achieved FLOP/s = tokens/s x :func:`repro.nn.gpt.flops_per_token` and its share of that peak. The
  share counts the output projection (``lm_head=True``: ``6 N + 6 L T d + 6 V d``), the arithmetic the
  machine really does; the scaling-law convention (``6 N + 6 L T d``, no embeddings) is reported beside it;
* where the time goes: ``torch.profiler`` over a few of our training steps, the top operators' shares.

Ours and the baseline alternate in rounds and the medians of all timed steps are reported, so a change in
the load of a shared machine hits both alike; the 1-minute load average at start and end is recorded.

The *plain* baseline is the textbook way to write the same model: separate ``q``, ``k``, ``v`` Linear
layers, attention written out as ``softmax(Q K^T / sqrt(d_head) + M) V`` with a materialised causal mask,
an untied output Linear, the full ``[B T, vocab]`` logits into ``F.cross_entropy``, and
``torch.optim.AdamW(model.parameters())`` with torch's default (for-each) implementation, in a plain loop
(forward, backward, clip, step). Same widths, depths, initialisation scale, FLOPs per token.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.sampler import DomainSampler
from ..nn.gpt import GPT, GPTConfig, flops_per_token, param_count
from ..seed import set_threads
from ..train import TrainConfig, evaluate, make_optimizer, train
from . import time_it

VOCAB, CONTEXT, BATCH = 4096, 128, 32
SIZES = (("0.1M", 64, 2, 4), ("0.5M", 128, 3, 4), ("2M", 256, 3, 4))  # name, d_model, n_layer, n_head
GOAL_SHARE = 0.60  # of the matmul peak, for training at the 0.5M and 2M sizes


# ---------------------------------------------------------------------------------------------- baseline
class PlainAttention(nn.Module):
    """The benchmark's baseline attention: causal self-attention written out (softmax of QK^T/sqrt(d) with a
    mask), no fused kernel; takes and returns (B, T, C)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("mask", torch.tril(torch.ones(cfg.context, cfg.context, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hd = C // self.n_head

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.n_head, hd).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, C))


class PlainBlock(nn.Module):
    """A pre-LN transformer block on :class:`PlainAttention` (the baseline the fused GPT is timed against)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = PlainAttention(cfg)
        self.fc, self.proj = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    """The baseline: the same GPT written the straightforward way (see the module docstring)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(cfg.vocab_size, cfg.d_model), nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(PlainBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------- measurements
def matmul_peak(sizes: tuple[int, ...], repeat: int) -> dict[str, Any]:
    """fp32 ``torch.mm`` FLOP/s on ``n x n`` matrices (``2 n^3`` FLOPs each); the peak is the best size."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        t = time_it(lambda a=a, b=b: torch.mm(a, b), repeat=repeat, warmup=1)
        out[str(n)] = 2 * n**3 / t["median_s"]
    return {"flops_by_size": out, "peak_flops": max(out.values())}


def _data(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    train_tok = {"a": rng.integers(0, VOCAB, 200_000).astype(np.uint16),
                 "b": rng.integers(0, VOCAB, 200_000).astype(np.uint16)}
    return train_tok, {"val": rng.integers(0, VOCAB, 4 * BATCH * CONTEXT + 1).astype(np.uint16)}


def ours_train_step_times(cfg: GPTConfig, n_steps: int, data: dict[str, np.ndarray]) -> list[float]:
    """Wall time of each update inside :func:`repro.train.train` (between consecutive ``on_step`` calls)."""
    torch.manual_seed(0)
    model = GPT(cfg)
    sampler = DomainSampler(data, CONTEXT, BATCH, seed=0)
    stamps = [time.perf_counter()]
    tc = TrainConfig(max_steps=n_steps, warmup_steps=1, progress=False)
    train(model, sampler, tc, on_step=lambda s, r, st: stamps.append(time.perf_counter()))
    return list(np.diff(stamps))


def plain_train_step_times(cfg: GPTConfig, n_steps: int, data: dict[str, np.ndarray]) -> list[float]:
    """Wall time of each update of the plain loop on the plain model, same sampler and batches."""
    torch.manual_seed(0)
    model = PlainGPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    sampler = DomainSampler(data, CONTEXT, BATCH, seed=0)
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        x, y, _ = sampler.next_batch()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def _median_after_warmup(times: list[float], warmup: int) -> float:
    return float(np.median(times[warmup:]))


def _steps_for(step_s: float, min_time: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, math.ceil(min_time / max(step_s, 1e-3)))))


def eval_seconds(model: nn.Module, val: dict[str, np.ndarray], plain: bool, repeat: int) -> float:
    """Median seconds of evaluating 4 batches (``4 * BATCH * CONTEXT`` tokens)."""
    if not plain:
        return time_it(lambda: evaluate(model, val, CONTEXT, BATCH, max_batches=4), repeat=repeat)["median_s"]
    toks = torch.from_numpy(val["val"].astype(np.int64))
    idx = torch.arange(4 * BATCH)[:, None] * CONTEXT + torch.arange(CONTEXT + 1)
    w = toks[idx]

    @torch.no_grad()
    def run() -> None:
        model.eval()
        for i in range(0, len(w), BATCH):
            model(w[i:i + BATCH, :-1], w[i:i + BATCH, 1:])

    return time_it(run, repeat=repeat)["median_s"]


def profile_ours(cfg: GPTConfig, steps: int, data: dict[str, np.ndarray], top: int = 8) -> dict[str, Any]:
    """Shares of self CPU time by operator over ``steps`` training updates (after one warm-up update)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = GPT(cfg)
    sampler = DomainSampler(data, CONTEXT, BATCH, seed=0)
    tc = TrainConfig(max_steps=1, warmup_steps=1, progress=False)
    opt = make_optimizer(model, tc)

    def step() -> None:
        x, y, _ = sampler.next_batch()
        _, loss = model(x, y, return_logits=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        ops[e.key] += e.self_cpu_time_total
    total = sum(ops.values())
    share = {k: v / total for k, v in sorted(ops.items(), key=lambda kv: -kv[1])}
    groups = {"matmul (mm, addmm, bmm)": ("aten::mm", "aten::addmm", "aten::bmm"),
              "attention kernel (sdpa)": ("flash_attention", "scaled_dot_product"),
              "softmax/cross-entropy (logsumexp, exp, scatter)": ("logsumexp", "exp", "scatter", "gather", "sub_", "amax"),
              "GELU": ("gelu",), "LayerNorm": ("layer_norm",),
              "optimizer (fused AdamW)": ("adam",), "grad clipping": ("norm", "clip", "foreach")}
    by_group: dict[str, float] = defaultdict(float)
    for k, v in share.items():
        g = next((name for name, keys in groups.items() if any(s in k.lower() for s in keys)), "other")
        by_group[g] += v
    return {"top_ops": {k: round(v, 4) for k, v in list(share.items())[:top]},
            "groups": {k: round(v, 4) for k, v in sorted(by_group.items(), key=lambda kv: -kv[1])}}


# ---------------------------------------------------------------------------------------------- the benchmark
def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run(quick: bool) -> dict[str, Any]:
    """Measure every size, ours and the plain baseline alternating in rounds (so a change of machine load
    hits both alike); the medians over the rounds' steps are reported."""
    threads = set_threads()
    cores = len(os.sched_getaffinity(0))
    load_start = _load()
    rounds, round_s, steps_lo = (2, 0.0, 2) if quick else (4, 2.0, 3)
    sq = (1024, 2048) if quick else (1024, 2048, 3072)
    peaks = [matmul_peak(sq, repeat=3 if quick else 5)]
    data, val = _data()
    tokens = BATCH * CONTEXT
    measured = []
    for name, d, L, h in SIZES:
        cfg = GPTConfig(vocab_size=VOCAB, context=CONTEXT, n_layer=L, n_head=h, d_model=d)
        est = _median_after_warmup(ours_train_step_times(cfg, 2, data), 1)  # also warms caches and allocator
        n = _steps_for(est, round_s, steps_lo, 100)
        ours_t: list[float] = []
        plain_t: list[float] = []
        ours_e: list[float] = []
        plain_e: list[float] = []
        torch.manual_seed(0)
        ours_model, plain_model = GPT(cfg), PlainGPT(cfg)
        for _ in range(rounds):  # first step of every run is a warm-up and is dropped
            ours_t += ours_train_step_times(cfg, n + 1, data)[1:]
            plain_t += plain_train_step_times(cfg, n + 1, data)[1:]
            ours_e.append(eval_seconds(ours_model, val, plain=False, repeat=2))
            plain_e.append(eval_seconds(plain_model, val, plain=True, repeat=2))
        peaks.append(matmul_peak((2048,), repeat=2))
        prof = profile_ours(cfg, 2 if quick else 4, data) if name != "0.1M" else None
        measured.append((name, cfg, float(np.median(ours_t)), float(np.median(plain_t)),
                         float(np.median(ours_e)), float(np.median(plain_e)), len(ours_t), prof))
    peak = max(p["peak_flops"] for p in peaks)
    rows, profiles = [], {}
    for name, cfg, ours_s, plain_s, ours_eval, plain_eval, n_steps, prof in measured:
        pc = param_count(cfg)
        f_hw, f_n = flops_per_token(cfg, lm_head=True), flops_per_token(cfg)
        tok_s = tokens / ours_s
        rows.append({
            "size": name, "d_model": cfg.d_model, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "N": pc.non_embedding, "total_params": pc.total, "steps_timed": n_steps,
            "train_tok_s": round(tok_s), "plain_train_tok_s": round(tokens / plain_s),
            "train_speedup": round(plain_s / ours_s, 2),
            "eval_tok_s": round(4 * tokens / ours_eval), "plain_eval_tok_s": round(4 * tokens / plain_eval),
            "eval_speedup": round(plain_eval / ours_eval, 2),
            "train_gflop_s": round(tok_s * f_hw / 1e9, 1),
            "share_of_peak": round(tok_s * f_hw / peak, 3),
            "share_of_peak_6N": round(tok_s * f_n / peak, 3),
            "plain_share_of_peak": round(tokens / plain_s * f_hw / peak, 3),
        })
        if prof is not None:
            profiles[name] = prof
    load_end = _load()
    busy = any(x is not None and x > cores + 0.5 for x in (load_start, load_end))
    goal_sizes = [r for r in rows if r["size"] in ("0.5M", "2M")]
    summary = {
        "threads": threads,
        "load_avg_1min": {"start": load_start, "end": load_end, "cores": cores,
                          "note": "machine busy with other work: figures unreliable" if busy else "quiet"},
        "matmul_peak_gflop_s": round(peak / 1e9, 1),
        "matmul_gflop_s": [{k: round(v / 1e9, 1) for k, v in p["flops_by_size"].items()} for p in peaks],
        "train_speedup_over_plain": {r["size"]: r["train_speedup"] for r in rows},
        "eval_speedup_over_plain": {r["size"]: r["eval_speedup"] for r in rows},
        "share_of_peak_train": {r["size"]: r["share_of_peak"] for r in rows},
        "share_of_peak_train_6N": {r["size"]: r["share_of_peak_6N"] for r in rows},
        "goal": f"training at >= {GOAL_SHARE:.0%} of the matmul peak at 0.5M and 2M (FLOPs incl. lm_head)",
        "goal_met": all(r["share_of_peak"] >= GOAL_SHARE for r in goal_sizes),
        "flops_convention": "share_of_peak: 6N + 6 L T d + 6 V d per token (lm_head counted); "
                            "share_of_peak_6N: 6N + 6 L T d (scaling-law convention, no lm_head)",
        "peak": "best torch.mm GFLOP/s on square fp32 matrices, measured at the start and after each size",
        "where_time_goes": profiles,
    }
    return {"rows": rows, "baseline": "PlainGPT: separate q/k/v Linear, explicit masked softmax attention, "
                                      "untied head, full-logits cross-entropy, for-each AdamW, plain loop",
            "summary": summary}
