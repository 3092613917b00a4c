"""The alternatives tried for better clusters from the same networks (issue 13), at the k the
default chooses (silhouette of k-means on t-SNE 2): each set's NMI for k-means on the embedding
(the previous default), spectral clustering of the per-network neighbour graph, of one graph of
the combined features, Leiden community detection on the per-network graph (the default;
``--leiden``), a SCAN-style clustering head trained in Keras on the stored features (``--scan``),
the default's features power-normalised (square root) or PCA-whitened, test-time
augmentation (each network's vector averaged with its mirror image's; ``--tta``), and the
neighbour vote that finishes Leiden and spectral clustering, after k-means, left out and on
wider graphs (``--vote``), and Lite0's intermediate stages as further views (``--stages``).

Uses the feature stores of ``scripts/bench_quality.py`` (run it first, same ``--out``); ``--tta``
writes mirrored copies of the photos (lossless PNG, EXIF orientation applied) under
``<out>/mirror`` and extracts them once.

    python scripts/bench_alternatives.py [--sets ...] [--seeds 0 1 2] [--tta] [--scan] [--leiden] [--vote] [--stages]
"""
from __future__ import annotations

import argparse
import functools
import time
import warnings
from pathlib import Path

import numpy as np
from bench_quality import BOTH, DEV_SETS, ROOT, config_for, dataset_dir
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score as nmi

from image_clustering import pipeline
from image_clustering.clustering import (
    AutoKClustering,
    cluster_leiden,
    cluster_spectral,
    graph_neighbors,
    knn_affinity,
    neighbour_vote,
)
from image_clustering.embedding import FeatureEmbedding, combine
from image_clustering.evaluation import folder_truth


def views_of(config) -> tuple[list[str], list[np.ndarray]]:
    paths, rows, _ = pipeline.feature_rows(config)
    return paths, rows.views()


def mirrored(dataset: Path, out: Path) -> list[np.ndarray] | None:
    """Feature vectors of the mirror image of every photo (extracted once), rows as the original's."""
    from PIL import Image, ImageOps

    target = out / "mirror" / dataset.name
    for photo in sorted(p for p in dataset.rglob("*") if p.is_file()):
        copy = target / photo.relative_to(dataset)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(photo) as image:
                ImageOps.mirror(ImageOps.exif_transpose(image).convert("RGB")).save(copy, format="PNG")
    config = config_for(target, out / "mirror-work", extractor=BOTH)
    pipeline.extract(config, progress=False)
    return views_of(config)


# Lite0 layers ending its stages 5, 6 and 7 (112, 192, 320 channels), pooled like the 1280-d head.
STAGES = {"stage 5": "block10_add", "stage 6": "block14_add", "stage 7": "block15_project_bn"}


