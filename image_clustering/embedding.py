"""Stage 2: feature vectors → low-dimensional embedding.

As in the original tool: standardize each feature (zero mean, unit variance), PCA to
``model.pca_dimension`` (50) components, then t-SNE (van der Maaten & Hinton 2008; scikit-learn's
Barnes-Hut ``TSNE``) or UMAP (McInnes et al. 2018; ``umap-learn``) to ``model.reduced_dimension``.
The result is cached next to the features, keyed on the store content and every parameter.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from .atomic import atomic_path
from .config import ModelConfig
from .errors import ImgclustError
from .features import FeatureStore

CACHE = "embedding.npz"


def pca_features(vectors: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """Standardize and project onto the top principal components.

    Args:
        vectors: float32 (N, D) feature vectors.
        n_components: wanted dimensions; capped at min(N, D) (PCA cannot give more).
        seed: random state for the randomized SVD.

    Returns:
        float32 (N, min(n_components, N, D)).
    """
    n = min(n_components, *vectors.shape)
    x = StandardScaler().fit_transform(np.asarray(vectors, dtype=np.float32))
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
        from sklearn.manifold import TSNE

        perplexity = min(model.perplexity, (n - 1) / 3)
        method = "barnes_hut" if dim <= 3 else "exact"
        tsne = TSNE(n_components=dim, perplexity=perplexity, init="pca", random_state=model.seed, method=method)
        return tsne.fit_transform(x).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables parallelism: wanted here
        import umap

        reducer = umap.UMAP(n_components=dim, n_neighbors=min(model.n_neighbors, n - 1), min_dist=0.0,
                            random_state=model.seed)
        return reducer.fit_transform(x).astype(np.float32)


def embedding_key(store: FeatureStore, model: ModelConfig) -> str:
    """Short hash of the store content and every parameter the embedding depends on."""
    params = {k: getattr(model, k) for k in ("pca_dimension", "reducer", "reduced_dimension", "perplexity",
                                              "n_neighbors", "seed")}
    params["store"] = store.token
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def embed(store: FeatureStore, model: ModelConfig, cache_dir: Path, log=print) -> np.ndarray:
    """The embedding of every stored feature vector, from cache when nothing changed.

    Returns:
        float32 (N, model.reduced_dimension), rows in the order of ``store.images``.

    Raises:
        ImgclustError: fewer than 3 feature vectors.
    """
    key = embedding_key(store, model)
    path = cache_dir / CACHE
    if path.is_file():
        with np.load(path) as cached:
            if str(cached["key"]) == key:
                return cached["embedding"]
    n = len(store.images)
    if n < 3:
        raise ImgclustError(f"{cache_dir}: {n} feature vectors; run `imgclust extract` on a folder with at least 3 images")
    log(f"embedding {n} images: PCA to {min(model.pca_dimension, n)} → {model.reducer} to {model.reduced_dimension}")
    embedding = reduce(pca_features(store.vectors, model.pca_dimension, model.seed), model)
    with atomic_path(path) as tmp:
        np.savez(tmp, key=key, embedding=embedding)
    return embedding
