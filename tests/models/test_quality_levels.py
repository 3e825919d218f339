"""Zero-shot expected quality level (the shipped default's readout)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mpiqa
from mpiqa.backbones.tokenizer import tokenize
from mpiqa.models.quality_levels import QualityLevelsIQA


def test_expected_level_by_hand():
    model = mpiqa.create_model("quality-levels", backbone="test-tiny", weights="random")
    assert isinstance(model, QualityLevelsIQA)
    clip = model.backbone
    words = ["bad", "poor", "fair", "good", "perfect"]
    templates = ["a {} photo.", "{} photo.", "{} quality."]
    with torch.no_grad():
        levels = []
        for word in words:
            tokens = tokenize([t.format(word) for t in templates], clip.context_length)
            levels.append(
                F.normalize(F.normalize(clip.encode_text(tokens), dim=-1).mean(0), dim=-1)
            )
        text = torch.stack(levels)
        pixels = torch.randn(3, 3, model.image_size, model.image_size)
        image = F.normalize(clip.encode_image(pixels), dim=-1)
        probs = (clip.logit_scale.exp() * image @ text.t()).softmax(-1)
        expected = probs @ torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
        got = model(pixels)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert bool(((got >= 0) & (got <= 1)).all())


def test_an_ensemble_refuses_a_head_with_another_stem():
    import pytest

    from mpiqa.backbones import build_random_clip
    from mpiqa.models.quality_levels import LevelHead

    first, other = (
        build_random_clip("test-hybrid", seed=0),
        build_random_clip("test-hybrid", seed=1),
    )
    with pytest.raises(ValueError, match="stem differs"):
        QualityLevelsIQA(first, extra_heads=[LevelHead.from_backbone(other)])
    other.visual.stem.load_state_dict(first.visual.stem.state_dict())
    model = QualityLevelsIQA(first, extra_heads=[LevelHead.from_backbone(other)])
    assert model.extra_heads[0].visual.stem is first.visual.stem


@pytest.mark.parametrize("eight_bit", [True, False])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_resize_like_pillow_is_pillows_bicubic_resize(eight_bit, dtype):
    import numpy as np
    from PIL import Image

    from mpiqa.models.quality_levels import resize_like_pillow

    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 61)[None, :, None] * np.ones((47, 61, 3))
    images = [rng.integers(0, 256, (47, 61, 3)), (smooth + rng.normal(0, 20, smooth.shape))]
    for array in images:
        array = array.clip(0, 255).round().astype(np.uint8)
        expected = np.array(Image.fromarray(array).resize((40, 29), Image.BICUBIC))
        pixels = torch.from_numpy(array).permute(2, 0, 1)[None].to(dtype)
        out = resize_like_pillow(pixels, (29, 40), eight_bit=eight_bit)
        assert out.shape == (1, 3, 29, 40) and out.dtype == dtype
        diff = (out[0].permute(1, 2, 0).float() - torch.from_numpy(expected).float()).abs()
        assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())


def test_the_towers_view_is_the_8bit_resize_of_the_input_in_any_chunking(monkeypatch):
    from mpiqa.backbones import build_random_clip
    from mpiqa.data.transforms import normalize_uint8
    from mpiqa.models import quality_levels
    from mpiqa.models.quality_levels import LinearProbe, resize_like_pillow

    clip = build_random_clip("test-hybrid", seed=0)
    size, width = clip.image_size, 2 * clip.config.vision.token_channels
    ones = torch.ones(width)
    probe = LinearProbe(0 * ones, ones, 0 * ones, torch.tensor([0.5]), size // 2, 2 * size)
    model = QualityLevelsIQA(clip, probe=probe)
    raw = torch.randint(
        0, 256, (5, 3, 2 * size, 2 * size), generator=torch.Generator().manual_seed(0)
    )
    raw = raw.to(torch.uint8)
    pixels = normalize_uint8(raw)
    expected = normalize_uint8(resize_like_pillow(raw, (size, size)))
    for chunk in (1, 2, 8):  # one image, batches split unevenly, one pass
        monkeypatch.setattr(quality_levels, "_CPU_VIEW_CHUNK", chunk)
        view = model._tower_view(pixels)
        assert view.shape == (5, 3, size, size) and view.is_contiguous()
        torch.testing.assert_close(view, expected, atol=1e-6, rtol=0)
