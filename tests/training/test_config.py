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
