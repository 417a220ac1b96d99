"""Recording a notebook's results and deciding each claim it tests by a rule fixed before the result.

A notebook declares its claims near the top, each with the rule that will decide it, where the claim comes
from (the paper, or a goal of this workbook), the unit of replication its values are drawn over and the range
its quantity can take; it observes our values later; the verdict follows from the rule alone::

    rec = record.start("03_dcpt_law", profile=cfg["profile"], seed=seed, parameters=params)
    rec.claim("usage1-code", "the predicted r_d* lies within 0.1 of the best measured ratio",
              rule=record.below(0.1), source=record.paper("Table 5"), unit_of_replication="seed",
              range=(0, 1))
    rec.fact("op-cut", "packing cuts lookups by 1.5 x F/G", value=1.5, expected=1.5, source=record.paper("§IV"))
    ...
    rec.observe("usage1-code", gaps_per_seed, rests_on={"L3 fits converged": True})
    rec.save()        # -> $REPRO_RESULTS_DIR/03_dcpt_law.json (the runner's staging folder)

The JSON written validates against ``schemas/results.schema.json`` (documented in ``docs/results.md``);
:func:`validate` re-derives every verdict from the stored values.

How a verdict is reached (docs/results.md has the long form):

1. Values are first reduced to independent units: ``observe(..., groups=g)`` averages the values of each group
   (e.g. the 36 held-out-ratio splits of one domain and side share 7 of 9 ratios, so they count as one unit).
2. Fewer than :data:`MIN_UNITS` (3) units never decide: the verdict is "inconclusive (n < 3)".
3. The interval of the units' mean at the rule's confidence: by default a percentile bootstrap (resampled by
   ``scipy.stats.bootstrap``, :data:`N_RESAMPLES` resamples, a fixed seed so that the verdict can be derived
   again; the bounds are quantiles of the bootstrap distribution, :func:`_percentiles`); a
   t-interval when the claim declares ``interval="t"``, and always below :data:`BOOTSTRAP_MIN_UNITS` (20) units,
   where a percentile bootstrap covers too little (with 3 units it is [min, max]). Units without any spread give
   no interval: inconclusive. A statistic that is not a mean over units (R^2 of a fit over runs) is bootstrapped
   by the caller and given to :meth:`Recorder.observe_replicates` (20 units or more, else inconclusive). Every
   interval is clipped to the declared range.
4. ``above(t)``: reproduced when the whole interval lies above t, not reproduced when it lies wholly at or
   below t, else inconclusive; ``below(t)`` mirrors it; ``within(lo, hi)``: reproduced when the interval lies in
   [lo, hi], not reproduced when it lies wholly outside. That is the raw decision.
5. A claim resting on something that failed (``rests_on``: a fit that did not converge, a run that did not
   finish) is inconclusive whatever its interval.
6. The notebook's claims are one family: each decisive raw verdict has a p-value (twice the one-sided tail of
   the bootstrap, t or exact binomial distribution beyond the threshold, the test its interval inverts), and
   Holm's procedure (statsmodels ``multipletests``) adjusts them; a raw verdict stands when its adjusted p is at most
   1 - confidence, else the final verdict is inconclusive. Both decisions are recorded and shown.

A rule that no value in the declared range could fail (or pass) is refused when the claim is declared.
Deterministic quantities (an operator count, a closed-form ratio) are **facts**: an exact value against an
exact expectation, shown apart from the statistical claims.
"""

from __future__ import annotations

import copy
import datetime as _dt
import html
import json
import math
import operator
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import paths
from .machine import machine_info
from .provenance import git_state, package_versions

SCHEMA_VERSION = 2
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
SOURCES = ("paper", "workbook goal")
INTERVALS = ("bootstrap", "t", "binomial")
MIN_UNITS = 3  # fewer independent units never give a decisive verdict
N_RESAMPLES = 9999  # bootstrap resamples of every interval the recorder computes
BOOTSTRAP_MIN_UNITS = 20  # below this many units a percentile bootstrap covers too little: Student's t instead
BOOTSTRAP_SEED = 0  # the resampling is seeded so that validate() derives the same interval again


