"""Speed of DDK's distillation against KD and CPT: ``python -m repro bench ddk [--quick]``.

At the stored runs' sizes (:class:`repro.ddk.sweep.DDKRun`: a 2-block student of width 64 and a 4-block teacher of
width 128, batches of 16 x 64 tokens, K = 20), rounds of CPT (the student alone), KD (student and teacher's forward)
and DDK (KD plus the student's evaluation on the seven validation sets and a re-weighting every K steps) train for
the same steps in the same run, in rotating order (:func:`repro.ddk.cost.measure`). Reported: student-step
throughput of KD and DDK against CPT, and DDK's re-weighting overhead over KD in wall time, per round and the
median. Goal: at most 3 % of KD's wall time at the default K. The paper's own comparison (Table 12) is in FLOPs,
which the notebook counts (:func:`repro.ddk.sweep.run_flops`).
"""

from __future__ import annotations

import statistics
from typing import Any

from ..ddk.cost import measure, overhead
from ..ddk.sweep import DDKRun, run_flops
from ..seed import set_threads

GOAL_OVERHEAD = 0.03


def run(quick: bool = False) -> dict[str, Any]:
    from ..data import vocab_size

    threads = set_threads()
    spec = DDKRun("ddk")
    steps, rounds = (20, 3) if quick else (120, 5)  # quick: one interval per run, about 40 s on 2 cores
    times = measure(spec, steps, rounds)
    med = times.groupby("method")["tokens_per_s"].median()
    over = overhead(times)
    rows = [{"method": m, "tokens_per_s": round(float(med[m])), "vs_cpt": float(med[m] / med["cpt"]),
             "seconds_median": float(times[times["method"] == m]["seconds"].median())} for m in ("cpt", "kd", "ddk")]
    vocab = vocab_size()
    flops = {m: run_flops(DDKRun(m), vocab)["total"] for m in ("cpt", "kd", "ddk")}
    return {"rows": rows, "baseline": "CPT (student alone) and KD (student + teacher forward), same run",
            "summary": {"threads": threads, "steps": steps, "rounds": rounds, "K": spec.K,
                        "overhead_per_round": [round(float(v), 4) for v in over],
                        "overhead_median": round(float(statistics.median(over)), 4),
                        "goal_overhead": GOAL_OVERHEAD,
                        "goal_met": bool(statistics.median(over) <= GOAL_OVERHEAD),
                        "flops_ratio_ddk_kd": round(flops["ddk"] / flops["kd"], 5),
                        "flops_ratio_kd_cpt": round(flops["kd"] / flops["cpt"], 4)}}
