"""Stage 3: points (embedding, PCA features or full features) → clusters: the k-means sweep behind
``find-k``, and the clustering algorithms — Leiden communities or spectral clustering of a
nearest-neighbour graph of the feature vectors, k-means, agglomerative (SciPy linkage) at k
clusters or cut at a similarity level, and HDBSCAN. Cluster ``-1`` means "unclustered" (HDBSCAN
noise, or a cluster below the minimum size of a similarity cut).

k is chosen on the sweep of k-means on the t-SNE embedding, guarded by the feature graph, and
Leiden community detection (the default) then clusters at that k in the space that clusters
best: the graph of each photo's nearest neighbours in every network's feature space, cut from
:data:`LEIDEN_RUNS` seeds (the partition of highest modularity kept), its boundaries settled by
a neighbour vote. Every default was chosen by the six-set protocol of docs/benchmarks.md.

k-means is scikit-learn's ``KMeans`` (k-means++ initialisation, Lloyd iterations, best of
``n_init`` runs). Six criteria suggest k from the sweep (``model.k_criterion``):

- ``guarded_silhouette`` (the config's default): the silhouette's k, unless the graph modularity
  of its clustering is below :data:`GUARD` of the best k's, then the modularity's k (so k = 2
  stands only where two clusters also hold the feature graph; :func:`add_graph_modularity`).
- ``silhouette``: maximum mean silhouette coefficient (Rousseeuw 1987) on the embedding.
- ``modularity``: the k whose k-means clustering has the highest Newman modularity on the
  feature graph (Newman 2006).
- ``davies_bouldin``: minimum Davies–Bouldin index (Davies & Bouldin 1979).
- ``elbow``: the knee of the inertia curve, the point farthest below the chord from its first to
  its last point (both axes scaled to [0, 1]).
- ``lmethod``: the L-method (Salvador & Chan 2004, ICTAI): the split of the inertia curve that
  minimises the size-weighted RMSE of two fitted lines.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.metrics import davies_bouldin_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

SILHOUETTE_SAMPLE = 10_000  # silhouette is O(N²): above this many images it uses a random sample
SWEEP_SAMPLE = 20_000  # the k sweep fits k-means 100 times: above this many images, on a random sample
SMALL_SWEEP = 20_000  # values (N × d) up to which the sweep runs single-threaded (10,000 photos in 2-D)
GRAPH_NEIGHBORS = 10  # neighbours per photo in the clustering graph (15 and 30 measured no better)
GRAPH_PCA = 50  # each network's vectors are reduced to this many PCA components before the neighbour search
# Up to this many photos the graph's neighbours are exact (brute force, N² distances); above, they
# are approximate: pynndescent's nearest-neighbour descent (Dong, Moses & Li 2011), near-linear in N.
ANN_LIMIT = 20_000
# NN-descent keeps this many candidates per photo and the graph takes the nearest GRAPH_NEIGHBORS of
# them: its recall grows with the list it keeps (on the dev sets 97.3–99.3 % of the exact graph's
# edges when it keeps 11, 99.96–100 % at 30; docs/benchmarks.md).
ANN_SEARCH = 30
# Leiden's resolution search and spectral clustering's eigenvectors run on the graph of at most this
# many photos: above, on the exact graph of a seeded sample of this size, and every other photo joins
# its neighbours' cluster on the full (approximate) graph (:func:`spread_labels`, then the vote).
# The same size as the k sweep's sample (SWEEP_SAMPLE): below it nothing is sampled.
GRAPH_SAMPLE = 20_000
# Leiden's result depends on its random order of visits, and a few changed edges can send it to
# another partition: it runs from this many seeds and keeps the partition of highest modularity.
LEIDEN_RUNS = 5
VOTE_SWEEPS = 10  # at most this many sweeps of the neighbour vote that ends ``leiden`` and ``spectral``


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
        labels: int16 (K, N) or None: row i is the k-means clustering at ``ks[i]`` of all N
            points, renumbered by size (0 the largest), so a report can show any k the sweep
            fitted without fitting again.
        modularity: float array (K,) or None: modularity of each k's clustering on the feature
            graph (:func:`add_graph_modularity`; NaN for k = 1), None until computed.
    """

    ks: np.ndarray
    inertia: np.ndarray
    silhouette: np.ndarray
    davies_bouldin: np.ndarray
    suggestions: dict[str, int]
    criterion: str = "silhouette"
    labels: np.ndarray | None = None
    modularity: np.ndarray | None = None

    @property
    def suggested_k(self) -> int:
        return self.suggestions[self.criterion]


def kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> KMeans:
    """Fit k-means with ``k`` clusters on ``x`` (N, d); deterministic for a given ``seed``. Fewer
    distinct points than ``k`` (photos with equal feature vectors) give fewer distinct clusters,
    which the sweep scores as undefined, without scikit-learn's ConvergenceWarning."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)


CRITERIA = ("silhouette", "davies_bouldin", "elbow", "lmethod", "modularity", "guarded_silhouette")
GRAPH_CRITERIA = ("modularity", "guarded_silhouette")  # computed on the feature graph (add_graph_modularity)


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


def l_method_errors(ks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The L-method's total error per split (Salvador & Chan 2004): for each split c, one
    least-squares line through points 1..c and one through c+1..b (each at least two points),
    RMSE_c = (c − 1)/(b − 1) · RMSE_left + (b − c)/(b − 1) · RMSE_right over b points.

    Returns:
        (k at each split — the last point of the left line —, RMSE_c), float arrays.
    """
    b = len(ks)
    x, y = np.asarray(ks, dtype=float), np.asarray(values, dtype=float)

    def rmse(xs, ys):
        fit = np.polyval(np.polyfit(xs, ys, 1), xs)
        return float(np.sqrt(np.mean((ys - fit) ** 2)))

    splits = np.arange(2, b - 1)  # left = points 1..c, right = c+1..b
    errors = [(c - 1) / (b - 1) * rmse(x[:c], y[:c]) + (b - c) / (b - 1) * rmse(x[c:], y[c:]) for c in splits]
    return x[splits - 1], np.array(errors)


