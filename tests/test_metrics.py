"""Metric functions against scikit-learn and hand-computed cases, ties included."""

import numpy as np
import pytest

from skyscan.evaluate import metrics as M


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_roc_match_sklearn_with_ties(seed):
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes many ties
    assert M.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(labels, scores)
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)


def test_hand_cases():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.5, 0.3, 0.85, 0.5, 0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.0, 0.0])
    # TPR0: lenses strictly above the best non-lens (0.85): one of four
    assert M.tpr_before_false_positives(labels, scores, 1) == 0.25
    # before the 2nd false positive (0.5): 0.9, 0.8 -> 2/4; the lens tied at 0.5 does not count
    assert M.tpr_before_false_positives(labels, scores, 2) == 0.5
    assert M.tpr_before_false_positives(labels, scores, 50) == 1.0
    # 10 non-lenses: FPR 10% allows one false positive -> threshold at the 2nd highest (0.5)
    tpr, threshold = M.tpr_at_fpr(labels, scores, 0.1)
    assert threshold == 0.5 and tpr == 0.5
    tpr, threshold = M.tpr_at_fpr(labels, scores, 0.0)
    assert threshold == 0.85 and tpr == 0.25
    # perfect and inverted rankings
    assert M.auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert M.auroc([0, 1], [0.5, 0.5]) == 0.5


def test_completeness_grid_by_hand():
    theta = [0.6, 0.7, 1.5, 1.6, 2.5]
    snr = [5, 30, 30, 30, 100]
    passed = [False, True, True, False, True]
    grid, counts = M.completeness_grid(theta, snr, passed, [0.5, 1.0, 2.0, 3.0], [0, 20, 1e6])
    np.testing.assert_array_equal(counts, [[1, 1], [0, 2], [0, 1]])
    np.testing.assert_allclose(grid, [[0.0, 1.0], [np.nan, 0.5], [np.nan, 1.0]])


def test_bad_inputs():
    with pytest.raises(ValueError, match="both positives and negatives"):
        M.auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([0, 1], [np.nan, 0.2])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        M.auroc([0, 1], [0.1, 0.2, 0.3])


def test_wilson_interval_and_rates():
    from skyscan.evaluate.metrics import rates_at, wilson_interval

    # textbook value: 0 of 10 -> [0, 0.2775]; 5 of 10 -> [0.2366, 0.7634]
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.27753], abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx([0.23659, 0.76341], abs=1e-4)
    assert wilson_interval(0, 0) is None
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([2.0, 1.0, -1.0, 0.5, -2.0, -3.0, -4.0])
    r = rates_at(labels, scores, 0.0)
    assert (r["tpr"], r["fnr"], r["fpr"]) == pytest.approx((2 / 3, 1 / 3, 1 / 4))
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["tpr_ci95"][0] < r["tpr"] < r["tpr_ci95"][1]


def test_temperature_scaling_recovers_a_known_temperature():
    from skyscan.evaluate.metrics import expected_calibration_error, fit_temperature

    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2.0, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = 3.0 * true_logit  # a model three times too sure of itself
    t = fit_temperature(labels, overconfident)
    assert t == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(labels, 1 / (1 + np.exp(-overconfident)))
    after = expected_calibration_error(labels, 1 / (1 + np.exp(-overconfident / t)))
    assert after < 0.02 < before


def test_auroc_bootstrap_interval_covers_the_truth():
    """On scores drawn from two Gaussians one sigma apart (true AUROC = Phi(1/sqrt 2) =
    0.7602), the 95% interval contains the value, is deterministic and narrows with n."""
    from scipy.stats import norm

    truth = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(3)
    widths = []
    for n in (200, 2000):
        labels = np.r_[np.ones(n), np.zeros(n)].astype(int)
        scores = np.r_[rng.normal(1, 1, n), rng.normal(0, 1, n)]
        lo, hi = M.auroc_bootstrap_interval(labels, scores, n_resamples=400, seed=1)
        assert lo <= M.auroc(labels, scores) <= hi
        assert lo <= truth <= hi
        assert M.auroc_bootstrap_interval(labels, scores, n_resamples=400, seed=1) == [lo, hi]
        widths.append(hi - lo)
    # the width scales as 1/sqrt(n): 10x the data, about 3.2x narrower (stated band 2.4-4.2)
    assert 2.4 < widths[0] / widths[1] < 4.2


def test_tpr_at_fpr_table_needs_ten_false_positives():
    labels = np.r_[np.ones(50), np.zeros(1500)].astype(int)
    scores = np.r_[np.linspace(0.5, 2, 50), np.linspace(-3, 1, 1500)]
    values, intervals, reasons = M.tpr_at_fpr_table(labels, scores)
    assert values["0.01"] == M.tpr_at_fpr(labels, scores, 0.01)[0]
    assert intervals["0.01"][0] <= values["0.01"] <= intervals["0.01"][1]
    assert values["0.001"] is None and values["0.0001"] is None
    assert "needs at least 10,000 test negatives" in reasons["0.001"]
    assert "the split has 1,500" in reasons["0.001"]
    assert set(reasons) == {"0.001", "0.0001"}


def test_purity_at_prevalence_by_hand():
    # prevalence 1e-3, TPR 0.9, FPR 0.01: 0.0009 / (0.0009 + 0.00999) = 0.08264
    out = M.purity_at_prevalence(0.9, 0.01, [0.85, 0.94], [0.005, 0.02], 1e-3)
    assert out["purity"] == pytest.approx(0.0009 / (0.0009 + 0.999 * 0.01))
    lo, hi = out["purity_ci95"]
    assert lo == pytest.approx(0.00085 / (0.00085 + 0.999 * 0.02))
    assert hi == pytest.approx(0.00094 / (0.00094 + 0.999 * 0.005))
    assert lo < out["purity"] < hi
    assert out["per_1000_selected"] == pytest.approx(82.6, abs=0.1)
    # no false positive: purity 1, its lower end set by the FPR interval's upper end
    perfect = M.purity_at_prevalence(1.0, 0.0, [0.9, 1.0], [0.0, 0.003], 1e-3)
    assert perfect["purity"] == 1.0 and perfect["purity_ci95"][1] == 1.0
    assert perfect["purity_ci95"][0] == pytest.approx(0.0009 / (0.0009 + 0.999 * 0.003))


def test_reliability_curve_of_calibrated_probabilities():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    labels = (rng.random(20000) < p).astype(int)
    bins = M.reliability_curve(labels, p, bins=10)
    assert len(bins) == 10 and sum(b["n"] for b in bins) == 20000
    for b in bins:
        lo, hi = b["positive_fraction_ci95"]
        assert b["low"] <= b["mean_probability"] < b["high"]
        assert lo - 0.01 <= b["mean_probability"] <= hi + 0.01


def test_falls_along_columns_only_beyond_the_intervals():
    grid = [
        [[0.1, 0.3], [0.25, 0.5], [0.05, 0.2]],  # third below the second, beyond: a fall
        [[0.5, 0.7], [0.45, 0.65], None],  # a dip within the intervals: fine
    ]
    assert M.falls_along_columns(grid) == [{"row": 0, "from_column": 1, "to_column": 2}]
    assert M.falls_along_columns([[None, [0.1, 0.2]]]) == []


def test_wilson_interval_holds_the_estimate_at_the_ends():
    for n in (1, 7, 1944, 3040, 10**6):
        assert M.wilson_interval(n, n)[1] == 1.0 and M.wilson_interval(0, n)[0] == 0.0
