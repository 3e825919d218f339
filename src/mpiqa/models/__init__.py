"""Quality models built on the CLIP backbone, and their registry."""

from mpiqa.models.base import IQAModel
from mpiqa.models.clip_iqa import CLIPIQA
from mpiqa.models.registry import create_model, list_models, model_descriptions, register_model

__all__ = [
    "CLIPIQA",
    "IQAModel",
    "create_model",
    "list_models",
    "model_descriptions",
    "register_model",
]
