"""Known-lens cross-match against lenscat's shipped catalogue (skyscan.cases.lenses.known)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyscan.cases.lenses import known
from skyscan.core.errors import InputFileError


@pytest.fixture(scope="module")
def catalog():
    return known.load_known_lenses()


def _offset(ra, dec, arcsec, angle_deg):
    """Positions ``arcsec`` from (ra, dec) towards position angle ``angle_deg``."""
    start = SkyCoord(ra * u.deg, dec * u.deg)
    moved = start.directional_offset_by(angle_deg * u.deg, arcsec * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def _isolated(catalog, n, rng):
    """Rows of catalogued lenses with no other catalogued lens within 10 arcsec."""
    _, d2d, _ = catalog.coords.match_to_catalog_sky(catalog.coords, nthneighbor=2)
    alone = np.flatnonzero(d2d.to_value(u.arcsec) > 10)
    return rng.choice(alone, n, replace=False)


def test_catalogue_is_read_in_degrees_without_importing_lenscat(catalog):
    import sys

    assert "lenscat" not in sys.modules  # importing it needs ligo.skymap
    assert len(catalog) > 30000
    assert catalog.ra.min() >= 0 and catalog.ra.max() > 300  # degrees, not hours
    assert set(catalog.grade) == {"confident", "probable"}
    assert set(catalog.type) <= {"galaxy", "cluster", "group"}
    assert known.load_known_lenses() is catalog  # cached


def test_exact_near_and_far_positions(catalog):
    rng = np.random.default_rng(1)
    rows = _isolated(catalog, 40, rng)
    ra, dec = catalog.ra[rows], catalog.dec[rows]
    angle = rng.uniform(0, 360, len(rows))
    ra15, dec15 = _offset(ra, dec, 1.5, angle)
    ra3, dec3 = _offset(ra, dec, 3.0, angle)
    table = known.match_known_lenses(
        np.concatenate([ra, ra15, ra3]), np.concatenate([dec, dec15, dec3]), radius_arcsec=2.0
    )
    names = table.column("known_name").to_pylist()
    sep = table.column("known_sep_arcsec").to_numpy(zero_copy_only=False)
    n = len(rows)
    assert names[:n] == list(catalog.name[rows])
    assert table.column("known_grade").to_pylist()[:n] == list(catalog.grade[rows])
    assert table.column("known_type").to_pylist()[:n] == list(catalog.type[rows])
    assert np.all(sep[:n] < 1e-6)
    assert names[n : 2 * n] == list(catalog.name[rows])
    np.testing.assert_allclose(sep[n : 2 * n], 1.5, atol=1e-6)
    assert names[2 * n :] == [None] * n  # 3 arcsec: outside the 2 arcsec radius
    assert table.column("known_sep_arcsec").null_count == n
    wider = known.match_known_lenses(ra3, dec3, radius_arcsec=3.5)
    assert wider.column("known_name").to_pylist() == list(catalog.name[rows])


def test_random_positions_rarely_match(catalog):
    rng = np.random.default_rng(2)
    n = 2000
    ra = rng.uniform(0, 360, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1, 1, n)))
    table = known.match_known_lenses(ra, dec)
    # ~33,000 lenses cover ~33,000 * pi * (2")^2 of 41,253 deg^2: ~1e-7 of the sky.
    assert table.column("known_name").null_count == n
    assert len(table) == n


def test_ra_near_zero_wraps(catalog):
    row = int(np.argmin(catalog.ra))  # RA 0.0047 deg
    # Far enough west that RA goes below 0 (-> 359.99...), and a radius that reaches it.
    arcsec = (catalog.ra[row] + 0.001) * 3600 * np.cos(np.deg2rad(catalog.dec[row]))
    ra, dec = _offset(catalog.ra[row], catalog.dec[row], arcsec, 270.0)
    assert ra > 359.99
    table = known.match_known_lenses(ra, dec, radius_arcsec=arcsec + 0.5)
    assert table.column("known_name").to_pylist() == [catalog.name[row]]


def test_add_columns_to_candidates(catalog):
    candidates = pa.table(
        {
            "id": pa.array([10, 11, 12]),
            "ra": pa.array([catalog.ra[0], 10.0, np.nan]),
            "dec": pa.array([catalog.dec[0], 10.0, 0.0]),
            "score": pa.array([0.9, 0.8, 0.7]),
        }
    )
    out = known.add_known_lens_columns(candidates)
    assert out.column_names == ["id", "ra", "dec", "score", *known.KNOWN_COLUMNS]
    assert out.column("known_name").to_pylist() == [catalog.name[0], None, None]
    assert out.schema.metadata[b"known_lenses_matched"] == b"1"
    again = known.add_known_lens_columns(out)  # replaces, never duplicates
    assert again.column_names == out.column_names


def test_missing_columns_and_file_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(InputFileError, match="no column 'dec'"):
        known.add_known_lens_columns(pa.table({"ra": [1.0]}))
    with pytest.raises(InputFileError, match="no such known-lens catalogue"):
        known.load_known_lenses(tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,RA [deg],DEC [deg],type,grading\nA,400.0,1.0,galaxy,confident\n")
    with pytest.raises(InputFileError, match="row 2 .*expected degrees"):
        known.load_known_lenses(bad)
    other = tmp_path / "other.csv"
    other.write_text("name,ra,dec\nA,1.0,1.0\n")
    with pytest.raises(InputFileError, match="not a lenscat catalogue"):
        known.load_known_lenses(other)
    monkeypatch.setattr(known.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputFileError, match="install the 'known' extra"):
        known.lenscat_catalog_path()
