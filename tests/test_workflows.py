"""The published workflows, faithfully: cuts at exactly k (R's ``cutree``), the Song et al. (2020)
reproduction mode, imagecluster's raw-fingerprint clustering."""
import numpy as np
import pytest

from image_clustering.clustering import cluster_hierarchical, cut_tree_k
from image_clustering.tags import TagTable, choose_k, cluster_tags_at_k, jaccard_similarity, tag_matrix, ward_tree


def table(*label_sets: str) -> TagTable:
    """A label table from space-separated label sets, one per photo, named 0, 1, 2, …"""
    return TagTable([str(i) for i in range(len(label_sets))], [dict.fromkeys(s.split(), 1.0) for s in label_sets])


# Three pairs, each sharing one of its two labels: every pair at Jaccard distance 2/3, every other
# photo at 1, so the three first merges tie, and so do the two after them.
PAIRS = table("x y", "x z", "u v", "u w", "p q", "p r")


def test_cut_at_k_gives_exactly_k_clusters_when_merge_heights_tie():
    from scipy.cluster.hierarchy import fcluster

    sim = jaccard_similarity(tag_matrix(PAIRS)[0])
    tree = ward_tree(sim)
    assert np.allclose(tree[:3, 2], 2 / 3) and tree[3, 2] == pytest.approx(tree[4, 2])  # the ties
    assert len(np.unique(fcluster(tree, 5, criterion="maxclust"))) == 3  # the old cut: fewer than asked
    pairs = {(0, 1), (2, 3), (4, 5)}
    previous = None
    for k in range(1, 7):
        groups = cut_tree_k(tree, k)
        assert sorted(np.unique(groups)) == list(range(k))  # exactly k, numbered 0..k-1
        if k <= 3:  # whole pairs, never split
            assert all(groups[a] == groups[b] for a, b in pairs)
        if previous is not None:  # nested: k clusters split one of the k - 1
            assert len(set(zip(previous, groups))) == k
        previous = groups
    choice = choose_k(sim, tree, 2, 5)
    assert list(choice.ks) == [2, 3, 4, 5]
    for k in (4, 5):
        assert cluster_tags_at_k(sim, tree, k).k == k


def test_cut_by_merge_order_matches_scipy_cut_tree_where_heights_differ():
    from scipy.cluster.hierarchy import cut_tree, linkage

    rng = np.random.default_rng(0)
    for method in ("ward", "average", "single"):
        z = linkage(rng.normal(size=(25, 3)), method)
        for k in (1, 2, 7, 25):
            np.testing.assert_array_equal(cut_tree_k(z, k), cut_tree(z, k).ravel())
    with pytest.raises(ValueError, match="into 26 clusters"):
        cut_tree_k(z, 26)


def test_agglomerative_at_k_gives_k_clusters_on_tied_distances():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])  # single linkage: every merge at height 1
    for k in range(1, 6):
        result, _, _ = cluster_hierarchical(x, "single", "euclidean", k=k)
        assert result.k == k and sorted(result.sizes, reverse=True) == list(result.sizes)


# --- model.label_method "song2020": the published R code ----------------------------------------

from image_clustering.tags import (  # noqa: E402
    r_round,
    read_tag_table,
    song2020_choose_k,
    song2020_knee,
    song2020_separation,
    song2020_similarity,
    song2020_tree,
)


def test_r_round_rounds_as_r_does():
    # R 4.2: round(c(1/40, 3/40, 7/40, 23/40, 0.125, 0.375, 1/3, 2/3), 2)
    x = np.array([1 / 40, 3 / 40, 7 / 40, 23 / 40, 0.125, 0.375, 1 / 3, 2 / 3])
    np.testing.assert_array_equal(r_round(x), [0.03, 0.07, 0.17, 0.58, 0.12, 0.38, 0.33, 0.67])
    assert np.round(1 / 40, 2) == 0.02  # why NumPy's round is not used


def test_song2020_similarity_and_separation_by_hand(tmp_path):
    path = tmp_path / "gcv.csv"
    path.write_text("photoid,url,w1,w2,w3\n1,a,tree,sky,grass\n2,b,tree,sky,NA\n3,c,sea,NA,NA\n"
                    "4,d,temple,temple,sea\n")
    t = read_tag_table(path)
    assert t.cells == [3, 2, 1, 3]  # "temple" twice: two cells, as R's lengword counts them
    sim = song2020_similarity(tag_matrix(t)[0], t.images, t.cells)
    assert sim[0, 1] == 0.4  # 2 shared / (3 + 2), not the Jaccard 2/3
    assert sim[2, 3] == 0.25  # 1 shared / (1 + 3): the repeated cell counts below the line
    assert sim[0, 2] == 0 and np.all(np.diag(sim) == 1) and np.array_equal(sim, sim.T)
    three = sim[:3, :3]
    # Rows as the R code has them: photos after each one count as similarity 0.
    #   a: [1, 0, 0]    within {a, b} (1 + 0)/2 = 0.5, between {c} 0  → 0.5
    #   b: [0.4, 1, 0]  within (0.4 + 1)/2 = 0.7,      between 0      → 0.7
    #   c: [0, 0, 1]    within 1,                      between 0      → 1
    assert song2020_separation(three, np.array([0, 0, 1])) == pytest.approx((0.5 + 0.7 + 1) / 3)
    from image_clustering.tags import separation

    assert separation(three, np.array([0, 0, 1])) == pytest.approx((0.7 + 0.7 + 1) / 3)  # the full matrix


