"""mpiqa: blind image quality assessment with prompt-learned CLIP models."""

from mpiqa.backbones import load_clip, tokenize
from mpiqa.models import create_model, list_models
from mpiqa.runtime import tune_malloc

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "load_clip", "tokenize", "tune_malloc"]
