"""Mass and light profiles against lenstronomy 1.14.2 (the independent implementation)."""

import lenstronomy  # noqa: F401  (the reference implementation; a test dependency)
import numpy as np
import pytest
import torch
from conftest import draw_params
from scipy import integrate

from skyscan.cases.lenses.sim import profiles as prof


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(7)
    x = rng.uniform(-4.5, 4.5, 2000)
    y = rng.uniform(-4.5, 4.5, 2000)
    return x, y, torch.tensor(x)[None], torch.tensor(y)[None]


def test_sie_shear_deflection_matches_lenstronomy(points):
    """Deflection of SIE + SHEAR on random points, 20 parameter draws: abs error < 1e-10"."""
    from lenstronomy.LensModel.lens_model import LensModel

    x, y, xt, yt = points
    p = draw_params(20, seed=3)
    lens = LensModel(["SIE", "SHEAR"])
    for i in range(20):
        kw = [
            dict(
                theta_E=p["theta_E"][i],
                e1=p["e1"][i],
                e2=p["e2"][i],
                center_x=p["center_x"][i],
                center_y=p["center_y"][i],
            ),
            dict(gamma1=p["gamma1"][i], gamma2=p["gamma2"][i]),
        ]
        ref_x, ref_y = lens.alpha(x, y, kw)
        ax, ay = prof.sie_deflection(
            xt,
            yt,
            *(
                p[k][i : i + 1]
                for k in ("theta_E", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2")
            ),
        )
        np.testing.assert_allclose(ax[0].numpy(), ref_x, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ay[0].numpy(), ref_y, rtol=0, atol=1e-10)


def test_sie_round_limit_and_float32(points):
    """q -> 1 (e = 0) is handled like lenstronomy's cap; float32 agrees to 1e-5"."""
    from lenstronomy.LensModel.lens_model import LensModel

    x, y, xt, yt = points
    kw = dict(theta_E=1.3, e1=0.0, e2=0.0, center_x=0.05, center_y=-0.1)
    ref_x, ref_y = LensModel(["SIE"]).alpha(x, y, [kw])
    args = [np.array([v]) for v in kw.values()]
    ax, ay = prof.sie_deflection(xt.float(), yt.float(), *args)
    np.testing.assert_allclose(ax[0].numpy(), ref_x, atol=1e-5)
    np.testing.assert_allclose(ay[0].numpy(), ref_y, atol=1e-5)


def test_sie_convergence_matches_lenstronomy(points):
    """Convergence vs lenstronomy's kappa: rtol 1e-4 (lenstronomy differentiates the deflection
    numerically with a 1e-10" step, good to ~2e-5), and vs half the divergence of our own
    deflection by central differences: rtol 1e-6."""
    from lenstronomy.LensModel.lens_model import LensModel

    x, y, xt, yt = points
    keep = np.hypot(x, y) > 0.05  # lenstronomy differentiates numerically; avoid the cusp
    p = draw_params(5, seed=4)
    lens = LensModel(["SIE"])
    for i in range(5):
        kw = dict(
            theta_E=p["theta_E"][i],
            e1=p["e1"][i],
            e2=p["e2"][i],
            center_x=p["center_x"][i],
            center_y=p["center_y"][i],
        )
        ref = lens.kappa(x[keep], y[keep], [kw])
        args = [np.array([v]) for v in kw.values()]
        ours = prof.sie_convergence(xt[:, keep], yt[:, keep], *args)[0].numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-4)
        h = 1e-5
        ax_p, _ = prof.sie_deflection(xt[:, keep] + h, yt[:, keep], *args)
        ax_m, _ = prof.sie_deflection(xt[:, keep] - h, yt[:, keep], *args)
        _, ay_p = prof.sie_deflection(xt[:, keep], yt[:, keep] + h, *args)
        _, ay_m = prof.sie_deflection(xt[:, keep], yt[:, keep] - h, *args)
        div = ((ax_p - ax_m) + (ay_p - ay_m))[0].numpy() / (2 * h)
        np.testing.assert_allclose(ours, div / 2, rtol=1e-6)