def test_song2020_knee_by_hand():
    # k = 2..7 around the line 1 - k/10 with residuals r = (1, -1, -1, 1, 0, 0)/100, which sum to 0
    # and are orthogonal to k: lm(distance ~ k) is that line and r its residuals. K = 7:
    #   i = 3: 2/6·rms(r2, r3) + 4/6·rms(r4..r6) = 1/3 + 2/3·√(1/3) = 0.71823 (·1/100)
    #   i = 4: 3/6·rms(r2..r4) + 3/6·rms(r5, r6) = 0.5
    #   i = 5: 4/6·rms(r2..r5) + 2/6·rms(r6)     = 2/3·√(3/4) = 0.57735
    # (row 1 is never used; row 7, k = 8, does not exist)
    ks = np.arange(2, 8)
    curve = 1 - ks / 10 + np.array([1, -1, -1, 1, 0, 0]) / 100
    splits, errors, knee = song2020_knee(ks, curve)
    assert list(splits) == [3, 4, 5] and knee == 4
    np.testing.assert_allclose(errors * 100, [1 / 3 + 2 / 3 * np.sqrt(1 / 3), 0.5, 2 / 3 * np.sqrt(3 / 4)], rtol=1e-9)


THEMES = ["tree plant leaf sky grass flower nature garden", "sea water wave beach sand sky boat",
          "bird beak feather wildlife twig nature", "car road vehicle wheel city sky"]


