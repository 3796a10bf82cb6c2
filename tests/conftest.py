"""Checks for the whole suite: no test imports Locust into pytest's process; a test that needs a
program the project treats as optional says so (`@pytest.mark.needs("nginx")`) and skips without it;
the suite leaves the checkout as it found it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from programs import OPTIONAL

from runner.run.server import find_program

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(program): the test runs only where the optional program is installed")


def pytest_collection_finish(session: pytest.Session) -> None:
    # importing locust monkey-patches pytest's own process with gevent (sockets, subprocess, threads),
    # after which unrelated tests hang (seen: a pty read never saw EOF); locust runs in subprocesses only
    if "gevent.monkey" in sys.modules or "locust" in sys.modules:
        raise pytest.UsageError("a test module imports locust (gevent patches the test process): use a subprocess")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        for program in mark.args:
            if program not in OPTIONAL:
                raise pytest.UsageError(f"needs({program!r}): not an optional program; known: {', '.join(OPTIONAL)}")
            if find_program(program) is None:
                pytest.skip(f"{program} not installed ({OPTIONAL[program]})")


# -- the checkout as the suite found it ------------------------------------------------------------


def _status() -> set[str] | None:
    """`git status --porcelain` of the checkout (tracked changes and untracked files), None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


_before: set[str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before
    _before = _status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test run must leave no file behind in the checkout and change none (docs/reliability.md was
    rewritten by every run): what changed is listed, and the run fails."""
    after = _status() if _before is not None else None
    if after is None or _before is None:
        return
    asked = os.environ.get("STRESSBENCH_RELIABILITY_TABLE", "")  # a table the run was asked to write (tests/servers)
    left = sorted(line for line in after - _before if not (asked and line.endswith(" " + asked)))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["the test run changed the checkout (a test must write under tmp_path):", *left]
        if reporter is not None:
            for line in lines:
                reporter.write_line(line, red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
