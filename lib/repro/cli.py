"""``python -m repro``: the workbook's command line.

    python -m repro run [--profile P] [--only NAME ...] [--jobs N] [--force] [-p key=value ...]
    python -m repro index          rewrite reports/index.html from reports/results
    python -m repro scorecard      write the claims table into the README's marked section
    python -m repro validate DIR   check every results JSON in DIR against the schema
    python -m repro bench NAME [--quick]   a benchmark against its baseline -> reports/bench/NAME.json
    python -m repro runs NAME [--executor local|ray] [--address A] [--jobs N] [--only RUN ...] [--status]
                                   run (or resume) a sweep of runs into its table under data/ (repro.runs)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import paths
from .profile import PROFILES


def _cmd_run(a: argparse.Namespace) -> int:
    """Run notebooks; a bad request is one line on stderr naming what is wrong (exit 2), nothing started."""
    from .profile import ProfileError
    from .runner import RunnerError, parse_overrides, run

    try:
        jobs = run(only=a.only, profile=a.profile, jobs=a.jobs, force=a.force, parameters=parse_overrides(a.p),
                   out=Path(a.out), notebooks=Path(a.notebooks), cell_timeout=a.cell_timeout, timeout=a.timeout,
                   heartbeat=a.heartbeat)
    except (RunnerError, ProfileError) as e:
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1 if any(j.status == "failed" for j in jobs) else 0


def _cmd_index(a: argparse.Namespace) -> int:
    from .report import write_index

    print(write_index(Path(a.out)))
    return 0


def _cmd_scorecard(a: argparse.Namespace) -> int:
    from .report import write_scorecard

    changed = write_scorecard(Path(a.readme), Path(a.out))
    print(f"{a.readme}: scorecard {'updated' if changed else 'unchanged'}")
    return 0


def _cmd_validate(a: argparse.Namespace) -> int:
    from .record import validate

    files = sorted(Path(a.folder).glob("*.json"))
    if not files and not a.allow_empty:
        print(f"error: no results JSON in {a.folder}", file=sys.stderr)
        return 1
    bad = 0
    for f in files:
        try:
            validate(json.loads(f.read_text()))
            print(f"ok   {f}")
        except Exception as e:  # noqa: BLE001
            bad += 1
            print(f"FAIL {f}: {getattr(e, 'message', e)}", file=sys.stderr)
    return 1 if bad else 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from .bench import main as bench_main

    try:
        bench_main(a.name, quick=a.quick, out=Path(a.out) if a.out else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_data(a: argparse.Namespace) -> int:
    """The corpora (:mod:`repro.data.build`), then notebook 06's rendered videos (:mod:`repro.victor.data`) for the
    same profiles: ``data build`` builds both, ``data verify`` checks both against the manifest."""
    from .data.build import main as data_main

    status = data_main(a.rest)
    if status or not a.rest or a.rest[0] not in ("build", "verify") or "-h" in a.rest or "--help" in a.rest:
        return status
    from .victor import data as videos

    profiles = ["full", "smoke"] if "--all" in a.rest else ["smoke" if "--smoke" in a.rest else "full"]
    for prof in profiles:
        if a.rest[0] == "build":
            videos.build(prof, force="--force" in a.rest)
        else:
            try:
                videos.verify(prof)
            except videos.VideoDataError as e:
                print(f"error: {e}")
                return 1
            print(f"videos ({prof}): every file matches the manifest")
    return 0


def _cmd_runs(a: argparse.Namespace) -> int:
    from .runs import main as runs_main

    return runs_main(a.rest)


def _cmd_dcpt(a: argparse.Namespace) -> int:
    from .dcpt.grid import main as grid_main

    return grid_main(a.rest)


def main(argv: list[str] | None = None) -> int:
    """``python -m repro <command> ...`` (``run``, ``index``, ``scorecard``, ``validate``, ``bench``, ``data``,
    ``runs``, ``dcpt``): parses ``argv`` (default ``sys.argv[1:]``) and returns the command's exit status.
    A bad command line exits through argparse (``SystemExit(2)``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["runs"]:  # its own parser, whose options may come first (`runs --list`, `runs --help`)
        return _cmd_runs(argparse.Namespace(rest=args[1:]))
    parser = argparse.ArgumentParser(prog="python -m repro", description="The reproduction workbook.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute notebooks with papermill and render their reports")
    r.add_argument("--profile", default="default", choices=PROFILES, help="run profile (default: default)")
    r.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to run: 03, dcpt_law or 03_dcpt_law")
    r.add_argument("--jobs", type=int, default=1, help="notebooks run at once (default 1)")
    r.add_argument("--force", action="store_true", help="re-run notebooks whose inputs are unchanged")
    r.add_argument("-p", action="append", default=[], metavar="KEY=VALUE", help="a notebook parameter")
    r.add_argument("--out", default=str(paths.REPORTS), help="reports folder (default reports/)")
    r.add_argument("--notebooks", default=str(paths.NOTEBOOKS), help="notebooks folder (default notebooks/)")
    r.add_argument("--cell-timeout", type=float, default=1800, help="seconds one cell may run (default 1800)")
    r.add_argument("--timeout", type=float, default=3600, help="seconds one notebook may run (default 3600)")
    r.add_argument("--heartbeat", type=float, default=30, help="seconds between progress lines (default 30)")
    r.set_defaults(func=_cmd_run)

    i = sub.add_parser("index", help="rewrite the reports index")
    i.add_argument("--out", default=str(paths.REPORTS))
    i.set_defaults(func=_cmd_index)

    s = sub.add_parser("scorecard", help="write the claims table into README.md")
    s.add_argument("--readme", default=str(paths.ROOT / "README.md"))
    s.add_argument("--out", default=str(paths.REPORTS))
    s.set_defaults(func=_cmd_scorecard)

    v = sub.add_parser("validate", help="validate results JSON files against the schema")
    v.add_argument("folder")
    v.add_argument("--allow-empty", action="store_true", help="succeed when the folder holds no JSON")
    v.set_defaults(func=_cmd_validate)

    b = sub.add_parser("bench", help="run a benchmark and write reports/bench/NAME.json")
    b.add_argument("name", help="benchmark name (see repro.bench.BENCHES)")
    b.add_argument("--quick", action="store_true", help="a short run (within a minute)")
    b.add_argument("--out", default=None, help="folder for the JSON (default reports/bench)")
    b.set_defaults(func=_cmd_bench)

    dt = sub.add_parser("data", help="`data build [--smoke|--all] [--force]`, `data verify`: the corpora and "
                        "notebook 06's videos")
    dt.add_argument("rest", nargs=argparse.REMAINDER)
    dt.set_defaults(func=_cmd_data)

    sub.add_parser("runs", help="`runs NAME [--executor local|ray] ...`: a sweep of runs into its table (see "
                   "`runs --help`)")

    d = sub.add_parser("dcpt", help="D-CPT Law: `dcpt grid` trains the grid of continual pre-training runs")
    d.add_argument("what", choices=["grid"])
    d.add_argument("rest", nargs=argparse.REMAINDER)
    d.set_defaults(func=_cmd_dcpt)

    a = parser.parse_args(argv)
    return a.func(a)
