"""Every config option composes and validates; bad ones are refused before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner.config import CONF_DIR, available_choices, check, own_servers, parse_duration, validate_argv

GROUPS = ["server", "load", "workload"]


@pytest.fixture
def compose_cfg():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides))
    GlobalHydra.instance().clear()


# an option that needs more than its file to run: what it is given here
COMPLETIONS = {("server", "external"): ["server.command='{python} -m http.server {port} --bind {host}'"]}
SERVERS = available_choices("server")
CHOICES = ", ".join(SERVERS)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in available_choices(g)], ids=lambda x: str(x))
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
    ],
)
def test_bad_server_config_is_refused(overrides, expected):
    errors = validate_argv(overrides)
    assert any(expected in e for e in errors), errors


def test_a_glob_of_every_server_but_external_is_valid():
    assert validate_argv(["-m", "server=glob(*,exclude=[external,remote])", "load=smoke"]) == []
    assert validate_argv(["-m", "experiment=models"]) == []


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


def test_cli_exits_2_and_starts_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "server=single,bogus", f"hydra.sweep.dir={tmp_path}/sweep"],
        capture_output=True,
        text=True,
        timeout=60,
    )
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
