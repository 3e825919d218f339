"""Score images with a model from `mpiqa export --out model.onnx`, without mpiqa.

Needs only numpy, Pillow and onnxruntime; the preprocessing is read from the file's
own metadata (`mpiqa export` writes it), so this works for any exported model whose
preprocess mode is `center` (the shipped models').

    python score_onnx.py model.onnx photo.jpg [photo2.png ...]   # prints path,score rows

It decodes images at full size, as `mpiqa score --full-decode` does; see the README's
"Export" section for how close its scores come to `mpiqa score`'s. It is meant for
8-bit photos (JPEG, 8-bit PNG, ...): Pillow's conversion of 16-bit and floating-point
images to RGB clips them, where `mpiqa score` rescales them to 8 bits.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from PIL import Image, ImageOps


def preprocess(image: Image.Image, meta: dict) -> np.ndarray:
    """One RGB image -> the (1, 3, S, S) float32 ``pixels`` the exported file takes."""
    pre, norm = meta["input"]["preprocess"], meta["input"]["normalize"]
    if pre["mode"] != "center":
        raise ValueError(f"preprocess mode {pre['mode']!r} is not handled here")
    if "squash_to" in pre:
        side = pre["squash_to"]
        if image.size != (side, side):
            image = image.resize((side, side), Image.BICUBIC)
    else:
        width, height = image.size
        cap = pre["max_aspect"] * min(width, height)
        if width > cap:  # very long images: their centre, at most max_aspect : 1
            left = (width - cap) // 2
            image = image.crop((left, 0, left + cap, height))
        elif height > cap:
            top = (height - cap) // 2
            image = image.crop((0, top, width, top + cap))
        width, height = image.size
        side = pre["resize_shorter_side"]
        long = int(side * max(width, height) / min(width, height))
        size = (side, long) if width <= height else (long, side)
        if size != (width, height):
            image = image.resize(size, Image.BICUBIC)
    crop = pre["center_crop"]
    left = int(round((image.width - crop) / 2.0))
    top = int(round((image.height - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    x = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    x = (x - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def load(path: str) -> Image.Image:
    """The image upright (EXIF orientation applied) in RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def main(model_path: str, paths: list[str]) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["mpiqa"])
    for path in paths:
        (score,) = session.run(None, {"pixels": preprocess(load(path), meta)})
        print(f"{path},{float(score[0]):.6f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
