"""Fit seed 0's two-view linear probe with half of it fitted within BIQ2021's sources,
exactly as pretrain_backbone does with --probe-detail 224 --probe-input 512
--probe-within 0.5, from the cached stem features of seed 0's run (the towers' 20 epochs
are not rerun; see ../native_view/fit_shipped_probe.py, the same without the sources).
Writes runs/within/probe.safetensors."""

import json
import logging
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
run, out = Path("runs/small/backbone"), Path("runs/within")
out.mkdir(parents=True, exist_ok=True)
saved = json.loads((run / "pretrain.json").read_text())
config = PretrainConfig(**saved["config"])
config.probe_detail, config.probe_input, config.probe_within = 224, 512, 0.5
notes = config.notes
split = json.loads((run / "split.json").read_text())
root = Path("/work/shared/data/biq2021")
by_key = load_dataset("biq2021", root).by_key()
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
sources = [by_key[k].source for k in split["train"]]
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
(out / "probe.json").write_text(json.dumps(summary, indent=1))
print(summary)
