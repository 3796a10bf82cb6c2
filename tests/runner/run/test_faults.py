"""Runner faults (RELIABILITY.md, "Runner faults"), done for real: kill, stop and interrupt the
server and Locust by pid mid-run, then check what the run recorded and that nothing of it is left.

What is "left" is checked by pid: every process of the run is collected with psutil while it runs
(forked grandchildren too), and after the run none may be alive. A zombie counts as dead: it holds
no socket and no CPU, and on a machine whose init does not reap orphans it stays a zombie forever.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from support.runs import compose

from runner.result import RESULT_FILE, RunResult, read_result, write_result
from runner.run import experiment, load, procs
from runner.run.escapes import alive
from runner.run.experiment import run_experiment

# --- helpers ------------------------------------------------------------------------------------



def _role(proc: psutil.Process) -> str | None:
    """ "server" or "locust" for a process the runner started (or one they forked), else None."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None
    if any(arg.startswith("servers.") for arg in cmdline):
        return "server"
    if "locust" in cmdline[1:3] or "runner.locust.spare" in cmdline[1:3]:  # python -m locust ..., or a spare
        return "locust"
    return None


def _run_processes(root: psutil.Process | None = None) -> dict[psutil.Process, str]:
    """Live servers and Locusts under `root` (this test process by default), with their role."""
    root = root or psutil.Process()
    try:
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    return {p: role for p in children if (role := _role(p)) and alive(p)}


def _find(role: str, root: psutil.Process | None = None) -> psutil.Process | None:
    """The leader of `role` (the one whose parent is not of the same role)."""
    for proc, its_role in _run_processes(root).items():
        try:
            if its_role == role and _role(proc.parent()) != role:
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _kill(processes) -> None:
    """The safety net: SIGKILL by pid whatever a failed test left behind."""
    for proc in processes:
        if alive(proc):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def _assert_nothing_left(seen: dict[psutil.Process, str], port: int | None) -> None:
    survivors = {p: role for p, role in seen.items() if alive(p)} | _run_processes()
    assert not survivors, [f"{p.pid} {role}" for p, role in survivors.items()]
    if port:
        assert _port_closed(port), port


