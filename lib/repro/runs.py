"""Sweeps of runs as stored tables: resume, provenance, and a local or a Ray executor.

A **sweep** is a named list of run specs (frozen dataclasses), a function that performs one run and returns
its rows, and a table on disk: ``<path>.csv`` (one line per row, the run's id in the first column) with
``<path>.json`` beside it (the sweep's table-level settings, the command, and every run's provenance)::

    @dataclass(frozen=True)
    class Point:
        x: int
        label = property(lambda self: f"x{self.x}")

    sweep = Sweep("demo", path, specs=[Point(x) for x in range(4)], run=square,
                  columns={"run": str, "x": float, "y": float})
    table = run_sweep(sweep)                                   # in this process, one run after another
    table = run_sweep(sweep, jobs=2)                           # two worker processes
    table = run_sweep(sweep, executor="ray", address="head:6379")   # each run a Ray task

Run ids are ``<label>@<hash>``: the spec's readable ``label`` (default: its class name) and the first 10 hex
digits of the sha256 of the whole spec (class name and every field, as canonical JSON), so two different specs
never share an id, and a changed spec is a new run next to the old one, never an overwrite.

A spec asks for its resources with the attributes (or properties) ``num_cpus`` (default 1) and ``num_gpus``
(default 0): a Ray task gets them, and every executor runs the run with ``num_cpus`` torch threads, so the
executor never changes the numbers.

The driver (the process calling :func:`run_sweep`) is the only writer of the table: it rewrites CSV and JSON
atomically as each run finishes, rows ordered as the sweep lists its specs, so that an interrupted sweep resumes
with the runs not yet done and ends with the table a straight run makes, whatever the executor. A run that raises
is recorded with its error under ``failed`` and run again by the next invocation; one that raises
``KeyboardInterrupt`` stops the sweep (the runs finished so far are kept).

``python -m repro runs NAME [--executor local|ray] [--address ADDR] [--jobs N] [--only RUN ...] [--status]``
runs a sweep of the library (:func:`sweep_names`) from the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

EXECUTORS = ("local", "ray")
# A stored training run, re-trained from scratch, gives its losses back within this relative tolerance: the drift
# measured across CPU kinds, kernel paths and thread counts on the D-CPT grid (README: what reproduces where).
RETRAIN_RTOL = 5e-3
HASH_DIGITS = 10
# Where the library's sweeps are made: a name prefix -> the module whose ``SWEEPS`` lists the names and whose
# ``sweep(name, **options)`` makes one. Imported only when a sweep of it is asked for.
FAMILIES = {"dcpt/": "repro.dcpt.grid", "c4/": "repro.c4.trials", "m6t/": "repro.m6t.sweep",
            "ddk/": "repro.ddk.sweep", "victor/": "repro.victor.sweep"}
_REGISTERED: dict[str, Callable[..., Sweep]] = {}


class RunsArgumentError(ValueError):
    """A bad argument, found before any work starts and before anything is written; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


# ---------------------------------------------------------------------------------------------- run specs
def _canonical(x: Any) -> Any:
    """Plain JSON types of a spec's fields: tuples become lists, -0.0 becomes 0.0; NaN and other types refused."""
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:  # {1: ...} and {"1": ...} would hash alike
            raise TypeError(f"spec: a dict field has a key that is not a str ({bad[0]!r}); use str keys")
        return {k: _canonical(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_canonical(v) for v in x]
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"spec: a field holds {x}; specs take finite numbers only")
        return x + 0.0
    if x is None or isinstance(x, bool | int | str):
        return x
    raise TypeError(f"spec: a field holds a {type(x).__name__} ({x!r}); specs take str, int, float, bool, None, "
                    "tuples and dataclasses of these")


def _check_spec(spec: Any) -> None:
    if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
        raise TypeError(f"spec must be a dataclass instance, got {type(spec).__name__}")
    if not type(spec).__dataclass_params__.frozen:
        raise TypeError(f"spec: {type(spec).__name__} must be a frozen dataclass (a run's spec must not change)")


def spec_json(spec: Any) -> dict[str, Any]:
    """The spec as stored in the table's JSON: its fields as plain JSON types (raises ``TypeError`` for a spec that
    is not a frozen dataclass or holds another type, ``ValueError`` for NaN or an infinite number)."""
    _check_spec(spec)
    return _canonical(dataclasses.asdict(spec))


def label(spec: Any) -> str:
    """The spec's readable label: its ``label`` attribute, else its class name (no ``@``, comma or line break)."""
    text = getattr(spec, "label", type(spec).__name__)
    if not isinstance(text, str) or not text or any(c in text for c in "@,\n\r"):
        raise ValueError(f"spec: label must be a non-empty str without '@', ',' or a line break, got {text!r}")
    return text


def run_id(spec: Any) -> str:
    """``<label>@<hash>``: the label and the first :data:`HASH_DIGITS` hex digits of the sha256 of the whole spec
    (class name and fields as canonical JSON). Equal specs give equal ids on any machine and Python version."""
    doc = json.dumps({"type": type(spec).__name__, "fields": spec_json(spec)}, sort_keys=True,
                     separators=(",", ":"), allow_nan=False)
    return f"{label(spec)}@{hashlib.sha256(doc.encode()).hexdigest()[:HASH_DIGITS]}"


