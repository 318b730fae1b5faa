"""Reading and writing survey tiles: one FITS file per band, any celestial WCS astropy reads.

A tile set is found from a folder and a file-name pattern (``{tile}_{band}.fits`` by
default; ``.fits.gz``, tile-compressed and multi-extension files work: the first HDU holding a
2-D image with a celestial WCS is used, or the one ``hdu`` names).

Real survey products are read as they are written:

* integer images scaled with ``BSCALE``/``BZERO`` come back as float32 in physical units,
  ``BLANK`` pixels (and float NaN) as NaN;
* the WCS may be in any celestial frame astropy identifies (ICRS, FK5, FK4 with its
  equinox, Galactic, ...) with the longitude and latitude axes in either order, and may carry
  distortions (SIP, ...).  Catalogue positions are ICRS degrees: :func:`sky_to_pixel`
  transforms them into the tile's frame before the WCS; a position whose distortion
  inverse does not converge, or that lies where the projection is undefined, comes back as
  NaN (off the tile) instead of stopping the search;
* pixels are read by window (:func:`read_tile_section`, through astropy's ``hdu.section``)
  so a search need not hold whole 10k x 10k tiles in memory.

Problems with a tile (missing band, unreadable or truncated file, no celestial WCS, a frame
astropy does not know, bands on different pixel grids, an all-NaN or constant band) raise
:class:`TileError` with one line naming the file; the search records it and carries on.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skyscan.core.errors import InputFileError

__all__ = [
    "Tile",
    "TileError",
    "check_pixel_scale",
    "find_tiles",
    "load_tile",
    "pixel_to_sky",
    "read_band_unscaled",
    "read_image_headers",
    "read_tile_section",
    "read_tile_wcs",
    "sky_to_pixel",
    "tile_background_noise",
    "write_tile_band",
]

#: Bands of one tile must map every pixel to the same sky position within this (pixels).
WCS_AGREEMENT_PIXELS = 0.01
#: A pixel found by inverting a distorted WCS must map back to its sky position within this.
INVERSION_CHECK_PIXELS = 0.01
#: Windows of images whose rows are at most this long (bytes) are read as whole rows, in one
#: contiguous read; wider images row by row.  astropy's section costs about 0.2 ms per row
#: read (measured here, astropy 8), the time to read more than this from the page cache.
WHOLE_ROW_BYTES = 64 * 1024
#: Background noise: side of the sample windows and their number per axis.
NOISE_WINDOW = 256
NOISE_WINDOWS_PER_AXIS = 3
#: Header keyword ``skyscan tiles resample`` writes (:mod:`skyscan.tiles.resample`): the
#: per-pixel background sigma of the resampled image over that of uncorrelated noise of the
#: same depth on its pixels (below 1: regridding correlates the noise and lowers the
#: per-pixel sigma without lowering the noise per unit area).
NOISE_CORRELATION_KEY = "RSMPCORR"
#: Fewer finite pixels than this in the sample windows: look at the whole band instead.
NOISE_MIN_SAMPLE = 1000
#: The whole-band fallback keeps at most about this many pixels (a strided subsample).
NOISE_MAX_SAMPLE = 1_000_000


class TileError(InputFileError):
    """A tile cannot be used; the message names the file and the reason."""


@dataclass
class Tile:
    """One tile: its name and one file per band; the WCS and pixels are read on demand.

    Attributes
    ----------
    name : str
    paths : dict
        ``{band: path}``, in the model's band order.
    hdu : int or None
        The HDU to read in every file; None: the first 2-D image with a celestial WCS.
    wcs : astropy.wcs.WCS
        The celestial WCS of the first band (with its distortions), filled by
        :func:`read_tile_wcs`.
    shape : tuple
        ``(height, width)`` in pixels.
    data : ndarray or None
        ``(bands, height, width)`` float32, only after :func:`load_tile`.
    frame : astropy.coordinates.BaseCoordinateFrame
        The WCS's celestial frame (``wcs_to_celestial_frame``).
    pixel_scale : float
        Arcsec per pixel, the mean of the two axes at the reference pixel.
    band_hdus : dict
        ``{band: HDU index}`` of the image in each file.
    noise_correlation : dict
        ``{band: factor}``: the header's ``RSMPCORR`` (1.0 without it), by which the
        per-pixel sigma of a resampled band understates its noise (see
        ``NOISE_CORRELATION_KEY``).
    """

    name: str
    paths: dict[str, Path]
    hdu: int | None = None
    wcs: object = None
    shape: tuple[int, int] | None = None
    data: np.ndarray | None = field(default=None, repr=False)
    frame: object = field(default=None, repr=False)
    pixel_scale: float | None = None
    band_hdus: dict[str, int] = field(default_factory=dict, repr=False)
    noise_correlation: dict[str, float] = field(default_factory=dict, repr=False)

    def corners(self) -> np.ndarray:
        """ICRS RA/Dec (deg) of the four outer pixel corners, counter-clockwise."""
        if self.wcs is None or self.frame is None:
            read_tile_wcs(self)
        h, w = self.shape
        px = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
        py = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
        ra, dec = pixel_to_sky(self, px, py)
        return np.stack([ra, dec], axis=1)


def find_tiles(
    folder: str | Path, bands, pattern: str = "{tile}_{band}.fits", hdu: int | None = None
) -> tuple[list[Tile], dict[str, str]]:
    """Tiles in ``folder`` that match ``pattern``; a tile missing a band is reported.

    Returns
    -------
    tiles : list of Tile
        Complete tiles, sorted by name.
    problems : dict
        ``{tile or file: reason}`` for incomplete tiles.
    """
    folder = Path(folder)
    if "{tile}" not in pattern or "{band}" not in pattern:
        raise TileError(f"tile pattern {pattern!r} must contain {{tile}} and {{band}}")
    regex = re.compile(
        "^"
        + re.escape(pattern)
        .replace(r"\{tile\}", "(?P<tile>.+?)")
        .replace(r"\{band\}", "(?P<band>[^_./]+)")
        + r"(\.gz)?$"
    )
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = regex.match(path.name)
        if m and m.group("band") in bands:
            found.setdefault(m.group("tile"), {})[m.group("band")] = path
    if not found:
        raise TileError(f"{folder}: no file matches {pattern!r} for bands {list(bands)}")
    tiles, problems = [], {}
    for name in sorted(found):
        missing = [b for b in bands if b not in found[name]]
        if missing:
            problems[name] = f"missing band(s) {', '.join(missing)}"
        else:
            tiles.append(Tile(name, {b: found[name][b] for b in bands}, hdu))
    return tiles, problems


# ---------------------------------------------------------------------------------------------
# Opening files


def _unreadable(path, exc: Exception) -> TileError:
    return TileError(f"{path}: unreadable FITS ({type(exc).__name__}: {exc})", path=path)


@contextmanager
def _open_fits(path: Path):
    """The file as an HDUList; any astropy failure becomes a TileError naming the file.

    ``memmap=False`` because astropy refuses to memory-map scaled integers (BSCALE/BZERO/
    BLANK); ``hdu.section`` still reads only the rows asked for.  ``uint=False`` makes
    pseudo-unsigned integers (BZERO = 2^15) go through the same float path as other scaled
    data, where BLANK becomes NaN.
    """
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdul = fits.open(path, memmap=False, uint=False)
        except Exception as exc:  # astropy raises many kinds on corrupt or truncated files
            raise _unreadable(path, exc) from None
        try:
            yield hdul
        except TileError:
            raise
        except Exception as exc:
            raise _unreadable(path, exc) from None
        finally:
            hdul.close()


def _is_2d_image(h) -> bool:
    # From the header alone: touching ``h.data`` would read (or fail to memory-map) the pixels.
    header = h.header
    return (
        h.is_image
        and header.get("NAXIS") == 2
        and int(header.get("NAXIS1", 0)) > 0
        and int(header.get("NAXIS2", 0)) > 0
    )


def _image_hdu(hdul, hdu: int | None, path: Path):
    """``(index, HDU, celestial WCS)`` of the tile image in an open file."""
    from astropy.wcs import WCS

    candidates = [hdu] if hdu is not None else range(len(hdul))
    for k in candidates:
        if k >= len(hdul):
            raise TileError(f"{path}: no HDU {k} (the file has {len(hdul)})", path=path)
        h = hdul[k]
        if _is_2d_image(h):
            try:
                wcs = WCS(h.header, fobj=hdul).celestial
            except Exception as exc:  # wcslib rejects malformed keywords with several types
                raise TileError(
                    f"{path}: HDU {k}: invalid WCS ({type(exc).__name__}: {exc})", path=path
                ) from None
            if wcs.has_celestial and wcs.naxis == 2:
                return k, h, wcs
            if hdu is not None:
                raise TileError(f"{path}: HDU {k} has no celestial WCS", path=path)
        elif hdu is not None:
            raise TileError(f"{path}: HDU {k} is not a 2-D image", path=path)
    raise TileError(f"{path}: no 2-D image HDU with a celestial WCS", path=path)


def _check_complete(h, path: Path) -> None:
    """Refuse an uncompressed image whose file ends before its pixels do.

    astropy only warns on open and a section inside the surviving part reads fine, so without
    this a truncated tile would be searched with its missing rows silently absent.
    """
    from astropy.io.fits import CompImageHDU

    info = h.fileinfo()
    if info is None or getattr(info["file"], "compression", None):
        return  # in memory, or .gz: the size on disk says nothing
    if isinstance(h, CompImageHDU):
        # The compressed table's length is not in the image header: require at least its
        # last 2880-byte block to have begun.
        need = info["datLoc"] + max(info["datSpan"] - 2880, 0) + 1
    else:
        header = h.header
        need = info["datLoc"] + abs(header["BITPIX"]) // 8 * header["NAXIS1"] * header["NAXIS2"]
    size = os.path.getsize(path)
    if size < need:
        raise TileError(
            f"{path}: unreadable FITS (truncated: {size} bytes, the header announces {need})",
            path=path,
        )


# ---------------------------------------------------------------------------------------------
# WCS and frames


def _frame_keywords(wcs) -> str:
    """The header keywords that decide the frame, for error messages."""
    c = wcs.wcs
    lng, lat = c.ctype[c.lng], c.ctype[c.lat]
    if lng.startswith("RA") and lat.startswith("DEC"):
        equinox = "absent" if np.isnan(c.equinox) else f"{c.equinox:g}"
        if c.radesys in ("ICRS", "FK5", "FK4", "FK4-NO-E", ""):
            return f"EQUINOX {equinox} with RADESYS {c.radesys!r}"
        return f"RADESYS {c.radesys!r} (EQUINOX {equinox})"
    return f"CTYPE{c.lng + 1} {lng!r}, CTYPE{c.lat + 1} {lat!r}"


def _celestial_frame(wcs, path: Path):
    """The astropy frame of ``wcs``, checked to be reachable from ICRS."""
    import astropy.units as u
    from astropy.coordinates import Galactic, SkyCoord
    from astropy.wcs.utils import celestial_frame_to_wcs, wcs_to_celestial_frame

    try:
        lng, lat = (wcs.wcs.ctype[i][:4] for i in (wcs.wcs.lng, wcs.wcs.lat))
        if (lng, lat) == ("GLON", "GLAT"):
            # RADESYS does not apply to Galactic axes, but astropy lets a stray one win.
            frame = Galactic()
        else:
            frame = wcs_to_celestial_frame(wcs)
        # astropy picks the frame from RADESYS first: ecliptic axes (ELON/ELAT, for which
        # wcslib defaults RADESYS to ICRS) would come back as ICRS.  Refuse any frame whose
        # own axes are not the header's.
        expected = celestial_frame_to_wcs(frame).wcs.ctype
        if (expected[0][:4], expected[1][:4]) != (lng, lat):
            raise ValueError(
                f"astropy reads the frame as {type(frame).__name__}, whose axes are "
                f"{expected[0][:4].rstrip('-')}/{expected[1][:4].rstrip('-')}"
            )
        # A frame astropy names but cannot reach from ICRS (Earth or planetary coordinates,
        # a frame needing an obstime the header lacks) is as useless as an unknown one.
        SkyCoord(0 * u.deg, 0 * u.deg, frame="icrs").transform_to(frame)
    except Exception as exc:
        raise TileError(
            f"{path}: celestial frame not recognised by astropy ({_frame_keywords(wcs)}; "
            f"{type(exc).__name__}: {exc})",
            path=path,
        ) from None
    return frame


def _pixel_scales(wcs) -> np.ndarray:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return proj_plane_pixel_scales(wcs) * 3600.0  # celestial axes are in degrees


def _icrs_to_frame(ra, dec, frame):
    from astropy.coordinates import ICRS, SkyCoord, UnitSphericalRepresentation

    if type(frame) is ICRS:  # the common case: no transformation at all
        return ra, dec
    import astropy.units as u

    sph = (
        SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
        .transform_to(frame)
        .represent_as(UnitSphericalRepresentation)
    )
    return sph.lon.deg, sph.lat.deg


def _frame_to_icrs(lon, lat, frame):
    from astropy.coordinates import ICRS, SkyCoord

    if type(frame) is ICRS:
        return lon % 360, lat
    import astropy.units as u

    c = SkyCoord(lon * u.deg, lat * u.deg, frame=frame).icrs
    return c.ra.deg % 360, c.dec.deg


def _pixel_to_icrs(wcs, frame, x, y):
    pixel = np.column_stack([np.ravel(x), np.ravel(y)]).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        world = wcs.all_pix2world(pixel, 0)
    return _frame_to_icrs(world[:, wcs.wcs.lng], world[:, wcs.wcs.lat], frame)


def _separation_arcsec(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance (haversine, accurate at milliarcsec scales)."""
    lon1, lat1, lon2, lat2 = (np.radians(a) for a in (lon1, lat1, lon2, lat2))
    s = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1)))) * 3600.0