class _Background:
    """run_experiment in a thread, as Hydra would call it, while the test meddles with its processes;
    `seen` collects every process of the run (and its role) until it ends."""

    def __init__(self, cfg, job_dir: Path) -> None:
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.seen: dict[psutil.Process, str] = {}
        self.job_dir = job_dir
        self._thread = threading.Thread(target=self._run, args=(cfg, job_dir), daemon=True)
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._watcher.start()

    def _run(self, cfg, job_dir: Path) -> None:
        try:
            self.result = run_experiment(cfg, job_dir)
        except BaseException as exc:  # re-raised in join()
            self.error = exc

    def _watch(self) -> None:
        while self._thread.is_alive():
            self.seen.update(_run_processes())
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 20, running: bool = True) -> tuple[psutil.Process, psutil.Process]:
        """The server and Locust leaders once Locust is started (so the server printed READY) and,
        if `running`, once it has begun its run (it writes its first CSV rows then)."""
        locust = _wait_for(lambda: _find("locust"), timeout, "locust to start")
        server = _find("server")
        assert server is not None
        if running:
            _wait_for(lambda: (self.job_dir / "locust_stats.csv").exists(), timeout, "locust's run to begin")
        return server, locust

    def join(self, timeout: float) -> RunResult:
        self._thread.join(timeout)
        self._watcher.join(1)
        if self._thread.is_alive():
            self.cleanup()
            raise AssertionError(f"run_experiment did not return within {timeout:g} s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def cleanup(self) -> None:
        _kill([*self.seen, *_run_processes()])


@pytest.fixture
def background():
    runs: list[_Background] = []

    def start(cfg, job_dir: Path) -> _Background:
        runs.append(_Background(cfg, job_dir))
        return runs[-1]

    yield start
    for run in runs:
        run.cleanup()


@pytest.fixture(autouse=True)
def _sigint_handler_kept():
    """Ctrl-C raises KeyboardInterrupt in each test, however pytest was started: a shell starts a
    background job (`nohup pytest &`, a script's `cmd &`) with SIGINT ignored, and Python then never
    raises it. Afterwards the handler is as it was: a test that Ctrl-Cs this process must not leave
    SIGINT ignored for the next ones (and for the runners they start: an ignored signal stays ignored
    across exec)."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


def _default_signals() -> None:
    """preexec_fn of a runner the test signals: SIGINT, SIGTERM and SIGHUP as a terminal's foreground
    job has them, not as this test was started with (ignored, in a background job or under nohup)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _on_disk(job_dir: Path) -> dict:
    return json.loads((job_dir / RESULT_FILE).read_text())


def _gone_within(proc: psutil.Process, timeout: float) -> float | None:
    """Seconds until `proc` is dead (or a zombie), None if it outlives `timeout`. Polls rather than
    waits: the runner's Popen must be the one to reap it."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive(proc):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def _sigterm_logged_at(job_dir: Path) -> float:
    """When Locust logged that it got SIGTERM (its log has local time to the millisecond)."""
    for line in (job_dir / load.LOCUST_LOG).read_text().splitlines():
        if "Got SIGTERM" in line:
            return dt.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"locust did not log a SIGTERM: {(job_dir / load.LOCUST_LOG).read_text()[-2000:]}")


# --- 1. the server crashes mid-run ---------------------------------------------------------------


def test_a_server_killed_mid_run_is_noticed_and_locust_still_writes_its_stats(tmp_path, background):
    run = background(compose("server=thread", "load=smoke", "load.run_time=6s"), tmp_path)
    server, locust = run.wait_ready()
    time.sleep(2)
    server.kill()
    killed_at = time.time()
    locust_stopped_after = _gone_within(locust, 10)
    result = run.join(30)

    # Locust had 4 s left to run: it was stopped (politely) because the crash was noticed
    assert _sigterm_logged_at(tmp_path) - killed_at < 1.0
    assert locust_stopped_after is not None and locust_stopped_after < 3, locust_stopped_after
    assert (tmp_path / "locust.json").exists()  # ...so it wrote its final numbers
    assert result.outcome == "server_crashed"
    assert "status -9" in result.detail
    assert result.server["exit_code"] == -9
    assert result.metrics.requests and result.metrics.partial
    on_disk = _on_disk(tmp_path)
    assert on_disk["outcome"] == "server_crashed" and on_disk["metrics"]["partial"] is True
    assert on_disk["metrics"]["requests"] == result.metrics.requests
    _assert_nothing_left(run.seen, result.server["listen_port"])


def test_a_run_wakes_when_a_watched_process_exits_not_at_its_next_look(tmp_path):
    """procs.Exits: the exit itself wakes the supervisor (no look every POLL_S to wait for), and an
    exited process wakes it once, not at every later wait (a pidfd stays readable)."""
    quick = procs.spawn([sys.executable, "-c", "pass"], tmp_path / "quick.log")
    slow = procs.spawn(["sleep", "60"], tmp_path / "slow.log")
    try:
        with procs.Exits([quick.pid, slow.pid]) as exits:
            started = time.monotonic()
            exits.wait(120)
            assert time.monotonic() - started < 60 and quick.poll() == 0  # woken by `quick`, not the timeout
            started = time.monotonic()
            exits.wait(0.3)
            assert time.monotonic() - started >= 0.25 and slow.poll() is None  # `quick` woke it once only
    finally:
        procs.terminate(slow, 1)


# --- 2 and 7. Locust is killed: no invented numbers ----------------------------------------------


def _csv_aggregated(job_dir: Path) -> dict | None:
    try:
        with open(job_dir / "locust_stats.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    except FileNotFoundError:
        return None
    return rows[-1] if rows else None


# a locustfile beside ours that breaks the loop engine once it has handled some responses
ENGINE_BUG = """
from runner.locust import engine

_read, calls = engine.Engine._read, []


def _read_then_break(self, conn, now):
    calls.append(1)
    if len(calls) > 500:
        raise RuntimeError("a bug in the engine")
    _read(self, conn, now)


engine.Engine._read = _read_then_break
"""


def test_a_crash_of_the_loop_engine_ends_the_run_as_loadgen_failed(tmp_path, monkeypatch):
    """Had the run gone on, every request in flight would hang and end as the server's failures."""
    bug = tmp_path.parent / "engine_bug.py"
    bug.write_text(ENGINE_BUG)
    files = f"{load.LOCUSTFILE},{load.PROGRESS_PLUGIN},{bug}"
    argv = load.locust_argv
    monkeypatch.setattr(load, "locust_argv", lambda *a, **kw: argv(*a, **kw, files=files))
    started = time.monotonic()
    result = run_experiment(compose("server=thread", "load=smoke", "load.run_time=20s"), tmp_path)
    assert time.monotonic() - started < 12  # ended at the crash, not at the run time
    assert result.outcome == "loadgen_failed", result.detail
    assert result.load["exit_code"] == 2 and "status 2" in result.detail
    assert "the loop engine crashed" in (tmp_path / load.LOCUST_LOG).read_text()


@pytest.mark.parametrize("when_s", [0.0, 2.0], ids=["at-start", "mid-run"])
def test_a_killed_locust_is_loadgen_failed_with_only_numbers_it_wrote(tmp_path, background, when_s):
    run = background(compose("server=thread", "load=smoke", "load.run_time=6s"), tmp_path)
    server, locust = run.wait_ready(running=when_s > 0)
    time.sleep(when_s)
    locust.kill()
    result = run.join(30)

    assert result.outcome == "loadgen_failed"
    assert "status -9" in result.detail
    assert result.load["exit_code"] == -9
    assert result.server["exit_code"] == 0 and result.server["served"] is not None  # torn down politely
    assert not (tmp_path / "locust.json").exists()  # SIGKILL: Locust wrote no final numbers
    metrics = result.metrics
    assert metrics.partial
    row = _csv_aggregated(tmp_path)
    if metrics.requests is None:  # nothing usable on disk: nothing reported
        assert all(getattr(metrics, k) is None for k in ("rps", "avg_ms", "p95_ms", "failures"))
    else:  # exactly what the CSV says, never more than the server answered
        assert row is not None
        assert metrics.requests == int(row["Request Count"])
        assert metrics.failures == int(row["Failure Count"])
        assert metrics.requests <= result.server["served"]
    assert _on_disk(tmp_path)["metrics"]["partial"] is True
    _assert_nothing_left(run.seen, result.server["listen_port"])


# --- 3. Locust hangs ------------------------------------------------------------------------------


def test_a_stopped_locust_hits_the_deadline_and_everything_is_torn_down(tmp_path, background):
    cfg = compose("server=thread", "load=smoke", "load.run_time=2s", "run.deadline_slack_s=2")
    deadline = load.deadline_s(cfg, load.told(cfg, tmp_path, 1))
    run = background(cfg, tmp_path)
    server, locust = run.wait_ready()
    started = time.monotonic()
    time.sleep(0.5)  # some requests answered
    os.kill(locust.pid, signal.SIGSTOP)  # hung: it neither runs nor exits
    result = run.join(deadline + 30)
    took = time.monotonic() - started

    assert result.outcome == "timeout"
    # no grace wasted on a process that cannot act on SIGTERM: SIGCONT lets it act at once...
    assert took < deadline + 3, f"{took:.1f} s for a deadline of {deadline:g} s"
    assert "Got SIGTERM" in (tmp_path / load.LOCUST_LOG).read_text()
    assert (tmp_path / "locust.json").exists()  # ...so it still wrote the numbers it had
    assert result.metrics.requests and result.metrics.partial
    assert result.server["exit_code"] == 0
    _assert_nothing_left(run.seen, result.server["listen_port"])


# --- 4. Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_while_the_server_starts_stops_it_and_records_the_run(tmp_path, monkeypatch):
    """Ctrl-C while waiting for READY: before, the server was left running with no owner."""
    cfg = compose("server=thread", "load=smoke")
    servers: list[psutil.Process] = []
    wait_for_line = procs.wait_for_line

    def interrupted_wait(path, prefix, proc, timeout):
        servers.append(psutil.Process(proc.pid))
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, to this (the main) thread
        return wait_for_line(path, prefix, proc, timeout)

    monkeypatch.setattr(procs, "wait_for_line", interrupted_wait)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path)
        assert len(servers) == 1 and not alive(servers[0])
        assert _on_disk(tmp_path)["outcome"] == "interrupted"
        assert not (tmp_path / load.LOCUST_LOG).exists()
    finally:
        _kill(servers)


