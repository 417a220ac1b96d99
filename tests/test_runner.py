"""The runner against the fixture notebook in tests/fixtures (not a paper notebook)."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from repro import runner
from repro.profile import ProfileError

pytestmark = pytest.mark.slow
NAME = "90_fixture"


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "repro", "run", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One successful default-profile run of the fixture, with scale=7."""
    base = tmp_path_factory.mktemp("good")
    nbs = base / "notebooks"
    shutil.copytree(Path(__file__).parent / "fixtures" / "notebooks", nbs)
    out = base / "reports"
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 7}, log=lambda s: None)
    assert [j.status for j in jobs] == ["ok"]
    return nbs, out


def copy_run(good_run, tmp_path):
    nbs, out = good_run
    shutil.copytree(nbs, tmp_path / "notebooks")
    shutil.copytree(out, tmp_path / "reports")
    return tmp_path / "notebooks", tmp_path / "reports"


def test_parameters_reach_the_notebook(good_run):
    _, out = good_run
    res = json.loads((out / "results" / f"{NAME}.json").read_text())
    assert res["parameters"]["scale"] == 7 and res["profile"] == "default"
    assert res["values"]["scale"]["value"] == 7
    assert res["claims"][0]["verdict"] == "reproduced"
    page = re.sub(r"<[^>]+>", "", (out / f"{NAME}.html").read_text())
    assert "scale = 7" in page  # papermill's injected-parameters cell is in the report
    assert 'href="90_fixture.html"' in (out / "index.html").read_text()
    state = json.loads((out / "runs.json").read_text())
    assert state[NAME]["status"] == "ok" and state[NAME]["parameters"] == {"scale": 7}


def test_pages_fetch_nothing_from_the_internet(good_run):
    _, out = good_run
    for page in [out / "index.html", out / f"{NAME}.html"]:
        text = page.read_text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', text)
        remote = [r for r in refs if r.startswith(("http:", "https:", "//"))]
        # the only remote link allowed is to the paper itself (an <a>, never a loaded resource)
        loaded = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?:|//)', text)
        assert not loaded, f"{page.name} loads {loaded}"
        for r in refs:
            if not r.startswith(("#", "data:")) and r not in remote:
                assert (page.parent / r).exists(), f"{page.name}: {r} does not resolve"


def test_failing_cell_keeps_good_report_and_shows_red(good_run, tmp_path):
    nbs, out = copy_run(good_run, tmp_path)
    before = {k: v for k, v in snapshot(out).items() if k != "index.html" and k != "runs.json"}
    p = cli("--notebooks", nbs, "--out", out, "-p", "fail=True", "-p", "scale=7")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "90_fixture failed in code cell 3" in p.stdout
    assert "RuntimeError: failing on request" in p.stdout
    after = snapshot(out)
    for k, v in before.items():
        assert after[k] == v, f"{k} changed after a failed run"
    index = (out / "index.html").read_text()
    assert 'class="failed"' in index and "RuntimeError" in index and "failing on request" in index
    state = json.loads((out / "runs.json").read_text())
    assert state[NAME]["status"] == "failed" and state[NAME]["error"]["cell"]["code_cell"] == 3
    assert state[NAME]["last_ok"]  # the good report it keeps is dated


def test_unknown_profile_and_parameter_list_the_valid_ones(fixture_notebooks, tmp_path):
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "--profile", "tiny")
    assert p.returncode == 2 and "smoke" in p.stderr and "default" in p.stderr and "full" in p.stderr
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "-p", "width=3")
    assert p.returncode == 2
    assert "unknown parameter(s) width for 90_fixture; valid: seed, scale, fail, sleep_s" in p.stderr
    with pytest.raises(ProfileError, match="valid profiles: smoke, default, full"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", profile="tiny")
    with pytest.raises(runner.RunnerError, match="no notebook named 'ddk'; valid: 90_fixture"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", only=["ddk"])
    with pytest.raises(runner.RunnerError, match="--profile"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"profile": "smoke"})
    assert not (tmp_path / "r").exists()


def test_unchanged_is_skipped_and_changed_is_run(good_run, tmp_path):
    nbs, out = copy_run(good_run, tmp_path)
    logs = []
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 7}, log=logs.append)
    assert [j.status for j in jobs] == ["skipped"]
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 8}, log=logs.append)  # new parameters
    assert [j.status for j in jobs] == ["ok"]
    nb = json.loads((nbs / f"{NAME}.ipynb").read_text())
    nb["cells"][3]["source"] = ["time.sleep(sleep_s)  # edited\n", "if fail:\n", "    raise RuntimeError('x')"]
    (nbs / f"{NAME}.ipynb").write_text(json.dumps(nb))
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 8}, log=logs.append)
    assert [j.status for j in jobs] == ["ok"]
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 8}, force=True, log=logs.append)
    assert [j.status for j in jobs] == ["ok"]
    assert any("skipped" in line for line in logs)


def test_smoke_profile_reaches_the_notebook(fixture_notebooks, tmp_path):
    jobs = runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", profile="smoke", log=lambda s: None)
    assert jobs[0].status == "ok"
    res = json.loads((tmp_path / "r" / "results" / f"{NAME}.json").read_text())
    assert res["profile"] == "smoke" and res["parameters"]["scale"] == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_reports_as_they_were(good_run, tmp_path, sig):
    nbs, out = copy_run(good_run, tmp_path)
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "repro", "run", "--notebooks", nbs, "--out", out, "--force",
                             "-p", "sleep_s=60", "-p", "scale=7"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(8)  # the kernel is up and sleeping in the fixture's cell
    assert proc.poll() is None, proc.stdout.read()
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("repro.execute" in " ".join(p.cmdline()) for p in family)
    assert any("ipykernel" in " ".join(p.cmdline()) for p in family)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert snapshot(out) == before
    # nothing is left running: the worker and its kernel die with the runner
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [p.cmdline() for p in alive]


def test_notebook_timeout_fails_cleanly(fixture_notebooks, tmp_path):
    jobs = runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"sleep_s": 60.0}, timeout=6,
                      log=lambda s: None)
    assert jobs[0].status == "failed" and jobs[0].error["ename"] == "NotebookTimeout"
    assert not (tmp_path / "r" / f"{NAME}.html").exists()
    assert "NotebookTimeout" in (tmp_path / "r" / "index.html").read_text()
