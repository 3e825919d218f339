"""Global stem statistics of a second view for every row of seed 0's cached training and
validation features (same order): VIEW is
  cropN   - the centre N x N crop (crop224, crop160) of the image at 512 scale (shorter side resized to 512
            -- native for BIQ2021's 512 x 512 JPEGs; synthetic rows rendered at 512),
  full512 - the whole image at 512 x 512.
Writes runs/native_view/VIEW.pt with xtr / xva (float64 global statistics)."""

import json
import sys
import time
from pathlib import Path

import torch

from mpiqa.data.distortions.tasks import render
from mpiqa.data.files import discover_images
from mpiqa.data.images import load_image
from mpiqa.data.transforms import center_crop, normalize, resize_shorter_side, to_tensor
from mpiqa.models.registry import create_model
from mpiqa.training.pretrain import _inference_stem, synthetic_items

torch.set_grad_enabled(False)
view = sys.argv[1]
root = Path("/work/shared/data/biq2021")
run = json.loads(Path("runs/small/backbone/pretrain.json").read_text())
split = json.loads(Path("runs/small/backbone/split.json").read_text())
notes = run["config"]["notes"]
clean_all = [str(f) for f in discover_images(notes["clean"], recursive=True).files]
val_clean = notes["val_clean"]
clean = [c for c in clean_all if c not in set(val_clean)]
items = synthetic_items(clean, 30, 0)
val_items = synthetic_items(val_clean, 30, 1)
assert len(items) == 2728 and len(val_items) == 682

visual = _inference_stem(create_model("mpiqa-small").backbone)


def finish(image):
    if view.startswith("crop"):
        return center_crop(image, int(view[4:]))
    if view == "check384":  # must reproduce the cached statistics
        return center_crop(resize_shorter_side(image, 384), 384)
    return image


def rows(paths, synthetic):
    cache = {}
    for p in paths:
        yield finish(center_crop(resize_shorter_side(load_image(root / p), 512), 512))
    for item in synthetic:
        yield finish(render(item, 512, cache if item.level == 0 else None))


def stats(paths, synthetic):
    out, batch, t = [], [], time.perf_counter()
    n = len(paths) + len(synthetic)
    for i, im in enumerate(rows(paths, synthetic)):
        batch.append(normalize(to_tensor(im)))
        if len(batch) == 4 or i == n - 1:
            x = torch.stack(batch).contiguous(memory_format=torch.channels_last)
            out.append(visual.global_statistics(visual.stem_features(x)).double())
            batch = []
        if i % 1000 == 0:
            print(view, i, n, round(time.perf_counter() - t), flush=True)
    return torch.cat(out)


Path("runs/native_view").mkdir(exist_ok=True)
xtr = stats(split["train"], items)
xva = stats(split["val"], val_items)
torch.save({"xtr": xtr, "xva": xva}, f"runs/native_view/{view}.pt")
