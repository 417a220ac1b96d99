"""repro.runs on a tiny sweep (four runs of arithmetic): local, local with 2 worker processes and Ray give one table;
an interrupted sweep resumes to the straight table; a failed run is recorded and retried; a changed spec is a new
run; bad input is one line naming the parameter, and writes nothing."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import pytest

from repro import paths, runs


@dataclass(frozen=True)
class Point:
    x: int
    scale: float = 1.0

    @property
    def label(self) -> str:
        return f"x{self.x}"


def square(p: Point) -> list[dict]:
    """Two rows per run: y = scale x^2 + k. $TINY_INTERRUPT / $TINY_FAIL name an x that is interrupted / fails
    (environment variables, so that spawned worker processes see them too)."""
    if str(p.x) == os.environ.get("TINY_INTERRUPT"):
        raise KeyboardInterrupt
    if str(p.x) == os.environ.get("TINY_FAIL"):
        raise RuntimeError(f"boom at x={p.x}")
    if str(p.x) == os.environ.get("TINY_EXIT"):
        os._exit(3)  # the worker process dies without a word
    if str(p.x) == os.environ.get("TINY_INF"):
        return [{"k": float("inf"), "y": 0.0}]  # k is declared int in INT_COLUMNS below
    return [{"k": float(k), "y": p.scale * p.x ** 2 + k} for k in range(2)]


COLUMNS = {"run": str, "k": float, "y": float}
QUIET = dict(log=lambda s: None, progress=False)
# the ids are the label and a hash of the whole spec, the same on every machine and Python version
IDS = ["x0@f828477397", "x1@55847ea765", "x2@f2f0d1afba", "x3@c5de1f07a3"]
STRAIGHT = "run,k,y\n" + "".join(f"{rid},{k}.0,{x * x + k}.0\n" for x, rid in enumerate(IDS) for k in range(2))


def tiny(path, xs=range(4), scale=1.0):
    return runs.Sweep("test/tiny", path, [Point(x, scale) for x in xs], square, COLUMNS)


def files(path):
    return path.with_suffix(".csv").read_text(), json.loads(path.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance with 2 CPUs for the module; this module's functions travel to it by value."""
    import logging

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def test_ids_are_label_and_hash_of_the_whole_spec():
    assert [runs.run_id(Point(x)) for x in range(4)] == IDS
    assert runs.run_id(Point(1, 2.0)) != IDS[1] and runs.run_id(Point(1, 2.0)).startswith("x1@")
    assert runs.run_id(Point(0, -0.0)) == runs.run_id(Point(0, 0.0))
    with pytest.raises(TypeError, match="spec must be a dataclass instance, got Loose"):
        runs.run_id(type("Loose", (), {})())
    with pytest.raises(TypeError, match="Mutable must be a frozen dataclass"):
        runs.run_id(dataclass(type("Mutable", (), {"__annotations__": {"x": int}}))(1))
    with pytest.raises(ValueError, match="finite"):
        runs.run_id(Point(1, float("nan")))


@pytest.mark.slow
def test_local_jobs_and_ray_give_one_table(tmp_path, ray_local):
    made = {}
    for name, kw in [("local", {}), ("jobs", {"jobs": 2}), ("ray", {"executor": "ray"})]:
        runs.run_sweep(tiny(tmp_path / name), **kw, **QUIET)
        made[name] = files(tmp_path / name)
    assert made["local"][0] == made["jobs"][0] == made["ray"][0] == STRAIGHT
    execs = {name: {v["executor"] for v in meta["runs"].values()} for name, (_, meta) in made.items()}
    assert execs == {"local": {"local"}, "jobs": {"local, 2 processes"}, "ray": {"ray (local instance)"}}
    for _, meta in made.values():
        assert list(meta["runs"]) == IDS and meta["failed"] == {} and "running" not in meta and "driver" not in meta
        info = meta["runs"][IDS[1]]
        assert info["label"] == "x1" and info["spec"] == {"x": 1, "scale": 1.0} and info["status"] == "done"
        assert info["resources"] == {"num_cpus": 1, "num_gpus": 0} and info["machine"]["threads"] == 1
        assert len(info["git"]["revision"]) == 40 and isinstance(info["git"]["dirty"], bool)
        assert info["versions"]["torch"] and info["end"] >= info["start"] and info["cpu_seconds"] >= 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupted_sweep_resumes_to_the_straight_table(tmp_path, monkeypatch, jobs):
    monkeypatch.setenv("TINY_INTERRUPT", "2")
    with pytest.raises(KeyboardInterrupt):
        runs.run_sweep(tiny(tmp_path / "cut"), jobs=jobs, **QUIET)
    csv, meta = files(tmp_path / "cut")
    assert "running" not in meta and "driver" not in meta and IDS[2] not in meta["runs"]
    # the runs finished before the interruption are kept (which ones, with 2 workers, depends on timing)
    assert {r.split(",")[0] for r in csv.splitlines()[1:]} == set(meta["runs"]) and meta["runs"]
    monkeypatch.delenv("TINY_INTERRUPT")
    runs.run_sweep(tiny(tmp_path / "cut"), jobs=jobs, **QUIET)
    runs.run_sweep(tiny(tmp_path / "straight"), **QUIET)
    (cut, cut_meta), (straight, straight_meta) = files(tmp_path / "cut"), files(tmp_path / "straight")
    assert cut == straight == STRAIGHT and list(cut_meta["runs"]) == list(straight_meta["runs"]) == IDS


