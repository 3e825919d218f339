"""Data-parallel training: the batch sampler draws what a single-process DataLoader
draws, and ``torchrun --nproc_per_node=2 -m mpiqa train`` ends with the prompts of a
single-process run with the same global batch (rank loss and gradient regularisation
included, both of which are not means over images)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from mpiqa.cli.main import build_parser, main
from mpiqa.cli.train import build_config
from mpiqa.distributed import Context
from mpiqa.training.data_parallel import GlobalBatchSampler
from mpiqa.training.run import build_model
from tests.torchrun import rerun_on_gloo_abort, torchrun, two_machines
from tests.training.conftest import make_blur_task

pytestmark = rerun_on_gloo_abort  # see tests/torchrun.py


@pytest.mark.parametrize("n, batch, drop_last", [(23, 8, True), (23, 8, False), (5, 8, False)])
def test_sampler_draws_what_a_shuffling_dataloader_draws(n, batch, drop_last):
    expected = list(
        DataLoader(
            range(n),
            batch_size=batch,
            shuffle=True,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(3),
        )
    )
    generator = torch.Generator().manual_seed(3)
    sampler = GlobalBatchSampler(n, batch, generator, drop_last)
    got = DataLoader(range(n), batch_sampler=sampler, generator=generator)  # as the trainer
    assert [b.tolist() for b in got] == [b.tolist() for b in expected]
    assert len(sampler) == len(expected)


def test_sampler_slices_each_global_batch_across_ranks():
    def draw(rank: int) -> list[list[int]]:
        return list(
            GlobalBatchSampler(
                20, 8, torch.Generator().manual_seed(0), True, Context(rank, 2, rank)
            )
        )

    single = list(GlobalBatchSampler(20, 8, torch.Generator().manual_seed(0), True))
    r0, r1 = draw(0), draw(1)
    for whole, a, b in zip(single, r0, r1, strict=True):
        assert sorted(a + b) == sorted(whole) and not set(a) & set(b) and len(a) == len(b) == 4


def _run_single_and_double(args: list[str], tmp_path) -> tuple:
    """``mpiqa ARGS`` in this process and under ``torchrun --nproc_per_node=2``; their
    run directories."""
    single, double = tmp_path / "single", tmp_path / "double"
    assert main([*args, "--out", str(single)]) == 0
    result = torchrun([*args, "--out", str(double)])
    assert result.returncode == 0, result.stderr[-3000:]
    return single, double


def _same_prompts(single, double, atol: float) -> dict[str, torch.Tensor]:
    a, b = load_file(str(single / "last.safetensors")), load_file(str(double / "last.safetensors"))
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=atol, msg=name)
    return a


def _logs(single, double) -> list[tuple[dict, dict]]:
    def read(run):
        return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]

    log_a, log_b = read(single), read(double)
    assert len(log_a) == len(log_b) > 0
    return list(zip(log_a, log_b, strict=True))


TINY = [
    "--dataset", "csv", "--backbone", "test-tiny", "--weights", "random",
    "--set", "model.visual_depth=2", "--set", "model.visual_tokens=2",
    "--set", "loss.rank=0.5", "--epochs", "2", "--batch-size", "8",
]  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [[], ["--grad-reg", "5"], ["--grad-reg", "5", "--precision", "fp16"]],
    ids=["plain", "grad-reg", "grad-reg-fp16"],
)
def test_two_process_training_equals_single_process(tmp_path, extra):
    root = _csv_task(tmp_path)
    single, double = _run_single_and_double(["train", "--root", str(root), *TINY, *extra], tmp_path)
    fp16 = "fp16" in extra  # half-batch forward passes round differently in fp16
    a = _same_prompts(single, double, atol=1e-3 if fp16 else 1e-5)
    scalers = [torch.load(r / "state.pt", weights_only=True)["scaler"] for r in (single, double)]
    assert scalers[0] == scalers[1] and bool(scalers[0]) == fp16  # the same loss scale
    # the prompts moved far more than the tolerance, so the check above has teeth
    args = build_parser().parse_args(["train", "--root", str(root), *TINY, "--out", "x"])
    initial = dict(build_model(build_config(args))[0].trainable_parameters())
    assert max(float((a[k] - initial[k].detach()).abs().max()) for k in a) > 1e-2
    logs = _logs(single, double)
    assert len(logs) == 2
    for x, y in logs:
        assert y["train"]["loss"] == pytest.approx(x["train"]["loss"], rel=1e-3 if fp16 else 1e-4)
        assert y["val"]["srcc"] == pytest.approx(x["val"]["srcc"], abs=1e-6)
    assert (double / "split.json").read_text() == (single / "split.json").read_text()


def _csv_task(tmp_path):
    root = make_blur_task(tmp_path / "task", n_contents=8, size=32)
    # the subprocess sees the plain csv adapter: paths relative to the root
    labels = root / "labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([lines[0], *("imgs/" + line for line in lines[1:])]) + "\n")
    return root


def test_training_over_two_machines_with_a_shared_out_equals_one_process(tmp_path):
    # torchrun --nnodes=2: rank 0 writes the run, the other machine's process reads nothing
    args = ["train", "--root", str(_csv_task(tmp_path)), *TINY]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    results = two_machines([*args, "--out", str(tmp_path / "double")], (tmp_path, tmp_path))
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-3000:]
    _same_prompts(tmp_path / "single", tmp_path / "double", atol=1e-5)


def test_two_process_rounds_print_and_write_one_summary(tmp_path, capsys):
    # before, every process scored each round's test part, wrote summary.json and printed
    # the table: twice the work, two writers of one file, the table twice on stdout
    args = ["train", "--root", str(_csv_task(tmp_path)), *TINY, "--epochs", "1", "--rounds", "2"]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    table = capsys.readouterr().out
    result = torchrun([*args, "--out", str(tmp_path / "double")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == table and table.count("| srcc |") == 1
    single, double = (
        json.loads((tmp_path / r / "summary.json").read_text()) for r in ("single", "double")
    )
    for a, b in zip(single["rounds"], double["rounds"], strict=True):
        assert b["srcc"] == pytest.approx(a["srcc"], abs=1e-6)


def _meta_args(tmp_path) -> list[str]:
    clean = tmp_path / "clean"
    clean.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(clean / f"{i}.png")
    return [
        "meta-pretrain", "--root", str(clean), "--backbone", "test-tiny", "--weights", "random",
        "--set", "meta.n_support=4", "--set", "meta.n_query=4",
        "--set", "meta.inner_steps=2", "--set", "model.visual_depth=2",
        "--set", "model.visual_tokens=2",
    ]  # fmt: skip


@pytest.mark.parametrize("command", ["train", "meta-pretrain"])
def test_resuming_over_two_machines_that_do_not_share_out_stops_with_one_line(tmp_path, command):
    # Only machine a holds the run: before, b's process started afresh while a's went on,
    # and both waited in their next collective until torch's timeout (30 minutes).
    if command == "train":  # --dataset: b's process builds a config, as a's reads its own
        args = ["train", "--root", str(_csv_task(tmp_path)), *TINY, "--allow-changes"]
    else:
        args = _meta_args(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    assert main([*args, "--epochs", "1", "--out", str(a / "run")]) == 0
    results = two_machines([*args, "--epochs", "2", "--out", "run", "--resume"], (a, b), 120)
    assert all(r.returncode != 0 for r in results)
    stderr = "".join(r.stderr for r in results)
    assert stderr.count("mpiqa: error:") == 1, stderr[-3000:]
    assert "--resume: the processes found different saved runs in run (" in stderr
    assert "over several machines, --out must be a folder they all share" in stderr
    assert not (b / "run" / "log.jsonl").exists()


def test_two_processes_share_the_image_check_and_one_names_the_bad_files(tmp_path, capsys):
    root = _csv_task(tmp_path)
    lines = (root / "labels.csv").read_text().splitlines()
    bad = [line.split(",")[0] for line in lines[1:4]]  # three, so that both ranks find some
    for name in bad:
        (root / name).write_bytes(b"not an image")
    args = ["train", "--root", str(root), *TINY, "--epochs", "1", "--on-error", "skip"]
    single, double = _run_single_and_double(args, tmp_path)
    assert (double / "split.json").read_text() == (single / "split.json").read_text()
    notes = json.loads((single / "split.json").read_text())["notes"]["undecodable"]
    assert sorted(notes) == sorted(bad)
    result = torchrun([*args[:-2], "--out", str(tmp_path / "fail")])
    assert result.returncode != 0
    for name in bad:  # one line per bad file, from the first process only
        assert result.stderr.count(f"{name}: not an image format") == 1, result.stderr[-3000:]


def test_two_process_meta_pretraining_equals_single_process(tmp_path):
    args = [*_meta_args(tmp_path), "--epochs", "1"]
    single, double = _run_single_and_double(args, tmp_path)
    _same_prompts(single, double, atol=1e-6)
    for x, y in _logs(single, double):
        assert y["train_query_loss"] == pytest.approx(x["train_query_loss"], rel=1e-5)
        assert y["val_query_loss"] == pytest.approx(x["val_query_loss"], rel=1e-5)
