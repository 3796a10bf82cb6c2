"""Every point of a sweep composed and checked before the first job starts.

`python -m runner -m server=single,bogus` must be refused with exit 2 before `single` runs, so the
command line is expanded into its points here (Hydra's own override grammar), each point composed
with Hydra's Compose API and checked: the schema's checks (runner/config.py) plus those that need
the orchestrator's parts (a server's program and options, a remote target, distributed workers).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from runner import config
from runner.config import CONF_DIR, available_choices, no_such_key, schema_field, valid_values
from runner.run import distributed, remote, server


def check(cfg: DictConfig | config.Config) -> list[str]:
    """Everything wrong with one composed config, one message per problem."""
    return server.check(cfg) + config.check(cfg) + distributed.check(cfg) + remote.check(cfg)


def _format_hydra_error(exc: Exception) -> str:
    """Hydra's composition errors in the runner's words: the key, why, and what it takes."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = str(exc.missing_cfg_file).rpartition("/")
        if group:
            return f"{group}={choice}: no such option; valid choices: {', '.join(available_choices(group))}"
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


# Hydra's command-line flags that take a value (hydra/_internal/utils.py get_args_parser)
_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "--info", "--experimental-rerun"}  # fmt: skip


class _GroupOptions:
    """The one part of Hydra's ConfigLoader that expanding `server=glob(*,exclude=[external,remote])` needs."""

    @staticmethod
    def get_group_options(group: str, *args: Any, **kwargs: Any) -> list[str]:
        return available_choices(group)


def validate_argv(argv: list[str]) -> list[str]:
    """Compose and check every sweep point that `argv` (Hydra command-line overrides) describes."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("~+").startswith("hydra.")]
    try:
        parsed = OverridesParser.create(config_loader=_GroupOptions()).parse_overrides(overrides)  # type: ignore[arg-type]
    except Exception as exc:  # hydra's OverrideParseException and friends
        braces = [a for a in overrides if "{" in a and "=" in a and a.partition("=")[2][:1] not in "'\"[{"]
        hint = [f"{a.partition('=')[0]}: Hydra reads braces as its own syntax; quote the value for it: "
                f"'{a.partition('=')[0]}=\"{a.partition('=')[2]}\"'" for a in braces]  # fmt: skip
        return hint or [_format_hydra_error(exc)]
    points = [p for batch in BasicSweeper.split_arguments(parsed, None) for p in batch]
    errors: list[str] = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for point in points:
            try:
                cfg = compose(config_name="config", overrides=list(point))
            except Exception as exc:
                problems = [_format_hydra_error(exc)]
            else:
                problems = check(cfg)
            prefix = f"[{' '.join(point)}] " if len(points) > 1 else ""
            errors += [prefix + p for p in problems if prefix + p not in errors]
    GlobalHydra.instance().clear()
    return errors
