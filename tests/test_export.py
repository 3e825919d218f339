"""Exported models (prompts folded in) match eager mode within 1e-4, at any batch size,
as TorchScript and as ONNX (run by onnxruntime)."""

from __future__ import annotations

import sys

import pytest
import torch

import mpiqa
from mpiqa.backbones import build_random_clip
from mpiqa.cli.main import main
from mpiqa.export import export, run_exported
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.models.registry import DEFAULT_MODEL


def _prompt_model():
    torch.manual_seed(0)
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=1), MMPConfig(visual_depth=2, visual_tokens=3)
    )
    with torch.no_grad():  # trained-looking prompts, not their initial values
        for _, param in model.trainable_parameters():
            param.add_(torch.randn_like(param) * 0.5)
    return model.eval()


def _detail_probe_model():
    """mpiqa-small's shape on a tiny hybrid: towers on the resized input, a probe that
    also reads a centre crop of it."""
    from mpiqa.models.quality_levels import LinearProbe, QualityLevelsIQA

    clip = build_random_clip("test-hybrid", seed=1)
    size, width = clip.image_size, 2 * clip.config.vision.token_channels
    g = torch.Generator().manual_seed(0)
    probe = LinearProbe(
        torch.zeros(width), torch.full((width,), 10.0), torch.randn(width, generator=g),
        torch.tensor([0.5]), detail=size - 8, input_size=2 * size,
    )  # fmt: skip
    return QualityLevelsIQA(clip, probe=probe).eval()


MODELS = {
    "clip-iqa": lambda: mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny"),
    "prompts": _prompt_model,
    "detail-probe": _detail_probe_model,
}
SUFFIX = {"torchscript": "pt", "onnx": "onnx"}


def _check(model, path):
    for batch in (1, 3, 5):
        pixels = torch.randn(batch, 3, model.image_size, model.image_size)
        with torch.no_grad():
            eager = model(pixels)
        exported = run_exported(path, pixels)
        assert exported.shape == (batch,)
        assert (eager - exported).abs().max() <= 1e-4


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_parity(tmp_path, name, fmt, monkeypatch):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
    # eager scoring splits a batch into chunks on a CPU; an exported graph must not keep
    # the example's split (batches of 1, 3 and 5 against chunks of 2)
    monkeypatch.setattr("mpiqa.models.quality_levels._CPU_VIEW_CHUNK", 2)
    model = MODELS[name]()
    _check(model, export(model, tmp_path / f"model.{SUFFIX[fmt]}", fmt))


def test_shipped_default_model_exports_to_one_onnx_file(tmp_path):
    # the hybrid stem (TF "same" padding, depthwise convolutions, pooled feature pyramid
    # on a fixed grid, deviations, global-statistics token), BatchNorms folded
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = mpiqa.create_model(DEFAULT_MODEL).for_inference()
    path = export(model, tmp_path / "default.onnx", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.onnx"]  # weights inside
    _check(model, path)


def test_missing_onnx_extra_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    args = ["export", "--model", "clip-iqa", "--backbone", "test-tiny", "--weights", "random"]
    assert main([*args, "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == "mpiqa: error: ONNX export needs the onnxscript package: pip install 'mpiqa[onnx]'"
    )


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_cli_export_reports_parity(tmp_path, capsys, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / f"m.{SUFFIX[fmt]}"
    args = ["export", "--model", "clip-iqa", "--backbone", "test-tiny", "--weights", "random"]
    assert main([*args, "--out", str(out)]) == 0  # the format follows the suffix
    assert f"({fmt}); largest difference from eager mode" in capsys.readouterr().out
    wrong = tmp_path / ("m.pt" if fmt == "onnx" else "m.onnx")
    assert main([*args, "--format", fmt, "--out", str(wrong)]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_cli_export_defaults_to_the_scoring_model(tmp_path, capsys):
    # no --model: what `mpiqa score` uses; with a CLIP named, zero-shot CLIP-IQA
    assert main(["export", "--out", str(tmp_path / "default.pt")]) == 0
    assert "largest difference from eager mode" in capsys.readouterr().out
    assert main(["export", "--backbone", "test-tiny", "--weights", "random",
                 "--out", str(tmp_path / "clip.pt")]) == 0  # fmt: skip
    scripted = torch.jit.load(str(tmp_path / "clip.pt"))
    expected = mpiqa.create_model("clip-iqa", backbone="test-tiny", weights="random")
    pixels = torch.randn(2, 3, expected.image_size, expected.image_size)
    torch.testing.assert_close(scripted(pixels), expected(pixels), atol=1e-5, rtol=0)
