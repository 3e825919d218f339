"""Exported models (prompts folded in) match eager mode within 1e-4, at any batch size,
as TorchScript and as ONNX (run by onnxruntime)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mpiqa
from mpiqa.backbones import build_random_clip
from mpiqa.cli.main import main
from mpiqa.data.transforms import normalize_uint8
from mpiqa.export import export, metadata, read_metadata, run_exported
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
    """mpiqa-small's shape on a tiny hybrid: two towers over one stem on the resized
    input, a probe that also reads a centre crop of it."""
    from mpiqa.models.quality_levels import LevelHead, LinearProbe, QualityLevelsIQA

    clip = build_random_clip("test-hybrid", seed=1)
    other = build_random_clip("test-hybrid", seed=2)
    other.visual.stem = clip.visual.stem  # an ensemble shares its stem
    size, width = clip.image_size, 2 * clip.config.vision.token_channels
    g = torch.Generator().manual_seed(0)
    probe = LinearProbe(
        torch.zeros(width), torch.full((width,), 0.03), torch.randn(width, generator=g),
        torch.tensor([0.5]), detail=size - 8, input_size=2 * size,
    )  # fmt: skip
    return QualityLevelsIQA(clip, extra_heads=[LevelHead.from_backbone(other)], probe=probe).eval()


MODELS = {
    "clip-iqa": lambda: mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny"),
    "prompts": _prompt_model,
    "detail-probe": _detail_probe_model,
}
SUFFIX = {"torchscript": "pt", "onnx": "onnx"}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _varied_images(model, batch: int, seed: int) -> torch.Tensor:
    """8-bit images (normalised) from a smooth ramp to pure noise: under the tiny random
    hybrid, images of one kind of noise scored within 3e-4 of each other, too close to the
    tolerance to tell an image's score from another's."""
    generator = torch.Generator().manual_seed(seed)
    size = (batch, 3, model.image_size, model.image_size)
    noise = torch.randint(0, 256, size, generator=generator).float()
    ramp = torch.linspace(0, 255, model.image_size).expand(size)
    weight = torch.linspace(0.05, 1, batch).view(batch, 1, 1, 1)
    pixels = (weight * noise + (1 - weight) * ramp).round().to(torch.uint8)
    return normalize_uint8(pixels, model.preprocess_options.get("stats", "clip"))


def _check(model, path):
    for batch in (1, 3, 5):
        pixels = _varied_images(model, batch, seed=batch)
        with torch.no_grad():
            eager = model(pixels)
        exported = run_exported(path, pixels)
        assert exported.shape == (batch,)
        assert (eager - exported).abs().max() <= 1e-4
        if batch > 1:  # the scores differ far more than the tolerance
            assert eager.max() - eager.min() > 5e-3, eager


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
    # on a fixed grid, deviations, global-statistics token), BatchNorms folded, its
    # probe's two views. Two of its five towers: the other three repeat them op for op,
    # and this test took 55 s with them, 39 s without (the ensemble's mean: above)
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = mpiqa.create_model(DEFAULT_MODEL).for_inference()
    assert len(model.extra_heads) == 4 and model.probe is not None
    model.extra_heads = model.extra_heads[:1]
    path = export(model, tmp_path / "default.onnx", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.onnx"]  # weights inside
    # smooth images too: the towers' 8-bit view must round as torch's kernel does (with
    # ONNX's own resize, 2e-4 off here and up to 0.0064 on photos)
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


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_files_say_how_to_prepare_their_input(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / f"m.{SUFFIX[fmt]}"
    args = ["export", "--model", "clip-iqa", "--backbone", "test-tiny", "--weights", "random"]
    assert main([*args, "--out", str(out)]) == 0
    meta = read_metadata(out)
    model = mpiqa.create_model("clip-iqa", backbone="test-tiny", weights="random")
    size = model.image_size
    assert meta["format"] == "mpiqa-export/1" and meta["source"] == "clip-iqa"
    assert meta["mpiqa_version"] == mpiqa.__version__
    assert meta["input"]["shape"] == ["N", 3, size, size]
    pre = meta["input"]["preprocess"]
    assert (pre["mode"], pre["resize_shorter_side"], pre["center_crop"]) == ("center", size, size)
    assert meta["input"]["normalize"]["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert meta["output"] == {"name": "score", "range": [0.0, 1.0], "lower_better": False}


def test_read_metadata_of_an_onnx_file_without_onnx_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"needs the onnx package: pip install 'mpiqa\[onnx\]'"):
        read_metadata(tmp_path / "m.onnx")


def test_read_metadata_of_other_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    assert read_metadata(plain) == {}  # exported before mpiqa wrote metadata
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(ValueError, match=r"junk\.pt: not an exported model"):
        read_metadata(junk)
    if importlib.util.find_spec("onnx"):
        with pytest.raises(ValueError, match=r"junk\.onnx: not an exported model"):
            read_metadata(junk.rename(tmp_path / "junk.onnx"))


def _example_script():
    spec = importlib.util.spec_from_file_location(
        "score_onnx", EXAMPLES / "deploy" / "score_onnx.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [(40, 30), (30, 40), (200, 30), (30, 200), (64, 64), (12, 9)])
@pytest.mark.parametrize("squash", [False, True])
def test_the_example_prepares_images_as_mpiqa_does(size, squash):
    # examples/deploy/score_onnx.py follows an exported file's metadata with Pillow and numpy
    # alone; its pixels must be the model's own (wide, tall, beyond 4:1, small images)
    model = mpiqa.create_model("clip-iqa", backbone="test-tiny", weights="random")
    model.preprocess_options = {"resize": model.image_size + 4, "squash": squash}
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    mine = _example_script().preprocess(image, metadata(model))
    torch.testing.assert_close(torch.from_numpy(mine), model.preprocess(image), atol=1e-6, rtol=0)
