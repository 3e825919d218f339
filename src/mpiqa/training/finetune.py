"""Few-shot fine-tuning of a trained prompt model on a user's own labels (``mpiqa finetune``).

The protocol is honest about labels: ``N`` labelled images means ``N`` in all. No
validation part is carved from elsewhere. How long to train is either a fixed schedule
(``select="fixed"``, the step count chosen once on the repository's few-shot testbed,
``recipes/few-shot-testbed.sh``) or chosen by k-fold cross-validation *inside* the ``N``
images (``select="cv"``), where "no training at all" (0 steps, the starting model) is
one of the candidates: when fine-tuning does not beat the starting model within the
labels, it is not applied.

What adapts is a choice (:class:`FinetuneConfig`): the text context and visual prompts by
default, optionally the last blocks of either tower. The image tower's stem is frozen in
every mode, so its output is computed once per image (:class:`StemCache`) and every step
runs only the transformer blocks: a 10-round 50-shot run over ~1,200 images takes minutes
on two CPU cores.

Losses: the pairwise fidelity rank loss over the batch (what SRCC measures), plus
optionally the fidelity loss against labels min-max normalised over the labelled images
(the GRMP-IQA authors normalise this way), and an optional L2 pull towards the starting
tensors (L2-SP), which keeps a small-data update near the model it started from.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mpiqa.data.images import ImageDecodeError, load_image
from mpiqa.data.records import Record
from mpiqa.evaluation.metrics import plcc, srcc
from mpiqa.models.mmp_iqa import MultiModalPromptIQA
from mpiqa.options import options_from_dict
from mpiqa.training.grad_reg import SceneTeacher, regulate, scene_tokens
from mpiqa.training.losses import quality_loss, rank_fidelity_loss

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """How a prompt model adapts to a few labelled images.

    Attributes:
        steps: optimisation steps of the fixed schedule (``select="fixed"``) and of the
            final fit when ``select="cv"`` picks none (never: CV picks from ``candidates``).
        select: ``fixed`` (train ``steps`` steps) or ``cv`` (the step count among
            ``candidates`` with the best mean SRCC over ``folds`` folds of the labels).
        candidates: step counts CV chooses from; 0 is the starting model.
        folds: k of the k-fold cross-validation (also used for the estimate ``fixed``
            reports).
        lr, weight_decay, optimizer, momentum: the optimiser (``adamw`` or ``sgd``).
        batch_size: images per step; ``None`` puts every labelled image in one batch, as
            the GRMP-IQA authors' fine-tuning does.
        rank_weight, quality_weight, plcc_weight: weights of the pairwise rank loss, of
            the fidelity loss to min-max normalised labels, and of (1 - PLCC) / 2 over the
            batch (scale-free, like SRCC).
        anchor: weight of the L2 pull towards the starting tensors (0 = off).
        train_text_context: whether the text context adapts.
        visual_prompt_blocks: adapt the visual prompts of the last K prompted blocks
            (``None``: all, 0: none).
        train_visual_blocks, train_text_blocks: also adapt the last K blocks (and final
            norm) of a tower.
        flip: each step sees each training image or its mirror image, at random.
        grad_reg, grad_reg_mode: GRMP-IQA's quality-aware gradient regularisation
            (lambda, the paper's 5 by default, ``None`` off; ``grmp`` or ``prograd``; see
            :mod:`mpiqa.training.grad_reg`):
            the teacher's scene probabilities are cached with the tokens; the student's
            scene texts go through its own text tower.
        seed: seeds folds, batch order and flips.
    """

    steps: int = 10
    select: str = "fixed"
    candidates: tuple[int, ...] = (0, 10, 20, 40)
    folds: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.0
    batch_size: int | None = None
    rank_weight: float = 1.0
    quality_weight: float = 0.0
    plcc_weight: float = 0.0
    anchor: float = 0.0
    train_text_context: bool = False
    visual_prompt_blocks: int | None = 1
    train_visual_blocks: int = 0
    train_text_blocks: int = 0
    flip: bool = True
    grad_reg: float | None = 5.0
    grad_reg_mode: str = "grmp"
    seed: int = 0

    def __post_init__(self) -> None:
        self.candidates = tuple(sorted({int(c) for c in self.candidates}))
        if self.select not in ("fixed", "cv"):
            raise ValueError(f"select must be 'fixed' or 'cv', got {self.select!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.steps < 0 or any(c < 0 for c in self.candidates):
            raise ValueError("steps and candidates must be >= 0")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (the rank loss compares pairs)")
        if self.visual_prompt_blocks is not None and self.visual_prompt_blocks < 0:
            raise ValueError("visual_prompt_blocks must be >= 0 or None (all)")
        if self.grad_reg_mode not in ("grmp", "prograd"):
            raise ValueError(f"grad_reg_mode must be grmp or prograd, got {self.grad_reg_mode!r}")
        if max(self.rank_weight, self.quality_weight, self.plcc_weight) <= 0:
            raise ValueError("rank_weight, quality_weight or plcc_weight must be > 0")

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneConfig:
        return options_from_dict(cls, data, "finetune")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- cached tokens
def frozen_blocks(model: MultiModalPromptIQA, config: FinetuneConfig) -> int:
    """How many leading image-tower blocks stay frozen, their prompts included: their
    output is computed once per image and cached."""
    layers = len(model.backbone.visual.transformer.resblocks)
    if model.coupling is not None and config.train_text_context:
        return 0  # coupled visual prompts follow the text context in every block
    depth = layers
    if config.train_visual_blocks:
        depth = min(depth, layers - config.train_visual_blocks)
    prompts = model.visual_prompts
    if prompts is not None and config.visual_prompt_blocks != 0:
        k = prompts.depth if config.visual_prompt_blocks is None else config.visual_prompt_blocks
        depth = min(depth, max(0, prompts.depth - k))
    return max(0, depth)


class TokenCache:
    """The image tower's tokens after its frozen leading blocks, per image (and per
    mirror image, for training images), computed once and kept in float16.

    Images go through the model's own preprocessing (``center`` crop: what ``mpiqa
    score`` feeds it), so fine-tuned and scored inputs agree. Files that cannot be
    decoded are reported once, by name, and left out (:attr:`failed`).
    """

    def __init__(
        self,
        model: MultiModalPromptIQA,
        blocks: int,
        batch_size: int = 32,
        teacher: bool = False,
    ) -> None:
        if model.crop != "center":
            raise ValueError("fine-tuning uses the model's centre crop (crop='center')")
        self.model = model
        self.blocks = blocks
        self.batch_size = batch_size
        self.tokens: dict[tuple[str, bool], torch.Tensor] = {}
        # the frozen teacher's scene probabilities (gradient regularisation), per image
        self.teacher = SceneTeacher(model.backbone, copy_backbone=False) if teacher else None
        self.scene: dict[tuple[str, bool], torch.Tensor] = {}
        self.failed: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return (key, False) in self.tokens

    @torch.no_grad()
    def add(self, records: Sequence[Record], mirrored: bool = False) -> None:
        """Cache ``records`` (and their mirror images when ``mirrored``)."""
        todo = [
            (r, flip)
            for r in records
            if r.key not in self.failed
            for flip in ((False, True) if mirrored else (False,))
            if (r.key, flip) not in self.tokens
        ]
        was_training = self.model.training
        self.model.eval()
        for begin in range(0, len(todo), self.batch_size):
            chunk, pixels = [], []
            for record, flip in todo[begin : begin + self.batch_size]:
                try:
                    image = load_image(record.path)
                except (ImageDecodeError, OSError) as err:
                    if record.key not in self.failed:
                        self.failed[record.key] = str(err)
                        # decoding errors name the file already
                        where = "" if str(record.path) in str(err) else f"{record.path}: "
                        logger.error("%s%s (left out)", where, err)
                    continue
                crop = self.model.preprocess(image)
                pixels.append(crop.flip(-1) if flip else crop)
                chunk.append((record.key, flip))
            if chunk:
                batch = torch.cat(pixels).to(self.model.device)
                out = self.model.image_tokens(batch, self.blocks)
                for name, tokens in zip(chunk, out.half().cpu(), strict=True):
                    self.tokens[name] = tokens
                if self.teacher is not None:
                    probs = self.teacher.scene_probs(batch).cpu()
                    self.scene.update(zip(chunk, probs, strict=True))
        self.model.train(was_training)

    def stack(self, keys: Sequence[str], mirrored: bool = False) -> torch.Tensor:
        return torch.stack([self.tokens[(k, mirrored)] for k in keys])

    def stack_scene(self, keys: Sequence[str], mirrored: bool = False) -> torch.Tensor:
        if self.teacher is None:
            raise ValueError("this cache was made without the scene teacher (teacher=True)")
        return torch.stack([self.scene[(k, mirrored)] for k in keys])


# ---------------------------------------------------------------------- the learner
def plcc_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - Pearson correlation) / 2 over a batch: 0 for a perfect linear fit."""
    s, t = score - score.mean(), target - target.mean()
    r = (s * t).sum() / (s.norm() * t.norm() + 1e-8)
    return (1 - r) / 2


