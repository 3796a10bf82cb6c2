"""Code that runs inside Locust's processes, loaded by path on Locust's command line
(`-f runner/locust/locustfile.py,runner/locust/progress.py`). It imports Locust and gevent, so
nothing in the orchestrator or the reporter imports these modules (the paths below are how they
name them) but options.py, the crossing of that command line, which imports neither."""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
LOCUSTFILE = _HERE / "locustfile.py"  # the users and the phase record
PROGRESS_PLUGIN = _HERE / "progress.py"  # live numbers, one JSON line a second
WORKERS_PLUGIN = _HERE / "workers.py"  # the master's ledger of its workers (distributed mode)
# Locust's exit code when a greenlet of its process died (Locust's own convention), the loop engine's included:
# the numbers it wrote are not the server's
CRASHED = 2