def resources(spec: Any) -> dict[str, float]:
    """What one run asks for: ``{"num_cpus": ..., "num_gpus": ...}`` from the spec (defaults 1 and 0)."""
    out = {"num_cpus": getattr(spec, "num_cpus", 1), "num_gpus": getattr(spec, "num_gpus", 0)}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"spec: {k} must be a non-negative number, got {v!r}")
    if out["num_cpus"] <= 0:
        raise ValueError(f"spec: num_cpus must be above 0, got {out['num_cpus']!r}")
    return out


# -------------------------------------------------------------------------------------------------- table
class Table:
    """A sweep's table on disk: ``<path>.csv`` with ``columns`` (``"run"`` first; values ``str``, ``int`` or
    ``float``) and ``<path>.json``: table-level entries, ``runs`` (id -> provenance of each finished run, in table
    order), ``failed`` (id -> provenance and error of runs to retry), and while a driver works, ``running`` and
    ``driver``."""

    columns: dict[str, type] | None = None  # a subclass may fix them

    def __init__(self, path: str | os.PathLike, columns: dict[str, type] | None = None,
                 rows: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        cols = dict(columns or type(self).columns or {})
        if not cols or next(iter(cols)) != "run" or any(t not in (str, int, float) for t in cols.values()):
            raise ValueError(f"columns must start with 'run' and map each name to str, int or float, got {cols}")
        self.columns = cols
        self.rows = rows if rows is not None else []
        self.meta = meta if meta is not None else {}

    @classmethod
    def load(cls, path: str | os.PathLike, columns: dict[str, type] | None = None) -> Table:
        """The table at ``path`` (empty where no file is). A CSV with other columns, a line that does not parse
        or a JSON that is not JSON raise :class:`RunsArgumentError` (a ``ValueError``) naming ``path``."""
        table = cls(path, columns)
        csv, meta = table.path.with_suffix(".csv"), table.path.with_suffix(".json")
        if csv.exists():
            lines = csv.read_text().splitlines()
            head = lines[0].split(",") if lines else []
            if head != list(table.columns):
                raise RunsArgumentError("path", f"{csv}: columns {head}, expected {list(table.columns)}")
            for n, line in enumerate(lines[1:], 2):
                vals = line.split(",")
                if len(vals) != len(table.columns):
                    raise RunsArgumentError("path", f"{csv} line {n}: {len(vals)} values under "
                                            f"{len(table.columns)} columns: {line[:80]!r}")
                try:
                    table.rows.append({k: t(v) for (k, t), v in zip(table.columns.items(), vals, strict=True)})
                except ValueError as e:
                    raise RunsArgumentError("path", f"{csv} line {n}: {e}") from None
        if meta.exists():
            try:
                table.meta = json.loads(meta.read_text())
            except json.JSONDecodeError as e:
                raise RunsArgumentError("path", f"{meta} is not JSON ({e})") from None
            if not isinstance(table.meta, dict):
                raise RunsArgumentError("path", f"{meta} holds {type(table.meta).__name__}, not a table's provenance")
            for key in ("runs", "failed", "running", "driver"):
                if key in table.meta and not isinstance(table.meta[key], dict):
                    raise RunsArgumentError("path", f"{meta}: '{key}' holds {type(table.meta[key]).__name__}, "
                                            "not an object")
        # the CSV and the JSON must agree: every finished run has its rows (as many as it recorded)
        counts: dict[str, int] = {}
        for r in table.rows:
            counts[r["run"]] = counts.get(r["run"], 0) + 1
        for rid, info in table.meta.get("runs", {}).items():
            want = info.get("rows") if isinstance(info, dict) else None
            have = counts.get(rid, 0)
            if (have != want) if isinstance(want, int) else have == 0:
                raise RunsArgumentError("path", f"{csv} holds {have} rows of run {rid}, which {meta.name} records "
                                        f"as done{f' with {want}' if isinstance(want, int) else ''}: the two files "
                                        "disagree (restore them, or delete the run from the JSON to run it again)")
        return table

    def done(self) -> set[str]:
        """Ids of the finished runs."""
        return set(self.meta.get("runs", {}))

    def labels(self) -> set[str]:
        """Labels of the finished runs."""
        return {info.get("label", rid.split("@")[0]) for rid, info in self.meta.get("runs", {}).items()}

    def by_label(self) -> dict[str, dict[str, Any]]:
        """Provenance of the finished runs keyed by label; ``ValueError`` where two runs share one (runs of changed
        specs): ask by id then."""
        out: dict[str, dict[str, Any]] = {}
        for rid, info in self.meta.get("runs", {}).items():
            key = info.get("label", rid.split("@")[0])
            if key in out:
                raise ValueError(f"{self.path}: label {key!r} names several runs; look them up by id")
            out[key] = info
        return out

    def find(self, rid: str) -> str:
        """The id of a finished run given its id or its label; ``ValueError`` naming ``rid`` when none or several
        runs match."""
        runs = self.meta.get("runs", {})
        if rid in runs:
            return rid
        hits = [k for k, info in runs.items() if info.get("label") == rid]
        if len(hits) != 1:
            what = "is not a finished run" if not hits else f"is the label of {len(hits)} runs ({', '.join(hits)})"
            raise ValueError(f"rid {rid!r} {what} of {self.path}; it holds {len(runs)} runs")
        return hits[0]

    def check_rows(self, rid: str, rows: Any) -> list[dict[str, Any]]:
        """One run's rows in table form: each holds every column but ``run`` (filled with ``rid``; where given it
        must equal it), values of the column's type. ``TypeError``/``ValueError`` naming the run and column."""
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError(f"run {rid}: the run function must return a list of dicts, got {type(rows).__name__}")
        out = []
        for i, row in enumerate(rows):
            if row.get("run", rid) != rid:
                raise ValueError(f"run {rid}: row {i} names run {row['run']!r}")
            keys = set(row) | {"run"}
            if keys != set(self.columns):
                raise ValueError(f"run {rid}: row {i} has columns {sorted(keys - set(self.columns))} too many and "
                                 f"{sorted(set(self.columns) - keys)} missing")
            new = {"run": rid}
            for k, t in self.columns.items():
                v = row.get(k, rid)
                if t is str:
                    if not isinstance(v, str) or any(c in v for c in ",\n\r"):
                        raise ValueError(f"run {rid}: column {k} must be text without commas or line breaks, "
                                         f"got {v!r}")
                elif isinstance(v, bool) or not (hasattr(v, "__float__") or hasattr(v, "__index__")):
                    raise TypeError(f"run {rid}: column {k} must be a number, got {type(v).__name__} {v!r}")
                elif t is int and float(v) != int(v):
                    raise ValueError(f"run {rid}: column {k} must be an integer, got {v!r}")
                new[k] = t(v)
            out.append(new)
        return out

    def save(self, order: Sequence[str] = ()) -> None:
        """Write CSV then JSON atomically; runs listed in ``order`` first, in that order, then the others as they
        stand (rows keep their order within a run)."""
        pos = {rid: i for i, rid in enumerate(order)}
        runs = self.meta.get("runs", {})
        ranked = sorted(runs, key=lambda r: pos.get(r, len(pos)))  # stable: the others keep their order
        if "runs" in self.meta:
            self.meta["runs"] = {r: runs[r] for r in ranked}
        rank = {r: i for i, r in enumerate(ranked)}
        self.rows = sorted(self.rows, key=lambda row: rank.get(row["run"], len(rank)))  # stable
        lines = [",".join(self.columns)]
        for r in self.rows:
            lines.append(",".join(r[k] if t is str else repr(float(r[k])) if t is float else str(int(r[k]))
                                  for k, t in self.columns.items()))
        paths.atomic_write_text(self.path.with_suffix(".csv"), "\n".join(lines) + "\n")
        paths.atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.meta, indent=1) + "\n")

    def frame(self):
        """The rows as a pandas DataFrame with the table's columns."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.columns))


def load_tables(names: Sequence[str], columns: dict[str, type], folder: str | os.PathLike | None = None):
    """The rows of the stored tables ``names`` (sweep names such as ``"m6t/grid"``, read from ``data/`` or ``folder``)
    in one pandas frame with ``columns`` and a ``cpu_s`` column (each run's CPU seconds from the table's provenance;
    NaN where not recorded). Raises ``ValueError`` naming ``names`` when it is a bare str or a table is empty or
    missing."""
    import pandas as pd

    if isinstance(names, str):
        raise ValueError(f"names must be a list of table names, got the str {names!r} (write [{names!r}])")
    frames = []
    for name in names:
        path = (paths.DATA if folder is None else Path(folder)) / name
        table = Table.load(path, columns)
        if not table.rows:
            raise ValueError(f"names: the table {path}.csv holds no runs (run `python -m repro runs {name}`)")
        f = table.frame()
        cpu = {rid: info.get("cpu_seconds", math.nan) for rid, info in table.meta.get("runs", {}).items()}
        frames.append(f.assign(cpu_s=f["run"].map(cpu).astype(float)))
    return pd.concat(frames, ignore_index=True)


# -------------------------------------------------------------------------------------------------- sweeps
@dataclass(frozen=True)
class Sweep:
    """A named list of run specs, the function performing one run (``run(spec) -> list of row dicts``, the columns
    but ``run``), and the table at ``path`` (no suffix).

    ``key``: table-level entries a stored table must hold with the same values to be resumed (e.g. the grid's
    spec); ``meta``: entries written into a new table (e.g. a prediction the runs test); ``prepare(table)``: a check
    made before any run and before anything is written (raises :class:`RunsArgumentError`), e.g. of the inputs;
    ``table_type``: the :class:`Table` subclass returned."""

    name: str
    path: Path
    specs: tuple[Any, ...]
    run: Callable[[Any], list[dict[str, Any]]]
    columns: dict[str, type]
    key: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Table], None] | None = None
    table_type: type[Table] = Table

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "specs", tuple(self.specs))
        if not callable(self.run):
            raise TypeError(f"run must be callable, got {type(self.run).__name__}")
        ids = [run_id(s) for s in self.specs]  # checks every spec
        for s in self.specs:
            resources(s)
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"specs: the sweep lists the same spec twice: {dup[:3]}")
        object.__setattr__(self, "_ids", tuple(ids))

    def ids(self) -> tuple[str, ...]:
        """The run ids of the sweep's specs, in order."""
        return self._ids  # type: ignore[attr-defined]

    def select(self, only: Sequence[str] | None) -> list[tuple[str, Any]]:
        """``(id, spec)`` of the runs named in ``only`` by id or label (all when ``only`` is None);
        :class:`RunsArgumentError` naming ``only`` for a name that matches no run."""
        pairs = list(zip(self.ids(), self.specs, strict=True))
        if only is None:
            return pairs
        if isinstance(only, str) or not all(isinstance(o, str) for o in only):
            raise RunsArgumentError("only", f"must be a list of run ids or labels, got {only!r}")
        labels = [label(s) for s in self.specs]
        unknown = [o for o in only if o not in self.ids() and o not in labels]
        if unknown:
            shown = labels if len(labels) <= 12 else labels[:6] + ["..."]
            raise RunsArgumentError("only", f"{unknown} not in sweep {self.name} (labels: {', '.join(shown)})")
        return [(i, s) for (i, s), lab in zip(pairs, labels, strict=True) if i in only or lab in only]


