"""The report's "Load generator workers" section: for each distributed run (load.mode=distributed),
how many workers joined of how many expected, and each one's share of the requests.

Its own module, read straight from the runs' result.json files, so the report needs one line to
show it and a sweep without distributed runs shows nothing. An uneven split is worth seeing: a
worker with a small share was starved of CPU (or joined late), so the load was not what the
users count suggests.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.result import RESULT_FILE


def _runs(root: Path) -> list[tuple[str, dict]]:
    found = []
    for path in sorted(root.rglob(RESULT_FILE)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # the main tables already show a corrupt run as such
        if isinstance(data, dict) and isinstance(data.get("workers"), dict) and data["workers"]:
            found.append((path.parent.relative_to(root).as_posix() or ".", data))
    return found


def section(root: Path | str) -> str:
    """Markdown, or "" when no run in `root` was distributed."""
    runs = _runs(Path(root))
    if not runs:
        return ""
    lines = [
        "## Load generator workers",
        "",
        "Distributed runs: workers that joined the Locust master, and each one's share of the requests "
        "(host:pid share; `died`/`missing`: lost during the run, its count is up to its last report).",
        "",
        "| Run | Joined | Lost | Workers | Outcome |",
        "|:--|--:|--:|:--|:--|",
    ]
    for where, data in runs:
        w = data["workers"]
        each = ", ".join(
            f"{e.get('host')}:{e.get('pid')} {e['share']:.0%}" if e.get("share") is not None else f"{e.get('host')}:?"
            for e in w.get("each", [])
        ) + "".join(f" ({e['state']})" for e in w.get("each", []) if e.get("state") in ("died", "missing"))
        lines.append(f"| {where} | {w.get('joined')} of {w.get('expected')} | {w.get('lost', 0)} | {each or '-'} "
                     f"| {data.get('outcome', '?')} |")  # fmt: skip
    return "\n".join(lines) + "\n"
