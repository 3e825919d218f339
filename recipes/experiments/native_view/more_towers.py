"""Would more towers help on an unseen source? Each left-out BIQ2021 source: the mean of
seeds 0-2's towers (as shipped) against the mean of seeds 0-4's, alone and mixed 1/2 : 1/2
with the two-view probe (../native_view/share_seeds.py writes the probe's scores); paired
bootstrap (1,000). Seeds 3 and 4 re-use the cached maps of seeds 0 and 1 (their own
initialisation and batch order, but those seeds' synthetic draws)."""

import numpy as np
import torch
from scipy.stats import spearmanr

# per left-out source: (probe, towers, targets), as tensors (share_seeds.py wrote them)
saved = torch.load("runs/native_view/share_seeds_parts.pt", weights_only=True)
parts = {k: tuple(t.numpy() for t in v) for k, v in saved.items()}


def r(a, b):
    return spearmanr(a, b)[0]


rng = np.random.default_rng(0)
for held in ("ss01", "ss02", "ss03"):
    probe, three, y = parts[held]
    towers = [
        torch.load(f"runs/loso/{held}{tag}_pred.pt", weights_only=True)["towers"].numpy()
        for tag in ("", "_seed1", "_seed2", "_seed3", "_seed4")
    ]
    assert np.allclose(np.mean(towers[:3], 0), three)
    five = np.mean(towers, 0)
    line = f"{held}: seeds 3 / 4 {r(towers[3], y):.4f} / {r(towers[4], y):.4f};"
    for name, a, b in (
        ("towers", five, three),
        ("mix", 0.5 * probe + 0.5 * five, 0.5 * probe + 0.5 * three),
    ):
        d = []
        for _ in range(1000):
            i = rng.integers(0, len(y), len(y))
            d.append(r(a[i], y[i]) - r(b[i], y[i]))
        lo, hi = np.percentile(d, [2.5, 97.5])
        line += f" {name} five {r(a, y):.4f} vs three {r(b, y):.4f} ({r(a, y) - r(b, y):+.4f} [{lo:+.3f}, {hi:+.3f}])"
    print(line, flush=True)
