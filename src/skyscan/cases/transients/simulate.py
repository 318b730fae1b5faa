"""Simulated difference-image detections: science / reference / difference triplets.

Real/bogus classification of the detections of a difference-imaging survey (Deep-HiTS,
Cabrera-Vives et al. 2017; ZTF braai, Duev et al. 2019).  Each row is one detection, a stamp
centred on it in a *science* image, the deeper *reference* image of the same sky (different
seeing) and their *difference* after PSF matching, plus (HiTS) the difference in units of its
per-pixel noise.

Image model
-----------
Everything is rendered on a padded pixel grid (the stamp plus a margin wider than the PSF and
matching kernels together, so light from beyond the stamp edge is there and nothing wraps)
and cropped at the end.  A *scene* (counts per pixel before the atmosphere) is built per image:
point sources split bilinearly over the four nearest pixels (the pixel response), Sersic
galaxies integrated over 3x3 sub-pixels (lenstronomy's product-average ellipse and ``b_n``,
as :mod:`skyscan.core.profiles`).  The PSF of each image is the *discrete* Gaussian kernel
``T(m, t) = exp(-t) I_m(t)`` per axis (Lindeberg 1990), with ``t = sigma^2`` in pixels^2
from the drawn FWHM: the sampled-grid analogue of a Gaussian, with variance exactly ``t``
and, what matters here, the semigroup property ``T(t1) * T(t2) = T(t1 + t2)``.  So the
matching kernel of two Gaussian PSFs, a Gaussian of variance ``t_broad - t_sharp`` applied to
the sharper image, is exact, as a fitted kernel (Alard & Lupton 1998) would be for Gaussian
PSFs: a static source subtracts to noise.  Convolutions are products in the 2-D discrete
Fourier domain (``exp(t (cos wx + cos wy - 2))``).

Noise (``simulate.noise``) is Gaussian: sky + read noise + the source's Poisson noise as a
Gaussian, drawn by numpy from the block's noise seed.  The reference averages
``reference_depth`` science-like exposures (its noise is ``1/sqrt(reference_depth)`` as large).
Pixels are background-subtracted counts (photo-electrons in one science exposure; the
reference is on the same scale).  Saturation clips both images at ``saturation - sky``; in the
science, the excess charge bleeds along the column of the peak.

The difference is ``conv(science, K_a) - conv(reference, K_b)`` with ``K_a`` or ``K_b`` the
identity; the ``snr`` channel divides it by the per-pixel noise sigma of the difference,
``sqrt(conv(var_sci, K_a^2) + conv(var_ref, K_b^2))`` from the noise model (sky, read noise and
source), exact for the independent pixel noise.  The ``sigma_difference`` column is its
background-only value.

Kinds
-----
Real (``label`` 1): ``host_sn`` (point source on a Sersic host, offset within it; host in both
images, transient in the science only; with ``nuclear_fraction``, that share sits at the core
of a compact host brighter than the change, and half of those fade: the point source is in the
reference only), ``hostless`` (point source alone), ``variable_star`` (a star in both,
brighter or fainter in the science by ``delta_mag``, 0.1 to ``variable_delta_max``).  Where
the set-up's pipeline negates negative detections (ZTF), a detection of any kind whose
difference is negative at the detection (the PSF-matched filter's flux there: a fading source,
the negative lobe of a dipole, a cold column) gets reference minus science, as ZTF's alerts
with ``isdiffpos = 'f'`` do (``difference_negated`` 1).  With ``field_stars``, stars surround
the detection of every kind.

Bogus (``label`` 0): ``dipole`` (a static star, or a compact galaxy, misregistered by
``misalignment`` pixels in the science), ``cosmic_ray`` (a sharp track of 0-6 px in the science,
not PSF-convolved), ``bad_pixel`` (1-4 hot pixels, or a hot/cold partial column, in the
science), ``bright_star`` (a saturated star with diffraction spikes and a bleed trail, up to
0.2 stamp widths from the centre), ``psf_mismatch`` (a compact galaxy subtracted with a
matching kernel built from a broad-PSF width wrong by a factor 0.75-0.87 or 1.15-1.4),
``edge`` (the science CCD edge crosses the stamp: no data, zeros in every channel, beyond it,
an amplifier glow along it, a static star in half of them; ``edge_side``, ``edge_width``),
``core_dipole`` (a bright galaxy core, a Sersic bulge of r = 14.5-17 with n 2-4 and a point
nucleus 0.5-2.5 mag fainter, whose whole science image is misregistered by 0.05-0.5 px,
log-uniform: ZTF's astrometry against Gaia is good to ~0.05-0.1" rms, and differential
chromatic refraction of a red core against the stars that register the images adds ~0.1-0.3"
at high airmass; translated in the Fourier domain, so the two lobes carry equal flux),
``ghost`` (an out-of-focus pupil image of a bright star reflected in the optics: a uniform
annulus of outer radius 6-30" and inner/outer ratio 0.3-0.5, the central obstruction, at
0.5-4 science sigma per pixel, in the science only, as ghosts move with the pointing and the
reference coadd's outlier rejection drops them; the detection on the annulus), ``spike`` (a
diffraction spike of a star 50-150" beyond the detection along a row or column, line density
5-60 science sigma per pixel at the detection falling as ``(D / r)^2``, in both images,
0.5-2 times as bright in the science and misregistered across by 0.05-0.5 px). These ranges
are stated, not fitted to real bogus alerts.

Any kind but ``edge`` may hold a *masked patch*, in ``masked_fraction`` of the rows (ZTF:
12.8%, measured on the development set of public alerts, where most such alerts are real): a
rectangle at a border, 1-19 px deep and 3-63 px long (log-uniform), zero in the three
channels, as NaN pixels are once :mod:`~skyscan.cases.transients.alerts` reads them
(``masked_pixels`` counts them).

Columns: ``index``, ``kind``, ``label`` and float64 parameters (NaN where a kind lacks one):
``mag`` (the point source: transient, variable star in the science, dipole/edge/bright star;
uniform between ``mag_min`` and the limit + 0.5 for the real kinds, or triangular with the
mode ``mag_mode``), ``delta_mag`` (variable
star, science minus reference), ``host_mag``, ``host_R_sersic`` (arcsec), ``offset`` (arcsec:
host centre to transient; star to stamp centre for ``bright_star`` and ``edge``; detection to
ghost centre, or to the spike's star), ``offset_angle`` (degrees, its direction),
``misalignment`` (pixels, ``dipole``, ``core_dipole``, ``spike``), ``misalignment_angle``
(degrees, the science's shift), ``ghost_radius`` (arcsec), ``ghost_inner``,
``ghost_surface_brightness`` (counts per pixel), ``spike_amplitude`` (counts per pixel of
length), ``spike_ratio``, ``edge_side`` (0: low x, 1: low y, 2: high x, 3: high y),
``edge_width`` (pixels), ``masked_pixels``, ``fwhm_science``, ``fwhm_reference`` (arcsec),
``sigma_difference`` (background noise sigma of a difference pixel), ``difference_negated``
(1 where the difference is reference minus science: the detection was negative),
``field_stars`` (how many field stars were placed around the detection, with
``transients.field_stars``), ``field_shift`` (pixels, the field stars' misregistration in the
science) and ``snr``: the optimal
(PSF-weighted) S/N of the transient's flux change in the difference image,
``|dF| / (sigma_difference sqrt(NEA))`` with ``NEA = 1 / sum(PSF^2)`` of the difference's PSF
(the broader of the two; ``4 pi sigma^2`` for a well-sampled Gaussian), background-limited and
ignoring the correlation of the convolved noise.

Randomness: rows are a function of ``(seed, index)`` through fixed blocks of
:data:`~skyscan.core.seeding.BLOCK_SIZE` rows (:func:`~skyscan.core.seeding.block_rng`):
parameters from the block's numpy generator, a fixed sequence of uniforms whatever the
kinds, and noise from a numpy generator on the block's noise seed.  A block is always
rendered whole, so shards of any size and any number of workers give the same bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import scipy
from scipy import fft as sfft
from scipy import special

import skyscan
from skyscan.cases.transients import BOGUS_KINDS, CONFIG_SCHEMA, REAL_KINDS, SIMULATION_KEYS
from skyscan.config import config_hash
from skyscan.core.errors import ConfigError
from skyscan.core.profiles import fwhm_to_sigma, sersic_b_n, sersic_total_flux
from skyscan.core.seeding import BLOCK_SIZE, block_rng
from skyscan.data.driver import ShardPlan, gather_blocks, run_shards, shard_path
from skyscan.data.shards import images_to_array

__all__ = [
    "TransientSetup",
    "SETUPS",
    "REAL_KINDS",
    "BOGUS_KINDS",
    "KINDS",
    "IMAGE_UNITS",
    "simulation_settings",
    "magnitude_grid",
    "simulate_block",
    "run_transient_simulation",
    "shard_path",
]

#: Units of the pixels: background-subtracted photo-electrons in one science exposure.
IMAGE_UNITS = "counts"

KINDS = REAL_KINDS + BOGUS_KINDS

_SUPERSAMPLING = 3  # sub-pixels per side for galaxies
_MISMATCH_MAX = 1.4  # largest factor on the broad PSF width of psf_mismatch
_TRUNCATION = 5.0  # kernel sigmas kept in the padding margin
_GALAXY_CHUNK = 16  # galaxies rendered at once (bounds the sub-pixel grid's memory)


@dataclass(frozen=True)
class TransientSetup:
    """A survey set-up: pixels, stamp, channels, seeing and depth.

    Seeing ranges are ``(low, mode, high)`` FWHM in arcsec of a triangular distribution.
    ``zero_point`` is the AB magnitude giving one count (photo-electron) in one science
    exposure; ``sky_brightness`` in AB mag/arcsec^2; ``read_noise`` in e-; ``reference_depth``
    the number of science-like exposures averaged into the reference; ``saturation`` the
    counts (sky included) where a pixel saturates; ``limiting_mag`` the nominal 5-sigma
    point-source limit of one science image at the modal seeing (see
    :meth:`point_source_limit`, which the numbers reproduce to 0.01 mag); ``masked_fraction``
    the share of detections, of every kind, whose cutouts hold a masked (NaN, read as 0)
    patch at a border; ``negates_negative_detections`` whether the survey's pipeline turns
    the difference of a negative detection (ZTF's ``isdiffpos = 'f'``) into reference minus
    science, so that every difference cutout is positive at the detection.
    """

    name: str
    description: str
    band: str
    pixel_scale: float
    stamp_size: int
    channels: tuple[str, ...]
    seeing_science: tuple[float, float, float]
    seeing_reference: tuple[float, float, float]
    exposure_time: float
    zero_point: float
    sky_brightness: float
    read_noise: float
    reference_depth: float
    saturation: float
    limiting_mag: float
    masked_fraction: float = 0.0
    negates_negative_detections: bool = False

    @property
    def sky_counts(self) -> float:
        """Sky counts per pixel in one science exposure."""
        return 10 ** (-0.4 * (self.sky_brightness - self.zero_point)) * self.pixel_scale**2

    @property
    def science_sigma(self) -> float:
        """Per-pixel background noise sigma of the science image (sky + read noise)."""
        return math.sqrt(self.sky_counts + self.read_noise**2)

    @property
    def reference_sigma(self) -> float:
        """Per-pixel background noise sigma of the reference."""
        return self.science_sigma / math.sqrt(self.reference_depth)

    def flux(self, mag):
        """Counts of a source of AB magnitude ``mag`` in one science exposure."""
        return 10 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - self.zero_point))

    def psf_variance(self, fwhm):
        """PSF variance ``t`` in pixels^2 of a FWHM in arcsec."""
        return (fwhm_to_sigma(np.asarray(fwhm, dtype=np.float64)) / self.pixel_scale) ** 2

    def difference_sigma(self, fwhm_science, fwhm_reference):
        """Background noise sigma of a difference pixel after PSF matching."""
        t_s = self.psf_variance(fwhm_science)
        t_r = self.psf_variance(fwhm_reference)
        t_a = np.maximum(t_r - t_s, 0.0)  # kernel on the science
        t_b = np.maximum(t_s - t_r, 0.0)  # kernel on the reference
        return np.sqrt(
            self.science_sigma**2 * _kernel_power(t_a)
            + self.reference_sigma**2 * _kernel_power(t_b)
        )

    def point_source_limit(self, fwhm: float | None = None, nsigma: float = 5.0) -> float:
        """``nsigma`` point-source limit (AB) of one science image, optimal photometry."""
        fwhm = self.seeing_science[1] if fwhm is None else fwhm
        nea = 1.0 / _kernel_power(self.psf_variance(fwhm))
        return float(self.zero_point - 2.5 * np.log10(nsigma * self.science_sigma * np.sqrt(nea)))

    @property
    def saturation_mag(self) -> float:
        """Magnitude whose peak pixel reaches saturation at the modal science seeing."""
        peak = special.ive(0, self.psf_variance(self.seeing_science[1])) ** 2
        return float(self.zero_point - 2.5 * np.log10((self.saturation - self.sky_counts) / peak))

    @property
    def margin(self) -> int:
        """Padding (pixels) around the stamp: PSF plus the widest matching kernel."""
        t_max = self.psf_variance(max(self.seeing_science[2], self.seeing_reference[2]))
        t_min = self.psf_variance(min(self.seeing_science[0], self.seeing_reference[0]))
        k_max = math.sqrt(_MISMATCH_MAX**2 * t_max - t_min)
        return math.ceil(_TRUNCATION * math.sqrt(t_max)) + math.ceil(_TRUNCATION * k_max)

    @property
    def padded_size(self) -> int:
        """Side of the padded grid the images are rendered on (an FFT-friendly length)."""
        return sfft.next_fast_len(self.stamp_size + 2 * self.margin, real=True)


#: The survey set-ups.
#:
#: ``ztf``: ZTF r, 30 s (Bellm et al. 2019; Masci et al. 2019): 1"/px, median seeing 2.0",
#: references from coadds (here 4x the depth, noise / 2).  The zero point is effective: ZTF's
#: ~28.3 mag per 30 s in e- less ~1.9 mag that the non-Gaussian PSF wings, moonlight and real
#: photometry cost, so that the 5-sigma limit is ZTF's median 20.5 (sky 20.5 mag/arcsec^2,
#: read noise 8 e-).  Saturation ~r = 13.
#: ``hits``: DECam g, 87 s (HiTS, Forster et al. 2016): 0.27"/px, seeing ~1.1" (0.9-1.5"),
#: the reference ~0.9" (0.8-1.2") and 4x deeper; DECam's g zero point (~26.8 mag for 1 e-/s)
#: with dark sky 22.0 mag/arcsec^2 and read noise 7 e- gives the 5-sigma limit 24.5.
SETUPS: dict[str, TransientSetup] = {
    "ztf": TransientSetup(
        name="ztf",
        description='ZTF r-band 30 s alerts (braai): 63x63 stamps at 1.0"/px',
        band="r",
        pixel_scale=1.0,
        stamp_size=63,
        channels=("science", "reference", "difference"),
        seeing_science=(1.5, 2.0, 3.0),
        seeing_reference=(1.4, 1.8, 2.4),
        exposure_time=30.0,
        zero_point=26.39,
        sky_brightness=20.5,
        read_noise=8.0,
        # ZTF's references are coadds of tens of frames: in real public alerts the reference
        # cutout's robust sigma is a median 0.167 (16-84%: 0.11-0.27) of the science's, i.e.
        # about 36 exposures deep (scripts/real_vs_sim_stamps.py; 4 gave 0.50)
        reference_depth=36.0,
        saturation=60000.0,
        limiting_mag=20.5,
        # Measured on the development set of public alerts (data/real/ztf, 414 alerts): 53
        # (12.8%) hold NaN pixels, the same in all three cutouts, and 44 of those 53 have
        # drb > 0.9: a masked patch is no sign of a bogus detection.
        masked_fraction=0.128,
        # ZTF detects on both the difference and its negative, and a negative detection's
        # alert carries the negated difference (isdiffpos 'f'): in the development set all
        # 196 such alerts with drb > 0.9 have a positive centre in cutoutDifference.
        negates_negative_detections=True,
    ),
    "hits": TransientSetup(
        name="hits",
        description='HiTS DECam g-band 87 s (Deep-HiTS): 21x21 stamps at 0.27"/px',
        band="g",
        pixel_scale=0.27,
        stamp_size=21,
        channels=("science", "reference", "difference", "snr"),
        seeing_science=(0.9, 1.1, 1.5),
        seeing_reference=(0.8, 0.9, 1.2),
        exposure_time=87.0,
        zero_point=31.64,
        sky_brightness=22.0,
        read_noise=7.0,
        reference_depth=4.0,
        saturation=130000.0,
        limiting_mag=24.5,
    ),
}


def _kernel_power(t):
    """``sum K^2`` of the 2-D discrete Gaussian of variance ``t``: ``(exp(-2t) I_0(2t))^2``."""
    return special.ive(0, 2 * np.asarray(t, dtype=np.float64)) ** 2


def _config_error(key: str, message: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {message}", key=key)


def _get_setup(setup) -> TransientSetup:
    if isinstance(setup, TransientSetup):
        return setup
    if setup not in SETUPS:
        raise _config_error(
            "transients.setup", f"{setup!r} is not one of {', '.join(sorted(SETUPS))}"
        )
    return SETUPS[setup]


def simulation_settings(section: Mapping | None) -> dict:
    """The simulator's settings from a ``transients`` config section.

    The section was checked at load (the schema and
    :meth:`skyscan.cases.transients.TransientCase.check_config`); here keys left out take the
    schema's defaults, ``kinds`` comes back with every kind of :data:`KINDS` (0 for those not
    named) and the fractions and ``mag_min`` as floats.

    Returns
    -------
    dict
        ``setup`` (a name of :data:`SETUPS`), ``kinds``, ``mag_min``, ``nuclear_fraction``,
        ``variable_delta_max``, ``field_stars``, ``mag_mode``.
    """
    section = dict(section or {})
    schema = CONFIG_SCHEMA["properties"]
    out = {k: copy.deepcopy(section.get(k, schema[k]["default"])) for k in SIMULATION_KEYS}
    out["kinds"] = {k: float(out["kinds"].get(k, 0.0)) for k in KINDS}
    out["mag_min"] = float(out["mag_min"])
    out["nuclear_fraction"] = float(out["nuclear_fraction"])
    out["variable_delta_max"] = float(out["variable_delta_max"])
    out["field_stars"] = float(out["field_stars"])
    out["mag_mode"] = None if out["mag_mode"] is None else float(out["mag_mode"])
    return out


def magnitude_grid(setup, mag_min: float) -> list[float]:
    """Half-magnitude edges from ``mag_min`` to the set-up's limit + 0.5 (the simulated
    range of the real transients), recorded in the shards' metadata as ``mag_bins``."""
    setup = _get_setup(setup)
    top = setup.limiting_mag + 0.5
    edges = [float(v) for v in np.arange(mag_min, top + 1e-9, 0.5)]
    if edges[-1] < top:
        edges.append(float(top))
    return edges


