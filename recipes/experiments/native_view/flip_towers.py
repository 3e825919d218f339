"""Test-time flips for the shipped towers: each image's score averaged over its stem maps
and their mirror image (the towers trained on randomly mirrored maps, so a second view
costs five tower passes and no stem pass), or over the stem's maps of the mirrored image
(a second stem pass: the stem is not mirror-symmetric). The probe reads global statistics,
which a mirror leaves as they are for the map flip; it keeps its shipped half. Shipped
mpiqa-small, image by image, on BIQ2021's validation part and on the held-apart synthetic
distortions (rendered at 512); paired bootstrap (1,000) of each mix against the shipped
score, over all images, within each source, and over the held-apart clean images with
their versions. Needs only the package and ../shared; writes runs/native_view/flip_towers.npz.

    python recipes/experiments/native_view/flip_towers.py
"""

import numpy as np
import torch
from shipped_parts import compare, probe_and_crop_maps, score_parts, tower_scores

from mpiqa.models.registry import create_model

torch.set_grad_enabled(False)
model = create_model("mpiqa-small").for_inference()
visual = model.backbone.visual


def parts(images):
    """Per image: the towers on the maps, on the mirrored maps, on the mirrored image's
    maps, and the probe (as shipped)."""
    out = []
    for i in range(0, len(images), 32):
        pixels = torch.cat([model.preprocess(im) for im in images[i : i + 32]])
        view = model._tower_view(pixels)
        wide = visual.stem_features(view)
        mirrored = visual.stem_features(view.flip(-1))
        probe, _ = probe_and_crop_maps(model, pixels, wide)
        out.append(
            torch.stack(
                [
                    tower_scores(model, wide),
                    tower_scores(model, wide.flip(-1)),
                    tower_scores(model, mirrored),
                    probe,
                ],
                1,
            )
        )
    return torch.cat(out).double().numpy()


val, syn = score_parts(parts, model, (0, 3), "flip_towers")


def mixes(p):
    wide, flipped_maps, mirrored_image, probe = p.T
    return {
        "shipped: ½ towers + ½ probe": 0.5 * wide + 0.5 * probe,
        "½ towers (maps + mirrored maps) + ½ probe": 0.25 * (wide + flipped_maps) + 0.5 * probe,
        "½ towers (image + mirrored image) + ½ probe": 0.25 * (wide + mirrored_image) + 0.5 * probe,
        "towers alone": wide,
        "towers alone, maps + mirrored maps": 0.5 * (wide + flipped_maps),
        "towers alone, image + mirrored image": 0.5 * (wide + mirrored_image),
    }


vm, sm = mixes(val), mixes(syn)
shipped = next(iter(vm))
compare(vm, sm, lambda name: "towers alone" if name.startswith("towers alone") else shipped)
print(
    "per image, |mirrored maps - maps| of the towers: val mean "
    f"{np.abs(val[:, 1] - val[:, 0]).mean():.4f}, mirrored image {np.abs(val[:, 2] - val[:, 0]).mean():.4f}"
)
