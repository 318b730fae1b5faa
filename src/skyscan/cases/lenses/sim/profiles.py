"""Batched mass and light profiles in torch, following lenstronomy's conventions.

Each profile comes in two layers:

* ``*_constants`` derive per-system constants (axis ratio, rotation, normalisations) once, in
  float64 numpy, one row per system;
* ``*_kernel`` functions are pure torch: sky coordinates ``x, y`` (arcsec, shape ``(1, P)``,
  usually the flattened super-sampled pixel grid) and a ``(B, K)`` constants tensor in,
  ``(B, P)`` out, in the tensors' dtype.  Being pure, they fuse under ``torch.compile``.

The ``sie_deflection``, ``sersic_profile``, ... wrappers take physical parameters directly.

Conventions (lenstronomy 1.14.2):

* Ellipticity ``e1, e2``: ``q = (1 - |e|) / (1 + |e|)``, position angle ``phi = arg(e) / 2``.
* Elliptical radius of light profiles: the product-average radius ``sqrt(q x'^2 + y'^2 / q)``
  built with lenstronomy's linear map (``param_util.transform_e1e2_product_average``).
* SIE: lenstronomy's ``'SIE'`` = NIE with core ``s = 1e-10`` and product-averaged ``theta_E``.
* SHEAR: ``alpha = (g1 x + g2 y, g2 x - g1 y)`` about the origin (``ra_0 = dec_0 = 0``),
  i.e. the stamp centre.
* Sersic: ``I(R) = amp exp(-b_n [(R/R_sersic)^(1/n) - 1])`` with lenstronomy's
  ``b_n = 1.9992 n - 0.3271`` and ``R`` floored at 1e-4 arcsec; ``amp`` is the surface
  brightness at ``R_sersic`` (the half-light radius).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import special

from skyscan.core.profiles import sersic_b_n, sersic_total_flux  # noqa: F401  (re-exported)

__all__ = [
    "ellipticity_to_phi_q",
    "phi_q_to_ellipticity",
    "sersic_b_n",
    "sersic_total_flux",
    "ring_total_flux",
    "RING_KNOTS",
    "sie_constants",
    "sersic_constants",
    "ring_constants",
    "spiral_constants",
    "sie_shear_kernel",
    "sersic_kernel",
    "sersic_roots",
    "lensed_sersic_kernel",
    "SOURCE_CLUMPS",
    "clump_constants",
    "clumps_total_flux",
    "lensed_clumpy_sersic_kernel",
    "ring_kernel",
    "spiral_kernel",
    "sie_deflection",
    "sie_convergence",
    "sersic_profile",
    "ring_profile",
    "spiral_profile",
]

_SERSIC_SMOOTHING = 1e-4  # arcsec; lenstronomy's SersicUtil default
_SIE_CORE = 1e-10  # arcsec; lenstronomy's SIE s_scale
_Q_MAX = 0.99999999  # lenstronomy's NIEMajorAxis cap

#: Knot slots of the ring (:func:`ring_constants`); unused slots have amplitude 0.
RING_KNOTS = 6
_RING_FIXED = 11  # ring constants before the knot slots

#: Star-forming clump slots of a clumpy source (:func:`clump_constants`); unused slots have
#: amplitude 0.
SOURCE_CLUMPS = 6
_RING_ARC_SOFTNESS = 0.1  # radians: a partial ring's ends fade over ~+-10 degrees
_RING_AZIMUTHS = 4096  # trapezoid nodes of the ring's azimuthal mean


def ellipticity_to_phi_q(e1, e2):
    """Position angle (radians) and axis ratio from ellipticity components (lenstronomy)."""
    e1 = np.asarray(e1, dtype=np.float64)
    e2 = np.asarray(e2, dtype=np.float64)
    phi = np.arctan2(e2, e1) / 2
    c = np.minimum(np.sqrt(e1**2 + e2**2), 0.9999)
    return phi, (1 - c) / (1 + c)


def phi_q_to_ellipticity(phi, q):
    """Ellipticity components from position angle (radians) and axis ratio (lenstronomy)."""
    phi = np.asarray(phi, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    e = (1.0 - q) / (1.0 + q)
    return e * np.cos(2 * phi), e * np.sin(2 * phi)


def ring_total_flux(
    radius, width, arc=360.0, arc_angle=0.0, knot_angles=None, knot_amplitudes=None, knot_width=None
):
    """Total flux of the unit-amplitude ring of :func:`ring_kernel` (flux units x arcsec^2).

    The profile is radial Gaussian times azimuthal factor, ``f(R) A(theta)``, in the
    product-average ellipse frame, which preserves area; so the flux is the radial integral
    ``2 pi (w^2 e^{-R0^2/2w^2} + R0 w sqrt(pi/2) [1 + erf(R0 / sqrt(2) w)])`` of
    ``exp(-(R - R0)^2 / (2 w^2))`` times the azimuthal mean of ``A``.  That mean has no closed
    form with a soft arc window, so it is the trapezoid rule on :data:`_RING_AZIMUTHS`
    angles, exponentially accurate for a smooth periodic function (1e-9 here).

    Parameters
    ----------
    radius, width, arc, arc_angle, knot_angles, knot_amplitudes, knot_width
        As for :func:`ring_constants`; the defaults give a plain, full Gaussian ring.
    """
    r0 = np.asarray(radius, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    radial = (
        2
        * np.pi
        * (
            w**2 * np.exp(-(r0**2) / (2 * w**2))
            + r0 * w * np.sqrt(np.pi / 2) * (1 + special.erf(r0 / (np.sqrt(2) * w)))
        )
    )
    c = np.stack(
        ring_constants(
            r0, w, 0.0, 0.0, 0.0, 0.0, arc, arc_angle, knot_angles, knot_amplitudes, knot_width
        ),
        axis=-1,
    ).reshape(-1, _RING_FIXED + 3 * RING_KNOTS)
    theta = 2 * np.pi * np.arange(_RING_AZIMUTHS) / _RING_AZIMUTHS
    mean = _ring_azimuth(np, np.cos(theta)[None], np.sin(theta)[None], c).mean(axis=1)
    return radial * mean.reshape(np.shape(radial))


def _table(columns, like: torch.Tensor) -> torch.Tensor:
    """Stack per-system constants (float64 numpy) into a (B, K) tensor like ``like``."""
    arr = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    return torch.as_tensor(arr, device=like.device).to(like.dtype)


# ---------------------------------------------------------------------------------------------
# Per-system constants (float64 numpy), one row per system, in the column order the tensor
# kernels below expect.


def sie_constants(theta_E, e1, e2, center_x, center_y, gamma1=0.0, gamma2=0.0):
    """SIE + shear constants: ``cx, cy, cos, sin, q, s, sqrt(1-q^2), b/sqrt(1-q^2), g1, g2``."""
    phi, q = ellipticity_to_phi_q(e1, e2)
    q = np.minimum(q, _Q_MAX)
    theta_E = np.asarray(theta_E, dtype=np.float64)
    theta_major = theta_E / np.sqrt((1.0 + q**2) / (2.0 * q))
    b = theta_major * np.sqrt((1 + q**2) / 2)
    s1q = np.sqrt(1.0 - q**2)
    shape = np.shape(theta_E)
    return [
        np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
        for v in (
            center_x,
            center_y,
            np.cos(phi),
            np.sin(phi),
            q,
            _SIE_CORE / np.sqrt(q),
            s1q,
            b / s1q,
            gamma1,
            gamma2,
        )
    ]


def ellipse_constants(e1, e2, center_x, center_y, scale=1.0):
    """Product-average ellipse map ``cx, cy, a11, a12, a22`` divided by ``scale``."""
    e1 = np.asarray(e1, dtype=np.float64)
    e2 = np.asarray(e2, dtype=np.float64)
    norm = np.sqrt(np.maximum(np.abs(1 - e1**2 - e2**2), 1e-6)) * np.asarray(scale, np.float64)
    return [
        np.asarray(center_x, np.float64),
        np.asarray(center_y, np.float64),
        (1 - e1) / norm,
        -e2 / norm,
        (1 + e1) / norm,
    ]


def sersic_constants(R_sersic, n_sersic, e1, e2, center_x, center_y):
    """Sersic constants: ellipse map in units of ``R_sersic``, ``floor``, ``1/(2n)``, ``b_n``."""
    r_s = np.maximum(np.asarray(R_sersic, dtype=np.float64), _SERSIC_SMOOTHING)
    n = np.asarray(n_sersic, dtype=np.float64)
    return ellipse_constants(e1, e2, center_x, center_y, scale=r_s) + [
        (_SERSIC_SMOOTHING / r_s) ** 2,
        0.5 / n,
        sersic_b_n(n),
    ]


def ring_constants(
    radius,
    width,
    e1,
    e2,
    center_x,
    center_y,
    arc=360.0,
    arc_angle=0.0,
    knot_angles=None,
    knot_amplitudes=None,
    knot_width=None,
):
    """Ring constants: the ellipse map, ``radius``, ``width``, the arc window (``cos``,
    ``sin`` of its direction, half its arc in radians), the knots' ``kappa`` and, per knot slot,
    ``cos``, ``sin`` of its angle and its amplitude.

    Parameters
    ----------
    radius, width : array_like, shape (B,)
        Ring radius and Gaussian radial sigma (arcsec, product-average radius).
    e1, e2, center_x, center_y : array_like, shape (B,)
        Ellipticity and centre of the ring.
    arc : array_like, shape (B,)
        Azimuthal coverage in degrees; 360 (or more) is a full ring.  A partial ring fades out
        over ~10 degrees at each end (:data:`_RING_ARC_SOFTNESS`).
    arc_angle : array_like, shape (B,)
        Direction of the middle of the arc, radians from the ellipse frame's x axis.
    knot_angles, knot_amplitudes : array_like, shape (B, k), k <= RING_KNOTS, optional
        Knot directions (radians, ellipse frame) and peak brightness over the smooth ring
        (0 for an unused slot).  Default: no knots.
    knot_width : array_like, shape (B,), optional
        Gaussian sigma of the knots along the ring, arcsec (sets ``kappa = (radius /
        knot_width)^2`` of their von Mises azimuthal profile).
    """
    r0 = np.asarray(radius, np.float64)
    shape = np.broadcast(r0, width, e1, e2, center_x, center_y, arc, arc_angle).shape
    arc = np.broadcast_to(np.asarray(arc, np.float64), shape)
    arc_angle = np.broadcast_to(np.asarray(arc_angle, np.float64), shape)
    # A full ring gets a half-arc so wide that the window is exactly 1 in float32.
    half_arc = np.where(arc >= 360.0, 1e4, np.deg2rad(np.minimum(arc, 360.0)) / 2)
    angles = np.zeros((*shape, RING_KNOTS))
    amps = np.zeros((*shape, RING_KNOTS))
    if knot_amplitudes is not None:
        k = np.shape(knot_amplitudes)[-1]
        if k > RING_KNOTS:
            raise ValueError(f"at most {RING_KNOTS} ring knots, got {k}")
        angles[..., :k] = knot_angles
        amps[..., :k] = knot_amplitudes
    if knot_width is None:
        kappa = np.ones(shape)
    else:
        kappa = (r0 / np.asarray(knot_width, np.float64)) ** 2
    knots = []
    for j in range(RING_KNOTS):
        knots += [np.cos(angles[..., j]), np.sin(angles[..., j]), amps[..., j]]
    cols = ellipse_constants(e1, e2, center_x, center_y) + [
        r0,
        np.asarray(width, np.float64),
        np.cos(arc_angle),
        np.sin(arc_angle),
        half_arc,
        kappa,
    ]
    return [np.broadcast_to(np.asarray(v, np.float64), shape) for v in cols + knots]


def spiral_constants(R_sersic, e1, e2, center_x, center_y, arms, pitch_deg, amplitude, phase):
    """Spiral constants: ellipse map in units of ``R_sersic``, m, cot(pitch), A, phase."""
    r_s = np.asarray(R_sersic, dtype=np.float64)
    wind = 1.0 / np.tan(np.deg2rad(np.asarray(pitch_deg, dtype=np.float64)))
    return ellipse_constants(e1, e2, center_x, center_y, scale=r_s) + [
        np.asarray(arms, np.float64),
        wind,
        np.asarray(amplitude, np.float64),
        np.asarray(phase, np.float64),
    ]


# ---------------------------------------------------------------------------------------------
# Tensor kernels: coordinates (1, P) or (B, P), constants (B, K) -> (B, P).  Pure torch, so
# that torch.compile can fuse each into one loop.


def sie_shear_kernel(x, y, c):
    """Deflection of SIE + external shear for constants from :func:`sie_constants`."""
    dx = x - c[:, 0:1]
    dy = y - c[:, 1:2]
    cos, sin, q, s = c[:, 2:3], c[:, 3:4], c[:, 4:5], c[:, 5:6]
    xr = cos * dx + sin * dy
    yr = cos * dy - sin * dx
    psi = torch.sqrt(q * q * (s * s + xr * xr) + yr * yr)
    s1q, scale = c[:, 6:7], c[:, 7:8]
    fx = scale * torch.atan(s1q * xr / (psi + s))
    fy = scale * torch.atanh(s1q * yr / (psi + q * q * s))
    g1, g2 = c[:, 8:9], c[:, 9:10]
    return cos * fx - sin * fy + g1 * x + g2 * y, sin * fx + cos * fy + g2 * x - g1 * y


def _ellipse(x, y, c):
    dx = x - c[:, 0:1]
    dy = y - c[:, 1:2]
    return c[:, 2:3] * dx + c[:, 3:4] * dy, c[:, 3:4] * dx + c[:, 4:5] * dy


def sersic_roots(n_sersic) -> int | None:
    """Square roots that give ``(R^2)^(1/(2n))`` when every ``n`` is 0.5, 1, 2 or 4, else None.

    ``(R^2)^(1/(2n))`` is then ``k`` nested square roots, several times cheaper than a power
    and at least as accurate; other ``n`` use ``pow``.
    """
    n = np.unique(np.asarray(n_sersic, dtype=np.float64))
    if len(n) == 1 and float(n[0]) in (0.5, 1.0, 2.0, 4.0):
        return int(np.log2(n[0])) + 1
    return None


def sersic_kernel(x, y, c, roots: int | None = None):
    """Unit-amplitude Sersic for constants from :func:`sersic_constants`.

    ``roots`` (see :func:`sersic_roots`) replaces the power by nested square roots.
    """
    xe, ye = _ellipse(x, y, c)
    r2 = torch.maximum(xe * xe + ye * ye, c[:, 5:6])
    if roots is None:
        reduced = torch.pow(r2, c[:, 6:7])
    else:
        reduced = r2
        for _ in range(roots):
            reduced = torch.sqrt(reduced)
    bn = c[:, 7:8]
    return torch.exp(bn - bn * reduced)


def lensed_sersic_kernel(x, y, c_mass, c_light, roots: int | None = None):
    """A Sersic source seen through SIE + shear, evaluated at ``beta = theta - alpha``."""
    ax, ay = sie_shear_kernel(x, y, c_mass)
    return sersic_kernel(x - ax, y - ay, c_light, roots)


def clump_constants(x, y, sigma, amplitude):
    """Constants of up to :data:`SOURCE_CLUMPS` circular Gaussian clumps per system.

    Parameters
    ----------
    x, y, sigma, amplitude : array_like, shape (B, SOURCE_CLUMPS)
        Source-plane centres and Gaussian sigmas (arcsec) and peak surface brightness, in the
        units of the host Sersic's (whose value at its half-light radius is 1); unused slots
        have amplitude 0 (their other values are ignored).

    Returns
    -------
    list of ndarray
        Per slot ``x``, ``y``, ``1 / (2 sigma^2)`` and the amplitude.
    """
    amp = np.nan_to_num(np.asarray(amplitude, dtype=np.float64))
    used = amp > 0
    sig = np.where(used, np.asarray(sigma, dtype=np.float64), 1.0)
    cx = np.where(used, np.asarray(x, dtype=np.float64), 0.0)
    cy = np.where(used, np.asarray(y, dtype=np.float64), 0.0)
    out = []
    for j in range(amp.shape[1]):
        out += [cx[:, j], cy[:, j], 0.5 / sig[:, j] ** 2, amp[:, j]]
    return out


def clumps_total_flux(sigma, amplitude) -> np.ndarray:
    """Total flux of the clumps of :func:`clump_constants` (``sum 2 pi sigma^2 A``)."""
    amp = np.nan_to_num(np.asarray(amplitude, dtype=np.float64))
    sig = np.nan_to_num(np.asarray(sigma, dtype=np.float64))
    return (2 * np.pi * sig**2 * amp).sum(axis=1)


def _clumps(x, y, c):
    out = 0.0
    for j in range(0, c.shape[1], 4):
        r2 = (x - c[:, j : j + 1]) ** 2 + (y - c[:, j + 1 : j + 2]) ** 2
        out = out + c[:, j + 3 : j + 4] * torch.exp(-r2 * c[:, j + 2 : j + 3])
    return out


def lensed_clumpy_sersic_kernel(x, y, c_mass, c_light, c_clumps, roots: int | None = None):
    """A Sersic disc with Gaussian star-forming clumps, seen through SIE + shear."""
    ax, ay = sie_shear_kernel(x, y, c_mass)
    bx, by = x - ax, y - ay
    return sersic_kernel(bx, by, c_light, roots) + _clumps(bx, by, c_clumps)


def _ring_azimuth(xp, cos_t, sin_t, c):
    """Azimuthal factor of the ring: arc window times (1 + knots).  ``xp`` is ``torch`` or
    ``numpy``, so the kernel and its flux normalisation share one formula."""
    # Angular distance from the arc's middle, so the ends are equally soft whatever the arc.
    dist = xp.arccos(xp.clip(cos_t * c[:, 7:8] + sin_t * c[:, 8:9], -1.0, 1.0))
    window = 1 / (1 + xp.exp((dist - c[:, 9:10]) / _RING_ARC_SOFTNESS))
    knots = 1.0
    kappa = c[:, 10:11]
    for j in range(_RING_FIXED, c.shape[1], 3):
        cos_d = cos_t * c[:, j : j + 1] + sin_t * c[:, j + 1 : j + 2]
        knots = knots + c[:, j + 2 : j + 3] * xp.exp(kappa * (cos_d - 1))
    return window * knots


def ring_kernel(x, y, c):
    """Unit-amplitude knotty, possibly partial ring for constants from :func:`ring_constants`.

    ``exp(-(R - R0)^2 / (2 w^2)) W(theta) (1 + sum_j a_j exp(kappa [cos(theta - theta_j) -
    1]))`` in the ring's product-average ellipse frame: a Gaussian ring, a soft arc window
    ``W = sigmoid([arc / 2 - |theta - theta_arc|] / 0.1)`` and von Mises knots.
    """
    xe, ye = _ellipse(x, y, c)
    r = torch.sqrt(xe * xe + ye * ye)
    rs = torch.clamp(r, min=1e-6)  # the azimuth is undefined at the centre, where f(R) ~ 0
    radial = torch.exp(-0.5 * ((r - c[:, 5:6]) / c[:, 6:7]) ** 2)
    return radial * _ring_azimuth(torch, xe / rs, ye / rs, c)


def spiral_kernel(x, y, c):
    """Exponential disk with logarithmic arms for constants from :func:`spiral_constants`."""
    xe, ye = _ellipse(x, y, c)
    r = torch.clamp(torch.sqrt(xe * xe + ye * ye), min=_SERSIC_SMOOTHING)
    b1 = 1.9992 - 0.3271
    theta = torch.atan2(ye, xe)
    arm = torch.cos(c[:, 5:6] * (theta - c[:, 6:7] * torch.log(r)) - c[:, 8:9])
    return torch.exp(b1 - b1 * r) * (1 + c[:, 7:8] * arm)


# ---------------------------------------------------------------------------------------------
# Convenience wrappers taking physical parameters (used by tests and interactive work).


def sie_deflection(x, y, theta_E, e1, e2, center_x, center_y, gamma1=0.0, gamma2=0.0):
    """SIE (+ optional shear) deflection ``(alpha_x, alpha_y)`` in arcsec.

    Parameters
    ----------
    x, y : torch.Tensor
        Coordinates in arcsec, shape ``(1, P)`` or ``(B, P)``.
    theta_E, e1, e2, center_x, center_y, gamma1, gamma2 : array_like, shape (B,)
        lenstronomy ``'SIE'`` and ``'SHEAR'`` parameters.

    Returns
    -------
    tuple of torch.Tensor
        Deflections of shape ``(B, P)``.
    """
    c = _table(sie_constants(theta_E, e1, e2, center_x, center_y, gamma1, gamma2), x)
    return sie_shear_kernel(x, y, c)


def sie_convergence(x, y, theta_E, e1, e2, center_x, center_y):
    """SIE convergence ``kappa = b / (2 sqrt(q^2 (s^2 + x'^2) + y'^2))`` (lenstronomy ``'SIE'``)."""
    c = _table(sie_constants(theta_E, e1, e2, center_x, center_y), x)
    dx = x - c[:, 0:1]
    dy = y - c[:, 1:2]
    cos, sin, q, s = c[:, 2:3], c[:, 3:4], c[:, 4:5], c[:, 5:6]
    xr = cos * dx + sin * dy
    yr = cos * dy - sin * dx
    b = c[:, 7:8] * c[:, 6:7]
    return b / 2 / torch.sqrt(q * q * (s * s + xr * xr) + yr * yr)


def sersic_profile(x, y, R_sersic, n_sersic, e1, e2, center_x, center_y):
    """Elliptical Sersic surface brightness with ``amp = 1`` (lenstronomy ``'SERSIC_ELLIPSE'``)."""
    c = _table(sersic_constants(R_sersic, n_sersic, e1, e2, center_x, center_y), x)
    return sersic_kernel(x, y, c)


def ring_profile(x, y, radius, width, e1, e2, center_x, center_y, **shape):
    """Ring ``exp(-(R - radius)^2 / (2 width^2)) W(theta) (1 + knots)`` (amp = 1).

    ``shape`` takes the keyword arguments ``arc``, ``arc_angle``, ``knot_angles``,
    ``knot_amplitudes`` and ``knot_width`` of :func:`ring_constants`; without them, a plain
    Gaussian ring in product-average radius.
    """
    c = _table(ring_constants(radius, width, e1, e2, center_x, center_y, **shape), x)
    return ring_kernel(x, y, c)


def spiral_profile(x, y, R_sersic, e1, e2, center_x, center_y, arms, pitch_deg, amplitude, phase):
    """Exponential disk with logarithmic spiral arms (amp = 1 at ``R_sersic`` on average).

    ``I = exp(-b_1 (R/R_s - 1)) (1 + A cos(m [theta - ln(R/R_s) / tan(pitch)] - phase))``;
    the modulation averages to zero over azimuth, so the total flux is that of the
    exponential disk (:func:`sersic_total_flux` with ``n = 1``).
    """
    c = _table(
        spiral_constants(R_sersic, e1, e2, center_x, center_y, arms, pitch_deg, amplitude, phase), x
    )
    return spiral_kernel(x, y, c)
