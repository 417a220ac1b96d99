"""Error-induced downtime of a large training job, before and after C4D: a Monte Carlo over simulated
months and its renewal-reward expectation.

Paper: Dong et al., "C4" (HPCA 2025, arXiv 2406.04594). Card ``shared/papers/c4.md``: §4 "Isolation
and restart flow" and "Downtime accounting", §8 "Simulation B" and claim C4D-4. The paper reports
(card tag [V, secondary]) that error-induced downtime fell from 31.19 % to 1.16 % of job time after C4D
was deployed; the card asks for the *shape* (tens of percent -> about 1-2 %) from stated inputs, not
the exact value. Every default number below is an assumption of this workbook, not the paper's.

The model (card §4, "Isolation and restart flow"): a job on ``nodes`` nodes computes; a fault on any
node stops it (failures form a Poisson process of rate ``Lambda = nodes * lambda`` per hour while the
job's processes run). The fault is *detected* (a watchdog timeout, or C4D), *diagnosed and isolated*
(the faulty node cordoned, a spare joins), the job *re-initialises* (tear-down, start-up, checkpoint
load) and resumes from its latest checkpoint, so the work done since that checkpoint is *re-computed*.
Wall time of a job of length ``T`` hours therefore splits into useful compute and the four downtime
categories of the paper's breakdown::

    T = useful + recomputation + detection + diagnosis_isolation + reinitialisation
    downtime share = (recomputation + detection + diagnosis_isolation + reinitialisation) / T

Timeline, simulated exactly (not as "half an interval per failure"):

- checkpoints are taken every ``checkpoint_interval_h`` hours of compute counted from the latest
  (re)start, because a restart resumes *at* a checkpoint; writing one costs no time (checkpoint
  overhead is not error-induced and is left out);
- a failure after ``x`` hours of compute since the restart loses ``x mod checkpoint_interval_h``;
- every fault is treated as a hang: no progress between the fault and the restart;
- failures strike while the job's processes run: during compute and during re-initialisation. A failure
  during re-initialisation aborts it (the time spent counts as re-initialisation, nothing is lost) and
  starts a new detection, diagnosis and re-initialisation. While the job is already stopped (detection,
  diagnosis), a fault on another node is assumed to be found by the same diagnosis and repaired by the
  same isolation: it costs nothing extra (an optimistic simplification);
- the month ends at ``T`` wherever the job is: a phase running at ``T`` counts up to ``T``, and compute
  since the last checkpoint at ``T`` counts as useful (the job goes on after the month).

Units: rates per node-hour, job length and checkpoint interval in hours (``_h``), the short phases in
seconds (``_s``, as measured); every output is in hours (``_h``) or a share of the job's wall time.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORIES",
    "DowntimeInputs",
    "DowntimeResult",
    "before_c4d",
    "with_c4d",
    "simulate",
    "expected_lost_work_h",
    "renewal_reward_shares",
    "sweep",
    "LLAMA3_FAILURE_RATE_PER_NODE_H",
    "WATCHDOG_TIMEOUT_S",
    "MANUAL_DIAGNOSIS_S",
    "C4D_DETECTION_S",
    "C4D_DIAGNOSIS_S",
    "REINIT_S",
    "NODES",
    "MONTH_H",
    "CHECKPOINT_INTERVAL_H",
]

#: The paper's downtime breakdown (card §4, "Downtime accounting"), in the order time is spent.
CATEGORIES: tuple[str, ...] = ("recomputation", "detection", "diagnosis_isolation", "reinitialisation")

# ---------------------------------------------------------------------------------------------------------
# Default assumptions of this workbook (none of them is the paper's number; see before_c4d / with_c4d)
# ---------------------------------------------------------------------------------------------------------

#: 128 nodes x 8 GPUs = 1,024 GPUs: one HPN segment under C4 (card §3, [V, secondary]).
NODES = 128
#: 30 days of wall time.
MONTH_H = 30 * 24.0
#: Job-stopping failures per node-hour: Llama 3's 405B run saw 419 unexpected interruptions in a 54-day
#: snapshot on 16,384 H100 GPUs = 2,048 nodes of 8 (Llama 3 report, as summarised by DatacenterDynamics);
#: 419 / (54 * 24 * 2048) = 1.58e-4. At 128 nodes: about 14.6 failures per 30-day month.
LLAMA3_FAILURE_RATE_PER_NODE_H = 419 / (54 * 24 * 2048)
#: One checkpoint per hour of compute.
CHECKPOINT_INTERVAL_H = 1.0
#: Before C4D a hang is noticed only when the collective watchdog times out: 30 min, the default of
#: ``torch.distributed`` (``default_pg_timeout``) and the Ray Train NCCL-hang guide's figure (card §4).
WATCHDOG_TIMEOUT_S = 30 * 60.0
#: Before C4D, diagnosis and isolation by hand took "hours to days" (card §4, [V: rajatbisht brief]):
#: modelled as log-uniform from 1 hour to 2 days, 101 evenly log-spaced quantiles (mean about 12.3 h).
MANUAL_DIAGNOSIS_S: tuple[float, ...] = tuple(float(v) for v in np.geomspace(3600.0, 48 * 3600.0, 101))
#: C4D's detection delay when no measured samples are given: "tens of seconds" (card §4, [V, secondary]).
C4D_DETECTION_S = 30.0
#: C4D's localisation and the automated cordon/spare hand-over: tens of seconds (card §4).
C4D_DIAGNOSIS_S = 30.0
#: Re-initialisation (tear-down, spare joins, start-up, communicator set-up, checkpoint load) of a
#: 1,024-GPU job: 15 min. The same in both scenarios: C4D does not shorten it (card §4).
REINIT_S = 15 * 60.0

_MAX_EXPECTED_FAILURES = 1e5  # the simulation loops once per failure: refuse inputs that would not finish


# ---------------------------------------------------------------------------------------------------------
# Argument checks: ValueError / TypeError whose message starts with the field's name
# ---------------------------------------------------------------------------------------------------------

def _is_real(x: Any) -> bool:
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x[()]
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _real(name: str, x: Any, *, positive: bool = False) -> float:
    """A finite real >= 0 (> 0 when ``positive``)."""
    if not _is_real(x):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {v!r}")
    return v


def _count(name: str, x: Any) -> int:
    """An integer >= 1."""
    if not isinstance(x, numbers.Integral) or isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__} {x!r}")
    if x < 1:
        raise ValueError(f"{name} must be >= 1, got {x!r}")
    return int(x)


def _duration(name: str, x: Any) -> float | tuple[float, ...]:
    """A constant duration >= 0, or a non-empty 1-D collection of samples >= 0 (kept as a tuple)."""
    if _is_real(x):
        return _real(name, x)
    if isinstance(x, str | bytes) or not isinstance(x, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a number or a 1-D array of samples, got {type(x).__name__}")
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must hold real numbers ({e})") from None
    if a.ndim != 1:
        raise ValueError(f"{name} samples must be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} samples must not be empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} samples must be finite, got {int((~np.isfinite(a)).sum())} NaN or inf")
    if (a < 0).any():
        raise ValueError(f"{name} samples must be >= 0, got minimum {a.min()!r}")
    return tuple(a.tolist())


# ---------------------------------------------------------------------------------------------------------
# Inputs and the two scenarios
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DowntimeInputs:
    """Inputs of the downtime model (card §4 "Isolation and restart flow", §8 "Simulation B").

    A duration given as samples is drawn from their empirical distribution (each failure draws anew);
    a number is a constant. Samples are kept as a tuple so that inputs stay hashable and comparable.

    Raises ``ValueError`` (a value out of range, NaN, infinite, an empty sample array) or ``TypeError``
    (a value of the wrong kind), the message starting with the field's name.
    """

    #: number of nodes the job runs on (e.g. 128 nodes x 8 GPUs); a failed node is replaced by a spare
    nodes: int
    #: job-stopping failures per node per hour of the job's processes running (lambda); 0 allowed
    failure_rate_per_node_h: float
    #: wall time simulated per replicate, in hours (a month: 720)
    job_length_h: float
    #: hours of compute between checkpoints, counted from the latest (re)start; > 0 and finite
    checkpoint_interval_h: float
    #: seconds from the fault to its detection: a constant or samples (e.g. C4D's measured delays)
    detection_s: float | tuple[float, ...]
    #: seconds from detection to the faulty node isolated (localise, cordon, spare in): constant or samples
    diagnosis_s: float | tuple[float, ...]
    #: seconds to re-initialise the job and load the checkpoint, constant
    reinit_s: float

    def __post_init__(self) -> None:
        checked = {
            "nodes": _count("nodes", self.nodes),
            "failure_rate_per_node_h": _real("failure_rate_per_node_h", self.failure_rate_per_node_h),
            "job_length_h": _real("job_length_h", self.job_length_h, positive=True),
            "checkpoint_interval_h": _real("checkpoint_interval_h", self.checkpoint_interval_h, positive=True),
            "detection_s": _duration("detection_s", self.detection_s),
            "diagnosis_s": _duration("diagnosis_s", self.diagnosis_s),
            "reinit_s": _real("reinit_s", self.reinit_s),
        }
        for k, v in checked.items():
            object.__setattr__(self, k, v)
        expected = self.job_failure_rate_h * self.job_length_h
        if expected > _MAX_EXPECTED_FAILURES:
            raise ValueError(f"failure_rate_per_node_h: nodes * rate * job_length_h = {expected:.3g} expected "
                             f"failures per job, more than {_MAX_EXPECTED_FAILURES:.0e} (the simulation "
                             "steps once per failure)")

    @property
    def job_failure_rate_h(self) -> float:
        """Lambda = nodes * lambda: failures of the whole job per hour of running."""
        return self.nodes * self.failure_rate_per_node_h

    @property
    def mean_detection_h(self) -> float:
        """Mean detection delay, hours."""
        return float(np.mean(self.detection_s)) / 3600.0

    @property
    def mean_diagnosis_h(self) -> float:
        """Mean diagnosis and isolation time, hours."""
        return float(np.mean(self.diagnosis_s)) / 3600.0

    @property
    def reinit_h(self) -> float:
        """Re-initialisation time, hours."""
        return self.reinit_s / 3600.0

    def replace(self, **changes: Any) -> DowntimeInputs:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)


def before_c4d(*, nodes: int = NODES, failure_rate_per_node_h: float = LLAMA3_FAILURE_RATE_PER_NODE_H,
               job_length_h: float = MONTH_H, checkpoint_interval_h: float = CHECKPOINT_INTERVAL_H,
               detection_s: float | Sequence[float] = WATCHDOG_TIMEOUT_S,
               diagnosis_s: float | Sequence[float] = MANUAL_DIAGNOSIS_S,
               reinit_s: float = REINIT_S) -> DowntimeInputs:
    """The scenario before C4D (card §4): hangs and slow-downs are noticed only when the collective
    watchdog times out, then diagnosed and isolated by hand.

    Defaults, all assumptions of this workbook (module constants): 128 nodes (one 1,024-GPU segment,
    card §3); 1.58e-4 failures per node-hour (Llama 3's 419 unexpected interruptions in 54 days on 2,048
    nodes); a 720-hour month; hourly checkpoints; a 30-minute watchdog (``torch.distributed``'s default
    process-group timeout, and the Ray Train guide's figure cited in card §4; pass ``600.0`` for a
    10-minute timeout); manual diagnosis log-uniform from 1 hour to 2 days ("hours to days", card §4);
    15 minutes of re-initialisation. Every value can be overridden. Raises as :class:`DowntimeInputs`.
    """
    return DowntimeInputs(nodes=nodes, failure_rate_per_node_h=failure_rate_per_node_h,
                          job_length_h=job_length_h, checkpoint_interval_h=checkpoint_interval_h,
                          detection_s=detection_s, diagnosis_s=diagnosis_s, reinit_s=reinit_s)


def with_c4d(detection_s_samples: float | Sequence[float] = C4D_DETECTION_S, *, nodes: int = NODES,
             failure_rate_per_node_h: float = LLAMA3_FAILURE_RATE_PER_NODE_H, job_length_h: float = MONTH_H,
             checkpoint_interval_h: float = CHECKPOINT_INTERVAL_H,
             diagnosis_s: float | Sequence[float] = C4D_DIAGNOSIS_S, reinit_s: float = REINIT_S) -> DowntimeInputs:
    """The scenario with C4D (card §4): detection from C4D's delays, seconds of automated localisation
    and isolation, automated restart.

    ``detection_s_samples``: C4D's detection delays in seconds, e.g. those measured in the notebook's
    fault-injection trials *at production iteration time* (delays measured on a toy job with 50 ms
    iterations must be rescaled by the iteration-time ratio first); default 30 s ("tens of seconds",
    card §4). Other defaults as :func:`before_c4d`, with 30 s of diagnosis and isolation; the failure
    rate, checkpoints and re-initialisation are the same in both scenarios, because C4D shortens only
    detection and diagnosis (card §4). All assumptions of this workbook; all can be overridden.
    Raises as :class:`DowntimeInputs` (the field is then named ``detection_s``).
    """
    return DowntimeInputs(nodes=nodes, failure_rate_per_node_h=failure_rate_per_node_h,
                          job_length_h=job_length_h, checkpoint_interval_h=checkpoint_interval_h,
                          detection_s=detection_s_samples, diagnosis_s=diagnosis_s, reinit_s=reinit_s)


# ---------------------------------------------------------------------------------------------------------
# The analytic expectation (renewal reward), the test oracle
# ---------------------------------------------------------------------------------------------------------

def expected_lost_work_h(job_failure_rate_h: float, checkpoint_interval_h: float) -> float:
    """Expected compute lost at a failure, hours, when compute until the failure is X ~ Exp(Lambda)
    and checkpoints fall every tau hours of compute from the restart (card §4, re-computation)::

        E[X mod tau] = 1/Lambda - tau / (exp(Lambda tau) - 1)      (-> tau/2 - Lambda tau^2 / 12 as Lambda tau -> 0)

    Raises ``ValueError`` / ``TypeError`` naming the argument (rate < 0, interval <= 0, NaN, inf).
    """
    lam = _real("job_failure_rate_h", job_failure_rate_h)
    tau = _real("checkpoint_interval_h", checkpoint_interval_h, positive=True)
    z = lam * tau
    if z < 1e-4:  # series: avoids the cancellation of 1/Lambda - tau/expm1(z) for a tiny z
        return tau / 2 - lam * tau**2 / 12
    return 1 / lam - tau / math.expm1(z)


def renewal_reward_shares(inputs: DowntimeInputs) -> dict[str, float]:
    """Long-run expected share of wall time in each downtime category, and their sum ``"downtime"``
    (renewal-reward theorem; card §4 "Downtime accounting", §8 C4D-4).

    A renewal cycle runs from one start of compute to the next: compute until a failure, X ~ Exp(Lambda),
    then rounds of detection + diagnosis + re-initialisation until a re-initialisation of R hours is not
    hit by a failure (probability exp(-Lambda R), so exp(Lambda R) rounds on average)::

        E[recomputation] = E[X mod tau]                   (expected_lost_work_h)
        E[detection]     = exp(Lambda R) * mean detection
        E[diagnosis]     = exp(Lambda R) * mean diagnosis
        E[reinit]        = (exp(Lambda R) - 1) / Lambda   (failed attempts' time plus the last R)
        E[cycle]         = 1/Lambda + E[detection] + E[diagnosis] + E[reinit]
        share_c          = E[c] / E[cycle]

    This is the limit as the job length grows: a finite job that starts fresh sits a little below it
    (bias of order E[cycle] / job_length_h). Zero failure rate gives zero shares. Hours throughout.
    """
    lam = inputs.job_failure_rate_h
    if lam == 0:
        return dict.fromkeys((*CATEGORIES, "downtime"), 0.0)
    r = inputs.reinit_h
    rounds = math.exp(lam * r)  # expected detection/diagnosis/re-initialisation rounds per failure
    hours = {
        "recomputation": expected_lost_work_h(lam, inputs.checkpoint_interval_h),
        "detection": rounds * inputs.mean_detection_h,
        "diagnosis_isolation": rounds * inputs.mean_diagnosis_h,
        "reinitialisation": math.expm1(lam * r) / lam,
    }
    cycle = 1 / lam + hours["detection"] + hours["diagnosis_isolation"] + hours["reinitialisation"]
    shares = {c: h / cycle for c, h in hours.items()}
    shares["downtime"] = sum(shares.values())
    return shares


# ---------------------------------------------------------------------------------------------------------
# The Monte Carlo
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class DowntimeResult:
    """Per-replicate (simulated job, e.g. month) downtime, hours, by category; shape (replicates,) each."""

    inputs: DowntimeInputs
    recomputation_h: np.ndarray  # work lost since the last checkpoint, redone after the restart
    detection_h: np.ndarray  # fault -> detection
    diagnosis_isolation_h: np.ndarray  # detection -> faulty node isolated, spare in
    reinitialisation_h: np.ndarray  # restart -> compute resumes (including aborted attempts)
    failures: np.ndarray  # failures per replicate (during compute or re-initialisation), int

    @property
    def replicates(self) -> int:
        return int(self.failures.shape[0])

    def hours(self) -> dict[str, np.ndarray]:
        """Category -> hours per replicate, shape (replicates,)."""
        return {c: getattr(self, f"{c}_h") for c in CATEGORIES}

    @property
    def downtime_h(self) -> np.ndarray:
        """Error-induced downtime per replicate, hours: the sum of the four categories."""
        return sum(self.hours().values())

    @property
    def downtime_share(self) -> np.ndarray:
        """Error-induced downtime as a share of the job's wall time, per replicate."""
        return self.downtime_h / self.inputs.job_length_h

    def shares(self) -> dict[str, np.ndarray]:
        """Category -> share of wall time per replicate, plus ``"downtime"``, the total."""
        out = {c: h / self.inputs.job_length_h for c, h in self.hours().items()}
        out["downtime"] = self.downtime_share
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per replicate: failures, hours and share of each category and of the total."""
        cols: dict[str, np.ndarray] = {"failures": self.failures}
        for c, h in {**self.hours(), "downtime": self.downtime_h}.items():
            cols[f"{c}_h"] = h
            cols[f"{c}_share"] = h / self.inputs.job_length_h
        return pd.DataFrame(cols)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Per category and for the total (rows): ``mean_h``, ``mean_share``, ``mean_share_se`` (standard
        error of the mean over replicates), ``share_lo`` / ``share_hi`` (the central ``level`` range of
        the share *over replicate jobs*: month-to-month spread, not an interval for the mean) and
        ``expected_share`` (:func:`renewal_reward_shares`). Raises ``ValueError`` if level is not in (0, 1).
        """
        level = _real("level", level, positive=True)
        if level >= 1:
            raise ValueError(f"level must be < 1, got {level!r}")
        expected = renewal_reward_shares(self.inputs)
        q = [(1 - level) / 2, (1 + level) / 2]
        n = self.replicates
        rows = {}
        for c, s in self.shares().items():
            lo, hi = np.quantile(s, q)
            rows[c] = {"mean_h": float(s.mean()) * self.inputs.job_length_h, "mean_share": float(s.mean()),
                       "mean_share_se": float(s.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                       "share_lo": float(lo), "share_hi": float(hi), "expected_share": expected[c]}
        return pd.DataFrame.from_dict(rows, orient="index")


def _quantile_draw(samples: float | tuple[float, ...], u: np.ndarray) -> np.ndarray:
    """Draws from a constant or from the empirical distribution of samples, by inverse CDF of uniforms u
    (so a larger sample set, shifted up, gives path-wise larger draws: common random numbers)."""
    s = np.sort(np.atleast_1d(np.asarray(samples, dtype=float)))  # (m,)
    idx = np.minimum((u * s.size).astype(np.int64), s.size - 1)  # (R,)
    return s[idx]


def simulate(inputs: DowntimeInputs, replicates: int = 2000,
             seed: int | np.random.Generator = 0) -> DowntimeResult:
    """Monte Carlo of error-induced downtime over ``replicates`` independent jobs of
    ``inputs.job_length_h`` hours each (card §8 "Simulation B", claim C4D-4; the timeline of card §4).

    Each step of the loop advances every replicate by one failure: compute until the failure (skipped
    right after an aborted re-initialisation), then detection, diagnosis and isolation, and one
    re-initialisation attempt, which a further failure may abort. Replicates are vectorised; the loop
    runs about (max failures in a replicate) times. Every step draws the same four arrays of random
    numbers whatever the inputs, so two inputs run with one seed share random numbers (common random
    numbers: the k-th failure of replicate i uses the same uniforms), which makes differences between
    inputs much less noisy.

    ``seed``: an int (non-negative) or a ``numpy.random.Generator`` (advanced in place).
    Raises ``TypeError`` if inputs is not :class:`DowntimeInputs`, ``ValueError`` / ``TypeError``
    naming ``replicates`` or ``seed`` when those are bad.
    """
    if not isinstance(inputs, DowntimeInputs):
        raise TypeError(f"inputs must be DowntimeInputs, got {type(inputs).__name__}")
    n = _count("replicates", replicates)
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
        rng = np.random.default_rng(int(seed))

    T = inputs.job_length_h
    lam = inputs.job_failure_rate_h  # Lambda, failures per hour of running
    tau = inputs.checkpoint_interval_h
    r = inputs.reinit_h
    hours = {c: np.zeros(n) for c in CATEGORIES}  # (R,) each
    failures = np.zeros(n, dtype=np.int64)
    t = np.zeros(n)  # wall clock, hours
    alive = np.ones(n, dtype=bool)  # the job's month has not ended yet
    resume_failed = np.zeros(n, dtype=bool)  # the last re-initialisation was aborted: no compute before the next round

    def spend(category: str, duration: np.ndarray) -> None:
        """Spend a phase of ``duration`` hours (R,) in ``category``, cut at the end of the job."""
        nonlocal t, alive
        step = np.where(alive, np.minimum(duration, T - t), 0.0)
        hours[category] += step
        t = t + step
        alive = alive & (t < T)

    while alive.any():
        e_run, e_init = rng.standard_exponential((2, n))  # (R,) each: Exp(1), scaled by 1/Lambda below
        u_det, u_diag = rng.random((2, n))  # (R,) each: uniforms for the duration samples
        if lam == 0:  # no failures: the whole job is compute
            x = np.full(n, np.inf)
            y = np.full(n, np.inf)
        else:
            x = e_run / lam  # compute hours from the (re)start to the next failure
            y = e_init / lam  # re-initialisation hours until a failure would abort it
        x = np.where(resume_failed, 0.0, x)

        # 1. compute; the month may end first (the work since the last checkpoint then counts as useful)
        alive = alive & (t + x < T)
        failed_x = np.where(alive, x, 0.0)
        failures += alive
        hours["recomputation"] += np.mod(failed_x, tau)  # compute since the last checkpoint is lost
        t = t + failed_x
        # 2. detection, 3. diagnosis and isolation
        spend("detection", _quantile_draw(inputs.detection_s, u_det) / 3600.0)
        spend("diagnosis_isolation", _quantile_draw(inputs.diagnosis_s, u_diag) / 3600.0)
        # 4. re-initialisation, aborted by a failure after y < R hours
        resume_failed = y < r
        spend("reinitialisation", np.minimum(y, r))

    return DowntimeResult(inputs=inputs, recomputation_h=hours["recomputation"],
                          detection_h=hours["detection"], diagnosis_isolation_h=hours["diagnosis_isolation"],
                          reinitialisation_h=hours["reinitialisation"], failures=failures)


def sweep(base: DowntimeInputs, field: str, values: Sequence[Any], *, replicates: int = 2000,
          seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Downtime share as one input varies (card §8 "Simulation B": detection policies, checkpoint
    intervals), for a plot: one row per value.

    Columns: ``field`` (the value; samples shown by their mean), ``mean_share``, ``mean_share_se``,
    ``share_lo``/``share_hi`` (central ``level`` range over replicate jobs), ``expected_share``
    (renewal reward), ``mean_failures`` and ``<category>_share`` (mean share of each category).
    Every value runs with the same seed (common random numbers), so the curve is smooth.

    Raises ``ValueError`` if ``field`` is not a field of :class:`DowntimeInputs` or ``values`` is empty,
    and as :class:`DowntimeInputs` (naming the field) for a bad value.
    """
    if not isinstance(base, DowntimeInputs):
        raise TypeError(f"base must be DowntimeInputs, got {type(base).__name__}")
    names = [f.name for f in dataclasses.fields(DowntimeInputs)]
    if field not in names:
        raise ValueError(f"field must be one of {names}, got {field!r}")
    if len(values) == 0:
        raise ValueError("values must not be empty")
    rows = []
    for v in values:
        res = simulate(base.replace(**{field: v}), replicates=replicates, seed=seed)
        s = res.summary(level)
        shown = float(np.mean(v)) if not _is_real(v) else v
        row: dict[str, Any] = {field: shown}
        row.update(s.loc["downtime"].to_dict())
        row["mean_failures"] = float(res.failures.mean())
        row.update({f"{c}_share": float(s.loc[c, "mean_share"]) for c in CATEGORIES})
        rows.append(row)
    return pd.DataFrame(rows)

