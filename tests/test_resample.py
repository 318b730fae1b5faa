"""``skyscan tiles resample``: flux, positions, pixel scale, header, noise, the index, failures."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from skyscan.cli.tiles import main as tiles_main
from skyscan.search.tile_index import build_tile_index
from skyscan.tiles.io import TileError, write_tile_band
from skyscan.tiles.resample import resample_tile, target_wcs

MEGACAM = 0.187  # arcsec per pixel
MODEL = 0.2
SIZE = 300


def _header(scale=MEGACAM, size=SIZE, rotation_deg=0.0, **keys) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    t = np.radians(rotation_deg)
    w.wcs.cd = scale / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    header = w.to_header()
    header.update(keys)
    return header


def _gaussian(x0, y0, sigma=2.5, flux=1000.0, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    return (
        flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    )


def _noise(sigma=1.0, size=SIZE, seed=1):
    return np.random.default_rng(seed).normal(0.0, sigma, (size, size))


@pytest.mark.parametrize("method", ["exact", "adaptive"])
def test_flux_position_and_pixel_scale(tmp_path, method):
    x0, y0 = 140.3, 160.7
    write_tile_band(tmp_path / "in.fits", _gaussian(x0, y0), _header(rotation_deg=20.0))
    out = tmp_path / "out" / "in.fits"
    done = resample_tile(tmp_path / "in.fits", out, MODEL, method=method)
    data, header = fits.getdata(out), fits.getheader(out)
    w_in, w_out = WCS(_header(rotation_deg=20.0)), WCS(header)
    np.testing.assert_allclose(proj_plane_pixel_scales(w_out) * 3600, [MODEL, MODEL], atol=1e-6)
    assert data.shape == tuple(done["shape_out"]) == (281, 281)  # 300 x 0.187 / 0.2 = 280.5
    total = np.nansum(data, dtype=np.float64)
    assert total == pytest.approx(1000.0, rel=0.01)
    yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
    cx, cy = (np.nansum(data * a, dtype=np.float64) / total for a in (xx, yy))
    assert w_in.pixel_to_world(x0, y0).separation(w_out.pixel_to_world(cx, cy)).arcsec < 0.02
    # same orientation and centre: the image centres are the same sky position
    centre_in = w_in.pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    centre_out = w_out.pixel_to_world((data.shape[1] - 1) / 2, (data.shape[0] - 1) / 2)
    assert centre_in.separation(centre_out).arcsec < 1e-6
    np.testing.assert_allclose(
        w_out.pixel_scale_matrix / np.linalg.norm(w_out.pixel_scale_matrix, axis=0),
        w_in.pixel_scale_matrix / np.linalg.norm(w_in.pixel_scale_matrix, axis=0),
        atol=1e-12,
    )


def test_target_grid_covers_the_footprint_and_drops_distortions():
    header = _header(size=2000)
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1e-7, "B_0_2": 1e-7})
    w_out, shape = target_wcs(WCS(header), (2000, 2000), MODEL)
    assert shape == (1870, 1870)  # 2000 x 0.187 / 0.2, not 1871 by rounding
    assert list(w_out.wcs.ctype) == ["RA---TAN", "DEC--TAN"] and w_out.sip is None
    np.testing.assert_allclose(w_out.wcs.crval, [150.1, 2.2])


def test_header_keywords_scaled_integers_extensions_and_gzip(tmp_path):
    primary = fits.PrimaryHDU(header=fits.Header({"FILTER": "r.MP9602", "EXPTIME": 600.0}))
    image = _gaussian(150, 150) + _noise(0.5)
    header = _header(MAGZP=30.0, GAIN=1.6, BUNIT="electron/s", PHOTZP=30.1)
    header["HISTORY"] = "stacked by the survey pipeline"
    write_tile_band(tmp_path / "plain.fits", image, header, scaled_int=True)
    with fits.open(tmp_path / "plain.fits") as hdul:
        raw = fits.ImageHDU(hdul[0].data, header=hdul[0].header)  # scaled back to float
    fits.HDUList([primary, raw]).writeto(tmp_path / "mef.fits.gz")
    for name, hdu in (("plain.fits", None), ("mef.fits.gz", 1)):
        out = tmp_path / "out" / name
        resample_tile(tmp_path / name, out, MODEL, hdu=hdu)
        h = fits.getheader(out)
        for key, value in (("MAGZP", 30.0), ("GAIN", 1.6), ("BUNIT", "electron/s")):
            assert h[key] == value
        assert "stacked by the survey pipeline" in str(h["HISTORY"])
        assert h["RSMPSCAL"] == pytest.approx(MEGACAM) and h["RSMPMETH"] == "exact"
        assert h["RSMPFLUX"] is True and h["RSMPAREA"] == pytest.approx((MODEL / MEGACAM) ** 2)
        assert "BSCALE" not in h and "BLANK" not in h and h["BITPIX"] == -32
        assert np.nansum(fits.getdata(out), dtype=np.float64) == pytest.approx(
            image.sum(), rel=0.01
        )
    assert h["FILTER"] == "r.MP9602" and h["EXPTIME"] == 600.0  # from the primary HDU
    with open(tmp_path / "out" / "mef.fits.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzipped as its name says


def test_surface_brightness_is_not_rescaled(tmp_path):
    write_tile_band(tmp_path / "sb.fits", np.full((SIZE, SIZE), 3.0), _header(BUNIT="MJy/sr"))
    resample_tile(tmp_path / "sb.fits", tmp_path / "out.fits", MODEL)
    data, h = fits.getdata(tmp_path / "out.fits"), fits.getheader(tmp_path / "out.fits")
    assert h["RSMPFLUX"] is False
    np.testing.assert_allclose(data[1:-1, 1:-1], 3.0, rtol=1e-6)


@pytest.mark.parametrize("method", ["exact", "adaptive"])
def test_noise_keywords_match_a_resampled_white_noise_image(tmp_path, method):
    noise = _noise(seed=7)
    write_tile_band(tmp_path / "noise.fits", noise, _header())
    resample_tile(tmp_path / "noise.fits", tmp_path / "out.fits", MODEL, method=method)
    data, h = fits.getdata(tmp_path / "out.fits"), fits.getheader(tmp_path / "out.fits")
    inner = data[8:-8, 8:-8]
    measured = np.std(inner[np.isfinite(inner)]) / np.std(noise)
    assert h["RSMPNOIS"] == pytest.approx(measured, rel=0.05)
    assert h["RSMPNOIS"] < 0.9  # regridding does correlate the noise
    assert h["RSMPCORR"] == pytest.approx(h["RSMPNOIS"] / np.sqrt(h["RSMPAREA"]), rel=1e-5)


def test_masked_pixels_stay_masked(tmp_path):
    image = _noise()
    image[100:104, 200:203] = np.nan
    write_tile_band(tmp_path / "in.fits", image, _header())
    resample_tile(tmp_path / "in.fits", tmp_path / "out.fits", MODEL)
    data = fits.getdata(tmp_path / "out.fits")
    w_in, w_out = WCS(_header()), WCS(fits.getheader(tmp_path / "out.fits"))
    x, y = w_out.world_to_pixel(w_in.pixel_to_world(201, 101.5))
    assert np.isnan(data[round(float(y)), round(float(x))])
    assert 4 <= np.isnan(data).sum() <= 6 * 5  # only the pixels over the masked ones


def _band_files(folder, sigma=2.0, scale=MEGACAM):
    folder.mkdir(parents=True, exist_ok=True)
    for k, band in enumerate("gr"):
        image = _noise(sigma, seed=10 + k) + _gaussian(150, 150, flux=5000)
        write_tile_band(folder / f"cfht_{band}.fits", image, _header(scale, MAGZP=30.0))
    return sorted(folder.glob("*.fits"))


def test_index_accepts_the_resampled_tile_with_its_noise_corrected(tmp_path):
    files = _band_files(tmp_path / "megacam")
    with pytest.raises(TileError, match="none of the 1 tile"):
        build_tile_index(tmp_path / "megacam", "gr", tmp_path / "idx0", pixel_scale=MODEL)
    (reason,) = json.loads((tmp_path / "idx0" / "index.json").read_text())["problems"].values()
    assert "skyscan tiles resample" in reason and "--pixel-scale 0.2" in reason

    code = tiles_main(
        ["resample", *map(str, files), "--pixel-scale", "0.2", "--out", str(tmp_path / "r")]
    )
    assert code == 0
    summary = build_tile_index(tmp_path / "r", "gr", tmp_path / "idx", pixel_scale=MODEL)
    assert summary["problems"] == {} and summary["tiles"] == 1
    row = pq.read_table(tmp_path / "idx" / "tiles.parquet").to_pylist()[0]
    assert row["pixel_scale"] == pytest.approx(MODEL, rel=1e-6)
    # The per-pixel sigma of the resampled tile is ~0.74 x 2.0 (correlated); the index
    # records the sigma of uncorrelated 0.2" pixels of the same depth: 2.0 x 0.2 / 0.187.
    depth = 2.0 * MODEL / MEGACAM
    assert row["noise"] == pytest.approx([depth, depth], rel=0.05)
    h = fits.getheader(tmp_path / "r" / "cfht_g.fits")
    uncorrected = row["noise"][0] * h["RSMPCORR"]
    assert uncorrected < 0.8 * depth


def test_bad_files_are_named_and_the_others_done(tmp_path, capsys):
    good = _band_files(tmp_path / "in")[0]
    corrupt = tmp_path / "in" / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =  T" + bytes(range(256)) * 20)
    no_wcs = tmp_path / "in" / "nowcs.fits"
    fits.PrimaryHDU(np.ones((50, 50), np.float32)).writeto(no_wcs)
    out = tmp_path / "out"
    args = [str(corrupt), str(good), str(no_wcs), "--pixel-scale", "0.2", "--out", str(out)]
    assert tiles_main(["resample", *args]) == 1
    captured = capsys.readouterr()
    assert f"{corrupt}: unreadable FITS" in captured.err
    assert f"{no_wcs}: no 2-D image HDU with a celestial WCS" in captured.err
    assert "2 of 3 file(s) failed" in captured.err
    assert json.loads(captured.out)["resampled"] == 1
    assert sorted(p.name for p in out.iterdir()) == [good.name]  # nothing else, no temporary

    # an existing output is not replaced without --overwrite (before any work)
    assert tiles_main(["resample", str(good), "--pixel-scale", "0.2", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_no_half_written_output(tmp_path, monkeypatch):
    (good, _) = _band_files(tmp_path / "in")
    out = tmp_path / "out" / good.name
    resample_tile(good, out, MODEL)
    before = out.read_bytes()

    def dies_half_way(self, fileobj, *args, **kwargs):
        with open(fileobj, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError("the disk went away")

    monkeypatch.setattr(fits.HDUList, "writeto", dies_half_way)
    with pytest.raises(OSError, match="the disk went away"):
        resample_tile(good, out, MODEL, method="adaptive", overwrite=True)
    assert out.read_bytes() == before  # the earlier output, whole
    assert [p.name for p in out.parent.iterdir()] == [good.name]  # no temporary left
    with pytest.raises(OSError):
        resample_tile(good, tmp_path / "new" / good.name, MODEL)
    assert not (tmp_path / "new" / good.name).exists()


def test_output_cannot_replace_its_input(tmp_path):
    (good, _) = _band_files(tmp_path / "in")
    from skyscan.core.errors import UsageError

    with pytest.raises(UsageError, match="is the input itself"):
        resample_tile(good, good, MODEL, overwrite=True)
