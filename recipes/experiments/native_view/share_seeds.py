"""The two-view probe's share again, with the left-out sources' towers as shipped: the
mean of three seeds' towers (`loso.py SOURCE none SEED ...` for seeds 1 and 2 next to
seed 0's run) instead of seed 0's alone. Validation part and held-apart distortions as in
share.py (the shipped three towers). Each share against 1/2, paired bootstrap (1,000)."""

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


def r(a, b):
    return spearmanr(a, b)[0]


parts = {}
probe, _ = fit_probe(xtr, g["tr_mos"], g["tr_t"])
p = probe(xva.float()).double().clamp(0, 1).numpy()
parts["val"] = (p[rated], g["tva"].numpy()[rated], y_va[rated])
parts["synthetic"] = (p[~rated], g["tva"].numpy()[~rated], y_va[~rated])
for held in ("ss01", "ss02", "ss03"):
    preds = [
        torch.load(f"runs/loso/{held}{tag}_pred.pt", weights_only=True)
        for tag in ("", "_seed1", "_seed2")
    ]
    y = preds[0]["mos"].numpy()
    assert all(np.array_equal(q["mos"].numpy(), y) for q in preds)
    towers = [q["towers"].numpy() for q in preds]
    keep = torch.tensor(src_tr != held)
    pr, _ = fit_probe(xtr[keep], g["tr_mos"][keep], g["tr_t"][keep])
    test = torch.cat([xtr[torch.tensor(src_tr == held)], xva[torch.tensor(src_va == held)]])
    pp = pr(test.float()).double().clamp(0, 1).numpy()
    mean = np.mean(towers, 0)
    print(
        f"{held}: towers "
        + " / ".join(f"{r(t, y):.4f}" for t in towers)
        + f", their mean {r(mean, y):.4f}, probe {r(pp, y):.4f};"
        + f" 1/2:1/2 with seed 0's tower {r(0.5 * pp + 0.5 * towers[0], y):.4f},"
        + f" with the mean {r(0.5 * pp + 0.5 * mean, y):.4f}",
        flush=True,
    )
    parts[held] = (pp, mean, y)

# the scores per part, for ../probe_adaptation/share.py and more_towers.py; as tensors, so
# that they load with weights_only=True
torch.save(
    {k: tuple(torch.from_numpy(np.asarray(a)) for a in v) for k, v in parts.items()},
    "runs/native_view/share_seeds_parts.pt",
)
rng = np.random.default_rng(0)
for share in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0):
    line = f"share {share:.1f}:"
    for name, (pp, tw, y) in parts.items():
        mix, base = share * pp + (1 - share) * tw, 0.5 * pp + 0.5 * tw
        diffs = []
        for _ in range(1000):
            i = rng.integers(0, len(y), len(y))
            diffs.append(r(mix[i], y[i]) - r(base[i], y[i]))
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        line += f" {name} {r(mix, y):.4f} ({r(mix, y) - r(base, y):+.3f} [{lo:+.3f},{hi:+.3f}])"
    print(line, flush=True)
