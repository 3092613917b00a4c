"""The library API behind the command-line tool: one function per command, each taking a validated
:class:`~image_clustering.config.Config`. Data flows one way: images → features → embedding →
clusters → outputs; each step reuses what the previous run left when its inputs did not change."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import weights as weights_mod
from .clustering import KSweep, Clustering, cluster_hdbscan, cluster_hierarchical, cluster_kmeans, sweep_k
from .config import Config
from .embedding import clustering_space, combine, embed, space_key
from .errors import ImgclustError
from .features import ExtractSummary, FeatureStore, extract_features, load_store
from .atomic import atomic_path, atomic_write_csv, atomic_write_text, exclusive_lock
from .outputs import build_link_folders, cluster_id, read_labels, write_labels
from .plots import (contact_sheet, plot_boxed_dendrogram, plot_dendrogram, plot_elbow, plot_k_criteria, plot_label_k,
                    plot_scatter)

SWEEP_CACHE = "find_k.json"


def download(config: Config, source: str | None = None, force: bool = False, log=print,
             networks: tuple[str, ...] | None = None) -> list[dict]:
    """``imgclust download``: fetch and verify the weights of each network in ``model.extractor``
    (or ``networks``) into ``paths.model_dir``, from ``model.weights`` unless ``source`` is given.

    Returns:
        One weights manifest per network.

    Raises:
        ImgclustError: nothing could be fetched or verified.
    """
    networks = networks or config.model.extractor
    return [weights_mod.download_weights(n, source or config.model.weights[n], config.paths.model_dir, force, log)
            for n in networks]


def _network(config: Config, name: str):
    """(loader, identity) of one network, from the weights already in ``paths.model_dir``."""
    manifest = weights_mod.load_manifest(config.paths.model_dir, name, verify=False)
    if manifest is None:
        raise ImgclustError(f"paths.model_dir: no {name} weights in {config.paths.model_dir}; run `imgclust download`")
    wanted = config.model.weights[name]
    if wanted in weights_mod.NAMED_SOURCES[name] and manifest["source"] != wanted:
        raise ImgclustError(f"model.weights: {name} is set to {wanted!r} but {config.paths.model_dir} holds "
                            f"{manifest['source']!r} weights; run `imgclust download`")
    identity = {"network": name, "source": manifest["source"], "sha256": manifest["sha256"]}

    def load():
        from .extractor import load_network

        return load_network(weights_mod.load_manifest(config.paths.model_dir, name, verify=True))

    return load, identity


def extract(config: Config, progress: bool = True, networks: tuple[str, ...] | None = None) -> ExtractSummary:
    """``imgclust extract``: bring the feature stores of ``model.extractor`` (or ``networks``) up to
    date with ``paths.image_dir``, all networks in one pass.

    Raises:
        ImgclustError: no weights, missing image folder, or no images.
    """
    from .report import record_step

    networks = networks or config.model.extractor
    summary = extract_features(config, {n: _network(config, n) for n in networks}, progress)
    record_step(config.feature_dir, "extract", summary.seconds, computed=summary.computed, reused=summary.reused,
                removed=summary.removed, failed=summary.failed)
    return summary


def _stores(config: Config, networks: tuple[str, ...]) -> list[FeatureStore]:
    stores = []
    for name in networks:
        store = load_store(config.feature_dir / name)
        if store is None or len(store.images) == 0:
            raise ImgclustError(f"paths.vector_dir: no {name} feature vectors in {config.feature_dir}; "
                                "run `imgclust extract`")
        stores.append(store)
    return stores


def _aligned(stores: list[FeatureStore]) -> tuple[list[str], list[np.ndarray]]:
    """Paths present in every store, and each store's rows for them in that order."""
    common = sorted(set.intersection(*(set(s.paths) for s in stores)))
    blocks = []
    for store in stores:
        if store.paths == common:
            blocks.append(store.vectors)
        else:
            row = {p: i for i, p in enumerate(store.paths)}
            blocks.append(np.asarray(store.vectors)[[row[p] for p in common]])
    return common, blocks


