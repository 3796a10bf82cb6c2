"""Checks for the whole suite: no test imports Locust into pytest's process; a test that needs a
program the project treats as optional says so (`@pytest.mark.needs("nginx")`) and skips without it;
the suite leaves the checkout as it found it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.programs import OPTIONAL

from runner.run.server import find_program

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(program): the test runs only where the optional program is installed")


def pytest_collection_finish(session: pytest.Session) -> None:
    # importing locust monkey-patches pytest's own process with gevent (sockets, subprocess, threads),
    # after which unrelated tests hang (seen: a pty read never saw EOF); locust runs in subprocesses only
    if "gevent.monkey" in sys.modules or "locust" in sys.modules:
        raise pytest.UsageError("a test module imports locust (gevent patches the test process): use a subprocess")


@pytest.fixture(scope="session", autouse=True)
def results_follow_their_schema(tmp_path_factory: pytest.TempPathFactory):
    """Every result.json this session wrote (real runs, in-process and in subprocesses, under the session's
    temporary directory) follows docs/result.schema.json (tests/runner/test_result_schema.py)."""
    yield
    from support.result_schema import problems

    base = tmp_path_factory.getbasetemp()
    found = {str(path.relative_to(base)): said for path in base.rglob("result.json") if (said := problems(path))}
    if found:
        pytest.fail("result.json files that break docs/result.schema.json:\n" + "\n".join(
            f"  {where}: {'; '.join(said[:3])}" for where, said in sorted(found.items())[:20]))  # fmt: skip


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
    # files a run is asked to write into the checkout: the reliability table (tests/servers), the report's picture
    asked = [os.environ.get(name, "") for name in ("STRESSBENCH_RELIABILITY_TABLE", "STRESSBENCH_SCREENSHOT")]
    left = sorted(line for line in after - _before if not any(a and line.endswith(" " + a) for a in asked))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["the test run changed the checkout (a test must write under tmp_path):", *left]
        if reporter is not None:
            for line in lines:
                reporter.write_line(line, red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
