"""Single process, one connection at a time: accept, serve that connection to its end, repeat.

The baseline every other model is measured against. While one client holds the connection, every
other client waits in the listen backlog, so with keep-alive one busy client starves the rest until
it leaves or its keep-alive idle timeout expires. That is the nature of the model, not a bug: the
runner's `single` config turns keep-alive off by default so that 100 users take turns instead of
99 of them timing out. The header deadline still bounds how long a silent client can hold it.
Cores: one thread uses one core, however many it is given (run.server_cores).
"""

from __future__ import annotations

import socket

from servers import base

# One runnable thread per core it may use: whatever makes it wait for a CPU is someone else (the runner's
# `contended` flag reads its run-queue wait: runner/run/validity.py)
ONE_RUNNABLE = True


def serve(sock: socket.socket, app: base.App) -> None:
    base.serve_blocking(sock, app, base.Handoff(app))  # the default hand-off: serve it here, to its end


if __name__ == "__main__":
    base.run("single", serve)
