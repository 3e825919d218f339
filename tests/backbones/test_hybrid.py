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


def _pooled_config(**vision) -> CLIPConfig:
    data = get_config("test-hybrid").to_dict()
    data["vision"] = {**data["vision"], "stem_stages": 3, "patch_size": 8, "stem_taps": [2, 3]}
    data["vision"].update(vision)
    return CLIPConfig.from_dict(data)


def test_fixed_grid_keeps_the_sequence_length_at_any_size():
    model = build_random_clip(_pooled_config(image_size=32, stem_grid=2, stem_pool="mean_std"))
    assert model.config.vision.token_channels == 2 * (24 + 40)
    with torch.no_grad():
        for h, w in ((32, 32), (64, 48), (96, 96)):
            assert model.visual.embed(torch.randn(1, 3, h, w)).shape == (1, 1 + 4, 64)


def test_global_statistics_are_the_whole_maps_mean_and_std():
    # With cells of equal size the cells' means and deviations give the whole map's
    # exactly: what a linear probe of globally pooled features sees.
    model = build_random_clip(_pooled_config(image_size=32, stem_grid=2, stem_pool="mean_std"))
    stem = model.visual.stem.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pixels = x * model.visual.stem_scale + model.visual.stem_shift
        full = stem(pixels, (3,))  # stage 3 alone at its own 8 x 8 grid
        stats = model.visual.global_statistics(model.visual.stem_features(x))
    channels = 24 + 40
    mean3 = full.mean(dim=(2, 3))
    std3 = full.std(dim=(2, 3), unbiased=False)
    assert torch.allclose(stats[:, 24:channels], mean3, atol=1e-5)
    assert torch.allclose(stats[:, channels + 24 :], std3, atol=1e-4)


def test_global_token_feeds_the_class_token():
    model = build_random_clip(
        _pooled_config(image_size=32, stem_grid=2, stem_pool="mean_std", global_token=True)
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.visual.embed(x)
        model.visual.stats_proj.weight.zero_()
        model.visual.stats_proj.bias.zero_()
        plain = model.visual.embed(x)
    # patch tokens unchanged, the class token depends on the image
    assert torch.allclose(tokens[:, 1:], plain[:, 1:])
    assert not torch.allclose(tokens[0, 0], tokens[1, 0])
    assert torch.allclose(plain[0, 0], plain[1, 0])


def test_pooling_options_need_taps():
    with pytest.raises(ValueError, match="need stem_taps"):
        _pooled_config(stem_taps=[], global_token=True)
    with pytest.raises(ValueError, match="stem_pool"):
        _pooled_config(stem_pool="max")


@pytest.mark.parametrize("variant", ["efficientnet-lite1", "efficientnet-lite2"])
def test_shapes_give_the_stem_variant(variant):
    config = _pooled_config(stem=variant, stem_taps=[3], stem_pool="mean_std", global_token=True)
    state = build_random_clip(config).state_dict()
    read = shapes_config(state)
    assert (read.vision.stem, read.vision.stem_stages, read.vision.stem_taps) == (variant, 3, (3,))
    assert read.vision.stem_pool == "mean_std" and read.vision.global_token
