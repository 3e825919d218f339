"""Read the tensors of a TorchScript archive (OpenAI's CLIP ``.pt`` files) safely.

``torch.load(..., weights_only=True)`` refuses TorchScript archives and ``torch.jit.load``
deserialises and compiles the archive's code. Neither is needed to get the weights: the
module tree in ``data.pkl`` is a pickle of ``__torch__.*`` objects whose attribute dicts
hold tensors. We unpickle it with an allow-list: script classes become inert attribute
holders, tensors are rebuilt from the archive's raw storages, and any other global is
refused, so no code from the file ever runs.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for a TorchScript class: keeps the attribute dict, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_unused: Any
) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.script_classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            key = f"{module}.{name}"
            if key not in self.script_classes:
                self.script_classes[key] = type(name, (_ScriptObject,), {})
            return self.script_classes[key]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} from a TorchScript archive"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        name = f"{self.prefix}data/{key}"
        expected = int(numel) * torch.empty(0, dtype=storage_type.dtype).element_size()
        _check_member(self.archive, name, expected)
        raw = bytearray(self.archive.read(name))
        flat = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0)
        if flat.numel() != numel:
            raise pickle.UnpicklingError(
                f"storage {key}: {flat.numel()} elements, expected {numel}"
            )
        return flat


# A member inflating to more than this many times its stored size is a zip bomb, not
# weights (float tensors barely compress; TorchScript stores them uncompressed anyway).
_MAX_RATIO = 20
_MAX_PICKLE_BYTES = 64 << 20


def _check_member(archive: zipfile.ZipFile, name: str, expected: int | None) -> None:
    """Refuse a member before inflating it: missing, of another size than its tensor
    needs, or compressed beyond :data:`_MAX_RATIO`."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise pickle.UnpicklingError(f"storage {name} is missing from the archive") from None
    if expected is not None and info.file_size != expected:
        raise pickle.UnpicklingError(
            f"storage {name}: {info.file_size} bytes, its tensor needs {expected}"
        )
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_RATIO * max(
        info.compress_size, 1
    ):
        raise pickle.UnpicklingError(
            f"{name} inflates {info.file_size / max(info.compress_size, 1):.0f}-fold "
            "(a zip bomb, not weights)"
        )


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a zip whose module pickle sits beside a ``code/`` folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _flatten(value, f"{prefix}{name}.", out)


def load_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors held by the modules of a TorchScript archive, keyed by dotted path.

    Raises:
        ValueError: ``path`` is not a TorchScript archive, or holds globals other than
            script modules, tensors and ordered dicts.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise ValueError(f"{path}: not a TorchScript archive (no data.pkl at its top level)")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
                raise pickle.UnpicklingError("its module pickle is implausibly large")
            _check_member(archive, pickles[0], None)
            root = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix).load()
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path}: {err}") from None
        except Exception as err:  # a hand-made pickle: wrong arguments, bad strides, ...
            raise ValueError(
                f"{path}: not a readable TorchScript archive ({type(err).__name__}: {err})"
            ) from None
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    return out
