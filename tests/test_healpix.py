"""HEALPix partition assignment against healpy and the HATS layout."""

import healpy as hp
import numpy as np
import pytest

from skyscan.skymap import healpix as H


def test_radec_to_pixel_matches_healpy_nested():
    rng = np.random.default_rng(0)
    ra = rng.uniform(0, 360, 5000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 5000)))
    for order in (0, 5, 11, 29):
        ours = H.radec_to_pixel(ra, dec, order)
        theta, phi = np.radians(90 - dec), np.radians(ra)
        np.testing.assert_array_equal(ours, hp.ang2pix(2**order, theta, phi, nest=True))


def test_coarsening_is_a_bit_shift_consistent_with_healpy():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 2000), rng.uniform(-60, 60, 2000)
    fine = H.radec_to_pixel(ra, dec, 29)
    for order in (3, 10, 20):
        np.testing.assert_array_equal(H.coarsen(fine, 29, order), H.radec_to_pixel(ra, dec, order))
    with pytest.raises(ValueError, match="finer order"):
        H.coarsen(fine, 10, 12)


def test_partition_path_is_hats_layout(tmp_path):
    assert H.partition_path(tmp_path, 11, 123456) == (
        tmp_path / "Norder=11" / "Dir=120000" / "Npix=123456.parquet"
    )
    assert H.partition_path("x", 3, 7).as_posix() == "x/Norder=3/Dir=0/Npix=7.parquet"


def test_polygon_covers_its_interior():
    ra = [149.9, 150.1, 150.1, 149.9]
    dec = [2.1, 2.1, 2.3, 2.3]
    pixels = H.pixels_in_polygon(ra, dec, 12)
    rng = np.random.default_rng(2)
    inside = H.radec_to_pixel(rng.uniform(149.9, 150.1, 3000), rng.uniform(2.1, 2.3, 3000), 12)
    assert set(inside) <= set(pixels)
    area = len(pixels) * H.pixel_area_deg2(12)
    assert 0.04 <= area < 0.08  # 0.2 x 0.2 deg plus a border of partly covered pixels


def test_bad_positions():
    with pytest.raises(ValueError, match="NaN"):
        H.radec_to_pixel([np.nan], [0.0], 5)
    with pytest.raises(ValueError, match="Dec outside"):
        H.radec_to_pixel([10.0], [91.0], 5)
    with pytest.raises(ValueError, match="order must be in 0..29"):
        H.nside(30)
