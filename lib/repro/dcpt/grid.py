"""The D-CPT experiment grid: real continual pre-training runs whose losses the law is fitted to.

For each model size a base model is pre-trained on the general corpus (the paper starts from
pre-trained Qwen-1.5 models). Then, for each domain and each of the paper's nine mixtures, the base
model is continually pre-trained on general + domain data with domain share ``r_d``, at a constant
learning rate after warm-up (so that evaluations along one run are valid data-size points: the
card's pitfall about cosine schedules), evaluating both the general and the domain validation loss at
steps spaced densely early and sparsely late (App. I's lesson: exponential-decay sampling).

The table (one row per evaluation) is rewritten atomically after every finished run, so an
interrupted grid resumes where it stopped; a JSON beside it records the command, the spec, the git
revision and the cost of every run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths

# The paper's nine general:domain mixtures {10:0, 9:1, 8:2, 6.7:3.3, 5:5, 3.3:6.7, 2:8, 1:9, 0:10} as r_d.
PAPER_RATIOS = (0.0, 0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0)
# The stored grid (data/dcpt/grid.csv): three sizes of about 0.10M, 0.22M and 0.40M non-embedding parameters,
# sized so the whole grid fits in about an hour of one CPU core.
DEFAULT_SPEC = dict(sizes=(("s", 2, 4, 64), ("m", 2, 4, 96), ("l", 2, 4, 128)), domains=("code", "math"),
                    context=128, batch_size=16, base_steps=400, cpt_steps=250, warmup_steps=10, n_evals=14,
                    eval_batches=4)
# The cross-domain grid (data/dcpt/grid-cross.csv): the other four domains at the two smaller sizes, with
# everything else as the main grid, so that the two tables together give all six domains at sizes s and m.
CROSS_SPEC = dict(DEFAULT_SPEC, sizes=DEFAULT_SPEC["sizes"][:2], domains=("chemistry", "law", "medicine", "music"))
# The full grid (GPU): all six domains at three larger sizes (about 0.8M, 4.7M and 14M non-embedding
# parameters), longer runs and contexts; about 160 runs, so the cross-domain law needs no second table.
FULL_SPEC = dict(sizes=(("s", 4, 4, 128), ("m", 6, 8, 256), ("l", 8, 8, 384)),
                 domains=("chemistry", "code", "law", "math", "medicine", "music"), context=256, batch_size=64,
                 base_steps=3000, cpt_steps=2000, warmup_steps=50, n_evals=24, eval_batches=16)
COLUMNS = ("run", "size", "N", "n_total", "domain", "r_d", "step", "D", "L_g", "L_d")


@dataclass(frozen=True)
class GridSpec:
    """Everything that decides the grid's numbers (the table's JSON records it)."""

    sizes: tuple[tuple[str, int, int, int], ...]  # (name, n_layer, n_head, d_model)
    domains: tuple[str, ...] = ("code", "math")
    ratios: tuple[float, ...] = PAPER_RATIOS
    context: int = 128
    batch_size: int = 16
    base_steps: int = 600
    base_lr: float = 3e-3
    cpt_steps: int = 400
    cpt_lr: float = 1e-3
    warmup_steps: int = 20
    n_evals: int = 16
    eval_batches: int = 8
    seed: int = 0
    general: str = "general"
    token_profile: str = "default"

    def __post_init__(self) -> None:
        bad = [r for r in self.ratios if not 0 <= r <= 1]
        if bad:
            raise ValueError(f"ratios must lie in [0, 1], got {bad}")
        if not self.sizes:
            raise ValueError("sizes must name at least one model size")
        for name, _layers, n_head, d_model in self.sizes:
            if d_model % n_head:
                raise ValueError(f"size {name!r}: n_head={n_head} must divide d_model={d_model}")
        if self.warmup_steps >= self.cpt_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be below cpt_steps={self.cpt_steps}")

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON types (tuples become lists), as it is stored beside the table."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def eval_steps(self) -> list[int]:
        return eval_schedule(self.cpt_steps, self.n_evals, first=self.warmup_steps)

    def runs(self) -> list[tuple[str, str, str, float]]:
        # domain by domain, so that an interrupted grid has whole domains
        return [(run_id(s[0], d, r), s[0], d, r) for d in self.domains for s in self.sizes for r in self.ratios]


def run_id(size: str, domain: str, r_d: float) -> str:
    return f"{size}/{domain}/r{r_d:.2f}"


def eval_schedule(max_steps: int, n: int, first: int = 1, lam: float = 4.0) -> list[int]:
    """``n`` evaluation steps in [first, max_steps], with density proportional to exp(-lam x/max_steps).

    App. I.2's best sampling (M4) uses an exponentially decaying density; ``lam`` sets how strongly
    early steps are favoured. Step 0 (the base model, before any domain data) is always added.
    """
    if n < 2 or max_steps <= first:
        raise ValueError(f"need n >= 2 and max_steps > first, got n={n}, max_steps={max_steps}, first={first}")
    u = np.linspace(0, 1, n)
    span = max_steps - first
    x = -np.log1p(-u * (1 - math.exp(-lam))) / lam  # inverse CDF of the truncated exponential on [0, 1]
    steps = sorted({0, *(int(round(first + v * span)) for v in x)})
    return steps


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class Grid:
    """A grid table on disk: ``<path>.csv`` with :data:`COLUMNS` and ``<path>.json`` with its provenance."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Grid:
        path = Path(path)
        g = cls(path)
        csv, meta = path.with_suffix(".csv"), path.with_suffix(".json")
        if csv.exists():
            lines = csv.read_text().splitlines()
            head = lines[0].split(",")
            if tuple(head) != COLUMNS:
                raise ValueError(f"{csv}: columns {head}, expected {list(COLUMNS)}")
            for line in lines[1:]:
                vals = line.split(",")
                g.rows.append({k: (v if k in ("run", "size", "domain") else float(v)) for k, v in zip(head, vals, strict=True)})
        if meta.exists():
            g.meta = json.loads(meta.read_text())
        return g

    def done(self) -> set[str]:
        return set(self.meta.get("runs", {}))

    def merge_run(self, rid: str, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
        """Add one finished run and save, merging with what other processes saved to the same table meanwhile
        (under an exclusive lock, so that grids split over processes with ``--domains`` share one table)."""
        import fcntl

        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            disk = Grid.load(self.path)
            done = set(disk.meta.get("runs", {})) - {rid}
            self.rows = [r for r in disk.rows if r["run"] in done] + rows
            self.meta["runs"] = {k: v for k, v in disk.meta.get("runs", {}).items() if k in done} | {rid: info}
            self.save()

    def save(self) -> None:
        lines = [",".join(COLUMNS)]
        for r in self.rows:
            lines.append(",".join(str(r[k]) if isinstance(r[k], str) else repr(float(r[k])) for k in COLUMNS))
        paths.atomic_write_text(self.path.with_suffix(".csv"), "\n".join(lines) + "\n")
        paths.atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.meta, indent=1) + "\n")

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


