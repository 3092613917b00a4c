"""The workflow behind the command-line tool: one function per command, each taking a validated
:class:`~image_clustering.config.Config`, over the array-level stages (:mod:`~image_clustering.features`,
:class:`~image_clustering.embedding.FeatureEmbedding`, :class:`~image_clustering.clustering.AutoKClustering`,
...). It owns what the stages do not: the feature store, the caches, the output files and the
config keys in error messages. Data flows one way: images → features → embedding → clusters →
outputs; each step reuses what the previous run left when its inputs did not change."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backend
from . import embedding as embedding_mod
from . import weights as weights_mod
from .atomic import atomic_path, atomic_write_csv, atomic_write_text, exclusive_lock, read_text
from .clustering import GRAPH_CRITERIA, AutoKClustering, KSweep, add_graph_modularity, sweep_k
from .config import Config
from .embedding import FeatureEmbedding, FeatureRows, clustering_space, combine
from .errors import ImgclustError
from .features import ExtractSummary, FeatureStore, extract_features, load_store
from .networks import NETWORKS, load_network
from .networks import source as weight_source
from .outputs import build_link_folders, cluster_id, is_link_folder, read_labels, write_labels
from .plots import (
    contact_sheet,
    plot_boxed_dendrogram,
    plot_dendrogram,
    plot_elbow,
    plot_k_criteria,
    plot_scatter,
    plot_tag_k,
    save_figure,
    save_image,
)

logger = logging.getLogger(__name__)


def download(config: Config, source: str | None = None, force: bool = False,
             networks: tuple[str, ...] | None = None) -> list[dict]:
    """``imgclust download``: fetch and verify the weights of each network in ``model.extractor``
    (or ``networks``) into ``paths.model_dir``, from ``model.weights`` unless ``source`` is given.

    Returns:
        One weights manifest per network.

    Raises:
        ImgclustError: nothing could be fetched or verified.
    """
    networks = networks or config.model.extractor
    return [weights_mod.download_weights(n, source or config.model.weights[n], config.paths.model_dir, force)
            for n in networks]


def _network(config: Config, name: str):
    """(loader, identity) of one network, from the weights already in ``paths.model_dir``."""
    manifest = weights_mod.load_manifest(config.paths.model_dir, name, verify=False)
    if manifest is None:
        raise ImgclustError(f"paths.model_dir: no {name} weights in {config.paths.model_dir}; run `imgclust download`")
    wanted = config.model.weights[name]
    if weight_source(name, wanted) and manifest["source"] != wanted:
        raise ImgclustError(f"model.weights: {name} is set to {wanted!r} but {config.paths.model_dir} holds "
                            f"{manifest['source']!r} weights; run `imgclust download`")
    identity = {"network": name, "source": manifest["source"], "sha256": manifest["sha256"]}
    if config.model.precision != "float32":  # reduced precision moves the vectors: never mix them
        identity["precision"] = config.model.precision
    if config.model.resize != "squash":  # other pixels, other vectors (squash: stores made before the key)
        identity["resize"] = config.model.resize
    # The backend is not part of the identity: its vectors agree to float32 round-off (README).
    backend.select(config.model.backend)

    def load():
        backend.set_precision(config.model.precision)
        return load_network(weights_mod.load_manifest(config.paths.model_dir, name, verify=True))

    return load, identity


def extract(config: Config, progress: bool = True, networks: tuple[str, ...] | None = None) -> ExtractSummary:
    """``imgclust extract``: bring the feature stores of ``model.extractor`` (or ``networks``) up to
    date with ``paths.image_dir``, all networks in one pass; on the Dask cluster of
    ``compute.scheduler`` when it is set (:mod:`image_clustering.distributed`).

    Raises:
        ImgclustError: no weights, missing image folder, or no images.
    """
    from .report import record_step

    networks = networks or config.model.extractor
    loaders = {n: _network(config, n) for n in networks}
    runner = None
    if config.compute.scheduler is not None:
        from . import distributed

        manifests = {n: weights_mod.load_manifest(config.paths.model_dir, n, verify=True) for n in networks}
        runner = distributed.dask_runner(manifests, config.compute)
    summary = extract_features(config, loaders, progress, runner=runner)
    record_step(config.feature_dir, "extract", summary.seconds, computed=summary.computed, reused=summary.reused,
                removed=summary.removed, failed=summary.failed)
    return summary


def _stores(config: Config, networks: tuple[str, ...]) -> list[FeatureStore]:
    stores = []
    for name in networks:
        store = load_store(config.layout.store_dir(name))
        if store is None or len(store.images) == 0:
            raise ImgclustError(f"paths.vector_dir: no {name} feature vectors in {config.feature_dir}; "
                                "run `imgclust extract`")
        stores.append(store)
    return stores


def _aligned(stores: list[FeatureStore]) -> tuple[list[str], list[np.ndarray], list[np.ndarray | None]]:
    """Paths present in every store, each store's vectors (memory-mapped when compacted), and
    per store the rows for those paths in that order (None: all rows, already in that order)."""
    common = sorted(set.intersection(*(set(s.paths) for s in stores)))
    blocks, rows = [], []
    for store in stores:
        blocks.append(store.vectors)
        if store.paths == common:
            rows.append(None)
        else:
            row = {p: i for i, p in enumerate(store.paths)}
            rows.append(np.array([row[p] for p in common], dtype=np.int64))
    return common, blocks, rows


def feature_rows(config: Config) -> tuple[list[str], FeatureRows, str]:
    """:func:`features` without reading the matrix: its rows on demand from the memory-mapped
    stores (:class:`~image_clustering.embedding.FeatureRows`), for collections too large to hold.

    Raises:
        ImgclustError: as :func:`features`.
    """
    stores = _stores(config, config.model.extractor)
    paths, blocks, rows = _aligned(stores)
    key = "+".join(s.token for s in stores)
    gone = _gone_photos(config, stores[0], set(paths))
    if gone:
        keep = np.array([i for i, p in enumerate(paths) if p not in gone], dtype=np.int64)
        if not len(keep):
            raise ImgclustError(f"paths.image_dir: none of the {len(paths)} photos with feature vectors is in "
                                f"{config.paths.image_dir} any more; run `imgclust extract`")
        paths = [paths[i] for i in keep]
        rows = [keep if r is None else r[keep] for r in rows]
        key += "-without-" + hashlib.sha256("\0".join(sorted(gone)).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return paths, FeatureRows(blocks, rows), key


def features(config: Config) -> tuple[list[str], np.ndarray, str]:
    """The feature matrix clustering works on: the images every network has vectors for, less
    those deleted since ``extract`` (logged, with a warning for photos changed since then).

    Returns:
        (paths relative to ``image_dir``, float32 (N, D) vectors — one network's as stored, several
        networks' L2-normalised and concatenated —, a key that changes whenever they do).

    Raises:
        ImgclustError: a network in ``model.extractor`` has no vectors yet, or every photo is gone.
    """
    paths, rows, key = feature_rows(config)
    return paths, rows.array(), key


def _clustering_input(config: Config) -> tuple[list[str], np.ndarray | FeatureRows, str]:
    """The features for find-k and cluster: in memory up to
    :data:`~image_clustering.embedding.EMBED_SAMPLE` images (everything as it always was), above
    it read on demand, so memory stays bounded at millions of images."""
    paths, rows, key = feature_rows(config)
    return paths, (rows.array() if len(rows) <= embedding_mod.EMBED_SAMPLE else rows), key


def _gone_photos(config: Config, store: FeatureStore, paths: set[str]) -> set[str]:
    """Paths of ``paths`` whose photo no longer exists; warns about them and about photos whose
    size or modification time changed since their vectors were computed."""
    gone, changed = set(), []
    for image in store.images:
        if image.path not in paths:
            continue
        try:
            st = os.stat(config.paths.image_dir / image.path)
        except OSError:
            gone.add(image.path)
            continue
        if (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
            changed.append(image.path)
    if gone:
        logger.warning(f"warning: {len(gone)} photos were deleted since `imgclust extract` (e.g. {min(gone)}); "
            "left out of this run — run `imgclust extract` to update the store")
    if changed:
        logger.warning(f"warning: {len(changed)} photos changed since `imgclust extract` (e.g. {changed[0]}); their old "
            "vectors are used — run `imgclust extract` to update them")
    return gone


def _write_k_table(sweep: KSweep, path: Path) -> None:
    def score(value):
        return "" if np.isnan(value) else f"{value:.6f}"

    atomic_write_csv(path, ["k", "inertia", "silhouette", "davies_bouldin"],
                     ([int(k), f"{inertia:.6g}", score(sil), score(db)]
                      for k, inertia, sil, db in zip(sweep.ks, sweep.inertia, sweep.silhouette, sweep.davies_bouldin)))


SWEEPS_KEPT = 8  # sweeps cached per collection, so switching space or parameters back is free
# Part of every cache key: bump when the code computing a cached result changes its output.
CODE_VERSION = 4


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps({**parts, "code": CODE_VERSION}, sort_keys=True).encode()).hexdigest()[:16]


def embedding_estimator(model) -> FeatureEmbedding:
    """The :class:`~image_clustering.embedding.FeatureEmbedding` that ``model`` (the config's
    ``model`` section) describes."""
    return FeatureEmbedding(pca_dimension=model.pca_dimension, reducer=model.reducer,
                            reduced_dimension=model.reduced_dimension, perplexity=model.perplexity,
                            n_neighbors=model.n_neighbors, standardize=model.standardize, seed=model.seed,
                            sample_size=embedding_mod.EMBED_SAMPLE)


def clustering_estimator(model, n_clusters: int | str | None = None) -> AutoKClustering:
    """The :class:`~image_clustering.clustering.AutoKClustering` that ``model`` describes
    (``n_clusters`` overrides ``model.k``)."""
    return AutoKClustering(n_clusters=model.k if n_clusters is None else n_clusters, criterion=model.k_criterion,
                           algorithm=model.algorithm, k_max=model.k_max, n_init=model.n_init, seed=model.seed,
                           linkage=model.linkage, metric=model.metric, sim=model.sim,
                           min_cluster_size=model.min_cluster_size, time_weight=model.time_weight,
                           graph_neighbors=model.graph_neighbors)


def embed(config: Config, vectors: np.ndarray, features_key: str) -> np.ndarray:
    """The embedding of ``vectors`` (float32 (N, D), or a
    :class:`~image_clustering.embedding.FeatureRows` above ``EMBED_SAMPLE`` images; keyed by
    ``features_key``), from the cache (``embedding.npz``) when the vectors and the chosen reducer's
    parameters are unchanged.

    Returns:
        float32 (N, model.reduced_dimension).

    Raises:
        ImgclustError: fewer than 3 feature vectors.
    """
    estimator = embedding_estimator(config.model)
    key = _key(features=features_key, embedding=estimator.cache_key())
    path = config.layout.embedding_cache
    if path.is_file():
        try:
            with np.load(path) as cached:
                if str(cached["key"]) == key:
                    return cached["embedding"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged cache is recomputed
            logger.warning(f"{path}: unreadable cache, computing the embedding again")
    try:
        embedding = estimator.fit_transform(vectors)
    except ValueError as exc:
        raise ImgclustError(f"{config.feature_dir}: {exc}; run `imgclust extract` on a folder with at least 3 "
                            "images") from None
    with atomic_path(path) as tmp:
        np.savez(tmp, key=key, embedding=embedding)
    return embedding


def _space(config: Config, vectors: np.ndarray, embedding: np.ndarray, features_key: str) -> tuple[np.ndarray, str]:
    """The clustering space's points and a key of what they depend on: the embedding's parameters
    for ``embedding``, only PCA's for ``pca``, nothing beyond the features for ``features``."""
    m = config.model
    try:
        points = clustering_space(vectors, embedding, m.space, m.pca_dimension, m.standardize, m.seed)
    except ValueError as exc:
        raise ImgclustError(f"model.space: {exc}") from None
    if m.space == "embedding":
        return points, _key(features=features_key, embedding=embedding_estimator(m).cache_key())
    if m.space == "pca":
        return points, _key(features=features_key, space="pca", pca_dimension=m.pca_dimension,
                            standardize=m.standardize, seed=m.seed)
    return points, _key(features=features_key, space=m.space)


def _sweep(config: Config, space_key: str, points: np.ndarray, progress: bool, fit: bool = True,
           vectors=None) -> KSweep | None:
    """The k sweep over the clustering space's ``points``, from cache when they and the sweep's
    parameters are unchanged (the last :data:`SWEEPS_KEPT` sweeps of the collection are kept, each
    with its per-k labels, int16 (K, N), in :meth:`Layout.sweep_labels`); None when it is not
    cached and not ``fit``. With ``vectors`` and ``model.k_criterion`` ``modularity``, the sweep's
    k are also scored on the feature graph (clustering.add_graph_modularity)."""
    sweep = _kmeans_sweep(config, space_key, points, progress, fit)
    if sweep is not None and vectors is not None and config.model.k_criterion in GRAPH_CRITERIA:
        add_graph_modularity(sweep, _graph_views(config, vectors), config.model.seed, config.model.graph_neighbors)
    return sweep


def _kmeans_sweep(config: Config, space_key: str, points: np.ndarray, progress: bool, fit: bool) -> KSweep | None:
    m = config.model
    key = _key(space=space_key, k_max=m.k_max, n_init=m.n_init, seed=m.seed)
    layout = config.layout
    sweeps = {}
    if layout.sweep_cache.is_file():
        try:
            sweeps = json.loads(read_text(layout.sweep_cache)).get("sweeps", {})
        except (ValueError, AttributeError):
            logger.warning(f"{layout.sweep_cache}: unreadable cache, computing the sweep again")
        if key in sweeps and layout.sweep_labels(key).is_file():
            doc = sweeps[key]
            return KSweep(np.array(doc["ks"]), np.array(doc["inertia"]), np.array(doc["silhouette"], dtype=float),
                          np.array(doc["davies_bouldin"], dtype=float), doc["suggestions"], m.k_criterion,
                          np.load(layout.sweep_labels(key), mmap_mode="r"))
    if not fit:
        return None
    k_top = max(1, min(m.k_max, len(points) - 1))
    logger.info(f"fitting k-means for k = 1..{k_top} on the {m.space} ({points.shape[1]} dimensions)")
    with tqdm(total=k_top, unit="k", desc="find-k", disable=not progress or None) as bar, _compute(config):
        sweep = sweep_k(points, m.k_max, m.n_init, m.seed, progress=lambda k: bar.update(1), criterion=m.k_criterion,
                        parallel=config.compute.scheduler is not None)
    sweeps.pop(key, None)  # re-inserted last: the newest
    sweeps[key] = {"ks": sweep.ks.tolist(), "inertia": sweep.inertia.tolist(),
                   "silhouette": [None if np.isnan(s) else s for s in sweep.silhouette],
                   "davies_bouldin": [None if np.isnan(d) else d for d in sweep.davies_bouldin],
                   "suggestions": sweep.suggestions}
    kept = dict(list(sweeps.items())[-SWEEPS_KEPT:])  # insertion order: the newest last
    with atomic_path(layout.sweep_labels(key)) as tmp:
        np.save(tmp, sweep.labels)
    atomic_write_text(layout.sweep_cache, json.dumps({"sweeps": kept}))
    wanted = {layout.sweep_labels(k).name for k in kept}
    for old in layout.feature_dir.glob("find_k.*.labels.npy"):  # labels of sweeps no longer cached
        if old.name not in wanted:
            old.unlink(missing_ok=True)
    return sweep


def current_sweep(config: Config, progress: bool = False, fit: bool = True) -> tuple[
        list[str], np.ndarray, str, np.ndarray, np.ndarray, KSweep | None]:
    """The collection as ``find-k`` sees it, from the caches where they are current.

    Returns:
        (paths, float32 (N, D) features — a
        :class:`~image_clustering.embedding.FeatureRows` read on demand above ``EMBED_SAMPLE``
        images —, their key (see :func:`features`), float32 (N, d) embedding, the
        clustering-space points (N, d'), the :class:`KSweep` with its per-k ``labels`` — None
        when no sweep of these points is cached and ``fit`` is false).

    Raises:
        ImgclustError: no feature vectors yet.
    """
    paths, vectors, key = _clustering_input(config)
    embedding = embed(config, vectors, key)
    points, space_key = _space(config, vectors, embedding, key)
    return paths, vectors, key, embedding, points, _sweep(config, space_key, points, progress, fit, vectors)


def _compute(config: Config):
    """The Dask client of ``compute.scheduler`` as a context (nothing when it is None)."""
    if config.compute.scheduler is None:
        return contextlib.nullcontext()
    from . import distributed

    return distributed.client(config.compute)


@dataclass
class FindKResult:
    """What ``find-k`` computed and wrote: the sweep and its suggested k, the embedding (float32
    (N, reduced_dimension), rows in the order of ``paths``) and the files written."""

    sweep: KSweep
    suggested_k: int
    paths: list[str]
    embedding: np.ndarray
    files: list[Path]


def find_k(config: Config, progress: bool = True, write: bool = True) -> FindKResult:
    """``imgclust find-k``: embed the features, sweep k-means over k = 1..min(k_max, N−1) in the
    clustering space (``model.space``), and (unless ``write`` is False) write the elbow plot
    ``cost_<d>D.png``, the embedding scatter ``embedding_<d>D.png``, ``k_scores.csv`` and
    ``k_criteria.png`` (every criterion's curve and pick) into ``<plot_dir>/<object_name>/``; the
    suggested k follows ``model.k_criterion``.

    Raises:
        ImgclustError: no feature vectors yet, or fewer than 3.
    """
    from .report import record_step

    start = time.perf_counter()
    with exclusive_lock(config.feature_dir, "find-k"):
        paths, vectors, key = _clustering_input(config)
        embedding = embed(config, vectors, key)
        points, space_key = _space(config, vectors, embedding, key)
        sweep = _sweep(config, space_key, points, progress, vectors=vectors)
        files = _find_k_plots(config, sweep, embedding) if write else []
        record_step(config.feature_dir, "find-k", time.perf_counter() - start)
        return FindKResult(sweep, sweep.suggested_k, paths, embedding, files)


def _find_k_plots(config: Config, sweep: KSweep, embedding: np.ndarray) -> list[Path]:
    m, layout = config.model, config.layout
    d, name, n = m.reduced_dimension, m.object_name, len(embedding)
    files = [layout.plot(f"cost_{d}D.png"), layout.plot(f"embedding_{d}D.png"), layout.plot("k_scores.csv"),
             layout.plot("k_criteria.png")]
    space = f"{m.reducer} embedding" if m.space == "embedding" else m.space
    save_figure(plot_elbow(sweep, f"{name}: k-means on the {space} ({n} images)").figure, files[0])
    save_figure(plot_scatter(embedding, title=f"{name}: {m.reducer} embedding of {n} images").figure, files[1])
    _write_k_table(sweep, files[2])
    save_figure(plot_k_criteria(sweep, f"{name}: choosing k ({n} images)"), files[3])
    return files


@dataclass
class ClusterResult:
    """What ``cluster`` produced: k (clusters, the unclustered images not counted), per-cluster
    sizes (cluster 0 largest), the images left unclustered, the fitted
    :class:`~image_clustering.clustering.AutoKClustering` (labels, centres, distances, sweep,
    tree), the embedding (float32 (N, reduced_dimension)), and the output paths (written only
    when ``write``)."""

    k: int
    sizes: list[int]
    unclustered: int
    paths: list[str]
    labels: np.ndarray
    estimator: AutoKClustering
    embedding: np.ndarray
    label_files: tuple[Path, Path]
    link_root: Path
    link_kinds: dict[str, int]

    @property
    def sweep(self) -> KSweep | None:
        return self.estimator.sweep_


def cluster(config: Config, progress: bool = True, write: bool = True) -> ClusterResult:
    """``imgclust cluster``: cluster the images with ``model.algorithm`` in ``model.space`` —
    k-means or agglomerative at ``model.k`` (``"auto"``: the suggested k of ``find-k``),
    agglomerative cut at ``model.sim``, or HDBSCAN —; unless ``write`` is False, writes
    ``<cluster_label_dir>/<object_name>.csv|json``, rebuilds ``<link_dir>/<object_name>/`` with one
    ``<cluster>_<size>`` folder per cluster (plus ``unclustered``), and draws ``clusters_<d>D.png``,
    one ``contact_sheet_<cluster>.png`` per cluster and, for agglomerative clustering,
    ``dendrogram.png``.

    Raises:
        ImgclustError: no feature vectors, ``model.k`` larger than the number of images, or a
            pair-distance method on too many images.
    """
    from .report import record_step

    start = time.perf_counter()
    with exclusive_lock(config.feature_dir, "cluster"):
        result = _cluster(config, progress, write)
        record_step(config.feature_dir, "cluster", time.perf_counter() - start)
        return result


def _photo_times(config: Config, paths: list[str]) -> np.ndarray:
    from .images import photo_time

    return np.array([photo_time(config.paths.image_dir / p) for p in paths])


def _cluster(config: Config, progress: bool, write: bool) -> ClusterResult:
    m, layout = config.model, config.layout
    paths, vectors, key = _clustering_input(config)
    embedding = embed(config, vectors, key)
    points, space_key = _space(config, vectors, embedding, key)
    estimator = clustering_estimator(m)
    if isinstance(m.k, int) and m.k > len(paths):
        raise ImgclustError(f"model.k: {m.k} clusters asked for but only {len(paths)} images have feature vectors")
    size = m.min_cluster_size or 5
    if m.algorithm == "hdbscan" and size > len(paths):  # scikit-learn's message would name min_samples
        raise ImgclustError(f"model.min_cluster_size: {size}{'' if m.min_cluster_size else ' (the default)'} "
                            f"is larger than the {len(paths)} images with feature vectors")
    sweep = None
    if not estimator.finds_k_itself() and m.k == "auto":
        sweep = _sweep(config, space_key, points, progress, vectors=vectors)
        logger.info(f"k = {sweep.suggested_k} (suggested by {m.k_criterion})")
    times = _photo_times(config, paths) if m.time_weight > 0 else None
    try:
        estimator.fit(points, times=times, sweep=sweep, views=_views(config, vectors))
    except ValueError as exc:
        raise ImgclustError(f"model.algorithm: {exc}") from None
    result = estimator.clustering_
    if estimator.finds_k_itself():
        logger.info(f"{result.k} clusters, {result.unclustered} images unclustered")
    label_files = (layout.labels_csv(), layout.labels_json())
    link_root, kinds = layout.link_root(), {}
    if write:
        # Labels are written once every link is made, just before the new link folder is swapped
        # in: a failure while linking leaves the previous labels and links, which agree.
        def labels():
            write_labels(config.paths.cluster_label_dir, m.object_name, paths, result, embedding)

        kinds = build_link_folders(link_root, config.paths.image_dir, paths, result.labels, result.k, m.link,
                                   before_swap=labels)
        _cluster_plots(config, paths, estimator, embedding, progress)
    return ClusterResult(result.k, result.sizes.tolist(), result.unclustered, paths, result.labels, estimator,
                         embedding, label_files, link_root, kinds)


def _views(config: Config, vectors: np.ndarray | FeatureRows) -> list[np.ndarray] | None:
    """Each network's columns of the combined feature matrix (each network's own rows when the
    matrix is not in memory), the views whose neighbour graph Leiden or spectral clustering cuts;
    None where they are not needed."""
    if config.model.algorithm not in ("leiden", "spectral"):
        return None
    return _graph_views(config, vectors)


def _graph_views(config: Config, vectors: np.ndarray | FeatureRows) -> list:
    """Each network's columns of the combined feature matrix (each network's own rows when the
    matrix is not in memory)."""
    if isinstance(vectors, FeatureRows):
        return [FeatureRows([block], [rows]) for block, rows in zip(vectors.blocks, vectors.rows)]
    ends = np.cumsum([NETWORKS[name].dim for name in config.model.extractor])
    return np.split(vectors, ends[:-1], axis=1)


def algorithm_name(model) -> str:
    """How ``model.algorithm`` reads in plot titles and the report."""
    return {"leiden": "Leiden communities", "spectral": "spectral clustering", "kmeans": "k-means",
            "agglomerative": f"{model.linkage} linkage",
            "hdbscan": "HDBSCAN"}[model.algorithm]


def _cluster_plots(config: Config, paths, estimator: AutoKClustering, embedding, progress: bool) -> None:
    m, layout, result = config.model, config.layout, estimator.clustering_
    how = algorithm_name(m)
    ax = plot_scatter(embedding, result.labels, f"{m.object_name}: {how}, {result.k} clusters")
    save_figure(ax.figure, layout.plot(f"clusters_{m.reduced_dimension}D.png"))
    dendrogram = layout.plot("dendrogram.png")
    if estimator.tree_ is not None:
        how = f"sim {m.sim}" if m.sim is not None else f"k = {result.k}"
        ax = plot_dendrogram(estimator.tree_, result.k, estimator.cut_,
                             f"{m.object_name}: {m.linkage} linkage ({m.metric}), {how}")
        save_figure(ax.figure, dendrogram)
    else:
        dendrogram.unlink(missing_ok=True)  # from an earlier agglomerative run
    for old in layout.plot_dir.glob("contact_sheet_*.png"):  # a previous run may have had more clusters
        old.unlink()
    for c in tqdm(range(-1, result.k), desc="contact sheets", disable=not progress or None):
        members = np.flatnonzero(result.labels == c)
        if c < 0 and not len(members):
            continue
        if c >= 0:
            members = members[np.argsort(result.distances[members], kind="stable")]
        size = len(members)
        what = "unclustered" if c < 0 else f"cluster {c}"
        title = f"{what}: {size} images" + (" (100 shown)" if size > 100 else "")
        save_image(contact_sheet([config.paths.image_dir / paths[i] for i in members], title),
                   layout.contact_sheet(cluster_id(c, result.k)))


def write_tags(path: Path, paths: list[str], top_classes: np.ndarray, top_scores: np.ndarray,
               class_names: list[str], n: int, min_score: float) -> None:
    """Write the label table: ``path, label_1..label_n, score_1..score_n`` (the shape of a
    labelling-service export); labels below ``min_score`` are left empty."""
    def row(p, classes, scores):
        keep = scores >= min_score
        return [p, *(class_names[c] if k else "" for c, k in zip(classes, keep)),
                *(f"{s:.4f}" if k else "" for s, k in zip(scores, keep))]

    header = ["path", *(f"label_{i}" for i in range(1, n + 1)), *(f"score_{i}" for i in range(1, n + 1))]
    atomic_write_csv(path, header, (row(*r) for r in zip(paths, top_classes[:, :n], top_scores[:, :n])))


def tag(config: Config, progress: bool = True) -> Path:
    """``imgclust tag``: up to ``model.tag_count`` ImageNet labels per image with their softmax
    probabilities (at least ``model.tag_min_score``), from EfficientNet-Lite0's classifier; the
    labels are computed in the same pass as the feature vectors and reused afterwards.

    Returns:
        ``<cluster_label_dir>/<object_name>_tags.csv``.

    Raises:
        ImgclustError: weights or class names could not be had, or no images.
    """
    lite0 = "efficientnet_lite0"
    download(config, networks=(lite0,))
    class_names = weights_mod.download_class_names(config.paths.model_dir)
    logger.info(extract(config, progress, tuple(dict.fromkeys((*config.model.extractor, lite0)))).line())
    store = _stores(config, (lite0,))[0]
    out = config.layout.tags_csv
    write_tags(out, store.paths, np.asarray(store.arrays["top_classes"]), np.asarray(store.arrays["top_scores"]),
               class_names, config.model.tag_count, config.model.tag_min_score)
    return out


def evaluate(config: Config, truth_csv: Path | None = None, of_labels: bool = False) -> tuple[dict, Path]:
    """``imgclust evaluate``: score the last ``cluster`` output (or, with ``of_labels``, the last
    ``cluster-labels`` output) against ground truth — the first folder level under
    ``paths.image_dir``, or ``truth_csv`` (``path,label``) — and write the scores to
    ``<cluster_label_dir>/<object_name>[_labels]_evaluation.json``.

    Returns:
        (scores as in :func:`image_clustering.evaluation.score`, the JSON path).

    Raises:
        ImgclustError: no clustering yet, or no ground truth.
    """
    from .evaluation import csv_truth, folder_truth, score

    labels_csv = config.layout.labels_csv(of_labels)
    if not labels_csv.is_file():
        raise ImgclustError(f"{labels_csv}: no clustering yet; run `imgclust {'cluster-labels' if of_labels else 'cluster'}`")
    clusters = read_labels(labels_csv)
    paths = list(clusters)
    truth = csv_truth(truth_csv, paths) if truth_csv else folder_truth(paths)
    if truth_csv and not any(t is not None for t in truth):
        raise ImgclustError(f"{truth_csv}: none of its paths is a photo of the clustering (paths relative to "
                            f"paths.image_dir, columns path,label)")
    scores = score(truth, list(clusters.values()))
    scores["truth"] = str(truth_csv) if truth_csv else "first folder level"
    out = config.layout.evaluation_json(of_labels)
    atomic_write_text(out, json.dumps(scores, indent=1))
    return scores, out


def _tag_table(config: Config, label_file: Path | None):
    """The label table of the label workflows: ``label_file`` if given, else by
    ``model.label_source``: the tag table (:attr:`Config.label_file`), the OCR words of
    ``imgclust ocr``, or both merged per image."""
    from .tags import merge_tag_tables, read_tag_table

    if label_file:
        path = Path(label_file)
        if not path.is_file():
            raise ImgclustError(f"{path}: no label table; check the path")
        return read_tag_table(path)
    source = config.model.label_source
    wanted = []
    if source in ("tags", "tags+text"):
        wanted.append((config.label_file, "run `imgclust tag` first, or set paths.label_file"))
    if source in ("text", "tags+text"):
        wanted.append((config.layout.text_labels_csv, f"run `imgclust ocr` first (model.label_source is {source!r})"))
    for path, hint in wanted:
        if not path.is_file():
            raise ImgclustError(f"{path}: no label table; {hint}")
    tables = [read_tag_table(path) for path, _ in wanted]
    return tables[0] if len(tables) == 1 else merge_tag_tables(tables)


def ocr(config: Config, progress: bool = True):
    """``imgclust ocr``: the text in every photo (Tesseract), incremental; see
    :func:`image_clustering.ocr.ocr`."""
    from .ocr import ocr as run_ocr

    return run_ocr(config, progress)


def _write_label_k(choice, path: Path) -> None:
    """``label_k.csv``: k, separation, 1 − separation (the R code's ``distance``) and the L-method
    error of the split at k (empty where there is none)."""
    error = dict(zip(np.asarray(choice.splits, dtype=int).tolist(), choice.errors))
    atomic_write_csv(path, ["k", "separation", "distance", "lmethod_rmse"],
                     ([int(k), f"{s:.15g}", f"{1 - s:.15g}", f"{error[k]:.15g}" if k in error else ""]
                      for k, s in zip(choice.ks, choice.separation)))


@dataclass
class TagClusterResult:
    """What ``cluster-labels`` produced: k, how it was chosen, sizes, and the output paths."""

    k: int
    knee: int
    images: list[str]
    labels: np.ndarray
    sizes: list[int]
    vocabulary: int
    label_files: tuple[Path, Path]
    link_root: Path | None
    linked: int


def cluster_by_tags(config: Config, label_file: Path | None = None) -> TagClusterResult:
    """``imgclust cluster-labels``: cluster the images by their label words (Jaccard similarity,
    Ward linkage; :mod:`image_clustering.tags`; with ``model.label_method`` ``"song2020"``
    exactly what the published R code computes) from ``label_file`` (default: by
    ``model.label_source``, see :func:`_tag_table`); k = ``model.label_k`` or, with ``"auto"``,
    the L-method knee of the separation curve over k = 2..``model.label_k_max``. Writes
    ``<cluster_label_dir>/<object_name>_labels.csv|json``, links the images found under
    ``paths.image_dir`` (:func:`~image_clustering.tags.local_photos`; no other row is ever
    linked or copied) into ``<link_dir>/<object_name>_labels/<cluster>_<size>/``, and plots
    ``label_k.png`` (and the curve as ``label_k.csv``) and ``label_dendrogram.png`` (clusters boxed).

    Raises:
        ImgclustError: no or malformed label table, more than 20,000 images, or k above N.
    """
    from .tags import (
        choose_k,
        cluster_tags_at_k,
        jaccard_similarity,
        local_photos,
        song2020_choose_k,
        song2020_similarity,
        song2020_tree,
        tag_matrix,
        ward_tree,
    )

    m = config.model
    table = _tag_table(config, label_file)
    n = len(table.images)
    if n < 3:
        where = label_file or (config.label_file if m.label_source == "tags" else f"model.label_source {m.label_source!r}")
        raise ImgclustError(f"{where}: {n} images; label clustering needs at least 3")
    x, vocabulary = tag_matrix(table)
    song = m.label_method == "song2020"
    try:
        if song:
            logger.info(f"{n} images, {len(vocabulary)} distinct labels: the published R code (shared / (sum of "
                        "label counts), ward.D2, its L-method)")
            sim = song2020_similarity(x, table.images, table.cells)
            tree = song2020_tree(sim)
            choice = song2020_choose_k(sim, tree, m.label_k_max)
        else:
            logger.info(f"{n} images, {len(vocabulary)} distinct labels: Jaccard similarity, Ward linkage")
            sim = jaccard_similarity(x)
            tree = ward_tree(sim)
            choice = choose_k(sim, tree, 2, m.label_k_max)
    except ValueError as exc:
        raise ImgclustError(f"{label_file or config.label_file}: {exc}") from None
    _write_label_k(choice, config.layout.plot("label_k.csv"))
    if m.label_k == "auto":
        k = choice.knee
        logger.info(f"k = {k} (L-method knee of the separation curve, k = 2..{choice.ks[-1]})")
    elif m.label_k > n:
        raise ImgclustError(f"model.label_k: {m.label_k} clusters asked for but the label table has {n} images")
    else:
        k = m.label_k
    # Images with the same label set are at distance 0: no cut can honestly part them.
    distinct = len({frozenset(labels) for labels in table.tags})
    if distinct == 1:
        k = 1
        logger.info(f"all {n} images have the same labels: one cluster")
    elif k > distinct:
        logger.info(f"only {distinct} different label sets among the {n} images: {distinct} clusters, not {k}")
        k = distinct
    result = cluster_tags_at_k(sim, tree, k)
    if result.k < k:
        logger.info(f"the Ward tree cut at k = {k} gives {result.k} clusters (merges at tied heights)")
    k = result.k  # the clusters the cut gave: link folders and the report list exactly these
    name = f"{m.object_name}_labels"
    label_files = write_labels(config.paths.cluster_label_dir, name, table.images, result, np.empty((n, 0)))
    photos = local_photos(config.paths.image_dir, table.images)
    local = sorted(photos.paths)
    link_root = None
    if local:
        link_root = config.layout.link_root(of_tags=True)
        build_link_folders(link_root, config.paths.image_dir, [table.images[i] for i in local], result.labels[local],
                           k, m.link)
    _log_not_local(n, photos, config.paths.image_dir, "clustered, not linked")
    stale = config.layout.link_root(of_tags=True)
    if not local and is_link_folder(stale):  # an earlier run's links; nothing to link now
        shutil.rmtree(stale)
        logger.info(f"{stale}: link folders of an earlier run removed (no row of the table is a local photo)")
    if song:  # the R code's curve is 1 − separation
        figure = plot_tag_k(choice.ks, 1.0 - choice.separation, choice.knee,
                              f"{m.object_name}: number of label clusters ({n} images, song2020)",
                              (choice.splits, choice.errors), "1 − mean (within − between) similarity")
    else:
        figure = plot_tag_k(choice.ks, choice.separation, choice.knee,
                              f"{m.object_name}: number of label clusters ({n} images)", (choice.splits, choice.errors))
    save_figure(figure, config.layout.plot("label_k.png"))
    ax = plot_boxed_dendrogram(tree, result.labels, f"{m.object_name}: Ward clustering of label sets, k = {k}")
    save_figure(ax.figure, config.layout.plot("label_dendrogram.png"))
    return TagClusterResult(k, choice.knee, table.images, result.labels, result.sizes.tolist(), len(vocabulary),
                              label_files, link_root, len(local))


def _log_not_local(n: int, photos, image_dir: Path, what: str) -> None:
    """One line counting the label-table rows that are not photos under ``image_dir``."""
    if len(photos.paths) < n:
        outside = (f" ({photos.outside} name a path outside it: absolute, '..' or through a link to a folder "
                   "elsewhere)") if photos.outside else ""
        logger.info(f"{n - len(photos.paths)} images of the label table are not photo files under {image_dir}{outside}: "
            f"{what}")


def _clusters_by_image(config: Config) -> dict[str, int] | None:
    """The latest clustering's cluster per image: by labels if there is one, else by features."""
    for path in (config.layout.labels_csv(of_tags=True), config.layout.labels_csv()):
        if path.is_file():
            return read_labels(path)
    return None


def tag_network(config: Config, label_file: Path | None = None) -> list[Path]:
    """``imgclust tag-network``: the bipartite image–label network of the label table (default
    :attr:`Config.label_file`) as ``<cluster_label_dir>/<object_name>_network.gexf`` plus Gephi's
    ``<object_name>_edges.csv`` / ``_nodes.csv`` (written first, for any size), and drawn with
    ForceAtlas2 as ``<plot_dir>/<object_name>/tag_network.png`` (of the labels only above
    :data:`~image_clustering.network.FULL_LAYOUT_MAX` nodes; :func:`~image_clustering.network.layout`).
    Image nodes carry their cluster from the latest ``cluster-labels`` (else ``cluster``) run,
    when there is one; only rows that :func:`~image_clustering.tags.local_photos` admits are
    opened for thumbnails.

    Returns:
        The four files written.

    Raises:
        ImgclustError: no or malformed label table.
    """
    from .network import image_node, layout, render, tag_graph, write_gephi
    from .tags import local_photos

    m = config.model
    table = _tag_table(config, label_file)
    graph = tag_graph(table, _clusters_by_image(config))
    found = local_photos(config.paths.image_dir, table.images)
    _log_not_local(len(table.images), found, config.paths.image_dir, "drawn as dots, not thumbnails")
    photos = {image_node(table.images[i]): path for i, path in found.paths.items()}
    files = [*config.layout.network_files, config.layout.plot("tag_network.png")]
    write_gephi(graph, *files[:3])  # first: the exports do not wait for (or depend on) the picture
    render(graph, layout(graph, seed=m.seed), photos, files[3],
           f"{m.object_name}: images and their labels (ForceAtlas2)")
    return files


@dataclass
class RunResult:
    """The outcome of each step of :func:`run`."""

    extract: ExtractSummary
    find_k: FindKResult
    cluster: ClusterResult
    report: Path


def run(config: Config, progress: bool = True) -> RunResult:
    """``imgclust run``: download (if needed), extract, find-k, cluster, report; all steps share one
    Dask cluster when ``compute.scheduler`` is set."""
    download(config)
    with _compute(config):
        summary = extract(config, progress)
        found, clustered = find_k(config, progress), cluster(config, progress)
    return RunResult(summary, found, clustered, report(config, progress))


def report(config: Config, progress: bool = False) -> Path:
    """``imgclust report``: the interactive report, ``<plot_dir>/<object_name>/report/index.html``
    (see :func:`image_clustering.report.collection_report`)."""
    from .report import collection_report

    return collection_report(config, progress)


def tag_report(config: Config, label_file: Path | None = None) -> Path:
    """The report of ``cluster-labels``, ``<plot_dir>/<object_name>/report_labels/index.html``
    (see :func:`image_clustering.report.label_report`)."""
    from .report import label_report

    return label_report(config, label_file)


def similar(config: Config, photo: Path, n: int = 12) -> list[tuple[str, float]]:
    """``imgclust similar``: the ``n`` photos of the collection nearest to ``photo`` in feature
    space (cosine similarity of the combined, L2-normalised vectors; :mod:`image_clustering.neighbours`).
    A photo of the collection uses its stored vector (and is not its own neighbour); any other
    photo goes through the networks of ``model.extractor`` first.

    Returns:
        (path relative to ``paths.image_dir``, cosine similarity in [-1, 1]) pairs, best first.

    Raises:
        ImgclustError: no feature vectors, missing weights, or ``photo`` unreadable.
    """
    from .images import open_rgb, square
    from .neighbours import most_similar

    paths, rows, _ = feature_rows(config)  # read a chunk at a time: the matrix may not fit in memory
    photo = Path(photo).resolve()
    try:
        rel = photo.relative_to(config.paths.image_dir.resolve()).as_posix()
    except ValueError:
        rel = None
    row = {p: i for i, p in enumerate(paths)}.get(rel)
    if row is not None:
        query = rows.take(np.array([row]))[0]
    else:
        if not photo.is_file():
            raise ImgclustError(f"{photo}: no such photo")
        blocks = []
        for name in config.model.extractor:
            load, _identity = _network(config, name)
            network = load()
            try:
                pixels = square(open_rgb(photo, network.input_size), network.input_size, config.model.resize)
            except Exception as exc:  # any decoder error: the user named an unreadable file
                raise ImgclustError(f"{photo}: cannot read it as an image ({type(exc).__name__}: {exc})") from None
            blocks.append(network.run(pixels[None])["features"])
        query = combine(blocks)[0]
    return [(paths[i], s) for i, s in most_similar(query, rows, n, exclude=row)]