# -- rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """How a claim's verdict is decided from the interval of our values. Build one with above/below/within."""

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
        for t in (self.low, self.high):
            if t is not None and not math.isfinite(t):
                raise ValueError(f"rule {self.kind!r}: thresholds must be finite, got {t!r}")

    @property
    def alpha(self) -> float:
        """1 - confidence, rounded to 12 digits."""
        return round(1 - self.confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in floating point

    def describe(self) -> str:
        """The rule in words: ``95% CI above 0.97``."""
        c = f"{self.confidence:.0%} CI"
        if self.kind == "above":
            return f"{c} above {self.low:g}"
        if self.kind == "below":
            return f"{c} below {self.high:g}"
        return f"{c} within [{self.low:g}, {self.high:g}]"

    def decide(self, ci_low: float, ci_high: float) -> str:
        """The raw verdict from an interval (step 4 of the module's rules)."""
        if self.kind == "above":
            return _verdict(ci_low > self.low, ci_high <= self.low)
        if self.kind == "below":
            return _verdict(ci_high < self.high, ci_low >= self.high)
        return _verdict(self.low <= ci_low and ci_high <= self.high, ci_high < self.low or ci_low > self.high)

    def p_values(self, tail) -> tuple[float, float]:
        """``(p_yes, p_no)``: the p-values of "reproduced" and "not reproduced", twice the one-sided tail of the
        estimate's distribution beyond the threshold (``tail(t, op)`` = P(estimate op t), op one of ``<``, ``<=``,
        ``>``, ``>=``; strict where the verdict's bound is inclusive), so that p < 1 - confidence when the
        two-sided interval lies on that side of the threshold."""
        def two(t: float, op: str) -> float:
            return min(1.0, 2 * float(tail(t, op)))

        if self.kind == "above":  # reproduced: ci_low > t; not reproduced: ci_high <= t
            return two(self.low, "<="), two(self.low, ">")
        if self.kind == "below":  # reproduced: ci_high < t; not reproduced: ci_low >= t
            return two(self.high, ">="), two(self.high, "<")
        # reproduced: lo <= ci_low and ci_high <= hi; not reproduced: ci_high < lo or ci_low > hi
        return (max(two(self.low, "<"), two(self.high, ">")), min(two(self.low, ">="), two(self.high, "<=")))

    def check_range(self, lo: float, hi: float, id: str = "") -> None:
        """``ValueError`` when no value in [lo, hi] could fail this rule, or none could pass it."""
        what = f"claim {id!r}: " if id else ""
        never_fails = never_passes = False
        if self.kind == "above":  # a threshold on a bound fails only when every unit sits on it: refused too
            never_fails, never_passes = self.low <= lo, self.low >= hi
        elif self.kind == "below":
            never_fails, never_passes = self.high >= hi, self.high <= lo
        else:
            never_fails = self.low <= lo and self.high >= hi
            never_passes = self.high < lo or self.low > hi
        if never_fails:
            raise ValueError(f"{what}rule '{self.describe()}' holds for every value in the range [{lo:g}, {hi:g}]: "
                             "it cannot fail; pose a threshold a result could miss")
        if never_passes:
            raise ValueError(f"{what}rule '{self.describe()}' fails for every value in the range [{lo:g}, {hi:g}]")

    def to_json(self) -> dict[str, Any]:
        """The rule as stored in a results JSON (with its words)."""
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


# -- where a claim comes from --------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where a claim comes from: ``paper`` (``ref``: where it is printed; ``value``: the paper's number, only when
    it is the same quantity as ours) or ``workbook goal`` (a target this workbook sets itself)."""

    kind: str
    ref: str | None = None
    value: Any = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"source kind must be one of {SOURCES}, got {self.kind!r}")
        if self.kind == "workbook goal" and (self.value is not None or self.ref is not None):
            raise ValueError("a workbook goal has no paper value or reference")
        if self.kind == "paper" and not self.ref:
            raise ValueError("a paper claim names where the paper states it (ref)")

    def to_json(self) -> dict[str, Any]:
        """The source as stored in a results JSON."""
        return {"kind": self.kind, "ref": self.ref, "value": _jsonable(self.value), "note": self.note}


def paper(ref: str, value: Any = None, note: str | None = None) -> Source:
    """A claim of the paper, stated at ``ref`` (table, section, equation). Give ``value`` only when the paper's
    number is the same quantity as ours; ``note`` says how ours differs where it does."""
    return Source("paper", ref=ref, value=value, note=note)


def goal(note: str | None = None) -> Source:
    """A target this workbook sets itself (not a claim of the paper)."""
    return Source("workbook goal", note=note)


# -- intervals -----------------------------------------------------------------------------------------
def group_means(values: Sequence[float], groups: Sequence[Any]) -> tuple[list[float], list[str]]:
    """The mean of ``values`` within each group (in the order groups first appear) and the groups' names: one
    independent unit per group. ``ValueError`` when the lengths differ."""
    if len(values) != len(groups):
        raise ValueError(f"groups: one group per value, got {len(groups)} groups for {len(values)} values")
    order: dict[str, list[float]] = {}
    for v, g in zip(values, groups, strict=True):
        order.setdefault(str(g), []).append(float(v))
    return [float(np.mean(vs)) for vs in order.values()], list(order)


def interval(units: Sequence[float], rule: Rule, method: str = "bootstrap",
             value_range: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """The estimate (mean of ``units``), its interval at ``rule.confidence`` clipped to ``value_range``, and the
    p-values of both decisive verdicts (:meth:`Rule.p_values`). ``method``: ``bootstrap`` (percentile, seeded),
    ``t``, or ``binomial`` for units that are successes and failures (1 and 0): the exact Clopper-Pearson interval
    of the success share (statsmodels ``proportion_confint(method="beta")``) and exact binomial tails (scipy), which
    stay honest where every unit succeeded. Needs at least 2 units; ``ValueError`` for fewer, for an unknown method,
    or for binomial units other than 0 and 1."""
    from scipy import stats

    x = np.asarray(units, float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"an interval needs at least 2 units, got {len(x)}")
    if method not in INTERVALS:
        raise ValueError(f"interval method must be one of {INTERVALS}, got {method!r}")
    if method == "binomial":
        return _binomial(x, rule, value_range)
    flat = bool(np.all(x == x[0]))  # exactly equal units: no spread (their float std can be 1e-17, not 0)
    mean, std = (float(x[0]), 0.0) if flat else (float(x.mean()), float(x.std(ddof=1)))
    out: dict[str, Any] = {"estimate": mean, "std": std}
    small = method == "bootstrap" and len(x) < BOOTSTRAP_MIN_UNITS
    if method == "t" or small:
        se, df = std / math.sqrt(len(x)), len(x) - 1
        half = float(stats.t.ppf(0.5 + rule.confidence / 2, df)) * se
        lo, hi = mean - half, mean + half
        def tail(t: float, op: str) -> float:
            if se == 0:
                return float(_OPS[op](mean, t))
            z = (t - mean) / se  # P(estimate < t) = P(T < z); the t distribution has no atoms
            return float(stats.t.cdf(z, df) if op in ("<", "<=") else stats.t.sf(z, df))
        out["interval"] = {"method": f"t (fewer than {BOOTSTRAP_MIN_UNITS} units)" if small else "t",
                           "confidence": rule.confidence}
    else:
        if np.all(x == x[0]):  # every resample is the same: the interval is the value
            dist = np.full(N_RESAMPLES, mean)
            lo = hi = mean
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
                res = stats.bootstrap((x,), np.mean, confidence_level=rule.confidence, method="percentile",
                                      n_resamples=N_RESAMPLES, rng=np.random.default_rng(BOOTSTRAP_SEED))
            dist = res.bootstrap_distribution
            lo, hi = _percentiles(dist, rule.alpha)

        def tail(t: float, op: str) -> float:
            return _tail(_OPS[op](dist, t))
        out["interval"] = {"method": "bootstrap percentile", "confidence": rule.confidence,
                           "n_resamples": N_RESAMPLES, "seed": BOOTSTRAP_SEED}
    out["p_yes"], out["p_no"] = rule.p_values(tail)
    return _clip(out, lo, hi, value_range)


def _binomial(x: np.ndarray, rule: Rule, value_range: tuple[float, float]) -> dict[str, Any]:
    """Estimate, spread, Clopper-Pearson bounds and exact tails of a success share (units 0 or 1). ``tail(t, "<")`` is P(X >= k | p = t), the chance of so many successes were the
    share t, so that twice it falls under alpha where the Clopper-Pearson interval lies above t; ``tail(t, ">")``
    mirrors it."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"a binomial interval needs units of 0 and 1 (failure, success), got {sorted(set(x))[:5]}")
    k, n = int(x.sum()), len(x)

    def tail(t: float, op: str) -> float:
        return float(stats.binom.sf(k - 1, n, t) if op in ("<", "<=") else stats.binom.cdf(k, n, t))

    out: dict[str, Any] = {"estimate": k / n, "std": float(x.std(ddof=1)),
                           "interval": {"method": "binomial Clopper-Pearson", "confidence": rule.confidence}}
    out["p_yes"], out["p_no"] = rule.p_values(tail)
    lo, hi = proportion_confint(k, n, alpha=rule.alpha, method="beta")
    return _clip(out, float(lo), float(hi), value_range)


