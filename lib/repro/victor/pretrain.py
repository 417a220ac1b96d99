"""Pre-training with VICTOR's proxy tasks, and the evaluations of notebook 06.

:func:`pretrain` trains a query network (:class:`repro.victor.model.VictorNet`) on rendered (or real) pairs with
a set of proxy tasks (:data:`TASK_SETS`, the ablation ladder of the issue and card section 8), a momentum key
network and three memory queues. One step:

1. corrupt the pair: BERT masking of the caption (:func:`.tasks.mask_tokens`) and, with a frame task, masked
   frames (:func:`.tasks.mask_frames`);
2. the query network encodes and fuses the corrupted pair; MLM reads the fused text, intra/inter-MFM the fused
   masked frames, dual-VSA the pooled unimodal features, the binary head the fused ``[CLS]`` (and a second fusion
   with each caption's video swapped for another's);
3. the key network (no gradients) encodes the clean pair: the positives of dual-VSA and inter-MFM;
4. with an order task, ``order_share`` of the batch (rows drawn afresh each step) passes again: with both tasks,
   half of those rows
   with the caption cut into 3 shuffled segments (MSOM, frames in order) and half with the frames cut into 3
   shuffled segments (FOM, caption in order), so that each order can be read off the other modality as well as
   its own;
5. the losses are summed (weights 1, card section 4), the key features enqueued with their pair ids (after the
   losses read the queues, less the batch's own pairs' entries, so no pair is ever its own negative), then one
   AdamW step and the momentum update.

Evaluation (:func:`evaluate`): retrieval R@1/5/10, text to video and video to text, on the held-out gallery and on
the hard- and random-negative galleries, scored three ways: ``cosine`` (the query network's own contrastive
features of the clean pair: VICTOR's dual-encoder retrieval), ``linear`` (two linear maps trained on frozen pooled
features of training pairs, the same protocol for every model) and ``head`` (the binary match head over every
caption-video pair, for the models that have one); a linear probe of the first event's action on pooled video
features. Ties count against the query (a model that scores every candidate alike gets 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import tasks as tk
from .data import SPECIALS, Pairs, Vocab
from .model import MemoryQueue, VictorConfig, VictorNet, key_copy, momentum_update

__all__ = ["TASKS", "TASK_SETS", "PretrainConfig", "pretrain", "evaluate", "recall_at_k", "encode_pairs",
           "linear_retrieval", "head_scores", "linear_probe", "KS", "train_step", "step_losses"]

TASKS = ("mlm", "binary", "vsa", "intra_mfm", "inter_mfm", "msom", "fom")
TASK_SETS = {"mlm": ("mlm",), "mlm+bin": ("mlm", "binary"), "mlm+vsa": ("mlm", "vsa"),
             "mlm+vsa+mfm": ("mlm", "vsa", "intra_mfm", "inter_mfm"),
             "all": ("mlm", "vsa", "intra_mfm", "inter_mfm", "msom", "fom")}
KS = (1, 5, 10)


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training run's settings: the proxy ``tasks`` (names of :data:`TASKS`), ``steps`` AdamW updates of
    ``batch_size`` pairs (cosine from ``lr`` to ``lr / 10`` after ``warmup_steps``; ``weight_decay`` on matrices,
    gradients clipped at norm 1), InfoNCE temperature ``tau``, key momentum ``momentum`` (m), queue sizes
    ``frames_queue`` (frame features), ``visual_queue`` and ``textual_queue`` (pooled features), mask rates
    ``text_mask_rate`` (each character chosen with this probability, at least one per caption) and
    ``frame_mask_rate`` (exactly ``max(1, round(rate x frames))`` frames per video: 2 of 12 at 0.15), the share ``order_share`` of the batch given the order tasks' extra
    pass, a loss row every ``log_every`` steps, ``device`` and ``seed``.

    Raises ``ValueError`` naming the field: an unknown task, a rate outside (0, 1), a queue smaller than what one
    step enqueues (``batch_size`` pooled keys; ``batch_size x frames`` frame keys, checked by :func:`pretrain`),
    ``momentum`` outside [0, 1], a non-positive ``tau`` or size."""

    tasks: tuple[str, ...] = TASK_SETS["all"]
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    tau: float = 0.07
    momentum: float = 0.995
    frames_queue: int = 4096
    visual_queue: int = 1024
    textual_queue: int = 1024
    text_mask_rate: float = 0.15
    frame_mask_rate: float = 0.15
    order_share: float = 0.5
    log_every: int = 50
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks or "mlm" not in self.tasks:
            raise ValueError(f"tasks must include 'mlm' and name only {list(TASKS)}, got {self.tasks!r}")
        for name in ("steps", "batch_size", "log_every", "frames_queue", "visual_queue", "textual_queue"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or \
                not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be an integer in [0, steps={self.steps}], got {self.warmup_steps!r}")
        for name in ("text_mask_rate", "frame_mask_rate", "order_share"):
            tk.check_rate(name, getattr(self, name))
        for name in ("visual_queue", "textual_queue"):
            if getattr(self, name) < self.batch_size:
                raise ValueError(f"{name}={getattr(self, name)} is smaller than the batch (batch_size="
                                 f"{self.batch_size}): a memory queue must hold at least one batch of keys")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {self.momentum!r}")
        if not (isinstance(self.tau, int | float) and self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"tau must be a positive number, got {self.tau!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def has(self, *names: str) -> bool:
        return any(n in self.tasks for n in names)


@dataclass
class Batches:
    """Shuffled mini-batches of a training set, epoch after epoch, from its own generator: ``frames`` uint8
    ``(N, T, ...)``, ``ids`` ``(N, L)``."""

    frames: np.ndarray
    ids: np.ndarray
    batch_size: int
    seed: int
    _order: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.batch_size > len(self.ids):
            raise ValueError(f"batch_size={self.batch_size} exceeds the {len(self.ids)} training pairs")
        self.rng = np.random.default_rng(self.seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch: ``frames`` ``(B, T, ...)``, ``ids`` ``(B, L)`` and the pairs' rows ``(B,)`` (in
        increasing order; the pair ids the memory queues are tagged with)."""
        if len(self._order) < self.batch_size:
            self._order = list(self.rng.permutation(len(self.ids)))
        rows = np.sort(self._order[:self.batch_size])
        del self._order[:self.batch_size]
        return (torch.from_numpy(np.ascontiguousarray(self.frames[rows])), torch.from_numpy(self.ids[rows]),
                torch.from_numpy(rows.astype(np.int64)))


def _optimizer(net: VictorNet, cfg: PretrainConfig) -> torch.optim.Optimizer:
    from ..train import TrainConfig, make_optimizer

    return make_optimizer(net, TrainConfig(max_steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr / 10,
                                           warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.98), device=cfg.device, progress=False))


def pretrain(pairs: Pairs, vocab: Vocab, net_cfg: VictorConfig, cfg: PretrainConfig,
             on_log: Callable[[int, dict[str, float]], None] | None = None, progress: bool = False
             ) -> tuple[VictorNet, list[dict[str, Any]], dict[str, float]]:
    """Pre-train a query network on ``pairs`` with ``cfg.tasks``; returns ``(net, curve, cost)``.

    ``curve``: one dict per ``log_every`` steps (``step`` and each task's mean loss over those steps, nats).
    ``cost``: ``train_s`` (wall), ``train_cpu_s`` (process CPU) and ``samples_per_s``. The network is initialised
    from ``torch.manual_seed(cfg.seed)``; batches and corruptions come from generators of the same seed.
    Raises ``ValueError`` naming ``frames_queue`` when it is smaller than one step's frame keys, ``frames`` or
    ``context`` when the pairs do not fit ``net_cfg``."""
    from ..train import TrainConfig, lr_at

    _check_frames_queue(cfg, net_cfg.frames)
    if cfg.has("msom") and max(len(c) for c in pairs.captions) + 4 > net_cfg.context:
        raise ValueError(f"context={net_cfg.context} is too short for masked sentence order modelling: a caption of "
                         f"{max(len(c) for c in pairs.captions)} characters needs "
                         f"{max(len(c) for c in pairs.captions) + 4} positions with [CLS] and three [SEP]")
    device = torch.device(cfg.device)
    ids = vocab.encode(pairs.captions, net_cfg.context)
    torch.manual_seed(cfg.seed)
    net = VictorNet(net_cfg, vocab.pad).to(device)
    key = key_copy(net) if cfg.has("vsa", "inter_mfm") else None
    opt = _optimizer(net, cfg)
    sched = TrainConfig(max_steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr / 10, warmup_steps=cfg.warmup_steps,
                        progress=False)
    d = net_cfg.d_proj
    queues = {"frames": MemoryQueue(cfg.frames_queue, net_cfg.d_model, device),
              "visual": MemoryQueue(cfg.visual_queue, d, device), "textual": MemoryQueue(cfg.textual_queue, d, device)}
    batches = Batches(pairs.frames, ids, cfg.batch_size, cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    curve, sums = [], {t: 0.0 for t in cfg.tasks}
    t0, c0 = time.perf_counter(), time.process_time()
    bar = _bar(cfg.steps, progress)
    net.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        frames, tok, rows = batches.next()
        frames, tok, rows = frames.to(device), tok.to(device), rows.to(device)
        losses = train_step(net, key, queues, opt, frames, tok, rows, vocab, cfg, gen)
        for t, v in losses.items():
            sums[t] += float(v.detach())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            n = (step % cfg.log_every) + 1
            row = {"step": step + 1, **{t: s / n for t, s in sums.items()}}
            curve.append(row)
            sums = dict.fromkeys(sums, 0.0)
            if on_log is not None:
                on_log(step + 1, row)
            bar.set_postfix(loss=f"{sum(v for k, v in row.items() if k != 'step'):.3f}", refresh=False)
        bar.update(1)
    bar.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    net.eval()
    return net, curve, {"train_s": wall, "train_cpu_s": cpu, "samples_per_s": cfg.steps * cfg.batch_size / wall}


def train_step(net: VictorNet, key: VictorNet | None, queues: dict[str, MemoryQueue], opt: torch.optim.Optimizer,
               frames: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor, vocab: Vocab, cfg: PretrainConfig,
               gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One pre-training step: the summed losses of :func:`step_losses` back-propagated, gradients clipped at norm 1,
    an optimizer step, then the key network's momentum update; returns the losses (detached)."""
    losses = step_losses(net, key, queues, frames, ids, vocab, cfg, gen, rows)
    opt.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    if key is not None:
        momentum_update(net, key, cfg.momentum)
    return {t: v.detach() for t, v in losses.items()}


def _bar(total: int, on: bool):
    from ..progress import tqdm

    return tqdm(total=total, disable=not on or None, unit="step", leave=False, dynamic_ncols=True)


def _check_frames_queue(cfg: PretrainConfig, frames: int) -> None:
    if cfg.has("inter_mfm") and cfg.frames_queue < cfg.batch_size * frames:
        raise ValueError(f"frames_queue={cfg.frames_queue} is smaller than one step's frame keys (batch_size x "
                         f"frames = {cfg.batch_size * frames})")


def step_losses(net: VictorNet, key: VictorNet | None, queues: dict[str, MemoryQueue], frames: torch.Tensor,
                ids: torch.Tensor, vocab: Vocab, cfg: PretrainConfig, gen: torch.Generator,
                rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The proxy-task losses of one batch (``frames`` ``(B, T, ...)``, ``ids`` ``(B, L)``, the pairs' ids ``rows``
    ``(B,)``; default ``0..B-1``), each a scalar. The queues are read less the batch's own pairs' entries, then the
    batch's key features are enqueued with their pair ids. Raises ``ValueError`` naming ``frames_queue`` when one
    step's frame keys do not fit in it."""
    _check_frames_queue(cfg, frames.shape[1])
    if rows is None:
        rows = torch.arange(len(ids), device=ids.device)
    n_special = len(SPECIALS)  # ids below this are [PAD], [CLS], [SEP], [MASK], [UNK]
    B = len(ids)
    x_ids, labels = tk.mask_tokens(ids, cfg.text_mask_rate, vocab.mask, len(vocab), n_special, gen)
    mfm = cfg.has("intra_mfm", "inter_mfm")
    fmask = tk.mask_frames(B, frames.shape[1], cfg.frame_mask_rate, gen, frames.device) if mfm else None
    enc = net.encode(frames, x_ids, fmask)
    ft, fv = net.fuse(enc.text, enc.video, enc.pad)
    out = {"mlm": tk.mlm_loss(net.mlm(ft), labels)}
    keys: dict[str, torch.Tensor] = {}
    if key is not None:
        with torch.no_grad():
            kenc = key.encode(frames, ids)
            keys["text"], keys["video"] = key.embed(kenc)
            if cfg.has("inter_mfm"):
                _, kfv = key.fuse(kenc.text, kenc.video, kenc.pad)
                keys["frames"] = F.normalize(key.mfm(kfv), dim=-1)  # (B, T, d)
    if mfm:
        pred = F.normalize(net.mfm(fv), dim=-1)  # (B, T, d)
        if cfg.has("intra_mfm"):
            out["intra_mfm"] = tk.intra_mfm_loss(pred, F.normalize(enc.frame_in.detach(), dim=-1), fmask, cfg.tau)
        if cfg.has("inter_mfm"):
            b, t = fmask.nonzero(as_tuple=True)
            out["inter_mfm"] = tk.inter_mfm_loss(pred[b, t], keys["frames"][b, t], queues["frames"].negatives(rows),
                                                 cfg.tau)
    if cfg.has("vsa"):
        tq, vq = net.embed(enc)
        out["vsa"] = tk.dual_vsa_loss(tq, vq, keys["text"], keys["video"], queues["visual"].negatives(rows),
                                      queues["textual"].negatives(rows), cfg.tau)
    if cfg.has("binary"):
        pos = net.match(ft[:, 0]).squeeze(-1)
        ft_neg, _ = net.fuse(enc.text, enc.video.roll(1, 0), enc.pad)  # each caption with another pair's video
        out["binary"] = tk.binary_match_loss(pos, net.match(ft_neg[:, 0]).squeeze(-1))
    if cfg.has("msom", "fom"):  # the order pass: MSOM rows with the caption shuffled, FOM rows with the frames
        n = max(1, round(cfg.order_share * B))
        n_msom = (n + 1) // 2 if cfg.has("msom") and cfg.has("fom") else n if cfg.has("msom") else 0
        pick = torch.randperm(B, generator=gen, device=gen.device)[:n].to(ids.device)  # rows drawn afresh each step
        o_ids, o_frames = x_ids[pick].clone(), frames[pick].clone()
        if n_msom:
            o_ids[:n_msom], msom_labels = tk.shuffle_segments(o_ids[:n_msom], vocab.sep, vocab.pad, gen)
        if n > n_msom:
            o_frames[n_msom:], fom_labels = tk.shuffle_frames(o_frames[n_msom:], gen)
        oenc = net.encode(o_frames, o_ids)
        ot, ov = net.fuse(oenc.text, oenc.video, oenc.pad)
        if n_msom:
            out["msom"] = tk.msom_loss(net.msom(ot[:n_msom, 0]), msom_labels)
        if n > n_msom:  # from the fused [CLS], which sees the caption (in order) and the shuffled frames
            out["fom"] = tk.fom_loss(net.fom(ot[n_msom:, 0]), fom_labels)
    if "video" in keys:
        queues["visual"].enqueue(keys["video"], rows)
        queues["textual"].enqueue(keys["text"], rows)
    if "frames" in keys:
        queues["frames"].enqueue(keys["frames"].flatten(0, 1), rows.repeat_interleave(frames.shape[1]))
    return out


# ------------------------------------------------------------------------------------------------ evaluation
def recall_at_k(scores: torch.Tensor | np.ndarray, positive: Sequence[int] | np.ndarray, ks: Sequence[int] = KS
                ) -> dict[int, float]:
    """Recall@k of a score matrix ``(Q, G)`` (higher = better match) whose query ``i`` has its match at column
    ``positive[i]``: the share of queries whose match ranks within the first ``k``. Candidates that tie the match
    rank before it (so a model that scores every candidate alike gets 0, never credit for a lucky tie); a NaN score
    ranks last. Returns ``{k: recall in [0, 1]}``."""
    s = torch.as_tensor(scores, dtype=torch.float64).nan_to_num(nan=-math.inf)  # a NaN score ranks last
    pos = torch.as_tensor(np.asarray(positive), dtype=torch.long)
    if s.dim() != 2 or len(pos) != s.shape[0]:
        raise ValueError(f"scores must be (Q, G) with one positive per query, got {tuple(s.shape)} and {len(pos)}")
    target = s[torch.arange(len(pos)), pos][:, None]
    rank = (s >= target).sum(1) - 1  # candidates scored at least as high as the match, the match excepted
    return {k: float((rank < k).double().mean()) for k in ks}


@torch.no_grad()
def encode_pairs(net: VictorNet, pairs: Pairs, vocab: Vocab, batch: int = 128) -> dict[str, torch.Tensor]:
    """The query network's features of the clean pairs: ``text``/``video`` ``(N, d_proj)`` contrastive unit
    vectors, ``text_pooled``/``video_pooled`` ``(N, d)``, and the unimodal sequences ``text_seq`` ``(N, L, d)``,
    ``video_seq`` ``(N, T, d)``, ``pad`` ``(N, L)`` for the match head."""
    net.eval()
    ids = torch.from_numpy(vocab.encode(pairs.captions, net.cfg.context))
    dev = next(net.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(pairs), batch):
        enc = net.encode(torch.from_numpy(np.ascontiguousarray(pairs.frames[i:i + batch])).to(dev), ids[i:i + batch].to(dev))
        t, v = net.embed(enc)
        for k, x in (("text", t), ("video", v), ("text_pooled", enc.text_pooled), ("video_pooled", enc.video_pooled),
                     ("text_seq", enc.text), ("video_seq", enc.video), ("pad", enc.pad)):
            parts.setdefault(k, []).append(x.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def linear_retrieval(train: dict[str, torch.Tensor], d_proj: int, seed: int, steps: int = 300, batch: int = 512,
                     tau: float = 0.07) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """Frozen-feature retrieval: two linear maps (standardised pooled text and pooled video to ``d_proj``) fitted
    by symmetric in-batch InfoNCE on the frozen pooled features of training pairs (Adam, lr 1e-2, ``steps``
    batches of ``batch`` pairs drawn from ``seed``); returns a function of encoded pairs giving their unit text
    and video embeddings."""
    g = torch.Generator().manual_seed(seed)
    mean = {m: train[f"{m}_pooled"].mean(0) for m in ("text", "video")}
    std = {m: train[f"{m}_pooled"].std(0) + 1e-6 for m in ("text", "video")}
    d = train["text_pooled"].shape[1]
    W = {m: (torch.randn(d, d_proj, generator=g) / math.sqrt(d)).requires_grad_() for m in ("text", "video")}
    opt = torch.optim.Adam(list(W.values()), lr=1e-2)

    def embed(feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        t, v = ((feats[f"{m}_pooled"] - mean[m]) / std[m] @ W[m] for m in ("text", "video"))
        return F.normalize(t, dim=-1), F.normalize(v, dim=-1)

    n = len(train["text_pooled"])
    target = torch.arange(min(batch, n))
    for _ in range(steps):
        rows = torch.randperm(n, generator=g)[:batch]
        t, v = embed({k: train[k][rows] for k in ("text_pooled", "video_pooled")})
        logits = t @ v.T / tau
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for w in W.values():
        w.requires_grad_(False)
    return embed


@torch.no_grad()
def head_scores(net: VictorNet, texts: dict[str, torch.Tensor], t_rows: np.ndarray, videos: dict[str, torch.Tensor],
                v_rows: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """The binary match head's logit for every caption of ``t_rows`` with every video of ``v_rows``: ``(Q, G)``,
    one fusion per pair (the cost of cross-encoder retrieval: Q x G passes)."""
    dev = next(net.parameters()).device
    L = int((~texts["pad"]).sum(1).max())  # positions past the longest caption are padding, masked anyway
    texts = {"text_seq": texts["text_seq"][:, :L], "pad": texts["pad"][:, :L]}
    ti = torch.as_tensor(t_rows).repeat_interleave(len(v_rows))
    vi = torch.as_tensor(v_rows).repeat(len(t_rows))
    out = []
    for i in range(0, len(ti), chunk):
        a, b = ti[i:i + chunk], vi[i:i + chunk]
        ft, _ = net.fuse(texts["text_seq"][a].to(dev), videos["video_seq"][b].to(dev), texts["pad"][a].to(dev))
        out.append(net.match(ft[:, 0]).squeeze(-1).cpu())
    return torch.cat(out).view(len(t_rows), len(v_rows))


def linear_probe(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray,
                 l2: float = 1e-3) -> float:
    """Accuracy on ``(x_test, y_test)`` of a multinomial logistic regression (L-BFGS, L2 ``l2``) fitted on
    standardised features ``x_train`` ``(N, d)`` with labels ``y_train`` ``(N,)`` in 0..C-1."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std
    ytr = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    C = int(max(ytr.max(), int(np.max(y_test)))) + 1
    W = torch.zeros(xtr.shape[1], C, requires_grad=True)
    b = torch.zeros(C, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ W + b, ytr) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ W + b).argmax(1).numpy() == np.asarray(y_test)).mean())


def evaluate(net: VictorNet, vocab: Vocab, galleries: dict[str, Pairs], fit: Pairs, *, head: bool, seed: int,
             n_fit: int = 2048) -> list[dict[str, Any]]:
    """Retrieval and probe rows of a pre-trained network. ``galleries``: ``heldout`` (every pair a query), and
    ``hard``/``random`` (queries: :attr:`Pairs.queries`, candidates: every row); ``fit``: training pairs whose
    first ``n_fit`` fit the linear retrieval maps and the probe (tested on ``heldout``). ``head``: also score by
    the binary match head. Rows: ``kind`` (``retrieval``/``probe``), ``gallery``, ``direction`` (``t2v``/``v2t``),
    ``scoring`` (``cosine``/``linear``/``head``), ``k`` and ``value`` (a share in [0, 1]). The probe needs the
    events (rendered pairs); for a real corpus (:func:`repro.victor.data.load_pairs`) only retrieval is measured,
    on whatever galleries are given (``heldout`` at least)."""
    fit = fit.subset(np.arange(min(n_fit, len(fit))))
    feats = {name: encode_pairs(net, p, vocab) for name, p in {**galleries, "fit": fit}.items()}
    lin = linear_retrieval(feats["fit"], net.cfg.d_proj, seed)
    rows = []
    for name, p in galleries.items():
        f = feats[name]
        q = p.queries
        emb = {"cosine": (f["text"], f["video"]), "linear": lin(f)}
        for scoring, (t, v) in emb.items():
            for direction, s in (("t2v", t[q] @ v.T), ("v2t", v[q] @ t.T)):
                rows += _recall_rows(name, direction, scoring, s, q)
        if head:  # every query caption with every video, every caption with every query video
            everything = np.arange(len(p))
            t2v = head_scores(net, f, q, f, everything)
            v2t = t2v.T if len(q) == len(p) else head_scores(net, f, everything, f, q).T
            rows += _recall_rows(name, "t2v", "head", t2v, q) + _recall_rows(name, "v2t", "head", v2t, q)
    if (fit.category >= 0).all() and (galleries["heldout"].category >= 0).all():  # a real corpus has no events
        acc = linear_probe(feats["fit"]["video_pooled"], fit.category, feats["heldout"]["video_pooled"],
                           galleries["heldout"].category)
        rows.append({"kind": "probe", "gallery": "heldout", "direction": "-", "scoring": "probe", "k": 0, "value": acc})
    return rows


def _recall_rows(gallery: str, direction: str, scoring: str, scores: torch.Tensor, positive: np.ndarray):
    return [{"kind": "retrieval", "gallery": gallery, "direction": direction, "scoring": scoring, "k": k, "value": r}
            for k, r in recall_at_k(scores, positive).items()]
