"""Peers from TorchRec / FBGEMM, wrapped as embedding stages over the same tables and batches.

* :class:`TorchRecEBCStage` - TorchRec's ``EmbeddingBagCollection`` (one table per field; unsharded it runs
  one ``nn.EmbeddingBag`` per table, here with sparse gradients like the baseline) for the deep part and a
  second one of 1-wide tables for the wide part; fed a ``KeyedJaggedTensor`` built from the batch.
* :class:`FBGEMMTBEStage` - FBGEMM's fused table-batched embedding (``SplitTableBatchedEmbeddingBagsCodegen``,
  host/CPU placement) with its optimizer (exact SGD) fused into backward, as TorchRec's sharded "fused"
  kernel uses; deep and wide tables are two TBE modules (the wide one 4 wide, as TBE needs ``d % 4 == 0``;
only its column 0 is used, the others stay zero).

Both need ``torchrec`` / ``fbgemm_gpu`` (``fbgemm-gpu-cpu==1.8.0`` with torch 2.13); :func:`available`
says whether they import. The core of the workbook never needs them. Both are peers of PICASSO §IV's
packing (card §7): TorchRec's unsharded EBC is the per-table execution, FBGEMM's TBE a K-packed kernel.

Layer: depends on :mod:`.data` and :mod:`.embedding`.
"""

from __future__ import annotations

import logging

import torch

from .data import Batch, Schema
from .embedding import EmbeddingStage, Pooled, init_field_tables


class _DropFxTracingNotice(logging.Filter):
    """Drops torch's one-time ``is_fx_tracing will return true for both fx.symbolic_trace and torch.export``
    notice (logger ``torch.fx._symbolic_trace``; every other record passes).

    Every ``KeyedJaggedTensor`` TorchRec builds goes through ``torch.fx``'s ``ProxyableClassMeta.__call__``,
    which calls the deprecated ``torch.fx._symbolic_trace.is_fx_tracing()``; its first call in a process logs
    that notice as a warning (``W... torch/fx/_symbolic_trace.py:56] is_fx_tracing will ...``), printed into
    whatever output is current (a notebook's cell). It concerns TorchRec's call, not this workbook, and says
    nothing about the run; the call is in TorchRec, so the notice is stopped here, on the way out of the
    logger that emits it, when the TorchRec peer is built."""

    NOTICE = "is_fx_tracing will return true for both fx.symbolic_trace and torch.export"

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICE)


def _quiet_fx_tracing_notice() -> None:
    """Install :class:`_DropFxTracingNotice` on ``torch.fx._symbolic_trace``'s logger (once)."""
    logger = logging.getLogger("torch.fx._symbolic_trace")
    if not any(isinstance(f, _DropFxTracingNotice) for f in logger.filters):
        logger.addFilter(_DropFxTracingNotice())


def available() -> dict[str, bool]:
    """Which peers import: ``{"torchrec": bool, "fbgemm": bool}`` (any import failure counts as absent)."""
    out = {}
    try:
        import torchrec  # noqa: F401

        out["torchrec"] = True
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        out["torchrec"] = False
    try:
        import fbgemm_gpu  # noqa: F401

        out["fbgemm"] = True
    except Exception:  # noqa: BLE001
        out["fbgemm"] = False
    return out


class _TableOrderStage(EmbeddingStage):
    """Output ``[B, sum d_f]`` in field order -> :class:`Pooled` groups ``[B, F_g, d_g]`` (one column gather
    per group)."""

    def _setup_columns(self, device) -> None:
        starts = [0]
        for d in self.schema.dims:
            starts.append(starts[-1] + d)
        self.col_idx = [torch.cat([torch.arange(starts[f], starts[f] + self.schema.dims[f]) for f in fs]).to(device)
                        for fs in self.group_fields]
        self.vocab_hi = self.vocab_hi.to(device)  # the bounds check's per-field bounds

    def _groups(self, values: torch.Tensor) -> list[torch.Tensor]:
        B = values.shape[0]
        return [values.index_select(1, c).view(B, len(fs), d)
                for c, fs, d in zip(self.col_idx, self.group_fields, self.group_dims, strict=True)]