# ---------------------------------------------------------------------------------------------
# The per-block parameter draw.

#: The uniforms of a block, one row each, always drawn in this order whatever the kinds.
_UNIFORMS = (
    "kind",
    "fwhm_science",
    "fwhm_reference",
    "mag",
    "jitter_x",
    "jitter_y",
    "host_mag",
    "host_R",
    "host_n",
    "host_q",
    "host_phi",
    "offset",
    "offset_angle",
    "delta_mag",
    "sign",
    "variant",
    "shift",
    "shift_angle",
    "cr_length",
    "cr_angle",
    "cr_amplitude",
    "bad_amplitude",
    "bad_start",
    "mismatch",
    "edge_side",
    "edge_width",
    "glow_amplitude",
    "glow_scale",
)
#: More uniforms of a block, drawn after the hot-pixel draws (so that the rows of the kinds
#: above keep their parameters), one row each, always in this order whatever the kinds.
_UNIFORMS_MORE = (
    "core_mag",
    "core_nucleus",
    "core_shift",
    "ghost_radius",
    "ghost_inner",
    "ghost_sb",
    "ghost_offset",
    "spike_axis",
    "spike_distance",
    "spike_amplitude",
    "spike_ratio",
    "spike_shift",
    "mask",
    "mask_side",
    "mask_depth",
    "mask_length",
    "mask_start",
)
_HOT_PIXELS = 4  # most hot pixels of a bad_pixel row
_FIELD_STARS_MAX = 40  # most field stars of a row
_FIELD_SLOPE = 0.3  # field star counts: dex per magnitude
_MASK_DEPTH = (1, 19)  # masked patch: pixels in from the border (ends >= 12 px from the centre)


