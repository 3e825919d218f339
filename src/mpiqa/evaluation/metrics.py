"""IQA correlation metrics.

PLCC and RMSE are reported raw and after the standard 4-parameter logistic mapping
(VQEG), fitted to the MOS. The logistic is constrained to increase,
y = b2 + |b1 - b2| / (1 + exp(-(x - b3) / |b4|)), so a model that ranks images backwards
keeps a negative PLCC, as it keeps a negative SRCC. An unconstrained fit would flip its sign.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# scipy is imported where it is used: it costs half a second at start-up, and the CLI
# imports this module for commands (``mpiqa score``) that never need it.


def _arrays(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred, mos = (
        np.asarray(pred, dtype=np.float64).ravel(),
        np.asarray(mos, dtype=np.float64).ravel(),
    )
    if pred.shape != mos.shape:
        raise ValueError(f"predictions ({pred.size}) and MOS ({mos.size}) differ in length")
    if pred.size < 3:
        raise ValueError(f"need at least 3 images for correlations, got {pred.size}")
    if not (np.isfinite(pred).all() and np.isfinite(mos).all()):
        raise ValueError("predictions and MOS must be finite")
    return pred, mos


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """Increasing 4-parameter logistic from b2 (low) to b2 + |b1 - b2| (high)."""
    z = np.clip(-(x - b3) / (np.abs(b4) + 1e-12), -500, 500)
    return np.abs(b1 - b2) / (1 + np.exp(z)) + b2


def fit_logistic_params(pred, mos) -> np.ndarray | None:
    """Parameters (b1, b2, b3, b4) of :func:`logistic4` fitted to map ``pred`` onto ``mos``;
    ``None`` when there are four points or fewer, or the fit fails or collapses to a
    constant."""
    pred, mos = _arrays(pred, mos)
    if pred.size <= 4:  # four parameters need more than four points
        return None
    from scipy import optimize

    start = [mos.max(), mos.min(), np.mean(pred), np.std(pred) / 4 + 1e-6]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=start, maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    mapped = logistic4(pred, *params)
    if np.isfinite(mapped).all() and np.std(mapped) > 1e-12 * (np.std(mos) + 1e-12):
        return params
    return None


def fit_logistic(pred, mos) -> np.ndarray:
    """Predictions mapped onto the MOS scale by the fitted increasing logistic. Returns the
    raw predictions when the fit fails or collapses to a constant."""
    pred, mos = _arrays(pred, mos)
    params = fit_logistic_params(pred, mos)
    return pred if params is None else logistic4(pred, *params)


def srcc(pred, mos) -> float:
    from scipy import stats

    pred, mos = _arrays(pred, mos)
    return float(stats.spearmanr(pred, mos).statistic)


def krcc(pred, mos) -> float:
    from scipy import stats

    pred, mos = _arrays(pred, mos)
    return float(stats.kendalltau(pred, mos).statistic)


def plcc(pred, mos, fitted: bool = True) -> float:
    from scipy import stats

    pred, mos = _arrays(pred, mos)
    x = fit_logistic(pred, mos) if fitted else pred
    return float(stats.pearsonr(x, mos).statistic)


def rmse(pred, mos, fitted: bool = True) -> float:
    pred, mos = _arrays(pred, mos)
    x = fit_logistic(pred, mos) if fitted else pred
    return float(np.sqrt(np.mean((x - mos) ** 2)))


def all_metrics(pred, mos) -> dict[str, float]:
    """srcc, krcc, plcc (after the logistic fit), plcc_raw, rmse (after the fit), rmse_raw, n."""
    from scipy import stats

    pred, mos = _arrays(pred, mos)
    mapped = fit_logistic(pred, mos)
    return {
        "srcc": srcc(pred, mos),
        "krcc": krcc(pred, mos),
        "plcc": float(stats.pearsonr(mapped, mos).statistic),
        "plcc_raw": float(stats.pearsonr(pred, mos).statistic),
        "rmse": float(np.sqrt(np.mean((mapped - mos) ** 2))),
        "rmse_raw": float(np.sqrt(np.mean((pred - mos) ** 2))),
        "n": int(pred.size),
    }


def srcc_interval(
    pred, mos, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the SRCC over images: ``resamples`` draws of the
    images with replacement (seeded), the SRCC of each (average ranks for the ties that
    drawing makes), and the ``(1 - level) / 2`` quantiles at either end. It measures how
    much the figure owes to which images were rated, not a model's seed-to-seed spread.

    Raises:
        ValueError: fewer than 3 images, or ``level`` outside (0, 1).
    """
    from scipy.stats import rankdata

    pred, mos = _arrays(pred, mos)
    if pred.size < 3:
        raise ValueError(f"an SRCC interval needs at least 3 images, got {pred.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, pred.size, (resamples, pred.size), dtype=np.int32)
    values = []
    # a few resamples at a time: 1,000 draws of 10,000 images are 80 MB per array
    for part in np.array_split(draws, max(1, resamples * pred.size // 1_000_000)):
        a, b = rankdata(pred[part], axis=1), rankdata(mos[part], axis=1)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):  # a draw of one value
            values.append((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)))
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def summarise_rounds(per_round: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, mean and std of each metric over rounds (the n-round protocol)."""
    keys = [k for k in per_round[0] if k not in ("n", "n_failed")]  # counts, not metrics
    out = {}
    for key in keys:
        values = np.array([r[key] for r in per_round])
        out[key] = {
            "median": float(np.median(values)),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=0)),
        }
    return out
