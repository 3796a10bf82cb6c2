"""Loading runs: every job directory under a directory -> one `Run` each -> one flat table (results.csv).

Strategy:
- A job directory is any directory holding `result.json` or `.hydra/config.yaml`; the sweep root
  (`multirun.yaml`, no `.hydra/`) is not one. Finding them by walking means the same code reports a
  sweep, a single run, or the whole of `outputs/`.
- Each job becomes one `Run`, and loading never raises: no result.json -> `incomplete` (killed before
  it finished), an unreadable one -> `corrupt`. Names come from the result, then from its resolved
  config, then from `.hydra/config.yaml`, else "?". A number is never invented: unknown is None,
  shown as "—", written to the CSV as an empty cell. Fields a result predates are unknown too.
- A cell is every run with the same config but for `run.repeat`; its id is a hash of that config
  (or, with no config known, of the identity columns). Config keys that differ between runs but
  have no column of their own go to a Settings column, so two rows never look alike by accident.
- Rows are ranked only against rows run under the same conditions: a group is every run whose config
  (or, with none, identity columns) matches but for `server.name`, `run.repeat` and the other
  `server.*` keys, which belong to the server (single's keep-alive default) unless some run's command
  sets them. `to_frame` names each run's group in words; the report ranks each group on its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from runner.result import RESULT_FILE, Metrics, RunResult


@dataclass
class Run:
    """One job directory as the report sees it. Fields up to `rerun` are the frame's columns, in order."""

    server: str = "?"
    workload: str = "?"
    keepalive: bool | None = None
    users: int | None = None
    spawn_rate: float | None = None
    arrival_rate: float | None = None  # load.arrival_rate: an open model's requests/s; None: the closed loop
    settings: str = ""  # config keys that differ between runs and have no column: set by to_frame
    repeat: int | None = None  # config run.repeat
    requests: int | None = None
    failures: int | None = None
    fail_pct: float | None = None
    rps: float | None = None
    goodput: float | None = None
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    # an open model (arrival_rate set): the percentiles above are corrected, these from Metrics' open-model fields
    uncorrected_p99_ms: float | None = None
    intended_rps: float | None = None
    sent_rps: float | None = None
    late: int | None = None
    dropped: int | None = None
    max_ms: float | None = None
    total_requests: int | None = None  # Locust's count over the whole run, ramp-up included
    served: int | None = None  # the server's own count (its SERVED line)
    server_cpu_pct: float | None = None
    locust_cpu_pct: float | None = None
    peak_memory_mb: float | None = None  # the server's
    requests_per_cpu_s: float | None = None  # the server's
    locust_us_per_request: float | None = None  # Locust's CPU microseconds per request: the generator's cost
    outcome: str = "incomplete"  # one of OUTCOMES, or "incomplete" / "corrupt"
    partial: bool = False
    flags: tuple[str, ...] = ()
    window: str | None = None  # "steady" | "whole-run"
    server_cpus: str | None = None  # "0", "1-3"; "any": not pinned; None: not recorded
    locust_cpus: str | None = None
    cell: str = ""  # hash of the config but for run.repeat: set by to_frame
    group: str = ""  # the conditions the run is ranked under, in words ("" with one group): set by to_frame
    run: str = "."  # job directory, relative to the report directory
    rerun: str = ""  # the command that repeats the run
    detail: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, as recorded
    capacity: dict[str, Any] = field(default_factory=dict)  # result.json's capacity search, if it ran one


COLUMNS = tuple(f.name for f in fields(Run) if f.name not in ("detail", "provenance", "config", "capacity"))
IDENTITY = COLUMNS[: COLUMNS.index("settings") + 1]
NUMBERS = COLUMNS[COLUMNS.index("requests") : COLUMNS.index("locust_us_per_request") + 1]
# Identity keys, spelled the same in RunResult's sections and in the Hydra config. The _SHOWN ones have
# columns of their own; any other config key that differs between runs goes to the Settings column.
_SHOWN = ("server.name", "server.keepalive", "load.users", "load.spawn_rate", "load.arrival_rate", "workload.name",
          "run.repeat")  # fmt: skip
_KEYS = (*_SHOWN, "server.served")
_KINDS = {"int | None": "Int64", "float | None": "Float64", "bool | None": "boolean", "bool": "bool"}
DTYPES = {f.name: _KINDS[f.type] for f in fields(Run) if f.type in _KINDS}


# Condition keys said in words in a group's sub-heading (in this order), by the column that shows them
_WORDS = {
    "workload.name": "workload",
    "server.keepalive": "keepalive",
    "load.users": "users",
    "load.spawn_rate": "spawn_rate",
    "load.arrival_rate": "arrival_rate",
}


def load_runs(directory: Path | str) -> list[Run]:
    """Every job directory under `directory` as a Run, in natural order of their paths; never raises."""
    root = Path(directory)
    return sorted((_load_run(job, root) for job in _job_dirs(root)), key=lambda run: natural_key(run.run))


