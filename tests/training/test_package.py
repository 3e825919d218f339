"""Packaging a trained run as a shipped model."""

from __future__ import annotations

import json

import pytest

from mpiqa.backbones.factory import build_random_clip
from mpiqa.backbones.pretrained import sha256_of
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.checkpoint import load_checkpoint, save_checkpoint
from mpiqa.training.package import package_model
from mpiqa.training.pretrain import save_backbone


def test_package_copies_rewrites_and_registers(tmp_path):
    backbone = build_random_clip("test-hybrid", seed=2)
    backbone_file = save_backbone(
        tmp_path / "run/backbone.safetensors", backbone, {"arch": "test-hybrid"}
    )
    model = MultiModalPromptIQA(backbone, MMPConfig(families=("quality",), visual_depth=2))
    info = {
        "arch": "test-hybrid",
        "weights": str(backbone_file),
        "seed": 0,
        "sha256": sha256_of(backbone_file),
    }
    config = {
        "backbone": {"weights": str(backbone_file)},
        "data": {"split_file": "/somewhere/split.json"},
    }
    checkpoint = save_checkpoint(tmp_path / "run/best.safetensors", model, info, {"config": config})
    (tmp_path / "run/split.json").write_text(json.dumps({"train": ["a.png"]}))
    registry = tmp_path / "pretrained.json"
    registry.write_text(json.dumps({"ViT-B-32": {"openai": {"file": "x", "sha256": "y"}}}))
    weights = tmp_path / "weights"
    entry = package_model(backbone_file, checkpoint, "test-hybrid", weights, registry)
    table = json.loads(registry.read_text())
    assert table["test-hybrid"] == {"mpiqa": entry} and "ViT-B-32" in table
    assert entry["sha256"] == sha256_of(weights / "test-hybrid-backbone.safetensors")
    meta = json.loads((weights / "test-hybrid.json").read_text())
    assert meta["backbone"]["weights"] is None and meta["backbone"]["sha256"] == entry["sha256"]
    assert "/" not in json.dumps(meta["config"]["backbone"]) + json.dumps(
        meta["config"]["data"]["split_file"]
    )
    assert json.loads((weights / "test-hybrid-split.json").read_text())["train"] == ["a.png"]
    # the packaged checkpoint still loads, given its backbone file
    loaded = load_checkpoint(
        weights / "test-hybrid.safetensors",
        weights=str(weights / "test-hybrid-backbone.safetensors"),
    )
    assert loaded.config == model.config


def test_package_refuses_a_foreign_backbone(tmp_path):
    backbone = save_backbone(
        tmp_path / "b.safetensors", build_random_clip("test-hybrid"), {"arch": "test-hybrid"}
    )
    with pytest.raises(ValueError, match="mpiqa-tiny"):
        package_model(
            backbone, tmp_path / "best.safetensors", "mpiqa-tiny", tmp_path, tmp_path / "r.json"
        )


def test_package_a_zero_shot_model_ships_the_backbone_alone(tmp_path):
    backbone_file = save_backbone(
        tmp_path / "run/backbone.safetensors", build_random_clip("test-hybrid"),
        {"arch": "test-hybrid"},
    )  # fmt: skip
    (tmp_path / "run/split.json").write_text(json.dumps({"val": ["b.png"]}))
    registry = tmp_path / "pretrained.json"
    registry.write_text("{}")
    weights = tmp_path / "weights"
    entry = package_model(backbone_file, None, "test-hybrid", weights, registry)
    assert sorted(p.name for p in weights.iterdir()) == [
        "test-hybrid-backbone.safetensors", "test-hybrid-split.json",
    ]  # fmt: skip
    assert json.loads(registry.read_text())["test-hybrid"]["mpiqa"] == entry


@pytest.fixture
def packaged_seeds(tmp_path):
    """test-hybrid backbone files of seeds 2, 3, 4 sharing the first one's stem (as
    pretraining with a frozen stem makes them), the first packaged: (files, weights dir,
    registry)."""
    models = [build_random_clip("test-hybrid", seed=s) for s in (2, 3, 4)]
    for other in models[1:]:
        other.visual.stem.load_state_dict(models[0].visual.stem.state_dict())
    files = [
        save_backbone(tmp_path / f"run{i}/backbone.safetensors", m, {"arch": "test-hybrid"})
        for i, m in enumerate(models)
    ]
    registry = tmp_path / "pretrained.json"
    registry.write_text("{}")
    weights = tmp_path / "weights"
    package_model(files[0], None, "test-hybrid", weights, registry)
    return files, weights, registry