def replicate_interval(estimate: float, replicates: Sequence[float], rule: Rule,
                       value_range: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """As :func:`interval`, from a bootstrap distribution the caller made (``replicates``: the statistic on each
    resample, non-finite ones left out): percentile interval, tails from the replicates. ``ValueError`` when
    fewer than 2 replicates are finite."""
    d = np.asarray(replicates, float)
    if d.ndim != 1 or len(d) < 2 or not np.all(np.isfinite(d)):
        raise ValueError(f"replicates: need a 1-D array of at least 2 finite values (drop failed draws yourself "
                         f"and say how many in the note), got shape {d.shape}")
    lo, hi = _percentiles(d, rule.alpha)
    out: dict[str, Any] = {"estimate": float(estimate), "std": float(d.std(ddof=1)), "replicates": d.tolist(),
                           "interval": {"method": "bootstrap percentile (replicates given)",
                                        "confidence": rule.confidence, "n_resamples": int(len(d))}}
    out["p_yes"], out["p_no"] = rule.p_values(lambda t, op: _tail(_OPS[op](d, t)))
    return _clip(out, lo, hi, value_range)


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _percentiles(dist: np.ndarray, alpha: float) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution: its alpha/2 and 1 - alpha/2 quantiles taken as values
    of the distribution itself (inverted CDF), so that the interval excludes a threshold exactly when the tail
    beyond it is under alpha/2 (no interpolation that would move a bound by a rounding error)."""
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    return float(lo), float(hi)


def _tail(hits: np.ndarray) -> float:
    """A bootstrap tail probability: the share of resamples beyond the threshold, at least 1 / (resamples + 1)
    (a finite number of resamples cannot show a tail smaller than their resolution). With the inverted-CDF
    percentile bounds of :func:`_percentiles`, an interval that lies on one side of a threshold gives twice
    this tail at most alpha, and the other way round."""
    return float(max(np.count_nonzero(hits) / hits.size, 1 / (hits.size + 1)))


def _clip(out: dict[str, Any], lo: float, hi: float, value_range: tuple[float, float]) -> dict[str, Any]:
    r_lo, r_hi = value_range
    out["ci_low"], out["ci_high"] = float(min(max(lo, r_lo), r_hi)), float(max(min(hi, r_hi), r_lo))
    out["interval"]["clipped"] = bool(lo < r_lo or hi > r_hi)
    return out


def paired_difference(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-seed differences ``a - b`` of two methods run on the same seeds."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} against {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]


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


def _range_json(lo: float, hi: float) -> list[float | None]:
    return [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None]


def _range_of(doc_range: Sequence[float | None] | None) -> tuple[float, float]:
    lo, hi = doc_range or (None, None)
    return (-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))


def _finite(name: str, values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise TypeError(f"{name}: values must be numbers, got {type(v).__name__} {v!r}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}: values must be finite, got {v!r}")
        out.append(float(v))
    return out


# -- the recorder --------------------------------------------------------------------------------------
class Recorder:
    """Collects one notebook run's values, claims and facts; :meth:`save` writes them as JSON."""

    def __init__(self, notebook: str, *, profile: str, seed: int, parameters: dict[str, Any] | None = None,
                 seeds: Sequence[int] | None = None):
        from .papers import paper_for
        from .profile import check

        self.notebook = notebook
        self.profile = check(profile)
        self.seed = seed
        self.seeds = list(seeds) if seeds is not None else [seed]
        self.parameters = _jsonable(dict(parameters or {}))
        paper_ = paper_for(notebook)
        self.paper = None if paper_ is None else {"title": paper_.title, "venue": paper_.venue, "url": paper_.url}
        self.started_at = _dt.datetime.now(_dt.UTC)
        self._t0 = time.perf_counter()
        self.values: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self._rules: dict[str, Rule] = {}

    # -- declaring -------------------------------------------------------------------------------------
    def claim(self, id: str, text: str, *, rule: Rule, source: Source, unit_of_replication: str,
              range: tuple[float, float] = (-math.inf, math.inf), interval: str = "bootstrap",
              unit: str | None = None, hardware: bool = False) -> None:
        """Declare a claim and the rule that will decide it, before its result is known.

        ``source``: :func:`paper` or :func:`goal`. ``unit_of_replication``: what one independent value is (a seed,
        a run, a (domain, side) pair, a timing round). ``range``: the values the quantity can take (an R^2 is at
        most 1, a share lies in [0, 1]); intervals are clipped to it and a rule that no value in it could fail or
        pass is refused (``ValueError``). ``interval``: ``bootstrap`` (default), ``t``, or ``binomial`` (units of 0 and 1: a success share). ``hardware=True`` marks a
        verdict that depends on the machine (a speed, a time): every rendering names the machine beside it."""
        if not isinstance(id, str) or not id.strip() or not isinstance(text, str) or not text.strip():
            raise ValueError(f"claim: id and text must be non-empty str, got {id!r}, {text!r}")
        if not isinstance(rule, Rule):
            raise TypeError(f"claim {id!r}: rule must be made with record.above/below/within, got {rule!r}")
        if unit is not None and not isinstance(unit, str) or not isinstance(hardware, bool):
            raise TypeError(f"claim {id!r}: unit must be a str or None and hardware a bool")
        if not isinstance(source, Source):
            raise TypeError(f"claim {id!r}: source must be made with record.paper(...) or record.goal(), "
                            f"got {source!r}")
        if id in self.claims or id in self.facts:
            raise ValueError(f"claim {id!r} is declared twice")
        if not isinstance(unit_of_replication, str) or not unit_of_replication.strip():
            raise ValueError(f"claim {id!r}: unit_of_replication must say what one independent value is")
        if interval not in INTERVALS:
            raise ValueError(f"claim {id!r}: interval must be one of {INTERVALS}, got {interval!r}")
        if isinstance(range, str | bytes) or not isinstance(range, Sequence) or len(range) != 2 or any(
                isinstance(v, bool) or v is not None and not isinstance(v, int | float | np.integer | np.floating)
                for v in range):
            raise ValueError(f"claim {id!r}: range must be (low, high), numbers or None for unbounded, got {range!r}")
        lo, hi = _range_of(range)
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ValueError(f"claim {id!r}: range must be (low, high) with low < high, got {range!r}")
        rule.check_range(lo, hi, id)
        if interval == "binomial" and (lo, hi) != (0.0, 1.0):
            raise ValueError(f"claim {id!r}: a binomial claim is a success share: its range must be (0, 1), "
                             f"got {range!r}")
        self.claims[id] = {"id": id, "text": text, "source": source.to_json(), "unit": unit,
                           "unit_of_replication": unit_of_replication, "range": _range_json(lo, hi),
                           "interval": interval, "rule": rule.to_json(), "hardware": bool(hardware),
                           "ours": None, "rests_on": [], "verdict_raw": "inconclusive", "p": None,
                           "p_holm": None, "verdict": "inconclusive", "reason": "not measured", "note": None}
        self._rules[id] = rule

    def fact(self, id: str, text: str, *, value: float, expected: float, source: Source, tol: float = 0.0,
             unit: str | None = None, note: str | None = None) -> bool:
        """Record a deterministic quantity (an operator count, a closed-form ratio) with its exact ``expected``
        value: it holds when ``|value - expected| <= tol``. Shown apart from the statistical claims; returns
        whether it holds."""
        if id in self.claims or id in self.facts:
            raise ValueError(f"fact {id!r} is declared twice")
        if not isinstance(source, Source):
            raise TypeError(f"fact {id!r}: source must be made with record.paper(...) or record.goal()")
        (value, expected), tol = _finite(f"fact {id!r}", [value, expected]), float(tol)
        if not 0 <= tol < math.inf:
            raise ValueError(f"fact {id!r}: tol must be finite and >= 0, got {tol!r}")
        holds = abs(value - expected) <= tol
        self.facts[id] = {"id": id, "text": text, "source": source.to_json(), "unit": unit, "value": value,
                          "expected": expected, "tol": tol, "holds": holds, "note": note}
        return holds

    # -- observing -------------------------------------------------------------------------------------
    def observe(self, id: str, values: float | Iterable[float], *, groups: Sequence[Any] | None = None,
                rests_on: Mapping[str, bool] | None = None, note: str | None = None) -> str:
        """Give our values for a declared claim, one per unit of replication (or, with ``groups``, several per
        unit: they are averaged within each group first). ``rests_on``: what the values depend on and whether it
        held (``{"every L3 fit converged": False}`` makes the claim inconclusive). Values outside the claim's
        range raise ``ValueError``. Returns the raw verdict (the final one needs the whole family: Holm)."""
        claim = self._claim_to_observe(id)
        vals = [values] if isinstance(values, int | float) or hasattr(values, "ndim") and values.ndim == 0 \
            else list(values)
        xs = _finite(f"claim {id!r}", vals)
        if not xs:
            raise ValueError(f"claim {id!r}: no values")
        lo, hi = _range_of(claim["range"])
        bad = [v for v in xs if not lo <= v <= hi]
        if bad:
            raise ValueError(f"claim {id!r}: values {bad[:3]} lie outside the declared range [{lo:g}, {hi:g}]")
        units, names = (xs, None) if groups is None else group_means(xs, list(groups))
        ours: dict[str, Any] = {"values": xs, "groups": None if groups is None else [str(g) for g in groups],
                                "units": units, "unit_names": names, "n": len(units)}
        ours["replicates"] = None
        if len(units) >= MIN_UNITS:
            try:
                ours.update(interval(units, self._rules[id], claim["interval"], (lo, hi)))
            except ValueError as e:
                raise ValueError(f"claim {id!r}: {e}") from None
        else:
            ours.update(estimate=float(np.mean(units)), std=None, ci_low=None, ci_high=None, interval=None,
                        p_yes=None, p_no=None)
        return self._decide(id, ours, rests_on, note)

    def observe_replicates(self, id: str, estimate: float, replicates: Sequence[float], n_units: int, *,
                           rests_on: Mapping[str, bool] | None = None, note: str | None = None) -> str:
        """Give a statistic that is not a mean over units (R^2 of a fit over its runs, a refitted optimum) with the
        bootstrap distribution the caller drew over ``n_units`` independent units (resampled with replacement).
        Returns the raw verdict."""
        claim = self._claim_to_observe(id)
        (est,) = _finite(f"claim {id!r}", [estimate])
        if isinstance(n_units, bool) or not isinstance(n_units, int | np.integer) or n_units < 1:
            raise ValueError(f"claim {id!r}: n_units must be a positive integer, got {n_units!r}")
        lo, hi = _range_of(claim["range"])
        if not lo <= est <= hi:
            raise ValueError(f"claim {id!r}: estimate {est} lies outside the declared range [{lo:g}, {hi:g}]")
        ours: dict[str, Any] = {"values": [est], "groups": None, "units": None, "unit_names": None, "n": int(n_units)}
        if n_units >= MIN_UNITS:
            reps = np.asarray(replicates, float)
            if reps.size and np.isfinite(reps).all() and not (reps.min() >= lo and reps.max() <= hi):
                raise ValueError(f"claim {id!r}: replicates lie outside the declared range [{lo:g}, {hi:g}]")
            ours.update(replicate_interval(est, replicates, self._rules[id], (lo, hi)))
        else:
            ours.update(estimate=est, std=None, ci_low=None, ci_high=None, interval=None, p_yes=None, p_no=None,
                        replicates=None)
        return self._decide(id, ours, rests_on, note)

    def _claim_to_observe(self, id: str) -> dict[str, Any]:
        if id not in self.claims:
            raise KeyError(f"claim {id!r} was not declared; declared: {', '.join(self.claims) or 'none'}")
        if self.claims[id]["ours"] is not None:
            raise ValueError(f"claim {id!r} was observed already")
        return self.claims[id]

    def _decide(self, id: str, ours: dict[str, Any], rests_on: Mapping[str, bool] | None, note: str | None) -> str:
        if rests_on is not None and not isinstance(rests_on, Mapping):
            raise TypeError(f"claim {id!r}: rests_on must map what the values rest on to True/False, got {rests_on!r}")
        bad = {k: v for k, v in (rests_on or {}).items() if not isinstance(v, bool | np.bool_)}
        if bad:
            raise TypeError(f"claim {id!r}: rests_on values must be True or False, got {bad!r}")
        if note is not None and not isinstance(note, str):
            raise TypeError(f"claim {id!r}: note must be a str, got {type(note).__name__}")
        deps = [{"what": str(k), "ok": bool(v)} for k, v in (rests_on or {}).items()]
        claim = self.claims[id]
        claim.update(ours=ours, rests_on=deps, note=note)
        claim["verdict_raw"], claim["reason"] = raw_verdict(claim, self._rules[id])
        return claim["verdict_raw"]

    def add_seeds(self, seeds: Iterable[int]) -> None:
        """Add seeds that claims' values come from (replicate runs, data seeds) to the results' ``seeds``."""
        new = list(seeds)
        if not all(isinstance(x, int | np.integer) and not isinstance(x, bool) and x >= 0 for x in new):
            raise TypeError(f"seeds must be non-negative integers, got {new!r}")
        self.seeds = sorted(set(self.seeds) | {int(x) for x in new})

    def value(self, name: str, value: Any, *, unit: str | None = None, note: str | None = None) -> None:
        """Record a named result that is not a claim (a count, a fitted parameter, a timing)."""
        self.values[name] = {"value": _jsonable(value), "unit": unit, "note": note}

    # -- output ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The results document (schema version 2): everything recorded, the final verdicts after Holm's
        adjustment, and the run's provenance (git, package versions, machine)."""
        now = _dt.datetime.now(_dt.UTC)
        claims = copy.deepcopy(list(self.claims.values()))  # the document never aliases the recorder's state
        holm(claims)
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
            "git": git_state(),
            "versions": package_versions(),
            "machine": machine_info(),
            "values": copy.deepcopy(self.values),
            "claims": claims,
            "facts": copy.deepcopy(list(self.facts.values())),
        }

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Validate and write ``<folder>/<notebook>.json`` atomically (folder: :func:`paths.results_dir`)."""
        doc = self.to_json()
        validate(doc)
        path = Path(folder or paths.results_dir()) / f"{self.notebook}.json"
        paths.atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return path

    def markdown(self, template: str):
        """``template`` with ``{name}`` fields filled from the recorded values (``{grid_runs}``,
        ``{fit_code_domain_L3[R2]:.3f}``), as IPython Markdown: prose that states a result is written from the
        record, never typed. ``KeyError`` naming a field that was not recorded."""
        from IPython.display import Markdown

        vals = {k: v["value"] for k, v in self.values.items()}
        try:
            return Markdown(template.format_map(vals))
        except KeyError as e:
            raise KeyError(f"markdown: {e.args[0]!r} is not a recorded value (recorded: {', '.join(vals)})") from None

    def verdicts(self):
        """Every claim's verdict in a sentence, as IPython Markdown (:func:`verdicts_markdown`)."""
        from IPython.display import Markdown

        return Markdown(verdicts_markdown(self.to_json()))

    def _repr_html_(self) -> str:
        return results_html(self.to_json())


