"""The report's "Load generator workers" section: for each distributed run (load.mode=distributed),
how many workers joined of how many expected, and each one's share of the requests.

Its own module, reading the runs' records (runner/record.py), so the report needs one line to
show it and a sweep without distributed runs shows nothing. An uneven split is worth seeing: a
worker with a small share was starved of CPU (or joined late), so the load was not what the
users count suggests.
"""

from __future__ import annotations

from runner.record import Run


def section(runs: list[Run]) -> str:
    """Markdown, or "" when none of `runs` was distributed."""
    runs = [run for run in runs if run.section("workers")]
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
    for run in runs:
        w = run.section("workers")
        each = ", ".join(
            f"{e.get('host')}:{e.get('pid')} {e['share']:.0%}" if e.get("share") is not None else f"{e.get('host')}:?"
            for e in w.get("each", [])
        ) + "".join(f" ({e['state']})" for e in w.get("each", []) if e.get("state") in ("died", "missing"))
        lines.append(f"| {run.run} | {w.get('joined')} of {w.get('expected')} | {w.get('lost', 0)} | {each or '-'} "
                     f"| {run.outcome} |")  # fmt: skip
    return "\n".join(lines) + "\n"
