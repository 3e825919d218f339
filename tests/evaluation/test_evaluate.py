"""Evaluation over dataset records: a bad image is reported, the rest are scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mpiqa
from mpiqa.cli.main import main
from mpiqa.data.images import ImageDecodeError
from mpiqa.data.records import Record
from mpiqa.evaluation.predict import predict_records


@pytest.fixture
def labelled(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["path,score"]
    for i in range(6):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / name)
        rows.append(f"{name},{i}")
    (tmp_path / "img3.png").write_bytes(b"")  # listed, present, empty
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_predict_records_skips_only_when_told(labelled):
    model = mpiqa.create_model("clip-iqa", backbone="test-tiny", weights="random")
    records = [Record(f"img{i}.png", labelled / f"img{i}.png", i / 5) for i in range(6)]
    with pytest.raises(ImageDecodeError, match="img3.png: empty file"):
        predict_records(model, records, batch_size=4)
    preds = predict_records(model, records, batch_size=4, on_error="skip")
    assert list(preds.failed) == [3] and "img3.png" in preds.failed[3]
    assert np.isnan(preds.scores[3]) and np.isfinite(np.delete(preds.scores, 3)).all()
    # the others get the scores they get without the bad one, in record order
    alone = predict_records(model, records[:3] + records[4:], batch_size=4)
    assert np.allclose(np.delete(preds.scores, 3), alone.scores, atol=1e-6)
    with pytest.raises(ValueError, match="on_error"):
        predict_records(model, records, on_error="ignore")


def test_evaluate_reports_a_bad_image_and_scores_the_rest(labelled, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["evaluate", "--model", "clip-iqa", "--backbone", "test-tiny", "--weights", "random"]
    argv += ["--dataset", "csv", "--root", str(labelled), "--split", "all", "--out", str(out)]
    assert main(argv) == 1  # as `mpiqa score`: some files failed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["n_failed"] == 1 and metrics["failed"] == ["img3.png"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and not any(r.startswith("img3.png") for r in rows)
    assert "img3.png: empty file (0 bytes) (left out of the metrics)" in capsys.readouterr().err


def test_evaluate_defaults_to_the_scoring_model_on_all_of_ones_own_labels(
    labelled, tmp_path, capsys
):
    # no split file: all of the labels, not a test part that does not exist
    base = ["evaluate", "--dataset", "csv", "--root", str(labelled)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 1  # img3.png is empty
    assert capsys.readouterr().out.startswith("csv all: srcc=")
    assert "| mpiqa-small on csv all |" in (tmp_path / "a" / "table.md").read_text()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["n"] == 5
    # a CLIP named without --model: zero-shot CLIP-IQA, as `mpiqa score` does
    assert (
        main(
            [*base, "--backbone", "test-tiny", "--weights", "random", "--out", str(tmp_path / "b")]
        )
        == 1
    )
    assert "| clip-iqa on csv all |" in (tmp_path / "b" / "table.md").read_text()


def test_evaluating_a_shipped_model_on_images_it_trained_on_says_so(tmp_path, capsys):
    from mpiqa.backbones.pretrained import packaged_path
    from mpiqa.data.splits import Split

    split = Split.load(packaged_path("mpiqa-tiny-split.json"))
    names = [split.train[0], split.train[1], split.val[0]]  # "Images/ss03 (3753).jpg", ...
    rows = ["Image Name,MOS"]
    for i, key in enumerate(names):
        (tmp_path / key).parent.mkdir(exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 90, 200)).save(tmp_path / key)
        rows.append(f"{key.split('/', 1)[1]},{0.2 + i / 5}")
    (tmp_path / "Train (Images and MOS).csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ev"
    argv = ["evaluate", "--model", "mpiqa-tiny", "--dataset", "biq2021", "--root", str(tmp_path)]
    assert main([*argv, "--split", "all", "--out", str(out)]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["n_trained_on"] == 2
    captured = capsys.readouterr()
    assert "2 of the 3 images evaluated trained this model" in captured.err
    # the SRCC with its bootstrap interval over the images, printed and kept
    low, high = written["srcc_ci95"]
    assert -1 <= low <= high <= 1 and "bootstrap" in written["srcc_ci95_method"]
    assert f"srcc 95% interval over the images (bootstrap): {low:.4f} to {high:.4f}" in captured.out
    # the same photos copied into a folder of the user's own, labelled by a CSV: known
    # by their BIQ2021 names (before: no warning, n_trained_on 0)
    mine = tmp_path / "mine"
    mine.mkdir()
    lines = ["path,score"]
    for i, key in enumerate(names):
        (mine / Path(key).name).write_bytes((tmp_path / key).read_bytes())
        lines.append(f"{Path(key).name},{0.2 + i / 5}")
    (mine / "labels.csv").write_text("\n".join(lines) + "\n")
    argv = ["evaluate", "--model", "mpiqa-tiny", "--dataset", "csv", "--root", str(mine)]
    assert main([*argv, "--out", str(tmp_path / "ev2")]) == 0
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["n_trained_on"] == 2
    assert "2 of the 3 images evaluated trained this model" in capsys.readouterr().err


def test_predictions_show_progress_on_a_terminal_only_when_asked(labelled, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    model = mpiqa.create_model("clip-iqa", backbone="test-tiny", weights="random")
    records = [Record(f"img{i}.png", labelled / f"img{i}.png", i / 5) for i in (0, 1, 2, 4, 5)]
    shown = {}
    for progress in (False, True):
        monkeypatch.setattr("sys.stderr", Terminal())
        predict_records(model, records, batch_size=2, progress=progress)
        shown[progress] = sys.stderr.getvalue()
    assert shown[False] == "" and "5/5" in shown[True]


def test_training_images_match_by_name_only_where_names_are_unique():
    from types import SimpleNamespace

    from mpiqa.evaluation.evaluate import KnownImages, count_trained_on

    records = [SimpleNamespace(key=k) for k in ("sub/1.jpg", "1.jpg", "mine/ss01 (2).jpg")]
    # a fine-tuning's own labels: keys, exactly (another folder's 1.jpg is another photo)
    assert count_trained_on(records, {"1.jpg"}) == 1
    assert count_trained_on(records, None) == 0
    # a shipped model's BIQ2021 images: also by their names, in any folder
    biq = KnownImages(frozenset({"Images/ss01 (2).jpg"}), frozenset({"ss01 (2).jpg"}))
    assert count_trained_on(records, biq) == 1 and "Images/ss01 (2).jpg" in biq
