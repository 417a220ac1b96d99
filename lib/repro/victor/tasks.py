"""VICTOR's proxy tasks (card section 4), one function each, and the corruptions they train on.

Reconstructive: masked language modelling (:func:`mlm_loss`), masked sentence order modelling (:func:`msom_loss`,
3 segments, 6-way) and its frame counterpart (:func:`fom_loss`; the card marks a frame-order task uncertain).
Contrastive, all InfoNCE (:func:`info_nce`) with temperature ``tau``: intra- and inter-masked frame modelling
(:func:`intra_mfm_loss`, :func:`inter_mfm_loss`) and dual video-sentence alignment against the visual and
textual queues (:func:`dual_vsa_loss`). The alternative the paper argues against, alignment by a binary match
head on the masked fused input, is :func:`binary_match_loss`.

Shapes: ``B`` pairs, ``L`` text positions, ``T`` frames, ``d`` features, ``K`` queue entries.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["PERMUTATIONS", "check_rate", "mask_tokens", "mask_frames", "shuffle_segments", "shuffle_frames",
           "info_nce", "mlm_loss", "msom_loss", "fom_loss", "intra_mfm_loss", "inter_mfm_loss", "dual_vsa_loss",
           "binary_match_loss"]

PERMUTATIONS = tuple(itertools.permutations(range(3)))  # the 3! = 6 orders of three segments; label = index


def check_rate(name: str, rate: float) -> float:
    """``rate`` as a float after checking it lies in the open interval (0, 1); ``ValueError`` naming ``name``."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 < float(rate) < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {rate!r}")
    return float(rate)


