from __future__ import annotations

from mpiqa.data.files import discover_images, natural_key


def test_natural_order():
    names = ["img10.png", "img2.png", "Img1.png", "img1.png", "a (100).jpg", "a (20).jpg"]
    assert sorted(names, key=natural_key) == [
        "a (20).jpg",
        "a (100).jpg",
        "Img1.png",
        "img1.png",
        "img2.png",
        "img10.png",
    ]


def test_folders_files_and_missing_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b10.jpg", "b9.JPG", "notes.txt", "sub/c1.png"]:
        (tmp_path / name).write_bytes(b"x")
    flat = discover_images([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in flat.files] == ["b9.JPG", "b10.jpg"]
    assert flat.ignored == [str(tmp_path / "notes.txt")]
    deep = discover_images([str(tmp_path)], recursive=True)
    assert str(tmp_path / "sub" / "c1.png") in deep.files
    explicit = discover_images(
        [str(tmp_path / "notes.txt"), "missing.jpg", str(tmp_path / "b9.JPG")]
    )
    # a named file is kept whatever its extension, a missing one is kept to be reported
    assert explicit.files == [str(tmp_path / "b9.JPG"), str(tmp_path / "notes.txt"), "missing.jpg"]
