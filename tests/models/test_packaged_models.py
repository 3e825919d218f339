"""The shipped models (mpiqa-small, the default, and mpiqa-tiny): load offline from the
package and rank obvious damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpiqa.backbones import load_clip
from mpiqa.backbones.pretrained import get_pretrained, packaged_path, sha256_of
from mpiqa.models import create_model
from mpiqa.models.registry import DEFAULT_MODEL

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PACKAGED = ["mpiqa-small", "mpiqa-tiny"]


@pytest.fixture(scope="module", params=PACKAGED)
def model(request):
    return create_model(request.param).for_inference()


def test_default_is_the_newest():
    assert DEFAULT_MODEL == "mpiqa-small"


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_files_are_registered_and_small(name):
    entry = get_pretrained(name)
    assert entry is not None and entry.packaged and entry.tag == "mpiqa"
    backbone = packaged_path(entry.file)
    assert sha256_of(backbone) == entry.sha256
    total = sum(f.stat().st_size for f in backbone.parent.glob(f"{name}.*")) + sum(
        f.stat().st_size for f in backbone.parent.glob(f"{name}-*")
    )
    assert total <= 60 * 2**20
    assert packaged_path(f"{name}-split.json").is_file()  # which images trained it
    if name == "mpiqa-tiny":  # a prompt model: its checkpoint names the backbone
        meta = json.loads(packaged_path(f"{name}.json").read_text())
        # no path of the machine that trained it
        assert meta["backbone"] == {
            "arch": name, "weights": None, "seed": 0, "sha256": entry.sha256,
        }  # fmt: skip


@pytest.mark.parametrize("name", PACKAGED)
def test_backbone_loads_by_name_offline(name):
    # the test session sets MPIQA_OFFLINE=1 and an empty cache
    assert load_clip(name).config.vision.stem == "efficientnet-lite0"


def test_no_distortion_column_without_distortion_labels(model):
    # trained on BIQ2021 (no distortion labels): no confident guesses by default
    assert model.extra_columns == ()


def test_default_reads_out_what_its_backbone_was_pretrained_with():
    from mpiqa.models.quality_levels import QualityLevelsIQA, class_embeddings
    from mpiqa.training.pretrain import quality_captions

    model = create_model(DEFAULT_MODEL)
    assert isinstance(model, QualityLevelsIQA) and model.backbone.image_size == 384
    # the probe's finer view, a centre 224 crop of the 512 input the towers see resized
    assert (model.image_size, model.probe.detail, model.probe.input_size) == (512, 224, 512)
    with torch.no_grad():
        pretrain_text = class_embeddings(model.backbone, quality_captions(), 3)
    assert torch.allclose(model.level_text, pretrain_text, atol=1e-6)
    # four more seeds' towers, on the very same stem (run once), each with its own texts
    assert len(model.extra_heads) == 4
    assert all(h.visual.stem is model.backbone.visual.stem for h in model.extra_heads)
    assert not torch.allclose(model.extra_heads[0].level_text, model.level_text, atol=1e-3)
    assert get_pretrained("mpiqa-small-heads").sha256 == sha256_of(
        packaged_path("mpiqa-small-heads.safetensors")
    )


def test_folded_stem_scores_as_the_trained_one():
    names = [str(EXAMPLES / n) for n in ("chelsea.jpg", "chelsea_blur.jpg", "coffee.jpg")]
    plain = create_model(DEFAULT_MODEL).score(names)
    folded = create_model(DEFAULT_MODEL).for_inference().score(names)
    assert torch.allclose(plain, folded, atol=1e-4)


def test_scores_examples_in_range(model):
    paths = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    scores = model.score(paths)
    assert scores.shape == (len(paths),)
    assert bool(((scores >= 0) & (scores <= 1)).all())


def test_clean_photo_beats_its_damaged_versions(model):
    names = ["chelsea.jpg", "chelsea_blur.jpg", "chelsea_noise.jpg", "chelsea_jpeg_q8.jpg"]
    clean, *damaged = model.score([str(EXAMPLES / n) for n in names]).tolist()
    assert all(clean > d for d in damaged), (clean, damaged)


@pytest.mark.parametrize("name", PACKAGED)
def test_refuses_other_backbones(name):
    with pytest.raises(ValueError, match="ships its own weights"):
        create_model(name, backbone="ViT-B-32")


def test_differentiable_score_is_the_score_with_a_useful_gradient(model):
    """The same values as score(); the gradient finite (a cell's constant channel used to
    give NaN through its deviation's square root) and pointing uphill."""
    _assert_uphill(model)


def test_the_towers_pass_a_gradient_through_their_8bit_view():
    """mpiqa-small's towers read an 8-bit resize of the input: without the probe, a
    gradient reaches the pixels only past that rounding (straight through)."""
    model = create_model(DEFAULT_MODEL).for_inference()
    model.probe_share = 0.0
    _assert_uphill(model)


def _assert_uphill(model):
    """A step of one grey level along the gradient's sign raises each image's score, and
    against it lowers it."""
    images = [Image.open(EXAMPLES / n).convert("RGB").resize((384, 320)) for n in
              ("chelsea_blur.jpg", "coffee.jpg")]  # fmt: skip
    pixels = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
    pixels = (pixels.float() / 255).requires_grad_(True)
    scores = model.differentiable_score(pixels)
    assert scores.requires_grad
    assert torch.allclose(scores.detach(), model.score(pixels.detach()), atol=1e-5)
    scores.sum().backward()
    step = pixels.grad.sign() / 255
    assert torch.isfinite(pixels.grad).all() and step.abs().sum() > 0
    up = model.score((pixels + step).clamp(0, 1).detach())
    down = model.score((pixels - step).clamp(0, 1).detach())
    assert (up > scores.detach()).all() and (down < scores.detach()).all(), (scores, up, down)
