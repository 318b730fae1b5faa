"""The transient-stamp simulator (skyscan.cases.transients.simulate): determinism, kinds,
photometry of the difference image, PSF matching, shard metadata and the HiTS set-up."""

from __future__ import annotations

import numpy as np
import pytest

from skyscan.cases.transients import DEFAULT_KIND_FRACTIONS
from skyscan.cases.transients.simulate import (
    BOGUS_KINDS,
    KINDS,
    REAL_KINDS,
    SETUPS,
    run_transient_simulation,
    simulate_block,
)
from skyscan.core.errors import ConfigError
from skyscan.data.shards import read_images

ONLY = {k: 0 for k in KINDS}
YY, XX = np.mgrid[: SETUPS["ztf"].stamp_size, : SETUPS["ztf"].stamp_size]


def _config(n, shard_size, setup="ztf", noise=True, **section):
    return {
        "seed": 11,
        "simulate": {"n": n, "shard_size": shard_size, "noise": noise},
        "transients": {"setup": setup, **section},
    }


def _radius(setup):
    h = SETUPS[setup].stamp_size
    yy, xx = np.mgrid[:h, :h]
    c = (h - 1) / 2
    return np.hypot(xx - c, yy - c)


def _aperture_radius(cols, i, setup):
    """3 FWHM (pixels) of the broader of the two PSFs."""
    fwhm = max(cols["fwhm_science"][i], cols["fwhm_reference"][i])
    return 3 * fwhm / SETUPS[setup].pixel_scale


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The same 200 rows as one shard (one process) and as two shards (two processes)."""
    root = tmp_path_factory.mktemp("tsim")
    one = run_transient_simulation(_config(200, 200), root / "one")
    two = run_transient_simulation(_config(200, 100), root / "two", workers=2)
    return one, two


def test_same_bytes_whatever_the_shard_size_and_workers(shards):
    one, two = shards
    assert [p.name for p in one] == ["shard-00000.parquet"]
    assert [p.name for p in two] == ["shard-00000.parquet", "shard-00001.parquet"]
    img1, tab1, _ = read_images(one[0])
    parts = [read_images(p) for p in two]
    img2 = np.concatenate([p[0] for p in parts])
    assert img1.tobytes() == img2.tobytes()
    for name in tab1.column_names:
        a = np.concatenate([p[1].column(name).to_numpy(zero_copy_only=False) for p in parts])
        b = tab1.column(name).to_numpy(zero_copy_only=False)
        if name == "shard":
            assert list(np.unique(a)) == [0, 1] and list(np.unique(b)) == [0]
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    # Another seed gives other pixels.
    other, _ = simulate_block("ztf", {}, 12, 0, 0, 10)
    assert other.tobytes() != img1[:10].tobytes()


def test_complete_shards_are_skipped(shards, tmp_path):
    one, _ = shards
    before = one[0].stat().st_mtime_ns
    again = run_transient_simulation(_config(200, 200), one[0].parent)
    assert again == one and one[0].stat().st_mtime_ns == before


def test_metadata_round_trips(shards):
    one, _ = shards
    images, table, meta = read_images(one[0])
    setup = SETUPS["ztf"]
    assert images.shape == (200, 3, 63, 63) and images.dtype == np.float32
    assert meta["case"] == "transients" and meta["survey"] == "ztf"
    assert meta["bands"] == ["science", "reference", "difference"]
    assert meta["shape"] == [3, 63, 63] and meta["pixel_scale"] == 1.0
    assert meta["units"] == "counts"
    assert meta["seed"] == 11 and meta["shard"] == 0 and meta["rows"] == [0, 200]
    assert len(meta["config_hash"]) == 16
    sci, ref, diff = meta["background_sigma"]
    assert sci == pytest.approx(setup.science_sigma)
    assert ref == pytest.approx(sci / np.sqrt(setup.reference_depth))
    # The nominal difference sigma is that of a typical row.
    median = np.median(table.column("sigma_difference").to_numpy())
    assert diff == pytest.approx(median, rel=0.1)
    assert table.column("index").to_pylist() == list(range(200))
    assert str(table.schema.field("label").type) == "int8"
    for name in ("mag", "host_mag", "host_R_sersic", "offset", "fwhm_science", "snr"):
        assert str(table.schema.field(name).type) == "double", name
    kinds = np.asarray(table.column("kind").to_pylist())
    labels = table.column("label").to_numpy()
    np.testing.assert_array_equal(labels, np.isin(kinds, REAL_KINDS))
    # NaN where a kind lacks a parameter.
    host = table.column("host_mag").to_numpy()
    assert np.isnan(host[kinds == "hostless"]).all()
    assert np.isfinite(host[kinds == "host_sn"]).all()


def test_every_kind_with_its_fraction():
    fractions = dict(zip(KINDS, [3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1], strict=True))  # no edge
    section = {"kinds": fractions}
    kinds = np.concatenate(
        [
            simulate_block("hits", section, 4, b, 250 * b, 250 * b + 250, noise=False)[1]["kind"]
            for b in range(4)
        ]
    )
    total = sum(fractions.values())
    for kind, weight in fractions.items():
        p = weight / total
        tolerance = 4 * np.sqrt(p * (1 - p) / len(kinds))
        assert abs(np.mean(kinds == kind) - p) <= tolerance, kind
    assert set(REAL_KINDS) | set(BOGUS_KINDS) - {"edge"} <= set(kinds)
    assert sum(DEFAULT_KIND_FRACTIONS[k] for k in REAL_KINDS) == pytest.approx(0.5)
    assert sum(DEFAULT_KIND_FRACTIONS[k] for k in BOGUS_KINDS) == pytest.approx(0.5)


def test_hostless_difference_holds_the_injected_flux():
    setup = SETUPS["ztf"]
    section = {"kinds": {"hostless": 1}, "mag_min": 13.5}
    radius = _radius("ztf")
    for noise, bright, rel in ((False, 21.0, 1e-3), (True, 15.0, 0.05)):
        images, cols = simulate_block("ztf", section, 5, 0, 0, 250, noise=noise)
        rows = np.flatnonzero(cols["mag"] < bright)
        assert len(rows) >= 20
        for i in rows:
            inside = radius < _aperture_radius(cols, i, "ztf")
            measured = images[i, 2][inside].sum()
            assert measured == pytest.approx(setup.flux(cols["mag"][i]), rel=rel), i


@pytest.mark.parametrize("setup", ["ztf", "hits"])
def test_variable_star_difference_follows_delta_mag(setup):
    """A star fainter in the science (delta_mag > 0) leaves a negative difference; ZTF's
    pipeline negates negative detections (isdiffpos 'f'), so its cutouts are positive and say
    so in ``difference_negated`` (exactly the fading ones at S/N > 10); HiTS keeps the sign."""
    images, cols = simulate_block(setup, {"kinds": {"variable_star": 1}}, 6, 0, 0, 250)
    radius = _radius(setup)
    rows = np.flatnonzero(cols["snr"] > 10)
    assert len(rows) >= 30
    signs = []
    for i in rows:
        inside = radius < _aperture_radius(cols, i, setup)
        signs.append(np.sign(images[i, 2][inside].sum()))
    fading = cols["delta_mag"] > 0
    assert {False, True} <= set(fading[rows])
    if setup == "ztf":
        np.testing.assert_array_equal(signs, 1.0)
        np.testing.assert_array_equal(cols["difference_negated"][rows], fading[rows])
    else:
        np.testing.assert_array_equal(signs, -np.sign(cols["delta_mag"][rows]))
        assert not cols["difference_negated"].any()


def test_dipole_has_two_lobes_of_similar_flux():
    images, cols = simulate_block("ztf", {"kinds": {"dipole": 1}}, 7, 0, 0, 250)
    radius = _radius("ztf")
    stars = np.isnan(cols["host_mag"]) & (cols["mag"] < 16.5) & (cols["misalignment"] > 0.5)
    rows = np.flatnonzero(stars)
    assert len(rows) >= 10
    pos_total = neg_total = 0.0
    for i in rows:
        d = images[i, 2] * (radius < _aperture_radius(cols, i, "ztf"))
        cut = 3 * cols["sigma_difference"][i]
        pos, neg = d[d > cut].sum(), -d[d < -cut].sum()
        assert pos > 10 * cut and neg > 10 * cut, i
        assert 0.6 < pos / neg < 1 / 0.6, i
        pos_total, neg_total = pos_total + pos, neg_total + neg
    assert pos_total / neg_total == pytest.approx(1.0, abs=0.1)


def test_static_galaxy_subtracts_to_noise():
    """The host of a host_sn, away from the transient: zero without noise (the matching is
    exact; a faint transient's wings are far below 0.2% of the host), noise of the
    difference's background sigma with it."""
    section = {"kinds": {"host_sn": 1}, "mag_min": 13.5}
    radius = _radius("ztf")
    clean, cols = simulate_block("ztf", section, 8, 0, 0, 250, noise=False)
    noisy, same = simulate_block("ztf", section, 8, 0, 0, 250)
    np.testing.assert_array_equal(cols["host_mag"], same["host_mag"])
    checked, z = 0, []
    for i in range(250):
        far = radius > _aperture_radius(cols, i, "ztf")
        host = clean[i, 0][far].max()
        if host > 5 and cols["mag"][i] > 19.5:  # host light there, a faint transient
            assert np.abs(clean[i, 2][far]).max() < 2e-3 * host, i
            checked += 1
        z.append(noisy[i, 2][far] / cols["sigma_difference"][i])
    assert checked >= 10
    z = np.concatenate(z)
    assert abs(z.mean()) < 0.05
    assert z.std() == pytest.approx(1.0, rel=0.1)


def test_hits_has_an_snr_channel(tmp_path):
    (path,) = run_transient_simulation(_config(50, 50, setup="hits"), tmp_path)
    images, table, meta = read_images(path)
    assert images.shape == (50, 4, 21, 21)
    assert meta["bands"] == ["science", "reference", "difference", "snr"]
    assert meta["background_sigma"][3] == 1.0 and meta["pixel_scale"] == 0.27
    assert table.num_rows == 50 and meta["survey"] == "hits"
    # snr = difference / per-pixel sigma: the background sigma away from the source ...
    images, cols = simulate_block("hits", {"kinds": {"hostless": 1}, "mag_min": 18.0}, 9, 0, 0, 250)
    diff, snr = images[:, 2], images[:, 3]
    radius = _radius("hits")
    z = []
    for i in range(250):
        far = radius > _aperture_radius(cols, i, "hits")
        sigma = cols["sigma_difference"][i]
        np.testing.assert_allclose(snr[i][far] * sigma, diff[i][far], rtol=1e-3, atol=1e-2)
        z.append(snr[i][far])
    assert np.concatenate(z).std() == pytest.approx(1.0, rel=0.1)
    # ... and more (the source's Poisson noise) on a bright one.
    for i in np.flatnonzero(cols["mag"] < 19):
        peak = np.unravel_index(np.argmax(diff[i]), diff[i].shape)
        assert snr[i][peak] < 0.8 * diff[i][peak] / cols["sigma_difference"][i], i


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_set_up_depths_give_their_limits(name):
    setup = SETUPS[name]
    assert setup.point_source_limit() == pytest.approx(setup.limiting_mag, abs=0.05)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"setup": "lsst"}, "transients.setup"),
        ({"kinds": {"supernova": 1}}, "transients.kinds.supernova"),
        ({"kinds": {"hostless": -1}}, "transients.kinds.hostless"),
        ({"kinds": {"hostless": 0}}, "transients.kinds"),
        ({"mag_min": 20.0}, "transients.mag_min"),
        ({"magmin": 15}, "transients.magmin"),
    ],
)
def test_bad_sections_name_the_key(section, key, tmp_path):
    """Checked when the config is loaded (the schema and the case's check_config), before
    anything is simulated."""
    from skyscan.config import load_config

    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        load_config(None, {**_config(10, 10), "case": "transients", "transients": section})
    assert info.value.key == key
    assert not list(tmp_path.iterdir())


