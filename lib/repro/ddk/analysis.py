"""Notebook 01's analysis of the stored runs (:mod:`.sweep` tables): one row per run, paired differences over seeds,
weight trajectories, ablation curves, and the plots.

The metric (declared before the runs): the student/teacher perplexity ratio ``l_S / l_T = exp(CE_S - CE_T)`` on
each corpus's *test* set at the end of distillation (the validation sets drive DDK's weights, so they are not
used to judge it); per run its largest value over the seven corpora (``worst_ratio``) and its mean
(``mean_ratio``), and the mean test cross-entropy over the corpora (``mean_ce``, nats per token). Every run of one
seed starts from the same pre-trained student, so comparisons are paired by seed, the independent unit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths, runs
from .equations import total_variation
from .sweep import COLUMNS, CORPORA, METHODS, TEACHER_COLUMNS

__all__ = ["CLAIMS", "NON_INFERIORITY", "METRICS", "base", "load", "load_teacher", "obtain", "profile_spec", "summary",
           "gap_before", "paired", "claim_units", "trajectories", "ablation", "final_ratios", "main_runs",
           "method_table", "ablation_table", "flops_table", "validation_share", "plot_gap", "plot_trajectories",
           "plot_ratios", "plot_ablation", "plot_ratio_curves"]

# "at equal or better loss" is decided against this margin, declared before the runs: 0.02 nats per token
NON_INFERIORITY = 0.02
METRICS = ("worst_ratio", "mean_ratio", "mean_ce", "tv")


def load(names: Sequence[str], folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of the distillation tables ``names`` (sweep names such as ``"ddk/main"``, read from ``data/`` or
    ``folder``) in one frame with :data:`repro.ddk.sweep.COLUMNS` and each run's CPU seconds (``cpu_s``). Raises
    ``ValueError`` naming ``names`` when a table is empty or missing (:func:`repro.runs.load_tables`)."""
    return runs.load_tables(names, COLUMNS, folder)


