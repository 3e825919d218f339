"""Quality-aware gradient regularisation (GRMP-IQA, Li et al.).

During fine-tuning, a frozen teacher (the backbone with no prompts) gives each image a
distribution over scene categories from "a photo of a {scene}." prompts. The student
(the prompted model) gives its own, from its image features against the same scene
texts. The gradient g_s of KL(teacher || student) shows the direction that moves the
model's semantics. Per parameter tensor, the quality gradient g_q is then regulated:

- ``grmp`` (the published implementation): where <g_q, g_s> > 0,
  g = g_q - lambda * <g_q, g_s> / ||g_s||^2 * g_s; otherwise g = g_q.
- ``prograd`` (ProGrad, Zhu et al. 2023): only on conflict, <g_q, g_s> < 0,
  g = g_q - <g_q, g_s> / ||g_s||^2 * g_s; otherwise g = g_q.

A missing gradient counts as zero, and so does a zero-norm g_s, which leaves g = g_q.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.tokenizer import tokenize
from mpiqa.prompts.vocab import SCENE_PHRASES, SCENES
from mpiqa.training.data_parallel import GradientSync

Mode = Literal["grmp", "prograd"]


def regulate(
    g_q: Sequence[torch.Tensor | None],
    g_s: Sequence[torch.Tensor | None],
    lam: float = 5.0,
    mode: Mode = "grmp",
) -> list[torch.Tensor | None]:
    """The regulated gradient of each parameter tensor (see the module docstring)."""
    if mode not in ("grmp", "prograd"):
        raise ValueError(f"mode must be grmp or prograd, got {mode!r}")
    out: list[torch.Tensor | None] = []
    for q, s in zip(g_q, g_s, strict=True):
        if q is None:
            out.append(None)
            continue
        if s is None:
            out.append(q)
            continue
        dot = torch.sum(q * s)
        norm2 = torch.sum(s * s)
        if norm2 == 0:
            out.append(q)
        elif mode == "grmp" and dot > 0:
            out.append(q - lam * dot / norm2 * s)
        elif mode == "prograd" and dot < 0:
            out.append(q - dot / norm2 * s)
        else:
            out.append(q)
    return out


def scene_tokens(context_length: int) -> torch.Tensor:
    """Token ids of the scene prompts "a photo of {scene}.", one per scene category."""
    return tokenize([f"a photo of {SCENE_PHRASES[s]}." for s in SCENES], context_length)


class SceneTeacher(torch.nn.Module):
    """Frozen CLIP without prompts: scene probabilities of images, and the scene text
    features the student is compared on."""

    def __init__(self, backbone: CLIP, copy_backbone: bool) -> None:
        super().__init__()
        # A copy only when the student trains backbone blocks: otherwise the student's
        # backbone *is* the frozen model, and the teacher is it without prompts.
        self.backbone = copy.deepcopy(backbone).requires_grad_(False) if copy_backbone else backbone
        ids = scene_tokens(backbone.context_length).to(backbone.logit_scale.device)
        with torch.no_grad():
            features = self.backbone.encode_text(ids)
        self.register_buffer("scene_ids", ids, persistent=False)
        self.register_buffer("scene_text", F.normalize(features, dim=-1), persistent=False)

    @torch.no_grad()
    def scene_probs(self, pixels: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.backbone.encode_image(pixels), dim=-1)
        return (self.backbone.logit_scale.exp() * image @ self.scene_text.t()).float().softmax(-1)

    def student_log_probs(
        self, image_features: torch.Tensor, scene_text: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The student's log scene probabilities: its image features against the
        teacher's scene texts, or against ``scene_text`` (the same texts through the
        student's own text tower)."""
        text = self.scene_text if scene_text is None else scene_text
        # in fp32: under bf16/fp16 autocast the student's features come in half precision
        logits = (
            self.backbone.logit_scale.exp().detach() * image_features.float() @ text.t().float()
        )
        return logits.log_softmax(-1)


class GradientRegulariser:
    """A trainer backward strategy: computes g_q and g_s and writes the regulated
    gradient into ``.grad``.

    Args:
        model: the prompt model being fine-tuned.
        lam: lambda of the ``grmp`` rule (5 in the paper).
        mode: ``grmp`` or ``prograd``.
        scene_texts: ``teacher``: the student's scene distribution uses the teacher's
            fixed scene texts (g_s reaches only tensors that move image features);
            ``student``: the texts go through the student's text tower, so trained text
            blocks are regulated too (the authors' code).
    """

    sums_gradients = True  # the rule is not linear: g_q and g_s are summed before it

    def __init__(
        self, model, lam: float = 5.0, mode: Mode = "grmp", scene_texts: str = "teacher"
    ) -> None:
        if scene_texts not in ("teacher", "student"):
            raise ValueError(f"scene_texts must be teacher or student, got {scene_texts!r}")
        trains_backbone = any(p.requires_grad for p in model.backbone.parameters())
        self.teacher = SceneTeacher(model.backbone, copy_backbone=trains_backbone)
        self.student_text = model.backbone.text if scene_texts == "student" else None
        self.lam = lam
        self.mode = mode
        self.last_kl = float("nan")
        self.sync = GradientSync()  # the trainer replaces it under torchrun
        self.loss_scale = lambda loss: loss  # the trainer's fp16 loss scaling

    def backward(
        self, loss: torch.Tensor, prediction, batch: dict, params: list[torch.nn.Parameter]
    ) -> None:
        sync = self.sync
        # both losses scaled alike: the rule is linear in g_q and blind to the length of
        # g_s, so the regulated gradient is the scale times the true one
        g_q = torch.autograd.grad(
            self.loss_scale(loss), params, retain_graph=True, allow_unused=True
        )
        g_q = sync.sum_gradients(g_q, params)
        target = self.teacher.scene_probs(batch["pixels"])
        scene_text = None
        if self.student_text is not None:  # the authors' variant: g_s reaches the text tower
            scene_text = F.normalize(self.student_text(self.teacher.scene_ids), dim=-1)
        student = self.teacher.student_log_probs(prediction.image_features, scene_text)
        # "batchmean" over the global batch: this rank's sum over the global count
        kl = F.kl_div(student, target, reduction="sum") / sync.global_count(len(target))
        if kl.requires_grad:
            g_s = torch.autograd.grad(self.loss_scale(kl), params, allow_unused=True)
            g_s = sync.sum_gradients(g_s, params)
        else:  # no trained tensor moves the image features (text prompts only): g_s = 0
            g_s = [None] * len(params)
        self.last_kl = sync.sum_float(float(kl.detach()))
        for param, grad in zip(params, regulate(g_q, g_s, self.lam, self.mode), strict=True):
            param.grad = grad
