"""LensPop's forecast lens populations (Collett 2015) as a simulated population.

CMU DeepLens (Lanusse et al. 2018) trained and tested on lenses drawn from LensPop's LSST
best-single-epoch population.  Its joint distribution of Einstein radius, redshifts,
magnitudes, sizes and flattenings is not a product of one-dimensional priors, so this module
draws *whole rows* of LensPop's tables (``data/lenspop/``, gzipped unchanged; see the README
there for source and citation), each with a random orientation of the whole system.

Rows are split into disjoint train / val / test sets (a hash of the row number, with the
dataset's split fractions), and each simulated system draws its row from the set of its own
split (:func:`skyscan.data.datasets.assign_splits` of its index), so that no lens configuration
is seen both in training and in test.  The test split can be *enriched* with lenses of CMU
DeepLens's headline cell (theta_E > 1.4", S/N_g > 20 by the table): a fraction of its lenses
draw from the cell's rows only, which leaves the cell's conditional distribution unchanged and
makes the cell measurable (it holds under 1% of LensPop's lenses); those systems are flagged
``cell_enriched`` and left out of population-level comparisons.

Conventions.  LensPop's deflector light and mass share centre, flattening and position angle,
with the deflector at position angle 90 deg and the source's position angle ``ps`` in the same
frame; skyscan's angles are lenstronomy's (radians from the x axis).  The mapping adds the
system's random rotation to both and rotates the source position with it; the orientation of
LensPop's frame relative to ours is checked by the table's magnifications
(``tests/test_lenspop.py``).  LensPop's SIE normalisation ``b`` (the intermediate-axis
Einstein radius) is lenstronomy's ``theta_E``.  LensPop has no external shear.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from skyscan.core.errors import ConfigError

__all__ = [
    "TABLES",
    "COLUMNS",
    "CELL_THETA_E",
    "CELL_SNR",
    "LensPopTable",
    "in_cell",
    "load_table",
    "table_rows_split",
]

#: The tables shipped (config name -> file; the survey of LensPop's set-up has the same name).
TABLES = {
    "lenspop_lsst_best_epoch": "lenses_LSSTb.txt.gz",
    "lenspop_des_best_epoch": "lenses_DESb.txt.gz",
}

#: Column names of the tables, in file order (the files' headers say what each is).
COLUMNS = (
    "zl",
    "zs",
    "b",
    "sigma_v",
    "ql",
    "rl",
    "lens_g",
    "lens_r",
    "lens_i",
    "xs",
    "ys",
    "qs",
    "ps",
    "rs",
    "source_g",
    "source_r",
    "source_i",
    "mu",
    "seeing_g",
    "snr_g",
    "seeing_r",
    "snr_r",
    "seeing_i",
    "snr_i",
    "snr_gi",
)

#: CMU DeepLens's headline cell (Lanusse et al. 2018), on the table's own columns.
CELL_THETA_E = 1.4
CELL_SNR = 20.0

#: Smallest source half-light radius drawn (arcsec): a few of LensPop's rows list 0.00, a
#: point the Sersic profile cannot hold; 0.01" is far below a pixel.
MIN_SOURCE_RADIUS = 0.01

#: Stream of the row split's hash (the systems' own split uses stream 1 of the same seed).
ROW_SPLIT_SALT = 0x4C50  # "LP"

TABLE_BANDS = ("g", "r", "i")


@cache
def load_table(name: str) -> dict[str, np.ndarray]:
    """The named LensPop table as columns (float64), read once per process.

    Parameters
    ----------
    name : str
        A key of :data:`TABLES`.

    Returns
    -------
    dict of str to ndarray
    """
    if name not in TABLES:
        raise ConfigError(
            f"config key 'lenses.population.table': {name!r} is not one of {', '.join(TABLES)}",
            key="lenses.population.table",
        )
    ref = resources.files("skyscan.cases.lenses").joinpath("data", "lenspop", TABLES[name])
    with ref.open("rb") as raw, gzip.open(raw, "rt") as text:
        data = np.loadtxt(text, comments="#", dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(COLUMNS):
        raise ValueError(f"{ref}: expected {len(COLUMNS)} columns, got shape {data.shape}")
    table = {c: data[:, k] for k, c in enumerate(COLUMNS)}
    for v in table.values():
        v.setflags(write=False)
    return table


def in_cell(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows of CMU DeepLens's headline cell by the table's own theta_E and g-band S/N."""
    return (np.asarray(table["b"]) > CELL_THETA_E) & (np.asarray(table["snr_g"]) > CELL_SNR)


