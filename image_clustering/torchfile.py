"""Read PyTorch TorchScript archives without importing torch.

A TorchScript file (``torch.jit.save``) is a zip archive whose ``data.pkl`` member pickles the module
tree; each tensor's bytes live in a separate member ``data/<key>``. The layout is described in
``shared/docs/weights.md`` and in PyTorch's ``torch/serialization.py``; we rebuild only what a
weights file needs (modules as attribute dicts, float tensors as NumPy arrays).
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
    def __init__(self, dtype, data: bytes):
        self.array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))


def _rebuild_tensor(storage, offset, size, stride, *_):
    """Same contract as torch._utils._rebuild_tensor_v2: a strided view of ``storage``."""
    arr = storage.array
    if not size:
        return arr[offset].copy()
    view = np.lib.stride_tricks.as_strided(
        arr[offset:], shape=tuple(size), strides=tuple(s * arr.itemsize for s in stride)
    )
    return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

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
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in TorchScript archive")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        data = self._archive.read(f"{self._prefix}data/{key}")
        return _Storage(_DTYPES[storage_type], data)


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
            return _Unpickler(f, archive, prefix).load()


def iter_modules(module: TorchModule, name: str = ""):
    """Yield ``(dotted_name, module)`` for ``module`` and every sub-module, depth first, in
    registration order."""
    yield name, module
    for key, value in module.attrs.items():
        if isinstance(value, TorchModule):
            yield from iter_modules(value, f"{name}.{key}" if name else key)
