"""Nearest photos in feature space: cosine similarity on the combined, L2-normalised feature
vectors (the vectors clustering starts from, before PCA). Used by the report's "neighbours" panel
and by ``imgclust similar``.

Exact neighbours (scikit-learn ``NearestNeighbors``, brute force) up to :data:`EXACT_LIMIT`
photos; above, approximate ones from pynndescent's graph (installed with umap-learn) when it can
be imported, else exact ones in blocks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .embedding import unit_rows

CACHE = "neighbours.npz"
DEFAULT_NEIGHBOURS = 12
EXACT_LIMIT = 20_000  # brute force is N² dot products: 10^4 photos take about a second


def nearest_neighbours(vectors: np.ndarray, n_neighbors: int = DEFAULT_NEIGHBOURS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbors`` most cosine-similar other rows of each row.

    Args:
        vectors: float (N, D) feature vectors (need not be normalised).
        n_neighbors: neighbours per row; capped at N − 1.

    Returns:
        (int32 (N, n) row indices, most similar first, the row itself excluded; float32 (N, n)
        cosine similarities in [-1, 1]).
    """
    x = unit_rows(vectors)
    n = len(x)
    m = max(0, min(n_neighbors, n - 1))
    if m == 0:
        return np.empty((n, 0), np.int32), np.empty((n, 0), np.float32)
    if n > EXACT_LIMIT:
        try:
            from pynndescent import NNDescent
        except ImportError:
            NNDescent = None
        if NNDescent is not None:
            index, dist = NNDescent(x, metric="cosine", n_neighbors=m + 1, random_state=seed).neighbor_graph
            return _drop_self(index, 1.0 - dist, m)
    from sklearn.neighbors import NearestNeighbors

    dist, index = NearestNeighbors(n_neighbors=m + 1, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    return _drop_self(index, 1.0 - dist, m)


def _drop_self(index: np.ndarray, sim: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (duplicates may push it off first place) and keep ``m``."""
    rows = np.arange(len(index))[:, None]
    keep = index != rows
    out_i = np.empty((len(index), m), np.int32)
    out_s = np.empty((len(index), m), np.float32)
    for r in range(len(index)):  # rows differ in where (or whether) self appears
        i, s = index[r][keep[r]][:m], sim[r][keep[r]][:m]
        out_i[r], out_s[r] = i, s
    return out_i, out_s


def _read_cache(path: Path, stamp: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (index, similarity) when ``path`` holds them for ``stamp`` and ``n`` rows, well
    formed; None otherwise (another key, or a damaged file: truncated, empty, garbage, wrong shapes)."""
    import logging
    import zipfile

    try:
        with np.load(path) as cached:
            if str(cached["key"]) != stamp:
                return None
            index, sim = cached["index"], cached["similarity"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logging.getLogger(__name__).warning(f"{path}: unreadable cache ({type(exc).__name__}), computing the neighbours again")
        return None
    if (index.ndim == 2 and index.shape == sim.shape and index.shape[0] == n and index.dtype.kind in "iu"
            and sim.dtype.kind == "f" and (index.size == 0 or (index.min() >= 0 and index.max() < n))):
        return index, sim
    logging.getLogger(__name__).warning(f"{path}: cache of the wrong shape, computing the neighbours again")
    return None


def cached_neighbours(feature_dir: Path, key: str, vectors: np.ndarray,
                      n_neighbors: int = DEFAULT_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbours`, kept in ``<feature_dir>/neighbours.npz`` with the features key
    (see :func:`image_clustering.pipeline.features`) so they are computed once per feature store."""
    path = feature_dir / CACHE
    stamp = json.dumps([key, n_neighbors])
    if path.is_file():
        cached = _read_cache(path, stamp, len(vectors))
        if cached is not None:
            return cached
    index, sim = nearest_neighbours(vectors, n_neighbors)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(stamp), index=index, similarity=sim)
    return index, sim


def most_similar(query: np.ndarray, vectors, n: int, exclude: int | None = None) -> list[tuple[int, float]]:
    """The ``n`` rows of ``vectors`` most cosine-similar to ``query`` (D,), best first, as
    (row, similarity); ``exclude`` (the query's own row) is left out.

    Args:
        vectors: float (N, D) array, or a :class:`~image_clustering.embedding.FeatureRows` read a
            chunk at a time (memory: N similarities plus one chunk, at any N).
    """
    direction = unit_rows(query[None])[0]
    if isinstance(vectors, np.ndarray):
        sims = unit_rows(vectors) @ direction
    else:
        sims = np.concatenate([unit_rows(chunk) @ direction for _, chunk in vectors.chunks()] or [np.empty(0)])
    if exclude is not None:
        sims[exclude] = -np.inf
    n = min(n, len(sims) - (exclude is not None))
    top = np.argpartition(-sims, n - 1)[:n] if n > 0 else np.empty(0, int)
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(int(i), float(sims[i])) for i in top]