@functools.cache
def lite0_stages(dataset: Path, paths: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Global-average-pooled outputs of Lite0's last three stages for ``paths`` (rows in that
    order): intermediate features of the same network as further graph views."""
    from image_clustering import extractor, images

    keras = extractor._keras()
    model = extractor.build_efficientnet_lite0()
    with np.load(ROOT / "models" / "efficientnet_lite0_google-2020.npz") as arrays:
        extractor.set_lite0_weights(model, dict(arrays))
    pooled = keras.Model(model.input, [keras.layers.GlobalAveragePooling2D()(model.get_layer(name).output)
                                       for name in STAGES.values()])
    outputs = []
    for i in range(0, len(paths), 32):
        batch = np.stack([images.load_rgb(dataset / p, 224) for p in paths[i:i + 32]])
        outputs.append([np.asarray(o) for o in pooled.predict_on_batch(extractor.preprocess(batch, 127.0, 128.0))])
    return {stage: np.concatenate([o[j] for o in outputs]) for j, stage in enumerate(STAGES)}


def scan_head(x: np.ndarray, k: int, seed: int, neighbours: int = 20, epochs: int = 60) -> np.ndarray:
    """SCAN's clustering step (Van Gansbeke et al. 2020) on stored vectors: a softmax head trained so
    that each photo and a random one of its ``neighbours`` nearest agree, with SCAN's entropy
    term (weight 5) against one cluster taking everything."""
    import keras
    from keras import ops
    from sklearn.neighbors import NearestNeighbors

    keras.utils.set_random_seed(seed)
    n, d = x.shape
    index = NearestNeighbors(n_neighbors=neighbours + 1, metric="cosine").fit(x).kneighbors(x, return_distance=False)

    def loss(_, pair):
        p, q = pair[:, :k], pair[:, k:]
        mean = ops.mean(p, axis=0)
        return (-ops.mean(ops.log(ops.clip(ops.sum(p * q, axis=1), 1e-7, 1.0)))
                + 5.0 * ops.sum(mean * ops.log(ops.clip(mean, 1e-7, 1.0))))

    inputs = keras.Input((d,))
    head = keras.Model(inputs, keras.layers.Dense(k, activation="softmax")(inputs))
    a, b = keras.Input((d,)), keras.Input((d,))
    model = keras.Model([a, b], keras.layers.Concatenate()([head(a), head(b)]))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        partner = index[np.arange(n), rng.integers(1, neighbours + 1, n)]
        model.fit([x, x[partner]], np.zeros((n, 1), np.float32), batch_size=256, epochs=1, verbose=0)
    return head.predict(x, verbose=0, batch_size=1024).argmax(1)


def rows(views, truth, seed, args, mirror, stages=None) -> dict[str, float]:
    x = combine(views)
    embedding = FeatureEmbedding(seed=seed).fit_transform(x)
    base = AutoKClustering(algorithm="kmeans", seed=seed).fit(embedding)
    k, sweep = base.n_clusters_, base.sweep_
    spectral = AutoKClustering(algorithm="spectral", seed=seed)
    scores = {"k": k, "k-means on t-SNE 2": nmi(truth, base.labels_),
              "spectral, graph per network": nmi(truth, spectral.fit(embedding, sweep=sweep, views=views).labels_),
              "spectral, one graph of the combined features": nmi(truth, spectral.fit(embedding, sweep=sweep, views=[x]).labels_)}
    if args.leiden:
        scores["Leiden on the per-network graph (default)"] = nmi(truth, AutoKClustering(algorithm="leiden", seed=seed).fit(
            embedding, sweep=sweep, views=views).labels_)
    if args.vote:
        graph = knn_affinity(views, graph_neighbors(len(x), k), seed)
        scores["k-means on t-SNE 2, then the neighbour vote"] = nmi(truth, neighbour_vote(graph, base.labels_))
        unvoted = cluster_leiden(embedding, k, views, seed, vote_sweeps=0).labels
        scores["Leiden without the neighbour vote"] = nmi(truth, unvoted)
        scores["spectral without the neighbour vote"] = nmi(
            truth, cluster_spectral(embedding, k, views, seed, vote_sweeps=0).labels)
        for most in (20, 30):
            wide = knn_affinity(views, graph_neighbors(len(x), k, most), seed)
            scores[f"Leiden, the vote on a {most}-neighbour graph"] = nmi(truth, neighbour_vote(wide, unvoted))
    for stage, extra in (stages or {}).items():
        scores[f"Leiden, Lite0 {stage} as a third view"] = nmi(truth, cluster_leiden(embedding, k, views + [extra], seed).labels)
    for name, transform in (("square root", lambda v: [np.sqrt(np.maximum(b, 0)) for b in v]), ("PCA-whitened", None)):
        if transform:
            alt = transform(views)
            e = FeatureEmbedding(seed=seed).fit_transform(combine(alt))
        else:
            alt = views
            e = FeatureEmbedding(seed=seed).fit_transform(PCA(50, whiten=True, random_state=seed).fit_transform(x))
        chosen = AutoKClustering(algorithm="kmeans", seed=seed).fit(e)
        scores[f"{name} features: k-means on t-SNE 2 (own k)"] = nmi(truth, chosen.labels_)
    if args.scan:
        start = time.perf_counter()
        scores["SCAN head on the combined features"] = nmi(truth, scan_head(x, k, seed))
        scores["SCAN head seconds"] = time.perf_counter() - start
    if mirror is not None:
        tta = [(a + b) / 2 for a, b in zip(views, mirror)]
        e = FeatureEmbedding(seed=seed).fit_transform(combine(tta))
        chosen = AutoKClustering(algorithm="kmeans", seed=seed).fit(e)
        scores["mirror TTA: k-means on t-SNE 2"] = nmi(truth, chosen.labels_)
        scores["mirror TTA: spectral"] = nmi(truth, spectral.fit(e, sweep=chosen.sweep_, views=tta).labels_)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=DEV_SETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-quality"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, help="as in bench_quality.py (e.g. 200 for cifar10_test)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--scan", action="store_true")
    parser.add_argument("--leiden", action="store_true")
    parser.add_argument("--vote", action="store_true", help="the neighbour vote after k-means, and Leiden/spectral without it")
    parser.add_argument("--stages", action="store_true", help="Lite0's intermediate stages as a third graph view")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    table: dict[str, dict[str, list[float]]] = {}
    for name in args.sets:
        dataset = dataset_dir(name, args.out, args.per_class)
        paths, views = views_of(config_for(dataset, args.out, extractor=BOTH))
        truth = np.unique(folder_truth(paths), return_inverse=True)[1]
        mirror = None
        if args.tta:
            mirror_paths, mirror_views = mirrored(dataset, args.out)
            order = {p: i for i, p in enumerate(mirror_paths)}
            mirror = [m[[order[p] for p in paths]] for m in mirror_views]
        for seed in args.seeds:
            scores = rows(views, truth, seed, args, mirror, lite0_stages(dataset, tuple(paths)) if args.stages else None)
            print(name, seed, " ".join(f"{key}: {value:.3f}" for key, value in scores.items()), flush=True)
            for key, value in scores.items():
                table.setdefault(key, {}).setdefault(dataset.name, []).append(value)
    names = [dataset_dir(s, args.out, args.per_class).name for s in args.sets]
    print(f"\n| method (mean over seeds {args.seeds}) | " + " | ".join(names) + " | mean |\n|---|" + "---|" * (len(names) + 1))
    for key, per_set in table.items():
        means = [np.mean(per_set[s]) for s in names]
        print(f"| {key} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |")


if __name__ == "__main__":
    main()