def _triangular(u, low, mode, high):
    """Inverse CDF of the triangular distribution."""
    c = (mode - low) / (high - low)
    left = low + np.sqrt(u * (high - low) * (mode - low))
    right = high - np.sqrt((1 - u) * (high - low) * (high - mode))
    return np.where(u < c, left, right)


def _uniform(u, low, high):
    return low + (high - low) * u


def _loguniform(u, low, high):
    return np.exp(np.log(low) + (np.log(high) - np.log(low)) * u)


def _draw(setup: TransientSetup, section: Mapping, rng: np.random.Generator, n: int) -> dict:
    """Parameters of ``n`` rows: public columns and the renderer's extras (``_``-prefixed)."""
    u = dict(zip(_UNIFORMS, rng.random((len(_UNIFORMS), n)), strict=True))
    hot = rng.random((n, _HOT_PIXELS, 3))
    u.update(zip(_UNIFORMS_MORE, rng.random((len(_UNIFORMS_MORE), n)), strict=True))

    # Field stars, drawn after everything above so that the rows keep their parameters:
    # per row its mean (log-uniform, a third to 3x field_stars), count (Poisson), the
    # science's misregistration and its direction; per star radius, angle and magnitude.
    u_field = rng.random((4, n))
    u_star = rng.random((n, _FIELD_STARS_MAX, 3))

    fractions = np.array([section["kinds"][k] for k in KINDS])
    cdf = np.cumsum(fractions / fractions.sum())
    kind_index = np.minimum(np.searchsorted(cdf, u["kind"], side="right"), len(KINDS) - 1)
    kind = np.asarray(KINDS, dtype=object)[kind_index]
    is_ = {k: kind == k for k in KINDS}

    limit = setup.limiting_mag
    mag_min = section["mag_min"]
    nan = np.full(n, np.nan)
    H = setup.stamp_size
    centre = (setup.padded_size - H) // 2 + (H - 1) / 2  # stamp centre on the padded grid

    fwhm_s = _triangular(u["fwhm_science"], *setup.seeing_science)
    fwhm_r = _triangular(u["fwhm_reference"], *setup.seeing_reference)
    # The detection (the transient, the artefact) sits at the stamp centre within +-0.5 px.
    x0 = centre + u["jitter_x"] - 0.5
    y0 = centre + u["jitter_y"] - 0.5

    mode = section.get("mag_mode")
    if mode is None:
        real_mag = _uniform(u["mag"], mag_min, limit + 0.5)
    else:
        real_mag = _triangular(u["mag"], mag_min, mode, limit + 0.5)
    static_mag = _uniform(u["mag"], mag_min, limit - 1.0)
    sat_mag = setup.saturation_mag
    bright_mag = _uniform(u["mag"], sat_mag - 2.5, sat_mag - 0.2)
    # core_dipole: a bright galaxy (bulge) with a point-like nucleus 0.5-2.5 mag fainter.
    core = is_["core_dipole"]
    core_mag = _uniform(u["core_mag"], 14.5, 17.0)
    nucleus_mag = core_mag + _uniform(u["core_nucleus"], 0.5, 2.5)
    mag = np.select(
        [is_["host_sn"] | is_["hostless"] | is_["variable_star"], is_["bright_star"], core],
        [real_mag, bright_mag, nucleus_mag],
        static_mag,
    )
    star_dipole = is_["dipole"] & (u["variant"] < 0.7)
    edge_star = is_["edge"] & (u["variant"] < 0.5)
    has_mag = is_["host_sn"] | is_["hostless"] | is_["variable_star"] | is_["bright_star"]
    has_mag |= star_dipole | edge_star | core
    mag = np.where(has_mag, mag, nan)

    delta_max = section.get("variable_delta_max", 1.5)
    delta = _uniform(u["delta_mag"], 0.1, delta_max) * np.where(u["sign"] < 0.5, -1.0, 1.0)
    delta_mag = np.where(is_["variable_star"], delta, nan)

    # Galaxies: SN hosts, or compact galaxies (dipole galaxies, psf_mismatch).
    compact = (is_["dipole"] & ~star_dipole) | is_["psf_mismatch"] | core
    has_host = is_["host_sn"] | compact
    host_mag = np.where(
        is_["host_sn"],
        _uniform(u["host_mag"], mag_min + 1.0, limit),
        _uniform(u["host_mag"], mag_min + 1.0, limit - 1.0),
    )
    host_R = np.where(
        is_["host_sn"], _loguniform(u["host_R"], 0.3, 3.0), _loguniform(u["host_R"], 0.3, 1.2)
    )
    # Nuclear transients (host_sn rows with variant < nuclear_fraction): at the centre of a
    # compact host brighter than the change, as AGN and blazar flares in real alerts are.
    # With the fraction 0 (the default) no row changes and no draw is added.
    nuclear = is_["host_sn"] & (u["variant"] < section.get("nuclear_fraction", 0.0))
    if nuclear.any():
        brighter = np.maximum(mag - _uniform(u["host_mag"], 0.0, 2.5), mag_min)
        host_mag = np.where(nuclear, brighter, host_mag)
        host_R = np.where(nuclear, _loguniform(u["host_R"], 0.3, 1.2), host_R)
    # Half the nuclear changes are fadings (a blazar or AGN fainter than in the reference,
    # as 215 of the development set's 414 alerts are): the point source is then in the
    # reference only.  u["sign"] is otherwise unused by host_sn rows.
    fading_nucleus = nuclear & (u["sign"] < 0.5)
    host_mag = np.where(core, core_mag, host_mag)
    host_R = np.where(core, _loguniform(u["host_R"], 0.5, 2.0), host_R)
    host_mag = np.where(has_host, host_mag, nan)
    host_R = np.where(has_host, host_R, nan)

    angle = 2 * np.pi * u["offset_angle"]
    radius_px = np.select(
        [is_["host_sn"] & ~nuclear, is_["bright_star"], edge_star],
        [
            1.5 * host_R * u["offset"] / setup.pixel_scale,
            0.2 * H * u["offset"],
            0.4 * H * u["offset"],
        ],
        0.0,
    )
    # Host, bright star and edge star centres relative to the detection.
    src_x = x0 + radius_px * np.cos(angle)
    src_y = y0 + radius_px * np.sin(angle)
    offset = np.where(
        is_["host_sn"] | is_["bright_star"] | edge_star, radius_px * setup.pixel_scale, nan
    )

    # Misregistration of the science (pixels) and its direction (radians): dipole 0.3-1.5 px;
    # core_dipole and spike 0.05-0.5 px (log-uniform), across the spike for a spike.
    spike = is_["spike"]
    horizontal = u["spike_axis"] < 0.5  # the spike runs along x (a row)
    fine = _loguniform(u["core_shift"], 0.05, 0.5)
    misalignment = np.select(
        [is_["dipole"], core, spike],
        [_uniform(u["shift"], 0.3, 1.5), fine, _loguniform(u["spike_shift"], 0.05, 0.5)],
        nan,
    )
    across = np.where(horizontal, np.pi / 2, 0.0) + np.where(u["shift_angle"] < 0.5, 0.0, np.pi)
    shift_angle = np.where(spike, across, 2 * np.pi * u["shift_angle"])
    moved = is_["dipole"] | core | spike
    shift_angle = np.where(moved, shift_angle, nan)

    # ghost: an out-of-focus pupil image (an annulus) in the science only, the detection on it.
    g = is_["ghost"]
    ghost_outer = _loguniform(u["ghost_radius"], 6.0, 30.0)  # arcsec
    ghost_inner = _uniform(u["ghost_inner"], 0.3, 0.5)  # inner / outer radius
    ghost_sb = _loguniform(u["ghost_sb"], 0.5, 4.0) * setup.science_sigma  # counts / pixel
    ghost_dist = ghost_outer * _uniform(u["ghost_offset"], ghost_inner, 1.0)  # arcsec

    # spike: a bright star D = 50-150 px away along a row or column; the spike's line density
    # at the detection (counts per pixel of length, in the reference) falls as (D / r)^2.
    spike_distance = _loguniform(u["spike_distance"], 50.0, 150.0)  # pixels
    spike_amplitude = _loguniform(u["spike_amplitude"], 5.0, 60.0) * setup.science_sigma
    spike_ratio = _loguniform(u["spike_ratio"], 0.5, 2.0)  # science / reference

    offset = np.select([g, spike], [ghost_dist, spike_distance * setup.pixel_scale], offset)
    # Direction (radians) from the detection to the host, star or ghost centre.
    spike_side = np.where(u["sign"] < 0.5, -1.0, 1.0)
    spike_direction = np.where(horizontal, 0.0, np.pi / 2) + np.where(spike_side < 0, np.pi, 0.0)
    offset_direction = np.where(spike, spike_direction, angle)

    # edge: the side (0: low x, 1: low y, 2: high x, 3: high y) and width (pixels) beyond it.
    edge_side = np.minimum((4 * u["edge_side"]).astype(np.int64), 3)
    edge_width = np.maximum(np.rint(_uniform(u["edge_width"], 0.15, 0.4) * H), 2)

    # A masked patch at a border (any kind but edge): side as edge's, depth in, length along.
    masked = (u["mask"] < setup.masked_fraction) & ~is_["edge"]
    mask_side = np.minimum((4 * u["mask_side"]).astype(np.int64), 3)
    mask_depth = np.rint(_loguniform(u["mask_depth"], *_MASK_DEPTH)).astype(np.int64)
    mask_length = np.rint(_loguniform(u["mask_length"], 3.0, H)).astype(np.int64)
    mask_start = np.floor(u["mask_start"] * (H - mask_length + 1)).astype(np.int64)

    # psf_mismatch: the broad PSF's width is mis-estimated by this factor.
    mismatch = np.where(
        u["sign"] < 0.5, _uniform(u["mismatch"], 0.75, 0.87), _uniform(u["mismatch"], 1.15, 1.4)
    )

    # Field stars around the detection (every kind), none within 2 modal FWHM of it.
    mean_stars = section.get("field_stars", 0.0)
    if mean_stars > 0:
        from scipy.stats import poisson

        lam = mean_stars * np.exp(np.log(3.0) * (2 * u_field[0] - 1))
        n_field = np.minimum(poisson.ppf(u_field[1], lam), _FIELD_STARS_MAX).astype(np.int64)
    else:
        n_field = np.zeros(n, dtype=np.int64)
    field_shift = np.where(n_field > 0, _loguniform(u_field[2], 0.02, 0.3), nan)
    field_angle = 2 * np.pi * u_field[3]
    r_in = 2 * setup.seeing_science[1] / setup.pixel_scale
    r_out = H / np.sqrt(2) + 3.0
    star_r = np.sqrt(r_in**2 + u_star[..., 0] * (r_out**2 - r_in**2))
    star_a = 2 * np.pi * u_star[..., 1]
    faint = setup.limiting_mag + 1.0
    star_mag = np.maximum(faint + np.log10(u_star[..., 2]) / _FIELD_SLOPE, setup.saturation_mag - 1)

    t_s = setup.psf_variance(fwhm_s)
    t_r = setup.psf_variance(fwhm_r)
    sigma_diff = setup.difference_sigma(fwhm_s, fwhm_r)
    # Flux change in the difference of the real kinds, and the difference PSF's NEA.
    dflux = np.select(
        [is_["host_sn"] | is_["hostless"], is_["variable_star"]],
        [setup.flux(real_mag), setup.flux(real_mag) - setup.flux(real_mag - delta)],
        np.nan,
    )
    nea = 1.0 / _kernel_power(np.maximum(t_s, t_r))
    snr = np.abs(dflux) / (sigma_diff * np.sqrt(nea))

    return {
        "kind": kind,
        "label": np.isin(kind, REAL_KINDS).astype(np.int8),
        "mag": mag,
        "delta_mag": delta_mag,
        "host_mag": host_mag,
        "host_R_sersic": host_R,
        "offset": offset,
        "offset_angle": np.degrees(np.where(np.isfinite(offset), offset_direction, nan)),
        "misalignment": misalignment,
        "misalignment_angle": np.degrees(shift_angle),
        "ghost_radius": np.where(g, ghost_outer, nan),
        "ghost_inner": np.where(g, ghost_inner, nan),
        "ghost_surface_brightness": np.where(g, ghost_sb, nan),
        "spike_amplitude": np.where(spike, spike_amplitude, nan),
        "spike_ratio": np.where(spike, spike_ratio, nan),
        "edge_side": np.where(is_["edge"], edge_side, nan),
        "edge_width": np.where(is_["edge"], edge_width, nan),
        "masked_pixels": np.where(masked, mask_depth * mask_length, 0).astype(np.float64),
        "fwhm_science": fwhm_s,
        "fwhm_reference": fwhm_r,
        "sigma_difference": sigma_diff,
        "snr": snr,
        # set by the renderer where the set-up negates negative detections (from the sign of
        # the rendered difference at the detection)
        "difference_negated": np.zeros(n),
        "field_stars": n_field.astype(np.float64),
        "field_shift": field_shift,
        # Renderer's extras (not written).
        "_u": u,
        "_hot": hot,
        "_is": is_,
        "_x0": x0,
        "_y0": y0,
        "_src_x": src_x,
        "_src_y": src_y,
        "_t_s": t_s,
        "_t_r": t_r,
        "_star_dipole": star_dipole,
        "_edge_star": edge_star,
        "_compact": compact,
        "_mismatch": mismatch,
        "_moved": moved,
        "_shift_angle": shift_angle,
        "_horizontal": horizontal,
        "_spike_side": spike_side,
        "_spike_distance": spike_distance,
        "_ghost_angle": 2 * np.pi * u["offset_angle"],
        "_mask": (masked, mask_side, mask_depth, mask_length, mask_start),
        "_fading_nucleus": fading_nucleus,
        "_field": (
            x0[:, None] + star_r * np.cos(star_a),
            y0[:, None] + star_r * np.sin(star_a),
            star_mag,
            np.where(n_field > 0, field_shift * np.cos(field_angle), 0.0),
            np.where(n_field > 0, field_shift * np.sin(field_angle), 0.0),
        ),
        # core_dipole bulges are concentrated (n 2-4)
        "_host_n": np.where(core, _uniform(u["host_n"], 2.0, 4.0), _uniform(u["host_n"], 0.5, 4.0)),
        "_host_q": _uniform(u["host_q"], 0.4, 1.0),
        "_host_phi": np.pi * u["host_phi"],
    }


