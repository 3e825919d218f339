"""Checkpoint loading: safety, inference of the architecture, clear errors."""

from __future__ import annotations

import io
import logging
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from mpiqa import load_clip
from mpiqa.backbones import CheckpointError, build_random_clip, get_config
from mpiqa.backbones.convert import read_checkpoint
from mpiqa.backbones.torchscript import load_torchscript_state_dict


def _openai_layout(model) -> dict[str, torch.Tensor]:
    return {k.removeprefix("text."): v for k, v in model.state_dict().items()}


class _Exploit:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Exploit.ran = True
    return {}


def test_random_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_random_clip("test-tiny", seed=7)
    after = torch.rand(1)
    b = build_random_clip("test-tiny", seed=7)
    c = build_random_clip("test-tiny", seed=8)
    assert torch.equal(before, after)
    assert torch.equal(a.visual.proj, b.visual.proj)
    assert not torch.equal(a.visual.proj, c.visual.proj)


def test_round_trip_of_own_state_dict(tmp_path):
    model = build_random_clip("test-tiny", seed=1)
    save_file(_openai_layout(model), tmp_path / "m.safetensors")
    loaded = load_clip(tmp_path / "m.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_arbitrary_pickle_is_refused_and_never_run(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump(_Exploit(), f)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_clip(path)
    assert not _Exploit.ran


def test_torchscript_archive_with_foreign_global_is_refused(tmp_path):
    payload = b"\x80\x02cos\nsystem\n(X\x04\x00\x00\x00trueS'x'\ntR."
    path = tmp_path / "evil_jit.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", payload)
        archive.writestr("evil/code/__torch__/m.py", "")
    with pytest.raises(ValueError, match="refusing to load global os.system"):
        load_torchscript_state_dict(path)


def test_unregistered_shapes_fall_back_to_openai_conventions(tmp_path, caplog):
    config = get_config("test-tiny")
    from dataclasses import replace

    odd = replace(config, embed_dim=48, name=None)
    model = build_random_clip(odd, seed=0)
    save_file(_openai_layout(model), tmp_path / "odd.safetensors")
    with caplog.at_level(logging.WARNING, logger="mpiqa"):
        loaded = load_clip(tmp_path / "odd.safetensors")
    assert loaded.config.embed_dim == 48 and loaded.config.vision.heads == 1
    assert "not registered" in caplog.text


def test_architecture_that_does_not_match_is_an_error(tmp_path):
    save_file(_openai_layout(build_random_clip("test-tiny")), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="do not match architecture test-small-gelu"):
        load_clip(tmp_path / "m.safetensors", arch="test-small-gelu")


def test_act_override(tmp_path):
    save_file(_openai_layout(build_random_clip("test-tiny")), tmp_path / "m.safetensors")
    assert load_clip(tmp_path / "m.safetensors", act="gelu").config.act == "gelu"


def test_partial_resnet_checkpoint_is_one_clear_error(tmp_path):
    state = {
        "visual.layer1.0.conv1.weight": torch.zeros(8, 8, 1, 1),
        "visual.attnpool.c_proj.weight": torch.zeros(32, 256),
    }
    torch.save(state, tmp_path / "rn50.pt")
    with pytest.raises(CheckpointError, match="rn50.pt: checkpoint lacks the tensor"):
        load_clip(tmp_path / "rn50.pt")


def test_missing_tensor_is_named(tmp_path):
    state = _openai_layout(build_random_clip("test-tiny"))
    del state["ln_final.weight"]
    save_file(state, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="ln_final.weight"):
        load_clip(tmp_path / "m.safetensors")


def test_missing_path_and_unknown_name():
    with pytest.raises(FileNotFoundError, match="neither a file nor a known architecture"):
        load_clip("no/such/file.pt")
    with pytest.raises(KeyError, match="unknown backbone architecture"):
        load_clip("random", arch="ViT-Z/99")


def test_transformers_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        read_checkpoint(tmp_path)


def test_non_tensor_pickle_content_is_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save({"weights": [1, 2, 3]}, buffer)
    (tmp_path / "list.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        load_clip(tmp_path / "list.pt")


def test_devices_and_pipes_are_refused_without_reading(tmp_path):
    # /dev/zero would be read without end, a FIFO would block for ever
    import os

    with pytest.raises(CheckpointError, match="not a regular file"):
        load_clip("/dev/zero")
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_clip(fifo)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}",  # header is not JSON
        (2**40).to_bytes(8, "little") + b"{}",  # header length past the end
        b'2\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}',
    ],
)
def test_malformed_safetensors_is_one_clear_error(tmp_path, payload):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_clip(path)


@pytest.mark.parametrize("bad", ["nan", "inf", "int"])
def test_non_finite_or_integer_weights_are_refused(tmp_path, bad):
    state = build_random_clip("test-tiny").state_dict()
    name = "visual.proj"
    if bad == "int":
        state[name] = state[name].long()
    else:
        state[name] = state[name].clone()
        state[name][0, 0] = float(bad)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match=f"w.safetensors: tensor {name}"):
        load_clip(path, arch="test-tiny")


def test_malformed_transformers_config_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="config.json: not a readable JSON file"):
        load_clip(tmp_path)


class _StoragePickler(pickle.Pickler):
    """Pickles a marker as TorchScript's persistent storage reference."""

    def __init__(self, file, numel: int) -> None:
        super().__init__(file, protocol=2)
        self.numel = numel

    def persistent_id(self, obj):
        if obj == "STORAGE":
            return ("storage", torch.FloatStorage, "0", "cpu", self.numel)
        return None


def test_torchscript_zip_bomb_is_refused_before_inflating(tmp_path):
    numel = 64 << 20  # 256 MB of zeros, a few hundred kB compressed
    buffer = io.BytesIO()
    _StoragePickler(buffer, numel).dump("STORAGE")
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m/data.pkl", buffer.getvalue())
        archive.writestr("m/code/__torch__/m.py", "")
        archive.writestr("m/data/0", bytes(numel * 4))
    assert path.stat().st_size < 2 << 20
    with pytest.raises(ValueError, match="zip bomb"):
        load_torchscript_state_dict(path)


def test_hand_made_torchscript_pickle_is_one_clear_error(tmp_path):
    payload = b"\x80\x02c__torch__\nModel\n(K\x01tR."  # Model(1): scripts take no arguments
    path = tmp_path / "odd.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/data.pkl", payload)
        archive.writestr("m/code/__torch__/m.py", "")
    with pytest.raises(ValueError, match="odd.pt: not a readable TorchScript archive"):
        load_torchscript_state_dict(path)


@pytest.mark.parametrize(
    "hf_config",
    [
        {"vision_config": {"num_attention_heads": 0}},
        {"vision_config": {"num_attention_heads": -2}},
        {"vision_config": "ViT"},
        {"text_config": {"num_attention_heads": "eight"}},
    ],
)
def test_malformed_transformers_config_values_are_one_clear_error(hf_config):
    from mpiqa.backbones.convert import resolve_config

    state = build_random_clip("test-tiny").state_dict()
    with pytest.raises(CheckpointError, match="config.json does not describe these weights"):
        resolve_config(state, "hf", hf_config=hf_config)