def test_ctrl_c_during_the_teardown_is_held_until_the_run_is_recorded(tmp_path, monkeypatch):
    """Ctrl-C as the server is being stopped after a finished run: before, it cut the teardown
    short -- the server kept running and no result.json was written."""
    cfg = compose("server=thread", "load=smoke", "load.run_time=1s")
    stop = experiment.server_mod.stop
    servers: list[psutil.Process] = []

    def interrupted_stop(server, grace):
        servers.append(psutil.Process(server.proc.pid))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # where the interrupt lands
        return stop(server, grace)

    monkeypatch.setattr(experiment.server_mod, "stop", interrupted_stop)
    try:
        with pytest.raises(KeyboardInterrupt):  # still raised: no further run may start
            run_experiment(cfg, tmp_path)
        assert servers and not alive(servers[0])
        result = read_result(tmp_path / RESULT_FILE)
        assert result.outcome == "ok", result.detail  # the run itself had finished
        assert result.server["exit_code"] == 0 and result.server["served"]
        assert _port_closed(result.server["listen_port"])
    finally:
        _kill(servers)


def _processes_in(cwd: Path) -> dict[psutil.Process, str]:
    """Live servers and Locusts started from `cwd`, wherever they are in the process tree: one
    whose parent died is adopted by init and is no longer our descendant."""
    found = {}
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()) == cwd and (role := _role(proc)) and alive(proc):
                found[proc] = role
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _follow(cli: subprocess.Popen, cwd: Path, seen: dict[psutil.Process, str]) -> list[str]:
    """Collect a runner's servers and Locusts into `seen` until it exits; return those still alive then."""
    while cli.poll() is None:
        seen.update(_processes_in(cwd))
        time.sleep(0.1)
    return [f"{p.pid} {role}" for p, role in (seen | _processes_in(cwd)).items() if alive(p)]