def l_method(ks: np.ndarray, values: np.ndarray) -> int:
    """The L-method knee: the k at the split minimising :func:`l_method_errors`; with fewer than
    four points, the last k."""
    if len(ks) < 4:
        return int(ks[-1]) if len(ks) else 1
    at, errors = l_method_errors(ks, values)
    return int(at[int(np.argmin(errors))])


def _score_k(x: np.ndarray, x_all: np.ndarray, k: int, n_init: int,
             seed: int) -> tuple[float, float, float, np.ndarray]:
    """(inertia, silhouette, Davies–Bouldin, int16 labels of ``x_all`` numbered by size) of
    k-means at ``k`` on ``x`` (``x_all`` or a sample of it: every point then goes to its nearest
    centre); NaN scores where undefined (k = 1, k = N, or one cluster found)."""
    n = x.shape[0]
    fit = kmeans(x, k, n_init, seed)
    # Kept for the report's k control.
    labels = renumber_by_size(fit.labels_ if x is x_all else fit.predict(x_all))[0].astype(np.int16)
    if 2 <= k <= n - 1 and len(np.unique(fit.labels_)) > 1:
        sil = silhouette_score(x, fit.labels_, sample_size=min(n, SILHOUETTE_SAMPLE), random_state=seed)
        return float(fit.inertia_), float(sil), float(davies_bouldin_score(x, fit.labels_)), labels
    return float(fit.inertia_), np.nan, np.nan, labels


def sweep_k(x: np.ndarray, k_max: int, n_init: int, seed: int, progress=None, criterion: str = "silhouette",
            parallel: bool = False) -> KSweep:
    """Fit k-means for k = 1..min(k_max, N − 1) and score each k.

    Args:
        x: float (N, d) embedding.
        k_max: largest k to try (the original tool used 100).
        n_init, seed: passed to :func:`kmeans`.
        progress: optional callable ``progress(k)`` after each fit.
        parallel: fit the k on the workers of the active ``dask.distributed`` Client (joblib's
            Dask backend) instead of one after another here; same results for the same seed.

    Above :data:`SWEEP_SAMPLE` points the sweep runs on a seeded random sample of that size and the
    inertia is scaled by N / sample size, so the curve keeps the full data's units; the final
    clustering (:func:`cluster_kmeans`) always uses every point.

    Returns:
        :class:`KSweep`.
    """
    n_all = x.shape[0]
    x_all = x
    if n_all > SWEEP_SAMPLE:
        x = x[np.random.default_rng(seed).choice(n_all, SWEEP_SAMPLE, replace=False)]
    n = x.shape[0]
    ks = np.arange(1, max(1, min(k_max, n - 1)) + 1)
    inertia = np.empty(len(ks))
    silhouette = np.full(len(ks), np.nan)
    davies_bouldin = np.full(len(ks), np.nan)
    labels = np.empty((len(ks), n_all), dtype=np.int16)
    if parallel:
        from joblib import Parallel, delayed, parallel_config

        # joblib's Dask backend sends each k to a worker of the active dask.distributed Client;
        # every fit is seeded, so the results are those of the loop below.
        with parallel_config(backend="dask"):
            scores = Parallel(return_as="generator")(delayed(_score_k)(x, x_all, int(k), n_init, seed) for k in ks)
            for i, (k, score) in enumerate(zip(ks, scores)):
                inertia[i], silhouette[i], davies_bouldin[i], labels[i] = score
                if progress:
                    progress(int(k))
    else:
        # On a small embedding each fit is microseconds of work; OpenMP's thread start-up and, on a
        # busy machine, its waiting dominate: one thread made the sweep of 713 photos 2.5× faster.
        with threadpool_limits(1) if x.size <= SMALL_SWEEP else contextlib.nullcontext():
            for i, k in enumerate(ks):
                inertia[i], silhouette[i], davies_bouldin[i], labels[i] = _score_k(x, x_all, int(k), n_init, seed)
                if progress:
                    progress(int(k))
    inertia = inertia * n_all / n  # the curve in the full data's units
    scored = np.isfinite(silhouette).any()
    suggestions = {
        "silhouette": int(ks[np.nanargmax(silhouette)]) if scored else 1,
        "davies_bouldin": int(ks[np.nanargmin(davies_bouldin)]) if scored else 1,
        "elbow": elbow_knee(ks, inertia),
        "lmethod": l_method(ks, inertia),
    }
    return KSweep(ks, inertia, silhouette, davies_bouldin, suggestions, criterion, labels)


def modularity(affinity: sparse.spmatrix, labels: np.ndarray) -> float:
    """Newman–Girvan modularity Q = Σ_c [W_c / W − (S_c / W)²] of a partition of a weighted,
    undirected graph (Newman 2006, *PNAS* 103, 8577): W the sum of all entries of ``affinity``
    (N, N symmetric), W_c that of the entries inside cluster c, S_c the summed degree of its
    members. In [−1/2, 1); higher: more of the edge weight inside clusters than chance gives.

    Args:
        labels: int (N,) clusters 0..k-1 (negative: left out of every cluster).
    """
    labels = np.asarray(labels, dtype=np.int64)
    coo = sparse.coo_matrix(affinity)
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    total = degree.sum()
    if total <= 0:
        return float("nan")
    k = int(labels.max()) + 1
    same = (labels[coo.row] == labels[coo.col]) & (labels[coo.row] >= 0)
    inside = np.bincount(labels[coo.row][same], weights=coo.data[same], minlength=k)
    member = labels >= 0
    strength = np.bincount(labels[member], weights=degree[member], minlength=k)
    return float((inside / total - (strength / total) ** 2).sum())


def graph_k(ks: np.ndarray, values: np.ndarray, tolerance: float = 0.0) -> int:
    """The smallest k whose modularity is within ``tolerance`` (a fraction of the maximum) of the
    largest; NaN entries are skipped; 1 when none is finite or none is above 0 (no partition holds
    more of the graph than chance does: one cluster, whose modularity is 0)."""
    if not np.isfinite(values).any() or np.nanmax(values) <= 0:
        return 1
    best = np.nanmax(values)
    return int(ks[np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= best - tolerance * abs(best))[0]])