def features(config: Config) -> tuple[list[str], np.ndarray, str]:
    """The feature matrix clustering works on.

    Returns:
        (paths relative to ``image_dir``, float32 (N, D) vectors — one network's as stored, several
        networks' L2-normalised and concatenated —, a key that changes whenever they do).

    Raises:
        ImgclustError: a network in ``model.extractor`` has no vectors yet.
    """
    stores = _stores(config, config.model.extractor)
    paths, blocks = _aligned(stores)
    return paths, combine(blocks), "+".join(s.token for s in stores)


def _write_k_table(sweep: KSweep, path: Path) -> None:
    def score(value):
        return "" if np.isnan(value) else f"{value:.6f}"

    atomic_write_csv(path, ["k", "inertia", "silhouette", "davies_bouldin"],
                     ([int(k), f"{inertia:.6g}", score(sil), score(db)]
                      for k, inertia, sil, db in zip(sweep.ks, sweep.inertia, sweep.silhouette, sweep.davies_bouldin)))


SWEEPS_KEPT = 8  # sweeps cached per collection, so switching space or parameters back is free


def sweep_labels_path(config: Config, key: str) -> Path:
    """The ``.npy`` beside ``find_k.json`` holding the k-means labels of the sweep cached under
    ``key`` (int16 (K, N), row i for the i-th k)."""
    import hashlib

    return config.feature_dir / f"find_k.{hashlib.sha1(key.encode()).hexdigest()[:16]}.labels.npy"


def _sweep(config: Config, features_key: str, points: np.ndarray, progress: bool, log, fit: bool = True) -> KSweep | None:
    """The k sweep over the clustering space's ``points``, from cache when they and the parameters
    are unchanged (the last :data:`SWEEPS_KEPT` sweeps of the collection are kept, each with its
    per-k labels in :func:`sweep_labels_path`); None when it is not cached and not ``fit``."""
    m = config.model
    # "sweep4": bump when the cached fields change (4: per-k labels beside the JSON)
    key = f"sweep4-{space_key(features_key, m)}-{m.k_max}-{m.n_init}-{m.seed}"
    cache = config.feature_dir / SWEEP_CACHE
    sweeps = {}
    if cache.is_file():
        sweeps = json.loads(cache.read_text()).get("sweeps", {})
        labels_file = sweep_labels_path(config, key)
        if key in sweeps and labels_file.is_file():
            doc = sweeps[key]
            return KSweep(np.array(doc["ks"]), np.array(doc["inertia"]), np.array(doc["silhouette"], dtype=float),
                          np.array(doc["davies_bouldin"], dtype=float), doc["suggestions"], m.k_criterion,
                          np.load(labels_file, mmap_mode="r"))
    if not fit:
        return None
    k_top = max(1, min(m.k_max, len(points) - 1))
    log(f"fitting k-means for k = 1..{k_top} on the {m.space} ({points.shape[1]} dimensions)")
    with tqdm(total=k_top, unit="k", desc="find-k", disable=not progress or None) as bar:
        sweep = sweep_k(points, m.k_max, m.n_init, m.seed, progress=lambda k: bar.update(1), criterion=m.k_criterion)
    sweeps.pop(key, None)  # re-inserted last: the newest
    sweeps[key] = {"ks": sweep.ks.tolist(), "inertia": sweep.inertia.tolist(),
                   "silhouette": [None if np.isnan(s) else s for s in sweep.silhouette],
                   "davies_bouldin": [None if np.isnan(d) else d for d in sweep.davies_bouldin],
                   "suggestions": sweep.suggestions}
    kept = dict(list(sweeps.items())[-SWEEPS_KEPT:])  # insertion order: the newest last
    with atomic_path(sweep_labels_path(config, key)) as tmp:
        np.save(tmp, sweep.labels)
    atomic_write_text(cache, json.dumps({"sweeps": kept}))
    wanted = {sweep_labels_path(config, k).name for k in kept}
    for old in config.feature_dir.glob("find_k.*.labels.npy"):  # labels of sweeps no longer cached
        if old.name not in wanted:
            old.unlink(missing_ok=True)
    return sweep


