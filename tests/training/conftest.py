"""A synthetic task whose quality is a known function of the image: blur level."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpiqa.data.distortions import distort


def make_blur_task(root, n_contents: int = 40, size: int = 48, seed: int = 0):
    """Clean textured images blurred at levels 0..5; score = 1 - level / 6; content =
    the clean image, so splits keep each one on one side."""
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_contents):
        base = rng.random((8, 8, 3))
        img = (
            np.asarray(
                Image.fromarray((base * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
            )
            / 255
        )
        img = np.clip(img + 0.15 * rng.standard_normal(img.shape), 0, 1)
        for level in range(6):
            out = img if level == 0 else distort(img, "gaussian_blur", level, seed=i)
            name = f"c{i:02d}_L{level}.png"
            Image.fromarray((out * 255 + 0.5).astype(np.uint8)).save(root / "imgs" / name)
            rows.append((name, 1 - level / 6, f"c{i:02d}"))
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "score", "content"])
        writer.writerows(rows)
    return root


def own_label_file(root, score_column: str, score) -> Path:
    """The blur task at ``root`` labelled as a user would: ``root/mine.csv`` with columns
    ``file`` (paths relative to it) and ``score_column``, each score ``score(task score)``."""
    with open(root / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    with open(root / "mine.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", score_column])
        writer.writerows((f"imgs/{r['path']}", score(float(r["score"]))) for r in rows)
    return root / "mine.csv"


@pytest.fixture(scope="session")
def blur_task(tmp_path_factory):
    return make_blur_task(tmp_path_factory.mktemp("blur_task"))
