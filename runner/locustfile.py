"""The Locust users the runner points Locust at: every user requests one path in a closed loop.

`fast` (FastHttpUser, geventhttpclient) is the default because it costs the generator about a
quarter of HttpUser's CPU per request, so more of the measurement is the server's. Both keep their
connection alive; a server that closes after each response makes them reconnect. The runner passes
the path, think time and request timeout on Locust's command line (the options below); a timeout
shorter than the run matters: without one, a hung server records 0 requests and 0 failures.
"""

from __future__ import annotations

from locust import FastHttpUser, HttpUser, between, events, task


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--path", default="/", help="URL path every user requests")
    parser.add_argument("--wait-min", type=float, default=0.0, help="think time lower bound, s")
    parser.add_argument("--wait-max", type=float, default=0.0, help="think time upper bound, s")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="per-request timeout, s")


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:
        return
    for user in (fast, http):
        user.wait_time = between(options.wait_min, options.wait_max)
        user.path = options.path
        user.timeout = options.request_timeout
    fast.network_timeout = fast.connection_timeout = options.request_timeout


class fast(FastHttpUser):  # noqa: N801 -- the class name is the config value (load.user_class)
    path = "/"
    timeout = 5.0
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.get(self.path)


class http(HttpUser):  # noqa: N801
    path = "/"
    timeout = 5.0
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.get(self.path, timeout=self.timeout)
