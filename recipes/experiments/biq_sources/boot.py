"""Paired bootstrap (2,000 resamples) of within-source SRCC: the within-source-rank
tower of a run (runs/loso/TAG_pred.pt, TAG the first argument, e.g. none_both) minus the
recipe's seed-0 tower, per source."""

import json
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

from mpiqa.backbones.factory import load_clip
from mpiqa.models.quality_levels import class_embeddings, expected_level
from mpiqa.prompts.vocab import QUALITY_TEMPLATES
from mpiqa.training.pretrain import _encode_features, quality_captions

split = json.load(open("runs/small/backbone/split.json"))
nva = len(split["val"])
src = np.array([n.split("/")[-1][:4] for n in split["val"]])
va = torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
model = load_clip("runs/small/backbone/backbone.safetensors").float().eval()
with torch.no_grad():
    text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    base = torch.cat(
        [
            expected_level(
                _encode_features(model, va["features"][i : i + 256][: max(0, min(256, nva - i))]),
                text,
                model.logit_scale.exp(),
            )
            for i in range(0, nva, 256)
        ]
    ).numpy()
new = torch.load(f"runs/loso/{sys.argv[1]}_pred.pt", weights_only=False)
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
