"""Sample descriptions: what one sample of a science case is, and how it flows.

Every shared stage (shards, datasets, the data module, the trainer, the model card, the
export check, the evaluation's galleries and the search's scoring) handles samples through a
:class:`SampleDescription`, so a case whose samples are not image stamps is an addition, not
an edit of the shared stages.  A description says:

- the **payload**: one float32 array of fixed shape per sample (``shape``), stored in a
  shard's ``image`` column and a dataset split's ``images.npy``;
- the **preprocessing**: :meth:`~SampleDescription.fit` (on the shards' metadata and, when
  the description needs it, the training rows), :meth:`~SampleDescription.apply` and
  :meth:`~SampleDescription.invert`; the fitted specification is a small JSON-able dict
  written beside every dataset and into every model card, with ``sample`` naming the
  description (absent: image stamps, as skyscan wrote before descriptions existed);
- the **training augmentation** (:meth:`~SampleDescription.augment`) and the **test-time
  averaging group** (:data:`TTA_GROUPS`: the dihedral group of the square for stamps, none
  for a sequence);
- how a sample is **drawn** for people (:meth:`~SampleDescription.picture`, an RGB picture
  for galleries and the grading page).

Two descriptions ship: :class:`Stamps` (``(C, H, W)`` multi-band cutouts with a per-band
noise-scaled stretch and dihedral augmentation) and :class:`Sequences` (irregular,
variable-length multi-feature series padded to ``(T, F)`` with a mask feature, standardised
per feature on the training rows).  A case picks one with :meth:`skyscan.core.case.Case.samples`
or registers its own with :func:`register_sample_kind`.

Examples
--------
>>> import numpy as np
>>> seq = Sequences(features=("time", "value", "mask"), length=4)
>>> x = np.array([[[0.0, 1.0, 1], [1.0, 3.0, 1], [0, 0, 0], [0, 0, 0]]], dtype=np.float32)
>>> spec = seq.fit({"shape": [4, 3]}, {}, train=[x])
>>> seq.apply(x, spec)[0, :, 1].tolist()
[-1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import numpy as np

from skyscan.core.errors import ConfigError, MismatchError

__all__ = [
    "SampleDescription",
    "Stamps",
    "Sequences",
    "ArraySet",
    "TTA_GROUPS",
    "DihedralAverage",
    "describe",
    "register_sample_kind",
    "dihedral_augment",
    "apply_dihedral",
    "zoom_augment",
]


class SampleDescription:
    """Base class: what a sample is and how it is preprocessed, augmented and drawn.

    Subclasses set :attr:`kind` and override the methods; the defaults suit a payload with
    no preprocessing, no augmentation and no test-time averaging.
    """

    #: the name written as ``sample`` in shard metadata and preprocessing specs
    kind: ClassVar[str] = ""
    #: schema-metadata keys every shard of this kind must hold (besides ``shape``)
    shard_keys: ClassVar[tuple[str, ...]] = ()
    #: keys that must agree between all shards of one dataset
    same_keys: ClassVar[tuple[str, ...]] = ("shape",)
    #: True when :meth:`fit` reads training rows (the dataset stage then streams them)
    fit_reads_rows: ClassVar[bool] = False

    def fit(self, shard_meta: Mapping, settings: Mapping, train: Iterable[np.ndarray] = ()) -> dict:
        """The preprocessing specification.

        Parameters
        ----------
        shard_meta : mapping
            The first shard's schema metadata (every shard agrees on :attr:`same_keys`).
        settings : mapping
            The config's ``dataset`` section.
        train : iterable of ndarray
            Raw payloads of the training rows, in batches (read only when
            :attr:`fit_reads_rows`).
        """
        return {"sample": self.kind, "shape": [int(v) for v in shard_meta["shape"]]}

    def apply(self, x, spec: Mapping):
        """Preprocess a batch ``(N, *shape)`` (numpy or torch); returns float32."""
        return x

    def invert(self, x, spec: Mapping) -> np.ndarray:
        """Undo :meth:`apply` on one sample or a batch (for pictures)."""
        return np.asarray(x, dtype=np.float32)

    def model_kwargs(self, spec: Mapping) -> dict:
        """Keyword arguments that size a network to these samples (e.g. ``in_channels``)."""
        return {}

    def augment(self, x, spec: Mapping, settings: Mapping):
        """A training batch (torch, on its device, preprocessed with ``spec``) randomly
        transformed; ``settings`` is the config's ``train`` section."""
        return x

    def tta(self, enabled: bool) -> str | None:
        """The test-time averaging group recorded on the model card (:data:`TTA_GROUPS`)
        when ``train.tta`` is on; None for one pass."""
        if enabled:
            raise ConfigError(
                f"config key 'train.tta': {self.kind} samples have no test-time averaging "
                "group; set it to false",
                key="train.tta",
            )
        return None

    def check(self, spec: Mapping, other: Mapping, what: str) -> None:
        """Fail naming ``what`` unless samples preprocessed with ``other`` fit a model
        trained with ``spec``."""
        if [int(v) for v in other["shape"]] != list(spec["shape"]):
            raise MismatchError(
                f"{what}: sample shape {list(other['shape'])} does not match the model's "
                f"{spec['shape']}"
            )

    def card_fields(self, spec: Mapping, manifest: Mapping) -> dict:
        """Model-card fields that describe the inputs: ``bands`` (channel or feature names),
        ``pixel_scale`` and ``survey`` (None where they mean nothing)."""
        return {"bands": [], "pixel_scale": None, "survey": manifest.get("survey")}

    def picture(self, sample: np.ndarray, spec: Mapping) -> np.ndarray | None:
        """An RGB picture ``(H, W, 3)`` uint8 of one raw (inverted) sample, or None to let
        the gallery draw it as a colour composite of image channels."""
        return None

    def gallery_scale_bar(self, manifest: Mapping) -> tuple[float, float]:
        """``(pixel_scale, scale_bar_arcsec)`` of a gallery; (1, 0) draws no scale bar."""
        return 1.0, 0.0

    #: True when a search reads the samples from the catalogue's own rows
    #: (:meth:`from_catalog`); False when they are cut from survey tiles (stamps)
    reads_catalog: ClassVar[bool] = False

    def catalog_columns(self) -> list[str]:
        """The catalogue columns :meth:`from_catalog` reads."""
        return []

    def from_catalog(self, table, spec: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """Raw payloads ``(N, *shape)`` of a catalogue partition's rows (a pyarrow table) and
        their flags (int32, :data:`CATALOG_FLAGS`), for a search over the catalogue itself.

        Raises
        ------
        MismatchError
            If this kind of sample is not stored in catalogue rows (stamps: give tiles).
        """
        raise MismatchError(
            f"{self.kind} samples are not read from catalogue rows: the search needs survey "
            "tiles (--index or --tiles)"
        )


# --------------------------------------------------------------------------------------
# Image stamps


def dihedral_augment(images, generator=None):
    """Apply one of the 8 rotations/flips, drawn per cutout, to ``(N, C, H, W)`` images."""
    import torch

    n = images.shape[0]
    choice = torch.randint(0, 8, (n,), generator=generator, device="cpu").to(images.device)
    return apply_dihedral(images, choice)


def apply_dihedral(images, choice):
    """Turn each ``(N, C, H, W)`` image by its element of the dihedral group: ``choice`` in
    0..7, quarter-turns ``choice % 4`` after a left-right flip when ``choice >= 4``."""
    out = images.clone()
    for k in range(8):
        mask = choice == k
        if not bool(mask.any()):
            continue
        x = images[mask]
        if k >= 4:
            x = x.flip(-1)
        out[mask] = x.rot90(k % 4, dims=(-2, -1))
    return out


def zoom_augment(images, low: float, high: float, generator=None):
    """Zoom each ``(N, C, H, W)`` cutout about its centre by a factor drawn uniformly in
    ``[low, high]`` (CMU DeepLens's ``zoom_range``): a factor z samples the central z-th of
    the stamp onto the whole grid (bilinear), so z < 1 magnifies and no border is invented."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    z = torch.empty(n).uniform_(low, high, generator=generator).to(images.device, images.dtype)
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = z
    theta[:, 1, 1] = z
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class DihedralAverage:
    """Test-time averaging over the dihedral group of the square: the mean output of a model
    over the 8 symmetries (identity, three quarter-turns, and their mirror images).

    Stamps of the sky have no preferred orientation, so the network's answer should not
    depend on one; averaging removes what it learned about orientation by chance.

    Parameters
    ----------
    model : callable
        ``(N, C, H, W)`` tensor -> ``(N,)`` logits.
    """

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        total = None
        for flip in (False, True):
            y = x.flip(-1) if flip else x
            for turns in range(4):
                out = self.model(y.rot90(turns, dims=(-2, -1))).float()
                total = out if total is None else total + out
        return total / 8.0

    def eval(self):
        """For symmetry with torch modules."""
        self.model.eval()
        return self


#: Test-time averaging groups by the name a model card records (``scoring.tta``).
TTA_GROUPS = {"dihedral8": DihedralAverage}


class Stamps(SampleDescription):
    """Multi-band image cutouts ``(C, H, W)`` in e-/s per pixel.

    Shards carry ``bands``, ``pixel_scale`` (arcsec), ``survey`` and ``background_sigma``
    (per band); the preprocessing divides each band by its background sigma and stretches it
    (:mod:`skyscan.data.preprocess`: ``dataset.stretch`` asinh or clip); training batches are
    turned and flipped (``train.augment``) and optionally zoomed (``train.zoom``); test-time
    averaging is the dihedral group (``train.tta``).
    """

    kind = "stamps"
    shard_keys = ("bands", "pixel_scale", "survey")
    same_keys = ("bands", "shape", "pixel_scale", "background_sigma")

    def fit(self, shard_meta, settings, train=()) -> dict:
        """The noise-scaled stretch of :func:`skyscan.data.preprocess.make_spec` (no
        ``sample`` key: specs written before sample descriptions read the same)."""
        from skyscan.data.preprocess import make_spec

        return make_spec(
            shard_meta["bands"],
            shard_meta["background_sigma"],
            settings["clip_sigma"],
            shard_meta["shape"],
            stretch=settings["stretch"],
            softening=settings["asinh_softening"],
            normalise=settings.get("normalise", "background"),
        )

    def apply(self, x, spec):
        from skyscan.data.preprocess import preprocess

        return preprocess(x, spec)

    def invert(self, x, spec):
        from skyscan.data.preprocess import invert

        return invert(x, spec)

    def model_kwargs(self, spec):
        return {"in_channels": len(spec["bands"])}

    def augment(self, x, spec, settings):
        import torch

        if settings.get("augment", True):
            x = dihedral_augment(x)
            if settings.get("zoom"):
                x = zoom_augment(x, *settings["zoom"])
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def tta(self, enabled):
        return "dihedral8" if enabled else None

    def check(self, spec, other, what):
        from skyscan.data.preprocess import check_compatible

        check_compatible(spec, other["bands"], other["shape"], what)

    def card_fields(self, spec, manifest):
        return {
            "bands": list(spec["bands"]),
            "pixel_scale": manifest.get("pixel_scale"),
            "survey": manifest.get("survey"),
        }

    def gallery_scale_bar(self, manifest):
        pixel_scale = manifest.get("pixel_scale")
        return (float(pixel_scale), 2.0) if pixel_scale else (1.0, 0.0)


# --------------------------------------------------------------------------------------
# Sequences


class Sequences(SampleDescription):
    """Irregular, variable-length multi-feature sequences (light curves and the like), padded
    to ``(T, F)``: ``T`` = :attr:`length` steps of the :attr:`features`, the last of which is
    the mask (1 for a real step, 0 for padding; real steps first).

    The preprocessing standardises every feature but the mask by its median and its
    normalised median absolute deviation over the real steps of the training rows (robust to
    outliers and independent of units), and sets padding to 0; training batches are shifted
    in time by up to :attr:`time_shift` (in the time feature's units) when a feature is named
    ``time``; there is no test-time averaging.

    Parameters
    ----------
    features : sequence of str
        Feature names in order; the last must be ``mask``.
    length : int
        Padded length ``T``.
    time_shift : float
        Largest random shift of the ``time`` feature during training (0: none).
    """

    kind = "sequences"
    shard_keys = ("features",)
    same_keys = ("shape", "features")
    fit_reads_rows = True
    reads_catalog = True

    def __init__(
        self,
        features: Sequence[str],
        length: int,
        time_shift: float = 0.0,
        nested_column: str = "lightcurve",
    ):
        features = tuple(features)
        if not features or features[-1] != "mask":
            raise ConfigError(f"sequence features {features} must end with 'mask'")
        self.features = features
        self.length = int(length)
        self.time_shift = float(time_shift)
        self.nested_column = nested_column

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, F)`` of one padded sequence."""
        return self.length, len(self.features)

    def pad(self, steps: Sequence[np.ndarray]) -> np.ndarray:
        """Pad variable-length sequences (each ``(n_i, F - 1)``, real steps only, at most
        :attr:`length`) into ``(N, T, F)`` float32 with the mask feature set."""
        out = np.zeros((len(steps), *self.shape), dtype=np.float32)
        for i, s in enumerate(steps):
            s = np.asarray(s, dtype=np.float32)
            if s.ndim != 2 or s.shape[1] != len(self.features) - 1 or len(s) > self.length:
                raise ValueError(
                    f"sequence {i} has shape {s.shape}, expected (<= {self.length}, "
                    f"{len(self.features) - 1})"
                )
            out[i, : len(s), :-1] = s
            out[i, : len(s), -1] = 1.0
        return out

    def fit(self, shard_meta, settings, train=()) -> dict:
        if list(shard_meta.get("features", self.features)) != list(self.features):
            raise MismatchError(
                f"shards hold features {shard_meta.get('features')}, the case's description "
                f"{list(self.features)}"
            )
        values: list[list[np.ndarray]] = [[] for _ in self.features[:-1]]
        for batch in train:
            batch = np.asarray(batch, dtype=np.float32)
            real = batch[..., -1] > 0.5
            for f in range(len(self.features) - 1):
                values[f].append(batch[..., f][real])
        center, scale = [], []
        for f, name in enumerate(self.features[:-1]):
            v = np.concatenate(values[f]) if values[f] else np.zeros(0, np.float32)
            v = v[np.isfinite(v)]
            if not len(v):
                raise MismatchError(f"no finite training values of sequence feature {name!r}")
            med = float(np.median(v))
            mad = float(np.median(np.abs(v - med))) * 1.4826
            center.append(med)
            scale.append(mad if mad > 0 else 1.0)
        return {
            "sample": self.kind,
            "method": "median-mad-standardised",
            "features": list(self.features),
            "center": center,
            "scale": scale,
            "shape": [int(v) for v in shard_meta["shape"]],
            "time_shift": self.time_shift,
            "fitted_on": "train",
        }

    def apply(self, x, spec):
        center = np.asarray(spec["center"], dtype=np.float32)
        scale = np.asarray(spec["scale"], dtype=np.float32)
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a hard dependency
            torch = None
        if torch is not None and isinstance(x, torch.Tensor):
            x = torch.nan_to_num(x.float(), nan=0.0)
            mask = x[..., -1:]
            c = torch.as_tensor(center, device=x.device)
            s = torch.as_tensor(scale, device=x.device)
            return torch.cat([(x[..., :-1] - c) / s * mask, mask], dim=-1)
        x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)
        mask = x[..., -1:]
        out = np.empty_like(x)
        out[..., :-1] = (x[..., :-1] - center) / scale * mask
        out[..., -1:] = mask
        return out

    def invert(self, x, spec):
        x = np.asarray(x, dtype=np.float32)
        out = x.copy()
        mask = x[..., -1:]
        out[..., :-1] = (
            x[..., :-1] * np.asarray(spec["scale"], np.float32) + spec["center"]
        ) * mask
        return out

    def model_kwargs(self, spec):
        return {"in_features": len(spec["features"])}

    def augment(self, x, spec, settings):
        import torch

        if not settings.get("augment", True) or not self.time_shift or "time" not in self.features:
            return x
        f = self.features.index("time")
        # A shift of the time origin in the feature's own units, standardised as the
        # preprocessing does; padding stays 0.
        shift = (torch.rand(x.shape[0], 1, device=x.device) * 2 - 1) * (
            self.time_shift / float(spec["scale"][f])
        )
        out = x.clone()
        out[..., f] = x[..., f] + shift * x[..., -1]
        return out

    def check(self, spec, other, what):
        super().check(spec, other, what)
        if list(other.get("features", [])) != list(spec["features"]):
            raise MismatchError(
                f"{what}: features {other.get('features')} do not match the model's "
                f"{spec['features']}"
            )

    def card_fields(self, spec, manifest):
        return {"bands": list(spec["features"]), "pixel_scale": None, "survey": None}

    def catalog_columns(self):
        return [self.nested_column]

    def from_catalog(self, table, spec):
        """Each row's nested sequence (column :attr:`nested_column`: a list of structs with
        one field per feature but the mask, as nested-pandas and LSDB store light curves),
        padded; a sequence longer than :attr:`length` keeps its last steps
        (``FLAG_TRUNCATED``), one without a finite step is flagged ``FLAG_EMPTY``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.nested_column not in table.column_names:
            raise MismatchError(
                f"catalogue has no nested column {self.nested_column!r} "
                f"(columns: {', '.join(table.column_names[:12])})"
            )
        column = table.column(self.nested_column).combine_chunks()
        if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
            raise MismatchError(
                f"catalogue column {self.nested_column!r} is {column.type}, expected a list "
                "of structs (a nested light-curve column)"
            )
        flat = column.flatten()
        names = self.features[:-1]
        missing = [n for n in names if n not in [f.name for f in flat.type]]
        if missing:
            raise MismatchError(
                f"catalogue column {self.nested_column!r} lacks field(s) {', '.join(missing)}"
            )
        values = np.stack(
            [
                np.asarray(pc.cast(flat.field(n), pa.float32()).to_numpy(zero_copy_only=False))
                for n in names
            ],
            axis=1,
        ).astype(np.float32)
        offsets = np.asarray(column.offsets)
        out = np.zeros((len(column), *self.shape), dtype=np.float32)
        flags = np.zeros(len(column), dtype=np.int32)
        for i in range(len(column)):
            steps = values[offsets[i] : offsets[i + 1]]
            steps = steps[np.isfinite(steps).all(axis=1)]
            if len(steps) > self.length:
                steps = steps[-self.length :]
                flags[i] |= FLAG_TRUNCATED
            if not len(steps):
                flags[i] |= FLAG_EMPTY
                continue
            out[i, : len(steps), :-1] = steps
            out[i, : len(steps), -1] = 1.0
        return out, flags

    def picture(self, sample, spec):
        """The sequence drawn as value against time (or step), real steps only."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        sample = np.asarray(sample)
        real = sample[:, -1] > 0.5
        f_time = self.features.index("time") if "time" in self.features else None
        f_value = next(i for i, n in enumerate(self.features[:-1]) if i != f_time)
        t = sample[real, f_time] if f_time is not None else np.flatnonzero(real)
        fig = Figure(figsize=(1.6, 1.2), dpi=64)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.96))
        ax.plot(t, sample[real, f_value], ".", ms=2, color="k")
        ax.set_xticks([])
        ax.set_yticks([])
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        return np.ascontiguousarray(rgb[::-1])  # galleries draw with origin="lower"


