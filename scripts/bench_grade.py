"""Benchmark of the grading page on a search of 10^4 candidates.

Builds 16 gri tiles of 256x256 pixels with 10^4 candidates on them, starts the page with
uvicorn on a free local port and times, over real HTTP: the first page, a later page, a
grade POST (which also rewrites the exports), and a candidate's stamp PNG (first request:
cut and rendered; later: from the disk cache).  Prints the median and 95th percentile of
each against the 0.5 s goal.

    PYTHONPATH=src python scripts/bench_grade.py [--candidates 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.wcs import WCS

from skyscan.data.preprocess import make_spec
from skyscan.models.card import ModelCard
from skyscan.vet.session import GradingSession, resolve_sources
from skyscan.vet.store import GradeStore

GOAL_S = 0.5
BANDS = ["g", "r", "i"]


def build(root: Path, n: int, n_tiles: int = 16, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    (root / "tiles").mkdir(parents=True)
    per = -(-n // n_tiles)
    cols = {k: [] for k in ("id", "ra", "dec", "tile", "x", "y")}
    for t in range(n_tiles):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150 + 0.02 * t, 2.0]
        w.wcs.crpix = [size / 2, size / 2]
        w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
        for b in BANDS:
            data = rng.normal(0, 1.0, (size, size)).astype(np.float32)
            fits.PrimaryHDU(data, header=w.to_header()).writeto(root / "tiles" / f"T{t}_{b}.fits")
        k = min(per, n - t * per)
        x, y = rng.uniform(0, size - 1, k), rng.uniform(0, size - 1, k)
        ra, dec = w.all_pix2world(x, y, 0)
        cols["id"] += list(range(t * per, t * per + k))
        cols["ra"] += list(ra)
        cols["dec"] += list(dec)
        cols["tile"] += [f"T{t}"] * k
        cols["x"] += list(x)
        cols["y"] += list(y)
    logit = rng.normal(0, 2, n)
    results = root / "results"
    results.mkdir()
    table = pa.table(
        {
            **cols,
            "logit": logit,
            "score": 1 / (1 + np.exp(-logit)),
            "cutout_flags": np.zeros(n, np.int32),
        }
    )
    pq.write_table(table, results / "candidates.parquet")
    card = ModelCard(
        name="bench",
        model="fast",
        case="lenses",
        bands=BANDS,
        input_shape=[3, 45, 45],
        pixel_scale=0.2,
        preprocessing=make_spec(BANDS, [1, 1, 1], 250, [3, 45, 45], stretch="asinh"),
    )
    card.write(root / "model_card.json")
    summary = {"tiles": str(root / "tiles"), "card": str(root / "model_card.json")}
    (results / "summary.json").write_text(json.dumps(summary))
    return results


def timed(fn, repeat: int) -> list[float]:
    out = []
    for k in range(repeat):
        t0 = time.perf_counter()
        fn(k)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    import httpx
    import uvicorn

    from skyscan.vet.app import COOKIE, make_app

    with tempfile.TemporaryDirectory() as tmp:
        results = build(Path(tmp), args.candidates)
        t0 = time.perf_counter()
        session = GradingSession(resolve_sources(results), GradeStore(results / "grades.sqlite"))
        app = make_app(session)
        startup = time.perf_counter() - t0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", cookies={COOKIE: "bench"})
        later = len(session.items) // 20 // 2
        keys = [it.key for it in session.items]

        def get(url):
            r = client.get(url)
            r.raise_for_status()

        def post(k):
            r = client.post("/grade", data={"item": keys[k], "grade": str(k % 4)})
            r.raise_for_status()

        rows = [
            ("first page", timed(lambda k: get("/?page=1"), args.repeat)),
            (f"later page ({later})", timed(lambda k: get(f"/?page={later}"), args.repeat)),
            ("grade POST (+ exports)", timed(post, args.repeat)),
            ("stamp PNG, first", timed(lambda k: get(f"/stamp/{keys[100 + k]}.png"), args.repeat)),
            ("stamp PNG, cached", timed(lambda k: get(f"/stamp/{keys[100 + k]}.png"), args.repeat)),
        ]
        server.should_exit = True
        thread.join(timeout=10)
    print(f"{len(session.items)} candidates; session start-up {startup:.2f} s\n")
    print(f"{'request':<24} {'median (s)':>11} {'p95 (s)':>9} {'goal (s)':>9}  ok")
    for name, times in rows:
        median, p95 = np.median(times), np.percentile(times, 95)
        ok = "yes" if p95 < GOAL_S else "NO"
        print(f"{name:<24} {median:>11.4f} {p95:>9.4f} {GOAL_S:>9.1f}  {ok}")


if __name__ == "__main__":
    main()