def current_sweep(config: Config, progress: bool = False, log=print, fit: bool = True) -> tuple[
        list[str], np.ndarray, str, np.ndarray, np.ndarray, KSweep | None]:
    """The collection as ``find-k`` sees it, from the caches where they are current.

    Returns:
        (paths, float32 (N, D) features, their key (see :func:`features`), float32 (N, d)
        embedding, the clustering-space points (N, d'), the :class:`KSweep` with its per-k ``labels``
        — None when no sweep of these points is cached and ``fit`` is false).

    Raises:
        ImgclustError: no feature vectors yet.
    """
    paths, vectors, key = features(config)
    embedding = embed(vectors, key, config.model, config.feature_dir, log)
    points = clustering_space(vectors, embedding, config.model)
    return paths, vectors, key, embedding, points, _sweep(config, key, points, progress, log, fit)


@dataclass
class FindKResult:
    """``suggested_k`` and the files ``find-k`` wrote."""

    sweep: KSweep
    suggested_k: int
    files: list[Path]


def find_k(config: Config, progress: bool = True, log=print) -> FindKResult:
    """``imgclust find-k``: embed the features, sweep k-means over k = 1..min(k_max, N−1) in the
    clustering space (``model.space``), write the
    elbow plot ``cost_<d>D.png``, the embedding scatter ``embedding_<d>D.png`` and ``k_scores.csv``
    into ``<plot_dir>/<object_name>/``, and ``k_criteria.png`` with every criterion's curve and pick;
    the suggested k follows ``model.k_criterion``.

    Raises:
        ImgclustError: no feature vectors yet, or fewer than 3.
    """
    from .report import record_step

    start = time.perf_counter()
    with exclusive_lock(config.feature_dir, "find-k"):
        result = _find_k(config, progress, log)
        record_step(config.feature_dir, "find-k", time.perf_counter() - start)
    return result


def _find_k(config: Config, progress: bool, log) -> FindKResult:
    paths, vectors, key = features(config)
    embedding = embed(vectors, key, config.model, config.feature_dir, log)
    sweep = _sweep(config, key, clustering_space(vectors, embedding, config.model), progress, log)
    d, name = config.model.reduced_dimension, config.model.object_name
    out = config.plot_dir
    files = [out / f"cost_{d}D.png", out / f"embedding_{d}D.png", out / "k_scores.csv", out / "k_criteria.png"]
    space = f"{config.model.reducer} embedding" if config.model.space == "embedding" else config.model.space
    plot_elbow(sweep, files[0], f"{name}: k-means on the {space} ({len(paths)} images)")
    plot_scatter(embedding, files[1], f"{name}: {config.model.reducer} embedding of {len(paths)} images")
    _write_k_table(sweep, files[2])
    plot_k_criteria(sweep, files[3], f"{name}: choosing k ({len(paths)} images)")
    return FindKResult(sweep, sweep.suggested_k, files)


@dataclass
class ClusterResult:
    """What ``cluster`` produced: k (clusters, the unclustered images not counted), per-cluster
    sizes (cluster 0 largest), the images left unclustered, and the output paths."""

    k: int
    sizes: list[int]
    unclustered: int
    paths: list[str]
    labels: np.ndarray
    label_files: tuple[Path, Path]
    link_root: Path
    link_kinds: dict[str, int]


