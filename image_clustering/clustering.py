"""Stage 3: embedding → clusters. The k-means sweep behind ``find-k`` and the final k-means.

k-means is scikit-learn's ``KMeans`` (k-means++ initialisation, Lloyd iterations, best of
``n_init`` runs). Four criteria suggest k from the sweep (``model.k_criterion``):

- ``silhouette`` (default): maximum mean silhouette coefficient (Rousseeuw 1987). Measured in
  ``shared/docs/baseline.md``, it found the true number of categories where the others did not.
- ``davies_bouldin``: minimum Davies–Bouldin index (Davies & Bouldin 1979).
- ``elbow``: the knee of the inertia curve, the point farthest below the chord from its first to
  its last point (both axes scaled to [0, 1]).
- ``lmethod``: the L-method (Salvador & Chan 2004, ICTAI): the split of the inertia curve that
  minimises the size-weighted RMSE of two fitted lines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import davies_bouldin_score, silhouette_score

SILHOUETTE_SAMPLE = 10_000  # silhouette is O(N²): above this many images it uses a random sample
SWEEP_SAMPLE = 20_000  # the k sweep fits k-means 100 times: above this many images, on a random sample


@dataclass
class KSweep:
    """Result of fitting k-means for k = 1..k_max.

    Attributes:
        ks: int array (K,) of the k tried.
        inertia: float array (K,): sum of squared distances to the nearest centre (embedding units²).
        silhouette: float array (K,): mean silhouette coefficient in [-1, 1]; NaN for k = 1.
        davies_bouldin: float array (K,): Davies–Bouldin index (≥ 0, lower is better); NaN for k = 1.
        suggestions: criterion name → suggested k (see the module docstring).
        criterion: the criterion behind ``suggested_k``.
    """

    ks: np.ndarray
    inertia: np.ndarray
    silhouette: np.ndarray
    davies_bouldin: np.ndarray
    suggestions: dict[str, int]
    criterion: str = "silhouette"

    @property
    def suggested_k(self) -> int:
        return self.suggestions[self.criterion]


def kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> KMeans:
    """Fit k-means with ``k`` clusters on ``x`` (N, d); deterministic for a given ``seed``."""
    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)


CRITERIA = ("silhouette", "davies_bouldin", "elbow", "lmethod")


def elbow_knee(ks: np.ndarray, values: np.ndarray) -> int:
    """The k whose point lies farthest below the straight line from the first to the last point of
    a falling curve, both axes scaled to [0, 1]."""
    if len(ks) < 3:
        return int(ks[-1]) if len(ks) else 1
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    span = values[0] - values[-1]
    y = (values - values[-1]) / span if span else np.zeros_like(values)
    below = (1 - x) - y  # chord from (0, 1) to (1, 0)
    return int(ks[int(np.argmax(below))])


def l_method(ks: np.ndarray, values: np.ndarray) -> int:
    """The L-method knee (Salvador & Chan 2004): for each split c, fit one least-squares line to the
    points up to c and one to the rest; return the k at the split minimising
    RMSE_c = (c − 1)/(b − 1) · RMSE_left + (b − c)/(b − 1) · RMSE_right over b points (each line
    needs at least two points)."""
    b = len(ks)
    if b < 4:
        return int(ks[-1]) if b else 1
    x, y = ks.astype(float), values.astype(float)

    def rmse(xs, ys):
        fit = np.polyval(np.polyfit(xs, ys, 1), xs)
        return float(np.sqrt(np.mean((ys - fit) ** 2)))

    best, best_c = np.inf, 2
    for c in range(2, b - 1):  # left = points 1..c, right = c+1..b
        total = (c - 1) / (b - 1) * rmse(x[:c], y[:c]) + (b - c) / (b - 1) * rmse(x[c:], y[c:])
        if total < best:
            best, best_c = total, c
    return int(ks[best_c - 1])


def sweep_k(x: np.ndarray, k_max: int, n_init: int, seed: int, progress=None, criterion: str = "silhouette") -> KSweep:
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
    davies_bouldin = np.full(len(ks), np.nan)
    sample = min(n, SILHOUETTE_SAMPLE)
    for i, k in enumerate(ks):
        fit = kmeans(x, int(k), n_init, seed)
        inertia[i] = fit.inertia_ * n_all / n
        if 2 <= k <= n - 1 and len(np.unique(fit.labels_)) > 1:
            silhouette[i] = silhouette_score(x, fit.labels_, sample_size=sample, random_state=seed)
            davies_bouldin[i] = davies_bouldin_score(x, fit.labels_)
        if progress:
            progress(int(k))
    scored = np.isfinite(silhouette).any()
    suggestions = {
        "silhouette": int(ks[np.nanargmax(silhouette)]) if scored else 1,
        "davies_bouldin": int(ks[np.nanargmin(davies_bouldin)]) if scored else 1,
        "elbow": elbow_knee(ks, inertia),
        "lmethod": l_method(ks, inertia),
    }
    return KSweep(ks, inertia, silhouette, davies_bouldin, suggestions, criterion)


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
    return by_size(x, kmeans(x, k, n_init, seed).labels_)


def by_size(x: np.ndarray, raw_labels: np.ndarray) -> Clustering:
    """Renumber any cluster labels by cluster size (largest first); centres are the member means
    and distances are measured to them (Euclidean, in the units of ``x``)."""
    _, raw = np.unique(raw_labels, return_inverse=True)
    k = int(raw.max()) + 1
    order = np.argsort(-np.bincount(raw, minlength=k), kind="stable")  # new number → old number
    renumber = np.empty(k, dtype=int)
    renumber[order] = np.arange(k)
    labels = renumber[raw]
    centers = np.stack([x[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
    distances = np.linalg.norm(x - centers[labels], axis=1).astype(np.float32)
    return Clustering(labels, distances, centers)


HIERARCHICAL_LIMIT = 20_000  # the all-pairs distance matrix of N images takes 4·N² bytes


def cluster_hierarchical(x: np.ndarray, k: int, method: str, metric: str) -> tuple[Clustering, np.ndarray]:
    """Agglomerative clustering (SciPy ``linkage``, then ``fcluster`` with ``maxclust``) into ``k``
    clusters, renumbered by size.

    Args:
        x: float (N, d) points.
        method: ``ward``, ``average``, ``complete`` or ``single`` linkage (Ward needs Euclidean).
        metric: ``euclidean`` or ``cosine``.

    Returns:
        (:class:`Clustering`, the linkage matrix Z, float (N − 1, 4), for a dendrogram).

    Raises:
        ValueError: more than :data:`HIERARCHICAL_LIMIT` points, or k larger than N.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    n = x.shape[0]
    if n > HIERARCHICAL_LIMIT:
        raise ValueError(f"agglomerative clustering holds all {n}² pair distances; it is limited to "
                         f"{HIERARCHICAL_LIMIT:,} images (use k-means)")
    if k > n:
        raise ValueError(f"k = {k} is larger than the number of images ({n})")
    z = linkage(np.asarray(x, dtype=np.float64), method=method, metric=metric)
    return by_size(x, fcluster(z, k, criterion="maxclust")), z
