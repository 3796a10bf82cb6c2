"""Service-level objectives (run.slo.*): checked on each run after it ends; the exit status follows them.

A load test in CI is a gate: it fails when the server misses what it must do, not when a request among
500,000 timed out. Each objective set in `run.slo` is checked against the run's measured window and
recorded in result.json's `objectives`: what was asked, what was measured, whether it held, and how far
the row can be trusted (its flags: an objective met by a `generator-bound` row met Locust's limit, not the
server's; one checked on a `contended` row was measured beside a neighbour). runner/run/exits.py turns a
broken one into exit status 5, naming the rows; the report shows them in its SLO column and section.
"""

from __future__ import annotations

from typing import Any

from runner.config import Config
from runner.result import RunResult

TRUST = ("generator-bound", "contended", "shared-cores")  # flags that make a checked number not the server's alone


def check(result: RunResult, cfg: Config) -> list[dict[str, Any]]:
    """Each objective set in run.slo, checked on the run: [{objective, bound, measured, held, caveat}]."""
    slo, m = cfg.run.slo, result.metrics
    if m.requests is None:  # nothing measured (the server never started): the outcome says why
        return []
    caveat = ", ".join(flag for flag in result.flags if flag in TRUST)
    checked = []

    def objective(name: str, bound: float, measured: float | None, held: bool | None) -> None:
        checked.append({"objective": name, "bound": bound, "measured": measured, "held": held, "caveat": caveat})

    if slo.p99_ms is not None:
        objective("p99_ms", slo.p99_ms, m.p99_ms, None if m.p99_ms is None else m.p99_ms <= slo.p99_ms)
    if slo.min_rps is not None:
        objective("min_rps", slo.min_rps, m.goodput, None if m.goodput is None else m.goodput >= slo.min_rps)
    ratio, bound = m.failure_ratio, slo.max_failure_ratio  # None: no request completed in the window, not held
    objective("max_failure_ratio", bound, ratio, False if ratio is None else ratio <= bound)
    return checked


def broken(objectives: list[dict[str, Any]]) -> list[str]:
    """The broken ones in words: "p99_ms 2.31 > 0.01" (a measure that is missing breaks it too: "p99_ms unknown")."""
    said = []
    for o in objectives:
        if o.get("held") is True:
            continue
        name, bound, measured = o.get("objective"), o.get("bound"), o.get("measured")
        sign = ">" if name in ("p99_ms", "max_failure_ratio") else "<"
        value = "unknown" if measured is None else f"{measured:.4g} {sign} {bound:g}"
        said.append(f"{name} {value}" + (f" ({o['caveat']})" if o.get("caveat") else ""))
    return said
