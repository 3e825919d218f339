"""Paired bootstrap (2,000 resamples) of SRCC between two `mpiqa evaluate` prediction
files over the same BIQ2021 validation images, over all of them and within each source.
    python paired.py NEW/predictions.csv OLD/predictions.csv"""

import csv
import sys

import numpy as np
from scipy.stats import spearmanr


def load(p):
    return {
        r["key"]: (float(r["score"]), float(r["mos_normalised"])) for r in csv.DictReader(open(p))
    }


a, b = load(sys.argv[1]), load(sys.argv[2])
keys = sorted(a)
sa, sb = np.array([a[k][0] for k in keys]), np.array([b[k][0] for k in keys])
y = np.array([a[k][1] for k in keys])
src = np.array([k.split("/")[-1][:4] for k in keys])
rng = np.random.default_rng(0)
for name, idx in [("all", np.arange(len(y)))] + [
    (s, np.nonzero(src == s)[0]) for s in ("ss01", "ss02", "ss03")
]:
    d = []
    for _ in range(2000):
        i = rng.choice(idx, len(idx))
        d.append(spearmanr(sa[i], y[i])[0] - spearmanr(sb[i], y[i])[0])
    diff = spearmanr(sa[idx], y[idx])[0] - spearmanr(sb[idx], y[idx])[0]
    lo, hi = np.percentile(d, [2.5, 97.5])
    print(f"{name}: {diff:+.4f} ({lo:+.4f}, {hi:+.4f})")
