from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from mpiqa.cli.main import main


def test_distort_writes_images_labels_and_contact_sheet(tmp_path):
    src = tmp_path / "clean"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(src / f"c{i}.png")
    (src / "broken.png").write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        [
            "distort",
            str(src),
            str(out),
            "--types",
            "jpeg",
            "darken",
            "--levels",
            "1",
            "5",
            "--size",
            "32",
        ]
    )
    assert code == 1  # the broken source is reported, the others are written
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert len(rows) == 2 * 2 * 2
    assert {r["distortion"] for r in rows} == {"jpeg", "darken"}
    assert all((out / r["path"]).is_file() for r in rows)
    assert float(rows[0]["score"]) > float(rows[1]["score"])
    # the labels are a dataset as they are: --dataset csv --root OUT reads them
    from mpiqa.data import load_dataset

    dataset = load_dataset("csv", out, content_column="source")
    assert len(dataset) == 8 and len({r.content for r in dataset}) == 2
    assert Image.open(out / "images" / rows[0]["path"].split("/")[-1]).size == (32, 32)
    assert (out / "contact_sheet.png").is_file()


def test_distort_takes_the_output_folder_as_the_other_commands_do(tmp_path, capsys):
    src = tmp_path / "clean"
    src.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(src / "c.png")
    options = ["--types", "jpeg", "--levels", "1", "--size", "16"]
    args = ["distort", str(src), *options]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "labels.csv").is_file()
    both = ["distort", str(src), str(tmp_path / "a"), *options, "--out", str(tmp_path / "b")]
    assert main(both) == 2
    assert "two output folders" in capsys.readouterr().err
    assert main(args) == 2
    assert "OUT_DIR or --out DIR" in capsys.readouterr().err