def register(name: str, factory: Callable[..., Sweep]) -> None:
    """Make ``factory(**options) -> Sweep`` known to :func:`get_sweep` and ``python -m repro runs`` as ``name``."""
    if not isinstance(name, str) or not name or not callable(factory):
        raise TypeError("register(name, factory): name a non-empty str, factory callable")
    _REGISTERED[name] = factory


def sweep_names() -> list[str]:
    """Every sweep ``python -m repro runs`` knows: the library's (:data:`FAMILIES`) and those registered."""
    names = [n for mod in FAMILIES.values() for n in importlib.import_module(mod).SWEEPS]
    return names + sorted(n for n in _REGISTERED if n not in names)


def get_sweep(name: str, **options: Any) -> Sweep:
    """The sweep called ``name`` made with ``options`` (e.g. ``device``); :class:`RunsArgumentError` naming ``name``
    for an unknown sweep, or the option a sweep does not take."""
    import inspect

    if name in _REGISTERED:
        factory, args = _REGISTERED[name], ()
    else:
        mod = next((m for p, m in FAMILIES.items() if name.startswith(p)), None)
        if mod is None or name not in importlib.import_module(mod).SWEEPS:
            raise RunsArgumentError("name", f"unknown sweep {name!r} (valid: {', '.join(sweep_names())})")
        factory, args = importlib.import_module(mod).sweep, (name,)
    params = inspect.signature(factory).parameters
    for k in options:
        if k not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise RunsArgumentError(k, f"sweep {name} takes no {k}")
    return factory(*args, **options)


