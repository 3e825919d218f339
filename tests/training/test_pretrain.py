"""Backbone pre-training (``mpiqa pretrain-backbone``) on a tiny hybrid architecture."""

from __future__ import annotations

import json

import pytest
import torch

from mpiqa.backbones import load_clip
from mpiqa.backbones.factory import build_random_clip
from mpiqa.cli.main import main
from mpiqa.data.distortions.kadid import DISTORTION_NAMES
from mpiqa.training.pretrain import (
    PretrainConfig,
    distortion_captions,
    pretrain_backbone,
    quality_captions,
    synthetic_items,
)
from tests.training.conftest import make_blur_task


def test_synthetic_items_cover_each_clean_image_without_repeats():
    items = synthetic_items(["a.png", "b.png"], per_image=10, seed=0)
    assert len(items) == 2 * 11
    for source in ("a.png", "b.png"):
        mine = [(i.distortion, i.level) for i in items if i.source == source]
        assert mine.count((DISTORTION_NAMES[0], 0)) == 1  # the clean image once
        assert len(set(mine)) == len(mine)
    assert synthetic_items(["a.png"], 10, seed=0) == synthetic_items(["a.png"], 10, seed=0)


def test_captions_group_by_class():
    assert len(quality_captions()) == 5 * 3 and quality_captions()[0] == "a bad photo."
    assert len(distortion_captions()) == 11 * 2


def test_pretrain_learns_quality_and_keeps_the_stem(blur_task, tmp_path):
    import csv

    with open(blur_task / "labels.csv") as f:
        rows = [
            (str(blur_task / "imgs" / r["path"]), float(r["score"]), r["content"])
            for r in csv.DictReader(f)
        ]
    train = [(p, s) for p, s, c in rows if int(c[1:]) < 30]
    val = [(p, s) for p, s, c in rows if int(c[1:]) >= 30]
    clean = [p for p, s, c in rows if s == 1.0][:4]
    config = PretrainConfig(
        arch="test-hybrid", epochs=6, batch_size=32, lr=3e-3, synthetic_per_image=2, seed=1
    )
    summary = pretrain_backbone(config, train, val, clean, tmp_path)
    assert [h["epoch"] for h in summary["history"]] == list(range(1, 7))
    assert summary["best"]["srcc"] == max(h["srcc"] for h in summary["history"])
    assert summary["data"] == {
        "rated_train": 180, "val": 60, "clean": 4, "synthetic": 12,
        "val_clean": 0, "val_synthetic": 0,
    }  # fmt: skip
    # blur level is easy: the zero-shot quality prompts must rank it well
    assert summary["best"]["srcc"] > 0.6
    model = load_clip(tmp_path / "backbone.safetensors")
    fresh = build_random_clip("test-hybrid", seed=1)
    for name, tensor in model.visual.stem.state_dict().items():
        expected = fresh.visual.stem.state_dict()[name]
        assert torch.equal(
            tensor, expected.half().to(tensor.dtype) if tensor.is_floating_point() else expected
        ), name
    saved = json.loads((tmp_path / "pretrain.json").read_text())
    assert saved["best"] == summary["best"]
    # the linear probe, fitted on the same training features, beside the backbone
    from mpiqa.models.quality_levels import load_linear_probe
    from mpiqa.training.probe import ALPHAS

    probe = load_linear_probe(tmp_path / "probe.safetensors", model.config.vision.token_channels)
    assert saved["probe"]["alpha"] in ALPHAS and saved["probe"]["rows"]["rated"] == 180
    assert saved["probe"]["val_srcc_rated"] > 0.6  # blur levels are easy for it too
    assert probe.channels == model.config.vision.token_channels


def test_pretrain_needs_validation_images(tmp_path):
    with pytest.raises(ValueError, match="validation"):
        pretrain_backbone(PretrainConfig(arch="test-hybrid"), [("a", 0.5)], [], [], tmp_path)


def test_cli_runs_and_saves_its_split(blur_task, tmp_path, csv_task):
    out = tmp_path / "run"
    code = main(
        ["pretrain-backbone", "--dataset", "csv", "--root", str(blur_task), "--protocol", "random",
         "--arch", "test-hybrid", "--stem-weights", "none", "--epochs", "1",
         "--synthetic-per-image", "1", "--clean", str(blur_task / "imgs"), "--out", str(out),
         "--probe-detail", "24", "--probe-input", "64", "--probe-within", "0.5"]
    )  # fmt: skip
    assert code == 0
    from mpiqa.models.quality_levels import load_linear_probe

    probe = load_linear_probe(out / "probe.safetensors", load_clip(out / "backbone.safetensors")
                              .config.vision.token_channels)  # fmt: skip
    assert (probe.detail, probe.input_size) == (24, 64)
    split = json.loads((out / "split.json").read_text())
    assert split["val"] and split["test"]
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["data"]["rated_train"] == len(split["train"])
    assert summary["data"]["val"] == len(split["val"])
    # a CSV names no sources: its rated rows are one source, the synthetic ones another
    assert summary["config"]["probe_within"] == summary["probe"]["within"] == 0.5
    assert summary["probe"]["sources"] == {"(none)": len(split["train"])}


