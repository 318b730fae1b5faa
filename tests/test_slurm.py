"""The workflow through the SLURM profile against a real single-node SLURM (slurm-wlm 22.05).

Starts the cluster with ``scripts/slurm_local.sh`` (root and Debian's slurm-wlm + munge
needed; CI installs them), runs a small simulate -> dataset -> train -> evaluate config
through ``workflow/profiles/slurm`` with one injected failure, checks that the jobs went
through sbatch and that the outputs equal a local run, and stops the daemons it started.
"""

import os
import shutil
import subprocess
import sys
import time
import uuid
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
    states = result.stdout.split()
    return result.returncode == 0 and ("idle" in states or "mixed" in states)


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
        "lenses": {"tiles": {"grid": [1, 1], "size": 256}},
        "search": {"partition_rows": 20, "workers": 0},
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


# ---- the search's Dask workers as SLURM jobs (skyscan.search.cluster) -----------------------

TINY_TILES = {
    "lenses": {
        "tiles": {
            "grid": [1, 1],
            "size": 256,
            "densities": {"field": 20, "star": 3, "deflector": 25, "lens": 20},
        }
    }
}


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    """One 256-pixel tile set and an exported, untrained ``fast`` model (scores are what
    they are: the test compares two runs, not the model's quality)."""
    import torch
    from astropy.io import fits

    from skyscan.cases.lenses.tiles import make_tiles
    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.config import load_config
    from skyscan.data.preprocess import make_spec
    from skyscan.models import get_model
    from skyscan.models.card import ModelCard
    from skyscan.search.tile_index import build_tile_index
    from skyscan.train.export import export_model

    root = tmp_path_factory.mktemp("slurm-search")
    make_tiles(load_config(None, TINY_TILES), root / "tiles")
    sigma = [fits.getheader(root / "tiles" / f"tile-00-00_{b}.fits")["SKYSIG"] for b in "gri"]
    torch.manual_seed(0)
    card = ModelCard(
        name="slurm-test",
        model="fast",
        case="lenses",
        bands=["g", "r", "i"],
        input_shape=[3, 45, 45],
        pixel_scale=0.2,
        preprocessing=make_spec("gri", sigma, 250, [3, 45, 45]),
    )
    net = get_model("fast", in_channels=3)
    export_model(net, torch.randn(8, 3, 45, 45), root / "model", card)
    # small HATS partitions: several Dask tasks, work for both workers
    import_catalog(root / "tiles" / "catalog.parquet", root / "catalog", partition_rows=20)
    build_tile_index(root / "tiles", "gri", root / "index")
    return root


def _plan(root: Path, out: Path):
    from skyscan.search.run import plan_search

    return plan_search(root / "model" / "model_card.json", root / "index", root / "catalog", out)


def _output_files(out: Path) -> dict[str, bytes]:
    """The search's output catalogue (HATS ``scores/``) and ``candidates.parquet``, by path."""
    files = [p for p in (out / "scores").rglob("*") if p.is_file()]
    files.append(out / "candidates.parquet")
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files)}


def _jobs_named(name: str) -> dict[str, str]:
    """SLURM's record (kept MinJobAge = 600 s after the end) of the jobs called ``name``:
    job id -> the ``scontrol show job`` text."""
    listing = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True
    ).stdout
    jobs = {}
    for line in listing.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobName") == name:
            jobs[fields["JobId"]] = line
    return jobs


def _queued(name: str) -> list[str]:
    """Jobs called ``name`` still pending or running (not those completing: being ended)."""
    states = "PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED,RESIZING"
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-t", states, "-o", "%i"], capture_output=True, text=True
    )
    return out.stdout.split()


