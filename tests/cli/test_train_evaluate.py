"""mpiqa train -> evaluate -> score --checkpoint, end to end on the CPU."""

from __future__ import annotations

import csv
import json

import pytest

from mpiqa.cli.main import main
from tests.training.conftest import make_blur_task, own_label_file

TINY = [
    "--backbone",
    "test-tiny",
    "--weights",
    "random",
    "--set",
    "model.visual_depth=2",
    "--set",
    "model.visual_tokens=2",
]


def _train(root, *args: str) -> int:
    """``mpiqa train`` on the blur task with the tiny random backbone."""
    return main(["train", "--dataset", "csv", "--root", str(root), *TINY, *args])


def test_train_evaluate_and_score_with_explanations(tmp_path, csv_task, capsys):
    root = make_blur_task(tmp_path / "task", n_contents=12, size=32)
    run = tmp_path / "run"
    assert _train(root, "--epochs", "2", "--batch-size", "16", "--out", str(run)) == 0
    for name in ("best.safetensors", "best.json", "split.json", "config.json", "log.jsonl"):
        assert (run / name).is_file(), name

    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run / "best.safetensors"),
                "--dataset",
                "csv",
                "--root",
                str(root),
                "--split",
                "test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"srcc", "plcc", "krcc", "rmse", "n"} <= set(metrics) and metrics["n"] == len(
        json.loads((run / "split.json").read_text())["test"]
    )
    assert (out / "table.md").read_text().startswith("| |") and (
        out / "scatter.png"
    ).stat().st_size > 0

    zero_shot = tmp_path / "zs"
    assert main(["evaluate", "--model", "clip-iqa", "--backbone", "test-tiny", "--weights", "random", "--dataset", "csv",
                 "--root", str(root), "--split", "test", "--split-file", str(run / "split.json"), "--out", str(zero_shot)]) == 0  # fmt: skip
    assert json.loads((zero_shot / "metrics.json").read_text())["n"] == metrics["n"]

    capsys.readouterr()
    assert (
        main(
            [
                "score",
                str(root / "imgs" / "c00_L0.png"),
                "--checkpoint",
                str(run / "best.safetensors"),
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["path", "score", "distortion", "distortion_prob", "scene", "scene_prob"]
    assert len(rows) == 2 and rows[1][2] and rows[1][4]


# the csv adapter's options for the blur task, given as a user would (no csv_task fixture)
TASK_OPTIONS = ["--dataset-option", "image_dir=imgs", "--dataset-option", "content_column=content"]


def test_rounds_protocol_writes_a_summary(tmp_path):
    root = make_blur_task(tmp_path / "task", n_contents=10, size=32)
    out = tmp_path / "rounds"
    # each round's test part is read with the run's --dataset-option too
    assert _train(root, *TASK_OPTIONS, "--epochs", "1", "--rounds", "2", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rounds"]) == 2 and set(summary["summary"]["srcc"]) == {
        "median",
        "mean",
        "std",
    }
    splits = [json.loads((out / f"round_{r}/split.json").read_text())["test"] for r in range(2)]
    assert splits[0] != splits[1]
    assert "median" in (out / "summary.md").read_text()
    assert (out / "rounds.png").stat().st_size > 0


def test_undecodable_images_stop_the_run_or_are_left_out_and_evaluate_reads_the_run(
    tmp_path, capsys
):
    root = make_blur_task(tmp_path / "task", n_contents=10, size=32)
    bad = ["c03_L2.png", "c07_L0.png"]
    for name in bad:
        (root / "imgs" / name).write_bytes(b"not an image")
    run = tmp_path / "fail"
    assert _train(root, *TASK_OPTIONS, "--epochs", "1", "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert "the run's split: 2 of 60 images cannot be decoded" in err and "--on-error skip" in err
    for name in bad:
        assert f"{root / 'imgs' / name}: not an image format" in err
    assert not (run / "last.safetensors").exists()  # stopped before any training

    run = tmp_path / "skip"
    args = ["--epochs", "1", "--on-error", "skip", "--out", str(run)]
    assert _train(root, *TASK_OPTIONS, *args) == 0
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["notes"]["undecodable"]) == bad
    kept = split["train"] + split["val"] + split["test"]
    assert len(kept) == 58 and not set(bad) & set(kept)
    assert split["notes"]["labelled_images"] == len(split["train"]) + len(split["val"])
    assert json.loads((run / "config.json").read_text())["data"]["on_error"] == "skip"

    # evaluate takes the run's dataset, root and --dataset-option from its config.json,
    # and its split.json leaves the bad images out of the test part (the default --split)
    checkpoint = ["evaluate", "--checkpoint", str(run / "best.safetensors")]
    assert main([*checkpoint, "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == len(split["test"]) and metrics["n_failed"] == 0
    assert metrics["n_trained_on"] == 0
    # all of the dataset: the images that trained the run are counted, with a warning
    # (all holds the undecodable images again: they fail, exit status 1)
    assert main([*checkpoint, "--split", "all", "--out", str(tmp_path / "all")]) == 1
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert metrics["n_trained_on"] == len(split["train"]) > 0
    err = capsys.readouterr().err
    assert f"{len(split['train'])} of the " in err and "images evaluated trained this" in err
    # the same dataset named again (another spelling of the root): still the run's options
    again = ["--dataset", "csv", "--root", f"{root}/../task/", "--out", str(tmp_path / "eval2")]
    assert main([*checkpoint, *again]) == 0
    # another dataset gets only the options given
    other = make_blur_task(tmp_path / "other", n_contents=2, size=32)
    assert (
        main([*checkpoint, "--root", str(other), "--split", "all", "--out", str(tmp_path / "e3")])
        == 2
    )
    assert "missing under" in capsys.readouterr().err
    assert (
        main(["evaluate", "--model", "clip-iqa", "--split", "all", "--out", str(tmp_path / "e4")])
        == 2
    )
    assert "give a label file, or --dataset and --root" in capsys.readouterr().err


@pytest.fixture(scope="module")
def own_labels(tmp_path_factory):
    """A label file of one's own: DMOS-like scores (lower = better) in columns of its own
    names, paths relative to its folder."""
    root = make_blur_task(tmp_path_factory.mktemp("own"), n_contents=2, size=40)
    return own_label_file(root, "dmos", lambda score: 60 * (1 - score))


def test_evaluate_a_label_file_as_the_csv_adapter_reads_it(own_labels, tmp_path, capsys):
    columns = ["--path-column", "file", "--score-column", "dmos", "--lower-better"]
    assert main(["evaluate", str(own_labels), *columns, "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith(f"{own_labels} all: srcc=")
    options = ["csv_file=mine.csv", "path_column=file", "score_column=dmos", "lower_better=true"]
    adapter = ["--dataset", "csv", "--root", str(own_labels.parent)]
    for option in options:
        adapter += ["--dataset-option", option]
    assert main(["evaluate", *adapter, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    # what was evaluated: the model, the folder, how its labels were read
    assert a["model"] == "mpiqa-small" and a["root"] == str(own_labels.parent.resolve())
    assert a["options"]["score_column"] == "dmos" and a["options"]["lower_better"] is True
    assert a["split_file"] is None and a["split"] == "all"
    a_options, b_options = a.pop("options"), b.pop("options")
    assert {k: a_options[k] for k in b_options} == {"csv_file": "mine.csv", "path_column": "file",
                                                    "score_column": "dmos", "lower_better": True}  # fmt: skip
    assert a["n"] == 12 and a["n_failed"] == 0 and abs(a["srcc"]) > 0.5 and a == b
    # --lower-better reached the adapter: without it, the ranking turns over
    assert main(["evaluate", str(own_labels), *columns[:-1], "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["srcc"] == -a["srcc"]
    rows = (tmp_path / "a" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 13 and (tmp_path / "a" / "scatter.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "csv"], "give a label file"),
        (["--dataset-option", "sheet=x"], "--dataset-option goes with --dataset (for a label file"),
    ],
)
def test_evaluate_a_label_file_refuses_another_source_of_labels(
    own_labels, tmp_path, capsys, args, message
):
    assert main(["evaluate", str(own_labels), *args, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    missing = own_labels.parent / "nope.csv"
    assert main(["evaluate", str(missing), "--out", str(tmp_path / "x")]) == 2
    assert f"label file not found: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_needs_dataset_and_root(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--dataset and --root are required" in capsys.readouterr().err


def test_checkpoint_explanations_in_every_crop_mode(tmp_path, csv_task, capsys):
    root = make_blur_task(tmp_path / "task", n_contents=10, size=40)
    run = tmp_path / "run"
    assert _train(root, "--epochs", "1", "--out", str(run)) == 0
    images = [str(root / "imgs" / "c00_L0.png"), str(root / "imgs" / "c01_L5.png")]
    outputs = {}
    for crop in ("center", "multi", "full"):
        capsys.readouterr()
        args = [
            "score",
            *images,
            "--checkpoint",
            str(run / "best.safetensors"),
            "--crop",
            crop,
            "--workers",
            "0",
            "--no-progress",
        ]
        assert main(args) == 0
        rows = list(csv.reader(capsys.readouterr().out.splitlines()))
        assert len(rows) == 3 and all(r[2] and r[4] and 0 <= float(r[1]) <= 1 for r in rows[1:])
        outputs[crop] = [r[1] for r in rows[1:]]
    assert outputs["center"] != outputs["multi"]


def test_cuda_requested_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path cannot be exercised")
    assert (
        main(
            [
                "score",
                str(tmp_path),
                "--device",
                "cuda",
                "--backbone",
                "test-tiny",
                "--weights",
                "random",
            ]
        )
        == 2
    )
    assert "CUDA is not available" in capsys.readouterr().err


def test_resume_reads_the_runs_own_config_and_refuses_changes(tmp_path, csv_task, capsys):
    root = make_blur_task(tmp_path / "task", n_contents=10, size=32)
    run = tmp_path / "run"
    assert _train(root, "--epochs", "1", "--out", str(run)) == 0
    # the README's form: nothing but --resume and --out
    assert main(["train", "--resume", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--seed", "5"]) == 2
    assert "train.seed: 0 -> 5" in capsys.readouterr().err
    # a second run into the same folder would mix the logs
    assert _train(root, "--epochs", "1", "--out", str(run)) == 2
    assert "holds a training run already" in capsys.readouterr().err


@pytest.mark.parametrize("local", ["2", "1"], ids=["one machine", "two machines"])
def test_resume_of_no_run_says_so_and_over_machines_why(tmp_path, capsys, monkeypatch, local):
    # read before any process group exists: under torchrun over two machines, the one
    # without the run can only tell its user that --out is not shared
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--resume", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "holds no training run (no config.json); start one with --dataset and --root" in err
    shared = "over several machines, --out must be a folder they all share"
    assert (shared in err) == (local == "1")
