"""Reference implementations used as test oracles.

OpenAI's ``clip`` package imports torchvision in its ``__init__``, which cannot load
beside our CPU torch, so its modules are loaded by file path.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import torch

from mpiqa.backbones import CLIPConfig


def _clip_module(name: str) -> ModuleType:
    path = Path(sysconfig.get_paths()["purelib"]) / "clip" / f"{name}.py"
    if not path.is_file():
        raise RuntimeError(
            f"{path} not found: install the test oracle with `pip install openai-clip==1.0.1`"
        )
    spec = importlib.util.spec_from_file_location(f"openai_clip_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def openai_tokenizer():
    return _clip_module("simple_tokenizer").SimpleTokenizer()


@lru_cache(maxsize=1)
def openai_model_module() -> ModuleType:
    return _clip_module("model")


def openai_tokenize(texts: list[str], context_length: int = 77) -> torch.Tensor:
    """OpenAI's ``clip.tokenize(texts, truncate=True)``, re-stated over its tokenizer."""
    tok = openai_tokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot, *tok.encode(text), eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = eot
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def hf_to_openai_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIPModel keys -> OpenAI CLIP keys, written independently of mpiqa's
    converter so that a mapping error cannot cancel itself out."""
    out: dict[str, torch.Tensor] = {}
    towers = {"vision_model": "visual.transformer", "text_model": "transformer"}
    for tower, prefix in towers.items():
        n_layers = 1 + max(
            int(k.split(".")[3]) for k in hf if k.startswith(f"{tower}.encoder.layers.")
        )
        for i in range(n_layers):
            src, dst = f"{tower}.encoder.layers.{i}.", f"{prefix}.resblocks.{i}."
            attn = src + "self_attn."
            out[dst + "attn.in_proj_weight"] = torch.cat(
                [hf[attn + f"{p}_proj.weight"] for p in "qkv"], dim=0
            )
            out[dst + "attn.in_proj_bias"] = torch.cat([hf[attn + f"{p}_proj.bias"] for p in "qkv"])
            for leaf in ("weight", "bias"):
                out[dst + f"attn.out_proj.{leaf}"] = hf[attn + f"out_proj.{leaf}"]
                out[dst + f"ln_1.{leaf}"] = hf[src + f"layer_norm1.{leaf}"]
                out[dst + f"ln_2.{leaf}"] = hf[src + f"layer_norm2.{leaf}"]
                out[dst + f"mlp.c_fc.{leaf}"] = hf[src + f"mlp.fc1.{leaf}"]
                out[dst + f"mlp.c_proj.{leaf}"] = hf[src + f"mlp.fc2.{leaf}"]
    for leaf in ("weight", "bias"):
        out[f"visual.ln_pre.{leaf}"] = hf[f"vision_model.pre_layrnorm.{leaf}"]
        out[f"visual.ln_post.{leaf}"] = hf[f"vision_model.post_layernorm.{leaf}"]
        out[f"ln_final.{leaf}"] = hf[f"text_model.final_layer_norm.{leaf}"]
    out["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    out["visual.proj"] = hf["visual_projection.weight"].T.contiguous()
    out["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    out["text_projection"] = hf["text_projection.weight"].T.contiguous()
    out["logit_scale"] = hf["logit_scale"]
    return {k: v.clone() for k, v in out.items()}


def openai_reference_model(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """OpenAI's own CLIP class holding ``state`` (float32; its build_model casts to fp16)."""
    module = openai_model_module()
    model = module.build_model({k: v.clone() for k, v in state.items()}).float()
    # build_model casts to fp16 before loading: load the weights again at full precision.
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def hf_model_for(config: CLIPConfig, seed: int = 0):
    """transformers' CLIPModel of ``config``'s shapes with seeded random weights."""
    from transformers import CLIPConfig as HFCLIPConfig
    from transformers import CLIPModel

    v, t = config.vision, config.text
    hf_config = HFCLIPConfig(
        projection_dim=config.embed_dim,
        text_config=dict(
            hidden_size=t.width,
            intermediate_size=int(t.width * t.mlp_ratio),
            num_attention_heads=t.heads,
            num_hidden_layers=t.layers,
            max_position_embeddings=t.context_length,
            vocab_size=t.vocab_size,
            hidden_act=config.act,
        ),
        vision_config=dict(
            hidden_size=v.width,
            intermediate_size=int(v.width * v.mlp_ratio),
            num_attention_heads=v.heads,
            num_hidden_layers=v.layers,
            image_size=v.image_size,
            patch_size=v.patch_size,
            hidden_act=config.act,
        ),
    )
    torch.manual_seed(seed)
    model = CLIPModel(hf_config).eval()
    with torch.no_grad():  # transformers initialises some tensors to constants: randomise all
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
        model.logit_scale.fill_(4.0)
    return model
