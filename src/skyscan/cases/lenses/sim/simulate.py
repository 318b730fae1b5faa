"""From a validated config to Parquet shards of simulated systems.

Rows are a function of ``(seed, global row index)`` only (see
:mod:`.population`): shard ``k`` holds rows ``[k * shard_size, (k+1) * shard_size)``
and is rendered block by block, so the same config and seed give the same bytes whatever the
number of workers, and the same rows whatever the shard size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

import skyscan
from skyscan.cases.lenses.sim.population import BLOCK_SIZE, Population, block_rng
from skyscan.cases.lenses.sim.render import Observation, render
from skyscan.cases.lenses.sim.survey import ConfigError, get_bands, get_survey
from skyscan.config import config_hash
from skyscan.data.driver import ShardPlan, gather_blocks, run_shards, shard_path, write_shard
from skyscan.data.shards import images_to_array

__all__ = ["SimulationPlan", "simulate_rows", "write_shard", "run_simulation", "shard_path"]

#: Simulation keys of the ``lenses:`` section left out of a shard's ``config_hash`` as they
#: were never in it: the survey enters through its bands' properties.
NOT_IN_IDENTITY = ("survey", "surveys", "bands")

#: Units of the image pixels.
IMAGE_UNITS = "e-/s per pixel (lenstronomy data_count_unit 'e-')"


@dataclass
class SimulationPlan(ShardPlan):
    """Everything needed to render any row: resolved from a validated config.

    Use :meth:`from_config`; the plan is picklable, so workers rebuild nothing but torch state.
    A :class:`~skyscan.data.driver.ShardPlan`: the shard driver writes its shards.
    """

    unit: ClassVar[str] = "sys"

    seed: int
    n: int
    shard_size: int
    noise: bool
    device: str
    compile: bool
    obs: Observation
    population: Population
    survey: str
    config_hash: str

    @classmethod
    def from_config(cls, config: dict) -> SimulationPlan:
        """Build the plan from a config validated by :func:`skyscan.config.validate_config`."""
        import torch

        from skyscan.cases.lenses import SIMULATION_KEYS

        sim = config["simulate"]  # the shared keys: n, shard_size, noise, device, compile
        lens = config["lenses"]  # the case's: set-up, stamps, population
        survey = get_survey(lens["survey"], lens.get("surveys"))
        bands = get_bands(survey, lens["bands"])
        obs = Observation(
            bands,
            lens["stamp_size"],
            lens["supersampling"],
            lens["exposures"],
            snr_definition=lens.get("snr_definition", "lenspop"),
        )
        lens = {**lens, "population": population_spec(config)}
        population = Population(
            lens, lens["bands"], pixel_scale=obs.pixel_scale, seed=config["seed"]
        )
        device = _resolve_device(sim["device"])
        # Everything the bytes of a shard depend on (not n: a shard's rows do not depend on
        # it).  "simulate" is the one section it was before the case had its own section (the
        # shared keys and the case's simulation keys together), so the hash is unchanged.
        settings = {k: v for k, v in sim.items() if k not in ("n", "preview")}
        settings.update(
            {k: lens[k] for k in SIMULATION_KEYS if k not in NOT_IN_IDENTITY and k in lens}
        )
        identity = {
            "seed": config["seed"],
            "bands": [dataclasses.asdict(b) for b in bands],
            "simulate": settings,
            "device": device.split(":")[0],
            "skyscan_version": skyscan.__version__,
            "torch_version": torch.__version__.split("+")[0],  # its generator draws the noise
        }
        return cls(
            seed=config["seed"],
            n=sim["n"],
            shard_size=sim["shard_size"],
            noise=sim["noise"],
            device=device,
            compile=sim["compile"],
            obs=obs,
            population=population,
            survey=survey.name,
            config_hash=config_hash(identity),
        )

    def rows(self, start: int, stop: int, progress=None) -> pa.Table:
        """Rows ``[start, stop)`` as an Arrow table (:func:`simulate_rows`)."""
        return simulate_rows(self, start, stop, progress=progress)

    def metadata(self, shard: int) -> dict:
        """Schema metadata of a shard."""
        obs = self.obs
        start, stop = self.shard_rows(shard)
        return {
            "skyscan_version": skyscan.__version__,
            "survey": self.survey,
            "bands": obs.band_names,
            "shape": [len(obs.bands), obs.stamp_size, obs.stamp_size],
            "pixel_scale": obs.pixel_scale,
            "units": IMAGE_UNITS,
            "zero_points": [b.zero_point for b in obs.bands],
            "background_sigma": [float(v) for v in obs.background_sigma()],
            "exposures": obs.exposures,
            "exposure_time": [obs.exposure_time(b) for b in obs.bands],
            "psf": [
                {"type": b.psf_type, "fwhm": b.seeing, "moffat_beta": b.moffat_beta}
                for b in obs.bands
            ],
            "supersampling": obs.supersampling,
            "snr_definition": obs.snr_definition,
            "source_model": self.population.source_model,
            "population": self.population_record(),
            "noise": self.noise,
            "seed": self.seed,
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
        }

    def population_record(self) -> dict:
        """Where the deflectors and sources come from (shard metadata, dataset manifest)."""
        table = self.population.table
        if table is None:
            return {"table": None}
        return {
            "table": table.name,
            "splits": dict(table.splits) if table.splits is not None else None,
            "enrich_cell": table.enrich_cell,
        }


def population_spec(config: Mapping) -> dict:
    """``lenses.population`` with its ``splits`` resolved: a table population draws each
    split's systems from its own rows, by the dataset's split fractions unless given."""
    spec = dict(config["lenses"].get("population") or {})
    if spec.get("table") and spec.get("splits") is None:
        splits = (config.get("dataset") or {}).get("splits")
        if splits is None:
            raise ConfigError(
                "config key 'lenses.population.splits': a table population needs the "
                "dataset's split fractions (dataset.splits) or its own",
                key="lenses.population.splits",
            )
        spec["splits"] = dict(splits)
    return spec


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'simulate.device': {device!r} but no CUDA device is visible")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(
            f"config key 'simulate.device': {device!r} is not one of cpu, cuda, cuda:N, auto"
        )
    return device


def _render_block(plan: SimulationPlan, block: int) -> dict[str, np.ndarray]:
    """All columns of one random block: BLOCK_SIZE rows, cut to the run's end.

    The whole block is drawn and rendered whatever ``n``, so a row never depends on where the
    run ends (the noise generator fills a block in one call).
    """
    first = block * BLOCK_SIZE
    n = min(BLOCK_SIZE, plan.n - first)
    params_rng, noise_seed = block_rng(plan.seed, block)
    cols = plan.population.draw(
        params_rng, BLOCK_SIZE, index=np.arange(first, first + BLOCK_SIZE, dtype=np.int64)
    )
    result = render(
        cols,
        plan.obs,
        noise_seed if plan.noise else None,
        device=plan.device,
        compile=plan.compile,
    )
    cols["index"] = np.arange(first, first + BLOCK_SIZE, dtype=np.int64)
    cols["magnification"] = result.magnification
    for k, band in enumerate(plan.obs.band_names):
        cols[f"snr_{band}"] = result.snr[:, k]
    cols["image"] = result.image
    return {k: v[:n] for k, v in cols.items()}


def simulate_rows(plan: SimulationPlan, start: int, stop: int, progress=None) -> pa.Table:
    """Render rows ``[start, stop)`` into an Arrow table (``image`` column last).

    Parameters
    ----------
    plan : SimulationPlan
    start, stop : int
        Global row range.
    progress : callable, optional
        Called with the number of rows finished after each block.
    """

    def block_rows(block: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        first = block * BLOCK_SIZE
        return {k: v[lo - first : hi - first] for k, v in _render_block(plan, block).items()}

    return _to_table(plan, gather_blocks(start, stop, block_rows, progress))


def _to_table(plan: SimulationPlan, cols: dict[str, np.ndarray]) -> pa.Table:
    first = ["index", "shard", "seed", "kind", "label", "magnification"]
    first += [f"snr_{b}" for b in plan.obs.band_names]
    n = len(cols["index"])
    arrays, names = [], []
    for name in first + sorted(k for k in cols if k not in first and k != "image"):
        if name == "seed":
            arrays.append(pa.array(np.full(n, plan.seed, dtype=np.int64)))
        elif name == "shard":
            arrays.append(pa.array((cols["index"] // plan.shard_size).astype(np.int32)))
        elif name == "kind":
            arrays.append(pa.array(cols["kind"].astype(str)).dictionary_encode())
        else:
            arrays.append(pa.array(cols[name]))
        names.append(name)
    arrays.append(images_to_array(cols["image"]))
    names.append("image")
    return pa.Table.from_arrays(arrays, names=names)


def _single_threaded_torch() -> None:
    """Worker set-up: one process per core, so keep each single-threaded (no oversubscription)."""
    import torch

    torch.set_num_threads(1)


def run_simulation(
    plan: SimulationPlan, out_dir: str | Path, shards=None, workers: int = 1, show_progress=True
) -> list[Path]:
    """Write shards (all by default) with ``workers`` processes, showing progress.

    Complete shards of the same plan are skipped (:func:`skyscan.data.driver.run_shards`).

    Returns
    -------
    list of Path
        The shards, in order.
    """
    return run_shards(
        plan,
        out_dir,
        shards=shards,
        workers=workers,
        show_progress=show_progress,
        worker_init=_single_threaded_torch,
    )
