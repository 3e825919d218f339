"""The left-out-source folds' features for few-shot probe adaptation: for each BIQ2021
source, the two-view probe fitted by the shipped rule (penalty 1e4) without it, and the held
source's standardised statistics, probe outputs, towers' scores and MOS
(runs/probe_adaptation/loso.pt). Reads the files listed in ../native_view/README.md."""

import json
import logging
from pathlib import Path

import numpy as np
import torch

from mpiqa.training.probe import fit_probe

logging.disable(logging.INFO)
split = json.load(open("runs/small/backbone/split.json"))
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
d = torch.load("runs/native_view/crop224.pt", weights_only=True)
xtr = torch.cat([g["xtr"], d["xtr"]], 1).double()
xva = torch.cat([g["xva"], d["xva"]], 1).double()
src_tr = np.array(
    [n.split("/")[-1][:4] for n in split["train"]] + ["syn"] * (len(g["tr_mos"]) - 4000)
)
src_va = np.array(
    [n.split("/")[-1][:4] for n in split["val"]] + ["syn"] * (len(g["va_mos"]) - 1000)
)
out = {}
for held in ("ss01", "ss02", "ss03"):
    pred = torch.load(f"runs/loso/{held}_pred.pt", weights_only=True)
    keep = torch.tensor(src_tr != held)
    p0, _ = fit_probe(xtr[keep], g["tr_mos"][keep], g["tr_t"][keep], alphas=(1e4,))
    X = torch.cat([xtr[torch.tensor(src_tr == held)], xva[torch.tensor(src_va == held)]])
    z = ((X.float() - p0.mean) / p0.std).double()
    base = z @ p0.weight.double() + p0.bias.double()
    out[held] = dict(z=z, base=base, tow=pred["towers"].double(), y=pred["mos"].double())
Path("runs/probe_adaptation").mkdir(parents=True, exist_ok=True)
torch.save(out, "runs/probe_adaptation/loso.pt")
