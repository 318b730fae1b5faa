"""``skyscan inject``: simulated arcs painted into tiles written in real-survey FITS conventions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from skyscan.cases.lenses.inject import inject_arcs
from skyscan.cases.lenses.sim import get_bands, get_survey
from skyscan.cases.lenses.tiles import paste_stamps
from skyscan.config import load_config
from skyscan.core.errors import MismatchError, UsageError

BANDS = ("g", "r", "i")
SIZE = 160
PIX = 0.2  # LSST
BSCALE = 0.01  # a pixel step far below the noise (~0.6 of these units)
BZERO = 300.0
BLANK = -32768
MAGZP = 30.0  # tile units: AB mag 30 gives 1 unit (the survey's e-/s are at ~28-29)


def _header(ra, dec, band, rotate_deg=0.0, pix=PIX):
    """A real-looking single-band header: TAN WCS with a CD matrix, and observation keys."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [SIZE / 2 + 0.37, SIZE / 2 - 0.21]
    c, s = np.cos(np.deg2rad(rotate_deg)), np.sin(np.deg2rad(rotate_deg))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * pix / 3600.0
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    header = w.to_header()
    header["TELESCOP"] = "Blanco"
    header["INSTRUME"] = "DECam"
    header["FILTER"] = (f"{band} DECam SDSS c0001", "filter name")
    header["MJD-OBS"] = (58000.123, "MJD of the observation start")
    header["EXPTIME"] = (900.0, "[s] total exposure")
    header["GAIN"] = (4.0, "[e-/ADU]")
    header["MAGZP"] = (MAGZP, "AB mag of one pixel unit")
    header["BUNIT"] = "adu"
    return header


def _sky(rng, shape):
    """Background noise plus a few bright galaxies (Gaussian blobs), in tile units."""
    image = rng.normal(0.0, 0.6, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(4):
        x0, y0 = rng.uniform(20, shape[1] - 20, 2)
        image += 40 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 3.0**2))
    return image


def write_int16_tile(folder, name, ra, dec, rng, blank_box=None):
    """One tile, every band as int16 with BZERO/BSCALE/BLANK written by astropy."""
    for band in BANDS:
        physical = _sky(rng, (SIZE, SIZE)).astype(np.float32)
        hdu = fits.PrimaryHDU(physical, header=_header(ra, dec, band))
        hdu.scale("int16", bzero=BZERO, bscale=BSCALE)
        hdu.header["BLANK"] = BLANK
        if blank_box is not None:
            hdu.data[blank_box] = BLANK  # a masked region (bad column, chip gap)
        hdu.writeto(folder / f"{name}_{band}.fits")


def write_float_tile(folder, name, ra, dec, rng, pix=PIX):
    for band in BANDS:
        header = _header(ra, dec, band, pix=pix)
        data = _sky(rng, (SIZE, SIZE)).astype(np.float32)
        data[5:9, 5:9] = np.nan
        fits.PrimaryHDU(data, header=header).writeto(folder / f"{name}_{band}.fits")


CENTER = (150.1, 2.2)


@pytest.fixture(scope="module")
def config():
    return load_config(None, {"lenses": {"bands": list(BANDS), "survey": "lsst"}, "seed": 11})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two int16 tiles (the second with a BLANK stripe) and one float tile, a catalogue of
    galaxies over them."""
    root = tmp_path_factory.mktemp("inject")
    tiles = root / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(5)
    ra0, dec0 = CENTER
    step = SIZE * PIX / 3600 * 1.5  # apart: no overlap
    write_int16_tile(tiles, "t-int-a", ra0, dec0, rng)
    write_int16_tile(tiles, "t-int-b", ra0 + step, dec0, rng, blank_box=np.s_[:, 70:74])
    write_float_tile(tiles, "t-float", ra0, dec0 + step, rng)
    # Galaxies: a grid over each tile, well apart so that stamps rarely overlap.
    ids, ras, decs = [], [], []
    for k, (ra, dec) in enumerate([(ra0, dec0), (ra0 + step, dec0), (ra0, dec0 + step)]):
        w = WCS(_header(ra, dec, "g"))
        for j, (x, y) in enumerate([(45.3, 50.8), (112.6, 47.1), (50.2, 113.9), (110.7, 109.4)]):
            r, d = w.all_pix2world(x, y, 0)
            ids.append(100 * k + j)
            ras.append(float(r))
            decs.append(float(d))
    ras.append(10.0)  # off every tile
    decs.append(-40.0)
    ids.append(999)
    catalog = root / "galaxies.parquet"
    pq.write_table(
        pa.table({"id": ids, "ra": ras, "dec": decs, "mag_r": np.linspace(19, 21, len(ids))}),
        catalog,
    )
    return root, tiles, catalog


@pytest.fixture(scope="module")
def injected(inputs, config):
    root, tiles, catalog = inputs
    out = root / "out"
    summary = inject_arcs(catalog, tiles, out, config, n=12)
    return out, summary, pq.read_table(out / "injections.parquet")


def _raw(path):
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        return hdul[0].header.copy(), hdul[0].data.copy()


def _physical(path):
    with fits.open(path) as hdul:
        return hdul[0].data.astype(np.float64)


def _stamp_mask(table, tile, shape):
    """Pixels inside any injected stamp of ``tile``."""
    mask = np.zeros(shape, dtype=bool)
    for row in table.filter(pa.compute.equal(table.column("tile"), tile)).to_pylist():
        r = (row["stamp"] - 1) // 2
        cx, cy = int(round(row["x"])), int(round(row["y"]))
        mask[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] = True
    return mask


def test_table_and_summary(injected):
    out, summary, table = injected
    assert summary["arcs"] == 12 and summary["galaxies_on_tiles"] == 12
    assert summary["rows"] == len(table) == 12  # no overlap: one tile per galaxy
    assert 999 not in table.column("id").to_pylist()
    for column in ("x", "y", "theta_E", "magnification", "snr_best", "best_band", "mag_r"):
        assert column in table.column_names
    for band in BANDS:
        assert f"source_mag_{band}" in table.column_names and f"flux_{band}" in table.column_names
    theta = table.column("theta_E").to_numpy()
    assert np.all((theta > 0) & (theta < 5))
    assert np.all(table.column("magnification").to_numpy() > 1)
    assert sorted(p.name for p in out.glob("*.fits")) == sorted(
        f"{t}_{b}.fits" for t in ("t-int-a", "t-int-b", "t-float") for b in BANDS
    )


def test_positions_are_where_the_table_says(injected, inputs):
    """The table's (x, y) is the catalogue galaxy's position in the tile's WCS (< 0.01")."""
    out, _, table = injected
    for row in table.to_pylist():
        w = WCS(fits.getheader(out / f"{row['tile']}_g.fits"))
        ra, dec = w.all_pix2world(row["x"], row["y"], 0)
        sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(row["ra"], row["dec"], unit="deg"))
        assert sep.arcsec < 0.01


