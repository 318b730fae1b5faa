"""The lens-parameter network: its loss, the augmentation of targets, the recalibration, the
model card's estimates, the metrics, the vetting flag, and a tiny training end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ONLY_LENSES

from skyscan.cases.lenses.models.lensparams import gaussian_nll
from skyscan.config import ConfigError, load_config
from skyscan.evaluate.params import (
    COVERAGE_68,
    fit_uncertainty_scale,
    interval_coverage,
    parameter_metrics,
    relative_errors,
)
from skyscan.models.card import ModelCard
from skyscan.vet.params import choose_thresholds, flag_implausible, flag_summary

NAMES = ["theta_E", "e1", "e2", "gamma1", "gamma2", "center_x", "center_y"]
SYMMETRY = ["scalar", "spin2_1", "spin2_2", "spin2_1", "spin2_2", "x", "y"]


def test_gaussian_nll_is_torchs_and_is_smallest_at_the_truth():
    gen = torch.Generator().manual_seed(0)
    mean, target = torch.randn(64, 7, generator=gen), torch.randn(64, 7, generator=gen)
    log_var = torch.randn(64, 7, generator=gen)
    ours = gaussian_nll(torch.cat([mean, log_var], dim=1), target)
    reference = torch.nn.GaussianNLLLoss(full=False, eps=0.0)(mean, target, log_var.exp())
    torch.testing.assert_close(ours, reference)
    # for fixed residuals r the loss is smallest at variance r^2, and at the mean r = 0
    r = 0.3
    losses = [
        float(gaussian_nll(torch.tensor([[r, v]]), torch.zeros(1, 1)))
        for v in np.log([0.5 * r**2, r**2, 2 * r**2])
    ]
    assert losses[1] < losses[0] and losses[1] < losses[2]
    at_truth = torch.tensor([[0.0, float(np.log(r**2))]])
    assert float(gaussian_nll(at_truth, torch.zeros(1, 1))) < losses[1]
    with pytest.raises(ValueError, match="expected 2 x 1"):
        gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 1))


def test_recalibration_makes_68_percent_intervals_hold_68_percent():
    """Sigmas 2x too small (first parameter) and 1.5x too large (second): the fitted factors
    undo it, and intervals scaled by them hold 68% of a fresh sample."""
    rng = np.random.default_rng(3)
    true_sigma = np.array([1.0, 1.0])
    claimed = np.array([0.5, 1.5])
    fit_sample = rng.normal(size=(20000, 2)) * true_sigma
    scale = fit_uncertainty_scale(fit_sample / claimed)
    np.testing.assert_allclose(scale, true_sigma / claimed, rtol=0.03)
    fresh = rng.normal(size=(20000, 2)) * true_sigma
    for k in range(2):
        raw = interval_coverage(fresh[:, k], -claimed[k], claimed[k])["coverage"]
        fixed = interval_coverage(fresh[:, k], -claimed[k] * scale[k], claimed[k] * scale[k])
        assert abs(raw - COVERAGE_68) > 0.15  # 38% and 87% before
        assert fixed["coverage"] == pytest.approx(COVERAGE_68, abs=0.012)
        assert fixed["n"] == 20000
        assert fixed["coverage_ci95"][0] < fixed["coverage"] < fixed["coverage_ci95"][1]
    with pytest.raises(ValueError, match="NaN"):
        fit_uncertainty_scale(np.array([[np.nan]]))


def _card(**targets):
    base = {
        "names": ["theta_E", "e1"],
        "units": ["arcsec", ""],
        "transforms": ["log", "identity"],
        "mean": [np.log(1.5), 0.0],
        "std": [0.5, 0.2],
        "uncertainty_scale": [2.0, 1.0],
    }
    return ModelCard(
        name="t",
        model="lensparams",
        case="lenses",
        bands=["g"],
        input_shape=[1, 33, 33],
        pixel_scale=0.2,
        preprocessing={},
        targets={**base, **targets},
    )


def test_card_turns_outputs_into_physical_estimates():
    # normalised means (0, 1) and log-variances log(0.04), log(0.25): sigma 0.2 and 0.5
    out = np.array([[0.0, 1.0, np.log(0.04), np.log(0.25)]])
    card = _card()
    est = card.parameter_estimates(out)
    # theta_E: log value log(1.5), sigma of the log 0.2 * 0.5 * 2 (scale) = 0.2
    assert est["theta_E"]["value"][0] == pytest.approx(1.5)
    assert est["theta_E"]["low"][0] == pytest.approx(1.5 * np.exp(-0.2))
    assert est["theta_E"]["high"][0] == pytest.approx(1.5 * np.exp(0.2))
    assert est["theta_E"]["sigma"][0] == pytest.approx(1.5 * 0.2)
    # e1: 0 + 1 * 0.2, sigma 0.5 * 0.2 * 1
    assert est["e1"]["value"][0] == pytest.approx(0.2)
    assert est["e1"]["low"][0] == pytest.approx(0.1)
    raw = card.parameter_estimates(out, calibrated=False)
    assert raw["theta_E"]["sigma"][0] == pytest.approx(1.5 * 0.1)
    with pytest.raises(ValueError, match="expected"):
        card.parameter_estimates(np.zeros((1, 3)))
    with pytest.raises(Exception, match="not a parameter network"):
        card.replace(targets={}).parameter_estimates(out)
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def test_metrics_on_known_inputs():
    truth = np.array([1.0, 2.0, 4.0, 1.0])
    est = np.array([1.1, 2.0, 2.0, 1.0])  # relative errors 0.1, 0, -0.5, 0
    rel = relative_errors(truth, est)
    assert rel["median_abs_rel_error"] == pytest.approx(0.05)
    assert rel["median_rel_bias"] == pytest.approx(0.0)
    assert rel["fraction_off_30pct"] == pytest.approx(0.25)
    assert rel["n"] == 4
    estimates = {
        "theta_E": {
            "value": est,
            "sigma": np.full(4, 0.2),
            "low": est - 0.2,
            "high": est + 0.2,
        }
    }
    m = parameter_metrics(estimates, {"theta_E": truth}, ["log"])["theta_E"]
    # inside: 1.0 in [0.9, 1.3], 2 in [1.8, 2.2], 4 not in [1.8, 2.2], 1 in [0.8, 1.2]
    assert m["coverage68"]["coverage"] == pytest.approx(0.75)
    assert m["coverage68"]["n"] == 4
    assert m["median_abs_error"] == pytest.approx(0.05)
    assert m["fraction_off_30pct"] == pytest.approx(0.25)
    only = parameter_metrics(
        estimates, {"theta_E": truth}, ["log"], selection=np.array([1, 1, 0, 0], bool)
    )
    assert only["theta_E"]["n"] == 2 and only["theta_E"]["fraction_off_30pct"] == 0.0


def test_vetting_flag_loses_at_most_the_allowed_lenses():
    rng = np.random.default_rng(1)
    value = rng.uniform(0.6, 2.9, 1000)
    sigma = value * rng.uniform(0.02, 0.2, 1000)
    t = choose_thresholds(value, sigma, (0.5, 3.0), max_lens_loss=0.01)
    flagged = flag_implausible(value, sigma, t)
    assert flagged.sum() == 10 and t["lens_loss_val"] == pytest.approx(0.01)
    assert t["max_rel_sigma"] == pytest.approx(np.sort(sigma / value)[-11])
    # out of range, too uncertain, not finite: flagged; a plausible one is not
    cand_v = np.array([0.3, 3.5, 1.5, 1.5, np.nan])
    cand_s = np.array([0.01, 0.1, 0.9, 0.05, 0.1])
    assert flag_implausible(cand_v, cand_s, t).tolist() == [True, True, True, False, True]
    # lenses already out of range use up the budget
    value[:10] = 5.0
    t = choose_thresholds(value, sigma, (0.5, 3.0), max_lens_loss=0.01)
    assert flag_implausible(value, sigma, t).sum() == 10
    s = flag_summary([True, False, True, False], [0, 0, 1, 1], passed=[True, True, True, False])
    assert s["non_lenses_flagged"]["fraction"] == 0.5 and s["lenses_flagged"]["k"] == 1
    assert s["false_positives_flagged"]["n"] == 2 and s["true_positives_flagged"]["k"] == 1


def test_augmentation_moves_the_targets_with_the_stamp():
    """Each flip/turn of the SIE + shear lensing potential on the stamp's pixel grid equals
    the potential of the transformed parameters (lenstronomy computes both)."""
    from lenstronomy.LensModel.lens_model import LensModel

    from skyscan.train.params import dihedral_augment_parameters

    lens = LensModel(["SIE", "SHEAR"])
    n, pix = 21, 0.2
    j, i = np.mgrid[0:n, 0:n]
    x, y = (i - (n - 1) / 2) * pix, (j - (n - 1) / 2) * pix

    def potential(p):
        kwargs = [
            dict(theta_E=p[0], e1=p[1], e2=p[2], center_x=p[5], center_y=p[6]),
            dict(gamma1=p[3], gamma2=p[4], ra_0=0.0, dec_0=0.0),
        ]
        return lens.potential(x.ravel(), y.ravel(), kwargs).reshape(n, n)

    params = np.array([1.2, 0.2, -0.1, 0.05, 0.03, 0.3, -0.2])
    images = torch.from_numpy(np.stack([potential(params)] * 32)[:, None]).float()
    targets = torch.from_numpy(np.tile(params, (32, 1))).float()
    gen = torch.Generator().manual_seed(0)
    out_images, out_targets = dihedral_augment_parameters(images, targets, SYMMETRY, gen)
    seen = set()
    for k in range(32):
        expected = potential(out_targets[k].double().numpy())
        np.testing.assert_allclose(out_images[k, 0].numpy(), expected, atol=2e-5)
        seen.add(tuple(np.round(out_targets[k].numpy(), 4)))
    assert len(seen) >= 6  # most of the 8 symmetries were drawn
    assert torch.all(out_targets[:, 0] == targets[:, 0])  # theta_E does not change


def test_parameter_target_needs_a_parameter_model():
    with pytest.raises(ConfigError, match="not a parameter model"):
        load_config(None, {"case": "lenses", "train": {"target": "parameters", "model": "fast"}})
    with pytest.raises(ConfigError, match="not a model for case"):
        load_config(None, {"case": "lenses", "train": {"model": "lensparams"}})
    config = load_config(
        None, {"case": "lenses", "train": {"target": "parameters", "model": "lensparams"}}
    )
    assert config["train"]["target"] == "parameters"


@pytest.fixture(scope="module")
def tiny_parameters(tmp_path_factory):
    """A parameter network trained for one epoch on ~270 small lenses, exported."""
    from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation
    from skyscan.data.datasets import build_dataset
    from skyscan.train.run import train

    root = tmp_path_factory.mktemp("lensparams")
    kinds = {**{k: 0 for k in ONLY_LENSES}, "lens": 0.85, "no_source": 0.15}
    config = load_config(
        None,
        {
            "seed": 3,
            "simulate": {"n": 500, "shard_size": 500},
            "lenses": {"stamp_size": 33, "kinds": kinds},
            "dataset": {"splits": {"train": 0.6, "val": 0.2, "test": 0.2}},
            "train": {
                "target": "parameters",
                "model": "lensparams",
                "epochs": 1,
                "batch_size": 64,
                "num_workers": 0,
                "export_batch": 8,
            },
        },
    )
    shards = run_simulation(SimulationPlan.from_config(config), root / "sims", show_progress=False)
    build_dataset(shards, root / "dataset", config)
    card = train(config, root / "dataset", root / "model", threads=1)
    return root, card


@pytest.mark.slow
def test_tiny_training_exports_a_card_with_targets(tiny_parameters):
    from skyscan.models.card import load_model, read_card

    root, card = tiny_parameters
    assert read_card(root / "model" / "model_card.json") == card
    t = card.targets
    assert t["names"] == NAMES and t["transforms"][0] == "log" and t["units"][0] == "arcsec"
    assert len(t["uncertainty_scale"]) == 7 and all(s > 0 for s in t["uncertainty_scale"])
    # recalibrated on validation: the 68% intervals hold 68% there (to the quantile's step)
    n_val = t["calibration"]["n"]
    for name, c in t["calibration"]["coverage68_after"].items():
        assert abs(c - COVERAGE_68) <= 1.5 / n_val, name
    assert t["range"]["theta_E"][0] >= 0.5 and t["range"]["theta_E"][1] <= 3.0
    assert t["vetting"]["lens_loss_val"] <= 0.01
    assert card.export_check["onnx_max_abs_diff"] <= 1e-4
    # the exported networks, TorchScript and ONNX, give the card's estimates
    model, _ = load_model(root / "model" / "model_card.json")
    images = torch.from_numpy(np.load(root / "dataset" / "test" / "images.npy")[:4])
    with torch.inference_mode():
        out = model(images).numpy()
    assert out.shape == (4, 14)
    import onnxruntime as ort

    session = ort.InferenceSession(str(root / "model" / "model.onnx"))
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], out, atol=1e-4)
    est = card.parameter_estimates(out)
    assert (est["theta_E"]["low"] < est["theta_E"]["value"]).all()
    assert (est["theta_E"]["value"] < est["theta_E"]["high"]).all()


@pytest.mark.slow
def test_evaluate_params_command(tiny_parameters, tmp_path):
    from skyscan.cli.evaluate_params import main

    root, card = tiny_parameters
    out = tmp_path / "eval"
    args = ["--model", str(root / "model" / "model_card.json"), "--dataset", str(root / "dataset")]
    assert main([*args, "--out", str(out), "--vet-dataset", str(root / "dataset")]) == 0
    metrics = json.loads((out / "param_metrics.json").read_text())
    assert (out / "theta_E.png").stat().st_size > 1000
    head = metrics["parameters"]["theta_E"]
    assert head["n"] == metrics["n_selected"] > 0
    assert head["coverage68"]["n"] == head["n"]
    assert set(metrics["parameters"]) == set(NAMES)
    assert metrics["selection"].startswith("theta_E >= 1")
    vet = metrics["vetting"]
    assert vet["lenses_flagged"]["n"] + vet["non_lenses_flagged"]["n"] > 0
    # a classifier's card is refused, naming the file
    assert main(["--model", str(root / "missing.json"), "--dataset", "x", "--out", "y"]) != 0


@pytest.mark.parametrize("bands, size", [(1, 33), (3, 45), (4, 101)])
def test_lensparams_gives_a_mean_and_log_variance_per_parameter(bands, size):
    from skyscan.models import get_model

    net = get_model("lensparams", in_channels=bands, stamp_size=size, n_parameters=7).eval()
    with torch.inference_mode():
        out = net(torch.randn(2, bands, size, size))
    assert out.shape == (2, 14) and torch.isfinite(out).all()
    # initialised at the standardised targets' own spread: log-variances near 0
    assert out[:, 7:].abs().max() < 0.5


@pytest.mark.slow
def test_classifier_evaluation_refuses_a_parameter_network(tiny_parameters, tmp_path):
    from skyscan.core.errors import MismatchError
    from skyscan.evaluate.report import evaluate

    root, _ = tiny_parameters
    with pytest.raises(MismatchError, match="evaluate-params"):
        evaluate(root / "model" / "model_card.json", root / "dataset", tmp_path, load_config(None))
