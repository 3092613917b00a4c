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
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import backend
from . import embedding as embedding_mod
from . import weights as weights_mod
from .atomic import atomic_path, atomic_write_csv, atomic_write_text, exclusive_lock, not_a_file, read_text
from .clustering import (
    GRAPH_CRITERIA,
    AutoKClustering,
    Clustering,
    KSweep,
    add_graph_modularity,
    graph_neighbors,
    knn_rows,
    sweep_k,
)
from .collection import EXCLUDED, OPS, Reconciled, open_collection
from .config import Config, read_limited
from .embedding import FeatureEmbedding, FeatureRows, clustering_space, combine
from .errors import ImgclustError
from .features import ExtractSummary, FeatureStore, extract_features, load_store
from .networks import NETWORKS, load_network
from .networks import source as weight_source
from .outputs import build_link_folders, cluster_id, folder_names, is_link_folder, read_labels, remove_link_tree, write_labels
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
from .progress import progress_bar

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
    from .run_log import record_step

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
    """Paths of ``paths`` whose photo no longer exists — or is no longer a file (a folder or a FIFO
    put in its place: nothing to link or read); warns about them and about photos whose size or
    modification time changed since their vectors were computed."""
    gone, changed = set(), []
    for image in store.images:
        if image.path not in paths:
            continue
        try:
            st = os.stat(config.paths.image_dir / image.path)
        except OSError:
            gone.add(image.path)
            continue
        if not stat.S_ISREG(st.st_mode):
            gone.add(image.path)
            continue
        if (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
            changed.append(image.path)
    if gone:
        logger.warning(f"warning: {len(gone)} photos were deleted since `imgclust extract`, or are no longer files "
            f"(e.g. {min(gone)}); "
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
                    embedding = cached["embedding"]
                    if embedding.shape != (len(vectors), config.model.reduced_dimension) or embedding.dtype.kind != "f":
                        raise ValueError(f"an embedding of shape {embedding.shape}")
                    return embedding
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged cache is recomputed
            logger.warning(f"{path}: unreadable cache, computing the embedding again")
    try:
        embedding = estimator.fit_transform(vectors)
    except ValueError as exc:
        raise ImgclustError(f"paths.image_dir: {exc} (feature vectors in {config.feature_dir}); add photos to "
                            f"{config.paths.image_dir} and run `imgclust extract`") from None
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
            if not isinstance(sweeps, dict):
                raise ValueError("no sweeps")
        except (ValueError, AttributeError):
            logger.warning(f"{layout.sweep_cache}: unreadable cache, computing the sweep again")
            sweeps = {}
        if key in sweeps and layout.sweep_labels(key).is_file():
            cached = _cached_sweep(sweeps[key], layout.sweep_labels(key), len(points), m.k_criterion)
            if cached is not None:
                return cached
    if not fit:
        return None
    k_top = max(1, min(m.k_max, len(points) - 1))
    logger.info(f"fitting k-means for k = 1..{k_top} on the {m.space} ({points.shape[1]} dimensions)")
    with progress_bar(total=k_top, unit="k", desc="find-k", enabled=progress) as bar, _compute(config):
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


def _cached_sweep(doc, labels_file: Path, n: int, criterion: str) -> KSweep | None:
    """A sweep from its cache entry and its per-k labels file; None (with a warning) when either is
    damaged: truncated, garbage, or not the shapes the entry says."""
    try:
        ks = np.array(doc["ks"], dtype=int)
        sweep = KSweep(ks, np.array(doc["inertia"], dtype=float), np.array(doc["silhouette"], dtype=float),
                       np.array(doc["davies_bouldin"], dtype=float), dict(doc["suggestions"]), criterion,
                       np.load(labels_file, mmap_mode="r"))
        if (ks.ndim != 1 or sweep.labels.shape != (len(ks), n) or sweep.labels.dtype.kind not in "iu"
                or any(len(a) != len(ks) for a in (sweep.inertia, sweep.silhouette, sweep.davies_bouldin))):
            raise ValueError("shapes differ")
        return sweep
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning(f"{labels_file}: damaged k sweep cache ({type(exc).__name__}), computing the sweep again")
        return None


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
    from .run_log import record_step

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
    tree; None when the run placed new photos into the existing clusters), the embedding
    (float32 (N, reduced_dimension); None when not written), and the output paths (written only
    when ``write``). ``labels`` number the clusters by size (0 the largest, -1 unclustered or
    excluded), as the plots show them; ``ids`` are the stable cluster ids the label files and
    folders use, and ``collection`` says how they came about
    (:class:`~image_clustering.collection.Reconciled`)."""

    k: int
    sizes: list[int]
    unclustered: int
    paths: list[str]
    labels: np.ndarray
    estimator: AutoKClustering | None
    embedding: np.ndarray | None
    label_files: tuple[Path, Path]
    link_root: Path
    link_kinds: dict[str, int]
    ids: np.ndarray | None = None
    collection: Reconciled | None = None

    @property
    def sweep(self) -> KSweep | None:
        return None if self.estimator is None else self.estimator.sweep_


def cluster(config: Config, progress: bool = True, write: bool = True, recluster: bool = False) -> ClusterResult:
    """``imgclust cluster``: keep the collection's clusters as it grows (:mod:`image_clustering.collection`).

    After the first run, photos added since the last run are placed into the existing clusters
    by their neighbours in the feature graph (a group of similar new photos with no home becomes
    a new cluster), photos gone leave, and every other photo keeps its cluster id. A full
    clustering — ``model.algorithm`` in ``model.space``: k-means or agglomerative at ``model.k``
    (``"auto"``: the suggested k of ``find-k``), agglomerative cut at ``model.sim``, or HDBSCAN —
    runs on the first run, with ``recluster``, when the clustering settings changed, or when the
    new photos outnumber the clustered ones; its clusters take the previous ids by overlap.
    Either way the user's edits (``imgclust edit``) are applied last.

    Unless ``write`` is False, writes ``<cluster_label_dir>/<object_name>.csv|json`` (stable ids
    and names), rebuilds ``<link_dir>/<object_name>/`` with one folder per cluster named after
    the cluster (:func:`~image_clustering.outputs.folder_names`; plus ``unclustered``), and draws
    ``clusters_<d>D.png``, one ``contact_sheet_<cluster>.png`` per cluster and, for
    agglomerative clustering, ``dendrogram.png``.

    Raises:
        ImgclustError: no feature vectors, ``model.k`` larger than the number of images, or a
            pair-distance method on too many images.
    """
    from .run_log import record_step

    start = time.perf_counter()
    with exclusive_lock(config.feature_dir, "cluster"):
        result = _cluster(config, progress, write, recluster)
        record_step(config.feature_dir, "cluster", time.perf_counter() - start)
        return result


def _photo_times(config: Config, paths: list[str]) -> np.ndarray:
    from .images import photo_time

    return np.array([photo_time(config.paths.image_dir / p) for p in paths])


# The model keys a partition depends on: when one changes, the next `cluster` clusters afresh.
CLUSTER_SETTINGS = ("extractor", "weights", "precision", "resize", "standardize", "pca_dimension", "reducer",
                    "reduced_dimension", "perplexity", "n_neighbors", "k", "k_max", "k_criterion", "space",
                    "algorithm", "graph_neighbors", "sim", "min_cluster_size", "time_weight", "linkage", "metric",
                    "n_init", "seed")


def _settings(model) -> str:
    return _key(**{name: getattr(model, name) for name in CLUSTER_SETTINGS})


def _cluster(config: Config, progress: bool, write: bool, recluster: bool = False) -> ClusterResult:
    m, layout = config.model, config.layout
    paths, vectors, key = _clustering_input(config)
    settings = _settings(m)
    with open_collection(layout.collection_db) as state:
        reason = "--recluster" if recluster else state.full_reason(paths, settings)
        previous = state.base()
        # The feature graph's rows of the photos without a cluster yet: what placing them needs —
        # in a full clustering only where a split edit must place photos it did not see (a first
        # run of a million photos would otherwise query every photo's neighbours for nothing).
        unplaced = np.array([i for i, p in enumerate(paths) if previous.get(p, -1) < 0], dtype=np.int64)
        if reason is not None and not any(e.op == "split" for e in state.edits(active_only=True)):
            unplaced = unplaced[:0]
        k_before = len({c for c in previous.values() if c >= 0}) or 1
        affinity = knn_rows(_graph_views(config, vectors), unplaced,
                            graph_neighbors(len(paths), k_before, m.graph_neighbors), m.seed)
        estimator, embedding, points = None, None, None
        if reason is None:
            placed = state.incremental(paths, affinity, settings)
            logger.info(f"{placed.added} new photos placed, {placed.removed} gone, {len(placed.new_clusters)} new "
                        f"clusters; `imgclust cluster --recluster` clusters afresh")
        else:
            estimator, embedding, points = _fit(config, paths, vectors, key, progress)
            placed = state.recluster(paths, estimator.labels_, affinity, settings, reason)
            logger.info(f"clustered afresh ({reason}); ids matched to the previous run's by overlap")
        for note in placed.notes:
            logger.warning(f"warning: {note}")
        if write and layout.tags_csv.is_file():
            placed.auto_names = state.set_auto_names(_tag_words(layout.tags_csv, paths, placed.ids))
    if write and embedding is None:
        embedding = embed(config, vectors, key)
        points, _ = _space(config, vectors, embedding, key)
    result = _clustering_of(placed.ids, points)
    label_files = (layout.labels_csv(), layout.labels_json())
    link_root, kinds = layout.link_root(), {}
    if write:
        kinds = _write_collection(config, placed, result, embedding)
        _cluster_plots(config, paths, result, estimator, embedding, progress)
    return ClusterResult(result.k, result.sizes.tolist(), result.unclustered, paths, result.labels, estimator,
                         embedding, label_files, link_root, kinds, placed.ids, placed)


def _fit(config: Config, paths, vectors, key, progress) -> tuple[AutoKClustering, np.ndarray, np.ndarray]:
    """A full clustering with ``model.algorithm``: (the fitted estimator, embedding, points)."""
    m = config.model
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
    if estimator.finds_k_itself():
        logger.info(f"{estimator.clustering_.k} clusters, {estimator.clustering_.unclustered} images unclustered")
    return estimator, embedding, points


def _clustering_of(ids: np.ndarray, points: np.ndarray | None) -> Clustering:
    """The partition of the stable ``ids`` numbered by size (0 the largest; unclustered and
    excluded -1), with centres and distances in ``points`` (NaN where there are none)."""
    from .clustering import by_size, renumber_by_size

    ids = np.asarray(ids)
    if points is not None:
        return by_size(points, ids)
    labels, k = renumber_by_size(ids)
    return Clustering(labels, np.full(len(ids), np.nan, dtype=np.float32), np.zeros((k, 0), dtype=np.float32))


def _tag_words(tags_csv: Path, paths: list[str], ids: np.ndarray) -> dict[int, str]:
    """Per cluster, its most frequent tag words (each photo's most probable label; those of at
    least a fifth of the tagged members, two at most), e.g. ``church + monastery``."""
    from collections import Counter

    from .tags import read_tag_table

    table = read_tag_table(tags_csv)
    top = {image: max(tags, key=tags.get) for image, tags in zip(table.images, table.tags) if tags}
    words = {}
    for c in sorted({int(c) for c in ids if c >= 0}):
        counts = Counter(top[p] for p, x in zip(paths, ids) if x == c and p in top)
        tagged = sum(counts.values())
        chosen = [w for w, n in counts.most_common(2) if n >= tagged / 5]
        if chosen:
            words[c] = " + ".join(chosen)
    return words


def _write_collection(config: Config, placed: Reconciled, result: Clustering, embedding: np.ndarray) -> dict[str, int]:
    """Write the label files and the named link folders of the collection's clusters."""
    m, layout = config.model, config.layout
    paths, ids = placed.paths, placed.ids
    by_id = {int(ids[np.flatnonzero(result.labels == c)[0]]): c for c in range(result.k)}
    labels = {c: placed.names.get(c) or placed.auto_names.get(c) for c in by_id}
    folders = {by_id[c]: name for c, name in folder_names(labels).items()}
    keep = np.flatnonzero(ids != EXCLUDED)  # excluded photos have no folder

    def write():
        # Labels are written once every link is made, just before the new link folder is swapped
        # in: a failure while linking leaves the previous labels and links, which agree.
        write_labels(config.paths.cluster_label_dir, m.object_name, paths, result, embedding, ids, placed.names)

    return build_link_folders(layout.link_root(), config.paths.image_dir, [paths[i] for i in keep],
                              result.labels[keep], result.k, m.link, before_swap=write, names=folders)


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


def _cluster_plots(config: Config, paths, result: Clustering, estimator: AutoKClustering | None, embedding,
                   progress: bool) -> None:
    m, layout = config.model, config.layout
    how = algorithm_name(m)
    ax = plot_scatter(embedding, result.labels, f"{m.object_name}: {how}, {result.k} clusters")
    save_figure(ax.figure, layout.plot(f"clusters_{m.reduced_dimension}D.png"))
    dendrogram = layout.plot("dendrogram.png")
    if estimator is not None and estimator.tree_ is not None:
        how = f"sim {m.sim}" if m.sim is not None else f"k = {estimator.clustering_.k}"
        ax = plot_dendrogram(estimator.tree_, estimator.clustering_.k, estimator.cut_,
                             f"{m.object_name}: {m.linkage} linkage ({m.metric}), {how}")
        save_figure(ax.figure, dendrogram)
    elif estimator is not None:
        dendrogram.unlink(missing_ok=True)  # from an earlier agglomerative run
    for old in layout.plot_dir.glob("contact_sheet_*.png"):  # a previous run may have had more clusters
        old.unlink()
    for c in progress_bar(range(-1, result.k), desc="contact sheets", unit="sheets", enabled=progress):
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
    _refresh_report(config, of_labels)
    return scores, out


def _refresh_report(config: Config, of_labels: bool) -> None:
    """Rewrite the report (of ``cluster-labels`` with ``of_labels``) where one was written before,
    so its Run tab shows what just changed; a report that cannot be made now is left as it was."""
    folder = config.plot_dir / ("report_labels" if of_labels else "report")
    if not (folder / "index.html").is_file():
        return
    try:
        logger.info(f"report updated: {tag_report(config) if of_labels else report(config)}")
    except ImgclustError as exc:
        logger.warning(f"{folder}: not updated ({exc})")


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
        remove_link_tree(stale)  # only what imgclust made: a user's files stay
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


def minimum_photos(model) -> tuple[int, str]:
    """The fewest photos ``imgclust run`` can group with these settings, and why."""
    need, why = embedding_mod.MIN_IMAGES, "t-SNE/UMAP and the k sweep need 3"
    if model.algorithm == "hdbscan" and (model.min_cluster_size or 5) > need:
        need, why = model.min_cluster_size or 5, f"model.min_cluster_size of HDBSCAN is {model.min_cluster_size or 5}"
    if isinstance(model.k, int) and model.k > need:
        need, why = model.k, f"model.k is {model.k}"
    return need, why


def check_enough_photos(config: Config) -> None:
    """Refuse a collection too small to group (:func:`minimum_photos`) before any weights are
    fetched or networks loaded: listing the folder takes a moment, extraction tens of seconds.

    Raises:
        ImgclustError: naming ``paths.image_dir``, the count and the minimum.
    """
    from .images import scan_images

    need, why = minimum_photos(config.model)
    found = len(scan_images(config.paths.image_dir)[0])
    if found < need:
        raise ImgclustError(f"paths.image_dir: {found} photo{'s' if found != 1 else ''} in {config.paths.image_dir}; "
                            f"grouping needs at least {need} ({why})")


def run(config: Config, progress: bool = True) -> RunResult:
    """``imgclust run``: download (if needed), extract, find-k, cluster, report; all steps share one
    Dask cluster when ``compute.scheduler`` is set."""
    check_enough_photos(config)
    download(config)
    with _compute(config):
        summary = extract(config, progress)
        found, clustered = find_k(config, progress), cluster(config, progress)
    return RunResult(summary, found, clustered, report(config, progress))


def report(config: Config, progress: bool = False, portable: bool = False) -> Path:
    """``imgclust report``: the interactive report, ``<plot_dir>/<object_name>/report/index.html``,
    of the collection as the last ``cluster`` left it (see :mod:`image_clustering.report`); with
    ``portable``, one to send to others, in ``report_portable/``: previews of the photos inside,
    no link to them and no absolute local path.

    Uses the cached embedding, the cached k sweep with its per-k labels (not fitted here: after
    ``cluster`` with a fixed k on many photos that would take minutes; run ``find-k`` for the k
    control), the label CSV of ``cluster`` (its clustering is the one shown first), the neighbours
    (computed once per feature store), the ``imgclust tag`` labels, ``failures.csv``, the run log
    and the evaluation scores when they exist.

    Raises:
        ImgclustError: no feature vectors yet, or neither a clustering nor a k sweep.
    """
    from .report import write_report
    from .report_edits import write_collection_script

    started = time.perf_counter()
    with exclusive_lock(config.feature_dir, "report"):
        content = _report_content(config, progress)
        index = write_report(config.plot_dir / ("report_portable" if portable else "report"), content,
                             cache_dir=config.feature_dir, portable=portable)
    try:
        placed = clusters(config)
    except ImgclustError:  # no clusters yet (find-k only): the page shows no edit panel
        placed = None
    write_collection_script(index.parent, placed)
    logger.info(f"report: {len(content.paths)} photos in {time.perf_counter() - started:.1f} s")
    return index


def _report_content(config: Config, progress: bool):
    """What the collection report shows, read from the caches and result files (a
    :class:`~image_clustering.report.ReportContent`)."""
    from .features import read_failures
    from .neighbours import cached_neighbours
    from .report import ReportContent, collection_clusterings, config_doc, photo_dates, report_sample, run_section, tag_words
    from .run_log import read_run_log

    m = config.model
    paths, vectors, key, embedding, points, sweep = current_sweep(config, progress, fit=False)
    every = set(paths)
    shown = report_sample(len(paths), m.seed)
    if shown is not None:
        paths, embedding, points = [paths[i] for i in shown], embedding[shown], points[shown]
        vectors = vectors.take(shown) if isinstance(vectors, FeatureRows) else vectors[shown]
        key += f"-sample{len(shown)}-{m.seed}"
    label_csv, saved = config.layout.labels_csv(), None
    if label_csv.is_file():
        saved = read_labels(label_csv)
        if set(saved) != every:
            logger.info(f"report: {label_csv} is older than the feature store; run `imgclust cluster` to show it")
            saved = None
    if sweep is None:
        logger.info("report: no k sweep of this clustering space yet; run `imgclust find-k` for the k control")
    reducer = {"tsne": "t-SNE", "umap": "UMAP"}.get(m.reducer, m.reducer)
    space = {"embedding": f"{m.reduced_dimension}-D {reducer} map", "pca": f"{m.pca_dimension}-D PCA"}
    clusterings, note = collection_clusterings(points, paths, saved, algorithm_name(m), sweep, shown,
                                               space.get(m.space, "feature space"))
    if not clusterings:
        raise ImgclustError(f"{config.feature_dir}: nothing to show yet; run `imgclust find-k` or `imgclust cluster`")
    try:
        table = _tag_table(config, None)
        tags = tag_words(table.images, table.tags, paths)
    except ImgclustError as exc:  # no tags yet, or a damaged table: the report goes without words
        logger.info(f"report: tag words left out ({exc})")
        tags = None
    failures = [(path, row.get("reason", "")) for path, row in read_failures(config.layout.failures_csv).items()]
    run = run_section(len(every), None if shown is None else len(shown), failures, read_run_log(config.feature_dir),
                      config_doc(config), _read_json(config.layout.evaluation_json()))
    return ReportContent(config.paths.image_dir, paths, embedding, clusterings, sweep,
                         cached_neighbours(config.feature_dir, key, vectors), tags, run, m.object_name, note,
                         photo_dates(config.paths.image_dir, paths, config.feature_dir))


def _read_json(path: Path) -> dict | None:
    """The scores ``imgclust evaluate`` wrote in ``path`` (only their text and number entries: what
    the page can show), or None when there are none, or with a warning when the file is damaged."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            return {str(k): v for k, v in doc.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    except (OSError, ValueError):
        pass
    logger.warning(f"{path}: unreadable scores, left out of the report; run `imgclust evaluate` again")
    return None


def tag_report(config: Config, label_file: Path | None = None) -> Path:
    """The report of ``cluster-labels``, ``<plot_dir>/<object_name>/report_labels/index.html``
    (see :func:`image_clustering.report.label_content`).

    Raises:
        ImgclustError: no label table, or no ``cluster-labels`` result yet.
    """
    from .report import ReportRun, config_doc, label_content, write_report
    from .tags import local_photos

    started = time.perf_counter()
    m = config.model
    result_file = config.layout.labels_json(of_tags=True)
    if not result_file.is_file():
        raise ImgclustError(f"{result_file}: no label clustering yet; run `imgclust cluster-labels`")
    table = _tag_table(config, label_file)
    run = ReportRun({"images in the label table": len(table.images),
                     "distinct labels": len({w for words in table.tags for w in words})}, [], config_doc(config), {},
                    _read_json(config.layout.evaluation_json(of_tags=True)))
    content = label_content(table, json.loads(result_file.read_text())["k"], m.label_k_max, m.perplexity, m.seed,
                            config.paths.image_dir,
                            [config.layout.plot("label_dendrogram.png"), config.layout.plot("label_k.png")],
                            run, f"{m.object_name}: label words")
    local = local_photos(config.paths.image_dir, table.images).paths  # rows outside image_dir: never opened
    content.openable = [i in local for i in range(len(table.images))]
    index = write_report(config.plot_dir / "report_labels", content, cache_dir=config.feature_dir)
    logger.info(f"label report: {len(table.images)} photos in {time.perf_counter() - started:.1f} s")
    return index


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
        problem = not_a_file(photo)
        if problem:  # a FIFO or /dev/zero is never opened: reading it would wait, or never end
            raise ImgclustError(f"{photo}: {'no such photo' if problem == 'missing' else problem}")
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


@dataclass
class EditResult:
    """What ``imgclust edit …`` did: lines to print, the clusters after it (None for ``log``) and
    whether the label files and link folders were rewritten."""

    lines: list[str]
    collection: Reconciled | None = None
    rewritten: bool = False


def edit(config: Config, op: str, **args) -> EditResult:
    """``imgclust edit OP``: one correction of the collection's clusters, kept in its database
    (:class:`~image_clustering.collection.Collection`) and respected by every later ``cluster``
    until undone; then the label files and link folders are rewritten from it.

    Args:
        op: ``rename`` (cluster, name), ``move`` (photo, cluster), ``merge`` (into, other),
            ``split`` (cluster, k), ``exclude`` (photo), ``undo``, ``log``, or ``apply``
            (file: a JSON list of edits, see :meth:`~image_clustering.collection.Collection.apply`).
            A cluster is its id or its name; a photo its path as the labels CSV writes it.

    Raises:
        ImgclustError: no clusters yet, an unknown cluster or photo, nothing to undo, or an
            unreadable edit file.
    """
    with exclusive_lock(config.feature_dir, "edit"), open_collection(config.layout.collection_db) as state:
        if op == "log":
            return EditResult([e.line() for e in state.edits()] or ["no edits yet"])
        lines: list[str] = []
        paths = views = None  # only a split needs the features
        if op in ("split", "apply"):
            paths, vectors, _ = _clustering_input(config)
            views = _graph_views(config, vectors)
        if op in OPS:
            state.do({"op": op, **args}, paths, views, config.model.seed)
        elif op == "undo":
            lines.append(f"undone: {state.undo().line()}")
        elif op == "apply":
            doc = _edit_file(Path(args["file"]))
            lines += [f"skipped: {line}" for line in state.apply(doc, paths, views, config.model.seed)]
            lines.append(f"applied {len(doc)} edits from {args['file']}")
        else:
            raise ImgclustError(f"edit: unknown operation {op!r}")
        placed = state.current()
        placed.auto_names = state.auto_names()
        lines += [f"note: {n}" for n in placed.notes]
    rewritten = _rewrite_outputs(config, placed)
    if not rewritten:
        lines.append("the feature store changed since the last `imgclust cluster`: run it to place the new photos "
                     "and rewrite the labels and folders (the edit is kept)")
    return EditResult(lines, placed, rewritten)


def clusters(config: Config) -> Reconciled:
    """The collection's clusters as the last ``cluster`` or edit left them (read only; what
    ``imgclust serve`` shows beside the report).

    Raises:
        ImgclustError: no clusters yet.
    """
    db = config.layout.collection_db
    if not db.is_file():  # opening would create an empty database
        raise ImgclustError(f"{db}: no clusters yet; run `imgclust cluster` first")
    with open_collection(db) as state:
        if state.is_empty():
            raise ImgclustError(f"{db}: no clusters yet; run `imgclust cluster` first")
        placed = state.current()
        placed.auto_names = state.auto_names()
    return placed


EDIT_FILE_BYTES = 64 << 20  # an edit list is a few hundred bytes an edit: 64 MiB is ~100,000 edits


def _edit_file(path: Path) -> list[dict]:
    try:
        doc = json.loads(read_limited(path, EDIT_FILE_BYTES, "an edit list is a JSON file of edits").decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ImgclustError(f"{path}: not a readable JSON edit list ({exc})") from None
    if isinstance(doc, dict):  # the report's export: {"edits": [...]}
        doc = doc.get("edits")
    if not isinstance(doc, list):
        raise ImgclustError(f"{path}: expected a JSON list of edits (or {{\"edits\": [...]}})")
    return doc


def _rewrite_outputs(config: Config, placed: Reconciled) -> bool:
    """Label files and link folders from the stored clusters (no plots, nothing re-clustered);
    False when the photos with features are no longer those the clusters were made of."""
    paths, vectors, key = _clustering_input(config)
    if paths != placed.paths:
        return False
    embedding = embed(config, vectors, key)
    points, _ = _space(config, vectors, embedding, key)
    _write_collection(config, placed, _clustering_of(placed.ids, points), embedding)
    return True


def _non_keepers(config: Config) -> dict[str, str]:
    from .duplicates_outputs import read_non_keepers

    return read_non_keepers(config.layout.duplicates_csv)


@dataclass
class OrganiseResult:
    """What ``imgclust organise`` planned (and, unless a dry run or an undo, did)."""

    plan: object | None
    done: dict[str, int]
    plan_file: Path | None


def _output_folders(config: Config) -> dict[str, Path]:
    """This collection's output folders (what ``organise --to`` must stay out of)."""
    layout = config.layout
    return {"link folder": layout.link_root(), "label-words link folder": layout.link_root(of_tags=True),
            "duplicates link folder": layout.duplicates_links, "plot folder": layout.plot_dir,
            "feature store": layout.feature_dir}


