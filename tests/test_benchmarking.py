"""The benchmark's pieces: FLOP count, the comparison model, the report (no timing asserts)."""

from __future__ import annotations

import pytest
import torch

from mpiqa.backbones import build_random_clip, get_config
from mpiqa.benchmarking import _transformers_vision, run_benchmark, vision_flops_per_image


def test_flops_by_hand_for_test_tiny():
    # 32 px / 8 = 16 patches + 1 token, width 64, mlp 256, 2 blocks, embed 32
    patch_embed = 16 * 3 * 64 * 64
    block = 17 * 64 * 192 + 2 * 17 * 17 * 64 + 17 * 64 * 64 + 2 * 17 * 64 * 256
    assert vision_flops_per_image(get_config("test-tiny")) == 2 * (
        patch_embed + 2 * block + 64 * 32
    )
    # reading out the class token: the last block's keys and values for all 17 tokens,
    # the rest (query, attention, output, MLP) for one
    last = 17 * 64 * 128 + 64 * 64 + 2 * 17 * 64 + 64 * 64 + 2 * 64 * 256
    assert vision_flops_per_image(get_config("test-tiny"), readout_only=True) == 2 * (
        patch_embed + block + last + 64 * 32
    )


def test_transformers_model_holds_exactly_our_weights():
    backbone = build_random_clip("test-small-gelu", seed=3)
    hf = _transformers_vision(backbone, backbone.config).eval()
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ours, theirs = backbone.encode_image(pixels), hf(pixel_values=pixels).image_embeds
    assert (ours - theirs).abs().max() <= 1e-4


def test_benchmark_reports_every_figure():
    result = run_benchmark("test-tiny", "fp32", batch_size=2, warmup=1, iters=1)
    data = result.to_dict()
    for key in ("images_per_s", "ratio_vs_transformers", "roofline_fraction", "peak_rss_mb"):
        assert data[key] is not None and data[key] > 0, key
    assert "transformers" in result.table() and "roofline" in result.table()
    assert data["transformers_gflops_per_image"] > data["gflops_per_image"]
    assert data["compiled"] == "none" and data["compiled_images_per_s"] is None
    with pytest.raises(ValueError, match="compile must be one of"):
        run_benchmark("test-tiny", "fp32", batch_size=2, compile="yes")


def test_frozen_compile_is_timed_beside_eager_and_computes_the_same():
    from mpiqa.backbones import build_random_clip
    from mpiqa.benchmarking import compile_frozen
    from mpiqa.models.clip_iqa import CLIPIQA

    model = CLIPIQA(build_random_clip("test-tiny", seed=0)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(compile_frozen(model)(pixels), model(pixels), atol=1e-5)
    result = run_benchmark("test-tiny", "fp32", batch_size=2, warmup=1, iters=1, compile="mpiqa")
    assert result.compiled_images_per_s > 0 and result.transformers_compiled_images_per_s is None
    assert "mpiqa compiled / transformers eager" in result.table()


def test_hybrid_flops_count_the_stem_by_hand():
    from mpiqa.backbones.efficientnet import stem_macs

    # test-hybrid: stem conv on 16x16 (32 -> 16), block 0 (32 -> 16 ch, depthwise 3x3),
    # blocks 1-2 (16 -> 24, expand 6, stride 2 then 1) -> 8x8 cells
    expected = (
        16 * 16 * 3 * 9 * 32
        + 16 * 16 * 32 * (9 + 16)
        + 16 * 16 * 16 * 96 + 8 * 8 * 96 * (9 + 24)
        + 8 * 8 * 24 * 144 + 8 * 8 * 144 * (9 + 24)
    )  # fmt: skip
    assert stem_macs(2, 32) == expected
    # 64 cells of 24 channels -> width 64; 65 tokens through 2 blocks; embed 32
    block = 65 * 64 * 192 + 2 * 65 * 65 * 64 + 65 * 64 * 64 + 2 * 65 * 64 * 256
    assert vision_flops_per_image(get_config("test-hybrid")) == 2 * (
        expected + 64 * 24 * 64 + 2 * block + 64 * 32
    )


def test_interleaved_timing_calls_each_function_in_rotating_rounds():
    from mpiqa.benchmarking import _time_interleaved

    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = _time_interleaved(fns, torch.device("cpu"), warmup=1, iters=3)
    assert set(seconds) == {"a", "b", "c"} and all(s >= 0 for s in seconds.values())
    # one warm-up round, then rounds starting at a, b, c in turn
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"


def test_gpus_are_probed_with_a_larger_matmul():
    # 2048^3 leaves a GPU idle between calls: its roofline came out at "931 %"
    from mpiqa.benchmarking import matmul_size

    assert matmul_size(torch.device("cpu")) == 2048
    assert matmul_size(torch.device("cuda")) == 8192


def test_end_to_end_splits_the_time_of_scoring_files(tmp_path, capsys):
    import json as _json

    import numpy as np
    from PIL import Image

    from mpiqa.cli.main import main

    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "e2e.json"
    args = ["benchmark", "--end-to-end", str(tmp_path), "--model", "mpiqa-tiny", "--limit", "5",
            "--batch-size", "2", "--workers", "0", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    result = _json.loads(out.read_text())
    assert (result["images"], result["failed"], result["workers"]) == (5, 1, 0)
    for key in ("startup_s", "decode_images_per_s", "model_images_per_s", "pipeline_images_per_s"):
        assert result[key] > 0
    assert "score_files, 0 worker(s)" in capsys.readouterr().out


def test_resnet_flops_by_hand_for_test_resnet():
    """test-resnet at 64 px: stem 32^2, stages at 16^2 (stride 1), then 8^2, 4^2, 2^2,
    each strided block convolving 1x1 and 3x3 before its pool; attention pool over 5."""
    stem = 32 * 32 * (4 * 3 * 9 + 4 * 4 * 9 + 8 * 4 * 9)
    layer1 = 256 * (8 * 8 + 8 * 8 * 9 + 32 * 8 + 32 * 8)
    layer2 = 256 * (16 * 32 + 16 * 16 * 9) + 64 * (64 * 16 + 64 * 32)
    layer3 = 64 * (32 * 64 + 32 * 32 * 9) + 16 * (128 * 32 + 128 * 64)
    layer4 = 16 * (64 * 128 + 64 * 64 * 9) + 4 * (256 * 64 + 256 * 128)
    pool = 256 * 256 + 2 * 5 * 256 * 256 + 256 * 32 + 2 * 5 * 256
    macs = stem + layer1 + layer2 + layer3 + layer4 + pool
    assert vision_flops_per_image(get_config("test-resnet")) == 2 * macs
    assert _transformers_vision(None, get_config("test-resnet")) is None
