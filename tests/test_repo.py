"""Consistency of the repository itself: notebooks stored clean, dependency files in step."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "tests" / "fixtures").rglob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3", "kernelspec must be python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs: strip them"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert re.search(r"^profile = None$", "".join(tagged[0]["source"]), re.M), "parameters must hold profile = None"


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [s for s in pip if not s.startswith("-e")]
    assert sorted(s.replace(" ", "") for s in pip) == sorted(s.replace(" ", "") for s in specs), (
        "environment.yml and pyproject.toml name different packages or versions: "
        f"only in pyproject {sorted(set(map(_name, specs)) - set(map(_name, pip)))}, "
        f"only in environment.yml {sorted(set(map(_name, pip)) - set(map(_name, specs)))}")
    assert "python=3.11" in env["dependencies"]
    assert "torch==2.13.0" in specs, "torch must stay pinned to the CPU build 2.13.0"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make report" in readme and "make test" in readme