def test_cli_reports_missing_stem_file(blur_task, tmp_path, csv_task):
    code = main(
        ["pretrain-backbone", "--dataset", "csv", "--root", str(blur_task), "--protocol", "random",
         "--arch", "test-hybrid", "--stem-weights", str(tmp_path / "none.pth"), "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 2


def test_cli_names_every_undecodable_image_before_any_work(tmp_path, csv_task, capsys):
    root = make_blur_task(tmp_path / "task", n_contents=6, size=32)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "ok.png").write_bytes((root / "imgs" / "c00_L0.png").read_bytes())
    (clean / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for i in range(6):  # the split's test part is not read: break one level of each scene
        (root / "imgs" / f"c{i:02d}_L3.png").write_bytes(b"")
    out = tmp_path / "run"
    code = main(
        ["pretrain-backbone", "--dataset", "csv", "--root", str(root), "--protocol", "random",
         "--arch", "test-hybrid", "--stem-weights", "none", "--epochs", "1",
         "--clean", str(clean), "--out", str(out), "--feature-cache", str(tmp_path / "cache")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert not (out / "split.json").exists()  # stopped before writing anything
    used = [f"c{i:02d}_L3.png" for i in range(6)]
    named = [name for name in used if f"{root / 'imgs' / name}: empty file" in err]
    assert named and f"{clean / 'broken.png'}: " in err
    assert f"pretrain-backbone: {len(named) + 1} of" in err and "cannot be decoded" in err
    assert not (tmp_path / "cache").exists()


def test_pretrain_without_human_labels_selects_on_held_apart_clean_images(blur_task, tmp_path):
    """The few-shot testbed's backbone: synthetic distortions only, validated on the
    distortions of clean images held apart from training."""
    clean = sorted(str(p) for p in (blur_task / "imgs").glob("*_L0.png"))
    config = PretrainConfig(arch="test-hybrid", epochs=2, batch_size=32, synthetic_per_image=3)
    summary = pretrain_backbone(config, [], [], clean[:6], tmp_path, val_clean=clean[6:9])
    assert summary["data"]["rated_train"] == 0 and summary["data"]["val"] == 0
    assert summary["data"]["val_synthetic"] == 3 * 4
    assert all(-1 <= h["srcc"] <= 1 for h in summary["history"])
    assert summary["probe"] is None and not (tmp_path / "probe.safetensors").exists()
    with pytest.raises(ValueError, match="needs rated training images or clean images"):
        pretrain_backbone(config, [], [], [], tmp_path / "none")


def test_feature_cache_is_reused_and_both_validation_parts_count(blur_task, tmp_path):
    clean = sorted(str(p) for p in (blur_task / "imgs").glob("*_L0.png"))
    rated = [(p, 1.0 - 0.2 * i) for i, p in enumerate(sorted((blur_task / "imgs").glob("c0*")))]
    rated = [(str(p), s) for p, s in rated]
    config = PretrainConfig(arch="test-hybrid", epochs=1, batch_size=16, synthetic_per_image=2)
    cache = tmp_path / "cache"
    kwargs = dict(val_clean=clean[6:8], feature_cache=cache)
    first = pretrain_backbone(config, rated[:6], rated[6:], clean[:4], tmp_path / "a", **kwargs)
    files = sorted(cache.iterdir())
    assert len(files) == 4  # training and validation maps, rated and synthetic apart
    second = pretrain_backbone(config, rated[:6], rated[6:], clean[:4], tmp_path / "b", **kwargs)
    assert sorted(cache.iterdir()) == files
    assert first["history"] == second["history"]
    best = first["best"]
    # rated and synthetic validation parts are judged apart; their mean selects
    assert best["srcc"] == pytest.approx((best["srcc_rated"] + best["srcc_synthetic"]) / 2)
    # another seed: another random stem, so every part is another key
    config.seed = 5
    pretrain_backbone(config, rated[:6], rated[6:], clean[:4], tmp_path / "c", **kwargs)
    assert len(list(cache.iterdir())) == 8


def test_feature_cache_shares_the_rated_rows_across_synthetic_draws(
    blur_task, tmp_path, monkeypatch
):
    import mpiqa.training.pretrain as pretrain

    imgs = sorted((blur_task / "imgs").glob("*.png"))
    rated = [(str(p), 0.1 * i) for i, p in enumerate(imgs[:5])]
    clean = [str(p) for p in imgs[5:7]]
    weights = tmp_path / "stem.bin"  # only its hash is keyed here
    weights.write_bytes(b"stem weights")
    model = build_random_clip("test-hybrid", seed=0)
    size = model.image_size
    computed = []
    compute = pretrain.compute_features

    def counting(model, rated, synthetic, size, crop=None):
        computed.append((len(rated), len(synthetic)))
        return compute(model, rated, synthetic, size, crop=crop)

    monkeypatch.setattr(pretrain, "compute_features", counting)
    cache = tmp_path / "cache"
    draws = [synthetic_items(clean, 2, seed) for seed in (0, 1)]
    assert draws[0] != draws[1]
    first = pretrain.cached_features(cache, model, rated, draws[0], size, str(weights), 0)
    second = pretrain.cached_features(cache, model, rated, draws[1], size, str(weights), 1)
    assert computed == [(5, 0), (0, 6), (0, 6)]  # the second seed renders its draws only
    assert torch.equal(second.features[:5], first.features[:5])
    # read back whole: the same set as computing rated rows and items together
    again = pretrain.cached_features(cache, model, rated, draws[0], size, str(weights), 0)
    whole = compute(model, rated, draws[0], size)
    assert len(computed) == 3
    for got in (first, again):
        assert torch.equal(got.features, whole.features)
        for name in ("mos", "synthetic_target", "distortion"):
            assert torch.equal(
                getattr(got, name).nan_to_num(-9), getattr(whole, name).nan_to_num(-9)
            )
    # a random stem is drawn by the seed: nothing is shared
    pretrain.cached_features(cache, model, rated, draws[0], size, None, 0)
    pretrain.cached_features(cache, model, rated, draws[0], size, None, 1)
    assert computed[3:] == [(5, 0), (0, 6), (5, 0), (0, 6)]
    with pytest.raises(ValueError, match="no rated images and no synthetic items"):
        pretrain.cached_features(cache, model, [], [], size, None, 0)


def test_pretrain_gives_the_probe_a_finer_view_when_asked(blur_task, tmp_path):
    import csv

    from mpiqa.models.quality_levels import QualityLevelsIQA, load_linear_probe

    with open(blur_task / "labels.csv") as f:
        rows = [(str(blur_task / "imgs" / r["path"]), float(r["score"])) for r in csv.DictReader(f)]
    size = build_random_clip("test-hybrid", seed=0).image_size
    config = PretrainConfig(
        arch="test-hybrid", epochs=1, batch_size=32, synthetic_per_image=1,
        probe_detail=size - 8, probe_input=2 * size, probe_within=0.5,
    )  # fmt: skip
    sources = ["a", "b"] * 20
    summary = pretrain_backbone(
        config, rows[:40], rows[40:60], [rows[0][0]], tmp_path, sources=sources
    )
    assert (summary["probe"]["detail"], summary["probe"]["input_size"]) == (size - 8, 2 * size)
    # half of it fitted within the two sources, each rated row counted in its own
    assert summary["probe"]["within"] == 0.5
    assert summary["probe"]["sources"] == {"a": 20, "b": 20}
    with pytest.raises(ValueError, match="39 sources for 40 rated images"):
        pretrain_backbone(config, rows[:40], rows[40:60], [], tmp_path / "x", sources=sources[1:])
    model = load_clip(tmp_path / "backbone.safetensors")
    probe = load_linear_probe(tmp_path / "probe.safetensors", model.config.vision.token_channels)
    assert (probe.detail, probe.input_size, probe.views) == (size - 8, 2 * size, 2)
    assert QualityLevelsIQA(model, probe=probe).image_size == 2 * size
    config.probe_input = size - 9
    with pytest.raises(ValueError, match="probe_detail"):
        pretrain_backbone(config, rows[:40], rows[40:60], [], tmp_path / "x")


def test_cli_wants_probe_detail_and_probe_input_together(blur_task, tmp_path, csv_task, capsys):
    code = main(
        ["pretrain-backbone", "--dataset", "csv", "--root", str(blur_task), "--protocol", "random",
         "--arch", "test-hybrid", "--stem-weights", "none", "--probe-detail", "24",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 2 and "--probe-detail and --probe-input go together" in capsys.readouterr().err
    code = main(["pretrain-backbone", "--probe-within", "1.5", "--out", str(tmp_path)])
    assert (
        code == 2 and "--probe-within: must be a finite number in [0, 1]" in capsys.readouterr().err
    )
