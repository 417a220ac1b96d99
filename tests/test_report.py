import json
import shutil
from pathlib import Path

import pytest

from repro import record, report

FIX = Path(__file__).parent / "fixtures"


def results_folder(tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    rec = record.start("03_dcpt_law", profile="default", seed=0, seeds=[0, 1, 2])
    rec.claim("r2", "L3 fits | with R^2 above 0.97", rule=record.above(0.97), source=record.paper("Table 2", 0.97),
              unit_of_replication="seed", range=(float("-inf"), 1.0))
    rec.observe("r2", [0.99, 0.991, 0.992])
    rec.claim("rank", "L3 beats L1 on held-out ratios", rule=record.above(0.0), source=record.paper("Table 4"),
              unit_of_replication="seed")
    rec.observe("rank", [-0.10, -0.11, -0.12])
    rec.claim("fast", "ours is 3x faster", rule=record.above(3.0), source=record.goal(), unit_of_replication="round")
    rec.observe("fast", [3.5, 3.6])
    rec.fact("cut", "packing cuts lookups 1.5-fold", value=1.5, expected=1.5, source=record.paper("§IV"))
    rec.save(out / "results")
    (out / "runs.json").write_text(json.dumps({
        "03_dcpt_law": {"status": "ok", "key": "k", "profile": "default", "seconds": 12.0},
        "04_picasso": {"status": "failed", "key": None, "profile": "default", "seconds": 3.0,
                       "error": {"ename": "ValueError", "evalue": "bad <field>", "cell": {"code_cell": 4}}},
    }))
    return out


def test_index_has_claims_failures_and_missing_papers(tmp_path):
    out = results_folder(tmp_path)
    text = report.write_index(out).read_text()
    assert 'class="claims"' in text and "L3 fits | with R^2 above 0.97" in text
    assert "reproduced" in text and "not reproduced" in text
    assert 'class="failed"' in text and "FAILED in code cell 4" in text and "bad &lt;field&gt;" in text
    assert "Not yet in the workbook" in text and "DDK" in text and "VICTOR" in text
    assert ("2 claims of the papers: 1 reproduced, 1 not reproduced, 0 inconclusive · 1 workbook goals: 0 reproduced, "
            "0 not reproduced, 1 inconclusive · facts: 1, of which 1 hold") in text
    assert text.index("Claims of the paper") < text.index("Workbook goals") < text.index("Facts: exact quantities")
    assert "inconclusive (n &lt; 3)" in text
    assert (out / "assets" / "mathjax" / "tex-svg-full.js").exists()
    assert (out / "assets" / "nbconvert" / "index.css").exists()


def test_scorecard_round_trip(tmp_path):
    out = results_folder(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.SCORECARD_BEGIN}\nOLD-TABLE\n{report.SCORECARD_END}\nafter\n")
    assert report.write_scorecard(readme, out) is True
    text = readme.read_text()
    assert "OLD-TABLE" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| 03_dcpt_law (default) | `r2`: L3 fits \\| with R^2 above 0.97 | 0.97 (Table 2) | seed |" in text
    assert "**not reproduced**" in text and "**inconclusive (n < 3)**" in text
    assert text.index("**Claims of the papers**") < text.index("`rank`") < text.index("**Workbook goals**") \
        < text.index("`fast`") < text.index("**Facts**") < text.index("`cut`")
    assert report.write_scorecard(readme, out) is False  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no scorecard markers"):
        report.write_scorecard(readme, out)


def test_render_html_is_offline(tmp_path):
    nb = tmp_path / "nb.ipynb"
    shutil.copy(FIX / "notebooks" / "90_fixture.ipynb", nb)
    page = report.render_html(nb, tmp_path / "nb.html").read_text()
    assert "cdnjs" not in page and "unpkg" not in page and "require.js" not in page
    assert report.MATHJAX in page and "L(N) = E + A N^{-\\alpha}" in page


def test_readme_scorecard_is_current():
    """The README's scorecard is what `python -m repro scorecard` makes of the committed results."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    start = text.index(report.SCORECARD_BEGIN) + len(report.SCORECARD_BEGIN)
    assert text[start:text.index(report.SCORECARD_END)].strip() == report.scorecard_markdown(root / "reports")
