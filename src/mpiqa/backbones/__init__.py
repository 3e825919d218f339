"""CLIP backbones: architecture configs, model, tokenizer and checkpoint loading."""

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.config import CLIPConfig, TextConfig, VisionConfig, get_config, list_archs
from mpiqa.backbones.convert import CheckpointError
from mpiqa.backbones.factory import build_random_clip, load_clip
from mpiqa.backbones.pretrained import ChecksumError, WeightsNotFoundError, list_pretrained
from mpiqa.backbones.tokenizer import Tokenizer, tokenize

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CheckpointError",
    "ChecksumError",
    "TextConfig",
    "Tokenizer",
    "VisionConfig",
    "WeightsNotFoundError",
    "build_random_clip",
    "get_config",
    "list_archs",
    "list_pretrained",
    "load_clip",
    "tokenize",
]
