"""The workflow through the SLURM profile against a real single-node SLURM (slurm-wlm 22.05).

Starts the cluster with ``scripts/slurm_local.sh`` (root and Debian's slurm-wlm + munge
needed; CI installs them), runs a small simulate -> dataset -> train -> evaluate config
through ``workflow/profiles/slurm`` with one injected failure, checks that the jobs went
through sbatch and that the outputs equal a local run, and stops the daemons it started.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("slurmctld") is None,
        reason="needs root and slurm-wlm (scripts/slurm_local.sh install)",
    ),
]


def _cluster_up() -> bool:
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return result.returncode == 0 and "idle" in result.stdout + "mixed"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm-state")
    env = dict(os.environ, SKYSCAN_SLURM_DIR=str(state))
    started = False
    if not _cluster_up():
        subprocess.run(["bash", str(SCRIPT), "start"], check=True, env=env, capture_output=True)
        started = True
    yield
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False)
        for name in ("slurmctld.pid", "slurmd.pid"):
            pid_file = state / name
            if pid_file.exists():
                pid = int(pid_file.read_text())
                assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{name} still runs"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _config(path: Path, results: Path) -> Path:
    config = {
        "seed": 11,
        "results": str(results),
        "simulate": {"n": 500, "shard_size": 250},
        "train": {"epochs": 2, "batch_size": 64, "accelerator": "cpu"},
        "tiles": {"grid": [1, 1], "size": 256},
        "search": {"order": 13, "workers": 0},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _snakemake(*args, cwd, env=None):
    exe = shutil.which("snakemake") or str(Path(os.sys.executable).parent / "snakemake")
    return subprocess.run(
        [exe, "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )


def test_workflow_through_slurm_profile(slurm, tmp_path):
    marker = tmp_path / "dataset-failed-once"
    env = dict(os.environ, SKYSCAN_INJECT_FAILURE=f"dataset:{marker}")
    cfg = _config(tmp_path / "slurm.yaml", tmp_path / "slurm-results")
    result = _snakemake(
        "--profile",
        str(ROOT / "workflow" / "profiles" / "slurm"),
        "--configfile",
        str(cfg),
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--set-threads",
        "train=2",
        "--latency-wait",
        "5",
        "--slurm-logdir",
        str(tmp_path / "slurm-logs"),
        cwd=tmp_path,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    results = tmp_path / "slurm-results"
    assert (results / "evaluation" / "metrics.json").is_file()

    # every job went through sbatch: the plugin keeps one log per job, named by its SLURM id,
    # under rule_<name>/[wildcards/]
    logs = sorted((tmp_path / "slurm-logs").rglob("*.log"))
    by_rule: dict[str, list[int]] = {}
    for log in logs:
        rule = next(
            p for p in log.relative_to(tmp_path / "slurm-logs").parts if p.startswith("rule_")
        )[5:]
        by_rule.setdefault(rule, []).append(int(log.stem))
    assert {
        "simulate",
        "build_dataset",
        "train",
        "evaluate",
        "make_tiles",
        "search",
        "skymaps",
    } <= set(by_rule), by_rule
    assert "stage_config" not in by_rule  # a local rule: run by Snakemake, never submitted
    assert len(by_rule["simulate"]) == 2  # one job per shard
    # the injected failure happened once and the resubmitted job completed
    assert marker.read_text() == "injected failure\n"
    assert len(by_rule["build_dataset"]) == 2
    # SLURM's own record of the training job: GPU partition, one GPU
    (train_id,) = by_rule["train"]
    record = subprocess.run(
        ["scontrol", "show", "job", str(train_id)], capture_output=True, text=True
    ).stdout
    if record:  # kept for MinJobAge seconds after the job ends
        assert "JobState=COMPLETED" in record and "Partition=gpu" in record
        assert "gres:gpu:1" in record or "gres/gpu=1" in record

    # the same config run locally gives the same simulations and datasets
    local_cfg = _config(tmp_path / "local.yaml", tmp_path / "local-results")
    local = _snakemake("--cores", "2", "--configfile", str(local_cfg), cwd=tmp_path)
    assert local.returncode == 0, (local.stdout + local.stderr)[-3000:]
    local_results = tmp_path / "local-results"
    for shard in sorted((results / "sims").glob("shard-*.parquet")):
        assert shard.read_bytes() == (local_results / "sims" / shard.name).read_bytes()
    for split in ("train", "test"):
        a = np.load(results / "datasets" / split / "images.npy")
        b = np.load(local_results / "datasets" / split / "images.npy")
        np.testing.assert_array_equal(a, b)