def test_nuclear_transients_sit_on_brighter_compact_host_cores():
    """transients.nuclear_fraction: that share of host_sn at its host's centre, on a host
    brighter than the change; 0 (the default) leaves every row as it was."""
    section = {"kinds": {**ONLY, "host_sn": 1}}
    plain_images, plain = simulate_block("ztf", section, 3, 0, 0, 250, noise=False)
    again_images, again = simulate_block(
        "ztf", {**section, "nuclear_fraction": 0.0}, 3, 0, 0, 250, noise=False
    )
    np.testing.assert_array_equal(plain_images, again_images)
    assert np.all(plain["offset"] > 0)
    images, cols = simulate_block(
        "ztf", {**section, "nuclear_fraction": 0.5}, 3, 0, 0, 250, noise=False
    )
    nuclear = cols["offset"] == 0
    assert abs(nuclear.mean() - 0.5) < 0.1
    assert np.all(cols["host_mag"][nuclear] <= cols["mag"][nuclear] + 1e-9)
    assert np.all(cols["host_R_sersic"][nuclear] <= 1.2 + 1e-9)
    # Half of them fade: the point source in the reference only, the difference negated.
    fading = cols["difference_negated"] == 1
    assert not fading[~nuclear].any()
    assert abs(fading[nuclear].mean() - 0.5) < 0.15
    # The (negated) difference peaks at the centre, a part of the peak there of the image that
    # holds the point source: the science, or for a fading nucleus the reference.
    c = SETUPS["ztf"].stamp_size // 2
    for i in np.flatnonzero(nuclear)[:20]:
        sci, ref, diff = images[i]
        assert np.unravel_index(np.argmax(diff), diff.shape) in {
            (c + dy, c + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        }
        brighter, fainter = (ref, sci) if fading[i] else (sci, ref)
        assert diff[c, c] < brighter[c, c]
        inside = _radius("ztf") < _aperture_radius(cols, i, "ztf")
        assert brighter[inside].sum() > fainter[inside].sum()


def test_stamp_properties_are_unit_free_and_measure_the_psf():
    """scripts/real_vs_sim_stamps.py compares unit-free quantities: a Gaussian source's FWHM
    is found within 10%, and a gain on the science and difference (which share their units)
    and backgrounds change nothing."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "real_vs_sim_stamps.py"
    spec = importlib.util.spec_from_file_location("real_vs_sim", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:63, :63]
    fwhm = 4.0
    blob = np.exp(-((yy - 31) ** 2 + (xx - 31) ** 2) / (2 * (fwhm / 2.3548) ** 2))
    ref = rng.normal(100, 1, (63, 63)) + 30 * blob
    diff = rng.normal(0, 1.2, (63, 63)) + 400 * blob
    sci = ref + diff
    first = module.properties(np.stack([sci, ref, diff]))
    assert first["fwhm_px"] == pytest.approx(fwhm, rel=0.1)
    assert first["diff_snr"] == pytest.approx(400 / 1.2, rel=0.15)
    other = module.properties(np.stack([sci * 3 + 7, ref * 0.2 - 50, diff * 3 + 0.5]))
    for name in ("fwhm_px", "diff_snr", "diff_over_sci_peak"):
        assert other[name] == pytest.approx(first[name], rel=1e-6), name


def test_field_stars_add_misregistered_neighbours_and_change_nothing_else():
    """transients.field_stars: stars around every detection, in both images at the same flux,
    the science's shifted by field_shift (0.02-0.3 px); 0 (the default) gives the same bytes
    as before, and the rows' own parameters do not depend on it."""
    section = {"nuclear_fraction": 0.5}
    plain_images, plain = simulate_block("ztf", section, 8, 0, 0, 250, noise=False)
    zero_images, _ = simulate_block("ztf", {**section, "field_stars": 0}, 8, 0, 0, 250, noise=False)
    np.testing.assert_array_equal(plain_images, zero_images)
    assert not plain["field_stars"].any()

    mean = 6.0
    images, cols = simulate_block(
        "ztf", {**section, "field_stars": mean}, 8, 0, 0, 250, noise=False
    )
    for name in ("kind", "mag", "host_mag", "offset", "misalignment", "snr", "fwhm_science"):
        np.testing.assert_array_equal(cols[name], plain[name])
    counts = cols["field_stars"]
    # the count is Poisson on a mean log-uniform from mean/3 to 3 mean: E = mean * (8/3) / ln 9
    expected = mean * (3 - 1 / 3) / np.log(9)
    assert abs(counts.mean() - expected) < 4 * np.sqrt(2 * expected / len(counts))
    shifts = cols["field_shift"][counts > 0]
    assert np.all((shifts >= 0.02) & (shifts <= 0.3))
    assert np.isnan(cols["field_shift"][counts == 0]).all()
    # The stars' light, the same in both images (the shift moves it, it does not change it),
    # up to what the two PSFs spill across the stamp's border and clip at saturation: the
    # median ratio within 1%, 80% of rows within 5%.  None at the detection itself.
    added_sci = (images[:, 0] - plain_images[:, 0]).sum(axis=(1, 2))
    added_ref = (images[:, 1] - plain_images[:, 1]).sum(axis=(1, 2))
    with_stars = counts > 0
    assert np.all(added_ref[with_stars] > 0)
    ratio = added_sci[with_stars] / added_ref[with_stars]
    assert abs(np.median(ratio) - 1) < 0.01
    assert np.mean(np.abs(ratio - 1) < 0.05) > 0.8
    c = SETUPS["ztf"].stamp_size // 2
    centre = images[:, 1, c, c] - plain_images[:, 1, c, c]
    assert np.all(centre <= 0.01 * (images[:, 1] - plain_images[:, 1]).max(axis=(1, 2)) + 1e-6)


def test_mag_mode_draws_real_magnitudes_triangular():
    """transients.mag_mode: the real kinds' magnitudes triangular from mag_min through the mode
    to the limit + 0.5 (ZTF's development set of real alerts: median 18.1); None: uniform."""
    section = {"kinds": {**ONLY, "hostless": 1}, "mag_min": 13.5}
    mags = np.concatenate(
        [
            simulate_block("ztf", {**section, "mag_mode": 19.5}, 9, b, 250 * b, 250 * b + 250)[1][
                "mag"
            ]
            for b in range(4)
        ]
    )
    top = SETUPS["ztf"].limiting_mag + 0.5
    assert mags.min() >= 13.5 and mags.max() <= top
    # triangular (13.5, 19.5, 21.0): median 13.5 + sqrt(0.5 * 7.5 * 6) = 18.24
    assert abs(np.median(mags) - 18.24) < 0.25
    uniform = simulate_block("ztf", section, 9, 0, 0, 250)[1]["mag"]
    assert abs(np.median(uniform) - (13.5 + top) / 2) < 0.6


def test_ztf_negates_every_negative_detection_whatever_its_kind():
    """ZTF's alerts are positive at the detection (isdiffpos 'f' carries the negated
    difference): bogus dipoles, core dipoles and cold columns too, not only fading sources."""
    kinds = {**ONLY, "dipole": 1, "core_dipole": 1, "bad_pixel": 1}
    images, cols = simulate_block("ztf", {"kinds": kinds}, 12, 0, 0, 250, noise=False)
    negated = cols["difference_negated"] == 1
    assert 0.1 < negated.mean() < 0.9  # both signs occur among the bogus
    # the PSF-matched filter at the detection's pixel (the difference's PSF: the broader)
    c = SETUPS["ztf"].stamp_size // 2
    r2 = (XX - c) ** 2 + (YY - c) ** 2
    sigma = np.maximum(cols["fwhm_science"], cols["fwhm_reference"]) / 2.3548
    weights = np.exp(-r2[None] / (2 * sigma[:, None, None] ** 2))
    filtered = (images[:, 2] * weights).sum(axis=(1, 2))
    clear = np.abs(filtered) > 0.02 * np.abs(filtered).max()
    assert clear.sum() > 100 and np.all(filtered[clear] > 0)
    hits, hcols = simulate_block("hits", {"kinds": kinds}, 12, 0, 0, 250, noise=False)
    assert not hcols["difference_negated"].any()
