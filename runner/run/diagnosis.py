"""Why a run looks as it does: what the kernel, the client's connections and the server's end showed,
said as a few named diagnoses, each with the numbers that show it.

A first server (http.server, a select() loop written in an afternoon) is slow or failing for reasons the
tables cannot say: RPS and latency only show that something is wrong. The evidence is gathered as the run
goes -- the load engine's connection counts (runner/locust/engine.py's Evidence: slow first answers,
responses that came in parts, the server's closes and what announced them, timeouts on kept-alive
connections), the kernel's TCP counters over the run (runner/run/resources.py), the kinds of failure,
the server's CPU and exit -- and read here into `result.diagnoses`: a list of {kind, says, evidence}.

Strategy: pure, over the record and the config, in the order of DIAGNOSES. Each one fires only on
evidence from both sides where it can have two (a kernel counter that counts the whole machine needs the
run's own clients to have seen the same), and each says what to change. The built-in servers fire
only what is true of them: `single` (a connection per request, as server.keepalive=false asks), and
nothing else (tests/runner/run/test_diagnosis.py runs the naive servers of tests/data/first_servers and ours).
"""

from __future__ import annotations

from typing import Any

from runner.config import Config
from runner.result import RunResult

# kind -> what it means, for the report's legend
DIAGNOSES = {
    "listen-queue": "the listen queue overflowed: connections waited for the kernel to retry their handshake",
    "delayed-ack": "responses in two writes waited for the client's delayed ACK (Nagle's algorithm)",
    "connection-per-request": "the server closed the connection after each response",
    "malformed-response": "the responses are not valid HTTP/1.1",
    "unanswered": "requests got no answer while the server was idle",
    "server-exited": "the server exited during the run",
}
SLOW_START_S = 1.0  # runner/locust/engine.py's: a new connection's first answer this late is a retried handshake
DELAYED_ACK_MS = (30.0, 250.0)  # Linux delays an ACK 40 ms at least, 200 ms at most (TCP_DELACK_MIN/MAX)
IDLE_CPU_PCT = 50.0  # a server below this share of a core was not what made its responses slow
STALLED_CPU_PCT = 10.0  # a server below this share of a core was not working on the requests it did not answer


def diagnose(result: RunResult, cfg: Config) -> list[dict[str, Any]]:
    """The run's diagnoses, in DIAGNOSES order: [{"kind", "says", "evidence"}]."""
    found = [
        _listen_queue(result, cfg),
        _delayed_ack(result),
        _connection_per_request(result),
        _malformed(result),
        _unanswered(result, cfg),
        _exited(result),
    ]
    return [d for d in found if d is not None]


def _diagnosis(kind: str, says: str, **evidence: Any) -> dict[str, Any]:
    return {"kind": kind, "says": says, "evidence": evidence}


def _connections(result: RunResult) -> dict[str, Any]:
    return result.metrics.connections or {}


def _server_cpu(result: RunResult) -> float | None:
    return result.resources.get("server", {}).get("cpu_pct")


def _answered(result: RunResult) -> int:
    m = result.metrics
    return max((m.total_requests or m.requests or 0) - (m.total_failures or m.failures or 0), 0)


def _listen_queue(result: RunResult, cfg: Config) -> dict | None:
    tcp = result.resources.get("tcp") or {}
    overflows = max(tcp.get("listen_overflows") or 0, tcp.get("listen_drops") or 0)
    slow = _connections(result).get("slow_starts") or 0
    typical = result.metrics.median_ms
    if not (overflows and slow) or (typical is not None and typical >= SLOW_START_S * 1000):
        return None  # a server whose every answer takes a second says nothing by a slow first one
    slowest = (_connections(result).get("slowest_start_ms") or 0) / 1000
    says = (
        f"{slow:,} new connections waited {SLOW_START_S:g} s or more for their first answer (the longest "
        f"{slowest:.1f} s), and the kernel turned away {overflows:,} connection attempts from a full accept "
        f"queue (ListenOverflows, {tcp.get('syn_retransmits', 0):,} SYNs sent again; this machine, over the run): "
        f"the server's listen backlog is shorter than the burst of {cfg.load.users:,} users connecting at "
        f"{cfg.load.spawn_rate:g}/s, and a connection turned away is retried after 1 s, then 3 s. Raise the backlog "
        f"(listen(1024); socketserver's request_queue_size is 5; an external command gets server.backlog, "
        f"{cfg.server.backlog}, as {{backlog}})."
    )
    return _diagnosis("listen-queue", says, slow_starts=slow, slowest_start_ms=round(slowest * 1000, 1), **tcp)


