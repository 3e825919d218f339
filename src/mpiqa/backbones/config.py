"""Architecture configs of CLIP backbones, kept as data (``configs/*.json``).

A config names every size of the model; nothing about the architecture is hard-coded in
the modules. Names follow open_clip (``ViT-B-32``); OpenAI's spelling (``ViT-B/32``,
``ViT-L/14@336px``) is accepted as an alias.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, get_args

Activation = Literal["quick_gelu", "gelu"]
Stem = Literal["patch", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
STEMS = get_args(Stem)


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    # "patch": a strided convolution cuts patches (ViT). "efficientnet-lite{0,1,2}": a hybrid
    # tower whose tokens are the cells of a convolutional feature map; ``stem_stages`` of
    # its 7 stages are kept and ``patch_size`` must equal their total stride.
    stem: Stem = "patch"
    stem_stages: int = 7
    # Hybrid only: stages whose outputs, pooled onto the last stage's grid, are concatenated
    # into the tokens (a feature pyramid); empty = the last stage's output alone.
    stem_taps: tuple[int, ...] = ()
    # Hybrid with taps only: pool the taps onto a fixed grid_size x grid_size grid of
    # tokens whatever the input resolution (None: the last stage's own grid), so that a
    # larger input sharpens the features without lengthening the sequence.
    stem_grid: int | None = None
    # Hybrid with taps only: "mean_std" adds each cell's standard deviation per channel.
    stem_pool: Literal["mean", "mean_std"] = "mean"
    # Hybrid with taps only: the class token starts from a projection of the image's
    # global feature statistics (what a linear probe of the stem sees) instead of a
    # constant, so the transformer refines that summary rather than having to rebuild it.
    global_token: bool = False
    # A ResNet tower instead of a transformer (CLIP's ModifiedResNet, RN50 ...): blocks
    # per stage. ``width`` is then the stem's width (64 for RN50), ``heads`` those of the
    # attention pool, ``patch_size`` the total stride (32) and ``layers`` the stage count.
    resnet_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem_taps", tuple(int(t) for t in self.stem_taps))
        object.__setattr__(self, "resnet_layers", tuple(int(n) for n in self.resnet_layers))
        if self.resnet_layers:
            if self.stem != "patch" or self.stem_taps:
                raise ValueError("a ResNet tower takes no hybrid stem options")
            if len(self.resnet_layers) != 4 or min(self.resnet_layers) < 1:
                raise ValueError(
                    f"resnet_layers must be 4 positive block counts, got {self.resnet_layers}"
                )
            if self.patch_size != 32:
                raise ValueError(f"a ResNet tower's total stride is 32, not {self.patch_size}")
            object.__setattr__(self, "layers", len(self.resnet_layers))
        if any(not 1 <= t <= self.stem_stages for t in self.stem_taps):
            raise ValueError(f"stem_taps {self.stem_taps} must lie in 1..{self.stem_stages}")
        if self.stem_pool not in ("mean", "mean_std"):
            raise ValueError(f"stem_pool must be 'mean' or 'mean_std', got {self.stem_pool!r}")
        pooled = self.stem_grid is not None or self.stem_pool != "mean" or self.global_token
        if pooled and not self.stem_taps:
            raise ValueError("stem_grid, stem_pool and global_token need stem_taps")
        if self.stem_grid is not None and self.stem_grid < 1:
            raise ValueError(f"stem_grid must be positive, got {self.stem_grid}")

    @property
    def is_resnet(self) -> bool:
        return bool(self.resnet_layers)

    @property
    def grid_size(self) -> int:
        return self.stem_grid or self.image_size // self.patch_size

    @property
    def token_channels(self) -> int:
        """Channels of what ``conv1`` turns into tokens: pixels, or the stem's features."""
        if self.stem == "patch":
            return 3
        from mpiqa.backbones.efficientnet import stem_channels, tap_channels

        if self.stem_taps:
            pooled = 2 if self.stem_pool == "mean_std" else 1
            return pooled * tap_channels(self.stem_taps, self.stem)
        return stem_channels(self.stem_stages, self.stem)


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    act: Activation = "quick_gelu"
    name: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.act not in ("quick_gelu", "gelu"):
            raise ValueError(f"act must be 'quick_gelu' or 'gelu', got {self.act!r}")
        for tower, cfg in (("vision", self.vision), ("text", self.text)):
            for field_name in ("width", "heads", "layers"):
                value = getattr(cfg, field_name)
                if not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"{tower} {field_name} must be a positive integer, got {value!r}"
                    )
            # a ResNet's attention pool works on the last stage's 32 x width channels
            attended = cfg.width * 32 if tower == "vision" and self.vision.is_resnet else cfg.width
            if attended % cfg.heads:
                raise ValueError(
                    f"{tower} width {attended} is not divisible by its {cfg.heads} heads"
                )
        vision = self.vision
        if vision.stem not in STEMS:
            raise ValueError(f"unknown vision stem {vision.stem!r}")
        if vision.stem != "patch":
            from mpiqa.backbones.efficientnet import stem_stride

            if not 1 <= vision.stem_stages <= 7:
                raise ValueError(f"stem_stages must be in 1..7, got {vision.stem_stages}")
            stride = stem_stride(vision.stem_stages, vision.stem)
            if vision.patch_size != stride:
                raise ValueError(
                    f"patch_size {vision.patch_size} must equal the stride "
                    f"{stride} of {vision.stem_stages} stem stages"
                )
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError(
                f"image_size {self.vision.image_size} is not a multiple of "
                f"patch_size {self.vision.patch_size}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str | None = None) -> CLIPConfig:
        data = dict(data)
        return cls(
            embed_dim=int(data["embed_dim"]),
            vision=VisionConfig(**data["vision"]),
            text=TextConfig(**data["text"]),
            act=data.get("act", "quick_gelu"),
            name=data.get("name", name),
            description=data.get("description", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_shapes(self, other: CLIPConfig) -> bool:
        """True when both configs give tensors of identical shapes (heads and act aside)."""

        def shape_key(c: CLIPConfig) -> tuple:
            v, t = c.vision, c.text
            return (
                c.embed_dim,
                v.patch_size,
                v.width,
                v.layers,
                v.mlp_ratio,
                v.stem,
                v.stem_stages,
                v.token_channels,
                v.grid_size,
                v.global_token,
                v.resnet_layers,
                t.context_length,
                t.vocab_size,
                t.width,
                t.layers,
                t.mlp_ratio,
            )

        return shape_key(self) == shape_key(other)


def canonical_name(name: str) -> str:
    """``ViT-B/32`` -> ``ViT-B-32``; ``ViT-L/14@336px`` -> ``ViT-L-14-336``."""
    return name.strip().replace("/", "-").replace("@336px", "-336")


@cache
def _registry() -> dict[str, CLIPConfig]:
    configs = {}
    for entry in resources.files("mpiqa.backbones").joinpath("configs").iterdir():
        if entry.name.endswith(".json"):
            stem = entry.name[: -len(".json")]
            configs[stem] = CLIPConfig.from_dict(json.loads(entry.read_text()), name=stem)
    return configs


def list_archs() -> list[str]:
    """Names of the registered backbone architectures, sorted."""
    return sorted(_registry())


def get_config(name: str) -> CLIPConfig:
    """Return the registered config called ``name`` (open_clip or OpenAI spelling), or
    the one in the JSON file ``name`` (a path ending in ``.json``: an architecture being
    tried out, e.g. an ablation, before it is registered).

    Raises:
        KeyError: no architecture of that name; the message lists the known ones.
        ValueError: the JSON file is unreadable or not a valid config (named in the message).
    """
    if name.endswith(".json"):
        from pathlib import Path

        path = Path(name)
        try:
            return CLIPConfig.from_dict(json.loads(path.read_text()), name=path.stem)
        except FileNotFoundError:
            raise KeyError(f"no architecture file {name}") from None
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{name}: not a valid architecture config ({err})") from None
    key = canonical_name(name)
    configs = _registry()
    if key not in configs:
        raise KeyError(f"unknown backbone architecture {name!r}; known: {', '.join(list_archs())}")
    return configs[key]


def registered_config_with_shapes(config: CLIPConfig) -> CLIPConfig | None:
    """The registered config whose tensor shapes equal ``config``'s, if there is one."""
    for registered in _registry().values():
        if registered.same_shapes(config):
            return registered
    return None