def _reap(cli: subprocess.Popen, cwd: Path, seen: dict[psutil.Process, str]) -> None:
    """The safety net for a runner started in its own session: its group, then what it started, by pid."""
    if cli.poll() is None:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(10)
    _kill([*seen, *_processes_in(cwd)])


def _job_dir(sweep: Path, num: int) -> Path | None:
    return next(sweep.glob(f"{num}_*"), None) if sweep.is_dir() else None


@pytest.mark.slow
@pytest.mark.parametrize(
    "to, when, sig",
    [
        ("pid", "mid-run", signal.SIGINT),
        ("group", "job-start", signal.SIGINT),
        ("pid", "mid-run", signal.SIGTERM),
        ("pid", "mid-run", signal.SIGHUP),
        ("pid", "job-start", signal.SIGTERM),
    ],
    ids=[
        "runner-pid-mid-run",
        "runner-group-as-the-job-starts",
        "sigterm-mid-run",
        "sighup-mid-run",
        "sigterm-as-the-job-starts",
    ],
)
def test_ctrl_c_stops_the_sweep_records_the_run_and_reports(tmp_path, to, when, sig):
    """SIGINT to the runner during the second of three runs. `group` is what a terminal does: the
    server and Locust are in their own sessions and do not get it. `job-start` sends it as soon as
    the job's directory appears, in Hydra's job setup or our server's start-up. SIGTERM (timeout,
    scancel, docker stop) and SIGHUP (a dropped SSH session) must do what Ctrl-C does; before, they
    killed the runner alone and left the server listening, with no result.json and no report."""
    sweep = tmp_path / "sweep"
    argv = [sys.executable, "-m", "runner", "-m", "server=thread,select,single", "load=smoke", "load.run_time=5s"]
    with open(tmp_path / "runner.out", "wb") as out:
        cli = subprocess.Popen(
            [*argv, f"hydra.sweep.dir={sweep}"],
            cwd=tmp_path,  # how its children are found, even orphaned
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as a terminal's foreground job: its own group
            preexec_fn=_default_signals,
        )
    seen: dict[psutil.Process, str] = {}
    try:

        def second_job() -> bool:
            seen.update(_processes_in(tmp_path))
            if when == "job-start":
                return _job_dir(sweep, 1) is not None
            job = _job_dir(sweep, 1)
            return job is not None and (job / "locust_stats.csv").exists()

        _wait_for(second_job, 60, "the second run")
        if when == "mid-run":
            time.sleep(1)  # Locust has numbers to write
        seen.update(_processes_in(tmp_path))
        if to == "pid":
            os.kill(cli.pid, sig)
        else:
            os.killpg(cli.pid, sig)
        code = cli.wait(60)
        left = [f"{p.pid} {role}" for p, role in (seen | _processes_in(tmp_path)).items() if alive(p)]
    finally:
        _reap(cli, tmp_path, seen)
    output = (tmp_path / "runner.out").read_text()

    assert code == 128 + sig, output[-3000:]
    assert not left, left
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"], jobs  # no third run
    first = read_result(jobs[0] / RESULT_FILE)
    assert first.outcome == "ok", first.detail
    assert _port_closed(first.server["listen_port"])
    report = (sweep / "report.md").read_text()
    assert "| ok" in report, report
    if when == "job-start" and not (jobs[1] / RESULT_FILE).exists():
        return  # interrupted in Hydra's job setup, before the run began: nothing to record
    second = read_result(jobs[1] / RESULT_FILE)
    assert second.outcome == "interrupted"
    assert second.detail.endswith("(Ctrl-C)" if sig == signal.SIGINT else signal.Signals(sig).name), second.detail
    assert "interrupted" in report, report
    if second.server.get("listen_port"):
        assert _port_closed(second.server["listen_port"])
    if when == "mid-run":  # Locust stopped first, while the server still answered: whole numbers
        assert _sigterm_logged_at(jobs[1])  # from the runner: the terminal's SIGINT never reached it
        assert second.metrics.requests and second.metrics.partial
        assert second.metrics.failures == 0
        assert second.server["served"] and second.server["exit_code"] == 0


