"""Print README's notebook map from the notebooks and measured runs.

    python scripts/notebook_map.py --smoke runs/smoke-timing --teach runs/teach

Topic and source come from each notebook's title cell; runtimes are the wall
times that ``python -m mtlkit.nbrun`` recorded in each completed run's ``_done.json``
(``<runs>/<stem>/``: the run with the notebook's defaults and the batch's profile, e.g.
``--profile smoke --out runs/smoke-timing``; failed attempts are never counted).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mtlkit.batch.runs import status_of  # noqa: E402 (after the path)


def title_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    return ""


def wall(runs: Path | None, stem: str) -> str:
    if runs is None:
        return "–"
    status, record = status_of(runs / stem)
    if status != "ok":
        return "–"
    s = record.get("wall_s")
    return "–" if s is None else (f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min")


def source(text: str) -> str:
    m = re.search(r"\*\*Sources?:?\*\*:?\s*(.+)", text)
    if not m:
        return ""
    text = m.group(1).strip().replace("|", "/")
    return text if len(text) <= 140 else text[:text.rfind(" ", 0, 137)] + " …"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", type=Path)
    ap.add_argument("--teach", type=Path)
    args = ap.parse_args()
    print("| # | notebook | topic | paper sections | smoke | teach |")
    print("|---|---|---|---|---|---|")
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        text = title_cell(path)
        head = text.splitlines()[0] if text else path.stem
        num, _, topic = head.lstrip("# ").partition("·")
        print(f"| {num.strip()} | [`{path.name}`](notebooks/{path.name}) | {topic.strip()} | "
              f"{source(text)} | {wall(args.smoke, path.stem)} | {wall(args.teach, path.stem)} |")


if __name__ == "__main__":
    main()
