"""Read CLIP checkpoints of every common format into mpiqa's state-dict layout.

Formats:
- ``openai``: OpenAI's TorchScript ``.pt`` archives (read without running their code).
- ``open_clip``: open_clip / OpenAI-layout state dicts in ``.pt``, ``.bin``, ``.pth``
  or ``.safetensors`` files, also wrapped in a training checkpoint (``{"state_dict": ...}``,
  ``module.`` prefixes).
- ``hf``: a Hugging Face transformers CLIP directory (``config.json`` and
  ``model.safetensors`` or ``pytorch_model.bin``), or such a weights file alone.

Every pickle is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors

from mpiqa.backbones.config import (
    CLIPConfig,
    TextConfig,
    VisionConfig,
    registered_config_with_shapes,
)
from mpiqa.backbones.efficientnet import (
    VARIANTS,
    block_specs,
    stages_for_blocks,
    stem_channels,
    stem_stride,
    tap_channels,
)
from mpiqa.backbones.torchscript import is_torchscript_archive, load_torchscript_state_dict

logger = logging.getLogger(__name__)

Format = Literal["openai", "open_clip", "hf"]
StateDict = dict[str, torch.Tensor]

_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Entries of OpenAI's archives that are not weights.
_OPENAI_EXTRAS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}
_TEXT_TOP_LEVEL = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)


class CheckpointError(ValueError):
    """A checkpoint file that mpiqa cannot read as a CLIP model; the message names it."""


MPIQA_FORMAT = "mpiqa-clip/1"


def embedded_config(path: str | Path) -> CLIPConfig | None:
    """The architecture stored in the header of an mpiqa backbone file
    (``mpiqa pretrain-backbone``), or None for any other file.

    Raises:
        CheckpointError: an unreadable safetensors header, or an mpiqa header whose
            architecture is not a valid config (naming the file).
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # SafetensorError and friends: a malformed header
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != MPIQA_FORMAT:
        return None
    try:
        return CLIPConfig.from_dict(json.loads(meta["config"]), name=meta.get("arch"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its header's architecture is invalid ({err})") from None


def read_tensors(path: Path) -> StateDict:
    """Tensors of a safetensors file or a ``torch.save`` pickle (weights only)."""
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path))
        except Exception as err:  # SafetensorError, or OSError for a header past the end
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or unsafe pickles
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only checkpoint ({err})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _from_openai_layout(state: StateDict) -> StateDict:
    out = {}
    for key, value in state.items():
        if key in _OPENAI_EXTRAS:
            continue
        if key.startswith(_TEXT_TOP_LEVEL):
            key = "text." + key
        out[key] = value
    return out


