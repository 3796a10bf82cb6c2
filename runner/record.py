"""One job directory -> one `Run`: the only place result.json is read back, by the runner's exit status
(runner/run/exits.py) and by the reporter alike.

Strategy:
- A job directory is any directory holding `result.json` or `.hydra/config.yaml`; the sweep root
  (`multirun.yaml`, no `.hydra/`) is not one. Finding them by walking means the same code reports a
  sweep, a single run, or the whole of `outputs/`.
- Each is loaded once, into a `Run` holding the typed `RunResult` (runner/result.py's `read_result`,
  which checks `schema_version` and converts an older version to the current shape) and the Hydra files
  beside it. A config key has one place to be read from, `Run.config` (the recorded config over Hydra's);
  what the run decided and measured, from the result's sections (`Run.section`). Loading never raises: no result.json
  -> `incomplete` (killed before it finished), an unreadable one -> `corrupt`, one written by a newer
  runner -> `unknown_schema`, said in its detail instead of read as if its fields meant what ours do.
- Every section of the report (the tables through runner/report/columns.py, the Capacity and workers
  sections, the figures, the comparison) and the exit status read the `Run`s, never the files again. It is a
  contract beside runner/result.py, in no program's room: data flows config -> run -> record -> report.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from runner.result import RESULT_FILE, Metrics, RunResult, UnknownSchema, merged, read_result


@dataclass
class Run:
    """One job directory as the exit status and the report see it: its result (None when there is no readable one)
    and its Hydra files. Unknown is None everywhere, never a stand-in value."""

    run: str = "."  # job directory, relative to the report directory
    outcome: str = "incomplete"  # one of runner.result.OUTCOMES, or "incomplete" / "corrupt" / "unknown_schema"
    result: RunResult | None = None
    hydra: dict[str, Any] = field(default_factory=dict)  # .hydra/config.yaml, resolved where it can be
    rerun: str = ""  # the command that repeats the run: the result's, else from .hydra/overrides.yaml
    detail: str = ""  # the result's, or why it could not be read

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config: the result's, over Hydra's (which adds only what an old result did not record, or
        all of it when there is no readable result). The one place a config key is read from."""
        recorded = self.result.config if self.result is not None else None
        return merged(self.hydra, recorded) if isinstance(recorded, dict) else self.hydra

    @property
    def metrics(self) -> Metrics:
        m = self.result.metrics if self.result is not None else None
        return m if isinstance(m, Metrics) else Metrics()

    @property
    def diagnoses(self) -> list[dict[str, Any]]:
        """result.json's diagnoses (runner/run/diagnosis.py), each with a kind and what it says; [] without."""
        found = self.result.diagnoses if self.result is not None else None
        ok = isinstance(found, list)
        return [d for d in found if isinstance(d, dict) and isinstance(d.get("kind"), str)] if ok else []

    @property
    def objectives(self) -> list[dict[str, Any]]:
        """result.json's checked objectives (runner/run/objectives.py); [] without."""
        found = self.result.objectives if self.result is not None else None
        return [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []

    @property
    def capacity(self) -> dict[str, Any]:
        """result.json's capacity search (runner/capacity.py: steps, max_rps, stop_reason); {} without one."""
        block = self.result.capacity if self.result is not None else None
        return block if isinstance(block, dict) else {}

    def section(self, name: str) -> dict[str, Any]:
        """A dict section of the result ("server", "load": what each side did; "resources", "workers", "provenance");
        {} if absent."""
        value = getattr(self.result, name, None) if self.result is not None else None
        return value if isinstance(value, dict) else {}

    def known(self, key: str) -> Any:
        """A config key ("load.users") as the run had it (`config`); None when it is not known."""
        return lookup(self.config, key)

    @property
    def server(self) -> str:
        """The server's name as the tables show it; reference servers (uvicorn, nginx) say so."""
        return text(self.known("server.name")) + (" (reference)" if self.known("server.reference") is True else "")


def load_runs(directory: Path | str) -> list[Run]:
    """Every job directory under `directory` as a Run, in natural order of their paths; never raises."""
    root = Path(directory)
    return sorted((load_run(job, root) for job in _job_dirs(root)), key=lambda run: natural_key(run.run))


def load_run(job: Path, root: Path) -> Run:
    """The job directory `job` (under `root`) as a Run; never raises: any bad file costs one row, not the report."""
    where = job.relative_to(root).as_posix()
    hydra = _yaml(job / ".hydra" / "config.yaml")
    overrides = _yaml(job / ".hydra" / "overrides.yaml")
    rerun = ""
    if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
        rerun = shlex.join(["python", "-m", "runner", *overrides])  # as runner/run/experiment.py writes it
    run = Run(run=where, hydra=hydra if isinstance(hydra, dict) else {}, rerun=rerun)
    if not (job / RESULT_FILE).exists():
        return run
    try:
        result = read_result(job / RESULT_FILE)
    except UnknownSchema as exc:
        run.outcome, run.detail = "unknown_schema", str(exc)
        return run
    except Exception as exc:  # any bad file must cost one row, never the sweep its report
        run.outcome, run.detail = "corrupt", str(exc)
        return run
    run.result, run.outcome = result, result.outcome
    run.detail = result.detail if isinstance(result.detail, str) else ""
    run.rerun = result.rerun if isinstance(result.rerun, str) and result.rerun else rerun
    return run


def _job_dirs(root: Path) -> Iterator[Path]:
    for here, dirs, files in os.walk(root):  # unreadable subdirectories are skipped, not raised
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .hydra/, .git/: never job dirs
        path = Path(here)
        has_hydra = (path / ".hydra" / "config.yaml").is_file()
        sweep_root = "multirun.yaml" in files and not (path / ".hydra").is_dir()
        if (RESULT_FILE in files or has_hydra) and not sweep_root:
            yield path


def _yaml(path: Path) -> Any:
    try:
        cfg = OmegaConf.load(path)
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # an interpolation that only resolves inside Hydra: keep it as written
            return OmegaConf.to_container(cfg, resolve=False)
    except Exception:  # missing, not YAML: the row falls back to "?"
        return None


def lookup(data: Any, key: str) -> Any:
    """data["a"]["b"] for key "a.b"; None wherever a level is missing or not a mapping."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def text(value: Any) -> str:
    """A name as shown: "?" when it is unknown or not a name."""
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value)
    return str(value) if ok else "?"


def natural_key(text: str) -> list[int | str]:
    """'2' before '10': Hydra numbers its multirun job directories 0, 1, ... 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