def test_light_is_the_simulators_rendering_at_the_table_position(inputs, config, tmp_path):
    """Noise-free, on the float tile: the added light equals the simulator's rendering of the
    table's truth (lens model, source, sub-pixel position), pixel by pixel."""
    from skyscan.cases.lenses.sim import Observation, render

    root, tiles, catalog = inputs
    one = root / "one.parquet"
    pq.write_table(pq.read_table(catalog).slice(9, 1), one)  # one galaxy on t-float
    out = tmp_path / "nonoise"
    inject_arcs(one, tiles, out, config, n=1, noise=False)
    row = pq.read_table(out / "injections.parquet").to_pylist()[0]
    assert row["tile"] == "t-float"
    bands = get_bands(get_survey("lsst"), list(BANDS))
    size = row["stamp"]
    cx, cy = round(row["x"]), round(row["y"])
    ox, oy = (row["x"] - cx) * PIX, (row["y"] - cy) * PIX
    params = {
        "kind": np.array(["lens"], dtype=object),
        "lens_R_sersic": [1.0],
        "lens_n_sersic": [4.0],
        "lens_e1": [0.0],
        "lens_e2": [0.0],
        "lens_center_x": [ox],
        "lens_center_y": [oy],
        "center_x": [ox],
        "center_y": [oy],
        "source_center_x": [ox + row["source_dx"]],
        "source_center_y": [oy + row["source_dy"]],
    }
    for key in ("theta_E", "e1", "e2", "gamma1", "gamma2"):
        params[key] = [row[key]]
    for key in ("R_sersic", "n_sersic", "e1", "e2"):
        params[f"source_{key}"] = [row[f"source_{key}"]]
    for band in BANDS:
        params[f"lens_mag_{band}"] = [99.0]
        params[f"source_mag_{band}"] = [row[f"source_mag_{band}"]]
    obs = Observation(bands, size, config["lenses"]["supersampling"], "coadd")
    model = render({k: np.asarray(v) for k, v in params.items()}, obs).image[0]
    expected = np.zeros((len(bands), SIZE, SIZE))
    paste_stamps(expected, model[None], [cx], [cy])  # clipped at the tile's edges
    for k, band in enumerate(bands):
        diff = _physical(out / f"t-float_{band.name}.fits") - _physical(
            tiles / f"t-float_{band.name}.fits"
        )
        unit = 10 ** (0.4 * (MAGZP - band.zero_point))
        wanted = expected[k] * unit
        np.testing.assert_allclose(np.nan_to_num(diff), wanted, atol=1e-5 * wanted.max())
        assert row[f"flux_{band.name}"] == pytest.approx(model[k].sum() * unit, rel=1e-5)


