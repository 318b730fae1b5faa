"""Realistic negatives and context: the ring impostor and the line-of-sight neighbours."""

import numpy as np
import pytest
import torch
from conftest import NO_NEIGHBOURS, ONLY_LENSES, draw_params, lsst_bands

from skyscan.cases.lenses.sim import field
from skyscan.cases.lenses.sim import profiles as prof
from skyscan.cases.lenses.sim.components import NEIGHBOUR_GALAXIES, neighbour_slots
from skyscan.cases.lenses.sim.render import Observation, render

ONLY = {k: 0 for k in ONLY_LENSES}
RINGS = {**ONLY, "ring": 1}
INVISIBLE_HOST = {"lens_mag": {"dist": "constant", "value": 40.0}}


def _ring_priors(**over):
    """A round ring of radius 2" with an invisible host; ``over`` replaces ring priors."""
    priors = {
        **INVISIBLE_HOST,
        "lens_center": {"dist": "constant", "value": 0.0},
        "ring_radius": {"dist": "constant", "value": 2.0},
        "ring_width": {"dist": "constant", "value": 0.2},
        "ring_q": {"dist": "constant", "value": 1.0},
        "ring_mag": {"dist": "constant", "value": 20.0},
    }
    priors.update({f"ring_{k}": v for k, v in over.items()})
    return priors