def to_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, columns COLUMNS; missing numbers are <NA>. This is results.csv."""
    configs = [_flatten(run.config) for run in runs]
    differ = sorted(_differing(configs) - set(_SHOWN) - _named_by_server(configs))
    labels = _group_labels(runs, configs)
    rows = []
    for run, config, label in zip(runs, configs, labels, strict=True):
        row = {name: getattr(run, name) for name in COLUMNS}
        row["flags"] = ",".join(run.flags)
        row["settings"] = ", ".join(f"{key}={_setting(config[key])}" for key in differ if key in config)
        identity = {key: row[key] for key in IDENTITY if key != "settings"}
        canonical = json.dumps(config or identity, sort_keys=True, default=str)
        row["cell"] = hashlib.sha1(canonical.encode()).hexdigest()[:8]
        row["group"] = label
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(DTYPES)


def _job_dirs(root: Path) -> Iterator[Path]:
    for here, dirs, files in os.walk(root):  # unreadable subdirectories are skipped, not raised
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .hydra/, .git/: never job dirs
        path = Path(here)
        has_hydra = (path / ".hydra" / "config.yaml").is_file()
        sweep_root = "multirun.yaml" in files and not (path / ".hydra").is_dir()
        if (RESULT_FILE in files or has_hydra) and not sweep_root:
            yield path


def _load_run(job: Path, root: Path) -> Run:
    where = job.relative_to(root).as_posix()
    hydra = _yaml(job / ".hydra" / "config.yaml")
    overrides = _yaml(job / ".hydra" / "overrides.yaml")
    rerun = ""
    if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
        rerun = shlex.join(["python", "-m", "runner", *overrides])  # as runner.experiment writes it
    hydra = hydra if isinstance(hydra, dict) else {}
    if not (job / RESULT_FILE).exists():
        return _make_run(where, "incomplete", [hydra], config=hydra, rerun=rerun)
    try:
        result, capacity = _read(job / RESULT_FILE)
        sections = {"server": result.server, "load": result.load, "workload": result.workload}
        config = result.config if isinstance(result.config, dict) and result.config else hydra
        rerun = result.rerun if isinstance(result.rerun, str) and result.rerun else rerun
        run = _make_run(where, result.outcome, [sections, result.config, hydra], result, config=config, rerun=rerun)
        run.capacity = capacity
        return run
    except Exception as exc:  # any bad file must cost one row, never the sweep its report
        return _make_run(where, "corrupt", [hydra], detail=str(exc), config=hydra, rerun=rerun)


def _read(path: Path) -> tuple[RunResult, dict[str, Any]]:
    """The result, and its `capacity` section (runner/capacity.py: steps, max_rps, stop_reason) read on
    its own, so a result from a runner with or without that section loads the same; {} when absent."""
    try:
        data = json.loads(path.read_text())
        capacity = data.pop("capacity", None) if isinstance(data, dict) else None
        return RunResult.from_dict(data), capacity if isinstance(capacity, dict) else {}
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:  # as runner.result.read_result
        raise ValueError(f"{path}: not a valid result ({exc})") from exc


def _make_run(
    where: str,
    outcome: str,
    sources: list[Any],
    result: RunResult | None = None,
    detail: str = "",
    config: dict | None = None,
    rerun: str = "",
) -> Run:
    known = {key: next((v for s in sources if (v := lookup(s, key)) is not None), None) for key in _KEYS}
    m = result.metrics if result is not None and isinstance(result.metrics, Metrics) else Metrics()
    requests, failures, ratio = _int(m.requests), _int(m.failures), as_float(m.failure_ratio)
    if ratio is None and requests and failures is not None:
        ratio = failures / requests
    used = result.resources if result is not None else None
    flags = result.flags if result is not None and isinstance(result.flags, list) else []
    reference = next((v for s in sources if (v := lookup(s, "server.reference")) is not None), None)
    return Run(
        server=_text(known["server.name"]) + (" (reference)" if reference is True else ""),  # uvicorn, nginx
        workload=_text(known["workload.name"]),
        keepalive=known["server.keepalive"] if isinstance(known["server.keepalive"], bool) else None,
        users=_int(known["load.users"]),
        spawn_rate=as_float(known["load.spawn_rate"]),
        arrival_rate=as_float(known["load.arrival_rate"]),
        repeat=_int(known["run.repeat"]),
        requests=requests,
        failures=failures,
        fail_pct=None if ratio is None else ratio * 100,
        rps=as_float(m.rps),
        goodput=as_float(m.goodput),
        avg_ms=as_float(m.avg_ms),
        p50_ms=as_float(m.median_ms),
        p95_ms=as_float(m.p95_ms),
        p99_ms=as_float(m.p99_ms),
        uncorrected_p99_ms=as_float(m.uncorrected_p99_ms),
        intended_rps=as_float(m.intended_rps),
        sent_rps=as_float(m.sent_rps),
        late=_int(m.late),
        dropped=_int(m.dropped),
        max_ms=as_float(m.max_ms),
        total_requests=_int(m.total_requests),
        served=_int(known["server.served"]),
        server_cpu_pct=as_float(lookup(used, "server.cpu_pct")),
        locust_cpu_pct=as_float(lookup(used, "locust.cpu_pct")),
        peak_memory_mb=as_float(lookup(used, "server.peak_memory_mb")),
        requests_per_cpu_s=as_float(lookup(used, "server.requests_per_cpu_s")),
        locust_us_per_request=as_float(lookup(used, "locust.cpu_us_per_request")),
        outcome=outcome,
        partial=m.partial is True,
        flags=tuple(flag for flag in flags if isinstance(flag, str)),
        window=m.window if isinstance(m.window, str) else None,
        server_cpus=_cpus(result.server) if result is not None else None,
        locust_cpus=_cpus(result.load) if result is not None else None,
        run=where,
        rerun=rerun,
        detail=result.detail if result is not None else detail,
        provenance=result.provenance if result is not None and isinstance(result.provenance, dict) else {},
        config=config or {},
    )


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


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, without `run.repeat`: what makes runs one cell."""
    if not isinstance(data, dict):
        return {}
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, f"{name}.")
        elif name != "run.repeat":
            out[name] = value
    return out


