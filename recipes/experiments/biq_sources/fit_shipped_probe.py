"""Fit seed 0's linear probe exactly as pretrain_backbone now does, from the cached stem
features of seed 0's run (the same FeatureSets cached_features returns), without
re-running the towers' 20 epochs."""

import json
import logging
from pathlib import Path

import torch

from mpiqa.backbones.factory import load_clip
from mpiqa.training.pretrain import FeatureSet, PretrainConfig, _fit_and_save_probe

logging.basicConfig(level=logging.INFO, format="%(message)s")
run = Path("runs/small/backbone")
config = PretrainConfig(
    **{k: v for k, v in json.loads((run / "pretrain.json").read_text())["config"].items()}
)
train = FeatureSet(
    **torch.load("runs/feature-cache/stem-features-b1f3870363564ed85a6b.pt", weights_only=True)
)
val = FeatureSet(
    **torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
)
model = load_clip(run / "backbone.safetensors").float().eval()
print(_fit_and_save_probe(model, train, val, config, run))
