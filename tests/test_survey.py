"""The survey registry against lenstronomy's ObservationConfig, and its error messages."""

import lenstronomy  # noqa: F401  (the reference implementation; a test dependency)
import numpy as np
import pytest

from skyscan.cases.lenses.sim.survey import Band, ConfigError, get_bands, get_survey


@pytest.mark.parametrize("survey, bands", [("lsst", "ugrizy"), ("des", "grizY")])
def test_registry_matches_lenstronomy(survey, bands):
    """Every number of the built-in bands equals lenstronomy's, and so does the noise (1e-12)."""
    from lenstronomy.SimulationAPI.observation_api import SingleBand
    from lenstronomy.SimulationAPI.ObservationConfig.DES import DES
    from lenstronomy.SimulationAPI.ObservationConfig.LSST import LSST

    cls = {"lsst": LSST, "des": DES}[survey]
    ours = get_survey(survey)
    for name in bands:
        kw = cls(band=name).kwargs_single_band()
        b = ours.band(name)
        assert b.pixel_scale == kw["pixel_scale"]
        assert b.exposure_time == kw["exposure_time"]
        assert b.sky_brightness == kw["sky_brightness"]
        assert b.zero_point == kw["magnitude_zero_point"]
        assert b.num_exposures == kw["num_exposures"]
        assert b.seeing == kw["seeing"]
        assert b.read_noise == kw["read_noise"]
        for visits in (1, b.num_exposures):
            single = SingleBand(**{**kw, "num_exposures": visits, "data_count_unit": "e-"})
            np.testing.assert_allclose(
                b.background_sigma(visits), single.background_noise, rtol=1e-12
            )


def test_background_formula_from_anchors():
    """sigma = sqrt(N RN^2 + N t sky pix^2) / (N t), LSST g single visit, by hand."""
    b = get_survey("lsst").band("g")
    sky = 10 ** (-0.4 * (22.26 - 28.30)) * 0.2**2
    expected = np.sqrt(10.0**2 + 15 * sky) / 15
    assert b.background_sigma(1) == pytest.approx(expected, rel=1e-12)


def test_custom_survey_and_override():
    custom = {
        "lsst": {"bands": {"g": {"psf_type": "moffat", "moffat_beta": 3.0}}},
        "mycam": {
            "pixel_scale": 0.1,
            "read_noise": 5.0,
            "bands": {
                "vis": dict(
                    exposure_time=500.0,
                    sky_brightness=22.0,
                    zero_point=25.0,
                    num_exposures=4,
                    seeing=0.18,
                )
            },
        },
    }
    assert get_survey("lsst", custom).band("g").psf_type == "moffat"
    assert get_survey("lsst", custom).band("r").psf_type == "gaussian"
    vis = get_survey("mycam", custom).band("vis")
    assert vis.pixel_scale == 0.1 and vis.read_noise == 5.0


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: get_survey("hsc"),
            "unknown survey 'hsc' (allowed: des, lenspop_des_best_epoch, "
            "lenspop_lsst_best_epoch, lsst)",
        ),
        (
            lambda: get_bands(get_survey("lsst"), ["g", "q"]),
            "unknown band 'q' for survey 'lsst' (allowed: u, g, r, i, z, y)",
        ),
        (lambda: get_bands(get_survey("lsst"), []), "'lenses.bands' must name at least one band"),
        (
            lambda: get_survey("lsst", {"lsst": {"bands": {"g": {"seeing": -0.7}}}}),
            "band 'g': seeing must be a positive number",
        ),
        (
            lambda: get_survey("lsst", {"lsst": {"pixel_scale": 0}}),
            "pixel_scale must be a positive number",
        ),
        (
            lambda: get_survey("lsst", {"lsst": {"bands": {"g": {"fwhm": 0.7}}}}),
            "unknown config key 'lenses.surveys.lsst.bands.g.fwhm'",
        ),
        (
            lambda: get_survey("lsst", {"lsst": {"bands": {"g": {"psf_type": "airy"}}}}),
            "psf_type 'airy' is not one of gaussian, moffat",
        ),
        (
            lambda: get_survey("x", {"x": {"bands": {"v": {"seeing": 1.0}}}}),
            "config 'lenses.surveys.x.bands.v' is missing",
        ),
    ],
)
def test_bad_survey_input(call, message):
    with pytest.raises(ConfigError) as err:
        call()
    assert message in str(err.value)


def test_band_is_frozen():
    b = get_survey("lsst").band("g")
    assert isinstance(b, Band)
    with pytest.raises(AttributeError):
        b.seeing = 1.0


@pytest.mark.parametrize(
    "survey, epoch_s, zero_s, epochs",
    [("lenspop_lsst_best_epoch", 30.0, 25.0, 100), ("lenspop_des_best_epoch", 90.0, 90.0, 10)],
)
def test_lenspop_setups_follow_lenspop_surveys_py(survey, epoch_s, zero_s, epochs):
    """LensPop's set-ups (its Surveys.py and FastLensSim.ObserveLens): magnitude 30 gives
    1 ADU per `zero_s` seconds at 4.5 e-/ADU, one epoch is a tenth or hundredth of the
    survey's time, and the per-pixel variance of one epoch is sky counts plus LensPop's
    read-noise term `epochs * 10 / 4.5` (1e-12)."""
    g = get_survey(survey).band("g")
    assert g.exposure_time == epoch_s and g.num_exposures == epochs
    np.testing.assert_allclose(g.mag_to_rate(30.0), 4.5 / zero_s, rtol=1e-12)
    sky_counts = 10 ** (-0.4 * (21.7 - g.zero_point)) * g.pixel_scale**2 * epoch_s
    expected = np.sqrt(sky_counts + epochs * 10 / 4.5) / epoch_s
    np.testing.assert_allclose(g.background_sigma(1), expected, rtol=1e-12)
