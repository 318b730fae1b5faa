"""HEALPix indices of sky positions and the partition layout of the search outputs.

Conventions: NESTED ordering everywhere (healpy does the arithmetic); partitions are files
``Norder=K/Dir=D/Npix=P.parquet`` with ``D = P // 10000 * 10000``, the layout HATS/LSDB read.
Order 29 indices (the finest HEALPix order that fits 64 bits) are stored per row so any
coarser order follows by a right shift of ``2 * (29 - K)`` bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "ORDER_MAX",
    "nside",
    "radec_to_pixel",
    "coarsen",
    "partition_path",
    "pixels_in_polygon",
    "pixel_area_deg2",
]

ORDER_MAX = 29


def nside(order: int) -> int:
    """NSIDE of a HEALPix order (``2**order``)."""
    if not 0 <= int(order) <= ORDER_MAX:
        raise ValueError(f"HEALPix order must be in 0..{ORDER_MAX}, got {order}")
    return 1 << int(order)


def radec_to_pixel(ra, dec, order: int) -> np.ndarray:
    """NESTED pixel indices of RA/Dec positions (degrees) at ``order``.

    Parameters
    ----------
    ra, dec : array_like
        Degrees.
    order : int
        0..29.

    Returns
    -------
    ndarray of int64
    """
    import healpy as hp

    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if np.any(~np.isfinite(ra)) or np.any(~np.isfinite(dec)):
        raise ValueError("RA/Dec contain NaN or infinite values")
    if np.any(np.abs(dec) > 90):
        raise ValueError("Dec outside [-90, 90] degrees")
    return np.asarray(hp.ang2pix(nside(order), ra, dec, nest=True, lonlat=True), dtype=np.int64)


def coarsen(pixels, order_from: int, order_to: int) -> np.ndarray:
    """NESTED indices at a coarser order: a right shift by ``2 (order_from - order_to)`` bits."""
    if order_to > order_from:
        raise ValueError(f"cannot coarsen from order {order_from} to finer order {order_to}")
    return np.asarray(pixels, dtype=np.int64) >> np.int64(2 * (order_from - order_to))


def partition_path(root: str | Path, order: int, pixel: int, suffix: str = ".parquet") -> Path:
    """``root/Norder=K/Dir=D/Npix=P.parquet`` with ``D = P // 10000 * 10000`` (HATS layout)."""
    pixel = int(pixel)
    directory = pixel // 10000 * 10000
    return Path(root) / f"Norder={int(order)}" / f"Dir={directory}" / f"Npix={pixel}{suffix}"


def pixels_in_polygon(ra, dec, order: int, inclusive: bool = True) -> np.ndarray:
    """NESTED pixels of a convex spherical polygon given by its corners (degrees).

    ``inclusive=True`` returns every pixel that overlaps the polygon (healpy's
    ``query_polygon`` with ``inclusive=True``, exact to within its ``fact`` oversampling).
    """
    import healpy as hp

    vertices = hp.ang2vec(np.asarray(ra, float), np.asarray(dec, float), lonlat=True)
    return np.sort(
        hp.query_polygon(nside(order), vertices, inclusive=inclusive, nest=True, fact=8)
    ).astype(np.int64)


def pixel_area_deg2(order: int) -> float:
    """Area of one pixel at ``order`` in square degrees."""
    import healpy as hp

    return float(hp.nside2pixarea(nside(order), degrees=True))