# ---------------------------------------------------------------------------------------------
# Rendering helpers (numpy, vectorised over rows).


def _deposit(scene: np.ndarray, rows, x, y, flux) -> None:
    """Add point sources, each split bilinearly over its four nearest pixels."""
    if len(rows) == 0:
        return
    p = scene.shape[-1]
    ix = np.clip(np.floor(x).astype(np.int64), 0, p - 2)
    iy = np.clip(np.floor(y).astype(np.int64), 0, p - 2)
    fx = np.clip(x - ix, 0.0, 1.0)
    fy = np.clip(y - iy, 0.0, 1.0)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(scene, (rows, iy + dy, ix + dx), flux * wy * wx)


def _sersic(setup: TransientSetup, cx, cy, mag, R, n, q, phi) -> np.ndarray:
    """Pixel-integrated elliptical Sersic images ``(B, P, P)`` in counts (centres in pixels)."""
    p, s, ps = setup.padded_size, _SUPERSAMPLING, setup.pixel_scale
    sub = (np.arange(p * s) + 0.5) / s - 0.5  # sub-pixel centres in pixels
    out = np.empty((len(cx), p, p))
    amp = setup.flux(mag) / sersic_total_flux(R, n)  # counts per arcsec^2 at R_sersic
    bn = sersic_b_n(n)
    for lo in range(0, len(cx), _GALAXY_CHUNK):
        sl = slice(lo, lo + _GALAXY_CHUNK)
        dx = (sub[None, None, :] - cx[sl, None, None]) * ps
        dy = (sub[None, :, None] - cy[sl, None, None]) * ps
        cos, sin = np.cos(phi[sl])[:, None, None], np.sin(phi[sl])[:, None, None]
        xr = cos * dx + sin * dy
        yr = cos * dy - sin * dx
        qq = q[sl, None, None]
        # lenstronomy's product-average radius, floored at 1e-4"
        r2 = np.maximum((qq * xr * xr + yr * yr / qq) / R[sl, None, None] ** 2, 1e-8)
        b = bn[sl, None, None]
        light = np.exp(b - b * r2 ** (0.5 / n[sl, None, None]))
        light = light.reshape(-1, p, s, p, s).mean(axis=(2, 4))
        out[sl] = light * (amp[sl] * ps**2)[:, None, None]
    return out


