"""The regularised gradient obeys the published formula exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpiqa.backbones import build_random_clip
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.grad_reg import GradientRegulariser, regulate
from mpiqa.training.losses import LossWeights, total_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_aligned_gradients_lose_lambda_times_the_projection():
    g_q, g_s = t(3.0, 4.0), t(1.0, 0.0)  # <g_q, g_s> = 3, ||g_s||^2 = 1
    (out,) = regulate([g_q], [g_s], lam=5.0)
    assert torch.equal(out, t(3.0 - 5 * 3, 4.0))
    (half,) = regulate([g_q], [g_s], lam=0.5)
    assert torch.equal(half, t(1.5, 4.0))


def test_conflicting_gradients_pass_unchanged_in_grmp_and_are_projected_in_prograd():
    g_q, g_s = t(-2.0, 1.0), t(1.0, 1.0)  # <g_q, g_s> = -1, ||g_s||^2 = 2
    (grmp,) = regulate([g_q], [g_s], lam=5.0, mode="grmp")
    assert torch.equal(grmp, g_q)
    (prograd,) = regulate([g_q], [g_s], mode="prograd")
    assert torch.allclose(prograd, t(-1.5, 1.5))
    assert torch.dot(prograd, g_s) == pytest.approx(0.0, abs=1e-12)  # orthogonal to g_s
    (aligned,) = regulate([t(1.0, 1.0)], [g_s], mode="prograd")
    assert torch.equal(aligned, t(1.0, 1.0))


def test_zero_norm_and_missing_gradients():
    g_q = t(1.0, 2.0)
    assert torch.equal(regulate([g_q], [torch.zeros(2, dtype=torch.float64)])[0], g_q)
    assert torch.equal(regulate([g_q], [None])[0], g_q)
    assert regulate([None], [t(1.0, 0.0)]) == [None]
    with pytest.raises(ValueError, match="mode"):
        regulate([g_q], [g_q], mode="sideways")


def test_each_tensor_is_regulated_on_its_own():
    g_q = [t(1.0, 0.0), t(-1.0, 0.0)]
    g_s = [t(1.0, 0.0), t(1.0, 0.0)]
    out = regulate(g_q, g_s, lam=1.0)
    assert torch.equal(out[0], t(0.0, 0.0)) and torch.equal(out[1], t(-1.0, 0.0))


@pytest.mark.parametrize("mode", ["grmp", "prograd"])
def test_regulariser_writes_the_formula_into_grad(mode):
    torch.manual_seed(0)
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=2), MMPConfig(families=("quality",), visual_depth=2)
    )
    params = [p for _, p in model.trainable_parameters()]
    regulariser = GradientRegulariser(model, lam=5.0, mode=mode)
    assert regulariser.teacher.backbone is model.backbone  # prompts only: no copy needed
    batch = {"pixels": torch.randn(4, 3, 32, 32), "score": torch.tensor([0.1, 0.4, 0.6, 0.9])}

    prediction = model.predict(batch["pixels"])
    regulariser.backward(total_loss(prediction, batch, LossWeights())[0], prediction, batch, params)
    written = [p.grad.clone() for p in params]
    # the same, by hand
    prediction = model.predict(batch["pixels"])
    g_q = torch.autograd.grad(
        total_loss(prediction, batch, LossWeights())[0], params, retain_graph=True
    )
    target = regulariser.teacher.scene_probs(batch["pixels"])
    student = regulariser.teacher.student_log_probs(prediction.image_features)
    g_s = torch.autograd.grad(
        F.kl_div(student, target, reduction="batchmean"), params, allow_unused=True
    )
    for got, want in zip(written, regulate(g_q, g_s, lam=5.0, mode=mode), strict=True):
        assert torch.allclose(got, want, atol=1e-7)
    # a tensor changes exactly when its rule applies; the text context has no g_s (the
    # KL term depends on image features only) and keeps g_q
    assert g_s[0] is None and g_s[-1] is not None
    for q, s, got in zip(g_q, g_s, written, strict=True):
        dot = 0.0 if s is None else float(torch.sum(q * s))
        applies = dot > 0 if mode == "grmp" else dot < 0
        assert (not torch.allclose(got, q)) == applies


def test_teacher_is_a_frozen_copy_when_backbone_blocks_train():
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=2),
        MMPConfig(families=("quality",), visual_depth=1, train_visual_blocks=1),
    )
    regulariser = GradientRegulariser(model)
    assert regulariser.teacher.backbone is not model.backbone
    assert not any(p.requires_grad for p in regulariser.teacher.backbone.parameters())


@pytest.mark.parametrize("texts, text_blocks_regulated", [("teacher", False), ("student", True)])
def test_scene_texts_through_the_student_reach_its_text_blocks(texts, text_blocks_regulated):
    """The authors send the scene texts through the student's text tower: then g_s
    reaches trained text blocks; with the teacher's fixed texts it cannot."""
    torch.manual_seed(0)
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=2),
        MMPConfig(families=("quality",), visual_depth=1, train_text_blocks=1),
    )
    names = [n for n, _ in model.trainable_parameters()]
    params = [p for _, p in model.trainable_parameters()]
    regulariser = GradientRegulariser(model, lam=5.0, scene_texts=texts)
    batch = {"pixels": torch.randn(4, 3, 32, 32), "score": torch.tensor([0.1, 0.4, 0.6, 0.9])}
    prediction = model.predict(batch["pixels"])
    loss = total_loss(prediction, batch, LossWeights())[0]
    g_q = torch.autograd.grad(loss, params, retain_graph=True)
    regulariser.backward(loss, prediction, batch, params)
    text_blocks = [i for i, n in enumerate(names) if n.startswith("backbone.text.")]
    assert text_blocks
    changed = [not torch.allclose(params[i].grad, g_q[i]) for i in text_blocks]
    assert any(changed) == text_blocks_regulated
    with pytest.raises(ValueError, match="scene_texts"):
        GradientRegulariser(model, scene_texts="both")