@pytest.mark.slow
def test_timeout_stops_a_single_run_as_ctrl_c_does(tmp_path):
    """The issue's reproduction: `timeout 5 python -m runner load.run_time=10s` left the server
    listening with parent 1, no result.json. `timeout` sends SIGTERM to the runner alone."""
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "runner", "load=smoke", "load.run_time=30s", f"hydra.run.dir={run_dir}"]
    seen: dict[psutil.Process, str] = {}
    with open(tmp_path / "runner.out", "wb") as out:
        cli = subprocess.Popen(
            ["timeout", "--preserve-status", "8", *argv],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    try:
        left = _follow(cli, tmp_path, seen)
    finally:
        _reap(cli, tmp_path, seen)
    output = (tmp_path / "runner.out").read_text()
    assert cli.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert sorted(seen.values()) == ["locust", "server"], seen  # the signal came mid-run
    assert not left, left
    result = read_result(run_dir / RESULT_FILE)
    assert result.outcome == "interrupted" and result.detail == "interrupted by SIGTERM", result.detail
    assert result.metrics.requests and result.metrics.partial
    assert _port_closed(result.server["listen_port"])
    assert output.rstrip().endswith("interrupted by SIGTERM"), output[-1000:]


def test_the_ctrl_c_tests_pass_however_pytest_was_started():
    """Started as a background job (`nohup python -m pytest &`), pytest inherits SIGINT ignored,
    and before, the Ctrl-C tests failed: no KeyboardInterrupt, the runner ran every job and exit 0."""
    tests = "ctrl_c_while_the_server_starts or ctrl_c_during_the_teardown"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", tests],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]


# --- 5. grandchildren ---------------------------------------------------------------------------


@pytest.mark.slow
def test_forked_grandchildren_die_with_their_groups(tmp_path, background):
    cfg = compose("server=process", "server.keepalive=true", "load=smoke", "load.run_time=3s", "load.processes=2")
    run = background(cfg, tmp_path)
    run.wait_ready(30)
    result = run.join(60)

    roles = list(run.seen.values())
    assert roles.count("server") > 1, "the process server forked no child: nothing was tested"
    assert roles.count("locust") >= 3, "locust --processes 2 forked no workers: nothing was tested"
    assert result.outcome == "ok", result.detail
    _assert_nothing_left(run.seen, result.server["listen_port"])


# --- 6. an unusable output directory ------------------------------------------------------------


@pytest.mark.parametrize("key", ["hydra.sweep.dir", "hydra.run.dir"])
def test_an_output_dir_under_a_file_is_refused_before_anything_starts(tmp_path, key):
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    mode = ["-m"] if key == "hydra.sweep.dir" else []
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *mode, "server=thread", "load=smoke", f"{key}={afile}/sub"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert str(afile) in proc.stderr and "not a directory" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no outputs/, nothing else


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}