MODULARITY_TOLERANCE = 0.0  # graph_k's tolerance for the ``modularity`` criterion (measured in docs/benchmarks.md)
# ``guarded_silhouette`` keeps the silhouette's k while the graph modularity of its clustering is
# at least this fraction of the best; below, the graph disagrees and the modularity's k is taken.
GUARD = 0.9


def add_graph_modularity(sweep: KSweep, views: list, seed: int = 0, most: int = GRAPH_NEIGHBORS) -> KSweep:
    """Score every k of ``sweep`` on the feature graph and add the ``modularity`` criterion: the
    modularity (:func:`modularity`) of the sweep's k-means clustering at each k, measured on the
    nearest-neighbour graph of the feature vectors (:func:`knn_affinity` of ``views``, with the
    neighbours :func:`graph_neighbors` gives for the silhouette's k), and the k where it is
    largest (:func:`graph_k`).

    Why: the silhouette of the 2-D map rewards the most separated level of a hierarchy, often the
    coarsest (animals against vehicles: k = 2 on CIFAR-10); modularity asks whether the edges of
    each photo's nearest neighbours in the networks' own spaces stay inside the clusters, and so
    prefers the level where the neighbourhoods are (docs/benchmarks.md, "Choosing k").

    Above :data:`SWEEP_SAMPLE` photos the graph is that of a seeded sample of that many.

    Args:
        sweep: a :class:`KSweep` with ``labels``.
        views: per network float (N, D_i) vectors (or one-network FeatureRows), rows as the sweep's.

    A second criterion guards the silhouette with it: ``guarded_silhouette`` is the silhouette's
    k while the modularity of its clustering is at least :data:`GUARD` (90 %) of the best k's,
    and the modularity's k when the graph disagrees that much (CIFAR-10's k = 2: its two
    clusters hold far less of the graph than ten do). So k = 2 wins only where two clusters
    are also the structure of the neighbour graph.

    Returns:
        ``sweep``, with ``modularity`` (float (K,), NaN for k = 1) and
        ``suggestions["modularity"]`` and ``suggestions["guarded_silhouette"]`` set.

    Raises:
        ValueError: the sweep has no per-k labels.
    """
    from .embedding import FeatureRows, sample_index

    if sweep.labels is None:
        raise ValueError("the modularity criterion needs the sweep's per-k labels")
    n = sweep.labels.shape[1]
    index = sample_index(n, SWEEP_SAMPLE, seed) if n > SWEEP_SAMPLE else np.arange(n)
    rows = [v.take(index) if isinstance(v, FeatureRows) else np.asarray(v)[index] for v in views]
    k_sil = sweep.suggestions.get("silhouette", 2)
    affinity = knn_affinity(rows, graph_neighbors(len(index), max(k_sil, 1), most), seed) if len(index) > 2 else None
    values = np.full(len(sweep.ks), np.nan)
    for i, k in enumerate(sweep.ks):
        if 1 < k < len(index) and affinity is not None:
            values[i] = modularity(affinity, np.asarray(sweep.labels[i])[index])
    sweep.modularity = values
    by_graph = graph_k(sweep.ks, values, MODULARITY_TOLERANCE)
    sweep.suggestions["modularity"] = by_graph
    at_silhouette = values[list(sweep.ks).index(k_sil)] if k_sil in sweep.ks else np.nan
    trusted = np.isfinite(at_silhouette) and at_silhouette >= GUARD * np.nanmax(values)
    sweep.suggestions["guarded_silhouette"] = int(k_sil) if trusted or by_graph == 1 else by_graph
    return sweep


UNCLUSTERED = -1


@dataclass
class Clustering:
    """Cluster assignment of N images.

    Attributes:
        labels: int (N,) cluster number per image; 0 is the largest cluster, then by falling size;
            :data:`UNCLUSTERED` (-1) for images no cluster took.
        distances: float32 (N,) Euclidean distance to the own cluster centre, in the units of the
            clustered points; NaN for unclustered images.
        centers: float32 (k, d) cluster centres (member means), indexed by cluster number.
    """

    labels: np.ndarray
    distances: np.ndarray
    centers: np.ndarray

    @property
    def k(self) -> int:
        """Number of clusters, the unclustered images not counted."""
        return len(self.centers)

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels[self.labels >= 0], minlength=self.k)

    @property
    def unclustered(self) -> int:
        return int(np.sum(self.labels == UNCLUSTERED))


def cluster_kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> Clustering:
    """k-means at ``k`` on ``x`` (N, d), clusters renumbered by size (largest first) so numbers mean
    the same thing across runs with the same data.

    Raises:
        ValueError: ``k`` is larger than N.
    """
    if k > x.shape[0]:
        raise ValueError(f"k = {k} is larger than the number of images ({x.shape[0]})")
    return by_size(x, kmeans(x, k, n_init, seed).labels_)


def renumber_by_size(raw_labels: np.ndarray, min_size: int = 1) -> tuple[np.ndarray, int]:
    """Cluster numbers by size, 0 the largest (ties by first label); clusters smaller than
    ``min_size`` and negative raw labels become :data:`UNCLUSTERED`.

    Returns:
        (int labels (N,), the number of clusters kept).
    """
    raw_labels = np.asarray(raw_labels)
    kept = raw_labels >= 0
    names, raw = np.unique(raw_labels[kept], return_inverse=True)
    counts = np.bincount(raw, minlength=len(names))
    order = [c for c in np.argsort(-counts, kind="stable") if counts[c] >= min_size]  # new number → old
    renumber = np.full(len(names), UNCLUSTERED)
    renumber[order] = np.arange(len(order))
    labels = np.full(len(raw_labels), UNCLUSTERED)
    labels[kept] = renumber[raw]
    return labels, len(order)