def _differing(configs: list[dict[str, Any]]) -> set[str]:
    """Keys with more than one value among the configs that have them."""
    values: dict[str, set[str]] = {}
    for config in configs:
        for key, value in config.items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    return {key for key, seen in values.items() if len(seen) > 1}


def _named_by_server(configs: list[dict[str, Any]]) -> set[str]:
    """server.* keys with one value per server name (uvicorn's command): the Server column says them."""
    seen: dict[tuple[str, Any], set[str]] = {}
    for config in configs:
        for key, value in config.items():
            if key.startswith("server."):
                seen.setdefault((key, config.get("server.name")), set()).add(_canonical(value))
    return {key for key, _ in seen} - {key for (key, _), values in seen.items() if len(values) > 1}


def _group_labels(runs: list[Run], configs: list[dict[str, Any]]) -> list[str]:
    """Each run's group (see the module docstring) in words, e.g. "workload cpu, 200 users": only the keys
    that differ between groups, leaving out any other key the worded ones already determine (a workload's
    params). All "" when there is one group."""
    explicit = {key for run in runs for key in _overridden(run.rerun)}
    conditions = [
        {k: _canonical(v) for k, v in (config or _identity_config(run)).items() if k != "server.name"}
        for run, config in zip(runs, configs, strict=True)
    ]
    conditions = [{k: v for k, v in c.items() if not k.startswith("server.") or k in explicit} for c in conditions]
    groups = list({_canonical(c): c for c in conditions}.values())
    if len(groups) < 2:
        return [""] * len(runs)
    keys = {key for group in groups for key in group}
    varying = {key for key in keys if len({g.get(key) for g in groups}) > 1}
    worded = [key for key in _WORDS if key in varying]

    def determined(key: str) -> bool:  # one value per combination of the worded keys
        seen: dict[tuple, Any] = {}
        return all(seen.setdefault(tuple(g.get(w) for w in worded), g.get(key)) == g.get(key) for g in groups)

    said = worded + sorted(key for key in varying - set(worded) if not determined(key))
    return [", ".join(_condition(key, c.get(key)) for key in said) for c in conditions]


def _identity_config(run: Run) -> dict[str, Any]:
    """What a run without a config is known by, under its config key names."""
    return {"server.name": run.server, "server.keepalive": run.keepalive, "workload.name": run.workload,
            "load.users": run.users, "load.spawn_rate": run.spawn_rate,
            "load.arrival_rate": run.arrival_rate}  # fmt: skip


def _overridden(rerun: str) -> set[str]:
    """The config keys a run's command sets: "python -m runner server.keepalive=false" -> {"server.keepalive"}."""
    try:
        words = shlex.split(rerun or "")
    except ValueError:
        return set()
    return {word.split("=", 1)[0].lstrip("+~") for word in words if "=" in word and not word.startswith("-")}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _condition(key: str, canonical: str | None) -> str:
    value = None if canonical is None else json.loads(canonical)
    if key in _WORDS and value is not None and value != "?":
        return describe(_WORDS[key], value)
    return f"{key}={_setting(value)}"


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cpus(section: Any) -> str | None:
    """A section's `cpus` as "0" or "1-3"; "any" when it was not pinned (None); None when not recorded."""
    if not isinstance(section, dict) or "cpus" not in section:
        return None
    cpus = section["cpus"]
    if cpus is None:
        return "any"
    if not isinstance(cpus, list) or not cpus or not all(isinstance(c, int) for c in cpus):
        return None
    spans: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _text(value: Any) -> str:
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value)
    return str(value) if ok else "?"


def natural_key(text: str) -> list[int | str]:
    """'2' before '10': Hydra numbers its multirun job directories 0, 1, ... 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def describe(column: str, value: Any) -> str:
    if column == "workload":
        return f"workload {value}"
    if column == "keepalive":
        return f"keep-alive {'yes' if value else 'no'}"
    if column == "users":
        return f"{value} user{'s' if value != 1 else ''}"
    if column == "arrival_rate":
        return f"{value:g} requests/s arriving"
    return f"spawn rate {value:g}/s"
