"""Paired bootstrap (2,000 resamples) of within-source SRCC: the within-source-rank
tower of a run (runs/loso/TAG_pred.pt, TAG the first argument, e.g. none_both) minus the
recipe's seed-0 tower, per source."""

import sys

import numpy as np
import torch
from scipy.stats import spearmanr
from seed0_tower import seed0_val_scores

base, src = seed0_val_scores()
new = torch.load(f"runs/loso/{sys.argv[1]}_pred.pt", weights_only=True)
a, mos = new["towers"].numpy(), new["mos"].numpy()
rng = np.random.default_rng(0)
for g in ("ss01", "ss02", "ss03"):
    idx = np.where(src == g)[0]
    d = [spearmanr(a[idx], mos[idx])[0] - spearmanr(base[idx], mos[idx])[0]]
    boots = []
    for _ in range(2000):
        b = rng.choice(idx, len(idx))
        boots.append(spearmanr(a[b], mos[b])[0] - spearmanr(base[b], mos[b])[0])
    print(
        g,
        len(idx),
        f"diff {d[0]:+.4f} 95% [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}]",
    )
print("all", f"{spearmanr(a, mos)[0]:.4f} vs {spearmanr(base, mos)[0]:.4f}")
