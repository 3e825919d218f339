"""Zero-shot expected quality level (the shipped default's readout)."""

from __future__ import annotations

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