def by_size(x: np.ndarray, raw_labels: np.ndarray, min_size: int = 1) -> Clustering:
    """:func:`renumber_by_size`, plus centres (the member means) and each member's Euclidean
    distance to its centre, in the units of ``x``."""
    labels, k = renumber_by_size(raw_labels, min_size)
    centers = (np.stack([x[labels == c].mean(axis=0) for c in range(k)]) if k
               else np.empty((0, x.shape[1]))).astype(np.float32)
    distances = np.full(len(labels), np.nan, dtype=np.float32)
    member = labels >= 0
    distances[member] = np.linalg.norm(x[member] - centers[labels[member]], axis=1)
    return Clustering(labels, distances, centers)


PAIRWISE_LIMIT = 20_000  # all-pairs distances of N images take 8·N²/2 bytes (1.6 GB at this N)


def graph_neighbors(n: int, k: int, most: int = GRAPH_NEIGHBORS) -> int:
    """Neighbours per photo in the clustering graph of ``n`` photos to be cut into ``k`` clusters:
    ``most``, but no more than half a cluster of average size (at least 3, below ``n``), so that
    most of a photo's neighbours can lie in its own cluster even when clusters hold a few photos."""
    return int(max(1, min(most, max(3, n // (2 * k)), n - 1)))


def graph_space(view, seed: int = 0) -> np.ndarray:
    """One network's vectors as the graph's neighbour search sees them: rows L2-normalised, then PCA
    to :data:`GRAPH_PCA` components (fitted on a seeded sample above ``EMBED_SAMPLE`` rows or for a
    memory-mapped :class:`~image_clustering.embedding.FeatureRows`, applied in chunks).

    Args:
        view: float (N, D) array or a one-network FeatureRows.

    Returns:
        float32 (N, min(GRAPH_PCA, N, D)).
    """
    from .embedding import EMBED_SAMPLE, FeatureRows, pca_features, unit_pca_sampled, unit_rows

    if isinstance(view, FeatureRows) or len(view) > EMBED_SAMPLE:
        return unit_pca_sampled(view, GRAPH_PCA, seed)
    return pca_features(unit_rows(view), GRAPH_PCA, seed, standardize=False)


def neighbour_graph(points: np.ndarray, n_neighbors: int, seed: int = 0,
                    approximate: bool | None = None) -> sparse.csr_matrix:
    """Each row of ``points`` (float (N, d)) joined to its ``n_neighbors`` nearest others by cosine
    distance, made symmetric, (A + Aᵀ)/2: float64 sparse (N, N), values in {0.5, 1}, zero diagonal.

    Neighbours are exact (scikit-learn, brute force) up to :data:`ANN_LIMIT` rows and approximate
    above (``approximate`` None; True or False forces either): pynndescent's NN-descent on a random
    projection forest (Dong, Moses & Li 2011), seeded, keeping :data:`ANN_SEARCH` candidates per row
    of which the nearest ``n_neighbors`` are taken; measured against the exact graph on the dev sets
    in docs/benchmarks.md.
    """
    n = len(points)
    if approximate is None:
        approximate = n > ANN_LIMIT
    if approximate:
        from pynndescent import NNDescent

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's and pynndescent's notes on threads and seeds
            index, _ = NNDescent(np.asarray(points, dtype=np.float32), metric="cosine",
                                 n_neighbors=min(max(ANN_SEARCH, n_neighbors + 1), n - 1),
                                 random_state=seed, low_memory=True).neighbor_graph
        index = index[:, : n_neighbors + 1]  # sorted by distance: the nearest, the row itself first
        rows = np.repeat(np.arange(n), index.shape[1])
        graph = sparse.csr_matrix((np.ones(rows.size), (rows, index.ravel())), shape=(n, n))
        graph.data[:] = 1.0  # a neighbour listed twice (ties) counts once
    else:
        graph = NearestNeighbors(n_neighbors=n_neighbors + 1, metric="cosine").fit(points).kneighbors_graph(points)
    graph.setdiag(0)  # each photo is its own nearest neighbour
    graph.eliminate_zeros()
    return sparse.csr_matrix(0.5 * (graph + graph.T))


def knn_affinity(views: list, n_neighbors: int, seed: int = 0, approximate: bool | None = None) -> sparse.csr_matrix:
    """The nearest-neighbour graph Leiden and spectral clustering cut: for each view (one network's feature
    vectors), the :func:`graph_space` points (L2-normalised, PCA to :data:`GRAPH_PCA`), each photo
    joined to its ``n_neighbors`` nearest by cosine distance (:func:`neighbour_graph`: exact up to
    :data:`ANN_LIMIT` photos, approximate above), the graph made symmetric (A + Aᵀ)/2; the views'
    graphs are summed, so a pair close in both networks weighs twice (several representation spaces,
    as in Gadetsky et al. 2024, TURTLE).

    Args:
        views: float arrays (N, D_i) (or one-network FeatureRows), rows aligned.
        n_neighbors: neighbours per photo (below N).
        seed: PCA's and NN-descent's random state.
        approximate: see :func:`neighbour_graph`.

    Returns:
        float64 sparse (N, N) symmetric affinity, values in {0, 0.5, 1} per view.
    """
    return _sum_graphs([graph_space(v, seed) for v in views], n_neighbors, seed, approximate)


def _sum_graphs(points: list[np.ndarray], n_neighbors: int, seed: int, approximate: bool | None) -> sparse.csr_matrix:
    total = None
    for p in points:
        graph = neighbour_graph(p, n_neighbors, seed, approximate)
        total = graph if total is None else total + graph
    return sparse.csr_matrix(total)


def knn_rows(views: list[np.ndarray], rows: np.ndarray, n_neighbors: int, seed: int = 0) -> sparse.csr_matrix:
    """The rows ``rows`` of the :func:`knn_affinity` graph's directed half: each of those photos
    joined (weight 0.5 per view) to its ``n_neighbors`` nearest among all photos, by the same
    per-view PCA and cosine distance; the other rows are empty. What placing new photos into
    existing clusters needs, at the cost of ``len(rows)`` queries instead of N.

    Args:
        views: float arrays (N, D_i) or one-network FeatureRows, rows aligned.
        rows: int indices of the photos to join.
        n_neighbors: neighbours per photo (below N).

    Returns:
        float64 sparse (N, N), non-zero only in ``rows``.
    """
    n = views[0].shape[0]
    rows = np.asarray(rows, dtype=np.int64)
    total = sparse.csr_matrix((n, n))
    if not len(rows):
        return total
    for view in views:
        reduced = graph_space(view, seed)
        _, found = NearestNeighbors(n_neighbors=min(n_neighbors + 1, n), metric="cosine").fit(reduced).kneighbors(
            reduced[rows])
        src, dst = [], []
        for r, near in zip(rows, found):
            near = [j for j in near if j != r][:n_neighbors]  # a photo is not its own neighbour
            src.extend([r] * len(near))
            dst.extend(near)
        total = total + sparse.csr_matrix((np.full(len(src), 0.5), (src, dst)), shape=(n, n))
    return sparse.csr_matrix(total)


def spread_labels(affinity: sparse.spmatrix, known: np.ndarray, labels: np.ndarray,
                  points: np.ndarray | None = None, rounds: int = 100) -> np.ndarray:
    """Labels for every photo from those of the photos ``known``: in rounds, each unlabelled photo
    takes the cluster holding most of its labelled neighbours' edge weight (label propagation,
    Zhu & Ghahramani 2002, hard and without clamping beyond the known photos); photos no path
    reaches (their own small component) go to the nearest cluster mean of ``points``
    (float (N, d)), or cluster 0 without them.

    Args:
        affinity: float (N, N) symmetric edge weights.
        known: int (M,) row numbers with a label.
        labels: int (M,) their clusters, 0..k-1.

    Returns:
        int (N,) clusters 0..k-1.
    """
    n, k = affinity.shape[0], int(labels.max()) + 1
    out = np.full(n, -1)
    out[known] = labels
    for _ in range(rounds):
        todo = np.flatnonzero(out < 0)
        if not len(todo):
            break
        done = np.flatnonzero(out >= 0)
        members = sparse.csr_matrix((np.ones(len(done)), (done, out[done])), shape=(n, k))
        weight = sparse.csr_matrix(affinity[todo] @ members)
        reached = np.diff(weight.indptr) > 0
        if not reached.any():
            break
        out[todo[reached]] = np.asarray(weight[reached].argmax(axis=1)).ravel()
    todo = np.flatnonzero(out < 0)
    if len(todo):
        if points is None:
            out[todo] = 0
        else:
            centres = np.stack([points[out == c].mean(axis=0) for c in range(k)])
            out[todo] = np.argmin(((points[todo, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return out


def cluster_spectral(x: np.ndarray, k: int, views: list[np.ndarray] | None = None, seed: int = 0,
                     n_neighbors: int = GRAPH_NEIGHBORS, vote_sweeps: int = VOTE_SWEEPS) -> Clustering:
    """Spectral clustering (Shi & Malik 2000; Ng, Jordan & Weiss 2002; scikit-learn's
    ``SpectralClustering`` with the QR-based assignment of Damle, Minden & Ying 2019, which needs
    no random restarts) of the :func:`knn_affinity` graph of ``views`` into ``k`` clusters, finished
    by :func:`neighbour_vote` on the same graph.

    Args:
        x: float32 (N, d) points the centres and distances are given in (the clustering space).
        k: clusters.
        views: per network, float (N, D_i) feature vectors; None: ``[x]``.
        n_neighbors: the graph's largest neighbourhood (see :func:`graph_neighbors`).
        vote_sweeps: most sweeps of :func:`neighbour_vote` (0: none).

    Raises:
        ValueError: k above N.
    """
    return _cut_graph(x, k, views, seed, n_neighbors, False, vote_sweeps)


def cluster_leiden(x: np.ndarray, k: int, views: list[np.ndarray] | None = None, seed: int = 0,
                   n_neighbors: int = GRAPH_NEIGHBORS, vote_sweeps: int = VOTE_SWEEPS) -> Clustering:
    """Leiden community detection (Traag, Waltman & van Eck 2019, *Sci. Rep.* 9, 5233; the
    ``leidenalg`` library on python-igraph) of the :func:`knn_affinity` graph of ``views``, with
    the resolution of the Reichardt–Bornholdt configuration model searched (:func:`leiden_k`, from
    :data:`LEIDEN_RUNS` seeds, the highest modularity kept) so that it finds exactly ``k``
    communities; where no resolution does, spectral clustering of the
    same graph (:func:`cluster_spectral`, logged); finished by :func:`neighbour_vote`. Arguments,
    result and errors as :func:`cluster_spectral`."""
    return _cut_graph(x, k, views, seed, n_neighbors, True, vote_sweeps)


def _cut_graph(x, k, views, seed, n_neighbors, leiden: bool, sweeps: int) -> Clustering:
    n = x.shape[0]
    if k > n:
        raise ValueError(f"k = {k} is larger than the number of images ({n})")
    if k == 1 or k == n:  # nothing to cut, or every photo its own cluster
        return by_size(x, np.zeros(n, dtype=int) if k == 1 else np.arange(n))
    points = [graph_space(v, seed) for v in (views if views is not None else [x])]
    neighbours = graph_neighbors(min(n, GRAPH_SAMPLE), k, n_neighbors)
    if n <= GRAPH_SAMPLE:
        affinity = _sum_graphs(points, neighbours, seed, None)
        return by_size(x, neighbour_vote(affinity, _cut(affinity, k, seed, leiden), sweeps))
    # Many photos: cut the exact graph of a seeded sample, then every photo joins its neighbours'
    # cluster on the approximate graph of all of them, and the vote settles the boundaries there.
    from .embedding import sample_index

    index = sample_index(n, GRAPH_SAMPLE, seed)
    sample = _sum_graphs([p[index] for p in points], neighbours, seed, n > ANN_LIMIT)
    affinity = _sum_graphs(points, neighbours, seed, None)
    log.info(f"{'Leiden' if leiden else 'spectral clustering'} on the graph of {GRAPH_SAMPLE:,} of {n:,} photos; "
             f"the others by their neighbours ({'approximate' if n > ANN_LIMIT else 'exact'} graph)")
    raw = spread_labels(affinity, index, _cut(sample, k, seed, leiden), np.concatenate(points, axis=1))
    return by_size(x, neighbour_vote(affinity, raw, sweeps))


def _cut(affinity: sparse.spmatrix, k: int, seed: int, leiden: bool) -> np.ndarray:
    """k clusters of the graph: Leiden at the resolution giving k (spectral where none does), or spectral."""
    raw = leiden_k(affinity, k, seed) if leiden else None
    if leiden and raw is None:
        log.info(f"Leiden found no resolution giving exactly {k} communities; spectral clustering instead")
    if raw is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected": the components become clusters
            raw = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                     random_state=seed).fit_predict(affinity)
    return raw


def neighbour_vote(affinity: sparse.spmatrix, labels: np.ndarray, sweeps: int = VOTE_SWEEPS) -> np.ndarray:
    """Move each photo to the cluster that holds most of its neighbours' edge weight, staying put on
    ties, all photos at once per sweep; the members of a cluster that would lose every photo stay
    put that sweep. Stops when no photo moves, when the moves only undo the previous sweep's (two
    photos swapping places back and forth), or after ``sweeps`` sweeps.

    Label propagation (Raghavan, Albert & Kumara 2007, *Phys. Rev. E* 76, 036106) started from a
    finished partition instead of one cluster per photo, in its synchronous form with ties kept
    (theirs updates one photo at a time and breaks ties at random), so the result is
    deterministic. It settles the photos on the boundary between two communities, which
    modularity's null model leaves to cluster size. Measured in docs/benchmarks.md: it raises NMI
    after Leiden, spectral clustering and k-means.

    Args:
        affinity: float (N, N) symmetric edge weights (:func:`knn_affinity`).
        labels: int (N,) cluster of each photo, N ≥ 1, any integers (every value is a cluster;
            they are renumbered 0..k-1 in sorted order).

    Returns:
        int (N,) labels 0..k-1: the same number k of clusters, none of them empty.
    """
    _, labels = np.unique(labels, return_inverse=True)
    n, k = len(labels), int(labels.max()) + 1
    rows = np.arange(n)
    before = None
    for _ in range(sweeps):
        members = sparse.csr_matrix((np.ones(n), (rows, labels)), shape=(n, k))
        weight = sparse.csr_matrix(affinity @ members)  # (N, k): each photo's edge weight into each cluster
        moved = np.asarray(weight.argmax(axis=1)).ravel()
        stay = np.asarray(weight[rows, labels]).ravel() >= np.asarray(weight[rows, moved]).ravel()
        moved[stay] = labels[stay]
        emptied = np.bincount(labels[moved == labels], minlength=k) == 0
        moved[emptied[labels]] = labels[emptied[labels]]  # a cluster keeps its photos rather than vanish
        if (moved == labels).all() or (before is not None and (moved == before).all()):
            break
        before, labels = labels, moved
    return labels


LEIDEN_STEPS = 40  # bisection steps over the resolution (log scale, 10^-3..10^3)


def leiden_k(affinity: sparse.spmatrix, k: int, seed: int = 0, runs: int | None = None) -> np.ndarray | None:
    """Leiden communities of the weighted graph ``affinity`` (N, N), at the resolution γ of the
    RB configuration model found by bisection on log γ so that there are exactly ``k`` (more
    communities as γ grows). The search runs from ``runs`` seeds (``seed``, ``seed`` + 1, …; None:
    :data:`LEIDEN_RUNS`) and the partition of highest :func:`modularity` is kept.

    Returns:
        int (N,) labels 0..k-1, or None when no tried γ gave exactly ``k`` for any seed.
    """
    import igraph

    a = sparse.triu(affinity, k=1).tocoo()
    graph = igraph.Graph(n=affinity.shape[0], edges=np.column_stack([a.row, a.col]).tolist(),
                         edge_attrs={"weight": a.data.tolist()})
    found = [_leiden_bisection(graph, k, s) for s in range(seed, seed + (runs or LEIDEN_RUNS))]
    found = [labels for labels in found if labels is not None]
    return max(found, key=lambda labels: modularity(affinity, labels)) if found else None


def _leiden_bisection(graph, k: int, seed: int) -> np.ndarray | None:
    import leidenalg

    low, high = -3.0, 3.0
    for _ in range(LEIDEN_STEPS):
        middle = (low + high) / 2
        partition = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                             resolution_parameter=10**middle, seed=seed)
        found = len(partition)
        if found == k:
            return np.asarray(partition.membership)
        low, high = (middle, high) if found < k else (low, middle)
    return None


def check_pairwise(n: int, what: str) -> None:
    """Raise ValueError when ``what`` would hold all pair distances of more than :data:`PAIRWISE_LIMIT` images."""
    if n > PAIRWISE_LIMIT:
        raise ValueError(f"{what} holds all {n}² pair distances; it is limited to {PAIRWISE_LIMIT:,} images "
                         "(use k-means, or HDBSCAN without time_weight on the Euclidean embedding)")


def pair_distances(x: np.ndarray, metric: str = "euclidean", times: np.ndarray | None = None,
                   time_weight: float = 0.0) -> np.ndarray:
    """Condensed pair distances (SciPy ``pdist`` order), float64 (N·(N−1)/2,).

    With ``time_weight`` α > 0 content and time are mixed as in the imagecluster workflow:
    d = (1 − α)·d_content + α·d_time, each first divided by its maximum so both lie in [0, 1].

    Args:
        x: float (N, d) points; ``metric`` ``euclidean`` or ``cosine`` between them.
        times: float (N,) photo times in seconds (see :func:`image_clustering.images.photo_time`);
            needed when ``time_weight`` > 0.
        time_weight: weight of time, in [0, 1].

    Raises:
        ValueError: ``time_weight`` > 0 without ``times``.
    """
    from scipy.spatial.distance import pdist

    d = pdist(np.asarray(x, dtype=np.float64), metric=metric)
    if time_weight <= 0:
        return d
    if times is None:
        raise ValueError("time_weight > 0 needs the photo times")
    alpha = time_weight
    d_time = pdist(np.asarray(times, dtype=np.float64).reshape(-1, 1))
    unit = lambda v: v / v.max() if len(v) and v.max() > 0 else v  # noqa: E731
    return (1 - alpha) * unit(d) + alpha * unit(d_time)


def cut_tree_k(z: np.ndarray, k: int) -> np.ndarray:
    """Cut the tree ``z`` into exactly ``k`` clusters by merge order: apply its first N − k merges.

    This is what R's ``cutree(tree, k)`` and SciPy's ``cut_tree`` do. SciPy's ``fcluster(z, k,
    "maxclust")`` instead looks for a height with at most k clusters, and gives fewer than k when
    merge heights tie (Jaccard distances tie all the time). SciPy's ``cut_tree`` is not used: it
    returns the wrong number of clusters on non-monotonic trees (scipy/scipy#8063) and mixes up
    several k at once (scipy/scipy#9818); this cut needs only the rows in merge order.

    Args:
        z: SciPy linkage matrix, float (N − 1, 4); row i merges clusters z[i, 0] and z[i, 1] into
            cluster N + i.
        k: number of clusters, 1 ≤ k ≤ N.

    Returns:
        int (N,) cluster per leaf, 0..k − 1, numbered by first appearance.

    Raises:
        ValueError: k outside 1..N.
    """
    from scipy.cluster.hierarchy import DisjointSet

    n = len(z) + 1
    if not 1 <= k <= n:
        raise ValueError(f"cannot cut a tree of {n} images into {k} clusters")
    sets = DisjointSet(range(2 * n - 1))
    for i, (a, b) in enumerate(np.asarray(z[: n - k, :2], dtype=np.int64)):
        sets.merge(int(a), int(b))
        sets.merge(int(a), n + i)  # cluster N + i is the union just made
    roots = np.array([sets[leaf] for leaf in range(n)])
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def cut_height(z: np.ndarray, k: int) -> float:
    """A height at which the tree ``z`` (SciPy linkage matrix) falls into ``k`` clusters: midway
    between the merge that would leave k − 1 and the one before (above the top merge for k = 1)."""
    heights = z[:, 2]
    if 1 < k <= len(heights):
        return float((heights[-k] + heights[-k + 1]) / 2)
    return float(heights.max() * 1.01)


def cluster_hierarchical(x: np.ndarray, linkage: str = "ward", metric: str = "euclidean", k: int | None = None,
                         sim: float | None = None, min_cluster_size: int = 2, times: np.ndarray | None = None,
                         time_weight: float = 0.0) -> tuple[Clustering, np.ndarray, float]:
    """Agglomerative clustering (SciPy ``linkage`` on :func:`pair_distances`), then a cut: into
    exactly ``k`` clusters by merge order (:func:`cut_tree_k`), or, with SciPy's ``fcluster``,
    at similarity ``sim`` as imagecluster does — at
    distance (1 − sim)·(largest pair distance), so sim 0 gives one cluster and sim 1 every image
    alone — keeping clusters of at least ``min_cluster_size`` images (the rest are unclustered).

    Args:
        x: float (N, d) points.
        linkage: ``ward``, ``average``, ``complete`` or ``single``. Ward formally assumes
            Euclidean distances (SciPy applies its update formula to whatever it is given).
        metric: ``euclidean`` or ``cosine``.
        k / sim: exactly one of them.
        times, time_weight: time mixing, see :func:`pair_distances`.

    Returns:
        (:class:`Clustering` renumbered by size, the linkage matrix Z float (N − 1, 4), the cut
        height in Z's distance units).

    Raises:
        ValueError: more than :data:`PAIRWISE_LIMIT` points, or k larger than N.
    """
    from scipy.cluster import hierarchy

    n = x.shape[0]
    check_pairwise(n, "agglomerative clustering")
    if (k is None) == (sim is None):
        raise ValueError("give exactly one of k and sim")
    if k is not None and k > n:
        raise ValueError(f"k = {k} is larger than the number of images ({n})")
    d = pair_distances(x, metric, times, time_weight)
    z = hierarchy.linkage(d, method=linkage)
    if sim is None:
        return by_size(x, cut_tree_k(z, k)), z, cut_height(z, k)
    cut = (1.0 - sim) * float(d.max()) if len(d) else 0.0
    return by_size(x, hierarchy.fcluster(z, cut, criterion="distance"), min_cluster_size), z, cut


def cluster_hdbscan(x: np.ndarray, min_cluster_size: int = 5, metric: str = "euclidean",
                    times: np.ndarray | None = None, time_weight: float = 0.0) -> Clustering:
    """HDBSCAN (Campello, Moulavi & Sander 2013; scikit-learn's ``HDBSCAN``): density-based, finds
    the number of clusters itself and leaves points in sparse regions unclustered.

    Args:
        x: float (N, d) points.
        min_cluster_size: smallest cluster (also HDBSCAN's ``min_samples``).
        metric, times, time_weight: as for :func:`pair_distances`; anything but Euclidean without time
            runs on the precomputed all-pairs matrix (limited to :data:`PAIRWISE_LIMIT` images).

    Raises:
        ValueError: a precomputed matrix over :data:`PAIRWISE_LIMIT` images, or
            ``min_cluster_size`` below 2 or above N.
    """
    from scipy.spatial.distance import squareform
    from sklearn.cluster import HDBSCAN

    if not 2 <= min_cluster_size <= max(2, x.shape[0]):
        raise ValueError(f"min_cluster_size {min_cluster_size} must lie in 2..{x.shape[0]} (the number of images)")
    if metric == "euclidean" and time_weight <= 0:
        raw = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(np.asarray(x, dtype=np.float64))
    else:
        check_pairwise(x.shape[0], f"HDBSCAN with metric {metric!r} or time mixing")
        square = squareform(pair_distances(x, metric, times, time_weight))
        raw = HDBSCAN(min_cluster_size=min_cluster_size, metric="precomputed", copy=True).fit_predict(square)
    return by_size(x, raw)


GRAPH_ALGORITHMS = {"leiden": cluster_leiden, "spectral": cluster_spectral}


class AutoKClustering(BaseEstimator, ClusterMixin):
    """Clustering that can choose its own number of clusters, as a scikit-learn estimator: with
    ``n_clusters="auto"`` it sweeps k-means over k = 1..``k_max`` (:func:`sweep_k`) and takes the
    ``criterion``'s k, then clusters with ``algorithm`` at that k — ``leiden`` and ``spectral`` in
    their own nearest-neighbour graph of the feature vectors (``views``), finished by
    :func:`neighbour_vote`, the others in ``X``. HDBSCAN and a
    similarity cut (``sim``) find the number of clusters themselves. Clusters are numbered by size, 0 the largest;
    -1 is unclustered. Parameters take the names of the config keys.

    Parameters:
        n_clusters: int, or ``"auto"``.
        criterion: ``silhouette``, ``davies_bouldin``, ``elbow``, ``lmethod``, ``modularity`` or
            ``guarded_silhouette`` (see the module docstring; the last two
            :func:`add_graph_modularity`, computed on ``views``).
        algorithm: ``leiden`` (:func:`cluster_leiden`) or ``spectral`` (:func:`cluster_spectral`),
            above :data:`GRAPH_SAMPLE` images on a sample, the rest placed by the graph (logged);
            ``kmeans``, ``agglomerative`` or
            ``hdbscan``.
        graph_neighbors: the graph's neighbours per photo (see :func:`graph_neighbors`).
        k_max, n_init, seed: the sweep's largest k, k-means restarts, random state.
        linkage, metric, sim, min_cluster_size, time_weight: see :func:`cluster_hierarchical` and
            :func:`cluster_hdbscan` (``min_cluster_size`` None: 2 for a ``sim`` cut, 5 for HDBSCAN).

    Attributes:
        labels_: int array of shape (n_samples,).
        cluster_centers_: float32 array of shape (n_clusters_, n_features), member means.
        distances_: float32 array of shape (n_samples,), distance to the own centre (NaN: unclustered).
        n_clusters_: int, clusters found (unclustered not counted).
        sweep_: :class:`KSweep` when the sweep ran, else None.
        tree_: SciPy linkage matrix of shape (n_samples − 1, 4) for ``agglomerative``, else None.
        cut_: the tree's cut height for ``agglomerative``, else None.
    """

    def __init__(self, n_clusters: int | str = "auto", criterion: str = "silhouette", algorithm: str = "leiden",
                 k_max: int = 100, n_init: int = 4, seed: int = 0, linkage: str = "ward", metric: str = "euclidean",
                 sim: float | None = None, min_cluster_size: int | None = None, time_weight: float = 0.0,
                 graph_neighbors: int = GRAPH_NEIGHBORS):
        self.graph_neighbors = graph_neighbors
        self.n_clusters = n_clusters
        self.criterion = criterion
        self.algorithm = algorithm
        self.k_max = k_max
        self.n_init = n_init
        self.seed = seed
        self.linkage = linkage
        self.metric = metric
        self.sim = sim
        self.min_cluster_size = min_cluster_size
        self.time_weight = time_weight

    def finds_k_itself(self) -> bool:
        """True when the method chooses the number of clusters (HDBSCAN, a similarity cut)."""
        return self.algorithm == "hdbscan" or self.sim is not None

    def fit(self, X, y=None, times: np.ndarray | None = None, sweep: KSweep | None = None,
            views: list[np.ndarray] | None = None):
        """Cluster ``X``, float array of shape (n_samples, n_features); ``y`` is ignored.

        Args:
            views: for ``leiden`` and ``spectral``, per network the feature vectors, float (n_samples, D_i), whose
                neighbour graph is cut (None: ``X``'s).
            times: float (n_samples,) photo times in seconds, needed when ``time_weight`` > 0.
            sweep: a :class:`KSweep` of ``X`` computed before (the workflow caches it), used
                instead of sweeping again when ``n_clusters="auto"``.

        Raises:
            ValueError: an unknown algorithm or criterion, k above n_samples, or a pair-distance
                method above :data:`PAIRWISE_LIMIT` samples.
        """
        x = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = x.shape[1]
        self.sweep_, self.tree_, self.cut_ = None, None, None
        k = None
        if not self.finds_k_itself():
            if self.n_clusters == "auto":
                if self.criterion not in CRITERIA:
                    raise ValueError(f"unknown criterion {self.criterion!r}; one of {', '.join(CRITERIA)}")
                self.sweep_ = sweep or sweep_k(x, self.k_max, self.n_init, self.seed, criterion=self.criterion)
                self.sweep_.criterion = self.criterion
                if self.criterion in GRAPH_CRITERIA and self.criterion not in self.sweep_.suggestions:
                    add_graph_modularity(self.sweep_, views if views is not None else [x], self.seed,
                                         self.graph_neighbors)
                k = self.sweep_.suggested_k
            else:
                k = int(self.n_clusters)
        algorithm = self.algorithm
        if algorithm in GRAPH_ALGORITHMS:
            log.info(f"{algorithm} clustering of the {len(x):,}-photo neighbour graph into {k} clusters")
            result = GRAPH_ALGORITHMS[algorithm](x, k, views, self.seed, self.graph_neighbors)
        elif algorithm == "kmeans":
            result = cluster_kmeans(x, k, self.n_init, self.seed)
        elif algorithm == "hdbscan":
            result = cluster_hdbscan(x, self.min_cluster_size or 5, self.metric, times, self.time_weight)
        elif algorithm == "agglomerative":
            result, self.tree_, self.cut_ = cluster_hierarchical(
                x, self.linkage, self.metric, k=k, sim=self.sim, min_cluster_size=self.min_cluster_size or 2,
                times=times, time_weight=self.time_weight)
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}; one of leiden, spectral, kmeans, agglomerative, hdbscan")
        self.labels_, self.distances_, self.cluster_centers_ = result.labels, result.distances, result.centers
        self.n_clusters_ = result.k
        self.clustering_ = result
        return self
