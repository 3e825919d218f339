"""prepare.py's 682 images (synthetic distortions of the 22 clean images held apart from
mpiqa-small's training) written as PNGs with a ``labels.csv`` (path, score = level target,
content = clean image), so that ``mpiqa finetune`` itself can be measured on that domain:

    python recipes/experiments/new_domain/write_folder.py runs/nd/pretrain.json runs/nd_folder
    mpiqa finetune --dataset csv --root runs/nd_folder --dataset-option content_column=content \\
        --shots 50 --rounds 10 --out runs/nd_finetune
"""

import csv
import json
import sys
from pathlib import Path

from mpiqa.data.distortions.tasks import level_quality, render
from mpiqa.training.pretrain import synthetic_items

summary = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
(out / "images").mkdir(parents=True, exist_ok=True)
items = synthetic_items(summary["config"]["notes"]["val_clean"], 30, summary["config"]["seed"] + 1)
cache: dict = {}
with open(out / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "score", "content"])
    for i, item in enumerate(items):
        name = f"images/{i:04d}.png"
        render(item, 512, cache).save(out / name)
        writer.writerow([name, f"{level_quality(item.level):.6f}", Path(item.source).stem])
print(f"{len(items)} images in {out}")
