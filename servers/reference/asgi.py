"""The project's workloads as an ASGI app, for uvicorn (conf/server/uvicorn.yaml): a reference row
that answers what our servers answer, so the table compares servers, not work.

Every request goes through the same `servers.workload` function our servers call, with a
`servers.http.Request` built from the ASGI scope, and the Reply becomes the same status, body and
Content-Type. What differs is only what ASGI cannot give back: the `echo` body rebuilds the request
head from the scope, so header names come lower-cased (the same length, not the same bytes). The
`io` workload waits with `asyncio.sleep`, as an event loop must.

The runner starts it as an external server and passes the workload in the environment:
    STRESSBENCH_WORKLOAD=hello  STRESSBENCH_WORKLOAD_PARAMS='{"io_ms": 10}'  STRESSBENCH_KEEPALIVE=1
(the parameters already resolved, e.g. the cpu workload's calibrated iterations).
    python -m uvicorn --factory servers.reference.asgi:create_app --port 8000 --loop uvloop --http httptools
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from servers.http import Request
from servers.workload import Reply, Workload, make

WORKLOAD_ENV = "STRESSBENCH_WORKLOAD"
PARAMS_ENV = "STRESSBENCH_WORKLOAD_PARAMS"
KEEPALIVE_ENV = "STRESSBENCH_KEEPALIVE"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
_ERROR = Reply(500, b"500 Internal Server Error\n")


def to_request(scope: Scope, body: bytes) -> Request:
    """The Request our parser would have produced, as far as the scope tells."""
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if scope.get("query_string") and "?" not in target:
        target += "?" + scope["query_string"].decode("latin-1")
    version = "HTTP/" + scope.get("http_version", "1.1")
    headers = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in scope["headers"]]
    connection = {t.strip().lower() for name, value in headers if name == "connection" for t in value.split(",")}
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    head = f"{scope['method']} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return Request(scope["method"], target, version, headers, body, keep_alive, head.encode("latin-1"))


def build(workload: Workload, keepalive: bool = True) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            reply = workload(to_request(scope, body))
        except Exception:  # a handler bug costs that request a 500, as in servers/base.py
            reply = _ERROR
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers = [(b"content-type", reply.content_type.encode()), (b"content-length", str(len(reply.body)).encode())]
        if not keepalive or reply is _ERROR:
            headers.append((b"connection", b"close"))  # uvicorn closes after a response that says so
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    return app


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """uvicorn's --factory: the app for the workload the environment names."""
    params = json.loads(os.environ.get(PARAMS_ENV) or "{}")
    workload = make(os.environ.get(WORKLOAD_ENV, "hello"), {k: str(v) for k, v in params.items()})
    return build(workload, keepalive=os.environ.get(KEEPALIVE_ENV, "1") == "1")
