"""Fit seed 0's linear probe with its finer view (centre 224 crop at 512) exactly as
pretrain_backbone does with --probe-detail 224 --probe-input 512, from the cached stem
features of seed 0's run (the towers' 20 epochs are not rerun). Writes
runs/small/backbone/probe.safetensors (the file the recipe's run would write).

`fit_shipped_probe.py WITHIN OUT` (the sixth version: `0.5 runs/within`) fits it as
`--probe-within WITHIN` does (that share of it fitted within BIQ2021's sources), and writes
OUT/probe.safetensors and OUT/probe.json instead."""

import json
import logging
import sys
from pathlib import Path

import torch

from mpiqa.backbones.factory import load_clip
from mpiqa.data.datasets import load_dataset
from mpiqa.data.files import discover_images
from mpiqa.training.pretrain import (
    FeatureSet,
    PretrainConfig,
    _fit_and_save_probe,
    cached_features,
    synthetic_items,
)

logging.basicConfig(level=logging.INFO, format="%(message)s")
run = Path("runs/small/backbone")
within, out = (float(sys.argv[1]), Path(sys.argv[2])) if len(sys.argv) > 2 else (0.0, run)
out.mkdir(parents=True, exist_ok=True)
saved = json.loads((run / "pretrain.json").read_text())
config = PretrainConfig(**saved["config"])
config.probe_detail, config.probe_input, config.probe_within = 224, 512, within
notes = config.notes
split = json.loads((run / "split.json").read_text())
root = Path("/work/shared/data/biq2021")
train = FeatureSet(
    **torch.load("runs/feature-cache/stem-features-b1f3870363564ed85a6b.pt", weights_only=True)
)
val = FeatureSet(
    **torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
)
# the rated rows in the cache's order, with the MOS the cache holds
rated = [
    (str(root / k), float(m))
    for k, m in zip(split["train"], train.mos[:4000].tolist(), strict=True)
]
sources = [r.source for r in load_dataset("biq2021", root).subset(split["train"])]
val_rated = [
    (str(root / k), float(m)) for k, m in zip(split["val"], val.mos[:1000].tolist(), strict=True)
]
clean_all = [str(f) for f in discover_images(notes["clean"], recursive=True).files]
held = set(notes["val_clean"])
items = synthetic_items([c for c in clean_all if c not in held], config.synthetic_per_image, 0)
val_items = synthetic_items(notes["val_clean"], config.synthetic_per_image, 1)
model = load_clip(run / "backbone.safetensors").float().eval()
detail = tuple(
    cached_features("runs/feature-cache", model, rows, its, 512, config.stem_weights, 0, crop=224)
    for rows, its in ((rated, items), (val_rated, val_items))
)
summary = _fit_and_save_probe(model, train, val, config, out, detail, sources)
if out != run:
    (out / "probe.json").write_text(json.dumps(summary, indent=1))
print(summary)
