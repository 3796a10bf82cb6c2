"""result.json's contract, docs/result.schema.json: every result the test suite writes follows it (checked at the
end of the session, tests/conftest.py), and a field the schema does not know is refused, so a new field is added
to the schema first -- the file people who build on the results (dashboards, notebooks) read."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.result_schema import SCHEMA_FILE, problems

from runner.result import SCHEMA_VERSION, Metrics, RunResult, write_result


def test_the_schema_names_every_field_of_the_record_and_no_other():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(RunResult)}
    assert set(schema["properties"]["metrics"]["properties"]) == {f.name for f in dataclasses.fields(Metrics)}
    assert schema["properties"]["schema_version"]["maximum"] == SCHEMA_VERSION


# the deliberately broken records below are not named result.json: the session's own check would refuse them


def test_a_result_follows_the_schema_and_a_field_it_does_not_know_is_refused(tmp_path):
    write_result(RunResult(outcome="ok", metrics=Metrics(requests=10, failures=0, rps=5.0)), tmp_path)
    assert problems(tmp_path / "result.json") == []
    data = json.loads((tmp_path / "result.json").read_text())
    data["metrics"]["p999_ms"] = 1.0  # a field added to the record without the schema
    (tmp_path / "result.json").unlink()
    (tmp_path / "record.json").write_text(json.dumps(data))
    assert problems(tmp_path / "record.json") == [
        "metrics: Additional properties are not allowed ('p999_ms' was unexpected)"
    ]


@pytest.mark.parametrize("bad,expected", [({"outcome": "fine"}, "outcome: 'fine' is not one of"),
                                          ({"flags": "errors"}, "flags: 'errors' is not of type 'array'")])
def test_a_wrong_value_is_refused(tmp_path, bad, expected):
    (tmp_path / "record.json").write_text(json.dumps(RunResult(outcome="ok").to_dict() | bad))
    assert any(p.startswith(expected) for p in problems(tmp_path / "record.json")), problems(tmp_path / "record.json")
