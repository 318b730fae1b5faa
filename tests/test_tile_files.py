"""Real survey tile files: scaled integers, celestial frames, SIP, sections, noise, scale.

Every file is built here with astropy in the formats survey products use; positions are
checked against astropy's own high-level transforms (``WCS.world_to_pixel`` and
``WCS.pixel_to_world`` with SkyCoord), which handle frames, axis order and distortions
independently of skyscan.
"""

import gzip

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.hdu.image import _ImageBaseHDU
from astropy.wcs import WCS

from skyscan.tiles import io as tiles_io
from skyscan.tiles.io import (
    Tile,
    TileError,
    check_pixel_scale,
    load_tile,
    pixel_to_sky,
    read_tile_section,
    read_tile_wcs,
    sky_to_pixel,
    tile_background_noise,
    write_tile_band,
)

SIZE = 200
PIXEL = 0.2  # arcsec
#: A cutout centre put back through the WCS must land this close to the catalogue position:
#: 1/20 of a pixel, far below what moves a stamp by one pixel.
CENTRE_TOLERANCE_ARCSEC = 0.01


def _header(kind: str = "icrs", scale: float = PIXEL) -> fits.Header:
    """A TAN header centred on the image, in the frame / axis order / distortion ``kind``."""
    d = scale / 3600
    cards = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 150.0,
        "CRVAL2": 2.0,
        "CRPIX1": SIZE / 2 + 0.5,
        "CRPIX2": SIZE / 2 + 0.5,
        "CDELT1": -d,
        "CDELT2": d,
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "RADESYS": "ICRS",
    }
    if kind == "fk4":  # a photographic-plate era header: B1950 coordinates
        cards.update(RADESYS="FK4", EQUINOX=1950.0, CRVAL1=149.35, CRVAL2=2.25)
    elif kind == "galactic":
        cards.update(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=120.0, CRVAL2=30.0)
        del cards["RADESYS"]
    elif kind == "swapped":  # latitude on the first axis
        cards.update(CTYPE1="DEC--TAN", CTYPE2="RA---TAN", CRVAL1=2.0, CRVAL2=150.0)
        cards.update(CDELT1=d, CDELT2=-d)
    elif kind == "sip":
        cards.update(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2)
        cards.update(A_2_0=2e-5, A_1_1=-1e-5, B_0_2=-1.5e-5, B_1_1=8e-6)
    elif kind == "ecliptic":
        cards.update(CTYPE1="ELON-TAN", CTYPE2="ELAT-TAN")
        del cards["RADESYS"]
    elif kind == "gappt":
        cards.update(RADESYS="GAPPT")
    elif kind == "xlon":
        cards.update(CTYPE1="XLON-TAN", CTYPE2="XLAT-TAN")
    elif kind != "icrs":
        raise ValueError(kind)
    return fits.Header(cards)