def start(notebook: str, **kwargs: Any) -> Recorder:
    """Begin recording a notebook run; see :class:`Recorder`."""
    return Recorder(notebook, **kwargs)


# -- verdicts ------------------------------------------------------------------------------------------
def raw_verdict(claim: dict[str, Any], rule: Rule | None = None) -> tuple[str, str]:
    """The verdict before the family's adjustment, and why: steps 2-5 of the module's rules."""
    ours = claim["ours"]
    if ours is None:
        return "inconclusive", "not measured"
    if ours["n"] < MIN_UNITS:
        return "inconclusive", f"n < {MIN_UNITS}"
    failed = [d["what"] for d in claim["rests_on"] if not d["ok"]]
    if failed:
        return "inconclusive", "rests on what failed: " + "; ".join(failed)
    if ours["std"] == 0 and not str((ours.get("interval") or {}).get("method", "")).startswith("binomial"):
        return "inconclusive", "no spread among the units (all equal): no interval can be estimated from them"
    if ours["units"] is None and ours["n"] < BOOTSTRAP_MIN_UNITS:
        return "inconclusive", (f"a bootstrapped statistic over fewer than {BOOTSTRAP_MIN_UNITS} units: its "
                                "percentile interval covers too little")
    rule = rule or _rule_of(claim)
    v = rule.decide(ours["ci_low"], ours["ci_high"])
    p = ours["p_yes"] if v == "reproduced" else ours["p_no"] if v == "not reproduced" else None
    if p is not None and p > rule.alpha:  # a percentile bound resolved by too few resamples to carry the decision
        return "inconclusive", f"too few bootstrap resamples to decide at {rule.confidence:.0%} (p = {p:.3g})"
    return v, "the interval lies on the claimed side" if v == "reproduced" else \
        "the interval lies on the other side" if v == "not reproduced" else "the interval straddles the threshold"