@pytest.mark.slow
def test_a_second_run_or_sweep_into_a_directory_that_holds_one_is_refused(tmp_path):
    """Before, a second `python -m runner load=smoke hydra.run.dir=outputs/again` read the first run's
    READY line (Locust loaded its dead port) and merged its Locust phase files; a sweep into an old
    sweep's directory reported the old jobs too. Refused, exit 2, the old run untouched: given on the
    command line (seen before Hydra starts) or as Hydra resolves it (here from the environment: what
    an experiment's own directory or two runs within one second of ${now:...} come to)."""
    old = tmp_path / "again"
    cli = [sys.executable, "-m", "runner"]
    first = subprocess.run([*cli, "load=smoke", "load.run_time=1s", f"hydra.run.dir={old}"], cwd=tmp_path, timeout=120)
    assert first.returncode == 0 and (old / RESULT_FILE).exists()
    before = _snapshot(old)
    for argv in (
        ["load=smoke", f"hydra.run.dir={old}"],
        ["load=smoke", "hydra.run.dir=${oc.env:OLD_RUN}"],
        ["-m", "server=select,thread", "load=smoke", f"hydra.sweep.dir={old}"],
        ["-m", "server=select,thread", "load=smoke", "hydra.sweep.dir=${oc.env:OLD_RUN}"],
    ):
        second = subprocess.run(
            [*cli, *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OLD_RUN": str(old)},
        )
        assert second.returncode == 2, argv + [second.stdout[-2000:], second.stderr[-2000:]]
        assert f"{old} already holds .hydra, latency.png, locust.html" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        assert _snapshot(old) == before, argv  # not a byte written, .hydra/ included
    assert not _run_processes()


def test_run_experiment_refuses_a_job_dir_holding_an_earlier_run(tmp_path):
    """The last line of defence, whatever directory Hydra gave the job: an old server.log's READY line
    would be read as this run's."""
    (tmp_path / "server.log").write_text("READY 127.0.0.1 1\n")
    with pytest.raises(experiment.RunDirTaken, match="already holds server.log"):
        run_experiment(compose("server=thread", "load=smoke"), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["server.log"]
    assert not _run_processes()


def test_run_experiment_refuses_an_unusable_job_dir_before_launching(tmp_path, monkeypatch):
    cfg = compose("server=thread", "load=smoke")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(experiment.OutputDirUnusable, match="not a directory"):
        run_experiment(cfg, afile / "job")
    monkeypatch.setattr(experiment, "MIN_FREE_BYTES", 2**62)  # more than any disk: "disk full"
    job = tmp_path / "job"
    job.mkdir()
    with pytest.raises(experiment.OutputDirUnusable, match="free"):
        run_experiment(cfg, job)
    assert list(job.iterdir()) == []  # no log, no half result
    assert not _run_processes()


# A disk of its own to fill: a 64 MB tmpfs in a mount namespace (`unshare -rm`: a user namespace, so
# no privilege is needed where the kernel allows them), seen from here through /proc/<pid>/root.
# Real ENOSPC from the kernel, and the machine's own disk is never touched.
_ON_A_SMALL_DISK = """
mount -t tmpfs -o size=64m tmpfs "$0" || exit 99
"$2" -m runner -m server=select,thread load=smoke load.run_time=4s hydra.sweep.dir="$0/sweep"
code=$?
cp -a "$0/." "$1/"
exit $code
"""


def _small_disks() -> str | None:
    """Why a tmpfs cannot be mounted in a namespace here (None: it can)."""
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0"', "/mnt"], capture_output=True, text=True
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a user+mount namespace: {probe.stderr.strip()}"


@pytest.mark.slow
def test_a_disk_that_fills_mid_sweep_stops_the_sweep_saying_so(tmp_path):
    """Before: job 0 vanished without a console line or a result.json, then a Hydra traceback, exit 1."""
    if why := _small_disks():
        pytest.skip(why)
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    copy.mkdir()
    with open(tmp_path / "runner.out", "wb") as out:
        cli = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", _ON_A_SMALL_DISK, str(disk), str(copy), sys.executable],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: dict[psutil.Process, str] = {}
    try:
        inside = Path(f"/proc/{cli.pid}/root") / disk.relative_to("/")  # the tmpfs, as the runner sees it

        def job_0_running() -> bool:
            seen.update(_processes_in(tmp_path))
            return any(inside.glob("sweep/0_*/locust_stats.csv"))

        _wait_for(job_0_running, 60, "job 0 to run")
        with open(inside / "filler", "wb") as filler:  # the disk fills mid-run
            with pytest.raises(OSError) as full:
                while True:
                    filler.write(b"\0" * 2**20)
                    filler.flush()
        assert full.value.errno == errno.ENOSPC
        left = _follow(cli, tmp_path, seen)
    finally:
        _reap(cli, tmp_path, seen)
    output = (tmp_path / "runner.out").read_text()

    assert cli.returncode == 4, output[-3000:]
    assert not left, left
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    said = [line for line in output.splitlines() if "No space left on device" in line or "MB free" in line]
    assert said and said[0].startswith("select: "), output[-3000:]  # the run's summary: what could be recorded
    assert "Stopped: no further run starts" in said[0] or "stopped after job 0" in said[0], said
    assert [p.name.split("_")[0] for p in (copy / "sweep").iterdir() if p.is_dir()] == ["0"]  # thread never ran
    # job 0's server and Locust, and the spare Locust started for job 1 (runner/run/spare.py): none is left
    assert sorted(seen.values()) == ["locust", "locust", "server"]


# --- 7. partial or corrupt Locust output --------------------------------------------------------

_COLUMNS = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)
_VALUES = "4982,3,1,1.25,0.4,19,12,2491.0,1.5,1,1,1,2,2,3,4,15,17,19,19"  # p99 = 15
_STATS = f"{_COLUMNS}\r\nGET,/,{_VALUES}\r\n,Aggregated,{_VALUES}\r\n"  # as Locust writes it


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode())