def read_tile_wcs(tile: Tile) -> Tile:
    """Fill a tile's WCS, shape, frame and pixel scale from the band headers (no pixel read).

    Every band file is opened (headers only): each must hold a 2-D image with a celestial
    WCS in a frame astropy identifies, be complete on disk, and be on the same pixel grid as
    the first band (same shape, same sky position for the corners and centre within
    ``WCS_AGREEMENT_PIXELS``).

    Parameters
    ----------
    tile : Tile

    Returns
    -------
    Tile
        The same object, with ``wcs``, ``shape``, ``frame``, ``pixel_scale``,
        ``band_hdus`` and ``noise_correlation`` filled.

    Raises
    ------
    TileError
        Naming the file: unreadable or truncated, no celestial WCS, a frame astropy cannot
        identify (the message quotes RADESYS/EQUINOX or CTYPE), a band of another shape or
        WCS, an ``RSMPCORR`` that is not a positive number.
    """
    first = None
    band_hdus = {}
    correlation = {}
    for band, path in tile.paths.items():
        with _open_fits(path) as hdul:
            k, h, wcs = _image_hdu(hdul, tile.hdu, path)
            _check_complete(h, path)
            shape = (int(h.header["NAXIS2"]), int(h.header["NAXIS1"]))
            correlation[band] = _noise_correlation(h.header, path)
        frame = _celestial_frame(wcs, path)
        band_hdus[band] = k
        if first is None:
            first = (band, wcs, shape, frame)
            continue
        band0, wcs0, shape0, frame0 = first
        if shape != shape0:
            raise TileError(f"{path}: band {band} is {shape}, other bands {shape0}", path=path)
        hgt, wid = shape
        px = np.array([-0.5, wid - 0.5, wid - 0.5, -0.5, (wid - 1) / 2])
        py = np.array([-0.5, -0.5, hgt - 0.5, hgt - 0.5, (hgt - 1) / 2])
        ra0, dec0 = _pixel_to_icrs(wcs0, frame0, px, py)
        ra1, dec1 = _pixel_to_icrs(wcs, frame, px, py)
        offset = np.nanmax(_separation_arcsec(ra0, dec0, ra1, dec1)) / _pixel_scales(wcs0).mean()
        if not offset <= WCS_AGREEMENT_PIXELS:
            raise TileError(
                f"{path}: band {band}'s WCS differs from band {band0}'s by {offset:.3g} pixels "
                f"(the bands of a tile must share one pixel grid)",
                path=path,
            )
    _, tile.wcs, tile.shape, tile.frame = first
    tile.pixel_scale = float(_pixel_scales(tile.wcs).mean())
    tile.band_hdus = band_hdus
    tile.noise_correlation = correlation
    return tile


