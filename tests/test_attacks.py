"""The attack suite: hostile or broken input given to the ``mpiqa`` command as a user
would, each case generated here (no binary is committed). Every case must end with a
one-line error naming the file, line or argument and the documented exit status (2: bad
input or arguments, 1: some files failed, 0: done), never a traceback and never a
silently wrong result. The library-level checks behind them are tested beside each
module; this file keeps the count of handled cases from going down."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mpiqa.backbones.factory import build_random_clip
from mpiqa.cli.main import main

TINY = ["--backbone", "test-tiny", "--no-progress", "--workers", "0"]


def _photo(folder: Path, name: str = "a.png", size=(40, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    rng = np.random.default_rng(len(name))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _weights(tmp: Path, mutate: Callable[[dict], None] | None = None) -> Path:
    state = {
        k: v.contiguous().clone() for k, v in build_random_clip("test-tiny").state_dict().items()
    }
    if mutate:
        mutate(state)
    path = tmp / "w.safetensors"
    save_file(state, str(path))
    return path


def _labels(tmp: Path, text: str | bytes, n_images: int = 4) -> list[str]:
    root = tmp / "data"
    for i in range(n_images):
        _photo(root, f"i{i}.png")
    data = text.encode() if isinstance(text, str) else text
    (root / "labels.csv").write_bytes(data)
    return ["--dataset", "csv", "--root", str(root)]


@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    code: int
    message: str  # a substring of stderr

    def __str__(self) -> str:
        return self.name


def _score(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["score", str(_photo(tmp / "p")), *TINY, "--weights", "random", *extra]


def _score_weights(
    make: Callable[[Path], Path | str], arch: bool = True
) -> Callable[[Path], list[str]]:
    """``score`` with the weights ``make`` writes (``arch=False``: without ``--backbone``,
    so the architecture is read from the checkpoint itself)."""
    flags = TINY if arch else TINY[2:]
    return lambda tmp: ["score", str(_photo(tmp / "p")), *flags, "--weights", str(make(tmp))]


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo.pt")
    return tmp / "fifo.pt"


class _StoragePickler(pickle.Pickler):
    """Pickles the marker "S" as TorchScript's reference to storage "0" of ``numel``."""

    def __init__(self, file, numel: int) -> None:
        super().__init__(file, protocol=2)
        self.numel = numel

    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", self.numel) if obj == "S" else None


def _zip_bomb(tmp: Path) -> Path:
    path = tmp / "bomb.pt"
    buffer = io.BytesIO()
    _StoragePickler(buffer, 16 << 20).dump({"visual.proj": "S"})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m/data.pkl", buffer.getvalue())
        archive.writestr("m/code/__torch__/m.py", "")
        archive.writestr("m/data/0", bytes(64 << 20))  # 64 MB of zeros in about 64 kB
    return path


def _hand_made_script(tmp: Path) -> Path:
    path = tmp / "odd.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/data.pkl", b"\x80\x02c__torch__\nModel\n(K\x01tR.")
        archive.writestr("m/code/__torch__/m.py", "")
    return path


