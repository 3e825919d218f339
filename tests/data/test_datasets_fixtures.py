"""Adapters on fixtures written in each dataset's documented original format."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from mpiqa.data.datasets import DatasetFormatError, MissingImagesError, list_datasets, load_dataset
from tests.data.fixtures import write_image, write_xlsx


def test_registry_lists_every_adapter():
    assert set(list_datasets()) >= {
        "biq2021", "koniq10k", "livec", "spaq", "tid2013", "kadid10k", "csiq", "live", "csv", "folder",
    }  # fmt: skip
    with pytest.raises(KeyError, match="unknown dataset"):
        load_dataset("imagenet", ".")


def test_biq2021_case_differences_and_official_split(tmp_path):
    (tmp_path / "Train (Images and MOS).csv").write_text(
        "Image Name,MOS,,\nss01 (2).jpg,0.5,,\nss01 (10).jpg,0.25,,\n"
    )
    (tmp_path / "Test (Images and MOS).csv").write_text(
        "Image Name,MOS\nSS02 (1).jpg,0.75\nphoto.jpg,0.5\n"
    )
    write_image(tmp_path / "Images/ss01 (2).JPG")
    write_image(tmp_path / "Images/ss01 (10).jpg")
    write_image(tmp_path / "Images/SS02 (1).jpg")
    write_image(tmp_path / "Images/photo.jpg")
    data = load_dataset("BIQ2021", tmp_path)
    assert [r.group for r in data] == ["train", "train", "test", "test"]
    # the source is the file name's collection prefix, where there is one
    assert [r.source for r in data] == ["ss01", "ss01", "ss02", None]
    assert data[0].path.name == "ss01 (2).JPG" and data[0].key == "Images/ss01 (2).jpg"


def test_wrong_root_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dmos\.csv in .*is this the folder"):
        load_dataset("kadid10k", tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load_dataset("kadid10k", tmp_path / "nope")


def _kadid(tmp_path, rows):
    lines = ["dist_img,ref_img,dmos,var"] + rows
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")


def test_kadid_fields_and_missing_images(tmp_path):
    _kadid(
        tmp_path,
        [
            "I01_01_01.png,I01.png,4.57,0.1",
            "I01_25_05.png,I01.png,1.20,0.3",
            "I02_10_03.png,I02.png,3.0,0.2",
        ],
    )
    data = load_dataset("kadid10k", tmp_path, check_images=False)
    assert [(r.content, r.distortion, r.level) for r in data] == [
        ("I01", "gaussian blur", 1), ("I01", "contrast change", 5), ("I02", "jpeg", 3),
    ]  # fmt: skip
    assert data[0].score == pytest.approx((4.57 - 1) / 4)
    write_image(tmp_path / "images/I01_01_01.png")
    with pytest.raises(
        MissingImagesError, match=r"2 of 3 images listed in dmos\.csv are missing.*I01_25_05\.png"
    ):
        load_dataset("kadid10k", tmp_path)


def test_unparsable_row_is_reported_as_file_and_line(tmp_path):
    _kadid(tmp_path, ["I01_01_01.png,I01.png,4.5,0.1", "I01_01_02.png,I01.png,n/a,0.1"])
    with pytest.raises(DatasetFormatError, match=r"dmos\.csv:3: dmos 'n/a' is not a number"):
        load_dataset("kadid10k", tmp_path, check_images=False)


def test_tid2013_upper_case_names_match_lower_case_files(tmp_path):
    (tmp_path / "mos_with_names.txt").write_bytes(b"5.51429 I01_01_1.bmp\r\n4.9 i01_08_3.BMP\r\n")
    write_image(tmp_path / "distorted_images/i01_01_1.bmp")
    write_image(tmp_path / "distorted_images/i01_08_3.bmp")
    data = load_dataset("tid2013", tmp_path)
    assert [r.path.name for r in data] == ["i01_01_1.bmp", "i01_08_3.bmp"]
    assert data[1].distortion == "gaussian blur" and data[1].level == 3
    (tmp_path / "mos_with_names.txt").write_text("5.5 I01_01_1.bmp\nbroken line here\n")
    with pytest.raises(DatasetFormatError, match=r"mos_with_names\.txt:2"):
        load_dataset("tid2013", tmp_path)


def test_csiq_official_spreadsheet_and_derived_text(tmp_path):
    write_xlsx(
        tmp_path / "csiq.DMOS.xlsx",
        [["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"],
         [1600, 1, "noise", 1, 0.02, 0.062], ["aerial_city", 3, "jpeg 2000", 4, 0.03, 0.55]],
    )  # fmt: skip
    write_image(tmp_path / "dst_imgs/awgn/1600.AWGN.1.png")
    write_image(tmp_path / "dst_imgs/jpeg2000/aerial_city.jpeg2000.4.png")
    data = load_dataset("csiq", tmp_path)
    assert [r.key for r in data] == [
        "dst_imgs/awgn/1600.AWGN.1.png",
        "dst_imgs/jpeg2000/aerial_city.jpeg2000.4.png",
    ]
    assert data[1].score == pytest.approx(0.45) and data[1].content == "aerial_city"
    # blank rows (left out of the XML) above the header and between rows: rows named as
    # the user sees them; a title above the header is not a header
    header = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    rows = [[1600, 1, "noise", 1, 0.02, 0.062], None, ["aerial_city", 3, "sharpen", 4, 0.03, 0.5]]
    write_xlsx(tmp_path / "csiq.DMOS.xlsx", [None, header, *rows])
    with pytest.raises(DatasetFormatError, match=r"DMOS\.xlsx:5: unknown dst_type 'sharpen'"):
        load_dataset("csiq", tmp_path)
    write_xlsx(tmp_path / "csiq.DMOS.xlsx", [["CSIQ DMOS"], None, header, *rows])
    with pytest.raises(DatasetFormatError, match=r"DMOS\.xlsx:1: expected columns .* got \['CSIQ"):
        load_dataset("csiq", tmp_path)


def test_koniq_scores_and_distributions_file(tmp_path):
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n"
        "826373.jpg,0,3,30,63,4,100,3.68,0.6,68.5\n"
    )
    write_image(tmp_path / "1024x768/826373.jpg")
    data = load_dataset("koniq10k", tmp_path)
    assert (
        data[0].raw_score == 68.5
        and data[0].score == pytest.approx(0.685)
        and data[0].group is None
    )


def test_livec_mat_files(tmp_path):
    names = np.empty((9, 1), dtype=object)
    for i, name in enumerate([f"t{k}.bmp" for k in range(1, 8)] + ["10.bmp", "11.bmp"]):
        names[i, 0] = np.array([name])
    (tmp_path / "Data").mkdir()
    savemat(tmp_path / "Data/AllImages_release.mat", {"AllImages_release": names})
    savemat(tmp_path / "Data/AllMOS_release.mat", {"AllMOS_release": np.linspace(10, 90, 9)[None]})
    for name in ["10.bmp", "11.bmp"]:
        write_image(tmp_path / "Images" / name)
    data = load_dataset("livec", tmp_path)
    assert [r.key for r in data] == ["Images/10.bmp", "Images/11.bmp"]
    assert data[1].score == pytest.approx(0.9)


def test_live_release2_mat_files(tmp_path):
    n = 982
    orgs = np.zeros(n)
    orgs[[0, 300]] = 1
    refs = np.empty((1, n), dtype=object)
    for i in range(n):
        refs[0, i] = np.array([f"ref{i % 29}.bmp"])
    savemat(
        tmp_path / "dmos_realigned.mat",
        {"dmos_new": np.linspace(0, 100, n)[None], "orgs": orgs[None]},
    )
    savemat(tmp_path / "refnames_all.mat", {"refnames_all": refs})
    data = load_dataset("live", tmp_path, check_images=False)
    assert len(data) == n - 2
    assert data[0].key == "jp2k/img2.bmp" and data[-1].key == "fastfading/img174.bmp"
    assert data[0].score == pytest.approx(1.0) and data[-1].score == pytest.approx(0.0)
    assert len({r.content for r in data}) == 29
    assert {r.distortion for r in data} == set(data.distortions)


def test_spaq_spreadsheet(tmp_path):
    write_xlsx(
        _mkdir(tmp_path / "Annotations") / "MOS and Image attribute scores.xlsx",
        [
            ["Image name", "MOS", "Brightness", "Colorfulness"],
            ["00001.jpg", 42.5, 50, 51],
            ["00002.png", 80, 1, 2],
        ],
    )
    write_image(tmp_path / "TestImage/00001.jpg")
    write_image(tmp_path / "TestImage/00002.png")
    data = load_dataset("spaq", tmp_path)
    assert [r.raw_score for r in data] == [42.5, 80.0] and data[0].score == pytest.approx(0.425)
    # blank rows above the header and between rows (left out of the XML)
    write_xlsx(
        tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx",
        [None, ["Image name", "MOS"], ["00001.jpg", 42.5], None, ["00002.png", "n/a"]],
    )
    with pytest.raises(DatasetFormatError, match=r"scores\.xlsx:5: MOS 'n/a' is not a number"):
        load_dataset("spaq", tmp_path)


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_generic_csv_and_folder(tmp_path):
    (tmp_path / "scores.csv").write_text(
        "file,dmos,scene\na.png,10,s1\nsub/b.png,30,s1\nc.png,20,s2\n"
    )
    for name in ["a.png", "sub/b.png", "c.png"]:
        write_image(tmp_path / "imgs" / name)
    data = load_dataset(
        "csv", tmp_path, csv_file="scores.csv", path_column="file", score_column="dmos",
        image_dir="imgs", lower_better=True, content_column="scene",
    )  # fmt: skip
    assert [r.score for r in data] == [1.0, 0.0, 0.5]
    assert [r.content for r in data] == ["s1", "s1", "s2"]
    with pytest.raises(DatasetFormatError, match="no column 'mos'"):
        load_dataset("csv", tmp_path, csv_file="scores.csv", path_column="file", score_column="mos")
    folder = load_dataset("folder", tmp_path / "imgs")
    assert [r.key for r in folder] == ["a.png", "c.png", "sub/b.png"] and folder[0].score is None


def test_a_symlink_loop_beside_the_images_does_not_stop_the_adapter(tmp_path):
    (tmp_path / "scores.csv").write_text("path,score\na.png,1\nb.png,2\n")
    for name in ["a.png", "b.png"]:
        write_image(tmp_path / name)
    (tmp_path / "loop.png").symlink_to("loop.png")  # is_file() raises ELOOP on it
    data = load_dataset("csv", tmp_path, csv_file="scores.csv")
    assert [r.key for r in data] == ["a.png", "b.png"]
    (tmp_path / "scores.csv").write_text("path,score\na.png,1\nloop.png,2\nnone.png,3\n")
    # the loop is listed, so the image loader reports it; the absent file is named here
    with pytest.raises(MissingImagesError, match=r"1 of 3 .* none\.png \(correct their paths"):
        load_dataset("csv", tmp_path, csv_file="scores.csv")


def test_csv_as_a_spreadsheet_saves_it(tmp_path):
    for name in ["a.png", "b, c.png", "c.png"]:
        write_image(tmp_path / name)
    # a European spreadsheet's CSV: byte-order mark, ';' between fields, decimal commas,
    # CRLF, a path holding a comma, blank rows at the end
    (tmp_path / "semi.csv").write_bytes(
        "\ufeffBild;Note\r\na.png;2,5\r\nb, c.png;-1\r\nc.png;,75\r\n;\r\n;\r\n".encode()
    )
    data = load_dataset(
        "csv", tmp_path, csv_file="semi.csv", path_column="Bild", score_column="Note"
    )
    assert [r.raw_score for r in data] == [2.5, -1.0, 0.75]
    (tmp_path / "tab.tsv").write_text("path\tscore\tnote\na.png\t3\tok, fine\nc.png\t1\t\n")
    assert [r.raw_score for r in load_dataset("csv", tmp_path, csv_file="tab.tsv")] == [3.0, 1.0]
    # a tab as a command line can give it
    for name in ("tab", "\\t"):
        assert len(load_dataset("csv", tmp_path, csv_file="tab.tsv", delimiter=name)) == 2
    with pytest.raises(ValueError, match=r"delimiter ';;' must be one character"):
        load_dataset("csv", tmp_path, csv_file="tab.tsv", delimiter=";;")
    # between commas a decimal comma cannot be told from a thousands separator: refused
    (tmp_path / "comma.csv").write_text('path,score\na.png,"2,5"\n')
    with pytest.raises(DatasetFormatError, match=r"comma\.csv:2: score '2,5' is not a number"):
        load_dataset("csv", tmp_path, csv_file="comma.csv")
    # columns that are not there: the error lists the header's real columns
    with pytest.raises(
        DatasetFormatError, match=r"no column 'path'; columns are \['Bild', 'Note'\]"
    ):
        load_dataset("csv", tmp_path, csv_file="semi.csv")
    # a separator given is kept
    with pytest.raises(DatasetFormatError, match=r"no column 'Bild'; columns are \['Bild;Note'\]"):
        load_dataset("csv", tmp_path, csv_file="semi.csv", path_column="Bild",
                     score_column="Note", delimiter=",")  # fmt: skip


def test_csv_adapter_reads_a_workbook(tmp_path):
    for name in ["a.png", "b.png"]:
        write_image(tmp_path / "imgs" / name)
    rows = [["path", "score", "rater"], ["a.png", 4.5, "x"], ["b.png", "3,5"], ["", ""]]
    write_xlsx(tmp_path / "ratings.xlsx", rows)
    data = load_dataset("csv", tmp_path, csv_file="ratings.xlsx", image_dir="imgs")
    assert [(r.key, r.raw_score) for r in data] == [("a.png", 4.5), ("b.png", 3.5)]
    write_xlsx(tmp_path / "bad.xlsx", [["path", "score"], ["a.png", 1], ["b.png", ""]])
    with pytest.raises(DatasetFormatError, match=r"bad\.xlsx:3: score '' is not a number"):
        load_dataset("csv", tmp_path, csv_file="bad.xlsx", image_dir="imgs")
    # a formula written without its value (openpyxl, pandas) is named, with what to do
    write_xlsx(tmp_path / "formula.xlsx", [["path", "score"], ["a.png", 1], ["b.png", "=C3/10"]])
    with pytest.raises(DatasetFormatError, match=r"formula\.xlsx:3: score '=C3/10' is not a number "
                       r"\(a formula saved without its value: open and save"):  # fmt: skip
        load_dataset("csv", tmp_path, csv_file="formula.xlsx", image_dir="imgs")
    # a workbook whose labels are not on its first sheet
    write_xlsx(tmp_path / "two.xlsx", [["notes"], ["rated 2026"]], {"Ratings": rows})
    with pytest.raises(DatasetFormatError, match=r"two\.xlsx:1: no column 'path'; columns are "
                       r"\['notes'\] of sheet 'Sheet1' \(the workbook's sheets: \['Sheet1', "
                       r"'Ratings'\]; choose one with --sheet NAME"):  # fmt: skip
        load_dataset("csv", tmp_path, csv_file="two.xlsx", image_dir="imgs")
    data = load_dataset("csv", tmp_path, csv_file="two.xlsx", image_dir="imgs", sheet="Ratings")
    assert [(r.key, r.raw_score) for r in data] == [("a.png", 4.5), ("b.png", 3.5)]
    with pytest.raises(DatasetFormatError, match=r"two\.xlsx: no sheet 'Scores'; the workbook's "
                       r"sheets are \['Sheet1', 'Ratings'\]"):  # fmt: skip
        load_dataset("csv", tmp_path, csv_file="two.xlsx", image_dir="imgs", sheet="Scores")
    # blank rows are not in a sheet's XML: messages still name the row the user sees
    write_xlsx(
        tmp_path / "gaps.xlsx", [None, ["path", "score"], ["a.png", 1], None, ["b.png", "x"]]
    )
    with pytest.raises(DatasetFormatError, match=r"gaps\.xlsx:5: score 'x' is not a number"):
        load_dataset("csv", tmp_path, csv_file="gaps.xlsx", image_dir="imgs")
    with pytest.raises(DatasetFormatError, match=r"gaps\.xlsx:2: no column 'file'"):
        load_dataset("csv", tmp_path, csv_file="gaps.xlsx", image_dir="imgs", path_column="file")
    (tmp_path / "labels.csv").write_text("path,score\na.png,1\n")
    with pytest.raises(ValueError, match=r"sheet='Ratings' names a sheet of an \.xlsx workbook"):
        load_dataset("csv", tmp_path, image_dir="imgs", sheet="Ratings")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    with pytest.raises(DatasetFormatError, match=r"old\.xls: a legacy Excel .* save it as \.xlsx"):
        load_dataset("csv", tmp_path, csv_file="old.xls")
    (tmp_path / "fake.xlsx").write_text("path,score\n")
    with pytest.raises(DatasetFormatError, match=r"fake\.xlsx: not a readable \.xlsx workbook"):
        load_dataset("csv", tmp_path, csv_file="fake.xlsx")


@pytest.mark.parametrize(
    "option, message",
    [
        ({"lower_better": "maybe"}, "lower_better: 'maybe' is not a bool"),
        ({"scale": 1}, "scale: 1 is not a list of 2"),
        ({"scale": [1, 2, 3]}, "scale: \\[1, 2, 3\\] is not a list of 2"),
        ({"scale": ["low", "high"]}, "scale: \\['low', 'high'\\] is not"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
    ],
)
def test_csv_options_of_the_wrong_kind_are_refused_by_name(tmp_path, option, message):
    (tmp_path / "labels.csv").write_text("path,score\na.png,1\n")
    write_image(tmp_path / "a.png")
    with pytest.raises(ValueError, match=message):
        load_dataset("csv", tmp_path, **option)


def test_labels_that_are_all_equal_say_so(tmp_path):
    # before: "score scale (3.0, 3.0) is empty; give it (--dataset-option scale=...)",
    # and with a scale given, "all labels are equal" came next
    (tmp_path / "labels.csv").write_text("path,score\na.png,3\nb.png,3\n")
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    with pytest.raises(DatasetFormatError, match=r"labels\.csv: every score is 3 \(2 row\(s\)\)"):
        load_dataset("csv", tmp_path)
    assert [r.raw_score for r in load_dataset("csv", tmp_path, scale=[1, 5])] == [3.0, 3.0]


def test_a_number_given_for_a_text_option_is_its_text(tmp_path):
    (tmp_path / "labels.csv").write_text("path,2024\na.png,1\nb.png,3\n")
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    # as the command line's --dataset-option score_column=2024 reads
    assert [r.raw_score for r in load_dataset("csv", tmp_path, score_column=2024)] == [1.0, 3.0]


def test_paths_written_on_windows_read_as_paths(tmp_path):
    write_image(tmp_path / "sub" / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "labels.csv").write_text("path,score\nsub\\a.png,1\nb.png,2\n")
    data = load_dataset("csv", tmp_path)
    assert [r.key for r in data] == ["sub/a.png", "b.png"]
    assert data[0].path == (tmp_path / "sub" / "a.png").resolve()
    (tmp_path / "labels.csv").write_text("path,score\n..\\a.png,1\nb.png,2\n")
    with pytest.raises(DatasetFormatError, match="lies outside"):
        load_dataset("csv", tmp_path)


def test_list_datasets_shows_each_adapters_options_with_defaults(capsys):
    from mpiqa.cli.main import main
    from mpiqa.data.datasets.base import dataset_options

    assert dataset_options("csv")["delimiter"] == "auto" and dataset_options("biq2021") == {}
    assert main(["list-datasets"]) == 0
    out = capsys.readouterr().out
    assert "options: csv_file=labels.csv, path_column=path" in out
    assert "options: include_training=false" in out  # livec
