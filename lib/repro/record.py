"""Recording a notebook's results and the verdict on each claim it tests.

A notebook declares its claims near the top, each with the rule that will decide it, before any
result exists; it observes our values (one per seed) later; the verdict follows from the rule alone::

    rec = record.start("03_dcpt_law", profile=cfg["profile"], seed=seed, parameters=params)
    rec.claim("fit-r2", "L3 fits with R^2 above 0.97", rule=record.above(0.97),
              paper_value=0.97, paper_ref="Table 2")
    ...
    rec.value("grid_points", 405)
    rec.observe("fit-r2", r2_per_seed)
    rec.save()        # -> $REPRO_RESULTS_DIR/03_dcpt_law.json (the runner's staging folder)

The JSON written validates against ``schemas/results.schema.json`` (documented in ``docs/results.md``).

Verdicts: from the values over seeds we take the mean and a two-sided t-interval (``confidence``,
0.95 by default; a single value is its own interval). ``above(t)``: reproduced when the whole interval
lies above t, not reproduced when it lies wholly at or below t, else inconclusive. ``below(t)`` mirrors
it; ``within(lo, hi)``: reproduced when the interval lies inside [lo, hi], not reproduced when it lies
wholly outside, else inconclusive. A comparison ("A beats B") is a rule on the paired differences
(:func:`paired_difference`), so its interval must exclude zero to count.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import paths
from .machine import machine_info

SCHEMA_VERSION = 1
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
SCHEMA_PATH = Path(__file__).with_name("schemas") / "results.schema.json"
_PACKAGES = ("torch", "numpy", "scipy", "statsmodels", "pandas", "matplotlib", "papermill")


@dataclass(frozen=True)
class Rule:
    """How a claim's verdict is decided from our values. Build one with above/below/within."""

    kind: str  # "above" | "below" | "within"
    low: float | None = None
    high: float | None = None
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.kind not in ("above", "below", "within"):
            raise ValueError(f"rule kind must be 'above', 'below' or 'within', got {self.kind!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence!r}")
        if self.kind == "above" and self.low is None or self.kind == "below" and self.high is None:
            raise ValueError(f"rule {self.kind!r} needs its threshold")
        if self.kind == "within" and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"rule 'within' needs low <= high, got {self.low!r}, {self.high!r}")

    def describe(self) -> str:
        c = f"{self.confidence:.0%} CI"
        if self.kind == "above":
            return f"{c} above {self.low:g}"
        if self.kind == "below":
            return f"{c} below {self.high:g}"
        return f"{c} within [{self.low:g}, {self.high:g}]"

    def decide(self, ci_low: float, ci_high: float) -> str:
        if self.kind == "above":
            return _verdict(ci_low > self.low, ci_high <= self.low)
        if self.kind == "below":
            return _verdict(ci_high < self.high, ci_low >= self.high)
        return _verdict(self.low <= ci_low and ci_high <= self.high, ci_high < self.low or ci_low > self.high)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "confidence": self.confidence,
                "text": self.describe()}


def _verdict(yes: bool, no: bool) -> str:
    return "reproduced" if yes else "not reproduced" if no else "inconclusive"


def above(threshold: float, confidence: float = 0.95) -> Rule:
    """Reproduced when the interval of our values lies above ``threshold``."""
    return Rule("above", low=float(threshold), confidence=confidence)


def below(threshold: float, confidence: float = 0.95) -> Rule:
    """Reproduced when the interval of our values lies below ``threshold``."""
    return Rule("below", high=float(threshold), confidence=confidence)


def within(low: float, high: float, confidence: float = 0.95) -> Rule:
    """Reproduced when the interval of our values lies inside ``[low, high]``."""
    return Rule("within", low=float(low), high=float(high), confidence=confidence)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-seed differences ``a - b`` of two methods run on the same seeds."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} against {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]


