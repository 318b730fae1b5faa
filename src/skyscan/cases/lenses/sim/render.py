"""The batched renderer: parameters in, multi-band noisy cutouts out.

One call renders a whole batch of systems at once in torch (CPU or GPU), in named steps
(see :func:`render`):

1. every light component of the table :data:`.components.COMPONENTS` is evaluated
   on the super-sampled grid for the systems that carry it (lensed ones through the
   deflector's SIE + shear) with unit amplitude, and averaged to the pixel grid
   (:func:`draw_components`);
2. bands differ only by the components' amplitudes, so each band image is a weighted sum of
   these pixel-grid components (:func:`compose_bands`; lenstronomy would redo steps 1-2 once
   per band);
3. each band is convolved with its PSF on the pixel grid (:func:`convolve`, lenstronomy's
   default ``supersampling_convolution=False``), stars are added as analytic PSFs
   (:func:`add_point_sources`);
4. the magnification and the LensPop S/N are measured on the lensed source alone
   (:func:`measure_magnification`, :func:`measure_snr`), and noise is added
   (:func:`add_noise`).

Images are in e-/s per pixel (lenstronomy's ``data_count_unit='e-'``), shaped
``(N, bands, H, W)``; pixel ``[j, i]`` is centred on ``x = (i - (W-1)/2) pix``,
``y = (j - (H-1)/2) pix`` (x to the right, y up: lenstronomy's ``transform_pix2angle =
diag(pix, pix)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from skyscan.cases.lenses.sim import profiles as prof
from skyscan.cases.lenses.sim.components import COMPONENTS, LightComponent, carriers
from skyscan.cases.lenses.sim.psf import PSFConvolver, psf_kernel
from skyscan.cases.lenses.sim.survey import Band, ConfigError

__all__ = [
    "Observation",
    "RenderResult",
    "Scene",
    "Layer",
    "render",
    "optimal_snr",
    "add_noise",
    "pixel_grid",
]


#: The S/N definitions of :class:`Observation` (``lenses.snr_definition``).
SNR_DEFINITIONS = ("lenspop", "source_only")


@dataclass(frozen=True)
class Observation:
    """How a batch is observed: bands, stamp, super-sampling and depth.

    Parameters
    ----------
    bands : list of Band
        Bands in channel order; they must share one pixel scale.
    stamp_size : int
        Cutout side in pixels.
    supersampling : int
        Sub-pixels per pixel side.
    exposures : "single", "coadd" or int
        Visits per band: one, the band's full-depth count, or this number.
    snr_definition : {"lenspop", "source_only"}
        The noise of the lensed source's S/N (:func:`optimal_snr`): LensPop's, with the
        light of everything else in the stamp (the deflector above all) in the variance, as a
        lens found by subtracting a model of the deflector is Poisson-limited by it
        (Collett 2015); or the sky, read noise and the source's own light only.
    """

    bands: tuple[Band, ...]
    stamp_size: int = 45
    supersampling: int = 3
    exposures: str | int = "coadd"
    snr_definition: str = "lenspop"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        scales = {b.pixel_scale for b in self.bands}
        if len(scales) != 1:
            raise ConfigError(f"bands must share one pixel_scale, got {sorted(scales)}")
        if not (isinstance(self.supersampling, int) and self.supersampling >= 1):
            raise ConfigError(
                "config key 'lenses.supersampling' must be an integer >= 1, "
                f"got {self.supersampling!r}"
            )
        if self.snr_definition not in SNR_DEFINITIONS:
            raise ConfigError(
                f"config key 'lenses.snr_definition': {self.snr_definition!r} is not one of "
                f"{', '.join(SNR_DEFINITIONS)}"
            )
        if self.exposures not in ("single", "coadd") and not (
            isinstance(self.exposures, int) and self.exposures >= 1
        ):
            raise ConfigError(
                "config key 'lenses.exposures' must be 'single', 'coadd' or a positive "
                f"integer, got {self.exposures!r}"
            )

    @property
    def pixel_scale(self) -> float:
        return self.bands[0].pixel_scale

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def num_exposures(self, band: Band) -> int:
        if self.exposures == "single":
            return 1
        if self.exposures == "coadd":
            return band.num_exposures
        return int(self.exposures)

    def exposure_time(self, band: Band) -> float:
        """Total exposure time of the stack in seconds."""
        return self.num_exposures(band) * band.exposure_time

    def background_sigma(self) -> np.ndarray:
        """Per-band background noise per pixel in e-/s."""
        return np.array([b.background_sigma(self.num_exposures(b)) for b in self.bands])

    def convolver(self, device, dtype) -> PSFConvolver:
        key = ("conv", str(device), dtype)
        if key not in self._cache:
            kernels = [psf_kernel(b) for b in self.bands]
            self._cache[key] = PSFConvolver(
                kernels, (self.stamp_size, self.stamp_size), device=device, dtype=dtype
            )
        return self._cache[key]


def pixel_grid(
    n: int, pixel_scale: float, supersampling: int = 1, device="cpu", dtype=torch.float32
):
    """Sub-pixel centre coordinates of an ``n x n`` stamp, flattened row-major.

    Returns
    -------
    x, y : torch.Tensor
        Shape ``(1, (n s)^2)``; sub-pixel ``k`` of pixel ``i`` sits at
        ``(i + (k + 0.5)/s - 0.5 - (n-1)/2) * pixel_scale``.
    """
    s = supersampling
    u = (np.arange(n * s) + 0.5) / s - 0.5 - (n - 1) / 2
    coords = torch.as_tensor(u * pixel_scale, dtype=dtype, device=device)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return x.reshape(1, -1), y.reshape(1, -1)


@dataclass
class RenderResult:
    """Output of :func:`render` (numpy arrays).

    Attributes
    ----------
    image : ndarray, shape (N, bands, H, W), float32
        Observed image in e-/s per pixel (noisy unless noise was off).
    magnification : ndarray, shape (N,)
        Lensed over intrinsic source flux (within the stamp); NaN for non-lenses.
    snr : ndarray, shape (N, bands)
        LensPop optimal-aperture S/N of the lensed source; NaN for non-lenses.
    """

    image: np.ndarray
    magnification: np.ndarray
    snr: np.ndarray


def optimal_snr(
    signal: np.ndarray, sigma_bkg, exposure_time, top: int = 384, scene: np.ndarray | None = None
) -> np.ndarray:
    """LensPop optimal-aperture S/N of a noise-free signal image.

    Pixel variance is ``sigma_bkg^2 + max(signal, 0) / exposure_time`` (background plus the
    signal's own Poisson noise), or with ``scene`` ``sigma_bkg^2 + max(scene, 0) /
    exposure_time``: the Poisson noise of all the light in the stamp, as LensPop's
    ``SNfunc`` (Collett 2015: "Poisson-limited lens subtraction").  Pixels are ranked by their
    own S/N and the aperture is the ``k`` best pixels maximising
    ``sum(signal) / sqrt(sum(variance))``.

    Without ``scene`` a pixel's S/N increases with its signal, so the ranking needs only the
    brightest pixels:

    Only the ``top`` brightest pixels are sorted (``np.partition`` finds them); a row is
    redone with all pixels unless the fainter ones provably cannot raise the S/N: each adds at
    most the ``top``-th signal ``t`` and at least ``sigma_bkg^2``, so no longer aperture beats
    ``max_m (S + m t) / sqrt(V + m sigma_bkg^2)``.  The result is exact either way.

    Parameters
    ----------
    signal : ndarray, shape (N, bands, H, W)
        Noise-free image of the lensed source alone, e-/s per pixel.
    sigma_bkg, exposure_time : array_like, shape (bands,)
        Background noise per pixel (e-/s) and total exposure time (s).
    top : int
        Pixels sorted before the bound is checked.
    scene : ndarray, shape (N, bands, H, W), optional
        Noise-free image of everything in the stamp, signal included (e-/s per pixel).

    Returns
    -------
    ndarray, shape (N, bands)
    """
    if scene is not None:
        return _optimal_snr_in_scene(signal, scene, sigma_bkg, exposure_time)
    n, nb = signal.shape[:2]
    flat = np.maximum(np.asarray(signal, dtype=np.float32).reshape(n * nb, -1), np.float32(0))
    var_bkg = np.repeat((np.asarray(sigma_bkg, np.float64) ** 2)[None, :], n, 0).ravel()
    inv_t = np.repeat(1.0 / np.asarray(exposure_time, np.float64)[None, :], n, 0).ravel()
    npix = flat.shape[1]
    top = min(top, npix)

    def best_prefix(ranked, rows):
        var = ranked * inv_t[rows, None].astype(np.float32) + var_bkg[rows, None].astype(np.float32)
        s_cum, v_cum = np.cumsum(ranked, axis=-1), np.cumsum(var, axis=-1)
        return (s_cum / np.sqrt(v_cum)).max(axis=-1).astype(np.float64), s_cum[:, -1], v_cum[:, -1]

    rows = np.arange(n * nb)
    if top == npix:
        return best_prefix(-np.sort(-flat, axis=-1), rows)[0].reshape(n, nb)
    brightest = -np.partition(-flat, top - 1, axis=-1)[:, :top]
    ranked = -np.sort(-brightest, axis=-1)
    snr, s_top, v_top = best_prefix(ranked, rows)
    # Upper bound of any longer aperture: m more pixels of signal <= t and variance >= sigma^2.
    t = ranked[:, -1].astype(np.float64)
    s_top, v_top = s_top.astype(np.float64), v_top.astype(np.float64)
    m_max = npix - top
    with np.errstate(divide="ignore", invalid="ignore"):
        m_star = (var_bkg * s_top - 2 * t * v_top) / np.where(t > 0, t * var_bkg, np.inf)
    bound = np.zeros_like(snr)
    for m in (np.ones_like(t), np.full_like(t, m_max), np.clip(np.nan_to_num(m_star), 1, m_max)):
        bound = np.maximum(bound, (s_top + m * t) / np.sqrt(v_top + m * var_bkg))
    redo = np.flatnonzero(bound > snr)
    if len(redo):
        snr[redo] = best_prefix(-np.sort(-flat[redo], axis=-1), redo)[0]
    return snr.reshape(n, nb)


def _optimal_snr_in_scene(signal, scene, sigma_bkg, exposure_time) -> np.ndarray:
    """:func:`optimal_snr` with the whole scene's light in the variance: pixels ranked by
    ``signal / sigma`` (the deflector makes a pixel's S/N no longer follow its signal)."""
    n, nb = signal.shape[:2]
    s = np.maximum(np.asarray(signal, dtype=np.float64).reshape(n, nb, -1), 0.0)
    light = np.maximum(np.asarray(scene, dtype=np.float64).reshape(n, nb, -1), 0.0)
    var_bkg = (np.asarray(sigma_bkg, np.float64) ** 2)[None, :, None]
    inv_t = (1.0 / np.asarray(exposure_time, np.float64))[None, :, None]
    var = var_bkg + light * inv_t
    order = np.argsort(-s / np.sqrt(var), axis=-1, kind="stable")
    s_cum = np.cumsum(np.take_along_axis(s, order, -1), axis=-1)
    v_cum = np.cumsum(np.take_along_axis(var, order, -1), axis=-1)
    return (s_cum / np.sqrt(v_cum)).max(axis=-1)


def _pixelate(fn, h: int, s: int, area: float, static: tuple):
    """Wrap a unit-amplitude profile kernel into one that returns flux per pixel (B, H, W).

    The bin step: the kernel's surface brightness on the ``(h s)^2`` sub-pixel grid is
    averaged over each pixel's ``s x s`` sub-pixels and multiplied by the pixel area.
    """
    options = dict(static)

    def pixels(x, y, *consts):
        img = fn(x, y, *consts, **options).reshape(-1, 1, h * s, h * s)
        if s > 1:
            img = F.avg_pool2d(img, s)
        return img[:, 0] * area

    pixels.__name__ = f"pixels_{fn.__name__}"
    pixels.__qualname__ = pixels.__name__
    return pixels


_PIXEL_KERNELS: dict = {}


def _pixel_kernel(fn, h, s, area, compile, **static):
    """The pixelated kernel of ``fn`` (:func:`_pixelate`), compiled if asked, cached by its
    identity so that each is compiled once per process."""
    key = (fn, h, s, area, compile, tuple(sorted(static.items())))
    if key not in _PIXEL_KERNELS:
        pixels = _pixelate(fn, h, s, area, key[-1])
        _PIXEL_KERNELS[key] = (
            torch.compile(pixels, dynamic=False, fullgraph=True) if compile else pixels
        )
    return _PIXEL_KERNELS[key]


class Scene:
    """A batch being rendered: its columns, the observation and the super-sampled grid.

    Built by :func:`setup_scene`; the light components' render functions (see
    :mod:`skyscan.cases.lenses.sim.components`) draw on it with :meth:`evaluate`.

    Parameters
    ----------
    params : mapping of str to array
        The batch's columns (``kind`` plus the parameters).
    obs : Observation
    device, dtype
        Torch device and precision of the rendering.
    chunk : int
        Systems evaluated together on the super-sampled grid.
    compile : bool
        Whether the profile kernels are compiled.
    """

    def __init__(self, params, obs: Observation, device, dtype, chunk: int, compile: bool):
        self.params = params
        self.obs = obs
        self.kind = np.asarray(params["kind"])
        self.n = len(self.kind)
        self.device = torch.device(device)
        self.dtype = dtype
        self.chunk = chunk
        self.compile = compile
        self.size = obs.stamp_size
        self.supersampling = obs.supersampling
        self.area = obs.pixel_scale**2
        self.x, self.y = self.grid(obs.supersampling, dtype)

    def grid(self, supersampling: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Sub-pixel centres of the stamp (see :func:`pixel_grid`) on the scene's device."""
        return pixel_grid(
            self.size, self.obs.pixel_scale, supersampling, device=self.device, dtype=dtype
        )

    def col(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Column ``name`` of the systems ``rows``, as float64."""
        return np.asarray(self.params[name], dtype=np.float64)[rows]

    def rows(self, component: LightComponent) -> np.ndarray:
        """Indices of the systems that carry ``component``; for a neighbour slot, only those
        where it is filled (finite magnitude), none if the batch lacks its columns."""
        mask = carriers(component, self.kind)
        if component.neighbour:
            key = f"{component.name}_mag_{self.obs.bands[0].name}"
            if key not in self.params:
                return np.zeros(0, dtype=np.int64)
            mask &= np.isfinite(np.asarray(self.params[key], dtype=np.float64))
        return np.flatnonzero(mask)

    def sersic(self, prefix: str, rows: np.ndarray, center=None) -> list[np.ndarray]:
        """Sersic constants of the columns ``<prefix>_R_sersic, _n_sersic, _e1, _e2`` and
        ``center`` (default ``<prefix>_center_x, _center_y``) of the systems ``rows``."""
        cx, cy = center or (f"{prefix}_center_x", f"{prefix}_center_y")
        return prof.sersic_constants(
            *(self.col(f"{prefix}_{k}", rows) for k in ("R_sersic", "n_sersic", "e1", "e2")),
            self.col(cx, rows),
            self.col(cy, rows),
        )

    def evaluate(self, rows: np.ndarray, fn, *constant_sets, **static) -> torch.Tensor:
        """Unit-amplitude pixel images of the systems ``rows``.

        The kernel ``fn(x, y, *constants, **static)`` is evaluated on the super-sampled grid
        ``chunk`` systems at a time (the last chunk padded with its last row, so compiled
        kernels see one shape), averaged to the pixel grid and multiplied by the pixel area.

        Parameters
        ----------
        rows : ndarray of int
            Systems to draw.
        fn : callable
            A profile kernel of :mod:`skyscan.cases.lenses.sim.profiles`.
        *constant_sets : list of ndarray
            Its constant tables, one float64 column per constant, one row per system.
        **static
            Keyword options of the kernel (part of the compiled kernel's identity).

        Returns
        -------
        torch.Tensor, shape (len(rows), H, W)
        """
        h, s, chunk = self.size, self.supersampling, self.chunk
        kern = _pixel_kernel(fn, h, s, self.area, self.compile, **static)
        tables = [np.stack([np.asarray(c, np.float64) for c in cs], axis=1) for cs in constant_sets]
        out = torch.empty((len(rows), h, h), dtype=self.dtype, device=self.device)
        for start in range(0, len(rows), chunk):
            stop = min(start + chunk, len(rows))
            pad = np.arange(start, start + chunk).clip(max=stop - 1)  # pad with the last row
            consts = [torch.as_tensor(t[pad], device=self.device).to(self.dtype) for t in tables]
            out[start:stop] = kern(self.x, self.y, *consts)[: stop - start]
        return out

    def amplitudes(self, name: str, rows: np.ndarray, unit_flux: np.ndarray) -> np.ndarray:
        """Per-band amplitudes ``(len(rows), bands)`` of a component whose unit-amplitude
        profile has total flux ``unit_flux``: its rates from ``<name>_mag_<band>``, over it."""
        rates = np.stack(
            [b.mag_to_rate(self.col(f"{name}_mag_{b.name}", rows)) for b in self.obs.bands], 1
        )
        return rates / unit_flux[:, None]


@dataclass
class Layer:
    """One light component drawn for the systems that carry it.

    Attributes
    ----------
    component : LightComponent
    rows : ndarray of int
        The systems, indices into the batch.
    images : torch.Tensor
        Unit-amplitude pixel images ``(m, H, W)`` of a convolved component, else its band
        images ``(m, bands, H, W)`` in e-/s.
    unit_flux : ndarray or None
        Total flux of the unit-amplitude profiles (convolved components).
    amplitudes : ndarray or None
        Per-band amplitudes ``(m, bands)`` (convolved components).
    """

    component: LightComponent
    rows: np.ndarray
    images: torch.Tensor
    unit_flux: np.ndarray | None = None
    amplitudes: np.ndarray | None = None

    def band_images(self, scene: Scene) -> torch.Tensor:
        """The convolved component's band images ``(m, bands, H, W)``, unconvolved."""
        amp_t = torch.as_tensor(self.amplitudes, dtype=scene.dtype, device=scene.device)
        return amp_t[:, :, None, None] * self.images[:, None]


def setup_scene(
    params: Mapping[str, np.ndarray], obs: Observation, device, dtype, chunk: int, compile: bool
) -> Scene:
    """Set up the batch: its columns, the observation and the super-sampled grid.

    Also flushes float32 subnormals to zero: far profile tails underflow to them, which slows
    CPU arithmetic up to 30x, and flushing them changes nothing above 1e-38.

    Parameters
    ----------
    params, obs, device, dtype, chunk, compile
        As for :func:`render`.

    Returns
    -------
    Scene
    """
    torch.set_flush_denormal(True)
    return Scene(params, obs, device, dtype, chunk, compile)


def deflector_mass(scene: Scene, rows: np.ndarray) -> list[np.ndarray]:
    """The deflector's SIE + shear constants of the systems ``rows``, for lensed components.

    The deflection itself is computed inside the lensed components' kernels, fused with the
    source profile evaluated at ``beta = theta - alpha(theta)``.

    Parameters
    ----------
    scene : Scene
    rows : ndarray of int

    Returns
    -------
    list of ndarray
        Columns from :func:`skyscan.cases.lenses.sim.profiles.sie_constants`.
    """
    names = ("theta_E", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2")
    return prof.sie_constants(*(scene.col(k, rows) for k in names))


def draw_components(scene: Scene, components=COMPONENTS) -> list[Layer]:
    """Render every light component of the table for the systems that carry it.

    Parameters
    ----------
    scene : Scene
    components : sequence of LightComponent
        The table (:data:`skyscan.cases.lenses.sim.components.COMPONENTS`).

    Returns
    -------
    list of Layer
        In table order, components that no system carries left out.
    """
    layers = []
    for comp in components:
        rows = scene.rows(comp)
        if not len(rows):
            continue
        mass = deflector_mass(scene, rows) if comp.lensed else None
        images, unit = comp.render(scene, rows, mass)
        amp = scene.amplitudes(comp.name, rows, unit) if comp.convolved else None
        layers.append(Layer(comp, rows, images, unit, amp))
    return layers


def compose_bands(scene: Scene, layers: list[Layer]) -> torch.Tensor:
    """The unconvolved band images: per-band weighted sums of the convolved components.

    Bands differ only by the components' amplitudes, so the unit-amplitude pixel images are
    drawn once for all bands.

    Parameters
    ----------
    scene : Scene
    layers : list of Layer

    Returns
    -------
    torch.Tensor, shape (N, bands, H, W)
    """
    shape = (scene.n, len(scene.obs.bands), scene.size, scene.size)
    model = torch.zeros(shape, dtype=scene.dtype, device=scene.device)
    for layer in layers:
        if not layer.component.convolved:
            continue
        if len(layer.rows) == scene.n:
            model.add_(layer.band_images(scene))
        else:
            rows = torch.as_tensor(layer.rows, device=scene.device)
            model.index_add_(0, rows, layer.band_images(scene))
    return model


def lensed_signal(scene: Scene, layers: list[Layer]) -> tuple[np.ndarray, torch.Tensor] | None:
    """The lensed components alone (the signal the S/N is measured on), unconvolved.

    Parameters
    ----------
    scene : Scene
    layers : list of Layer

    Returns
    -------
    (rows, images) or None
        The systems with a lensed component and their band images ``(m, bands, H, W)``;
        ``None`` if there are none.  A kind carries at most one lensed component.
    """
    lensed = [layer for layer in layers if layer.component.lensed]
    if not lensed:
        return None
    rows = np.concatenate([layer.rows for layer in lensed])
    return rows, torch.cat([layer.band_images(scene) for layer in lensed])


def convolve(
    scene: Scene, model: torch.Tensor, signal: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Convolve the band images, and the lensed signal if any, with the bands' PSFs.

    One convolution call on the pixel grid (lenstronomy's default,
    ``supersampling_convolution=False``) for both.

    Parameters
    ----------
    scene : Scene
    model : torch.Tensor, shape (N, bands, H, W)
    signal : torch.Tensor, shape (m, bands, H, W), or None

    Returns
    -------
    model, signal : torch.Tensor
        Convolved (``signal`` stays ``None`` if it was).
    """
    conv = scene.obs.convolver(scene.device, scene.dtype)
    if signal is None:
        return conv(model), None
    both = conv(torch.cat([model, signal]))
    return both[: scene.n], both[scene.n :]


def add_point_sources(model: torch.Tensor, layers: list[Layer]) -> torch.Tensor:
    """Add the components drawn as the PSF itself (stars) to the convolved band images.

    Parameters
    ----------
    model : torch.Tensor, shape (N, bands, H, W)
        Convolved band images, modified in place.
    layers : list of Layer

    Returns
    -------
    torch.Tensor
        ``model``.
    """
    for layer in layers:
        if not layer.component.convolved:
            model[layer.rows] += layer.images
    return model


def measure_magnification(scene: Scene, layers: list[Layer]) -> np.ndarray:
    """Lensed over intrinsic flux (within the stamp) of each system's lensed component.

    Parameters
    ----------
    scene : Scene
    layers : list of Layer

    Returns
    -------
    ndarray, shape (N,)
        NaN for systems without a lensed component.
    """
    magnification = np.full(scene.n, np.nan)
    for layer in layers:
        if layer.component.lensed:
            flux = layer.images.sum(dim=(1, 2)).double().cpu().numpy()
            magnification[layer.rows] = flux / layer.unit_flux
    return magnification


def measure_snr(
    scene: Scene, rows: np.ndarray, signal: torch.Tensor, model: torch.Tensor | None = None
) -> np.ndarray:
    """LensPop optimal-aperture S/N (:func:`optimal_snr`) of the convolved lensed signal,
    with the noise of ``Observation.snr_definition``.

    Parameters
    ----------
    scene : Scene
    rows : ndarray of int
        The systems of ``signal``.
    signal : torch.Tensor, shape (len(rows), bands, H, W)
    model : torch.Tensor, shape (N, bands, H, W), optional
        The noise-free convolved scene of every system (needed by ``"lenspop"``).

    Returns
    -------
    ndarray, shape (N, bands)
        NaN for systems without a lensed component.
    """
    obs = scene.obs
    exp_time = np.array([obs.exposure_time(b) for b in obs.bands])
    snr = np.full((scene.n, len(obs.bands)), np.nan)
    light = None
    if obs.snr_definition == "lenspop":
        if model is None:
            raise ValueError("measure_snr: the 'lenspop' S/N needs the scene's model")
        light = model[torch.as_tensor(rows, device=model.device)].cpu().numpy()
    snr[rows] = optimal_snr(signal.cpu().numpy(), obs.background_sigma(), exp_time, scene=light)
    return snr


def render(
    params: Mapping[str, np.ndarray],
    obs: Observation,
    noise_seed: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    chunk: int = 16,
    compile: bool = False,
    diagnostics: bool = True,
) -> RenderResult:
    """Render a batch of systems.

    The steps: :func:`setup_scene`, :func:`draw_components` (each light component of
    :data:`.components.COMPONENTS` for the systems that carry it, lensed ones
    through :func:`deflector_mass`), :func:`compose_bands`, :func:`convolve` (with the
    :func:`lensed_signal`), :func:`add_point_sources`, :func:`measure_magnification`,
    :func:`measure_snr` and :func:`add_noise`.

    Parameters
    ----------
    params : mapping of str to array
        Columns as drawn by :class:`.population.Population` (``kind`` plus the
        parameters, NaN where a kind lacks a component).
    obs : Observation
        Bands, stamp and depth.
    noise_seed : int, optional
        Seed of the noise (see :func:`add_noise`); ``None`` gives noise-free images.
    device, dtype
        Torch device and precision of the rendering.
    chunk : int
        Systems evaluated together on the super-sampled grid.  Every chunk has this size (the
        last is padded), so compiled kernels see one shape.
    compile : bool
        Fuse the profile kernels with ``torch.compile`` (needs a C++ compiler on CPU, Triton on
        GPU; 2-4x faster on CPU after a one-off compilation of ~20 s, cached on disk).
        Results differ from eager mode by float32 rounding only.
    diagnostics : bool
        Measure the S/N (which convolves the source alone once more); ``False`` leaves it NaN,
        for a like-for-like timing against image-only renderers.

    Returns
    -------
    RenderResult
    """
    scene = setup_scene(params, obs, device, dtype, chunk, compile)
    layers = draw_components(scene)
    model = compose_bands(scene, layers)
    signal = lensed_signal(scene, layers) if diagnostics else None
    model, signal_image = convolve(scene, model, None if signal is None else signal[1])
    model = add_point_sources(model, layers)
    magnification = measure_magnification(scene, layers)
    if signal is None:
        snr = np.full((scene.n, len(obs.bands)), np.nan)
    else:
        snr = measure_snr(scene, signal[0], signal_image, model)
    if noise_seed is not None:
        exp_time = np.array([obs.exposure_time(b) for b in obs.bands])
        model = add_noise(model, obs.background_sigma(), exp_time, noise_seed)
    return RenderResult(
        image=model.to(torch.float32).cpu().numpy(),
        magnification=magnification,
        snr=snr,
    )


def add_noise(model: torch.Tensor, sigma_bkg, exposure_time, seed: int):
    """Add Gaussian noise of variance ``sigma_bkg^2 + max(model, 0) / exposure_time``.

    The background term is sky Poisson noise plus read noise (see
    :meth:`.survey.Band.background_sigma`); the second is the sources' own Poisson
    noise, both in their Gaussian limit as lenstronomy's ``noise_for_model`` does.  The unit
    normals come from one ``torch.randn`` call of the model's shape on a CPU generator seeded
    with ``seed``, so they depend only on the seed (and the torch version), on any device.

    Parameters
    ----------
    model : torch.Tensor, shape (N, bands, H, W)
        Noise-free image, e-/s per pixel.
    sigma_bkg, exposure_time : array_like, shape (bands,)
        Background noise per pixel (e-/s) and total exposure time (s).
    seed : int

    Returns
    -------
    torch.Tensor
    """
    like = dict(dtype=model.dtype, device=model.device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    normal = torch.randn(tuple(model.shape), generator=gen, dtype=torch.float32).to(**like)
    var_bkg = torch.as_tensor(np.asarray(sigma_bkg, np.float64) ** 2, **like)[None, :, None, None]
    t = torch.as_tensor(np.asarray(exposure_time, np.float64), **like)[None, :, None, None]
    return model + torch.sqrt(var_bkg + torch.clamp(model, min=0) / t) * normal