def load_teacher(name: str = "ddk/teacher", folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """The teacher table (one row per corpus: natural weight, validation and test CE, parameter counts). Raises
    ``ValueError`` naming ``name`` when it is empty or missing."""
    path = (paths.DATA if folder is None else Path(folder)) / name
    table = runs.Table.load(path, TEACHER_COLUMNS)
    if not table.rows:
        raise ValueError(f"name: the table {path}.csv holds no runs (run `python -m repro runs {name}`)")
    return table.frame().set_index("domain")


def obtain(cfg, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(teacher, frame)`` of a notebook profile (:data:`repro.ddk.profiles.PROFILES`): read from the stored tables
    (``source="stored"``) or trained first (``"live"``: the smoke sweeps in a fresh temporary folder, so every smoke
    run trains end to end; other sweeps resume their tables under ``data/``) on ``device``."""
    import tempfile

    from .sweep import smoke_sweeps, sweep

    teacher_name, *names = cfg["tables"]
    if cfg["source"] == "stored":
        return load_teacher(teacher_name), load(names)
    if teacher_name == "ddk/smoke-teacher":  # in this process, with the model cache in the temporary folder too
        folder = tempfile.mkdtemp(prefix="ddk-smoke-")
        build, paths.BUILD = paths.BUILD, Path(folder) / "build"
        try:
            for sw in smoke_sweeps(folder):
                runs.run_sweep(sw, jobs=1, progress=False, log=lambda s: None)
        finally:
            paths.BUILD = build
        return load_teacher("ddk-smoke-teacher", folder), load(["ddk-smoke"], folder)
    for name in cfg["tables"]:
        runs.run_sweep(sweep(name, device), jobs=cfg["jobs"])
    return load_teacher(teacher_name), load(names)


def profile_spec(cfg):
    """The :class:`~repro.ddk.sweep.DDKRun` of a profile's DDK runs (sizes, steps, K)."""
    from .sweep import _FULL, SMOKE, DDKRun

    sizes = {"ddk/smoke-teacher": SMOKE}.get(cfg["tables"][0], _FULL if "ddk/full" in cfg["tables"] else {})
    return DDKRun("ddk", **sizes)


def summary(frame: pd.DataFrame, natural: pd.Series | None = None) -> pd.DataFrame:
    """One row per run, indexed by run id: ``method``, ``mixture``, ``gamma``, ``T``, ``K``, ``seed``, the final
    ``worst_ratio``, ``mean_ratio`` and ``mean_ce`` on the test sets (and ``natural_ce``, the test CE weighted by
    the ``natural`` mixture ``{corpus: weight}`` when given), the pre-distillation ``worst_ratio_0`` and
    ``mean_ratio_0``, ``tv`` (total variation of the sampled weights over the updates, :func:`total_variation` from
    the first update on: the jump from interval 0's natural mixture is the workbook's choice, not the rule's),
    ``ratio_roughness`` (mean over corpora of the mean absolute second difference of the validation ratio over
    the evaluations: how jagged the paper's Fig. 3/5 curves are), ``wall_s``, ``cpu_s`` (where loaded), ``flops``, ``ratio_<corpus>`` (final test ratio per corpus) and ``ratio0_<corpus>`` (before)."""
    rows = []
    for rid, g in frame.groupby("run", sort=False):
        last, first = g["step"].max(), g["step"].min()
        end = g[g["step"] == last].set_index("domain").loc[list(CORPORA)]
        start = g[g["step"] == first].set_index("domain").loc[list(CORPORA)]
        moved = g[(g["step"] < last) & (g["step"] > first)]  # the mixtures of interval 1 on
        w = moved.pivot(index="step", columns="domain", values="weight")[list(CORPORA)] if len(moved) else None
        q = g.pivot(index="step", columns="domain", values="val_ratio")[list(CORPORA)].to_numpy()
        head = end.iloc[0]
        row = {"run": rid, "method": head["method"], "mixture": head["mixture"], "gamma": head["gamma"],
               "T": head["T"], "K": int(head["K"]), "seed": int(head["seed"]),
               "worst_ratio": float(end["test_ratio"].max()), "mean_ratio": float(end["test_ratio"].mean()),
               "mean_ce": float(end["test_ce"].mean()), "worst_ratio_0": float(start["test_ratio"].max()),
               "mean_ratio_0": float(start["test_ratio"].mean()),
               "worst_domain": str(end["test_ratio"].idxmax()),
               "tv": total_variation(w.to_numpy() / w.to_numpy().sum(1, keepdims=True)) if w is not None else 0.0,
               "ratio_roughness": float(np.abs(np.diff(q, 2, axis=0)).mean()) if len(q) > 2 else np.nan,
               "wall_s": float(head["wall_s"]), "cpu_s": float(head.get("cpu_s", np.nan)),
               "flops": float(head["flops"])}
        if natural is not None:
            row["natural_ce"] = float(sum(natural[c] * end.loc[c, "test_ce"] for c in CORPORA))
        row.update({f"ratio_{c}": float(end.loc[c, "test_ratio"]) for c in CORPORA})
        row.update({f"ratio0_{c}": float(start.loc[c, "test_ratio"]) for c in CORPORA})
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def base(runs_: pd.DataFrame) -> dict[str, float]:
    """The main sweep's settings, which the ablations vary one at a time: DDK's gamma, and the T and K of the KD runs
    (T = 1, K = 20 in the stored runs). Raises ``ValueError`` when the KD runs are missing or disagree."""
    kd = runs_[runs_["method"] == "kd"]
    if not len(kd) or kd["T"].nunique() != 1 or kd["K"].nunique() != 1:
        raise ValueError("runs_: the main sweep's KD runs (one T and one K) are needed to know the main settings")
    return {"gamma": METHODS["ddk"][1], "T": float(kd["T"].iloc[0]), "K": int(kd["K"].iloc[0])}


def _main(runs_: pd.DataFrame, method: str) -> pd.DataFrame:
    """The main sweep's runs of ``method``: its own gamma, the main T and K (:func:`base`)."""
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r} (valid: {', '.join(METHODS)})")
    b = base(runs_)
    r = runs_[(runs_["method"] == method) & (runs_["gamma"] == METHODS[method][1])]
    return r[(r["T"] == b["T"]) & (r["K"] == b["K"])]


def paired(runs_: pd.DataFrame, a: str, b: str, metric: str = "mean_ratio") -> pd.DataFrame:
    """``metric`` of method ``a`` minus method ``b`` per seed (main-sweep settings), columns ``seed`` and ``diff``;
    only seeds where both ran. Positive: ``b`` is lower (better for the ratios and the CE). Raises ``ValueError``
    naming ``a``/``b`` for an unknown method or ``metric`` for an unknown column."""
    if metric not in runs_.columns:
        raise ValueError(f"metric: {metric!r} is not a column of the summary ({', '.join(runs_.columns)})")
    m = _main(runs_, a).merge(_main(runs_, b), on="seed", suffixes=("_a", "_b"))
    return pd.DataFrame({"seed": m["seed"].astype(int), "diff": m[f"{metric}_a"] - m[f"{metric}_b"]}
                        ).sort_values("seed", ignore_index=True)


def gap_before(runs_: pd.DataFrame) -> pd.DataFrame:
    """The student/teacher test ratio per corpus before distillation (the pre-trained student, the same for every
    method of one seed): one row per seed (index), one column per corpus."""
    first = runs_.sort_values("method").groupby("seed").head(1).set_index("seed").sort_index()
    return first[[f"ratio0_{c}" for c in CORPORA]].rename(columns=lambda c: c.removeprefix("ratio0_"))


def ablation(runs_: pd.DataFrame, knob: str, metric: str = "mean_ratio") -> pd.DataFrame:
    """DDK's ``metric`` per value of ``knob`` (``"gamma"``, ``"T"`` or ``"K"``) and seed, the other two at the main
    sweep's values (gamma 0.2, T 1, K 20); the gamma = 0 point is ``ce-ddk`` (CE with DDK's sampling). Columns
    ``value``, ``seed``, ``metric``; only the seeds that ran every value. Raises ``ValueError`` naming ``knob``."""
    if knob not in ("gamma", "T", "K"):
        raise ValueError(f"knob must be 'gamma', 'T' or 'K', got {knob!r}")
    main = base(runs_)
    r = runs_[runs_["method"] == "ddk"]
    if knob == "gamma":
        r = pd.concat([r, _main(runs_, "ce-ddk")])
    for other, v in main.items():
        if other != knob:
            r = r[r[other] == v]
    out = pd.DataFrame({"value": r[knob].astype(float), "seed": r["seed"].astype(int), "metric": r[metric]})
    every = out.groupby("seed")["value"].nunique()
    keep = every[every == out["value"].nunique()].index
    return out[out["seed"].isin(keep)].sort_values(["value", "seed"], ignore_index=True)


CLAIMS = ("ddk-worst-vs-kd", "ddk-worst-vs-cpt", "ddk-mean-vs-kd", "ddk-mean-vs-cpt", "fs-smoother",
          "fs-no-loss-penalty", "ddk-beats-es", "k-interior-optimum", "gamma-beats-zero", "reweight-overhead")


def claim_units(runs_: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-seed differences each of notebook 01's run claims is decided on (all but ``reweight-overhead``, which
    is decided on timing rounds), as ``{claim: frame}`` with columns ``seed`` and ``diff``; positive supports the
    claim except for ``fs-no-loss-penalty`` (DDK minus DDK w/o FS mean CE, to lie below the margin).

    * ``ddk-{worst,mean}-vs-{kd,cpt}``: KD's (CPT's) worst (mean) test ratio minus DDK's;
    * ``fs-smoother``: total variation of DDK w/o FS's weights minus DDK's (from the first update on);
    * ``fs-no-loss-penalty``: DDK's mean test CE minus DDK w/o FS's;
    * ``ddk-beats-es``: DDK-ES's mean ratio minus DDK's;
    * ``k-interior-optimum``: the better of the shortest and longest interval's mean ratio minus the main K's
      (positive: the main interval, 30 per run as in the paper, beats both ends; empty unless the main K lies
      strictly between the shortest and the longest);
    * ``gamma-beats-zero``: ``ce-ddk``'s (gamma 0) mean ratio minus DDK's (gamma 0.2).
    """
    out = {"ddk-worst-vs-kd": paired(runs_, "kd", "ddk", "worst_ratio"),
           "ddk-worst-vs-cpt": paired(runs_, "cpt", "ddk", "worst_ratio"),
           "ddk-mean-vs-kd": paired(runs_, "kd", "ddk", "mean_ratio"),
           "ddk-mean-vs-cpt": paired(runs_, "cpt", "ddk", "mean_ratio"),
           "fs-smoother": paired(runs_, "ddk-nofs", "ddk", "tv"),
           "fs-no-loss-penalty": paired(runs_, "ddk", "ddk-nofs", "mean_ce"),
           "ddk-beats-es": paired(runs_, "ddk-es", "ddk", "mean_ratio"),
           "gamma-beats-zero": paired(runs_, "ce-ddk", "ddk", "mean_ratio")}
    k = ablation(runs_, "K").pivot(index="seed", columns="value", values="metric")
    main_k = float(base(runs_)["K"])
    if k.shape[1] >= 3 and main_k in k.columns and k.columns.min() < main_k < k.columns.max():
        ends = k[[k.columns.min(), k.columns.max()]].min(axis=1)
        d = (ends - k[main_k]).dropna()
        out["k-interior-optimum"] = pd.DataFrame({"seed": d.index.astype(int), "diff": d.to_numpy()})
    else:
        out["k-interior-optimum"] = pd.DataFrame({"seed": pd.Series(dtype=int), "diff": pd.Series(dtype=float)})
    return out


def trajectories(frame: pd.DataFrame, method: str, column: str = "weight") -> pd.DataFrame:
    """``column`` (``"weight"``: the sampled mixture of the interval starting at each step; ``"val_ratio"``; ``"r"``)
    per step and corpus for ``method``'s main-sweep runs, mean over seeds: index ``step``, one column per corpus."""
    kd = frame[frame["method"] == "kd"]
    f = frame[(frame["method"] == method) & (frame["gamma"] == METHODS[method][1]) & (frame["T"] == kd["T"].iloc[0])
              & (frame["K"] == kd["K"].iloc[0])]
    if column == "weight":
        f = f[f["step"] < f["step"].max()]
    return f.pivot_table(index="step", columns="domain", values=column, aggfunc="mean")[list(CORPORA)]