def gcv_table(path, n=30):
    """A Google-Cloud-Vision-shaped table (photoid, url, w1..w10, NA = no label) of four themes,
    2-8 labels per photo, with one label repeated in a row and one photo without labels."""
    lines = ["photoid,url," + ",".join(f"w{i}" for i in range(1, 11))]
    for p in range(n):
        words = THEMES[p % 4].split()
        labels = [words[(p // 4 + j) % len(words)] for j in range(min(2 + (p * 5) % 6, len(words)))]
        if p % 7 == 5:
            labels.append(labels[0])
        labels = [] if p == 13 else labels
        lines.append(f"{p + 1},http://x/{p + 1}.jpg," + ",".join(labels + ["NA"] * (10 - len(labels))))
    path.write_text("\n".join(lines) + "\n")
    return path


# The published R code (R 4.2.2, fastcluster 1.2.3, qpcR's RMSE), run on gcv_table(): its
# scenarios$distance for k = 2..20, scenarios$Lrmse for k = 3..18, the knee and cutree(cluz, 10).
R_DISTANCE = [0.872943452381, 0.813188793996, 0.764009891879, 0.729019812514, 0.693583084119, 0.658602925389,
              0.626985968867, 0.597523111725, 0.568054587058, 0.538623481842, 0.5108946635, 0.482308882316,
              0.453802268559, 0.42670002718, 0.398477120776, 0.370277202878, 0.342763245571, 0.31628446573,
              0.291790321109]
R_LRMSE = [0.010725655414, 0.01074763364, 0.010748736983, 0.010725272723, 0.010656759741, 0.010583861775,
           0.010522863732, 0.010483174598, 0.010511191397, 0.010573482027, 0.010651858154, 0.010728240158,
           0.010782149539, 0.010818513647, 0.010863311233, 0.010984499392]
R_GROUPS = "1 2 3 4 5 6 3 4 7 2 8 4 5 9 3 4 7 2 8 4 1 2 3 10 7 2 3 4 1 6"


def test_song2020_reproduces_the_published_r_code(tmp_path):
    t = read_tag_table(gcv_table(tmp_path / "gcv.csv"))
    sim = song2020_similarity(tag_matrix(t)[0], t.images, t.cells)
    tree = song2020_tree(sim)
    choice = song2020_choose_k(sim, tree, 20)
    np.testing.assert_allclose(1 - choice.separation, R_DISTANCE, atol=1e-11)
    assert list(choice.splits) == list(range(3, 19))
    np.testing.assert_allclose(choice.errors, R_LRMSE, atol=1e-11)
    assert choice.knee == 10
    np.testing.assert_array_equal(cut_tree_k(tree, 10) + 1, [int(g) for g in R_GROUPS.split()])


def test_two_photos_without_labels_stop_song2020(tmp_path):
    from image_clustering import ImgclustError

    t = table("a b", "", "", "a")
    with pytest.raises(ImgclustError, match="'1' and '2' have no labels"):
        song2020_similarity(tag_matrix(t)[0], t.images)


def test_cluster_labels_in_song2020_mode(tmp_path, make_config):
    import json

    from click.testing import CliRunner

    from image_clustering.cli import main

    (tmp_path / "photos").mkdir()
    config = make_config(tmp_path / "photos", label_method="song2020")
    raw = json.loads(config.source.read_text())
    raw["paths"]["label_file"] = str(gcv_table(tmp_path / "gcv.csv"))
    config.source.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["cluster-labels", "--config", str(config.source), "-q"])
    assert result.exit_code == 0, result.output
    assert "in 10 clusters" in result.output and "knee 10" in result.output
    rows = (config.plot_dir / "label_k.csv").read_text().splitlines()
    assert rows[0] == "k,separation,distance,lmethod_rmse" and len(rows) == 20
    k2 = rows[1].split(",")
    assert float(k2[2]) == pytest.approx(R_DISTANCE[0], abs=1e-11) and k2[3] == ""
    assert float(rows[9].split(",")[3]) == pytest.approx(R_LRMSE[7], abs=1e-11)  # k = 10
    doc = json.loads((config.paths.cluster_label_dir / "test_labels.json").read_text())
    assert doc["k"] == 10 and sum(doc["sizes"]) == 30


def test_label_method_is_validated():
    from image_clustering import ImgclustError
    from image_clustering.config import config_from_dict

    assert config_from_dict({"paths": {"image_dir": "photos"}, "model": {"object_name": "t"}}).model.label_method == "jaccard"
    with pytest.raises(ImgclustError, match="model.label_method"):
        config_from_dict({"paths": {"image_dir": "photos"}, "model": {"object_name": "t", "label_method": "song"}})


# --- imagecluster: raw fingerprints ------------------------------------------------------------


def imagecluster_clusters(paths: list[str], fingerprints: np.ndarray, sim: float, min_csize: int = 2) -> list[list[str]]:
    """imagecluster's published ``calc.cluster`` (elcorto/imagecluster), re-implemented as it works:
    Euclidean ``pdist`` of the raw fingerprints, average ``linkage``, ``fcluster`` at distance
    max(d)·(1 − sim), clusters of at least ``min_csize`` images."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    d = pdist(fingerprints, "euclidean")
    cut = fcluster(linkage(d, method="average"), t=d.max() * (1.0 - sim), criterion="distance")
    groups: dict[int, list[str]] = {}
    for path, c in zip(paths, cut):
        groups.setdefault(c, []).append(path)
    return sorted(sorted(g) for g in groups.values() if len(g) >= min_csize)


def our_clusters(paths: list[str], labels: np.ndarray) -> list[list[str]]:
    return sorted(sorted(p for p, c in zip(paths, labels) if c == cluster) for cluster in range(labels.max() + 1))


IMAGECLUSTER = {"space": "raw", "algorithm": "agglomerative", "linkage": "average", "metric": "euclidean",
                "sim": 0.5, "min_cluster_size": 2}


def test_raw_space_clusters_as_imagecluster_does(lite0_weights, make_config, tmp_path):
    """24 real photos (six ukbench objects × 4), the README's imagecluster recipe (with Lite0
    fingerprints: imagecluster's VGG16 weights need Keras' host) against imagecluster's procedure."""
    import json

    from click.testing import CliRunner

    from image_clustering import pipeline
    from image_clustering.cli import main
    from image_clustering.clustering import cluster_hierarchical
    from image_clustering.embedding import clustering_space
    from tests.conftest import DATASETS, needs_shared

    source = needs_shared(DATASETS / "ukbench_groups14")
    photos = tmp_path / "photos"
    for group in sorted(p for p in source.iterdir() if p.is_dir())[:6]:
        (photos / group.name).mkdir(parents=True)
        for image in sorted(group.iterdir()):
            (photos / group.name / image.name).symlink_to(image)
    config = make_config(photos, extractor="efficientnet_lite0", **IMAGECLUSTER)
    for command in ("extract", "cluster"):
        result = CliRunner().invoke(main, [command, "--config", str(config.source), "-q"])
        assert result.exit_code == 0, result.output
    paths, vectors, _ = pipeline.features(config)
    assert len(paths) == 24 and np.linalg.norm(vectors, axis=1).std() > 0.1  # raw: norms differ
    doc = json.loads((config.paths.cluster_label_dir / "test.json").read_text())
    assert sorted(sorted(c) for c in doc["clusters"].values()) == imagecluster_clusters(paths, vectors, 0.5)
    assert len(doc["clusters"]) >= 4  # the objects are found
    points = clustering_space(vectors, None, config.model.space)
    differ = 0
    for sim in (0.3, 0.5, 0.6, 0.7, 0.8):
        result, _, _ = cluster_hierarchical(points, "average", "euclidean", sim=sim, min_cluster_size=2)
        assert our_clusters(paths, result.labels) == imagecluster_clusters(paths, vectors, sim), sim
        cosine = make_config(photos, extractor="efficientnet_lite0", **{**IMAGECLUSTER, "space": "features",
                                                                          "metric": "cosine", "sim": sim})
        unit, _, _ = cluster_hierarchical(clustering_space(vectors, None, cosine.model.space), "average", "cosine", sim=sim)
        differ += our_clusters(paths, unit.labels) != imagecluster_clusters(paths, vectors, sim)
    assert differ >= 2  # the old recipe (L2-normalised, cosine) is another clustering: measured 4 of 5
