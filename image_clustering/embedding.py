"""Stage 2: feature vectors → low-dimensional embedding.

As in the original tool: standardize each feature (zero mean, unit variance; ``model.standardize``),
PCA to ``model.pca_dimension`` (50) components, then t-SNE (van der Maaten & Hinton 2008;
scikit-learn's Barnes-Hut ``TSNE`` up to 10,000 images, openTSNE's FFT-accelerated t-SNE above) or
UMAP (McInnes et al. 2018; ``umap-learn``) to ``model.reduced_dimension``. With several networks,
each network's vectors are L2-normalised and concatenated first, so each network weighs the same
whatever its dimension. :class:`FeatureEmbedding` is the scikit-learn-style estimator over these
functions; the workflow (:mod:`image_clustering.pipeline`) caches its result.
"""
from __future__ import annotations

import logging
import mmap
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)

# The fewest images the workflow can group: t-SNE needs its perplexity below N − 1 (lowered to
# (N − 1)/3 here) and the k sweep scores k = 2..N − 1 by silhouette, which needs N ≥ 3.
MIN_IMAGES = 3
# Up to this many images t-SNE is scikit-learn's Barnes-Hut (the measured configuration); above,
# openTSNE's FFT-accelerated t-SNE, which scales to 10^5 images on two cores.
TSNE_SKLEARN_LIMIT = 10_000


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows of ``x`` (N, D) scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def combine(blocks: list[np.ndarray]) -> np.ndarray:
    """One network's vectors as they are; several networks' L2-normalised and concatenated.

    Args:
        blocks: float32 (N, D_i) per network, rows aligned.

    Returns:
        float32 (N, sum D_i).
    """
    if len(blocks) == 1:
        return np.asarray(blocks[0], dtype=np.float32)
    return np.concatenate([unit_rows(b) for b in blocks], axis=1)


# Above this many images the embedding is fitted on a seeded sample of this size and the other
# images are placed into it; at or below it nothing changes (the measured configuration).
EMBED_SAMPLE = 100_000
CHUNK = 16_384  # rows read, projected or placed at a time: bounds memory at any N