def minmax(values: np.ndarray) -> np.ndarray:
    """Labels min-max normalised over the labelled images (constant labels -> 0.5)."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.full_like(values, 0.5, dtype=np.float64)
    return (values - low) / (high - low)


class Adapter:
    """Sets which tensors of ``model`` train, remembers where they started, and runs
    fits from that start on cached tokens (:class:`TokenCache` after
    :attr:`frozen` blocks)."""

    def __init__(self, model: MultiModalPromptIQA, config: FinetuneConfig) -> None:
        self.model = model
        self.config = config
        self.frozen = frozen_blocks(model, config)
        mmp = model.config
        mmp.train_visual_blocks = config.train_visual_blocks
        mmp.train_text_blocks = config.train_text_blocks
        mmp.train_text_context = config.train_text_context
        mmp.train_visual_prompts = config.visual_prompt_blocks != 0
        model.freeze_backbone()
        model.text_prompts.requires_grad_(config.train_text_context)
        if model.visual_prompts is not None:
            model.visual_prompts.requires_grad_(mmp.train_visual_prompts)
            if model.coupling is not None:
                model.coupling.requires_grad_(mmp.train_visual_prompts)
                model.visual_prompts.prompts.requires_grad_(False)
        self.params = dict(model.trainable_parameters())
        if not self.params:
            raise ValueError("nothing to fine-tune: every kind of tensor is frozen")
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self._frozen_scene_text: torch.Tensor | None = None

    def _scene_text(self) -> torch.Tensor:
        """Scene texts through the student's text tower (with gradient where its blocks
        train), as the GRMP-IQA authors compute the student's scene distribution; a
        frozen text tower gives the same features every step, so they are kept."""
        if self._frozen_scene_text is not None:
            return self._frozen_scene_text
        text = self.model.backbone.text
        ids = scene_tokens(self.model.backbone.context_length).to(self.model.device)
        if any(p.requires_grad for p in text.parameters()):
            return F.normalize(text(ids), dim=-1)
        with torch.no_grad():
            self._frozen_scene_text = F.normalize(text(ids), dim=-1)
        return self._frozen_scene_text

    def _regulated_backward(
        self, loss: torch.Tensor, image: torch.Tensor, target: torch.Tensor
    ) -> None:
        params = list(self.params.values())
        g_q = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        scale = self.model.backbone.logit_scale.exp().detach()
        student = (scale * image @ self._scene_text().t()).float().log_softmax(-1)
        kl = F.kl_div(student, target.float(), reduction="batchmean")
        g_s = (
            torch.autograd.grad(kl, params, allow_unused=True)
            if kl.requires_grad
            else [None] * len(params)
        )
        regulated = regulate(g_q, g_s, float(self.config.grad_reg), self.config.grad_reg_mode)
        for param, grad in zip(params, regulated, strict=True):
            param.grad = grad

    def _restore_frozen_prompts(self) -> None:
        # prompts of the cached blocks get no gradient; this keeps weight decay off them
        prompts = self.model.visual_prompts
        if prompts is not None and prompts.prompts.requires_grad and self.frozen:
            with torch.no_grad():
                start = self.start[self._prompt_name]
                prompts.prompts[: self.frozen] = start[: self.frozen]

    @property
    def _prompt_name(self) -> str:
        return next(n for n, p in self.params.items() if p is self.model.visual_prompts.prompts)

    def reset(self) -> None:
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.start[name])

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        device = self.model.device
        out = [
            self.model.predict_image_tokens(tokens[i : i + batch_size].to(device), self.frozen)
            .score.float()
            .cpu()
            for i in range(0, len(tokens), batch_size)
        ]
        self.model.train(was_training)
        return torch.cat(out).numpy() if out else np.empty(0)

    def fit(
        self,
        tokens: torch.Tensor,
        labels: np.ndarray,
        steps: int,
        seed: int,
        mirrored: torch.Tensor | None = None,
        eval_tokens: torch.Tensor | None = None,
        eval_at: Sequence[int] = (),
        scene: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> dict[int, np.ndarray]:
        """Train from the current tensors for ``steps`` steps on cached ``tokens`` (and
        their ``mirrored`` versions, drawn at random when ``config.flip``). Returns
        predictions on ``eval_tokens`` after each step count in ``eval_at`` (0 = before
        training). ``scene`` holds the teacher's scene probabilities of the images (and
        of their mirror images), needed when ``config.grad_reg`` is set."""
        config = self.config
        params = list(self.params.values())
        if config.grad_reg and scene is None:
            raise ValueError("gradient regularisation needs the teacher's scene probabilities")
        if config.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        device = self.model.device
        target = torch.tensor(minmax(np.asarray(labels, dtype=np.float64)), dtype=torch.float32)
        n = len(target)
        batch = n if config.batch_size is None else min(config.batch_size, n)
        outputs: dict[int, np.ndarray] = {}
        if 0 in eval_at and eval_tokens is not None:
            outputs[0] = self.predict(eval_tokens)
        order = torch.randperm(n, generator=generator)
        cursor = 0
        self.model.train()
        for step in range(1, steps + 1):
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor : cursor + batch]
            cursor += batch
            x = tokens[idx]
            flip = None
            if config.flip and mirrored is not None:
                flip = torch.rand(len(idx), generator=generator) < 0.5
                x = torch.where(flip.view(-1, 1, 1), mirrored[idx], x)
            prediction = self.model.predict_image_tokens(x.to(device), self.frozen)
            score = prediction.score
            y = target[idx].to(device)
            loss = score.new_zeros(())
            if config.rank_weight:
                loss = loss + config.rank_weight * rank_fidelity_loss(score, y)
            if config.quality_weight:
                loss = loss + config.quality_weight * quality_loss(score, y, "fidelity")
            if config.plcc_weight:
                loss = loss + config.plcc_weight * plcc_loss(score, y)
            if config.anchor:
                loss = loss + config.anchor * sum(
                    ((p - self.start[name].to(p.device)) ** 2).sum()
                    for name, p in self.params.items()
                )
            optimizer.zero_grad(set_to_none=True)
            if config.grad_reg:
                assert scene is not None
                target_scene = scene[0][idx]
                if flip is not None and scene[1] is not None:
                    target_scene = torch.where(flip.view(-1, 1), scene[1][idx], target_scene)
                self._regulated_backward(loss, prediction.image_features, target_scene.to(device))
            else:
                loss.backward()
            optimizer.step()
            self._restore_frozen_prompts()
            if step in eval_at and eval_tokens is not None:
                outputs[step] = self.predict(eval_tokens)
        self.model.eval()
        return outputs


# ---------------------------------------------------------------------- protocol
@dataclass
class FinetuneResult:
    """What one fine-tuning on ``labelled_images`` labels gave.

    ``cv`` maps each candidate step count to its mean fold SRCC (and ``cv_std``);
    ``chosen_steps`` is what the final fit used; ``cv_srcc`` / ``cv_zero_shot_srcc`` are
    the cross-validated estimates of the fine-tuned and the starting model on the same
    held-out folds; ``zero_shot_srcc`` is the starting model's SRCC over all the labels.
    ``reference_srcc`` / ``reference_cv_srcc``: the same two figures of a model that is
    not fine-tuned (the scoring default), NaN when none was compared.
    """

    labelled_images: int
    chosen_steps: int
    cv: dict[int, float]
    cv_std: dict[int, float]
    cv_srcc: float
    cv_zero_shot_srcc: float
    zero_shot_srcc: float
    reference_srcc: float = math.nan
    reference_cv_srcc: float = math.nan

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cv"] = {str(k): v for k, v in self.cv.items()}
        data["cv_std"] = {str(k): v for k, v in self.cv_std.items()}
        return data


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [np.array(sorted(order[i::k])) for i in range(k)]


def _fold_count(labels: int, folds: int) -> int:
    """Folds of at least 3 images each (SRCC needs a ranking to score)."""
    k = min(folds, labels // 3)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 6 labelled images, got {labels}")
    return k


def fold_srcc(scores: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> float:
    """Mean SRCC over the held-out folds :func:`cross_validate` uses for the same labels,
    ``folds`` and ``seed``: the estimate a fixed model (one that needs no training, such
    as the scoring default) gets on the same footing as a fine-tuned one.

    Raises:
        ValueError: fewer than 6 labels, or scores and labels of different lengths.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    values = []
    for held in _folds(len(labels), _fold_count(len(labels), folds), seed):
        value = srcc(scores[held], labels[held])
        values.append(value if math.isfinite(value) else 0.0)
    return float(np.mean(values))


