"""Flags on a run whose numbers may not mean what they seem. A flag does not hide a row: it
tells the reader how far to trust it, in words the report's legend spells out.

Per run (here); `unstable` needs repeats and is decided by the report.
"""

from __future__ import annotations

from runner.config import Config
from runner.result import RunResult

LEGEND = {
    "generator-bound": "Locust used >= {cpu_bound:.0%} of its cores while the server did not: the number measures "
    "the load generator, not the server. Use the loop user (load.user_class=loop: one engine per Locust process, "
    "about 10x FastHttpUser per core), then more cores for Locust (load.processes=2 with a core to spare, or "
    "load=distributed workers on other machines).",
    "errors": "more than {max_error_ratio:.1%} of requests failed; RPS counts failures, so read goodput instead.",
    "few-requests": "fewer than {min_requests} requests in the measured window: percentiles are mostly noise.",
    "littles-law": "users differ from RPS x (response time + think time) by more than {littles_tolerance:.0%}: "
    "time is lost outside the measured requests (usually a saturated generator).",
    "count-mismatch": "the server's own count and Locust's differ by more than {count_tolerance:.1%}.",
    "unstable": "repeats of this cell spread by >= {unstable_spread:.0%} of their median.",
    "killed-at-stop": "the server ignored SIGTERM until `server.grace_s` ran out and was killed (SIGKILL): it did "
    "not finish its last requests or report its own count, as it would not stop cleanly in production either.",
}


def run_flags(result: RunResult, cfg: Config) -> list[str]:
    v = cfg.run.validity
    m = result.metrics
    flags = []
    locust = result.resources.get("locust", {})
    server = result.resources.get("server", {})
    if (locust.get("cpu_util") or 0) >= v.cpu_bound and (server.get("cpu_util") or 0) < v.cpu_bound:
        flags.append("generator-bound")
    if m.failure_ratio is not None and m.failure_ratio > v.max_error_ratio:
        flags.append("errors")
    if m.requests is not None and m.requests < v.min_requests:
        flags.append("few-requests")
    if m.rps and m.avg_ms is not None:
        think = (cfg.load.wait_min_s + cfg.load.wait_max_s) / 2
        implied_users = m.rps * (m.avg_ms / 1000 + think)
        if abs(implied_users - cfg.load.users) > v.littles_tolerance * cfg.load.users:
            flags.append("littles-law")
    served = result.server.get("served")
    if served is not None and m.total_requests:
        if abs(served - m.total_requests) > v.count_tolerance * m.total_requests:
            flags.append("count-mismatch")
    if result.server.get("killed_at_stop"):
        flags.append("killed-at-stop")
    return flags