def test_ensemble_heads_are_packaged_and_score_as_the_mean_of_their_models(packaged_seeds):
    import torch

    from mpiqa.backbones.factory import load_clip
    from mpiqa.models.quality_levels import QualityLevelsIQA, load_level_heads
    from mpiqa.training.package import package_heads

    files, weights, registry = packaged_seeds
    entry = package_heads(files[1:], "test-hybrid", weights, registry)
    assert json.loads(registry.read_text())["test-hybrid-heads"] == {"mpiqa": entry}
    clip = load_clip(weights / "test-hybrid-backbone.safetensors")
    ensemble = QualityLevelsIQA(
        clip, extra_heads=load_level_heads(weights / "test-hybrid-heads.safetensors", clip)
    ).for_inference()
    singles = [QualityLevelsIQA(load_clip(f)).for_inference() for f in files]
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.stack([m(pixels) for m in singles]).mean(0)
        assert torch.allclose(ensemble(pixels), expected, atol=1e-5)
        assert not torch.allclose(singles[0](pixels), expected, atol=1e-4)  # members differ


def test_heads_with_another_stem_or_format_are_refused(packaged_seeds, tmp_path):
    from mpiqa.backbones.convert import CheckpointError
    from mpiqa.backbones.factory import load_clip
    from mpiqa.models.quality_levels import load_level_heads
    from mpiqa.training.package import package_heads

    files, weights, registry = packaged_seeds
    stranger = save_backbone(
        tmp_path / "x/backbone.safetensors", build_random_clip("test-hybrid", seed=9),
        {"arch": "test-hybrid"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="its stem differs"):
        package_heads([stranger], "test-hybrid", weights, registry)
    with pytest.raises(CheckpointError, match="not an mpiqa heads file"):
        load_level_heads(files[1], load_clip(files[0]))


def test_a_packaged_probe_is_averaged_with_the_towers(packaged_seeds, tmp_path):
    import torch

    from mpiqa.backbones.convert import CheckpointError
    from mpiqa.backbones.factory import load_clip
    from mpiqa.models.quality_levels import LinearProbe, QualityLevelsIQA, load_linear_probe
    from mpiqa.training.package import package_probe
    from mpiqa.training.probe import save_probe

    files, weights, registry = packaged_seeds
    clip = load_clip(weights / "test-hybrid-backbone.safetensors")
    channels = clip.config.vision.token_channels
    g = torch.Generator().manual_seed(0)
    probe = LinearProbe(
        torch.randn(channels, generator=g), torch.rand(channels, generator=g) + 0.5,
        torch.randn(channels, generator=g) * 0.1, torch.tensor([0.5]),
    )  # fmt: skip
    entry = package_probe(
        save_probe(tmp_path / "probe.safetensors", probe), "test-hybrid", weights, registry
    )
    assert json.loads(registry.read_text())["test-hybrid-probe"] == {"mpiqa": entry}
    loaded = load_linear_probe(weights / "test-hybrid-probe.safetensors", channels)
    towers = QualityLevelsIQA(clip).for_inference()
    mixed = QualityLevelsIQA(clip, probe=loaded, probe_share=0.25).for_inference()
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        visual = clip.visual
        expected_probe = probe(visual.global_statistics(visual.stem_features(pixels)))
        assert torch.allclose(
            mixed(pixels), 0.75 * towers(pixels) + 0.25 * expected_probe, atol=1e-5
        )
        assert not torch.allclose(mixed(pixels), towers(pixels), atol=1e-4)
    narrow = LinearProbe(*(t[:-1] for t in (probe.mean, probe.std, probe.weight)), probe.bias)
    with pytest.raises(CheckpointError, match=f"probe of {channels} channels"):
        package_probe(
            save_probe(tmp_path / "narrow.safetensors", narrow), "test-hybrid", weights, registry
        )
    with pytest.raises(ValueError, match="reads"):
        QualityLevelsIQA(clip, probe=narrow)
    with pytest.raises(ValueError, match="probe_share"):
        QualityLevelsIQA(clip, probe=probe, probe_share=1.5)
    with pytest.raises(ValueError, match="convolutional stem"):
        QualityLevelsIQA(build_random_clip("test-tiny", seed=0), probe=probe)


def probe_like(clip, detail, input_size):
    """A probe of two views that maps everything to 0.5 (its weights are zero)."""
    import torch

    from mpiqa.models.quality_levels import LinearProbe

    width = 2 * clip.config.vision.token_channels
    ones = torch.ones(width)
    return LinearProbe(0 * ones, ones, 0 * ones, torch.tensor([0.5]), detail, input_size)


def test_a_detail_probe_reads_a_finer_view_and_the_towers_a_resized_one(packaged_seeds, tmp_path):
    import torch
    from PIL import Image

    from mpiqa.backbones.factory import load_clip
    from mpiqa.data.transforms import CLIP_MEAN, CLIP_STD, normalize_uint8, to_uint8
    from mpiqa.models.quality_levels import LinearProbe, QualityLevelsIQA, load_linear_probe
    from mpiqa.training.package import package_probe
    from mpiqa.training.probe import save_probe

    files, weights, registry = packaged_seeds
    clip = load_clip(weights / "test-hybrid-backbone.safetensors").eval()
    size, channels, visual = clip.image_size, clip.config.vision.token_channels, clip.visual
    detail, first = size - 8, (2 * size - (size - 8)) // 2
    g = torch.Generator().manual_seed(1)
    # 8-bit images: a ramp across them (so that crops at other places differ) under noise
    # of several strengths (so that the images differ)
    ramp = torch.linspace(0.1, 0.9, 2 * size).expand(4, 3, 2 * size, 2 * size)
    noise = torch.tensor([0.02, 0.05, 0.1, 0.2]).view(4, 1, 1, 1)
    raw = ramp + noise * torch.randn(4, 3, 2 * size, 2 * size, generator=g)
    raw = (raw.clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = normalize_uint8(raw)

    def stats_of(*views):
        return torch.cat([visual.global_statistics(visual.stem_features(x)) for x in views], 1)

    # the towers' view is Pillow's bicubic resize, to a pixel step or two
    pil = torch.stack(
        [to_uint8(Image.fromarray(r.permute(1, 2, 0).numpy()).resize((size, size), Image.BICUBIC))
         for r in raw]
    )  # fmt: skip
    with torch.no_grad():
        view = QualityLevelsIQA(clip, probe=probe_like(clip, detail, 2 * size))._tower_view(pixels)
        back = view * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(
            1, 3, 1, 1
        )
        assert (back * 255 - pil.float()).abs().max() <= 2.01
        crop = pixels[..., first : first + detail, first : first + detail]
        stats = stats_of(view, crop)
    probe = LinearProbe(
        stats.mean(0), stats.std(0).clamp_min(1e-4),
        torch.randn(2 * channels, generator=g) * 0.3 / (2 * channels) ** 0.5,
        torch.tensor([0.5]), detail=detail, input_size=2 * size,
    )  # fmt: skip
    package_probe(save_probe(tmp_path / "p.safetensors", probe), "test-hybrid", weights, registry)
    loaded = load_linear_probe(weights / "test-hybrid-probe.safetensors", channels)
    model = QualityLevelsIQA(clip, probe=loaded).eval()
    assert model.image_size == 2 * size  # it takes the larger images
    with torch.no_grad():
        towers = QualityLevelsIQA(clip)(view)
        assert torch.allclose(model(pixels), 0.5 * towers + 0.5 * probe(stats), atol=1e-5)
        # the crop's place matters: one from the left edge would give other scores
        edge = stats_of(view, pixels[..., first : first + detail, :detail])
        assert not torch.allclose(model(pixels), 0.5 * towers + 0.5 * probe(edge), atol=1e-3)
        # a whole image (crop "full") lower than the crop: the crop is as high as it is
        wide = pixels[:1, :, :20, :]
        view = model._tower_view(wide)
        assert view.shape[-2:] == (10, size)
        left = (2 * size - 20) // 2
        stats = stats_of(view, wide[..., :, left : left + 20])
        towers = QualityLevelsIQA(clip)(view)
        assert torch.allclose(model(wide), 0.5 * towers + 0.5 * probe(stats), atol=1e-5)
    # from [0, 1] pixels of another size: preprocessed to the model's input, then resized
    scores = model.score(torch.rand(2, 3, 3 * size, 3 * size, generator=g))
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())
