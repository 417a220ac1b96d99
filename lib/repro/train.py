"""One training loop for every language-model run in the workbook.

:func:`train` runs AdamW (weight decay on 2-D weights only) with gradient accumulation and clipping under a
learning-rate schedule (:func:`lr_at`), evaluates per-domain validation loss at chosen steps
(:func:`evaluate`), calls hooks (DDK re-weights the sampler's domains from ``on_eval``), writes atomic
checkpoints and resumes from them exactly, shows a tqdm bar with tokens/s, and runs unchanged under
``torchrun`` as distributed data parallel (:func:`init_distributed`).

The model is any ``nn.Module`` whose ``model(x, y)`` returns ``(logits, mean loss)`` (:class:`repro.nn.gpt.GPT`);
when its ``forward`` takes ``return_logits``, the loop passes ``return_logits=False`` (GPT then computes the
loss chunk by chunk without materialising the logits: same loss, faster on CPU);
the sampler is any object with ``next_batch(rank, world_size) -> (x, y, domain)``, ``batch_size``,
``context``, ``state_dict()`` and ``load_state_dict()`` (:class:`repro.data.sampler.DomainSampler`).

Steps count optimizer updates: "step ``s``" is the state after ``s`` updates (``1 .. max_steps``), and
``lr_at(s - 1, cfg)`` is the rate the ``s``-th update used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from .checks import is_int
from .paths import atomic_write_bytes

__all__ = ["TrainConfig", "lr_at", "lr_cosine", "lr_constant", "evaluate", "train", "make_optimizer",
           "init_distributed", "DistInfo", "load_checkpoint", "cached_weights", "array_sha256"]

SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16")
# Fields that decide the trajectory: a checkpoint is only resumed under the same values.
_TRAJECTORY = ("lr", "min_lr", "warmup_steps", "schedule", "max_steps", "grad_accum", "grad_clip",
               "weight_decay", "betas", "seed", "dtype")


@dataclass
class TrainConfig:
    """Settings of one run of :func:`train`.

    ``lr`` peak learning rate, ``min_lr`` the floor the cosine decays to, ``warmup_steps`` linear warm-up,
    ``schedule`` ``"cosine"`` (warm-up, cosine decay to ``min_lr`` at ``max_steps``) or ``"constant"``
    (warm-up, then ``lr``; scaling-law grids compare checkpoints along one run), ``grad_accum`` micro-batches
    per update, ``grad_clip`` max global gradient norm (``None`` or 0: no clipping), AdamW ``weight_decay``
    (2-D weights only) and ``betas``. Evaluate every ``eval_every`` steps (and at the last), or at the
    explicit ``eval_steps`` (0 = before training), on at most ``eval_batches`` batches of
    ``eval_batch_size`` rows (default: the sampler's batch size) per domain. ``checkpoint`` path, written
    every ``checkpoint_every`` steps and at the end; with ``resume`` an existing checkpoint is continued.
    ``device``, ``dtype`` (``"float32"``; ``"bfloat16"`` autocast on CUDA only), ``seed`` (dropout RNG),
    ``progress`` (tqdm bar; also off under ``TQDM_DISABLE=1``).

    Units: learning rates per update, ``grad_clip`` in L2 norm of the gradient, steps count optimizer updates.
    Raises ``ValueError`` (``"TrainConfig.<field> ..."``) naming the first field with a bad value.
    """

    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eval_every: int | None = None
    eval_steps: Sequence[int] | None = None
    eval_batches: int | None = 8
    eval_batch_size: int | None = None
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int = 0
    resume: bool = True
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{msg}")

        need(is_int(self.max_steps) and self.max_steps >= 1, f"max_steps must be an integer >= 1, got {self.max_steps!r}")
        need(_is_num(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr!r}")
        need(_is_num(self.min_lr) and 0 <= self.min_lr <= self.lr,
             f"min_lr must be a number in [0, lr={self.lr}], got {self.min_lr!r}")
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0,
             f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        need(self.warmup_steps <= self.max_steps,
             f"warmup_steps={self.warmup_steps} must not exceed max_steps={self.max_steps}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        need(is_int(self.grad_accum) and self.grad_accum >= 1, f"grad_accum must be an integer >= 1, got {self.grad_accum!r}")
        need(self.grad_clip is None or (_is_num(self.grad_clip) and self.grad_clip >= 0),
             f"grad_clip must be None or a non-negative number, got {self.grad_clip!r}")
        need(_is_num(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        betas = tuple(self.betas)
        need(len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        need(self.eval_every is None or self.eval_steps is None, "eval_every and eval_steps: give one, not both")
        need(self.eval_every is None or (is_int(self.eval_every) and self.eval_every >= 1),
             f"eval_every must be None or an integer >= 1, got {self.eval_every!r}")
        if self.eval_steps is not None:
            steps = list(self.eval_steps)
            need(all(is_int(s) and 0 <= s <= self.max_steps for s in steps),
                 f"eval_steps must be integers in [0, max_steps={self.max_steps}], got {steps!r}")
            self.eval_steps = sorted(set(steps))
        need(self.eval_batches is None or (is_int(self.eval_batches) and self.eval_batches >= 1),
             f"eval_batches must be None (all windows) or an integer >= 1, got {self.eval_batches!r}")
        need(self.eval_batch_size is None or (is_int(self.eval_batch_size) and self.eval_batch_size >= 1),
             f"eval_batch_size must be None or an integer >= 1, got {self.eval_batch_size!r}")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 0,
             f"checkpoint_every must be a non-negative integer, got {self.checkpoint_every!r}")
        need(self.checkpoint_every == 0 or self.checkpoint is not None,
             f"checkpoint_every={self.checkpoint_every} needs a checkpoint path")
        need(isinstance(self.device, str) and (self.device == "cpu" or self.device.startswith("cuda")),
             f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        need(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"
             + (" (float16 needs loss scaling; use bfloat16 on CUDA)" if self.dtype == "float16" else ""))
        need(not (self.dtype == "bfloat16" and self.device == "cpu"),
             "dtype='bfloat16' is refused on device='cpu': bf16 matmul is ~30x slower than float32 on the "
             "workbook's CPUs (no AVX-512-BF16; see MACHINE-NOTES); use dtype='float32'")
        need(is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}")

    def eval_points(self) -> set[int]:
        """Steps after which :func:`train` evaluates: ``eval_steps``, else every ``eval_every`` and the last."""
        if self.eval_steps is not None:
            return set(self.eval_steps)
        if self.eval_every is not None:
            return set(range(self.eval_every, self.max_steps + 1, self.eval_every)) | {self.max_steps}
        return set()


def _is_num(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------- schedules
def _warmup(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up: ``lr (step + 1) / warmup_steps`` for ``step < warmup_steps`` (reaches ``lr`` at its end)."""
    return cfg.lr * (step + 1) / cfg.warmup_steps


def lr_cosine(step: int, cfg: TrainConfig) -> float:
    """Warm-up, then cosine decay (Loshchilov & Hutter 2017; nanoGPT, Chinchilla):

    ``lr_t = min_lr + (lr - min_lr) (1 + cos(pi p)) / 2``, ``p = (t - warmup) / (max_steps - warmup)``,
    so the rate is ``lr`` at the end of warm-up and ``min_lr`` at ``t = max_steps``.
    """
    if step < cfg.warmup_steps:
        return _warmup(step, cfg)
    p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (cfg.lr - cfg.min_lr)


def lr_constant(step: int, cfg: TrainConfig) -> float:
    """Warm-up, then the constant ``lr`` (``min_lr`` unused): every step of one run is comparable, so the loss
    curve of one run gives the loss at many token counts (scaling-law grids)."""
    if step < cfg.warmup_steps:
        return _warmup(step, cfg)
    return cfg.lr


_SCHEDULE_FNS: dict[str, Callable[[int, TrainConfig], float]] = {"cosine": lr_cosine, "constant": lr_constant}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of update ``step`` (0-based) under ``cfg.schedule`` (:func:`lr_cosine`, :func:`lr_constant`).

    Raises ``ValueError`` when ``step`` is not a non-negative integer.
    """
    if not is_int(step) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return _SCHEDULE_FNS[cfg.schedule](step, cfg)


# ---------------------------------------------------------------------------------------------- optimizer
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) with weight decay on weights of 2 or more dimensions (matmuls, embeddings,
    stacked expert weights) only; biases (1-D, or those a module lists in ``no_weight_decay_params()``, as an MoE layer
    does its stacked ones) and LayerNorm gains are not decayed (GPT-2/nanoGPT). Uses the fused kernel where torch has one."""
    params = [p for p in model.parameters() if p.requires_grad]
    keep = {id(p) for m in model.modules() if hasattr(m, "no_weight_decay_params") for p in m.no_weight_decay_params()}
    decay = [p.dim() >= 2 and id(p) not in keep for p in params]  # (an MoE layer's stacked biases are 3-D)
    groups = [{"params": [p for p, d in zip(params, decay, strict=True) if d], "weight_decay": cfg.weight_decay},
              {"params": [p for p, d in zip(params, decay, strict=True) if not d], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


# ---------------------------------------------------------------------------------------------- distributed
class DistInfo(NamedTuple):
    """Where this process sits in a data-parallel run: ``rank`` of ``world_size`` processes, ``local_rank``
    on its node, and the ``device`` it trains on (``"cpu"`` or ``"cuda:<local_rank>"``)."""

    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and shows progress."""
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; gloo on CPU, nccl
    on CUDA, each rank on ``cuda:LOCAL_RANK``). Without ``WORLD_SIZE > 1`` it returns a single-process
    ``DistInfo`` and starts nothing. Raises ``KeyError`` when ``WORLD_SIZE > 1`` but ``RANK`` is not set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank, world, local, device)


# ---------------------------------------------------------------------------------------------- evaluation
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _loss_kwargs(model: nn.Module) -> dict[str, bool]:
    """``{"return_logits": False}`` for models whose forward can skip the logits, else nothing."""
    return {"return_logits": False} if "return_logits" in inspect.signature(_unwrap(model).forward).parameters else {}


@torch.no_grad()
def evaluate(model: nn.Module, val_tokens: Mapping[str, np.ndarray], context: int, batch_size: int,
             max_batches: int | None = None, device: str | torch.device | None = None) -> dict[str, float]:
    """Mean next-token loss per domain on fixed, non-overlapping windows.

    Domain ``d`` is cut into the windows ``tokens[i T : i T + T]`` -> targets shifted by one
    (``i = 0 .. (len - 1) // T - 1``); with ``max_batches`` at most ``max_batches * batch_size`` of them,
    evenly spaced over the domain. The same data always gives the same windows, so evaluations compare.
    The mean is over all target tokens of the domain, in nats per token. ``val_tokens``: ``{domain: 1-D token
    array}``; returns ``{domain: mean loss}``. Raises ``ValueError`` when ``context``, ``batch_size`` or
    ``max_batches`` is not a valid integer, or a domain has fewer than ``context + 1`` tokens.
    """
    if not is_int(context) or context < 1:
        raise ValueError(f"context must be a positive integer, got {context!r}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if max_batches is not None and (not is_int(max_batches) or max_batches < 1):
        raise ValueError(f"max_batches must be None or an integer >= 1, got {max_batches!r}")
    m = _unwrap(model)
    if device is None:
        device = next(m.parameters()).device
    was_training = m.training
    m.eval()
    out: dict[str, float] = {}
    ar = np.arange(context + 1)
    kw = _loss_kwargs(m)
    try:
        for name, toks in val_tokens.items():
            toks = np.asarray(toks)
            n_win = (len(toks) - 1) // context
            if n_win < 1:
                raise ValueError(f"val_tokens[{name!r}] has {len(toks)} tokens, fewer than context + 1 = {context + 1}")
            win = np.arange(n_win)
            if max_batches is not None and n_win > max_batches * batch_size:
                win = np.unique(np.linspace(0, n_win - 1, max_batches * batch_size).round().astype(np.int64))
            total, count = 0.0, 0
            for i in range(0, len(win), batch_size):
                idx = (win[i:i + batch_size] * context)[:, None] + ar
                w = torch.from_numpy(toks[idx].astype(np.int64)).to(device)
                _, loss = m(w[:, :-1], w[:, 1:], **kw)
                n = w[:, 1:].numel()
                total += float(loss) * n
                count += n
            out[name] = total / count
    finally:
        m.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------- checkpoints
def _cfg_fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items() if k in _TRAJECTORY}


def _save_checkpoint(path: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer, sampler: Any,
                     history: list, extra: dict, cfg: TrainConfig) -> None:
    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "sampler": sampler.state_dict(), "history": history, "extra": extra,
             "torch_rng": torch.get_rng_state(), "cfg": _cfg_fingerprint(cfg),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())  # temp file in the same folder, then os.replace


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dictionary :func:`train` saved: step, model, optimizer, sampler, history, extra, RNG states."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)


def _restore(ckpt: dict, model: nn.Module, opt: torch.optim.Optimizer, sampler: Any, cfg: TrainConfig) -> None:
    want, got = _cfg_fingerprint(cfg), ckpt["cfg"]
    diff = {k: (got.get(k), want[k]) for k in want if got.get(k) != want[k]}
    if diff:
        raise ValueError(f"checkpoint {cfg.checkpoint} was written under other settings "
                         f"(field: (checkpoint, now)) {diff}; delete it or set resume=False")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sampler.load_state_dict(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])


# ---------------------------------------------------------------------------------------------- progress
def _progress_disable(cfg: TrainConfig, rank: int) -> bool | None:
    """True: no bar. None: tqdm decides (a bar only on a terminal). False: a bar (Jupyter)."""
    if rank != 0 or not cfg.progress:
        return True
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no"):
        return True  # the runner sets this under papermill
    if "ipykernel" in sys.modules:
        return False  # interactive notebook: stderr is no TTY but the bar is wanted
    return None


# ---------------------------------------------------------------------------------------------- the loop
def train(model: nn.Module, sampler: Any, cfg: TrainConfig, val_tokens: Mapping[str, np.ndarray] | None = None,
          on_eval: Callable[[int, dict[str, float], dict[str, Any]], None] | None = None,
          on_step: Callable[[int, dict[str, Any], dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``model`` on batches from ``sampler`` for ``cfg.max_steps`` updates; returns the history.

    The history has one entry per update: ``step``, ``tokens`` (global tokens seen), ``lr``, ``train_loss``
    (mean over the global batch), and at evaluation steps ``val`` (``{domain: loss}``) and the sampler's
    ``weights``; an evaluation at step 0 adds a first entry with ``lr`` and ``train_loss`` None.

    Hooks get ``state = {"model", "optimizer", "sampler", "history", "extra", "cfg", "dist"}``:
    ``on_eval(step, val_losses, state)`` after each evaluation (it may call ``sampler.set_weights``),
    ``on_step(step, record, state)`` after each update. ``state["extra"]`` is a dict the hooks may fill;
    it is saved in and restored from checkpoints.

    Under torchrun (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel, each rank trains on
    its shard ``sampler.next_batch(rank, world_size)`` of the same global batch, and DDP's gradient mean
    over equal shards equals the single-process gradient of the global batch. Every rank evaluates (the
    same numbers, so hooks act alike everywhere); only rank 0 writes checkpoints and shows progress.
    The model is trained in place, on ``cfg.device``. Losses in nats per token.

    Raises ``TypeError`` when ``cfg`` is not a :class:`TrainConfig`, ``ValueError`` when ``cfg.device`` is a
    CUDA device torch cannot see, evaluations are asked for without ``val_tokens``, or a checkpoint to resume
    was written under other settings.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    info = init_distributed(cfg.device)
    device = torch.device(info.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"TrainConfig.device={cfg.device!r}, but torch sees no CUDA device")
    evals = cfg.eval_points()
    if evals and not val_tokens:
        raise ValueError("val_tokens are needed: TrainConfig asks for evaluations (eval_every / eval_steps)")
    torch.manual_seed(cfg.seed)  # dropout; the sampler has its own generator
    model.to(device)
    model.train()
    opt = make_optimizer(model, cfg)
    history: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    state = {"model": model, "optimizer": opt, "sampler": sampler, "history": history, "extra": extra,
             "cfg": cfg, "dist": info}
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint is not None else None
    start = 0
    if ckpt_path is not None and cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _restore(ckpt, model, opt, sampler, cfg)
        history.extend(ckpt["history"])
        extra.update(ckpt["extra"])
        start = int(ckpt["step"])
        if info.is_main and cfg.progress:
            print(f"resumed from {ckpt_path} at step {start}", file=sys.stderr)
    net = model
    if info.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16"
                else contextlib.nullcontext())
    eval_bs = cfg.eval_batch_size or sampler.batch_size
    tokens_per_step = sampler.batch_size * sampler.context * cfg.grad_accum
    loss_kw = _loss_kwargs(model)

    def run_eval(step: int) -> dict[str, float]:
        with autocast:
            val = evaluate(model, val_tokens, sampler.context, eval_bs, cfg.eval_batches, device)
        if on_eval is not None:
            on_eval(step, val, state)
        return val

    def weights() -> Any:
        return sampler.weights_dict() if hasattr(sampler, "weights_dict") else None

    if start == 0 and 0 in evals:
        val = run_eval(0)
        history.append({"step": 0, "tokens": 0, "lr": None, "train_loss": None, "val": val, "weights": weights()})

    bar = tqdm(total=cfg.max_steps, initial=start, disable=_progress_disable(cfg, info.rank), unit="step",
               dynamic_ncols=True, leave=False)
    t0, tokens0 = time.perf_counter(), start * tokens_per_step
    try:
        for step in range(start, cfg.max_steps):
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x, y, _ = sampler.next_batch(info.rank, info.world_size)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = (net.no_sync() if info.world_size > 1 and micro < cfg.grad_accum - 1
                        else contextlib.nullcontext())
                with sync, autocast:
                    _, loss = net(x, y, **loss_kw)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach().float()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            train_loss = loss_sum / cfg.grad_accum
            if info.world_size > 1:
                dist.all_reduce(train_loss, op=dist.ReduceOp.SUM)
                train_loss /= info.world_size
            s = step + 1
            rec: dict[str, Any] = {"step": s, "tokens": s * tokens_per_step, "lr": lr, "train_loss": float(train_loss)}
            if s in evals:
                rec["val"] = run_eval(s)
                rec["weights"] = weights()
            history.append(rec)
            if on_step is not None:
                on_step(s, rec, state)
            if ckpt_path is not None and info.is_main and (
                    (cfg.checkpoint_every and s % cfg.checkpoint_every == 0) or s == cfg.max_steps):
                _save_checkpoint(ckpt_path, s, model, opt, sampler, history, extra, cfg)
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", tok_s=f"{(s * tokens_per_step - tokens0) / dt:.3g}",
                            refresh=False)
            bar.update(1)
    finally:
        bar.close()
    if info.world_size > 1:
        dist.barrier()
    return history


# ---------------------------------------------------------------------------------------------- weight cache
def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's bytes, dtype and shape: a key for the data a model was trained on."""
    import hashlib

    a = np.ascontiguousarray(a)
    return hashlib.sha256(a.tobytes() + f"|{a.dtype.str}|{a.shape}".encode()).hexdigest()


def cached_weights(model: nn.Module, key: Mapping[str, Any], path: str | os.PathLike,
                   fit: Callable[[nn.Module], None]) -> bool:
    """Load ``model``'s weights from ``path`` when the JSON key stored beside it (``path`` with suffix ``.json``)
    equals ``key``; otherwise call ``fit(model)`` and write the weights and the key (atomically). ``key`` must hold
    everything that decides the weights (shape, training settings, a hash of the data, torch's version), as
    JSON-ready values. Returns whether the cache was used. Raises ``TypeError`` when ``key`` is not JSON-ready."""
    import json

    path = Path(path)
    key_path = path.with_suffix(".json")
    text = json.dumps(dict(key), sort_keys=True, indent=1) + "\n"
    if path.exists() and key_path.exists() and key_path.read_text() == text:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True
    fit(model)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    key_path.unlink(missing_ok=True)  # never a stale key beside new weights, even if the next write is cut short
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(key_path, text.encode())
    return False
