"""result.json's contract, docs/result.schema.json: every result the test suite writes follows it (checked at the
end of the session, tests/conftest.py), and a field the schema does not know is refused, so a new field is added
to the schema first -- the file people who build on the results (dashboards, notebooks) read. The schema describes
the current version; an older file is converted as it is read (runner/result.py upgrade), and reads as the same run
as its current-version twin (tests/data/results: one run written by versions 1, 2 and 3)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support import REPO
from support.result_schema import SCHEMA_FILE, problems

from runner.record import load_run
from runner.report.columns import values
from runner.result import LOAD_FACTS, SCHEMA_VERSION, SERVER_FACTS, Metrics, RunResult, read_result, write_result

VERSIONS = REPO / "tests" / "data" / "results"  # v1/, v2/, v3/: one run as each version wrote it


def test_the_schema_names_every_field_of_the_record_and_no_other():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(RunResult)}
    assert set(schema["properties"]["metrics"]["properties"]) == {f.name for f in dataclasses.fields(Metrics)}
    assert set(schema["properties"]["server"]["properties"]) == set(SERVER_FACTS)
    assert set(schema["properties"]["load"]["properties"]) == set(LOAD_FACTS)
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_a_fact_has_one_place_no_section_holds_a_config_key():
    """Version 3: the config is only in `config`; the sections' facts are named unlike any key of the config's
    section of the same name, so nothing can be read from the wrong one."""
    from omegaconf import OmegaConf

    from runner.config import to_container
    from runner.schema import Config, LoadConfig, ServerConfig, WorkloadConfig

    cfg = OmegaConf.merge(OmegaConf.structured(Config), {"server": ServerConfig(name="select"),
                                                         "load": LoadConfig(name="smoke"),
                                                         "workload": WorkloadConfig(name="hello")})  # fmt: skip
    config = to_container(cfg)
    assert set(SERVER_FACTS) & set(config["server"]) == set() and set(LOAD_FACTS) & set(config["load"]) == set()


def test_versions_1_and_2_read_as_the_same_run_as_version_3():
    """The one run of tests/data/results, as each version wrote it: an older file is converted as it is read (its
    sections' settings back into the config, its facts under their current names), so the record and every column
    of the report read the same from each."""
    assert problems(VERSIONS / "v3" / "result.json") == [] and read_result(VERSIONS / "v3" / "result.json")
    runs = {version: load_run(VERSIONS / version, VERSIONS) for version in ("v1", "v2", "v3")}
    assert [json.loads((VERSIONS / v / "result.json").read_text())["schema_version"] for v in runs] == [1, 2, 3]

    def seen(run):
        row = values(run)
        row.pop("run")  # the directory's name
        return (run.outcome, run.server, run.config, run.section("server"), run.section("load"), run.metrics,
                run.rerun, row)  # fmt: skip

    assert seen(runs["v1"]) == seen(runs["v3"])
    assert seen(runs["v2"]) == seen(runs["v3"])
    assert runs["v3"].section("server")["listen_port"] == 40123 and runs["v3"].config["server"]["port"] == 0
    assert runs["v3"].known("load.users") == 20 and runs["v3"].section("load")["processes_run"] == 1


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