def _noise(seed=0, sigma=2.5, shape=(SIZE, SIZE), sources=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = 10.0 + rng.normal(0.0, sigma, shape)
    if sources:  # bright compact sources that the sigma-clipping must remove
        for y, x in rng.integers(5, min(shape) - 5, (20, 2)):
            image[y - 2 : y + 3, x - 2 : x + 3] += 500.0
    return image


def _tile(folder, kind="icrs", bands="gr", scaled_int=False, data=None, name="t") -> Tile:
    paths = {}
    for k, band in enumerate(bands):
        paths[band] = folder / f"{name}_{band}.fits"
        image = _noise(seed=k) if data is None else data[k]
        write_tile_band(paths[band], image, _header(kind), scaled_int=scaled_int)
    return Tile(name, paths)


def _inside_positions(w: WCS, n=200, seed=1):
    """ICRS positions of random pixels inside the image, from astropy's own transform."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, SIZE - 1, (2, n))
    return x, y, w.pixel_to_world(x, y).icrs


# ---------------------------------------------------------------------------------------------
# Scaled integers


def test_scaled_integer_tile_reads_physical_values_with_blank_as_nan(tmp_path):
    images = np.stack([_noise(seed=k) for k in range(2)])
    images[0, 50:60, 70:90] = np.nan
    images[1, 0, :] = np.nan
    tile = _tile(tmp_path, scaled_int=True, data=images)
    bscale = []
    for band in "gr":
        with fits.open(tile.paths[band], do_not_scale_image_data=True) as hdul:
            header, raw = hdul[0].header, hdul[0].data
            assert header["BITPIX"] == 16 and raw.dtype.kind == "i" and header["BZERO"] != 0
            assert (np.isnan(images["gr".index(band)]) == (raw == header["BLANK"])).all()
            bscale.append(header["BSCALE"])
    read_tile_wcs(tile)  # memory-mapping scaled data used to refuse this file
    loaded = load_tile(Tile(tile.name, tile.paths)).data
    assert loaded.dtype == np.float32 and loaded.shape == (2, SIZE, SIZE)
    np.testing.assert_array_equal(np.isnan(loaded), np.isnan(images))
    # quantisation to BSCALE, plus float32 rounding of values near 500
    for k in range(2):
        finite = np.isfinite(images[k])
        err = np.abs(loaded[k][finite] - images[k][finite]).max()
        assert err <= bscale[k] / 2 + 1e-4
    section = read_tile_section(tile, 60, 100, 40, 70)
    np.testing.assert_array_equal(section, loaded[:, 40:70, 60:100])


def test_survey_written_integer_files(tmp_path):
    """Files written the way surveys do, not through write_tile_band: int16 with BSCALE,
    BZERO and BLANK; unsigned 16-bit (BZERO = 32768); int32 with BLANK and no scaling."""
    rng = np.random.default_rng(3)
    raw16 = rng.integers(-30000, 30000, (SIZE, SIZE)).astype(np.int16)
    raw16[10:12, :] = -32768
    hdu = fits.PrimaryHDU(raw16, header=_header())
    hdu.header.update(BSCALE=0.01, BZERO=250.0, BLANK=-32768)
    hdu.writeto(tmp_path / "a_g.fits")
    unsigned = rng.integers(0, 65535, (SIZE, SIZE)).astype(np.uint16)
    fits.PrimaryHDU(unsigned, header=_header()).writeto(tmp_path / "a_r.fits")
    raw32 = rng.integers(-(10**6), 10**6, (SIZE, SIZE)).astype(np.int32)
    raw32[:, 5] = -999
    hdu = fits.PrimaryHDU(raw32, header=_header())
    hdu.header["BLANK"] = -999
    hdu.writeto(tmp_path / "a_i.fits")
    assert fits.getheader(tmp_path / "a_r.fits")["BZERO"] == 32768
    tile = Tile("a", {b: tmp_path / f"a_{b}.fits" for b in "gri"})
    data = load_tile(tile).data
    expected_g = (raw16 * 0.01 + 250.0).astype(np.float32)
    expected_g[10:12, :] = np.nan
    np.testing.assert_allclose(data[0], expected_g, rtol=1e-6, atol=1e-4)
    assert np.isnan(data[0, 10:12]).all() and np.isfinite(data[0, 12:]).all()
    np.testing.assert_array_equal(data[1], unsigned.astype(np.float32))
    expected_i = raw32.astype(np.float32)
    expected_i[:, 5] = np.nan
    np.testing.assert_array_equal(data[2], expected_i)


# ---------------------------------------------------------------------------------------------
# Frames, axis order, distortions


@pytest.mark.parametrize("kind", ["icrs", "fk4", "galactic", "swapped", "sip"])
def test_sky_to_pixel_matches_astropy_in_every_frame(tmp_path, kind):
    tile = read_tile_wcs(_tile(tmp_path, kind))
    w = WCS(_header(kind))
    assert tile.pixel_scale == pytest.approx(PIXEL, rel=1e-9)
    x_true, y_true, coords = _inside_positions(w)
    ra, dec = coords.ra.deg, coords.dec.deg
    x, y = sky_to_pixel(tile, ra, dec)
    # astropy's own SkyCoord -> pixel (frame transform, axis order and SIP inverse).  Not
    # SkyCoord.to_pixel: it returns (y, x) for a DEC-first header (astropy issue #10468).
    x_ref, y_ref = w.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    np.testing.assert_allclose(x, x_ref, atol=1e-3)
    np.testing.assert_allclose(y, y_ref, atol=1e-3)
    np.testing.assert_allclose(x, x_true, atol=1e-3)
    np.testing.assert_allclose(y, y_true, atol=1e-3)
    # the cutout centre, put back through the WCS (astropy's and skyscan's inverse)
    target = SkyCoord(ra, dec, unit="deg")
    assert target.separation(w.pixel_to_world(x, y).icrs).arcsec.max() < CENTRE_TOLERANCE_ARCSEC
    back_ra, back_dec = pixel_to_sky(tile, x, y)
    sep = target.separation(SkyCoord(back_ra, back_dec, unit="deg")).arcsec
    assert sep.max() < CENTRE_TOLERANCE_ARCSEC
    if kind in ("fk4", "galactic", "swapped"):
        # reading the catalogue's RA/Dec as the tile's world coordinates misses by far
        naive = w.all_world2pix(ra, dec, 0)
        assert not np.all(np.abs(np.asarray(naive) - np.stack([x, y])) < 10)


def test_corners_are_icrs(tmp_path):
    tile = read_tile_wcs(_tile(tmp_path, "galactic"))
    corners = tile.corners()
    w = WCS(_header("galactic"))
    ref = w.pixel_to_world([-0.5, SIZE - 0.5], [-0.5, -0.5]).icrs
    np.testing.assert_allclose(corners[:2, 0], ref.ra.deg, atol=1e-9)
    np.testing.assert_allclose(corners[:2, 1], ref.dec.deg, atol=1e-9)


def test_sip_far_outside_the_fit_and_far_side_of_the_sky_give_nan(tmp_path):
    tile = read_tile_wcs(_tile(tmp_path, "sip"))
    _, _, inside = _inside_positions(WCS(_header("sip")), n=5)
    # 2 degrees away the SIP polynomial's inverse diverges; the antipode is off the TAN plane
    ra = np.concatenate([inside.ra.deg, [152.0, 150.0, 330.0, np.nan]])
    dec = np.concatenate([inside.dec.deg, [2.0, 4.0, -2.0, 2.0]])
    with pytest.raises(Exception, match="converge"):  # what the search used to die of
        tile.wcs.all_world2pix(ra[:7], dec[:7], 0)
    x, y = sky_to_pixel(tile, ra, dec)
    assert np.isfinite(x[:5]).all() and np.isfinite(y[:5]).all()
    assert np.isnan(x[5:]).all() and np.isnan(y[5:]).all()
    plain = read_tile_wcs(_tile(tmp_path, "icrs", name="plain"))
    x, y = sky_to_pixel(plain, [330.0, 150.0], [-2.0, 2.0])
    assert np.isnan(x[0]) and np.isnan(y[0]) and np.isfinite(x[1])


@pytest.mark.parametrize(
    "kind, keyword",
    [("ecliptic", "CTYPE1 'ELON-TAN'"), ("gappt", "RADESYS 'GAPPT'"), ("xlon", "CTYPE1 'XLON")],
)
def test_frames_astropy_cannot_identify_are_refused(tmp_path, kind, keyword):
    tile = _tile(tmp_path, kind)
    with pytest.raises(TileError, match="celestial frame not recognised") as err:
        read_tile_wcs(tile)
    message = str(err.value)
    assert message.startswith(f"{tile.paths['g']}: ") and keyword in message
    assert "\n" not in message


def test_bands_must_share_one_pixel_grid(tmp_path):
    tile = _tile(tmp_path)
    header = _header()
    header["CRVAL1"] += 0.5 * PIXEL / 3600  # half a pixel
    write_tile_band(tile.paths["r"], _noise(), header)
    with pytest.raises(TileError, match=r"_r\.fits: band r's WCS differs from band g's by 0\.5"):
        read_tile_wcs(tile)
    write_tile_band(tile.paths["r"], _noise(shape=(SIZE, SIZE + 1)), _header())
    with pytest.raises(TileError, match=r"_r\.fits: band r is \(200, 201\)"):
        read_tile_wcs(tile)


# ---------------------------------------------------------------------------------------------
# Sections


def _count_pixels_read(monkeypatch) -> list[int]:
    """Record how many pixels astropy reads from image files (every read passes here)."""
    counts = []
    original = _ImageBaseHDU._get_raw_data

    def spy(self, shape, code, offset):
        counts.append(int(np.prod(shape)))
        return original(self, shape, code, offset)

    monkeypatch.setattr(_ImageBaseHDU, "_get_raw_data", spy)
    return counts


@pytest.mark.parametrize("scaled_int", [False, True])
@pytest.mark.parametrize("whole_rows", [True, False])
def test_read_tile_section_across_the_edges(tmp_path, monkeypatch, scaled_int, whole_rows):
    tile = _tile(tmp_path, scaled_int=scaled_int)
    full = load_tile(Tile(tile.name, tile.paths)).data
    read_tile_wcs(tile)
    if not whole_rows:  # as for a very wide image: each row's part of the window alone
        monkeypatch.setattr(tiles_io, "WHOLE_ROW_BYTES", 0)
    counts = _count_pixels_read(monkeypatch)
    inside = read_tile_section(tile, 20, 45, 100, 130)
    # only the window's 30 rows of each band are read, whole or only its 25 columns
    assert sum(counts) == 2 * 30 * (SIZE if whole_rows else 25)
    np.testing.assert_array_equal(inside, full[:, 100:130, 20:45])
    corner = read_tile_section(tile, -5, 10, SIZE - 4, SIZE + 6)
    assert corner.shape == (2, 10, 15) and corner.dtype == np.float32
    np.testing.assert_array_equal(corner[:, :4, 5:], full[:, SIZE - 4 :, :10])
    assert np.isnan(corner[:, 4:, :]).all() and np.isnan(corner[:, :, :5]).all()
    outside = read_tile_section(tile, SIZE + 10, SIZE + 20, 0, 5)
    assert outside.shape == (2, 5, 10) and np.isnan(outside).all()
    wide = read_tile_section(tile, -1, SIZE + 1, 3, 5)  # whole rows: one contiguous read
    np.testing.assert_array_equal(wide[:, :, 1:-1], full[:, 3:5, :])


def test_sections_of_gzip_and_tile_compressed_multi_extension_files(tmp_path):
    plain = _tile(tmp_path, name="plain")
    full = load_tile(Tile("plain", plain.paths)).data
    paths = {}
    for band in "gr":
        with fits.open(plain.paths[band]) as hdul:
            image, header = hdul[0].data, hdul[0].header
            mef = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, header)])
            paths[band] = tmp_path / f"gz_{band}.fits.gz"
            with gzip.open(paths[band], "wb") as fh:
                mef.writeto(fh)
            comp = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(image, header)])
            comp.writeto(tmp_path / f"fz_{band}.fits")
    fz = {b: tmp_path / f"fz_{b}.fits" for b in "gr"}
    # float tile compression quantises (lossy): compare with astropy's own whole decompression
    fz_full = np.stack([fits.getdata(fz[b], ext=1) for b in "gr"])
    assert not np.array_equal(fz_full, full)
    for tile, reference in ((Tile("gz", paths), full), (Tile("fz", fz), fz_full)):
        np.testing.assert_array_equal(
            read_tile_section(tile, 150, 210, -3, 40)[:, 3:, :50], reference[:, :40, 150:]
        )
        assert tile.band_hdus == {"g": 1, "r": 1}


def test_truncated_file_is_named(tmp_path):
    tile = read_tile_wcs(_tile(tmp_path))
    data = tile.paths["r"].read_bytes()
    tile.paths["r"].write_bytes(data[: len(data) // 2])
    # a window inside the surviving half would read fine: the file is refused as a whole
    with pytest.raises(TileError, match=rf"^{tile.paths['r']}: unreadable FITS \(truncated"):
        read_tile_section(tile, 0, 10, 0, 10)
    with pytest.raises(TileError, match=rf"^{tile.paths['r']}: unreadable FITS"):
        read_tile_wcs(Tile(tile.name, tile.paths))
    with pytest.raises(TileError, match=rf"^{tile.paths['r']}: unreadable FITS"):
        load_tile(Tile(tile.name, tile.paths))


# ---------------------------------------------------------------------------------------------
# Background noise and pixel scale


@pytest.mark.parametrize("whole_rows", [True, False])
def test_background_noise_is_robust_and_reads_a_bounded_sample(tmp_path, monkeypatch, whole_rows):
    small = _tile(tmp_path, scaled_int=True)
    assert tile_background_noise(small) == pytest.approx([2.5, 2.5], rel=0.03)
    big = np.stack([_noise(seed=5, sigma=4.0, shape=(2000, 1000)) for _ in range(2)])
    tile = _tile(tmp_path, data=big, name="big")
    read_tile_wcs(tile)
    if not whole_rows:
        monkeypatch.setattr(tiles_io, "WHOLE_ROW_BYTES", 0)
    counts = _count_pixels_read(monkeypatch)
    assert tile_background_noise(tile) == pytest.approx([4.0, 4.0], rel=0.03)
    # per band: three bands of 256 whole rows, or nine 256 x 256 windows
    bound = 2 * (3 * 256 * 1000 if whole_rows else 9 * 256 * 256)
    assert sum(counts) <= bound < big.size / 2


def test_background_noise_looks_further_when_the_windows_are_empty(tmp_path):
    image = np.full((1000, 1000), np.nan)
    image[:20] = _noise(seed=2, sigma=3.0, shape=(20, 1000), sources=False)  # outside windows
    tile = _tile(tmp_path, data=[image, image], name="strip")
    assert tile_background_noise(tile) == pytest.approx([3.0, 3.0], rel=0.05)


def test_all_nan_and_constant_bands_are_refused(tmp_path):
    good = _noise()
    tile = _tile(tmp_path, data=[good, np.full((SIZE, SIZE), np.nan)], name="nan")
    with pytest.raises(TileError, match=rf"^{tile.paths['r']}: all pixels NaN"):
        tile_background_noise(tile)
    tile = _tile(tmp_path, data=[np.full((SIZE, SIZE), 7.0), good], name="flat", scaled_int=True)
    with pytest.raises(TileError, match=rf"^{tile.paths['g']}: constant image"):
        tile_background_noise(tile)


def test_pixel_scale_mismatch_is_refused(tmp_path):
    tile = read_tile_wcs(_tile(tmp_path))
    assert check_pixel_scale(tile, 0.2) == pytest.approx(0.2)
    assert check_pixel_scale(tile, 0.201) == pytest.approx(0.2)  # 0.5%: accepted
    with pytest.raises(TileError) as err:
        check_pixel_scale(tile, 0.2 / 1.02)  # the tile's pixels are 2% larger
    message = str(err.value)
    assert message.startswith(f'{tile.paths["g"]}: pixel scale 0.2" x 0.2" differs')
    assert "by 2.0% (more than 1.0%)" in message and "\n" not in message
