"""Which Keras backend runs the networks, and at which precision.

The networks are plain Keras 3, so TensorFlow (the default), JAX or PyTorch can run them. Keras
reads ``KERAS_BACKEND`` once, when it is first imported: :func:`select` must run before that (the
extractor calls it before its first ``import keras``). Precision is a Keras mixed-precision policy
(:data:`PRECISIONS`), set before a network is built.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys

from .errors import ImgclustError

log = logging.getLogger(__name__)

# Keras' backend name → (the package it needs, the extra that installs it)
BACKENDS = {"tensorflow": ("tensorflow", None), "jax": ("jax", "jax"), "torch": ("torch", "torch")}
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_BACKEND = "tensorflow"


def resolve(name: str | None = None) -> str:
    """The backend to use: ``name`` (the ``model.backend`` key) when given, else ``KERAS_BACKEND``,
    else TensorFlow.

    Raises:
        ImgclustError: an unknown backend name.
    """
    key = "model.backend" if name else "KERAS_BACKEND"
    name = name or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ImgclustError(f"{key}: unknown Keras backend {name!r}; one of {', '.join(BACKENDS)}")
    return name


def select(name: str | None = None) -> str:
    """Make ``name`` (see :func:`resolve`) the Keras backend of this process; returns it.

    Raises:
        ImgclustError: unknown backend; its package is not installed; or Keras was already
            imported with another backend (Keras cannot switch backends within a process).
    """
    key = "model.backend" if name else "KERAS_BACKEND"
    name = resolve(name)
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise ImgclustError(f"{key}: Keras was already imported with the {current!r} backend in this "
                                f"process; set KERAS_BACKEND={name} before starting Python")
        return name
    package, extra = BACKENDS[name]
    if importlib.util.find_spec(package) is None:
        raise ImgclustError(f"{key}: the {name!r} backend needs {package}, which is not installed; "
                            f"pip install 'imgclust[{extra}]'")
    os.environ["KERAS_BACKEND"] = name
    return name


def current() -> str:
    """The backend Keras runs on, or would run on if imported now."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return resolve()


def set_precision(precision: str) -> None:
    """Set Keras' global dtype policy; networks built afterwards compute in it (outputs are cast
    back to float32 by :func:`image_clustering.extractor.wrap_network`).

    ``float32`` on an Ampere or later GPU still lets TensorFlow use TF32 matrix units (10-bit
    mantissa); :func:`exact_float32` turns that off where reproducibility matters.

    Raises:
        ImgclustError: not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ImgclustError(f"model.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    from .extractor import _keras

    _keras().mixed_precision.set_global_policy(precision)


def exact_float32() -> None:
    """Full float32 matrix products (no TF32 on GPUs): bit-for-bit closer across machines, slower."""
    backend = current()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