# -------------------------------------------------------------------------------------------- performing
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def perform(fn: Callable[[Any], Any], spec: Any, rid: str) -> dict[str, Any]:
    """Perform one run wherever the executor put it: ``fn(spec)`` with the spec's ``num_cpus`` torch threads
    (restored afterwards); returns its rows or its error, with start, end, wall and CPU seconds, and the
    provenance of the place it ran (git revision and dirty flag, package versions, machine, host)."""
    import torch

    from .machine import machine_info
    from .provenance import git_state, package_versions

    threads = max(1, math.ceil(resources(spec)["num_cpus"]))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict[str, Any] = {"id": rid, "start": _now()}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out["rows"] = fn(spec)
    except KeyboardInterrupt:
        out["interrupted"] = True
    except Exception as e:  # noqa: BLE001 - recorded with the run, retried next invocation
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc()[-4000:]
    finally:
        torch.set_num_threads(before)
    out.update(end=_now(), seconds=round(time.perf_counter() - t0, 3),
               cpu_seconds=round(time.process_time() - c0, 3), git=git_state(), versions=package_versions(),
               machine=machine_info(threads), host=socket.gethostname())
    return out


def _ignore_sigint() -> None:  # worker processes: Ctrl-C is the driver's to handle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------- executors
Event = tuple[str, Any]  # ("start", [ids]) or ("done", outcome)


