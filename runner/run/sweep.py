"""Every point of a sweep composed and checked once, before the first job starts.

`python -m runner -m server=single,bogus` must be refused with exit 2 before `single` runs. Hydra
hands the sweep to our sweeper (hydra_plugins/stressbench_sweeper, selected in conf/config.yaml),
which calls `plan`: the command line and an experiment's `hydra.sweeper.params` expanded into points
as Hydra's basic sweeper expands them (comma lists, range(), glob(), shuffle(); a later key wins),
each point composed by Hydra's config loader and checked: the schema's checks (runner/config.py)
plus those that need the orchestrator's parts (a server's program and options, a remote target,
distributed workers). The launcher then takes each point's config from `ComposedOnce` instead of
composing it again. A single run is checked by the run callback (runner/run/callbacks.py) on the
config Hydra composed for it. Either way `refused` lists every problem, and nothing has started.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any, NamedTuple

from hydra.core.config_loader import ConfigLoader
from omegaconf import DictConfig

from runner import config
from runner.config import CONF_DIR, available_choices, no_such_key, schema_field, valid_values
from runner.run import cores, distributed, progress, remote, server, spare, tenancy
from runner.run.exits import EXIT_REFUSED, SweepStopped
from runner.run.experiment import OutputDirUnusable, check_fresh, check_output_dir


class Refused(SweepStopped):
    """The configuration or the output directory was refused: nothing was started, so nothing to report."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("configuration refused, nothing was started:\n" + "\n".join(f"  {e}" for e in errors),
                         EXIT_REFUSED)  # fmt: skip


def check(cfg: DictConfig | config.Config) -> list[str]:
    """Everything wrong with one composed config, one message per problem."""
    return server.check(cfg) + config.check(cfg) + distributed.check(cfg) + remote.check(cfg) + _check_cores(cfg)


def _check_cores(cfg: DictConfig | config.Config) -> list[str]:
    """run.server_cores against the cores this machine gives (runner/run/cores.py)."""
    errors = cores.check(cfg.run.server_cores, cores.available())
    if not cfg.run.pin and cfg.run.server_cores != 1:
        errors.append(f"run.server_cores: {cfg.run.server_cores} needs run.pin=true (unpinned, nothing is assigned)")
    return errors


def output_errors(key: str, path: str) -> list[str]:
    """Where a run or sweep writes, as Hydra resolved it: a directory we can write in, holding no earlier run."""
    try:
        check_output_dir(path)
        check_fresh(path)  # Hydra's .hydra/ would overwrite an old run's; an old sweep's jobs would join the report
    except OutputDirUnusable as exc:
        return [f"{key}: {exc}"]
    return []


def explain(exc: Exception, overrides: list[str], loader: ConfigLoader | None = None) -> str:
    """Hydra's composition errors in the runner's words: the key, why, and what it takes (the choices Hydra's
    `loader` sees, a config directory of the user's own (-cd) included)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(exc, OverrideParseException):
        braces = [a for a in overrides if "{" in a and "=" in a and a.partition("=")[2][:1] not in "'\"[{"]
        if braces:
            key, _, value = braces[0].partition("=")
            return f"{key}: Hydra reads braces as its own syntax; quote the value for it: '{key}=\"{value}\"'"
        split = [i for i, a in enumerate(overrides) if a.endswith(",") or (a.startswith(",") and "=" not in a)]
        if split:  # `server=single, thread`: the shell made two words of one list
            i = split[0]
            words = overrides[i : i + 2] if overrides[i].endswith(",") else overrides[max(i - 1, 0) : i + 1]
            return (f"{' '.join(words)!r}: a comma list is one word, without spaces: "
                    f"{''.join(words)} (the shell split it at the space)")  # fmt: skip
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = str(exc.missing_cfg_file).rpartition("/")
        if group:
            choices = sorted(set(loader.get_group_options(group))) if loader else available_choices(group)
            return f"{group}={choice}: no such option; valid choices: {', '.join(choices)}"
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        kind, siblings = schema_field(key)
        if kind is None:
            return no_such_key(key, siblings)
        return f"{key}: not set in this config; to add it, +{key}=... (checked like the others)"
    if key and isinstance(cause, ValidationError):
        return f"{key}: {getattr(cause, 'value', None)!r} is not {valid_values(schema_field(key)[0])}"
    return " ".join(str(exc).split())


class ComposedOnce(ConfigLoader):
    """Hydra's config loader, but a point's config composed (and checked) by `plan` is handed to the
    launcher as it asks for it, not composed a second time."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.ready: dict[tuple[str, ...], DictConfig] = {}

    def compose(self, master: DictConfig, point: list[str]) -> DictConfig:
        self.ready[tuple(point)] = cfg = self.loader.load_sweep_config(master, point)
        return cfg

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        cfg = self.ready.pop(tuple(sweep_overrides), None)
        return cfg if cfg is not None else self.loader.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)


