"""Notebook 06's analysis of the stored runs (:mod:`.sweep` tables): retrieval tables with intervals over seeds, the
paired differences each claim is decided on, training curves, cost, and the plots.

The metric (declared before the runs): recall at k (R@1, R@5, R@10) of text-to-video (t2v) and video-to-text (v2t)
retrieval over a gallery of 256 candidates, scored by the model's own retrieval where it has one (``cosine``: the
dual encoder's contrastive features; ``head``: the binary match head over every pair) and by ``linear`` maps
fitted on frozen pooled features (the same protocol for every model, including MLM alone, which has no retrieval
of its own). Every configuration of one seed starts from the same initialisation and sees the same batches, so
comparisons are paired by seed, the independent unit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import runs
from .pretrain import KS, TASK_SETS
from .sweep import COLUMNS

__all__ = ["CLAIMS", "OWN_SCORING", "load", "obtain", "profile_spec", "order_gains", "base_steps", "matched_mlm", "matched_cpu_ratio", "queue_ends", "retrieval", "base_momentum", "recall_table",
           "gallery_table", "claim_units", "curves", "cost_table", "probe_table", "queue_table", "plot_videos",
           "plot_curves", "plot_gallery_kinds", "plot_queue", "t_interval"]

CLAIMS = ("contrastive-raises-t2v", "order-helps-hard-more", "dual-beats-binary", "larger-queue-helps")
# each configuration's own retrieval: the dual encoder's cosine where it learned one, the match head for mlm+bin;
# MLM alone has none, so the frozen-feature linear maps stand in
OWN_SCORING = {"mlm": "linear", "mlm+bin": "head", "mlm+vsa": "cosine", "mlm+vsa+mfm": "cosine", "all": "cosine"}
GALLERIES = ("heldout", "random", "hard")


def load(names: Sequence[str], folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of the tables ``names`` (``"victor/ablation"``, ...) from ``data/`` or ``folder``, with each run's
    CPU seconds (``cpu_s``). Raises ``ValueError`` naming ``names`` when a table is empty or missing."""
    return runs.load_tables(names, COLUMNS, folder)


def obtain(cfg, device: str = "cpu") -> pd.DataFrame:
    """The rows of a notebook profile (:data:`repro.victor.profiles.PROFILES`): read from the stored tables
    (``source="stored"``), or trained first (``"live"``: the smoke sweep in a fresh temporary folder; the GPU
    sweeps resume their tables under ``data/``) on ``device``."""
    import tempfile

    from .sweep import smoke_sweep, sweep

    if cfg["source"] == "stored":
        return load(cfg["tables"])
    if cfg["tables"] == ("victor/smoke",):
        folder = tempfile.mkdtemp(prefix="victor-smoke-")
        runs.run_sweep(smoke_sweep(folder), jobs=1, progress=False, log=lambda s: None)
        return load(["victor-smoke"], folder)
    for name in cfg["tables"]:
        runs.run_sweep(sweep(name, device), jobs=cfg["jobs"])
    return load(cfg["tables"])


def profile_spec(cfg):
    """The :class:`~repro.victor.sweep.VictorRun` of a profile's {all} runs (sizes, steps, queues)."""
    from .sweep import _FULL, SMOKE, VictorRun

    sizes = SMOKE if cfg["tables"] == ("victor/smoke",) else _FULL if "victor/full" in cfg["tables"] else {}
    return VictorRun("all", **sizes)


def base_momentum(frame: pd.DataFrame) -> float:
    """The momentum of the ablation ladder's runs (the one every configuration was run at)."""
    m = frame[frame["config"] == "mlm"]["momentum"]
    return float(m.mode().iloc[0]) if len(m) else float(frame["momentum"].mode().iloc[0])


def base_steps(frame: pd.DataFrame) -> int:
    """The steps every configuration of the ladder was run for (the most common)."""
    return int(frame.groupby("run")["steps"].first().mode().iloc[0])


