"""Few-shot fine-tuning on cached tokens: the cache is exact, only what the config names
trains, the protocol reads exactly the labels it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpiqa.backbones.factory import build_random_clip
from mpiqa.data.datasets import load_dataset
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.finetune import (
    Adapter,
    FinetuneConfig,
    TokenCache,
    finetune,
    fold_srcc,
    frozen_blocks,
)


def _model(**mmp) -> MultiModalPromptIQA:
    options = {"families": ("distortion",), "visual_depth": 2, "visual_tokens": 2, **mmp}
    torch.manual_seed(0)  # prompt initialisation
    return MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), MMPConfig(**options)).eval()


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_cached_tokens_give_the_full_forward(blocks):
    model = _model()
    pixels = torch.randn(3, 3, model.image_size, model.image_size)
    with torch.no_grad():
        full = model.predict(pixels).score
        cached = model.predict_image_tokens(model.image_tokens(pixels, blocks), blocks).score
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-6)


def test_frozen_blocks_follow_what_trains():
    model = _model()  # test-tiny: 2 image blocks, prompts in both
    assert frozen_blocks(model, FinetuneConfig()) == 1  # last prompted block
    assert frozen_blocks(model, FinetuneConfig(visual_prompt_blocks=None)) == 0
    assert frozen_blocks(model, FinetuneConfig(visual_prompt_blocks=0)) == 2  # text only
    assert frozen_blocks(model, FinetuneConfig(visual_prompt_blocks=0, train_visual_blocks=1)) == 1


def _blur_data(blur_task, model, config):
    from mpiqa.training.finetune import TokenCache

    data = load_dataset("csv", blur_task, image_dir="imgs", content_column="content")
    records = data.records[:24]
    cache = TokenCache(model, frozen_blocks(model, config), teacher=True)
    cache.add(records, mirrored=True)
    keys = [r.key for r in records]
    return cache, keys, np.array([r.score for r in records])


@pytest.mark.parametrize("text", [False, True])
def test_only_the_configured_tensors_move(blur_task, text):
    model = _model()
    config = FinetuneConfig(steps=3, lr=1e-2, train_text_context=text, grad_reg=None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapter = Adapter(model, config)
    cache, keys, labels = _blur_data(blur_task, model, config)
    adapter.fit(cache.stack(keys), labels, 3, seed=0, mirrored=cache.stack(keys, True))
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"visual_prompts.prompts"} | (
        {"text_prompts.distortion.ctx"} if text else set()
    )
    prompts = dict(model.named_parameters())["visual_prompts.prompts"]
    # the first block's prompts are cached, so frozen; the last block's trained
    assert torch.equal(prompts[0], before["visual_prompts.prompts"][0])
    assert not torch.equal(prompts[1], before["visual_prompts.prompts"][1])
    adapter.reset()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_training_learns_the_ranking_of_its_labels(blur_task):
    from mpiqa.evaluation.metrics import srcc

    model = _model()
    config = FinetuneConfig(lr=5e-2, flip=False, train_text_context=True, grad_reg=None)
    adapter = Adapter(model, config)
    cache, keys, labels = _blur_data(blur_task, model, config)
    tokens = cache.stack(keys)
    before = srcc(adapter.predict(tokens), labels)
    adapter.fit(tokens, labels, 30, seed=0)
    after = srcc(adapter.predict(tokens), labels)
    assert after > 0.6 and after > before + 0.2


def test_grad_reg_with_negligible_lambda_is_plain_training(blur_task):
    results = []
    for grad_reg in (None, 1e-9):
        model = _model()
        config = FinetuneConfig(steps=4, lr=1e-2, grad_reg=grad_reg)
        adapter = Adapter(model, config)
        cache, keys, labels = _blur_data(blur_task, model, config)
        scene = (cache.stack_scene(keys), cache.stack_scene(keys, True))
        adapter.fit(cache.stack(keys), labels, 4, 0, cache.stack(keys, True), scene=scene)
        results.append(adapter.predict(cache.stack(keys)))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_grad_reg_changes_the_update(blur_task):
    results = []
    for grad_reg in (None, 50.0):
        model = _model()
        config = FinetuneConfig(steps=4, lr=1e-2, grad_reg=grad_reg, flip=False)
        adapter = Adapter(model, config)
        cache, keys, labels = _blur_data(blur_task, model, config)
        adapter.fit(cache.stack(keys), labels, 4, 0, scene=(cache.stack_scene(keys), None))
        results.append(adapter.predict(cache.stack(keys)))
    assert not np.allclose(results[0], results[1])


def test_finetune_reads_only_its_labels_and_cross_validates(blur_task):
    model = _model()
    config = FinetuneConfig(select="cv", candidates=(0, 2, 4), folds=3, lr=1e-2, grad_reg=None)
    adapter = Adapter(model, config)
    cache, keys, labels = _blur_data(blur_task, model, config)
    result = finetune(adapter, cache.stack(keys[:12]), labels[:12])
    assert result.labelled_images == 12
    assert set(result.cv) == {0, 2, 4, config.steps} and result.chosen_steps in (0, 2, 4)
    assert result.cv_srcc == max(result.cv[c] for c in (0, 2, 4))
    assert result.cv_zero_shot_srcc == result.cv[0]


def test_fold_srcc_scores_a_fixed_model_on_the_folds_cross_validation_used(blur_task):
    model = _model()
    config = FinetuneConfig(select="cv", candidates=(0, 2), folds=3, lr=1e-2, grad_reg=None)
    adapter = Adapter(model, config)
    cache, keys, labels = _blur_data(blur_task, model, config)
    tokens, labels = cache.stack(keys[:12]), np.asarray(labels[:12])
    adapter.reset()
    untouched = adapter.predict(tokens)
    result = finetune(adapter, tokens, labels)
    # step 0 of the cross-validation is the starting model on each held-out fold
    assert fold_srcc(untouched, labels, config.folds, config.seed) == pytest.approx(
        result.cv[0], abs=1e-9
    )
    assert fold_srcc(untouched, labels, config.folds, config.seed + 1) != pytest.approx(
        result.cv[0], abs=1e-9
    )
    assert fold_srcc(labels, labels, 3, 0) == 1.0
    with pytest.raises(ValueError, match="6 labelled images"):
        fold_srcc(labels[:5], labels[:5], 3, 0)


@pytest.mark.parametrize(
    "labels, message",
    [([0.5] * 12, "all labels are equal"), ([0.1, float("nan")] * 6, "finite"), ([0, 1] * 2, "6")],
)
def test_finetune_refuses_labels_it_cannot_learn_from(blur_task, labels, message):
    model = _model()
    config = FinetuneConfig()
    adapter = Adapter(model, config)
    cache, keys, _ = _blur_data(blur_task, model, config)
    with pytest.raises(ValueError, match=message):
        finetune(adapter, cache.stack(keys[: len(labels)]), labels)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="select"):
        FinetuneConfig(select="best")
    with pytest.raises(ValueError, match="unknown finetune option"):
        FinetuneConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="batch_size"):
        FinetuneConfig(batch_size=1)


def test_undecodable_images_are_reported_and_left_out(tmp_path, caplog):
    from mpiqa.data.records import Record

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    good = tmp_path / "good.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (120, 30, 60)).save(good)
    model = _model()
    cache = TokenCache(model, 1)
    cache.add([Record("bad.jpg", bad, 1.0, 0.5), Record("good.png", good, 1.0, 0.5)])
    assert "good.png" in cache and "bad.jpg" not in cache
    assert "bad.jpg" in cache.failed and "bad.jpg" in caplog.text
    assert caplog.text.count(str(bad)) == 1  # named once, not by the log and the error both


def test_minmax_labels_over_the_training_images():
    from mpiqa.data.records import Record
    from mpiqa.training.run import minmax_labels

    records = [Record(f"{i}", f"{i}", s, s) for i, s in enumerate([0.2, 0.4, 0.6])]
    assert [r.score for r in minmax_labels(records)] == pytest.approx([0.0, 0.5, 1.0])