def test_read_stats_ignores_a_truncated_json_and_falls_back_to_the_csv(tmp_path):
    _write(tmp_path / "locust.json", '[{"name": "/", "method": "GET", "num_requests": 49')
    _write(tmp_path / "locust_stats.csv", _STATS)
    metrics = load.read_stats(tmp_path)
    assert metrics is not None and metrics.partial
    assert (metrics.requests, metrics.failures, metrics.rps, metrics.p99_ms) == (4982, 3, 2491.0, 15.0)


_CUTS = {  # the file ends just after the last occurrence of this, as a SIGKILL mid-write leaves it
    "empty": "",
    "half-header": "Type,Na",
    "half-row": "GET,/,4982,3,1",
    "no-numbers": ",Aggregated",
    "cut-count": ",Aggregated,49",
    "cut-p99": ",3,4,1",  # 15 -> 1
    "cut-p999": ",17,1",
    "cut-last-field": ",19,1",
}


@pytest.mark.parametrize("cut", _CUTS.values(), ids=_CUTS.keys())
def test_read_stats_invents_nothing_from_a_truncated_csv(tmp_path, cut):
    text = _STATS[: _STATS.rindex(cut) + len(cut)] if cut else ""
    _write(tmp_path / "locust_stats.csv", text)
    metrics = load.read_stats(tmp_path)
    if metrics is not None:  # only whole fields of a whole row may be used
        assert metrics.partial
        assert (metrics.requests, metrics.failures, metrics.max_ms) == (4982, 3, 19.0)
        assert metrics.p95_ms == 3.0 and metrics.p99_ms in (None, 15.0)


