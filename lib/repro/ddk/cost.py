"""What DDK costs over plain distillation, measured in the same process: rounds of CPT, KD and DDK training on the
same batches' shapes, at a run's sizes (:class:`~repro.ddk.sweep.DDKRun`).

In a round each method trains a fresh student for ``steps`` updates against a teacher of the run's shape (weights
as initialised: speed does not depend on them). KD evaluates nothing; DDK evaluates the student on the seven
validation sets at the start of every interval (steps 0, K, 2K, ... before the last step) and re-weights the
sampler, as Algorithm 1 does; CPT never calls the teacher. The order of the three methods rotates between rounds,
so a drift of the machine's speed does not favour one. The paper's Table 12 compares the same parts in FLOPs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["measure", "overhead"]

METHODS = ("cpt", "kd", "ddk")


def _one(run, method: str, steps: int, vocab: int, tokens: dict, val: dict, natural: dict, loss_t: dict) -> float:
    import torch

    from ..data.sampler import DomainSampler
    from ..nn.gpt import GPT
    from ..train import TrainConfig, train
    from .distill import Distiller, Reweighter

    spec = run.teacher
    torch.manual_seed(run.seed)
    student, teacher = GPT(spec.gpt_config("student", vocab)), GPT(spec.gpt_config("teacher", vocab))
    model = Distiller(student, None if method == "cpt" else teacher, 0.0 if method == "cpt" else run.gamma, run.T)
    sampler = DomainSampler(tokens, spec.context, spec.batch_size, natural, seed=run.seed)
    evals = list(range(0, steps, run.K)) if method == "ddk" else None
    hook = Reweighter("ddk", loss_t, natural, run.K) if method == "ddk" else None
    cfg = TrainConfig(max_steps=steps, lr=run.lr, min_lr=run.lr / 10, warmup_steps=min(run.warmup_steps, steps),
                      eval_steps=evals, eval_batches=spec.val_batches, device=spec.device, seed=run.seed,
                      progress=False)
    t0 = time.perf_counter()
    train(model, sampler, cfg, val_tokens=val if evals else None, on_eval=hook)
    return time.perf_counter() - t0


def measure(run, steps: int, rounds: int, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Time ``rounds`` rounds of CPT, KD and DDK, ``steps`` updates each, at ``run``'s sizes, ``K`` and ``T`` (on its
    teacher's token profile and device). Returns one row per round and method: ``round``, ``method``, ``seconds``,
    ``tokens_per_s`` (student training tokens per second). Raises ``ValueError`` naming ``steps`` (not a whole number of
    intervals, ``K`` of them, so that DDK evaluates once per ``K`` steps as in a run) or ``rounds`` (below 1)."""
    from ..data import load_tokens, vocab_size
    from .distill import natural_mixture
    from .sweep import CORPORA

    for name, v in (("steps", steps), ("rounds", rounds)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if steps % run.K:
        raise ValueError(f"steps={steps} must be a multiple of K={run.K}: DDK evaluates once per interval")
    spec, vocab = run.teacher, vocab_size()
    tokens = {c: load_tokens(c, "train", spec.token_profile) for c in CORPORA}
    val = {c: load_tokens(c, "validation", spec.token_profile) for c in CORPORA}
    natural = natural_mixture(tokens)
    loss_t = {c: float(np.log(vocab)) for c in CORPORA}  # a placeholder: the re-weighting costs the same for any
    _one(run, "kd", 2, vocab, tokens, val, natural, loss_t)  # warm-up: allocator, kernels
    rows = []
    for i in range(rounds):
        order = METHODS[i % 3:] + METHODS[:i % 3]
        for m in order:
            sec = _one(run, m, steps, vocab, tokens, val, natural, loss_t)
            rows.append({"round": i, "method": m, "seconds": sec,
                         "tokens_per_s": steps * spec.batch_size * spec.context / sec})
        if progress is not None:
            progress(f"round {i + 1}/{rounds} done")
    return pd.DataFrame(rows)


def overhead(times: pd.DataFrame, method: str = "ddk", baseline: str = "kd") -> pd.Series:
    """Per round, ``method``'s wall time over ``baseline``'s minus 1 (0.03 = 3 % slower), indexed by round."""
    t = times.pivot(index="round", columns="method", values="seconds")
    return t[method] / t[baseline] - 1
