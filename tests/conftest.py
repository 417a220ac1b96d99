from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def fixture_notebooks(tmp_path: Path) -> Path:
    """A private copy of the fixture notebooks folder (tests may edit it)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for nb in (FIXTURES / "notebooks").glob("*.ipynb"):
        (folder / nb.name).write_text(nb.read_text())
    return folder