TokenLoader = Callable[[str, str], np.ndarray]  # (corpus, split) -> 1-D token array


def _model(spec: GridSpec, size: tuple[str, int, int, int], vocab: int):
    from ..nn.gpt import GPT, GPTConfig

    name, n_layer, n_head, d_model = size
    return GPT(GPTConfig(vocab_size=vocab, context=spec.context, n_layer=n_layer, n_head=n_head, d_model=d_model))


def base_model(spec: GridSpec, size: tuple[str, int, int, int], load: TokenLoader, vocab: int,
               device: str = "cpu", cache: Path | None = None, log: Callable[[str], None] = print):
    """Pre-train (or load from ``cache``) the base model of one size on the general corpus (cosine schedule)."""
    import torch

    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train

    torch.manual_seed(spec.seed)
    model = _model(spec, size, vocab)
    cache = cache or paths.BUILD / "dcpt" / f"base-{size[0]}-{_spec_hash(spec, base_only=True)}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return model
    t0 = time.perf_counter()
    sampler = DomainSampler({spec.general: load(spec.general, "train")}, spec.context, spec.batch_size, seed=spec.seed)
    cfg = TrainConfig(max_steps=spec.base_steps, lr=spec.base_lr, min_lr=spec.base_lr / 10,
                      warmup_steps=min(spec.warmup_steps * 2, spec.base_steps), schedule="cosine", device=device,
                      seed=spec.seed)
    train(model, sampler, cfg)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    paths.atomic_write_bytes(cache, buf.getvalue())
    log(f"base {size[0]}: {model.num_params():,} non-embedding params, {spec.base_steps} steps in "
        f"{time.perf_counter() - t0:.0f} s")
    return model


