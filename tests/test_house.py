"""The house rules that a reader of the code can check by eye, checked by machine.

- Rooms: runner/ holds three programs (run: the orchestrator; locust: code inside Locust's
  processes; report: the reporter) and the contracts they share (runner/*.py). Code inside Locust
  imports no other program's room, and the shared contracts import no room, so data flows one way:
  config -> run -> record -> report. The run room reaches into the report room only to write the report at
  the end of a sweep (REPORT_WRITERS).
- No import circle among the project's modules, of any kind: function-level imports count (they run
  too), and so do imports for type hints only (a circle of types is still two modules that cannot be
  read apart).
- No function longer than 80 lines outside the tests: a longer one is several steps that want names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO

PACKAGES = ("runner", "servers", "hydra_plugins")
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "reference" in path.relative_to(REPO).parts:  # third-party servers' launchers, not our code
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str], types: bool = False) -> set[str]:
    """The project modules `name` imports, wherever in the file; inside `if TYPE_CHECKING:` only with `types`."""
    tree = ast.parse(path.read_text())
    skip = set() if types else {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }  # fmt: skip
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_not_even_of_types():
    found = modules()
    assert cycles({name: imports(name, path, set(found), types=True) for name, path in found.items()}) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def room(module: str) -> str:
    """run, locust or report for a module in runner/'s subpackages, contracts for runner/*.py, else its package."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "run"  # our sweeper: the orchestrator's, outside runner/ only because Hydra instantiates plugins
        # from the hydra_plugins package alone (hydra.core.plugins: "not the hydra_plugins package")
    if parts[0] != "runner":
        return parts[0]
    if module == "runner.__main__":
        return "run"  # `python -m runner`: the orchestrator's entry point
    return parts[1] if len(parts) > 2 or parts[1:] in (["run"], ["locust"], ["report"]) else "contracts"


@pytest.mark.parametrize(
    "inside, never",
    [
        ("locust", {"run", "report"}),  # Locust's processes get their options on the command line
        ("contracts", {"run", "locust", "report"}),  # a contract belongs to no program
        ("servers", {"run", "locust", "report", "contracts"}),  # a server under test knows nothing of the runner
    ],
)
def test_rooms_import_only_what_they_may(graph, inside, never):
    crossing = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if room(module) == inside
        for target in targets
        if room(target) in never and target.split(".")[0] == "runner"
    )
    assert crossing == []


# The run room's only arrows into the report room: writing the report at the end of a sweep (the sweep's callback,
# and the command line's `report` and single-run paths). The exit status reads the record (runner/record.py), not
# the reporter.
REPORT_WRITERS = {
    ("runner.run.callbacks", "runner.report.document"),
    ("runner.run.cli", "runner.report.document"),
}


def test_the_run_room_imports_the_report_room_only_to_write_the_report(graph):
    crossing = {
        (module, target)
        for module, targets in graph.items()
        if room(module) == "run"
        for target in targets
        if room(target) == "report"
    }
    assert crossing - REPORT_WRITERS == set()  # a new arrow from run/ to report/: go through runner/record.py
    assert REPORT_WRITERS <= crossing  # an allowed arrow gone: take it off the list


def test_no_function_longer_than_80_lines():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_nothing_imports_hydras_private_modules():
    """hydra._internal changes without notice between Hydra releases: the sweep goes through Hydra's
    public plugin, config loader and override parser interfaces only."""
    private = sorted(
        f"{path.relative_to(REPO)}: {ast.unparse(node)}"
        for path in [*modules().values(), *(REPO / "tests").rglob("*.py")]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(name.startswith("hydra._internal") for name in _imported(node))
    )
    assert private == []


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [alias.name for alias in node.names]


def test_code_inside_locust_does_not_load_hydra(graph):
    """runner.config registers the schema with Hydra: importing it costs each Locust process 190 ms of
    its start (Hydra and OmegaConf), so the locust room reads the plain schema (runner/schema.py)."""
    reached, todo = set(), [m for m in graph if room(m) == "locust"]
    while todo:
        module = todo.pop()
        for target in graph.get(module, ()):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert "runner.config" not in reached
