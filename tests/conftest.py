"""Shared fixtures and the lenstronomy reference renderer used by the physics tests."""

from __future__ import annotations

import pytest
import torch

from skyscan.cases.lenses.sim.population import Population, block_rng
from skyscan.cases.lenses.sim.survey import get_bands, get_survey
from skyscan.config import load_config

ONLY_LENSES = {"lens": 1, "no_source": 0, "companion": 0, "ring": 0, "spiral": 0, "star_blend": 0}


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


#: Line-of-sight neighbours off, for tests of one system's light alone.
NO_NEIGHBOURS = {"field": 0, "star": 0}


def draw_params(
    n: int, seed: int = 1, kinds=None, bands=("g", "r", "i"), priors=None, neighbours=None
):
    """Draw ``n`` systems from the default population (optionally only some kinds) for
    45-pixel LSST stamps; ``neighbours`` replaces ``lenses.neighbours`` (default: on)."""
    lens = {"kinds": kinds or ONLY_LENSES, "bands": list(bands)}
    if priors:
        lens["priors"] = priors
    if neighbours is not None:
        lens["neighbours"] = neighbours
    config = load_config(None, {"lenses": lens})
    pop = Population(config["lenses"], list(bands), pixel_scale=0.2)
    params_rng, _ = block_rng(seed, 0)
    return pop.draw(params_rng, n)


def lsst_bands(names=("g", "r", "i")):
    return get_bands(get_survey("lsst"), names)


def lenstronomy_image(params: dict, i: int, band, stamp: int = 45, supersampling: int = 3):
    """Render system ``i`` of drawn ``params`` in ``band`` with lenstronomy (the reference)."""
    from skyscan.cases.lenses.sim.lenstronomy_interop import lenstronomy_image as render_row

    row = {k: v[i] for k, v in params.items()}
    return render_row(row, band, stamp, supersampling)


#: The shared trained model: lenses against the same deflectors without a source (the core
#: question, an arc or not) in small 33-pixel LSST coadd stamps, so one CPU trains it in
#: about a minute.  Fixed seed and split: its test AUROC is reproducible on one platform.
TINY_TRAINING = {
    "seed": 5,
    "simulate": {"n": 1600, "shard_size": 800},
    "lenses": {
        "stamp_size": 33,
        "kinds": {**{k: 0 for k in ONLY_LENSES}, "lens": 0.5, "no_source": 0.5},
    },
    "train": {"epochs": 6, "batch_size": 64, "lr_step_epochs": 100},
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small trained, exported and evaluated model shared by the tests.

    Returns a namespace with ``config``, ``dataset`` (folder), ``model`` (folder), ``card``
    (the ModelCard), ``evaluation`` (folder) and ``metrics``.
    """
    from types import SimpleNamespace

    from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation
    from skyscan.data.datasets import build_dataset
    from skyscan.evaluate.report import evaluate
    from skyscan.train.run import train

    root = tmp_path_factory.mktemp("trained")
    config = load_config(None, TINY_TRAINING)
    shards = run_simulation(SimulationPlan.from_config(config), root / "sims", show_progress=False)
    build_dataset(shards, root / "dataset", config)
    card = train(config, root / "dataset", root / "model", threads=1)
    metrics = evaluate(root / "model" / "model_card.json", root / "dataset", root / "eval", config)
    return SimpleNamespace(
        config=config,
        dataset=root / "dataset",
        model=root / "model",
        card=card,
        evaluation=root / "eval",
        metrics=metrics,
    )


#: Four small survey tiles (LSST g r i coadd, 0.2"/pixel, 256 x 256 pixels) with the
#: default objects at raised densities: what the search tests cut stamps from.
SMALL_TILES = {
    "lenses": {
        "tiles": {
            "grid": [2, 2],
            "size": 256,
            "overlap": 32,
            "densities": {"field": 20, "star": 3, "deflector": 25, "lens": 20},
        }
    }
}
