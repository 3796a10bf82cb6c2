"""The experiment's schema registered with Hydra, and its validation, applied before any process starts.

Two layers: OmegaConf checks types and unknown keys as Hydra composes the YAML onto the
dataclasses of runner/schema.py (registered here in Hydra's ConfigStore as `base_config`), and `check()` checks
ranges and meaning (users > 0, a parseable run_time, a loopback target). The orchestrator adds
the checks that need its parts (a server's program and options, a remote target, distributed
workers) and runs them all over every point of a sweep before the first job starts
(runner/run/sweep.py), so `server=single,bogus` is refused with exit 2 instead of failing after
`single` has run. Shared by every program, so it imports none of them.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import math
import typing
from dataclasses import is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from runner.schema import (  # noqa: F401  (the schema, registered here; importable from here too)
    ARRIVALS,
    SEARCHES,
    CapacityConfig,
    Config,
    LoadConfig,
    RunConfig,
    ServerConfig,
    UserClass,
    ValidityConfig,
    WorkloadConfig,
    parse_duration,
    spawn_s,
)

# The configs: conf/ beside this package in a checkout (and an editable install); installed (pip install .,
# pipx), the same files as runner/conf (pyproject.toml maps them there)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
if not (CONF_DIR / "config.yaml").is_file():
    CONF_DIR = Path(__file__).resolve().parent / "conf"


ConfigStore.instance().store(name="base_config", node=Config)

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def available_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def own_servers() -> list[str]:
    """The server configs that run one of our modules (no `command`, no remote `target_host`): the
    project's own servers."""
    return list(_own_servers())


@functools.cache  # read once per process: every point of a sweep asks
def _own_servers() -> tuple[str, ...]:
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) or {} for p in (CONF_DIR / "server").glob("*.yaml")}
    return tuple(sorted(n for n, cfg in configs.items() if cfg.get("command") is None and "target_host" not in cfg))


def _check_workload_params(cfg: DictConfig | Config) -> list[str]:
    """Every parameter of our workloads is an amount (cpu_us, io_ms, size_bytes, iterations): a
    number >= 0 (a negative size ran, and was marked ok)."""
    errors = []
    for key, value in cfg.workload.params.items():
        try:
            amount = float(value)
        except (TypeError, ValueError):
            amount = math.nan
        if not amount >= 0:  # NaN too
            errors.append(f"workload.params.{key}: must be a number >= 0, got {value!r}")
    return errors


def check(cfg: DictConfig | Config) -> list[str]:
    """Range and meaning checks the type system cannot express; one message per problem."""
    errors = unknown_keys(cfg) if isinstance(cfg, DictConfig) else []

    def positive(key: str, value: float) -> None:
        if value <= 0:
            errors.append(f"{key}: must be > 0, got {value}")

    from servers.workload import WORKLOADS

    if not (cfg.workload.method.isascii() and cfg.workload.method.isalpha() and cfg.workload.method.isupper()):
        errors.append(f"workload.method: an HTTP method in capitals (GET, POST, ...), got {cfg.workload.method!r}")
    if cfg.workload.name not in WORKLOADS:
        errors.append(f"workload.name: unknown workload {cfg.workload.name!r}; valid choices: {', '.join(WORKLOADS)}")
    else:
        import inspect

        accepted = sorted(inspect.signature(WORKLOADS[cfg.workload.name]).parameters)
        for key in cfg.workload.params:
            if key not in accepted:
                takes = ", ".join(accepted) or "no parameters"
                errors.append(f"workload.params.{key}: workload {cfg.workload.name!r} takes {takes}")
        errors += _check_workload_params(cfg)
    positive("load.users", cfg.load.users)
    positive("load.spawn_rate", cfg.load.spawn_rate)
    positive("load.request_timeout_s", cfg.load.request_timeout_s)
    positive("server.backlog", cfg.server.backlog)
    positive("server.ready_timeout_s", cfg.server.ready_timeout_s)
    if not 0 <= cfg.server.port <= 65535:
        errors.append(f"server.port: must be 0 (a free port) or a port number up to 65535, got {cfg.server.port}")
    try:
        run_time = parse_duration(cfg.load.run_time)
    except ValueError as exc:
        errors.append(f"load.run_time: {exc}")
    else:
        errors += _check_run_time(cfg.load, run_time)
    if not 0 <= cfg.load.wait_min_s <= cfg.load.wait_max_s:
        errors.append(
            f"load.wait_min_s/wait_max_s: need 0 <= min <= max, got {cfg.load.wait_min_s}, {cfg.load.wait_max_s}"
        )
    if cfg.load.warmup_s < 0:
        errors.append(f"load.warmup_s: must be >= 0, got {cfg.load.warmup_s}")
    processes = cfg.load.processes
    if processes != "auto" and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        hint = " (Locust's -1, one per core of the machine, would put two on one core)" if processes == -1 else ""
        errors.append(f"load.processes: auto (one per core Locust was given) or a positive count, got "
                      f"{processes!r}{hint}")  # fmt: skip
    if cfg.load.stop_timeout_s < 0:
        errors.append(f"load.stop_timeout_s: must be >= 0, got {cfg.load.stop_timeout_s}")
    errors += _check_capacity(cfg.load)
    errors += _check_arrival(cfg.load)
    if not is_loopback(cfg.run.host) and not cfg.run.allow_remote:
        errors.append(
            f"run.host: {cfg.run.host!r} is not a loopback address; load goes to 127.0.0.1/::1 only "
            "unless run.allow_remote=true says you own the target"
        )
    return errors


