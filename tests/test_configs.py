"""Every config option composes and validates; bad ones are refused before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from support.runs import compose

from runner.config import CONF_DIR, available_choices, own_servers
from runner.run import server as server_mod
from runner.run.server import find_program, no_program
from runner.run.sweep import check, dry_run, expand_repeats, validate_argv
from runner.schema import parse_duration

GROUPS = ["server", "load", "workload"]


@pytest.fixture
def compose_cfg():
    yield compose
    GlobalHydra.instance().clear()


# an option that needs more than its file to run: what it is given here
COMPLETIONS = {("server", "external"): ["server.command='{python} -m http.server {port} --bind {host}'"]}
SERVERS = available_choices("server")
CHOICES = ", ".join(SERVERS)


def _program(group: str, option: str) -> str | None:
    """The program a server option's command runs when it is not our Python (nginx), else None."""
    import yaml

    command = (yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text()) or {}).get("command") or ""
    program = command.split()[0] if group == "server" and command.split() else None
    return None if program is None or program.startswith("{") else program


def _option(group: str, option: str):
    program = _program(group, option)
    return pytest.param(group, option, marks=[pytest.mark.needs(program)] if program else [], id=f"{group}-{option}")


@pytest.mark.parametrize("group,option", [_option(g, o) for g in GROUPS for o in available_choices(g)])
def test_every_option_composes_and_passes_checks(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}", *COMPLETIONS.get((group, option), []))
    assert cfg[group].name == option  # the file's name and its `name:` key agree
    assert check(cfg) == []


def test_the_four_classic_servers_exist():
    assert {"single", "thread", "process", "select"} <= set(own_servers())


def test_every_server_config_without_a_command_has_a_module():
    import importlib.util

    assert own_servers(), "no server of our own found"
    for name in own_servers():
        assert importlib.util.find_spec(f"servers.{name}") is not None, name


def test_reference_servers_are_external_and_marked(compose_cfg):
    for name in ["uvicorn", "nginx"]:
        server = compose_cfg(f"server={name}").server
        assert server.reference is True and server.command
    assert not set(own_servers()) & {"uvicorn", "nginx", "external"}
    assert all(compose_cfg(f"server={name}").server.reference is False for name in own_servers())


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["server=external"], "server.command: an external server needs a command template with {port}"),
        (["server=external", "server.command=ext"], "server.command: 'ext' has no {port}"),
        (["server=external", "server.command='ext {prot}'"], "server.command: unknown placeholder {prot}; known:"),
        (["server=external", "server.command='ext \"{port}'"], "server.command: cannot split"),
        (["server=external", "server.name='my server'", "server.command='x {port}'"], "server.name: 'my server'"),
        (["server=external", "server.command='x {port}'", "server.workloads=[hello,no]"], "unknown workload 'no'"),
        (["server=nginx", "workload=io"], "workload=io: server nginx can do only hello (server.workloads)"),
        (["server=select", "server.name=bogus"], "server.name: unknown server 'bogus'; valid choices:"),
        (["server=select", "+server.files={x: y}"], "server.files: only an external server"),
        (["-m", "server=glob(*)"], "[server=external] server.command: an external server needs a command"),
        # a command on one of ours would run the user's server under our server's name, silently
        (["-m", "server=select,external", "server.command='x {port}'"],
         "[server=select server.command='x {port}'] server.command: the command line gives server=select a command"),
        (["server=uvicorn", "server.command='x {port}'"], "server.command: the command line gives server=uvicorn"),
        (["server=external", "server.name=thread", "server.command='x {port}'"],
         "server.name: 'thread' is this project's servers/thread.py; give your server a name of its own"),
        (["server=external", "server.command='x {port}'", "server.ready_probe=health"],
         "server.ready_probe: 'health' is not a path (/health) or tcp (a connect only)"),
    ],
)
def test_bad_server_config_is_refused(overrides, expected):
    errors = validate_argv(overrides)
    assert any(expected in e for e in errors), errors


def test_a_glob_of_every_server_is_every_server_this_machine_can_run():
    """`server='glob(*,exclude=[external,remote])'` and experiment=models mean every server there is: one whose
    program is not installed here is left out, said, and the rest run (on a bare machine: nginx)."""
    everything = ["-m", "server=glob(*,exclude=[external,remote])", "load=smoke"]
    for argv in (everything, ["-m", "experiment=models"]):
        plan = dry_run(argv)
        assert plan.errors == []
        servers = {point[0] for point in plan.points} if argv is everything else None
        missing = {name for name in ("nginx",) if find_program(name) is None}
        assert plan.left_out == [f"server={name}: {no_program(name)}" for name in sorted(missing)]
        if servers is not None:
            assert servers == {f"server={name}" for name in SERVERS if name not in {"external", "remote", *missing}}


