"""A small decoder-only Transformer language model, in the mould of nanoGPT (Karpathy) and GPT-2.

Shared by the language-model notebooks (DDK distillation, D-CPT scaling grids, the M6-T dense baseline).

* learned token and position embeddings, pre-LayerNorm blocks, a final LayerNorm;
* causal self-attention with one fused ``qkv`` Linear and ``F.scaled_dot_product_attention(is_causal=True)``;
* a GELU MLP of width ``d_ff`` (``4 * d_model`` unless given);
* the output projection tied to the token embedding (``lm_head.weight is wte.weight``);
* GPT-2 initialisation: N(0, 0.02) for weights, zero biases, and the residual output projections scaled
  by ``1 / sqrt(2 * n_layer)`` (Radford et al. 2019, section 2.3).

Parameter counts follow the scaling-law convention (Kaplan et al. 2020, section 2.1): ``N`` excludes the
token and position embeddings; ``total`` includes them (the tied output head adds nothing).
:func:`param_count` gives both in closed form, :meth:`GPT.num_params` counts the module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import is_int

__all__ = ["GPTConfig", "GPT", "ParamCount", "param_count", "flops_per_token", "linear_cross_entropy"]


@dataclass
class GPTConfig:
    """Shape of a :class:`GPT`.

    ``vocab_size`` tokens, ``context`` positions, ``n_layer`` blocks of ``n_head`` heads over width
    ``d_model``; MLP width ``d_ff`` (default ``4 * d_model``); ``dropout`` on attention weights and
    residual branches; ``bias`` adds biases to Linear and LayerNorm layers (GPT-2 has them).

    Raises ``ValueError`` naming the field when a size is not a positive ``int``, ``d_model`` is not a
    multiple of ``n_head``, ``dropout`` is outside ``[0, 1)`` or ``bias`` is not a ``bool``.
    """

    vocab_size: int
    context: int
    n_layer: int
    n_head: int
    d_model: int
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if is_int(self.d_model, numpy=False) else self.d_model
        for name in ("vocab_size", "context", "n_layer", "n_head", "d_model", "d_ff"):
            v = getattr(self, name)
            if not is_int(v, numpy=False) or v <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"GPTConfig.n_head={self.n_head} must divide d_model={self.d_model} (head width d_model / n_head)"
            )
        if not isinstance(self.dropout, int | float) or isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig.dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"GPTConfig.bias must be True or False, got {self.bias!r}")

    def to_dict(self) -> dict:
        """The fields as a plain ``dict`` (JSON-ready: every field is an ``int``, ``float`` or ``bool``)."""
        return asdict(self)


class ParamCount(NamedTuple):
    """``non_embedding``: N of the scaling laws (no token or position embeddings); ``total``: every parameter."""

    non_embedding: int
    total: int


def param_count(cfg: GPTConfig) -> ParamCount:
    """Closed-form parameter count of ``GPT(cfg)``.

    Per block (``d = d_model``, ``f = d_ff``, ``b = 1`` with biases else 0)::

        attention   qkv: 3 d^2 + 3 b d     out: d^2 + b d
        MLP         fc:  d f + b f         proj: f d + b d
        2 LayerNorm 2 (d + b d)

    so ``12 d^2 + 13 b d`` plus ``2 d f`` for the usual ``f = 4 d``: ``N ~ 12 n_layer d^2`` (Kaplan et al. 2020,
    Table 1). Add the final LayerNorm ``d + b d``. ``total = N + vocab_size d + context d`` (tied output head).
    """
    d, f, b = cfg.d_model, cfg.d_ff, int(cfg.bias)
    block = (3 * d * d + 3 * b * d) + (d * d + b * d) + (d * f + b * f) + (f * d + b * d) + 2 * (d + b * d)
    n = cfg.n_layer * block + (d + b * d)
    return ParamCount(non_embedding=n, total=n + cfg.vocab_size * d + cfg.context * d)


def flops_per_token(cfg: GPTConfig, *, lm_head: bool = False) -> int:
    """Training FLOPs per token (forward + backward), Kaplan et al. (2020) eq. 2.1 / nanoGPT style.

    ``C = 6 N + 6 n_layer context d_model``: a forward pass costs ``2 N`` multiply-adds-as-2-FLOPs for the
    weights plus ``2 n_layer context d_model`` for attention (``QK^T`` and ``AV`` over a causal mask, which
    touches half of the ``context x context`` scores: ``2 * 2 * context * d / 2``), and the backward pass
    twice the forward. ``N`` excludes the embeddings, the convention the scaling laws use.

    With ``lm_head=True`` the output projection's matmul, ``6 vocab_size d_model``, is added: the scaling-law
    convention leaves it out, but at small widths it is a large share of the arithmetic a machine does, so
    benchmarks of hardware utilisation count it.
    """
    n = param_count(cfg).non_embedding
    c = 6 * n + 6 * cfg.n_layer * cfg.context * cfg.d_model
    if lm_head:
        c += 6 * cfg.vocab_size * cfg.d_model
    return c


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h W^T`` against ``targets``, computed ``chunk`` rows at a time.

    The forward pass of each chunk also forms its gradient, ``dL/dlogits = (softmax(logits) - onehot) / n``,
    and folds it into ``dL/dh = G W`` and ``dL/dW = G^T h``; backward only scales them by the incoming
    gradient. The ``[N, vocab]`` logits never exist whole: a chunk of them stays in cache, which on a CPU
    saves the memory-bound log-softmax passes and large allocations (Liger-Kernel's fused linear
    cross-entropy does the same on GPUs).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk: int, need: bool) -> torch.Tensor:
        valid = targets != -1
        n = valid.sum().clamp(min=1)
        with torch.autocast(h.device.type, enabled=False):  # logits and their softmax in float32
            h32, w32 = h.float(), w.float()
            total = torch.zeros((), device=h.device)
            grad_h = torch.empty_like(h32) if need else None
            grad_w = torch.zeros_like(w32) if need else None
            for i in range(0, h.shape[0], chunk):
                hc, vc = h32[i:i + chunk], valid[i:i + chunk]
                tc = targets[i:i + chunk].clamp(min=0)[:, None]
                logits = hc @ w32.t()
                picked = logits.gather(1, tc).squeeze(1)
                mx = logits.amax(dim=1, keepdim=True)
                e = logits.sub_(mx).exp_()  # in place: exp(logits - max), one pass each
                sum_e = e.sum(dim=1)
                lse = mx.squeeze(1) + sum_e.log()  # log-sum-exp
                total += ((lse - picked) * vc).sum()
                if need:
                    weight = vc / n  # each valid row's share of the mean
                    g = e.mul_((weight / sum_e)[:, None])  # softmax, weighted
                    g.scatter_add_(1, tc, -weight[:, None].to(g.dtype))  # minus the one-hot target
                    grad_h[i:i + chunk] = g @ w32
                    grad_w.addmm_(g.t(), hc)
        if need:
            ctx.save_for_backward(grad_h.to(h.dtype), grad_w.to(w.dtype))
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None


def linear_cross_entropy(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk: int | None = None
                         ) -> torch.Tensor:
    """``F.cross_entropy(h @ w.T, targets, ignore_index=-1)`` without materialising the logits.

    ``h`` ``[N, d]``, ``w`` ``[vocab, d]``, ``targets`` ``[N]``. ``chunk`` rows at a time (default: about
    2M logits, 8 MB, per chunk). Gives the same loss and gradients as the plain expression (up to float
    round-off; tests check it) at less memory and, on CPUs, less time.
    """
    if chunk is None:
        chunk = max(16, (1 << 21) // w.shape[0])
    # (grad mode is off inside Function.forward, so whether gradients are wanted is decided here)
    need = torch.is_grad_enabled() and (h.requires_grad or w.requires_grad)
    return _LinearCrossEntropy.apply(h, w, targets, chunk, need)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, ``softmax(Q K^T / sqrt(d_head) + M) V`` (Vaswani et al. 2017, eq. 1).

    One fused Linear makes Q, K and V; the softmax, mask and product run in
    ``F.scaled_dot_product_attention(is_causal=True)`` (a flash-attention kernel where the backend has one).
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, d_model]`` -> ``[B, T, d_model]``: position ``t`` attends to positions ``<= t``."""
        B, T, C = x.shape  # C = d_model = n_head * hs
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4).unbind(0)
        # q, k, v: (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): the heads side by side
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network ``W_2 GELU(W_1 x)`` (GPT-2)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., d_model]`` -> ``[..., d_model]`` through the hidden width ``d_ff``."""
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (..., d_ff) inside


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, d_model]`` -> ``[B, T, d_model]`` (both residual branches added)."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only Transformer LM: ``logits = LN(blocks(wte[idx] + wpe[pos])) wte^T`` (GPT-2, Radford et al. 2019).

    Raises ``TypeError`` when ``cfg`` is not a :class:`GPTConfig`.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, GPTConfig):
            raise TypeError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embeddings (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual-branch outputs, GPT-2's 1/sqrt(2 n_layer) scaling
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters of the module (each tied tensor once); ``non_embedding`` drops ``wte`` and ``wpe`` (N)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm hidden states ``[B, T, d_model]`` for token ids ``idx`` ``[B, T]``.

        Raises ``ValueError`` when ``idx`` is not 2-D or ``T`` exceeds ``cfg.context``.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be a [batch, time] tensor of token ids, got shape {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.cfg.context:
            raise ValueError(f"idx has {T} positions, more than the model's context={self.cfg.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, d_model): token + position embeddings
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_logits: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits ``[B, T, vocab]`` and, given ``targets`` ``[B, T]``, the mean next-token cross-entropy.

        Targets equal to ``-1`` are ignored (left out of the mean). With targets and ``return_logits=False``
        the logits are returned as ``None`` and the loss comes from :func:`linear_cross_entropy`, which never
        holds all logits at once (the training loop and evaluation use this; the loss is the same).
        Loss in nats per token. Raises ``ValueError`` as :meth:`hidden` does.
        """
        if targets is not None and not return_logits:
            h = self.hidden(idx)
            return None, linear_cross_entropy(h.reshape(-1, h.size(-1)), self.lm_head.weight, targets.reshape(-1))
        logits = self.lm_head(self.hidden(idx))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def per_token_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each target token, ``-log p(targets[b, t] | idx[b, :t+1])``, shape ``[B, T]``.

        Used for per-domain evaluation and for distillation; positions with target ``-1`` give 0. Loss in
        nats. Raises ``ValueError`` when ``targets`` and ``idx`` differ in shape.
        """
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {tuple(targets.shape)} must equal idx shape {tuple(idx.shape)}")
        logits = self.lm_head(self.hidden(idx))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-1, reduction="none").view(targets.shape)
