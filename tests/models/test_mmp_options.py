"""Options of the prompt model: the two readouts (per-family softmaxes averaged, or
LIQE's joint one), and GRMP-IQA's prompt dropout and prompt_norm."""

from __future__ import annotations

import pytest
import torch

from mpiqa.backbones.factory import build_random_clip
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA


def _predict(families, readout):
    torch.manual_seed(0)
    config = MMPConfig(families=families, visual_depth=1, visual_tokens=2, readout=readout)
    model = MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), config).eval()
    with torch.no_grad():
        return model.predict(torch.randn(4, 3, 32, 32))


def test_one_family_reads_the_same_either_way():
    a, b = _predict(("distortion",), "family-mean"), _predict(("distortion",), "joint")
    torch.testing.assert_close(a.score, b.score)
    torch.testing.assert_close(a.distortion, b.distortion)


def test_joint_readout_is_one_softmax_over_all_families():
    joint = _predict(("scene", "distortion"), "joint")
    mean = _predict(("scene", "distortion"), "family-mean")
    torch.testing.assert_close(joint.quality.sum(-1), torch.ones(4))
    torch.testing.assert_close(joint.scene.sum(-1), torch.ones(4))
    assert not torch.allclose(joint.score, mean.score)


def test_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="readout"):
        MMPConfig(readout="sum")


def _model(**options) -> MultiModalPromptIQA:
    torch.manual_seed(0)
    config = MMPConfig(families=("quality",), visual_depth=2, visual_tokens=2, **options)
    return MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), config)


def test_prompt_dropout_acts_only_while_training():
    model = _model(visual_prompt_dropout=0.5, visual_projection=True)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.predict(pixels).score, model.predict(pixels).score)
        model.train()
        torch.manual_seed(1)
        a = model.predict(pixels).score
        torch.manual_seed(2)
        assert not torch.equal(a, model.predict(pixels).score)


def test_prompt_norm_trains_and_keeps_the_cached_forward_exact():
    model = _model(visual_prompt_norm=True).eval()
    names = {n for n, _ in model.trainable_parameters()}
    assert {"prompt_norm.weight", "prompt_norm.bias"} <= names
    with torch.no_grad():
        # a uniform scale would vanish in the tower's own final norm; a bias does not
        model.prompt_norm.bias.add_(0.5 * torch.randn_like(model.prompt_norm.bias))
        pixels = torch.randn(2, 3, 32, 32)
        full = model.predict(pixels).score
        for blocks in (0, 1, 2):
            cached = model.predict_image_tokens(model.image_tokens(pixels, blocks), blocks).score
            torch.testing.assert_close(cached, full)
        assert not torch.allclose(full, _model().eval().predict(pixels).score)
    frozen = _model(visual_prompt_norm=True, train_visual_prompts=False)
    assert not any("prompt_norm" in n for n, _ in frozen.trainable_parameters())


def test_options_must_be_a_mapping_of_known_names():
    with pytest.raises(ValueError, match="model options must be a mapping, got str"):
        MMPConfig.from_dict("garbage")
    with pytest.raises(ValueError, match=r"unknown model option\(s\): \['colour'\]"):
        MMPConfig.from_dict({"colour": 1})
