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
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)
# Up to this many images t-SNE is scikit-learn's Barnes-Hut (the measured configuration); above,
# openTSNE's FFT-accelerated t-SNE, which scales to 10^5 images on two cores.
TSNE_SKLEARN_LIMIT = 10_000


def combine(blocks: list[np.ndarray]) -> np.ndarray:
    """One network's vectors as they are; several networks' L2-normalised and concatenated.

    Args:
        blocks: float32 (N, D_i) per network, rows aligned.

    Returns:
        float32 (N, sum D_i).
    """
    if len(blocks) == 1:
        return np.asarray(blocks[0], dtype=np.float32)
    unit = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in map(np.asarray, blocks)]
    return np.concatenate(unit, axis=1).astype(np.float32)


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
    if n < 3:
        raise ValueError(f"need at least 3 images to build an embedding, found {n}")
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
    from openTSNE import TSNE

    tsne = TSNE(n_components=dim, perplexity=perplexity, initialization="pca", random_state=seed,
                n_jobs=os.cpu_count() or 1, negative_gradient_method="fft")
    return np.asarray(tsne.fit(x), dtype=np.float32)


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

    Like scikit-learn's ``TSNE``, there is no ``transform`` for new points: t-SNE places points
    only jointly.
    """

    def __init__(self, pca_dimension: int = 50, reducer: str = "tsne", reduced_dimension: int = 2,
                 perplexity: float = 20.0, n_neighbors: int = 15, standardize: bool = False, seed: int = 0):
        self.pca_dimension = pca_dimension
        self.reducer = reducer
        self.reduced_dimension = reduced_dimension
        self.perplexity = perplexity
        self.n_neighbors = n_neighbors
        self.standardize = standardize
        self.seed = seed

    def fit(self, X, y=None):
        """Embed ``X``, float array of shape (n_samples, n_features); ``y`` is ignored.

        Raises:
            ValueError: fewer than 3 samples, or an impossible parameter combination.
        """
        x = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = x.shape[1]
        if x.shape[0] < 3:
            raise ValueError(f"need at least 3 images to build an embedding, found {x.shape[0]}")
        log.info("embedding %d images: PCA to %d → %s to %d", len(x), min(self.pca_dimension, *x.shape),
                 self.reducer, self.reduced_dimension)
        self.pca_features_ = pca_features(x, self.pca_dimension, self.seed, self.standardize)
        self.embedding_ = reduce(self.pca_features_, self.reducer, self.reduced_dimension, self.perplexity,
                                 self.n_neighbors, self.seed)
        return self

    def fit_transform(self, X, y=None):
        """:meth:`fit`, then return ``embedding_`` (n_samples, reduced_dimension)."""
        return self.fit(X).embedding_

    def cache_key(self) -> dict:
        """The parameters the embedding depends on: those of the chosen reducer only, so changing
        UMAP's ``n_neighbors`` does not invalidate a t-SNE embedding."""
        unused = "n_neighbors" if self.reducer == "tsne" else "perplexity"
        return {k: v for k, v in self.get_params().items() if k != unused}


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

    Returns:
        float32 (N, d).

    Raises:
        ValueError: an unknown ``space``.
    """
    if space == "embedding":
        return embedding
    if space == "pca":
        return pca_features(vectors, pca_dimension, seed, standardize)
    if space == "raw":
        return np.asarray(vectors, dtype=np.float32)
    if space == "features":
        x = np.asarray(vectors, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    raise ValueError(f"unknown clustering space {space!r}")
