"""The search's gallery of top candidates: captions without the per-stamp ``candidate`` flag,
the count above the threshold in the title, and a residual panel beside every stamp."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import skyscan.search.gallery as gallery  # noqa: E402
from skyscan.search.run import FLAG_EDGE  # noqa: E402


def _plan(tmp_path, threshold=0.0):
    # no model behind this plan: the pixel-mean scorer, which has no saliency
    context = SimpleNamespace(
        loader="tiles", id_column="object_id", ra_column="ra", dec_column="dec", scorer="mean-pixel"
    )
    record = SimpleNamespace(name="tile-00-01", paths={b: f"{b}.fits" for b in "gri"}, hdu=0)
    card = SimpleNamespace(
        bands=["g", "r", "i"], threshold={"logit": threshold} if threshold is not None else None
    )
    return SimpleNamespace(
        context=context, card=card, out_dir=tmp_path, tasks=[SimpleNamespace(tiles=[record])]
    )


def _top(n=5):
    return pa.table(
        {
            "object_id": [9_123_456_789_012_345_000 + k for k in range(n)],
            "ra": [150.1 + 0.01 * k for k in range(n)],
            "dec": [2.2 - 0.01 * k for k in range(n)],
            "tile": ["tile-00-01"] * n,
            "x": [100.0 + k for k in range(n)],
            "y": [200.0] * n,
            "logit": [3.0 - k for k in range(n)],  # 3, 2, 1, 0, -1: four at or above 0
            "score": [0.99 - 0.1 * k for k in range(n)],
            "cutout_flags": [FLAG_EDGE if k == 1 else 0 for k in range(n)],
        }
    )


def _stamp(size, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    core = 500 * np.exp(-(xx**2 + yy**2) / 6.0)
    return np.stack([core * a + rng.normal(0, 1, core.shape) for a in (0.3, 0.6, 1.0)])


def test_captions_drop_the_candidate_flag_and_the_title_counts_candidates(tmp_path, monkeypatch):
    seen = {}
    real = gallery.stamp_gallery

    def spy(stamps, bands, captions, pixel_scale, out, **kwargs):
        seen.update(stamps=stamps, captions=captions, pixel_scale=pixel_scale, **kwargs)
        return real(stamps, bands, captions, pixel_scale, out, **kwargs)

    monkeypatch.setattr(gallery, "top_scored", lambda plan, n: _top())
    monkeypatch.setattr(gallery, "read_tile_wcs", lambda tile: SimpleNamespace(pixel_scale=0.2))
    monkeypatch.setattr(
        gallery,
        "tile_cutouts",
        lambda tile, x, y, size: (_stamp(size, int(x[0]))[None], np.zeros(1, np.int32)),
    )
    monkeypatch.setattr(gallery, "stamp_gallery", spy)

    out = gallery.write_gallery(_plan(tmp_path), n=5, size=33)

    assert out == tmp_path / "gallery.png" and imread(out).shape[1] > 600
    captions = seen["captions"]
    assert len(captions) == 5
    for caption in captions:
        assert "candidate" not in caption and "flags" not in caption
    assert "tile edge" in captions[1] and "tile edge" not in captions[0]
    assert captions[0].splitlines()[0] == "#1 id 9123456789012345000"
    assert seen["title"] == ("the 5 highest-scoring objects (4 at or above the model's threshold)")
    assert seen["pixel_scale"] == 0.2


def test_title_without_a_threshold():
    assert gallery._title(3, None) == "the 3 highest-scoring objects"
    assert gallery._title(24, 21) == (
        "the 24 highest-scoring objects (21 at or above the model's threshold)"
    )
