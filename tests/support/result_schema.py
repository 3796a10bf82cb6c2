"""docs/result.schema.json, read as jsonschema reads it: `problems` says what is wrong with a result.json
(tests/conftest.py checks every one a session wrote; tests/runner/test_result_schema.py the schema itself)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from runner.result import SCHEMA_VERSION
from support import REPO

SCHEMA_FILE = REPO / "docs" / "result.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(path: Path) -> list[str]:
    """What is wrong with the result.json at `path` (a current-version one: older and corrupt ones are the
    reader's business, tested on their own), [] when it follows the schema."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        return []
    errors = validator().iter_errors(data)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}" for e in errors]