class LocalExecutor:
    """Runs in this process one after another (``jobs=1``), or in ``jobs`` worker processes (spawned, so each
    starts clean; at most ``jobs`` runs at once, taken in the sweep's order)."""

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise RunsArgumentError("jobs", f"must be an integer of at least 1, got {jobs!r}")
        self.jobs, self._pool = jobs, None

    def describe(self) -> str:
        """The executor in words, for the log line that starts a sweep."""
        return "local" if self.jobs == 1 else f"local, {self.jobs} processes"

    def start(self, fn: Callable[[Any], Any]) -> None:
        """Get ready to perform runs with ``fn`` (start worker processes or Ray)."""
        if self.jobs == 1:
            return
        import multiprocessing
        import pickle

        try:
            pickle.dumps(fn)
        except Exception as e:  # noqa: BLE001
            raise RunsArgumentError("jobs", f"the sweep's run function cannot be sent to worker processes ({e}); "
                                    "use jobs=1") from None
        self._ctx = multiprocessing.get_context("spawn")
        self._new_pool()

    def _new_pool(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(self.jobs, mp_context=self._ctx, initializer=_ignore_sigint)

    def run(self, fn: Callable[[Any], Any], todo: list[tuple[str, Any]]) -> Iterator[Event]:
        """Perform the ``(id, spec)`` pairs of ``todo``; yields an event as each run starts, ends or fails."""
        if self._pool is None:
            for rid, spec in todo:
                yield "start", [rid]
                yield "done", perform(fn, spec, rid)
            return
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        waiting, inflight = list(todo), {}  # at most `jobs` runs submitted at once: the in-flight set is exact
        while waiting or inflight:
            while waiting and len(inflight) < self.jobs:
                rid, spec = waiting[0]
                try:
                    fut = self._pool.submit(perform, fn, spec, rid)
                except BrokenProcessPool:  # a worker died after the last wait: its runs fail below, this one waits
                    if inflight:
                        break
                    self._pool.shutdown(wait=True, cancel_futures=True)
                    self._new_pool()  # nothing in flight died with it: a fresh pool takes the run
                    continue
                waiting.pop(0)
                inflight[fut] = rid
            yield "start", list(inflight.values())
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            lost = []
            for fut in done:
                rid = inflight.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    lost.append(rid)
                    continue
                yield "done", outcome
            if lost:  # a worker died (os._exit, a crash, the OOM killer): the pool is gone with every run in it
                lost += list(inflight.values())
                inflight.clear()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._new_pool()
                for rid in lost:
                    yield "done", {"id": rid, "end": _now(), "error": "BrokenProcessPool: a worker process died "
                                   "while this run was in flight (this run or another one in flight with it)"}

    def close(self, interrupted: bool) -> None:
        """Release the workers (cancelling runs in flight when ``interrupted``)."""
        if self._pool is not None:
            if interrupted:  # stop the workers now, as Pool.terminate did (the executor has no public way)
                for proc in list(getattr(self._pool, "_processes", {}).values()):
                    proc.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _check_address(address: str) -> None:
    """Something answers at ``host:port`` (or ``ray://host:port``); ``"auto"`` is left to Ray."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RunsArgumentError("address", f"{address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise RunsArgumentError("address", f"nothing answers at {address} ({e.strerror or e}); start a cluster "
                                "there (`ray start --head`) or give the head node's address") from None


class RayExecutor:
    """Each run a Ray task asking for its spec's ``num_cpus`` and ``num_gpus`` (no Ray-side retries: a failure is
    recorded and retried by the next invocation). Joins the cluster at ``address`` (else ``$RAY_ADDRESS``), else
    starts a local instance with ``num_cpus`` CPUs (default: all usable cores) and stops it at the end; a Ray
    already initialised in this process is used as it is."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RunsArgumentError("executor", "ray is not installed in this environment (pip install "
                                    "ray==2.60.0, or `make setup`)") from None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address is not None:
            if not isinstance(self.address, str):
                raise RunsArgumentError("address", f"must be a str, got {self.address!r}")
            if num_cpus is not None:
                raise RunsArgumentError("jobs", "with an address the cluster's resources decide how many runs go "
                                        "at once; leave --jobs out")
            _check_address(self.address)
        elif num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise RunsArgumentError("jobs", f"must be an integer of at least 1, got {num_cpus!r}")
        self.num_cpus, self._started, self._pending = num_cpus, False, {}

    def describe(self) -> str:
        """The executor in words, for the log line that starts a sweep."""
        return f"ray ({self.address})" if self.address else "ray (local instance)"

    def start(self, fn: Callable[[Any], Any]) -> None:
        """Get ready to perform runs with ``fn`` (start worker processes or Ray)."""
        import logging

        import ray

        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RunsArgumentError("address", f"Ray cannot join {self.address or 'a local instance'}: "
                                    f"{' '.join(str(e).split())[:300]}") from None
        self._started = True

    def run(self, fn: Callable[[Any], Any], todo: list[tuple[str, Any]]) -> Iterator[Event]:
        """Perform the ``(id, spec)`` pairs of ``todo``; yields an event as each run starts, ends or fails."""
        import ray

        fn_ref, remotes = ray.put(fn), {}
        for rid, spec in todo:
            res = resources(spec)
            shape = (res["num_cpus"], res["num_gpus"])
            if shape not in remotes:
                remotes[shape] = ray.remote(num_cpus=shape[0], num_gpus=shape[1], max_retries=0)(perform)
            self._pending[remotes[shape].remote(fn_ref, spec, rid)] = rid
        yield "start", [rid for rid, _ in todo]  # submitted: running, or queued by Ray for resources
        while self._pending:
            (ref,), _ = ray.wait(list(self._pending), num_returns=1)
            rid = self._pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the task died outside perform(): a crashed worker, a lost node
                text = " ".join(str(e).split())
                outcome = {"id": rid, "error": f"{type(e).__name__}: {text[:2000]}", "end": _now()}
            yield "done", outcome

    def close(self, interrupted: bool) -> None:
        """Release the workers (cancelling runs in flight when ``interrupted``)."""
        import ray

        for ref in self._pending:
            ray.cancel(ref, force=True)
        self._pending = {}
        if self._started:
            ray.shutdown()
            self._started = False


