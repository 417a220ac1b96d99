"""The rendered reports opened in headless Chromium, as a reader would open them (file://, offline)."""

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from repro import runner

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (make test installs Debian's 'chromium' where "
                             "it can: root and apt-get are needed)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=8000"]


def chromium(page: Path, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.tables: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a.get("class") or "")
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append((tag, a[key]))


def check_page(page: Path) -> Refs:
    """Open ``page`` in Chromium; every local link and image must resolve, nothing may be loaded remotely."""
    dom = chromium(page, "--dump-dom")
    refs = Refs()
    refs.feed(dom)
    for tag, ref in refs.refs:
        if ref.startswith(("http:", "https:", "//")):
            assert tag == "a", f"{page.name}: <{tag}> loads {ref} from the internet"
        elif not ref.startswith(("#", "data:", "mailto:")):
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.exists(), f"{page.name}: <{tag}> {ref} does not resolve"
    return refs


@pytest.fixture(scope="module")
def fixture_reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    shutil.copytree(ROOT / "tests" / "fixtures" / "notebooks", base / "notebooks")
    runner.run(notebooks=base / "notebooks", out=base / "reports", log=lambda s: None)
    return base / "reports"


def test_index_shows_claims_and_everything_resolves(fixture_reports, tmp_path):
    refs = check_page(fixture_reports / "index.html")
    assert "claims" in refs.tables
    assert ("a", "90_fixture.html") in refs.refs
    shot = tmp_path / "index.png"
    chromium(fixture_reports / "index.html", "--window-size=1200,900", f"--screenshot={shot}")
    assert shot.stat().st_size > 5000


def test_report_page_typesets_math_offline(fixture_reports):
    dom = chromium(fixture_reports / "90_fixture.html", "--dump-dom")
    assert "<mjx-container" in dom, "MathJax did not typeset the formula"
    assert "<svg" in dom
    check_page(fixture_reports / "90_fixture.html")


def test_committed_index_resolves():
    index = ROOT / "reports" / "index.html"
    if not index.exists():
        pytest.skip("no committed reports/index.html yet")
    check_page(index)
    for page in sorted((ROOT / "reports").glob("*.html")):
        check_page(page)