def test_injected_flux_matches_the_model(injected, inputs, config):
    """Per tile and band, the added light (output - input over the arcs' stamps) equals the
    simulator's model flux, the sum of ``rate(source_mag) * magnification`` in tile units,
    within 5 sigma of the arcs' own Poisson noise and the integer rounding (BSCALE / sqrt(12)
    per pixel), plus 2% for PSF wings cut by the stamp edges; ``flux_<band>`` within 2%."""
    out, _, table = injected
    root, tiles, _ = inputs
    bands = get_bands(get_survey("lsst"), list(BANDS))
    for tile in ("t-int-a", "t-int-b", "t-float"):
        rows = table.filter(pa.compute.equal(table.column("tile"), tile))
        mask = _stamp_mask(rows, tile, (SIZE, SIZE))
        rows = rows.to_pylist()
        for band in bands:
            t_exp = band.exposure_time * band.num_exposures
            before = _physical(tiles / f"{tile}_{band.name}.fits")
            after = _physical(out / f"{tile}_{band.name}.fits")
            diff = np.nan_to_num(after - before)
            unit = 10 ** (0.4 * (MAGZP - band.zero_point))
            model = np.array(
                [band.mag_to_rate(r[f"source_mag_{band.name}"]) * r["magnification"] for r in rows]
            )
            poisson = np.sqrt(model.sum() / t_exp) * unit  # e-/s -> tile units
            rounding = BSCALE * np.sqrt(mask.sum() / 12) if tile != "t-float" else 0.0
            tol = 5 * np.hypot(poisson, rounding) + 0.02 * model.sum() * unit
            blank = np.isnan(before)
            assert diff[mask & ~blank].sum() == pytest.approx(model.sum() * unit, abs=tol), (
                tile,
                band.name,
            )
            flux = np.array([r[f"flux_{band.name}"] for r in rows])
            np.testing.assert_allclose(flux, model * unit, rtol=0.02)


def test_far_pixels_bit_identical_and_blank_stays_blank(injected, inputs):
    out, _, table = injected
    _, tiles, _ = inputs
    for tile in ("t-int-a", "t-int-b", "t-float"):
        for band in BANDS:
            h_in, raw_in = _raw(tiles / f"{tile}_{band}.fits")
            h_out, raw_out = _raw(out / f"{tile}_{band}.fits")
            assert raw_out.dtype == raw_in.dtype
            for key in ("BITPIX", "BZERO", "BSCALE", "BLANK", "MJD-OBS", "FILTER", "GAIN"):
                assert h_out.get(key) == h_in.get(key)
            cards_in = [c for c in h_in.cards if c.keyword != "HISTORY"]
            cards_out = [c for c in h_out.cards if c.keyword != "HISTORY"]
            assert [tuple(c) for c in cards_out] == [tuple(c) for c in cards_in]
            assert any("skyscan inject" in str(v) for v in h_out.get("HISTORY", []))
            far = ~_stamp_mask(table, tile, raw_in.shape)
            assert raw_out[far].tobytes() == raw_in[far].tobytes()
            assert (raw_out != raw_in)[~far].any() or tile == "t-int-b"
            if raw_in.dtype.kind == "i":
                blank = raw_in == BLANK
                assert np.array_equal(raw_out == BLANK, blank)
            else:
                assert np.array_equal(np.isnan(raw_out), np.isnan(raw_in))
    _, raw = _raw(out / "t-int-b_r.fits")
    assert (raw[:, 70:74] == BLANK).all()


def test_same_seed_same_bytes(inputs, config, tmp_path):
    _, tiles, catalog = inputs
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    inject_arcs(catalog, tiles, a, config, fraction=0.5)
    inject_arcs(catalog, tiles, b, config, fraction=0.5)
    inject_arcs(catalog, tiles, c, config, fraction=0.5, seed=12)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ids = pq.read_table(a / "injections.parquet").column("id").to_pylist()
    assert len(ids) == 6
    assert ids != pq.read_table(c / "injections.parquet").column("id").to_pylist() or (
        (a / "injections.parquet").read_bytes() != (c / "injections.parquet").read_bytes()
    )


def test_pixel_scale_mismatch_and_usage_errors(inputs, config, tmp_path):
    root, _, catalog = inputs
    other = tmp_path / "tiles"
    other.mkdir()
    write_float_tile(other, "t-big", *CENTER, np.random.default_rng(1), pix=0.263)
    with pytest.raises(MismatchError, match=r"t-big_g.fits: pixel scale 0.263 .*lsst"):
        inject_arcs(catalog, other, tmp_path / "o", config, n=1)
    with pytest.raises(UsageError, match="exactly one of"):
        inject_arcs(catalog, root / "tiles", tmp_path / "o", config, n=1, fraction=0.5)
    with pytest.raises(UsageError, match="only 12 catalogue galaxies"):
        inject_arcs(catalog, root / "tiles", tmp_path / "o", config, n=13)


def test_cli(inputs, tmp_path, capsys):
    from skyscan.cli import main

    _, tiles, catalog = inputs
    out = tmp_path / "cli"
    code = main(
        ["inject", "--catalog", str(catalog), "--tiles", str(tiles), "--out", str(out)]
        + ["--n", "2", "--seed", "3", "--survey", "lsst", "--bands", "g,r,i"]
    )
    assert code == 0
    assert '"arcs": 2' in capsys.readouterr().out
    assert (out / "injections.parquet").is_file()
    code = main(
        ["inject", "--catalog", str(catalog), "--tiles", str(tiles), "--out", str(out)]
        + ["--n", "2", "--survey", "des"]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "pixel scale" in err
