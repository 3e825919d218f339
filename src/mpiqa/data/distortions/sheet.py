"""A contact sheet (distortion types x levels) for a person to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mpiqa.data.distortions.kadid import DISTORTION_NAMES, N_LEVELS, distort


def contact_sheet(
    image: Image.Image,
    path: str | Path,
    distortions: Sequence[str] = DISTORTION_NAMES,
    tile: int = 128,
    seed: int = 0,
) -> Path:
    """Write a PNG grid: one row per distortion, the pristine tile then levels 1..5."""
    label_width, header = 190, 24
    clean = image.convert("RGB").resize((tile, tile), Image.BICUBIC)
    sheet = Image.new(
        "RGB", (label_width + (N_LEVELS + 1) * tile, header + len(distortions) * tile), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(["pristine", *[f"level {lv}" for lv in range(1, N_LEVELS + 1)]]):
        draw.text((label_width + col * tile + 4, 6), title, fill="black")
    for row, name in enumerate(distortions):
        top = header + row * tile
        draw.text((6, top + tile // 2 - 6), name, fill="black")
        sheet.paste(clean, (label_width, top))
        for level in range(1, N_LEVELS + 1):
            pixels = distort(clean, name, level, seed=seed)
            tile_image = Image.fromarray(np.rint(pixels * 255).astype(np.uint8))
            sheet.paste(tile_image, (label_width + level * tile, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
