"""From a validated config to Parquet shards of simulated systems.

Rows are a function of ``(seed, global row index)`` only (see
:mod:`.population`): shard ``k`` holds rows ``[k * shard_size, (k+1) * shard_size)``
and is rendered block by block, so the same config and seed give the same bytes whatever the
number of workers, and the same rows whatever the shard size.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import skyscan
from skyscan.cases.lenses.sim.population import BLOCK_SIZE, Population, block_rng
from skyscan.cases.lenses.sim.render import Observation, render
from skyscan.cases.lenses.sim.survey import ConfigError, get_bands, get_survey
from skyscan.config import config_hash
from skyscan.data.shards import (
    images_to_array,
    shard_count,
    shard_is_complete,
    shard_rows,
    write_table_atomic,
)

__all__ = ["SimulationPlan", "simulate_rows", "write_shard", "run_simulation", "shard_path"]

log = logging.getLogger(__name__)

#: Units of the image pixels.
IMAGE_UNITS = "e-/s per pixel (lenstronomy data_count_unit 'e-')"


@dataclass
class SimulationPlan:
    """Everything needed to render any row: resolved from a validated config.

    Use :meth:`from_config`; the plan is picklable, so workers rebuild nothing but torch state.
    """

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

        sim = config["simulate"]
        survey = get_survey(config["survey"], config.get("surveys"))
        bands = get_bands(survey, config["bands"])
        obs = Observation(bands, sim["stamp_size"], sim["supersampling"], sim["exposures"])
        population = Population(sim, config["bands"], pixel_scale=obs.pixel_scale)
        device = _resolve_device(sim["device"])
        # Everything the bytes of a shard depend on (not n: a shard's rows do not depend on it).
        identity = {
            "seed": config["seed"],
            "bands": [dataclasses.asdict(b) for b in bands],
            "simulate": {k: v for k, v in sim.items() if k not in ("n", "preview")},
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

    @property
    def n_shards(self) -> int:
        return shard_count(self.n, self.shard_size)

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """Global row range ``[start, stop)`` of a shard."""
        return shard_rows(self.n, self.shard_size, shard)

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
            "noise": self.noise,
            "seed": self.seed,
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
        }


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
    cols = plan.population.draw(params_rng, BLOCK_SIZE)
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
    parts = []
    images = None
    for block in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1):
        cols = _render_block(plan, block)
        lo = max(start - block * BLOCK_SIZE, 0)
        hi = min(stop - block * BLOCK_SIZE, len(cols["index"]))
        block_images = cols.pop("image")
        if images is None:  # one buffer for the shard: no concatenation copies
            images = np.empty((stop - start, *block_images.shape[1:]), dtype=np.float32)
        first = block * BLOCK_SIZE + lo - start
        images[first : first + hi - lo] = block_images[lo:hi]
        parts.append({k: v[lo:hi] for k, v in cols.items()})
        if progress is not None:
            progress(hi - lo)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    merged["image"] = images
    return _to_table(plan, merged)


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


def shard_path(out_dir: str | Path, shard: int) -> Path:
    """File name of shard ``shard`` in ``out_dir``."""
    return Path(out_dir) / f"shard-{shard:05d}.parquet"


def write_shard(plan: SimulationPlan, shard: int, out_dir: str | Path, progress=None) -> Path:
    """Render and atomically write one shard, unless a complete identical one exists.

    Returns
    -------
    Path
        The shard's path.
    """
    path = shard_path(out_dir, shard)
    start, stop = plan.shard_rows(shard)
    expected = {"config_hash": plan.config_hash, "rows": stop - start, "shard": shard}
    if shard_is_complete(path, expected):
        log.info("%s is complete; skipped", path)
        if progress is not None:
            progress(stop - start)
        return path
    table = simulate_rows(plan, start, stop, progress=progress)
    write_table_atomic(table, path, plan.metadata(shard))
    log.info("wrote %s (%d systems)", path, stop - start)
    return path


def _worker_init() -> None:
    import torch

    from skyscan.core.process import die_with_parent

    die_with_parent()  # a killed parent takes its workers along: none goes on writing shards
    # One process per core: keep each single-threaded so workers do not oversubscribe.
    torch.set_num_threads(1)


def _worker_shard(plan: SimulationPlan, shard: int, out_dir: str) -> str:
    return str(write_shard(plan, shard, out_dir))


def run_simulation(
    plan: SimulationPlan, out_dir: str | Path, shards=None, workers: int = 1, show_progress=True
) -> list[Path]:
    """Write shards (all by default) with ``workers`` processes, showing progress.

    Returns
    -------
    list of Path
        The shards, in order.
    """
    from tqdm import tqdm

    shards = list(range(plan.n_shards)) if shards is None else list(shards)
    for s in shards:
        plan.shard_rows(s)  # validates the index
    total = sum(b - a for a, b in map(plan.shard_rows, shards))
    bar = tqdm(
        total=total, unit="sys", desc="simulate", disable=not show_progress, dynamic_ncols=True
    )
    paths: dict[int, Path] = {}
    try:
        if workers <= 1 or len(shards) == 1:
            for s in shards:
                paths[s] = write_shard(plan, s, out_dir, progress=bar.update)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # torch and fork do not mix
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(_worker_shard, plan, s, str(out_dir)): s for s in shards}
                for fut in as_completed(futures):
                    s = futures[fut]
                    paths[s] = Path(fut.result())
                    bar.update(plan.shard_rows(s)[1] - plan.shard_rows(s)[0])
    finally:
        bar.close()
    return [paths[s] for s in shards]
