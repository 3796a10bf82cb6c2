"""Runs -> one flat frame (results.csv), and the groups and cells that compare runs with each other.

Strategy:
- Each run is a record loaded once (runner/record.py); its row is the column registry's values
  (runner/report/columns.py). What compares runs with each other is here: the Settings column, the
  cell and the group.
- A cell is every run with the same config but for `run.repeat`; its id is a hash of that config
  (or, with no config known, of the identity columns). Config keys that differ between runs but
  have no column of their own go to a Settings column, so two rows never look alike by accident.
- Rows are ranked only against rows run under the same conditions: a group is every run whose config
  (`Run.config`, the one place a run's settings are read from) matches but for `run.repeat` and the `server.*`
  keys, which say who the server is (its name, command, options, files: your server run by a command of its own lands in
  the same table as ours), not how it was loaded. Only server.keepalive and server.backlog, which a
  sweep may set for every server, are conditions, and only when some run's command sets them (single's
  keep-alive default is single's). `to_frame` names each run's group in words; the report ranks each
  group on its own.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

import pandas as pd

from runner.record import Run
from runner.report.columns import CSV, DTYPES, IDENTITY, values

# Identity keys with columns of their own; any other config key that differs between runs goes to Settings.
_SHOWN = ("server.name", "server.keepalive", "load.users", "load.spawn_rate", "load.arrival_rate", "workload.name",
          "run.repeat", "run.server_cores")  # fmt: skip


# server.* keys a sweep may set for every server (when some run's command does): conditions; every other
# server.* key says which server a row is
_SERVER_CONDITIONS = ("server.keepalive", "server.backlog")

# Condition keys said in words in a group's sub-heading (in this order), by the column that shows them
_WORDS = {
    "workload.name": "workload",
    "server.keepalive": "keepalive",
    "load.users": "users",
    "load.spawn_rate": "spawn_rate",
    "load.arrival_rate": "arrival_rate",
    "run.server_cores": "cores",
}


def to_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, columns columns.CSV; missing numbers are <NA>. This is results.csv."""
    configs = [_flatten(run.config) for run in runs]
    differ = sorted(_differing(configs) - set(_SHOWN) - _named_by_server(configs))
    rows = [values(run) for run in runs]
    for row, config, label in zip(rows, configs, _group_labels(runs, configs), strict=True):
        row["settings"] = ", ".join(f"{key}={_setting(config[key])}" for key in differ if key in config)
        identity = {key: row[key] for key in IDENTITY if key != "settings"}
        canonical = json.dumps(config or identity, sort_keys=True, default=str)
        row["cell"] = hashlib.sha1(canonical.encode()).hexdigest()[:8]
        row["group"] = label
    return pd.DataFrame(rows, columns=list(CSV)).astype(DTYPES)


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
    conditions = [{k: _canonical(v) for k, v in config.items() if k != "server.name"} for config in configs]
    explicit &= set(_SERVER_CONDITIONS)
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


def describe(column: str, value: Any) -> str:
    if column == "workload":
        return f"workload {value}"
    if column == "keepalive":
        return f"keep-alive {'yes' if value else 'no'}"
    if column == "users":
        return f"{value} user{'s' if value != 1 else ''}"
    if column == "arrival_rate":
        return f"{value:g} requests/s arriving"
    if column == "cores":  # the column's "2", "2 (shared)", "any", or the config's 2, "all", [0, 1]
        if isinstance(value, list):
            return f"server on core{'s' if len(value) > 1 else ''} {', '.join(map(str, value))}"
        count, _, shared = str(value).partition(" ")
        if count in ("all", "any"):
            return "server on every core" if count == "all" else "unpinned"
        return f"server on {count} core{'s' if count != '1' else ''}{' shared with Locust' if shared else ''}"
    return f"spawn rate {value:g}/s"