def summarize(values: Iterable[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, standard deviation and two-sided t-interval of values over seeds."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("no values to summarise")
    bad = [v for v in xs if not math.isfinite(v)]
    if bad:
        raise ValueError(f"values must be finite, got {bad}")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return {"values": xs, "n": 1, "mean": mean, "std": None, "ci_low": mean, "ci_high": mean}
    from scipy import stats

    std = math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return {"values": xs, "n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _git() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    rev = os.environ.get("REPRO_GIT_REVISION") or run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": None if status is None else bool(status)}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(x: Any) -> Any:
    """Plain JSON types from NumPy/torch scalars and arrays, tuples and paths."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise TypeError(f"cannot record a value of type {type(x).__name__}: {x!r}")


class Recorder:
    """Collects one notebook run's values and claims; :meth:`save` writes them as JSON."""

    def __init__(self, notebook: str, *, profile: str, seed: int, parameters: dict[str, Any] | None = None,
                 seeds: Sequence[int] | None = None):
        from .papers import paper_for
        from .profile import check

        self.notebook = notebook
        self.profile = check(profile)
        self.seed = seed
        self.seeds = list(seeds) if seeds is not None else [seed]
        self.parameters = _jsonable(dict(parameters or {}))
        paper = paper_for(notebook)
        self.paper = None if paper is None else {"title": paper.title, "venue": paper.venue, "url": paper.url}
        self.started_at = _dt.datetime.now(_dt.UTC)
        self._t0 = time.perf_counter()
        self.values: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self._rules: dict[str, Rule] = {}

    # -- declaring and observing ------------------------------------------------------------------
    def claim(self, id: str, text: str, *, rule: Rule, paper_value: Any = None, paper_ref: str | None = None,
              unit: str | None = None, hardware: bool = False) -> None:
        """Declare a claim and the rule that will decide it, before its result is known.

        ``hardware=True`` marks a claim whose verdict depends on the machine it is measured on (a speed,
        a time): it is shown with the machine (the results JSON's ``machine``) wherever it is rendered."""
        if not isinstance(rule, Rule):
            raise TypeError(f"claim {id!r}: rule must be made with record.above/below/within, got {rule!r}")
        if id in self.claims:
            raise ValueError(f"claim {id!r} is declared twice")
        self.claims[id] = {"id": id, "text": text, "paper_value": _jsonable(paper_value), "paper_ref": paper_ref,
                           "unit": unit, "rule": rule.to_json(), "ours": None, "verdict": "inconclusive",
                           "note": "not measured", "hardware": bool(hardware)}
        self._rules[id] = rule

    def observe(self, id: str, values: float | Iterable[float], *, note: str | None = None) -> str:
        """Give our value(s) for a declared claim, one per seed; returns the verdict."""
        if id not in self.claims:
            raise KeyError(f"claim {id!r} was not declared; declared: {', '.join(self.claims) or 'none'}")
        if self.claims[id]["ours"] is not None:
            raise ValueError(f"claim {id!r} was observed already")
        vals = [values] if isinstance(values, int | float) or hasattr(values, "ndim") and values.ndim == 0 \
            else list(values)
        rule = self._rules[id]
        ours = summarize(vals, rule.confidence)
        verdict = rule.decide(ours["ci_low"], ours["ci_high"])
        self.claims[id].update(ours=ours, verdict=verdict, note=note)
        return verdict

    def value(self, name: str, value: Any, *, unit: str | None = None, note: str | None = None) -> None:
        """Record a named result that is not a claim (a count, a fitted parameter, a timing)."""
        self.values[name] = {"value": _jsonable(value), "unit": unit, "note": note}

    # -- output ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        now = _dt.datetime.now(_dt.UTC)
        return {
            "schema_version": SCHEMA_VERSION,
            "notebook": self.notebook,
            "paper": self.paper,
            "profile": self.profile,
            "seed": self.seed,
            "seeds": self.seeds,
            "parameters": self.parameters,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": now.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - self._t0, 3),
            "git": _git(),
            "versions": _versions(),
            "machine": machine_info(),
            "values": self.values,
            "claims": list(self.claims.values()),
        }

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Validate and write ``<folder>/<notebook>.json`` atomically (folder: :func:`paths.results_dir`)."""
        doc = self.to_json()
        validate(doc)
        path = Path(folder or paths.results_dir()) / f"{self.notebook}.json"
        paths.atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return path

    def _repr_html_(self) -> str:
        return claims_html(list(self.claims.values()))


def start(notebook: str, **kwargs: Any) -> Recorder:
    """Begin recording a notebook run; see :class:`Recorder`."""
    return Recorder(notebook, **kwargs)


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` breaks the results schema, or a verdict its rule."""
    import jsonschema

    jsonschema.validate(doc, load_schema())
    for c in doc["claims"]:
        if c["ours"] is None:
            if c["verdict"] != "inconclusive":
                raise jsonschema.ValidationError(f"claim {c['id']!r} has no value but verdict {c['verdict']!r}")
            continue
        r = c["rule"]
        rule = Rule(r["kind"], r["low"], r["high"], r["confidence"])
        expect = rule.decide(c["ours"]["ci_low"], c["ours"]["ci_high"])
        if c["verdict"] != expect:
            raise jsonschema.ValidationError(f"claim {c['id']!r}: verdict {c['verdict']!r}, its rule gives {expect!r}")


# -- rendering shared by notebooks, the index and the README scorecard ----------------------------
def fmt_number(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def fmt_ours(ours: dict[str, Any] | None, unit: str | None = None) -> str:
    """``mean [ci_low, ci_high] (n=…)``, or the single value."""
    if ours is None:
        return "not measured"
    u = f" {unit}" if unit else ""
    if ours["n"] == 1:
        return f"{fmt_number(ours['mean'])}{u} (n=1)"
    return f"{fmt_number(ours['mean'])}{u} [{fmt_number(ours['ci_low'])}, {fmt_number(ours['ci_high'])}] (n={ours['n']})"


def fmt_paper(claim: dict[str, Any]) -> str:
    v = claim.get("paper_value")
    if v is None:
        return "–"
    ref = f" ({claim['paper_ref']})" if claim.get("paper_ref") else ""
    unit = f" {claim['unit']}" if claim.get("unit") else ""
    return f"{fmt_number(v)}{unit}{ref}"


def claim_text(claim: dict[str, Any], machine: dict[str, Any] | None = None) -> str:
    """The claim's sentence, with the machine named when its verdict depends on the hardware."""
    if not claim.get("hardware"):
        return claim["text"]
    from .machine import machine_label

    on = f": measured on {machine_label(machine)}" if machine else ""
    return f"{claim['text']} [verdict depends on the hardware{on}]"


def claims_html(claims: list[dict[str, Any]], machine: dict[str, Any] | None = None) -> str:
    """The claims table as an HTML fragment (notebooks display it; the index embeds it). ``machine``: the
    results' machine, named beside claims whose verdict depends on the hardware (this machine when None)."""
    if not claims:
        return "<p><em>No claims recorded.</em></p>"
    rows = []
    for c in claims:
        verdict = c["verdict"]
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(c['id'])}</code></td>"
            f"<td>{html.escape(claim_text(c, machine or machine_info()))}</td>"
            f"<td>{html.escape(fmt_paper(c))}</td>"
            f"<td>{html.escape(fmt_ours(c['ours'], c.get('unit')))}</td>"
            f"<td>{html.escape(c['rule']['text'])}</td>"
            f"<td class=\"verdict {verdict.replace(' ', '-')}\">{html.escape(verdict)}</td>"
            "</tr>"
        )
    head = "<tr><th>id</th><th>claim</th><th>paper</th><th>ours</th><th>rule</th><th>verdict</th></tr>"
    return f'<table class="claims">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"
