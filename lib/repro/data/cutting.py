"""How a corpus is cut into train, validation and test documents: the same rule for every corpus.

1. A source lists its documents as ``(doc_id, load)`` pairs (``load`` reads or makes the text lazily).
2. Documents are visited in a fixed pseudo-random order: sha256 of ``"order:<corpus>:<doc_id>"``
   (generated math is visited in its own order, document 0, 1, 2, ...).
3. Each document belongs to one split by a fixed rule that does not depend on the byte budget:
   ``u = sha256("split:<corpus>:<doc_id>") / 2**256``; validation if ``u < 0.05``, test if
   ``u < 0.10``, else train (:func:`split_of`). So no document is in two splits, in any profile, and
   the smoke slice's validation documents are validation documents of the full build too.
4. Each split is filled to its share of the corpus's byte budget in that order; a document that does
   not fit is skipped; exact duplicate texts are kept once (first seen) (:func:`select`).

The readers of the sources are in :mod:`repro.data.sources`, the math generator in
:mod:`repro.data.mathgen`, the list of corpora in :mod:`repro.data.corpora`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CORPORA = ("general", "code", "math", "law", "medicine", "music", "chemistry")
DOMAINS = CORPORA[1:]
SPLITS = ("train", "validation", "test")
EOT = "<|endoftext|>"  # the document separator token; a document containing it literally is dropped

#: Byte budgets (UTF-8 bytes of document text) per profile of the build; ``fractions`` is the share of
#: the budget that each split may fill (the split of a document is fixed by :func:`split_of`).
BUDGETS = {
    "full": {"general": 12_000_000, "domain": 3_000_000, "fractions": (0.90, 0.05, 0.05)},
    "smoke": {"general": 200_000, "domain": 120_000, "fractions": (0.80, 0.10, 0.10)},
}
VALIDATION_P = 0.05  # split rule: P(validation) = P(test) = 0.05 per document
MAX_MISSES = 50  # a split stops looking after this many documents in a row that do not fit

Loader = Callable[[], "str | None"]


class MissingSourceError(RuntimeError):
    """A package that a corpus is built from is not installed."""


@dataclass(frozen=True)
class Source:
    """One origin of text inside a corpus: a package (or the interpreter, or our generator).

    ``items`` lists the documents as ``(doc_id, load)`` pairs; :func:`select` visits them in the order of
    the cutting rule (the source's own order when ``ordered``).
    """

    name: str
    package: str  # distribution name for importlib.metadata, "python" for the interpreter
    pin: str  # the pip requirement it was built and tested with
    licence: str
    cut: str  # how documents are made from it
    items: Callable[[], Iterable[tuple[str, Loader]]]
    weight: float = 1.0  # share of the corpus budget (general has several sources)
    ordered: bool = False  # True: visit in the source's own order (generators)

    def version(self) -> str:
        """The installed version of the source's package (``python``: the interpreter's; ``repro``: the
        generator's).

        Raises :class:`MissingSourceError`, naming the pip requirement, when the package is not installed.
        """
        if self.package == "python":
            return platform.python_version()
        if self.package == "repro":
            return "math-generator-v1"
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingSourceError(
                f"source {self.name!r} needs the package {self.package!r}, which is not installed: "
                f"pip install {self.pin}"
            ) from None


@dataclass(frozen=True)
class Corpus:
    """A corpus: its name, a one-line description for the manifest, and its sources in build order."""

    name: str
    description: str
    sources: tuple[Source, ...]


@dataclass
class Selection:
    """The documents of one corpus, per split: lists of ``(doc_id, text)``, plus per-source counts."""

    docs: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    per_source: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)



# --------------------------------------------------------------------------------------------- rules


def _u(salt: str, corpus: str, doc_id: str) -> float:
    h = hashlib.sha256(f"{salt}:{corpus}:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_of(corpus: str, doc_id: str) -> str:
    """The split a document belongs to: fixed by its id, whatever the budget or profile (rule 3 above).

    ``u = sha256("split:<corpus>:<doc_id>")`` read as a fraction of 2**64 (its first 8 bytes);
    ``"validation"`` if ``u < VALIDATION_P``, ``"test"`` if ``u < 2 * VALIDATION_P``, else ``"train"``.
    """
    u = _u("split", corpus, doc_id)
    if u < VALIDATION_P:
        return "validation"
    if u < 2 * VALIDATION_P:
        return "test"
    return "train"


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def select(corpus: str, sources: Iterable[Source], budget: int, fractions: tuple[float, ...]) -> Selection:
    """Cut ``corpus`` to ``budget`` bytes (UTF-8 bytes of text): the rule in the module docstring, source by source.

    A source gets ``weight * budget`` bytes plus whatever the sources before it left unused; each split gets
    its ``fractions`` share of that (``fractions`` in the order of :data:`SPLITS`). Raises what a source's
    reader raises (:class:`MissingSourceError` when its package is not installed).
    """
    sources = list(sources)
    sel = Selection()
    seen: set[bytes] = set()
    total, carry = 0, 0.0
    for i, src in enumerate(sources):
        last = i == len(sources) - 1
        src_budget = budget - total if last else min(budget - total, src.weight * budget + carry)
        quota = {s: src_budget * f for s, f in zip(SPLITS, fractions, strict=True)}
        used = dict.fromkeys(SPLITS, 0)
        ndocs = dict.fromkeys(SPLITS, 0)
        misses = dict.fromkeys(SPLITS, 0)
        closed = {s: quota[s] <= 0 for s in SPLITS}
        items = src.items()
        if not src.ordered:
            items = sorted(items, key=lambda it: _u("order", corpus, it[0]))
        for doc_id, load in items:
            split = split_of(corpus, doc_id)
            if closed[split]:
                if all(closed.values()):
                    break
                continue
            text = load()
            text = _normalise(text) if text else ""
            if not text or EOT in text:
                continue
            key = hashlib.sha256(text.encode()).digest()
            if key in seen:
                continue
            n = len(text.encode())
            if used[split] + n <= quota[split]:
                seen.add(key)
                sel.docs[split].append((doc_id, text))
                used[split] += n
                ndocs[split] += 1
                misses[split] = 0
                if quota[split] - used[split] < 0.002 * quota[split]:
                    closed[split] = True
            else:
                misses[split] += 1
                if misses[split] >= MAX_MISSES:
                    closed[split] = True
        sel.per_source[src.name] = {"bytes": used, "documents": ndocs}
        total += sum(used.values())
        carry = max(src_budget - sum(used.values()), 0.0)
    return sel


