"""Feature extractors: ImageNet networks whose global-average-pooled activations are the image's
feature vector.

- ``inception_v3``: InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for
  Computer Vision"; Keras' ``keras.applications.InceptionV3``), 299×299 input, 2048-d vector.
- ``efficientnet_lite0``: EfficientNet-Lite0 (Tan & Le 2019; Google's Lite variant), 224×224
  input, 1280-d vector, plus the ImageNet classifier's top classes for ``imgclust tag``.
- ``vgg16``: VGG16 (Simonyan & Zisserman 2015; ``keras.applications.VGG16``), 224×224 input, the
  4096-d ``fc2`` activations — the fingerprint of the imagecluster workflow.
- ``resnet50``: ResNet50 (He et al. 2016; ``keras.applications.ResNet50``), 224×224 input, 2048-d
  global-average-pooled vector — the workflow of seed 5.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter is noise to users



def _keras():
    # Keras takes seconds to import: only the commands that run the network pay for it. The backend
    # (backend.select) must be chosen before the first import. TensorFlow's C++ side prints start-up
    # lines (oneDNN, CUDA probing) straight to file descriptor 2 before any log level applies, so
    # stderr is muted for the import; Python exceptions still propagate.
    if "keras" not in sys.modules:
        from .backend import select

        name = select()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import keras  # noqa: F401

            if name == "tensorflow":
                import tensorflow as tf

                for gpu in tf.config.list_physical_devices("GPU"):  # first use probes CUDA (and logs)
                    # Take GPU memory as needed rather than all of it up front.
                    tf.config.experimental.set_memory_growth(gpu, True)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    return sys.modules["keras"]


def gpu_count() -> int:
    """Number of GPUs the Keras backend sees (importing it if needed)."""
    keras = _keras()
    name = keras.backend.backend()
    if name == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if name == "torch":
        import torch

        return torch.cuda.device_count()
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


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
        include_top=False, weights=None, input_shape=(299, 299, 3), pooling="avg"
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


def preprocess(images: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """Scale uint8 RGB images (N, H, W, 3) to the network's input range, ``(x - offset) / scale``,
    as float32. Google's 2015 graph uses (128, 128); Keras' ``inception_v3.preprocess_input`` is
    (127.5, 127.5)."""
    return (images.astype(np.float32) - np.float32(offset)) / np.float32(scale)


# ---- EfficientNet-Lite0 -------------------------------------------------------------------------
# Tan & Le 2019 ("EfficientNet: Rethinking Model Scaling for CNNs"), Lite variant: B0 without
# squeeze-and-excitation, ReLU6, stem and head not scaled. Stages as (repeats, kernel, stride of
# the first block, expand ratio, in, out), from shared/docs/weights.md.
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def build_efficientnet_lite0():
    """Build an untrained Keras EfficientNet-Lite0 with two outputs.

    Layer names follow the PyTorch state dict (``block{i}_expand``, ``block{i}_dw``,
    ``block{i}_project`` with ``_conv``/``_bn``; ``stem``, ``head``, ``logits``) so weights load by
    name. BatchNorm epsilon 1e-3; "same" padding (TensorFlow's, as the original checkpoints).

    Returns:
        ``keras.Model``: float32 (N, 224, 224, 3) scaled ``(x - 127) / 128`` →
        [features (N, 1280) after global average pooling, logits (N, 1000)].
    """
    keras = _keras()
    L = keras.layers

    def conv_bn(x, name, filters, kernel, stride=1, depthwise=False, act=True):
        if depthwise:
            x = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        else:
            x = L.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
        return L.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if act else x

    inputs = keras.Input((224, 224, 3))
    x = conv_bn(inputs, "stem", 32, 3, 2)
    block = 0
    for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
        for r in range(repeats):
            s, cin = (stride, c_in) if r == 0 else (1, c_out)
            y = conv_bn(x, f"block{block}_expand", cin * expand, 1) if expand != 1 else x
            y = conv_bn(y, f"block{block}_dw", None, kernel, s, depthwise=True)
            y = conv_bn(y, f"block{block}_project", c_out, 1, act=False)
            x = L.Add(name=f"block{block}_add")([x, y]) if s == 1 and cin == c_out else y
            block += 1
    x = conv_bn(x, "head", 1280, 1)
    features = L.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = L.Dense(1000, name="logits")(features)
    return keras.Model(inputs, [features, logits], name="efficientnet_lite0")


def _lite0_layer_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map a PyTorch EfficientNet-Lite0 state dict onto the Keras layer names above."""
    def bn(prefix):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    def conv(name):  # (O, I, H, W) → (H, W, I, O)
        return [np.transpose(state[f"{name}.weight"], (2, 3, 1, 0))]

    out = {"stem_conv": conv("_conv_stem"), "stem_bn": bn("_bn0"),
           "head_conv": conv("_conv_head"), "head_bn": bn("_bn1"),
           "logits": [state["_fc.weight"].T, state["_fc.bias"]]}
    n_blocks = sum(r for r, *_ in LITE0_STAGES)
    for i in range(n_blocks):
        p = f"_blocks.{i}"
        if f"{p}._expand_conv.weight" in state:
            out[f"block{i}_expand_conv"] = conv(f"{p}._expand_conv")
            out[f"block{i}_expand_bn"] = bn(f"{p}._bn0")
        # depthwise (C, 1, k, k) → Keras (k, k, C, 1)
        out[f"block{i}_dw_conv"] = [np.transpose(state[f"{p}._depthwise_conv.weight"], (2, 3, 0, 1))]
        out[f"block{i}_dw_bn"] = bn(f"{p}._bn1")
        out[f"block{i}_project_conv"] = conv(f"{p}._project_conv")
        out[f"block{i}_project_bn"] = bn(f"{p}._bn2")
    return out


def set_lite0_weights(model, arrays: dict[str, np.ndarray]) -> None:
    """Load a PyTorch-named EfficientNet-Lite0 state dict (``_conv_stem.weight`` …) into ``model``.

    Raises:
        KeyError: a layer's tensor is missing. ValueError: a shape differs.
    """
    for name, weights in _lite0_layer_weights(arrays).items():
        model.get_layer(name).set_weights([w.astype(np.float32) for w in weights])


# ---- VGG16 and ResNet50 (official Keras weights) -----------------------------------------------
# Both were trained on Caffe-style input: BGR channel order, ImageNet channel means subtracted, no
# scaling (the "caffe" mode of keras.applications.imagenet_utils).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def preprocess_caffe(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) → float32 BGR minus the ImageNet channel means."""
    return images[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR


def build_vgg16(weights_file: Path | None = None):
    """VGG16 up to ``fc2``: (N, 224, 224, 3) Caffe-preprocessed input → (N, 4096).

    Args:
        weights_file: Keras' full VGG16 ``.h5`` (with the classifier, which ``fc2`` belongs to);
            None leaves the network randomly initialised (tests).
    """
    keras = _keras()
    full = keras.applications.VGG16(include_top=True, weights=None)
    if weights_file is not None:
        full.load_weights(weights_file)
    return keras.Model(full.input, full.get_layer("fc2").output, name="vgg16_fc2")


def build_resnet50(weights_file: Path | None = None):
    """ResNet50 without its classifier, global average pooling: (N, 224, 224, 3) → (N, 2048).

    Args:
        weights_file: Keras' no-top ResNet50 ``.h5``; None leaves it randomly initialised (tests).
    """
    keras = _keras()
    model = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                        input_shape=(224, 224, 3))
    if weights_file is not None:
        model.load_weights(weights_file)
    return model


TOP_STORED = 20  # top ImageNet classes kept per image; ``imgclust tag`` shows up to this many


@dataclass
class Network:
    """A ready feature extractor.

    Attributes:
        name: a key of :data:`image_clustering.networks.NETWORKS`.
        input_size: side of the square RGB input, pixels.
        dim: feature vector length.
        run: uint8 (B, input_size, input_size, 3) → dict of per-image arrays: ``features`` float32
            (B, dim); for classifiers also ``top_classes`` int16 (B, 20) ImageNet indices, best
            first, and ``top_scores`` float32 (B, 20) softmax probabilities.
    """

    name: str
    input_size: int
    dim: int
    run: Callable[[np.ndarray], dict[str, np.ndarray]]


def classifier_outputs(features: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Feature vectors plus the top :data:`TOP_STORED` softmax classes of ``logits`` (B, 1000)."""
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :TOP_STORED]
    return {"features": features.astype(np.float32), "top_classes": top.astype(np.int16),
            "top_scores": np.take_along_axis(probs, top, axis=1).astype(np.float32)}


def wrap_network(name: str, model, scaling) -> Network:
    """Wrap a Keras model from one of the ``build_*`` or ``load_*`` functions.

    Args:
        model: single output (N, dim) features, or two outputs [features, logits] (a classifier).
        scaling: ``(offset, scale)`` for :func:`preprocess`, or ``"caffe"`` for :func:`preprocess_caffe`.
    """
    size = int(model.input_shape[1])
    classifier = isinstance(model.output_shape, list)
    dim = int((model.output_shape[0] if classifier else model.output_shape)[-1])

    def prepare(batch):
        return preprocess_caffe(batch) if scaling == "caffe" else preprocess(batch, *scaling)

    def run(batch):
        out = model.predict_on_batch(prepare(batch))
        # under a mixed-precision policy the outputs are bfloat16/float16: always hand back float32
        if classifier:
            return classifier_outputs(np.asarray(out[0], np.float32), np.asarray(out[1], np.float32))
        return {"features": np.asarray(out, dtype=np.float32)}

    return Network(name, size, dim, run)


# Loaders: (weights file or None for random weights, format) → Keras model; named in the registry.
def _unsupported(name: str, path, fmt: str):
    raise ValueError(f"{path}: cannot load {fmt!r} weights for {name!r}")


def load_inception_v3(path: Path | None, fmt: str = "npz"):
    """InceptionV3: Google's 2015 graph from ``.npz`` (max pooling in mixed10), or a Keras ``.h5``."""
    if fmt == "npz":
        model = build_inception_v3(max_pool_in_mixed10=True)
        if path is not None:
            with np.load(path) as arrays:
                set_conv_bn_weights(model, dict(arrays))
        return model
    if fmt == "keras-h5":
        model = build_inception_v3(max_pool_in_mixed10=False)
        if path is not None:
            model.load_weights(path)
        return model
    return _unsupported("inception_v3", path, fmt)


def load_efficientnet_lite0(path: Path | None, fmt: str = "npz"):
    """EfficientNet-Lite0 from the converted PyTorch state dict (``.npz``)."""
    if fmt != "npz":
        return _unsupported("efficientnet_lite0", path, fmt)
    model = build_efficientnet_lite0()
    if path is not None:
        with np.load(path) as arrays:
            set_lite0_weights(model, dict(arrays))
    return model


def load_vgg16(path: Path | None, fmt: str = "keras-h5"):
    """VGG16 up to fc2 from Keras' full ``.h5``."""
    return build_vgg16(path) if fmt == "keras-h5" else _unsupported("vgg16", path, fmt)


def load_resnet50(path: Path | None, fmt: str = "keras-h5"):
    """ResNet50, pooled, from Keras' no-top ``.h5``."""
    return build_resnet50(path) if fmt == "keras-h5" else _unsupported("resnet50", path, fmt)
