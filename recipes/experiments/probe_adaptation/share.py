"""Few-shot adaptation of one number: the probe's share in mpiqa-small's mix, chosen on a
user's N labels of a source that neither the towers (three seeds) nor the probe saw
(../native_view/share_seeds.py writes the scores), against the shipped 1/2 on the rest of
the source. The share is the one of 0, 0.1, ..., 1 whose mix ranks the N labels best
(ties: the one nearest 1/2).  python share.py N [ROUNDS]"""

import sys

import numpy as np
import torch
from scipy.stats import spearmanr, wilcoxon

# per left-out source: (probe, towers, targets), as tensors (share_seeds.py wrote them)
saved = torch.load("runs/native_view/share_seeds_parts.pt", weights_only=True)
parts = {k: tuple(t.numpy() for t in v) for k, v in saved.items()}
n, rounds = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 20
grid = np.round(np.linspace(0, 1, 11), 1)
order = np.argsort(np.abs(grid - 0.5), kind="stable")  # ties: nearest 1/2 first


def r(a, b):
    return spearmanr(a, b)[0]


for held in ("ss01", "ss02", "ss03"):
    probe, towers, y = parts[held]
    gains, chosen = [], []
    for k in range(rounds):
        idx = np.random.default_rng(k).permutation(len(y))
        shots, test = idx[:n], idx[n:]
        fit = [r(s * probe[shots] + (1 - s) * towers[shots], y[shots]) for s in grid[order]]
        share = grid[order][int(np.argmax(fit))]
        chosen.append(share)
        mixed, shipped = (s * probe[test] + (1 - s) * towers[test] for s in (share, 0.5))
        gains.append(r(mixed, y[test]) - r(shipped, y[test]))
    gains = np.array(gains)
    p = wilcoxon(gains).pvalue if np.any(gains != 0) else 1.0
    print(
        f"{held} N={n}: median gain {np.median(gains):+.4f} (mean {gains.mean():+.4f},"
        f" {int((gains < 0).sum())}/{rounds} below, Wilcoxon p {p:.3g});"
        f" shares chosen median {np.median(chosen):.1f} [{min(chosen):.1f}, {max(chosen):.1f}]",
        flush=True,
    )