def test_on_a_machine_without_nginx_the_glob_leaves_it_out_and_naming_it_is_refused(monkeypatch, tmp_path):
    """What a user without Debian's nginx gets, wherever this runs: nothing on PATH or in the sbin directories."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(server_mod, "SBIN", ())
    plan = dry_run(["-m", "experiment=models"])
    assert plan.errors == [] and plan.left_out == ["server=nginx: cannot run 'nginx': no such program on PATH"]
    assert "server=nginx" not in {point[0] for point in plan.points} and len(plan.points) == len(SERVERS) - 3
    assert validate_argv(["-m", "server=select,nginx"]) == [
        "[server=nginx] server.command: cannot run 'nginx': no such program on PATH"
    ]
    assert dry_run(["-m", "server=glob(nginx)"]).errors == [
        "nothing left to run: every point was left out (server=nginx: cannot run 'nginx': no such program on PATH)"
    ]


def test_default_load_is_the_original_assignment_profile(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.load.users, cfg.load.spawn_rate) == (100, 100)
    assert cfg.run.host == "127.0.0.1"


@pytest.mark.parametrize(
    "text,seconds", [("10s", 10), ("90", 90), ("1m30s", 90), ("2m", 120), ("1h", 3600), ("0.5s", 0.5)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "0s", "1m-3s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["server=bogus"], f"server=bogus: no such option; valid choices: {CHOICES}"),
        (["load.users=0"], "load.users: must be > 0, got 0"),
        (["load.users=-1"], "load.users: must be > 0, got -1"),
        (["load.spawn_rate=0"], "load.spawn_rate: must be > 0"),
        (["load.run_time=soon"], "load.run_time: cannot parse 'soon'"),
        (["load.users=many"], "load.users"),
        (["load.user_class=slow"], "user_class"),
        (["server.keepaliv=false"], "keepaliv"),
        (["run.host=10.0.0.1"], "run.host: '10.0.0.1' is not a loopback address"),
        (["load.wait_min_s=2", "load.wait_max_s=1"], "load.wait_min_s/wait_max_s"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(overrides, expected):
    errors = validate_argv(overrides)
    assert any(expected in e for e in errors), errors


def test_remote_host_allowed_only_with_the_switch():
    assert validate_argv(["run.host=10.0.0.1", "run.allow_remote=true"]) == []
    assert validate_argv(["run.host=::1"]) == []


def test_every_sweep_point_is_checked_before_the_first_runs():
    errors = validate_argv(["-m", "server=single,bogus", "load.users=5,-5"])
    assert any("server=bogus" in e for e in errors)
    assert any("load.users: must be > 0, got -5" in e for e in errors)
    assert validate_argv(["-m", "server=single,thread,process,select", "load=smoke"]) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=60)


def test_cli_exits_2_and_starts_nothing(tmp_path):
    proc = _cli("-m", "server=single,bogus", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2, proc.stderr
    assert f"server=bogus: no such option; valid choices: {CHOICES}" in proc.stderr
    assert not (tmp_path / "sweep").exists()  # not even the sweep directory


@pytest.mark.parametrize("experiment", available_choices("experiment"))
def test_every_experiment_composes_and_names_its_command(compose_cfg, experiment):
    cfg = compose_cfg(f"experiment={experiment}")
    assert check(cfg) == []
    header = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    assert f"python -m runner -m experiment={experiment}" in header


def test_the_seed_experiment_closes_every_connection(compose_cfg):
    for server in ["single", "thread", "process", "select"]:
        assert compose_cfg("experiment=seed", f"server={server}").server.keepalive is False


# --- issue 13: mistakes a new user makes, refused before anything starts -------------------------


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["load.user=5"], "load.user: no such key (did you mean load.users?"),
        (["+load.user=5"], "load.user: no such key (did you mean load.users?"),  # Hydra's own hint for the typo
        (["+foo=1"], "foo: no such key (the config has server, load, workload, run)"),
        (["+run.validity.bogus=1"], "run.validity.bogus: no such key"),
    ],
)
def test_a_key_not_in_the_schema_is_refused_with_the_plus_form_too(overrides, expected):
    errors = validate_argv(overrides)
    assert any(e.startswith(expected) for e in errors), errors
    assert not any("+load.user" in e for e in errors)  # never the advice to add the typo


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["load.run_time=1.5s"], "load.run_time: Locust takes whole seconds (e.g. 2s, 1m30s), got '1.5s'"),
        (["load.run_time=0.5"], "load.run_time: Locust takes whole seconds"),
        (["server=prefork", "server.options.workers=0"], "server.options: servers.prefork says argument --workers: "),
        (["+server.options.bogus=1"], "server.options: servers.select says unrecognized arguments: --bogus 1"),
        (["workload=cpu", "workload.params.cpu_us=-1"], "workload.params.cpu_us: must be a number >= 0, got -1"),
        (["workload=size", "workload.params.size_bytes=-1"], "workload.params.size_bytes: must be a number >= 0"),
        (["server=external", "server.command='no-such-program-here --port {port}'"],
         "server.command: cannot run 'no-such-program-here': no such program"),
        (["workload.params.cpu_us=5"], "workload.params.cpu_us: not set in this config; to add it, +workload.params"),
    ],
)  # fmt: skip
def test_values_that_failed_only_at_run_time_are_refused_before(overrides, expected):
    errors = validate_argv(overrides)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    "overrides",
    [
        ["server=prefork", "server.options.workers=2", "server.options.reuse_port=true"],
        ["+server.options.max_connections=50"],
        ["workload=cpu", "workload.params.cpu_us=0"],
        ["server=external", "server.command='{python} -m http.server {port}'"],
        ["server=external", "server.command='{run_dir}/serve {port}'", "+server.files={serve: x}"],  # written first
        ["load.run_time=1m30s"],
    ],
)
def test_what_the_new_checks_accept(overrides):
    assert validate_argv(overrides) == []


@pytest.mark.parametrize(
    "override,expected",
    [
        ("load.user_class=foo", "load.user_class: 'foo' is not one of loop, fast, http"),
        ("server.keepalive=maybe", "server.keepalive: 'maybe' is not true or false"),
        ("load.users=abc", "load.users: 'abc' is not a whole number"),
        ("load.users=5.5", "load.users: 5.5 is not a whole number"),
        ("load.expect_workers=x", "load.expect_workers: 'x' is not a whole number or null"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_valid_values(override, expected):
    assert validate_argv([override]) == [expected]


def test_a_ramp_up_longer_than_the_run_is_refused():
    errors = validate_argv(["-m", "server=select", "load.users=1000", "load.run_time=4s"])
    assert errors == [
        "load.run_time: 4s leaves no steady window: Locust starts the last of 1000 users at 100/s after 9 s, "
        "then load.warmup_s=1; give load.run_time=11s or more, or a higher load.spawn_rate"
    ]
    assert validate_argv(["load.users=1000", "load.run_time=11s"]) == []
    assert validate_argv(["load.users=400", "load.run_time=5s"]) == []  # all started at 3 s, measured 4-5 s


@pytest.mark.parametrize("spawn,expected", [((5, 5), 0), ((100, 100), 0), ((1000, 100), 9), ((400, 100), 3),
                                            ((10, 0.5), 18), ((7, 2.5), 2.4)])  # fmt: skip
def test_spawn_s_follows_locusts_dispatcher(spawn, expected):
    from runner.schema import spawn_s

    assert spawn_s(*spawn) == pytest.approx(expected)


def test_run_repeat_with_run_repeats_is_refused(tmp_path):
    """A report's Reproduce line says run.repeat=0; adding run.repeats=3 to it ran once, silently."""
    proc = _cli("run.repeat=0", "run.repeats=3", f"hydra.run.dir={tmp_path}/r")
    assert proc.returncode == 2, proc.stderr
    assert "run.repeats=3 and run.repeat=0: run.repeat picks one repetition" in proc.stderr
    assert not (tmp_path / "r").exists()


