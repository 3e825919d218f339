"""The linear probe's features, one variant at a time: the shipped 384 view's global
statistics, a second view's (features.py), or both; each fitted by the shipped rule
(fit_probe: synthetic rows at weight 1/2, penalty by 5-fold CV over the rated rows).
Reports the BIQ2021 validation part, the held-apart distortions and the three
left-out-source folds (probe alone and averaged 1/2 : 1/2 with the towers), with a paired
bootstrap of each variant's mix against the shipped one's."""

import json
import logging
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

from mpiqa.training.probe import fit_probe

logging.disable(logging.INFO)
split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
views = {"384": (g["xtr"], g["xva"])}
for name in sys.argv[1:]:
    d = torch.load(f"runs/native_view/{name}.pt", weights_only=True)
    views[name] = (d["xtr"], d["xva"])
ntr = 4000
src_tr = np.array(
    [n.split("/")[-1][:4] for n in split["train"]] + ["syn"] * (len(g["tr_mos"]) - ntr)
)
src_va = np.array(
    [n.split("/")[-1][:4] for n in split["val"]] + ["syn"] * (len(g["va_mos"]) - 1000)
)
rated_va = ~g["va_mos"].isnan()
y_va = torch.where(rated_va, g["va_mos"], g["va_t"]).double().numpy()


def r(a, b):
    return spearmanr(a, b)[0]


def boot(a, b, y, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        d.append(r(a[i], y[i]) - r(b[i], y[i]))
    return np.percentile(d, [2.5, 97.5])


def feats(names, part):
    k = 0 if part == "tr" else 1
    return torch.cat([views[v][k] for v in names], 1)


variants = [("384",)] + [(v,) for v in sys.argv[1:]] + [("384", v) for v in sys.argv[1:]]
base = {}
for names in variants:
    tag = "+".join(names)
    probe, summ = fit_probe(feats(names, "tr"), g["tr_mos"], g["tr_t"])
    p = probe(feats(names, "va").float()).double().clamp(0, 1).numpy()
    mix = 0.5 * p + 0.5 * g["tva"].numpy()
    m = rated_va.numpy()
    line = (
        f"{tag:16s} alpha {summ['alpha']:g} | val probe {r(p[m], y_va[m]):.4f} mix {r(mix[m], y_va[m]):.4f}"
        f" | synthetic probe {r(p[~m], y_va[~m]):.4f} mix {r(mix[~m], y_va[~m]):.4f} | LOSO probe/mix"
    )
    res = {"val": (mix[m], y_va[m]), "syn": (mix[~m], y_va[~m])}
    for held in ("ss01", "ss02", "ss03"):
        pred = torch.load(f"runs/loso/{held}_pred.pt", weights_only=True)
        keep = torch.tensor(src_tr != held)
        pr, _ = fit_probe(feats(names, "tr")[keep], g["tr_mos"][keep], g["tr_t"][keep])
        test = torch.cat(
            [
                feats(names, "tr")[torch.tensor(src_tr == held)],
                feats(names, "va")[torch.tensor(src_va == held)],
            ]
        )
        pp = pr(test.float()).double().clamp(0, 1).numpy()
        mm = 0.5 * pp + 0.5 * pred["towers"].numpy()
        y = pred["mos"].numpy()
        line += f" {held} {r(pp, y):.4f}/{r(mm, y):.4f}"
        res[held] = (mm, y)
    if not base:
        base = res
    else:
        line += "\n   mix - shipped:" + "".join(
            f" {k} {r(*res[k]) - r(*base[k]):+.4f} [{lo:+.3f},{hi:+.3f}]"
            for k in res
            for lo, hi in [boot(res[k][0], base[k][0], res[k][1])]
        )
    print(line, flush=True)