def cluster(config: Config, progress: bool = True, log=print) -> ClusterResult:
    """``imgclust cluster``: cluster the images with ``model.algorithm`` in ``model.space`` —
    k-means or agglomerative at ``model.k`` (``"auto"``: the suggested k of ``find-k``),
    agglomerative cut at ``model.sim``, or HDBSCAN —; writes
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
        result = _cluster(config, progress, log)
        record_step(config.feature_dir, "cluster", time.perf_counter() - start)
    return result


def _photo_times(config: Config, paths: list[str]) -> np.ndarray:
    from .images import photo_time

    return np.array([photo_time(config.paths.image_dir / p) for p in paths])


def _run_algorithm(config: Config, points: np.ndarray, paths: list[str], k: int | None) -> Clustering:
    m = config.model
    times = _photo_times(config, paths) if m.time_weight > 0 else None
    dendrogram = config.plot_dir / "dendrogram.png"
    try:
        if m.algorithm == "kmeans":
            result = cluster_kmeans(points, k, m.n_init, m.seed)
        elif m.algorithm == "hdbscan":
            result = cluster_hdbscan(points, m.min_cluster_size or 5, m.metric, times, m.time_weight)
        else:
            result, tree, cut = cluster_hierarchical(points, m.linkage, m.metric, k=k, sim=m.sim,
                                                     min_size=m.min_cluster_size or 2, times=times, alpha=m.time_weight)
            how = f"sim {m.sim}" if m.sim is not None else f"k = {k}"
            plot_dendrogram(tree, result.k, dendrogram, f"{m.object_name}: {m.linkage} linkage ({m.metric}), {how}", cut)
            return result
    except ValueError as exc:
        raise ImgclustError(f"model.algorithm: {exc}") from None
    dendrogram.unlink(missing_ok=True)  # from an earlier agglomerative run
    return result


def _cluster(config: Config, progress: bool, log) -> ClusterResult:
    paths, vectors, key = features(config)
    m = config.model
    embedding = embed(vectors, key, m, config.feature_dir, log)
    points = clustering_space(vectors, embedding, m)
    n = len(paths)
    k = None
    if m.algorithm == "hdbscan" or m.sim is not None:
        pass  # the method finds the number of clusters
    elif m.k == "auto":
        k = _sweep(config, key, points, progress, log).suggested_k
        log(f"k = {k} (suggested by {m.k_criterion})")
    else:
        k = m.k
        if k > n:
            raise ImgclustError(f"model.k: {k} clusters asked for but only {n} images have feature vectors")
    result = _run_algorithm(config, points, paths, k)
    if k is None:
        log(f"{result.k} clusters, {result.unclustered} images unclustered")
    label_files = write_labels(config.paths.cluster_label_dir, m.object_name, paths, result, embedding)
    link_root = config.paths.link_dir / m.object_name
    kinds = build_link_folders(link_root, config.paths.image_dir, paths, result.labels, result.k, m.link)
    _cluster_plots(config, paths, result, embedding, progress)
    return ClusterResult(result.k, result.sizes.tolist(), result.unclustered, paths, result.labels, label_files,
                         link_root, kinds)


def _cluster_plots(config: Config, paths, result: Clustering, embedding, progress: bool) -> None:
    out, d, m = config.plot_dir, config.model.reduced_dimension, config.model
    how = {"kmeans": "k-means", "agglomerative": f"{m.linkage} linkage", "hdbscan": "HDBSCAN"}[m.algorithm]
    plot_scatter(embedding, out / f"clusters_{d}D.png", f"{m.object_name}: {how}, {result.k} clusters", result.labels)
    for old in out.glob("contact_sheet_*.png"):  # a previous run may have had more clusters
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
        contact_sheet([config.paths.image_dir / paths[i] for i in members],
                      out / f"contact_sheet_{cluster_id(c, result.k)}.png", title)


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


def tag(config: Config, progress: bool = True, log=print) -> Path:
    """``imgclust tag``: up to ``model.tag_count`` ImageNet labels per image with their softmax
    probabilities (at least ``model.tag_min_score``), from EfficientNet-Lite0's classifier; the
    labels are computed in the same pass as the feature vectors and reused afterwards.

    Returns:
        ``<cluster_label_dir>/<object_name>_tags.csv``.

    Raises:
        ImgclustError: weights or class names could not be had, or no images.
    """
    lite0 = "efficientnet_lite0"
    download(config, log=log, networks=(lite0,))
    class_names = weights_mod.download_class_names(config.paths.model_dir, log)
    log(extract(config, progress, tuple(dict.fromkeys((*config.model.extractor, lite0)))).line())
    store = _stores(config, (lite0,))[0]
    out = config.paths.cluster_label_dir / f"{config.model.object_name}_tags.csv"
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

    name = config.model.object_name + ("_labels" if of_labels else "")
    labels_csv = config.paths.cluster_label_dir / f"{name}.csv"
    if not labels_csv.is_file():
        raise ImgclustError(f"{labels_csv}: no clustering yet; run `imgclust {'cluster-labels' if of_labels else 'cluster'}`")
    clusters = read_labels(labels_csv)
    paths = list(clusters)
    truth = csv_truth(truth_csv, paths) if truth_csv else folder_truth(paths)
    scores = score(truth, list(clusters.values()))
    scores["truth"] = str(truth_csv) if truth_csv else "first folder level"
    out = config.paths.cluster_label_dir / f"{name}_evaluation.json"
    atomic_write_text(out, json.dumps(scores, indent=1))
    return scores, out


def _label_table(config: Config, label_file: Path | None):
    from .labels import read_label_table

    path = Path(label_file) if label_file else config.label_file
    if not path.is_file():
        hint = ("run `imgclust tag` first, or set paths.label_file" if path == config.label_file
                else "check the path")
        raise ImgclustError(f"{path}: no label table; {hint}")
    return read_label_table(path)


@dataclass
class LabelClusterResult:
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


def cluster_labels(config: Config, label_file: Path | None = None, log=print) -> LabelClusterResult:
    """``imgclust cluster-labels``: cluster the images by their label words (Jaccard similarity,
    Ward linkage; :mod:`image_clustering.labels`) from ``label_file`` (default
    :attr:`Config.label_file`); k = ``model.label_k`` or, with ``"auto"``, the L-method knee of the
    separation curve over k = 2..``model.label_k_max``. Writes
    ``<cluster_label_dir>/<object_name>_labels.csv|json``, links the images found under
    ``paths.image_dir`` into ``<link_dir>/<object_name>_labels/<cluster>_<size>/``, and plots
    ``label_k.png`` and ``label_dendrogram.png`` (clusters boxed).

    Raises:
        ImgclustError: no or malformed label table, more than 20,000 images, or k above N.
    """
    from .labels import choose_k, jaccard_similarity, label_clustering, label_matrix, ward_tree

    m = config.model
    table = _label_table(config, label_file)
    n = len(table.images)
    if n < 3:
        raise ImgclustError(f"{label_file or config.label_file}: {n} images; label clustering needs at least 3")
    x, vocabulary = label_matrix(table)
    log(f"{n} images, {len(vocabulary)} distinct labels: Jaccard similarity, Ward linkage")
    sim = jaccard_similarity(x)
    tree = ward_tree(sim)
    choice = choose_k(sim, tree, 2, m.label_k_max)
    if m.label_k == "auto":
        k = choice.knee
        log(f"k = {k} (L-method knee of the separation curve, k = 2..{choice.ks[-1]})")
    elif m.label_k > n:
        raise ImgclustError(f"model.label_k: {m.label_k} clusters asked for but the label table has {n} images")
    else:
        k = m.label_k
    result = label_clustering(sim, tree, k)
    name = f"{m.object_name}_labels"
    label_files = write_labels(config.paths.cluster_label_dir, name, table.images, result, np.empty((n, 0)))
    local = [i for i, image in enumerate(table.images) if (config.paths.image_dir / image).is_file()]
    link_root = None
    if local:
        link_root = config.paths.link_dir / name
        build_link_folders(link_root, config.paths.image_dir, [table.images[i] for i in local], result.labels[local],
                           k, m.link)
    if len(local) < n:
        log(f"{n - len(local)} images of the label table are not files under {config.paths.image_dir}: not linked")
    plot_label_k(choice.ks, choice.separation, choice.knee, config.plot_dir / "label_k.png",
                 f"{m.object_name}: number of label clusters ({n} images)")
    plot_boxed_dendrogram(tree, result.labels, config.plot_dir / "label_dendrogram.png",
                          f"{m.object_name}: Ward clustering of label sets, k = {k}")
    return LabelClusterResult(k, choice.knee, table.images, result.labels, result.sizes.tolist(), len(vocabulary),
                              label_files, link_root, len(local))


def _clusters_by_image(config: Config) -> dict[str, int] | None:
    """The latest clustering's cluster per image: by labels if there is one, else by features."""
    for name in (f"{config.model.object_name}_labels", config.model.object_name):
        path = config.paths.cluster_label_dir / f"{name}.csv"
        if path.is_file():
            return read_labels(path)
    return None


