import os
from pathlib import Path

import pytest

# Tests train tiny models: one intra-op thread is fastest for them, and it keeps a busy machine from
# slowing torch's thread pool by orders of magnitude (measured: 0.9 ms against 377 ms a tiny step).
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
