"""The D-CPT experiment grid: real continual pre-training runs whose losses the law is fitted to.

For each model size a base model is pre-trained on the general corpus (the paper starts from
pre-trained Qwen-1.5 models). Then, for each domain and each of the paper's nine mixtures, the base
model is continually pre-trained on general + domain data with domain share ``r_d``, at a constant
learning rate after warm-up (so that evaluations along one run are valid data-size points: the
card's pitfall about cosine schedules), evaluating both the general and the domain validation loss at
steps spaced densely early and sparsely late (App. I's lesson: exponential-decay sampling).

The grid is a sweep of :mod:`repro.runs`: one :class:`CPTRun` per (size, domain, ratio), performed by
:func:`perform_run`, stored as a table under ``data/dcpt/`` (one row per evaluation) that is rewritten
atomically as each run finishes, so an interrupted grid resumes where it stopped, locally or on a Ray cluster.
Its JSON records the command, the grid's spec, the inputs (vocabulary, tokenizer and token-array hashes: a
table is resumed only from the same inputs) and every run's provenance (spec, cost, git revision, machine).
The sweeps by name: :data:`SWEEPS` (``python -m repro runs dcpt/grid``; ``python -m repro dcpt grid`` is the
same with the old flags). Base models are cached in ``build/dcpt`` under a key of everything that decides
their weights (:func:`base_key`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths, runs
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
# The table's columns and their types (N: non-embedding parameters, n_total: all parameters, D: CPT tokens seen,
# L_g / L_d: general / domain validation loss, nats per token).
COLUMN_TYPES = {"run": str, "size": str, "N": float, "n_total": float, "domain": str, "r_d": float, "step": float,
                "D": float, "L_g": float, "L_d": float}
COLUMNS = tuple(COLUMN_TYPES)


@dataclass(frozen=True)
class GridSpec:
    """Everything that decides the grid's numbers (the table's JSON records it): the model sizes, domains and
    ratios r_d of the paper's grid (§3.2; its nine mixtures by default), and the training settings. Raises
    ``ValueError`` for no domains or ratios, the general corpus among the domains, ratios outside [0, 1],
    duplicates, a seed of 2**63 or more, warm-up not below the CPT steps, or run labels that collide;
    ``TypeError`` for ratios that are not numbers."""

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
        if self.seed >= 2**63:
            raise ValueError(f"seed must be below 2**63 (torch's generators take a 64-bit integer), got {self.seed}")
        _check.positive("base_lr", self.base_lr)
        _check.positive("cpt_lr", self.cpt_lr)
        _check.text("token_profile", self.token_profile)
        if self.warmup_steps >= self.cpt_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be below cpt_steps={self.cpt_steps}")
        labels = [run_label(s[0], d, r) for d in self.domains for s in self.sizes for r in self.ratios]
        clash = sorted({i for i in labels if labels.count(i) > 1})
        if clash:
            raise ValueError(f"run labels collide: {clash}")

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON types (tuples become lists), as it is stored beside the table."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def eval_steps(self) -> list[int]:
        return eval_schedule(self.cpt_steps, self.n_evals, first=self.warmup_steps)

    def runs(self, device: str = "cpu") -> list[CPTRun]:
        """One :class:`CPTRun` per (size, domain, ratio) on ``device``, domain by domain (so that an interrupted
        grid has whole domains), then size, then ratio."""
        return [CPTRun(dataclasses.replace(self, sizes=(tuple(s),), domains=(d,), ratios=(float(r) + 0.0,)), device)
                for d in self.domains for s in self.sizes for r in self.ratios]


@dataclass(frozen=True)
class CPTRun:
    """One continual pre-training run: the grid spec cut to its one (size, domain, r_d), and the device.

    A run spec of :mod:`repro.runs`: its id is ``label@hash`` of all of it (so the same run in two tables has one
    id, and a run under other settings another); it asks for one CPU and, on ``cuda``, one GPU."""

    grid: GridSpec
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check.instance("grid", self.grid, GridSpec)
        if (len(self.grid.sizes), len(self.grid.domains), len(self.grid.ratios)) != (1, 1, 1):
            raise ValueError("grid: a CPTRun's grid holds one size, one domain and one ratio, got "
                             f"{len(self.grid.sizes)}, {len(self.grid.domains)} and {len(self.grid.ratios)}")
        _check.text("device", self.device)

    size = property(lambda self: self.grid.sizes[0])
    domain = property(lambda self: self.grid.domains[0])
    r_d = property(lambda self: float(self.grid.ratios[0]))
    seed = property(lambda self: self.grid.seed)
    # the label names the seed where it is not the grids' 0 (replicates of a run share size, domain and ratio)
    label = property(lambda self: run_label(self.size[0], self.domain, self.r_d)
                     + (f"/seed{self.seed}" if self.seed else ""))
    id = property(lambda self: runs.run_id(self))
    num_cpus = 1
    num_gpus = property(lambda self: 1 if self.device.startswith("cuda") else 0)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CPTRun:
        """The run whose :func:`repro.runs.spec_json` is ``d`` (as a table's JSON records it)."""
        return cls(spec_from_json(d["grid"]), d["device"])


def _name(what: str, name: Any) -> str:
    """A size or domain name: a non-empty str without "/" (run ids are split at "/")."""
    _check.text(what, name)
    if "/" in name:
        raise ValueError(f"{what}: a name must not contain '/', got {name!r}")
    return name


def ratio_text(r_d: float) -> str:
    """``r_d`` as run ids write it: two decimals where they are exact (``0.10``, ``0.92``: the stored tables'
    ids), else the shortest text that reads back as the same float (``0.924``), so distinct ratios never
    share an id. ``ValueError`` for r_d outside [0, 1] or not finite."""
    r_d = _check.fraction("r_d", r_d) + 0.0  # + 0.0: -0.0 reads as 0.0
    short = f"{r_d:.2f}"
    return short if float(short) == r_d else repr(r_d)


def run_label(size: str, domain: str, r_d: float) -> str:
    """The readable label of one run of the grid, e.g. ``m/code/r0.50`` (its id adds a hash of the whole spec):
    distinct (size, domain, ratio) give distinct labels. ``ValueError`` for a name holding "/" or r_d outside
    [0, 1]; ``TypeError`` for a name that is not a non-empty str."""
    return f"{_name('size', size)}/{_name('domain', domain)}/r{ratio_text(r_d)}"


def eval_schedule(max_steps: int, n: int, first: int = 1, lam: float = 4.0) -> list[int]:
    """``n`` evaluation steps in [first, max_steps], with density proportional to exp(-lam x/max_steps).

    App. I.2's best sampling (M4) uses an exponentially decaying density; ``lam`` sets how strongly
    early steps are favoured. Step 0 (the base model, before any domain data) is always added. ``ValueError``
    for n < 2, max_steps <= first or lam <= 0.
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


class Grid(runs.Table):
    """A grid table on disk (a :class:`repro.runs.Table`): ``<path>.csv`` with :data:`COLUMNS` and ``<path>.json``
    with the spec, the inputs and each run's provenance under ``runs`` (keyed by run id, each with its label)."""

    columns = COLUMN_TYPES

    @classmethod
    def load(cls, path: str | os.PathLike, columns: dict[str, type] | None = None) -> Grid:
        return super().load(path, columns)  # type: ignore[return-value]


TokenLoader = Callable[[str, str], np.ndarray]  # (corpus, split) -> 1-D token array


def token_loader(profile: str) -> TokenLoader:
    """The workbook's token arrays of the token profile ``profile`` (``"smoke"``, ``"default"``, ...) as a
    :data:`TokenLoader`: ``load(corpus, split)`` is :func:`repro.data.load_tokens` ``(corpus, split,
    profile=profile)``, a 1-D token array (built where missing). A partial, so it pickles into worker processes."""
    from ..data import load_tokens

    return functools.partial(load_tokens, profile=profile)


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
    """One continual pre-training run from the base model; returns its table rows (step 0 included), ``run`` the
    id of its :class:`CPTRun`."""
    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train

    _check.instance("spec", spec, GridSpec)
    if domain not in spec.domains:
        raise ValueError(f"domain {domain!r} is not one of the spec's domains {list(spec.domains)}")
    rid = CPTRun(dataclasses.replace(spec, sizes=(tuple(size),), domains=(domain,), ratios=(float(r_d) + 0.0,)),
                 device).id
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


class GridArgumentError(runs.RunsArgumentError):
    """A bad argument to :func:`run_grid`, found before any work starts; ``param`` names it."""


def grid_inputs(spec: GridSpec, load: TokenLoader, vocab: int) -> dict[str, Any]:
    """What besides the spec decides a grid's numbers: the vocabulary, the tokenizer and the sha256 of every
    token array the runs read (stored in the table's JSON; a table is only resumed under the same inputs)."""
    tokens = {f"{c}/{split}": _sha256(np.asarray(load(c, split)))
              for c in (spec.general, *spec.domains) for split in ("train", "validation")}
    return {"vocab": int(vocab), "tokenizer_sha256": tokenizer_id(), "tokens_sha256": tokens}


def check_grid_args(spec: GridSpec, path: str | os.PathLike, *, device: str = "cpu",
                    only: Sequence[str] | None = None, domains: Sequence[str] | None = None) -> Grid:
    """The checks :func:`run_grid` makes before any work (the table at ``path`` is loaded and returned):
    ``GridArgumentError`` naming ``spec``, ``path`` (a table of another spec, of runs made on another device, or
    with the run ids used before :mod:`repro.runs`), ``device``, ``only`` (run labels or ids) or ``domains``."""
    if not isinstance(spec, GridSpec):
        raise GridArgumentError("spec", f"must be a GridSpec, got {type(spec).__name__}")
    try:
        check_device(device)
    except (TypeError, ValueError) as e:
        raise GridArgumentError("device", str(e).removeprefix("device ")) from None
    valid = {"domains": list(spec.domains), "only": [r.label for r in spec.runs(device)]}
    for name, given in (("domains", domains), ("only", only)):
        if given is None:
            continue
        if isinstance(given, str) or not all(isinstance(g, str) for g in given):
            raise GridArgumentError(name, f"must be a list of str, got {given!r}")
        ids = {r.id for r in spec.runs(device)} if name == "only" else set()
        unknown = [g for g in given if g not in valid[name] and g not in ids]
        if unknown:
            shown = valid[name] if len(valid[name]) <= 12 else valid[name][:6] + ["..."]
            raise GridArgumentError(name, f"{unknown} not in this grid's spec (valid: {', '.join(shown)})")
    grid = Grid.load(path)
    legacy = [k for k in grid.meta.get("runs", {}) if "@" not in k]
    if legacy:
        raise GridArgumentError("path", f"{path} holds run ids of the scheme before repro.runs (e.g. {legacy[0]}): "
                                "convert it once (repro.dcpt.grid.convert_legacy_table) or delete it")
    if grid.meta and grid.meta.get("spec") != spec.to_json():
        stored = grid.meta.get("spec") or {}
        diff = sorted(k for k in set(stored) | set(spec.to_json()) if stored.get(k) != spec.to_json().get(k))
        raise GridArgumentError("path", f"{path} was made with another spec (differs in {', '.join(diff)}); use a "
                                "new path or the same settings")
    made_on = sorted({info["spec"]["device"] for info in grid.meta.get("runs", {}).values()} - {device})
    if made_on:
        raise GridArgumentError("device", f"{path} holds runs made on {', '.join(made_on)}, not {device}: use "
                                "another table (--out) for runs on another device")
    return grid


def perform_run(run: CPTRun) -> list[dict[str, Any]]:
    """Perform one run of a grid sweep wherever an executor puts it: :func:`cpt_run` on the workbook's tokens (the
    profile the spec names, built where missing) and tokenizer; returns its rows."""
    from ..data import vocab_size

    load = token_loader(run.grid.token_profile)
    return cpt_run(run.grid, run.size, run.domain, run.r_d, load, vocab_size(), run.device)


def _perform_with(run: CPTRun, load: TokenLoader, vocab: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    return cpt_run(run.grid, run.size, run.domain, run.r_d, load, vocab, run.device, log=log)


def _check_inputs(table: runs.Table, spec: GridSpec, load: TokenLoader, vocab: int, log: Callable[[str], None]
                  ) -> None:
    """A table holding runs is resumed only from its recorded :func:`grid_inputs`; a new one records them."""
    inputs = grid_inputs(spec, load, vocab)
    old = table.meta.get("inputs")
    if old not in (None, inputs):
        diff = sorted(k for k in ("vocab", "tokenizer_sha256") if old.get(k) != inputs[k]) + sorted(
            k for k in inputs["tokens_sha256"] if old.get("tokens_sha256", {}).get(k) != inputs["tokens_sha256"][k])
        raise GridArgumentError("path", f"{table.path} holds runs made from other inputs (changed: "
                                f"{', '.join(diff)}); use a new path")
    if not table.done():
        table.meta["inputs"] = inputs
    elif old is None:
        log(f"note: {table.path} predates recorded inputs (token hashes); its runs cannot be checked against them")


def grid_sweep(spec: GridSpec, path: str | os.PathLike, *, device: str = "cpu", load: TokenLoader | None = None,
               vocab: int | None = None, name: str | None = None, meta: dict[str, Any] | None = None,
               log: Callable[[str], None] = print) -> runs.Sweep:
    """The grid ``spec`` as a sweep of :mod:`repro.runs` with its table at ``path``: runs on ``device``; tokens from
    ``load`` and ``vocab`` (default: the workbook's, which any executor can load; a given ``load`` runs in this
    process only). ``meta``: entries a new table records (usage 1's prediction)."""
    from ..data import vocab_size

    check_grid_args(spec, path, device=device)
    if load is None:
        run_fn: Callable[[CPTRun], list[dict[str, Any]]] = perform_run
        load, vocab = token_loader(spec.token_profile), vocab_size()
    else:
        _check.callable_("load", load)
        vocab = _check.integer("vocab", vocab, 2)
        run_fn = functools.partial(_perform_with, load=load, vocab=vocab, log=log)
    prepare = functools.partial(_check_inputs, spec=spec, load=load, vocab=vocab, log=log)
    return runs.Sweep(name or f"dcpt/{Path(path).name}", Path(path), tuple(spec.runs(device)), run_fn, COLUMN_TYPES,
                      key={"spec": spec.to_json()}, meta=meta or {}, prepare=prepare, table_type=Grid)


def run_grid(spec: GridSpec, path: str | os.PathLike, load: TokenLoader, vocab: int, *, device: str = "cpu",
             only: Sequence[str] | None = None, domains: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> Grid:
    """Run every (size, domain, ratio) not yet in the table at ``path`` in this process (only the runs ``only``
    names by label or id, and the ``domains`` given, if given); the table is written as each run finishes.

    Every argument is checked before any work (:func:`check_grid_args`, and the inputs: a table already holding
    runs is resumed only when its recorded :func:`grid_inputs` equal the current ones). For other executors (worker
    processes, Ray) use :func:`grid_sweep` with the workbook's tokens and :func:`repro.runs.run_sweep`."""
    check_grid_args(spec, path, device=device, only=only, domains=domains)
    vocab = _check.integer("vocab", vocab, 2)
    sweep = grid_sweep(spec, path, device=device, load=load, vocab=vocab, log=log)
    table = runs.run_sweep(sweep, only=_only_labels(spec, device, only, domains), log=log)
    return table  # type: ignore[return-value]


def _only_labels(spec: GridSpec, device: str, only: Sequence[str] | None, domains: Sequence[str] | None
                 ) -> list[str] | None:
    """``only`` (labels or ids) narrowed to ``domains``, as the labels or ids :func:`repro.runs.run_sweep` takes."""
    if only is None and domains is None:
        return None
    return [r.label for r in spec.runs(device) if (only is None or r.label in only or r.id in only)
            and (domains is None or r.domain in domains)]


def points(frame, which: str, min_step: int = 1):
    """The fitting points of a grid frame: ``which`` = "domain" (L_d against r_d) or "general" (L_g against r_g).

    N is in millions of non-embedding parameters and D in millions of tokens, so the paper's
    initialisation grid (made for billions) sits at the same magnitudes; L in nats per token; r rounded to 6
    decimals. One point per row at step >= ``min_step`` (step 0, the base model, is left out by default).
    ``ValueError`` for another ``which``, a negative ``min_step`` or missing columns.
    """
    from .fitting import Points

    _check.which(which)
    min_step = _check.integer("min_step", min_step, 0)
    _check.columns("frame", frame, ("run", "domain", "r_d", "step", "N", "D", "L_d" if which == "domain" else "L_g"))
    f = frame[frame["step"] >= min_step]
    r = f["r_d"].to_numpy(float) if which == "domain" else 1 - f["r_d"].to_numpy(float)
    L = f["L_d" if which == "domain" else "L_g"].to_numpy(float)
    return Points(f["N"].to_numpy(float) / 1e6, f["D"].to_numpy(float) / 1e6, np.round(r, 6), L,
                  run=f["run"].to_numpy(), domain=f["domain"].to_numpy())


def usage1_ratios(r_star: float, step: float = 0.05, n: int = 2) -> tuple[float, ...]:
    """The predicted ratio and ``n`` neighbours on each side, ``step`` apart, inside [0, 1] (rounded to 0.01): the
    ratios that check usage 1 (Eq. 10) by training. ``ValueError`` for r_star outside [0, 1], step <= 0 or n < 0."""
    r_star, step, n = _check.fraction("r_star", r_star), _check.positive("step", step), _check.integer("n", n, 0)
    rs = {round(min(1.0, max(0.0, r_star + k * step)), 2) for k in range(-n, n + 1)}
    return tuple(sorted(rs))


def spec_from_json(d: dict[str, Any]) -> GridSpec:
    """The :class:`GridSpec` a table's JSON records (lists back to tuples); raises what :class:`GridSpec` raises
    (``TypeError`` for unknown fields)."""
    return GridSpec(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                       for k, v in d.items()})


# How closely a stored run re-trains on another machine. fp32 training is bit-for-bit repeatable on one machine
# with one kernel path and thread count, but ATen, MKL and oneDNN pick kernels by instruction set (and reductions
# split by threads), and training amplifies their last-bit differences. `python -m repro bench numerics`
# (reports/bench/numerics.json) re-trained s/code/r0.10 under 9 kernel paths on an Intel Xeon (AVX-512): the
# largest relative difference from the stored table (made on an AMD EPYC, AVX2, 1 thread) was 0.25 %, and
# 0.22 % between paths on the one machine; none of the paths gave the stored numbers back. The tolerance is
# twice the largest drift measured.
RETRAIN_RTOL = runs.RETRAIN_RTOL


def retrain(grid_path: str | os.PathLike, rid: str, threads: int | None = None,
            log: Callable[[str], None] = lambda s: None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-train one stored run of the table at ``grid_path`` from scratch (its base model too, unless
    ``build/dcpt`` caches it); returns ``(rows, stored_rows)``, both ordered by step.

    ``rid``: the run's id, or its label (``s/code/r0.10``). ``threads``: torch's intra-op threads for the run
    (default: what the run recorded, else what the table's ``machine`` entry says, else 1); restored afterwards.
    Raises ``ValueError`` naming ``rid`` for a run the table does not hold. Compare with :data:`RETRAIN_RTOL`
    across machines, exactly on the one that made it.
    """
    import torch

    from ..data import vocab_size

    grid = Grid.load(grid_path)
    rid = grid.find(rid)
    info = grid.meta["runs"][rid]
    run = CPTRun.from_json(info["spec"])
    kept = sorted((r for r in grid.rows if r["run"] == rid), key=lambda r: r["step"])
    threads = threads or (info.get("machine") or grid.meta.get("machine") or {}).get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = cpt_run(run.grid, run.size, run.domain, run.r_d, token_loader(run.grid.token_profile), vocab_size(),
                       run.device, log=log)
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
    labels = grid.labels()
    missing = [r.label for r in spec.runs() if r.domain == domain and r.label not in labels]
    if missing:
        raise GridArgumentError("domain", f"{domain!r}: {len(missing)} runs of {grid_path} are missing "
                                f"(e.g. {missing[0]}); finish the grid first")
    return grid


def usage1_base(frame, size: str) -> tuple[float, float, float]:
    """Usage 1's operating point (Eq. 10) for model size ``size`` of a grid frame holding one domain's runs:
    ``(N0, D0, L_g0)`` with N0 the size's non-embedding parameters in millions, D0 its runs' length in millions of
    CPT tokens (the largest D), and L_g0 the base model's general loss before CPT (mean L_g at step 0, nats per
    token), the loss the budget T is relative to. Used by :func:`usage1_prediction` and notebook 03 (the middle
    model size). ``ValueError`` for a size the frame does not hold or one without a step-0 evaluation."""
    _check.columns("frame", frame, ("size", "N", "D", "step", "L_g"))
    fm = frame[frame["size"] == size]
    if fm.empty:
        raise ValueError(f"size {size!r} is not in the frame (sizes: {sorted(set(frame['size']))})")
    if not (fm["step"] == 0).any():
        raise ValueError(f"size {size!r}: the frame has no step-0 evaluation (the base model's general loss)")
    N0, D0 = float(fm["N"].iloc[0]) / 1e6, float(fm["D"].max()) / 1e6
    L_g0 = float(fm[fm["step"] == 0]["L_g"].mean())
    return N0, D0, L_g0


def usage1_prediction(grid: Grid, domain: str, T: float = 0.03, fit_kw: dict[str, Any] | None = None
                      ) -> tuple[GridSpec, dict[str, Any]]:
    """Usage 1 on a finished grid: fit L3 (general and domain) on ``domain``'s runs and predict r_d* under the
    budget ``T`` (relative rise of the general loss) at the middle model size and the grid's run length; returns
    the grid spec of r_d* and its neighbours (:func:`usage1_ratios`) at that size, and the prediction (N0_M, D0_M in
    millions: :func:`usage1_base`). Raises ``ValueError`` where the fits fail or no ratio meets the budget."""
    from . import usage
    from .fitting import fit
    from .laws import LAWS

    spec = spec_from_json(grid.meta["spec"])
    f = grid.frame()
    f = f[f["domain"] == domain]
    sizes = sorted(spec.sizes, key=lambda s: f[f["size"] == s[0]]["N"].iloc[0])
    mid = sizes[len(sizes) // 2]
    N0, D0, L_g0 = usage1_base(f, mid[0])
    kw = fit_kw or {"n_starts": 8, "grid_size": 20000}
    fg, fd = fit(LAWS["L3"], points(f, "general"), **kw), fit(LAWS["L3"], points(f, "domain"), **kw)
    pred = usage.optimal_ratio_under_budget(*usage.law_curves(fg, fd, N0, D0), L_g0, T)
    vspec = dataclasses.replace(spec, sizes=(mid,), domains=(domain,), ratios=usage1_ratios(pred["r_d"]))
    return vspec, {"r_d": pred["r_d"], "L_g": pred["L_g"], "L_d": pred["L_d"], "T": T, "L_g0": L_g0, "N0_M": N0,
                   "D0_M": D0, "binds": pred["binds"], "fit": kw}


def usage1_sweep(grid_path: str | os.PathLike, domain: str, *, T: float = 0.03, device: str = "cpu",
                 fit_kw: dict[str, Any] | None = None, load: TokenLoader | None = None, vocab: int | None = None,
                 log: Callable[[str], None] = print) -> runs.Sweep:
    """Usage 1 checked by training, as a sweep: r_d* (:func:`usage1_prediction`) and its neighbours, with the
    table at ``<grid_path>-usage1-<domain>``. The prediction is made once, when that table is started, and stored
    in it (``prediction``); a started table is resumed with its stored runs (``T`` and ``fit_kw`` must match)."""
    grid = check_usage1_args(grid_path, domain)
    T = _check.real("T", T, lo=0.0, hi=1.0, lo_open=True, hi_open=True, hint="0.03 for a 3 % budget")
    path = Path(f"{grid_path}-usage1-{domain}")
    stored = Grid.load(path)
    if stored.meta.get("spec"):
        vspec, pred = spec_from_json(stored.meta["spec"]), stored.meta.get("prediction") or {}
        for what, want in (("T", T), ("fit_kw", fit_kw)):
            have = pred.get("T" if what == "T" else "fit")
            if want is not None and have is not None and want != have:
                raise GridArgumentError(what, f"{path} was started with {what} = {have}, not {want}")
    else:
        vspec, pred = usage1_prediction(grid, domain, T, fit_kw)
        log(f"usage 1, {domain}: predicted r_d* = {pred['r_d']:.3f} at N0 = {pred['N0_M']:.2f}M, D0 = "
            f"{pred['D0_M']:.2f}M; training {vspec.ratios}")
    name = f"dcpt/{Path(grid_path).name}-usage1-{domain}"
    return grid_sweep(vspec, path, device=device, load=load, vocab=vocab, name=name, meta={"prediction": pred},
                      log=log)


def usage1_verify(grid_path: str | os.PathLike, domain: str, load: TokenLoader, vocab: int, *, T: float = 0.03,
                  device: str = "cpu", fit_kw: dict[str, Any] | None = None, log: Callable[[str], None] = print
                  ) -> Grid:
    """Usage 1 checked by training (:func:`usage1_sweep`), in this process; returns the table of its runs."""
    sweep = usage1_sweep(grid_path, domain, T=T, device=device, fit_kw=fit_kw, load=load, vocab=vocab, log=log)
    return runs.run_sweep(sweep, log=log)  # type: ignore[return-value]


REPLICATE_SEEDS = (1, 2)  # with the grid's seed 0: three independent replicates of usage 1's measured side
USAGE1_WINDOW = 0.25  # usage 1's measured side compares the grid's ratios within this distance of r_d*


def usage1_candidates(grid_ratios: Sequence[float], verify_ratios: Sequence[float], r_star: float,
                      window: float = USAGE1_WINDOW) -> tuple[float, ...]:
    """The ratios usage 1's measured side compares: the verification ratios (r_d* and its neighbours,
    :func:`usage1_ratios`) and the grid's ratios within ``window`` of ``r_star``, sorted and without repeats.
    ``ValueError`` for r_star or window outside [0, 1]."""
    r_star, window = _check.fraction("r_star", r_star), _check.fraction("window", window)
    near = [float(r) for r in grid_ratios if abs(float(r) - r_star) <= window + 1e-9]
    return tuple(sorted({round(r, 6) for r in (*near, *map(float, verify_ratios))}))


def usage1_replicates_sweep(grid_path: str | os.PathLike, domain: str, *, seeds: Sequence[int] = REPLICATE_SEEDS,
                            window: float = USAGE1_WINDOW, device: str = "cpu", log: Callable[[str], None] = print
                            ) -> runs.Sweep:
    """Usage 1's measured side again under other seeds, as a sweep: every ratio of :func:`usage1_candidates` (the
    verification table's ratios and the grid's within ``window`` of the stored prediction) at the verification
    table's model size, trained from scratch (base model included) once per seed of ``seeds``. The table is at
    ``<grid_path>-usage1-<domain>-seeds``; it needs the verification table ``<grid_path>-usage1-<domain>`` (its
    stored prediction is the one the replicates test). ``GridArgumentError`` naming ``domain`` when that table is
    missing, ``seeds`` for seeds that are not distinct non-negative integers, ``window`` outside (0, 1]."""
    from ..data import vocab_size

    try:
        check_device(device)
    except (TypeError, ValueError) as e:
        raise GridArgumentError("device", str(e).removeprefix("device ")) from None
    if isinstance(seeds, str | bytes) or not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds):
        raise GridArgumentError("seeds", f"must be distinct integers in [0, 2**63), got {seeds!r}")
    if not (_check.is_real(window) and 0 < window <= 1):
        raise GridArgumentError("window", f"must lie in (0, 1], got {window!r}")
    grid = check_usage1_args(grid_path, domain)
    verify = Grid.load(f"{grid_path}-usage1-{domain}")
    if not verify.meta.get("prediction") or not verify.meta.get("spec"):
        raise GridArgumentError("domain", f"no usage-1 table at {grid_path}-usage1-{domain}: run `python -m repro "
                                f"dcpt grid --usage1 {domain}` first (its prediction is what the replicates test)")
    vspec, pred = spec_from_json(verify.meta["spec"]), verify.meta["prediction"]
    ratios = usage1_candidates(spec_from_json(grid.meta["spec"]).ratios, vspec.ratios, pred["r_d"], window)
    specs = [dataclasses.replace(vspec, ratios=ratios, seed=int(s)) for s in seeds]
    load = token_loader(vspec.token_profile)
    prepare = functools.partial(_check_inputs, spec=vspec, load=load, vocab=vocab_size(), log=log)
    return runs.Sweep(f"dcpt/{Path(grid_path).name}-usage1-{domain}-seeds", Path(f"{grid_path}-usage1-{domain}-seeds"),
                      tuple(r for s in specs for r in s.runs(device)), perform_run, COLUMN_TYPES,
                      key={"specs": [s.to_json() for s in specs]}, meta={"prediction": pred, "window": window},
                      prepare=prepare, table_type=Grid)


def seeds_of(grid: Grid):
    """The grid's rows as a DataFrame with a ``seed`` column (each run's seed, from its provenance; NaN for a row
    whose run the provenance lacks). ``KeyError`` for a provenance entry without a seed."""
    f = grid.frame()
    f["seed"] = f["run"].map({rid: info["seed"] for rid, info in grid.meta.get("runs", {}).items()})
    return f


def usage1_measured(grid: Grid, grid_path: str | os.PathLike | None, domain: str, size: str):
    """What usage 1's measured side compares for ``domain`` at model size ``size``: the rows (with a ``seed``
    column) of the grid's runs, of the verification table ``<grid_path>-usage1-<domain>`` and of its replicates
    ``...-seeds`` where they exist, and the candidate ratios (:func:`usage1_candidates` when verified, else the
    grid's ratios). Returns ``(frame, candidates, prediction stored with the verification or None)``. ``KeyError``
    for a grid without a spec."""
    import pandas as pd

    f = seeds_of(grid)
    parts = [f[(f["domain"] == domain) & (f["size"] == size)]]
    ratios = tuple(float(r) for r in grid.meta["spec"]["ratios"])
    verify = Grid.load(f"{grid_path}-usage1-{domain}") if grid_path is not None else None
    if verify is None or not verify.meta.get("spec"):
        return parts[0], ratios, None
    pred = verify.meta["prediction"]
    parts.append(seeds_of(verify))
    reps = Grid.load(f"{grid_path}-usage1-{domain}-seeds")
    if reps.meta.get("runs"):
        parts.append(seeds_of(reps))
    candidates = usage1_candidates(ratios, spec_from_json(verify.meta["spec"]).ratios, pred["r_d"])
    return pd.concat(parts, ignore_index=True), candidates, pred


# ------------------------------------------------------------------------------- the sweeps by name
_TABLES = {"grid": DEFAULT_SPEC, "grid-cross": CROSS_SPEC, "grid-full": FULL_SPEC}
# dcpt/grid, dcpt/grid-cross, dcpt/grid-full, and usage 1 on each domain of each: dcpt/grid-usage1-code, ...
# and usage 1's replicates over more seeds: dcpt/grid-usage1-code-seeds, ...
SWEEPS = tuple([f"dcpt/{t}" for t in _TABLES]
               + [f"dcpt/{t}-usage1-{d}{x}" for t, s in _TABLES.items() for d in s["domains"] for x in ("", "-seeds")])


def sweep(name: str, device: str = "cpu") -> runs.Sweep:
    """The sweep ``name`` of :data:`SWEEPS` on ``device``, its table at ``data/<name>``."""
    try:
        check_device(device)
    except (TypeError, ValueError) as e:
        raise GridArgumentError("device", str(e).removeprefix("device ")) from None
    m = re.fullmatch(r"dcpt/(grid(?:-cross|-full)?)(?:-usage1-(\w+?)(-seeds)?)?", name)
    if name not in SWEEPS or m is None:
        raise GridArgumentError("name", f"unknown D-CPT sweep {name!r} (valid: {', '.join(SWEEPS)})")
    table, domain, replicates = m.groups()
    if replicates:
        return usage1_replicates_sweep(paths.DATA / "dcpt" / table, domain, device=device)
    if domain:
        return usage1_sweep(paths.DATA / "dcpt" / table, domain, device=device)
    return grid_sweep(GridSpec(**_TABLES[table]), paths.DATA / "dcpt" / table, device=device, name=name)


def convert_legacy_table(path: str | os.PathLike, when: str | None = None) -> int:
    """One-off: give a grid table made before :mod:`repro.runs` (run ids ``s/code/r0.10``) the ids of the runs
    scheme (``s/code/r0.10@<hash>``, the hash of its :class:`CPTRun` on the CPU), and each run the provenance
    fields of that scheme (what the old runs did not record is ``None``: start, package versions, machine (the
    table's ``machine`` note says what is known), git dirty flag, host; ``end`` is the old ``finished``). Rows
    keep their order and every value but ``run``, checked before anything is written; table-level entries stay.
    Returns the number of runs converted; ``ValueError`` naming ``path`` for a table already converted or one
    holding a run its spec does not list."""
    grid = Grid.load(path)
    old = grid.meta.get("runs", {})
    if not old or any("@" in k for k in old):
        raise ValueError(f"path: {path} holds no runs of the old scheme")
    by_label = {r.label: r for r in spec_from_json(grid.meta["spec"]).runs("cpu")}
    unknown = [k for k in old if k not in by_label]
    if unknown:
        raise ValueError(f"path: {path} holds runs its spec does not list: {unknown[:3]}")
    new_id = {k: by_label[k].id for k in old}
    before = Path(path).with_suffix(".csv").read_text().splitlines()
    grid.rows = [dict(r, run=new_id[r["run"]]) for r in grid.rows]
    grid.meta["runs"] = {new_id[k]: {
        "label": k, "spec": runs.spec_json(by_label[k]), "seed": by_label[k].seed,
        "resources": runs.resources(by_label[k]), "executor": "local", "command": None, "host": None,
        "git": {"revision": info.get("git"), "dirty": None}, "versions": None, "machine": info.get("machine"),
        "start": None, "end": info.get("finished"), "seconds": info["seconds"], "cpu_seconds": info["cpu_seconds"],
        "status": "done", "attempts": 1} for k, info in old.items()}
    grid.meta["converted"] = {
        "when": when or time.strftime("%Y-%m-%d", time.gmtime()), "by": "repro.dcpt.grid.convert_legacy_table",
        "from": "run ids size/domain/rRATIO (repro.dcpt.grid before repro.runs); the values of every row are "
                "unchanged", "not recorded then": "start, versions, machine (see 'machine'), git dirty flag, host"}
    after = [",".join(grid.columns)] + [",".join(r[k] if t is str else repr(float(r[k])) for k, t in
                                                 grid.columns.items()) for r in grid.rows]
    same = len(after) == len(before) and after[0] == before[0] and all(
        a.split(",", 1)[1] == b.split(",", 1)[1] and a.split(",", 1)[0] == new_id[b.split(",", 1)[0]]
        for a, b in zip(after[1:], before[1:], strict=True))
    if not same:
        raise ValueError(f"path: converting {path} would change a value; nothing written")
    grid.save(list(grid.meta["runs"]))
    return len(old)


_FLAGS = {"spec": "--seed", "path": "--out", "grid_path": "--out", "device": "--device", "only": "--only",
          "domains": "--domains", "domain": "--usage1", "executor": "--executor",
          "address": "--address", "jobs": "--jobs", "status": "--status", "T": "--usage1", "fit_kw": "--usage1",
          "replicates": "--replicates", "seeds": "--replicates", "window": "--replicates"}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro dcpt grid [--cross | --full] [--usage1 DOMAIN] [--out data/dcpt/grid] [--only RUN ...]
    [--domains D ...] [--device cpu] [--seed 0] [--executor local|ray] [--address ADDR] [--jobs N] [--status]``:
    the D-CPT sweeps of ``python -m repro runs`` under their old flags (``--out``, ``--seed``: a table of one's own).

    Every argument is checked before any work; a bad one ends the command with one line naming it (exit 2)."""
    parser = runs.one_line_parser("python -m repro dcpt grid", "Train (or resume) the D-CPT grid and write its "
                                  "table (the sweeps dcpt/grid, dcpt/grid-cross, dcpt/grid-full of `python -m "
                                  "repro runs`).")
    parser.add_argument("--out", help="table path, without suffix (default data/dcpt/grid)")
    parser.add_argument("--only", nargs="+", help="run labels (e.g. m/code/r0.50) or ids")
    parser.add_argument("--cross", action="store_true", help="the cross-domain grid (the other four domains at "
                        "sizes s and m) instead of the main grid; --out defaults to data/dcpt/grid-cross")
    parser.add_argument("--full", action="store_true", help="the full grid (all six domains, larger models; "
                        "meant for a GPU: --device cuda); --out defaults to data/dcpt/grid-full")
    parser.add_argument("--domains", nargs="+", help="only these domains of the grid")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="the grid's seed, a non-negative integer (default 0)")
    parser.add_argument("--usage1", metavar="DOMAIN", help="instead: verify usage 1 on DOMAIN by training r_d* "
                        "and its neighbours (needs that domain's complete grid at --out)")
    parser.add_argument("--replicates", action="store_true", help="with --usage1: train usage 1's measured ratios "
                        f"(r_d*, its neighbours and the grid's ratios within {USAGE1_WINDOW} of r_d*) again under "
                        f"seeds {', '.join(map(str, REPLICATE_SEEDS))}; table <out>-usage1-DOMAIN-seeds")
    runs.add_arguments(parser)
    a = parser.parse_args(argv)

    def fail(param: str, message: str) -> None:
        parser.error(f"{_FLAGS.get(param, param)}: {message}")

    if a.cross and a.full:
        parser.error("--cross and --full exclude each other (the full grid holds every domain)")
    if a.usage1 and (a.only or a.domains):
        parser.error("--usage1 trains its own runs: it takes neither --only nor --domains")
    if not 0 <= a.seed < 2**63:
        parser.error(f"--seed must be an integer in [0, 2**63), got {a.seed}")
    table = "grid-cross" if a.cross else "grid-full" if a.full else "grid"
    spec = GridSpec(**_TABLES[table], seed=a.seed)
    a.out = a.out or str(paths.DATA / "dcpt" / table)
    try:
        if a.executor == "ray" and a.device.startswith("cuda:"):
            raise GridArgumentError("device", "with --executor ray use 'cuda': Ray gives each task its GPU")
        if a.replicates and not a.usage1:
            raise GridArgumentError("replicates", "needs --usage1 DOMAIN")
        if a.usage1:
            check_grid_args(spec, a.out, device=a.device)
            sw = (usage1_replicates_sweep if a.replicates else usage1_sweep)(a.out, a.usage1, device=a.device)
            only = None
        else:
            check_grid_args(spec, a.out, device=a.device, only=a.only, domains=a.domains)
            sw = grid_sweep(spec, a.out, device=a.device, name=f"dcpt/{Path(a.out).name}")
            only = _only_labels(spec, a.device, a.only, a.domains)
    except runs.RunsArgumentError as e:
        fail(e.param, e.message)
    return runs.execute(sw, a, fail, only=only)
