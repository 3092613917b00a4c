"""Stage 3: embedding → clusters. The k-means sweep behind ``find-k`` and the final k-means.

k-means is scikit-learn's ``KMeans`` (k-means++ initialisation, Lloyd iterations, best of
``n_init`` runs). The suggested k maximises the mean silhouette coefficient (Rousseeuw 1987) on the
embedding: measured in ``shared/docs/baseline.md``, it found the true number of categories where the
elbow knee did not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

SILHOUETTE_SAMPLE = 10_000  # silhouette is O(N²): above this many images it uses a random sample
SWEEP_SAMPLE = 20_000  # the k sweep fits k-means 100 times: above this many images, on a random sample


@dataclass
class KSweep:
    """Result of fitting k-means for k = 1..k_max.

    Attributes:
        ks: int array (K,) of the k tried.
        inertia: float array (K,): sum of squared distances to the nearest centre (embedding units²).
        silhouette: float array (K,): mean silhouette coefficient in [-1, 1]; NaN for k = 1.
        suggested_k: the k with the largest silhouette (1 when fewer than 3 points).
    """

    ks: np.ndarray
    inertia: np.ndarray
    silhouette: np.ndarray
    suggested_k: int


def kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> KMeans:
    """Fit k-means with ``k`` clusters on ``x`` (N, d); deterministic for a given ``seed``."""
    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)


def sweep_k(x: np.ndarray, k_max: int, n_init: int, seed: int, progress=None) -> KSweep:
    """Fit k-means for k = 1..min(k_max, N − 1) and score each k.

    Args:
        x: float (N, d) embedding.
        k_max: largest k to try (the original tool used 100).
        n_init, seed: passed to :func:`kmeans`.
        progress: optional callable ``progress(k)`` after each fit.

    Above :data:`SWEEP_SAMPLE` points the sweep runs on a seeded random sample of that size and the
    inertia is scaled by N / sample size, so the curve keeps the full data's units; the final
    clustering (:func:`cluster_kmeans`) always uses every point.

    Returns:
        :class:`KSweep`.
    """
    n_all = x.shape[0]
    if n_all > SWEEP_SAMPLE:
        x = x[np.random.default_rng(seed).choice(n_all, SWEEP_SAMPLE, replace=False)]
    n = x.shape[0]
    ks = np.arange(1, max(1, min(k_max, n - 1)) + 1)
    inertia = np.empty(len(ks))
    silhouette = np.full(len(ks), np.nan)
    sample = min(n, SILHOUETTE_SAMPLE)
    for i, k in enumerate(ks):
        fit = kmeans(x, int(k), n_init, seed)
        inertia[i] = fit.inertia_ * n_all / n
        if 2 <= k <= n - 1 and len(np.unique(fit.labels_)) > 1:
            silhouette[i] = silhouette_score(x, fit.labels_, sample_size=sample, random_state=seed)
        if progress:
            progress(int(k))
    best = int(ks[np.nanargmax(silhouette)]) if np.isfinite(silhouette).any() else 1
    return KSweep(ks, inertia, silhouette, best)


@dataclass
class Clustering:
    """Cluster assignment of N images.

    Attributes:
        labels: int (N,) cluster number per image; 0 is the largest cluster, then by falling size.
        distances: float32 (N,) Euclidean distance to the own cluster centre, in embedding units.
        centers: float32 (k, d) cluster centres, indexed by cluster number.
    """

    labels: np.ndarray
    distances: np.ndarray
    centers: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.centers))


def cluster_kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> Clustering:
    """k-means at ``k`` on ``x`` (N, d), clusters renumbered by size (largest first) so numbers mean
    the same thing across runs with the same data.

    Raises:
        ValueError: ``k`` is larger than N.
    """
    if k > x.shape[0]:
        raise ValueError(f"k = {k} is larger than the number of images ({x.shape[0]})")
    fit = kmeans(x, k, n_init, seed)
    sizes = np.bincount(fit.labels_, minlength=k)
    order = np.argsort(-sizes, kind="stable")  # new number → old number
    renumber = np.empty(k, dtype=int)
    renumber[order] = np.arange(k)
    labels = renumber[fit.labels_]
    centers = fit.cluster_centers_[order].astype(np.float32)
    distances = np.linalg.norm(x - centers[labels], axis=1).astype(np.float32)
    return Clustering(labels, distances, centers)