def final_ratios(runs_: pd.DataFrame) -> pd.DataFrame:
    """Mean final test ratio per method (main-sweep settings) and corpus: rows methods, columns corpora."""
    rows = {m: _main(runs_, m)[[f"ratio_{c}" for c in CORPORA]].mean() for m in METHODS if len(_main(runs_, m))}
    return pd.DataFrame(rows).T.rename(columns=lambda c: c.removeprefix("ratio_"))


# ---------------------------------------------------------------------------------------------------- plots
def _t_half_width(values: np.ndarray) -> float:
    """Half the width of the 95 % t-interval of the mean (:func:`repro.record.interval`); NaN for one value."""
    from .. import record

    if len(values) < 2:
        return float("nan")
    iv = record.interval(values, record.above(0), "t")
    return (iv["ci_high"] - iv["ci_low"]) / 2


def plot_gap(gap: pd.DataFrame, ax=None):
    """The pre-trained student's test perplexity ratio to the teacher per corpus: mean over seeds (bars) and each
    seed (points). A flat profile would leave DDK nothing to re-weight."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    x = np.arange(gap.shape[1])
    ax.bar(x, gap.mean().to_numpy(), color="C7", alpha=0.6)
    for _, row in gap.iterrows():
        ax.scatter(x, row.to_numpy(), color="k", s=10)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(x, list(gap.columns), rotation=20)
    ax.set(ylabel="student / teacher perplexity", title="before distillation (test sets)")
    return ax


def plot_trajectories(frame: pd.DataFrame, methods: Sequence[str] = ("ddk", "ddk-nofs", "kd-doremi", "ce-ddk"),
                      axes=None):
    """The sampled domain weights over training, mean over seeds, one stacked panel per method (the paper's
    Fig. 3/5 shows the ratios; here the weights they produce)."""
    import matplotlib.pyplot as plt

    methods = [m for m in methods if m in set(frame["method"])]
    axes = axes if axes is not None else plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2),
                                                      sharey=True)[1]
    for ax, m in zip(np.atleast_1d(axes), methods, strict=True):
        w = trajectories(frame, m)
        ax.stackplot(w.index, w.T.to_numpy(), labels=list(w.columns), step="post")
        ax.set(title=m, xlabel="step", ylim=(0, 1))
    np.atleast_1d(axes)[0].set_ylabel("domain weight")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    return axes


def plot_ratios(runs_: pd.DataFrame, methods: Sequence[str] | None = None, ax=None):
    """Final test ratio per corpus and method (main-sweep settings): mean and 95 % t-interval over seeds."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(11, 3.8))[1]
    methods = [m for m in (methods or METHODS) if len(_main(runs_, m))]
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        r = _main(runs_, m)
        for i, c in enumerate(CORPORA):
            v = r[f"ratio_{c}"].to_numpy()
            ax.errorbar(i + width * (j - (len(methods) - 1) / 2), v.mean(), yerr=_t_half_width(v), fmt="o",
                        color=f"C{j}", ms=4, capsize=2, label=m if i == 0 else None)
    ax.set_xticks(range(len(CORPORA)), list(CORPORA))
    ax.set(ylabel="student / teacher perplexity (test)", title="after distillation: mean and 95 % t-interval")
    ax.legend(fontsize=7, ncol=len(methods))
    return ax


