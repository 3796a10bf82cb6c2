"""An installed stressbench stands without its checkout: `pip install .` or `pipx install .` carries every
package and every config, and the command finds them where it was installed.

The wheel is built the way pip builds it for an install, from a copy of the tracked files (so the
checkout gets no build/ directory), then unpacked and run with `python -S`: without the site module no
.pth file is read, so the checkout's own editable install cannot answer the imports, and only the
unpacked wheel and the dependencies' site-packages are on the path. What once went wrong: the wheel
listed `runner` but not `runner.run`, and conf/ stayed behind, so `stressbench` failed with
ModuleNotFoundError on any machine that installed it without -e.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from support import REPO


def tracked() -> list[str]:
    """The files a clone gets (present in this work tree), relative to the root."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"git cannot list the tracked files here: {exc}")
    return [p for p in listed.stdout.decode().split("\0") if p and (REPO / p).is_file()]


def _builds_wheels() -> bool:
    """setuptools >= 70.1 builds a wheel by itself (older ones need the `wheel` package)."""
    try:
        major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for relative in tracked():
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, src / relative)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(src)]
    if _builds_wheels():  # the setuptools here will do; else pip fetches one, as for `pip install .`
        build.insert(-4, "--no-build-isolation")
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (built,) = tmp.glob("stressbench-*.whl")
    return built


def test_the_wheel_carries_every_module_and_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = tracked()
    modules = {p for p in files if p.endswith(".py") and p.split("/")[0] in ("runner", "servers", "hydra_plugins")}
    configs = {"runner/" + p for p in files if p.startswith("conf/") and p.endswith(".yaml")}
    assert configs and modules
    assert not (modules | configs) - names, sorted((modules | configs) - names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "stressbench = runner.run.cli:command" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_command_finds_its_configs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    path = ":".join([str(installed), *site.getsitepackages()])
    # Hydra's --cfg job composes the config and prints it: the whole command line, nothing started
    command = [sys.executable, "-S", "-m", "runner", "--cfg", "job", "server=thread", "load=smoke"]
    out = subprocess.run(
        command, cwd=tmp_path, env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: thread" in out.stdout and "run_time: 2s" in out.stdout, out.stdout
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import runner.config as c; print(c.CONF_DIR)"],
        cwd=tmp_path, env={"PYTHONPATH": path}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip() == str(installed / "runner" / "conf"), where.stderr
