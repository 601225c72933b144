"""One HTML page summarising a folder of notebook runs, and an HTML copy of each notebook.

``write_report(out)`` reads the run folders that :mod:`mtlkit.nbrun` wrote under ``out``
(see :mod:`mtlkit.batch.runs`), renders every executed notebook to HTML next to it (nbconvert;
only when missing or older than the notebook), and writes ``out/index.html``: an overview
table, then per completed run its wall time, parameters, claim verdicts (coloured), key
metrics and figures (embedded as base64 so the page can be mailed or moved on its own), and
links to the executed notebook and its HTML copy; failed and interrupted attempts are
listed apart, with their error and partial notebook, and never mixed with the results.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mtlkit.batch.runs import (
    cell_source,
    completed_runs,
    flatten,
    load_notebook,
    notebook_file,
    run_summary,
    status_of,
    unfinished_runs,
)

MAX_METRICS = 24
MAX_EMBED_BYTES = 3_000_000

VERDICT_CLASS = {"holds": "pass", "fails": "fail", "fails as written (shown)": "shown",
                 "unexpectedly holds": "fail", "supported": "pass",
                 "not supported": "shown", "inconclusive": "muted"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;
 text-align:left;vertical-align:top} th{background:#f4f4f4}
.pass{background:#e3f6e3} .fail{background:#fbe0e0} .shown{background:#fff1d0}
.ok{color:#1a7f1a;font-weight:bold} .failed{color:#b00;font-weight:bold}
.interrupted,.incomplete{color:#a60;font-weight:bold} .muted{color:#777;font-size:.9em}
figure{display:inline-block;margin:.5em;max-width:48%} figure img{max-width:100%}
figcaption{font-size:.85em;color:#555} code{background:#f4f4f4;padding:0 .2em}
"""


def find_runs(out: Path) -> list[Path]:
    """Completed run folders under ``out`` (attempts and prepared copies excluded)."""
    return completed_runs(out)


def html_copy(ipynb: Path) -> Path:
    """Where the HTML copy of an executed notebook goes: next to it."""
    return ipynb.with_suffix(".html")


def render_notebook(ipynb: Path) -> Path | None:
    """Render ``ipynb`` to HTML (unless an up-to-date copy exists); None if it cannot."""
    target = html_copy(ipynb)
    if target.exists() and target.stat().st_mtime >= ipynb.stat().st_mtime:
        return target
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(ipynb))
    except Exception as e:  # a damaged notebook must not stop the report
        print(f"report: cannot render {ipynb} to HTML: {type(e).__name__}: {e}")
        return None
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(target)
    return target


def render_notebooks(out: str | Path) -> list[Path]:
    """HTML copies of the executed notebooks of every run and attempt under ``out``."""
    out = Path(out)
    done = []
    for run_dir in completed_runs(out) + unfinished_runs(out):
        nb = notebook_file(run_dir, status_of(run_dir)[1])
        page = render_notebook(nb) if nb else None
        if page:
            done.append(page)
    return done