def _raw(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def _hf_dir(config: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        folder = tmp / "hf"
        folder.mkdir()
        (folder / "config.json").write_text(config)
        save_file(_hf_state(), str(folder / "model.safetensors"))
        return folder

    return make


def _hf_state() -> dict:
    """test-tiny's shapes as transformers' CLIPModel names and saves them."""
    from mpiqa.backbones import get_config
    from tests.oracles import hf_model_for

    return {
        k: v.contiguous() for k, v in hf_model_for(get_config("test-tiny")).state_dict().items()
    }


def _set(name: str, value) -> Callable[[dict], None]:
    def mutate(state: dict) -> None:
        state[name] = value(state[name])

    return mutate


def _nan(t):
    t = t.clone()
    t[0, 0] = float("nan")
    return t


def _train_twice(tmp: Path) -> list[str]:
    data = _labels(tmp, "path,score\n" + "".join(f"i{i}.png,{i}\n" for i in range(8)), 8)
    out = str(tmp / "run")
    (tmp / "run").mkdir()
    (tmp / "run" / "log.jsonl").write_text('{"epoch": 1}\n')  # an earlier run's
    return ["train", *data, "--backbone", "test-tiny", "--weights", "random", "--out", out]


CASES = [
    # --- resources: unbounded reads, hangs, memory
    Case("weights /dev/zero", _score_weights(lambda t: "/dev/zero"), 2, "not a regular file"),
    Case("weights FIFO", _score_weights(_fifo), 2, "not a regular file"),
    Case("TorchScript zip bomb", _score_weights(_zip_bomb), 2, "zip bomb"),
    # --- weights and checkpoints
    Case("safetensors header not JSON", _score_weights(_raw("b.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")), 2, "b.safetensors"),
    Case("safetensors header length past the end", _score_weights(_raw("b.safetensors", (2**40).to_bytes(8, "little") + b"{}")), 2, "b.safetensors"),
    Case("safetensors offsets out of bounds", _score_weights(_raw("b.safetensors", b'2\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}')), 2, "b.safetensors"),
    Case("hand-made TorchScript pickle", _score_weights(_hand_made_script), 2, "odd.pt: not a readable TorchScript archive"),
    Case("arbitrary pickle", _score_weights(_raw("x.pt", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")), 2, "x.pt"),
    Case("wrong tensor shape", _score_weights(lambda t: _weights(t, _set("visual.proj", lambda v: v[:, :3].contiguous()))), 2, "w.safetensors"),
    Case("int64 weights", _score_weights(lambda t: _weights(t, _set("visual.proj", lambda v: v.long()))), 2, "tensor visual.proj"),
    Case("bool weights", _score_weights(lambda t: _weights(t, _set("visual.proj", lambda v: v > 0))), 2, "tensor visual.proj"),
    Case("NaN weights", _score_weights(lambda t: _weights(t, _set("visual.proj", _nan))), 2, "tensor visual.proj"),
    Case("config.json not JSON", _score_weights(_hf_dir("{not json")), 2, "config.json: not a readable JSON file"),
    Case("config.json zero heads", _score_weights(_hf_dir('{"vision_config": {"num_attention_heads": 0}}'), arch=False), 2, "config.json"),
    Case("config.json string for a mapping", _score_weights(_hf_dir('{"vision_config": "ViT"}'), arch=False), 2, "config.json"),
    Case("weights file missing", _score_weights(lambda t: t / "nope.safetensors"), 2, "nope.safetensors"),
    # --- label files and datasets
    Case("label path outside the root", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\n../../etc/passwd,1\ni0.png,2\n"), "--out", str(t / "e")], 2, "labels.csv: '../../etc/passwd' lies outside"),
    Case("duplicate label rows", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png,2\ni0.png,3\n"), "--out", str(t / "e")], 2, "labels.csv:4"),
    Case("NaN MOS", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png,nan\n"), "--out", str(t / "e")], 2, "labels.csv:3"),
    Case("short label row", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png\n"), "--out", str(t / "e")], 2, "labels.csv:3"),
    Case("latin-1 label file", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1\xe9.png,2\n".encode("latin-1")), "--out", str(t / "e")], 2, "labels.csv"),
    Case("missing split file", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png,2\ni2.png,3\n"), "--split", "test", "--split-file", str(t / "none.json"), "--out", str(t / "e")], 2, "none.json"),
    # --- training runs
    Case("train --resume without a run", lambda t: ["train", "--resume", "--out", str(t / "nothing")], 2, "nothing"),
    Case("train into an existing run", _train_twice, 2, "run"),
    # --- arguments and paths
    *[Case(f"--device {d}", _score("--device", d), 2, "argument --device") for d in ("foo", "cuda:abc", "meta", "xla")],
    Case("--batch-size 1e20", _score("--batch-size", "99999999999999999999"), 2, "argument --batch-size"),
    Case("--batch-size 0", _score("--batch-size", "0"), 2, "argument --batch-size"),
    Case("--seed -1", _score("--seed", "-1"), 2, "argument --seed"),
    Case("--n-crops nan", _score("--crop", "multi", "--n-crops", "nan"), 2, "argument --n-crops"),
    Case("--out a folder", lambda t: [*_score("--out", str(t))(t)], 2, "is a folder"),
    Case("--out /dev/full", _score("--out", "/dev/full"), 2, "not a regular file"),
    Case("train --lr nan", lambda t: ["train", "--lr", "nan", "--out", str(t / "r")], 2, "argument --lr"),
    Case("finetune --test-fraction 1.5", lambda t: ["finetune", "--test-fraction", "1.5"], 2, "argument --test-fraction"),
    Case("finetune --test-fraction 1", lambda t: ["finetune", "--test-fraction", "1"], 2, "in [0, 1), got 1"),
    Case("train --fraction 0", lambda t: ["train", "--fraction", "0", "--out", str(t / "r")], 2, "in (0, 1], got 0"),
    Case("report of a missing CSV", lambda t: ["report", str(t / "s.csv"), "--out", str(t / "r.html")], 2, "s.csv: no such file"),
    Case("report of a CSV without rows", lambda t: ["report", str(_raw("s.csv", b"path,score\n")(t)), "--out", str(t / "r.html")], 2, "s.csv: no rows"),
    Case("split file is a folder", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png,2\ni2.png,3\n"), "--split", "test", "--split-file", str(t), "--out", str(t / "e")], 2, "not a file"),
    Case("evaluate --out is a file", lambda t: ["evaluate", "--model", "clip-iqa", *TINY[:2], "--weights", "random", *_labels(t, "path,score\ni0.png,1\ni1.png,2\ni2.png,3\n"), "--split", "all", "--out", str(_raw("f", b"x")(t))], 2, "File exists"),
    Case("end-to-end of a missing folder", lambda t: ["benchmark", "--end-to-end", str(t / "none")], 2, "no such folder"),
    Case("export into /dev/full", lambda t: ["export", "--model", "clip-iqa", *TINY[:2], "--weights", "random", "--out", "/dev/full"], 2, "/dev/full: not a regular file"),
    Case("export into a folder", lambda t: ["export", "--model", "clip-iqa", *TINY[:2], "--weights", "random", "--out", str(t)], 2, "is a folder"),
    Case("meta-pretrain of a missing folder", lambda t: ["meta-pretrain", "--root", str(t / "none"), "--out", str(t / "m")], 2, "no such folder"),
    Case("pretrain-backbone with a missing --arch file", lambda t: ["pretrain-backbone", "--dataset", "none", "--clean", str(t), "--arch", str(t / "a.json"), "--out", str(t / "p")], 2, "a.json"),
    Case("official split of a dataset without one", lambda t: ["pretrain-backbone", *_labels(t, "path,score\ni0.png,1\ni1.png,2\n"), "--out", str(t / "p")], 2, "--protocol random"),
    Case("report of a non-numeric score", lambda t: ["report", str(_raw("s.csv", b"path,score\na.jpg,x\n")(t)), "--out", str(t / "r.html")], 2, "s.csv:2"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=str)
def test_attack(case: Case, tmp_path, capsys):
    argv = case.argv(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert case.message in err, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err  # one line, not a cascade


def test_symlink_loop_is_one_failed_file_and_the_rest_are_scored(tmp_path, capsys):
    good = _photo(tmp_path)
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    code = main(["score", str(tmp_path / "loop.png"), str(good), *TINY, "--weights", "random"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "loop.png: a symbolic link to nothing" in err
    assert str(good) in out


def test_extreme_aspect_ratio_is_scored_in_bounded_memory(tmp_path, capsys):
    path = tmp_path / "strip.png"
    Image.new("RGB", (100_000, 3), (120, 80, 40)).save(path)  # 0.3 Mpx, 2 KB
    assert main(["score", str(path), *TINY, "--weights", "random"]) == 0
    assert str(path) in capsys.readouterr().out


def test_files_without_a_known_extension_are_scored_or_listed(tmp_path, capsys):
    folder = tmp_path / "f"
    source = _photo(tmp_path)
    folder.mkdir()
    for name in ("x.jfif", "noext"):
        (folder / name).write_bytes(source.read_bytes())
    assert main(["score", str(folder), *TINY, "--weights", "random"]) == 0
    out, err = capsys.readouterr()
    assert "x.jfif" in out and "noext" not in out
    assert (
        "left out 1 file(s) whose extension is not an image format read here" in err
    )  # said, not silent
    (folder / "x.jfif").unlink()
    assert main(["score", str(folder), *TINY, "--weights", "random"]) == 2
    assert (
        "left out 1 file(s) whose extension is not an image format read here"
        in capsys.readouterr().err
    )
    # named explicitly, a file is scored whatever its name
    assert main(["score", str(folder / "noext"), *TINY, "--weights", "random"]) == 0


def test_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    from mpiqa.cli import score_output

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "s.csv"))

    monkeypatch.setattr(score_output.CSVOutput, "write", full)
    code = main(["score", str(_photo(tmp_path / "p")), *TINY, "--weights", "random", "--out", str(tmp_path / "s.csv")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomically_written_files_follow_the_umask(tmp_path, umask):
    from mpiqa.atomic import atomic_write

    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "x.json", lambda tmp: tmp.write_text("{}"))
        assert main(["score", str(_photo(tmp_path / "p")), *TINY, "--weights", "random", "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip
        # a second run replaces the file through a temporary one
        assert main(["score", str(_photo(tmp_path / "p")), *TINY, "--weights", "random", "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip
    finally:
        os.umask(old)
    for written in (path, tmp_path / "s.csv"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask, written
    assert json.loads(path.read_text()) == {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch prompt checkpoint on a random backbone (its .json is what is attacked)."""
    root = tmp_path_factory.mktemp("ckpt")
    data = _labels(root, "path,score\n" + "".join(f"i{i}.png,{i % 7}\n" for i in range(12)), 12)
    argv = ["train", *data, "--backbone", "test-tiny", "--weights", "random", "--epochs", "1"]
    assert main(["-q", *argv, "--out", str(root / "run")]) == 0
    return root / "run"


def _set_key(path: str, value):
    def mutate(meta: dict) -> None:
        *parents, leaf = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[leaf] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set_key("backbone.weights", "/dev/zero"), "/dev/zero: not a regular file"),
        (_set_key("mmp", "garbage"), "c.json: its 'mmp' entry is missing or not a mapping"),
        (_set_key("backbone", "x"), "c.json: its 'backbone' entry is missing or not a mapping"),
        (_set_key("mmp.n_ctx", "four"), "c.json: model option n_ctx: 'four' is not an int"),
        (_set_key("mmp.coupling", "maple2"), "c.json: model option coupling"),
        (_set_key("mmp.wat", 1), "c.json: unknown model option(s): ['wat']"),
        (_set_key("format", "other/9"), "c.json: not an mpiqa checkpoint"),
        (_set_key("backbone.arch", "nope"), "unknown backbone architecture 'nope'"),
        (_set_key("preprocess", [1]), "unknown preprocessing [1]"),
        (None, "c.json: not a readable JSON file"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_checkpoint_json_attack(trained, tmp_path, capsys, mutate, message):
    import shutil

    shutil.copy(trained / "best.safetensors", tmp_path / "c.safetensors")
    meta = json.loads((trained / "best.json").read_text())
    if mutate is None:
        (tmp_path / "c.json").write_text("{bad")
    else:
        mutate(meta)
        (tmp_path / "c.json").write_text(json.dumps(meta))
    code = main(["score", str(_photo(tmp_path / "p")), "--checkpoint", str(tmp_path / "c.safetensors"), "--no-progress", "--workers", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