def organise(config: Config, to: Path | None = None, mode: str = "copy", dry_run: bool = False,
             undo: bool = False, keepers_only: bool = False) -> OrganiseResult:
    """``imgclust organise``: lay the photos out under ``to`` as one folder per cluster, named
    as the link folders (:func:`~image_clustering.outputs.folder_names`), as copies (default:
    editing them never changes a photo), hard links or symbolic links; re-running after edits
    applies only the difference. With ``dry_run`` only the plan is written
    (:attr:`Layout.organise_plan`) and nothing else; ``undo`` removes exactly what earlier runs
    created under ``to`` (every target folder when ``to`` is None). See :mod:`image_clustering.organise`.
    With ``keepers_only`` the photos the last ``imgclust duplicates`` found to duplicate a keeper
    (:attr:`Layout.duplicates_csv`) are left out: ``skip`` steps in the plan.

    Raises:
        ImgclustError: no clusters yet, ``to`` overlaps ``paths.image_dir``, a bad mode, or (with
            ``keepers_only``) the duplicates table missing or damaged.
    """
    from . import organise as org

    with exclusive_lock(config.feature_dir, "organise"), open_collection(config.layout.collection_db) as state:
        if undo:
            roots = [str(org.check_root(to, config.paths.image_dir))] if to else state.organised_roots()
            done: dict[str, int] = {}
            for root in roots:
                for key, n in org.undo(root, state).items():
                    done[key] = done.get(key, 0) + n
            return OrganiseResult(None, done, None)
        if to is None:
            raise ImgclustError("organise: --to DIR is needed (or --undo)")
        if state.is_empty():
            raise ImgclustError(f"{config.layout.collection_db}: no clusters yet; run `imgclust cluster` first")
        root = org.check_root(to, config.paths.image_dir, _output_folders(config))
        placed = state.current()
        names, auto = placed.names, state.auto_names()
        folders_of = folder_names({c: names.get(c) or auto.get(c) for c in placed.cluster_ids()})
        left_out = _non_keepers(config) if keepers_only else {}
        folders: dict[str, list[str]] = {}
        for p, c in zip(placed.paths, placed.ids.tolist()):
            if c != EXCLUDED and p not in left_out:
                folders.setdefault(folders_of.get(c, "unclustered"), []).append(p)
        steps = org.plan(folders, config.paths.image_dir, root, mode, state.journal(str(root)))
        steps.steps += [org.Step("skip", p, note=f"a duplicate of {left_out[p]}, its group's keeper")
                        for p in placed.paths if p in left_out]
        atomic_write_text(config.layout.organise_plan, json.dumps({**steps.doc(), "dry_run": dry_run}, indent=1,
                                                                   ensure_ascii=False))
        done = {} if dry_run else org.apply(steps, state)
        return OrganiseResult(steps, done, config.layout.organise_plan)