def _rule_of(claim: dict[str, Any]) -> Rule:
    r = claim["rule"]
    return Rule(r["kind"], r["low"], r["high"], r["confidence"])


def decision_p(claim: dict[str, Any]) -> float | None:
    """The p-value of a claim's raw decision (None when no test was made: not measured, n < 3, units without
    spread, a bootstrapped statistic over too few units, or resting on a failure): p_yes for "reproduced", p_no
    for "not reproduced", the smaller of the two when the interval straddles the threshold."""
    ours = claim["ours"]
    if ours is None or ours.get("p_yes") is None:
        return None
    v, reason = raw_verdict(claim)
    if not reason.startswith(("the interval", "too few bootstrap")):  # no test was made: n < 3, no spread, ...
        return None
    return ours["p_yes"] if v == "reproduced" else ours["p_no"] if v == "not reproduced" else \
        min(ours["p_yes"], ours["p_no"])


def holm(claims: list[dict[str, Any]]) -> None:
    """Adjust the notebook's family of tested claims by Holm's step-down procedure (statsmodels), in place:
    each claim gets ``p``, ``p_holm``, the final ``verdict`` and its ``reason``."""
    from statsmodels.stats.multitest import multipletests

    tested = [c for c in claims if decision_p(c) is not None]
    adjusted = multipletests([decision_p(c) for c in tested], method="holm")[1] if tested else []
    for c in claims:
        c["p"] = c["p_holm"] = None
        c["verdict"] = c["verdict_raw"]
    for c, p_adj in zip(tested, adjusted, strict=True):
        c["p"], c["p_holm"] = float(decision_p(c)), float(p_adj)
        alpha = _rule_of(c).alpha
        if c["verdict_raw"] != "inconclusive" and not p_adj <= alpha:
            c["verdict"] = "inconclusive"
            c["reason"] = (f"{c['verdict_raw']} alone, but not after Holm's adjustment over {len(tested)} "
                           f"claim{'s' if len(tested) != 1 else ''} "
                           f"(p = {c['p']:.3g}, adjusted {p_adj:.3g} > {alpha:g})")


