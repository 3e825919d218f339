"""Meta-prompt pre-training: adapted from meta-learned prompts, a held-out distortion task
reaches a lower query loss than from random prompts; and interrupted runs resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mpiqa.backbones import build_random_clip
from mpiqa.data.images import UndecodableImagesError
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.losses import LossWeights
from mpiqa.training.meta import GeneratorTasks, MetaConfig, MetaTrainer

TYPES = ["gaussian_blur", "white_noise", "jpeg", "darken", "brighten", "pixelate",
         "contrast_change", "motion_blur", "impulse_noise", "color_saturation_1"]  # fmt: skip
QUALITY_ONLY = LossWeights(quality=1.0, rank=0.0, scene=0.0, distortion=0.0)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """Textured 48-pixel images: distortions stay visible at test-tiny's 32-pixel input."""
    folder = tmp_path_factory.mktemp("clean48")
    rng = np.random.default_rng(0)
    for i in range(24):
        base = rng.random((8, 8, 3))
        img = (
            np.asarray(
                Image.fromarray((base * 255).astype(np.uint8)).resize((48, 48), Image.NEAREST)
            )
            / 255
        )
        img = np.clip(img + 0.1 * rng.standard_normal(img.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"c{i}.png")
    return folder


def _trainer(clean_dir, out, epochs, algorithm="reptile", seed=0):
    torch.manual_seed(seed)
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=0),
        MMPConfig(families=("quality",), quality_levels=2, visual_depth=2, visual_tokens=4),
    )
    config = MetaConfig(
        algorithm=algorithm, epochs=epochs, outer_lr=0.5, inner_lr=0.01, inner_steps=3, tasks_per_batch=2,
        n_support=12, n_query=12, n_val_types=3, image_size=32, seed=seed,
    )  # fmt: skip
    source = GeneratorTasks(clean_dir, types=TYPES)
    return MetaTrainer(
        model,
        source,
        config,
        out,
        {"arch": "test-tiny", "weights": "random", "seed": 0},
        QUALITY_ONLY,
    )


def test_meta_learned_prompts_adapt_better_than_random_ones(clean_dir, tmp_path):
    trainer = _trainer(clean_dir, tmp_path / "meta", epochs=10)
    random_start = [t.clone() for t in trainer.theta]
    trainer.fit()
    best = load_file(str(tmp_path / "meta/meta_prompts.safetensors"))
    meta_start = [best[name] for name, _ in trainer.model.trainable_parameters()]
    held_out = [
        task
        for e in (-1, -2, -3)
        for task in trainer.source.tasks(trainer.val_types, e, trainer.config, 32)
    ]
    assert not set(trainer.val_types) & set(trainer.train_types)

    def query_loss_after_adaptation(theta):
        trainer.theta = theta
        return float(np.mean([trainer.adapt(task) for task in held_out]))  # k = inner_steps = 3

    assert query_loss_after_adaptation(meta_start) < 0.95 * query_loss_after_adaptation(
        random_start
    )


def test_interrupted_meta_pretraining_resumes_to_the_same_prompts(clean_dir, tmp_path):
    straight = _trainer(clean_dir, tmp_path / "a", epochs=2, algorithm="fomaml")
    straight.fit()
    first = _trainer(clean_dir, tmp_path / "b", epochs=2, algorithm="fomaml")
    first.fit(stop_after=1)
    assert first.epoch == 1
    second = _trainer(clean_dir, tmp_path / "b", epochs=2, algorithm="fomaml")
    second.fit(resume=True)
    assert second.epoch == 2
    for a, b in zip(straight.theta, second.theta, strict=True):
        assert torch.equal(a, b)


def test_fomaml_steps_against_the_query_gradient(clean_dir, tmp_path):
    trainer = _trainer(clean_dir, tmp_path / "c", epochs=1, algorithm="fomaml")
    task = trainer.source.tasks(["jpeg"], 0, trainer.config, 32)[0]
    before = [t.clone() for t in trainer.theta]
    trainer.adapt(task)
    grads = torch.autograd.grad(trainer._loss(task.query), trainer.params, allow_unused=True)
    trainer.theta = [t.clone() for t in before]
    trainer.meta_step([task])
    for b, g, after in zip(before, grads, trainer.theta, strict=True):
        expected = b if g is None else b - trainer.config.outer_lr * g
        assert torch.allclose(after, expected, atol=1e-6)


def test_persistent_task_learner_carries_on_from_the_previous_task(clean_dir, tmp_path):
    """The authors' never-reset learner: the second task of a meta-batch starts where the
    first ended, so the Reptile update differs from the reset learner's."""
    thetas = {}
    for mode in ("reset", "persistent"):
        trainer = _trainer(clean_dir, tmp_path / mode, epochs=1)
        trainer.config.task_learner = mode
        tasks = trainer.source.tasks(trainer.train_types[:2], 0, trainer.config, trainer.size)
        trainer.meta_step(tasks)
        thetas[mode] = [t.clone() for t in trainer.theta]
    assert any(not torch.allclose(a, b) for a, b in zip(*thetas.values(), strict=True))
    with pytest.raises(ValueError, match="task_learner"):
        MetaConfig(task_learner="sometimes")


def test_a_clean_image_that_cannot_be_decoded_stops_before_any_task(clean_dir, tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for name in ("c0.png", "c1.png"):
        (folder / name).write_bytes((clean_dir / name).read_bytes())
    (folder / "cut.png").write_bytes((clean_dir / "c2.png").read_bytes()[:60])
    with pytest.raises(UndecodableImagesError, match=r"1 of 3 images cannot be decoded") as info:
        GeneratorTasks(folder, types=TYPES)
    assert list(info.value.failed) == [str(folder / "cut.png")]
