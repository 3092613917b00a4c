"""The feature extractor: an ImageNet InceptionV3 whose global-average-pooled 2048-d output is the
image's feature vector (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision"; the network of Keras' ``keras.applications.InceptionV3``)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter is noise to users

INPUT_SIZE = 299  # pixels, square
FEATURE_DIM = 2048


def _keras():
    # TensorFlow takes seconds to import: only the commands that run the network pay for it. Its C++
    # side prints start-up lines (oneDNN, CUDA probing) straight to file descriptor 2 before any log
    # level applies, so stderr is muted for the import; Python exceptions still propagate.
    if "keras" not in sys.modules:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs on first use, not on import
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    return sys.modules["keras"]


def _creation_order(layers, cls) -> list:
    """Layers of type ``cls`` sorted by the numeric suffix Keras appends (``conv2d``, ``conv2d_1``,
    …), i.e. in the order they were created (the order of the 2015 graph's conv units)."""
    def suffix(layer):
        m = re.search(r"_(\d+)$", layer.name)
        return int(m.group(1)) if m else 0

    return sorted((layer for layer in layers if type(layer) is cls), key=suffix)


def build_inception_v3(max_pool_in_mixed10: bool):
    """Build an untrained Keras InceptionV3 without its classifier, pooled to one 2048-d vector.

    Args:
        max_pool_in_mixed10: give the pool branch of the last block (``mixed10``) 3×3/1 max pooling,
            as Google's 2015 graph has, instead of Keras' average pooling.

    Returns:
        A ``keras.Model`` mapping float32 (N, 299, 299, 3) inputs scaled to [-1, 1] to (N, 2048).
    """
    keras = _keras()
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), pooling="avg"
    )
    if not max_pool_in_mixed10:
        return model
    last_avg = _creation_order(model.layers, keras.layers.AveragePooling2D)[-1]

    def swap(layer):
        if layer is last_avg:
            return keras.layers.MaxPooling2D((3, 3), strides=(1, 1), padding="same", name="mixed10_max_pool")
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=swap)


def conv_bn_pairs(model) -> list:
    """The (Conv2D, BatchNormalization) layer pairs of an InceptionV3 in creation order (94 pairs)."""
    keras = _keras()
    convs = _creation_order(model.layers, keras.layers.Conv2D)
    norms = _creation_order(model.layers, keras.layers.BatchNormalization)
    if len(convs) != len(norms):
        raise ValueError(f"{len(convs)} Conv2D layers but {len(norms)} BatchNormalization layers")
    return list(zip(convs, norms))


def set_conv_bn_weights(model, arrays: dict[str, np.ndarray]) -> None:
    """Load weights in the project's ``.npz`` layout into ``model``.

    Args:
        model: from :func:`build_inception_v3`.
        arrays: for each unit ``i`` (0..93): ``kernel_i`` (H, W, I, O) float32, ``beta_i``,
            ``mean_i``, ``var_i`` (O,) float32.

    Raises:
        ValueError: the arrays do not match the model's layers in number or shape.
    """
    pairs = conv_bn_pairs(model)
    if f"kernel_{len(pairs) - 1}" not in arrays or f"kernel_{len(pairs)}" in arrays:
        raise ValueError(f"weights file does not hold exactly {len(pairs)} conv units")
    for i, (conv, bn) in enumerate(pairs):
        conv.set_weights([arrays[f"kernel_{i}"]])
        bn.set_weights([arrays[f"beta_{i}"], arrays[f"mean_{i}"], arrays[f"var_{i}"]])


def load_extractor(weights: dict):
    """Build the InceptionV3 feature extractor with trained weights.

    Args:
        weights: the manifest written by :func:`image_clustering.weights.download_weights`
            (keys ``format`` — ``"npz"`` or ``"keras-h5"`` — and ``file``, an absolute path).

    Returns:
        ``keras.Model``: float32 (N, 299, 299, 3) in [-1, 1] → float32 (N, 2048).

    Raises:
        ValueError: unknown weights format or mismatched file.
    """
    path = Path(weights["file"])
    if weights["format"] == "npz":
        model = build_inception_v3(max_pool_in_mixed10=True)
        with np.load(path) as arrays:
            set_conv_bn_weights(model, dict(arrays))
        return model
    if weights["format"] == "keras-h5":
        model = build_inception_v3(max_pool_in_mixed10=False)
        model.load_weights(path)
        return model
    raise ValueError(f"unknown weights format {weights['format']!r} in {path}")


def preprocess(images: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """Scale uint8 RGB images (N, H, W, 3) to the network's input range, ``(x - offset) / scale``,
    as float32. Google's 2015 graph uses (128, 128); Keras' ``inception_v3.preprocess_input`` is
    (127.5, 127.5)."""
    return (images.astype(np.float32) - np.float32(offset)) / np.float32(scale)