# --------------------------------------------------------------------------------------
# Several named arrays plus scalars


class ArraySet(SampleDescription):
    """A sample made of several named arrays plus named scalars (e.g. a sky map's probability
    image, its distance layers and a detector vector), packed into one float32 vector per
    sample by a fixed layout: the parts in order, each flattened in C order, then the
    scalars.  Networks get the parts back by name with :meth:`unpack` (torch or numpy), so the
    exported model still takes one input.

    The preprocessing standardises each part (and each scalar) by its median and normalised
    median absolute deviation over the training rows; with ``roll`` naming parts, training
    batches are rolled by one random shift along those parts' last axis (a rotation in right
    ascension for maps on an equirectangular grid); there is no test-time averaging.

    Parameters
    ----------
    parts : mapping of str to tuple of int
        Name -> shape of each array part, in packing order.
    scalars : sequence of str
        Names of the scalar parts, after the arrays.
    roll : sequence of str
        Parts rolled together along their last axis during training.
    """

    kind = "arrays"
    shard_keys = ("layout",)
    same_keys = ("shape", "layout")
    fit_reads_rows = True
    reads_catalog = True

    def __init__(self, parts: Mapping[str, Sequence[int]], scalars=(), roll=()):
        self.parts = {str(k): tuple(int(v) for v in s) for k, s in parts.items()}
        self.scalars = tuple(scalars)
        self.roll = tuple(roll)
        unknown = [r for r in self.roll if r not in self.parts]
        if unknown:
            raise ConfigError(f"roll names unknown part(s) {unknown} (parts: {list(self.parts)})")
        if len({self.parts[r][-1] for r in self.roll}) > 1:
            raise ConfigError("parts rolled together must share their last axis")

    @property
    def layout(self) -> dict:
        """``{"parts": {name: shape}, "scalars": [names]}`` as written in shards and specs."""
        return {"parts": {k: list(v) for k, v in self.parts.items()}, "scalars": list(self.scalars)}

    @property
    def shape(self) -> tuple[int]:
        """``(L,)``: the packed length of one sample."""
        return (sum(int(np.prod(s)) for s in self.parts.values()) + len(self.scalars),)

    def _slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, shape in self.parts.items():
            size = int(np.prod(shape))
            out[name] = slice(start, start + size)
            start += size
        for name in self.scalars:
            out[name] = slice(start, start + 1)
            start += 1
        return out

    def pack(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(N, L)`` float32 from ``{part: (N, *shape)}`` and ``{scalar: (N,)}``."""
        missing = [k for k in (*self.parts, *self.scalars) if k not in values]
        if missing:
            raise ValueError(f"missing part(s) {missing}")
        n = len(np.asarray(values[next(iter(self.parts))]))
        out = np.empty((n, self.shape[0]), dtype=np.float32)
        for name, sl in self._slices().items():
            v = np.asarray(values[name], dtype=np.float32).reshape(n, -1)
            if v.shape[1] != sl.stop - sl.start:
                raise ValueError(f"part {name!r} has {v.shape[1]} values per sample")
            out[:, sl] = v
        return out

    def unpack(self, x) -> dict:
        """The named parts of packed samples ``(N, L)`` (numpy or torch): arrays shaped
        ``(N, *shape)``, scalars ``(N,)``."""
        out = {}
        for name, sl in self._slices().items():
            v = x[:, sl]
            out[name] = v.reshape(v.shape[0], *self.parts[name]) if name in self.parts else v[:, 0]
        return out

    def fit(self, shard_meta, settings, train=()) -> dict:
        layout = shard_meta.get("layout")
        if layout is not None and layout != self.layout:
            raise MismatchError(
                f"shards hold layout {layout}, the case's description {self.layout}"
            )
        chunks = [np.asarray(b, dtype=np.float32) for b in train]
        data = np.concatenate(chunks) if chunks else np.zeros((0, self.shape[0]), np.float32)
        center, scale = {}, {}
        for name, sl in self._slices().items():
            v = data[:, sl].ravel()
            v = v[np.isfinite(v)]
            if not len(v):
                raise MismatchError(f"no finite training values of part {name!r}")
            med = float(np.median(v))
            mad = float(np.median(np.abs(v - med))) * 1.4826
            center[name], scale[name] = med, (mad if mad > 0 else float(np.std(v)) or 1.0)
        return {
            "sample": self.kind,
            "method": "median-mad-standardised per part",
            "layout": self.layout,
            "center": center,
            "scale": scale,
            "shape": [int(v) for v in shard_meta["shape"]],
            "roll": list(self.roll),
            "fitted_on": "train",
        }

    def _vectors(self, spec):
        center = np.empty(self.shape[0], np.float32)
        scale = np.empty(self.shape[0], np.float32)
        for name, sl in self._slices().items():
            center[sl], scale[sl] = spec["center"][name], spec["scale"][name]
        return center, scale

    def apply(self, x, spec):
        center, scale = self._vectors(spec)
        try:
            import torch
        except ImportError:  # pragma: no cover
            torch = None
        if torch is not None and isinstance(x, torch.Tensor):
            c = torch.as_tensor(center, device=x.device)
            s = torch.as_tensor(scale, device=x.device)
            return torch.nan_to_num((x.float() - c) / s, nan=0.0)
        out = (np.asarray(x, dtype=np.float32) - center) / scale
        return np.nan_to_num(out, copy=False, nan=0.0)

    def invert(self, x, spec):
        center, scale = self._vectors(spec)
        return np.asarray(x, dtype=np.float32) * scale + center

    def model_kwargs(self, spec):
        return {"layout": spec["layout"]}

    def augment(self, x, spec, settings):
        import torch

        if not settings.get("augment", True) or not self.roll:
            return x
        width = self.parts[self.roll[0]][-1]
        shifts = torch.randint(0, width, (x.shape[0],), device="cpu").to(x.device)
        out = x.clone()
        slices = self._slices()
        idx = torch.arange(width, device=x.device)
        for name in self.roll:
            part = x[:, slices[name]].reshape(x.shape[0], -1, width)
            gather = (idx[None, :] - shifts[:, None]) % width
            rolled = torch.gather(part, 2, gather[:, None, :].expand_as(part))
            out[:, slices[name]] = rolled.reshape(x.shape[0], -1)
        return out

    def check(self, spec, other, what):
        super().check(spec, other, what)
        if other.get("layout") != spec["layout"]:
            raise MismatchError(
                f"{what}: layout {other.get('layout')} does not match the model's {spec['layout']}"
            )

    def card_fields(self, spec, manifest):
        return {"bands": [*self.parts, *self.scalars], "pixel_scale": None, "survey": None}

    def picture(self, sample, spec):
        """The first 2-D part as a grey image (origin lower), the others left out."""
        parts = self.unpack(np.asarray(sample)[None])
        image = next((v[0] for k, v in parts.items() if k in self.parts and v[0].ndim >= 2), None)
        if image is None:
            return None
        image = image.reshape(-1, *image.shape[-2:])[0]
        lo, hi = np.nanpercentile(image, [1, 99.5])
        grey = np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1)
        rgb = (np.repeat(grey[..., None], 3, axis=-1) * 255).astype(np.uint8)
        return np.kron(rgb, np.ones((4, 4, 1), np.uint8))  # large enough to see

    def catalog_columns(self):
        return [*self.parts, *self.scalars]

    def from_catalog(self, table, spec):
        """Each part from the catalogue column of its name (a list of the part's values,
        flattened in C order; a scalar column for a scalar); a row with a part of the wrong
        length or no finite value is flagged ``FLAG_EMPTY``."""
        import pyarrow as pa

        missing = [c for c in self.catalog_columns() if c not in table.column_names]
        if missing:
            raise MismatchError(f"catalogue lacks column(s) {', '.join(missing)}")
        n = table.num_rows
        out = np.zeros((n, self.shape[0]), dtype=np.float32)
        flags = np.zeros(n, dtype=np.int32)
        for name, sl in self._slices().items():
            column = table.column(name).combine_chunks()
            if name in self.scalars:
                out[:, sl.start] = np.asarray(column.to_numpy(zero_copy_only=False), np.float32)
                continue
            if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)):
                raise MismatchError(f"catalogue column {name!r} is {column.type}, expected a list")
            size = sl.stop - sl.start
            lengths = np.asarray(column.value_lengths().fill_null(0))
            good = lengths == size
            flags[~good] |= FLAG_EMPTY
            values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            for i in np.flatnonzero(good):
                out[i, sl] = values[offsets[i] : offsets[i + 1]]
        flags[~np.isfinite(out).any(axis=1)] |= FLAG_EMPTY
        return out, flags


#: Flags of samples read from catalogue rows (:meth:`SampleDescription.from_catalog`).
FLAG_TRUNCATED = 4  # longer than the model's length: its last steps kept
FLAG_EMPTY = 8  # no finite step: not scored
CATALOG_FLAGS = {FLAG_TRUNCATED: "truncated", FLAG_EMPTY: "empty"}

_KINDS: dict[str, type[SampleDescription]] = {
    "stamps": Stamps,
    "sequences": Sequences,
    "arrays": ArraySet,
}


def register_sample_kind(cls: type[SampleDescription], force: bool = False) -> None:
    """Make a description class known by its :attr:`~SampleDescription.kind` (for specs that
    name it); a taken name is refused unless ``force``."""
    if cls.kind in _KINDS and _KINDS[cls.kind] is not cls and not force:
        raise ConfigError(f"sample kind {cls.kind!r} is already registered")
    _KINDS[cls.kind] = cls


def describe(case=None, spec: Mapping | None = None) -> SampleDescription:
    """The sample description of a case (:meth:`skyscan.core.case.Case.samples`), or image
    stamps when the case names none.

    Parameters
    ----------
    case : skyscan.core.case.Case, optional
    spec : mapping, optional
        A preprocessing spec: its ``sample`` must match the case's description (a spec
        without one was written for stamps).
    """
    samples = case.samples() if case is not None else None
    if samples is None:
        samples = Stamps()
    if spec is not None:
        kind = spec.get("sample", Stamps.kind)
        if kind != samples.kind:
            raise MismatchError(
                f"preprocessing is for {kind!r} samples, the case's are {samples.kind!r}"
            )
    return samples