class _Fourier:
    """Discrete-Gaussian transfer functions on the padded grid."""

    def __init__(self, p: int):
        self.p = p
        wy = 2 * np.pi * sfft.fftfreq(p)
        wx = 2 * np.pi * sfft.rfftfreq(p)
        self.wy, self.wx = wy, wx
        self.c = (np.cos(wy)[:, None] - 1) + (np.cos(wx)[None, :] - 1)
        self.m = np.abs(np.rint(sfft.fftfreq(p) * p))  # wrapped pixel offsets

    def gauss(self, t) -> np.ndarray:
        """Transfer of the discrete Gaussian of variance ``t`` (per row)."""
        return np.exp(np.asarray(t)[:, None, None] * self.c)

    def shift(self, sx, sy) -> np.ndarray:
        """Transfer of a translation by ``(sx, sy)`` pixels (per row): exact for band-limited
        images and flux-conserving (the zero frequency is untouched)."""
        sx, sy = np.asarray(sx)[:, None, None], np.asarray(sy)[:, None, None]
        return np.exp(-1j * (self.wy[None, :, None] * sy + self.wx[None, None, :] * sx))

    def gauss_squared(self, t) -> np.ndarray:
        """Transfer of the squared kernel ``K(t)^2`` (per row): propagates variance maps."""
        k1 = special.ive(self.m[None, :], np.asarray(t)[:, None]) ** 2
        ky = sfft.fft(k1, axis=-1).real
        kx = sfft.rfft(k1, axis=-1).real
        return ky[:, :, None] * kx[:, None, :]

    def rfft(self, a):
        return sfft.rfft2(a, axes=(-2, -1), workers=1)

    def irfft(self, a):
        return sfft.irfft2(a, s=(self.p, self.p), axes=(-2, -1), workers=1)