def tag_network(config: Config, label_file: Path | None = None, log=print) -> list[Path]:
    """``imgclust tag-network``: the bipartite image–label network of the label table (default
    :attr:`Config.label_file`) as ``<cluster_label_dir>/<object_name>_network.gexf`` plus Gephi's
    ``<object_name>_edges.csv`` / ``_nodes.csv``, and drawn with ForceAtlas2 as
    ``<plot_dir>/<object_name>/tag_network.png``. Image nodes carry their cluster from the latest
    ``cluster-labels`` (else ``cluster``) run, when there is one.

    Returns:
        The four files written.

    Raises:
        ImgclustError: no or malformed label table.
    """
    from .network import label_graph, layout, render, write_gephi

    m = config.model
    table = _label_table(config, label_file)
    graph = label_graph(table, _clusters_by_image(config))
    out = config.paths.cluster_label_dir
    files = [out / f"{m.object_name}_network.gexf", out / f"{m.object_name}_edges.csv",
             out / f"{m.object_name}_nodes.csv", config.plot_dir / "tag_network.png"]
    write_gephi(graph, *files[:3])
    log(f"ForceAtlas2 layout of {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")
    render(graph, layout(graph, seed=m.seed), config.paths.image_dir, files[3],
           f"{m.object_name}: images and their labels (ForceAtlas2)")
    return files


