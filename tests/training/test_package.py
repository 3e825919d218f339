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