def make_executor(executor: str = "local", *, jobs: int | None = None, address: str | None = None):
    """The executor named (:data:`EXECUTORS`), checked before anything starts: :class:`RunsArgumentError` naming
    ``executor``, ``jobs`` or ``address`` (an executor not installed, an address where nothing answers)."""
    if executor not in EXECUTORS:
        raise RunsArgumentError("executor", f"unknown executor {executor!r} (valid: {', '.join(EXECUTORS)})")
    if executor == "local":
        if address is not None:
            raise RunsArgumentError("address", "only the ray executor joins a cluster (--executor ray)")
        return LocalExecutor(1 if jobs is None else jobs)
    return RayExecutor(address, jobs)


# ------------------------------------------------------------------------------------------------- driver
def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def driver_alive(driver: dict[str, Any] | None) -> bool | None:
    """Whether the driver a table's JSON names still runs: True/False on its own host, None on another host."""
    if not driver:
        return False
    if driver.get("host") != socket.gethostname():
        return None
    try:
        pid = int(driver.get("pid", -1))
    except (TypeError, ValueError):
        return False  # not a pid this code wrote: no live driver
    started = _proc_start(pid)
    return started is not None and started == driver.get("proc_start")


def _plan(sweep: Sweep, only: Sequence[str] | None) -> tuple[Table, list[tuple[str, Any]]]:
    """Load and check the table (before anything is written): its key, a live driver; the runs still to do."""
    selected = sweep.select(only)
    table = sweep.table_type.load(sweep.path, sweep.columns)
    for k, want in sweep.key.items():
        have = table.meta.get(k)
        if table.meta and have is not None and _canonical(have) != _canonical(want):
            diff = sorted(x for x in set(have) | set(want) if have.get(x) != _canonical(want).get(x)) \
                if isinstance(have, dict) and isinstance(want, dict) else []
            raise RunsArgumentError("path", f"{sweep.path} was made with another {k}"
                                    + (f" (differs in {', '.join(diff)})" if diff else "")
                                    + "; use a new path or the same settings")
    alive = driver_alive(table.meta.get("driver"))
    if alive or alive is None:
        d = table.meta["driver"]
        raise RunsArgumentError("path", f"{sweep.path} is being run by another driver (pid {d.get('pid')} on "
                                f"{d.get('host')}, since {d.get('started')}); one driver per table "
                                + ("" if alive else "(if it is gone, delete 'driver' from the JSON)"))
    done = table.done()
    return table, [(rid, spec) for rid, spec in selected if rid not in done]


def _command() -> str:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith("__main__.py") or argv0.endswith("repro"):
        return " ".join(["python", "-m", "repro", *sys.argv[1:]])
    return "repro.runs.run_sweep"


def run_sweep(sweep: Sweep, *, executor: str = "local", jobs: int | None = None, address: str | None = None,
              only: Sequence[str] | None = None, log: Callable[[str], None] | None = None,
              progress: bool = True) -> Table:
    """Perform every run of ``sweep`` (those named in ``only``, by id or label) not yet in its table, on the
    executor named (:func:`make_executor`), writing the table as each run finishes; returns the table.

    Everything is checked before any work and before anything is written (:class:`RunsArgumentError`). A run that
    raises is recorded under ``failed`` with its error (and retried next time); ``KeyboardInterrupt`` in the driver
    or in a run stops the sweep and is raised again, the finished runs kept. Each finished run's provenance: label,
    spec, seed, resources, executor, host, git revision and dirty flag, package versions, machine, start, end, wall
    and CPU seconds, command, and the errors of earlier attempts.

    ``jobs`` > 1 with the local executor spawns worker processes, which import the run function by name: a script
    calling this needs Python's ``if __name__ == "__main__":`` guard (``python -m repro runs`` has it)."""
    from .progress import tqdm

    if not isinstance(sweep, Sweep):
        raise RunsArgumentError("sweep", f"must be a Sweep, got {type(sweep).__name__}")
    ex = make_executor(executor, jobs=jobs, address=address)
    table, todo = _plan(sweep, only)
    say = log or tqdm.write
    if not todo:
        say(f"{sweep.name}: all {len(sweep.select(only))} runs done -> {sweep.path}.csv")
        return table
    with _driver_lock(sweep.path):
        table, todo = _plan(sweep, only)  # again, under the lock: another driver may have finished runs since
        return _drive(sweep, ex, table, todo, only, say, progress)