_HF_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_HF_TOWER = {"vision_model": "visual", "text_model": "text"}
_HF_PLAIN = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "text_model.embeddings.token_embedding.weight": "text.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text.positional_embedding",
    "logit_scale": "logit_scale",
}
_HF_NORMS = {
    "vision_model.pre_layrnorm": "visual.ln_pre",
    "vision_model.post_layernorm": "visual.ln_post",
    "text_model.final_layer_norm": "text.ln_final",
}
_HF_LAYER = re.compile(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def _from_hf_layout(state: StateDict) -> StateDict:
    out: StateDict = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in _HF_PLAIN:
            out[_HF_PLAIN[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()
        elif key == "text_projection.weight":
            out["text.text_projection"] = value.t().contiguous()
        elif key.rsplit(".", 1)[0] in _HF_NORMS:
            base, leaf = key.rsplit(".", 1)
            out[f"{_HF_NORMS[base]}.{leaf}"] = value
        elif match := _HF_LAYER.match(key):
            tower, index, module, leaf = match.groups()
            prefix = f"{_HF_TOWER[tower]}.transformer.resblocks.{index}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((prefix, leaf, ""), {})[module[10]] = value
            elif module in _HF_BLOCK:
                out[f"{prefix}{_HF_BLOCK[module]}.{leaf}"] = value
            else:
                raise CheckpointError(f"unexpected key in a transformers CLIP checkpoint: {key}")
        else:
            raise CheckpointError(f"unexpected key in a transformers CLIP checkpoint: {key}")
    for (prefix, leaf, _), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"incomplete q/k/v projections for {prefix}{leaf}")
        out[f"{prefix}attn.in_proj_{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def to_hf_vision_state_dict(state: StateDict) -> StateDict:
    """mpiqa's image-tower tensors in the key layout of transformers'
    ``CLIPVisionModelWithProjection`` (for side-by-side benchmarks and interoperability)."""
    plain = {v: k for k, v in _HF_PLAIN.items() if k.startswith("vision_model")}
    norms = {v: k for k, v in _HF_NORMS.items() if k.startswith("vision_model")}
    block = {v: k for k, v in _HF_BLOCK.items()}
    out: StateDict = {}
    pattern = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+?)[._](weight|bias)$")
    for key, value in state.items():
        if not key.startswith("visual."):
            continue
        if key in plain:
            out[plain[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key.rsplit(".", 1)[0] in norms:
            base, leaf = key.rsplit(".", 1)
            out[f"{norms[base]}.{leaf}"] = value
        elif match := pattern.match(key):
            index, module, leaf = match.groups()
            prefix = f"vision_model.encoder.layers.{index}."
            if module == "attn.in_proj":
                for name, part in zip("qkv", value.chunk(3), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{leaf}"] = part.contiguous()
            else:
                out[f"{prefix}{block[module]}.{leaf}"] = value
        else:
            raise CheckpointError(f"no transformers key for {key}")
    return out


def detect_layout(state: StateDict) -> Format:
    if "vision_model.embeddings.patch_embedding.weight" in state:
        return "hf"
    if "visual.conv1.weight" in state and "visual.proj" in state:
        return "open_clip"
    if "visual.layer1.0.conv1.weight" in state and "visual.attnpool.c_proj.weight" in state:
        return "open_clip"  # a ResNet tower (RN50 ...), OpenAI's names as well
    raise CheckpointError(
        "not a CLIP checkpoint (no visual.conv1.weight, visual.attnpool.* or vision_model.* keys)"
    )


def to_mpiqa_layout(state: StateDict, layout: Format) -> StateDict:
    if layout == "hf":
        return _from_hf_layout(state)
    return _from_openai_layout(state)


def _count_blocks(state: StateDict, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}transformer\.resblocks\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _count_stem_blocks(state: StateDict) -> int:
    pattern = re.compile(r"^visual\.stem\._blocks\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _stem_variant(state: StateDict, blocks: int) -> str:
    """Which EfficientNet-Lite variant the stem's tensors are: the first whose stage table
    gives every block's projection its (out, in) shape."""
    for variant in VARIANTS:
        try:
            stages = stages_for_blocks(blocks, variant)
        except ValueError:
            continue
        shapes = [
            tuple(w.shape[:2])
            if (w := state.get(f"visual.stem._blocks.{i}._project_conv.weight")) is not None
            else None
            for i in range(blocks)
        ]
        wanted = [
            (c_out, c_in * expand) for c_in, c_out, _, _, expand in block_specs(stages, variant)
        ]
        if shapes == wanted:
            return variant
    raise ValueError(f"a stem of {blocks} blocks with these shapes is no EfficientNet-Lite")


def _infer_taps(stages: int, channels: int, variant: str) -> tuple[tuple[int, ...], str]:
    """The pyramid taps and pooling behind ``channels`` token channels: the last stage
    alone, or the last k stages, mean-pooled or with deviations (what files without an
    embedded config can hold)."""
    if channels == stem_channels(stages, variant):
        return (), "mean"
    for first in range(stages, 0, -1):
        taps = tuple(range(first, stages + 1))
        for pool, factor in (("mean", 1), ("mean_std", 2)):
            if factor * tap_channels(taps, variant) == channels:
                return taps, pool
    raise ValueError(f"{channels} token channels match no run of stem stages")


def shapes_config(state: StateDict) -> CLIPConfig:
    """Everything about the architecture that the tensor shapes determine. Heads cannot be
    read from shapes: they are set by OpenAI's convention (width // 64, at least 1) and
    replaced by the caller when it knows better."""
    try:
        if "visual.attnpool.c_proj.weight" in state:
            vision = _resnet_shapes(state)
            embed_dim = state["visual.attnpool.c_proj.weight"].shape[0]
            return CLIPConfig(embed_dim=embed_dim, vision=vision, text=_text_shapes(state))
        conv = state["visual.conv1.weight"]
        v_width, patch = conv.shape[0], conv.shape[-1]
        stem: dict[str, Any] = {}
        stem_blocks = _count_stem_blocks(state)
        if stem_blocks:
            variant = _stem_variant(state, stem_blocks)
            stages = stages_for_blocks(stem_blocks, variant)
            patch = stem_stride(stages, variant)
            taps, pool = _infer_taps(stages, conv.shape[1], variant)
            stem = {
                "stem": variant,
                "stem_stages": stages,
                "stem_taps": taps,
                "stem_pool": pool,
                "global_token": "visual.stats_proj.weight" in state,
            }
        grid = math.isqrt(state["visual.positional_embedding"].shape[0] - 1)
        vision = VisionConfig(
            image_size=patch * grid,
            patch_size=patch,
            width=v_width,
            layers=_count_blocks(state, "visual."),
            heads=max(1, v_width // 64),
            mlp_ratio=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / v_width,
            **stem,
        )
        return CLIPConfig(
            embed_dim=state["visual.proj"].shape[1], vision=vision, text=_text_shapes(state)
        )
    except KeyError as err:
        raise CheckpointError(f"checkpoint lacks the tensor {err.args[0]}") from None
    except ValueError as err:
        raise CheckpointError(f"unreadable convolutional stem: {err}") from None


def _text_shapes(state: StateDict) -> TextConfig:
    width = state["text.ln_final.weight"].shape[0]
    return TextConfig(
        context_length=state["text.positional_embedding"].shape[0],
        vocab_size=state["text.token_embedding.weight"].shape[0],
        width=width,
        layers=_count_blocks(state, "text."),
        heads=max(1, width // 64),
        mlp_ratio=state["text.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
    )


def _resnet_shapes(state: StateDict) -> VisionConfig:
    """A ResNet tower's config from its tensors, as OpenAI's ``build_model`` reads it:
    blocks per stage, stem width, the attention pool's grid, and its heads by OpenAI's
    convention (32 x width // 64)."""
    width = state["visual.layer1.0.conv1.weight"].shape[0]
    layers = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^visual\.layer{stage}\.(\d+)\.")
        layers.append(len({m.group(1) for k in state if (m := pattern.match(k))}))
    grid = math.isqrt(state["visual.attnpool.positional_embedding"].shape[0] - 1)
    return VisionConfig(
        image_size=32 * grid, patch_size=32, width=width, heads=max(1, width * 32 // 64),
        resnet_layers=tuple(layers),
    )  # fmt: skip


def _hf_config(config_json: dict[str, Any], shapes: CLIPConfig) -> CLIPConfig:
    vision = config_json.get("vision_config") or config_json.get("vision_config_dict") or {}
    text = config_json.get("text_config") or config_json.get("text_config_dict") or {}
    acts = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise CheckpointError(f"unsupported activations in config.json: {sorted(acts)}")
    return replace(
        shapes,
        act=acts.pop(),
        vision=replace(shapes.vision, heads=int(vision.get("num_attention_heads", 12))),
        text=replace(shapes.text, heads=int(text.get("num_attention_heads", 8))),
    )


def resolve_config(
    state: StateDict,
    fmt: Format,
    hint: CLIPConfig | None = None,
    hf_config: dict[str, Any] | None = None,
) -> CLIPConfig:
    """Architecture of a checkpoint: shapes from its tensors, heads and activation from
    (in order) the caller's ``hint``, a transformers ``config.json``, or the registered
    architecture of identical shapes (OpenAI's, so QuickGELU).

    Raises:
        CheckpointError: the hint's shapes do not match the checkpoint's.
    """
    shapes = shapes_config(state)
    if hint is not None:
        if not hint.same_shapes(shapes):
            raise CheckpointError(
                f"checkpoint shapes do not match architecture {hint.name or 'given'}: "
                f"checkpoint {shapes.to_dict()}"
            )
        return hint
    if fmt == "hf" and hf_config is not None:
        try:
            return _hf_config(hf_config, shapes)
        except CheckpointError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            raise CheckpointError(
                f"its config.json does not describe these weights ({type(err).__name__}: {err})"
            ) from None
    registered = registered_config_with_shapes(shapes)
    if registered is not None:
        if fmt == "open_clip":
            logger.info(
                "activation cannot be read from weights: assuming %s as in %s "
                "(pass act='gelu' for open_clip's LAION-trained models)",
                registered.act,
                registered.name,
            )
        return registered
    logger.warning(
        "architecture of shapes %s is not registered: assuming OpenAI's conventions "
        "(heads = width // 64, QuickGELU); pass an architecture to override",
        shapes.to_dict(),
    )
    return shapes


def read_checkpoint(path: str | Path) -> tuple[StateDict, Format, dict[str, Any] | None]:
    """Read any supported checkpoint file or directory.

    Returns:
        (state dict in mpiqa's layout, detected format, transformers config.json or None)

    Raises:
        FileNotFoundError: ``path`` does not exist, or a directory holds no weights file.
        CheckpointError: the file is not a readable CLIP ViT checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    hf_config = None
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            hf_config = _read_json(config_file)
        weights = next((path / f for f in _HF_WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{path}: no {' or '.join(_HF_WEIGHT_FILES)} in this directory")
        path = weights
    elif (path.parent / "config.json").is_file() and path.name in _HF_WEIGHT_FILES:
        hf_config = _read_json(path.parent / "config.json")
    if not path.is_file():
        # /dev/zero would be read without end, a FIFO would block for ever
        raise CheckpointError(f"{path}: not a regular file (a device, pipe or socket)")
    jit = is_torchscript_archive(path)
    state = load_torchscript_state_dict(path) if jit else read_tensors(path)
    try:
        layout = detect_layout(state)
        state = to_mpiqa_layout(state, layout)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    check_weight_values(state, path)
    return state, ("openai" if jit else layout), hf_config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_weight_values(state: StateDict, path: str | Path) -> None:
    """Refuse weights that would silently give meaningless scores: integer or boolean
    tensors where floats belong, and NaN or infinite values.

    Raises:
        CheckpointError: naming the file and the first offending tensor.
    """
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):  # BatchNorm's step counter is an integer
            continue
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {name} is {tensor.dtype}, not floating point (corrupt or "
                "foreign weights)"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
