"""Seed 0's tower (the recipe's, runs/small/backbone) on the validation part's rated rows,
from its cached stem features: the baseline of boot.py and both_within.py."""

import json

import numpy as np
import torch

from mpiqa.backbones.factory import load_clip
from mpiqa.models.quality_levels import class_embeddings, expected_level
from mpiqa.prompts.vocab import QUALITY_TEMPLATES
from mpiqa.training.pretrain import _encode_features, quality_captions


@torch.no_grad()
def seed0_val_scores() -> tuple[np.ndarray, np.ndarray]:
    """(scores, sources) of the 1,000 validation images, in split.json's order."""
    split = json.load(open("runs/small/backbone/split.json"))
    nva = len(split["val"])
    src = np.array([n.split("/")[-1][:4] for n in split["val"]])
    va = torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
    model = load_clip("runs/small/backbone/backbone.safetensors").float().eval()
    text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    parts = [
        expected_level(
            _encode_features(model, va["features"][i : min(i + 256, nva)]),
            text,
            model.logit_scale.exp(),
        )
        for i in range(0, nva, 256)
    ]
    return torch.cat(parts).numpy(), src