def _render(setup: TransientSetup, d: dict, noise_seed: int | None) -> np.ndarray:
    """Images ``(n, channels, H, W)`` float32 of drawn rows ``d``."""
    u, is_ = d["_u"], d["_is"]
    n = len(d["kind"])
    p, H = setup.padded_size, setup.stamp_size
    pad = (p - H) // 2
    sky_var = setup.science_sigma**2
    sig_s = setup.science_sigma
    rows = np.arange(n)
    yy = np.arange(p)

    scene_s = np.zeros((n, p, p))
    scene_r = np.zeros((n, p, p))

    # Transients: science only; a fading nucleus: reference only.
    fading = d["_fading_nucleus"]
    sel = rows[(is_["host_sn"] | is_["hostless"]) & ~fading]
    _deposit(scene_s, sel, d["_x0"][sel], d["_y0"][sel], setup.flux(d["mag"][sel]))
    sel = rows[fading]
    _deposit(scene_r, sel, d["_x0"][sel], d["_y0"][sel], setup.flux(d["mag"][sel]))
    # Variable stars: the reference flux in both, the change in the science.
    sel = rows[is_["variable_star"]]
    f_sci = setup.flux(d["mag"][sel])
    f_ref = setup.flux(d["mag"][sel] - d["delta_mag"][sel])
    _deposit(scene_r, sel, d["_x0"][sel], d["_y0"][sel], f_ref)
    _deposit(scene_s, sel, d["_x0"][sel], d["_y0"][sel], f_sci)
    # Static stars: dipole stars and core_dipole nuclei (shifted in the science), edge stars,
    # bright stars.
    shift = d["misalignment"]
    ang = d["_shift_angle"]
    sx = np.where(d["_moved"], shift * np.cos(ang), 0.0)
    sy = np.where(d["_moved"], shift * np.sin(ang), 0.0)
    at_detection = is_["dipole"] | is_["core_dipole"]
    static = d["_star_dipole"] | d["_edge_star"] | is_["bright_star"] | is_["core_dipole"]
    sel = rows[static]
    cx = np.where(at_detection, d["_x0"], d["_src_x"])[sel]
    cy = np.where(at_detection, d["_y0"], d["_src_y"])[sel]
    flux = setup.flux(d["mag"][sel])
    # (core_dipole moves the whole science scene in the Fourier domain, below)
    moved_here = is_["dipole"][sel]
    _deposit(scene_r, sel, cx, cy, flux)
    _deposit(scene_s, sel, cx + sx[sel] * moved_here, cy + sy[sel] * moved_here, flux)
    # Field stars (both images; in the science misregistered by field_shift).  Only the
    # stars move: moving the whole science scene (a real transient's host core too) was
    # tried and made the simulated task harder without bringing real alerts closer.
    fx, fy, fmag, fsx, fsy = d["_field"]
    for k in range(int(d["field_stars"].max(initial=0))):
        sel = rows[d["field_stars"] > k]
        flux = setup.flux(fmag[sel, k])
        _deposit(scene_r, sel, fx[sel, k], fy[sel, k], flux)
        _deposit(scene_s, sel, fx[sel, k] + fsx[sel], fy[sel, k] + fsy[sel], flux)
    # Diffraction spikes of bright stars (both images): along the star's row and column.
    sel = rows[is_["bright_star"]]
    if len(sel):
        xr = np.clip(np.rint(d["_src_x"][sel]).astype(np.int64), 0, p - 1)
        yr = np.clip(np.rint(d["_src_y"][sel]).astype(np.int64), 0, p - 1)
        amp = 2e-3 * setup.flux(d["mag"][sel])[:, None]
        length = 6.0 / setup.pixel_scale
        along_x = np.abs(yy[None, :] - xr[:, None])
        along_y = np.abs(yy[None, :] - yr[:, None])
        spike_x = np.where(along_x > 0, amp * np.exp(-along_x / length), 0.0)
        spike_y = np.where(along_y > 0, amp * np.exp(-along_y / length), 0.0)
        for scene in (scene_s, scene_r):
            scene[sel[:, None], yr[:, None], yy[None, :]] += spike_x
            scene[sel[:, None], yy[None, :], xr[:, None]] += spike_y
    # Spikes of a bright star beyond the stamp (both images): a line through the detection
    # along a row or column, line density spike_amplitude (D / r)^2 at r from the star; in the
    # science spike_ratio times as bright and misregistered across by misalignment pixels.
    for i in rows[is_["spike"]]:
        horizontal = bool(d["_horizontal"][i])
        along0, across0 = (d["_x0"][i], d["_y0"][i]) if horizontal else (d["_y0"][i], d["_x0"][i])
        star = along0 + d["_spike_side"][i] * d["_spike_distance"][i]
        r = np.maximum(np.abs(yy - star), 1.0)
        density = d["spike_amplitude"][i] * (d["_spike_distance"][i] / r) ** 2
        moved = sy[i] if horizontal else sx[i]
        for scene, scale, c in (
            (scene_r, 1.0, across0),
            (scene_s, d["spike_ratio"][i], across0 + moved),
        ):
            lo = int(np.floor(c))
            for k, w in ((lo, 1.0 - (c - lo)), (lo + 1, c - lo)):
                if horizontal:
                    scene[i, k, :] += scale * w * density
                else:
                    scene[i, :, k] += scale * w * density
    # Ghosts (science only): a uniform annulus, 3x3 sub-pixels, on the detection.
    sel = rows[is_["ghost"]]
    if len(sel):
        sub = (np.arange(p * _SUPERSAMPLING) + 0.5) / _SUPERSAMPLING - 0.5
        ps = setup.pixel_scale
        dist = d["offset"][sel] / ps
        gx = d["_x0"][sel] + dist * np.cos(d["_ghost_angle"][sel])
        gy = d["_y0"][sel] + dist * np.sin(d["_ghost_angle"][sel])
        outer = d["ghost_radius"][sel] / ps
        inner = d["ghost_inner"][sel] * outer
        for k, i in enumerate(sel):
            rr = np.hypot(sub[None, :] - gx[k], sub[:, None] - gy[k])
            ring = ((rr >= inner[k]) & (rr <= outer[k])).astype(np.float64)
            ring = ring.reshape(p, _SUPERSAMPLING, p, _SUPERSAMPLING).mean(axis=(1, 3))
            scene_s[i] += d["ghost_surface_brightness"][i] * ring

    # Galaxies: SN hosts (offset), dipole galaxies (shifted in the science), psf_mismatch.
    sel = rows[is_["host_sn"] | d["_compact"]]
    if len(sel):
        gx = np.where(is_["host_sn"], d["_src_x"], d["_x0"])[sel]
        gy = np.where(is_["host_sn"], d["_src_y"], d["_y0"])[sel]
        args = (d["host_mag"][sel], d["host_R_sersic"][sel])
        args += (d["_host_n"][sel], d["_host_q"][sel], d["_host_phi"][sel])
        gal = _sersic(setup, gx, gy, *args)
        scene_r[sel] += gal
        moved = is_["dipole"][sel]
        scene_s[sel[~moved]] += gal[~moved]
        if moved.any():
            m = sel[moved]
            scene_s[m] += _sersic(
                setup, gx[moved] + sx[m], gy[moved] + sy[m], *(a[moved] for a in args)
            )

    fourier = _Fourier(p)
    t_s, t_r = d["_t_s"], d["_t_r"]
    f_s = fourier.rfft(scene_s) * fourier.gauss(t_s)
    # core_dipole: the science misregistered by a fraction of a pixel, a translation of its
    # whole scene (re-rendering a cuspy core at a sub-pixel offset would not conserve flux).
    sel = rows[is_["core_dipole"]]
    if len(sel):
        f_s[sel] *= fourier.shift(sx[sel], sy[sel])
    img_s = fourier.irfft(f_s)
    del f_s
    img_r = fourier.irfft(fourier.rfft(scene_r) * fourier.gauss(t_r))
    del scene_s, scene_r

    # Cosmic rays: a sharp track (nearest pixel, no PSF) in the science.
    sel = rows[is_["cosmic_ray"]]
    if len(sel):
        samples = 16
        length = _uniform(u["cr_length"][sel], 0.0, 6.0)
        ca = np.pi * u["cr_angle"][sel]
        frac = np.linspace(-0.5, 0.5, samples)[None, :]
        tx = d["_x0"][sel, None] + frac * (length * np.cos(ca))[:, None]
        ty = d["_y0"][sel, None] + frac * (length * np.sin(ca))[:, None]
        charge = _uniform(u["cr_amplitude"][sel], 10.0, 100.0) * sig_s * np.maximum(length, 1.0)
        ix = np.clip(np.rint(tx).astype(np.int64), 0, p - 1)
        iy = np.clip(np.rint(ty).astype(np.int64), 0, p - 1)
        np.add.at(
            img_s,
            (np.repeat(sel, samples), iy.ravel(), ix.ravel()),
            np.repeat(charge / samples, samples),
        )

    # Edge: the science CCD ends inside the stamp; amplifier glow along the edge.
    sel_edge = rows[is_["edge"]]
    beyond = None
    if len(sel_edge):
        side = d["edge_side"][sel_edge].astype(np.int64)
        width = d["edge_width"][sel_edge].astype(np.int64)
        # Signed distance (pixels) into the data from the edge line, per pixel.
        edge_lo = pad + width  # first data pixel from the low side
        edge_hi = pad + H - 1 - width  # last data pixel from the high side
        coord = np.where(side[:, None, None] % 2 == 0, yy[None, None, :], yy[None, :, None])
        lo_side = side < 2
        dist = np.where(
            lo_side[:, None, None],
            coord - edge_lo[:, None, None],
            edge_hi[:, None, None] - coord,
        ).astype(np.float64)
        beyond = dist < 0
        glow = _uniform(u["glow_amplitude"][sel_edge], 5.0, 50.0) * sig_s
        scale = _uniform(u["glow_scale"][sel_edge], 1.0, 4.0)
        img_s[sel_edge] += np.where(
            beyond, 0.0, glow[:, None, None] * np.exp(-dist / scale[:, None, None])
        )

    var_s = sky_var + np.maximum(img_s, 0.0)
    var_r = (sky_var + np.maximum(img_r, 0.0)) / setup.reference_depth
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).standard_normal((n, 2, p, p))
        sci = img_s + np.sqrt(var_s) * noise[:, 0]
        ref = img_r + np.sqrt(var_r) * noise[:, 1]
        del noise
    else:
        sci, ref = img_s, img_r
    del img_s, img_r

    # Saturation: the science's excess charge bleeds along the peak's column; both clip.
    level = setup.saturation - setup.sky_counts
    excess = np.maximum(sci - level, 0.0).sum(axis=(1, 2))
    bleed = np.ceil(excess / level / 2).astype(np.int64)
    sel = rows[bleed > 0]
    if len(sel):
        peak = np.argmax(sci[sel].reshape(len(sel), -1), axis=1)
        py, px = peak // p, peak % p
        trail = np.abs(yy[None, :] - py[:, None]) <= bleed[sel, None]
        idx = (sel[:, None], yy[None, :], px[:, None])
        sci[idx] = np.where(trail, level, sci[idx])
    np.minimum(sci, level, out=sci)
    np.minimum(ref, level, out=ref)

    # Bad pixels (science): hot pixels near the centre, or a hot/cold (partial) column.
    bad = is_["bad_pixel"]
    hot_rows = rows[bad & (u["variant"] < 0.5)]
    if len(hot_rows):
        hot = d["_hot"][hot_rows]
        count = 1 + np.minimum((_HOT_PIXELS * u["bad_amplitude"][hot_rows]), 3).astype(np.int64)
        for k in range(_HOT_PIXELS):
            use = count > k
            r = hot_rows[use]
            hx = np.rint(d["_x0"][r] + 4 * hot[use, k, 0] - 2).astype(np.int64)
            hy = np.rint(d["_y0"][r] + 4 * hot[use, k, 1] - 2).astype(np.int64)
            np.add.at(sci, (r, hy, hx), _uniform(hot[use, k, 2], 20.0, 200.0) * sig_s)
    col_rows = rows[bad & (u["variant"] >= 0.5)]
    if len(col_rows):
        cx = np.rint(d["_x0"][col_rows] + 6 * d["_hot"][col_rows, 0, 0] - 3).astype(np.int64)
        start = np.where(
            u["bad_start"][col_rows] < 0.5,
            0,
            pad + np.floor(H * d["_hot"][col_rows, 0, 1]).astype(np.int64),
        )
        value = _uniform(u["bad_amplitude"][col_rows], 5.0, 30.0) * sig_s
        value = np.where(u["sign"][col_rows] < 0.25, -value, value)
        on = yy[None, :] >= start[:, None]
        sci[col_rows[:, None], yy[None, :], cx[:, None]] += np.where(on, value[:, None], 0.0)

    if len(sel_edge):
        sci[sel_edge] = np.where(beyond, 0.0, sci[sel_edge])
        var_s[sel_edge] = np.where(beyond, 0.0, var_s[sel_edge])

    # PSF matching: convolve the sharper image to the broader one's PSF.
    t_a = np.maximum(t_r - t_s, 0.0)  # on the science
    t_b = np.maximum(t_s - t_r, 0.0)  # on the reference
    wrong = is_["psf_mismatch"]
    if wrong.any():
        t_wrong = np.maximum(d["_mismatch"] ** 2 * np.maximum(t_s, t_r) - np.minimum(t_s, t_r), 0.0)
        t_a = np.where(wrong & (t_r > t_s), t_wrong, t_a)
        t_b = np.where(wrong & (t_r <= t_s), t_wrong, t_b)
    diff = fourier.irfft(
        fourier.rfft(sci) * fourier.gauss(t_a) - fourier.rfft(ref) * fourier.gauss(t_b)
    )
    # A negative detection's difference, negated as the survey's pipeline does (its S/N too):
    # the sign of the PSF-matched-filter flux at the detection, whatever the kind (ZTF detects
    # on the difference and on its negative, and an alert of the latter carries it negated).
    if setup.negates_negative_detections:
        matched = fourier.irfft(fourier.rfft(diff) * fourier.gauss(np.maximum(t_s, t_r)))
        iy = np.clip(np.rint(d["_y0"]).astype(np.int64), 0, p - 1)
        ix = np.clip(np.rint(d["_x0"]).astype(np.int64), 0, p - 1)
        negative = matched[rows, iy, ix] < 0
        del matched
        diff[negative] *= -1.0
        d["difference_negated"] = negative.astype(np.float64)
    crop = (slice(None), slice(pad, pad + H), slice(pad, pad + H))
    planes = {"science": sci[crop], "reference": ref[crop], "difference": diff[crop]}
    if "snr" in setup.channels:
        var_d = fourier.irfft(
            fourier.rfft(var_s) * fourier.gauss_squared(t_a)
            + fourier.rfft(var_r) * fourier.gauss_squared(t_b)
        )[crop]
        planes["snr"] = planes["difference"] / np.sqrt(np.maximum(var_d, 1e-12 * sky_var))
    images = np.stack([planes[c] for c in setup.channels], axis=1).astype(np.float32)
    if len(sel_edge):
        images[sel_edge] = np.where(
            beyond[:, None, pad : pad + H, pad : pad + H], 0.0, images[sel_edge]
        )
    # Masked patches (NaN in ZTF's three cutouts, 0 once read, as alerts.py reads them).
    masked, side, depth, length, start = d["_mask"]
    for i in rows[masked]:
        lo_side, across = side[i] < 2, side[i] % 2 == 0  # across: the depth runs along x
        band = slice(0, depth[i]) if lo_side else slice(H - depth[i], H)
        span = slice(start[i], start[i] + length[i])
        if across:
            images[i, :, span, band] = 0.0
        else:
            images[i, :, band, span] = 0.0
    return images