def test_failed_run_is_recorded_and_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_FAIL", "1")
    sweep = tiny(tmp_path / "t")
    table = runs.run_sweep(sweep, **QUIET)
    assert table.labels() == {"x0", "x2", "x3"} and IDS[1] not in files(tmp_path / "t")[0]
    failed = table.meta["failed"][IDS[1]]
    assert failed["error"] == "RuntimeError: boom at x=1" and failed["status"] == "failed"
    assert "raise RuntimeError" in failed["traceback"] and [e["error"] for e in failed["errors"]] == [failed["error"]]
    st = runs.status(sweep)
    assert (st["done"], st["running"], st["failed"], st["left"]) == (
        [IDS[0], IDS[2], IDS[3]], [], {IDS[1]: "RuntimeError: boom at x=1"}, [IDS[1]])
    assert runs.format_status(sweep, dict(st, seconds=5400.0, cpu_seconds=1800.0)) == "\n".join([
        f"test/tiny: {tmp_path / 't'}.csv",
        "  done     3 of 4, cost so far 1.50 h wall, 0.50 CPU-hours",
        "  running  0",
        "  failed   1 (retried by the next invocation)",
        f"    {IDS[1]}: RuntimeError: boom at x=1",
        "  left     1"])
    monkeypatch.delenv("TINY_FAIL")
    table = runs.run_sweep(sweep, **QUIET)
    assert table.meta["failed"] == {} and files(tmp_path / "t")[0] == STRAIGHT
    info = table.meta["runs"][IDS[1]]
    assert info["attempts"] == 2 and [e["error"] for e in info["earlier_errors"]] == ["RuntimeError: boom at x=1"]


def test_changed_spec_is_a_new_run_not_an_overwrite(tmp_path):
    runs.run_sweep(tiny(tmp_path / "t", xs=[1]), **QUIET)
    changed = tiny(tmp_path / "t", xs=[1], scale=2.0)
    new = runs.run_id(Point(1, 2.0))
    table = runs.run_sweep(changed, **QUIET)
    assert list(table.meta["runs"]) == [new, IDS[1]]  # the sweep's runs first, then the others as they stood
    assert files(tmp_path / "t")[0] == f"run,k,y\n{new},0.0,2.0\n{new},1.0,3.0\n{IDS[1]},0.0,1.0\n{IDS[1]},1.0,2.0\n"
    assert runs.status(changed)["other"] == [IDS[1]] and table.find(new) == new
    with pytest.raises(ValueError, match="rid 'x1' is the label of 2 runs"):
        table.find("x1")