def table_rows_split(n_rows: int, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Split (0 train, 1 val, 2 test) of each table row: a hash of the row number."""
    from skyscan.data.datasets import assign_splits

    return assign_splits(np.arange(n_rows), fractions, int(seed) ^ ROW_SPLIT_SALT)


@dataclass
class LensPopTable:
    """Draws deflectors and sources as whole rows of a LensPop table.

    Parameters
    ----------
    name : str
        Table (a key of :data:`TABLES`).
    bands : list of str
        Simulated bands (each of g, r, i).
    splits : mapping or None
        The dataset's split fractions; ``None`` draws every system from all rows (survey
        tiles, injections: no training set to keep apart).
    seed : int
        The config's seed (the systems' split is the dataset's hash of it).
    enrich_cell : float
        Fraction of the test split's lenses drawn from the headline cell's rows only.
    """

    name: str
    bands: list
    splits: Mapping | None
    seed: int
    enrich_cell: float = 0.0

    def __post_init__(self) -> None:
        missing = [b for b in self.bands if b not in TABLE_BANDS]
        if missing:
            raise ConfigError(
                f"config key 'lenses.population.table': {self.name} has magnitudes in "
                f"{', '.join(TABLE_BANDS)} only, not {', '.join(missing)} (lenses.bands)",
                key="lenses.population.table",
            )
        table = load_table(self.name)
        n = len(table["b"])
        self.n_rows = n
        self.cell = in_cell(table)
        if self.splits is None:
            self.pools = [np.arange(n)] * 3
        else:
            row_split = table_rows_split(n, self.splits, self.seed)
            self.pools = [np.flatnonzero(row_split == k) for k in range(3)]
        self.cell_pool = np.intersect1d(self.pools[2], np.flatnonzero(self.cell))
        for k, pool in enumerate(self.pools):
            if len(pool) == 0:
                raise ConfigError(
                    f"config key 'lenses.population.table': no row of {self.name} falls in "
                    f"split {('train', 'val', 'test')[k]} (dataset.splits)",
                    key="dataset.splits",
                )
        if self.enrich_cell > 0 and len(self.cell_pool) == 0:
            raise ConfigError(
                "config key 'lenses.population.enrich_cell': the test rows hold no lens of "
                "the headline cell to draw from",
                key="lenses.population.enrich_cell",
            )

    def draw_rows(
        self, rng: np.random.Generator, kind: np.ndarray, index: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Table row, rotation (radians) and enrichment flag of each system.

        Three uniforms per system in a fixed order, whatever its kind or split.
        """
        n = len(kind)
        u_row, u_rot, u_enrich = rng.random(n), rng.random(n), rng.random(n)
        if index is None or self.splits is None:
            split = np.zeros(n, dtype=np.int64)
        else:
            from skyscan.data.datasets import assign_splits

            split = assign_splits(np.asarray(index), self.splits, self.seed)
        enriched = (split == 2) & (kind == "lens") & (u_enrich < self.enrich_cell)
        row = np.empty(n, dtype=np.int64)
        for k, pool in enumerate(self.pools):
            here = split == k
            row[here] = pool[np.minimum((u_row[here] * len(pool)).astype(np.int64), len(pool) - 1)]
        if enriched.any():
            pool = self.cell_pool
            pick = np.minimum((u_row[enriched] * len(pool)).astype(np.int64), len(pool) - 1)
            row[enriched] = pool[pick]
        return row, 2 * np.pi * u_rot, enriched

    def apply(
        self, rng: np.random.Generator, cols: dict[str, np.ndarray], index: np.ndarray | None
    ) -> None:
        """Overwrite the deflector and source columns of ``cols`` with drawn table rows.

        The deflector of every kind is the row's (so non-lenses are the same deflector
        population); the lensed source is the row's, rotated with the system; LensPop's
        deflectors have no external shear.  Adds ``lenspop_row``, ``cell_enriched`` and the
        table's own ``table_snr_<band>``, ``table_magnification`` and ``table_seeing_<band>``
        (to check the simulator against LensPop).
        """
        from skyscan.cases.lenses.sim.components import is_lens
        from skyscan.cases.lenses.sim.profiles import phi_q_to_ellipticity

        t = load_table(self.name)
        kind = np.asarray(cols["kind"])
        row, rot, enriched = self.draw_rows(rng, kind, index)
        cx, cy = cols["center_x"], cols["center_y"]
        lens_phi = np.pi / 2 + rot  # LensPop's deflector position angle is 90 deg
        e1, e2 = phi_q_to_ellipticity(lens_phi, t["ql"][row])
        cols.update(
            theta_E=t["b"][row].copy(),
            e1=e1,
            e2=e2,
            gamma1=np.zeros(len(row)),
            gamma2=np.zeros(len(row)),
            lens_R_sersic=t["rl"][row].copy(),
            lens_n_sersic=np.full(len(row), 4.0),
            lens_e1=e1.copy(),
            lens_e2=e2.copy(),
        )
        c, s = np.cos(rot), np.sin(rot)
        xs, ys = t["xs"][row], t["ys"][row]
        se1, se2 = phi_q_to_ellipticity(np.deg2rad(t["ps"][row]) + rot, t["qs"][row])
        cols.update(
            source_R_sersic=np.maximum(t["rs"][row], MIN_SOURCE_RADIUS),
            source_n_sersic=np.full(len(row), 1.0),
            source_e1=se1,
            source_e2=se2,
            source_center_x=cx + c * xs - s * ys,
            source_center_y=cy + s * xs + c * ys,
        )
        for band in self.bands:
            cols[f"lens_mag_{band}"] = t[f"lens_{band}"][row].copy()
            cols[f"source_mag_{band}"] = t[f"source_{band}"][row].copy()
            cols[f"table_snr_{band}"] = t[f"snr_{band}"][row].copy()
            cols[f"table_seeing_{band}"] = t[f"seeing_{band}"][row].copy()
        cols["table_magnification"] = t["mu"][row].copy()
        lens = is_lens(kind)
        for name in [c for c in cols if c.startswith("table_snr_")] + ["table_magnification"]:
            cols[name] = np.where(lens, cols[name], np.nan)
        cols["lenspop_row"] = row
        cols["cell_enriched"] = enriched.astype(np.int8)
