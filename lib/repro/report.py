"""HTML reports: one page per executed notebook, and the index that is the workbook's front page.

Pages work offline: the template (``templates/repro``) loads nothing from the internet, figures are
embedded in the page, and formulas are typeset by a MathJax copy in ``reports/assets/``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from . import paths
from .machine import machine_label
from .papers import PAPERS, paper_for
from .record import claim_text, fmt_number, fmt_ours, fmt_source, fmt_verdict, results_html, split_claims
from .runstate import load_state

MATHJAX = "assets/mathjax/tex-svg-full.js"
TEMPLATES = Path(__file__).with_name("templates")
SCORECARD_BEGIN = "<!-- scorecard:begin (python -m repro scorecard writes this table) -->"
SCORECARD_END = "<!-- scorecard:end -->"


def _lab_static() -> Path:
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("nbconvert", "templates", "lab", "static"):
        if (Path(base) / "index.css").exists():
            return Path(base)
    raise FileNotFoundError("nbconvert's lab template (static/index.css) is not installed")


def ensure_assets(out: Path) -> None:
    """Copy what the pages load (MathJax, the lab style sheets) into ``out/assets``, where missing or changed."""
    sources = [(f, "mathjax") for f in (paths.ASSETS / "mathjax").iterdir()]
    sources += [(_lab_static() / n, "nbconvert") for n in ("index.css", "theme-light.css")]
    for src, folder in sources:
        dst = Path(out) / "assets" / folder / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def render_html(nb_path: Path, out_html: Path) -> Path:
    """Render an executed notebook to a self-contained HTML page (MathJax from the reports folder)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter(template_name="repro", extra_template_basedirs=[str(TEMPLATES)])
    exporter.mathjax_url = MATHJAX
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": Path(nb_path).stem}})
    paths.atomic_write_text(out_html, body)
    return Path(out_html)