def _azimuthal_profile(image, cx, cy, pix=0.2, bins=36):
    """Flux per azimuthal bin about (cx, cy) arcsec of a (H, W) image."""
    h = image.shape[-1]
    g = (np.arange(h) - (h - 1) / 2) * pix
    x, y = np.meshgrid(g, g)
    theta = np.arctan2(y - cy, x - cx)
    idx = ((theta + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    return np.bincount(idx.ravel(), weights=image.ravel(), minlength=bins)


def test_knotty_partial_ring_flux_normalisation():
    """The kernel integrated on a 0.01" grid equals ring_total_flux (rtol 1e-6: the azimuthal
    mean is a 4096-node trapezoid rule of a smooth periodic function), for plain, knotty,
    partial and off-centre elliptical rings."""
    g = np.linspace(-8, 8, 1601)
    step = g[1] - g[0]
    x, y = np.meshgrid(g, g)
    xt, yt = torch.tensor(x.ravel())[None], torch.tensor(y.ravel())[None]
    cases = [
        {},
        {"arc": [200.0], "arc_angle": [0.7]},
        {
            "arc": [150.0],
            "arc_angle": [2.0],
            "knot_angles": [[0.3, 1.0, 2.5, 4.0]],
            "knot_amplitudes": [[2.0, 1.0, 3.0, 0.5]],
            "knot_width": [0.12],
        },
        {"knot_angles": [[1.0] * 6], "knot_amplitudes": [[5.0] * 6], "knot_width": [0.4]},
    ]
    for shape in cases:
        img = prof.ring_profile(xt, yt, [1.5], [0.2], [0.1], [0.05], [0.3], [-0.2], **shape)
        np.testing.assert_allclose(
            img.sum().item() * step**2, prof.ring_total_flux([1.5], [0.2], **shape), rtol=1e-6
        )


def test_ring_magnitude_is_its_flux():
    """Rendered (PSF-convolved, noise-free) rings hold their catalogue flux (1%): knots and
    partial arcs do not change what ring_mag means."""
    params = draw_params(20, seed=4, kinds=RINGS, priors=_ring_priors(), neighbours=NO_NEIGHBOURS)
    assert (params["ring_knot1_amp"] > 0).all() and (params["ring_arc"] < 360).any()
    obs = Observation(lsst_bands(), 45, 3, "coadd")
    flux = render(params, obs, None, dtype=torch.float64).image.sum(axis=(2, 3))
    expected = np.stack([b.mag_to_rate(params[f"ring_mag_{b.name}"]) for b in obs.bands], 1)
    np.testing.assert_allclose(flux, expected, rtol=0.01)


def test_ring_centre_is_offset_from_the_host():
    """A full knotless ring's light is centred on the ring centre, 0.4 ring radii (0.8") from
    the host's: the light-weighted centroid of the image is within 0.05" of it."""
    priors = _ring_priors(
        offset={"dist": "constant", "value": 0.4},
        partial={"dist": "constant", "value": 0.0},
        knots={"dist": "choice", "values": [0]},
    )
    params = draw_params(8, seed=6, kinds=RINGS, priors=priors, neighbours=NO_NEIGHBOURS)
    image = render(params, Observation(lsst_bands(), 45, 3, "coadd"), None).image[:, 2]
    g = (np.arange(45) - 22) * 0.2
    x, y = np.meshgrid(g, g)
    total = image.sum(axis=(1, 2))
    cx = (image * x).sum(axis=(1, 2)) / total
    cy = (image * y).sum(axis=(1, 2)) / total
    np.testing.assert_allclose(np.hypot(params["ring_center_x"], params["ring_center_y"]), 0.8)
    np.testing.assert_allclose(cx, params["ring_center_x"], atol=0.05)
    np.testing.assert_allclose(cy, params["ring_center_y"], atol=0.05)


@pytest.mark.parametrize("arc", [120.0, 200.0, 300.0])
def test_partial_ring_covers_its_arc(arc):
    """A partial ring lights up its arc only: the share of 10-degree azimuthal bins (about the
    ring centre) holding over 20% of the brightest bin's flux is the arc's share of 360
    degrees, within 0.12 (the window's soft ends and the PSF)."""
    priors = _ring_priors(
        partial={"dist": "constant", "value": 1.0},
        arc={"dist": "constant", "value": arc},
        knots={"dist": "choice", "values": [0]},
    )
    params = draw_params(6, seed=7, kinds=RINGS, priors=priors, neighbours=NO_NEIGHBOURS)
    np.testing.assert_array_equal(params["ring_arc"], arc)
    image = render(params, Observation(lsst_bands(), 45, 3, "coadd"), None).image[:, 2]
    for k in range(6):
        prof_ = _azimuthal_profile(image[k], params["ring_center_x"][k], params["ring_center_y"][k])
        lit = (prof_ > 0.2 * prof_.max()).mean()
        assert abs(lit - arc / 360) < 0.12, (k, lit)


def test_ring_knots_and_colours():
    """Knots make the azimuthal profile of a full ring lumpy (brightest bin over twice the
    median), and the default colour prior gives rings both bluer and redder (g - i) than
    their host."""
    priors = _ring_priors(
        partial={"dist": "constant", "value": 0.0},
        knot_contrast={"dist": "constant", "value": 4.0},
        knot_width={"dist": "constant", "value": 0.15},
    )
    params = draw_params(6, seed=8, kinds=RINGS, priors=priors, neighbours=NO_NEIGHBOURS)
    image = render(params, Observation(lsst_bands(), 45, 3, "coadd"), None).image[:, 2]
    for k in range(6):
        prof_ = _azimuthal_profile(image[k], params["ring_center_x"][k], params["ring_center_y"][k])
        assert prof_.max() > 2 * np.median(prof_)

    rings = draw_params(2000, seed=9, kinds=RINGS, neighbours=NO_NEIGHBOURS)
    shift = (rings["ring_mag_g"] - rings["ring_mag_i"]) - (
        rings["lens_mag_g"] - rings["lens_mag_i"]
    )
    redder = (shift > 0).mean()
    assert 0.1 < redder < 0.45, redder
    assert (rings["ring_arc"] < 360).mean() == pytest.approx(0.5, abs=0.05)


def test_neighbour_counts_follow_the_density():
    """Over 20,000 stamps (45 px at 0.2"), the filled slots average the configured density
    times the stamp area less the central disc (field 40, star 4 per arcmin^2), within 4
    standard errors; every neighbour lies in the stamp, at least min_distance (1") from its
    centre, with the tiles' magnitude range."""
    n = 20000
    params = draw_params(n, seed=10, kinds={k: 1 for k in ONLY_LENSES})
    area = (9.0**2 - np.pi * 1.0**2) / 3600
    slots = neighbour_slots()
    galaxies = sum(np.isfinite(params[f"{c.name}_mag_i"]) for c in slots if c.convolved)
    stars = sum(np.isfinite(params[f"{c.name}_mag_i"]) for c in slots if not c.convolved)
    for count, density in ((galaxies, 40.0), (stars, 4.0)):
        mean = density * area
        assert abs(count.mean() - mean) < 4 * np.sqrt(mean / n), (count.mean(), mean)
    assert galaxies.max() == NEIGHBOUR_GALAXIES
    for c in slots:
        x, y = params[f"{c.name}_center_x"], params[f"{c.name}_center_y"]
        ok = np.isfinite(x)
        assert (np.hypot(x[ok], y[ok]) >= 1.0).all()
        assert (np.abs(x[ok]) <= 4.5).all() and (np.abs(y[ok]) <= 4.5).all()
        mag = params[f"{c.name}_mag_i"][ok]
        lo, hi = (field.GALAXY_MAGS if c.convolved else field.STAR_MAGS)[:2]
        assert (mag >= lo).all() and (mag <= hi).all()


def test_neighbours_off_and_not_lensed_signal():
    """``{field: 0, star: 0}``: no neighbour columns and blank stamps around invisible hosts.
    On: the other columns are the same draws, neighbour light is in the images of every kind,
    and the magnification and S/N (lensed source only) do not change."""
    kinds = {k: 1 for k in ONLY_LENSES}
    off = draw_params(300, seed=11, kinds=kinds, priors=INVISIBLE_HOST, neighbours=NO_NEIGHBOURS)
    on = draw_params(300, seed=11, kinds=kinds, priors=INVISIBLE_HOST)
    assert not any(k.startswith("neighbour") for k in off)
    for key, value in off.items():
        np.testing.assert_array_equal(on[key], value)
    obs = Observation(lsst_bands(), 45, 3, "coadd", snr_definition="source_only")
    res_off, res_on = render(off, obs, None), render(on, obs, None)
    plain = np.isin(off["kind"], ["no_source"])
    assert plain.any() and np.abs(res_off.image[plain]).max() < 1e-6
    filled = np.zeros(300, bool)
    for c in neighbour_slots():
        filled |= np.isfinite(on[f"{c.name}_mag_i"])
    assert filled.any() and (~filled).any()
    extra = (res_on.image - res_off.image).sum(axis=(1, 2, 3))
    assert (extra[filled] > 0).all() and (extra[~filled] == 0).all()
    assert set(on["kind"][filled]) == set(on["kind"])
    np.testing.assert_array_equal(res_on.magnification, res_off.magnification)
    np.testing.assert_allclose(res_on.snr, res_off.snr, rtol=1e-6)


def test_field_scatter_keeps_out_of_the_centre():
    rng = np.random.default_rng(0)
    x, y = field.scatter(rng, 5000, 4.5, 1.0)
    r = np.hypot(x, y)
    assert r.min() >= 1.0 and np.abs(x).max() <= 4.5 and np.abs(y).max() <= 4.5
    # uniform outside the disc: the share inside r < 2" is its annulus's share of the area
    share = (np.pi * (4 - 1)) / (81 - np.pi)
    assert (r < 2).mean() == pytest.approx(share, abs=0.02)
    with pytest.raises(ValueError, match="min_distance"):
        field.scatter(rng, 3, 1.0, 1.0)
