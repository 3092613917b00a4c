"""The golden weight checks' arithmetic: how far two correct float32 runs of one network may differ.

Two correct implementations of a network differ only in the order of their floating-point sums
(oneDNN, Eigen, XLA and PyTorch tile and vectorise the same convolution differently, and pick other
kernels on other CPUs). The probabilistic rounding-error model of Higham & Mary (2019, "A new
approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5)) bounds the error of
a sum of ``n`` products by ``λ·√n·u`` times the size of its terms with a probability that grows
quickly with λ (rounding errors independent, mean zero). Errors made in successive layers add in
quadrature, so the difference at the output is modelled as

    tolerance = λ · u · √(Σ_l n_l) · max|output|

with u = 2⁻²⁴ (float32 unit roundoff), n_l the length of every sum in the network (fan-in of each
convolution and dense layer, window of each pooling) and the output's largest magnitude as the size
of the terms. λ = 6 makes a spurious failure of any one of the ~12,000 checked numbers improbable
(Higham & Mary: failure probability at most 2·exp(−λ²/2)·n per sum). The sums of all layers are
counted, not only those along one path through the network, which only widens the tolerance.

What this admits is tiny next to a real conversion error: ``scripts/bench_golden.py`` and
``tests/test_weights.py`` measure both (README, "The converted networks").
"""
from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = 2.0 ** -24  # float32
LAMBDA = 6.0


def sum_lengths(model) -> list[int]:
    """Length of every sum a Keras model computes per output number: the fan-in of each
    ``Conv2D`` (kh·kw·channels in), ``DepthwiseConv2D`` (kh·kw) and ``Dense`` layer, and the
    window of each pooling layer (global ones: the whole feature map). Layers without sums
    (activations, batch normalisation folded to one multiply-add, concatenation) count 1."""
    keras = __import__("keras")
    L = keras.layers
    lengths = []
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            lengths.append(kh * kw)
        elif isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            lengths.append(kh * kw * int(layer.input.shape[-1]))
        elif isinstance(layer, L.Dense):
            lengths.append(int(layer.input.shape[-1]))
        elif isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
            lengths.append(int(np.prod(layer.input.shape[1:-1])))
        elif isinstance(layer, (L.AveragePooling2D, L.MaxPooling2D)):
            lengths.append(int(np.prod(layer.pool_size)))
        else:
            lengths.append(1)
    return lengths


def float32_tolerance(model, expected: np.ndarray, lam: float = LAMBDA) -> float:
    """Largest absolute difference two correct float32 runs of ``model`` may show on outputs like
    ``expected`` (any shape, float): ``lam · u · √(Σ sum lengths) · max|expected|`` (module doc)."""
    depth = sum(sum_lengths(model))
    return float(lam * UNIT_ROUNDOFF * math.sqrt(depth) * np.abs(expected).max())


def golden_error(got: np.ndarray, expected: np.ndarray) -> dict:
    """``max_abs`` difference and the smallest row cosine between two (N, D) output batches."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    return {"max_abs": float(np.abs(got - expected).max()), "min_cos": float(cos.min())}


def top_classes_agree(logits: np.ndarray, reference_top: list[list[int]], tolerance: float) -> bool:
    """Whether ``logits`` (N, classes) rank each row's reference classes first, in the reference's
    order, up to ``tolerance``: a neighbouring pair may swap only where their logits lie within the
    tolerance of each other (a float32 tie), and no other class may beat the last reference class
    by more than it."""
    for row, top in zip(np.asarray(logits, np.float64), reference_top):
        ranked = row[list(top)]
        if np.any(np.diff(ranked) > tolerance):
            return False
        others = np.delete(row, list(top))
        if others.max() > ranked.min() + tolerance:
            return False
    return True


_BUILDERS = {"inception_v3": lambda e: e.build_inception_v3(max_pool_in_mixed10=True),
             "efficientnet_lite0": lambda e: e.build_efficientnet_lite0()}
_DEPTHS: dict[str, int] = {}


def network_tolerance(network: str, expected: np.ndarray) -> float:
    """:func:`float32_tolerance` of a registry network (``inception_v3``, ``efficientnet_lite0``)
    for outputs like ``expected``: how far two correct runs of it (other batch, process, thread
    count or kernels) may differ."""
    if network not in _DEPTHS:
        from image_clustering import extractor

        _DEPTHS[network] = sum(sum_lengths(_BUILDERS[network](extractor)))
    return float(LAMBDA * UNIT_ROUNDOFF * math.sqrt(_DEPTHS[network]) * np.abs(expected).max())
