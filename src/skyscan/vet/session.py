"""What a grading session shows: a search's candidates in score order, with simulated
lenses and non-lenses from the test split mixed in unannounced, and their stamps.

Inputs are the search's output folder (``candidates.parquet`` and ``summary.json``, whose
``tiles``, ``pattern``, ``hdu`` and ``card`` keys say where the tiles and the model card
are; each can be given instead).  Stamps are cut from the tiles only when a page asks for
them and their PNGs are kept in ``RESULTS/grade_cache/``, so a search of 10^4 candidates
opens as fast as one of ten.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.core.atomic import atomic_path
from skyscan.core.errors import InputFileError, MismatchError, UsageError
from skyscan.core.paths import resolve_recorded
from skyscan.models.card import ModelCard, load_model, read_card
from skyscan.search.run import FLAG_EDGE, FLAG_NAN, cutouts
from skyscan.tiles.io import Tile, find_tiles, load_tile, read_tile_wcs
from skyscan.vet.stamps import STRIP_VERSION, background_sigma, panel_names, render_strip
from skyscan.vet.store import GradeStore

__all__ = [
    "REQUIRED_COLUMNS",
    "GradeSources",
    "Item",
    "GradingSession",
    "resolve_sources",
    "TileStamps",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "ra", "dec", "tile", "x", "y", "logit", "score", "cutout_flags")


@dataclass
class GradeSources:
    """A search's results and where its tiles and model card are."""

    results: Path
    candidates: pa.Table
    card: ModelCard
    card_path: Path
    tiles: Path
    pattern: str
    hdu: int | None
    #: the search's parameter network (summary.json's ``parameters``), if it had one
    parameters_path: Path | None = None


