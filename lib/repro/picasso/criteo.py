"""Reader for the real Criteo click-log text format (Criteo Display Advertising Challenge / 1TB logs).

Each line: ``label \\t I1..I13 \\t C1..C26`` - a 0/1 label, 13 integer features (may be empty) and 26
categorical features as hexadecimal hashes (may be empty). Categorical values are hashed into the
schema's vocabularies: ``id = (int(hex, 16) + salt_f) mod V_f`` (an empty value is an empty bag), dense
values are ``log(1 + max(x, 0))`` (the usual DLRM preprocessing; empty = 0). Any malformed input raises
:class:`CriteoFormatError` naming the file, the 1-based line number and the field (a wrong field count:
the expected and found counts; bytes that are not UTF-8: the byte offset in the line and in the file;
an empty file), never a silent skip.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator

import torch

from .data import Batch, Schema

N_INT, N_CAT = 13, 26
N_FIELDS = 1 + N_INT + N_CAT
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also take " 3", "1_000" and non-ASCII digits
_HEX = re.compile(r"[0-9a-fA-F]+")


class CriteoFormatError(ValueError):
    """Malformed Criteo input; the message names the file, the line number and the field."""


def parse_criteo_line(line: str, row: int, vocab: tuple[int, ...], *,
                      source: str = "<line>") -> tuple[float, list[float], list[int | None]]:
    """Parse line number ``row`` of ``source`` into (label, 13 dense values, 26 hashed IDs or None for
    empty); raises :class:`CriteoFormatError` as ``"<source> line <row>, field <name>: ..."``."""
    where = f"{source} line {row}"
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != N_FIELDS:
        raise CriteoFormatError(f"{where}: expected {N_FIELDS} tab-separated fields (label, I1..I13, C1..C26), "
                                f"found {len(parts)}")
    if parts[0] not in ("0", "1"):
        raise CriteoFormatError(f"{where}, field label: expected 0 or 1, found {parts[0]!r}")
    dense = []
    for j, v in enumerate(parts[1:1 + N_INT]):
        if v == "":
            dense.append(0.0)
            continue
        if not _INT.fullmatch(v):
            raise CriteoFormatError(f"{where}, field I{j + 1}: expected an integer, found {v!r}")
        dense.append(math.log1p(max(int(v), 0)))
    cats: list[int | None] = []
    for j, v in enumerate(parts[1 + N_INT:]):
        if v == "":
            cats.append(None)
            continue
        if not _HEX.fullmatch(v):
            raise CriteoFormatError(f"{where}, field C{j + 1}: expected a hexadecimal value, found {v!r}")
        cats.append((int(v, 16) + 0x9E3779B1 * (j + 1)) % vocab[j])
    return float(parts[0]), dense, cats


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line, decoded as strict UTF-8 line by line, so an undecodable byte
    is reported with its line and byte offsets (a :class:`CriteoFormatError` chained from the
    ``UnicodeDecodeError``)."""
    offset = 0  # byte offset of the current line in the file
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            try:
                yield i, raw.decode("utf-8", errors="strict")
            except UnicodeDecodeError as e:
                raise CriteoFormatError(
                    f"{os.fspath(path)} line {i}: invalid UTF-8 at byte {e.start} of the line (byte "
                    f"{offset + e.start} of the file): {raw[e.start:e.end]!r} ({e.reason})") from e
            offset += len(raw)


def read_criteo(path: str | os.PathLike, schema: Schema, batch_size: int, *,
                max_rows: int | None = None) -> Iterator[Batch]:
    """Yield :class:`Batch` es of ``batch_size`` rows (the last may be shorter) from a Criteo text file
    (card §5: the public 13 dense + 26 categorical fields): ``ids`` ``[N]``, ``lengths`` ``[26, B]`` (0 or
    1), ``dense`` ``[B, 13]``, ``labels`` ``[B]``.

    ``schema`` must have 26 single-hot fields (e.g. ``make_schema(26, ...)``); its vocabularies are the
    hash moduli. Parsing is per line (an I/O path, not the training hot path). Raises ``ValueError`` for a
    schema that is not Criteo's, ``batch_size < 1`` or ``max_rows < 1``, and :class:`CriteoFormatError` for
    malformed input or an empty file.
    """
    if schema.n_fields != N_CAT or schema.n_dense != N_INT:
        raise ValueError(f"a Criteo schema has {N_CAT} categorical and {N_INT} dense fields, got "
                         f"{schema.n_fields} and {schema.n_dense}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 (or None for the whole file), got {max_rows}")
    source = os.fspath(path)
    rows: list[tuple[float, list[float], list[int | None]]] = []
    n = 0
    for i, line in _lines(path):
        if max_rows is not None and i > max_rows:
            break
        n = i
        rows.append(parse_criteo_line(line, i, schema.vocab, source=source))
        if len(rows) == batch_size:
            yield _to_batch(rows)
            rows = []
    if n == 0:
        raise CriteoFormatError(f"{source}: empty file, expected lines of {N_FIELDS} tab-separated fields")
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
    """One line in Criteo format (for tests and demos): ``label``, 13 ints and 26 categorical values
    (written as 8-digit hex), ``None`` = empty; ends with a newline."""
    d = ["" if x is None else str(x) for x in dense]
    c = ["" if x is None else f"{x:08x}" for x in cats]
    return "\t".join([str(label), *d, *c]) + "\n"