# ---------------------------------------------------------------------------------------------
# Public API.

_PUBLIC_COLUMNS = (
    "index",
    "kind",
    "label",
    "mag",
    "delta_mag",
    "host_mag",
    "host_R_sersic",
    "offset",
    "offset_angle",
    "misalignment",
    "misalignment_angle",
    "ghost_radius",
    "ghost_inner",
    "ghost_surface_brightness",
    "spike_amplitude",
    "spike_ratio",
    "edge_side",
    "edge_width",
    "masked_pixels",
    "fwhm_science",
    "fwhm_reference",
    "sigma_difference",
    "snr",
    "difference_negated",
    "field_stars",
    "field_shift",
)


def simulate_block(
    setup, section, seed: int, block: int, start: int, stop: int, noise: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows ``[start, stop)`` (global indices) of random block ``block``.

    The whole block is drawn and rendered (a row never depends on which rows are asked for)
    and cut to ``[start, stop)``.

    Parameters
    ----------
    setup : str or TransientSetup
        A name in :data:`SETUPS` or a set-up.
    section : mapping
        The ``transients`` config section, checked at load (:func:`simulation_settings`
        fills the keys left out; its ``setup`` is ignored in favour of ``setup``).
    seed, block : int
    start, stop : int
        Global row range inside the block.
    noise : bool
        Add noise (``simulate.noise``).

    Returns
    -------
    images : ndarray, shape (stop - start, channels, H, W), float32
    columns : dict of str -> ndarray
        ``index`` (int64), ``kind`` (str objects), ``label`` (int8) and float64 parameters.
    """
    setup = _get_setup(setup)
    section = simulation_settings({**dict(section or {}), "setup": setup.name})
    first = block * BLOCK_SIZE
    if not first <= start < stop <= first + BLOCK_SIZE:
        raise ValueError(f"rows [{start}, {stop}) are not inside block {block}")
    params_rng, noise_seed = block_rng(seed, block)
    drawn = _draw(setup, section, params_rng, BLOCK_SIZE)
    drawn["index"] = np.arange(first, first + BLOCK_SIZE, dtype=np.int64)
    images = _render(setup, drawn, noise_seed if noise else None)
    lo, hi = start - first, stop - first
    return images[lo:hi], {k: drawn[k][lo:hi] for k in _PUBLIC_COLUMNS}


@dataclass(frozen=True)
class _Plan(ShardPlan):
    """Everything needed to render any shard (picklable for worker processes); the shard
    driver (:mod:`skyscan.data.driver`) writes its shards."""

    unit: ClassVar[str] = "det"

    setup: TransientSetup
    section: dict
    seed: int
    n: int
    shard_size: int
    noise: bool
    config_hash: str

    def rows(self, start: int, stop: int, progress=None) -> pa.Table:
        """Rows ``[start, stop)`` as an Arrow table (``image`` column last)."""

        def block_rows(block: int, lo: int, hi: int) -> dict[str, np.ndarray]:
            images, cols = simulate_block(
                self.setup, self.section, self.seed, block, lo, hi, noise=self.noise
            )
            return {**cols, "image": images}

        cols = gather_blocks(start, stop, block_rows, progress)
        return _table(self, cols.pop("image"), cols)

    def metadata(self, shard: int) -> dict:
        s = self.setup
        start, stop = self.shard_rows(shard)
        sigma = {
            "science": s.science_sigma,
            "reference": s.reference_sigma,
            "difference": float(s.difference_sigma(s.seeing_science[1], s.seeing_reference[1])),
            "snr": 1.0,
        }
        return {
            "skyscan_version": skyscan.__version__,
            "case": "transients",
            "survey": s.name,
            "bands": list(s.channels),
            "shape": [len(s.channels), s.stamp_size, s.stamp_size],
            "pixel_scale": s.pixel_scale,
            "units": IMAGE_UNITS,
            "background_sigma": [float(sigma[c]) for c in s.channels],
            "zero_point": s.zero_point,
            "exposure_time": s.exposure_time,
            "saturation": s.saturation,
            "limiting_mag": s.limiting_mag,
            "filter": s.band,
            "noise": self.noise,
            "kinds": self.section["kinds"],
            "mag_bins": magnitude_grid(s, self.section["mag_min"]),
            "seed": self.seed,
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
        }


def _plan(config: Mapping) -> _Plan:
    sim = config["simulate"]
    section = simulation_settings(config.get("transients"))
    setup = _get_setup(section["setup"])
    identity = {
        "case": "transients",
        "seed": config["seed"],
        "setup": dataclasses.asdict(setup),
        "kinds": section["kinds"],
        "mag_min": section["mag_min"],
        "nuclear_fraction": section["nuclear_fraction"],
        "variable_delta_max": section["variable_delta_max"],
        "field_stars": section["field_stars"],
        "mag_mode": section["mag_mode"],
        "noise": sim["noise"],
        "shard_size": sim["shard_size"],
        "skyscan_version": skyscan.__version__,
        # numpy draws the noise and scipy transforms: their versions may change the bytes
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
    }
    return _Plan(
        setup=setup,
        section=section,
        seed=int(config["seed"]),
        n=int(sim["n"]),
        shard_size=int(sim["shard_size"]),
        noise=bool(sim["noise"]),
        config_hash=config_hash(identity),
    )


def _table(plan: _Plan, images: np.ndarray, cols: dict[str, np.ndarray]) -> pa.Table:
    n = len(cols["index"])
    names = ["index", "shard", "seed", "kind", "label"]
    arrays = [
        pa.array(cols["index"]),
        pa.array((cols["index"] // plan.shard_size).astype(np.int32)),
        pa.array(np.full(n, plan.seed, dtype=np.int64)),
        pa.array(cols["kind"].astype(str)).dictionary_encode(),
        pa.array(cols["label"]),
    ]
    for name in sorted(k for k in cols if k not in names):
        names.append(name)
        arrays.append(pa.array(cols[name]))
    names.append("image")
    arrays.append(images_to_array(images))
    return pa.Table.from_arrays(arrays, names=names)


def run_transient_simulation(
    config: Mapping, out_dir, shards=None, workers: int = 1, show_progress: bool = False
) -> list[Path]:
    """Simulate detections into Parquet shards ``shard-{k:05d}.parquet`` of ``out_dir``.

    Parameters
    ----------
    config : mapping
        The validated skyscan config: ``seed``, ``simulate.n``, ``simulate.shard_size``,
        ``simulate.noise`` and the ``transients`` section (:func:`simulation_settings`).
    out_dir : str or Path
    shards : iterable of int, optional
        Which shards to write (default all).  Complete shards of the same config are skipped.
    workers : int
        Processes (one shard each at a time; spawned); 1 writes in this process.
    show_progress : bool

    Returns
    -------
    list of Path
        The shards, in the order asked for.
    """
    return run_shards(
        _plan(config), out_dir, shards=shards, workers=workers, show_progress=show_progress
    )
