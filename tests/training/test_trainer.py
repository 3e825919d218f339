"""Training on a task with a known answer, and resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mpiqa.data.datasets import load_dataset
from mpiqa.data.splits import Split
from mpiqa.evaluation.metrics import srcc
from mpiqa.evaluation.predict import predict_records
from mpiqa.training.checkpoint import load_checkpoint
from mpiqa.training.config import TrainConfig
from mpiqa.training.run import build_model, train_run


def _config(root, epochs=15, **extra):
    overrides = [
        'data.dataset="csv"', f'data.root="{root}"', "data.val_fraction=0.3",
        'backbone.arch="test-tiny"', 'backbone.weights="random"',
        f"train.epochs={epochs}", "train.batch_size=32", "optim.lr=0.01",
        'model.families=["quality"]', "model.visual_depth=2", "model.visual_tokens=4",
        "model.train_visual_blocks=1",
    ]  # fmt: skip
    return TrainConfig().override(overrides + [f"{k}={v}" for k, v in extra.items()])


def test_training_learns_blur_far_above_chance(blur_task, csv_task, tmp_path):
    config = _config(blur_task)
    result = train_run(config, tmp_path / "run")
    dataset = load_dataset("csv", blur_task)
    val = dataset.subset(Split.load(tmp_path / "run/split.json").val)
    untrained, _ = build_model(config)
    before = srcc(predict_records(untrained, val).scores, [r.score for r in val])
    assert len(val) >= 50
    assert result["best"]["srcc"] > 0.4 and result["best"]["srcc"] > before + 0.2
    trained = load_checkpoint(tmp_path / "run/best.safetensors")
    after = srcc(predict_records(trained, val).scores, [r.score for r in val])
    assert after == pytest.approx(
        result["best"]["srcc"], abs=1e-6
    )  # the checkpoint is the selected model


def test_the_checkpoint_keeps_the_prompts_that_stayed_frozen(blur_task, csv_task, tmp_path):
    # as the grmp-paper preset keeps its meta-learned visual prompts: prompts from
    # --init-prompts, frozen; here the text context too, and the last block trains
    frozen = {"model.train_visual_prompts": "false", "model.train_text_context": "false"}
    config = _config(blur_task, epochs=2, **frozen)
    model, _ = build_model(config)
    generator = torch.Generator().manual_seed(1)
    init = {
        name: torch.randn(p.shape, generator=generator)
        for name, p in model.named_parameters()
        if not name.startswith("backbone.")
    }
    save_file(init, tmp_path / "init.safetensors")
    result = train_run(config, tmp_path / "run", init_prompts=tmp_path / "init.safetensors")
    trained = load_checkpoint(tmp_path / "run/best.safetensors")
    params = dict(trained.named_parameters())
    for name, value in init.items():
        assert torch.equal(params[name], value), name
    val = load_dataset("csv", blur_task).subset(Split.load(tmp_path / "run/split.json").val)
    after = srcc(predict_records(trained, val).scores, [r.score for r in val])
    assert after == pytest.approx(result["best"]["srcc"], abs=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_ends_where_the_uninterrupted_run_ends(blur_task, csv_task, tmp_path, precision):
    config = _config(blur_task, epochs=4, **{"train.precision": f'"{precision}"'})
    train_run(config, tmp_path / "straight")
    train_run(config, tmp_path / "interrupted", stop_after=2)
    assert len(open(tmp_path / "interrupted/log.jsonl").readlines()) == 2  # stopped after 2 of 4
    scaler = torch.load(tmp_path / "interrupted/state.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (precision == "fp16")  # fp16's loss scale goes on where it was
    train_run(config, tmp_path / "interrupted", resume=True)
    a = load_file(str(tmp_path / "straight/last.safetensors"))
    b = load_file(str(tmp_path / "interrupted/last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = lambda d: [json.loads(line)["val"] for line in open(tmp_path / d / "log.jsonl")]  # noqa: E731
    assert log("straight") == log("interrupted")


@pytest.mark.parametrize("crash_in", ["state", "last"])
def test_a_crash_while_saving_resumes_to_the_uninterrupted_run(
    blur_task, csv_task, tmp_path, monkeypatch, crash_in
):
    """state.pt is the one commit: a crash while writing it (after epoch 2 was logged) or
    just after it (before last.safetensors) resumes to the same weights and log."""
    from mpiqa.training import trainer as trainer_module

    config = _config(blur_task, epochs=4)
    train_run(config, tmp_path / "straight")
    calls = {"state": 0, "last": 0}
    real_atomic, real_save = trainer_module._atomic, trainer_module.save_checkpoint

    def atomic(path, write):
        calls["state"] += 1
        if crash_in == "state" and calls["state"] == 2:
            raise OSError(28, "No space left on device")
        return real_atomic(path, write)

    def save(path, *args, **kwargs):
        if path.name == "last":
            calls["last"] += 1
            if crash_in == "last" and calls["last"] == 2:
                raise OSError(28, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "_atomic", atomic)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    with pytest.raises(OSError):
        train_run(config, tmp_path / "crashed")
    monkeypatch.setattr(trainer_module, "_atomic", real_atomic)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    train_run(config, tmp_path / "crashed", resume=True)
    a = load_file(str(tmp_path / "straight/last.safetensors"))
    b = load_file(str(tmp_path / "crashed/last.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = lambda d: [json.loads(line)["val"] for line in open(tmp_path / d / "log.jsonl")]  # noqa: E731
    assert log("straight") == log("crashed")  # each epoch logged once


def test_checkpoint_holds_the_prompts_and_the_trained_backbone_tensors_only(
    blur_task, csv_task, tmp_path
):
    config = _config(blur_task, epochs=1)
    train_run(config, tmp_path / "run")
    tensors = load_file(str(tmp_path / "run/best.safetensors"))
    meta = json.loads((tmp_path / "run/best.json").read_text())
    assert "text_prompts.quality.ctx" in tensors and "backbone.visual.conv1.weight" not in tensors
    assert meta["backbone"]["arch"] == "test-tiny" and meta["mmp"]["visual_depth"] == 2


@pytest.mark.parametrize("grad_reg", [None, 5.0])
def test_bf16_training_runs_and_stays_finite(blur_task, csv_task, tmp_path, grad_reg):
    extra = {"train.grad_reg": grad_reg} if grad_reg else {}
    config = _config(blur_task, epochs=1, **{"train.precision": '"bf16"'}, **extra)
    result = train_run(config, tmp_path / "bf16")
    log = json.loads(open(tmp_path / "bf16/log.jsonl").readline())
    assert torch.isfinite(torch.tensor(log["train"]["loss"])) and -1 <= result["best"]["srcc"] <= 1


@pytest.mark.parametrize("grad_reg", [None, 5.0])
def test_fp16_training_scales_the_loss_so_small_gradients_survive(
    blur_task, csv_task, tmp_path, grad_reg
):
    """A loss a million times smaller gives fp16 gradients below its smallest number;
    with loss scaling every trained tensor still moves as in fp32 (SGD: the update is the
    gradient times the lr, so a 1e4 lr makes up for the 1e-6 weight)."""
    settings = {
        "loss.quality": "1e-6", "optim.optimizer": '"sgd"', "optim.lr": "1e4",
        "optim.momentum": "0", "optim.weight_decay": "0",
        **({"train.grad_reg": grad_reg} if grad_reg else {}),
    }  # fmt: skip
    moved = {}
    for precision in ("fp32", "fp16"):
        config = _config(blur_task, epochs=1, **settings, **{"train.precision": f'"{precision}"'})
        train_run(config, tmp_path / precision)
        moved[precision] = load_file(str(tmp_path / precision / "last.safetensors"))
    start = {n: p.detach().clone() for n, p in build_model(config)[0].trainable_parameters()}
    assert len(start) > 10  # prompts, the last block and ln_post
    for key, begin in start.items():
        step32, step16 = moved["fp32"][key] - begin, moved["fp16"][key] - begin
        assert step32.norm() > 0, key
        assert (step16 - step32).norm() < 0.05 * step32.norm(), key