# --- 8. result.json is whole or absent ----------------------------------------------------------


def test_write_result_leaves_no_temporary_file(tmp_path):
    write_result(RunResult(outcome="ok"), tmp_path)
    write_result(RunResult(outcome="timeout"), tmp_path)  # replaces, never appends
    assert [p.name for p in tmp_path.iterdir()] == [RESULT_FILE]
    assert read_result(tmp_path / RESULT_FILE).outcome == "timeout"


def test_a_failure_mid_write_keeps_the_previous_result(tmp_path, monkeypatch):
    write_result(RunResult(outcome="ok", detail="the first run"), tmp_path)
    before = (tmp_path / RESULT_FILE).read_bytes()

    def half_then_disk_full(obj, f, **kwargs):
        f.write('{"outcome": "interr')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("runner.result.json.dump", half_then_disk_full)
    with pytest.raises(OSError, match="No space"):
        write_result(RunResult(outcome="interrupted"), tmp_path)
    assert (tmp_path / RESULT_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [RESULT_FILE]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_and_the_report_get_the_mode_every_other_file_gets(tmp_path, umask):
    """mkstemp made result.json, report.md and results.csv 0600: colleagues on a shared file system
    could read every file of a sweep but those."""
    from runner.report.document import write_report

    job = tmp_path / "0_select_hello_r0"
    job.mkdir()
    previous = os.umask(umask)
    try:
        write_result(RunResult(outcome="ok"), job)
        write_report(tmp_path)
        (tmp_path / "other.txt").write_text("")  # what open() gives: the mode to match
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [job / RESULT_FILE, *tmp_path.glob("*.*")]}
    assert set(modes) >= {RESULT_FILE, "report.md", "results.csv", "other.txt"}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask), {k: oct(v) for k, v in modes.items()}
