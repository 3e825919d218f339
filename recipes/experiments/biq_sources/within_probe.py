"""Should the probe learn quality *within* a source? The shipped probe regresses every
BIQ2021 row onto its MOS, so part of what it learns is telling BIQ2021's three sources
apart (their MOS means differ: 0.42 / 0.49 / 0.74); an unseen database is one source,
where only the ranking within it counts. Variant: the same ridge with one unpenalised
intercept per source (ss01, ss02, ss03, synthetic), i.e. fitted on the within-source
variation only; it predicts with the rated sources' mean intercept (a constant, so it
does not change any ranking). Penalty by 5-fold CV over the rated rows as shipped, the
criterion either the SRCC over all rated rows (shipped) or the mean SRCC within each
source. Mixed 1/2 : 1/2 with the towers (three as in share_seeds.py on the validation
parts, five on the left-out sources), paired bootstrap (1,000) against the shipped rule.
"""

import json
import logging

import numpy as np
import torch
from scipy.stats import spearmanr
from within_parts import save_parts

from mpiqa.training.probe import fit_probe

logging.disable(logging.INFO)
split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
d = torch.load("runs/native_view/crop224.pt", weights_only=True)
xtr = torch.cat([g["xtr"], d["xtr"]], 1).double().numpy()
xva = torch.cat([g["xva"], d["xva"]], 1).double().numpy()
src_tr = np.array([n.split("/")[-1][:4] for n in split["train"]] + ["syn"] * (len(xtr) - 4000))
src_va = np.array([n.split("/")[-1][:4] for n in split["val"]] + ["syn"] * (len(xva) - 1000))
mos_tr, t_tr = g["tr_mos"].double().numpy(), g["tr_t"].double().numpy()
rated_va = ~np.isnan(g["va_mos"].numpy())
y_va = np.where(rated_va, g["va_mos"].numpy(), g["va_t"].numpy()).astype(float)
SOURCES = ("ss01", "ss02", "ss03")


def r(a, b):
    return spearmanr(a, b)[0]


def ridge_groups(x, y, w, groups, alpha):
    """Weighted ridge on standardised x with one unpenalised intercept per group; returns
    a predictor using the mean of the rated groups' intercepts (weighted by rows)."""
    mean, std = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-8)
    names = sorted(set(groups))
    onehot = np.stack([groups == n for n in names], 1).astype(float)
    z = np.concatenate([(x - mean) / std, onehot], 1)
    pen = alpha * np.eye(z.shape[1])
    pen[-len(names) :, -len(names) :] = 0
    coef = np.linalg.solve(z.T @ (w[:, None] * z) + pen, z.T @ (w * y))
    rated = [i for i, n in enumerate(names) if n != "syn"]
    counts = np.array([(groups == names[i]).sum() for i in rated], float)
    c = float(coef[x.shape[1] :][rated] @ counts / counts.sum())
    return lambda q: ((q - mean) / std) @ coef[: x.shape[1]] + c


def fit_within(x, mos, target, groups, criterion, alphas=(1e2, 1e3, 1e4, 1e5), seed=0):
    rated = ~np.isnan(mos)
    y = np.where(rated, mos, target)
    w = np.where(rated, 1.0, 0.5)
    rows = np.flatnonzero(rated)
    order = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).numpy()]
    best = None
    for alpha in alphas:
        pred = np.empty(len(y))
        for held in np.array_split(order, 5):
            train = np.ones(len(y), bool)
            train[held] = False
            pred[held] = ridge_groups(x[train], y[train], w[train], groups[train], alpha)(x[held])
        if criterion == "all":
            score = r(pred[order], y[order])
        else:
            score = np.mean(
                [
                    r(pred[order][groups[order] == s], y[order][groups[order] == s])
                    for s in set(groups[order])
                ]
            )
        if best is None or score > best[0]:
            best = (score, alpha)
    return ridge_groups(x, y, w, groups, best[1]), best[1]


def shipped(x, mos, target):
    probe, summary = fit_probe(torch.from_numpy(x), torch.from_numpy(mos), torch.from_numpy(target))
    return lambda q: probe(torch.from_numpy(q).float()).double().numpy(), summary["alpha"]


def boot(a, b, y, rng, n=1000):
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(r(a[i], y[i]) - r(b[i], y[i]))
    return np.percentile(diffs, [2.5, 97.5])


def main():
    rng = np.random.default_rng(0)
    variants = {
        "shipped": lambda x, m, t, s: shipped(x, m, t),
        "within": lambda x, m, t, s: fit_within(x, m, t, s, "all"),
    }
    # per part: (towers, {variant: probe scores}, targets); the validation parts take the
    # probe fitted on every training row and the shipped three towers, a left-out source
    # the probe fitted without it and the mean of its five towers
    parts = {}
    tva = g["tva"].double().numpy()
    probes = {}
    for name, fit in variants.items():
        probe, alpha = fit(xtr, mos_tr, t_tr, src_tr)
        probes[name] = np.clip(probe(xva), 0, 1)
        print(f"{name}: alpha {alpha:g}", flush=True)
    masks = {"val": rated_va, "synthetic": ~rated_va, **{f"val {s}": src_va == s for s in SOURCES}}
    for part, k in masks.items():
        parts[part] = (tva[k], {n: p[k] for n, p in probes.items()}, y_va[k])
    for held in SOURCES:
        preds = [
            torch.load(f"runs/loso/{held}{tag}_pred.pt", weights_only=True)
            for tag in ("", "_seed1", "_seed2", "_seed3", "_seed4")
        ]
        y = preds[0]["mos"].double().numpy()
        towers = np.mean([q["towers"].double().numpy() for q in preds], 0)
        keep = src_tr != held
        test = np.concatenate([xtr[src_tr == held], xva[src_va == held]])
        fitted = {}
        for name, fit in variants.items():
            probe, alpha = fit(xtr[keep], mos_tr[keep], t_tr[keep], src_tr[keep])
            fitted[name] = np.clip(probe(test), 0, 1)
            print(f"  {held} left out, {name}: alpha {alpha:g}", flush=True)
        parts[f"{held} left out"] = (towers, fitted, y)
    save_parts(parts)
    for name in variants:
        print(
            f"{name} alone:" + "".join(f" {k} {r(v[1][name], v[2]):.4f}" for k, v in parts.items())
        )
    # probe = (1 - b) shipped + b within, mixed 1/2 : 1/2 with the towers
    for b in (0.0, 0.25, 0.5, 0.75, 1.0):
        line = f"b {b:.2f}:"
        for k, (towers, p, y) in parts.items():
            base = 0.5 * towers + 0.5 * p["shipped"]
            mix = 0.5 * towers + 0.5 * ((1 - b) * p["shipped"] + b * p["within"])
            if b == 0:
                line += f" {k} {r(mix, y):.4f}"
            else:
                lo, hi = boot(mix, base, y, rng)
                line += f" {k} {r(mix, y) - r(base, y):+.4f} [{lo:+.3f},{hi:+.3f}]"
        print(line, flush=True)


if __name__ == "__main__":
    main()