# -- the index ----------------------------------------------------------------------------------------
_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.verdict.reproduced { background: #e3f6e3; } .verdict.not-reproduced { background: #fbe3e3; }
.verdict.inconclusive { background: #fdf5d9; }
.meta { color: #555; font-size: 14px; }
section.failed { border-left: 6px solid #c0392b; padding-left: 1em; }
.error { color: #c0392b; font-weight: 600; white-space: pre-wrap; }
.missing { color: #888; }
"""


def _load_results(out: Path) -> dict[str, dict[str, Any]]:
    res = {}
    for f in sorted((out / "results").glob("*.json")):
        res[f.stem] = json.loads(f.read_text())
    return res


def _section(name: str, run: dict[str, Any], res: dict[str, Any] | None, out: Path) -> str:
    paper = paper_for(name)
    title = html.escape(paper.title if paper else name)
    failed = run.get("status") == "failed"
    parts = [f'<section id="{html.escape(name)}" class="{"failed" if failed else "ok"}">',
             f"<h2>{html.escape(name[:2])} · {title}</h2>"]
    if paper:
        parts.append(f'<p class="meta">{html.escape(paper.venue)} · <a href="{html.escape(paper.url)}">paper</a></p>')
    if failed:
        e = run.get("error", {})
        cell = e.get("cell") or {}
        where = f" in code cell {cell['code_cell']}" if cell.get("code_cell") else ""
        parts.append(f'<p class="error">FAILED{where}: {html.escape(str(e.get("ename")))}: '
                     f'{html.escape(str(e.get("evalue", ""))[:500])}</p>')
        if run.get("last_ok"):
            parts.append(f'<p class="meta">The report below is the last good run ({html.escape(run["last_ok"])}, '
                         f'{html.escape(str(run.get("last_ok_profile")))} profile).</p>')
    has_page = (out / f"{name}.html").exists()
    if res is not None:
        seeds = res.get("seeds") or [res.get("seed")]
        meta = [f"profile <b>{html.escape(res['profile'])}</b>",
                f"seed{'s' if len(seeds) > 1 else ''} {html.escape(', '.join(map(str, seeds)))}",
                f"run time {run.get('seconds', res.get('duration_s', 0)):.0f} s",
                f"finished {html.escape(res.get('finished_at', ''))}",
                f"git {html.escape((res.get('git') or {}).get('revision') or 'unknown')[:10]}",
                f"on {html.escape(machine_label(res['machine']))}" if res.get("machine") else ""]
        parts.append('<p class="meta">' + " · ".join(m for m in meta if m) + "</p>")
        parts.append(results_html(res))
    elif not failed:
        parts.append('<p class="missing">This run recorded no results.</p>')
    if has_page:
        parts.append(f'<p><a href="{html.escape(name)}.html">Full report: {html.escape(name)}.html</a></p>')
    parts.append("</section>")
    return "\n".join(parts)


def write_index(out: Path = paths.REPORTS) -> Path:
    """Write ``out/index.html`` from ``out/runs.json`` and ``out/results/*.json``."""
    out = Path(out)
    ensure_assets(out)
    state = load_state(out)
    results = _load_results(out)
    names = sorted(set(state) | set(results))
    sections = [_section(n, state.get(n, {}), results.get(n), out) for n in names]
    present = {n[:2] for n in names}
    missing = [p for num, p in sorted(PAPERS.items()) if num not in present]
    if missing:
        items = "".join(f"<li>{html.escape(p.number)} · {html.escape(p.title)}</li>" for p in missing)
        sections.append(f'<section class="missing"><h2>Not yet in the workbook</h2><ul>{items}</ul></section>')
    summary = _summary(results)
    n_failed = sum(1 for n in names if state.get(n, {}).get("status") == "failed")
    if n_failed:
        summary += f' · <span class="error">{n_failed} notebook(s) failed</span>'
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Reproduction workbook: reports</title>
<style>{_CSS}</style></head>
<body>
<h1>Reproduction workbook</h1>
<p class="meta">Six papers, one notebook each, executed and rendered by <code>python -m repro run</code>.
Index written {now}.</p>
<p id="summary">{summary}</p>
{chr(10).join(sections)}
</body></html>
"""
    path = out / "index.html"
    paths.atomic_write_text(path, page)
    return path


def _summary(results: dict[str, dict[str, Any]]) -> str:
    """``N claims of the papers: a reproduced, b not reproduced, c inconclusive · M workbook goals: … · K facts``
    (final verdicts, after Holm's adjustment within each notebook)."""
    parts = []
    for what, idx in (("claims of the papers", 0), ("workbook goals", 1)):
        counts = {v: 0 for v in ("reproduced", "not reproduced", "inconclusive")}
        for r in results.values():
            for c in split_claims(r.get("claims", []))[idx]:
                counts[c["verdict"]] += 1
        parts.append(f"{sum(counts.values())} {what}: {counts['reproduced']} reproduced, {counts['not reproduced']} "
                     f"not reproduced, {counts['inconclusive']} inconclusive")
    facts = [f for r in results.values() for f in r.get("facts", [])]
    parts.append(f"facts: {len(facts)}, of which {sum(f['holds'] for f in facts)} hold")
    return " · ".join(parts)


# -- the README scorecard -----------------------------------------------------------------------------
def scorecard_markdown(out: Path = paths.REPORTS) -> str:
    """The README's scorecard: the papers' claims, the workbook's goals and the facts of the design, each a
    Markdown table (final verdicts after Holm's adjustment within each notebook, the raw decision beside)."""
    results = _load_results(Path(out))

    def table(idx: int, first: str) -> list[str]:
        rows = [f"| notebook | {first} | source | unit | ours | raw | verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, res in results.items():
            for c in split_claims(res.get("claims", []))[idx]:
                cells = [f"{name} ({res['profile']})", f"`{c['id']}`: {claim_text(c, res.get('machine'))}",
                         fmt_source(c), c["unit_of_replication"], fmt_ours(c["ours"], c.get("unit")), c["verdict_raw"],
                         f"**{fmt_verdict(c)}**"]
                rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
        if len(rows) == 2:
            rows.append("| – | none recorded yet | – | – | – | – | – |")
        return rows

    facts = ["| notebook | fact | source | value | expected | check |", "| --- | --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        for f in res.get("facts", []):
            cells = [name, f"`{f['id']}`: {f['text']}", fmt_source(f), fmt_number(f["value"]), fmt_number(f["expected"]),
                     "holds" if f["holds"] else "**does not hold**"]
            facts.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    if len(facts) == 2:
        facts.append("| – | none recorded yet | – | – | – | – |")
    return "\n".join(["**Claims of the papers**", "", *table(0, "claim"), "", "**Workbook goals** (targets this "
                      "workbook sets itself, not claims of the papers)", "", *table(1, "goal"), "",
                      "**Facts** (exact quantities, checked, not tested statistically)", "", *facts])


def write_scorecard(readme: Path = paths.ROOT / "README.md", out: Path = paths.REPORTS) -> bool:
    """Replace the marked section of ``readme`` with the scorecard; returns whether the file changed."""
    text = Path(readme).read_text()
    pattern = re.compile(re.escape(SCORECARD_BEGIN) + r".*?" + re.escape(SCORECARD_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no scorecard markers; add the lines\n{SCORECARD_BEGIN}\n{SCORECARD_END}")
    new = pattern.sub(lambda m: f"{SCORECARD_BEGIN}\n{scorecard_markdown(out)}\n{SCORECARD_END}", text)
    if new != text:
        paths.atomic_write_text(readme, new)
    return new != text