def test_sersic_surface_brightness_matches_lenstronomy(points):
    """SERSIC_ELLIPSE surface brightness, n in [0.5, 6], random shapes: rtol 1e-10."""
    from lenstronomy.LightModel.light_model import LightModel

    x, y, xt, yt = points
    rng = np.random.default_rng(11)
    light = LightModel(["SERSIC_ELLIPSE"])
    for _ in range(20):
        kw = dict(
            R_sersic=rng.uniform(0.05, 2.0),
            n_sersic=rng.uniform(0.5, 6.0),
            e1=rng.uniform(-0.4, 0.4),
            e2=rng.uniform(-0.4, 0.4),
            center_x=rng.uniform(-0.5, 0.5),
            center_y=rng.uniform(-0.5, 0.5),
        )
        ref = light.surface_brightness(x, y, [dict(kw, amp=1.0)])
        ours = prof.sersic_profile(xt, yt, *(np.array([v]) for v in kw.values()))
        np.testing.assert_allclose(ours[0].numpy(), ref, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("n_sersic", [0.5, 1.0, 2.0, 4.0])
def test_sersic_square_root_path(points, n_sersic):
    """The nested-square-root shortcut for n in {0.5, 1, 2, 4} equals the power: rtol 1e-12."""
    _, _, xt, yt = points
    c = prof._table(prof.sersic_constants([0.4], [n_sersic], [0.1], [-0.2], [0.0], [0.1]), xt)
    roots = prof.sersic_roots([n_sersic])
    assert roots is not None
    np.testing.assert_allclose(
        prof.sersic_kernel(xt, yt, c, roots).numpy(),
        prof.sersic_kernel(xt, yt, c).numpy(),
        rtol=1e-12,
    )
    assert prof.sersic_roots([n_sersic, 3.0]) is None


def test_magnitude_normalisation_matches_lenstronomy():
    """amp from an AB magnitude: skyscan's total flux vs lenstronomy's SimAPI (rtol 1e-12)."""
    from lenstronomy.SimulationAPI.ObservationConfig.LSST import LSST
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    from skyscan.cases.lenses.sim.survey import get_survey

    band = get_survey("lsst").band("r")
    sim = SimAPI(
        45, LSST(band="r").kwargs_single_band(), dict(lens_light_model_list=["SERSIC_ELLIPSE"])
    )
    for mag, r, n in [(19.0, 0.7, 4.0), (23.5, 0.2, 1.0), (21.0, 1.3, 2.5)]:
        kw = dict(magnitude=mag, R_sersic=r, n_sersic=n, e1=0.1, e2=-0.05, center_x=0, center_y=0)
        ref, _, _ = sim.magnitude2amplitude(kwargs_lens_light_mag=[kw])
        ours = band.mag_to_rate(mag) / prof.sersic_total_flux(r, n)
        np.testing.assert_allclose(ours, ref[0]["amp"], rtol=1e-12)


def test_sersic_total_flux_by_integration():
    """The analytic total flux equals the numerical integral of the profile (rtol 1e-6)."""
    for r_s, n in [(0.5, 1.0), (0.8, 4.0), (0.3, 2.2)]:
        bn = prof.sersic_b_n(n)

        def ring_flux(r, r_s=r_s, n=n, bn=bn):
            return 2 * np.pi * r * np.exp(-bn * ((r / r_s) ** (1 / n) - 1))

        val, _ = integrate.quad(ring_flux, 0, np.inf, limit=400)
        np.testing.assert_allclose(prof.sersic_total_flux(r_s, n), val, rtol=1e-6)


def test_ring_and_spiral_total_flux():
    """Ring: analytic flux vs a fine grid sum; spiral arms carry no net flux (both rtol 1e-3)."""
    g = np.linspace(-12, 12, 2401)
    step = g[1] - g[0]
    x, y = np.meshgrid(g, g)
    xt, yt = torch.tensor(x.ravel())[None], torch.tensor(y.ravel())[None]
    ring = prof.ring_profile(xt, yt, [1.5], [0.2], [0.1], [0.05], [0.0], [0.0])
    np.testing.assert_allclose(
        ring.sum().item() * step**2, prof.ring_total_flux(1.5, 0.2), rtol=1e-3
    )
    spiral = prof.spiral_profile(
        xt, yt, [1.0], [0.1], [0.0], [0.0], [0.0], [2.0], [20.0], [0.8], [0.3]
    )
    np.testing.assert_allclose(
        spiral.sum().item() * step**2, prof.sersic_total_flux(1.0, 1.0), rtol=1e-3
    )
