"""The shipped towers also on the probe's crop view (the centre 224 crop at 512, whose stem
maps the model computes anyway), averaged with their 384 view: a test-time second view
for the towers. Scores the shipped mpiqa-small's parts image by image on BIQ2021's
validation part and on the held-apart synthetic distortions (rendered at 512), then the
paired bootstrap (1,000) of each mix against the shipped score, over all images, within
each source, and over the held-apart clean images with their versions. Needs only the
package and ../shared; writes runs/native_view/crop_towers.npz (2026-12-01, not adopted)."""

import torch
from shipped_parts import compare, probe_and_crop_maps, score_parts, tower_scores

from mpiqa.models.registry import create_model

torch.set_grad_enabled(False)
model = create_model("mpiqa-small").for_inference()
visual = model.backbone.visual


def parts(images):
    """Per image: the towers on the 384 view, the towers on the crop view, the probe."""
    out = []
    for i in range(0, len(images), 32):
        pixels = torch.cat([model.preprocess(im) for im in images[i : i + 32]])
        wide = visual.stem_features(model._tower_view(pixels))
        probe, fine = probe_and_crop_maps(model, pixels, wide)
        out.append(torch.stack([tower_scores(model, wide), tower_scores(model, fine), probe], 1))
    return torch.cat(out).double().numpy()


val, syn = score_parts(parts, model, (0, 2), "crop_towers")


def mixes(p):
    wide, fine, probe = p.T
    return {
        "shipped: ½ towers(384) + ½ probe": 0.5 * wide + 0.5 * probe,
        "¼ towers(384) + ¼ towers(crop) + ½ probe": 0.25 * wide + 0.25 * fine + 0.5 * probe,
        "⅓ each": (wide + fine + probe) / 3,
        "towers(384) alone": wide,
        "towers(crop) alone": fine,
    }


vm, sm = mixes(val), mixes(syn)
shipped = next(iter(vm))
compare(vm, sm, lambda name: shipped)