def points(loader: ConfigLoader, master: DictConfig) -> tuple[list[list[str]], set[str]]:
    """(the sweep's points, as Hydra's basic sweeper makes them: `hydra.sweeper.params` (an
    experiment's), then the command line's overrides; a later key replaces an earlier one in its
    place; the cartesian product of every key's values, the first key varying slowest -- and the keys
    whose values a glob() named)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    params = master.hydra.sweeper.get("params")
    arguments = [f"{key}={value}" for key, value in (params or {}).items()] + list(master.hydra.overrides.task)
    values: dict[str, list[str]] = {}
    globbed, shuffled = set(), set()
    for override in OverridesParser.create(config_loader=loader).parse_overrides(arguments):
        key = override.get_key_element()
        globbed.discard(key)
        shuffled.discard(key)
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
            if isinstance(override.value(), Glob):
                globbed.add(key)
            if getattr(override.value(), "shuffle", False):
                shuffled.add(key)
        else:
            raise ValueError(f"{override.input_line}: a sweep takes lists, range(), glob(), shuffle(); not intervals")
    return _product(values, shuffled), globbed


def _product(values: dict[str, list[str]], shuffled: set[str]) -> list[list[str]]:
    """Every combination, the first key varying slowest (itertools.product's order); a shuffle()d key in a new
    order under each combination of the keys before it -- each repeat (run.repeats), which Hydra's sweeper
    ran in one order every time."""
    points: list[list[str]] = [[]]
    for key, options in values.items():
        points = [prefix + [o] for prefix in points
                  for o in (random.sample(options, len(options)) if key in shuffled else options)]  # fmt: skip
    return points


class Plan(NamedTuple):
    points: list[list[str]]  # what will run, each as its overrides
    errors: list[str]  # every problem with a point or the sweep directory: the sweep is refused if there is one
    left_out: list[str]  # points a glob() named whose server cannot run here (its program is not installed)


def plan(loader: ComposedOnce, master: DictConfig) -> Plan:
    """The sweep's points, composed and checked, with every problem found and the sweep directory's.
    A server a glob() names (`server='glob(*,exclude=[external,remote])'`, experiment=models) whose
    program is not installed (nginx on a machine without it) is left out, said in `left_out`: the glob
    means every server there is. Named by itself (`server=nginx`) it is refused, as any bad value."""
    from hydra.errors import HydraException

    try:
        found, globbed = points(loader, master)
    except (HydraException, ValueError) as exc:  # an override Hydra cannot parse, an interval sweep
        return Plan([], [explain(exc, list(master.hydra.overrides.task))], [])
    errors = output_errors("hydra.sweep.dir", master.hydra.sweep.dir)
    kept, left_out = [], []
    for point in found:
        try:
            cfg = loader.compose(master, point)
            if "server" in globbed and (missing := server.missing_program(cfg)):
                loader.ready.pop(tuple(point), None)
                left_out.append(f"server={cfg.server.name}: {missing}")
                continue
            problems = check(cfg)
        except Exception as exc:  # Hydra's composition errors (MissingConfigException, omegaconf's)
            problems = [explain(exc, point, loader)]
        kept.append(point)
        prefix = f"[{' '.join(point)}] " if len(found) > 1 else ""
        errors += [prefix + p for p in problems if prefix + p not in errors]
    if found and not kept:
        errors.append("nothing left to run: every point was left out (" + "; ".join(sorted(set(left_out))) + ")")
    return Plan(kept, errors, sorted(set(left_out)))


def say_left_out(left_out: list[str]) -> None:
    """On stderr, before the sweep starts: what a glob named that this machine cannot run."""
    for why in left_out:
        print(f"left out of the sweep (a glob named it, and it cannot run here): {why}", file=sys.stderr, flush=True)


_lock: int | None = None  # this runner's share of the machine, held for its life (runner/run/tenancy.py)


def begin(jobs: int, spares: bool = True) -> None:
    """Everything checked: say how many jobs the progress line counts, start the first jobs' Locust
    processes (`spares`: the jobs run in this process; runner/run/spare.py), and take this runner's
    share of the machine (a warning if another sweep holds one)."""
    global _lock
    os.environ[progress.JOBS_ENV] = str(jobs)
    if spares:
        spare.prepare(jobs)
    _lock, warning = tenancy.hold()
    if warning:
        print(warning, file=sys.stderr, flush=True)


def expand_repeats(argv: list[str]) -> list[str]:
    """`run.repeats=N` -> a multirun whose first (slowest-varying) dimension is run.repeat=0..N-1,
    so repeats interleave: every cell once, then every cell again, which spreads slow drift of a
    shared machine over all cells instead of loading it onto one."""
    out, repeats = [], None
    for arg in argv:
        if arg.startswith("run.repeats="):
            repeats = arg.split("=", 1)[1]
        else:
            out.append(arg)
    if repeats is None:
        return argv
    fixed = [a for a in out if a.lstrip("+").startswith("run.repeat=")]
    if fixed:  # a report's Reproduce line names its repetition: with run.repeats=N it would run once, silently
        raise ValueError(
            f"run.repeats={repeats} and {fixed[0]}: run.repeat picks one repetition (a report's Reproduce line "
            f"names it), run.repeats=N runs N of them; drop {fixed[0]}"
        )
    if not repeats.isdigit() or int(repeats) < 1:
        raise ValueError(f"run.repeats: must be a positive integer, got {repeats!r}")
    flags, overrides = [], []
    for i, arg in enumerate(out):  # a flag's value (`--cfg job`) stays with it
        is_value = i > 0 and out[i - 1] in _VALUE_FLAGS and not arg.startswith("-")
        (flags if arg.startswith("-") or is_value else overrides).append(arg)
    if not {"-m", "--multirun"} & set(flags):
        flags.append("-m")
    return flags + [f"run.repeat=range(0,{int(repeats)})"] + overrides


# Hydra's command-line flags that take a value (`python -m runner --help` lists them)
_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "--info", "--experimental-rerun"}  # fmt: skip


def dry_run(argv: list[str]) -> Plan:
    """The plan of the sweep that `argv` describes (its points, every problem, what a glob left out), found as
    `python -m runner -m argv` finds it (the same master composition, `plan` and checks), without running it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    overrides = [a for a in argv if not a.startswith("-")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            loader = ComposedOnce(GlobalHydra.instance().config_loader())
            try:
                master = loader.load_configuration("config", overrides, RunMode.MULTIRUN)
            except Exception as exc:
                return Plan([], [explain(exc, overrides)], [])
            return plan(loader, master)
    finally:
        GlobalHydra.instance().clear()


def validate_argv(argv: list[str]) -> list[str]:
    return dry_run(argv).errors