def _spec_hash(spec: GridSpec, base_only: bool = False) -> str:
    import hashlib

    d = spec.to_json()
    if base_only:
        d = {k: d[k] for k in ("context", "batch_size", "base_steps", "base_lr", "warmup_steps", "seed", "general",
                               "token_profile")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def cpt_run(spec: GridSpec, size: tuple[str, int, int, int], domain: str, r_d: float, load: TokenLoader,
            vocab: int, device: str = "cpu", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One continual pre-training run from the base model; returns its table rows (step 0 included)."""
    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train

    model = base_model(spec, size, load, vocab, device, log=log)
    tokens = {spec.general: load(spec.general, "train"), domain: load(domain, "train")}
    val = {spec.general: load(spec.general, "validation"), domain: load(domain, "validation")}
    sampler = DomainSampler(tokens, spec.context, spec.batch_size, weights={spec.general: 1 - r_d, domain: r_d},
                            seed=spec.seed + 1)
    cfg = TrainConfig(max_steps=spec.cpt_steps, lr=spec.cpt_lr, min_lr=spec.cpt_lr, warmup_steps=spec.warmup_steps,
                      schedule="constant", eval_steps=spec.eval_steps(), eval_batches=spec.eval_batches,
                      device=device, seed=spec.seed, progress=False)
    history = train(model, sampler, cfg, val_tokens=val)
    n_non, n_total = model.num_params(True), model.num_params(False)
    rows = []
    for h in history:
        if "val" in h:
            rows.append({"run": run_id(size[0], domain, r_d), "size": size[0], "N": n_non, "n_total": n_total,
                         "domain": domain, "r_d": r_d, "step": h["step"], "D": h["tokens"],
                         "L_g": h["val"][spec.general], "L_d": h["val"][domain]})
    return rows


def run_grid(spec: GridSpec, path: str | os.PathLike, load: TokenLoader, vocab: int, *, device: str = "cpu",
             only: Sequence[str] | None = None, domains: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> Grid:
    """Run every (size, domain, ratio) not yet in the table at ``path`` (only the run ids ``only`` and the
    ``domains`` given, if given); save after each run."""
    unknown = sorted(set(domains or ()) - set(spec.domains))
    if unknown:
        raise ValueError(f"domains {unknown} are not in this grid's spec {list(spec.domains)}")
    grid = Grid.load(path)
    if grid.meta and grid.meta.get("spec") != spec.to_json():
        raise ValueError(f"{path} was made with another spec; use a new path or delete it.\n"
                         f"stored: {grid.meta.get('spec')}\nasked:  {spec.to_json()}")
    grid.meta.setdefault("spec", spec.to_json())
    grid.meta.setdefault("runs", {})
    grid.meta["command"] = " ".join([Path(sys.executable).name, "-m", "repro", *sys.argv[1:]]) \
        if sys.argv and sys.argv[0].endswith("__main__.py") else grid.meta.get("command", "repro.dcpt.grid.run_grid")
    todo = [r for r in spec.runs() if r[0] not in grid.done() and (not only or r[0] in only)
            and (not domains or r[2] in domains)]
    sizes = {s[0]: s for s in spec.sizes}
    log(f"D-CPT grid: {len(spec.runs())} runs, {len(grid.done())} done, {len(todo)} to go -> {grid.path}")
    for i, (rid, size, domain, r_d) in enumerate(todo, 1):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = cpt_run(spec, sizes[size], domain, r_d, load, vocab, device, log=log)
        grid.merge_run(rid, rows, {"seconds": round(time.perf_counter() - t0, 1),
                                   "cpu_seconds": round(time.process_time() - c0, 1), "git": _git_revision(),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        last = rows[-1]
        log(f"[{i}/{len(todo)}] {rid}: L_g {last['L_g']:.3f}, L_d {last['L_d']:.3f} "
            f"({grid.meta['runs'][rid]['seconds']:.0f} s)")
    return grid


def points(frame, which: str, min_step: int = 1):
    """The fitting points of a grid frame: ``which`` = "domain" (L_d against r_d) or "general" (L_g against r_g).

    N is in millions of non-embedding parameters and D in millions of tokens, so the paper's
    initialisation grid (made for billions) sits at the same magnitudes.
    """
    from .fit import Points

    if which not in ("domain", "general"):
        raise ValueError(f"which must be 'domain' or 'general', got {which!r}")
    f = frame[frame["step"] >= min_step]
    r = f["r_d"].to_numpy(float) if which == "domain" else 1 - f["r_d"].to_numpy(float)
    L = f["L_d" if which == "domain" else "L_g"].to_numpy(float)
    return Points(f["N"].to_numpy(float) / 1e6, f["D"].to_numpy(float) / 1e6, np.round(r, 6), L,
                  run=f["run"].to_numpy(), domain=f["domain"].to_numpy())


def usage1_ratios(r_star: float, step: float = 0.05, n: int = 2) -> tuple[float, ...]:
    """The predicted ratio and ``n`` neighbours on each side, ``step`` apart, inside [0, 1] (rounded to 0.01)."""
    rs = {round(min(1.0, max(0.0, r_star + k * step)), 2) for k in range(-n, n + 1)}
    return tuple(sorted(rs))


def usage1_verify(grid_path: str | os.PathLike, domain: str, load: TokenLoader, vocab: int, *, T: float = 0.03,
                  device: str = "cpu", fit_kw: dict[str, Any] | None = None, log: Callable[[str], None] = print
                  ) -> Grid:
    """Usage 1 checked by training: fit L3 (general and domain) on the grid, predict r_d* under the budget T at
    the middle model size and the grid's run length, then train r_d* and its neighbours; the runs go to
    ``<grid_path>-usage1-<domain>``."""
    from . import usage
    from .fit import fit
    from .laws import LAWS

    grid = Grid.load(grid_path)
    spec = GridSpec(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                       for k, v in grid.meta["spec"].items()})
    f = grid.frame()
    f = f[f["domain"] == domain]
    sizes = sorted(spec.sizes, key=lambda s: f[f["size"] == s[0]]["N"].iloc[0])
    mid = sizes[len(sizes) // 2]
    fm = f[f["size"] == mid[0]]
    N0, D0 = float(fm["N"].iloc[0]) / 1e6, float(fm["D"].max()) / 1e6
    L_g0 = float(fm[fm["step"] == 0]["L_g"].mean())
    kw = fit_kw or {"n_starts": 8, "grid_size": 20000}
    fg, fd = fit(LAWS["L3"], points(f, "general"), **kw), fit(LAWS["L3"], points(f, "domain"), **kw)
    pred = usage.optimal_ratio_under_budget(*usage.law_curves(fg, fd, N0, D0), L_g0, T)
    ratios = usage1_ratios(pred["r_d"])
    log(f"usage 1, {domain}: predicted r_d* = {pred['r_d']:.3f} at N0 = {N0:.2f}M, D0 = {D0:.2f}M; training {ratios}")
    vspec = dataclasses.replace(spec, sizes=(mid,), domains=(domain,), ratios=ratios)
    out = run_grid(vspec, f"{grid_path}-usage1-{domain}", load, vocab, device=device, log=log)
    out.meta["prediction"] = {"r_d": pred["r_d"], "L_g": pred["L_g"], "L_d": pred["L_d"], "T": T, "L_g0": L_g0,
                              "N0_M": N0, "D0_M": D0, "binds": pred["binds"], "fit": kw}
    out.save()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro dcpt grid [--out data/dcpt/grid] [--only RUN ...] [--device cpu] [--usage1 DOMAIN]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m repro dcpt grid",
                                     description="Train (or resume) the D-CPT grid and write its table.")
    parser.add_argument("--out", help="table path, without suffix (default data/dcpt/grid)")
    parser.add_argument("--only", nargs="+", help="run ids, e.g. m/code/r0.50")
    parser.add_argument("--cross", action="store_true", help="the cross-domain grid (the other four domains at "
                        "sizes s and m) instead of the main grid; --out defaults to data/dcpt/grid-cross")
    parser.add_argument("--full", action="store_true", help="the full grid (all six domains, larger models; "
                        "meant for a GPU: --device cuda); --out defaults to data/dcpt/grid-full")
    parser.add_argument("--domains", nargs="+", help="only these domains of the grid (several processes may "
                        "share one table, each with its own domains)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--usage1", metavar="DOMAIN", help="instead: verify usage 1 on DOMAIN by training r_d* "
                        "and its neighbours (needs that domain's grid)")
    a = parser.parse_args(argv)
    from ..data import load_tokens, vocab_size

    if a.cross and a.full:
        parser.error("--cross and --full exclude each other (the full grid holds every domain)")
    spec = GridSpec(**(CROSS_SPEC if a.cross else FULL_SPEC if a.full else DEFAULT_SPEC), seed=a.seed)
    a.out = a.out or str(paths.DATA / "dcpt" / ("grid-cross" if a.cross else "grid-full" if a.full else "grid"))
    if a.usage1:
        usage1_verify(a.out, a.usage1, lambda c, s: load_tokens(c, s, profile=spec.token_profile), vocab_size(),
                      device=a.device)
        return 0
    run_grid(spec, a.out, lambda corpus, split: load_tokens(corpus, split, profile=spec.token_profile),
             vocab_size(), device=a.device, only=a.only, domains=a.domains)
    return 0
