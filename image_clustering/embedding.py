"""Stage 2: feature vectors → low-dimensional embedding.

As in the original tool: standardize each feature (zero mean, unit variance; ``model.standardize``),
PCA to ``model.pca_dimension`` (50) components, then t-SNE (van der Maaten & Hinton 2008;
scikit-learn's Barnes-Hut ``TSNE`` up to 10,000 images, openTSNE's FFT-accelerated t-SNE above) or
UMAP (McInnes et al. 2018; ``umap-learn``) to ``model.reduced_dimension``. With several networks, each network's vectors are L2-normalised and
concatenated first, so each network weighs the same whatever its dimension. The result is cached
next to the features, keyed on the stores' content and every parameter.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from .atomic import atomic_path
from .config import ModelConfig
from .errors import ImgclustError

CACHE = "embedding.npz"
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


def reduce(x: np.ndarray, model: ModelConfig) -> np.ndarray:
    """t-SNE or UMAP of ``x`` (N, d) to (N, model.reduced_dimension), float32.

    Neighbourhood sizes shrink for small N (t-SNE's perplexity must be below N; UMAP needs
    ``n_neighbors`` < N), so a handful of photos still works.

    Raises:
        ImgclustError: fewer than 3 images.
    """
    n = x.shape[0]
    if n < 3:
        raise ImgclustError(f"need at least 3 images to build an embedding, found {n}")
    dim = model.reduced_dimension
    if model.reducer == "tsne":
        perplexity = min(model.perplexity, (n - 1) / 3)
        if n > TSNE_SKLEARN_LIMIT and dim <= 2:
            return _fft_tsne(x, dim, perplexity, model.seed)
        from sklearn.manifold import TSNE

        method = "barnes_hut" if dim <= 3 else "exact"
        tsne = TSNE(n_components=dim, perplexity=perplexity, init="pca", random_state=model.seed, method=method)
        return tsne.fit_transform(x).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables parallelism: wanted here
        import umap

        reducer = umap.UMAP(n_components=dim, n_neighbors=min(model.n_neighbors, n - 1), min_dist=0.0,
                            random_state=model.seed)
        return reducer.fit_transform(x).astype(np.float32)


def _fft_tsne(x: np.ndarray, dim: int, perplexity: float, seed: int) -> np.ndarray:
    """t-SNE with FFT-accelerated interpolation (Linderman et al. 2019, FIt-SNE; the openTSNE
    library): O(N) per iteration where Barnes-Hut is O(N log N) with a large constant."""
    from openTSNE import TSNE

    tsne = TSNE(n_components=dim, perplexity=perplexity, initialization="pca", random_state=seed,
                n_jobs=os.cpu_count() or 1, negative_gradient_method="fft")
    return np.asarray(tsne.fit(x), dtype=np.float32)


def clustering_space(vectors: np.ndarray, embedding: np.ndarray, model: ModelConfig) -> np.ndarray:
    """The points clustering works on (``model.space``):

    - ``embedding``: the t-SNE/UMAP embedding (N, reduced_dimension), as the original tool;
    - ``pca``: the PCA features (N, pca_dimension) that feed the embedding (standardized first when
      ``model.standardize``);
    - ``features``: the full feature vectors, each scaled to unit L2 norm (N, D);
    - ``raw``: the full feature vectors as the network gives them (N, D), not normalised: what
      imagecluster's ``calc.cluster`` measures its Euclidean distances on (several networks are
      still each L2-normalised by :func:`combine` before they are concatenated).

    Returns:
        float32 (N, d).
    """
    if model.space == "embedding":
        return embedding
    if model.space == "pca":
        return pca_features(vectors, model.pca_dimension, model.seed, model.standardize)
    x = np.asarray(vectors, dtype=np.float32)
    if model.space == "raw":
        return x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embedding_key(features_key: str, model: ModelConfig) -> str:
    """Short hash of the features' identity and every parameter the embedding depends on."""
    params = {k: getattr(model, k) for k in ("standardize", "pca_dimension", "reducer", "reduced_dimension",
                                              "perplexity", "n_neighbors", "seed")}
    params["features"] = features_key
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def space_key(features_key: str, model: ModelConfig) -> str:
    """Short hash of what the clustering space's points depend on: the embedding's parameters for
    ``embedding``, only PCA's for ``pca``, nothing beyond the features for ``features`` and ``raw``."""
    if model.space == "embedding":
        return "embedding-" + embedding_key(features_key, model)
    params = {"features": features_key, "space": model.space}
    if model.space == "pca":
        params.update(standardize=model.standardize, pca_dimension=model.pca_dimension, seed=model.seed)
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def embed(vectors: np.ndarray, features_key: str, model: ModelConfig, cache_dir: Path, log=print) -> np.ndarray:
    """The embedding of feature vectors, from cache when nothing changed.

    Args:
        vectors: float32 (N, D), e.g. from :func:`combine`.
        features_key: changes whenever ``vectors`` do (the stores' tokens).
        cache_dir: where ``embedding.npz`` lives.

    Returns:
        float32 (N, model.reduced_dimension), rows in the order of ``vectors``.

    Raises:
        ImgclustError: fewer than 3 feature vectors.
    """
    key = embedding_key(features_key, model)
    path = cache_dir / CACHE
    if path.is_file():
        with np.load(path) as cached:
            if str(cached["key"]) == key:
                return cached["embedding"]
    n = len(vectors)
    if n < 3:
        raise ImgclustError(f"{cache_dir}: {n} feature vectors; run `imgclust extract` on a folder with at least 3 images")
    log(f"embedding {n} images: PCA to {min(model.pca_dimension, n)} → {model.reducer} to {model.reduced_dimension}")
    embedding = reduce(pca_features(vectors, model.pca_dimension, model.seed, model.standardize), model)
    with atomic_path(path) as tmp:
        np.savez(tmp, key=key, embedding=embedding)
    return embedding
