"""Leave-one-source-out with the shipped probe rule (synthetic rows at 0.5, penalty 1e4 =
the full-data CV choice): tower vs ½ tower + ½ probe, paired bootstrap per fold."""

import json
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
ntr = 4000
nsyn = len(g["tr_mos"]) - ntr
src_tr = [n.split("/")[-1][:4] for n in split["train"]]
src_va = [n.split("/")[-1][:4] for n in split["val"]]


def fit(x, y, sw, a):
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    reg = a * torch.eye(z.shape[1], dtype=z.dtype)
    reg[-1, -1] = 0
    w = torch.linalg.solve(z.T @ (sw[:, None] * z) + reg, z.T @ (sw * y))
    return lambda q: ((q - mu) / sd) @ w[:-1] + w[-1]


rng = np.random.default_rng(0)

for tag in sys.argv[1:]:
    held = tag.split("_")[0]
    pred = torch.load(f"runs/loso/{tag}_pred.pt", weights_only=True)
    rated = [i for i, s in enumerate(src_tr) if s != held]
    idx = rated + list(range(ntr, ntr + nsyn))
    test_x = torch.cat(
        [
            g["xtr"][[i for i, s in enumerate(src_tr) if s == held]],
            g["xva"][[i for i, s in enumerate(src_va) if s == held]],
        ]
    )
    y = torch.where(g["tr_mos"][idx].isnan(), g["tr_t"][idx], g["tr_mos"][idx]).double()
    sw = torch.tensor([1.0] * len(rated) + [0.5] * nsyn, dtype=torch.float64)
    probe = fit(g["xtr"][idx], y, sw, 1e4)(test_x).clamp(0, 1).numpy()
    t, m = pred["towers"].numpy(), pred["mos"].numpy()
    mix = 0.5 * t + 0.5 * probe

    def r(p, b=slice(None), m=m):
        return spearmanr(p[b], m[b])[0]

    boots = [r(mix, b) - r(t, b) for b in (rng.integers(0, len(m), len(m)) for _ in range(1000))]
    print(
        f"{tag} n={len(m)} tower {r(t):.4f} probe {r(probe):.4f} mix {r(mix):.4f} diff {r(mix) - r(t):+.4f} 95% [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}]"
    )
