import json

import numpy as np
import torch
from scipy.stats import spearmanr

split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
ntr, nva = 4000, 1000
src_tr = [n.split("/")[-1][:4] for n in split["train"]]
src_va = [n.split("/")[-1][:4] for n in split["val"]]
nsyn = len(g["tr_mos"]) - ntr


def fit(x, y, sw, a):
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    reg = a * torch.eye(z.shape[1], dtype=z.dtype)
    reg[-1, -1] = 0
    w = torch.linalg.solve(z.T @ (sw[:, None] * z) + reg, z.T @ (sw * y))
    return lambda q: ((q - mu) / sd) @ w[:-1] + w[-1]


def r(a, b):
    return spearmanr(a, b)[0]


biq_va = ~g["va_mos"].isnan()
yva = torch.where(biq_va, g["va_mos"], g["va_t"]).double()
tva = g["tva"]
for a in (100.0, 300.0, 1000.0, 3000.0, 10000.0):
    line = f"alpha {a:g}:"
    # in-domain, 3-tower ensemble
    idx = list(range(ntr + nsyn))
    y = torch.where(g["tr_mos"].isnan(), g["tr_t"], g["tr_mos"]).double()
    sw = torch.tensor([1.0] * ntr + [0.5] * nsyn, dtype=torch.float64)
    p = fit(g["xtr"], y, sw, a)(g["xva"]).clamp(0, 1)
    c = 0.5 * p + 0.5 * tva
    line += f" in-domain probe {r(p[biq_va], yva[biq_va]):.4f}/{r(p[~biq_va], yva[~biq_va]):.4f} mix {r(c[biq_va], yva[biq_va]):.4f}/{r(c[~biq_va], yva[~biq_va]):.4f} | LOSO mix"
    ms = []
    for held in ("ss01", "ss02", "ss03"):
        pred = torch.load(f"runs/loso/{held}_pred.pt", weights_only=True)
        rated = [i for i, s in enumerate(src_tr) if s != held]
        idx = rated + list(range(ntr, ntr + nsyn))
        test_x = torch.cat(
            [
                g["xtr"][[i for i, s in enumerate(src_tr) if s == held]],
                g["xva"][[i for i, s in enumerate(src_va) if s == held]],
            ]
        )
        yy = torch.where(g["tr_mos"][idx].isnan(), g["tr_t"][idx], g["tr_mos"][idx]).double()
        sw = torch.tensor([1.0] * len(rated) + [0.5] * nsyn, dtype=torch.float64)
        pp = fit(g["xtr"][idx], yy, sw, a)(test_x).clamp(0, 1)
        m = r(0.5 * pp + 0.5 * pred["towers"], pred["mos"])
        ms.append(m)
        line += f" {m:.4f}"
    print(line + f" mean {np.mean(ms):.4f}", flush=True)
