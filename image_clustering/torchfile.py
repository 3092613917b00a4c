"""Read PyTorch weight files without importing torch.

Two formats (described in ``shared/docs/weights.md`` and PyTorch's ``torch/serialization.py``):

- TorchScript (``torch.jit.save``): a zip archive whose ``data.pkl`` member pickles the module tree;
  each tensor's bytes live in a member ``data/<key>`` (:func:`load_torchscript`).
- legacy ``torch.save`` (before PyTorch 1.6): pickles in a row — magic number, protocol version,
  system info, the object itself, the list of storage keys — then each storage's int64 element
  count and raw bytes (:func:`load_legacy_state_dict`).

We rebuild only what a weights file needs: modules as attribute dicts, tensors as NumPy arrays.
"""
from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class TorchModule:
    """A TorchScript module rebuilt as a plain object: ``attrs`` maps attribute names to values
    (sub-modules, NumPy arrays, numbers), in the order the module registered them."""

    class_name = ""
    attrs: dict = {}

    def __setstate__(self, state):
        self.attrs = dict(state)


class _Storage:
    def __init__(self, dtype, data: bytes | None = None):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.array = None if data is None else np.frombuffer(data, dtype=self.dtype)


def _rebuild_tensor(storage, offset, size, stride, *_):
    """Same contract as torch._utils._rebuild_tensor_v2: a strided view of ``storage``."""
    arr = storage.array
    if not size:
        return arr[offset].copy()
    view = np.lib.stride_tricks.as_strided(
        arr[offset:], shape=tuple(size), strides=tuple(s * arr.itemsize for s in stride)
    )
    return np.ascontiguousarray(view)


class _TorchUnpickler(pickle.Unpickler):
    """Resolves only the globals a weights file uses; anything else is refused (no code runs)."""

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            # NEWOBJ needs a real class; one subclass per TorchScript class name.
            return type(name, (TorchModule,), {"class_name": f"{module}.{name}"})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a torch file")


def _storage_id(pid) -> tuple[str, type]:
    kind, storage_type, key = pid[:3]
    if kind != "storage" or storage_type not in _DTYPES:
        raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
    return str(key), _DTYPES[storage_type]


class _ZipUnpickler(_TorchUnpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def persistent_load(self, pid):
        key, dtype = _storage_id(pid)
        return _Storage(dtype, self._archive.read(f"{self._prefix}data/{key}"))


class _LegacyUnpickler(_TorchUnpickler):
    """Storages are filled in after the pickle, so tensors are built lazily."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def persistent_load(self, pid):
        key, dtype = _storage_id(pid)
        return self.storages.setdefault(key, _Storage(dtype))

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda *args: ("lazy-tensor", args)
        return super().find_class(module, name)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def load_legacy_state_dict(path) -> dict[str, np.ndarray]:
    """Load a state dict saved by legacy (non-zip) ``torch.save``.

    Returns:
        Parameter name → C-contiguous NumPy array (float32 for FloatStorage, int64 for LongStorage),
        in the file's order; strided tensors are rebuilt with their offsets and strides.

    Raises:
        pickle.UnpicklingError: not a legacy torch file, or it holds more than tensors.
        ValueError: truncated storage data.
    """
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise pickle.UnpicklingError(f"{path}: not a legacy torch.save file (magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # system info (endianness, type sizes)
        unpickler = _LegacyUnpickler(f)
        state = unpickler.load()
        for key in pickle.load(f):
            storage = unpickler.storages[str(key)]
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            data = f.read(count * storage.dtype.itemsize)
            if len(data) != count * storage.dtype.itemsize:
                raise ValueError(f"{path}: storage {key} is truncated")
            storage.array = np.frombuffer(data, dtype=storage.dtype)
    return {name: _rebuild_tensor(*value[1]) for name, value in state.items()}


def load_torchscript(path) -> TorchModule:
    """Load the module tree of a TorchScript archive.

    Args:
        path: a ``torch.jit.save`` zip file (or file object).

    Returns:
        The root :class:`TorchModule`; tensors are C-contiguous NumPy arrays (float32 for FloatStorage).

    Raises:
        zipfile.BadZipFile: ``path`` is not a zip archive.
        pickle.UnpicklingError: the archive holds objects other than modules and tensors.
        KeyError: the archive has no ``data.pkl``.
    """
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]
        with archive.open(pkl) as f:
            return _ZipUnpickler(f, archive, prefix).load()


def iter_modules(module: TorchModule, name: str = ""):
    """Yield ``(dotted_name, module)`` for ``module`` and every sub-module, depth first, in
    registration order."""
    yield name, module
    for key, value in module.attrs.items():
        if isinstance(value, TorchModule):
            yield from iter_modules(value, f"{name}.{key}" if name else key)
