"""mpiqa: blind image quality assessment with prompt-learned CLIP models."""

from mpiqa.backbones import load_clip, tokenize
# create_model, list_models: added with mpiqa.models

__version__ = "0.1.0"

__all__ = ["__version__", "load_clip", "tokenize"]
