"""Notebook 06's videos: rendered scenes of 2 to 4 ordered events with Chinese captions (VICTOR's data, made).

Alivol-10M (VICTOR's corpus) cannot be had, so the videos are rendered: ``T = 12`` frames of 32 x 32 RGB. A video is
a sequence of 2, 3 or 4 **events**; each event is one object (a shape in a colour) doing one action over an equal
share of the frames (6, 4 or 3 frames). A caption names the events in order with the order words 先/首先,
然后/随后, 接着 and 最后, for example ``先红色方块向右移动，然后一个蓝色的长条旋转，最后黄色三角形变大。``. The
events' order decides the video and the caption, so a model that reads only which events occur (a bag of words,
a bag of frames) cannot tell a video from its reordering: the structure VICTOR's order tasks are meant to learn.

* shapes: 方块 square, 三角形 triangle, 十字 cross, 长条 bar;
* colours: 红 red, 绿 green, 蓝 blue, 黄 yellow, 紫 purple, 白 white;
* actions: 向左移动 and 向右移动 (moving), 旋转 (turning a quarter turn), 变大 and 变小 (growing, shrinking), 出现
  (appearing: fading in from the background).

Splits (:data:`SPLITS`, per data profile, :data:`SIZES`):

* ``train``: the pre-training pairs;
* ``heldout``: a gallery of pairs whose event sequences never occur in ``train``;
* ``hard``: an order-sensitive gallery: ``queries`` pairs of 3 or 4 events, each followed by 3 videos (and their
  captions) with the same events, rendered alike, in other orders;
* ``random``: a gallery of the same size: the same ``queries`` pairs followed by other pairs drawn like them.

Every split is one ``.npz`` under ``data/build/victor/<profile>/`` (``frames`` uint8 ``(N, T, 3, 32, 32)``,
``captions``, ``events`` ``(N, 4, 3)`` shape/colour/action ids with -1 padding, ``n_events``, ``query`` (the row
of the pair this row is a candidate for; itself for a query or an ordinary pair)); the character vocabulary
(built from the training captions) is ``vocab.json`` beside them. ``python -m repro data build --all`` builds
them with the corpora; ``data/manifest.json`` holds their sha256 under ``victor``. Everything is drawn from
``numpy.random.default_rng`` seeded by the split, so a build is byte for byte the same on every machine.

Also here: :func:`load_pairs`, a loader for a real corpus in the common layout (a captions file plus one array
per video, of frames or frame features), and :class:`Vocab`, the character tokenizer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths

__all__ = ["T", "SIZE", "SHAPES", "COLOURS", "ACTIONS", "SPLITS", "SIZES", "Pairs", "Vocab", "render_video",
           "caption", "make_split", "build", "verify", "load_split", "load_vocab", "load_pairs", "VideoDataError"]

T = 12  # frames per video: divisible by 2, 3 and 4 events
SIZE = 32  # frame height and width, pixels
SHAPES = {"square": "方块", "triangle": "三角形", "cross": "十字", "bar": "长条"}
COLOURS = {"red": ("红", (220, 40, 40)), "green": ("绿", (40, 180, 60)), "blue": ("蓝", (60, 90, 235)),
           "yellow": ("黄", (230, 210, 40)), "purple": ("紫", (160, 60, 210)), "white": ("白", (235, 235, 235))}
ACTIONS = {"left": "向左移动", "right": "向右移动", "turn": "旋转", "grow": "变大", "shrink": "变小", "appear": "出现"}
# order words by number of events; each slot has its variants
ORDER_WORDS = {2: (("先", "首先"), ("然后", "随后")),
               3: (("先", "首先"), ("然后", "接着"), ("最后",)),
               4: (("先", "首先"), ("然后", "随后"), ("接着",), ("最后",))}
SPLITS = ("train", "heldout", "hard", "random")
SIZES = {"full": {"train": 6000, "heldout": 256, "queries": 64},
         "smoke": {"train": 256, "heldout": 64, "queries": 16}}
HARD_NEGATIVES = 3  # reorderings per query in the hard gallery (so each gallery holds queries x 4 rows)
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
ROOT = paths.DATA / "build" / "victor"
_SEEDS = {"train": 1, "heldout": 2, "hard": 3, "random": 4}
_PROFILE_SEED = {"full": 0, "smoke": 1}


class VideoDataError(RuntimeError):
    """A built video split is missing, or differs from the manifest."""


# ------------------------------------------------------------------------------------------------ rendering
@dataclass(frozen=True)
class Event:
    """One event: an object (``shape``, ``colour``: indices into :data:`SHAPES`, :data:`COLOURS`) doing ``action``
    (index into :data:`ACTIONS`), drawn at centre ``(cx, cy)`` (pixels), base radius ``r`` and angle ``theta``
    (radians), with its caption phrase variant ``phrase`` (0, 1 or 2)."""

    shape: int
    colour: int
    action: int
    cx: float
    cy: float
    r: float
    theta: float
    phrase: int


def _mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape at object coordinates ``(u, v)`` (already rotated and scaled)."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # apex up; base at v = 0.8
        return (v <= 0.8) & (v >= -1.0) & (np.abs(u) <= (v + 1.0) * 0.55)
    if shape == "cross":
        return ((np.abs(u) <= 0.33) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 1.0))
    return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35)  # bar


def _draw(img: np.ndarray, ev: Event, p: float) -> None:
    """Draw event ``ev`` at progress ``p`` in [0, 1] into ``img`` (float ``(SIZE, SIZE, 3)``, in place)."""
    cx, cy, r, theta, alpha = ev.cx, ev.cy, ev.r, ev.theta, 1.0
    action = list(ACTIONS)[ev.action]
    if action == "left":
        cx = ev.cx + 6.0 - 12.0 * p
    elif action == "right":
        cx = ev.cx - 6.0 + 12.0 * p
    elif action == "turn":
        theta = ev.theta + p * np.pi / 2
    elif action == "grow":
        r = ev.r * (0.55 + 0.9 * p)
    elif action == "shrink":
        r = ev.r * (1.45 - 0.9 * p)
    elif action == "appear":
        alpha = p
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    dx, dy = (x - cx) / r, (y - cy) / r
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    m = _mask(list(SHAPES)[ev.shape], u, v)
    colour = np.array(list(COLOURS.values())[ev.colour][1], dtype=np.float64)
    img[m] = (1 - alpha) * img[m] + alpha * colour


def render_video(events: Sequence[Event], rng: np.random.Generator) -> np.ndarray:
    """Frames of a video: each event in order over ``T / len(events)`` frames, on a noisy grey background.

    Returns uint8 ``(T, 3, SIZE, SIZE)``. Raises ``ValueError`` naming ``events`` unless it holds 2 to 4 events.
    """
    n = len(events)
    if n not in ORDER_WORDS:
        raise ValueError(f"events must hold 2, 3 or 4 events, got {n}")
    span = T // n
    grey = rng.uniform(20, 70)
    noise = rng.normal(0, 8, size=(T, SIZE, SIZE, 3))
    out = np.empty((T, SIZE, SIZE, 3))
    for t in range(T):
        img = np.full((SIZE, SIZE, 3), grey)
        k = t // span
        _draw(img, events[k], (t - k * span) / (span - 1))
        out[t] = img + noise[t]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)


def caption(events: Sequence[Event], rng: np.random.Generator | None = None) -> str:
    """The Chinese caption of ``events`` in order: ``先A，然后B，最后C。`` with the order words of
    :data:`ORDER_WORDS` (a variant drawn from ``rng``, or the first without one) and each event's phrase variant:
    ``红色方块``, ``红色的方块`` or ``一个红色的方块``, then its action."""
    words = ORDER_WORDS[len(events)]
    clauses = []
    for slot, ev in zip(words, events, strict=True):
        w = slot[int(rng.integers(len(slot)))] if rng is not None else slot[0]
        c, s = list(COLOURS.values())[ev.colour][0], list(SHAPES.values())[ev.shape]
        obj = (f"{c}色{s}", f"{c}色的{s}", f"一个{c}色的{s}")[ev.phrase]
        clauses.append(f"{w}{obj}{list(ACTIONS.values())[ev.action]}")
    return "，".join(clauses) + "。"


def _events(rng: np.random.Generator, n: int) -> list[Event]:
    """``n`` events of distinct objects (shape, colour), drawn from ``rng``."""
    objects = rng.choice(len(SHAPES) * len(COLOURS), size=n, replace=False)
    return [Event(int(o) // len(COLOURS), int(o) % len(COLOURS), int(rng.integers(len(ACTIONS))),
                  float(rng.uniform(12, 20)), float(rng.uniform(11, 21)), float(rng.uniform(5.0, 6.5)),
                  float(rng.uniform(0, np.pi / 2)), int(rng.integers(3))) for o in objects]


def _key(events: Sequence[Event]) -> tuple[tuple[int, int, int], ...]:
    """What a caption says of a video: its events (object and action) in order."""
    return tuple((e.shape, e.colour, e.action) for e in events)


# -------------------------------------------------------------------------------------------------- splits
@dataclass
class Pairs:
    """Video-caption pairs: ``frames`` uint8 ``(N, T, 3, H, W)`` (or float frame features ``(N, T, D)`` from a
    real corpus), ``captions`` (N strings), ``events`` int ``(N, 4, 3)`` (shape, colour, action; -1 past
    ``n_events``), ``n_events`` ``(N,)``, ``query`` ``(N,)``: for gallery rows, the row of the query pair each
    is a candidate for (a query points to itself); ``ids``: video ids (a real corpus's names)."""

    frames: np.ndarray
    captions: list[str]
    events: np.ndarray
    n_events: np.ndarray
    query: np.ndarray
    ids: list[str]

    def __post_init__(self) -> None:
        n = len(self.captions)
        for name in ("frames", "events", "n_events", "query", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} holds {len(getattr(self, name))} rows, the captions {n}: one per pair")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def queries(self) -> np.ndarray:
        """Rows that are queries: a pair that is its own candidate."""
        return np.flatnonzero(self.query == np.arange(len(self)))

    @property
    def category(self) -> np.ndarray:
        """The event category the linear probe predicts: the action of the first event, ``(N,)`` in 0..5."""
        return self.events[:, 0, 2]

    def subset(self, rows: Sequence[int] | np.ndarray) -> Pairs:
        rows = np.asarray(rows)
        return Pairs(self.frames[rows], [self.captions[i] for i in rows], self.events[rows], self.n_events[rows],
                     np.arange(len(rows)), [self.ids[i] for i in rows])


def _pack(videos: list[list[Event]], render: Sequence[np.random.Generator], phrasing: Sequence[np.random.Generator],
          query: Sequence[int], name: str) -> Pairs:
    """Render and caption ``videos`` (video ``i`` drawn from ``render[i]``, its order words from ``phrasing[i]``)."""
    frames = np.stack([render_video(evs, r) for evs, r in zip(videos, render, strict=True)])
    caps = [caption(evs, r) for evs, r in zip(videos, phrasing, strict=True)]
    events = np.full((len(videos), 4, 3), -1, dtype=np.int64)
    for i, evs in enumerate(videos):
        events[i, :len(evs)] = [(e.shape, e.colour, e.action) for e in evs]
    return Pairs(frames, caps, events, np.array([len(v) for v in videos]), np.asarray(query),
                 [f"{name}-{i:05d}" for i in range(len(videos))])


def _train_events(profile: str, rng: np.random.Generator | None = None) -> list[list[Event]]:
    rng = rng if rng is not None else np.random.default_rng([_SEEDS["train"], _PROFILE_SEED[profile]])
    return [_events(rng, int(rng.integers(2, 5))) for _ in range(SIZES[profile]["train"])]


def _fresh(rng: np.random.Generator, seen: set, n_events: Sequence[int]) -> list[Event]:
    """Events of 2 to 4 (one of ``n_events``) whose sequence is not in ``seen`` (then added to it)."""
    while True:
        evs = _events(rng, int(rng.choice(n_events)))
        if _key(evs) not in seen:
            seen.add(_key(evs))
            return evs


def make_split(split: str, profile: str = "full") -> Pairs:
    """Render split ``split`` of data profile ``profile`` (:data:`SPLITS`, :data:`SIZES`); deterministic.

    Held-out pairs, the galleries' queries and the random candidates never repeat a training pair's event sequence
    (the hard candidates, reorderings of a query, are not checked; in the builds of :data:`SIZES` none repeats one,
    which the tests check). The hard and random galleries
    hold the same query pairs, rendered identically; a hard candidate is its query's events, positions, background,
    noise and phrasing in another order (so its caption differs from the query's only in the order of the
    clauses); a random candidate is another fresh pair of 3 or 4 events. Raises ``ValueError`` naming ``split`` or
    ``profile``."""
    if profile not in SIZES:
        raise ValueError(f"profile must be one of {list(SIZES)}, got {profile!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    size, p = SIZES[profile], _PROFILE_SEED[profile]
    if split == "train":
        rng = np.random.default_rng([_SEEDS["train"], p])
        videos = _train_events(profile, rng)
        return _pack(videos, [rng] * len(videos), [rng] * len(videos), range(len(videos)), split)
    seen = {_key(v) for v in _train_events(profile)}
    if split == "heldout":
        rng = np.random.default_rng([_SEEDS["heldout"], p])
        videos = [_fresh(rng, seen, (2, 3, 4)) for _ in range(size["heldout"])]
        return _pack(videos, [rng] * len(videos), [rng] * len(videos), range(len(videos)), split)
    qrng = np.random.default_rng([_SEEDS["hard"], p])  # the queries: the same for both galleries
    queries = [_fresh(qrng, seen, (3, 4)) for _ in range(size["queries"])]
    seeds = [int(s) for s in qrng.integers(2**31, size=len(queries))]
    nrng = np.random.default_rng([_SEEDS["random"], p])
    videos, render, phrasing, query = [], [], [], []
    for q, (evs, seed) in enumerate(zip(queries, seeds, strict=True)):
        if split == "hard":
            orders = [o for o in itertools.permutations(range(len(evs))) if o != tuple(range(len(evs)))]
            picks = np.random.default_rng([seed, 3]).choice(len(orders), size=HARD_NEGATIVES, replace=False)
            group = [evs] + [[evs[j] for j in orders[i]] for i in picks]
        else:
            group = [evs] + [_fresh(nrng, seen, (3, 4)) for _ in range(HARD_NEGATIVES)]
        for i, g in enumerate(group):  # hard: every reordering drawn and phrased from the query's own streams
            same = split == "hard" or i == 0
            videos.append(g)
            render.append(np.random.default_rng([seed, 0] if same else [seed, 10 + i]))
            phrasing.append(np.random.default_rng([seed, 1] if same else [seed, 20 + i]))
            query.append(q * (HARD_NEGATIVES + 1))
    return _pack(videos, render, phrasing, query, split)


# ------------------------------------------------------------------------------------------------ tokenizer
class Vocab:
    """The character vocabulary: :data:`SPECIALS` (``[PAD]`` = 0, ``[CLS]``, ``[SEP]``, ``[MASK]``, ``[UNK]``)
    then every character of ``chars`` (sorted). :meth:`encode` turns captions into ``[CLS] c1 .. cn [SEP]`` ids
    padded to ``context``."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.itos = list(SPECIALS) + sorted(set(chars) - set(SPECIALS))
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad, self.cls, self.sep, self.mask, self.unk = range(len(SPECIALS))

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> Vocab:
        """The vocabulary of every character in ``captions`` (the training captions)."""
        return cls(sorted({ch for c in captions for ch in c}))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, captions: Sequence[str], context: int) -> np.ndarray:
        """Token ids ``(N, context)`` int64: ``[CLS]``, the characters (unknown ones as ``[UNK]``), ``[SEP]``,
        ``[PAD]``. Raises ``ValueError`` naming ``context`` when a caption does not fit (it needs
        ``len(caption) + 2`` positions)."""
        longest = max((len(c) for c in captions), default=0)
        if longest + 2 > context:
            raise ValueError(f"context={context} is too short: a caption of {longest} characters needs "
                             f"{longest + 2} positions with [CLS] and [SEP]")
        ids = np.full((len(captions), context), self.pad, dtype=np.int64)
        for i, c in enumerate(captions):
            ids[i, :len(c) + 2] = [self.cls, *(self.stoi.get(ch, self.unk) for ch in c), self.sep]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of ``ids`` without ``[CLS]``, ``[SEP]`` and ``[PAD]``."""
        return "".join(self.itos[i] for i in ids if i not in (self.pad, self.cls, self.sep))

    def to_json(self) -> str:
        return json.dumps(self.itos, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        itos = json.loads(text)
        if itos[:len(SPECIALS)] != list(SPECIALS):
            raise ValueError("vocab: the file does not start with the special tokens " + ", ".join(SPECIALS))
        return cls(itos[len(SPECIALS):])


# ---------------------------------------------------------------------------------------------- build, load
def _npz(pairs: Pairs) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, frames=pairs.frames, captions=np.array(pairs.captions), events=pairs.events,
             n_events=pairs.n_events, query=pairs.query)
    return buf.getvalue()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_path() -> Path:
    from ..data.build import MANIFEST

    return MANIFEST


def verify(profile: str = "full", root: Path = ROOT, manifest_path: Path | None = None) -> None:
    """Raise :class:`VideoDataError` naming the first split file (or ``vocab.json``) of ``profile`` that is missing
    or whose sha256 differs from ``data/manifest.json``'s ``victor`` entry."""
    from ..data.build import load_manifest

    entry = load_manifest(manifest_path or _manifest_path()).get("victor", {}).get(profile)
    if not entry:
        raise VideoDataError(f"the manifest has no 'victor' entry for profile {profile!r}: run "
                             "`python -m repro data build --all`")
    for name, info in entry["files"].items():
        f = Path(root) / profile / name
        if not f.exists():
            raise VideoDataError(f"{f} is missing: run `python -m repro data build --all`")
        if _sha(f) != info["sha256"]:
            raise VideoDataError(f"{f} does not match the manifest (sha256 differs): rebuild with "
                                 "`python -m repro data build --all --force`")


def build(profile: str = "full", *, force: bool = False, root: Path = ROOT, manifest_path: Path | None = None,
          log=print) -> dict[str, Any]:
    """Render every split of ``profile``, write ``<root>/<profile>/<split>.npz`` and ``vocab.json`` and record
    their sizes and sha256 in the manifest (under ``victor``); returns that entry. Files that already match the
    manifest are kept unless ``force``. About 10 s for ``full`` (Intel Xeon, one core)."""
    from ..data.build import load_manifest

    manifest_path = manifest_path or _manifest_path()
    if not force:
        try:
            verify(profile, root, manifest_path)
            log(f"videos ({profile}): built files match the manifest, nothing to do")
            return load_manifest(manifest_path)["victor"][profile]
        except VideoDataError:
            pass
    t0 = time.perf_counter()
    files: dict[str, Any] = {}
    folder = Path(root) / profile
    vocab = None
    for split in SPLITS:
        pairs = make_split(split, profile)
        paths.atomic_write_bytes(folder / f"{split}.npz", _npz(pairs))
        if split == "train":
            vocab = Vocab.from_captions(pairs.captions)
            paths.atomic_write_text(folder / "vocab.json", vocab.to_json())
        files[f"{split}.npz"] = {"pairs": len(pairs), "queries": len(pairs.queries) if split in ("hard", "random")
                                 else None, "sha256": _sha(folder / f"{split}.npz"),
                                 "longest_caption": max(len(c) for c in pairs.captions)}
    files["vocab.json"] = {"tokens": len(vocab), "sha256": _sha(folder / "vocab.json")}
    entry = {"frames": [T, 3, SIZE, SIZE], "files": files,
             "made_by": "repro.victor.data.make_split (numpy default_rng, seeded by split and profile)",
             "description": "rendered videos of 2-4 ordered events (shape, colour, action) with Chinese captions"}
    manifest = load_manifest(manifest_path)
    old = manifest.get("victor", {}).get(profile, {})
    entry["seconds"] = old.get("seconds") if {k: v for k, v in old.items() if k != "seconds"} == entry else \
        round(time.perf_counter() - t0, 1)
    manifest.setdefault("victor", {})[profile] = entry
    paths.atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    sizes = ", ".join(f"{k} {v.get('pairs', v.get('tokens'))}" for k, v in files.items())
    log(f"videos ({profile}): {sizes} in {time.perf_counter() - t0:.0f} s -> {folder}")
    return entry


def _data_profile(profile: str) -> str:
    if profile in ("default", "full"):
        return "full"
    if profile == "smoke":
        return "smoke"
    raise ValueError(f"profile must be one of smoke, default, full, got {profile!r}")


def load_split(split: str, profile: str = "full", root: Path = ROOT, *, build_missing: bool = True) -> Pairs:
    """The rendered split ``split`` of ``profile`` (``smoke``, or ``default``/``full``: the full build), checked
    against the manifest; built first when missing and ``build_missing``. Raises ``ValueError`` naming ``split``
    or ``profile``, :class:`VideoDataError` for a missing or changed file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    profile = _data_profile(profile)
    f = Path(root) / profile / f"{split}.npz"
    if build_missing and not f.exists():
        build(profile, root=root)
    verify(profile, root)
    with np.load(f, allow_pickle=False) as z:
        return Pairs(z["frames"], [str(c) for c in z["captions"]], z["events"], z["n_events"], z["query"],
                     [f"{split}-{i:05d}" for i in range(len(z["captions"]))])


def load_vocab(profile: str = "full", root: Path = ROOT) -> Vocab:
    """The character vocabulary of ``profile``'s training captions (``vocab.json``, checked like the splits)."""
    profile = _data_profile(profile)
    f = Path(root) / profile / "vocab.json"
    if not f.exists():
        build(profile, root=root)
    verify(profile, root)
    return Vocab.from_json(f.read_text("utf-8"))


# -------------------------------------------------------------------------------------------- a real corpus
def _read_captions(path: Path) -> list[tuple[str, str]]:
    """``(video_id, caption)`` rows of a captions file: JSON (a list of objects, or UniVL's MSR-VTT style
    ``{"sentences": [...]}``), JSON lines, or CSV with a header; the fields are ``video_id`` and ``caption``."""
    text = path.read_text("utf-8")
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        obj = json.loads(text)
        rows = obj.get("sentences", []) if isinstance(obj, dict) else obj
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or "video_id" not in r or "caption" not in r:
            raise VideoDataError(f"{path}: row {i} has no 'video_id' and 'caption' fields")
        out.append((str(r["video_id"]), str(r["caption"])))
    return out


def load_pairs(folder: str | Path, captions: str = "captions.json", *, frames: int = T) -> Pairs:
    """Pairs of a real corpus laid out as UniVL's and Youku-mPLUG's releases are, once decoded:

        <folder>/<captions>              video_id and caption per row (.json, .jsonl or .csv)
        <folder>/videos/<video_id>.npy   uint8 frames (F, H, W, 3), or
        <folder>/features/<video_id>.npy float frame features (F, D) from a frozen image model

    Each video is sampled to ``frames`` evenly spaced frames (F >= ``frames``). Pixel frames come back as
    ``(N, frames, 3, H, W)`` uint8, features as ``(N, frames, D)`` float32; a video with several captions gives
    a pair per caption. The event columns (not known for a real corpus) are -1. Raises
    :class:`VideoDataError` naming the file for a missing video, a wrong shape or mixed sizes."""
    folder = Path(folder)
    rows = _read_captions(folder / captions)
    if not rows:
        raise VideoDataError(f"{folder / captions} holds no pairs")
    arrays, kind = [], None
    for vid, _ in rows:
        px, ft = folder / "videos" / f"{vid}.npy", folder / "features" / f"{vid}.npy"
        f = px if px.exists() else ft
        if not f.exists():
            raise VideoDataError(f"video {vid!r}: neither {px} nor {ft} exists")
        a = np.load(f, allow_pickle=False)
        this = "pixels" if f == px else "features"
        if kind not in (None, this):
            raise VideoDataError(f"{f}: the corpus mixes pixel videos and feature arrays")
        kind = this
        want = 4 if this == "pixels" else 2
        if a.ndim != want or (this == "pixels" and a.shape[-1] != 3):
            raise VideoDataError(f"{f}: expected {'(F, H, W, 3) uint8 frames' if want == 4 else '(F, D) features'}, "
                                 f"got shape {a.shape}")
        if a.shape[0] < frames:
            raise VideoDataError(f"{f}: {a.shape[0]} frames, fewer than frames={frames}")
        a = a[np.linspace(0, a.shape[0] - 1, frames).round().astype(int)]
        arrays.append(a.transpose(0, 3, 1, 2).astype(np.uint8) if this == "pixels" else a.astype(np.float32))
    if len({a.shape for a in arrays}) > 1:
        raise VideoDataError(f"{folder}: videos differ in size ({sorted({a.shape for a in arrays})[:3]} ...); "
                             "resize them to one size first")
    n = len(rows)
    return Pairs(np.stack(arrays), [c for _, c in rows], np.full((n, 4, 3), -1), np.zeros(n, dtype=np.int64),
                 np.arange(n), [v for v, _ in rows])