def resolve_sources(results, tiles=None, pattern=None, model=None) -> GradeSources:
    """Read ``RESULTS/candidates.parquet`` and ``summary.json``; ``tiles``, ``pattern`` and
    ``model`` replace the summary's ``tiles``, ``pattern`` and ``card``.

    Returns
    -------
    GradeSources
    """
    results = Path(results)
    path = results / "candidates.parquet"
    if not path.is_file():
        raise InputFileError(f"{path} does not exist: is {results} a search output?", path=path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: cannot read ({exc})", path=path) from None
    if "cutout_flags" not in table.column_names and "flags" in table.column_names:
        # searches before the column was renamed (a "flags" column shadows DataFrame.flags)
        names = table.column_names
        table = table.rename_columns(["cutout_flags" if n == "flags" else n for n in names])
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InputFileError(f"{path}: lacks column(s) {', '.join(missing)}", path=path)
    summary_path = results / "summary.json"
    summary = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as exc:
            raise InputFileError(f"{summary_path}: not JSON ({exc})", path=summary_path) from None
    given = {"tiles": tiles, "card": model}
    for key, option in (("tiles", "--tiles"), ("card", "--model")):
        if given[key] is None and key not in summary:
            raise InputFileError(
                f"{summary_path}: has no {key!r} key; give {option}", path=summary_path, key=key
            )
    # summary.json's paths are relative to the search folder (older ones: to where the
    # search ran): resolve_recorded reads both
    card_path = Path(model) if model is not None else resolve_recorded(summary["card"], results)
    tile_dir = Path(tiles) if tiles is not None else resolve_recorded(summary["tiles"], results)
    if not tile_dir.is_dir():
        where = (
            "given by --tiles"
            if tiles is not None
            else f"from {summary_path}'s 'tiles' ({summary['tiles']!r}); --tiles replaces it"
        )
        raise InputFileError(f"tile folder {tile_dir} does not exist ({where})", path=tile_dir)
    parameters = summary.get("parameters")
    return GradeSources(
        results=results,
        candidates=table,
        card=read_card(card_path),
        card_path=card_path,
        tiles=tile_dir,
        pattern=pattern or summary.get("pattern", "{tile}_{band}.fits"),
        hdu=summary.get("hdu"),
        parameters_path=None if parameters is None else resolve_recorded(parameters, results),
    )


@dataclass
class Item:
    """One stamp on the page: a candidate (``row`` in candidates.parquet) or a simulated
    stamp (``row`` in the test split), shown alike."""

    key: str
    simulated: bool
    row: int
    ra: float
    dec: float
    tile: str
    x: float
    y: float
    score: float
    flags: int
    #: the network's output: tells apart candidates whose calibrated scores all read 1.0000
    logit: float | None = None
    theta_e: float | None = None
    theta_e_lo: float | None = None
    theta_e_hi: float | None = None
    known_name: str | None = None
    known_grade: str | None = None
    known_type: str | None = None
    label: int | None = None

    @property
    def edge(self) -> bool:
        """The cutout crosses the tile edge."""
        return bool(self.flags & FLAG_EDGE)

    @property
    def masked(self) -> bool:
        """The cutout holds NaN or masked pixels."""
        return bool(self.flags & FLAG_NAN)


def _value(table: pa.Table, name: str, row: int):
    if name not in table.column_names:
        return None
    value = table.column(name)[row].as_py()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class TileStamps:
    """Raw stamps cut from the tiles, with the tiles' background sigma per band.

    A few tiles are kept in memory (least recently used dropped first): a page's candidates
    are in score order, not tile order, so they come from many tiles.

    Parameters
    ----------
    sources : GradeSources
    keep : int
        Loaded tiles kept in memory.
    """

    def __init__(self, sources: GradeSources, keep: int = 3):
        self.bands = list(sources.card.bands)
        self.size = int(sources.card.input_shape[-1])
        tiles, problems = find_tiles(sources.tiles, self.bands, sources.pattern, sources.hdu)
        self.tiles: dict[str, Tile] = {t.name: t for t in tiles}
        self.problems = problems
        self.keep = keep
        self._loaded: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(data (bands, H, W), sigma (bands,))`` of a tile, loaded once."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            if name not in self.tiles:
                reason = self.problems.get(name, "no file matches the pattern")
                raise InputFileError(f"tile {name!r} cannot be read: {reason}", key=name)
            t = self.tiles[name]
            loaded = load_tile(Tile(t.name, t.paths, t.hdu))
            entry = (loaded.data, background_sigma(loaded.data))
            self._loaded[name] = entry
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return entry

    def wcs(self, name: str):
        """The WCS and shape of a tile (headers only)."""
        t = self.tiles[name]
        if t.wcs is None:
            read_tile_wcs(t)
        return t.wcs, t.shape

    def raw(self, tile: str, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps at pixel positions of one tile in the tile's units.

        Returns
        -------
        stamps : ndarray (N, bands, size, size)
        flags : ndarray (N,)
        sigma : ndarray (bands,)
            The tile's background sigma per band.
        """
        data, sigma = self.tile(tile)
        stamps, flags = cutouts(data, np.atleast_1d(x), np.atleast_1d(y), self.size)
        return stamps, flags, sigma


class SimulatedStamps:
    """Stamps of a dataset's test split (the dataset stage's output), in sigma units.

    Parameters
    ----------
    dataset : str or Path
        The dataset folder (``manifest.json``, ``preprocessing.json``, ``test/``).
    card : ModelCard
        Its bands and stamp shape must match the dataset's.
    """

    def __init__(self, dataset, card: ModelCard):
        from skyscan.data.datasets import load_split
        from skyscan.data.preprocess import check_compatible

        self.path = Path(dataset)
        self.images, meta, self.spec = load_split(self.path, "test")
        check_compatible(
            self.spec, card.bands, card.input_shape, f"simulated test split {self.path}"
        )
        if "label" not in meta.column_names:
            raise InputFileError(f"{self.path}/test/meta.parquet: no 'label' column")
        self.labels = meta.column("label").to_numpy().astype(int)

    def stamp(self, row: int) -> np.ndarray:
        """One stamp in units of its background sigma per band."""
        from skyscan.data.preprocess import invert

        scale = np.asarray(self.spec["scale"], dtype=np.float32)[:, None, None]
        return invert(np.asarray(self.images[row]), self.spec) / scale


def _parameter_estimates(card_path, sims: SimulatedStamps, rows) -> tuple | None:
    """theta_E (value, low, high) of simulated stamps from a parameter network, read as the
    search reads tiles: the raw pixels (the dataset's preprocessing undone) in the network's
    bands, centre-cropped to its stamp, through its own preprocessing.  None when its bands
    or stamp are not in the simulated stamps, or it estimates no theta_E."""
    import torch

    from skyscan.data.preprocess import invert, preprocess

    model, card = load_model(card_path)
    names = [n for n in (card.targets or {}).get("names", []) if n.lower() == "theta_e"]
    bands = list(sims.spec.get("bands") or [])
    size = int(card.input_shape[-1])
    have = np.asarray(sims.images[rows[:1]]).shape[-1] if len(rows) else 0
    if not names or any(b not in bands for b in card.bands) or size > have:
        return None
    raw = invert(np.asarray(sims.images[rows]), sims.spec)
    raw = raw[:, [bands.index(b) for b in card.bands]]
    cut = (have - size) // 2
    raw = np.ascontiguousarray(raw[..., cut : cut + size, cut : cut + size])
    with torch.inference_mode():
        out = model(torch.from_numpy(preprocess(raw, card.preprocessing))).double().numpy()
    est = card.parameter_estimates(out)[names[0]]
    return est["value"], est["low"], est["high"]


def _draw_sims(sims: SimulatedStamps, n_real: int, mix: float, seed: int) -> np.ndarray:
    """Rows of the test split to mix in: ``mix`` of everything shown, half lenses and half
    non-lenses where the split has enough of each, drawn without replacement."""
    n_total = int(round(mix * n_real / (1 - mix)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6772616465]))  # "grade"
    lenses = np.flatnonzero(sims.labels == 1)
    others = np.flatnonzero(sims.labels == 0)
    n_lens = min(len(lenses), n_total // 2 + n_total % 2)
    n_other = min(len(others), n_total - n_lens)
    n_lens = min(len(lenses), n_total - n_other)
    rows = np.concatenate(
        [rng.choice(lenses, n_lens, replace=False), rng.choice(others, n_other, replace=False)]
    )
    return np.sort(rows)


class GradingSession:
    """The items of a grading page, their order, and their pictures.

    Parameters
    ----------
    sources : GradeSources
    store : GradeStore
    sims : str or Path, optional
        A dataset folder whose test split provides the simulated stamps.
    mix : float
        Fraction of the items shown that are simulated (0 < mix < 0.5).
    seed : int
        Seeds which simulated stamps are drawn and where they appear to lie.
    cache : str or Path, optional
        Folder of the PNGs (default ``RESULTS/grade_cache``).
    """

    def __init__(
        self,
        sources: GradeSources,
        store: GradeStore,
        sims=None,
        mix: float = 0.07,
        seed: int = 0,
        cache=None,
    ):
        self.sources = sources
        self.store = store
        self.bands = list(sources.card.bands)
        self.panels = panel_names(self.bands)
        self.cache = Path(cache) if cache is not None else sources.results / "grade_cache"
        self.tiles = TileStamps(sources)
        self.sims = None
        self.hide_theta_e = False
        self._model_lock = threading.Lock()
        items = self._real_items()
        if sims is not None:
            if not 0 < mix < 0.5:
                raise UsageError(f"--mix {mix} must lie between 0 and 0.5", key="mix")
            self.sims = SimulatedStamps(sims, sources.card)
            items += self._sim_items(len(items), mix, seed)
        if self.hide_theta_e:  # hidden simulations could not have it: nobody shows it
            for it in items:
                it.theta_e = it.theta_e_lo = it.theta_e_hi = None
        # Score order; ties by the opaque key, so simulated stamps do not cluster.
        items.sort(key=lambda it: (-it.score, it.key))
        self.items = items
        self.by_key = {it.key: it for it in items}
        store.register((it.key, it.simulated, self._ref(it), it.label) for it in items)

    def _ref(self, item: Item) -> str:
        if item.simulated:
            return str(item.row)
        return str(self.sources.candidates.column("id")[item.row].as_py())

    def _real_items(self) -> list[Item]:
        t = self.sources.candidates
        cols = {
            n: t.column(n).to_pylist()
            for n in ("id", "ra", "dec", "tile", "x", "y", "cutout_flags")
        }
        score = t.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
        logit = t.column("logit").to_numpy(zero_copy_only=False).astype(np.float64)
        items = []
        for k in range(len(t)):
            items.append(
                Item(
                    key=self.store.item_key(False, cols["id"][k]),
                    simulated=False,
                    row=k,
                    ra=float(cols["ra"][k]),
                    dec=float(cols["dec"][k]),
                    tile=str(cols["tile"][k]),
                    x=float(cols["x"][k]),
                    y=float(cols["y"][k]),
                    score=float(score[k]) if np.isfinite(score[k]) else -1.0,
                    flags=int(cols["cutout_flags"][k] or 0),
                    logit=float(logit[k]) if np.isfinite(logit[k]) else None,
                    theta_e=_value(t, "theta_e", k),
                    theta_e_lo=_value(t, "theta_e_lo", k),
                    theta_e_hi=_value(t, "theta_e_hi", k),
                    known_name=_value(t, "known_name", k),
                    known_grade=_value(t, "known_grade", k),
                    known_type=_value(t, "known_type", k),
                )
            )
        return items

    def _sim_items(self, n_real: int, mix: float, seed: int) -> list[Item]:
        """Simulated stamps dressed as candidates: a position drawn inside a tile that holds
        candidates (away from its edges) and the model's own calibrated score."""
        import torch

        rows = _draw_sims(self.sims, n_real, mix, seed)
        if len(rows) == 0:
            return []
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x706F73]))  # "pos"
        model, card = load_model(self.sources.card_path)
        if card.preprocessing.get("method") != self.sims.spec.get("method"):
            raise MismatchError(
                f"{self.sims.path}: preprocessing {self.sims.spec.get('method')!r} differs from "
                f"the model's {card.preprocessing.get('method')!r}"
            )
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(self.sims.images[rows]))
            logits = np.concatenate(
                [model(batch[s : s + 256]).double().numpy() for s in range(0, len(batch), 256)]
            )
        scores = card.probability(logits)
        theta = self._sim_theta_e(rows)
        tile_names = self.sources.candidates.column("tile").to_pylist()
        usable = [n for n in tile_names if n in self.tiles.tiles]
        if not usable:
            raise InputFileError(f"{self.sources.tiles}: none of the candidates' tiles is found")
        r = self.tiles.size
        items = []
        for k, row in enumerate(rows):
            tile = usable[rng.integers(len(usable))]
            wcs, (h, w) = self.tiles.wcs(tile)
            x, y = rng.uniform(r, w - 1 - r), rng.uniform(r, h - 1 - r)
            ra, dec = (float(v) for v in wcs.all_pix2world(x, y, 0))
            items.append(
                Item(
                    key=self.store.item_key(True, int(row)),
                    simulated=True,
                    row=int(row),
                    ra=ra % 360,
                    dec=dec,
                    tile=tile,
                    x=x,
                    y=y,
                    score=float(scores[k]),
                    flags=0,
                    logit=float(np.ravel(logits[k])[0]),
                    label=int(self.sims.labels[row]),
                    **({} if theta is None else {f: theta[f][k] for f in theta}),
                )
            )
        return items

    def _sim_theta_e(self, rows) -> dict | None:
        """theta_E and its 68% interval for simulated stamps, from the search's own parameter
        network, so hidden simulations carry what real candidates carry; None when the
        candidates have none.  When they have them but this cannot be done (no network
        recorded, bands or stamp size it cannot read), the real candidates' are hidden too."""
        names = self.sources.candidates.column_names
        if "theta_e" not in names or not any(
            v is not None for v in self.sources.candidates.column("theta_e").to_pylist()
        ):
            return None
        path = self.sources.parameters_path
        estimates = None
        if path is not None and Path(path).is_file():
            estimates = _parameter_estimates(path, self.sims, rows)
        if estimates is None:
            log.warning(
                "the candidates carry theta_E but the hidden simulations cannot (%s): theta_E "
                "is not shown",
                "no parameter network in summary.json" if path is None else path,
            )
            self.hide_theta_e = True
            return None
        value, low, high = estimates

        def fin(v):
            return float(v) if np.isfinite(v) else None

        return {
            "theta_e": [fin(v) for v in value],
            "theta_e_lo": [fin(v) for v in low],
            "theta_e_hi": [fin(v) for v in high],
        }

    def stamp(self, item: Item) -> np.ndarray:
        """The stamp of an item in units of its background sigma per band."""
        if item.simulated:
            return self.sims.stamp(item.row)
        stamps, _, sigma = self.tiles.raw(item.tile, item.x, item.y)
        return stamps[0] / sigma[:, None, None].astype(np.float32)

    def saliency(self, item: Item) -> np.ndarray | None:
        """The model's integrated-gradient saliency map of an item's stamp (its own
        preprocessing of the same pixels it scored); None when the card's TorchScript model
        cannot be loaded."""
        from skyscan.data.preprocess import preprocess
        from skyscan.models.saliency import saliency_maps

        with self._model_lock:  # strips are drawn in a thread pool: load the model once
            if not hasattr(self, "_model"):
                try:
                    self._model = load_model(self.sources.card_path)[0]
                except Exception as exc:  # noqa: BLE001 - the strip is drawn without it
                    log.warning(
                        "%s: no saliency panel, the model cannot be loaded (%s)",
                        self.sources.card_path,
                        exc,
                    )
                    self._model = None
        if self._model is None:
            return None
        if item.simulated:
            x = np.asarray(self.sims.images[item.row : item.row + 1])
        else:
            raw, _, _ = self.tiles.raw(item.tile, item.x, item.y)
            x = preprocess(raw, self.sources.card.preprocessing)
        return saliency_maps(self._model, x)[0]

    def png(self, key: str) -> Path:
        """The PNG strip of an item, rendered on first request and cached on disk."""
        item = self.by_key.get(key)
        if item is None:
            raise UsageError(f"unknown item {key!r}", key="item")
        path = self.cache / f"{key}.v{STRIP_VERSION}.png"
        if not path.is_file():
            data = render_strip(self.stamp(item), self.bands, self.saliency(item))
            with atomic_path(path, fsync=False) as tmp:
                tmp.write_bytes(data)
        return path
