"""The whole pipeline through the command-line tool, with the real 2015 weights on real photos.

Quality thresholds sit a margin below what was measured (see docs/benchmarks.md); chance level
for NMI is about 0.
"""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from image_clustering.cli import main
from tests.conftest import DATASETS, ROOT, folder_labels, needs_shared


def run_cli(config, *commands):
    for command in commands:
        result = CliRunner().invoke(main, [command, "--config", str(config.source), "-q"])
        assert result.exit_code == 0, result.output
    return result.output


def read_labels(config):
    with open(config.paths.cluster_label_dir / f"{config.model.object_name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["path"] for r in rows], np.array([int(r["cluster"]) for r in rows])


def check_link_folders(config, paths, labels):
    root = config.paths.link_dir / config.model.object_name
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(folders) == len(set(labels[labels >= 0].tolist())) + int((labels < 0).any())
    seen = []
    for folder in folders:  # named by the cluster id (no names, no tags here)
        cluster = -1 if folder.name == "unclustered" else int(folder.name)
        size = int((labels == cluster).sum())
        members = list(folder.iterdir())
        assert len(members) == size == int((labels == cluster).sum())
        for link in members:
            target = Path(os.readlink(link))
            assert target.is_absolute() and target.is_file()
            seen.append(target.relative_to(config.paths.image_dir).as_posix())
            assert labels[paths.index(seen[-1])] == cluster
    assert sorted(seen) == sorted(paths)  # every image linked exactly once


@pytest.fixture(scope="module")
def weights(real_weights, lite0_weights):
    """Both networks' real weights (the default extractor uses both)."""
    return real_weights, lite0_weights


def test_example_quick_start(weights, make_config):
    config = make_config(ROOT / "raw" / "example", k="auto")
    output = run_cli(config, "run")
    paths, labels = read_labels(config)
    assert len(paths) == 40 and "suggested k = 10" in output and "10 clusters" in output
    report = config.plot_dir / "report" / "index.html"
    assert f"report: {report}" in output and report.is_file()  # the run ends with the path to the report
    assert normalized_mutual_info_score(folder_labels(paths), labels) == pytest.approx(1.0)
    check_link_folders(config, paths, labels)
    assert "NMI" in run_cli(config, "evaluate")
    scores = json.loads((config.paths.cluster_label_dir / "test_evaluation.json").read_text())
    assert scores["nmi"] == scores["ari"] == scores["acc"] == pytest.approx(1.0) and scores["clusters"] == 10
    plots = config.plot_dir
    for name in ["cost_2D.png", "embedding_2D.png", "clusters_2D.png", "contact_sheet_0.png", "k_scores.csv"]:
        assert (plots / name).stat().st_size > 1000 or name.endswith(".csv")
    table = list(csv.DictReader(open(plots / "k_scores.csv")))
    assert [int(r["k"]) for r in table] == list(range(1, 40))
    assert max(table[1:], key=lambda r: float(r["silhouette"]))["k"] == "10"


COSINE_FEATURES = {"space": "features", "algorithm": "agglomerative", "linkage": "average", "metric": "cosine"}
UKBENCH_METHODS = {  # id → (model keys, NMI asserted); measured values in docs/benchmarks.md
    "leiden": ({}, 0.95),
    "spectral": ({"algorithm": "spectral"}, 0.95),
    "kmeans": ({"algorithm": "kmeans"}, 0.95),
    "leiden-k-by-silhouette": ({"k_criterion": "silhouette"}, 0.95),
    "leiden-k-by-modularity": ({"k_criterion": "modularity"}, 0.95),
    "leiden-k-by-guarded-silhouette": ({"k_criterion": "guarded_silhouette"}, 0.95),
    "ward": ({"algorithm": "agglomerative", "linkage": "ward"}, 0.95),
    "average": ({"algorithm": "agglomerative", "linkage": "average"}, 0.95),
    "hdbscan": ({"algorithm": "hdbscan", "min_cluster_size": 3}, 0.90),
    "kmeans-pca": ({"space": "pca"}, 0.95),
    "kmeans-features": ({"space": "features"}, 0.95),
    "cosine-features-sim": ({**COSINE_FEATURES, "sim": 0.5}, 0.90),
}


@pytest.mark.parametrize("setting, threshold", UKBENCH_METHODS.values(), ids=UKBENCH_METHODS.keys())
@pytest.mark.shared
def test_ukbench_groups_with_each_method(weights, make_config, shared_vectors, setting, threshold):
    config = make_config(needs_shared(DATASETS / "ukbench_groups14"), shared_vectors("ukbench"), k="auto", **setting)
    run_cli(config, "extract", "cluster")  # cluster runs the k sweep itself when find-k did not
    paths, labels = read_labels(config)
    truth = folder_labels(paths)
    print(f"ukbench {setting}: k={labels.max() + 1} unclustered={(labels < 0).sum()} "
          f"NMI={normalized_mutual_info_score(truth, labels):.3f}")
    assert (config.plot_dir / "dendrogram.png").is_file() == (setting.get("algorithm") == "agglomerative")
    assert len(paths) == 56 and (labels < 0).sum() <= 8
    assert normalized_mutual_info_score(truth, labels) >= threshold
    check_link_folders(config, paths, labels)


@pytest.fixture(scope="module")
def imagenette_subset(tmp_path_factory):
    """The first 30 photos of each imagenette class (links to the originals) and a corrupt file."""
    source = needs_shared(DATASETS / "imagenette_val200")
    subset = tmp_path_factory.mktemp("sets") / "imagenette"
    for cls in sorted(source.iterdir()):
        (subset / cls.name).mkdir(parents=True)
        for photo in sorted(cls.iterdir())[:30]:
            os.symlink(photo, subset / cls.name / photo.name)
    (subset / "church" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return subset


@pytest.mark.parametrize("setting", [{}, {"extractor": "inception_v3", "resize": "squash", "standardize": True,
                                          "perplexity": 30, "algorithm": "kmeans"}],
                         ids=["default", "original-tool"])
@pytest.mark.shared
def test_imagenette_subset_with_auto_k_and_a_corrupt_file(weights, make_config, shared_vectors, imagenette_subset,
                                                          setting):
    config = make_config(imagenette_subset, shared_vectors("imagenette"), k="auto", **setting)
    output = run_cli(config, "extract")
    assert "300 images in store" in output and "1 failed" in output
    failures = (config.feature_dir / "failures.csv").read_text()
    assert "church/broken.jpg" in failures
    run_cli(config, "find-k", "cluster")
    paths, labels = read_labels(config)
    truth = folder_labels(paths)
    nmi = normalized_mutual_info_score(truth, labels)
    ari = adjusted_rand_score(truth, labels)
    print(f"imagenette subset: k={labels.max() + 1} NMI={nmi:.3f} ARI={ari:.3f}")
    assert 8 <= labels.max() + 1 <= 12
    assert nmi >= 0.90 and ari >= 0.85, (nmi, ari)
    check_link_folders(config, paths, labels)
    json_doc = json.loads((config.paths.cluster_label_dir / "test.json").read_text())
    assert sum(json_doc["sizes"]) == 300


CHURCH_LIKE = {"church", "monastery", "bell cote", "dome", "mosque", "palace", "castle", "stupa", "cinema", "vault"}


@pytest.mark.shared
def test_tag_labels_church_photos_as_churches(lite0_weights, make_config, shared_vectors, imagenette_subset):
    config = make_config(imagenette_subset, shared_vectors("imagenette"), tag_count=5, tag_min_score=0.05)
    output = run_cli(config, "tag")
    assert "tags.csv" in output
    with open(config.paths.cluster_label_dir / "test_tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", *(f"label_{i}" for i in range(1, 6)), *(f"score_{i}" for i in range(1, 6))]
    assert len(rows) == 300  # the corrupt file has no row
    church = [r for r in rows if r["path"].startswith("church/")]
    top1 = [r["label_1"] for r in church]
    share = sum(label in CHURCH_LIKE for label in top1) / len(church)
    print(f"church photos with a church-like first label: {share:.2f}")
    assert share >= 0.7, top1  # measured 0.83
    scores = [float(r["score_1"]) for r in rows if r["score_1"]]
    assert len(scores) >= 0.9 * len(rows) and all(0.05 <= s <= 1 for s in scores)
    assert all(r["score_5"] == "" or float(r["score_5"]) >= 0.05 for r in rows)
    # the Lite0 vectors were stored in the same pass: clustering on them needs no new extraction
    lite0 = make_config(imagenette_subset, shared_vectors("imagenette"), extractor="efficientnet_lite0")
    assert "0 computed, 300 reused" in run_cli(lite0, "extract")


def exif_dated_copy(source: Path, target: Path, when: str) -> None:
    """Copy a JPEG with EXIF DateTimeOriginal set (the shared originals are never touched)."""
    from PIL import Image

    from image_clustering.images import DATETIME_ORIGINAL, EXIF_IFD

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as im:
        exif = im.getexif()
        exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = when
        im.save(target, exif=exif, quality=95)


@pytest.mark.shared
def test_time_mixing_splits_lookalikes_far_apart_in_time(lite0_weights, make_config, tmp_path):
    """Two ukbench objects, four photos each: object A shot on two trips a year apart, object B in
    one afternoon. Content alone gives two clusters; with time mixed in, A splits by trip and B
    stays together."""
    from image_clustering.images import photo_time

    source = needs_shared(DATASETS / "ukbench_groups14")
    photos = tmp_path / "trips"
    dates = {"group000": ["2020:05:01 10:00:00", "2020:05:01 10:05:00", "2021:07:20 16:00:00", "2021:07:20 16:02:00"],
             "group001": ["2020:05:01 14:00:00", "2020:05:01 14:01:00", "2020:05:01 14:03:00", "2020:05:01 14:10:00"]}
    for group, stamps in dates.items():
        for image, when in zip(sorted((source / group).iterdir()), stamps):
            exif_dated_copy(image, photos / group / image.name, when)
    first = sorted((photos / "group000").iterdir())[0]
    assert photo_time(first) == pytest.approx(1588327200.0)  # 2020-05-01 10:00:00 read from EXIF, as UTC
    common = {"extractor": "efficientnet_lite0", "algorithm": "agglomerative", "space": "features",
              "linkage": "average", "metric": "cosine", "sim": 0.6}
    content = make_config(photos, **common)
    run_cli(content, "extract", "cluster")
    paths, labels = read_labels(content)
    assert normalized_mutual_info_score(folder_labels(paths), labels) == pytest.approx(1.0)  # by object only
    mixed = make_config(photos, **common, time_weight=0.5)
    run_cli(mixed, "cluster")
    paths, labels = read_labels(mixed)
    by_photo = dict(zip(paths, labels))
    a = [by_photo[p] for p in paths if p.startswith("group000")]
    b = [by_photo[p] for p in paths if p.startswith("group001")]
    assert a[0] == a[1] and a[2] == a[3] and a[0] != a[2]  # object A: one cluster per trip
    assert len(set(b)) == 1 and b[0] not in a  # object B: one afternoon, one cluster


IMAGENETTE_METHODS = {  # id → (model keys, NMI asserted); measured values in docs/benchmarks.md
    "hdbscan": ({"algorithm": "hdbscan"}, 0.90),  # measured 0.954 (10 clusters, 4 unclustered)
    "ward": ({"algorithm": "agglomerative", "linkage": "ward"}, 0.90),  # 0.951
    "cosine-features-sim": ({**COSINE_FEATURES, "sim": 0.4}, 0.80),  # 0.857 (21 clusters, 13 unclustered)
    "kmeans-umap10": ({"reducer": "umap", "reduced_dimension": 10}, 0.90),  # 0.964
}


@pytest.mark.shared
@pytest.mark.slow
def test_imagenette_subset_with_each_method(weights, make_config, shared_vectors, imagenette_subset):
    """The other methods on 300 real photos of 10 classes, features extracted once."""
    scores = {}
    for method, (setting, _) in IMAGENETTE_METHODS.items():
        config = make_config(imagenette_subset, shared_vectors("imagenette"), k="auto", **setting)
        run_cli(config, "extract", "cluster")
        paths, labels = read_labels(config)
        scores[method] = normalized_mutual_info_score(folder_labels(paths), labels)
        print(f"imagenette subset {method}: clusters={labels.max() + 1} unclustered={(labels < 0).sum()} "
              f"NMI={scores[method]:.3f}")
        assert (labels < 0).sum() <= 0.1 * len(labels)
        check_link_folders(config, paths, labels)
    assert all(scores[m] >= IMAGENETTE_METHODS[m][1] for m in scores), scores


@pytest.mark.shared
@pytest.mark.slow
def test_graph_clustering_beats_kmeans_on_the_embedding(weights, make_config, shared_vectors, tmp_path):
    """The default's gains where they matter most (docs/benchmarks.md): 50 real clothing photos of
    each of 10 classes, squashed to the networks' input as before ``resize`` existed, k chosen on
    the t-SNE embedding (5: upper body / lower body / shoes …), then Leiden communities (the
    default) and spectral clustering of the feature vectors' neighbour graph against k-means on
    the embedding at that k; both graph methods against themselves without the neighbour vote
    that finishes them; and the default (photos padded, not squashed) against Leiden on the
    squashed photos. Measured at seed 0: Leiden 0.571 (0.567 without the vote), spectral 0.601
    (0.587), k-means 0.555 (0.577 on TensorFlow's Eigen kernels); the default, padded, 0.612."""
    source = needs_shared(DATASETS / "clothing10_testval")
    subset = tmp_path / "clothing"
    for cls in sorted(source.iterdir()):
        (subset / cls.name).mkdir(parents=True)
        for photo in sorted(cls.iterdir())[:50]:
            os.symlink(photo, subset / cls.name / photo.name)
    scores = {}
    for algorithm in ("leiden", "spectral", "kmeans"):
        config = make_config(subset, shared_vectors("clothing-squashed"), k="auto", algorithm=algorithm, resize="squash")
        run_cli(config, "extract", "cluster")
        paths, labels = read_labels(config)
        scores[algorithm] = (labels.max() + 1, normalized_mutual_info_score(folder_labels(paths), labels))
        check_link_folders(config, paths, labels)
    print(f"clothing 50 per class: {scores}")
    assert len({k for k, _ in scores.values()}) == 1  # the same k, chosen on the embedding
    nmi = {algorithm: value for algorithm, (_, value) in scores.items()}
    # No margin over k-means here: t-SNE amplifies float32 reordering (features within 6e-6 of each
    # other on oneDNN and Eigen kernels gave k-means 0.555 and 0.577, Leiden 0.571 on both), so one
    # run's k-means score is a draw; the graph methods' gain is the six-set, three-seed benchmark's
    # claim (docs/benchmarks.md). What holds on any kernel path: their own floors.
    assert nmi["leiden"] >= 0.55 and nmi["spectral"] >= 0.57, nmi
    # the same graphs cut without the vote, through the library on the stored vectors
    from image_clustering import clustering, pipeline
    from image_clustering.networks import NETWORKS

    paths, vectors, _ = pipeline.features(config)
    views = np.split(vectors, np.cumsum([NETWORKS[name].dim for name in config.model.extractor])[:-1], axis=1)
    k, truth = scores["leiden"][0], folder_labels(paths)
    unvoted = {name: normalized_mutual_info_score(truth, cut(vectors, k, views, seed=0, vote_sweeps=0).labels)
               for name, cut in (("leiden", clustering.cluster_leiden), ("spectral", clustering.cluster_spectral))}
    print(f"without the vote: {unvoted}")
    assert nmi["leiden"] >= unvoted["leiden"] and nmi["spectral"] >= unvoted["spectral"], (nmi, unvoted)
    assert nmi["leiden"] + nmi["spectral"] >= unvoted["leiden"] + unvoted["spectral"] + 0.01, (nmi, unvoted)
    # the default: the same photos padded to the square, their shape kept
    padded = make_config(subset, shared_vectors("clothing"), k="auto")
    run_cli(padded, "extract", "cluster")
    paths, labels = read_labels(padded)
    nmi["padded"] = normalized_mutual_info_score(folder_labels(paths), labels)
    print(f"default, padded: {nmi['padded']}")
    assert nmi["padded"] >= nmi["leiden"] + 0.02, nmi
