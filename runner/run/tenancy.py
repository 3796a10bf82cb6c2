"""One sweep at a time on a machine, or at least a warning: another sweep's servers and Locusts share
the cores, and both sweeps' numbers show it (the `contended` flag measures it run by run).

Strategy: every runner holds a shared flock on one file in the temporary directory for its life
(LOCK_SH, so any number may hold it). Before that it tries an exclusive lock without waiting: if
that fails, another runner holds it, and the runner says so on stderr, naming the holders (from
/proc/locks), and goes on. It warns rather than refuses: the suites of several people run sweeps on
one CI machine, and a refused sweep would fail their tests for the others' sake. The lock goes with
the process (flock is released when its file is closed, however the process ends), so a killed
runner never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

LOCK_ENV = "STRESSBENCH_LOCK_FILE"  # another lock file (the tests': their runners among themselves)


def lock_file() -> Path:
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / "stressbench-sweep.lock")


def _holders(fd: int) -> list[int]:
    """Pids holding a lock on the file open as `fd`, but us (from /proc/locks; [] where unreadable)."""
    inode = os.fstat(fd).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[5].rsplit(":", 1)[-1] == str(inode) and parts[4].isdigit():
            pids.append(int(parts[4]))
    return sorted(set(pids) - {os.getpid()})


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return f"pid {pid} ({' '.join(a.decode(errors='replace') for a in argv if a)[:120]})"
    except OSError:
        return f"pid {pid}"


def hold(path: Path | None = None) -> tuple[int | None, str | None]:
    """Take this runner's share of the lock: (its descriptor -- keep it open for the sweep's life --,
    a warning naming the other runners, or None when there are none). (None, None) where the file
    cannot be opened (another user's, mode 0644): no lock, no warning."""
    try:
        fd = os.open(path or lock_file(), os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        return None, None
    warning = None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        others = ", ".join(_describe(pid) for pid in _holders(fd)) or "another process"
        warning = (
            f"another stressbench sweep is running on this machine: {others}. Its load shares the cores; "
            "runs it slows are flagged `contended`."
        )
    fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive: a shared hold, so the next runner sees us too
    return fd, warning
