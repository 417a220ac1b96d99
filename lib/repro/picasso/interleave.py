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

:func:`run_micro_batches` is that schedule: the forward and backward passes of one step's micro-batches,
sequential or interleaved. The step around it (zero the gradients, split the batch, run the schedule,
one optimizer update) is :func:`~repro.picasso.training.train_step`, with the training loop.

Layer: depends on :mod:`.data`, :mod:`.embedding` and :mod:`.models`; :mod:`.training` builds on it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .data import Batch
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
class Timeline:
    """Per-micro-batch stage records of one step: dicts ``{micro_batch, stage, thread, start, end}``, times in
    seconds from the step's start (``t0``, ``time.perf_counter``). ``sync``: on CUDA, synchronise around each
    stage so times are execution, not enqueue, times."""

    t0: float = field(default_factory=time.perf_counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    sync: bool = False  # on CUDA: synchronise around stages so times are execution, not enqueue, times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def span(self, mb: int, stage: str, device: torch.device):
        """Context manager that records one event: stage ``stage`` of micro-batch ``mb`` on this thread."""
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


def stage_span(tl: Timeline | None, mb: int, stage: str, device: torch.device):
    """``tl.span(mb, stage, device)``, or a context that records nothing when ``tl`` is ``None``."""
    return tl.span(mb, stage, device) if tl is not None else _NoSpan()


def bce_sum(logits: torch.Tensor, labels: torch.Tensor, total: int) -> torch.Tensor:
    """Micro-batch share of the mean binary cross-entropy of the whole batch: ``sum_b BCE_b / total``.

    ``logits``, ``labels`` ``[B_i]`` (the micro-batch), ``total`` = ``B`` (the whole batch); returns a scalar.
    Summed over the micro-batches it is the whole batch's mean loss, so their gradients add up to its."""
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
        """Move each parameter's sparse ``.grad`` (after one micro-batch's backward) into the parts."""
        for i, p in enumerate(self.params):
            if p.grad is not None and p.grad.is_sparse:
                self.parts.setdefault(i, []).append(p.grad)
                p.grad = None

    def join(self) -> None:
        """Leave each parameter's ``.grad`` = its parts concatenated (``nnz = sum of the parts' nnz``)."""
        for i, gs in self.parts.items():
            p = self.params[i]
            if p.grad is not None:
                gs.append(p.grad)
            p.grad = gs[0] if len(gs) == 1 else torch.sparse_coo_tensor(
                torch.cat([g._indices() for g in gs], 1), torch.cat([g._values() for g in gs]), p.shape,
                is_coalesced=False, check_invariants=False)
        self.parts = {}


def run_micro_batches(model: RecModel, mbs: list[Batch], total: int, *, interleave: bool = False,
                      timeline: Timeline | None = None, sparse: SparseGradParts | None = None) -> list[torch.Tensor]:
    """Forward and backward passes of one step's micro-batches ``mbs`` (PICASSO §IV "Interleaving", card
    claim P-3), accumulating gradients; no optimizer step. Returns each micro-batch's loss share (detached
    scalars, :func:`bce_sum` over ``total`` samples: they sum to the whole batch's mean loss).

    ``interleave`` runs the embedding forward of micro-batch ``i + 1`` on a worker thread (on CUDA: a side
    stream) while the dense stage of micro-batch ``i`` runs; ``sparse`` collects the sparse embedding
    gradients per micro-batch. Re-raises whatever a micro-batch raises (a stage's
    :class:`~repro.picasso.data.BatchError` for an out-of-range ID) after any in-flight embedding finished,
    leaving the gradients of the micro-batches already run for the caller to drop.
    """
    device = mbs[0].ids.device
    side = torch.cuda.Stream(device) if (device.type == "cuda" and interleave) else None

    def embed(i: int) -> tuple[Pooled, Any]:  # the embedding stage (worker thread when interleaved)
        with stage_span(timeline, i, "embedding", device):
            if side is not None:
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    pooled = model.embed(mbs[i])
                    ev = torch.cuda.Event()
                    ev.record(side)
                return pooled, ev
            return model.embed(mbs[i]), None

    def consume(i: int, pooled: Pooled, ev: Any) -> torch.Tensor:  # the dense stage, then embedding backward
        if ev is not None:
            torch.cuda.current_stream(device).wait_event(ev)
            for t in pooled.tensors():
                t.record_stream(torch.cuda.current_stream(device))
        with stage_span(timeline, i, "dense", device):
            # cut the graph at the pooled embeddings: G x (B_i, F_g, d_g) and (B_i,) become leaves
            leaves = [t.detach().requires_grad_() for t in pooled.tensors()]
            loss = bce_sum(model.head(Pooled.from_tensors(leaves), mbs[i].dense), mbs[i].labels, total)
            loss.backward()
        with stage_span(timeline, i, "embedding_backward", device):
            # push the leaves' gradients through the embedding stage (into its tables' sparse grads)
            outs = [(t, x.grad) for t, x in zip(pooled.tensors(), leaves, strict=True)
                    if t.requires_grad and x.grad is not None]
            if outs:
                torch.autograd.backward([t for t, _ in outs], [g for _, g in outs])
            if sparse is not None:
                sparse.take()
        return loss.detach()

    m = len(mbs)
    losses = []
    fut = None
    try:
        if interleave and m > 1:
            # Interleaving (PICASSO §IV): embed(i + 1) on the worker overlaps consume(i) on the main
            # thread, so m micro-batches take about  E + (m - 1) * max(E, D) + D  instead of  m * (E + D)
            # (E, D: one micro-batch's embedding and dense times), given hardware to run both at once.
            ex = _executor()
            fut = ex.submit(embed, 0)
            for i in range(m):
                pooled, ev = fut.result()
                if i + 1 < m:
                    fut = ex.submit(embed, i + 1)  # micro-batch i + 1's lookups start ...
                losses.append(consume(i, pooled, ev))  # ... while micro-batch i's dense stage runs
        else:
            for i in range(m):
                losses.append(consume(i, *embed(i)))
    except BaseException:
        if fut is not None:  # let an in-flight embedding finish before the caller drops what it recorded
            wait([fut])
        raise
    return losses
