"""Reader for the real Criteo click-log text format (Criteo Display Advertising Challenge / 1TB logs).

Each line: ``label \\t I1..I13 \\t C1..C26`` - a 0/1 label, 13 integer features (may be empty) and 26
categorical features as hexadecimal hashes (may be empty). Categorical values are hashed into the
schema's vocabularies: ``id = (int(hex, 16) + salt_f) mod V_f`` (an empty value is an empty bag), dense
values are ``log(1 + max(x, 0))`` (the usual DLRM preprocessing; empty = 0). Any malformed line raises
:class:`CriteoFormatError` naming the row (1-based line number) and the field, never a silent skip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch

from .data import Batch, Schema

N_INT, N_CAT = 13, 26
_HEX = set("0123456789abcdefABCDEF")


class CriteoFormatError(ValueError):
    """A malformed Criteo line; the message names the row (line number) and the field."""


def parse_criteo_line(line: str, row: int, vocab: tuple[int, ...]) -> tuple[float, list[float], list[int | None]]:
    """Parse one line into (label, 13 dense values, 26 hashed IDs or None for empty)."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != 1 + N_INT + N_CAT:
        raise CriteoFormatError(f"row {row}: expected {1 + N_INT + N_CAT} tab-separated fields "
                                f"(label, I1..I13, C1..C26), got {len(parts)}")
    if parts[0] not in ("0", "1"):
        raise CriteoFormatError(f"row {row}, field label: expected 0 or 1, got {parts[0]!r}")
    dense = []
    for j, v in enumerate(parts[1:1 + N_INT]):
        if v == "":
            dense.append(0.0)
            continue
        try:
            x = int(v)
        except ValueError:
            raise CriteoFormatError(f"row {row}, field I{j + 1}: expected an integer, got {v!r}") from None
        dense.append(math.log1p(max(x, 0)))
    cats: list[int | None] = []
    for j, v in enumerate(parts[1 + N_INT:]):
        if v == "":
            cats.append(None)
            continue
        if not set(v) <= _HEX:
            raise CriteoFormatError(f"row {row}, field C{j + 1}: expected a hexadecimal value, got {v!r}")
        cats.append((int(v, 16) + 0x9E3779B1 * (j + 1)) % vocab[j])
    return float(parts[0]), dense, cats


def read_criteo(path: str | os.PathLike, schema: Schema, batch_size: int, *,
                max_rows: int | None = None) -> Iterator[Batch]:
    """Yield :class:`Batch` es of ``batch_size`` rows (the last may be shorter) from a Criteo text file.

    ``schema`` must have 26 single-hot fields (e.g. ``make_schema(26, ...)``); its vocabularies are the
    hash moduli. Parsing is per line (an I/O path, not the training hot path).
    """
    if schema.n_fields != N_CAT or schema.n_dense != N_INT:
        raise ValueError(f"a Criteo schema has {N_CAT} categorical and {N_INT} dense fields, got "
                         f"{schema.n_fields} and {schema.n_dense}")
    rows: list[tuple[float, list[float], list[int | None]]] = []
    with open(path, encoding="utf-8", errors="strict") as fh:
        for i, line in enumerate(fh, start=1):
            if max_rows is not None and i > max_rows:
                break
            rows.append(parse_criteo_line(line, i, schema.vocab))
            if len(rows) == batch_size:
                yield _to_batch(rows)
                rows = []
    if rows:
        yield _to_batch(rows)


def _to_batch(rows: list[tuple[float, list[float], list[int | None]]]) -> Batch:
    B = len(rows)
    labels = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    dense = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    cat = [[r[2][f] for r in rows] for f in range(N_CAT)]  # field-major
    lengths = torch.tensor([[0 if v is None else 1 for v in col] for col in cat], dtype=torch.int64)
    ids = torch.tensor([v for col in cat for v in col if v is not None], dtype=torch.int64)
    return Batch(ids, lengths.view(N_CAT, B), dense, labels)


def format_criteo_line(label: int, dense: list[int | None], cats: list[int | None]) -> str:
    """One line in Criteo format (for tests and demos): ints, hex categorical values, ``None`` = empty."""
    d = ["" if x is None else str(x) for x in dense]
    c = ["" if x is None else f"{x:08x}" for x in cats]
    return "\t".join([str(label), *d, *c]) + "\n"