def plot_ablation(runs_: pd.DataFrame, axes=None, metric: str = "mean_ratio"):
    """DDK's ``metric`` against gamma, T and K (log scale), per seed (points) and the mean (line)."""
    import matplotlib.pyplot as plt

    axes = axes if axes is not None else plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)[1]
    for ax, knob in zip(axes, ("gamma", "T", "K"), strict=True):
        a = ablation(runs_, knob, metric)
        if not len(a):
            continue
        ax.scatter(a["value"], a["metric"], color="C0", s=10)
        m = a.groupby("value")["metric"].mean()
        ax.plot(m.index, m.to_numpy(), color="C0")
        ax.set(xlabel=knob, xscale="log" if knob != "gamma" else "linear")
    axes[0].set_ylabel(f"{metric} (test)")
    return axes


def plot_ratio_curves(frame: pd.DataFrame, corpora: Sequence[str] = ("general", "math", "music"),
                      methods: Sequence[str] = ("ddk", "ddk-nofs", "kd"), axes=None):
    """The validation ratio ``l_S / l_T`` over training for three corpora, mean over seeds, per method (the
    paper's Fig. 3/5)."""
    import matplotlib.pyplot as plt

    axes = axes if axes is not None else plt.subplots(1, len(corpora), figsize=(4 * len(corpora), 3.2))[1]
    for ax, c in zip(np.atleast_1d(axes), corpora, strict=True):
        for j, m in enumerate(m for m in methods if m in set(frame["method"])):
            r = trajectories(frame, m, "val_ratio")[c]
            ax.plot(r.index, r.to_numpy(), color=f"C{j}", label=m)
        ax.set(title=c, xlabel="step")
    np.atleast_1d(axes)[0].set_ylabel("validation l_S / l_T")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return axes


