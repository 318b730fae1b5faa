"""The batched renderer: parameters in, multi-band noisy cutouts out.

One call renders a whole batch of systems at once in torch (CPU or GPU):

1. every light component is evaluated on the super-sampled grid for the systems that have it
   (the deflection only for lenses) with unit amplitude, and averaged to the pixel grid;
2. bands differ only by the components' amplitudes, so each band image is a weighted sum of
   these pixel-grid components (lenstronomy would redo steps 1-2 once per band);
3. each band is convolved with its PSF on the pixel grid (lenstronomy's default,
   ``supersampling_convolution=False``), stars are added as analytic PSFs;
4. the LensPop S/N is measured on the lensed-source-only image, and noise is added.

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

from skyscan.sim import profiles as prof
from skyscan.sim.psf import PSFConvolver, psf_kernel, psf_kernel_radius, psf_profile
from skyscan.sim.survey import Band, ConfigError

__all__ = ["Observation", "RenderResult", "render", "optimal_snr", "add_noise", "pixel_grid"]


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
    """

    bands: tuple[Band, ...]
    stamp_size: int = 45
    supersampling: int = 3
    exposures: str | int = "coadd"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        scales = {b.pixel_scale for b in self.bands}
        if len(scales) != 1:
            raise ConfigError(f"bands must share one pixel_scale, got {sorted(scales)}")
        if not (isinstance(self.supersampling, int) and self.supersampling >= 1):
            raise ConfigError(
                "config key 'simulate.supersampling' must be an integer >= 1, "
                f"got {self.supersampling!r}"
            )
        if self.exposures not in ("single", "coadd") and not (
            isinstance(self.exposures, int) and self.exposures >= 1
        ):
            raise ConfigError(
                "config key 'simulate.exposures' must be 'single', 'coadd' or a positive "
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


def optimal_snr(signal: np.ndarray, sigma_bkg, exposure_time, top: int = 384) -> np.ndarray:
    """LensPop optimal-aperture S/N of a noise-free signal image.

    Pixel variance is ``sigma_bkg^2 + max(signal, 0) / exposure_time`` (background plus the
    signal's own Poisson noise).  Pixels are ranked by their own S/N, which increases with the
    signal, and the aperture is the ``k`` best pixels maximising
    ``sum(signal) / sqrt(sum(variance))``.

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

    Returns
    -------
    ndarray, shape (N, bands)
    """
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


def _pixelate(fn, h: int, s: int, area: float, static: tuple):
    """Wrap a unit-amplitude profile kernel into one that returns flux per pixel (B, H, W)."""
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
    key = (fn, h, s, area, compile, tuple(sorted(static.items())))
    if key not in _PIXEL_KERNELS:
        pixels = _pixelate(fn, h, s, area, key[-1])
        _PIXEL_KERNELS[key] = (
            torch.compile(pixels, dynamic=False, fullgraph=True) if compile else pixels
        )
    return _PIXEL_KERNELS[key]


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

    Parameters
    ----------
    params : mapping of str to array
        Columns as drawn by :class:`skyscan.sim.population.Population` (``kind`` plus the
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
    # Far profile tails underflow to float32 subnormals, which slow CPU arithmetic up to 30x;
    # flushing them to zero changes nothing above 1e-38.
    torch.set_flush_denormal(True)
    kind = np.asarray(params["kind"])
    n = len(kind)
    nb = len(obs.bands)
    h = w = obs.stamp_size
    s = obs.supersampling
    device = torch.device(device)
    x, y = pixel_grid(h, obs.pixel_scale, s, device=device, dtype=dtype)
    area = obs.pixel_scale**2

    def evaluate(idx: np.ndarray, fn, *constant_sets, **static) -> torch.Tensor:
        """Unit-amplitude pixel images of the systems ``idx``; constants are float64 columns."""
        kern = _pixel_kernel(fn, h, s, area, compile, **static)
        tables = [np.stack([np.asarray(c, np.float64) for c in cs], axis=1) for cs in constant_sets]
        out = torch.empty((len(idx), h, w), dtype=dtype, device=device)
        for start in range(0, len(idx), chunk):
            stop = min(start + chunk, len(idx))
            rows = np.arange(start, start + chunk).clip(max=stop - 1)  # pad with the last row
            consts = [torch.as_tensor(t[rows], device=device).to(dtype) for t in tables]
            out[start:stop] = kern(x, y, *consts)[: stop - start]
        return out

    def col(name, idx):
        return np.asarray(params[name], dtype=np.float64)[idx]

    def amplitudes(prefix: str, idx: np.ndarray, unit_flux: np.ndarray) -> np.ndarray:
        rates = np.stack([b.mag_to_rate(col(f"{prefix}_mag_{b.name}", idx)) for b in obs.bands], 1)
        return rates / unit_flux[:, None]

    def sersic(prefix, idx, center=None):
        cx, cy = center or (f"{prefix}_center_x", f"{prefix}_center_y")
        return prof.sersic_constants(
            *(col(f"{prefix}_{k}", idx) for k in ("R_sersic", "n_sersic", "e1", "e2")),
            col(cx, idx),
            col(cy, idx),
        )

    # (systems, unit-amplitude pixel images, per-band amplitudes) for every light component.
    components: list[tuple[np.ndarray, torch.Tensor, np.ndarray]] = []
    everyone = np.arange(n)
    n_sersic = col("lens_n_sersic", everyone)
    unit = prof.sersic_total_flux(col("lens_R_sersic", everyone), n_sersic)
    pixels = evaluate(
        everyone, prof.sersic_kernel, sersic("lens", everyone), roots=prof.sersic_roots(n_sersic)
    )
    components.append((everyone, pixels, amplitudes("lens", everyone, unit)))

    lens_idx = np.flatnonzero(kind == "lens")
    magnification = np.full(n, np.nan)
    source = None
    if len(lens_idx):
        mass = prof.sie_constants(
            *(
                col(k, lens_idx)
                for k in ("theta_E", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2")
            )
        )
        n_sersic = col("source_n_sersic", lens_idx)
        source_pixels = evaluate(
            lens_idx,
            prof.lensed_sersic_kernel,
            mass,
            sersic("source", lens_idx),
            roots=prof.sersic_roots(n_sersic),
        )
        unit = prof.sersic_total_flux(col("source_R_sersic", lens_idx), n_sersic)
        magnification[lens_idx] = source_pixels.sum(dim=(1, 2)).double().cpu().numpy() / unit
        source = (lens_idx, source_pixels, amplitudes("source", lens_idx, unit))
        components.append(source)

    idx = np.flatnonzero(kind == "companion")
    if len(idx):
        n_sersic = col("companion_n_sersic", idx)
        unit = prof.sersic_total_flux(col("companion_R_sersic", idx), n_sersic)
        pixels = evaluate(
            idx, prof.sersic_kernel, sersic("companion", idx), roots=prof.sersic_roots(n_sersic)
        )
        components.append((idx, pixels, amplitudes("companion", idx, unit)))

    idx = np.flatnonzero(kind == "ring")
    if len(idx):
        consts = prof.ring_constants(
            *(
                col(k, idx)
                for k in (
                    "ring_radius",
                    "ring_width",
                    "ring_e1",
                    "ring_e2",
                    "lens_center_x",
                    "lens_center_y",
                )
            )
        )
        unit = prof.ring_total_flux(col("ring_radius", idx), col("ring_width", idx))
        components.append(
            (idx, evaluate(idx, prof.ring_kernel, consts), amplitudes("ring", idx, unit))
        )

    idx = np.flatnonzero(kind == "spiral")
    if len(idx):
        consts = prof.spiral_constants(
            *(
                col(k, idx)
                for k in (
                    "spiral_R_sersic",
                    "spiral_e1",
                    "spiral_e2",
                    "lens_center_x",
                    "lens_center_y",
                    "spiral_arms",
                    "spiral_pitch",
                    "spiral_amplitude",
                    "spiral_phase",
                )
            )
        )
        r = col("spiral_R_sersic", idx)
        unit = prof.sersic_total_flux(r, np.ones_like(r))
        components.append(
            (idx, evaluate(idx, prof.spiral_kernel, consts), amplitudes("spiral", idx, unit))
        )

    # Bands are weighted sums of the unit-amplitude components.
    model = torch.zeros((n, nb, h, w), dtype=dtype, device=device)
    for idx, comp, amp in components:
        amp_t = torch.as_tensor(amp, dtype=dtype, device=device)
        if len(idx) == n:
            model.add_(amp_t[:, :, None, None] * comp[:, None])
        else:
            rows = torch.as_tensor(idx, device=device)
            model.index_add_(0, rows, amp_t[:, :, None, None] * comp[:, None])

    # One convolution call for the scene and, for lenses, the source alone (for the S/N).
    conv = obs.convolver(device, dtype)
    if source is not None and diagnostics:
        idx, pixels, amp = source
        amp_t = torch.as_tensor(amp, dtype=dtype, device=device)
        both = conv(torch.cat([model, amp_t[:, :, None, None] * pixels[:, None]]))
        model, source_image = both[:n], both[n:]
    else:
        model = conv(model)

    idx = np.flatnonzero(kind == "star_blend")
    if len(idx):
        model[idx] += _stars(params, idx, obs, device, dtype)

    exp_time = np.array([obs.exposure_time(b) for b in obs.bands])
    sigma_bkg = obs.background_sigma()

    snr = np.full((n, nb), np.nan)
    if source is not None and diagnostics:
        snr[source[0]] = optimal_snr(source_image.cpu().numpy(), sigma_bkg, exp_time)

    if noise_seed is not None:
        model = add_noise(model, sigma_bkg, exp_time, noise_seed)

    return RenderResult(
        image=model.to(torch.float32).cpu().numpy(),
        magnification=magnification,
        snr=snr,
    )


def add_noise(model: torch.Tensor, sigma_bkg, exposure_time, seed: int):
    """Add Gaussian noise of variance ``sigma_bkg^2 + max(model, 0) / exposure_time``.

    The background term is sky Poisson noise plus read noise (see
    :meth:`skyscan.sim.survey.Band.background_sigma`); the second is the sources' own Poisson
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


def _stars(params, idx, obs: Observation, device, dtype) -> torch.Tensor:
    """Stars as analytic PSFs sampled at pixel centres, normalised like the kernels."""
    h = obs.stamp_size
    x, y = pixel_grid(h, obs.pixel_scale, 1, device=device, dtype=torch.float64)
    sx = torch.as_tensor(np.asarray(params["star_center_x"], np.float64)[idx], device=device)
    sy = torch.as_tensor(np.asarray(params["star_center_y"], np.float64)[idx], device=device)
    r2 = (x - sx[:, None]) ** 2 + (y - sy[:, None]) ** 2
    out = torch.empty((len(idx), len(obs.bands), h, h), dtype=dtype, device=device)
    for k, band in enumerate(obs.bands):
        rad = psf_kernel_radius(band)
        grid = np.arange(-rad, rad + 1) * band.pixel_scale
        norm = psf_profile(band, grid[None, :] ** 2 + grid[:, None] ** 2).sum()
        rate = band.mag_to_rate(np.asarray(params[f"star_mag_{band.name}"], np.float64)[idx])
        star = psf_profile(band, r2) / norm * torch.as_tensor(rate, device=device)[:, None]
        out[:, k] = star.reshape(len(idx), h, h).to(dtype)
    return out
