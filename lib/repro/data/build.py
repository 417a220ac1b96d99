"""Build the corpora and their token files: ``python -m repro data build [--smoke] [--force]``.

Layout (``data/build/`` is not committed; ``data/manifest.json`` and the tokenizer are):

    data/build/<profile>/<corpus>/<split>.txt    documents joined by "\\n<|endoftext|>\\n"
    data/build/<profile>/<corpus>/<split>.npy    their token ids (uint16), each document + end-of-text
    data/tokenizer/tokenizer.json                 the byte-level BPE, trained on the full train splits
    data/manifest.json                            sources, licences, cuts, bytes, documents, tokens, sha256

Profiles: ``full`` (general 12 MB, domains 3 MB; what the notebooks' default profile trains on) and
``smoke`` (general 200 kB, domains 120 kB; for tests). A build whose files match the manifest returns
at once; ``--force`` rebuilds. The tokenizer is trained only by a full build (or ``--tokenizer``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from . import tokenizer as tk
from .corpora import corpus_specs
from .cutting import BUDGETS, CORPORA, EOT, SPLITS, select

BUILD = paths.DATA / "build"
MANIFEST = paths.DATA / "manifest.json"
SEP = f"\n{EOT}\n"


class DataError(RuntimeError):
    """A built file is missing or does not match the manifest."""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The manifest at ``path`` (``data/manifest.json``), or an empty one when there is none.

    Raises ``json.JSONDecodeError`` when the file is not JSON.
    """
    return json.loads(path.read_text()) if path.exists() else {"version": 1, "profiles": {}}


def corpus_dir(profile: str, corpus: str, root: Path = BUILD) -> Path:
    """The folder of one corpus's split files: ``root/<profile>/<corpus>`` (not checked to exist)."""
    return root / profile / corpus


def verify(profile: str, manifest: dict[str, Any] | None = None, root: Path = BUILD,
           tokenizer_path: Path | None = None) -> None:
    """Raise :class:`DataError` naming the first file that is missing or differs from the manifest."""
    manifest = manifest or load_manifest()
    tokenizer_path = Path(tokenizer_path or tk.TOKENIZER_PATH)
    prof = manifest.get("profiles", {}).get(profile)
    if not prof:
        raise DataError(f"the manifest has no '{profile}' build: run `python -m repro data build"
                        f"{' --smoke' if profile == 'smoke' else ''}`")
    want = prof.get("tokenizer_sha256") or manifest.get("tokenizer", {}).get("sha256")
    if not tokenizer_path.exists():
        raise DataError(f"{tokenizer_path} is missing: run `python -m repro data build` (it trains the tokenizer)")
    if _sha(tokenizer_path) != want:
        raise DataError(f"{tokenizer_path} does not match the manifest (sha256 differs): the token files were "
                        "made with another tokenizer; rebuild with --force")
    for corpus, entry in prof["corpora"].items():
        for split, s in entry["splits"].items():
            for kind in ("text", "tokens"):
                f = corpus_dir(profile, corpus, root) / f"{split}.{'txt' if kind == 'text' else 'npy'}"
                if not f.exists():
                    raise DataError(f"{f} is missing: run `python -m repro data build`")
                if _sha(f) != s[f"sha256_{kind}"]:
                    raise DataError(f"{f} does not match the manifest (sha256 differs): rebuild with --force")


