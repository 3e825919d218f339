"""Towers trained for 30 epochs against the recipe's 20, paired on the same images.

Seeds 0 and 1 of `pretrain-backbone` with the recipe's flags and `--epochs 30` (OUT30)
against the same seeds of a rebuild with the recipe as it is (OUT20), each tower read out
zero-shot on its own cached stem maps: BIQ2021's 1,000 validation images (overall and
within each source) and the seed's held-apart synthetic distortions; then the
left-out-source runs of `loso.py` with EPOCHS=30 against the 20-epoch ones.
Paired bootstrap, 1,000 resamples of images.

    python recipes/experiments/biq_sources/epochs.py OUT20 OUT30 CACHE VAL HELD0 HELD1
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from bootstrap import paired_difference as paired
from bootstrap import srcc as r

from mpiqa.backbones.factory import load_clip
from mpiqa.models.quality_levels import class_embeddings, expected_level
from mpiqa.prompts.vocab import QUALITY_TEMPLATES
from mpiqa.training.pretrain import _encode_features, quality_captions


@torch.no_grad()
def tower_scores(backbone: Path, features: torch.Tensor) -> np.ndarray:
    model = load_clip(backbone).float().eval()
    text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    scale = model.logit_scale.exp()
    parts = [
        expected_level(_encode_features(model, features[i : i + 256]), text, scale)
        for i in range(0, len(features), 256)
    ]
    return torch.cat(parts).double().numpy()


def main():
    out20, out30, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    val = torch.load(cache / sys.argv[4], weights_only=True)
    held = [torch.load(cache / name, weights_only=True) for name in sys.argv[5:7]]
    split = json.load(open(out30 / "seed0" / "split.json"))
    src = np.array([n.split("/")[-1][:4] for n in split["val"]])
    y_val = val["mos"].double().numpy()
    rng = np.random.default_rng(0)
    means = {20: [], 30: []}
    for seed in (0, 1):
        y_held = held[seed]["synthetic_target"].double().numpy()
        s = {}
        for epochs, out in ((20, out20), (30, out30)):
            backbone = out / f"seed{seed}" / "backbone.safetensors"
            s[epochs] = (
                tower_scores(backbone, val["features"]),
                tower_scores(backbone, held[seed]["features"]),
            )
            means[epochs].append(s[epochs])
            print(
                f"seed {seed}, {epochs} epochs: val {r(s[epochs][0], y_val):.4f}"
                + "".join(
                    f" {k} {r(s[epochs][0][src == k], y_val[src == k]):.4f}"
                    for k in ("ss01", "ss02", "ss03")
                )
                + f" held-apart {r(s[epochs][1], y_held):.4f}",
                flush=True,
            )
        print(f"seed {seed}, 30 - 20: val {paired(s[30][0], s[20][0], y_val, rng)}")
        for k in ("ss01", "ss02", "ss03"):
            m = src == k
            print(f"  within {k}: {paired(s[30][0][m], s[20][0][m], y_val[m], rng)}")
        print(f"  held-apart: {paired(s[30][1], s[20][1], y_held, rng)}", flush=True)
    v20 = np.mean([m[0] for m in means[20]], 0)
    v30 = np.mean([m[0] for m in means[30]], 0)
    print(
        f"mean of seeds 0 and 1, 30 - 20: val {r(v30, y_val):.4f} vs {r(v20, y_val):.4f}: {paired(v30, v20, y_val, rng)}"
    )
    for held_out in ("ss01", "ss02", "ss03"):
        a = Path(f"runs/loso/{held_out}_ep30_pred.pt")
        if not a.exists():
            continue
        p30 = torch.load(a, weights_only=True)
        p20 = torch.load(f"runs/loso/{held_out}_pred.pt", weights_only=True)
        y = p20["mos"].double().numpy()
        t30, t20 = p30["towers"].double().numpy(), p20["towers"].double().numpy()
        ridge = p20["ridge"].double().numpy()
        print(
            f"{held_out} left out: towers {r(t20, y):.4f} -> {r(t30, y):.4f} {paired(t30, t20, y, rng)};"
            f" 1/2 : 1/2 with the ridge {r(0.5 * t20 + 0.5 * ridge, y):.4f} -> {r(0.5 * t30 + 0.5 * ridge, y):.4f}"
            f" {paired(0.5 * t30 + 0.5 * ridge, 0.5 * t20 + 0.5 * ridge, y, rng)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
