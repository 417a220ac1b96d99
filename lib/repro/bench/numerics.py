"""How far fp32 training numbers move with the CPU's kernel path, and what pinning a path costs.

``python -m repro bench numerics [--quick]``. fp32 training on a CPU is deterministic on one machine
with one kernel path, but ATen (vectorised element-wise ops, softmax, attention, AdamW), MKL (matmul)
and oneDNN each choose kernels by the CPU's instruction set, and kernels that sum in another order give
other last bits; training amplifies those bits. This benchmark re-trains one stored D-CPT grid point
(``s/code/r0.10`` of ``data/dcpt/grid``: its base model pre-trained from scratch, then the CPT run,
15 evaluations) in a fresh process per kernel configuration of :data:`CONFIGS`, set through the
libraries' own variables before torch loads:

* ``ATEN_CPU_CAPABILITY`` (``default`` = no explicit vectorisation, ``avx2``, ``avx512``),
* ``MKL_CBWR`` (MKL's conditional numerical reproducibility: a fixed code path, ``COMPATIBLE`` = SSE2),
* ``ONEDNN_MAX_CPU_ISA`` (the widest instruction set oneDNN may use),
* torch's intra-op threads (1 or 2).

Rows: each configuration's largest relative difference from the stored table and from this machine's
native path (``native``), over every evaluation of L_g and L_d, whether it equals native bit for bit,
and its training speed (median step time of the ``l`` grid model, measured in rounds that alternate the
configurations, each in its own process) as a ratio to native's. ``native-again`` repeats native: the
run-to-run spread on one path. ``--quick`` uses a tiny spec on the smoke tokens (drift between paths
only, no stored table) and three configurations.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths

POINT = "s/code/r0.10"  # the stored point the grid test re-trains
# name -> (environment for the libraries, torch threads)
CONFIGS: dict[str, tuple[dict[str, str], int]] = {
    "native": ({}, 1),
    "native-again": ({}, 1),
    "native-2-threads": ({}, 2),
    "aten-avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "mkl-avx2": ({"MKL_CBWR": "AVX2"}, 1),
    "onednn-avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "all-avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "portable": ({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
}
QUICK_CONFIGS = ("native", "native-again", "aten-default")
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def _spec(quick: bool):
    from ..dcpt.grid import Grid, GridSpec, spec_from_json

    if quick:
        return GridSpec(sizes=(("s", 2, 4, 64),), domains=("code",), ratios=(0.1,), context=32, batch_size=8,
                        base_steps=40, cpt_steps=30, warmup_steps=5, n_evals=6, eval_batches=2,
                        token_profile="smoke"), None
    stored = Grid.load(paths.DATA / "dcpt" / "grid")
    return spec_from_json(stored.meta["spec"]), stored


# -- the worker: one process per configuration (the variables act only before torch is imported) --------
def _worker(task: str, quick: bool, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from ..data import vocab_size
    from ..dcpt.grid import token_loader
    from ..machine import machine_info

    spec, _ = _spec(quick)
    load = token_loader(spec.token_profile)
    out: dict[str, Any] = {"machine": machine_info(threads)}
    if task == "retrain":
        from ..dcpt.grid import cpt_run

        paths.BUILD = Path(tempfile.mkdtemp(prefix="repro-numerics-"))  # no cached base model
        t0 = time.perf_counter()
        rows = cpt_run(spec, spec.sizes[0], "code", 0.1, load, vocab_size(), log=lambda s: None)
        out.update(seconds=time.perf_counter() - t0, rows=rows)
    else:  # speed: training steps of the largest grid model
        from ..data.sampler import DomainSampler
        from ..nn.gpt import GPT, GPTConfig
        from ..train import TrainConfig, make_optimizer

        name, n_layer, n_head, d_model = spec.sizes[-1]
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=vocab_size(), context=spec.context, n_layer=n_layer, n_head=n_head,
                              d_model=d_model))
        opt = make_optimizer(model, TrainConfig(max_steps=100, warmup_steps=0, lr=1e-3))
        sampler = DomainSampler({"general": load("general", "train")}, spec.context, spec.batch_size, seed=0)
        times = []
        for i in range(4 + (5 if quick else 15)):
            x, y = (torch.as_tensor(t) for t in sampler.next_batch()[:2])
            t0 = time.perf_counter()
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 4:
                times.append(time.perf_counter() - t0)
        out.update(step_ms=1e3 * statistics.median(times))
    return out


def _spawn(task: str, name: str, quick: bool) -> dict[str, Any]:
    env_vars, threads = CONFIGS[name]
    env = {k: v for k, v in os.environ.items() if k not in KNOBS} | env_vars
    env["PYTHONPATH"] = str(paths.LIB.parent) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "repro.bench.numerics", "--worker", task, "--threads", str(threads)]
    proc = subprocess.run(cmd + (["--quick"] if quick else []), env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"numerics worker {name}/{task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _max_rel(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    x = np.array([[r["L_g"], r["L_d"]] for r in a])
    y = np.array([[r["L_g"], r["L_d"]] for r in b])
    return float(np.max(np.abs(x / y - 1)))


def run(quick: bool = False) -> dict[str, Any]:
    """The numerics benchmark: one stored D-CPT point trained again in a fresh process per kernel configuration
    (threads, instruction-set knobs), each compared with the stored losses and with the native run; returns the
    JSON written (``quick``: fewer configurations)."""
    from ..progress import tqdm

    names = QUICK_CONFIGS if quick else tuple(CONFIGS)
    _, stored = _spec(quick)
    rid = None if stored is None else stored.find(POINT)
    kept = None if stored is None else sorted((r for r in stored.rows if r["run"] == rid), key=lambda r: r["step"])
    runs = {n: _spawn("retrain", n, quick) for n in tqdm(names, desc="re-train per kernel path")}
    rounds = 2 if quick else 3
    speed: dict[str, list[float]] = {n: [] for n in names}
    for k in tqdm(range(rounds), desc="speed rounds"):
        for n in (names if k % 2 == 0 else names[::-1]):  # alternate the order, so load drifts hit all alike
            speed[n].append(_spawn("speed", n, quick)["step_ms"])
    native = runs["native"]
    base_ms = statistics.median(speed["native"])
    rows = []
    for n in names:
        r = runs[n]
        rows.append({
            "config": n, "env": " ".join(f"{k}={v}" for k, v in CONFIGS[n][0].items()) or "-",
            "threads": CONFIGS[n][1], "aten_path": r["machine"]["torch_cpu_capability"],
            "max_rel_vs_native": _max_rel(r["rows"], native["rows"]),
            "bit_equal_native": [x["L_g"] for x in r["rows"]] == [x["L_g"] for x in native["rows"]]
            and [x["L_d"] for x in r["rows"]] == [x["L_d"] for x in native["rows"]],
            **({"max_rel_vs_stored": _max_rel(r["rows"], kept)} if kept else {}),
            "step0_L_g": r["rows"][0]["L_g"], "step_ms": statistics.median(speed[n]),
            "speed_vs_native": base_ms / statistics.median(speed[n]), "retrain_s": round(r["seconds"], 1)})
    paths_ = [r for r in rows if not r["config"].startswith("native")]
    summary = {
        "point": None if quick else POINT,
        "stored_step0_L_g": kept[0]["L_g"] if kept else None,
        "native_run_to_run_bit_equal": rows[1]["bit_equal_native"],
        "max_rel_across_paths_here": max(r["max_rel_vs_native"] for r in rows),
        "max_rel_vs_stored": max(r["max_rel_vs_stored"] for r in rows) if kept else None,
        "any_path_bit_equal_stored": bool(kept) and any(r.get("max_rel_vs_stored") == 0.0 for r in rows),
        "slowest_path_vs_native": min(r["speed_vs_native"] for r in paths_) if paths_ else None,
    }
    return {"baseline": "native: this machine's own kernel path, 1 thread, no variables set", "rows": rows,
            "summary": summary}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["retrain", "speed"], required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(json.dumps(_worker(a.worker, a.quick, a.threads)))
