"""Checks for the whole suite."""

from __future__ import annotations

import sys

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    # importing locust monkey-patches pytest's own process with gevent (sockets, subprocess, threads),
    # after which unrelated tests hang (seen: a pty read never saw EOF); locust runs in subprocesses only
    if "gevent.monkey" in sys.modules or "locust" in sys.modules:
        raise pytest.UsageError("a test module imports locust (gevent patches the test process): use a subprocess")