def _median(counts: dict[str, int]) -> float:
    """The median of {value: count}."""
    pairs = sorted((float(value), n) for value, n in counts.items())
    half, seen = sum(n for _, n in pairs) / 2, 0
    for value, n in pairs:
        seen += n
        if seen >= half:
            return value
    return pairs[-1][0]


def _delayed_ack(result: RunResult) -> dict | None:
    waits = _connections(result).get("split_waits") or {}
    split, answered, cpu = sum(waits.values()), _answered(result), _server_cpu(result)
    if not split or split < answered / 2 or (cpu is not None and cpu >= IDLE_CPU_PCT):
        return None
    median = _median(waits)
    if not DELAYED_ACK_MS[0] <= median <= DELAYED_ACK_MS[1]:
        return None
    busy = f"{cpu:.0f}%" if cpu is not None else "an unknown share"
    says = (
        f"{split:,} of {answered:,} responses came in two parts, a median {median:.0f} ms apart, while the server "
        f"used {busy} of a core: it writes a response's head and body separately, and Nagle's algorithm holds "
        "the second write until the client acknowledges the first, which a client delays (40 ms on Linux). "
        "Write each response at once, or set TCP_NODELAY on each accepted socket (http.server: "
        "disable_nagle_algorithm = True)."
    )
    return _diagnosis("delayed-ack", says, split_responses=split, answered=answered, median_wait_ms=median,
                      server_cpu_pct=cpu)  # fmt: skip


def _connection_per_request(result: RunResult) -> dict | None:
    m, closes = result.metrics, _connections(result).get("closes") or {}
    closed, silent, answered = sum(closes.values()), m.retries or 0, _answered(result)
    if not answered or closed + silent < answered / 2:
        return None
    said = ", ".join(f"{why} x{n:,}" for why, n in sorted(closes.items(), key=lambda kv: -kv[1]))
    says = f"the server closed the connection after {closed:,} of {answered:,} responses ({said})" if closed else ""
    if silent >= closed:
        says = (
            f"the server closed its connection after {silent:,} responses without saying so (no `Connection: "
            "close`): each next request met the closed connection and was sent again on a new one"
        )
    says += (
        f", so each request paid for a new TCP connection ({m.reconnects or 0:,} in the run) and its close. Keep "
        "connections alive: answer HTTP/1.1 without `Connection: close` and read the next request (our servers "
        "close when server.keepalive=false asks them to)."
    )
    return _diagnosis("connection-per-request", says, closes=closes, retries=silent, reconnects=m.reconnects,
                      answered=answered)  # fmt: skip


def _malformed(result: RunResult) -> dict | None:
    kinds = {k: n for k, n in (result.metrics.failure_kinds or {}).items() if k.startswith("MalformedResponse")}
    if not kinds:
        return None
    first = max(kinds, key=lambda k: kinds[k])
    what = first.removeprefix("MalformedResponse(").removesuffix(")")
    if len(what) > 1 and what[0] in "'\"" and what[-1] == what[0]:
        what = what[1:-1]
    says = (
        f"{sum(kinds.values()):,} responses could not be read as HTTP/1.1, most ({kinds[first]:,}) for {what}. A "
        "response is a status line, header lines `Name: value`, an empty line, then the body (RFC 9112 section 2)."
    )
    return _diagnosis("malformed-response", says, kinds=kinds)


def _unanswered(result: RunResult, cfg: Config) -> dict | None:
    conns, cpu = _connections(result), _server_cpu(result)
    timeouts, reused = conns.get("timeouts") or 0, conns.get("timeouts_reused") or 0
    if not timeouts or cpu is None or cpu >= STALLED_CPU_PCT:
        return None
    says = (
        f"{timeouts:,} requests got no answer within load.request_timeout_s={cfg.load.request_timeout_s:g} s while "
        f"the server used {cpu:.0f}% of a core: it was not busy with them, it was not reading them"
    )
    if reused >= timeouts / 2:
        says += (
            f". {reused:,} of them were sent on a connection that had answered before: the server stops reading "
            "a kept-alive connection after its first request. Read the next request, or close the connection "
            "after the response, saying `Connection: close`."
        )
    else:
        says += ": it accepted those connections and never answered on them."
    return _diagnosis("unanswered", says, timeouts=timeouts, timeouts_reused=reused, server_cpu_pct=cpu)


def _exited(result: RunResult) -> dict | None:
    if result.outcome != "server_crashed":
        return None
    return _diagnosis("server-exited", result.detail, exit_code=result.server.get("exit_code"))
