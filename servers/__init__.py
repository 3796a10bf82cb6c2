"""The systems under test: each concurrency model is a module here, run as `python -m servers.<name>`;
the other modules are what the models share."""

from pathlib import Path

SHARED = frozenset({"__init__", "http", "base", "app", "workload", "connection", "loop"})


def models() -> list[str]:
    """Every model, by module name: each module here but the shared ones (a new model joins by its file)."""
    return sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in SHARED)
