"""Flags on a run whose numbers may not mean what they seem. A flag does not hide a row: it
tells the reader how far to trust it, in words the report's legend spells out.

Per run (here); `unstable` needs repeats and is decided by the report.
"""

from __future__ import annotations

import importlib

from runner.config import Config
from runner.result import Metrics, RunResult

LEGEND = {
    "generator-bound": "Locust used >= {cpu_bound:.0%} of its cores while the server did not: the number measures "
    "the load generator, not the server. Give Locust more cores (it runs a process on each core it is given: a "
    "machine with more cores, or load=distributed workers on other machines); with load.user_class=fast or http, "
    "the default loop user costs about a tenth per request. An open model (load.arrival_rate) is also "
    "generator-bound when more than {max_late_ratio:.0%} of its requests were sent late although a connection was "
    "free and the server was below that share: the generator could not keep its own schedule.",
    "behind-schedule": "an open model (load.arrival_rate): more than {max_late_ratio:.0%} of the requests were sent "
    "late because every connection was busy, or dropped (queued longer than load.request_timeout_s): the server, "
    "or load.users connections, could not keep up with the rate. Their wait is in the corrected latency (the "
    "percentile columns); read the Late and Dropped columns, never RPS alone.",
    "errors": "more than {max_error_ratio:.1%} of requests failed; RPS counts failures, so read goodput instead.",
    "few-requests": "fewer than {min_requests} requests in the measured window: percentiles are mostly noise.",
    "littles-law": "the users' time in their request loop (requests, think time, the generator's own time between "
    "requests) differs from users x window by more than {littles_tolerance:.0%}: time was lost outside it (a user "
    "stuck in a request that outlived the window, users that stopped).",
    "users-not-reached": "not every configured user had started when the run time ended (a ramp-up longer than the "
    "run): the load was smaller than the Users column says (result.json: metrics.users_reached).",
    "contended": "other processes used more than {max_others_pct:g}% of the server's or Locust's cores during the "
    "window, or a side with one thread per core (select, epoll, asyncio, single, prefork; Locust) waited for its CPU "
    "more than {max_wait_pct:g}% of the window, which only someone else can make it do (another sweep, another "
    "tenant): both sides ran slower than on their own cores.",
    "shared-cores": "the server took every core (run.server_cores), so Locust ran on its cores too, and used more "
    "than {max_others_pct:g}% of them: the server had that much less than its cores, as with any neighbour that "
    "large (`contended`). Locust's share is `resources.locust.shared_pct`; give Locust a core of its own for a clean "
    "number.",
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
    headroom = (server.get("cpu_util") or 0) < v.cpu_bound
    intended = (m.intended_rps or 0) * (m.window_s or 0)  # an open model's requests due in the window
    behind = intended and (m.generator_late or 0) > v.max_late_ratio * intended  # with a connection free
    if headroom and ((locust.get("cpu_util") or 0) >= v.cpu_bound or behind):
        flags.append("generator-bound")
    if intended and (m.late or 0) - (m.generator_late or 0) + (m.dropped or 0) > v.max_late_ratio * intended:
        flags.append("behind-schedule")
    if _contended(result, cfg):
        flags.append("contended")
    if (locust.get("shared_pct") or 0) > v.max_others_pct:
        flags.append("shared-cores")
    if m.failure_ratio is not None and m.failure_ratio > v.max_error_ratio:
        flags.append("errors")
    if m.requests is not None and m.requests < v.min_requests:
        flags.append("few-requests")
    users = m.users_reached or cfg.load.users
    if m.users_reached is not None and m.users_reached < cfg.load.users and result.capacity is None:
        flags.append("users-not-reached")
    closed = cfg.load.arrival_rate is None and result.capacity is None  # open: a pool; a search: users rose
    if closed and _littles_law_broken(m, cfg, users):
        flags.append("littles-law")
    served = result.server.get("served")
    if served is not None and m.total_requests:
        if abs(served - m.total_requests) > v.count_tolerance * m.total_requests:
            flags.append("count-mismatch")
    if result.server.get("killed_at_stop"):
        flags.append("killed-at-stop")
    return flags


def _contended(result: RunResult, cfg: Config) -> bool:
    """Others' CPU on either side's cores above max_others_pct; or, for a side whose one runnable thread per core
    cannot queue behind its own (one_runnable), its run-queue wait above max_wait_pct."""
    v, alone = cfg.run.validity, one_runnable(result, cfg)
    for name in ("server", "locust"):
        side = result.resources.get(name, {})
        if (side.get("others_pct") or 0) > v.max_others_pct:
            return True
        if alone[name] and (side.get("wait_pct") or 0) > v.max_wait_pct:
            return True
    return False


def one_runnable(result: RunResult, cfg: Config) -> dict[str, bool]:
    """Which sides ran one runnable thread per core they were given, pinned apart from the other: our servers
    that say so (ONE_RUNNABLE: single, select, epoll, asyncio; prefork with no more workers than cores), and
    Locust with no more processes than its cores. For them a wait for the CPU is another tenant's doing; the
    others' threads and children queue for their cores by themselves (thread, process, threadpool, an external
    server the runner cannot see into, a distributed master and its workers)."""
    server_cpus, load_cpus = result.server.get("cpus"), result.load.get("cpus")
    if not server_cpus or not load_cpus or result.server.get("shared_cores"):  # each side waits for the other's
        return {"server": False, "locust": False}
    server = False
    if cfg.server.command is None and cfg.server.target_host is None:
        module = importlib.import_module(f"servers.{cfg.server.name}")
        workers = (cfg.server.options or {}).get("workers")
        server = getattr(module, "ONE_RUNNABLE", False) and (workers is None or workers <= len(server_cpus))
    processes = result.load.get("processes_run") or (cfg.load.processes if cfg.load.processes != "auto" else 1)
    return {"server": server, "locust": cfg.load.mode != "distributed" and processes <= len(load_cpus)}


def _littles_law_broken(m: Metrics, cfg: Config, users: int) -> bool:
    """users = time in the loop / window, for each user's whole cycle. Measured (m.loop_users): the
    cycle as the users timed it, so the generator's own time between requests -- on a busy generator
    a quarter of a 5-user smoke run's time, a third of a 100-user run's: the users waiting for their
    turn -- is not taken for lost time. Else (older results, a user that logged no cycle): RPS x
    (mean response + think time), which counts that time as lost."""
    tolerance = cfg.run.validity.littles_tolerance * users
    if m.loop_users is not None:
        return abs(m.loop_users - users) > tolerance
    if not m.rps or m.avg_ms is None:
        return False
    think = (cfg.load.wait_min_s + cfg.load.wait_max_s) / 2
    return abs(m.rps * (m.avg_ms / 1000 + think) - users) > tolerance
