"""Interleaving (PICASSO §IV "Interleaving"): micro-batches whose embedding and dense stages overlap.

A training step splits its batch into ``m`` micro-batches. Without interleaving each micro-batch runs
embedding forward -> dense forward/backward -> embedding backward in turn. With interleaving the embedding
forward of micro-batch ``i + 1`` runs on a worker while the dense stage of micro-batch ``i`` runs on the
main thread, so memory-bound lookups (and any slow-tier fetches) hide behind compute-bound MLPs:

* CPU: a worker thread (PyTorch operators release the GIL, so both threads make progress);
* CUDA: the same worker thread issues its kernels on a side CUDA stream, and the main stream waits on an
  event before it consumes the pooled embeddings - the same code path, chosen by the device.

The loss of micro-batch ``i`` is ``sum_b BCE_b / B`` (``B`` = the whole batch), so gradients accumulated
over micro-batches equal the whole batch's mean-loss gradient, and one optimizer step follows. Sparse
embedding gradients are accumulated as a list of micro-batch parts joined once before the update (one
concatenation, left uncoalesced), not by autograd's sparse ``+=``, which rebuilds the sum at every
micro-batch and cost about 25x a concatenation here (HybridBackend's ``PipelinedOptimizer`` accumulates
micro-batch gradients before one update likewise).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .data import Batch, split_batch
from .embedding import Pooled
from .models import RecModel

_EXECUTOR: ThreadPoolExecutor | None = None
_EXEC_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXEC_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picasso-embedding")
        return _EXECUTOR


@dataclass
class Optimizers:
    """Embedding optimizer (sparse SGD, cached SGD, or none when fused into backward) + dense optimizer."""

    emb: Any
    dense: torch.optim.Optimizer

    def zero_grad(self) -> None:
        if self.emb is not None:
            self.emb.zero_grad(set_to_none=True)
        self.dense.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.emb is not None:
            self.emb.step()
        self.dense.step()

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers' states (Adam's moments, learning rates), for resuming training exactly."""
        return {"emb": None if self.emb is None else self.emb.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["emb"] is None) != (self.emb is None):
            raise ValueError("optimizer state: the saved and the current embedding optimizer differ "
                             f"(saved {'none' if state['emb'] is None else 'one'}, "
                             f"current {'none' if self.emb is None else 'one'})")
        if self.emb is not None:
            self.emb.load_state_dict(state["emb"])
        self.dense.load_state_dict(state["dense"])


