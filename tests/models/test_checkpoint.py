"""A checkpoint loads back the model that saved it: its trained tensors, and its prompts
that stayed frozen (meta-learned ones, a fine-tuning's starting model's), which a model
rebuilt from the configuration would hold at fresh random values."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mpiqa.backbones.factory import build_random_clip
from mpiqa.models.checkpoint import assign_tensors, load_checkpoint
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.checkpoint import save_checkpoint

BACKBONE = {"arch": "test-tiny", "weights": "random", "seed": 0, "sha256": None}


def _model(**options) -> MultiModalPromptIQA:
    config = MMPConfig(families=("quality",), visual_depth=2, visual_tokens=2, **options)
    return MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), config)


def _moved(model: MultiModalPromptIQA, by: float) -> MultiModalPromptIQA:
    """Every prompt moved away from where a freshly built model puts it."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("backbone."):
                param.add_(by)
    return model.eval()


def _scores(model: MultiModalPromptIQA) -> torch.Tensor:
    images = torch.randn(
        3, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return model.predict(images).score


@pytest.mark.parametrize(
    "frozen",
    [
        {},
        {"train_text_context": False},
        {"train_visual_prompts": False},
        {"train_text_context": False, "train_visual_prompts": False, "train_visual_blocks": 1},
    ],
)
def test_a_checkpoint_loads_back_the_model_that_saved_it(tmp_path, frozen):
    model = _moved(_model(**frozen), 0.5)
    path = save_checkpoint(tmp_path / "best", model, BACKBONE)
    tensors = load_file(str(path))
    assert "text_prompts.quality.ctx" in tensors and "visual_prompts.prompts" in tensors
    # of the backbone, only what trained: the rest comes from its weights
    backbone = {n for n in tensors if n.startswith("backbone.")}
    assert backbone == {
        n for n, p in model.backbone.named_parameters(prefix="backbone") if p.requires_grad
    }
    assert bool(backbone) == bool(frozen.get("train_visual_blocks"))
    for _ in range(2):  # the same at every load
        torch.testing.assert_close(_scores(load_checkpoint(path)), _scores(model), rtol=0, atol=0)


def _without(path, dropped: str, extra: dict | None, form: str = "mpiqa-checkpoint/1"):
    """The checkpoint rewritten in ``form`` (by default as format /1 wrote it: without its
    frozen tensor ``dropped``, since it saved only the tensors that trained), its JSON with
    ``extra`` instead of what it recorded."""
    tensors = load_file(str(path))
    del tensors[dropped]
    save_file(tensors, str(path), metadata={"format": form})
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta.pop("finetune", None)
    meta_path.write_text(json.dumps({**meta, **(extra or {}), "format": form}))


def test_a_fine_tuning_of_format_1_takes_its_frozen_prompts_from_its_starting_model(
    tmp_path, caplog
):
    trained_with = {"config": {"loss": {"quality": 1.0, "distortion": 1.0}}}
    start_path = save_checkpoint(tmp_path / "start", _moved(_model(), 0.5), BACKBONE, trained_with)
    tuned = _model(train_text_context=False)  # as `mpiqa finetune` adapts by default
    assign_tensors(tuned, load_checkpoint(start_path).checkpoint_state_dict())
    with torch.no_grad():
        tuned.visual_prompts.prompts.add_(0.25)
    path = save_checkpoint(tmp_path / "tuned", tuned.eval(), BACKBONE)
    recorded = {"finetune": {"data": {"start": str(start_path)}}}
    _without(path, "text_prompts.quality.ctx", recorded)
    loaded = load_checkpoint(path)
    torch.testing.assert_close(_scores(loaded), _scores(tuned), rtol=0, atol=0)
    assert "taken from the model its fine-tuning started from" in caplog.text
    # the families its start learned from labels (the fine-tuning learned none)
    assert loaded.labelled_families == ("distortion",)

    _without(path, "visual_prompts.prompts", None)  # trained, and missing
    with pytest.raises(ValueError, match="tensors do not match the model: missing"):
        load_checkpoint(path)


def test_a_fine_tuning_round_of_format_1_takes_its_start_from_the_runs_summary(tmp_path):
    start_path = save_checkpoint(tmp_path / "start", _moved(_model(), 0.5), BACKBONE)
    tuned = _model(train_text_context=False)
    assign_tensors(tuned, load_checkpoint(start_path).checkpoint_state_dict())
    path = save_checkpoint(tmp_path / "run" / "round_0" / "best", tuned.eval(), BACKBONE)
    # a round's JSON recorded no start; the run's summary.json did
    _without(path, "text_prompts.quality.ctx", {"finetune": {"config": {}}})
    with pytest.raises(ValueError, match="stayed frozen"):
        load_checkpoint(path)
    summary = {"data": {"start": str(start_path)}, "rounds": []}
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    torch.testing.assert_close(_scores(load_checkpoint(path)), _scores(tuned), rtol=0, atol=0)


def test_a_checkpoint_of_format_1_without_its_frozen_prompts_or_start_is_refused(tmp_path):
    frozen = _model(train_text_context=False, train_visual_prompts=False, train_visual_blocks=1)
    path = save_checkpoint(tmp_path / "run", _moved(frozen, 0.5), BACKBONE)
    _without(path, "visual_prompts.prompts", None)
    with pytest.raises(
        ValueError, match=r"holds no visual_prompts.prompts: prompts that stayed frozen"
    ):
        load_checkpoint(path)
    gone = {"finetune": {"data": {"start": str(tmp_path / "moved.safetensors")}}}
    _without(path, "text_prompts.quality.ctx", gone)
    with pytest.raises(ValueError, match="its starting model .*moved.safetensors is not there"):
        load_checkpoint(path)


def test_a_checkpoint_of_format_2_without_a_frozen_prompt_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run", _model(train_visual_prompts=False), BACKBONE)
    _without(path, "visual_prompts.prompts", None, form="mpiqa-checkpoint/2")
    with pytest.raises(ValueError, match=r"missing \['visual_prompts.prompts'\]"):
        load_checkpoint(path)
