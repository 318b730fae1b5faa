"""Reading and writing survey tiles: one FITS file per band, any celestial WCS astropy reads.

A tile set is found from a folder and a file-name pattern (``{tile}_{band}.fits`` by
default; ``.fits.gz`` and multi-extension files work: the first HDU holding a 2-D image with
a celestial WCS is used, or the one ``hdu`` names).  Problems with a tile (missing band,
unreadable or truncated file, no celestial WCS, different shapes across bands) are returned as
reasons, so the search records them and carries on with the other tiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skyscan.core.errors import InputFileError

__all__ = [
    "Tile",
    "find_tiles",
    "load_tile",
    "read_tile_wcs",
    "read_band_unscaled",
    "write_tile_band",
    "TileError",
]


class TileError(InputFileError):
    """A tile cannot be used; the message names the file and the reason."""


@dataclass
class Tile:
    """One tile: its name and one file per band (the WCS and data are loaded lazily)."""

    name: str
    paths: dict[str, Path]
    hdu: int | None = None
    wcs: object = None
    shape: tuple[int, int] | None = None
    data: np.ndarray | None = field(default=None, repr=False)

    def corners(self) -> np.ndarray:
        """RA/Dec (deg) of the four outer pixel corners, counter-clockwise."""
        h, w = self.shape
        px = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
        py = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
        ra, dec = self.wcs.all_pix2world(px, py, 0)
        return np.stack([ra % 360, dec], axis=1)


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


def _image_hdu(hdul, hdu: int | None, path: Path):
    from astropy.wcs import WCS

    candidates = [hdu] if hdu is not None else range(len(hdul))
    for k in candidates:
        if k >= len(hdul):
            raise TileError(f"{path}: no HDU {k} (the file has {len(hdul)})")
        h = hdul[k]
        # Header only: touching h.data here would read the pixels, and a memory-mapped read
        # of scaled integers (BZERO/BSCALE/BLANK, as real surveys store) fails.
        if h.is_image and h.header.get("NAXIS") == 2 and h.header.get("NAXIS1", 0) > 0:
            wcs = WCS(h.header, fobj=hdul).celestial
            if wcs.has_celestial and wcs.naxis == 2:
                return h, wcs
            if hdu is not None:
                raise TileError(f"{path}: HDU {k} has no celestial WCS")
    raise TileError(f"{path}: no 2-D image HDU with a celestial WCS")


def load_tile(tile: Tile) -> Tile:
    """Read every band of ``tile`` (data stacked as float32 ``(bands, H, W)``) and its WCS.

    The WCS comes from the first band; the others must have the same shape.  NaN pixels are
    kept (cutouts flag them).  Raises :class:`TileError` naming the file on any problem.
    """
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    planes = []
    for band, path in tile.paths.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                with fits.open(path, memmap=False) as hdul:
                    h, wcs = _image_hdu(hdul, tile.hdu, path)
                    data = np.asarray(h.data, dtype=np.float32)
        except TileError:
            raise
        except Exception as exc:  # astropy raises many kinds on corrupt or truncated files
            raise TileError(f"{path}: unreadable FITS ({type(exc).__name__}: {exc})") from None
        if tile.wcs is None:
            tile.wcs, tile.shape = wcs, data.shape
        elif data.shape != tile.shape:
            raise TileError(f"{path}: band {band} is {data.shape}, other bands {tile.shape}")
        planes.append(data)
    tile.data = np.stack(planes)
    return tile


def read_tile_wcs(tile: Tile) -> Tile:
    """Fill a tile's WCS and shape from the first band's header (no pixel read)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    path = next(iter(tile.paths.values()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=True) as hdul:
                h, wcs = _image_hdu(hdul, tile.hdu, path)
                tile.wcs, tile.shape = wcs, (int(h.header["NAXIS2"]), int(h.header["NAXIS1"]))
    except TileError:
        raise
    except Exception as exc:
        raise TileError(f"{path}: unreadable FITS ({type(exc).__name__}: {exc})") from None
    return tile


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
                image, wcs = _image_hdu(hdul, hdu, path)
                index = next(k for k, h in enumerate(hdul) if h is image)
                for h in hdul:
                    _ = h.data  # read every HDU into memory before the file closes
    except TileError:
        raise
    except Exception as exc:  # astropy raises many kinds on corrupt or truncated files
        raise TileError(f"{path}: unreadable FITS ({type(exc).__name__}: {exc})") from None
    return hdul, index, wcs


def write_tile_band(path: str | Path, data: np.ndarray, header) -> Path:
    """Write one band of a tile: a float32 primary HDU with ``header`` (its WCS), atomically.

    Parameters
    ----------
    path : str or Path
        ``.fits`` (or ``.fits.gz``) file name.
    data : ndarray, shape (H, W)
    header : astropy.io.fits.Header
        The WCS and any keywords to record (units, band, ...).
    """
    from astropy.io import fits

    from skyscan.core.atomic import write_fits_atomic

    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)
    return write_fits_atomic(hdu, path)
