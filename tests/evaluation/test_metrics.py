from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mpiqa.evaluation.metrics import (
    all_metrics,
    fit_logistic,
    krcc,
    plcc,
    rmse,
    srcc,
    summarise_rounds,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 1, 200)
    pred = 1 / (1 + np.exp(-6 * (mos - 0.5))) + 0.05 * rng.standard_normal(200)  # monotone + noise
    return pred, mos


def test_correlations_match_scipy(data):
    pred, mos = data
    assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0])
    assert plcc(pred, mos, fitted=False) == pytest.approx(stats.pearsonr(pred, mos)[0])
    assert rmse(pred, mos, fitted=False) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


def test_hand_made_ranks():
    assert srcc([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert srcc([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert krcc([1, 3, 2], [1, 2, 3]) == pytest.approx(1 / 3)


def test_logistic_fit_linearises_and_keeps_the_sign(data):
    pred, mos = data
    assert plcc(pred, mos) > plcc(pred, mos, fitted=False)  # the fit undoes the sigmoid
    assert rmse(pred, mos) < rmse(pred, mos, fitted=False)
    assert plcc(-pred, mos) < 0  # a model ranking backwards stays negative
    mapped = fit_logistic(pred, mos)
    assert np.all(np.diff(mapped[np.argsort(pred)]) >= -1e-9)  # increasing


def test_all_metrics_and_rounds(data):
    pred, mos = data
    metrics = all_metrics(pred, mos)
    assert (
        set(metrics) == {"srcc", "krcc", "plcc", "plcc_raw", "rmse", "rmse_raw", "n"}
        and metrics["n"] == 200
    )
    summary = summarise_rounds(
        [{"srcc": 0.8, "n": 1}, {"srcc": 0.9, "n": 1}, {"srcc": 0.7, "n": 1}]
    )
    assert summary["srcc"] == {
        "median": 0.8,
        "mean": pytest.approx(0.8),
        "std": pytest.approx(np.std([0.8, 0.9, 0.7])),
    }
    with pytest.raises(ValueError, match="at least 3"):
        srcc([1, 2], [1, 2])
    with pytest.raises(ValueError, match="differ in length"):
        srcc([1, 2, 3], [1, 2])


def test_too_few_points_for_the_logistic_fall_back_to_raw_predictions():
    from mpiqa.evaluation.metrics import all_metrics, fit_logistic_params

    pred, mos = [0.1, 0.5, 0.9], [0.2, 0.4, 1.0]  # 3 points, 4 parameters
    assert fit_logistic_params(pred, mos) is None
    metrics = all_metrics(pred, mos)
    assert metrics["plcc"] == metrics["plcc_raw"] and metrics["n"] == 3


def test_srcc_interval_is_the_percentile_bootstrap_of_spearman():
    from scipy.stats import spearmanr

    from mpiqa.evaluation.metrics import srcc, srcc_interval

    rng = np.random.default_rng(5)
    mos = rng.random(60)
    pred = mos + rng.normal(0, 0.3, 60)
    low, high = srcc_interval(pred, mos, resamples=300, seed=2)
    # the same draws, one scipy call each (ties from drawing twice get average ranks)
    draws = np.random.default_rng(2).integers(0, 60, (300, 60), dtype=np.int32)
    naive = [spearmanr(pred[d], mos[d]).statistic for d in draws]
    assert (low, high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])), abs=1e-12)
    assert low < srcc(pred, mos) < high and high - low < 0.5
    assert srcc_interval(pred, mos, resamples=300, seed=2) == (low, high)  # seeded
    with pytest.raises(ValueError, match="at least 3 images"):
        srcc_interval(pred[:2], mos[:2])
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        srcc_interval(pred, mos, level=95)