def test_status_of_the_committed_grid():
    sweep = runs.get_sweep("dcpt/grid")
    meta = json.loads((paths.DATA / "dcpt" / "grid.json").read_text())
    hours = sum(v["seconds"] for v in meta["runs"].values()) / 3600
    lines = runs.format_status(sweep).splitlines()
    assert lines[0] == f"dcpt/grid: {paths.DATA / 'dcpt' / 'grid'}.csv" and lines[2:] == [
        "  running  0", "  failed   0", "  left     0"]
    assert lines[1].startswith(f"  done     54 of 54, cost so far {hours:.2f} h wall")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, env, flag, words", [
    (["nope"], {}, "NAME", "unknown sweep 'nope'"),
    (["test/tiny", "--executor", "dask"], {}, "--executor", "unknown executor 'dask'"),
    (["test/tiny", "--executor", "ray"], {"no ray": True}, "--executor", "ray is not installed"),
    (["test/tiny", "--executor", "ray", "--address", "127.0.0.1:PORT"], {}, "--address", "nothing answers"),
    (["test/tiny", "--executor", "ray"], {"RAY_ADDRESS": "127.0.0.1:PORT"}, "--address", "nothing answers"),
    (["test/tiny", "--address", "127.0.0.1:PORT"], {}, "--address", "only the ray executor"),
    (["test/tiny", "--jobs", "0"], {}, "--jobs", "at least 1"),
    (["test/tiny", "--only", "x9"], {}, "--only", "['x9'] not in sweep test/tiny"),
    (["test/tiny", "--status", "--jobs", "2"], {}, "--status", "takes no --jobs"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, argv, env, flag, words):
    runs.register("test/tiny", lambda: tiny(tmp_path / "t"))
    port = str(_free_port())
    for k, v in env.items():
        if k == "no ray":
            monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
        else:
            monkeypatch.setenv(k, v.replace("PORT", port))
    with pytest.raises(SystemExit) as e:
        runs.main([a.replace("PORT", port) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"python -m repro runs: error: {flag}: ") and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_cli_end_to_end_and_notebooks_need_no_ray(tmp_path):
    """The real command: an unknown sweep is one line (exit 2); --list names the library's sweeps; importing the
    library the notebooks use does not import Ray."""
    p = subprocess.run([sys.executable, "-m", "repro", "runs", "klingon"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "unknown sweep 'klingon'" in p.stderr and "dcpt/grid-cross" in p.stderr
    p = subprocess.run([sys.executable, "-m", "repro", "runs", "--list"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and {"dcpt/grid", "dcpt/grid-usage1-code"} <= set(p.stdout.split())
    code = "import sys, repro.runs, repro.dcpt.grid, repro.dcpt.analysis; print('ray' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "False", p.stderr


def test_failed_runs_make_the_command_exit_1(tmp_path, monkeypatch, capsys):
    runs.register("test/tiny", lambda: tiny(tmp_path / "t"))
    monkeypatch.setenv("TINY_FAIL", "3")
    assert runs.main(["test/tiny"]) == 1
    assert "1 runs failed" in capsys.readouterr().err
    monkeypatch.delenv("TINY_FAIL")
    assert runs.main(["test/tiny"]) == 0 and files(tmp_path / "t")[0] == STRAIGHT


def test_a_dying_worker_is_recorded_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """os._exit in a run under --jobs 2 used to hang the driver forever; now the runs in flight with it are recorded
    failed, the others done, and the next invocation completes the straight table."""
    monkeypatch.setenv("TINY_EXIT", "1")
    sw = tiny(tmp_path / "t")
    runs.run_sweep(sw, jobs=2, **QUIET)
    _, meta = files(tmp_path / "t")
    assert IDS[1] in meta["failed"] and "worker process died" in meta["failed"][IDS[1]]["error"]
    assert set(meta["runs"]) | set(meta["failed"]) == set(IDS) and "driver" not in meta
    monkeypatch.delenv("TINY_EXIT")
    runs.run_sweep(sw, jobs=2, **QUIET)
    assert files(tmp_path / "t")[0] == STRAIGHT


def test_a_second_driver_is_refused_while_the_first_holds_the_table(tmp_path):
    sw = tiny(tmp_path / "t")
    with runs._driver_lock(sw.path):  # what a first driver holds while it runs
        with pytest.raises(runs.RunsArgumentError, match="being run by another driver"):
            runs.run_sweep(sw, **QUIET)
    assert not tmp_path.joinpath("t.csv").exists()
    runs.run_sweep(sw, **QUIET)  # released: runs
    assert files(tmp_path / "t")[0] == STRAIGHT


def test_rows_a_column_cannot_hold_fail_the_run_not_the_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_INF", "2")
    sw = runs.Sweep("test/tiny", tmp_path / "t", [Point(x) for x in range(4)], square,
                    {"run": str, "k": int, "y": float})
    runs.run_sweep(sw, **QUIET)
    _, meta = files(tmp_path / "t")
    assert list(meta["failed"]) == [IDS[2]] and "OverflowError" in meta["failed"][IDS[2]]["error"]


@pytest.mark.parametrize("edit, says", [
    (lambda csv, meta: csv.write_text(csv.read_text().splitlines()[0] + "\n"), "holds 0 rows of run"),
    (lambda csv, meta: csv.write_text("".join(csv.read_text().splitlines(True)[:-1])), "holds 1 rows of run"),
    (lambda csv, meta: meta.write_text(json.dumps({**json.loads(meta.read_text()), "runs": None})), "'runs' holds"),
    (lambda csv, meta: meta.write_text("{"), "is not JSON"),
])
def test_a_hand_edited_table_is_one_line_for_status_and_run(tmp_path, capsys, edit, says):
    sw = tiny(tmp_path / "t")
    runs.run_sweep(sw, **QUIET)
    edit(tmp_path / "t.csv", tmp_path / "t.json")
    with pytest.raises(runs.RunsArgumentError, match=says):
        runs.run_sweep(sw, **QUIET)
    with pytest.raises(runs.RunsArgumentError, match=says):
        runs.status(sw)


def test_dict_keys_of_other_types_are_refused_not_merged():
    @dataclass(frozen=True)
    class WithDict:
        d: tuple = ()
        m: dict = None

        def __hash__(self):
            return 0

    assert runs.run_id(WithDict(m={"1": "a"})) != runs.run_id(WithDict(m={"2": "a"}))
    with pytest.raises(TypeError, match="not a str"):
        runs.run_id(WithDict(m={1: "a"}))
