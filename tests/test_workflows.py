"""The published workflows, faithfully: cuts at exactly k (R's ``cutree``), the Song et al. (2020)
reproduction mode, imagecluster's raw-fingerprint clustering."""
import numpy as np
import pytest

from image_clustering.clustering import cluster_hierarchical, cut_tree_k
from image_clustering.labels import LabelTable, choose_k, jaccard_similarity, label_clustering, label_matrix, ward_tree


def table(*label_sets: str) -> LabelTable:
    """A label table from space-separated label sets, one per photo, named 0, 1, 2, …"""
    return LabelTable([str(i) for i in range(len(label_sets))], [dict.fromkeys(s.split(), 1.0) for s in label_sets])


# Three pairs, each sharing one of its two labels: every pair at Jaccard distance 2/3, every other
# photo at 1, so the three first merges tie, and so do the two after them.
PAIRS = table("x y", "x z", "u v", "u w", "p q", "p r")


def test_cut_at_k_gives_exactly_k_clusters_when_merge_heights_tie():
    from scipy.cluster.hierarchy import fcluster

    sim = jaccard_similarity(label_matrix(PAIRS)[0])
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
        assert label_clustering(sim, tree, k).k == k


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