@dataclass
class DuplicatesResult:
    """What ``imgclust duplicates`` found and wrote.

    Attributes:
        paths: every photo with feature vectors (relative to ``paths.image_dir``).
        groups: :class:`~image_clustering.duplicates.DuplicateGroup` per group, keeper first.
        outliers: rows of the most unusual photos, most unusual first; ``scores`` float32 (N,).
        files: the CSV, JSON, outlier CSV and link folder written.
    """

    paths: list[str]
    groups: list
    outliers: list[int]
    scores: np.ndarray
    files: tuple[Path, Path, Path, Path]


def duplicates(config: Config, progress: bool = True) -> DuplicatesResult:
    """``imgclust duplicates``: groups of duplicate photos down to the grade ``duplicates.grade``
    (:mod:`image_clustering.duplicates`), each with a suggested keeper; writes
    ``<cluster_label_dir>/<object_name>_duplicates.csv|json``, ``<object_name>_outliers.csv`` (the
    50 most unusual photos) and ``<link_dir>/<object_name>_duplicates/`` (a folder of links per
    group). Photos are only read; nothing is deleted or moved.

    Raises:
        ImgclustError: no feature vectors, or the link folder exists and imgclust did not make it.
    """
    from .duplicates import FACTS_CACHE, OUTLIER_K, cached_facts, describe_groups, find_duplicates, outlier_scores
    from .duplicates_outputs import link_duplicates, write_duplicates, write_outliers, write_report_data

    layout, grade = config.layout, config.duplicates.grade
    with exclusive_lock(config.feature_dir, "duplicates"):
        paths, vectors, _key = features(config)
        files = [config.paths.image_dir / p for p in paths]
        cache = config.feature_dir / FACTS_CACHE  # hashes, sizes, sharpness, times: read once per photo version
        found, index, sim = find_duplicates(vectors, lambda rows: cached_facts(cache, files, paths, rows), grade,
                                            seed=config.model.seed)
        del vectors
        groups = describe_groups(found, paths)
        scores = outlier_scores(sim)
        nearest = index[:, 0] if index.shape[1] else np.full(len(paths), -1)

        def tables():
            write_duplicates(layout.duplicates_csv, layout.duplicates_json, paths, groups, grade)

        link_duplicates(layout.duplicates_links, config.paths.image_dir, paths, groups, config.model.link,
                        before_swap=tables)
        top = write_outliers(layout.outliers_csv, paths, scores, nearest)
        write_report_data(layout.plot_dir / "report", config.paths.image_dir, paths, groups, grade, top, scores,
                          nearest, OUTLIER_K)
    logger.info(f"{len(groups)} duplicate groups ({sum(len(g.members) for g in groups)} photos) down to {grade!r}")
    return DuplicatesResult(paths, groups, top, scores,
                            (layout.duplicates_csv, layout.duplicates_json, layout.outliers_csv, layout.duplicates_links))