def _write_npy(path: Path, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    paths.atomic_write_bytes(path, buf.getvalue())


def build_profile(profile: str, *, force: bool = False, train_tokenizer: bool | None = None,
                  root: Path = BUILD, manifest_path: Path = MANIFEST, tokenizer_path: Path | None = None,
                  log=print) -> dict[str, Any]:
    """Build one profile's corpora and token files, update the manifest; returns the profile's entry."""
    if profile not in BUDGETS:
        raise ValueError(f"unknown data profile {profile!r}; valid: {', '.join(BUDGETS)}")
    tokenizer_path = Path(tokenizer_path or tk.TOKENIZER_PATH)
    manifest = load_manifest(manifest_path)
    specs = corpus_specs()
    for c in specs.values():  # a missing source package fails here, naming the package and its pin
        for src in c.sources:
            src.version()
    if not force:
        try:
            verify(profile, manifest, root, tokenizer_path)
            log(f"data ({profile}): built files match the manifest, nothing to do")
            return manifest["profiles"][profile]
        except DataError:
            pass
    budget = BUDGETS[profile]
    t0 = time.perf_counter()
    selections = {}
    for name in CORPORA:
        t = time.perf_counter()
        c = specs[name]
        selections[name] = select(name, c.sources, budget["general" if name == "general" else "domain"],
                                  budget["fractions"])
        for split in SPLITS:
            docs = [text for _, text in selections[name].docs[split]]
            paths.atomic_write_text(corpus_dir(profile, name, root) / f"{split}.txt", SEP.join(docs))
        n = {s: len(d) for s, d in selections[name].docs.items()}
        log(f"  {name:<10} {n} documents ({time.perf_counter() - t:.1f} s)")
    if train_tokenizer is None:
        train_tokenizer = profile == "full" or not tokenizer_path.exists()
    if train_tokenizer:
        t = time.perf_counter()

        def texts():  # every corpus's train split, document by document
            for name in CORPORA:
                for _, text in selections[name].docs["train"]:
                    yield text

        sha = tk.train_tokenizer(texts(), path=tokenizer_path)
        rel = tokenizer_path.relative_to(paths.ROOT) if tokenizer_path.is_relative_to(paths.ROOT) else tokenizer_path
        manifest["tokenizer"] = {"path": str(rel), "sha256": sha, "vocab_size": tk.vocab_size(tokenizer_path),
                                 "kind": "byte-level BPE (Hugging Face tokenizers), single-threaded training",
                                 "trained_on": f"the train splits of the '{profile}' build, all corpora",
                                 "tokenizers": _version("tokenizers")}
        log(f"  tokenizer: {tk.vocab_size(tokenizer_path)} tokens, trained in {time.perf_counter() - t:.1f} s")
    entry: dict[str, Any] = {"corpora": {}, "budget": budget, "tokenizer_sha256": _sha(tokenizer_path),
                             "python": platform.python_version()}
    for name in CORPORA:
        c = specs[name]
        sel = selections[name]
        splits = {}
        for split in SPLITS:
            docs = [text for _, text in sel.docs[split]]
            ids = tk.encode_documents(docs, tokenizer_path)
            d = corpus_dir(profile, name, root)
            _write_npy(d / f"{split}.npy", ids)
            nbytes = sum(len(x.encode()) for x in docs)
            splits[split] = {"documents": len(docs), "bytes": nbytes, "tokens": int(len(ids)),
                             "bytes_per_token": round(nbytes / max(1, len(ids) - len(docs)), 3),
                             "sha256_text": _sha(d / f"{split}.txt"), "sha256_tokens": _sha(d / f"{split}.npy")}
        entry["corpora"][name] = {
            "description": c.description,
            "sources": [{"name": s.name, "package": s.package, "version": s.version(), "pin": s.pin,
                         "licence": s.licence, "cut": s.cut, **sel.per_source.get(s.name, {})} for s in c.sources],
            "splits": splits,
        }
    seconds = round(time.perf_counter() - t0, 1)
    # a rebuild that reproduces every file keeps the recorded build time, so the manifest (an input of every
    # notebook run) changes only when the data do
    old = manifest.get("profiles", {}).get(profile)
    same = old is not None and {k: v for k, v in old.items() if k != "seconds"} == json.loads(json.dumps(entry))
    entry["seconds"] = old.get("seconds", seconds) if same else seconds
    manifest.setdefault("profiles", {})[profile] = entry
    manifest["split_rule"] = ("document-level: sha256('split:<corpus>:<doc_id>') < 5% -> validation, "
                              "< 10% -> test, else train (repro.data.corpora.split_of)")
    paths.atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    log(f"data ({profile}): built in {seconds:.0f} s -> {corpus_dir(profile, '', root)}")
    return entry


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _profile(profile: str) -> str:
    """Data profile of a run profile: ``smoke`` -> the smoke slice, ``default`` and ``full`` -> the full build."""
    if profile in ("default", "full"):
        return "full"
    if profile == "smoke":
        return "smoke"
    raise ValueError(f"unknown profile {profile!r}; valid: smoke, default, full")


def _checked(f: Path, profile: str, corpus: str, split: str, kind: str, root: Path, manifest_path: Path) -> Path:
    """``f`` after checking its sha256 against the manifest (a mismatch is an error naming the file)."""
    if not f.exists():
        raise DataError(f"{f} is missing: run `python -m repro data build{' --smoke' if profile == 'smoke' else ''}`")
    entry = load_manifest(manifest_path).get("profiles", {}).get(profile, {}).get("corpora", {}).get(corpus)
    if entry is None:
        raise DataError(f"the manifest {manifest_path} has no entry for {profile}/{corpus}: rebuild")
    if _sha(f) != entry["splits"][split][f"sha256_{kind}"]:
        raise DataError(f"{f} does not match the manifest (sha256 differs): corrupted or stale; "
                        "rebuild with `python -m repro data build --force`")
    return f


def _split_file(corpus: str, split: str, profile: str, suffix: str, root: Path, manifest_path: Path,
                build_missing: bool) -> tuple[Path, str]:
    """The file of one corpus split (built first when missing and ``build_missing``), and the resolved profile."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    profile = _profile(profile)
    f = corpus_dir(profile, corpus, root) / f"{split}.{suffix}"
    if not f.exists() and build_missing:
        build_profile(profile, root=root, manifest_path=manifest_path)
    return f, profile


def load_tokens(corpus: str, split: str, profile: str = "full", root: Path = BUILD, *,
                manifest_path: Path = MANIFEST, build_missing: bool = True) -> np.ndarray:
    """Token ids (``uint16``) of one corpus split, checked against the manifest's sha256.

    ``profile``: ``smoke`` reads the smoke slice, ``default``/``full`` the full build. With
    ``build_missing`` (the default) a profile whose files are missing is built first.
    """
    f, profile = _split_file(corpus, split, profile, "npy", root, manifest_path, build_missing)
    return np.load(_checked(f, profile, corpus, split, "tokens", root, manifest_path), mmap_mode="r")


def load_text(corpus: str, split: str, profile: str = "full", root: Path = BUILD, *,
              manifest_path: Path = MANIFEST, build_missing: bool = True) -> list[str]:
    """The documents of one corpus split (checked against the manifest like :func:`load_tokens`)."""
    f, profile = _split_file(corpus, split, profile, "txt", root, manifest_path, build_missing)
    text = _checked(f, profile, corpus, split, "text", root, manifest_path).read_text("utf-8")
    return text.split(SEP) if text else []


def build(which: str | Sequence[str] = "all", smoke: bool = False, force: bool = False, **kw: Any) -> dict[str, Any]:
    """Build the full corpora (or the ``smoke`` slice); returns the profile's manifest entry.

    ``which``: "all" or a list of corpus names. The split rule and the tokenizer are shared, so every
    build writes all corpora of the profile; a list only checks the names and is kept for the API.
    """
    names = list(CORPORA) if which == "all" else [which] if isinstance(which, str) else list(which)
    bad = [n for n in names if n not in CORPORA]
    if bad:
        raise ValueError(f"unknown corpus {', '.join(bad)}; valid: {', '.join(CORPORA)}")
    return build_profile("smoke" if smoke else "full", force=force, **kw)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro data build|verify [--smoke|--all] [--force]``; returns the exit status (1: a file
    differs from the manifest)."""
    p = argparse.ArgumentParser(prog="python -m repro data", description="Build or check the corpora.")
    p.add_argument("what", choices=["build", "verify"])
    p.add_argument("--smoke", action="store_true", help="the small slice for tests (else the full build)")
    p.add_argument("--all", action="store_true", help="both the full build and the smoke slice")
    p.add_argument("--force", action="store_true", help="rebuild even when the files match the manifest")
    a = p.parse_args(argv)
    profiles = ["full", "smoke"] if a.all else ["smoke" if a.smoke else "full"]
    for prof in profiles:
        if a.what == "build":
            build_profile(prof, force=a.force)
        else:
            try:
                verify(prof)
            except DataError as e:
                print(f"error: {e}")
                return 1
            print(f"data ({prof}): every file matches the manifest")
    return 0
