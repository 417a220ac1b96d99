"""One short check of the workbook's CUDA paths, prepared for a GPU machine (a few minutes on one GPU).

    PYTHONPATH=lib python3 scripts/gpu_check.py --out OUT [--device cuda] [--skip-dcpt]

It needs the repository's ``lib/`` and, for the D-CPT part, the built corpora in ``data/build/full``
(``make data``); no notebook tooling. Writes ``OUT/gpu_check.json`` and prints a summary; exits 1 when
a check fails.

1. PICASSO on the device: the baseline, D- and K-packing and the full path (D-packing, two micro-batches
   interleaved on a side CUDA stream, the cache's slow tier in pinned host memory) train 5 steps on
   batches made on the CPU; their losses must equal the per-field baseline trained on the CPU. Then
   ``measure_fields`` at 300 fields on the device (samples/s of every variant against the baseline).
2. D-CPT: one run of the ``full`` grid spec on the device (the smallest model's base pre-training and one
   continual pre-training run, ``dcpt grid --full --only s/code/r0.10``) into ``OUT/grid-full-check``.

On a machine without a GPU, ``--device cpu --skip-dcpt`` runs part 1 on the CPU (a check of the script).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def picasso_check(device: str, steps: int = 5, batch: int = 512) -> dict:
    from repro.picasso import (
        CachedEmbedding,
        ClickLogGenerator,
        DPackedEmbedding,
        KPackedEmbedding,
        PerFieldEmbedding,
        WideAndDeep,
        init_field_tables,
        make_optimizers,
        make_schema,
        train_step,
    )
    from repro.picasso import measure as bench

    schema = make_schema(100, seed=0, vocab_range=bench.VOCAB, alpha=bench.ALPHA)
    gen = ClickLogGenerator(schema, seed=0)  # batches made on the CPU, moved to the device
    batches = [gen.batch(i, batch) for i in range(steps)]
    tables = init_field_tables(schema, seed=0)

    def run(stage, dev, mb=1, il=False):
        m = WideAndDeep(schema, stage, seed=0).to(dev)
        opt = make_optimizers(m)
        return [train_step(m, opt, b.to(dev), micro_batches=mb, interleave=il) for b in batches]

    ref = run(PerFieldEmbedding(schema, tables=tables), "cpu")
    cached = CachedEmbedding(schema, tables=tables, device=device, capacity=0.1, **bench.LINK)
    cached.warm_up(gen, 4, batch, start=10_000)
    variants = {"baseline": (PerFieldEmbedding(schema, tables=tables, device=device), 1, False),
                "dpacked": (DPackedEmbedding(schema, tables=tables, device=device), 1, False),
                "kpacked": (KPackedEmbedding(schema, tables=tables, device=device), 1, False),
                bench.FULL: (cached, bench.MICRO, True)}
    out = {"loss_reference_cpu": ref, "max_abs_loss_diff": {}}
    for name, (stage, mb, il) in variants.items():
        losses = run(stage, device, mb, il)
        out["max_abs_loss_diff"][name] = max(abs(a - b) for a, b in zip(losses, ref, strict=True))
    out["losses_equal"] = all(d < 1e-4 for d in out["max_abs_loss_diff"].values())
    t0 = time.perf_counter()
    meas = bench.measure_fields(300, rounds=5, n_batches=3, device=device, peers={})
    out["measure_fields_300_s"] = time.perf_counter() - t0
    out["speedup_vs_baseline_at_300"] = {r["variant"]: r["speedup_vs_baseline"] for r in meas["rows"]}
    out["samples_per_s_at_300"] = {r["variant"]: r["samples_per_s"] for r in meas["rows"]}
    return out


def dcpt_check(device: str, out_dir: Path) -> dict:
    table = out_dir / "grid-full-check"
    cmd = [sys.executable, "-m", "repro", "dcpt", "grid", "--full", "--device", device, "--only", "s/code/r0.10",
           "--out", str(table)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    res = {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "seconds": time.perf_counter() - t0,
           "output_tail": (proc.stdout + proc.stderr)[-3000:]}
    csv = table.with_suffix(".csv")
    if csv.exists():
        lines = csv.read_text().splitlines()
        res["rows"] = len(lines) - 1
        res["last_row"] = lines[-1]
    res["ok"] = proc.returncode == 0 and res.get("rows", 0) > 0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-dcpt", action="store_true")
    a = ap.parse_args()
    from repro.seed import pick_device

    device = pick_device(a.device)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"device": device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}
    report["picasso"] = picasso_check(device)
    ok = report["picasso"]["losses_equal"]
    if not a.skip_dcpt:
        report["dcpt"] = dcpt_check(device, out_dir)
        ok &= report["dcpt"]["ok"]
    report["ok"] = ok
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "dcpt"}, indent=1))
    if "dcpt" in report:
        print(json.dumps({k: v for k, v in report["dcpt"].items() if k != "output_tail"}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
