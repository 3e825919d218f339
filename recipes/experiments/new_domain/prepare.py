"""mpiqa-small's parts on a domain unlike BIQ2021: the 682 synthetic distortions of the 22
clean images held apart from its training (seed 0's ``val_clean``), rendered at 512 as
`recipes/synthetic_check.py --size 512` renders them. Writes, per image: the shipped score,
the towers' mean, the shipped probe's output, its standardised statistics (both views),
the level target and the clean image it came from (runs/new_domain/feats.pt).

    python recipes/experiments/new_domain/prepare.py runs/rebuild/seed0/pretrain.json
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

import mpiqa
from mpiqa.data.distortions.tasks import level_quality, render
from mpiqa.training.pretrain import synthetic_items

mpiqa.tune_malloc()
summary = json.loads(Path(sys.argv[1]).read_text())
clean = summary["config"]["notes"]["val_clean"]
items = synthetic_items(clean, 30, summary["config"]["seed"] + 1)
model = mpiqa.create_model("mpiqa-small").for_inference()
visual, probe = model.backbone.visual, model.probe
rows = {k: [] for k in ("score", "towers", "probe", "z")}
cache: dict = {}
with torch.no_grad():
    for begin in range(0, len(items), 16):
        images = [render(item, 512, cache) for item in items[begin : begin + 16]]
        pixels = torch.cat([model.preprocess(im) for im in images])
        features = visual.stem_features(model._tower_view(pixels))
        image = visual.pool(visual.transformer(visual.embed_features(features), keep=1))
        heads = [
            mpiqa.models.quality_levels._readout(
                image, model.level_text, model.backbone.logit_scale
            )
        ]
        heads += [head(features) for head in model.extra_heads]
        towers = torch.stack(heads).mean(0)
        side = probe.detail
        top = (pixels.shape[-1] - side) // 2
        crop = pixels[..., top : top + side, top : top + side]
        stats = torch.cat(
            [
                visual.global_statistics(features),
                visual.global_statistics(visual.stem_features(crop)),
            ],
            1,
        )
        rows["z"].append((stats.float() - probe.mean) / probe.std)
        rows["probe"].append(probe(stats))
        rows["towers"].append(towers)
        rows["score"].append(model(pixels))
        print(begin, end="\r", flush=True)
out = {k: torch.cat(v).double() for k, v in rows.items()}
out["y"] = torch.tensor([level_quality(i.level) for i in items], dtype=torch.float64)
out["content"] = [i.source for i in items]  # plain strings: the file loads with weights_only=True
mix = (1 - model.probe_share) * out["towers"] + model.probe_share * out["probe"]
assert torch.allclose(mix.clamp(0, 1), out["score"], atol=1e-4)  # the parts add up
Path("runs/new_domain").mkdir(parents=True, exist_ok=True)
torch.save(out, "runs/new_domain/feats.pt")
print(
    f"{len(items)} images; zero-shot SRCC {np.corrcoef(np.argsort(np.argsort(out['score'])), np.argsort(np.argsort(out['y'])))[0, 1]:.4f}"
)
