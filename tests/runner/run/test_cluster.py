"""Cluster sweeps through hydra-submitit-launcher (the `cluster` extra): its local executor runs a
real two-point sweep end to end, and our SLURM launcher config turns into the sbatch script the
README promises (no SLURM here: submitit writes the script without submitting it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from support.runs import compose

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[cluster]'")



@pytest.mark.slow
def test_the_submitit_local_launcher_runs_a_sweep_with_one_consolidated_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "hydra/launcher=submitit_local",
         "server=select,thread", "load=smoke", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in proc.stdout  # the jobs went through submitit
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # one submitit job per point
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert sorted(r["config"]["server"]["name"] for r in results) == ["select", "thread"]
    assert all(r["outcome"] == "ok" for r in results), [r["detail"] for r in results]
    report = (sweep / "report.md").read_text()  # written by our callback, in the sweep directory
    rows = [line for line in report.splitlines() if line.startswith("|") and "| ok" in line]
    same = "The same table as Table 1" in report  # Table 2 says so instead of repeating the same rows
    assert len(rows) == (2 if same else 4), report  # two runs in each ranking
    assert ".submitit" not in report  # submitit's own folders are not runs


def _launcher(*overrides: str):
    cfg = compose(*overrides, hydra=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)


def test_the_slurm_config_makes_one_exclusive_node_per_sweep_point(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = _launcher("hydra/launcher=slurm", "hydra.launcher.partition=compute")
    assert params["_target_"].endswith("SlurmLauncher")
    assert params["cpus_per_task"] >= 2  # pinning: server on one core, Locust on another
    # as SlurmLauncher.launch passes them to submitit, which refuses any key it does not know
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    init = {"folder": tmp_path, "slurm_max_num_timeout": params.pop("max_num_timeout")}
    executor = submitit.AutoExecutor(cluster="slurm", **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "submitit_folder", "name"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skip})
    script = executor._executor._make_submission_file_text("python -m runner", "uid")
    for line in ["--partition=compute", "--cpus-per-task=2", "--exclusive", "--time=20", "--nodes=1", "--mem=4GB"]:
        assert f"#SBATCH {line}" in script, script
