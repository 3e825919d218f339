from __future__ import annotations

from pathlib import Path

import pytest

from mpiqa.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_documented_example_config_loads():
    config = TrainConfig.load(ROOT / "configs/mmp-iqa.toml")
    assert config.model.families == ("scene", "distortion") and config.loss.rank == 0.5


def test_overrides_are_typed():
    config = TrainConfig().override(
        [
            "optim.lr=0.5",
            "data.shots=50",
            "model.families=quality",
            "train.precision=bf16",
            "data.split_file=none",
        ]
    )
    assert config.optim.lr == 0.5 and config.data.shots == 50
    assert config.model.families == ("quality",) and config.train.precision == "bf16"


@pytest.mark.parametrize(
    "text, message",
    [("optim.lr=fast", "optim.lr"), ("optim.speed=1", "unknown option optim.speed"), ("nope.x=1", "unknown section"),
     ("train.precision=fp8", "precision"), ("lr=1", "section.key=value"), ("model.coupling=deep", "coupling")],
)  # fmt: skip
def test_bad_overrides_name_the_option(text, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().override([text])


def test_bad_toml_names_the_file(tmp_path):
    (tmp_path / "c.toml").write_text("[optim]\nlr = = 1\n")
    with pytest.raises(ValueError, match="c.toml"):
        TrainConfig.load(tmp_path / "c.toml")


def test_grmp_paper_preset_is_the_published_configuration():
    config = TrainConfig.preset("grmp-paper")
    model = config.model
    assert config.backbone.arch == "ViT-B-16"
    assert (model.families, model.quality_levels, model.n_ctx, model.class_specific) == (
        ("quality",),
        2,
        4,
        False,
    )
    assert (model.visual_tokens, model.visual_depth, model.visual_projection) == (100, 12, True)
    assert (model.train_visual_blocks, model.train_text_blocks) == (4, 4)
    assert (config.optim.optimizer, config.optim.lr, config.optim.weight_decay) == (
        "sgd",
        1e-3,
        1e-4,
    )
    assert (config.data.resize, config.data.image_size) == (244, 224)
    assert (config.data.squash, config.data.stats) == (True, "imagenet")
    assert config.loss.quality_kind == "bce" and config.train.grad_reg == 5.0
    # the authors' fine-tuning: plain SGD, the shots as one batch, lr x 0.3 on a plateau,
    # labels min-max normalised over the shots
    assert (config.optim.momentum, config.train.batch_size, config.train.epochs) == (0.0, 0, 2000)
    assert (config.optim.schedule, config.optim.plateau_factor) == ("plateau", 0.3)
    assert config.data.labels == "minmax"
    assert (model.visual_prompt_dropout, model.visual_prompt_norm) == (0.1, True)
    assert config.train.grad_reg_texts == "student"
    # our documented difference: an outer step that moves a reset task learner
    assert (config.meta.inner_lr, config.meta.outer_lr, config.meta.task_learner) == (
        1e-4,
        1.0,
        "reset",
    )
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("sota")


@pytest.mark.parametrize("command", ["train", "meta-pretrain"])
@pytest.mark.parametrize("name", ["mmp-iqa", "mpiqa-tiny"])
def test_cli_config_file_overrides_defaults_and_flags_override_it(command, name):
    from mpiqa.cli import meta_pretrain, train
    from mpiqa.cli.main import build_parser

    root = Path(__file__).resolve().parents[2]
    config_file = str(root / "configs" / f"{name}.toml")
    extra = ["--dataset", "csv"] if command == "train" else []
    argv = [command, "--config", config_file, "--root", "x", "--out", "y", "--seed", "7", *extra]
    args = build_parser().parse_args(argv)
    file = TrainConfig.load(root / "configs" / f"{name}.toml")
    if command == "train":
        config = train.build_config(args)
        assert config.model == file.model and config.train.seed == 7
    else:
        config = meta_pretrain.build_config(args)
        assert config.meta.seed == 7 and config.model.families == file.model.families
        assert config.meta.epochs == file.meta.epochs
    assert config.backbone.arch == file.backbone.arch


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        TrainConfig.load_raw(tmp_path / "nope.toml")
