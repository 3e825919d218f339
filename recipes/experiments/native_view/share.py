"""The probe's share in the mix, for the two-view probe (384 + crop224): validation part
(three towers), held-apart distortions, and the three left-out sources (seed 0's tower
trained without the source), each share against the shipped 1/2, paired bootstrap."""

import json
import logging

import numpy as np
import torch
from scipy.stats import spearmanr

from mpiqa.training.probe import fit_probe

logging.disable(logging.INFO)
split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
d = torch.load("runs/native_view/crop224.pt", weights_only=True)
xtr, xva = torch.cat([g["xtr"], d["xtr"]], 1), torch.cat([g["xva"], d["xva"]], 1)
src_tr = np.array([n.split("/")[-1][:4] for n in split["train"]] + ["syn"] * (len(xtr) - 4000))
src_va = np.array([n.split("/")[-1][:4] for n in split["val"]] + ["syn"] * (len(xva) - 1000))
rated = ~g["va_mos"].isnan().numpy()
y_va = torch.where(g["va_mos"].isnan(), g["va_t"], g["va_mos"]).double().numpy()
parts = {}
probe, _ = fit_probe(xtr, g["tr_mos"], g["tr_t"])
p = probe(xva.float()).double().clamp(0, 1).numpy()
parts["val"] = (p[rated], g["tva"].numpy()[rated], y_va[rated])
parts["synthetic"] = (p[~rated], g["tva"].numpy()[~rated], y_va[~rated])
for held in ("ss01", "ss02", "ss03"):
    pred = torch.load(f"runs/loso/{held}_pred.pt", weights_only=True)
    keep = torch.tensor(src_tr != held)
    pr, _ = fit_probe(xtr[keep], g["tr_mos"][keep], g["tr_t"][keep])
    test = torch.cat([xtr[torch.tensor(src_tr == held)], xva[torch.tensor(src_va == held)]])
    parts[held] = (
        pr(test.float()).double().clamp(0, 1).numpy(),
        pred["towers"].numpy(),
        pred["mos"].numpy(),
    )


def r(a, b):
    return spearmanr(a, b)[0]


rng = np.random.default_rng(0)
for share in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0):
    line = f"share {share:.1f}:"
    for name, (pp, tw, y) in parts.items():
        mix, base = share * pp + (1 - share) * tw, 0.5 * pp + 0.5 * tw
        diffs = []
        for _ in range(500):
            i = rng.integers(0, len(y), len(y))
            diffs.append(r(mix[i], y[i]) - r(base[i], y[i]))
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        line += f" {name} {r(mix, y):.4f} ({r(mix, y) - r(base, y):+.3f} [{lo:+.3f},{hi:+.3f}])"
    print(line, flush=True)
