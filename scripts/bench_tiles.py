#!/usr/bin/env python
"""Tile reading speed: positions to pixels in each frame, windows against whole reads.

Writes one band of a ``--size`` square tile (int16 with BSCALE/BZERO/BLANK, as survey
products are) in a temporary folder, once per WCS kind (ICRS TAN, FK4 B1950, Galactic,
TAN-SIP), and times:

* ``sky_to_pixel`` on ``--n`` random ICRS positions (a quarter on the tile, most around
  it, 1% on the far side of the sky, which come back NaN: the "NaN (off)" column);
* ``read_tile_section`` of a 64 x 64 window (a stamp group) against ``load_tile``;
* ``tile_background_noise`` (a bounded sample).

    python scripts/bench_tiles.py [--n 100000] [--size 4096]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from skyscan.tiles.io import (
    Tile,
    load_tile,
    pixel_to_sky,
    read_tile_section,
    read_tile_wcs,
    sky_to_pixel,
    tile_background_noise,
    write_tile_band,
)

PIXEL = 0.2  # arcsec


def _header(kind: str, size: int) -> fits.Header:
    d = PIXEL / 3600
    cards = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 150.0,
        "CRVAL2": 2.0,
        "CRPIX1": size / 2 + 0.5,
        "CRPIX2": size / 2 + 0.5,
        "CDELT1": -d,
        "CDELT2": d,
        "RADESYS": "ICRS",
    }
    if kind == "FK4 B1950":
        cards.update(RADESYS="FK4", EQUINOX=1950.0, CRVAL1=149.35, CRVAL2=2.25)
    elif kind == "Galactic":
        cards.update(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=120.0, CRVAL2=30.0)
        del cards["RADESYS"]
    elif kind == "TAN-SIP":
        cards.update(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2)
        cards.update(A_2_0=2e-7, B_0_2=-1.5e-7)
    return fits.Header(cards)


def _best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="positions to transform")
    parser.add_argument("--size", type=int, default=4096, help="tile side in pixels")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    image = rng.normal(10.0, 2.5, (args.size, args.size))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("ICRS", "FK4 B1950", "Galactic", "TAN-SIP"):
            path = Path(folder) / f"{kind.replace(' ', '_')}_g.fits"
            write_tile_band(path, image, _header(kind, args.size), scaled_int=True)
            tile = read_tile_wcs(Tile(kind, {"g": path}))
            x = rng.uniform(-args.size / 2, 1.5 * args.size, args.n)
            y = rng.uniform(-args.size / 2, 1.5 * args.size, args.n)
            ra, dec = pixel_to_sky(tile, x, y)
            far = slice(0, args.n // 100)  # 1% on the far side of the sky: no pixel (NaN)
            ra[far], dec[far] = ra[far] + 180.0, -dec[far]
            t_pos = _best(lambda t=tile, r=ra, d=dec: sky_to_pixel(t, r, d))
            off = int(np.isnan(sky_to_pixel(tile, ra, dec)[0]).sum())
            t_win = _best(
                lambda t=tile, c=args.size // 2: read_tile_section(t, c, c + 64, c, c + 64),
                repeat=10,
            )
            t_full = _best(lambda t=tile: load_tile(Tile(t.name, t.paths)), repeat=1)
            t_noise = _best(lambda t=tile: tile_background_noise(t), repeat=1)
            rows.append((kind, args.n / t_pos, off, t_win * 1e3, t_full * 1e3, t_noise * 1e3))
    print(f"{args.size} x {args.size} int16 scaled tile, {args.n} positions")
    print(
        f"{'WCS':<10} {'positions/s':>12} {'NaN (off)':>9} {'64x64 window ms':>16} "
        f"{'whole tile ms':>14} {'noise ms':>9}"
    )
    for kind, rate, off, win, full, noise in rows:
        print(f"{kind:<10} {rate:>12,.0f} {off:>9} {win:>16.2f} {full:>14.1f} {noise:>9.1f}")


if __name__ == "__main__":
    main()
