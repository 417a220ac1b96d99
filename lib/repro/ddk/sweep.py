"""Notebook 01's runs: a small student distilled from a stronger teacher on the workbook's seven corpora.

The pair (card section 10): the teacher is a 4-block GPT of width 128 trained for 3,000 steps on the natural
mixture (each corpus in proportion to its training tokens); the student a 2-block GPT of width 64, pre-trained
briefly (400 steps, the natural mixture: the paper starts from a pre-trained student) and then trained 600 more
steps by each method, ``K = 20`` steps per interval (30 intervals, as the paper's 30,000 steps / K = 1,000), warm-up
3 % of the steps then cosine to a tenth (the paper: 1,000 of 30,000, 3e-5 to 3e-6). Both models and their
training data are cached in ``build/ddk`` under a key of everything that decides their weights.

Every run evaluates the student on the seven validation sets at step 0 and every ``K`` steps (what DDK's
re-weighting reads; the fixed-mixture methods are measured at the same points for their curves) and, at step 0
and at the end, on the seven *test* sets, which no method sees: the notebook's per-domain ratios are test ratios.

The methods (:data:`METHODS`: mixture rule, gamma), the paper's Table 5 and section 4 baselines at equal student
tokens: ``cpt`` (CE, natural mixture), ``kd`` (CE + 0.2 KL, natural), ``ddk``, ``ddk-nofs``, ``ddk-es`` (equal
sampling), ``ce-ddk`` (CE with DDK's sampling, gamma = 0) and ``kd-doremi`` (KD with the DoReMi-style update,
the teacher as reference).

The sweeps (``python -m repro runs NAME``; tables in ``data/ddk/``):

* ``ddk/teacher``: the teacher, once; its per-domain validation and test losses (and the cached weights);
* ``ddk/main``: the seven methods x 5 seeds (the seed sets the student's initialisation and its pre-training and
  distillation batches);
* ``ddk/ablation``: DDK with gamma 0.5, T 2, K in {5, 60}, 3 seeds (the main
  sweep's DDK runs are the gamma = 0.2, T = 1, K = 20 point, and ``ce-ddk`` the gamma = 0 point);
* ``ddk/full-teacher`` and ``ddk/full``: the teacher and the seven methods at larger sizes on a GPU (3 seeds).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import paths, runs

__all__ = ["METHODS", "COLUMNS", "TEACHER_COLUMNS", "SWEEPS", "DDKRun", "TeacherRun", "perform_run",
           "perform_teacher", "specs", "sweep", "smoke_sweeps", "retrain", "RETRAIN_RTOL", "CORPORA", "run_flops"]

CORPORA = ("general", "code", "math", "law", "medicine", "music", "chemistry")
# name: (mixture rule of repro.ddk.distill.Reweighter, gamma)
METHODS = {"cpt": ("natural", 0.0), "kd": ("natural", 0.2), "ddk": ("ddk", 0.2), "ddk-nofs": ("ddk-nofs", 0.2),
           "ddk-es": ("uniform", 0.2), "ce-ddk": ("ddk", 0.0), "kd-doremi": ("doremi", 0.2)}
SEEDS = (0, 1, 2, 3)
ABLATION_SEEDS = (0, 1, 2)
ABLATION = {"gamma": (0.5,), "T": (2.0,), "K": (5, 60)}
SWEEPS = ("ddk/teacher", "ddk/main", "ddk/ablation", "ddk/full-teacher", "ddk/full")
RETRAIN_RTOL = runs.RETRAIN_RTOL
# One row per evaluation step and corpus. ``weight``: the mixture the interval *starting* at ``step`` draws from (NaN
# at the last step); ``r``: the method's factor there; ``val_*``: the student on the validation sets at ``step``;
# ``test_*``: at steps 0 and the last only; ``train_ce``/``train_kl``: mean over the K steps *ending* at ``step``;
# ``wall_s``: the whole run (loading or training the teacher and pre-trained student, evaluations, training).
COLUMNS = {"run": str, "method": str, "mixture": str, "gamma": float, "T": float, "K": int, "seed": int,
           "step": int, "tokens": int, "domain": str, "weight": float, "r": float, "val_ce": float,
           "val_ratio": float, "test_ce": float, "test_ratio": float, "teacher_val_ce": float,
           "teacher_test_ce": float, "train_ce": float, "train_kl": float, "wall_s": float, "flops": float}
TEACHER_COLUMNS = {"run": str, "domain": str, "natural": float, "val_ce": float, "test_ce": float,
                   "params": int, "student_params": int, "wall_s": float}


def _positive_ints(obj: Any, names: Sequence[str]) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class TeacherRun:
    """The teacher and the student's shape: everything that decides the teacher's weights and the evaluations.

    Teacher: ``t_layer`` blocks of width ``t_model`` (``t_head`` heads), trained ``t_steps`` updates of
    ``batch_size`` x ``context`` tokens on the natural mixture at peak rate ``t_lr`` (cosine to a tenth, warm-up
    ``t_warmup``), sampler seed ``t_seed``. Student shape: ``s_layer`` x ``s_model`` (``s_head`` heads). Evaluation:
    ``val_batches`` and ``test_batches`` batches of ``batch_size`` windows per corpus. Raises ``ValueError`` naming
    the field for a bad size."""

    t_model: int = 128
    t_layer: int = 4
    t_head: int = 4
    t_steps: int = 3000
    t_lr: float = 3e-3
    t_warmup: int = 50
    t_seed: int = 0
    s_model: int = 64
    s_layer: int = 2
    s_head: int = 4
    batch_size: int = 16
    context: int = 64
    val_batches: int = 2
    test_batches: int = 16
    token_profile: str = "default"
    device: str = "cpu"
    num_cpus: int = 2

    def __post_init__(self) -> None:
        _positive_ints(self, ("t_model", "t_layer", "t_head", "t_steps", "s_model", "s_layer", "s_head",
                              "batch_size", "context", "val_batches", "test_batches"))
        if self.t_model % self.t_head or self.s_model % self.s_head:
            raise ValueError(f"t_head and s_head must divide t_model and s_model, got {self.t_head}, {self.s_head}")
        if isinstance(self.t_lr, bool) or not isinstance(self.t_lr, int | float) or not 0 < self.t_lr < math.inf:
            raise ValueError(f"t_lr must be a positive number, got {self.t_lr!r}")
        if isinstance(self.t_warmup, bool) or not isinstance(self.t_warmup, int) or not 0 <= self.t_warmup <= self.t_steps:
            raise ValueError(f"t_warmup must be an integer in [0, t_steps={self.t_steps}], got {self.t_warmup!r}")
        if self.t_model <= self.s_model and self.t_layer <= self.s_layer:
            raise ValueError("the teacher must be larger than the student (t_model or t_layer above the student's)")

    @property
    def label(self) -> str:
        return f"teacher/d{self.t_model}L{self.t_layer}"

    def gpt_config(self, who: str, vocab: int):
        """The :class:`~repro.nn.gpt.GPTConfig` of the ``"teacher"`` or the ``"student"``."""
        from ..nn.gpt import GPTConfig

        d, L, h = ((self.t_model, self.t_layer, self.t_head) if who == "teacher"
                   else (self.s_model, self.s_layer, self.s_head))
        return GPTConfig(vocab_size=vocab, context=self.context, n_layer=L, n_head=h, d_model=d)


@dataclass(frozen=True)
class DDKRun:
    """One distillation run: ``method`` (:data:`METHODS`), its ``gamma`` (default: the method's), temperature ``T``,
    interval ``K``, ``seed``; the student's pre-training (``pretrain_steps`` at ``pretrain_lr``) and distillation
    (``steps`` updates at peak ``lr``, warm-up ``warmup_steps``, cosine to ``lr / 10``); the teacher
    (:class:`TeacherRun`). ``steps`` must be a multiple of ``K``. Raises ``ValueError`` naming the field."""

    method: str
    seed: int = 0
    gamma: float | None = None
    T: float = 1.0
    K: int = 20
    steps: int = 600
    lr: float = 1e-3
    warmup_steps: int = 20
    pretrain_steps: int = 400
    pretrain_lr: float = 3e-3
    teacher: TeacherRun = TeacherRun()
    num_cpus: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.gamma is None:
            object.__setattr__(self, "gamma", METHODS[self.method][1])
        from .equations import check_gamma_T

        g, _ = check_gamma_T(self.gamma, self.T)
        if (g == 0) != (METHODS[self.method][1] == 0):
            raise ValueError(f"gamma={g}: method {self.method!r} is defined with gamma "
                             f"{'= 0' if METHODS[self.method][1] == 0 else '> 0'}")
        _positive_ints(self, ("K", "steps", "pretrain_steps"))
        if self.steps % self.K:
            raise ValueError(f"steps={self.steps} must be a multiple of K={self.K} (whole intervals)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.teacher, TeacherRun):
            raise ValueError(f"teacher must be a TeacherRun, got {type(self.teacher).__name__}")
        for name in ("lr", "pretrain_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or \
                not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must lie in [0, steps={self.steps}], got {self.warmup_steps!r}")

    @property
    def mixture(self) -> str:
        return METHODS[self.method][0]

    @property
    def label(self) -> str:
        extra = "".join([f"/g{self.gamma:g}" if self.gamma not in (0.0, METHODS[self.method][1]) else "",
                         f"/T{self.T:g}" if self.T != 1.0 else "", f"/K{self.K}" if self.K != 20 else ""])
        return f"{self.method}{extra}/s{self.seed}"


# --------------------------------------------------------------------------------------------- models
def _tokens(spec: TeacherRun, split: str) -> dict:
    from ..data import load_tokens

    return {c: load_tokens(c, split, spec.token_profile) for c in CORPORA}


def _natural(spec: TeacherRun) -> dict[str, float]:
    from .distill import natural_mixture

    return natural_mixture(_tokens(spec, "train"))


def _key(spec: TeacherRun, who: str, vocab: int, extra: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ..data.tokenizer import TOKENIZER_PATH
    from ..train import array_sha256

    train = _tokens(spec, "train")
    data = {c: array_sha256(train[c]) for c in CORPORA}
    tok = array_sha256(__import__("numpy").frombuffer(Path(TOKENIZER_PATH).read_bytes(), dtype="uint8"))
    return {"who": who, "config": spec.gpt_config(who, vocab).to_dict(), "batch_size": spec.batch_size,
            "train_sha256": data, "tokenizer_sha256": tok, "device": torch.device(spec.device).type,
            "torch": torch.__version__, **extra}


def teacher_model(spec: TeacherRun, vocab: int):
    """The trained teacher of ``spec`` (from ``build/ddk`` when cached under the same key, else trained now)."""
    import torch

    from ..data.sampler import DomainSampler
    from ..nn.gpt import GPT
    from ..train import TrainConfig, cached_weights, train

    key = _key(spec, "teacher", vocab, {"steps": spec.t_steps, "lr": spec.t_lr, "warmup": spec.t_warmup,
                                         "seed": spec.t_seed})
    torch.manual_seed(spec.t_seed)
    model = GPT(spec.gpt_config("teacher", vocab))

    def fit(m) -> None:
        sampler = DomainSampler(_tokens(spec, "train"), spec.context, spec.batch_size, _natural(spec),
                                seed=spec.t_seed + 10_000)
        train(m, sampler, TrainConfig(max_steps=spec.t_steps, lr=spec.t_lr, min_lr=spec.t_lr / 10,
                                      warmup_steps=spec.t_warmup, device=spec.device, seed=spec.t_seed,
                                      progress=False))

    name = f"teacher-{runs.run_id(spec).split('@')[1]}.pt"
    cached_weights(model, key, paths.BUILD / "ddk" / name, fit)
    return model.to(spec.device).eval()


def pretrained_student(run: DDKRun, vocab: int):
    """The student of ``run.seed`` after its brief pre-training on the natural mixture (cached in ``build/ddk``)."""
    import torch

    from ..data.sampler import DomainSampler
    from ..nn.gpt import GPT
    from ..train import TrainConfig, cached_weights, train

    spec = run.teacher
    extra = {"seed": run.seed, "steps": run.pretrain_steps, "lr": run.pretrain_lr}
    key = _key(spec, "student", vocab, extra)
    torch.manual_seed(run.seed)
    model = GPT(spec.gpt_config("student", vocab))

    def fit(m) -> None:
        sampler = DomainSampler(_tokens(spec, "train"), spec.context, spec.batch_size, _natural(spec),
                                seed=run.seed + 20_000)
        warm = max(1, run.pretrain_steps // 20)
        train(m, sampler, TrainConfig(max_steps=run.pretrain_steps, lr=run.pretrain_lr, min_lr=run.pretrain_lr / 10,
                                      warmup_steps=warm, device=spec.device, seed=run.seed, progress=False))

    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    cached_weights(model, key, paths.BUILD / "ddk" / f"student-s{run.seed}-{digest}.pt", fit)
    return model


def _eval(model, tokens: dict, spec: TeacherRun, batches: int) -> dict[str, float]:
    from ..train import evaluate

    return evaluate(model, tokens, spec.context, spec.batch_size, batches, spec.device)


def perform_teacher(spec: TeacherRun) -> list[dict[str, Any]]:
    """Train (or load) the teacher; one row per corpus: natural weight, validation and test CE (nats)."""
    from ..data import vocab_size
    from ..nn.gpt import param_count

    t0 = time.perf_counter()
    vocab = vocab_size()
    teacher = teacher_model(spec, vocab)
    val = _eval(teacher, _tokens(spec, "validation"), spec, spec.val_batches)
    test = _eval(teacher, _tokens(spec, "test"), spec, spec.test_batches)
    nat = _natural(spec)
    wall = time.perf_counter() - t0
    return [{"domain": c, "natural": nat[c], "val_ce": val[c], "test_ce": test[c],
             "params": param_count(spec.gpt_config("teacher", vocab)).non_embedding,
             "student_params": param_count(spec.gpt_config("student", vocab)).non_embedding, "wall_s": wall}
            for c in CORPORA]


def run_flops(run: DDKRun, vocab: int, *, reweight: bool | None = None) -> dict[str, float]:
    """The FLOPs of ``run``'s distillation (pre-training excluded): ``student`` (training, forward and backward,
    output layer included: :func:`repro.nn.gpt.flops_per_token`), ``teacher`` (its forward on every training
    token when ``gamma > 0``, and once on the validation sets for methods that re-weight), ``reweight`` (the
    student's forward on the validation sets at the start of every interval, steps 0, K, ..., ``steps - K``, as
    Algorithm 1 needs; counted when ``reweight``, by default for the methods whose mixture moves) and ``total``. The paper's Table 12 counts the same parts."""
    from ..nn.gpt import flops_per_token

    spec = run.teacher
    f_s = flops_per_token(spec.gpt_config("student", vocab), lm_head=True)      # training: 3 forwards
    f_t = flops_per_token(spec.gpt_config("teacher", vocab), lm_head=True) / 3  # forward only
    tokens = run.steps * spec.batch_size * spec.context
    val_tokens = len(CORPORA) * spec.val_batches * spec.batch_size * spec.context
    moves = run.mixture not in ("natural", "uniform") if reweight is None else reweight
    student = tokens * f_s
    teacher = (tokens * f_t if run.gamma > 0 else 0.0) + (val_tokens * f_t if moves else 0.0)
    rew = (run.steps // run.K) * val_tokens * f_s / 3 if moves else 0.0
    return {"student": float(student), "teacher": float(teacher), "reweight": float(rew),
            "total": float(student + teacher + rew)}


def train_run(run: DDKRun, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Pre-train (or load) the student of ``run.seed``, distil it by ``run.method``; the table rows: one per
    evaluation step and corpus (:data:`COLUMNS`)."""
    import numpy as np

    from ..data import vocab_size
    from ..data.sampler import DomainSampler
    from ..train import TrainConfig, train
    from .distill import Distiller, Reweighter

    t0 = time.perf_counter()
    spec, vocab = run.teacher, vocab_size()
    teacher = teacher_model(spec, vocab)
    student = pretrained_student(run, vocab)
    val, test = _tokens(spec, "validation"), _tokens(spec, "test")
    t_val = _eval(teacher, val, spec, spec.val_batches)
    t_test = _eval(teacher, test, spec, spec.test_batches)
    natural = _natural(spec)
    test0 = _eval(student, test, spec, spec.test_batches)
    model = Distiller(student, teacher if run.gamma > 0 else None, run.gamma, run.T)
    hook = Reweighter(run.mixture, t_val, natural, run.K)
    sampler = DomainSampler(_tokens(spec, "train"), spec.context, spec.batch_size, hook.initial_weights(),
                            seed=run.seed)
    cfg = TrainConfig(max_steps=run.steps, lr=run.lr, min_lr=run.lr / 10, warmup_steps=run.warmup_steps,
                      eval_steps=list(range(0, run.steps + 1, run.K)), eval_batches=spec.val_batches,
                      device=spec.device, seed=run.seed, progress=False)
    terms: list[tuple[float, float]] = []
    history = train(model, sampler, cfg, val_tokens=val, on_eval=hook,
                    on_step=lambda s, rec, state: terms.append((model.last_ce, model.last_kl)))
    test1 = _eval(student, test, spec, spec.test_batches)
    wall = time.perf_counter() - t0
    flops = run_flops(run, vocab)["total"]
    rows, nan = [], math.nan
    evals = {h["step"]: h for h in history if "val" in h}
    for entry in hook.log:
        s = entry["step"]
        ce = terms[max(0, s - run.K):s]
        for j, c in enumerate(CORPORA):
            test_ce = test0[c] if s == 0 else test1[c] if s == run.steps else nan
            rows.append({"method": run.method, "mixture": run.mixture, "gamma": float(run.gamma), "T": float(run.T),
                         "K": run.K, "seed": run.seed, "step": s, "tokens": s * spec.batch_size * spec.context,
                         "domain": c, "weight": entry["weights"][j] if s < run.steps else nan,
                         "r": entry["r"][j], "val_ce": evals[s]["val"][c], "val_ratio": entry["ratio"][j],
                         "test_ce": test_ce, "test_ratio": math.exp(test_ce - t_test[c]),
                         "teacher_val_ce": t_val[c], "teacher_test_ce": t_test[c],
                         "train_ce": float(np.mean([t[0] for t in ce])) if ce else nan,
                         "train_kl": float(np.nanmean([t[1] for t in ce])) if ce and run.gamma > 0 else nan,
                         "wall_s": wall, "flops": flops})
    if log is not None:
        log(f"{run.label}: {wall:.0f} s")
    return rows


def perform_run(run: DDKRun) -> list[dict[str, Any]]:
    """One run of a sweep wherever an executor puts it."""
    return train_run(run)


# --------------------------------------------------------------------------------------------- sweeps
# The corpora hold about 8.7 M training tokens: the full teacher reads about 10 epochs (5,000 steps of 16,384), the
# student about 1 in pre-training and 11 in distillation (6,000 steps, K = 200: the paper's 30 intervals).
_FULL_TEACHER = TeacherRun(t_model=512, t_layer=8, t_head=8, t_steps=5000, t_lr=1e-3, t_warmup=200, s_model=192,
                           s_layer=4, s_head=6, batch_size=64, context=256, val_batches=8, test_batches=32,
                           device="cuda", num_cpus=4)
_FULL = dict(steps=6000, K=200, lr=3e-4, warmup_steps=200, pretrain_steps=500, pretrain_lr=1e-3,
             teacher=_FULL_TEACHER, num_cpus=4)


def specs(name: str, device: str = "cpu") -> list[Any]:
    """The runs of sweep ``name`` (:data:`SWEEPS`) on ``device``; ``ValueError`` naming ``name`` else."""
    teacher = TeacherRun(device=device)
    if name == "ddk/teacher":
        return [teacher]
    if name == "ddk/main":
        return [DDKRun(m, seed=s, teacher=teacher) for s in SEEDS for m in METHODS]
    if name == "ddk/ablation":
        return [DDKRun("ddk", seed=s, teacher=teacher, **{knob: v}) for s in ABLATION_SEEDS
                for knob, values in ABLATION.items() for v in values]
    if name == "ddk/full-teacher":
        return [replace(_FULL_TEACHER, device=device)]
    if name == "ddk/full":
        full = dict(_FULL, teacher=replace(_FULL_TEACHER, device=device))
        return [DDKRun(m, seed=s, **full) for s in SEEDS[:3] for m in METHODS]
    raise ValueError(f"name: unknown DDK sweep {name!r} (valid: {', '.join(SWEEPS)})")


def sweep(name: str, device: str = "cpu") -> runs.Sweep:
    """The sweep ``name`` of :data:`SWEEPS` on ``device``, its table at ``data/<name>``."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if name in ("ddk/teacher", "ddk/full-teacher"):
        return runs.Sweep(name, paths.DATA / name, tuple(specs(name, device)), perform_teacher, TEACHER_COLUMNS)
    return runs.Sweep(name, paths.DATA / name, tuple(specs(name, device)), perform_run, COLUMNS)


# the smoke profile: a tiny teacher and student on the smoke corpora, every method once, seconds each
SMOKE_TEACHER = TeacherRun(t_model=48, t_layer=2, t_head=2, t_steps=60, s_model=16, s_layer=1, s_head=2,
                           batch_size=8, context=32, val_batches=1, test_batches=2, token_profile="smoke", num_cpus=1)
SMOKE = dict(steps=24, K=4, warmup_steps=2, pretrain_steps=20, teacher=SMOKE_TEACHER)


def smoke_sweeps(folder: str | os.PathLike, seeds: Sequence[int] = (0, 1, 2)) -> tuple[runs.Sweep, runs.Sweep]:
    """The smoke profile's teacher sweep and its distillation sweep (every method for ``seeds``, and DDK with
    gamma 0.5, T 2, K 2 and K 8 for the first seed), tables at ``folder/ddk-smoke-teacher`` and ``folder/ddk-smoke``."""
    main = [DDKRun(m, seed=s, **SMOKE) for s in seeds for m in METHODS]
    abl = [DDKRun("ddk", seed=seeds[0], **{**SMOKE, knob: v})
           for knob, v in (("gamma", 0.5), ("T", 2.0), ("K", 2), ("K", 8))]
    folder = Path(folder)
    return (runs.Sweep("ddk/smoke-teacher", folder / "ddk-smoke-teacher", (SMOKE_TEACHER,), perform_teacher,
                       TEACHER_COLUMNS),
            runs.Sweep("ddk/smoke", folder / "ddk-smoke", tuple(main + abl), perform_run, COLUMNS))


def retrain(name: str, rid: str, threads: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-train the stored run ``rid`` (id or label) of sweep ``name``'s table from scratch (its teacher and
    pre-trained student too, unless ``build/ddk`` caches them); returns ``(rows, stored_rows)``. ``threads``: torch
    threads (default: what the run recorded). Raises ``ValueError`` naming ``rid`` for a run the table lacks."""
    import torch

    cols = TEACHER_COLUMNS if name in ("ddk/teacher", "ddk/full-teacher") else COLUMNS
    table = runs.Table.load(paths.DATA / name, cols)
    rid = table.find(rid)
    info = table.meta["runs"][rid]
    run = spec_from_json(info["spec"])
    threads = threads or (info.get("machine") or {}).get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = (perform_teacher if isinstance(run, TeacherRun) else perform_run)(run)
    finally:
        torch.set_num_threads(before)
    return rows, [r for r in table.rows if r["run"] == rid]


def spec_from_json(spec: dict[str, Any]) -> TeacherRun | DDKRun:
    """The run spec a table's provenance stores (a :class:`TeacherRun` or a :class:`DDKRun`)."""
    spec = {k: v for k, v in spec.items() if not k.startswith("__")}
    if "method" not in spec:
        return TeacherRun(**spec)
    t = {k: v for k, v in spec["teacher"].items() if not k.startswith("__")}
    return DDKRun(**{**spec, "teacher": TeacherRun(**t)})