@contextlib.contextmanager
def _driver_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (an exclusive ``fcntl`` lock, not waited for) while a driver runs the table, so that two
    drivers started at the same moment cannot both run it; the second gets a :class:`RunsArgumentError`. The lock
    guards the driver's lifetime only: the table itself is written by that one driver, never merged."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunsArgumentError("path", f"{path} is being run by another driver on this machine (it holds "
                                    f"{path.with_suffix('.lock').name}); one driver per table") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _drive(sweep: Sweep, ex: Any, table: Table, todo: list[tuple[str, Any]], only: Sequence[str] | None,
           say: Callable[[str], None], progress: bool) -> Table:
    """The body of :func:`run_sweep`, under the driver lock."""
    from .progress import tqdm

    if not todo:
        say(f"{sweep.name}: all {len(sweep.select(only))} runs done -> {sweep.path}.csv")
        return table
    for k, v in {**sweep.key, **sweep.meta}.items():
        table.meta.setdefault(k, _canonical(v))
    if sweep.prepare is not None:
        sweep.prepare(table)
    ex.start(sweep.run)
    order, command = sweep.ids(), _command()
    table.meta.update(sweep=sweep.name, command=command)
    table.meta.setdefault("runs", {})
    failed = table.meta.setdefault("failed", {})
    table.meta["running"] = {}
    table.meta["driver"] = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
                            "started": _now(), "executor": ex.describe()}
    specs = dict(todo)
    say(f"{sweep.name}: {len(sweep.specs)} runs, {len(table.done() & set(order))} done, {len(todo)} to go "
        f"({ex.describe()}) -> {sweep.path}.csv")
    bar = tqdm(total=len(todo), desc=sweep.name, unit="run", disable=None if progress else True)
    interrupted = True
    try:
        for kind, what in ex.run(sweep.run, todo):
            if kind == "start":
                table.meta["running"] = {rid: table.meta["running"].get(rid) or {"since": _now()} for rid in what}
                table.save(order)
                continue
            rid = what["id"]
            if what.get("interrupted"):
                raise KeyboardInterrupt
            spec = specs[rid]
            info = {"label": label(spec), "spec": spec_json(spec), "seed": getattr(spec, "seed", None),
                    "resources": resources(spec), "executor": ex.describe(), "command": command,
                    **{k: what.get(k) for k in ("host", "git", "versions", "machine", "start", "end", "seconds",
                                                  "cpu_seconds")}}
            earlier = failed.get(rid, {}).get("errors", [])
            rows = None
            if "error" not in what:
                try:
                    rows = table.check_rows(rid, what["rows"])
                except (TypeError, ValueError, OverflowError) as e:
                    what["error"] = f"{type(e).__name__}: {e}"
            if rows is None:
                failed[rid] = {**info, "status": "failed", "error": what["error"],
                               "traceback": what.get("traceback"),
                               "errors": earlier + [{"error": what["error"], "end": what.get("end")}]}
                say(f"{rid}: failed ({what['error'][:200]}); recorded, run again to retry")
            else:
                failed.pop(rid, None)
                table.rows = [r for r in table.rows if r["run"] != rid] + rows
                table.meta["runs"][rid] = {**info, "status": "done", "rows": len(rows), "attempts": len(earlier) + 1,
                                           **({"earlier_errors": earlier} if earlier else {})}
            table.meta["running"].pop(rid, None)
            table.save(order)
            bar.update(1)
        interrupted = False
    finally:
        bar.close()
        ex.close(interrupted)
        table.meta.pop("running", None)
        table.meta.pop("driver", None)
        table.save(order)
    return table


# ------------------------------------------------------------------------------------------------- status
def status(sweep: Sweep) -> dict[str, Any]:
    """Where ``sweep`` stands: ids ``done``, ``running`` (in flight with a live driver), ``failed`` (id -> error),
    ``left`` (not done, not running; failed runs too, as the next invocation retries them), ``other`` (runs in
    the table the sweep no longer lists), the ``driver`` and whether it is ``alive`` (None: on another host), and
    the cost so far: wall and CPU ``seconds`` and ``cpu_seconds`` of every finished and failed run."""
    table = sweep.table_type.load(sweep.path, sweep.columns)
    ids, runs, failed = list(sweep.ids()), table.meta.get("runs", {}), table.meta.get("failed", {})
    alive = driver_alive(table.meta.get("driver"))
    running = [i for i in ids if i in table.meta.get("running", {}) and i not in runs] if alive is not False else []
    done = [i for i in ids if i in runs]
    spent = [v for v in (*runs.values(), *failed.values())]
    return {"table": f"{sweep.path}.csv", "done": done, "running": running,
            "failed": {i: failed[i].get("error") for i in ids if i in failed and i not in runs},
            "left": [i for i in ids if i not in runs and i not in running],
            "other": sorted(set(runs) - set(ids)), "driver": table.meta.get("driver"), "alive": alive,
            "seconds": sum(v.get("seconds") or 0 for v in spent),
            "cpu_seconds": sum(v.get("cpu_seconds") or 0 for v in spent)}