# ---------------------------------------------------------------------------------------------------- tables
def main_runs(runs_: pd.DataFrame) -> pd.DataFrame:
    """The :func:`summary` rows of the main comparison: every method at its own gamma and the main T and K."""
    return pd.concat([_main(runs_, m) for m in METHODS if (runs_["method"] == m).any()])


def method_table(runs_: pd.DataFrame) -> pd.DataFrame:
    """Per method of the main comparison (rows in :data:`~repro.ddk.sweep.METHODS` order): ``runs``, mean
    ``worst_ratio``, ``mean_ratio`` and ``mean_ce`` after distillation, the seed-to-seed std of ``mean_ratio``, mean
    ``weight_tv``, ``ratio_roughness``, ``natural_ce`` (where the summary has it), the most frequent
    ``worst_domain`` and the mean ``cpu_minutes`` per run (the runs' CPU time, where loaded)."""
    r = main_runs(runs_)
    g = r.groupby("method", sort=False)
    cols = dict(runs=("seed", "size"), worst_ratio=("worst_ratio", "mean"), mean_ratio=("mean_ratio", "mean"),
                mean_ce=("mean_ce", "mean"), seed_std_mean_ratio=("mean_ratio", "std"), weight_tv=("tv", "mean"),
                ratio_roughness=("ratio_roughness", "mean"), cpu_minutes=("cpu_s", "mean"))
    if "natural_ce" in r.columns:
        cols["natural_ce"] = ("natural_ce", "mean")
    out = g.agg(**cols)
    out["worst_domain"] = g["worst_domain"].agg(lambda s: s.mode().iloc[0])
    out["cpu_minutes"] /= 60
    return out


def ablation_table(runs_: pd.DataFrame, metric: str = "mean_ratio") -> pd.DataFrame:
    """Mean ``metric`` over seeds per knob (rows ``gamma``, ``T``, ``K``) and value (columns, as text)."""
    rows = {}
    for knob in ("gamma", "T", "K"):
        a = ablation(runs_, knob, metric)
        rows[knob] = {f"{v:g}": float(m) for v, m in a.groupby("value")["metric"].mean().items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def flops_table(run) -> pd.DataFrame:
    """:func:`~repro.ddk.sweep.run_flops` of every method at ``run``'s sizes, steps and K (rows methods; columns
    ``student``, ``teacher``, ``reweight``, ``total``, in FLOPs)."""
    from dataclasses import replace

    from ..data import vocab_size
    from .sweep import run_flops

    vocab = vocab_size()
    return pd.DataFrame({m: run_flops(replace(run, method=m, gamma=METHODS[m][1]), vocab) for m in METHODS}).T


def validation_share(run) -> float:
    """Validation windows DDK reads per interval over the training windows of an interval: ``N val_batches / K``
    (both in batches of the same size). The paper: 500 samples x 10 domains against 1,000 steps of about 250
    samples, about 0.02."""
    return len(CORPORA) * run.teacher.val_batches / run.K