# ---------------------------------------------------------------------------------------------- corruptions
def mask_tokens(ids: torch.Tensor, rate: float, mask_id: int, vocab_size: int, n_special: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: each real token (id >= ``n_special``) is chosen with probability ``rate``; a chosen token
    becomes ``[MASK]`` (80 %), a random character (10 %) or stays (10 %). Returns the corrupted ids ``(B, L)`` and
    the labels ``(B, L)``: the original id where chosen, -100 elsewhere. Every caption gets at least one chosen
    token. Raises ``ValueError`` naming ``rate`` outside (0, 1)."""
    rate = check_rate("rate", rate)
    real = ids >= n_special  # (B, L)
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    chosen = real & (u < rate)
    # a caption with nothing chosen gets its real token of smallest u (keeps the loss defined for every caption)
    first = torch.where(real, u, torch.full_like(u, 2.0)).argmin(1)
    none = ~chosen.any(1) & real.any(1)  # (a caption without characters has nothing to choose)
    chosen[none, first[none]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    v = torch.rand(ids.shape, generator=generator, device=ids.device)
    rand = torch.randint(n_special, vocab_size, ids.shape, generator=generator, device=ids.device)
    out = torch.where(chosen & (v < 0.8), torch.full_like(ids, mask_id), ids)
    out = torch.where(chosen & (v >= 0.8) & (v < 0.9), rand, out)
    return out, labels


def mask_frames(batch: int, frames: int, rate: float, generator: torch.Generator | None = None,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """Frames to mask, ``(batch, frames)`` bool: exactly ``max(1, round(rate * frames))`` per video, drawn
    uniformly. Raises ``ValueError`` naming ``rate`` outside (0, 1)."""
    rate = check_rate("rate", rate)
    k = max(1, round(rate * frames))
    order = torch.rand(batch, frames, generator=generator, device=device).argsort(1)
    return order < k  # the frames whose rank is below k: k per row


def shuffle_segments(ids: torch.Tensor, sep_id: int, pad_id: int = 0,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked sentence order modelling's corruption: the characters of each caption (masked or not: positions
    1..n, between ``[CLS]`` and ``[SEP]``) are cut into 3 near-equal contiguous segments, put in the order of a
    permutation drawn uniformly from :data:`PERMUTATIONS`, and closed by ``[SEP]`` each:
    ``[CLS] s_a [SEP] s_b [SEP] s_c [SEP]`` (the separators are this workbook's choice: they tell the model where
    the segments are; the card does not say how VICTOR marks them). Returns the shuffled ids ``(B, L)`` and the
    labels ``(B,)`` in 0..5: the ``j``-th segment of the output is segment ``PERMUTATIONS[label][j]`` of the
    caption. Raises ``ValueError`` naming ``ids`` when a caption and its separators do not fit in ``L``."""
    B, L = ids.shape
    n = (ids != pad_id).sum(1) - 2  # the caption's characters, masked or not, between [CLS] and [SEP]
    if int(n.max()) + 4 > L:
        raise ValueError(f"ids: a caption of {int(n.max())} tokens needs {int(n.max()) + 4} positions with its "
                         f"separators, more than the context L={L}")
    labels = torch.randint(len(PERMUTATIONS), (B,), generator=generator, device=ids.device)
    out = torch.full_like(ids, pad_id)
    out[:, 0] = ids[:, 0]  # [CLS]
    sep = ids.new_tensor([sep_id])
    for b, nb in enumerate(n.tolist()):  # per caption (B small; not per token)
        cuts = [1 + round(nb * j / 3) for j in range(4)]
        segs = [ids[b, cuts[j]:cuts[j + 1]] for j in range(3)]
        row = torch.cat([x for j in PERMUTATIONS[int(labels[b])] for x in (segs[j], sep)])
        out[b, 1:1 + len(row)] = row
    return out, labels


def shuffle_frames(frames: torch.Tensor, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame-order corruption: the ``T`` frames (``T`` divisible by 3) cut into 3 equal segments put in a
    uniformly drawn order of :data:`PERMUTATIONS`. ``frames`` ``(B, T, ...)``; returns the shuffled frames and the
    labels ``(B,)``. Raises ``ValueError`` naming ``frames`` when ``T`` is not divisible by 3."""
    B, T = frames.shape[:2]
    if T % 3:
        raise ValueError(f"frames: T={T} frames cannot be cut into 3 equal segments")
    labels = torch.randint(len(PERMUTATIONS), (B,), generator=generator, device=frames.device)
    perms = torch.tensor(PERMUTATIONS, device=frames.device)[labels]  # (B, 3)
    s = T // 3
    src = (perms[:, :, None] * s + torch.arange(s, device=frames.device)).reshape(B, T)  # (B, T) source frame
    return frames[torch.arange(B, device=frames.device)[:, None], src], labels


# ---------------------------------------------------------------------------------------------------- losses
def info_nce(q: torch.Tensor, k_pos: torch.Tensor, negatives: torch.Tensor | None, tau: float) -> torch.Tensor:
    """InfoNCE (card section 4; MoCo, CPC), the mean over the ``N`` queries:

        L = -log( exp(q.k+ / tau) / ( exp(q.k+ / tau) + sum_{k in N} exp(q.k / tau) ) )

    ``q`` and ``k_pos`` ``(N, d)``, ``negatives`` ``(N, M, d)`` (each query's own) or ``(M, d)`` (shared, e.g. a
    queue) or None; similarities are dot products (unit vectors: cosines). Equal to the cross-entropy of the logits
    ``[q.k+, q.k_1, ...] / tau`` with target 0. Raises ``ValueError`` naming ``tau`` unless positive."""
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    pos = (q * k_pos).sum(-1, keepdim=True)  # (N, 1)
    if negatives is None or negatives.numel() == 0:
        logits = pos
    elif negatives.dim() == 2:
        logits = torch.cat([pos, q @ negatives.T], 1)  # (N, 1 + M)
    else:
        logits = torch.cat([pos, torch.einsum("nd,nmd->nm", q, negatives)], 1)
    return F.cross_entropy(logits / tau, torch.zeros(len(q), dtype=torch.long, device=q.device))


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked language modelling: ``-mean over masked positions of log p(w_i | masked text, video)``. ``logits``
    ``(B, L, V)`` from the fused text positions, ``labels`` ``(B, L)`` with -100 where not masked."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def msom_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked sentence order modelling: 6-way cross-entropy ``-log p(pi | shuffled masked text, video)`` of the
    permutation ``pi`` of the 3 segments, from the fused ``[CLS]``. ``logits`` ``(B, 6)``, ``labels`` ``(B,)``."""
    return F.cross_entropy(logits, labels)


def fom_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Frame order modelling: 6-way cross-entropy of the permutation of the 3 frame segments, from the fused video
    mean. ``logits`` ``(B, 6)``, ``labels`` ``(B,)``."""
    return F.cross_entropy(logits, labels)


def intra_mfm_loss(pred: torch.Tensor, frame_in: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Intra masked frame modelling: at each masked step ``t`` of video ``b`` the prediction must pick the input
    feature of frame ``t`` among the input features of the same video's ``T`` frames (InfoNCE, negatives the other
    ``T - 1`` steps):

        L = -log( exp(p_bt . x_bt / tau) / sum_{t'} exp(p_bt . x_bt' / tau) )

    ``pred`` ``(B, T, d)`` (unit vectors from the fused masked video), ``frame_in`` ``(B, T, d)`` (unit input
    features, no gradient), ``mask`` ``(B, T)`` bool."""
    b, t = mask.nonzero(as_tuple=True)
    logits = torch.einsum("nd,ntd->nt", pred[b, t], frame_in[b]) / tau  # (N masked, T)
    return F.cross_entropy(logits, t)


def inter_mfm_loss(pred: torch.Tensor, key_frames: torch.Tensor, frames_queue: torch.Tensor, tau: float
                   ) -> torch.Tensor:
    """Inter masked frame modelling: the prediction at a masked step must match the key network's feature of the
    same step (positive) against the frames memory queue (negatives: other videos' frames), by :func:`info_nce`.
    ``pred`` and ``key_frames`` ``(N, d)`` at the masked steps, ``frames_queue`` ``(K, d)``."""
    return info_nce(pred, key_frames, frames_queue, tau)


def _batch_and_queue_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """:func:`info_nce` of each query ``q[i]`` with positive ``k[i]`` and negatives the other rows of ``k`` and the
    queue, as one cross-entropy over the logits ``[q k^T | q queue^T] / tau`` ``(B, B + K)`` with target ``i``."""
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    logits = torch.cat([q @ k.T, q @ queue.T], 1) / tau
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def dual_vsa_loss(text_q: torch.Tensor, video_q: torch.Tensor, text_k: torch.Tensor, video_k: torch.Tensor,
                  visual_queue: torch.Tensor, textual_queue: torch.Tensor, tau: float) -> torch.Tensor:
    """Dual video-sentence alignment: text to video and video to text InfoNCE, each against the key network's
    features of the batch's other pairs and of its memory queue:

        L = 1/2 [ InfoNCE(t_q, v_k+, {v_k of other pairs} + visual queue)
                + InfoNCE(v_q, t_k+, {t_k of other pairs} + textual queue) ]

    ``text_q``, ``video_q`` ``(B, d)``: the query network's pooled features (of the masked input); ``text_k``,
    ``video_k`` ``(B, d)``: the key network's (clean input); queues ``(K, d)``; all unit vectors."""
    t2v = _batch_and_queue_nce(text_q, video_k, visual_queue, tau)
    v2t = _batch_and_queue_nce(video_q, text_k, textual_queue, tau)
    return 0.5 * (t2v + v2t)


def binary_match_loss(pos_logit: torch.Tensor, neg_logit: torch.Tensor) -> torch.Tensor:
    """Alignment by a binary match head on the fused input (the alternative VICTOR argues against): binary
    cross-entropy with target 1 for the paired (masked) input and 0 for a mismatched one,
    ``L = -1/2 [ log s(z+) + log(1 - s(z-)) ]``. Logits ``(B,)`` each."""
    return 0.5 * (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                  + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))