@dataclass
class Timeline:
    """Per-micro-batch stage records: ``(micro_batch, stage, thread, start_s, end_s)`` from the step start."""

    t0: float = field(default_factory=time.perf_counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    sync: bool = False  # on CUDA: synchronise around stages so times are execution, not enqueue, times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def span(self, mb: int, stage: str, device: torch.device):
        tl = self

        class _Span:
            def __enter__(self):
                if tl.sync and device.type == "cuda":
                    torch.cuda.synchronize(device)
                self.s = time.perf_counter() - tl.t0

            def __exit__(self, *exc):
                if tl.sync and device.type == "cuda":
                    torch.cuda.synchronize(device)
                e = time.perf_counter() - tl.t0
                with tl._lock:
                    tl.events.append({"micro_batch": mb, "stage": stage, "thread": threading.current_thread().name,
                                      "start": self.s, "end": e})
                return False

        return _Span()


class _NoSpan:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _span(tl: Timeline | None, mb: int, stage: str, device: torch.device):
    return tl.span(mb, stage, device) if tl is not None else _NoSpan()


def bce_sum(logits: torch.Tensor, labels: torch.Tensor, total: int) -> torch.Tensor:
    """Micro-batch share of the mean binary cross-entropy of the whole batch: ``sum BCE / B``."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / total


class SparseGradParts:
    """Per-step accumulation of sparse gradients over micro-batches: :meth:`take` moves each parameter's
    sparse ``.grad`` into a list after a micro-batch's backward; :meth:`join` leaves ``.grad`` = all parts
    concatenated (indices and values; duplicates are summed by whoever consumes it, as for any uncoalesced
    sparse tensor), so the optimizer sees exactly the whole batch's gradient."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.parts: dict[int, list[torch.Tensor]] = {}

    def take(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is not None and p.grad.is_sparse:
                self.parts.setdefault(i, []).append(p.grad)
                p.grad = None

    def join(self) -> None:
        for i, gs in self.parts.items():
            p = self.params[i]
            if p.grad is not None:
                gs.append(p.grad)
            p.grad = gs[0] if len(gs) == 1 else torch.sparse_coo_tensor(
                torch.cat([g._indices() for g in gs], 1), torch.cat([g._values() for g in gs]), p.shape,
                is_coalesced=False, check_invariants=False)
        self.parts = {}


def train_step(model: RecModel, opt: Optimizers, batch: Batch, *, micro_batches: int = 1,
               interleave: bool = False, timeline: Timeline | None = None) -> float:
    """One training step (forward, backward, optimizer) over ``batch``; returns the batch's mean loss.

    ``micro_batches`` > 1 accumulates gradients over consecutive micro-batches; ``interleave`` runs the
    embedding forward of micro-batch ``i + 1`` concurrently with the dense stage of micro-batch ``i``.
    Every embedding stage refuses IDs outside their field's vocabulary (a ``ValueError`` naming the field,
    the ID and the range); a step that fails in any micro-batch drops its partial gradients and updates
    nothing.
    """
    device = batch.ids.device
    cuda = device.type == "cuda"
    opt.zero_grad()
    mbs = split_batch(batch, micro_batches)
    B = batch.batch_size
    side = torch.cuda.Stream(device) if (cuda and interleave) else None
    sparse = SparseGradParts(model.emb.sparse_parameters()) if micro_batches > 1 else None

    def embed(i: int) -> tuple[Pooled, Any]:
        with _span(timeline, i, "embedding", device):
            if side is not None:
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    pooled = model.embed(mbs[i])
                    ev = torch.cuda.Event()
                    ev.record(side)
                return pooled, ev
            return model.embed(mbs[i]), None

    def consume(i: int, pooled: Pooled, ev: Any) -> torch.Tensor:
        if ev is not None:
            torch.cuda.current_stream(device).wait_event(ev)
            for t in pooled.tensors():
                t.record_stream(torch.cuda.current_stream(device))
        with _span(timeline, i, "dense", device):
            leaves = [t.detach().requires_grad_() for t in pooled.tensors()]
            loss = bce_sum(model.head(Pooled.from_tensors(leaves), mbs[i].dense), mbs[i].labels, B)
            loss.backward()
        with _span(timeline, i, "embedding_backward", device):
            outs = [(t, x.grad) for t, x in zip(pooled.tensors(), leaves, strict=True)
                    if t.requires_grad and x.grad is not None]
            if outs:
                torch.autograd.backward([t for t, _ in outs], [g for _, g in outs])
            if sparse is not None:
                sparse.take()
        return loss.detach()

    losses = []
    fut = None
    try:
        if interleave and micro_batches > 1:
            ex = _executor()
            fut = ex.submit(embed, 0)
            for i in range(micro_batches):
                pooled, ev = fut.result()
                if i + 1 < micro_batches:
                    fut = ex.submit(embed, i + 1)
                losses.append(consume(i, pooled, ev))
        else:
            for i in range(micro_batches):
                losses.append(consume(i, *embed(i)))
    except BaseException:
        if fut is not None:  # let an in-flight embedding finish before dropping what it recorded
            wait([fut])
        opt.zero_grad()  # no partial step: earlier micro-batches' gradients (and a cache's working sets) go
        raise
    with _span(timeline, micro_batches - 1, "optimizer", device):
        if sparse is not None:
            sparse.join()
        opt.step()
    return float(torch.stack(losses).sum())


def record_timeline(model: RecModel, opt: Optimizers, batch: Batch, *, micro_batches: int = 4,
                    interleave: bool = True, sync: bool = False) -> list[dict[str, Any]]:
    """Run one step and return its stage timeline (one record per micro-batch and stage, with thread
    names and start/end seconds), for plotting the overlap interleaving buys."""
    tl = Timeline(sync=sync)
    train_step(model, opt, batch, micro_batches=micro_batches, interleave=interleave, timeline=tl)
    return sorted(tl.events, key=lambda e: e["start"])
