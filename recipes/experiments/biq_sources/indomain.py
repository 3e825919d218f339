"""In-domain reference for the leave-one-source-out runs: the seed-0 tower (trained on
all three subsets) and the ridge on all 4,000 training images, SRCC on each subset's
validation rows."""

import json

import torch
from scipy.stats import spearmanr

from mpiqa.backbones.factory import load_clip
from mpiqa.models.quality_levels import class_embeddings, expected_level
from mpiqa.prompts.vocab import QUALITY_TEMPLATES
from mpiqa.training.pretrain import _encode_features, quality_captions

split = json.load(open("runs/small/backbone/split.json"))
va = torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
g = torch.load("runs/ridgehead/feats.pt", weights_only=True)
nva = len(split["val"])
src = [n.split("/")[-1][:4] for n in split["val"]]
model = load_clip("runs/small/backbone/backbone.safetensors").float().eval()
with torch.no_grad():
    text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    f = va["features"][:nva]
    tower = torch.cat(
        [
            expected_level(_encode_features(model, f[i : i + 256]), text, model.logit_scale.exp())
            for i in range(0, nva, 256)
        ]
    ).double()
xr, yr = g["xtr"][:4000], g["tr_mos"][:4000].double()
mu, sd = xr.mean(0), xr.std(0) + 1e-8
z = (xr - mu) / sd
w = torch.linalg.solve(
    z.T @ z + 1000 * torch.eye(z.shape[1], dtype=z.dtype), z.T @ (yr - yr.mean())
)
ridge = (((g["xva"][:nva] - mu) / sd) @ w + yr.mean()).clamp(0, 1)
y = va["mos"][:nva].double()
for s in ("ss01", "ss02", "ss03", "all"):
    m = torch.tensor([t == s or s == "all" for t in src])

    def r(p, m=m):
        return spearmanr(p[m], y[m])[0]

    print(
        s,
        int(m.sum()),
        f"tower {r(tower):.4f} ridge {r(ridge):.4f} mix {r(0.5 * tower + 0.5 * ridge):.4f}",
    )