class TorchRecEBCStage(_TableOrderStage):
    """TorchRec's ``EmbeddingBagCollection``, unsharded and unfused (one ``nn.EmbeddingBag`` per table: the
    per-field execution of PICASSO §II, as a peer), deep ``[V_f, d_f]`` and wide ``[V_f, 1]`` tables from
    ``tables`` (or :func:`~repro.picasso.embedding.init_field_tables` of ``seed``). Raises ``ImportError``
    without ``torchrec``; ``forward`` raises :class:`~repro.picasso.data.BatchError` for an ID outside its
    field's vocabulary."""

    kind = "torchrec_ebc"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", tables=None) -> None:
        super().__init__(schema)
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

        _quiet_fx_tracing_notice()  # every KeyedJaggedTensor of forward() would print it once

        deep, wide = tables or init_field_tables(schema, seed)
        dev = torch.device(device)
        self.keys = [f"f{f}" for f in range(schema.n_fields)]

        def ebc(dims):
            cfg = [EmbeddingBagConfig(name=f"t{f}", embedding_dim=d, num_embeddings=v, feature_names=[self.keys[f]])
                   for f, (v, d) in enumerate(zip(schema.vocab, dims, strict=True))]
            return EmbeddingBagCollection(tables=cfg, device=dev)

        self.ebc, self.wide_ebc = ebc(schema.dims), ebc([1] * schema.n_fields)
        with torch.no_grad():
            for f in range(schema.n_fields):
                for coll, w in ((self.ebc, deep[f]), (self.wide_ebc, wide[f])):
                    m = coll.embedding_bags[f"t{f}"]
                    m.weight.copy_(w)
                    m.sparse = True  # sparse gradients, like the baseline (fair optimizer cost)
        self._setup_columns(dev)

    def forward(self, batch: Batch) -> Pooled:
        """Build a ``KeyedJaggedTensor`` from the batch (``values`` ``[N]``, ``lengths`` ``[F * B]``) and run
        both collections: deep ``[B, sum d_f]`` -> groups, wide ``[B, F]`` summed to ``[B]``."""
        from torchrec import KeyedJaggedTensor

        self.check_ids(batch)  # unchecked, EBC raises a RuntimeError that names no field
        kjt = KeyedJaggedTensor(keys=self.keys, values=batch.ids, lengths=batch.lengths.reshape(-1))
        deep = self.ebc(kjt).values()
        wide = self.wide_ebc(kjt).values().sum(1)
        return Pooled(self._groups(deep), wide)

    def _tables(self, coll):
        return [coll.embedding_bags[f"t{f}"].weight for f in range(self.schema.n_fields)]

    def field_tables(self):
        return self._tables(self.ebc), self._tables(self.wide_ebc)

    def field_grads(self):
        def g(p):
            return torch.zeros_like(p) if p.grad is None else p.grad.to_dense()

        return [g(p) for p in self._tables(self.ebc)], [g(p) for p in self._tables(self.wide_ebc)]


class FBGEMMTBEStage(_TableOrderStage):
    """FBGEMM's fused table-batched embedding (TBE: all tables in one buffer, one lookup-and-pool kernel,
    exact SGD with learning rate ``lr`` fused into backward: a K-packing peer, PICASSO §IV / card §7). The
    wide tables are 4 wide (TBE needs ``d % 4 == 0``), only column 0 used. Raises ``ImportError`` without
    ``fbgemm_gpu``; ``forward`` raises :class:`~repro.picasso.data.BatchError` for an ID outside its field's
    vocabulary."""

    kind = "fbgemm_tbe"
    fused_optimizer = True

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", tables=None,
                 lr: float = 0.05) -> None:
        super().__init__(schema)
        from fbgemm_gpu.split_embedding_configs import EmbOptimType
        from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
            ComputeDevice,
            SplitTableBatchedEmbeddingBagsCodegen,
        )

        deep, wide = tables or init_field_tables(schema, seed)
        dev = torch.device(device)
        loc, cd = ((EmbeddingLocation.DEVICE, ComputeDevice.CUDA) if dev.type == "cuda"
                   else (EmbeddingLocation.HOST, ComputeDevice.CPU))

        def tbe(dims):
            return SplitTableBatchedEmbeddingBagsCodegen(
                [(v, d, loc, cd) for v, d in zip(schema.vocab, dims, strict=True)],
                optimizer=EmbOptimType.EXACT_SGD, learning_rate=lr, device=dev)

        self.tbe, self.wide_tbe = tbe(schema.dims), tbe([4] * schema.n_fields)  # TBE needs dim % 4 == 0: column 0 used
        with torch.no_grad():
            for mod, ws in ((self.tbe, deep), (self.wide_tbe, wide)):
                for dst, w in zip(mod.split_embedding_weights(), ws, strict=True):
                    dst.zero_()
                    dst[:, : w.shape[1]].copy_(w)
        self._setup_columns(dev)

    def forward(self, batch: Batch) -> Pooled:
        """One TBE call per collection on ``(ids [N], offsets [F * B + 1])``: deep ``[B, sum d_f]`` -> groups,
        wide ``[B, 4F]`` -> column 0 of each field, summed to ``[B]``."""
        self.check_ids(batch)  # unchecked, TBE logs an error and reads row 0 instead
        offsets = batch.offsets()
        deep = self.tbe(batch.ids, offsets)
        wide = self.wide_tbe(batch.ids, offsets).view(batch.batch_size, -1, 4)[:, :, 0].sum(1)
        return Pooled(self._groups(deep), wide)

    def field_tables(self):
        return list(self.tbe.split_embedding_weights()), [w[:, :1] for w in self.wide_tbe.split_embedding_weights()]

    def sparse_parameters(self):
        return []
