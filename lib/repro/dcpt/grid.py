"""The D-CPT experiment grid: real continual pre-training runs whose losses the law is fitted to.

For each model size a base model is pre-trained on the general corpus (the paper starts from
pre-trained Qwen-1.5 models). Then, for each domain and each of the paper's nine mixtures, the base
model is continually pre-trained on general + domain data with domain share ``r_d``, at a constant
learning rate after warm-up (so that evaluations along one run are valid data-size points: the
card's pitfall about cosine schedules), evaluating both the general and the domain validation loss at
steps spaced densely early and sparsely late (App. I's lesson: exponential-decay sampling).

The table (one row per evaluation) is rewritten atomically after every finished run, so an
interrupted grid resumes where it stopped; a JSON beside it records the command, the spec, the inputs
(vocabulary, tokenizer and token-array hashes: a table is resumed only from the same inputs) and, for
every run, its cost, git revision, device and machine. Base models are cached in ``build/dcpt`` under a
key of everything that decides their weights (:func:`base_key`).
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
from . import _check

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
        if not isinstance(self.sizes, tuple | list) or not self.sizes:
            raise ValueError("sizes must name at least one model size (name, n_layer, n_head, d_model)")
        for size in self.sizes:
            if not isinstance(size, tuple | list) or len(size) != 4:
                raise ValueError(f"sizes: each size is (name, n_layer, n_head, d_model), got {size!r}")
            name, n_layer, n_head, d_model = size
            _name("sizes", name)
            for what, v in (("n_layer", n_layer), ("n_head", n_head), ("d_model", d_model)):
                _check.integer(f"size {name!r}: {what}", v, 1)
            if d_model % n_head:
                raise ValueError(f"size {name!r}: n_head={n_head} must divide d_model={d_model}")
        if not isinstance(self.domains, tuple | list) or not self.domains:
            raise ValueError("domains must name at least one domain")
        for d in self.domains:
            _name("domains", d)
        _check.text("general", self.general)
        if self.general in self.domains:
            raise ValueError(f"domains must not hold the general corpus {self.general!r}")
        if not isinstance(self.ratios, tuple | list) or not self.ratios:
            raise ValueError("ratios must hold at least one domain ratio")
        for r in self.ratios:
            if not _check.is_real(r):
                raise TypeError(f"ratios must be numbers, got {r!r}")
        bad = [r for r in self.ratios if not 0 <= r <= 1]
        if bad:
            raise ValueError(f"ratios must lie in [0, 1], got {bad}")
        for field_, values in (("sizes", [s[0] for s in self.sizes]), ("domains", list(self.domains)),
                               ("ratios", [float(r) for r in self.ratios])):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(f"{field_} holds duplicates: {dup}")
        for what in ("context", "batch_size", "base_steps", "cpt_steps", "eval_batches"):
            _check.integer(what, getattr(self, what), 1)
        _check.integer("n_evals", self.n_evals, 2)
        _check.integer("warmup_steps", self.warmup_steps, 0)
        _check.integer("seed", self.seed, 0)
        _check.positive("base_lr", self.base_lr)
        _check.positive("cpt_lr", self.cpt_lr)
        _check.text("token_profile", self.token_profile)
        if self.warmup_steps >= self.cpt_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be below cpt_steps={self.cpt_steps}")
        ids = [r[0] for r in self.runs()]
        clash = sorted({i for i in ids if ids.count(i) > 1})
        if clash:
            raise ValueError(f"run ids collide: {clash}")

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON types (tuples become lists), as it is stored beside the table."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def eval_steps(self) -> list[int]:
        return eval_schedule(self.cpt_steps, self.n_evals, first=self.warmup_steps)

    def runs(self) -> list[tuple[str, str, str, float]]:
        # domain by domain, so that an interrupted grid has whole domains
        return [(run_id(s[0], d, r), s[0], d, r) for d in self.domains for s in self.sizes for r in self.ratios]


def _name(what: str, name: Any) -> str:
    """A size or domain name: a non-empty str without "/" (run ids are split at "/")."""
    _check.text(what, name)
    if "/" in name:
        raise ValueError(f"{what}: a name must not contain '/', got {name!r}")
    return name


def ratio_text(r_d: float) -> str:
    """``r_d`` as run ids write it: two decimals where they are exact (``0.10``, ``0.92``: the stored tables'
    ids), else the shortest text that reads back as the same float (``0.924``), so distinct ratios never
    share an id."""
    r_d = _check.fraction("r_d", r_d) + 0.0  # + 0.0: -0.0 reads as 0.0
    short = f"{r_d:.2f}"
    return short if float(short) == r_d else repr(r_d)


def run_id(size: str, domain: str, r_d: float) -> str:
    """The id of one run of the grid, e.g. ``m/code/r0.50``: distinct (size, domain, ratio) give distinct ids."""
    return f"{_name('size', size)}/{_name('domain', domain)}/r{ratio_text(r_d)}"


def eval_schedule(max_steps: int, n: int, first: int = 1, lam: float = 4.0) -> list[int]:
    """``n`` evaluation steps in [first, max_steps], with density proportional to exp(-lam x/max_steps).

    App. I.2's best sampling (M4) uses an exponentially decaying density; ``lam`` sets how strongly
    early steps are favoured. Step 0 (the base model, before any domain data) is always added.
    """
    max_steps, n, first = _check.integer("max_steps", max_steps, 1), _check.integer("n", n), _check.integer("first", first, 0)
    lam = _check.positive("lam", lam)
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


def _sha256(data: bytes | np.ndarray) -> str:
    import hashlib

    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes() + f"|{data.dtype.str}|{data.shape}".encode()
    return hashlib.sha256(data).hexdigest()


def tokenizer_id() -> str | None:
    """sha256 of the workbook's tokenizer file (None where it is absent)."""
    from ..data.tokenizer import TOKENIZER_PATH

    return _sha256(Path(TOKENIZER_PATH).read_bytes()) if Path(TOKENIZER_PATH).is_file() else None


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` for a CUDA device torch can see; a ``ValueError`` naming ``device`` else."""
    import torch

    _check.text("device", device)
    if device == "cpu":
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: torch sees no CUDA device here; use 'cpu'")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


BASE_FIELDS = ("context", "batch_size", "base_steps", "base_lr", "warmup_steps", "seed", "general", "token_profile")


def base_key(spec: GridSpec, size: tuple[str, int, int, int], vocab: int, general_train: np.ndarray,
             device: str = "cpu") -> dict[str, Any]:
    """Everything that decides a base model's weights: the full size (name, n_layer, n_head, d_model), the
    vocabulary, the spec's base-training settings, the sha256 of the general training tokens actually used, the
    tokenizer, the device kind and torch's version."""
    import torch

    return {"size": list(size), "vocab": int(vocab), "spec": {k: spec.to_json()[k] for k in BASE_FIELDS},
            "general_train_sha256": _sha256(np.asarray(general_train)), "tokenizer_sha256": tokenizer_id(),
            "device": torch.device(device).type, "torch": torch.__version__}


def base_model(spec: GridSpec, size: tuple[str, int, int, int], load: TokenLoader, vocab: int,
               device: str = "cpu", cache: Path | None = None, log: Callable[[str], None] = print):
    """Pre-train (or load from ``cache``) the base model of one size on the general corpus (cosine schedule).

    The cache holds the weights and, beside them (``.json``), their :func:`base_key`; it is used only when that
    key equals this call's (by default its file name carries a hash of the key as well), else the model is
    trained again and the cache rewritten."""
    import torch

    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train

    _check.instance("spec", spec, GridSpec)
    if tuple(size) not in {tuple(s) for s in spec.sizes}:
        raise ValueError(f"size {size!r} is not one of the spec's sizes {list(spec.sizes)}")
    vocab = _check.integer("vocab", vocab, 2)
    _check.callable_("load", load)
    general_train = load(spec.general, "train")
    key = base_key(spec, size, vocab, general_train, device)
    key_text = json.dumps(key, sort_keys=True)
    cache = Path(cache) if cache is not None else \
        paths.BUILD / "dcpt" / f"base-{size[0]}-{_sha256(key_text.encode())[:16]}.pt"
    cache_key = cache.with_suffix(".json")
    torch.manual_seed(spec.seed)
    model = _model(spec, size, vocab)
    if cache.exists() and cache_key.exists() and json.loads(cache_key.read_text()) == key:
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return model
    t0 = time.perf_counter()
    sampler = DomainSampler({spec.general: general_train}, spec.context, spec.batch_size, seed=spec.seed)
    cfg = TrainConfig(max_steps=spec.base_steps, lr=spec.base_lr, min_lr=spec.base_lr / 10,
                      warmup_steps=min(spec.warmup_steps * 2, spec.base_steps), schedule="cosine", device=device,
                      seed=spec.seed)
    train(model, sampler, cfg)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    paths.atomic_write_bytes(cache, buf.getvalue())
    paths.atomic_write_text(cache_key, json.dumps(key, indent=1, sort_keys=True) + "\n")
    log(f"base {size[0]}: {model.num_params():,} non-embedding params, {spec.base_steps} steps in "
        f"{time.perf_counter() - t0:.0f} s")
    return model


def cpt_run(spec: GridSpec, size: tuple[str, int, int, int], domain: str, r_d: float, load: TokenLoader,
            vocab: int, device: str = "cpu", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One continual pre-training run from the base model; returns its table rows (step 0 included)."""
    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train

    _check.instance("spec", spec, GridSpec)
    if domain not in spec.domains:
        raise ValueError(f"domain {domain!r} is not one of the spec's domains {list(spec.domains)}")
    rid = run_id(size[0], domain, r_d)
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
            rows.append({"run": rid, "size": size[0], "N": n_non, "n_total": n_total,
                         "domain": domain, "r_d": r_d, "step": h["step"], "D": h["tokens"],
                         "L_g": h["val"][spec.general], "L_d": h["val"][domain]})
    return rows


class GridArgumentError(ValueError):
    """A bad argument to :func:`run_grid`, found before any work starts; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


def grid_inputs(spec: GridSpec, load: TokenLoader, vocab: int) -> dict[str, Any]:
    """What besides the spec decides a grid's numbers: the vocabulary, the tokenizer and the sha256 of every
    token array the runs read (stored in the table's JSON; a table is only resumed under the same inputs)."""
    tokens = {f"{c}/{split}": _sha256(np.asarray(load(c, split)))
              for c in (spec.general, *spec.domains) for split in ("train", "validation")}
    return {"vocab": int(vocab), "tokenizer_sha256": tokenizer_id(), "tokens_sha256": tokens}


def check_grid_args(spec: GridSpec, path: str | os.PathLike, *, device: str = "cpu",
                    only: Sequence[str] | None = None, domains: Sequence[str] | None = None) -> Grid:
    """The checks :func:`run_grid` makes before any work (the table at ``path`` is loaded and returned):
    ``GridArgumentError`` naming ``spec``, ``path``, ``device``, ``only`` or ``domains``."""
    if not isinstance(spec, GridSpec):
        raise GridArgumentError("spec", f"must be a GridSpec, got {type(spec).__name__}")
    try:
        check_device(device)
    except (TypeError, ValueError) as e:
        raise GridArgumentError("device", str(e).removeprefix("device ")) from None
    for name, given, valid in (("domains", domains, list(spec.domains)), ("only", only, [r[0] for r in spec.runs()])):
        if given is None:
            continue
        if isinstance(given, str) or not all(isinstance(g, str) for g in given):
            raise GridArgumentError(name, f"must be a list of str, got {given!r}")
        unknown = [g for g in given if g not in valid]
        if unknown:
            shown = valid if len(valid) <= 12 else valid[:6] + ["..."]
            raise GridArgumentError(name, f"{unknown} not in this grid's spec (valid: {', '.join(shown)})")
    grid = Grid.load(path)
    if grid.meta and grid.meta.get("spec") != spec.to_json():
        stored = grid.meta.get("spec") or {}
        diff = sorted(k for k in set(stored) | set(spec.to_json()) if stored.get(k) != spec.to_json().get(k))
        raise GridArgumentError("path", f"{path} was made with another spec (differs in {', '.join(diff)}); use a "
                                "new path or the same settings")
    return grid


def run_grid(spec: GridSpec, path: str | os.PathLike, load: TokenLoader, vocab: int, *, device: str = "cpu",
             only: Sequence[str] | None = None, domains: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> Grid:
    """Run every (size, domain, ratio) not yet in the table at ``path`` (only the run ids ``only`` and the
    ``domains`` given, if given); save after each run.

    Every argument is checked before any work (:func:`check_grid_args`, and the inputs: a table already holding
    runs is resumed only when its recorded :func:`grid_inputs` equal the current ones). Each run's entry in the
    JSON records its wall and CPU seconds, the git revision, the device and the machine (:func:`machine_info`)."""
    from ..machine import machine_info

    grid = check_grid_args(spec, path, device=device, only=only, domains=domains)
    _check.callable_("load", load)
    vocab = _check.integer("vocab", vocab, 2)
    inputs = grid_inputs(spec, load, vocab)
    if grid.meta.get("inputs") not in (None, inputs):
        old = grid.meta["inputs"]
        diff = sorted(k for k in ("vocab", "tokenizer_sha256") if old.get(k) != inputs[k]) + sorted(
            k for k in inputs["tokens_sha256"] if old.get("tokens_sha256", {}).get(k) != inputs["tokens_sha256"][k])
        raise GridArgumentError("path", f"{path} holds runs made from other inputs (changed: {', '.join(diff)}); "
                                "use a new path")
    if not grid.done():
        grid.meta["inputs"] = inputs
    elif "inputs" not in grid.meta:
        log(f"note: {path} predates recorded inputs (token hashes); its runs cannot be checked against them")
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
                                   "device": device, "machine": machine_info(),
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

    _check.which(which)
    min_step = _check.integer("min_step", min_step, 0)
    _check.columns("frame", frame, ("run", "domain", "r_d", "step", "N", "D", "L_d" if which == "domain" else "L_g"))
    f = frame[frame["step"] >= min_step]
    r = f["r_d"].to_numpy(float) if which == "domain" else 1 - f["r_d"].to_numpy(float)
    L = f["L_d" if which == "domain" else "L_g"].to_numpy(float)
    return Points(f["N"].to_numpy(float) / 1e6, f["D"].to_numpy(float) / 1e6, np.round(r, 6), L,
                  run=f["run"].to_numpy(), domain=f["domain"].to_numpy())


def usage1_ratios(r_star: float, step: float = 0.05, n: int = 2) -> tuple[float, ...]:
    """The predicted ratio and ``n`` neighbours on each side, ``step`` apart, inside [0, 1] (rounded to 0.01)."""
    r_star, step, n = _check.fraction("r_star", r_star), _check.positive("step", step), _check.integer("n", n, 0)
    rs = {round(min(1.0, max(0.0, r_star + k * step)), 2) for k in range(-n, n + 1)}
    return tuple(sorted(rs))


def spec_from_json(d: dict[str, Any]) -> GridSpec:
    """The :class:`GridSpec` a table's JSON records (lists back to tuples)."""
    return GridSpec(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                       for k, v in d.items()})


# How closely a stored run re-trains on another machine. fp32 training is bit-for-bit repeatable on one machine
# with one kernel path and thread count, but ATen, MKL and oneDNN pick kernels by instruction set (and reductions
# split by threads), and training amplifies their last-bit differences. `python -m repro bench numerics`
# (reports/bench/numerics.json) re-trained s/code/r0.10 under 9 kernel paths on an Intel Xeon (AVX-512): the
# largest relative difference from the stored table (made on an AMD EPYC, AVX2, 1 thread) was 0.25 %, and
# 0.22 % between paths on the one machine; none of the paths gave the stored numbers back. The tolerance is
# twice the largest drift measured.
RETRAIN_RTOL = 5e-3


def retrain(grid_path: str | os.PathLike, rid: str, threads: int | None = None,
            log: Callable[[str], None] = lambda s: None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-train one stored run of the table at ``grid_path`` from scratch (its base model too, unless
    ``build/dcpt`` caches it); returns ``(rows, stored_rows)``, both ordered by step.

    ``threads``: torch's intra-op threads for the run (default: what the run recorded, else what the table's
    ``machine`` entry says, else 1); restored afterwards. Raises ``ValueError`` for an id the
    table does not hold. Compare with :data:`RETRAIN_RTOL` across machines, exactly on the one that made it.
    """
    import torch

    from ..data import load_tokens, vocab_size

    grid = Grid.load(grid_path)
    if rid not in grid.done():
        raise ValueError(f"rid {rid!r} is not a finished run of {grid_path}; it holds {len(grid.done())} runs")
    spec = spec_from_json(grid.meta["spec"])
    size_name, domain, _ = rid.split("/")
    kept = sorted((r for r in grid.rows if r["run"] == rid), key=lambda r: r["step"])
    size = next(s for s in spec.sizes if s[0] == size_name)
    info = grid.meta["runs"][rid]
    threads = threads or (info.get("machine") or grid.meta.get("machine") or {}).get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = cpt_run(spec, size, domain, float(kept[0]["r_d"]),
                       lambda c, s: load_tokens(c, s, profile=spec.token_profile), vocab_size(), log=log)
    finally:
        torch.set_num_threads(before)
    return sorted(rows, key=lambda r: r["step"]), kept


def check_usage1_args(grid_path: str | os.PathLike, domain: str) -> Grid:
    """The table at ``grid_path`` exists and holds every run of ``domain`` (``GridArgumentError`` else)."""
    grid = Grid.load(grid_path)
    if not grid.meta.get("spec"):
        raise GridArgumentError("grid_path", f"no grid table at {grid_path} (.csv and .json): train the grid first")
    spec = spec_from_json(grid.meta["spec"])
    if domain not in spec.domains:
        raise GridArgumentError("domain", f"{domain!r} is not a domain of {grid_path} (valid: "
                                f"{', '.join(spec.domains)})")
    missing = [r[0] for r in spec.runs() if r[2] == domain and r[0] not in grid.done()]
    if missing:
        raise GridArgumentError("domain", f"{domain!r}: {len(missing)} runs of {grid_path} are missing "
                                f"(e.g. {missing[0]}); finish the grid first")
    return grid


def usage1_verify(grid_path: str | os.PathLike, domain: str, load: TokenLoader, vocab: int, *, T: float = 0.03,
                  device: str = "cpu", fit_kw: dict[str, Any] | None = None, log: Callable[[str], None] = print
                  ) -> Grid:
    """Usage 1 checked by training: fit L3 (general and domain) on the grid, predict r_d* under the budget T at
    the middle model size and the grid's run length, then train r_d* and its neighbours; the runs go to
    ``<grid_path>-usage1-<domain>``."""
    from . import usage
    from .fit import fit
    from .laws import LAWS

    grid = check_usage1_args(grid_path, domain)
    T = _check.real("T", T, lo=0.0, hi=1.0, lo_open=True, hi_open=True, hint="0.03 for a 3 % budget")
    try:
        check_device(device)
    except (TypeError, ValueError) as e:
        raise GridArgumentError("device", str(e).removeprefix("device ")) from None
    spec = spec_from_json(grid.meta["spec"])
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


# how the command line spells the parameters that GridArgumentError names
_FLAGS = {"spec": "--seed", "path": "--out", "grid_path": "--out", "device": "--device", "only": "--only",
          "domains": "--domains", "domain": "--usage1"}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro dcpt grid [--out data/dcpt/grid] [--only RUN ...] [--device cpu] [--usage1 DOMAIN]``.

    Every argument is checked before any work; a bad one ends the command with one line naming it (exit 2)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one line, no usage block, no traceback
            self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")

    parser = Parser(prog="python -m repro dcpt grid", description="Train (or resume) the D-CPT grid and write its "
                    "table.")
    parser.add_argument("--out", help="table path, without suffix (default data/dcpt/grid)")
    parser.add_argument("--only", nargs="+", help="run ids, e.g. m/code/r0.50")
    parser.add_argument("--cross", action="store_true", help="the cross-domain grid (the other four domains at "
                        "sizes s and m) instead of the main grid; --out defaults to data/dcpt/grid-cross")
    parser.add_argument("--full", action="store_true", help="the full grid (all six domains, larger models; "
                        "meant for a GPU: --device cuda); --out defaults to data/dcpt/grid-full")
    parser.add_argument("--domains", nargs="+", help="only these domains of the grid (several processes may "
                        "share one table, each with its own domains)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="the grid's seed, a non-negative integer (default 0)")
    parser.add_argument("--usage1", metavar="DOMAIN", help="instead: verify usage 1 on DOMAIN by training r_d* "
                        "and its neighbours (needs that domain's complete grid at --out)")
    a = parser.parse_args(argv)
    if a.cross and a.full:
        parser.error("--cross and --full exclude each other (the full grid holds every domain)")
    if a.usage1 and (a.only or a.domains):
        parser.error("--usage1 trains its own runs: it takes neither --only nor --domains")
    if a.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {a.seed}")
    spec = GridSpec(**(CROSS_SPEC if a.cross else FULL_SPEC if a.full else DEFAULT_SPEC), seed=a.seed)
    a.out = a.out or str(paths.DATA / "dcpt" / ("grid-cross" if a.cross else "grid-full" if a.full else "grid"))
    try:
        if a.usage1:
            check_usage1_args(a.out, a.usage1)
            check_grid_args(spec, a.out, device=a.device)
        else:
            check_grid_args(spec, a.out, device=a.device, only=a.only, domains=a.domains)
    except GridArgumentError as e:
        parser.error(f"{_FLAGS.get(e.param, e.param)}: {e.message}")
    from ..data import load_tokens, vocab_size

    def load(corpus: str, split: str) -> np.ndarray:
        return load_tokens(corpus, split, profile=spec.token_profile)

    try:
        if a.usage1:
            usage1_verify(a.out, a.usage1, load, vocab_size(), device=a.device)
        else:
            run_grid(spec, a.out, load, vocab_size(), device=a.device, only=a.only, domains=a.domains)
    except GridArgumentError as e:  # found before any training (the inputs check)
        parser.error(f"{_FLAGS.get(e.param, e.param)}: {e.message}")
    return 0