def _readme_external_line() -> str:
    readme = (CONF_DIR.parent / "README.md").read_text()
    start = "python -m runner server=external"
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith(start)]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_readmes_external_server_line_works_when_pasted_into_a_shell(tmp_path):
    """The README's exact line, through bash and argv: the command survives Hydra whole, braces and all."""
    line = _readme_external_line()
    (tmp_path / "my_server.py").write_text("import http.server, sys\nhttp.server.test(port=int(sys.argv[1]))\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `python`: ours

    def shell(extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"{line} {extra}"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    shown = shell("--cfg job")
    assert shown.returncode == 0, shown.stderr
    assert "command: python my_server.py {port}" in shown.stdout
    refused = shell(f"load.users=0 hydra.run.dir={tmp_path}/out")  # stops at validation, after the command passed it
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[1:] == ["  load.users: must be > 0, got 0"], refused.stderr


def test_an_unquoted_brace_says_how_to_quote_it():
    assert validate_argv(["server=external", "server.command=./my-server --port {port}"]) == [
        "server.command: Hydra reads braces as its own syntax; quote the value for it: "
        "'server.command=\"./my-server --port {port}\"'"
    ]


def test_run_repeats_keeps_a_flags_value_with_it():
    assert expand_repeats(["run.repeats=2", "--cfg", "job", "server=select"]) == [
        "--cfg", "job", "-m", "run.repeat=range(0,2)", "server=select"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["load.arrival_rate=0"], "load.arrival_rate: requests/s, must be > 0 (or null: the closed loop), got 0"),
        (["load.arrival_rate=-5"], "load.arrival_rate: requests/s, must be > 0"),
        (["load.arrival_rate=50", "load.user_class=fast"], "an open model needs load.user_class=loop"),
        (["load.arrival_rate=50", "load=capacity"], "load.arrival_rate: a capacity search sets the load itself"),
        (["load.arrival_rate=50", "load=capacity", "load.capacity.by=rate"], "a capacity search sets the load itself"),
        (["load=capacity", "load.capacity.by=rate", "load.user_class=fast"], "by=rate: an open model needs"),
        (["load=capacity", "load.capacity.by=rate", "load.wait_max_s=1"], "by=rate: an open model has no think time"),
        (["load=capacity", "load.capacity.by=bytes"], "load.capacity.by: one of users, rate, got 'bytes'"),
        (["load=capacity", "load.capacity.by=rate", "load.capacity.rate_growth=1"], "rate_growth: must be > 1"),
        (["load=capacity", "load.capacity.by=rate", "load.capacity.max_rate=10"], "max_rate: must be >= start_rate"),
        (["load.arrival_rate=50", "load=distributed", "load.users=1"],
         "load.users: the open model's connection pool, split over 2 Locust processes or workers"),
        (["load.arrival_rate=50", "load.wait_max_s=1"], "an open model has no think time"),
        (["load.arrival_rate=50", "load.processes=4", "load.users=2"], "load.users: the open model's connection pool"),
        (["load.arrival=bursty"], "load.arrival: one of constant, poisson, got 'bursty'"),
        (["load.arrival_rate=fast"], "load.arrival_rate: 'fast' is not a number or null"),
    ],
)  # fmt: skip
def test_an_arrival_rate_is_refused_where_an_open_model_cannot_run(overrides, expected):
    errors = validate_argv(overrides)
    assert any(expected in e for e in errors), errors