def format_status(sweep: Sweep, st: dict[str, Any] | None = None) -> str:
    """:func:`status` as the lines ``--status`` prints."""
    st = st or status(sweep)
    n = len(sweep.specs)
    lines = [f"{sweep.name}: {st['table']}",
             f"  done     {len(st['done'])} of {n}, cost so far {st['seconds'] / 3600:.2f} h wall, "
             f"{st['cpu_seconds'] / 3600:.2f} CPU-hours",
             f"  running  {len(st['running'])}"]
    d = st["driver"]
    if d:
        how = {True: "running", None: "on another host: cannot tell whether it runs", False: "gone"}[st["alive"]]
        lines[-1] += f" (driver pid {d.get('pid')} on {d.get('host')} since {d.get('started')}, {d.get('executor')}"\
                     f": {how})"
    lines.append(f"  failed   {len(st['failed'])}" + (" (retried by the next invocation)" if st["failed"] else ""))
    lines += [f"    {rid}: {err}" for rid, err in st["failed"].items()]
    lines.append(f"  left     {len(st['left'])}")
    if st["other"]:
        lines.append(f"  other    {len(st['other'])} runs in the table that this sweep no longer lists")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """The executor options every sweep command takes."""
    parser.add_argument("--executor", default="local", help="local (default: in this process, or --jobs N "
                        "worker processes) or ray (a Ray task per run)")
    parser.add_argument("--address", help="with --executor ray: join the Ray cluster at HOST:PORT (default "
                        "$RAY_ADDRESS, else a local instance is started)")
    parser.add_argument("--jobs", type=int, help="local: worker processes; ray without an address: the local "
                        "instance's CPUs")
    parser.add_argument("--status", action="store_true", help="print what is done, running, failed and left, "
                        "with the cost so far, and stop")


def execute(sweep: Sweep, a, fail: Callable[[str, str], None], only: Sequence[str] | None = None) -> int:
    """Run (or with ``a.status`` report) ``sweep`` with the options of :func:`add_arguments`; a
    :class:`RunsArgumentError` goes to ``fail(param, message)`` (which exits). Exit status: 0 all done, 1 some run
    failed, 130 interrupted."""
    if a.status:
        for flag, given in (("--executor", a.executor != "local"), ("--address", a.address),
                            ("--jobs", a.jobs is not None), ("--only", only is not None)):
            if given:
                fail("status", f"--status runs nothing: it takes no {flag}")
        try:
            print(format_status(sweep))
        except RunsArgumentError as e:
            fail(e.param, e.message)
            return 2
        return 0
    try:
        table = run_sweep(sweep, executor=a.executor, jobs=a.jobs, address=a.address, only=only, log=print)
    except RunsArgumentError as e:
        fail(e.param, e.message)
        return 2
    except KeyboardInterrupt:
        st = status(sweep)
        print(f"interrupted: {len(st['done'])} of {len(sweep.specs)} runs done; the same command resumes",
              file=sys.stderr)
        return 130
    bad = [rid for rid, _ in sweep.select(only) if rid in table.meta.get("failed", {})]
    if bad:
        print(f"{len(bad)} runs failed (errors in {sweep.path}.json under 'failed'); the same command retries them",
              file=sys.stderr)
        return 1
    return 0


def one_line_parser(prog: str, description: str):
    """An ``argparse`` parser whose errors are one line (no usage block, no traceback), exit status 2."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:
            self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")

    return Parser(prog=prog, description=description)


_FLAGS = {"name": "NAME", "path": "NAME (its table)", "executor": "--executor", "address": "--address",
          "jobs": "--jobs", "only": "--only", "device": "--device", "status": "--status"}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro runs NAME [--executor local|ray] [--address ADDR] [--jobs N] [--only RUN ...]
    [--device D] [--status]``; ``python -m repro runs --list``. A bad argument is one line naming it (exit 2)."""
    parser = one_line_parser("python -m repro runs", "Run (or resume) a sweep and write its table under data/.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="the sweep, e.g. dcpt/grid (--list shows all)")
    parser.add_argument("--list", action="store_true", help="list the sweeps and stop")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (ids or labels)")
    parser.add_argument("--device", help="for sweeps whose runs take one: cpu, cuda or cuda:N")
    add_arguments(parser)
    a = parser.parse_args(argv)
    if a.list:
        print("\n".join(sweep_names()))
        return 0
    if not a.name:
        parser.error(f"NAME: name a sweep (valid: {', '.join(sweep_names())})")

    def fail(param: str, message: str) -> None:
        parser.error(f"{_FLAGS.get(param, param)}: {message}")

    try:
        sweep = get_sweep(a.name, **({"device": a.device} if a.device is not None else {}))
        if a.executor == "ray" and a.device and a.device.startswith("cuda:"):
            raise RunsArgumentError("device", "with --executor ray use 'cuda': Ray gives each task its GPU")
    except RunsArgumentError as e:
        fail(e.param, e.message)
    return execute(sweep, a, fail, only=a.only)
