"""The one tokenizer of the language-model notebooks: byte-level BPE (Hugging Face ``tokenizers``).

Trained on the training splits of every corpus of the full build (never on validation or test text),
vocabulary size a parameter (8192 by default, so token ids fit ``uint16``), one special token
``<|endoftext|>`` (id 0) between documents. Byte-level: every string round-trips exactly,
``decode(encode(x)) == x``. Training runs single-threaded (``TOKENIZERS_PARALLELISM=false``) so that a
rebuild gives the same file byte for byte; the committed file is ``data/tokenizer/tokenizer.json`` and
its sha256 is recorded in ``data/manifest.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..paths import DATA, atomic_write_text
from .cutting import EOT

VOCAB_SIZE = 8192
TOKENIZER_PATH = DATA / "tokenizer" / "tokenizer.json"
PIN = "tokenizers==0.23.3"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(f"the tokenizer needs the package 'tokenizers': pip install {PIN}") from None
    return tokenizers


@contextlib.contextmanager
def _serial():
    """Run the Rust side on one thread (read by ``tokenizers`` at each call)."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def train(texts: Iterable[str], vocab_size: int = VOCAB_SIZE, length: int | None = None):
    """A byte-level BPE trained on ``texts`` (documents), deterministic: the same texts give the same file."""
    if not 256 < vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in (256, 65536] so ids fit uint16, got {vocab_size}")
    tk = _tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tk.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with _serial():
        tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def to_json(tok) -> str:
    """The tokenizer as compact JSON (deterministic: same training texts, same bytes)."""
    return tok.to_str()


def sha256_text(text: str) -> str:
    """The hex sha256 of ``text`` encoded as UTF-8 (how the manifest names the tokenizer file)."""
    return hashlib.sha256(text.encode()).hexdigest()


def save(tok, path: str | os.PathLike = TOKENIZER_PATH) -> str:
    """Write the tokenizer atomically; returns the file's sha256."""
    text = to_json(tok)
    atomic_write_text(path, text)
    return sha256_text(text)


def load(path: str | os.PathLike = TOKENIZER_PATH, sha256: str | None = None):
    """The tokenizer in ``path``; with ``sha256``, checked against it (a mismatch names the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer file {path} is missing: run `python -m repro data build` to train it"
        )
    text = path.read_text("utf-8")
    if sha256 is not None and sha256_text(text) != sha256:
        raise ValueError(
            f"tokenizer file {path} has sha256 {sha256_text(text)}, the manifest says {sha256}: "
            "it was changed or corrupted; restore it (git checkout) or rebuild with `python -m repro data build --force`"
        )
    return _tokenizers().Tokenizer.from_str(text)


def eot_id(tok) -> int:
    """The id of ``<|endoftext|>`` in ``tok`` (0 for the workbook's tokenizer; ``None`` if it lacks the token)."""
    return tok.token_to_id(EOT)


def encode_docs(tok, docs: Iterable[str], batch: int = 256) -> np.ndarray:
    """Token ids of documents, each followed by ``<|endoftext|>``, as one ``uint16`` array."""
    if tok.get_vocab_size() > 65536:
        raise ValueError("vocabulary too large for uint16 token files")
    eot = eot_id(tok)
    chunks: list[np.ndarray] = []
    docs = list(docs)
    for i in range(0, len(docs), batch):
        for enc in tok.encode_batch(docs[i : i + batch], add_special_tokens=False):
            chunks.append(np.asarray(enc.ids + [eot], dtype=np.uint16))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)


def decode(tok, ids: Iterable[int]) -> str:
    """The text of token ids ``ids`` (any 1-D integer sequence or array), special tokens kept."""
    return tok.decode(list(map(int, ids)), skip_special_tokens=False)


def split_documents(tok, ids: np.ndarray) -> Iterator[np.ndarray]:
    """The documents of a token array (split at ``<|endoftext|>``)."""
    cuts = np.flatnonzero(ids == eot_id(tok))
    start = 0
    for c in cuts:
        yield ids[start:c]
        start = c + 1


def bytes_per_token(tok, docs: Iterable[str]) -> float:
    """UTF-8 bytes of ``docs`` per BPE token (document separators not counted). 1.0 for raw bytes."""
    docs = list(docs)
    nbytes = sum(len(d.encode()) for d in docs)
    ntok = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
    return nbytes / max(ntok, 1)


# ------------------------------------------------------------------ the committed tokenizer, by path

_CACHE: dict[tuple[str, int, int], object] = {}


def get(path: str | os.PathLike = TOKENIZER_PATH):
    """The tokenizer stored at ``path`` (cached until the file changes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} is missing: run `python -m repro data build` to train it")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load(path)
    return _CACHE[key]


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE, path: str | os.PathLike = TOKENIZER_PATH) -> str:
    """Train on ``texts``, write the tokenizer to ``path`` atomically; returns its sha256."""
    return save(train(texts, vocab_size), path)


def vocab_size(path: str | os.PathLike = TOKENIZER_PATH) -> int:
    """Vocabulary size of the stored tokenizer (ids run from 0 to this minus one)."""
    return get(path).get_vocab_size()


def encode_documents(docs: Iterable[str], path: str | os.PathLike = TOKENIZER_PATH) -> np.ndarray:
    """``uint16`` token ids of ``docs`` with the stored tokenizer, each document followed by end-of-text."""
    return encode_docs(get(path), docs)