def cross_validate(
    adapter: Adapter,
    tokens: torch.Tensor,
    labels: np.ndarray,
    seed: int,
    mirrored: torch.Tensor | None = None,
    scene: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> tuple[dict[int, float], dict[int, float]]:
    """Mean and std over folds of the held-out SRCC after each candidate step count."""
    config = adapter.config
    k = _fold_count(len(labels), config.folds)
    candidates = sorted(set(config.candidates) | {0, config.steps})
    per_fold: dict[int, list[float]] = {c: [] for c in candidates}
    for i, held in enumerate(_folds(len(labels), k, seed)):
        train = np.setdiff1d(np.arange(len(labels)), held)
        adapter.reset()
        outputs = adapter.fit(
            tokens[train], labels[train], max(candidates), seed + 1000 * (i + 1),
            mirrored=None if mirrored is None else mirrored[train],
            eval_tokens=tokens[held], eval_at=candidates, scene=_rows(scene, train),
        )  # fmt: skip
        for c in candidates:
            value = srcc(outputs[c], labels[held])
            per_fold[c].append(value if math.isfinite(value) else 0.0)
    adapter.reset()
    mean = {c: float(np.mean(v)) for c, v in per_fold.items()}
    std = {c: float(np.std(v)) for c, v in per_fold.items()}
    return mean, std


def _rows(scene, index):
    if scene is None:
        return None
    return scene[0][index], None if scene[1] is None else scene[1][index]


def finetune(
    adapter: Adapter,
    tokens: torch.Tensor,
    labels: Sequence[float],
    mirrored: torch.Tensor | None = None,
    cross_validated: bool = True,
    scene: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> FinetuneResult:
    """Cross-validate within the labels, then fit on all of them (in place).

    Args:
        adapter: the model and what trains.
        tokens: cached tokens of the labelled images (:class:`TokenCache`).
        labels: their scores (any scale; min-max normalised here).
        mirrored: the tokens of their mirror images, for flip augmentation.
        scene: the teacher's scene probabilities of the images and of their mirror
            images (gradient regularisation).
        cross_validated: estimate within the labels (required by ``select="cv"``);
            without it the ``cv*`` fields are NaN.

    Raises:
        ValueError: fewer than 6 labelled images, non-finite labels, or all equal.
    """
    config = adapter.config
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) != len(tokens):
        raise ValueError(f"{len(tokens)} images but {len(labels)} labels")
    if not np.all(np.isfinite(labels)):
        raise ValueError("labels must be finite numbers")
    if np.ptp(labels) == 0:
        raise ValueError("all labels are equal: there is no ranking to learn")
    adapter.reset()
    zero_shot = srcc(adapter.predict(tokens), labels)
    cv: dict[int, float] = {}
    cv_std: dict[int, float] = {}
    if cross_validated or config.select == "cv":
        cv, cv_std = cross_validate(adapter, tokens, labels, config.seed, mirrored, scene)
    if config.select == "cv":
        best = max(cv[c] for c in config.candidates)
        chosen = min(c for c in config.candidates if cv[c] == best)
    else:
        chosen = config.steps
    adapter.reset()
    if chosen:
        adapter.fit(tokens, labels, chosen, config.seed, mirrored=mirrored, scene=scene)
    return FinetuneResult(
        labelled_images=len(labels),
        chosen_steps=chosen,
        cv=cv,
        cv_std=cv_std,
        cv_srcc=cv.get(chosen, math.nan),
        cv_zero_shot_srcc=cv.get(0, math.nan),
        zero_shot_srcc=float(zero_shot),
    )


def metrics_of(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {"srcc": float(srcc(scores, targets)), "plcc": float(plcc(scores, targets))}
