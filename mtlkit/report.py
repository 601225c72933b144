"""One self-contained HTML page summarising a folder of notebook runs.

``write_report(out)`` scans ``out`` for run folders (written by
:mod:`mtlkit.nbrun`: an executed notebook, ``_done.json`` or ``_error.json``,
``claims.json``, ``metrics.json``, ``figures/*.png``) and writes
``out/index.html``: an overview table, then per run its status, wall time,
parameters, claim verdicts (coloured), key metrics and figures (embedded as
base64 so the page can be mailed or moved on its own).
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from mtlkit.nbrun import DONE, ERROR, cell_source, flatten, load_notebook

MAX_METRICS = 24
MAX_EMBED_BYTES = 3_000_000

VERDICT_CLASS = {"holds": "pass", "fails": "fail", "fails as written (shown)": "shown",
                 "unexpectedly holds": "fail"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;
 text-align:left;vertical-align:top} th{background:#f4f4f4}
.pass{background:#e3f6e3} .fail{background:#fbe0e0} .shown{background:#fff1d0}
.ok{color:#1a7f1a;font-weight:bold} .failed{color:#b00;font-weight:bold}
.incomplete{color:#a60;font-weight:bold} .muted{color:#777;font-size:.9em}
figure{display:inline-block;margin:.5em;max-width:48%} figure img{max-width:100%}
figcaption{font-size:.85em;color:#555} code{background:#f4f4f4;padding:0 .2em}
"""


def find_runs(out: Path) -> list[Path]:
    """Run folders under ``out``: those holding a marker or an executed notebook."""
    dirs = set()
    for pattern in (DONE, ERROR, "*.ipynb", "claims.json"):
        for p in out.rglob(pattern):
            if "_out" not in p.relative_to(out).parts and p.parent != out:
                dirs.add(p.parent)
    return sorted(dirs)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows about one run folder."""
    info: dict[str, Any] = {}
    status = "incomplete"
    for name, st in ((DONE, "ok"), (ERROR, "failed")):
        if (run_dir / name).exists():
            info, status = _read_json(run_dir / name, {}), st
            break
    notebooks = sorted(run_dir.glob("*.ipynb"))
    claims = _read_json(run_dir / "claims.json", [])
    metrics = _read_json(run_dir / "metrics.json", {})
    return {
        "dir": run_dir, "status": info.get("status", status) if info else status,
        "notebook": info.get("notebook") or (notebooks[0].name if notebooks else run_dir.name),
        "label": info.get("label", run_dir.name), "wall_s": info.get("wall_s"),
        "error": info.get("error", ""), "parameters": info.get("parameters", {}),
        "title": _title(notebooks[0]) if notebooks else "",
        "ipynb": notebooks[0] if notebooks else None,
        "claims": claims if isinstance(claims, list) else [],
        "metrics": flatten(metrics) if isinstance(metrics, dict) else {},
        "figures": sorted((run_dir / "figures").rglob("*.png")),
    }


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default


def _title(path: Path) -> str:
    try:
        for cell in load_notebook(path).get("cells", []):
            if cell.get("cell_type") == "markdown":
                lines = cell_source(cell).strip().splitlines()
                return lines[0].lstrip("# ").strip() if lines else ""
    except (OSError, json.JSONDecodeError):
        pass
    return ""


def claim_counts(claims: list[dict[str, Any]]) -> tuple[int, int]:
    """(claims as expected, claims not as expected)."""
    good = sum(1 for c in claims if c.get("ok") == c.get("expect", True))
    return good, len(claims) - good


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = json.dumps(v) if not isinstance(v, (int, str)) else str(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _overview(runs: list[dict[str, Any]]) -> str:
    rows = []
    for i, r in enumerate(runs):
        good, bad = claim_counts(r["claims"])
        wall = f"{r['wall_s']:.1f}" if isinstance(r["wall_s"], (int, float)) else "–"
        rows.append(
            f"<tr><td><a href='#run{i}'>{_esc(r['label'])}</a></td><td>{_esc(r['title'])}</td>"
            f"<td class='{_esc(r['status'])}'>{_esc(r['status'])}</td><td>{wall}</td>"
            f"<td>{good} ✓ / {bad} ✗</td><td>{len(r['figures'])}</td></tr>")
    return ("<table><tr><th>run</th><th>notebook</th><th>status</th><th>wall time (s)</th>"
            "<th>claims</th><th>figures</th></tr>" + "".join(rows) + "</table>")


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
    nb_link = (f" · <a href='{_esc(r['ipynb'].relative_to(out).as_posix())}'>executed notebook</a>"
               if r["ipynb"] else "")
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["parameters"].items()
                       if k != "OUT_DIR")
    error = f"<p class='failed'>error: {_esc(r['error'])}</p>" if r["error"] else ""
    figures = "".join(_figure(p, out) for p in r["figures"]) or \
        "<p class='muted'>no figures</p>"
    return (f"<h2 id='run{i}'>{_esc(r['title'] or r['notebook'])}</h2>"
            f"<p><span class='{_esc(r['status'])}'>{_esc(r['status'])}</span> · {wall}"
            f" · <code>{_esc(r['label'])}</code>{nb_link}</p>"
            f"<p class='muted'>parameters: {_esc(params) or '–'}</p>{error}"
            f"<h3>Claims</h3>{_claims_table(r['claims'])}"
            f"<h3>Key metrics</h3>{_metrics_table(r['metrics'])}"
            f"<h3>Figures</h3>{figures}")


def render(out: str | Path) -> str:
    """The HTML text of the report for run folder ``out``."""
    out = Path(out)
    runs = [run_summary(d) for d in find_runs(out)]
    n_ok = sum(r["status"] == "ok" for r in runs)
    good = sum(claim_counts(r["claims"])[0] for r in runs)
    bad = sum(claim_counts(r["claims"])[1] for r in runs)
    head = (f"<h1>mtlkit run report</h1><p class='muted'>{_esc(out.resolve())} · written "
            f"{time.strftime('%Y-%m-%d %H:%M')} · {n_ok}/{len(runs)} runs completed · "
            f"{good} claims as expected, {bad} not"
            + (" · <a href='metrics.csv'>metrics.csv</a>" if (out / "metrics.csv").exists() else "")
            + " · legend: "
            "<span class='pass'>holds</span> <span class='shown'>fails as written (shown)</span>"
            " <span class='fail'>fails / unexpectedly holds</span></p>")
    body = head + _overview(runs) + "".join(_section(i, r, out) for i, r in enumerate(runs))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>mtlkit run report</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def write_report(out: str | Path) -> Path:
    """Write ``out/index.html`` and return its path."""
    target = Path(out) / "index.html"
    target.write_text(render(out), encoding="utf-8")
    return target
