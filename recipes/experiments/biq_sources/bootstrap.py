"""Paired bootstrap of an SRCC difference over the same images, for the scripts here."""

import numpy as np
from scipy.stats import spearmanr


def srcc(a, b) -> float:
    return float(spearmanr(a, b)[0])


def paired_difference(a, b, y, rng: np.random.Generator, n: int = 1000, groups=None) -> str:
    """SRCC(a, y) - SRCC(b, y) with its 95 % interval over ``n`` resamples of the rows, or,
    with ``groups`` (one label per row), of whole groups (a clean image with its versions)."""
    members = None
    if groups is not None:
        groups = np.asarray(groups)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    diffs = []
    for _ in range(n):
        if members is None:
            i = rng.integers(0, len(y), len(y))
        else:
            i = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
        diffs.append(srcc(a[i], y[i]) - srcc(b[i], y[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return f"{srcc(a, y) - srcc(b, y):+.4f} ({lo:+.3f}, {hi:+.3f})"
