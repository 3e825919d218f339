"""Paired bootstrap of an SRCC difference over the same images, for the scripts here."""

import numpy as np
from scipy.stats import spearmanr


def srcc(a, b) -> float:
    return float(spearmanr(a, b)[0])


def paired_difference(a, b, y, rng: np.random.Generator, n: int = 1000) -> str:
    """SRCC(a, y) - SRCC(b, y) with its 95 % interval over ``n`` resamples of the rows."""
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(srcc(a[i], y[i]) - srcc(b[i], y[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return f"{srcc(a, y) - srcc(b, y):+.4f} ({lo:+.3f}, {hi:+.3f})"
