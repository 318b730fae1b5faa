"""``search.cluster``: the local cluster, and the SLURMCluster options made from the config.

The SLURM jobs themselves run in tests/test_slurm.py (needs a local SLURM); these tests do
not need one.
"""

import os
import sys

import pytest

from skyscan.config import load_config
from skyscan.core.errors import ConfigError
from skyscan.search.cluster import SLURM_DEFAULTS, slurm_options, start_cluster


def test_local_cluster_has_single_threaded_worker_processes():
    with start_cluster(load_config(None, {})["search"]["cluster"], 2) as client:
        assert sorted(client.nthreads().values()) == [1, 1]
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


def test_slurm_options_defaults_and_pass_through(tmp_path):
    cluster = load_config(
        None,
        {
            "search": {
                "cluster": {
                    "kind": "slurm",
                    "queue": "short",
                    "memory": "8GB",
                    "start_timeout": 30,
                    "job_extra_directives": ["--qos=low"],
                    "scheduler_options": {"port": 8786},
                }
            }
        },
    )["search"]["cluster"]
    options = slurm_options(cluster, tmp_path / "logs")
    assert options["queue"] == "short" and options["memory"] == "8GB"
    assert options["job_extra_directives"] == ["--qos=low"]
    assert options["cores"] == options["processes"] == 1
    assert options["walltime"] == SLURM_DEFAULTS["walltime"]
    assert options["python"] == sys.executable  # the jobs run this environment
    assert options["scheduler_options"] == {"dashboard": False, "port": 8786}
    assert "kind" not in options and "start_timeout" not in options
    assert (tmp_path / "logs").is_dir() and options["log_directory"] == str(tmp_path / "logs")

    from dask_jobqueue import SLURMCluster

    # the options make a job script SLURMCluster accepts (no job is submitted)
    with SLURMCluster(**options) as dask_cluster:
        script = dask_cluster.job_script()
    assert "#SBATCH -p short" in script and "#SBATCH --qos=low" in script
    assert sys.executable in script


@pytest.mark.parametrize(
    ("cluster", "workers", "message"),
    [
        (
            {"kind": "slurm", "memroy": "4GB"},
            2,
            "search.cluster: unknown key 'memroy' for dask_jobqueue.SLURMCluster",
        ),
        ({"kind": "slurm", "n_workers": 4}, 2, "unknown key 'n_workers'"),
        ({"kind": "local", "queue": "cpu"}, 2, "key 'queue' is for kind slurm"),
        ({"kind": "pbs"}, 2, "search.cluster.kind: 'pbs' is not one of local, slurm"),
        ({"kind": "local"}, 0, "search.workers: a cluster needs at least 1 worker"),
    ],
)
def test_bad_cluster_settings_fail_in_one_line(tmp_path, cluster, workers, message):
    with pytest.raises(ConfigError, match=message) as caught:
        with start_cluster(cluster, workers, tmp_path):
            pytest.fail("no cluster should start")
    assert "\n" not in str(caught.value)
