"""VICTOR's networks at small scale: a frame encoder, a video Transformer, a BERT-style text Transformer and a
cross-modal Transformer (card section 3), the momentum key copy and the three memory queues.

The query network (:class:`VictorNet`) is trained by gradients. Its key copy follows it by the momentum update
(:func:`momentum_update`, MoCo: ``theta_k <- m theta_k + (1 - m) theta_q``) and fills three FIFO queues
(:class:`MemoryQueue`): frames (per-step features of the fused video), visual (pooled video features) and textual
(pooled text features), read as negatives by the contrastive proxy tasks (:mod:`.tasks`).

Every Transformer is torch's own ``nn.TransformerEncoder`` (pre-norm, GELU); no weights are downloaded. The frame
encoder is a two-layer strided CNN over 32 x 32 RGB frames, or (``frame_features > 0``) a linear projection of
precomputed frame features from a real corpus (:func:`repro.victor.data.load_pairs`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VictorConfig", "VictorNet", "Encoded", "MemoryQueue", "momentum_update", "key_copy"]


@dataclass(frozen=True)
class VictorConfig:
    """Shape of the networks. ``vocab_size`` characters, text ``context`` positions, ``frames`` per video of
    ``frame_size`` x ``frame_size`` RGB pixels (or of ``frame_features`` dimensions when > 0); width ``d_model``
    with ``n_head`` heads and feed-forward ``d_ff``; ``n_text``, ``n_video`` and ``n_cross`` layers; contrastive
    features of ``d_proj`` dimensions. Raises ``ValueError`` naming the field for a size below 1 or ``n_head`` not
    dividing ``d_model``."""

    vocab_size: int
    context: int = 64
    frames: int = 12
    frame_size: int = 32
    frame_features: int = 0
    d_model: int = 64
    n_head: int = 4
    d_ff: int = 256
    n_text: int = 2
    n_video: int = 2
    n_cross: int = 2
    d_proj: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "frames", "frame_size", "d_model", "n_head", "d_ff", "n_text",
                     "n_video", "n_cross", "d_proj"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.frame_features, bool) or not isinstance(self.frame_features, int) or self.frame_features < 0:
            raise ValueError(f"frame_features must be 0 (pixel frames) or a positive integer, got {self.frame_features!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide d_model={self.d_model}")
        if self.frame_size % 8:
            raise ValueError(f"frame_size must be a multiple of 8 (the CNN's strides), got {self.frame_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")


def _transformer(cfg: VictorConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(cfg.d_model), enable_nested_tensor=False)


class FrameEncoder(nn.Module):
    """Per-frame features ``(B, T, d_model)`` of uint8 (or float in [0, 255]) frames ``(B, T, 3, H, W)``: each frame
    less its mean colour, conv 4x4 stride 4, GELU, conv 2x2 stride 2, GELU, the 4 x 4 grid flattened (where an
    object is matters: moving left or right), linear, LayerNorm; or of frame features ``(B, T, D)`` by LayerNorm
    and a linear projection (``frame_features = D``)."""

    def __init__(self, cfg: VictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.frame_features:
            self.net = nn.Sequential(nn.LayerNorm(cfg.frame_features), nn.Linear(cfg.frame_features, cfg.d_model))
        else:
            cells = (cfg.frame_size // 8) ** 2  # the 4 x 4 grid left after strides 4 and 2 (32 x 32 frames)
            self.net = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4), nn.GELU(), nn.Conv2d(32, 64, 2, stride=2),
                                     nn.GELU(), nn.Flatten(), nn.Linear(64 * cells, cfg.d_model),
                                     nn.LayerNorm(cfg.d_model))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        want = (cfg.frames, cfg.frame_features) if cfg.frame_features else (cfg.frames, 3, cfg.frame_size,
                                                                            cfg.frame_size)
        if tuple(frames.shape[1:]) != want:
            raise ValueError(f"frames must have shape (B, {', '.join(map(str, want))}), got {tuple(frames.shape)}")
        B, T = frames.shape[:2]
        if cfg.frame_features:
            return self.net(frames.float())
        x = frames.float().flatten(0, 1) / 127.5  # (B*T, 3, H, W)
        x = x - x.mean((2, 3), keepdim=True)  # each frame less its mean colour: the background's level drops out
        return self.net(x).view(B, T, -1)  # (B, T, d)


@dataclass
class Encoded:
    """The unimodal half of a pass: ``frame_in`` the frame encoder's features ``(B, T, d)`` (before masking),
    ``video`` the video Transformer's output ``(B, T, d)``, ``text`` the text Transformer's ``(B, L, d)``, ``pad``
    the text padding mask ``(B, L)`` (True at ``[PAD]``), ``text_pooled`` and ``video_pooled`` ``(B, d)``: means
    over the real tokens and over the frames."""

    frame_in: torch.Tensor
    video: torch.Tensor
    text: torch.Tensor
    pad: torch.Tensor
    text_pooled: torch.Tensor
    video_pooled: torch.Tensor


class VictorNet(nn.Module):
    """The multimodal network (one copy: the query network, or its momentum key copy).

    :meth:`encode` runs the unimodal encoders; :meth:`fuse` the cross-modal Transformer over ``[text; video]``.
    Heads: ``mlm`` (vocabulary logits per text position), ``msom`` and ``fom`` (6 permutations, both from the fused
    ``[CLS]``, which sees both modalities), ``match`` (one logit, the binary alignment head on the fused ``[CLS]``),
    ``mfm`` (a fused frame to the frame-feature space), ``proj_text`` and ``proj_video`` (pooled features to the
    ``d_proj``-dimensional contrastive space)."""

    def __init__(self, cfg: VictorConfig, pad_id: int = 0) -> None:
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        d = cfg.d_model
        self.frame_encoder = FrameEncoder(cfg)
        self.frame_pos = nn.Parameter(torch.zeros(cfg.frames, d))
        self.frame_mask = nn.Parameter(torch.zeros(d))  # replaces a masked frame's feature
        self.video_encoder = _transformer(cfg, cfg.n_video)
        self.tok = nn.Embedding(cfg.vocab_size, d)
        self.text_pos = nn.Parameter(torch.zeros(cfg.context, d))
        self.text_encoder = _transformer(cfg, cfg.n_text)
        self.modality = nn.Parameter(torch.zeros(2, d))
        self.cross = _transformer(cfg, cfg.n_cross)
        self.mlm = nn.Linear(d, cfg.vocab_size)
        self.msom = nn.Linear(d, 6)
        self.fom = nn.Linear(d, 6)
        self.match = nn.Linear(d, 1)
        self.mfm = nn.Linear(d, d)
        self.proj_text = nn.Linear(d, cfg.d_proj)
        self.proj_video = nn.Linear(d, cfg.d_proj)
        for p in (self.frame_pos, self.text_pos, self.modality):
            nn.init.normal_(p, std=0.02)

    def encode(self, frames: torch.Tensor, ids: torch.Tensor, frame_mask: torch.Tensor | None = None) -> Encoded:
        """Unimodal features of ``frames`` ``(B, T, 3, H, W)`` (or ``(B, T, D)``) and token ``ids`` ``(B, L)``;
        frames where ``frame_mask`` ``(B, T)`` is True enter the video Transformer as the mask embedding.
        Raises ``ValueError`` naming ``frames`` or ``ids`` for a wrong shape."""
        if ids.dim() != 2 or ids.shape[1] > self.cfg.context:
            raise ValueError(f"ids must have shape (B, L <= context={self.cfg.context}), got {tuple(ids.shape)}")
        if ids.shape[0] != frames.shape[0]:
            raise ValueError(f"frames and ids must hold the same batch, got {frames.shape[0]} and {ids.shape[0]}")
        frame_in = self.frame_encoder(frames)  # (B, T, d)
        x = frame_in
        if frame_mask is not None:
            x = torch.where(frame_mask[..., None], self.frame_mask.expand_as(x), x)
        video = self.video_encoder(x + self.frame_pos)  # (B, T, d)
        pad = ids == self.pad_id  # (B, L)
        L = ids.shape[1]
        text = self.text_encoder(self.tok(ids) + self.text_pos[:L], src_key_padding_mask=pad)  # (B, L, d)
        keep = (~pad).float()[..., None]
        text_pooled = (text * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return Encoded(frame_in, video, text, pad, text_pooled, video.mean(1))

    def fuse(self, text: torch.Tensor, video: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-modal Transformer over ``[text (B, L, d); video (B, T, d)]`` with modality embeddings;
        returns the fused text ``(B, L, d)`` and video ``(B, T, d)`` positions."""
        L = text.shape[1]
        x = torch.cat([text + self.modality[0], video + self.modality[1]], 1)  # (B, L + T, d)
        mask = torch.cat([pad, torch.zeros(video.shape[:2], dtype=torch.bool, device=pad.device)], 1)
        y = self.cross(x, src_key_padding_mask=mask)
        return y[:, :L], y[:, L:]

    def embed(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm contrastive features ``(B, d_proj)`` of the pooled text and video of ``enc``."""
        return F.normalize(self.proj_text(enc.text_pooled), dim=-1), F.normalize(self.proj_video(enc.video_pooled),
                                                                                   dim=-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def key_copy(query: nn.Module) -> nn.Module:
    """The key network: a copy of ``query`` that takes no gradients (updated only by :func:`momentum_update`)."""
    key = copy.deepcopy(query)
    for p in key.parameters():
        p.requires_grad_(False)
    return key


@torch.no_grad()
def momentum_update(query: nn.Module, key: nn.Module, m: float) -> None:
    """The momentum (MoCo) update of the key network, in place: ``theta_k <- m theta_k + (1 - m) theta_q`` for
    every parameter. ``m = 0`` copies the query network; ``m = 1`` freezes the key. Raises ``ValueError`` naming
    ``m`` outside [0, 1]."""
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"m (momentum) must lie in [0, 1], got {m!r}")
    for pk, pq in zip(key.parameters(), query.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


class MemoryQueue:
    """A FIFO memory queue of ``size`` key features of ``dim`` dimensions (MoCo's dictionary), each tagged with the
    id of the pair it came from.

    :meth:`enqueue` writes a batch of keys (and their pair ids) over the oldest entries; :meth:`negatives` gives the
    entries held so far (up to ``size``; a new queue holds nothing, rather than random vectors) less those of the
    pairs given, so a pair's own key from an earlier visit (a previous epoch) never serves as its negative. The proxy
    tasks read the queue before the current batch's keys are enqueued, and exclude the batch's pairs: the queue never
    holds the current batch's positives. Raises ``ValueError`` naming ``size`` or ``dim`` below 1, and ``keys`` for
    a batch larger than the queue or of another width."""

    def __init__(self, size: int, dim: int, device: str | torch.device = "cpu") -> None:
        for name, v in (("size", size), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.size, self.dim = size, dim
        self.buffer = torch.zeros(size, dim, device=device)
        self.ids = torch.full((size,), -1, dtype=torch.long, device=device)
        self.ptr, self.count = 0, 0  # next row to write; entries held

    @property
    def keys(self) -> torch.Tensor:
        """A copy of the entries held, ``(min(count, size), dim)``, in buffer order (not age order); a copy, so that
        enqueueing after a loss has read the queue does not disturb that loss's gradient."""
        return self.buffer[:self.count].clone()

    def negatives(self, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """A copy of the entries held ``(n, dim)``, less those whose pair id is in ``exclude`` (the current batch's
        pair ids; ``None``: all entries)."""
        keys = self.buffer[:self.count]
        if exclude is None:
            return keys.clone()
        return keys[~torch.isin(self.ids[:self.count], exclude.to(self.ids.device))].clone()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Write ``keys`` ``(n, dim)`` (n <= size) and their pair ``ids`` ``(n,)`` (default -1: unknown) over the
        oldest entries, wrapping around."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (n, {self.dim}), got {tuple(keys.shape)}")
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(f"keys: a batch of {n} is larger than the queue (size={self.size})")
        if ids is not None and tuple(ids.shape) != (n,):
            raise ValueError(f"ids must have shape ({n},), one per key, got {tuple(ids.shape)}")
        idx = (self.ptr + torch.arange(n, device=self.buffer.device)) % self.size
        self.buffer[idx] = keys.detach().to(self.buffer.dtype)
        self.ids[idx] = -1 if ids is None else ids.to(self.ids.device)
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.size, self.count + n)