def _check_run_time(load: Any, run_time: float) -> list[str]:
    """Locust takes whole seconds only (locust.util.timespan: 20, 20s, 1m30s; "1.5s" stops it at
    start), and a fixed-users run must have a steady window: every user started, then warmup_s."""
    if not run_time.is_integer():
        return [f"load.run_time: Locust takes whole seconds (e.g. 2s, 1m30s), got {load.run_time!r}"]
    if load.capacity.enabled or load.users <= 0 or load.spawn_rate <= 0:
        return []
    ramp = spawn_s(load.users, load.spawn_rate)
    if ramp + load.warmup_s >= run_time:
        return [
            f"load.run_time: {load.run_time} leaves no steady window: Locust starts the last of {load.users} users "
            f"at {load.spawn_rate:g}/s after {ramp:g} s, then load.warmup_s={load.warmup_s:g}; give load.run_time="
            f"{math.floor(ramp + load.warmup_s) + 1}s or more, or a higher load.spawn_rate"
        ]
    return []


def _check_arrival(load: Any) -> list[str]:
    """An open model runs on the loop user's engine, on connections it holds for the whole run."""
    errors = []
    if load.arrival not in ARRIVALS:
        errors.append(f"load.arrival: one of {', '.join(ARRIVALS)}, got {load.arrival!r}")
    rate = load.arrival_rate
    if rate is None:
        return errors
    if not rate > 0:  # NaN too
        return errors + [f"load.arrival_rate: requests/s, must be > 0 (or null: the closed loop), got {rate}"]
    user_class = _user_class(load)
    if user_class != "loop":
        errors.append(
            f"load.arrival_rate: an open model needs load.user_class=loop (its engine times every send), got "
            f"{user_class}"
        )
    if load.capacity.enabled:
        errors.append(
            "load.arrival_rate: a capacity search sets the load itself (by=users: users; by=rate: the rate, from "
            "load.capacity.start_rate); set one or the other"
        )
    if load.wait_max_s > 0:
        errors.append(
            "load.wait_min_s/wait_max_s: an open model has no think time (requests come at the rate, not after the "
            f"previous response); got {load.wait_min_s}, {load.wait_max_s}"
        )
    processes = load.processes if isinstance(load.processes, int) else 1  # auto: at least one
    if load.mode == "distributed":
        processes = load.expect_workers if load.expect_workers is not None else load.workers
    if load.users < processes:
        errors.append(
            f"load.users: the open model's connection pool, split over {processes} Locust processes or workers: needs "
            f"at least one each, got {load.users}"
        )
    return errors


