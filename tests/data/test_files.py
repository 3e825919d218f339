from __future__ import annotations

import logging

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


def test_hidden_files_and_folders_are_left_out_and_listed(tmp_path):
    # a photo folder from a Mac drive or a NAS: before, "._IMG_1.JPG" (metadata, not an
    # image) failed as a bad image, and the NAS's thumbnails were scored as photos
    for name in ["IMG_1.JPG", "._IMG_1.JPG", ".DS_Store", ".@__thumb/IMG_1.JPG", "a/.b.png",
                 "a/c.png", ".scores.csv.lock", "a/@eaDir/c.png/SYNOPHOTO_THUMB_XL.jpg"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    flat = discover_images([str(tmp_path)])
    assert flat.files == [str(tmp_path / "IMG_1.JPG")] and flat.ignored == []
    assert flat.hidden == [str(tmp_path / "._IMG_1.JPG")]
    deep = discover_images([str(tmp_path)], recursive=True)
    assert deep.files == [str(tmp_path / "a" / "c.png"), str(tmp_path / "IMG_1.JPG")]
    assert sorted(deep.hidden) == sorted(
        str(tmp_path / n)
        for n in [
            "._IMG_1.JPG",
            ".@__thumb/IMG_1.JPG",
            "a/.b.png",
            "a/@eaDir/c.png/SYNOPHOTO_THUMB_XL.jpg",
        ]
    )
    # named, a hidden file or folder is searched as any other
    named = discover_images([str(tmp_path / ".@__thumb"), str(tmp_path / "._IMG_1.JPG")])
    assert sorted(named.files) == sorted(
        [str(tmp_path / "._IMG_1.JPG"), str(tmp_path / ".@__thumb" / "IMG_1.JPG")]
    )


def test_a_symlink_loop_is_kept_for_scoring_to_report(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")  # is_dir() raises ELOOP on it
    for recursive in (False, True):
        found = discover_images([str(tmp_path)], recursive=recursive)
        assert found.files == [str(tmp_path / "a.jpg"), str(tmp_path / "loop.jpg")]
        assert found.unreadable == []


def test_an_unreadable_folder_is_recorded_and_the_others_searched(tmp_path, forbid_listing, caplog):
    for name in ["ok/a.jpg", "ok/deep/b.jpg", "ok/locked/c.jpg", "locked/d.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    forbid_listing(tmp_path / "locked")
    flat = discover_images([str(tmp_path / "locked"), str(tmp_path / "ok")])
    assert flat.files == [str(tmp_path / "ok" / "a.jpg")]
    assert flat.unreadable == [f"{tmp_path / 'locked'}: Permission denied"]
    forbid_listing(tmp_path / "ok" / "locked")
    deep = discover_images([str(tmp_path / "ok")], recursive=True)
    assert deep.files == [str(tmp_path / "ok" / "a.jpg"), str(tmp_path / "ok" / "deep" / "b.jpg")]
    assert deep.unreadable == [f"{tmp_path / 'ok' / 'locked'}: Permission denied"]
    # callers that go on without the folder (training on a folder, say) warn about it
    with caplog.at_level(logging.WARNING, logger="mpiqa.data.files"):
        assert deep.warn_unreadable() is deep
    assert "cannot list folder" in caplog.text and str(tmp_path / "ok" / "locked") in caplog.text


def test_recursive_search_records_the_folder_links_it_does_not_follow(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.jpg").write_bytes(b"x")
    (tmp_path / "top" / "sub").mkdir(parents=True)
    (tmp_path / "top" / "sub" / "s.jpg").write_bytes(b"x")
    (tmp_path / "top" / "sub" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "top" / "cycle").symlink_to(tmp_path / "top")
    found = discover_images([str(tmp_path / "top")], recursive=True)
    assert found.files == [str(tmp_path / "top" / "sub" / "s.jpg")]
    assert found.links == [
        str(tmp_path / "top" / "cycle"),
        str(tmp_path / "top" / "sub" / "linked"),
    ]
    # named, a linked folder is searched
    named = discover_images([str(tmp_path / "top" / "sub" / "linked")], recursive=True)
    assert named.files == [str(tmp_path / "top" / "sub" / "linked" / "e.jpg")] and not named.links
