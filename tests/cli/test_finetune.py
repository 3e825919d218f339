"""``mpiqa finetune``: the shipped model adapted to a CSV of one's own labels, offline, and
the N-shot rounds protocol."""

from __future__ import annotations

import csv
import json

import pytest

from mpiqa.cli.main import main
from tests.training.conftest import make_blur_task, own_label_file


@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory):
    root = make_blur_task(tmp_path_factory.mktemp("own"), n_contents=4, size=40)
    # the user's own layout: paths relative to the CSV's folder, their own column names
    return own_label_file(root, "mos", lambda score: 5 * score)


def test_finetune_the_default_model_on_a_csv_and_score_with_it(labels_csv, tmp_path, capsys):
    run = tmp_path / "run"
    code = main([
        "finetune", str(labels_csv), "--path-column", "file", "--score-column", "mos",
        "--steps", "2", "--folds", "2", "--out", str(run),
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "24 labelled images" in out and "starting model" in out
    assert "mpiqa-small as shipped" in out  # the scoring default, not fine-tuned, compared
    record = json.loads((run / "finetune.json").read_text())
    result = record["finetune"]["result"]
    assert result["labelled_images"] == 24
    assert -1 <= result["reference_cv_srcc"] <= 1 and -1 <= result["reference_srcc"] <= 1
    assert len(record["images"]) == 24
    # which labels trained it: the file, its columns and the resolved scale
    data = record["finetune"]["data"]
    assert data["labels"] == str(labels_csv.resolve()) and data["score_column"] == "mos"
    with open(labels_csv) as f:
        mos = [float(r["mos"]) for r in csv.DictReader(f)]
    assert data["scale"] == [min(mos), max(mos)]
    assert data["start"].endswith("mpiqa-tiny.safetensors") and data["reference"] == "mpiqa-small"
    assert json.loads((run / "best.json").read_text())["finetune"]["data"] == data
    # evaluated on its own labels (no split file: all of them), it says they trained it
    options = ["--dataset-option", "csv_file=mine.csv", "--dataset-option", "path_column=file",
               "--dataset-option", "score_column=mos"]  # fmt: skip
    assert main(["evaluate", "--checkpoint", str(run / "best.safetensors"), "--dataset", "csv",
                 "--root", str(labels_csv.parent), *options, "--out", str(tmp_path / "ev")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_trained_on"] == 24
    assert "24 of the 24 images evaluated trained this model" in capsys.readouterr().err
    # the same from the label file itself
    assert main(["evaluate", str(labels_csv), "--path-column", "file", "--score-column", "mos",
                 "--checkpoint", str(run / "best.safetensors"), "--out", str(tmp_path / "ev2")]) == 0  # fmt: skip
    ev, ev2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ev", "ev2"))
    assert ev.pop("options") != ev2.pop("options") and ev == ev2  # the same figures
    assert ev["checkpoint"] == str((run / "best.safetensors").resolve())
    assert "24 of the 24 images evaluated trained this model" in capsys.readouterr().err
    meta = json.loads((run / "best.json").read_text())
    assert meta["backbone"]["arch"] == "mpiqa-tiny"
    assert main(["score", str(labels_csv.parent / "imgs"), "--checkpoint",
                 str(run / "best.safetensors")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    scored = list(csv.DictReader(out.splitlines()))
    assert len(scored) == 24 and all(0 <= float(r["score"]) <= 1 for r in scored)
    # no distortion column: mpiqa-tiny learned none from labels, and fine-tuning adds none
    assert out.splitlines()[0] == "path,score" and meta["labelled_families"] == []


def test_finetune_rounds_use_exactly_the_shots(labels_csv, tmp_path, capsys):
    run = tmp_path / "rounds"
    code = main([
        "finetune", str(labels_csv), "--path-column", "file", "--score-column", "mos",
        "--shots", "8", "--rounds", "2", "--test-fraction", "0.25", "--steps", "1",
        "--folds", "2", "--out", str(run),
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["rounds"]) == 2
    assert summary["data"]["labels"] == str(labels_csv.resolve()) and summary["data"]["shots"] == 8
    assert (run / "rounds.png").stat().st_size > 0
    assert {"reference_srcc", "gain_over_reference"} <= set(summary["summary"])
    for row in summary["rounds"]:
        assert row["labelled_images"] == 8
        assert {"srcc", "zero_shot_srcc", "plcc", "reference_srcc"} <= set(row)
        split = json.loads((run / f"round_{row['round']}" / "split.json").read_text())
        assert len(split["train"]) == 8 and split["val"] == []
        assert not set(split["train"]) & set(split["test"])
    out = capsys.readouterr().out
    assert "gain" in out and "gain over mpiqa-small" in out
    # each round's checkpoint, loaded back, is the model its figures measured
    round_dir = run / "round_1"
    assert main(["evaluate", str(labels_csv), "--path-column", "file", "--score-column", "mos",
                 "--checkpoint", str(round_dir / "best.safetensors"), "--split", "test",
                 "--split-file", str(round_dir / "split.json"), "--out", str(tmp_path / "e")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["srcc"] == pytest.approx(summary["rounds"][1]["srcc"], abs=1e-6)
    assert metrics["plcc"] == pytest.approx(summary["rounds"][1]["plcc"], abs=1e-6)


def test_finetune_compares_with_the_model_it_is_told_or_none(labels_csv, tmp_path, capsys):
    common = ["finetune", str(labels_csv), "--path-column", "file", "--score-column", "mos",
              "--steps", "1", "--folds", "2"]  # fmt: skip
    # the starting model as the reference: its figure is the starting model's, same folds
    assert main([*common, "--reference", "mpiqa-tiny", "--out", str(tmp_path / "a")]) == 0
    result = json.loads((tmp_path / "a" / "finetune.json").read_text())["finetune"]["result"]
    assert result["reference_cv_srcc"] == pytest.approx(result["cv_zero_shot_srcc"], abs=0.02)
    assert "mpiqa-tiny as shipped" in capsys.readouterr().out
    assert main([*common, "--reference", "none", "--out", str(tmp_path / "b")]) == 0
    assert "as shipped" not in capsys.readouterr().out
    # no figure is null: the file is standard JSON (NaN is not), as strict parsers need
    text = (tmp_path / "b" / "finetune.json").read_text()
    result = json.loads(text, parse_constant=pytest.fail)["finetune"]["result"]
    assert result["reference_cv_srcc"] is None and result["reference_srcc"] is None
    assert main([*common, "--reference", "no-such-model", "--out", str(tmp_path / "c")]) == 2
    assert "no-such-model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds", "3"], "--rounds needs --shots"),
        (["--shots", "1000"], "--shots 1000"),
        (["--select", "cv", "--folds", "1"], "argument --folds: must be from 2"),
        (["--dataset-option", "image_dir=imgs"], "--dataset-option goes with --dataset"),
    ],
)
def test_finetune_bad_arguments_are_one_line_errors(labels_csv, tmp_path, capsys, args, message):
    code = main(["finetune", str(labels_csv), "--path-column", "file", "--score-column", "mos",
                 *args, "--out", str(tmp_path / "x")])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


def test_finetune_reads_a_dataset_adapter_with_its_options(labels_csv, tmp_path, capsys):
    options = ["--dataset-option", "csv_file=mine.csv", "--dataset-option", "path_column=file",
               "--dataset-option", "score_column=mos", "--dataset-option", "scale=0,5"]  # fmt: skip
    code = main(["finetune", "--dataset", "csv", "--root", str(labels_csv.parent), *options,
                 "--steps", "1", "--folds", "2", "--reference", "none", "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 0
    assert "24 labelled images" in capsys.readouterr().out


def test_finetune_names_a_missing_label_file(tmp_path, capsys):
    assert main(["finetune", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x")]) == 2
    assert "none.csv" in capsys.readouterr().err


def test_finetune_reads_the_labels_as_a_spreadsheet_saves_them(labels_csv, tmp_path, capsys):
    from tests.data.fixtures import write_xlsx

    with open(labels_csv) as f:
        rows = [[r["file"], float(r["mos"])] for r in csv.DictReader(f)]
    # the labels on the workbook's second sheet, named with --sheet
    write_xlsx(labels_csv.parent / "sheet.xlsx", [["read me"]], {"MOS": [["Bild", "Note"], *rows]})
    flags = ["--path-column", "Bild", "--score-column", "Note", "--steps", "1", "--folds", "2",
             "--reference", "none"]  # fmt: skip
    assert main(["finetune", str(labels_csv.parent / "sheet.xlsx"), *flags, "--sheet", "MOS",
                 "--out", str(tmp_path / "x")]) == 0  # fmt: skip
    with open(labels_csv.parent / "semi.csv", "w", encoding="utf-8-sig", newline="") as f:
        f.write("Bild;Note\r\n")
        f.writelines(f"{p};{str(s).replace('.', ',')}\r\n" for p, s in rows)
    assert main(["finetune", str(labels_csv.parent / "semi.csv"), *flags,
                 "--out", str(tmp_path / "s")]) == 0  # fmt: skip
    assert capsys.readouterr().out.count("24 labelled images") == 2
    images = [json.loads((tmp_path / r / "finetune.json").read_text())["images"] for r in "xs"]
    assert images[0] == images[1] and len(images[0]) == 24


def test_finetune_takes_absolute_paths_when_told(labels_csv, tmp_path, capsys):
    with open(labels_csv) as f:
        rows = [(labels_csv.parent / r["file"], r["mos"]) for r in csv.DictReader(f)]
    absolute = tmp_path / "absolute.csv"  # in another folder than the images
    absolute.write_text("path,score\n" + "".join(f"{p},{s}\n" for p, s in rows))
    args = ["finetune", str(absolute), "--steps", "1", "--folds", "2", "--reference", "none"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "lies outside" in err and "--allow-outside-root" in err
    assert main([*args, "--allow-outside-root", "--out", str(tmp_path / "b")]) == 0
    assert "24 labelled images" in capsys.readouterr().out


def test_finetune_says_which_labels_trained_the_shipped_models(labels_csv, tmp_path, capsys):
    # BIQ2021 photos that trained mpiqa-tiny and mpiqa-small, labelled by a user: both
    # models' figures on them are in-sample (before: compared without a word)
    from PIL import Image

    from mpiqa.backbones.pretrained import packaged_path
    from mpiqa.data.splits import Split

    split = Split.load(packaged_path("mpiqa-tiny-split.json"))
    names = [k.split("/")[-1] for k in [*split.train[:6], *split.val[:2]]]
    lines = ["path,score"]
    for i, name in enumerate(names):
        Image.new("RGB", (48, 40), (30 * i, 90, 200 - 20 * i)).save(tmp_path / name)
        lines.append(f"{name},{i % 5 + 1}")
    (tmp_path / "biq.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["finetune", str(tmp_path / "biq.csv"), "--steps", "1", "--folds", "2"]
    assert main([*args, "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "6 of the 8 labelled images trained mpiqa-tiny (the starting model)" in err
    assert "6 of the 8 labelled images trained mpiqa-small (the reference)" in err
    data = json.loads((run / "finetune.json").read_text())["finetune"]["data"]
    assert data["trained_on"] == {"mpiqa-tiny": 6, "mpiqa-small": 6}
