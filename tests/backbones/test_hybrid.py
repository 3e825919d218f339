"""Hybrid image towers: a convolutional stem whose feature-map cells are the tokens."""

from __future__ import annotations

import pytest
import torch

from mpiqa.backbones import get_config, load_clip
from mpiqa.backbones.config import CLIPConfig
from mpiqa.backbones.convert import embedded_config, shapes_config
from mpiqa.backbones.factory import build_random_clip
from mpiqa.training.pretrain import save_backbone


def test_hybrid_forward_and_full_resolution():
    model = build_random_clip("test-hybrid")
    with torch.no_grad():
        assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 32)
        # other sizes: more cells, positional embedding resized
        assert model.encode_image(torch.randn(1, 3, 48, 40)).shape == (1, 32)
        tokens = model.visual.embed(torch.randn(1, 3, 48, 40))
    assert tokens.shape == (1, 1 + 12 * 10, 64)


def test_stem_features_split_equals_embed():
    model = build_random_clip("test-hybrid")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        split = model.visual.embed_features(model.visual.stem_features(x))
        assert torch.allclose(split, model.visual.embed(x))


def test_config_validation():
    data = get_config("test-hybrid").to_dict()
    data["vision"] = dict(data["vision"], patch_size=8)
    with pytest.raises(ValueError, match="stride"):
        CLIPConfig.from_dict(data)
    data["vision"] = dict(data["vision"], patch_size=4, stem_taps=[3])
    with pytest.raises(ValueError, match="stem_taps"):
        CLIPConfig.from_dict(data)


@pytest.mark.parametrize("half", [False, True])
def test_saved_backbone_round_trips(tmp_path, half):
    model = build_random_clip("mpiqa-tiny", seed=3)
    path = save_backbone(tmp_path / "b.safetensors", model, {"arch": "mpiqa-tiny"}, half=half)
    assert embedded_config(path) == model.config
    loaded = load_clip(path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a, b = model.encode_image(x), loaded.encode_image(x)
    assert torch.allclose(a, b, atol=5e-2 if half else 1e-5)
    for name, tensor in loaded.state_dict().items():
        expected = model.state_dict()[name]
        expected = expected.half().float() if half and expected.is_floating_point() else expected
        assert torch.equal(tensor, expected.to(tensor.dtype)), name


def test_shapes_alone_give_the_stem():
    state = build_random_clip("test-hybrid").state_dict()
    config = shapes_config(state)
    assert (config.vision.stem, config.vision.stem_stages, config.vision.patch_size) == (
        "efficientnet-lite0",
        2,
        4,
    )