# -- schema and re-derivation --------------------------------------------------------------------------
def load_schema() -> dict[str, Any]:
    """The results JSON Schema (``schemas/results.schema.json``) as a dict."""
    return json.loads(SCHEMA_PATH.read_text())


SCHEMA_PATH = Path(__file__).with_name("schemas") / "results.schema.json"


def validate(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` breaks the results schema, or when a verdict (raw or after
    Holm), an interval computed here from stored units, or a fact differs from what the rules derive again."""
    import jsonschema

    if doc.get("schema_version") != SCHEMA_VERSION:
        raise jsonschema.ValidationError(f"schema_version {doc.get('schema_version')!r}: these results were recorded "
                                         f"under other rules; run the notebook again (version {SCHEMA_VERSION})")
    jsonschema.validate(doc, load_schema())
    try:
        _rederive(doc)
    except jsonschema.ValidationError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as e:  # a field edited into a shape the rules cannot read
        raise jsonschema.ValidationError(f"cannot derive the verdicts again: {type(e).__name__}: {e}") from None


def _rederive(doc: dict[str, Any]) -> None:
    import jsonschema

    fail = jsonschema.ValidationError
    ids = [c["id"] for c in doc["claims"]] + [f["id"] for f in doc["facts"]]
    if len(set(ids)) != len(ids):
        raise fail(f"ids used twice among claims and facts: {sorted({i for i in ids if ids.count(i) > 1})}")
    for item in doc["claims"] + doc["facts"]:
        src = item["source"]
        Source(src["kind"], src["ref"], src["value"], src["note"])  # a goal with a paper value, a paper without ref
    for c in doc["claims"]:
        rule, ours = _rule_of(c), c["ours"]
        if c["rule"]["text"] != rule.describe():
            raise fail(f"claim {c['id']!r}: the rule's words {c['rule']['text']!r} are not its rule ({rule.describe()!r})")
        lo, hi = _range_of(c["range"])
        rule.check_range(lo, hi, c["id"])
        if ours is not None:
            shown = ours["units"] if ours["units"] is not None else ours["values"]
            if any(not lo <= v <= hi for v in shown):
                raise fail(f"claim {c['id']!r}: values outside the declared range [{lo:g}, {hi:g}]")
            if ours["units"] is not None:
                want = ours["values"] if ours["groups"] is None else group_means(ours["values"], ours["groups"])[0]
                if len(want) != len(ours["units"]) or not np.allclose(want, ours["units"], rtol=1e-12, atol=0):
                    raise fail(f"claim {c['id']!r}: its units are not the group means of its values")
                if ours["n"] != len(ours["units"]):
                    raise fail(f"claim {c['id']!r}: n = {ours['n']} but {len(ours['units'])} units are stored")
            again = None
            if ours["units"] is not None and ours["n"] >= MIN_UNITS:
                again = interval(ours["units"], rule, c["interval"], (lo, hi))
            elif ours["units"] is None and ours["n"] >= MIN_UNITS:
                if ours["replicates"] is None:
                    raise fail(f"claim {c['id']!r}: a bootstrapped statistic without its replicates")
                again = replicate_interval(ours["estimate"], ours["replicates"], rule, (lo, hi))
            if again is not None:
                for k in ("estimate", "std", "ci_low", "ci_high", "p_yes", "p_no"):
                    if not math.isclose(again[k], ours[k], rel_tol=1e-9, abs_tol=1e-12):
                        raise fail(f"claim {c['id']!r}: {k} {ours[k]!r} is not what its units give ({again[k]!r})")
                if again["interval"]["method"] != ours["interval"]["method"]:
                    raise fail(f"claim {c['id']!r}: interval method {ours['interval']['method']!r}, the rules give "
                               f"{again['interval']['method']!r}")
        expect, reason = raw_verdict(c, rule)
        if c["verdict_raw"] != expect:
            raise fail(f"claim {c['id']!r}: raw verdict {c['verdict_raw']!r}, its rule gives {expect!r}")
    again = copy.deepcopy(doc["claims"])
    for a in again:
        a["reason"] = raw_verdict(a)[1]
    holm(again)
    for c, a in zip(doc["claims"], again, strict=True):
        if c["verdict"] != a["verdict"] or c["p_holm"] != a["p_holm"] or c["p"] != a["p"]:
            raise fail(f"claim {c['id']!r}: verdict {c['verdict']!r} (Holm p {c['p_holm']}), Holm's procedure over the "
                       f"notebook's claims gives {a['verdict']!r} (p {a['p_holm']})")
        if c["reason"] != a["reason"]:
            raise fail(f"claim {c['id']!r}: reason {c['reason']!r}, the rules give {a['reason']!r}")
    for f in doc["facts"]:
        if f["holds"] != (abs(f["value"] - f["expected"]) <= f["tol"]):
            raise fail(f"fact {f['id']!r}: holds = {f['holds']}, its value and tolerance say otherwise")


# -- rendering shared by notebooks, the index and the README scorecard ----------------------------------
def fmt_number(x: Any) -> str:
    """A number for tables: floats to 4 significant digits, None as "–", anything else as str."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def fmt_ours(ours: dict[str, Any] | None, unit: str | None = None) -> str:
    """``estimate [ci_low, ci_high] (n=…)``; below 3 units the values themselves, marked ``n=2 < 3``."""
    if ours is None:
        return "not measured"
    u = f" {unit}" if unit else ""
    if ours.get("ci_low") is None:
        shown = ", ".join(fmt_number(v) for v in (ours["units"] or ours["values"]))
        return f"{shown}{u} (n={ours['n']} < {MIN_UNITS})"
    return (f"{fmt_number(ours['estimate'])}{u} [{fmt_number(ours['ci_low'])}, {fmt_number(ours['ci_high'])}] "
            f"(n={ours['n']})")


def fmt_source(item: dict[str, Any]) -> str:
    """The paper's number and where it is printed, or the reference alone, or "workbook goal"."""
    s = item["source"]
    if s["kind"] == "workbook goal":
        return "workbook goal"
    unit = f" {item['unit']}" if item.get("unit") and s["value"] is not None else ""
    value = f"{fmt_number(s['value'])}{unit} " if s["value"] is not None else ""
    return f"{value}({s['ref']})" + (f"; {s['note']}" if s.get("note") else "")


def fmt_verdict(claim: dict[str, Any]) -> str:
    """The final verdict with why when it is inconclusive: ``inconclusive (n < 3)``."""
    v = claim["verdict"]
    if v != "inconclusive" or claim["reason"].startswith("the interval"):
        return v
    short = claim["reason"].split(" (p = ")[0] if claim["verdict_raw"] != "inconclusive" else claim["reason"]
    return f"inconclusive ({short})"


def claim_text(claim: dict[str, Any], machine: dict[str, Any] | None = None) -> str:
    """The claim's sentence, with the machine named when its verdict depends on the hardware."""
    if not claim.get("hardware"):
        return claim["text"]
    from .machine import machine_label

    on = f": measured on {machine_label(machine)}" if machine else ""
    return f"{claim['text']} [verdict depends on the hardware{on}]"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def claims_html(claims: list[dict[str, Any]], machine: dict[str, Any] | None = None) -> str:
    """One table of claims as an HTML fragment: source, unit of replication, our interval, the rule, the raw and
    the Holm-adjusted decision. ``machine``: the results' machine, named beside claims whose verdict depends on
    the hardware (this machine when None)."""
    if not claims:
        return "<p><em>None recorded.</em></p>"
    rows = []
    for c in claims:
        final = c["verdict"].replace(" ", "-")
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(c['id'])}</code></td>"
            f"<td>{html.escape(claim_text(c, machine or machine_info()))}</td>"
            f"<td>{html.escape(fmt_source(c))}</td>"
            f"<td>{html.escape(c['unit_of_replication'])}</td>"
            f"<td>{html.escape(fmt_ours(c['ours'], c.get('unit')))}</td>"
            f"<td>{html.escape(c['rule']['text'])}</td>"
            f"<td class=\"verdict {c['verdict_raw'].replace(' ', '-')}\">{html.escape(c['verdict_raw'])}"
            f"<br><small>p = {_p(c['p'])}</small></td>"
            f"<td class=\"verdict {final}\">{html.escape(fmt_verdict(c))}<br><small>p = {_p(c['p_holm'])}</small></td>"
            "</tr>"
        )
    head = ("<tr><th>id</th><th>claim</th><th>source</th><th>unit of replication</th><th>ours</th><th>rule</th>"
            "<th>raw decision</th><th>after Holm</th></tr>")
    return f'<table class="claims">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def facts_html(facts: list[dict[str, Any]]) -> str:
    """The facts of the design as an HTML fragment: value, expected value, and whether it holds exactly."""
    if not facts:
        return "<p><em>None recorded.</em></p>"
    rows = [f"<tr><td><code>{html.escape(f['id'])}</code></td><td>{html.escape(f['text'])}</td>"
            f"<td>{html.escape(fmt_source(f))}</td><td>{fmt_number(f['value'])}</td><td>{fmt_number(f['expected'])}"
            f"{' ± ' + fmt_number(f['tol']) if f['tol'] else ''}</td>"
            f"<td class=\"verdict {'reproduced' if f['holds'] else 'not-reproduced'}\">"
            f"{'holds' if f['holds'] else 'does not hold'}</td></tr>" for f in facts]
    head = "<tr><th>id</th><th>fact</th><th>source</th><th>value</th><th>expected</th><th>check</th></tr>"
    return f'<table class="facts">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def split_claims(claims: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The paper's claims and the workbook's goals, in their recorded order."""
    return ([c for c in claims if c["source"]["kind"] == "paper"],
            [c for c in claims if c["source"]["kind"] == "workbook goal"])


def results_html(doc: dict[str, Any]) -> str:
    """A results document's claims of the paper, workbook goals and facts, each under its own heading."""
    papers, goals = split_claims(doc.get("claims", []))
    m = doc.get("machine")
    n = sum(c["p_holm"] is not None for c in doc.get("claims", []))
    note = (f"<p><small>A verdict needs at least {MIN_UNITS} independent units. Holm's adjustment runs over the "
            f"{n} claims this notebook tested (paper claims and goals together).</small></p>")
    return (f"<h4>Claims of the paper</h4>\n{claims_html(papers, m)}\n<h4>Workbook goals</h4>\n{claims_html(goals, m)}"
            f"\n<h4>Facts: exact quantities, checked, not tested statistically</h4>\n{facts_html(doc.get('facts', []))}"
            "\n" + note)


def verdicts_markdown(doc: dict[str, Any]) -> str:
    """Every claim's result in a sentence, from the recorded values only (a notebook shows it where it would
    otherwise type the numbers): ``- **id** (paper, Table 5): text. Ours: 0.04 [0.01, 0.08] (n=3),
    one value per seed; reproduced (Holm p = 0.004).``"""
    lines = []
    for c in doc.get("claims", []):
        src = "workbook goal" if c["source"]["kind"] == "workbook goal" else f"paper, {c['source']['ref']}"
        p = f" (Holm p = {_p(c['p_holm'])})" if c["p_holm"] is not None else ""
        lines.append(f"- **{c['id']}** ({src}): {claim_text(c, doc.get('machine'))}. Ours: "
                     f"{fmt_ours(c['ours'], c.get('unit'))}, one value per {c['unit_of_replication']}; **{fmt_verdict(c)}**{p}.")
    for f in doc.get("facts", []):
        lines.append(f"- **{f['id']}** (fact): {f['text']}: {fmt_number(f['value'])} against "
                     f"{fmt_number(f['expected'])}, {'holds' if f['holds'] else 'does not hold'}.")
    return "\n".join(lines)
