"""Prompt modules that adapt a frozen CLIP: text context (CoOp) and deep visual prompts."""

from mpiqa.prompts.text import TextPromptLearner
from mpiqa.prompts.visual import TextToVisualCoupling, VisualPromptLearner

__all__ = ["TextPromptLearner", "TextToVisualCoupling", "VisualPromptLearner"]
