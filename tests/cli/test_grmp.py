"""GRMP-IQA end to end: meta-pretrain on clean images, 50-shot fine-tuning from the
meta-learned prompts with gradient regularisation, and the ablation table."""

from __future__ import annotations

import json

from mpiqa.cli.main import main
from tests.training.conftest import make_blur_task

MODEL = [
    "--set",
    "model.visual_depth=2",
    "--set",
    'model.families=["quality"]',
    "--set",
    "model.quality_levels=2",
]


def test_meta_pretrain_then_few_shot_with_grad_reg_then_ablation(shared_data, tmp_path):
    meta = tmp_path / "meta"
    assert main([
        "meta-pretrain", "--root", str(shared_data / "pristine"), "--limit", "8", "--backbone", "test-tiny",
        "--weights", "random", "--epochs", "1", "--set", "meta.n_support=4", "--set", "meta.n_query=4",
        *MODEL, "--out", str(meta),
    ]) == 0  # fmt: skip
    prompts = meta / "meta_prompts.safetensors"
    assert (
        prompts.is_file()
        and json.loads((meta / "meta_prompts.json").read_text())["meta"]["algorithm"] == "reptile"
    )

    root = make_blur_task(tmp_path / "task", n_contents=16, size=32)
    # the csv adapter's options as a user gives them (this test has no csv_task fixture)
    options = ["--dataset-option", "image_dir=imgs", "--dataset-option", "content_column=content"]
    run = tmp_path / "fewshot"
    assert main([
        "train", "--dataset", "csv", "--root", str(root), *options, "--backbone", "test-tiny", "--weights", "random",
        "--shots", "50", "--init-prompts", str(prompts), "--grad-reg", "5", "--epochs", "1", *MODEL, "--out", str(run),
    ]) == 0  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["grad_reg"] == 5.0 and config["data"]["shots"] == 50
    split = json.loads((run / "split.json").read_text())
    # N shots are N labels: no validation part, and the count is recorded
    assert len(split["train"]) == 50 and split["val"] == []
    assert split["notes"]["labelled_images"] == 50 and split["notes"]["val_dropped"] > 0

    table = tmp_path / "ablation"
    # visual prompts frozen, as the grmp-paper preset has them
    frozen = ["--set", "model.train_visual_prompts=false"]
    assert main([
        "ablate", "--dataset", "csv", "--root", str(root), *options, "--init-prompts", str(prompts), "--backbone", "test-tiny",
        "--weights", "random", "--shots", "20", "--rounds", "1", "--epochs", "1", *MODEL, *frozen, "--out", str(table),
    ]) == 0  # fmt: skip
    text = (table / "ablation.md").read_text()
    # each prompt row trains the prompts its name says, whatever the configuration
    mmp = {v: json.loads((table / v / "round_0" / "best.json").read_text())["mmp"]
           for v in ("full", "text-only", "visual-only")}  # fmt: skip
    assert not mmp["full"]["train_visual_prompts"] and mmp["full"]["train_text_context"]
    assert (
        mmp["visual-only"]["train_visual_prompts"] and not mmp["visual-only"]["train_text_context"]
    )
    assert mmp["text-only"]["visual_depth"] == 0 and mmp["text-only"]["train_text_context"]
    for variant in ("full", "no-meta", "no-grad-reg", "neither", "text-only", "visual-only"):
        assert f"| {variant} |" in text and f"`{variant}`: split seeds [0]" in text
    assert "--grad-reg off" in text and "--init-prompts" in text
    assert "--dataset-option image_dir=imgs --dataset-option content_column=content" in text


def test_grmp_paper_preset_runs_end_to_end_on_a_tiny_backbone(tmp_path, csv_task, capsys):
    """Every choice of the preset at once (full batch, plain SGD with the plateau, min-max
    labels, squash + ImageNet statistics, prompt dropout and prompt_norm, scene texts
    through the student's text tower), on the tiny backbone; the checkpoint scores
    images the way training prepared them."""
    root = make_blur_task(tmp_path / "task", n_contents=8, size=40)
    run = tmp_path / "paper"
    assert main([
        "train", "--preset", "grmp-paper", "--dataset", "csv", "--root", str(root),
        "--backbone", "test-tiny", "--weights", "random", "--shots", "12", "--epochs", "3",
        "--set", "model.visual_depth=2", "--set", "model.visual_tokens=2",
        "--set", "model.train_visual_blocks=1", "--set", "model.train_text_blocks=1",
        "--set", "data.resize=36", "--set", "data.image_size=32", "--out", str(run),
    ]) == 0  # fmt: skip
    meta = json.loads((run / "best.json").read_text())
    assert meta["preprocess"] == {"resize": 36, "squash": True, "stats": "imagenet"}
    assert meta["mmp"]["visual_prompt_norm"] and meta["mmp"]["visual_prompt_dropout"] == 0.1
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["score", str(root / "imgs"), "--checkpoint", str(run / "best.safetensors")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 8 * 6