class FeatureRows:
    """The (N, D) float32 matrix clustering works on — each network's stored vectors, several
    networks' L2-normalised and concatenated (:func:`combine`) — computed on demand from the
    (memory-mapped) stores instead of held whole: at 10^6 images of the default extractor it is
    13 GB.

    Args:
        blocks: one (M_i, D_i) array per network (a memory map of its store).
        rows: per block, int (N,) rows of that block forming the matrix, or None for all of them
            (then every block has N rows in order).
    """

    def __init__(self, blocks: list[np.ndarray], rows: list[np.ndarray | None] | None = None):
        self.blocks = blocks
        self.rows = rows or [None] * len(blocks)
        self.n = len(self.rows[0]) if self.rows[0] is not None else len(blocks[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, sum(b.shape[1] for b in self.blocks)

    def __len__(self) -> int:
        return self.n

    def _block_rows(self, index) -> list[np.ndarray]:
        return [b[index] if r is None else b[r[index]] for b, r in zip(self.blocks, self.rows)]

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (int array, ascending reads fastest), float32 (len(index), D); gathered
        :data:`CHUNK` rows at a time into the result, so memory is the result plus one chunk."""
        index = np.asarray(index)
        out = np.empty((len(index), self.shape[1]), np.float32)
        for start in range(0, len(index), CHUNK):
            part = index[start : start + CHUNK]
            out[start : start + len(part)] = combine(self._block_rows(part))  # row-wise: as combine of all
            self._release()
        return out

    def _release(self) -> None:
        """Unmap the pages of memory-mapped blocks read so far: they stay in the page cache, but
        no longer count towards this process's memory, which stays one chunk deep."""
        for block in self.blocks:
            mapping = getattr(block, "_mmap", None)
            if mapping is not None and hasattr(mapping, "madvise"):
                mapping.madvise(mmap.MADV_DONTNEED)

    def chunks(self, size: int = CHUNK):
        """Yield (first row, float32 (≤ size, D) rows) over the whole matrix, in order."""
        for start in range(0, self.n, size):
            yield start, self.take(np.arange(start, min(start + size, self.n)))

    def views(self) -> list[np.ndarray]:
        """Each network's selected rows in memory, as stored: float32 (N, D_i)."""
        return [np.asarray(b if r is None else np.asarray(b)[r], np.float32) for b, r in zip(self.blocks, self.rows)]

    def array(self) -> np.ndarray:
        """The whole matrix in memory, float32 (N, D): :func:`combine` of :meth:`views`."""
        return combine(self.views())


def sample_index(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded random sample of ``size`` of ``n`` row numbers, ascending (int64)."""
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def sampled_pca(rows: FeatureRows, n_components: int, seed: int, standardize: bool,
                sample_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PCA of a matrix too large to hold: standardization and PCA fitted on a seeded sample of
    ``sample_size`` rows, then applied :data:`CHUNK` rows at a time to every row.

    Returns:
        (float32 (N, min(n_components, sample_size, D)) projections of every row, the sample's
        row numbers (int64, ascending)); ``sample_size`` None is :data:`EMBED_SAMPLE`.
    """
    n, d = rows.shape
    sample_size = min(sample_size or EMBED_SAMPLE, n)
    index = sample_index(n, sample_size, seed)
    sample = rows.take(index)
    scaler = StandardScaler().fit(sample) if standardize else None
    if scaler is not None:
        sample = scaler.transform(sample)
    pca = PCA(n_components=min(n_components, sample_size, d), random_state=seed, copy=False).fit(sample)  # centres in place
    del sample
    out = np.empty((n, pca.n_components_), np.float32)
    for start, chunk in rows.chunks():
        out[start : start + len(chunk)] = pca.transform(scaler.transform(chunk) if scaler else chunk)
    log.info("PCA fitted on %d of %d images, applied to all in chunks of %d", sample_size, n, CHUNK)
    return out, index


def unit_pca_sampled(view, n_components: int, seed: int, sample_size: int | None = None) -> np.ndarray:
    """PCA of the L2-normalised rows of one network's vectors (an array or a one-network
    :class:`FeatureRows`), fitted on a seeded sample of ``sample_size`` rows (None:
    :data:`EMBED_SAMPLE`) and applied :data:`CHUNK` rows at a time, so memory stays one chunk plus
    the sample at any N.

    Returns:
        float32 (N, min(n_components, sample size, D)).
    """
    rows = view if isinstance(view, FeatureRows) else FeatureRows([np.asarray(view)])
    n, d = rows.shape
    index = sample_index(n, min(sample_size or EMBED_SAMPLE, n), seed)
    pca = PCA(n_components=min(n_components, len(index), d), random_state=seed, copy=False)
    pca.fit(unit_rows(rows.take(index)))
    out = np.empty((n, pca.n_components_), np.float32)
    for start, chunk in rows.chunks():
        out[start : start + len(chunk)] = pca.transform(unit_rows(chunk))
    return out


def pca_features(vectors: np.ndarray, n_components: int, seed: int, standardize: bool = True) -> np.ndarray:
    """Optionally standardize, then project onto the top principal components.

    Args:
        vectors: float32 (N, D) feature vectors.
        n_components: wanted dimensions; capped at min(N, D) (PCA cannot give more).
        seed: random state for the randomized SVD.
        standardize: scale every feature to zero mean and unit variance first (the original tool).

    Returns:
        float32 (N, min(n_components, N, D)).
    """
    n = min(n_components, *vectors.shape)
    x = np.asarray(vectors, dtype=np.float32)
    if standardize:
        x = StandardScaler().fit_transform(x)
    return PCA(n_components=n, random_state=seed).fit_transform(x).astype(np.float32)


def reduce(x: np.ndarray, reducer: str = "tsne", reduced_dimension: int = 2, perplexity: float = 20.0,
           n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """t-SNE or UMAP of ``x`` (N, d) to (N, reduced_dimension), float32.

    Neighbourhood sizes shrink for small N (t-SNE's perplexity must be below N; UMAP needs
    ``n_neighbors`` < N), so a handful of photos still works; the change is logged.

    Raises:
        ValueError: fewer than 3 points, or t-SNE above 3 dimensions.
    """
    n = x.shape[0]
    if n < MIN_IMAGES:
        raise ValueError(f"need at least {MIN_IMAGES} images to build an embedding, found {n}")
    dim = reduced_dimension
    if reducer == "tsne":
        if dim > 3:
            raise ValueError(f"t-SNE (Barnes-Hut) supports at most 3 dimensions, not {dim}")
        lowered = min(perplexity, (n - 1) / 3)
        if lowered < perplexity:
            log.info("t-SNE perplexity lowered from %g to %g for %d images", perplexity, lowered, n)
        if n > TSNE_SKLEARN_LIMIT and dim <= 2:
            return _fft_tsne(x, dim, lowered, seed)
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=dim, perplexity=lowered, init="pca", random_state=seed, method="barnes_hut")
        return tsne.fit_transform(x).astype(np.float32)
    neighbours = min(n_neighbors, n - 1)
    if neighbours < n_neighbors:
        log.info("UMAP n_neighbors lowered from %d to %d for %d images", n_neighbors, neighbours, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables parallelism: wanted here
        import umap

        model = umap.UMAP(n_components=dim, n_neighbors=neighbours, min_dist=0.0, random_state=seed)
        return model.fit_transform(x).astype(np.float32)


def _fft_tsne(x: np.ndarray, dim: int, perplexity: float, seed: int) -> np.ndarray:
    """t-SNE with FFT-accelerated interpolation (Linderman et al. 2019, FIt-SNE; the openTSNE
    library): O(N) per iteration where Barnes-Hut is O(N log N) with a large constant."""
    return np.asarray(_fft_tsne_model(x, dim, perplexity, seed), dtype=np.float32)


def _fft_tsne_model(x: np.ndarray, dim: int, perplexity: float, seed: int):
    """:func:`_fft_tsne`'s openTSNE ``TSNEEmbedding`` (it can place new points)."""
    from openTSNE import TSNE

    tsne = TSNE(n_components=dim, perplexity=perplexity, initialization="pca", random_state=seed,
                n_jobs=os.cpu_count() or 1, negative_gradient_method="fft")
    return tsne.fit(x)


def reduce_sampled(x: np.ndarray, index: np.ndarray, reducer: str = "tsne", reduced_dimension: int = 2,
                   perplexity: float = 20.0, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """t-SNE or UMAP fitted on the rows ``index`` of ``x`` (N, d), the other rows placed into that
    embedding :data:`CHUNK` at a time: t-SNE (openTSNE) puts each new point at the median position
    of its 25 nearest sample points (``prepare_partial``, no further optimisation: the sample's
    map stays as fitted, and placing costs one neighbour search per point); UMAP uses its
    ``transform``.

    Returns:
        float32 (N, reduced_dimension); the sample's rows are its own fitted embedding.
    """
    n = x.shape[0]
    out = np.empty((n, reduced_dimension), np.float32)
    rest = np.setdiff1d(np.arange(n), index, assume_unique=True)
    sample = x[index]
    if reducer == "tsne":
        model = _fft_tsne_model(sample, reduced_dimension, min(perplexity, (len(index) - 1) / 3), seed)
        out[index] = np.asarray(model)
        place = lambda part: model.prepare_partial(part, initialization="median", k=25)  # noqa: E731
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap

            model = umap.UMAP(n_components=reduced_dimension, n_neighbors=min(n_neighbors, len(index) - 1),
                              min_dist=0.0, random_state=seed).fit(sample)
        out[index] = model.embedding_
        place = model.transform
    for start in range(0, len(rest), CHUNK):
        part = rest[start : start + CHUNK]
        out[part] = np.asarray(place(x[part]), dtype=np.float32)
    log.info("%s fitted on %d of %d images, the other %d placed into it", reducer, len(index), n, len(rest))
    return out


class FeatureEmbedding(BaseEstimator, TransformerMixin):
    """PCA, then t-SNE or UMAP: the original tool's embedding of feature vectors, as a
    scikit-learn estimator (``get_params``/``set_params``, ``fit`` returns self).

    Parameters take the names of the config keys (README, "Config reference").

    Parameters:
        pca_dimension: PCA components before t-SNE/UMAP (capped at min(N, D)).
        reducer: ``"tsne"`` (van der Maaten & Hinton 2008) or ``"umap"`` (McInnes et al. 2018).
        reduced_dimension: embedding dimensions (t-SNE: at most 3).
        perplexity: t-SNE perplexity (lowered to (N − 1)/3 for small N).
        n_neighbors: UMAP neighbourhood size (lowered to N − 1 for small N).
        standardize: scale every feature to zero mean and unit variance before PCA.
        seed: random state of PCA and t-SNE/UMAP.

    Attributes:
        pca_features_: float32 array of shape (n_samples, n_components), the PCA output.
        embedding_: float32 array of shape (n_samples, reduced_dimension).
        n_features_in_: int, D.

    Above ``sample_size`` images (a :class:`FeatureRows` or an array), standardization and PCA
    are fitted on a seeded sample and applied chunk by chunk (:func:`sampled_pca`), t-SNE/UMAP is
    fitted on the sample and the other images are placed into it (:func:`reduce_sampled`): memory
    stays bounded at millions of images. At or below ``sample_size`` every image takes part in
    every fit, as before. There is no ``transform`` for new points.
    """

    def __init__(self, pca_dimension: int = 50, reducer: str = "tsne", reduced_dimension: int = 2,
                 perplexity: float = 20.0, n_neighbors: int = 15, standardize: bool = False, seed: int = 0,
                 sample_size: int = EMBED_SAMPLE):
        self.pca_dimension = pca_dimension
        self.reducer = reducer
        self.reduced_dimension = reduced_dimension
        self.perplexity = perplexity
        self.n_neighbors = n_neighbors
        self.standardize = standardize
        self.seed = seed
        self.sample_size = sample_size

    def fit(self, X, y=None):
        """Embed ``X``, float array of shape (n_samples, n_features) or :class:`FeatureRows`;
        ``y`` is ignored.

        Raises:
            ValueError: fewer than 3 samples, or an impossible parameter combination.
        """
        if len(X) > self.sample_size:
            rows = X if isinstance(X, FeatureRows) else FeatureRows([np.asarray(X)])
            self.n_features_in_ = rows.shape[1]
            log.info("embedding %d images: PCA to %d → %s to %d, fitted on %d of them", len(rows),
                     self.pca_dimension, self.reducer, self.reduced_dimension, self.sample_size)
            self.pca_features_, index = sampled_pca(rows, self.pca_dimension, self.seed, self.standardize,
                                                    self.sample_size)
            self.embedding_ = reduce_sampled(self.pca_features_, index, self.reducer, self.reduced_dimension,
                                             self.perplexity, self.n_neighbors, self.seed)
            return self
        x = X.array() if isinstance(X, FeatureRows) else np.asarray(X, dtype=np.float32)
        self.n_features_in_ = x.shape[1]
        if x.shape[0] < MIN_IMAGES:
            raise ValueError(f"need at least {MIN_IMAGES} images to build an embedding, found {x.shape[0]}")
        log.info("embedding %d images: PCA to %d → %s to %d", len(x), min(self.pca_dimension, *x.shape),
                 self.reducer, self.reduced_dimension)
        self.pca_features_ = pca_features(x, self.pca_dimension, self.seed, self.standardize)
        self.embedding_ = join_equal_rows(x, reduce(self.pca_features_, self.reducer, self.reduced_dimension,
                                                     self.perplexity, self.n_neighbors, self.seed))
        return self

    def fit_transform(self, X, y=None):
        """:meth:`fit`, then return ``embedding_`` (n_samples, reduced_dimension)."""
        return self.fit(X).embedding_

    def cache_key(self) -> dict:
        """The parameters the embedding depends on: those of the chosen reducer only, so changing
        UMAP's ``n_neighbors`` does not invalidate a t-SNE embedding."""
        unused = "n_neighbors" if self.reducer == "tsne" else "perplexity"
        key = {k: v for k, v in self.get_params().items() if k != unused}
        if key["sample_size"] == EMBED_SAMPLE:  # keys of embeddings cached before sampling existed stay valid
            del key["sample_size"]
        return key


def join_equal_rows(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (float (N, d)) with every group of rows whose ``x`` rows (N, D) are equal byte for
    byte moved to the group's mean: photos with the same feature vectors are one picture to the
    networks, but t-SNE and UMAP start from random positions and keep equal points apart, so a k
    sweep on the map would find clusters among copies of one photo. Same dtype as ``points``."""
    rows = np.ascontiguousarray(x)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if (counts == 1).all():
        return points
    sums = np.zeros((len(counts), points.shape[1]))
    np.add.at(sums, group, points)
    return (sums / counts[:, None])[group].astype(points.dtype)


def clustering_space(vectors: np.ndarray, embedding: np.ndarray, space: str = "embedding", pca_dimension: int = 50,
                     standardize: bool = False, seed: int = 0) -> np.ndarray:
    """The points clustering works on (the ``space`` config key):

    - ``embedding``: the t-SNE/UMAP ``embedding`` (N, reduced_dimension), as the original tool;
    - ``pca``: the PCA features (N, pca_dimension) that feed the embedding (standardized first with
      ``standardize``);
    - ``features``: the full feature ``vectors`` (N, D), each scaled to unit L2 norm;
    - ``raw``: the full feature ``vectors`` as the network gives them (N, D), not normalised: what
      imagecluster's ``calc.cluster`` measures its Euclidean distances on (several networks are
      still each L2-normalised by :func:`combine` before they are concatenated).

    ``vectors`` may be a :class:`FeatureRows`: above :data:`EMBED_SAMPLE` rows ``pca`` is
    :func:`sampled_pca` (the embedding's own PCA), and ``features`` is refused.

    Returns:
        float32 (N, d).

    Raises:
        ValueError: an unknown ``space``, or ``features`` above :data:`EMBED_SAMPLE` images.
    """
    if space == "embedding":
        return embedding
    if isinstance(vectors, FeatureRows):
        if len(vectors) > EMBED_SAMPLE:
            if space == "pca":
                return sampled_pca(vectors, pca_dimension, seed, standardize)[0]
            if space == "features":
                raise ValueError(f"the features space holds all {len(vectors):,} × {vectors.shape[1]} vectors in "
                                 f"memory; above {EMBED_SAMPLE:,} images use \"space\": \"embedding\" or \"pca\"")
        vectors = vectors.array()
    if space == "pca":
        return pca_features(vectors, pca_dimension, seed, standardize)
    if space == "raw":
        return np.asarray(vectors, dtype=np.float32)
    if space == "features":
        return unit_rows(vectors)
    raise ValueError(f"unknown clustering space {space!r}")