def _check_capacity(load: Any) -> list[str]:
    c = load.capacity
    if not c.enabled:
        return []
    errors = [
        f"load.capacity.{key}: must be > 0, got {getattr(c, key)}"
        for key in ("start_users", "step_users", "step_s", "max_p99_ms", "generator_cpu_pct")
        if getattr(c, key) <= 0
    ]
    if not 0 <= c.ramp_s <= c.step_s - 1:  # Locust's shape ticks once a second: a window shorter than that is empty
        errors.append(f"load.capacity.ramp_s: need 0 <= ramp_s <= step_s - 1 ({c.step_s - 1:g}), got {c.ramp_s}")
    if c.max_users < c.start_users:
        errors.append(f"load.capacity.max_users: must be >= start_users ({c.start_users}), got {c.max_users}")
    if not 0 <= c.max_failure_ratio <= 1:
        errors.append(f"load.capacity.max_failure_ratio: must be in [0, 1], got {c.max_failure_ratio}")
    if c.min_growth < 0:
        errors.append(f"load.capacity.min_growth: must be >= 0, got {c.min_growth}")
    if c.by not in SEARCHES:
        errors.append(f"load.capacity.by: one of {', '.join(SEARCHES)}, got {c.by!r}")
    elif c.by == "rate":
        errors += _check_rate_search(load)
    if c.by == "users" and load.processes not in ("auto", 1):  # by rate, the master runs the steps on them all
        errors.append(
            f"load.processes: a capacity search by users runs one Locust process (its live step decision reads that "
            f"process's own numbers; auto gives it one; by=rate takes several), got {load.processes}"
        )
    if c.by == "users" and load.mode != "local":
        errors.append(
            f"load.mode: a capacity search by users runs one local Locust process (its live step decision reads that "
            f"process's own numbers; by=rate takes workers), got {load.mode}"
        )
    return errors


def _user_class(load: Any) -> str:
    return load.user_class.value if isinstance(load.user_class, Enum) else str(load.user_class)


def _check_rate_search(load: Any) -> list[str]:
    """by=rate runs the open model's engine (the loop user, no think time) on a pool of load.users connections."""
    c = load.capacity
    errors = [
        f"load.capacity.{key}: must be > 0, got {getattr(c, key)}"
        for key in ("start_rate", "rate_precision", "max_steps")
        if not getattr(c, key) > 0
    ]
    if not c.rate_growth > 1:
        errors.append(f"load.capacity.rate_growth: must be > 1, got {c.rate_growth}")
    if not c.max_rate >= c.start_rate:
        errors.append(f"load.capacity.max_rate: must be >= start_rate ({c.start_rate:g}), got {c.max_rate}")
    if not 0 <= c.max_late_ratio <= 1:
        errors.append(f"load.capacity.max_late_ratio: must be in [0, 1], got {c.max_late_ratio}")
    user_class = _user_class(load)
    if user_class != "loop":
        errors.append(f"load.capacity.by=rate: an open model needs load.user_class=loop, got {user_class}")
    if load.wait_max_s > 0:
        errors.append("load.capacity.by=rate: an open model has no think time; set load.wait_max_s=0")
    return errors


# dicts with keys of their own: server.options (the model's flags: _check_options), workload.params
# (the workload's arguments), server.files (file names); every other key must be in the schema
OPEN_DICTS = ("server.options", "server.files", "workload.params")


def schema_field(key: str) -> tuple[type | None, list[str]]:
    """(the schema's type of a dotted key, or None if it has none; the keys its parent has)."""
    node: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if ".".join(parts[:i]) in OPEN_DICTS or not is_dataclass(node):
            return Any, []  # type: ignore[return-value]
        hints = _type_hints(node)
        if part not in hints:
            return None, list(hints)
        node = hints[part]
    return node, []


@functools.cache  # every key of every sweep point asks
def _type_hints(node: type) -> dict[str, Any]:
    return typing.get_type_hints(node)


def valid_values(kind: Any) -> str:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(m.name for m in kind)
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
    for option in typing.get_args(kind) or (kind,):
        if option in names:
            return names[option] + (" or null" if type(None) in typing.get_args(kind) else "")
    return str(kind)


def no_such_key(key: str, siblings: list[str]) -> str:
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, siblings, n=1)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
    return f"{key}: no such key ({hint}{parent or 'the config'} has {', '.join(siblings)})"


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys the schema does not have. Hydra lets `+load.user=5` add one (and suggests it for the typo
    `load.user=5`): it would be stored and ignored while the run used 100 users."""
    errors = []

    def walk(node: Any, prefix: str) -> None:
        for key in node:
            if not prefix and key == "hydra":  # Hydra's own node, in the config its sweeper and callbacks see
                continue
            name = f"{prefix}{key}"
            kind, siblings = schema_field(name)
            if kind is None:
                errors.append(no_such_key(name, siblings))
            elif name not in OPEN_DICTS and isinstance(node[key], DictConfig):
                walk(node[key], f"{name}.")

    walk(cfg, "")
    return errors


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
