"""The README's walk-through "Searching your own survey tiles", run as a new user would: a
CSV catalogue with its own column names (``objid``, ``RA`` in hours, ``DEC``) and a folder of
tiles made in a temporary folder, each verb run as a command from a different working
directory than the one before (paths recorded in index.json and summary.json must resolve
from the file that records them), with the exit codes and streams a script relies on."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import Angle
from conftest import SMALL_TILES

from skyscan.cases.lenses.tiles import make_tiles
from skyscan.config import load_config


def skyscan(*args, cwd):
    """Run ``skyscan ARGS`` in ``cwd`` as a user would (a separate process)."""
    return subprocess.run(
        [sys.executable, "-m", "skyscan.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """``work/mysurvey/tiles/`` (one FITS file per band per tile) and
    ``work/mysurvey/objects.csv`` with the columns objid, RA (hours, sexagesimal), DEC, mag_i."""
    work = tmp_path_factory.mktemp("work")
    mysurvey = work / "mysurvey"
    make_tiles(load_config(None, SMALL_TILES), mysurvey / "tiles")
    made = pq.read_table(mysurvey / "tiles" / "catalog.parquet").to_pandas()
    (mysurvey / "tiles" / "catalog.parquet").unlink()  # the user's catalogue is the CSV
    ra = Angle(made["ra"].to_numpy(), unit="deg").to_string(unit="hour", sep=":", precision=3)
    table = made.assign(objid=[f"obj-{k:05d}" for k in made["id"]], RA=ra, DEC=made["dec"])
    columns = ["objid", "RA", "DEC"] + [c for c in ("mag_i",) if c in made]
    table[columns].to_csv(mysurvey / "objects.csv", index=False)
    return work, mysurvey, len(table)


def test_search_your_own_tiles_walkthrough(survey, trained):
    """Every step of the README's walk-through, in the README's order and folders."""
    work, mysurvey, n_objects = survey
    card = trained.model / "model_card.json"
    metrics = trained.evaluation / "metrics.json"

    # 1. the catalogue, with its own column names, from inside mysurvey/
    done = skyscan(
        "catalog", "import", "objects.csv", "--ra-column", "RA", "--dec-column", "DEC",
        "--id-column", "objid", "--out", "my_catalog", cwd=mysurvey,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["rows"] == n_objects
    assert imported["columns_from"] == {"ra": "RA", "dec": "DEC", "id": "objid"}
    rows = pq.read_table(mysurvey / "my_catalog" / "dataset").to_pandas()
    assert {"ra", "dec", "id", "RA", "DEC", "objid"} <= set(rows.columns)
    assert (rows["id"] == rows["objid"]).all() and isinstance(rows["RA"].iloc[0], str)
    np.testing.assert_allclose(
        rows["ra"], Angle(rows["RA"].tolist(), unit="hour").deg, rtol=0, atol=1e-6
    )

    # 2. the tile index, also from inside mysurvey/
    done = skyscan("tiles", "index", "tiles", "--model", card, "--out", "my_index", cwd=mysurvey)
    assert done.returncode == 0, done.stderr
    assert json.loads((mysurvey / "my_index" / "index.json").read_text())["problems"] == {}

    # 3. the search, from the folder above (the index's recorded tile folder must resolve)
    done = skyscan(
        "search", "--model", card, "--index", "mysurvey/my_index", "--catalog",
        "mysurvey/my_catalog", "--out", "my_search", "--workers", "1", "-q", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout is the JSON summary alone (| jq reads it)
    recorded = json.loads((work / "my_search" / "summary.json").read_text())
    assert recorded["failures"] == 0 and summary["rows"] > 0.8 * n_objects
    # paths relative to the search folder, so the record reads from anywhere
    assert (
        recorded["tiles"] == "../mysurvey/tiles" and recorded["catalog"] == "../mysurvey/my_catalog"
    )
    assert summary["prevalence"] == 0.001 and 0.3 < summary["training_prevalence"] < 0.7
    assert "INFO" not in done.stderr, done.stderr  # -q: no Dask chatter
    assert not (work / "my_search" / ".search.lock").exists()
    candidates = pq.read_table(work / "my_search" / "candidates.parquet").to_pandas()
    assert len(candidates) and {"objid", "RA", "DEC", "probability_at_prevalence"} <= set(
        candidates.columns
    )
    # at a prevalence of 1 in 1,000 a candidate is far less likely a lens than on the
    # training mix (half lenses): Bayes' rule on the odds
    assert (candidates["probability_at_prevalence"] < candidates["score"]).all()

    # 4. the sky maps, from the folder above
    done = skyscan(
        "skymaps", "--search", "my_search", "--tiles", "mysurvey/tiles", "--model", card,
        "--metrics", metrics, "--out", "my_maps", "-q", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (work / "my_maps" / "skymaps.fits").is_file()

    # 5. grading exports, from yet another folder: summary.json's paths resolve from the
    # search folder, not from where the search ran
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    done = skyscan("grade", "../my_search", "--export", "-q", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (work / "my_search" / "grades.parquet").is_file()


def test_a_search_that_scores_nothing_exits_1(survey, trained, tmp_path):
    """Every tile refused (a model at another pixel scale): exit 1, the reason on stderr,
    and stdout still only the JSON summary."""
    import shutil

    from skyscan.models.card import read_card

    work, mysurvey, _ = survey
    card = read_card(trained.model / "model_card.json")
    other = tmp_path / "model"
    shutil.copytree(trained.model, other)
    doc = json.loads((other / "model_card.json").read_text())
    doc["pixel_scale"] = 0.262  # DECam's
    (other / "model_card.json").write_text(json.dumps(doc))
    assert card.pixel_scale == pytest.approx(0.2)
    names = ["--ra-column", "RA", "--dec-column", "DEC", "--id-column", "objid"]
    done = skyscan(
        "catalog", "import", mysurvey / "objects.csv", *names, "--out", "cat", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    done = skyscan("tiles", "index", mysurvey / "tiles", "--bands", "g,r,i", "--out", "index",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = skyscan(
        "search", "--model", other / "model_card.json", "--index", "index", "--catalog", "cat",
        "--out", "search", "--workers", "0", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["rows"] == 0
    assert "none of the 4 tile(s) is usable" in done.stderr
    assert "pixel scale" in done.stderr and "skyscan tiles resample" in done.stderr


def test_catalog_import_names_the_column_options(tmp_path):
    """A catalogue without ra/dec: the message names the options that fix it; a bad Dec is
    printed as a number; an existing output names --overwrite."""
    csv = tmp_path / "objects.csv"
    csv.write_text("objid,RA,DEC\na,150.0,2.0\n")
    done = skyscan("catalog", "import", csv, "--out", tmp_path / "cat", cwd=tmp_path)
    assert done.returncode != 0 and "--ra-column" in done.stderr
    assert "'ra'" in done.stderr and "RA" in done.stderr  # the columns it has
    bad = tmp_path / "bad.csv"
    bad.write_text("id,ra,dec\n1,10,5\n2,11,95\n")
    done = skyscan("catalog", "import", bad, "--out", tmp_path / "bad", cwd=tmp_path)
    assert "(rows 1: 95)" in done.stderr and "np.float64" not in done.stderr
    good = skyscan("catalog", "import", csv, "--ra-column", "RA", "--dec-column", "DEC",
                   "--out", tmp_path / "cat", cwd=tmp_path)  # fmt: skip
    assert good.returncode == 0, good.stderr
    again = skyscan("catalog", "import", csv, "--ra-column", "RA", "--dec-column", "DEC",
                    "--out", tmp_path / "cat", cwd=tmp_path)  # fmt: skip
    assert again.returncode != 0 and "--overwrite" in again.stderr
    # a column 'ra' beside --ra-column RA would be ambiguous: refused, naming both
    both = tmp_path / "both.csv"
    both.write_text("id,RA,DEC,ra\n1,150.0,2.0,3.0\n")
    done = skyscan("catalog", "import", both, "--ra-column", "RA", "--dec-column", "DEC",
                   "--out", tmp_path / "both", cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0 and "--ra-column RA" in done.stderr and "'ra'" in done.stderr


ROOT = Path(__file__).resolve().parents[1]


def test_readme_rule_targets_run_in_the_order_shown(tmp_path):
    """The README's targets (`snakemake TARGET --cores 2 --configfile my.yaml`) dry-run on a
    copied config.yaml whose results folder was changed, as the README tells users."""
    import re
    import shutil

    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"^\.venv/bin/snakemake (\w+) --cores 2 --configfile my\.yaml", text, re.M)
    assert {"build_dataset", "train", "evaluate", "search"} <= set(targets), targets
    config = (ROOT / "config.yaml").read_text()
    assert "\nresults: results\n" in config  # what the README warns a copy keeps
    (tmp_path / "my.yaml").write_text(config.replace("\nresults: results\n", "\nresults: mine\n"))
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    for target in targets:
        done = subprocess.run(
            [snakemake, target, "--cores", "2", "--configfile", "my.yaml", "-n",
             "-s", str(ROOT / "Snakefile")],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (target, done.stderr[-2000:])
        assert "mine/" in done.stdout and "results/" not in done.stdout.replace("mine/", "")


def test_readme_figures_script_reads_a_runs_outputs(trained, tmp_path):
    """scripts/readme_figures.py prints the evaluation's figures as metrics.json holds them,
    with the file each came from."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(trained.evaluation, results / "evaluation")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--results", str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    auroc = f"| AUROC | {metrics['auroc']:.3f} [{metrics['auroc_ci95'][0]:.3f}, "
    assert auroc in done.stdout and "evaluation/metrics.json" in done.stdout
    assert f"({metrics['headline']['n_lenses']:,} lenses)" in done.stdout
    empty = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--results", "nothing"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert empty.returncode == 1 and "make run" in empty.stdout
