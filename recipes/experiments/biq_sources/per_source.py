"""SRCC within each BIQ2021 source (ss01, ss02, ss03) on the 1,000 validation images,
with a paired bootstrap for the difference between two prediction files."""

import csv
import sys

import numpy as np
from scipy.stats import spearmanr


def load(p):
    return {
        r["key"]: (float(r["score"]), float(r["mos_normalised"])) for r in csv.DictReader(open(p))
    }


files = dict(a.split("=", 1) for a in sys.argv[1:])
data = {k: load(v) for k, v in files.items()}
keys = sorted(next(iter(data.values())))
src = np.array([k.split("/")[-1][:4] for k in keys])
mos = np.array([data[next(iter(data))][k][1] for k in keys])
for name, d in data.items():
    s = np.array([d[k][0] for k in keys])
    row = [f"{spearmanr(s, mos)[0]:.4f}"] + [
        f"{spearmanr(s[src == g], mos[src == g])[0]:.4f}" for g in ("ss01", "ss02", "ss03")
    ]
    within = np.mean([spearmanr(s[src == g], mos[src == g])[0] for g in ("ss01", "ss02", "ss03")])
    print(
        f"{name:12s} all {row[0]} ss01 {row[1]} ss02 {row[2]} ss03 {row[3]} mean-within {within:.4f}"
    )
print({g: int((src == g).sum()) for g in ("ss01", "ss02", "ss03")})