def _ladder(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the ablation ladder: every configuration at the base steps, momentum and queue."""
    q = frame[frame["config"] == "mlm"]["queue"]
    queue = int(q.mode().iloc[0]) if len(q) else int(frame["queue"].mode().iloc[0])
    return frame[(frame["momentum"] == base_momentum(frame)) & (frame["queue"] == queue)
                 & (frame["steps"] == base_steps(frame))]


def matched_mlm(frame: pd.DataFrame) -> pd.DataFrame:
    """Retrieval rows of MLM alone run for more steps than the ladder (to {MLM + VSA + MFM}'s compute); empty when
    the tables hold none."""
    f = frame[(frame["config"] == "mlm") & (frame["steps"] > base_steps(frame)) & (frame["kind"] == "retrieval")]
    return f[["config", "seed", "gallery", "direction", "scoring", "k", "value", "steps"]]


def retrieval(frame: pd.DataFrame) -> pd.DataFrame:
    """Retrieval rows of the ablation ladder: ``config, seed, gallery, direction, scoring, k, value``."""
    r = _ladder(frame)
    return r[r["kind"] == "retrieval"][["config", "seed", "gallery", "direction", "scoring", "k", "value"]]


def t_interval(values: Sequence[float], low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """95 % t-interval of the mean of ``values`` (:func:`repro.record.interval`), clipped to ``[low, high]``; NaNs
    for fewer than two values."""
    from .. import record

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    iv = record.interval(v, record.above(0), "t")
    return max(low, iv["ci_low"]), min(high, iv["ci_high"])


def recall_table(frame: pd.DataFrame, gallery: str = "heldout", scoring: str | None = None) -> pd.DataFrame:
    """R@1/5/10 in both directions on ``gallery`` per configuration: mean over seeds and its 95 % t-interval
    (clipped to [0, 1]); ``scoring`` ``None`` takes each configuration's own (:data:`OWN_SCORING`). Columns
    ``scoring``, ``seeds``, then ``t2v R@1``, ``t2v R@1 ci`` (a ``(low, high)`` pair) and so on."""
    r = retrieval(frame)
    rows = {}
    for c in [c for c in TASK_SETS if c in set(r["config"])]:
        s = scoring or OWN_SCORING[c]
        sub = r[(r["config"] == c) & (r["gallery"] == gallery) & (r["scoring"] == s)]
        row: dict = {"scoring": s, "seeds": sub["seed"].nunique()}
        for d in ("t2v", "v2t"):
            for k in KS:
                v = sub[(sub["direction"] == d) & (sub["k"] == k)].sort_values("seed")["value"].to_numpy()
                row[f"{d} R@{k}"] = round(float(v.mean()), 3) if len(v) else float("nan")
                lo, hi = t_interval(v)
                row[f"{d} R@{k} ci"] = (round(lo, 3), round(hi, 3))
        rows[c] = row
    return pd.DataFrame(rows).T


def gallery_table(frame: pd.DataFrame, direction: str = "t2v", k: int = 1) -> pd.DataFrame:
    """R@k in ``direction`` per configuration (own scoring) and gallery kind, mean over seeds."""
    r = retrieval(frame)
    out = {}
    for c in [c for c in TASK_SETS if c in set(r["config"])]:
        sub = r[(r["config"] == c) & (r["scoring"] == OWN_SCORING[c]) & (r["direction"] == direction) & (r["k"] == k)]
        out[c] = sub.groupby("gallery")["value"].mean().reindex(list(GALLERIES))
    return pd.DataFrame(out).T


def _values(r: pd.DataFrame, config: str, gallery: str, scoring: str, direction: str = "t2v", k: int = 1
            ) -> pd.Series:
    sub = r[(r["config"] == config) & (r["gallery"] == gallery) & (r["scoring"] == scoring)
            & (r["direction"] == direction) & (r["k"] == k)]
    return sub.set_index("seed")["value"].sort_index()


def _diff(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    d = (a - b).dropna()
    return pd.DataFrame({"seed": d.index.astype(int), "diff": d.to_numpy(dtype=float)})


def matched_cpu_ratio(frame: pd.DataFrame) -> float:
    """Training CPU time of MLM at its matched steps over {MLM + VSA + MFM}'s at the ladder's (medians over seeds);
    NaN when the tables hold no matched runs."""
    c = frame[(frame["kind"] == "cost") & (frame["task"] == "train_cpu_s")]
    m = c[(c["config"] == "mlm") & (c["steps"] > base_steps(frame))]["value"]
    ref = _ladder(frame)
    ref = ref[(ref["kind"] == "cost") & (ref["task"] == "train_cpu_s") & (ref["config"] == "mlm+vsa+mfm")]["value"]
    return float(m.median() / ref.median()) if len(m) and len(ref) else float("nan")


def claim_units(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-seed differences each claim is decided on (positive supports it), text-to-video R@1:

    * ``contrastive-raises-t2v``: {MLM + dual-VSA + MFM} minus {MLM} run for as much CPU time (more steps; the
      ladder's MLM where the tables hold no such runs), held-out gallery, frozen-feature linear retrieval (the one
      protocol both models have);
    * ``order-helps-hard-more``: the gain of adding the order tasks ({all} minus {MLM + dual-VSA + MFM}) on the
      hard-negative gallery minus its gain on the random one, dual-encoder (cosine) retrieval;
    * ``dual-beats-binary``: {MLM + dual-VSA} (cosine) minus {MLM + binary head} (head scores), held-out;
    * ``larger-queue-helps``: {MLM + dual-VSA} with the largest queue minus the smallest, at the ablation's
      momentum, held-out, cosine.
    """
    r = retrieval(frame)
    gain = {g: _values(r, "all", g, "cosine") - _values(r, "mlm+vsa+mfm", g, "cosine") for g in ("hard", "random")}
    q = frame[(frame["kind"] == "retrieval") & (frame["config"] == "mlm+vsa") & (frame["momentum"] == base_momentum(frame))
              & (frame["gallery"] == "heldout") & (frame["scoring"] == "cosine") & (frame["direction"] == "t2v")
              & (frame["k"] == 1)]
    by_q = q.pivot_table(index="seed", columns="queue", values="value")
    big = by_q[by_q.columns.max()] - by_q[by_q.columns.min()] if by_q.shape[1] >= 2 else pd.Series(dtype=float)
    m = matched_mlm(frame)
    mlm = _values(m if len(m) else r, "mlm", "heldout", "linear")
    return {"contrastive-raises-t2v": _diff(_values(r, "mlm+vsa+mfm", "heldout", "linear"), mlm),
            "order-helps-hard-more": _diff(gain["hard"], gain["random"]),
            "dual-beats-binary": _diff(_values(r, "mlm+vsa", "heldout", "cosine"),
                                       _values(r, "mlm+bin", "heldout", "head")),
            "larger-queue-helps": _diff(big, pd.Series(0.0, index=big.index))}


def order_gains(frame: pd.DataFrame, scoring: str = "cosine") -> pd.DataFrame:
    """Adding the order tasks ({all} minus {MLM + dual-VSA + MFM}), t2v R@1, per seed and gallery kind."""
    r = retrieval(frame)
    return pd.DataFrame({g: _values(r, "all", g, scoring) - _values(r, "mlm+vsa+mfm", g, scoring)
                         for g in GALLERIES})


def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Training loss per configuration, task and step, mean over seeds (ablation ladder)."""
    f = _ladder(frame)
    f = f[f["kind"] == "loss"]
    return f.groupby(["config", "task", "step"])["value"].mean().reset_index()


def cost_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (ladder): median training CPU seconds and samples/s over seeds, the CPU time relative to
    MLM alone, and evaluation seconds."""
    f = _ladder(frame)
    c = f[f["kind"] == "cost"].pivot_table(index="config", columns="task", values="value", aggfunc="median")
    c = c.reindex([k for k in TASK_SETS if k in c.index])
    c["cpu_vs_mlm"] = c["train_cpu_s"] / c.loc["mlm", "train_cpu_s"] if "mlm" in c.index else np.nan
    return c[["train_cpu_s", "samples_per_s", "cpu_vs_mlm", "eval_s"]].rename_axis(columns=None)


def probe_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Linear-probe accuracy (the first event's action, 6 classes; chance 1/6) per configuration: mean and 95 %
    t-interval over seeds."""
    f = _ladder(frame)
    f = f[f["kind"] == "probe"]
    out = {}
    for c in [c for c in TASK_SETS if c in set(f["config"])]:
        v = f[f["config"] == c].sort_values("seed")["value"].to_numpy()
        out[c] = {"accuracy": float(v.mean()), "ci": tuple(round(x, 3) for x in t_interval(v)), "seeds": len(v)}
    return pd.DataFrame(out).T


def queue_table(frame: pd.DataFrame, gallery: str = "heldout") -> pd.DataFrame:
    """{MLM + dual-VSA}'s t2v and v2t R@1 (cosine) on ``gallery`` per queue size and momentum: mean and the seeds'
    values."""
    f = frame[(frame["kind"] == "retrieval") & (frame["config"] == "mlm+vsa") & (frame["gallery"] == gallery)
              & (frame["scoring"] == "cosine") & (frame["k"] == 1)]
    t = f.pivot_table(index=["queue", "momentum"], columns="direction", values="value", aggfunc=["mean", "count"])
    t.columns = [f"{d} R@1" if a == "mean" else f"{d} seeds" for a, d in t.columns]
    return t


def queue_ends(frame: pd.DataFrame) -> dict:
    """{MLM + VSA}'s held-out t2v R@1 (cosine, mean over seeds) with the smallest and the largest queue at the
    ladder's momentum, and at the ladder's queue with the base and another momentum (NaN where none was run)."""
    t = queue_table(frame)["t2v R@1"]
    m0 = base_momentum(frame)
    q0 = int(_ladder(frame)["queue"].mode().iloc[0])
    at_m0 = t.xs(m0, level="momentum")
    others = [m for m in t.xs(q0, level="queue").index if m != m0]
    return {"small_queue": int(at_m0.index.min()), "small": round(float(at_m0.iloc[0]), 4),
            "large_queue": int(at_m0.index.max()), "large": round(float(at_m0.iloc[-1]), 4),
            "base_momentum": m0, "base": round(float(t[(q0, m0)]), 4),
            "other_momentum": others[0] if others else float("nan"),
            "other": round(float(t[(q0, others[0])]), 4) if others else float("nan")}


# ---------------------------------------------------------------------------------------------------- plots
def plot_videos(pairs, rows: Sequence[int], ax=None):
    """The frames of ``pairs`` rows ``rows`` as image strips, one row per video, its caption as the row's title
    (CJK glyphs where matplotlib has a font with them; else the caption is printed by the notebook)."""
    import matplotlib.pyplot as plt

    rows = list(rows)
    strip = np.concatenate([np.concatenate(list(pairs.frames[i].transpose(0, 2, 3, 1)), axis=1) for i in rows], 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 1.1 * len(rows)))
    ax.imshow(strip, interpolation="nearest")
    h = pairs.frames.shape[-1]
    ax.set_yticks([h * (i + 0.5) for i in range(len(rows))], [f"video {i}" for i in rows])
    ax.set_xticks([h * (t + 0.5) for t in range(pairs.frames.shape[1])], [str(t) for t in range(pairs.frames.shape[1])])
    ax.set_xlabel("frame")
    return ax


def plot_curves(frame: pd.DataFrame, axes=None):
    """Training loss of each task over steps, one panel per task, a line per configuration (mean over seeds)."""
    import matplotlib.pyplot as plt

    c = curves(frame)
    tasks = [t for t in ("mlm", "binary", "vsa", "intra_mfm", "inter_mfm", "msom", "fom") if t in set(c["task"])]
    if axes is None:
        _, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.8), squeeze=False)
        axes = axes[0]
    for ax, t in zip(axes, tasks, strict=False):
        for cfg_name, g in c[c["task"] == t].groupby("config", sort=False):
            ax.plot(g["step"], g["value"], label=cfg_name)
        if t in ("msom", "fom"):
            ax.axhline(np.log(6), color="grey", ls=":", lw=1, label="ln 6 (chance)")
        if t == "binary":
            ax.axhline(np.log(2), color="grey", ls=":", lw=1, label="ln 2 (chance)")
        ax.set_title(t)
        ax.set_xlabel("step")
    axes[0].set_ylabel("training loss (nats)")
    axes[-1].legend(fontsize=7)
    return axes


def plot_gallery_kinds(frame: pd.DataFrame, ax=None):
    """t2v R@1 (own scoring) per configuration on the held-out, random-negative and hard-negative galleries: mean
    over seeds (bars) and each seed (dots)."""
    import matplotlib.pyplot as plt

    r = retrieval(frame)
    configs = [c for c in TASK_SETS if c in set(r["config"])]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(GALLERIES)
    for j, g in enumerate(GALLERIES):
        for i, c in enumerate(configs):
            v = _values(r, c, g, OWN_SCORING[c])
            x = i + (j - 1) * width
            ax.bar(x, v.mean(), width, color=f"C{j}", label=g if i == 0 else None, alpha=0.8)
            ax.plot([x] * len(v), v, "k.", ms=3)
    ax.set_xticks(range(len(configs)), [f"{c}\n({OWN_SCORING[c]})" for c in configs], fontsize=8)
    ax.set_ylabel("text-to-video R@1")
    ax.axhline(1 / 256, color="grey", ls=":", lw=1, label="chance (1/256)")
    ax.axhline(0.25, color="C2", ls="--", lw=1, label="hard: an order-blind model's best (1/4)")
    ax.legend(fontsize=8)
    return ax


def plot_queue(frame: pd.DataFrame, axes=None):
    """{MLM + dual-VSA}'s held-out t2v R@1 (cosine) against the queue size (at the ablation's momentum) and against
    the momentum (at its queue): each seed (dots) and the mean (line)."""
    import matplotlib.pyplot as plt

    f = frame[(frame["kind"] == "retrieval") & (frame["config"] == "mlm+vsa") & (frame["gallery"] == "heldout")
              & (frame["scoring"] == "cosine") & (frame["k"] == 1) & (frame["direction"] == "t2v")]
    m0 = base_momentum(frame)
    q0 = int(_ladder(frame)["queue"].mode().iloc[0])
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, (knob, fixed, val) in zip(axes, (("queue", "momentum", m0), ("momentum", "queue", q0)), strict=True):
        g = f[f[fixed] == val]
        ax.plot(g[knob], g["value"], "k.", ms=5)
        mean = g.groupby(knob)["value"].mean()
        ax.plot(mean.index, mean.to_numpy(), "-o", color="C0")
        ax.set_xlabel(knob + (" (keys in the visual and textual queues)" if knob == "queue" else " m"))
        ax.set_xscale("log" if knob == "queue" else "linear")
        ax.set_title(f"{fixed} = {val}", fontsize=9)
    axes[0].set_ylabel("held-out t2v R@1 (cosine)")
    return axes
