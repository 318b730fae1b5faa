"""The bogus morphologies of the transient simulator (skyscan.cases.transients.simulate): each
kind's shape in the science | reference | difference triplet, against its parameter columns.

Most checks render without noise (``noise=False``), where a morphology is exact; 250 rows (one
block) per kind keep them fast.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skyscan.cases.transients import BOGUS_KINDS, REAL_KINDS
from skyscan.cases.transients.simulate import KINDS, SETUPS, simulate_block

ZTF = SETUPS["ztf"]
H = ZTF.stamp_size
C = (H - 1) / 2  # the stamp centre; the detection is within +-0.5 px of it
YY, XX = np.mgrid[:H, :H].astype(np.float64)
NEW = ("core_dipole", "ghost", "spike")
#: the ZTF set-up without masked patches, where a check needs every pixel
UNMASKED = dataclasses.replace(ZTF, masked_fraction=0.0)


def _only(kind, seed, noise=False, setup=UNMASKED):
    return simulate_block(setup, {"kinds": {kind: 1}}, seed, 0, 0, 250, noise=noise)


def test_new_kinds_are_bogus_and_their_parameters_are_columns():
    assert set(NEW) <= set(BOGUS_KINDS) and not set(NEW) & set(REAL_KINDS)
    _, cols = simulate_block("ztf", {"kinds": {k: 1 for k in KINDS}}, 2, 0, 0, 250)
    kind = cols["kind"]
    own = {
        "misalignment": {"dipole", "core_dipole", "spike"},
        "misalignment_angle": {"dipole", "core_dipole", "spike"},
        "ghost_radius": {"ghost"},
        "ghost_inner": {"ghost"},
        "ghost_surface_brightness": {"ghost"},
        "spike_amplitude": {"spike"},
        "spike_ratio": {"spike"},
        "edge_side": {"edge"},
        "edge_width": {"edge"},
    }
    for name, kinds in own.items():
        has = np.isin(kind, list(kinds))
        assert has.any(), name
        assert np.isfinite(cols[name][has]).all(), name
        assert np.isnan(cols[name][~has]).all(), name
    core = kind == "core_dipole"
    assert np.all((cols["misalignment"][core] >= 0.05) & (cols["misalignment"][core] <= 0.5))
    assert np.all((cols["host_mag"][core] >= 14.5) & (cols["host_mag"][core] <= 17.0))
    nucleus = cols["mag"][core] - cols["host_mag"][core]
    assert np.all((nucleus >= 0.5) & (nucleus <= 2.5))
    spike = kind == "spike"
    assert np.all(cols["misalignment"][spike] <= 0.5)
    assert np.all(cols["offset"][spike] >= 50 * ZTF.pixel_scale)  # the star beyond the stamp


def test_core_dipole_has_opposite_lobes_of_equal_flux_along_the_shift():
    """A bright core shifted by a fraction of a pixel: the difference is a positive lobe on
    the side it moved to and a negative one opposite, of equal flux (the shift moves light,
    it adds none), and small beside the science core."""
    images, cols = _only("core_dipole", 21)
    near = np.hypot(XX - C, YY - C) < 8
    checked = 0
    for i in range(250):
        # science minus reference (ZTF's alerts negate a negative detection; undo it)
        d = images[i, 2] * near * (-1.0 if cols["difference_negated"][i] else 1.0)
        pos, neg = d[d > 0].sum(), -d[d < 0].sum()
        assert pos == pytest.approx(neg, rel=0.1), i
        # lobes' centroids: positive minus negative points along the misalignment angle
        wp, wn = np.clip(d, 0, None), np.clip(-d, 0, None)
        dx = (wp * XX).sum() / pos - (wn * XX).sum() / neg
        dy = (wp * YY).sum() / pos - (wn * YY).sum() / neg
        angle = np.radians(cols["misalignment_angle"][i])
        assert (dx * np.cos(angle) + dy * np.sin(angle)) / np.hypot(dx, dy) > 0.95, i
        # a residual of a bright core: a small part of the science's peak, growing with shift
        peak = images[i, 0].max()
        assert np.abs(d).max() < 0.5 * peak, i
        checked += 1
    assert checked == 250
    # with noise, most are detections: a lobe above 5 sigma of the difference
    noisy, cols = _only("core_dipole", 21, noise=True)
    z = np.array([noisy[i, 2][near].max() / cols["sigma_difference"][i] for i in range(250)])
    assert np.mean(z > 5) > 0.8


def test_ghost_is_a_faint_doughnut_in_the_science_only():
    images, cols = _only("ghost", 22)
    checked = 0
    for i in range(250):
        sci, ref, diff = images[i]
        assert not ref.any(), i  # nothing in the reference
        ang = np.radians(cols["offset_angle"][i])
        gx = C + cols["offset"][i] * np.cos(ang) / ZTF.pixel_scale
        gy = C + cols["offset"][i] * np.sin(ang) / ZTF.pixel_scale
        r = np.hypot(XX - gx, YY - gy)
        outer = cols["ghost_radius"][i] / ZTF.pixel_scale
        inner = cols["ghost_inner"][i] * outer
        sb = cols["ghost_surface_brightness"][i]
        ring = (r > inner + 3) & (r < outer - 3)
        hole = r < inner - 3
        out = r > outer + 4
        if ring.sum() < 20:
            continue
        assert sci[ring].mean() == pytest.approx(sb, rel=0.05), i
        assert diff[ring].mean() == pytest.approx(sb, rel=0.05), i
        if hole.any():
            assert sci[hole].max() < 0.1 * sb, i
        if out.any():
            assert sci[out].max() < 0.1 * sb, i
        checked += 1
    assert checked >= 50
    # faint: a few background sigma per pixel
    sb = cols["ghost_surface_brightness"] / ZTF.science_sigma
    assert sb.min() >= 0.5 - 1e-9 and sb.max() <= 4.0 + 1e-9


def test_spike_is_a_line_through_the_detection_whose_residual_follows_its_ratio():
    images, cols = _only("spike", 23)
    for i in range(250):
        ang = np.radians(cols["offset_angle"][i])  # toward the star: along the spike
        horizontal = abs(np.cos(ang)) > 0.5
        # each image turned so that the spike runs along axis 1 (x)
        sign = -1.0 if cols["difference_negated"][i] else 1.0  # science minus reference
        stamp = images[i] * np.array([1.0, 1.0, sign], dtype=np.float32)[:, None, None]
        sci, ref, diff = (im if horizontal else im.T for im in stamp)
        c = int(round(C))
        density = {k: im[:, c].sum() for k, im in (("sci", sci), ("ref", ref), ("diff", diff))}
        amp, ratio = cols["spike_amplitude"][i], cols["spike_ratio"][i]
        # (the detection is within 0.5 px of column c: 2% at 50 px from the star)
        assert density["ref"] == pytest.approx(amp, rel=0.025), i
        assert density["sci"] == pytest.approx(ratio * density["ref"], rel=1e-3), i
        expected = (ratio - 1) * density["ref"]
        assert density["diff"] == pytest.approx(expected, rel=0.02, abs=0.01 * amp), i
        # (D / r)^2 along the spike: brighter toward the star
        toward = int(np.sign(np.cos(ang) if horizontal else np.sin(ang)))
        dist = cols["offset"][i] / ZTF.pixel_scale
        near_star = ref[:, c + 20 * toward].sum() / ref[:, c - 20 * toward].sum()
        assert near_star == pytest.approx(((dist + 20) / (dist - 20)) ** 2, rel=0.05), i
        # the science's line is displaced across by the misalignment
        rows = np.arange(H)
        shift = (rows * sci[:, c]).sum() / density["sci"] - (rows * ref[:, c]).sum() / density[
            "ref"
        ]
        across = np.radians(cols["misalignment_angle"][i])
        expected = cols["misalignment"][i] * (np.sin(across) if horizontal else np.cos(across))
        assert shift == pytest.approx(expected, abs=0.02), i


def test_cosmic_rays_and_hot_pixels_are_sharper_than_the_psf_and_science_only():
    def sharpness(image):
        """The smallest 4-neighbour of the brightest pixel over that pixel."""
        y, x = np.unravel_index(np.argmax(image), image.shape)
        padded = np.pad(image, 1)  # beyond the stamp: 0
        nb = [padded[y + 1 + dy, x + 1 + dx] for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
        return min(nb) / image[y, x]

    for kind in ("cosmic_ray", "bad_pixel"):
        images, _ = _only(kind, 24)
        for i in range(250):
            sci, ref = images[i, 0], images[i, 1]
            assert not ref.any(), (kind, i)
            assert sci.max() > 0 or sci.min() < 0, (kind, i)
            if sci.max() > -sci.min():  # a hot artefact (bad columns may be cold)
                assert sharpness(sci) < 0.05, (kind, i)
    # a point source through the PSF is not that sharp: the check can fail
    images, _ = _only("hostless", 24)
    assert min(sharpness(images[i, 0]) for i in range(250)) > 0.15


def test_saturated_star_core_is_flat_at_the_saturation_level_with_a_residual():
    level = np.float32(ZTF.saturation - ZTF.sky_counts)
    images, cols = _only("bright_star", 25)
    saturated = 0
    for i in range(250):
        sci, ref, diff = images[i]
        assert sci.max() <= level and ref.max() <= level, i
        if sci.max() < level:
            continue
        saturated += 1
        flat = sci == level
        ang = np.radians(cols["offset_angle"][i])
        sx = C + cols["offset"][i] * np.cos(ang) / ZTF.pixel_scale
        sy = C + cols["offset"][i] * np.sin(ang) / ZTF.pixel_scale
        ys, xs = np.nonzero(flat)
        assert np.hypot(xs - sx, ys - sy).min() <= 1.5, i  # the flat top is the star's core
        assert np.abs(xs - sx).max() <= 2.5, i  # and its bleed stays in the column
        core = np.hypot(XX - sx, YY - sy) < 4
        assert np.abs(diff[core]).max() > 50 * cols["sigma_difference"][i], i
    assert saturated >= 100


def test_edge_zeroes_the_stamp_beyond_the_side_and_width_of_its_columns():
    images, cols = _only("edge", 26, noise=True)
    for i in range(250):
        side, width = int(cols["edge_side"][i]), int(cols["edge_width"][i])
        assert 0 <= side <= 3 and 2 <= width <= 0.4 * H + 1
        coord = XX if side % 2 == 0 else YY
        beyond = coord < width if side < 2 else coord > H - 1 - width
        for k in range(3):
            np.testing.assert_array_equal(images[i, k] == 0, beyond, err_msg=f"{i} {k}")


def test_masked_patches_hit_real_and_bogus_alike_at_the_border():
    """ZTF cutouts hold NaN patches (read as 0) in about 13% of alerts, most of them real:
    they sit at the border, never on the detection, in all three cutouts, as many pixels as
    the column says, and as often for each label."""
    section = {"kinds": {k: 1 for k in KINDS if k != "edge"}}
    masked, labels = [], []
    for b in range(4):
        images, cols = simulate_block("ztf", section, 27, b, 250 * b, 250 * b + 250)
        for i in range(250):
            zero = images[i] == 0
            assert (zero[0] == zero[1]).all() and (zero[0] == zero[2]).all(), i
            assert zero[0].sum() == cols["masked_pixels"][i], i
            assert not zero[0][19:-19, 19:-19].any(), i  # depth <= 19 px
            if zero[0].any():
                border = zero[0][[0, -1], :].any() or zero[0][:, [0, -1]].any()
                assert border, i
        masked.append(cols["masked_pixels"] > 0)
        labels.append(cols["label"])
    masked, labels = np.concatenate(masked), np.concatenate(labels)
    for label in (0, 1):
        rate = masked[labels == label].mean()
        n = (labels == label).sum()
        p = ZTF.masked_fraction
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n), label
    # the HiTS set-up has none
    _, cols = simulate_block("hits", section, 27, 0, 0, 250)
    assert not cols["masked_pixels"].any()
