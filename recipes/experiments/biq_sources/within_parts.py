"""The scores that within_probe.py saves for share_within.py and both_within.py: per part,
(towers, {probe variant: scores}, targets). Stored as tensors so that they load with
weights_only=True; handed back as numpy arrays."""

import numpy as np
import torch

PATH = "runs/within_probe_parts.pt"


def save_parts(parts: dict) -> None:
    t = torch.from_numpy
    torch.save(
        {k: (t(tw), {n: t(p) for n, p in ps.items()}, t(y)) for k, (tw, ps, y) in parts.items()},
        PATH,
    )


def load_parts() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
    saved = torch.load(PATH, weights_only=True)
    return {
        k: (tw.numpy(), {n: p.numpy() for n, p in ps.items()}, y.numpy())
        for k, (tw, ps, y) in saved.items()
    }
