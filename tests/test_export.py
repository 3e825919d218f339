"""Exported models (prompts folded in) match eager mode within 1e-4, at any batch size."""

from __future__ import annotations

import pytest
import torch

import mpiqa
from mpiqa.backbones import build_random_clip
from mpiqa.export import export_torchscript, load_exported
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA


def _prompt_model():
    torch.manual_seed(0)
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=1), MMPConfig(visual_depth=2, visual_tokens=3)
    )
    with torch.no_grad():  # trained-looking prompts, not their initial values
        for _, param in model.trainable_parameters():
            param.add_(torch.randn_like(param) * 0.5)
    return model.eval()


@pytest.mark.parametrize(
    "make",
    [lambda: mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny"), _prompt_model],
)
def test_torchscript_parity(tmp_path, make):
    model = make()
    path = export_torchscript(model, tmp_path / "model.pt")
    exported = load_exported(path)
    for batch in (1, 3, 5):
        pixels = torch.randn(batch, 3, model.image_size, model.image_size)
        with torch.no_grad():
            eager, scripted = model(pixels), exported(pixels)
        assert scripted.shape == (batch,)
        assert (eager - scripted).abs().max() <= 1e-4


def test_cli_export_reports_parity(tmp_path, capsys):
    from mpiqa.cli.main import main

    assert (
        main(
            [
                "export",
                "--model",
                "clip-iqa",
                "--backbone",
                "test-tiny",
                "--weights",
                "random",
                "--out",
                str(tmp_path / "m.pt"),
            ]
        )
        == 0
    )
    assert "largest difference from eager mode" in capsys.readouterr().out
    assert (
        main(
            [
                "export",
                "--model",
                "clip-iqa",
                "--backbone",
                "test-tiny",
                "--weights",
                "random",
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "m.onnx"),
            ]
        )
        == 2
    )