def _noise_correlation(header, path: Path) -> float:
    value = header.get(NOISE_CORRELATION_KEY, 1.0)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise TileError(
            f"{path}: {NOISE_CORRELATION_KEY} = {header.get(NOISE_CORRELATION_KEY)!r} is not a "
            "positive number",
            path=path,
        )
    return value


def sky_to_pixel(tile: Tile, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions on ``tile`` of ICRS positions.

    The positions are transformed from ICRS to the tile's frame (FK4, Galactic, ...) with
    astropy, then through the full WCS with its distortions (SIP, ...), with the longitude
    and latitude put on whichever axes the header gives them.

    Parameters
    ----------
    tile : Tile
        Its WCS is read first if not yet filled.
    ra, dec : array_like
        ICRS degrees.

    Returns
    -------
    x, y : ndarray of float64
        The shape of ``ra``.  NaN where the position is undefined: the projection is
        invalid there (the far side of the sky for TAN), the distortion inverse diverges or
        does not converge (far outside a SIP fit), or the pixel found does not map back to
        the position within ``INVERSION_CHECK_PIXELS``.  Such points count as off the tile;
        nothing is raised for them.
    """
    from astropy.wcs import NoConvergence

    if tile.wcs is None or tile.frame is None or tile.pixel_scale is None:
        read_tile_wcs(tile)
    ra, dec = np.broadcast_arrays(np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    shape = ra.shape
    wcs = tile.wcs
    lon, lat = _icrs_to_frame(ra.ravel(), dec.ravel(), tile.frame)
    world = np.empty((lon.size, 2))
    world[:, wcs.wcs.lng], world[:, wcs.wcs.lat] = lon, lat
    pixel = np.full_like(world, np.nan)
    valid = np.isfinite(world).all(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            pixel[valid] = wcs.all_world2pix(world[valid], 0, maxiter=50, detect_divergence=True)
        except NoConvergence as exc:
            # Keep the points that converged; the others are off the tile, not an error.
            found = np.array(exc.best_solution, dtype=np.float64)
            for bad in (exc.divergent, exc.slow_conv):
                if bad is not None:
                    found[np.asarray(bad, dtype=int)] = np.nan
            pixel[valid] = found
        # The inverse of a distorted WCS is iterative: check each answer maps back.
        back = wcs.all_pix2world(pixel, 0)
    miss = _separation_arcsec(lon, lat, back[:, wcs.wcs.lng], back[:, wcs.wcs.lat])
    pixel[~(miss <= INVERSION_CHECK_PIXELS * tile.pixel_scale)] = np.nan
    return pixel[:, 0].reshape(shape), pixel[:, 1].reshape(shape)


def pixel_to_sky(tile: Tile, x, y) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec (degrees) of 0-based pixel positions on ``tile``: the inverse of
    :func:`sky_to_pixel`.

    Parameters
    ----------
    tile : Tile
    x, y : array_like
        0-based pixel positions (any shape).

    Returns
    -------
    ra, dec : ndarray of float64
        ICRS degrees, RA in [0, 360); NaN where the pixel maps nowhere.
    """
    if tile.wcs is None or tile.frame is None:
        read_tile_wcs(tile)
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    ra, dec = _pixel_to_icrs(tile.wcs, tile.frame, x, y)
    return np.asarray(ra).reshape(x.shape), np.asarray(dec).reshape(x.shape)


def check_pixel_scale(tile: Tile, expected_arcsec: float, tolerance: float = 0.01) -> float:
    """Refuse a tile whose pixels are not the model's size.

    Both axes are checked (at the reference pixel), so a tile with non-square pixels is
    refused even when their mean is right.  No resampling is done.

    Parameters
    ----------
    tile : Tile
    expected_arcsec : float
        The model's pixel scale (arcsec per pixel; the model card's ``pixel_scale``).
    tolerance : float
        Largest accepted relative difference (0.01 = 1%).

    Returns
    -------
    float
        The tile's pixel scale (arcsec, mean of the axes).

    Raises
    ------
    TileError
        Naming the first band's file, both scales and the difference.
    """
    if not expected_arcsec or expected_arcsec <= 0:
        raise ValueError(f"expected pixel scale must be positive, got {expected_arcsec!r}")
    if tile.wcs is None:
        read_tile_wcs(tile)
    scales = _pixel_scales(tile.wcs)
    worst = float(np.max(np.abs(scales / expected_arcsec - 1)))
    if worst > tolerance:
        path = next(iter(tile.paths.values()))
        raise TileError(
            f'{path}: pixel scale {scales[0]:.4g}" x {scales[1]:.4g}" differs from the '
            f"model's {expected_arcsec:.4g}\" by {worst:.1%} (more than {tolerance:.1%}); "
            f"resample it with `skyscan tiles resample FILES --pixel-scale {expected_arcsec:g} "
            "--out DIR`, or train a model at the survey's pixel scale",
            path=path,
        )
    return tile.pixel_scale


# ---------------------------------------------------------------------------------------------
# Pixels


def _read_windows(tile: Tile, band: str, windows) -> list[np.ndarray]:
    """Pixels of one band in each ``(x0, x1, y0, y1)`` window, float32, NaN beyond the edge.

    The file is opened once for all windows; each is read through ``hdu.section``: for an
    uncompressed file only the window's rows (whole rows up to ``WHOLE_ROW_BYTES``, else
    only the window's part of each), for a tile-compressed one only its compression tiles.
    """
    path = tile.paths[band]
    hgt, wid = tile.shape
    out = []
    with _open_fits(path) as hdul:
        k = tile.band_hdus.get(band)
        if k is None:
            k, h, _ = _image_hdu(hdul, tile.hdu, path)
        else:
            h = hdul[k]
        _check_complete(h, path)
        if (int(h.header["NAXIS2"]), int(h.header["NAXIS1"])) != tile.shape:
            raise TileError(f"{path}: image is no longer {tile.shape} (changed on disk?)")
        whole_rows = wid * abs(h.header["BITPIX"]) // 8 <= WHOLE_ROW_BYTES
        rows_read = None  # ((ys, ye), pixels): windows side by side share one read
        for x0, x1, y0, y1 in windows:
            block = np.full((y1 - y0, x1 - x0), np.nan, dtype=np.float32)
            xs, xe, ys, ye = max(x0, 0), min(x1, wid), max(y0, 0), min(y1, hgt)
            if xs < xe and ys < ye:
                if whole_rows:
                    if rows_read is None or rows_read[0] != (ys, ye):
                        rows_read = ((ys, ye), np.asarray(h.section[ys:ye, :]))
                    part = rows_read[1][:, xs:xe]
                else:
                    part = h.section[ys:ye, xs:xe]
                part = np.asarray(part)
                if part.shape != (ye - ys, xe - xs):  # a short read from a damaged file
                    raise TileError(
                        f"{path}: unreadable FITS (rows {ys}-{ye} gave {part.shape})", path=path
                    )
                block[ys - y0 : ye - y0, xs - x0 : xe - x0] = part
            out.append(block)
    return out


def read_tile_section(tile: Tile, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """One window of every band: pixels ``[y0:y1, x0:x1]`` (0-based, end excluded).

    Only that window's rows are read (through astropy's ``hdu.section``; see
    ``WHOLE_ROW_BYTES``; a ``.fits.gz`` file is decompressed up to the window's last row).
    Scaled integers are returned in physical units (``BSCALE``/``BZERO`` applied) with
    ``BLANK`` pixels as NaN.

    Parameters
    ----------
    tile : Tile
        Its WCS is read first if not yet filled.
    x0, x1, y0, y1 : int
        The window; it may extend beyond the image (or lie wholly outside it).

    Returns
    -------
    ndarray, shape (bands, y1 - y0, x1 - x0), float32
        NaN beyond the image, at BLANK pixels and where the file holds NaN.

    Raises
    ------
    TileError
        Naming the file, when it is unreadable, truncated or changed on disk.
    """
    x0, x1, y0, y1 = (int(v) for v in (x0, x1, y0, y1))
    if x1 < x0 or y1 < y0:
        raise ValueError(f"empty-or-reversed window x {x0}:{x1}, y {y0}:{y1}")
    if tile.wcs is None:
        read_tile_wcs(tile)
    planes = [_read_windows(tile, band, [(x0, x1, y0, y1)])[0] for band in tile.paths]
    return np.stack(planes)


def load_tile(tile: Tile) -> Tile:
    """Read every band of ``tile`` whole (data stacked as float32 ``(bands, H, W)``) and its WCS.

    Scaled integers are returned in physical units with ``BLANK`` as NaN; NaN pixels are
    kept (cutouts flag them).  Raises :class:`TileError` naming the file on any problem.
    """
    read_tile_wcs(tile)
    hgt, wid = tile.shape
    tile.data = read_tile_section(tile, 0, wid, 0, hgt)
    return tile


def _noise_windows(hgt: int, wid: int) -> list[tuple[int, int, int, int]]:
    """A grid of sample windows spread over the image (the whole image when it is small)."""
    n, size = NOISE_WINDOWS_PER_AXIS, NOISE_WINDOW
    if hgt * wid <= n * n * size * size:
        return [(0, wid, 0, hgt)]
    windows = []
    for j in range(n):
        for i in range(n):
            cx, cy = (i + 0.5) * wid / n, (j + 0.5) * hgt / n
            x0 = max(0, min(wid - size, int(cx - size / 2)))
            y0 = max(0, min(hgt - size, int(cy - size / 2)))
            windows.append((x0, min(x0 + size, wid), y0, min(y0 + size, hgt)))
    return windows


def _whole_band_sample(tile: Tile, band: str) -> tuple[np.ndarray, int, float, float]:
    """Finite pixels of a whole band, strided to at most about ``NOISE_MAX_SAMPLE``.

    Read in blocks of rows, so memory stays bounded; also returns the exact count, minimum
    and maximum of the finite pixels.
    """
    hgt, wid = tile.shape
    stride = max(1, math.ceil(math.sqrt(hgt * wid / NOISE_MAX_SAMPLE)))
    rows = max(stride, (4_000_000 // wid) // stride * stride)  # a multiple of the stride
    kept, count, lo, hi = [], 0, np.inf, -np.inf
    windows = [(0, wid, y, min(y + rows, hgt)) for y in range(0, hgt, rows)]
    for block in _read_windows(tile, band, windows):
        finite = np.isfinite(block)
        n = int(finite.sum())
        if n:
            count += n
            lo, hi = min(lo, float(block[finite].min())), max(hi, float(block[finite].max()))
            sub = block[::stride, ::stride]
            kept.append(sub[np.isfinite(sub)])
    return (np.concatenate(kept) if kept else np.empty(0, np.float32)), count, lo, hi


def tile_background_noise(tile: Tile) -> list[float]:
    """Robust background sigma of each band: 1.4826 x MAD after sigma-clipping sources.

    Measured on a bounded sample: a 3 x 3 grid of 256 x 256 windows (the whole image when
    smaller; the three windows of a row share one read of their rows, see
    ``WHOLE_ROW_BYTES``), so a 10k x 10k tile is not read whole.  Only when the windows
    hold fewer than ``NOISE_MIN_SAMPLE`` finite pixels or no variation is the whole band
    looked at (in blocks of rows), to tell an all-NaN or constant band from unlucky windows.

    Parameters
    ----------
    tile : Tile

    Returns
    -------
    list of float
        One sigma per band, in the image's units, in the tile's band order.

    Raises
    ------
    TileError
        Naming the file: "all pixels NaN", "constant image", or no background variation in
        more than half the pixels.
    """
    from astropy.stats import sigma_clip

    if tile.wcs is None:
        read_tile_wcs(tile)
    windows = _noise_windows(*tile.shape)
    sigmas = []
    for band, path in tile.paths.items():
        values = np.concatenate([b[np.isfinite(b)] for b in _read_windows(tile, band, windows)])
        if values.size < NOISE_MIN_SAMPLE or values.min() == values.max():
            values, count, lo, hi = _whole_band_sample(tile, band)
            if count == 0:
                raise TileError(f"{path}: all pixels NaN (band {band})", path=path)
            if lo == hi:
                raise TileError(
                    f"{path}: constant image (every pixel {lo:g}, band {band})", path=path
                )
        values = values.astype(np.float64)
        kept = sigma_clip(values, sigma=3.0, maxiters=10, stdfunc="mad_std", masked=False)
        median = np.median(kept)
        sigma = 1.4826 * float(np.median(np.abs(kept - median)))
        if not sigma > 0:
            raise TileError(
                f"{path}: no background noise (more than half the sampled pixels equal "
                f"{median:g}, band {band})",
                path=path,
            )
        sigmas.append(sigma)
    return sigmas


def read_image_headers(path: str | Path, hdu: int | None = None):
    """The header of a file's tile image, and the primary header when the image is in an
    extension (where multi-extension products keep keywords such as ``FILTER``).

    Parameters
    ----------
    path : str or Path
    hdu : int, optional
        The image HDU; default the first 2-D image with a celestial WCS.

    Returns
    -------
    header : astropy.io.fits.Header
        A copy of the image HDU's header (a tile-compressed image's own header).
    primary : astropy.io.fits.Header or None
        A copy of the primary header, or None when the image is the primary HDU.

    Raises
    ------
    TileError
        Naming the file, as :func:`read_tile_wcs`.
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        k, h, _ = _image_hdu(hdul, hdu, path)
        header = h.header.copy()
        primary = hdul[0].header.copy() if k else None
    return header, primary


def read_band_unscaled(path: str | Path, hdu: int | None = None):
    """Read one band file as stored: every HDU in memory, the image's integers unscaled.

    The image keeps its on-disk type and ``BZERO``/``BSCALE``/``BLANK`` keywords (astropy's
    ``do_not_scale_image_data``), so that writing the list back reproduces the file's
    conventions and every untouched pixel bit for bit.

    Parameters
    ----------
    path : str or Path
    hdu : int, optional
        The image HDU; default the first 2-D image with a celestial WCS.

    Returns
    -------
    hdul : astropy.io.fits.HDUList
        Every HDU, data loaded (the file is closed).
    index : int
        The image HDU's position in ``hdul``.
    wcs : astropy.wcs.WCS
        Its celestial WCS.
    """
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
                index, _, wcs = _image_hdu(hdul, hdu, path)
                for h in hdul:
                    _ = h.data  # read every HDU into memory before the file closes
    except TileError:
        raise
    except Exception as exc:  # astropy raises many kinds on corrupt or truncated files
        raise TileError(f"{path}: unreadable FITS ({type(exc).__name__}: {exc})") from None
    return hdul, index, wcs


def write_tile_band(path: str | Path, data: np.ndarray, header, scaled_int: bool = False) -> Path:
    """Write one band of a tile atomically: a primary HDU with ``header`` (its WCS).

    Parameters
    ----------
    path : str or Path
        ``.fits`` (or ``.fits.gz``) file name.
    data : ndarray, shape (H, W)
    header : astropy.io.fits.Header
        The WCS and any keywords to record (units, band, ...).
    scaled_int : bool
        False (default): float32 pixels.  True: int16 with ``BSCALE``/``BZERO`` chosen from
        the finite data range (stored values -32767..32767, so the rounding error is at most
        ``BSCALE / 2``) and NaN or infinite pixels stored as ``BLANK = -32768``, as many
        survey products are.

    Returns
    -------
    Path
    """
    from astropy.io import fits

    from skyscan.core.atomic import write_fits_atomic

    if not scaled_int:
        hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)
        return write_fits_atomic(hdu, path)
    values = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(values)
    lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    bscale = (hi - lo) / 65534.0 if hi > lo else 1.0
    bzero = lo + 32767.0 * bscale  # lo is stored as -32767, hi as 32767
    blank = -32768
    raw = np.full(values.shape, blank, dtype=np.int16)
    raw[finite] = np.clip(np.rint((values[finite] - bzero) / bscale), -32767, 32767)
    header = fits.Header(header).copy()
    for key in ("BSCALE", "BZERO", "BLANK"):
        header.remove(key, ignore_missing=True)
    hdu = fits.PrimaryHDU(raw, header=header)
    # Set after construction: astropy treats the keywords as describing ``raw`` as stored.
    hdu.header["BSCALE"] = bscale
    hdu.header["BZERO"] = bzero
    hdu.header["BLANK"] = blank
    return write_fits_atomic(hdu, path)