def _summary(run_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """Everything the report shows about one run (or attempt) folder: the run's
    :func:`~mtlkit.batch.runs.run_summary`, its title, flattened metrics and HTML copy."""
    r = run_summary(run_dir, out)
    nb = r["ipynb"]
    page = html_copy(nb) if nb else None
    return {**r, "notebook": r["notebook"] or run_dir.name, "title": _title(nb) if nb else "",
            "html": page if page and page.exists() else None,
            "metrics": flatten(r["metrics"]) if isinstance(r["metrics"], dict) else {}}


def _title(path: Path) -> str:
    try:
        for cell in load_notebook(path).get("cells", []):
            tags = cell.get("metadata", {}).get("tags", [])
            if cell.get("cell_type") == "markdown" and "papermill-error-cell-tag" not in tags:
                lines = cell_source(cell).strip().splitlines()
                return lines[0].lstrip("# ").strip() if lines else ""
    except (OSError, ValueError):
        pass
    return ""


def claim_counts(claims: list[dict[str, Any]]) -> tuple[int, int]:
    """(claims as expected, claims not as expected); findings (verdicts on a paper's
    empirical claims, :func:`mtlkit.nb.finding`) are neither."""
    checked = [c for c in claims if c.get("kind") != "finding"]
    good = sum(1 for c in checked if c.get("ok") == c.get("expect", True))
    return good, len(checked) - good


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = json.dumps(v) if not isinstance(v, (int, str)) else str(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _href(path: Path, out: Path) -> str:
    return _esc(quote(path.relative_to(out).as_posix(), safe="/=,+"))


def _links(r: dict[str, Any], out: Path) -> str:
    links = []
    if r["html"]:
        links.append(f"<a href='{_href(r['html'], out)}'>notebook (HTML)</a>")
    if r["ipynb"]:
        links.append(f"<a href='{_href(r['ipynb'], out)}'>.ipynb</a>")
    return " · ".join(links) or "–"


def _overview(runs: list[dict[str, Any]], out: Path) -> str:
    rows = []
    for i, r in enumerate(runs):
        good, bad = claim_counts(r["claims"])
        wall = f"{r['wall_s']:.1f}" if isinstance(r["wall_s"], (int, float)) else "–"
        rows.append(
            f"<tr><td><a href='#run{i}'>{_esc(r['label'])}</a></td><td>{_esc(r['title'])}</td>"
            f"<td class='{_esc(r['status'])}'>{_esc(r['status'])}</td><td>{wall}</td>"
            f"<td>{good} ✓ / {bad} ✗</td><td>{len(r['figures'])}</td>"
            f"<td>{_links(r, out)}</td></tr>")
    return ("<table><tr><th>run</th><th>notebook</th><th>status</th><th>wall time (s)</th>"
            "<th>claims</th><th>figures</th><th>read</th></tr>" + "".join(rows) + "</table>")


def _unfinished(runs: list[dict[str, Any]], out: Path) -> str:
    if not runs:
        return ""
    rows = "".join(
        f"<tr><td><code>{_esc(r['label'])}</code></td><td>{_esc(r['title'] or r['notebook'])}"
        f"</td><td class='{_esc(r['status'])}'>{_esc(r['status'])}</td>"
        f"<td>{_esc(r['finished'] or '–')}</td><td>{_esc(r['error'] or '–')}</td>"
        f"<td>{_links(r, out)}</td></tr>" for r in runs)
    return ("<h2 id='unfinished'>Failed and interrupted attempts</h2><p class='muted'>Not "
            "results: kept to find out what went wrong. A completed run of the same parameters, "
            "if any, is listed above; rerunning replaces an attempt.</p>"
            "<table><tr><th>folder</th><th>notebook</th><th>status</th><th>finished</th>"
            f"<th>error</th><th>read</th></tr>{rows}</table>")


def _claims_table(claims: list[dict[str, Any]]) -> str:
    if not claims:
        return "<p class='muted'>no claims recorded</p>"
    rows = "".join(
        f"<tr class='{VERDICT_CLASS.get(c.get('verdict', ''), 'fail')}'>"
        f"<td>{_esc(c.get('claim', ''))}</td><td>{_esc(c.get('verdict', ''))}</td>"
        f"<td>{_esc(c.get('detail', ''))}</td></tr>" for c in claims)
    return f"<table><tr><th>claim</th><th>verdict</th><th>detail</th></tr>{rows}</table>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    if not metrics:
        return "<p class='muted'>no metrics.json</p>"
    items = list(metrics.items())
    rows = "".join(f"<tr><td><code>{_esc(k)}</code></td><td>{_esc(_fmt(v))}</td></tr>"
                   for k, v in items[:MAX_METRICS])
    more = (f"<p class='muted'>{len(items) - MAX_METRICS} more in metrics.json</p>"
            if len(items) > MAX_METRICS else "")
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>{more}"


def _figure(path: Path, out: Path) -> str:
    rel = path.relative_to(out).as_posix()
    if path.stat().st_size <= MAX_EMBED_BYTES:
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    else:
        src = html.escape(rel)
    return (f"<figure><img src='{src}' alt='{_esc(path.name)}'>"
            f"<figcaption>{_esc(path.name)}</figcaption></figure>")


def _section(i: int, r: dict[str, Any], out: Path) -> str:
    wall = f"{r['wall_s']:.1f} s" if isinstance(r["wall_s"], (int, float)) else "–"
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["parameters"].items())
    figures = "".join(_figure(p, out) for p in r["figures"]) or \
        "<p class='muted'>no figures</p>"
    return (f"<h2 id='run{i}'>{_esc(r['title'] or r['notebook'])}</h2>"
            f"<p><span class='{_esc(r['status'])}'>{_esc(r['status'])}</span> · {wall}"
            f" · finished {_esc(r['finished'] or '–')} · <code>{_esc(r['label'])}</code>"
            f" · {_links(r, out)}</p>"
            f"<p class='muted'>parameters: {_esc(params) or '–'}</p>"
            f"<h3>Claims</h3>{_claims_table(r['claims'])}"
            f"<h3>Key metrics</h3>{_metrics_table(r['metrics'])}"
            f"<h3>Figures</h3>{figures}")


def _attempt_section(r: dict[str, Any], out: Path) -> str:
    """A failed or interrupted attempt: its error and the claims it had checked, no metrics."""
    return (f"<h2>{_esc(r['status'])}: {_esc(r['title'] or r['notebook'])}</h2>"
            f"<p><span class='{_esc(r['status'])}'>{_esc(r['status'])}</span> · "
            f"<code>{_esc(r['label'])}</code> · {_links(r, out)}</p>"
            + (f"<p class='failed'>error: {_esc(r['error'])}</p>" if r["error"] else "")
            + f"<h3>Claims checked before it stopped</h3>{_claims_table(r['claims'])}")


def render(out: str | Path) -> str:
    """The HTML text of the report for run folder ``out``."""
    out = Path(out)
    runs = [_summary(d, out) for d in completed_runs(out)]
    unfinished = [_summary(d, out) for d in unfinished_runs(out)]
    good = sum(claim_counts(r["claims"])[0] for r in runs)
    bad = sum(claim_counts(r["claims"])[1] for r in runs)
    tables = "".join(f" · <a href='{name}'>{name}</a>" for name in ("metrics.csv", "runs.csv")
                     if (out / name).exists())
    failed = (f" · <a href='#unfinished'>{len(unfinished)} failed or interrupted "
              "attempt(s)</a>" if unfinished else "")
    head = (f"<h1>mtlkit run report</h1><p class='muted'>{_esc(out.resolve())} · written "
            f"{time.strftime('%Y-%m-%d %H:%M')} · {len(runs)} completed run(s){failed} · "
            f"{good} claims as expected, {bad} not{tables} · legend: "
            "<span class='pass'>holds</span> <span class='shown'>fails as written (shown)</span>"
            " <span class='fail'>fails / unexpectedly holds</span>; a paper's empirical claims:"
            " <span class='pass'>supported</span> <span class='shown'>not supported</span>"
            " <span class='muted'>inconclusive</span></p>")
    body = (head + _overview(runs, out) + _unfinished(unfinished, out)
            + "".join(_section(i, r, out) for i, r in enumerate(runs))
            + "".join(_attempt_section(r, out) for r in unfinished))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>mtlkit run report</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def write_report(out: str | Path) -> Path:
    """Render every executed notebook to HTML, then write ``out/index.html``; its path."""
    render_notebooks(out)
    target = Path(out) / "index.html"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(render(out), encoding="utf-8")
    tmp.replace(target)
    return target