def test_arrival_rates_sweep_like_any_key():
    assert validate_argv(["-m", "server=single,select", "load.arrival_rate=50,150", "load.arrival=poisson"]) == []


def test_a_capacity_search_by_rate_is_accepted():
    assert validate_argv(["-m", "server=single,select", "load=capacity", "load.capacity.by=rate", "workload=io"]) == []
    assert validate_argv(["load=distributed", "load.arrival_rate=500"]) == []  # each worker keeps its share


def test_an_arrival_rate_is_split_over_locust_processes(compose_cfg, tmp_path):
    from runner.run.load import locust_argv, told

    split = told(compose_cfg("load.arrival_rate=150", "load.users=10"), tmp_path, 2)
    argv = locust_argv(split, "::1", 1, tmp_path, processes=2)
    assert argv[argv.index("--arrival-rate") + 1] == "150.0" and argv[argv.index("--rate-shares") + 1] == "2"
    assert argv[argv.index("--arrival") + 1] == "constant" and split.process_rate() == 75
    closed = told(compose_cfg(), tmp_path, 1)
    assert "--arrival-rate" not in locust_argv(closed, "::1", 1, tmp_path) and closed.process_rate() is None


def test_a_sweep_point_is_composed_once_and_launched_as_it_was_checked():
    """The sweeper composes and checks every point; the launcher then gets that very config, not a
    second composition (Hydra's basic sweeper composed each point twice, the runner twice more)."""
    from hydra.types import RunMode

    from runner.run.sweep import ComposedOnce, plan

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = ComposedOnce(GlobalHydra.instance().config_loader())
        master = loader.load_configuration("config", ["server=select,thread", "load=smoke"], RunMode.MULTIRUN)
        points, errors, left_out = plan(loader, master)
        assert errors == [] == left_out and points == [["server=select", "load=smoke"], ["server=thread", "load=smoke"]]
        checked = loader.ready[("server=thread", "load=smoke")]
        assert loader.load_sweep_config(master, points[1]) is checked
        assert loader.load_sweep_config(master, points[1]) is not checked  # asked again: composed again
        assert loader.load_sweep_config(master, points[1]).server.name == "thread"
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("group", GROUPS)
def test_a_config_file_names_only_what_differs_from_the_schema(group):
    """One home per default: the schema (runner/config.py). A file that restated one would keep the
    old value when the schema's changes; load configs inherit load/default and change what they must."""
    import dataclasses

    import yaml

    from runner.config import Config

    schema = {f.name: f.default for f in dataclasses.fields(typing.get_type_hints(Config)[group])}
    restated = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        text = yaml.safe_load(path.read_text()) or {}
        restated += [f"{path.name}: {key}: {value}" for key, value in text.items()
                     if schema.get(key, dataclasses.MISSING) is not dataclasses.MISSING
                     and value == _plain(schema[key])]  # fmt: skip
        if group == "load" and path.stem != "default":
            assert "default" in text.get("defaults", []), f"{path.name} does not inherit load/default"
    assert restated == []


def _plain(value):
    return value.value if hasattr(value, "value") else value