def test_search_with_slurm_job_workers(slurm, tiny_search, tmp_path):
    import pyarrow.parquet as pq

    from skyscan.search.run import run_search

    local_plan = _plan(tiny_search, tmp_path / "in-process")
    assert len(local_plan.tasks) >= 2  # work for both workers
    run_search(local_plan, workers=0, progress=False)

    name = f"skyscan-search-{uuid.uuid4().hex[:8]}"  # SLURM keeps old jobs' records
    cluster = {
        "kind": "slurm",
        "queue": "cpu",
        "memory": "1GB",
        "walltime": "00:10:00",
        "job_name": name,
        "start_timeout": 120,
    }
    slurm_plan = _plan(tiny_search, tmp_path / "slurm")
    summary = run_search(slurm_plan, workers=2, progress=False, cluster=cluster)
    assert not summary["failures"], summary["failures"]
    ours = _output_files(tmp_path / "slurm")
    assert ours == _output_files(tmp_path / "in-process")  # byte for byte
    assert len(ours) > 2
    rows = pq.read_table(tmp_path / "slurm" / "candidates.parquet").num_rows
    assert rows == summary["candidates"] == summary["rows"] > 0  # no threshold: all rows

    # the workers were two SLURM batch jobs in partition cpu, named as asked, each with its
    # log (dask-jobqueue names it by the job id) showing a Dask worker that started
    jobs = _jobs_named(name)
    assert len(jobs) == 2, jobs
    for job_id, record in jobs.items():
        assert "Partition=cpu" in record and "BatchFlag=1" in record
        log = (tmp_path / "slurm" / "slurm-logs" / f"{name}-{job_id}.err").read_text()
        assert "Start worker at" in log
    assert _queued(name) == []  # ended with the search: no job left behind


def test_slurm_jobs_that_never_start_are_cancelled(slurm, tmp_path):
    from skyscan.core.errors import ResourceError
    from skyscan.search.cluster import start_cluster

    name = f"skyscan-wait-{uuid.uuid4().hex[:8]}"
    cluster = {
        "kind": "slurm",
        "queue": "cpu",
        "memory": "1GB",
        "job_name": name,
        "job_extra_directives": ["--begin=now+3600"],  # eligible only in an hour
        "start_timeout": 3,
    }
    with pytest.raises(ResourceError, match=r"partition 'cpu'.*squeue") as caught:
        with start_cluster(cluster, 2, tmp_path / "logs"):
            pytest.fail("no worker can have started")
    assert "\n" not in str(caught.value)
    jobs = _jobs_named(name)
    assert len(jobs) == 2 and all("JobState=CANCELLED" in r for r in jobs.values()), jobs
    assert _queued(name) == []


def test_a_job_slurm_refuses_fails_at_once_with_its_reason(slurm, tmp_path):
    from skyscan.core.errors import ConfigError
    from skyscan.search.cluster import start_cluster

    cluster = {"kind": "slurm", "queue": "no-such-partition", "start_timeout": 300}
    with pytest.raises(ConfigError, match="SLURM refuses the worker job.*[Ii]nvalid partition"):
        with start_cluster(cluster, 1, tmp_path / "logs"):
            pytest.fail("the job cannot have started")


_KILLED_SEARCH = """
import sys, time
from skyscan.search.cluster import start_cluster

cluster = {"kind": "slurm", "memory": "1GB", "job_name": sys.argv[1], "start_timeout": 120}
with start_cluster(cluster, 1, sys.argv[2]):
    print("workers up", flush=True)
    time.sleep(3600)
"""


def test_jobs_end_when_the_search_is_killed(slurm, tmp_path):
    name = f"skyscan-killed-{uuid.uuid4().hex[:8]}"
    search = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SEARCH, name, str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert search.stdout.readline() == "workers up\n"
        assert len(_queued(name)) == 1
        search.kill()
        search.wait(30)
        deadline = time.monotonic() + 120  # a bound on waiting, not a speed requirement
        while _queued(name) and time.monotonic() < deadline:
            time.sleep(1)
        assert _queued(name) == [], "the worker job outlived the search"
    finally:
        search.kill()
        for job in _queued(name):
            subprocess.run(["scancel", job], check=False)