@dataclass
class RunResult:
    """The outcome of each step of :func:`run`."""

    extract: ExtractSummary
    find_k: FindKResult
    cluster: ClusterResult
    report: Path


def run(config: Config, progress: bool = True, log=print) -> RunResult:
    """``imgclust run``: download (if needed), extract, find-k, cluster, report."""
    download(config, log=log)
    summary = extract(config, progress)
    found, clustered = find_k(config, progress, log), cluster(config, progress, log)
    return RunResult(summary, found, clustered, report(config, progress, log))


def report(config: Config, progress: bool = False, log=print) -> Path:
    """``imgclust report``: the interactive report, ``<plot_dir>/<object_name>/report/index.html``
    (see :func:`image_clustering.report.collection_report`)."""
    from .report import collection_report

    return collection_report(config, progress, log)


def similar(config: Config, photo: Path, n: int = 12, log=print) -> list[tuple[str, float]]:
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

    paths, vectors, _ = features(config)
    photo = Path(photo).resolve()
    try:
        rel = photo.relative_to(config.paths.image_dir.resolve()).as_posix()
    except ValueError:
        rel = None
    row = {p: i for i, p in enumerate(paths)}.get(rel)
    if row is not None:
        query = np.asarray(vectors[row])
    else:
        if not photo.is_file():
            raise ImgclustError(f"{photo}: no such photo")
        blocks = []
        for name in config.model.extractor:
            load, _identity = _network(config, name)
            network = load()
            try:
                pixels = square(open_rgb(photo, network.input_size), network.input_size)
            except Exception as exc:  # any decoder error: the user named an unreadable file
                raise ImgclustError(f"{photo}: cannot read it as an image ({type(exc).__name__}: {exc})") from None
            blocks.append(network.run(pixels[None])["features"])
        query = combine(blocks)[0]
    return [(paths[i], s) for i, s in most_similar(query, np.asarray(vectors), n, exclude=row)]
