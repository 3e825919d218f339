"""Training configuration: typed sections, read from TOML, overridden from the command
line with ``section.key=value``. See ``configs/mmp-iqa.toml`` for a documented example."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpiqa.models.mmp_iqa import MMPConfig
from mpiqa.training.losses import LossWeights
from mpiqa.training.meta import MetaConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class DataConfig:
    dataset: str = ""
    root: str = ""
    protocol: str = "random"  # random (seeded 80/20 by content) | official
    split_seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    shots: int | None = None
    fraction: float | None = None
    split_file: str | None = None  # use this split instead of drawing one
    image_size: int | None = None  # default: the backbone's input size
    resize: int | None = None  # shorter side before cropping; default: image_size
    squash: bool = False  # resize the whole image to resize x resize (GRMP-IQA's code)
    stats: str = "clip"  # normalisation: clip | imagenet (GRMP-IQA's code)
    check_images: bool = True
    # images of the split that cannot be decoded: fail (stop before training, naming
    # them) | skip (train without them; split.json lists them)
    on_error: str = "fail"
    # scale: the dataset's own range mapped to [0, 1]; minmax: min-max over the training
    # images (what the GRMP-IQA authors' fine-tuning does with its shots)
    labels: str = "scale"
    # options of the dataset adapter (--dataset-option KEY=VALUE), e.g. the csv adapter's
    # csv_file, path_column, score_column, scale, lower_better, content_column
    options: dict = field(default_factory=dict)


@dataclass
class BackboneConfig:
    arch: str = "ViT-B-16"
    weights: str | None = None  # checkpoint path, "random", or None for the registered weights
    seed: int = 0  # seed of "random"


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | constant | plateau (x plateau_factor on a flat train loss)
    warmup_epochs: int = 0
    plateau_factor: float = 0.3
    plateau_patience: int = 10


@dataclass
class LoopConfig:
    epochs: int = 10
    batch_size: int = 16
    workers: int | None = None
    precision: str = "fp32"  # fp32 | bf16 | fp16
    device: str = "cpu"
    seed: int = 0
    flip: float = 0.5
    eval_batch_size: int = 64
    grad_reg: float | None = None  # lambda of quality-aware gradient regularisation; None = off
    grad_reg_mode: str = "grmp"  # grmp (published rule) | prograd (project only on conflict)
    # teacher: the student's scene distribution from the teacher's fixed scene texts;
    # student: the texts through the student's own (trainable) text tower, as the authors
    grad_reg_texts: str = "teacher"
    grad_checkpointing: bool = False  # recompute block activations in backward (less memory)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: MMPConfig = field(default_factory=MMPConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    meta: MetaConfig = field(default_factory=MetaConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        config = cls()
        for section, values in data.items():
            if not hasattr(config, section):
                raise ValueError(f"{source}: unknown section [{section}]")
            if not isinstance(values, dict):
                raise ValueError(f"{source}: [{section}] must be a table")
            for key, value in values.items():
                _assign(config, section, key, value, source)
        config.validate()
        return config

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        """A configuration shipped with mpiqa (``mpiqa/training/presets/NAME.toml``)."""
        from importlib import resources

        presets = resources.files("mpiqa.training").joinpath("presets")
        entry = presets.joinpath(f"{name}.toml")
        if not entry.is_file():
            known = sorted(e.name[:-5] for e in presets.iterdir() if e.name.endswith(".toml"))
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(known)}")
        return cls.from_dict(tomllib.loads(entry.read_text()), source=f"preset {name}")

    @staticmethod
    def load_raw(path: str | Path) -> dict[str, Any]:
        """The TOML tables of a config file, unvalidated (to lay over a preset).

        Raises:
            FileNotFoundError: no such file. ValueError: not TOML (naming file and line).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Raises ValueError naming the file (and TOML line) when it cannot be read."""
        return cls.from_dict(cls.load_raw(path), source=str(path))

    def override(self, assignments: list[str]) -> TrainConfig:
        """Apply ``section.key=value`` strings (values parsed as TOML, else as text)."""
        for text in assignments:
            name, sep, raw = text.partition("=")
            section, dot, key = name.strip().partition(".")
            if not sep or not dot:
                raise ValueError(f"override {text!r}: expected section.key=value")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw
            _assign(self, section, key, value, f"override {text!r}")
        self.validate()
        return self

    def validate(self) -> None:
        if self.data.protocol not in ("random", "official"):
            raise ValueError(
                f"data.protocol must be random or official, got {self.data.protocol!r}"
            )
        if self.data.shots is not None and self.data.fraction is not None:
            raise ValueError("give data.shots or data.fraction, not both")
        if self.optim.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optim.optimizer must be adamw or sgd, got {self.optim.optimizer!r}")
        if self.optim.schedule not in ("cosine", "constant", "plateau"):
            raise ValueError(
                f"optim.schedule must be cosine, constant or plateau, got {self.optim.schedule!r}"
            )
        if self.data.stats not in ("clip", "imagenet"):
            raise ValueError(f"data.stats must be clip or imagenet, got {self.data.stats!r}")
        if self.data.on_error not in ("fail", "skip"):
            raise ValueError(f"data.on_error must be fail or skip, got {self.data.on_error!r}")
        if self.data.labels not in ("scale", "minmax"):
            raise ValueError(f"data.labels must be scale or minmax, got {self.data.labels!r}")
        if self.train.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(
                f"train.precision must be fp32, bf16 or fp16, got {self.train.precision!r}"
            )
        if self.train.grad_reg_mode not in ("grmp", "prograd"):
            raise ValueError(
                f"train.grad_reg_mode must be grmp or prograd, got {self.train.grad_reg_mode!r}"
            )
        if self.train.grad_reg_texts not in ("teacher", "student"):
            raise ValueError(
                f"train.grad_reg_texts must be teacher or student, got {self.train.grad_reg_texts!r}"
            )
        if self.train.epochs < 1 or self.train.batch_size < 0:
            raise ValueError(
                "train.epochs must be >= 1 and train.batch_size >= 0 (0: one batch of all)"
            )
        self.model.__post_init__()
        self.meta.validate()


def _assign(config: TrainConfig, section: str, key: str, value: Any, source: str) -> None:
    target = getattr(config, section, None)
    if target is None or not dataclasses.is_dataclass(target):
        raise ValueError(f"{source}: unknown section {section!r}")
    hints = typing.get_type_hints(type(target))
    if key not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(target))
        raise ValueError(f"{source}: unknown option {section}.{key} (known: {known})")
    setattr(target, key, _coerce(value, hints[key], f"{section}.{key}", source))


def _coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, name, source)
            except ValueError:
                continue
        raise ValueError(f"{source}: {name} = {value!r} is not a valid {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{source}: {name} must be one of {args}, got {value!r}")
        return value
    if origin is tuple:
        return tuple(
            value
            if isinstance(value, (list, tuple))
            else [v.strip() for v in str(value).split(",")]
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
    elif hint is int and not isinstance(value, bool):
        try:
            if float(value) == int(float(value)):
                return int(float(value))
        except (TypeError, ValueError):
            pass
    elif hint is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif hint is str:
        return str(value)
    elif hint is dict and isinstance(value, dict):
        return value
    raise ValueError(
        f"{source}: {name} = {value!r} is not a valid {getattr(hint, '__name__', hint)}"
    )
