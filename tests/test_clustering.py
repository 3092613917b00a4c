"""k sweep, suggested k, final k-means, embedding shapes."""
import numpy as np
import pytest

from image_clustering.clustering import cluster_kmeans, sweep_k
from image_clustering.config import config_from_dict
from image_clustering.embedding import combine, pca_features, reduce


def blobs(k=5, per=30, dim=2, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, (k, dim))
    x = np.concatenate([c + rng.normal(0, spread, (per + i * 5, dim)) for i, c in enumerate(centres)])
    truth = np.concatenate([np.full(per + i * 5, i) for i in range(k)])
    return x.astype(np.float32), truth


def test_sweep_suggests_the_number_of_blobs():
    x, _ = blobs(k=6)
    sweep = sweep_k(x, k_max=100, n_init=2, seed=0)
    assert sweep.ks[0] == 1 and sweep.ks[-1] == 100  # 1..min(100, N-1)
    assert np.isnan(sweep.silhouette[0]) and np.all(np.diff(sweep.inertia[:6]) < 0)
    assert sweep.suggested_k == 6


def test_sweep_stops_below_n():
    x, _ = blobs(k=2, per=3)
    sweep = sweep_k(x, k_max=100, n_init=1, seed=0)
    assert sweep.ks[-1] == len(x) - 1


def test_clusters_are_numbered_by_size_and_match_truth():
    from sklearn.metrics import normalized_mutual_info_score

    x, truth = blobs(k=4)
    result = cluster_kmeans(x, 4, n_init=2, seed=0)
    assert list(result.sizes) == sorted(result.sizes, reverse=True)
    assert normalized_mutual_info_score(truth, result.labels) == pytest.approx(1.0)
    np.testing.assert_allclose(result.distances, np.linalg.norm(x - result.centers[result.labels], axis=1), rtol=1e-5)
    again = cluster_kmeans(x, 4, n_init=2, seed=0)
    np.testing.assert_array_equal(result.labels, again.labels)  # seeded: same input, same clusters


@pytest.mark.parametrize("reducer, dim", [("tsne", 2), ("umap", 2), ("umap", 5)])
def test_pca_then_reduce_keeps_groups_apart(reducer, dim):
    from sklearn.metrics import normalized_mutual_info_score

    x, truth = blobs(k=4, per=25, dim=300, spread=1.0)
    pcs = pca_features(x, 50, 0)
    assert pcs.shape == (len(x), 50) and pcs.dtype == np.float32
    emb = reduce(pcs, reducer, dim)
    assert emb.shape == (len(x), dim)
    labels = cluster_kmeans(emb, 4, n_init=2, seed=0).labels
    assert normalized_mutual_info_score(truth, labels) > 0.95


def test_small_collections_still_embed():
    x, _ = blobs(k=2, per=2, dim=2048)
    assert reduce(pca_features(x, 50, 0)).shape == (len(x), 2)  # PCA capped at N, perplexity < N


def test_combine_gives_each_network_equal_weight():
    a = np.full((3, 4), 10.0, np.float32)
    b = np.full((3, 2), 0.1, np.float32)
    assert combine([a]) is not None and np.array_equal(combine([a]), a)
    both = combine([a, b])
    assert both.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(both[:, :4], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(both[:, 4:], axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("method, metric", [("ward", "euclidean"), ("average", "euclidean"),
                                            ("average", "cosine"), ("complete", "euclidean"), ("single", "euclidean")])
def test_agglomerative_recovers_blobs(method, metric):
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering.clustering import cluster_hierarchical

    x, truth = blobs(k=4, spread=0.3)
    x = x + 50  # away from the origin, so cosine distance separates the blobs too
    result, z, cut = cluster_hierarchical(x, method, metric, k=4)
    assert result.k == 4 and z[-4, 2] <= cut <= z[-3, 2]
    assert z.shape == (len(x) - 1, 4) and list(result.sizes) == sorted(result.sizes, reverse=True)
    assert normalized_mutual_info_score(truth, result.labels) > (0.99 if metric == "euclidean" else 0.8)


def test_ward_with_cosine_is_a_config_error():
    from image_clustering import ImgclustError

    with pytest.raises(ImgclustError, match="model.metric"):
        config_from_dict({"paths": {"image_dir": "photos"}, "model": {"object_name": "t", "algorithm": "agglomerative",
                                                                 "linkage": "ward", "metric": "cosine"}})


def test_l_method_finds_the_corner_of_two_lines():
    from image_clustering.clustering import l_method

    ks = np.arange(1, 31)
    values = np.where(ks <= 8, 100 - 11 * ks, 12 - 0.2 * (ks - 8))  # steep to k = 8, then flat
    assert l_method(ks, values.astype(float)) == 8
    noisy = values + np.random.default_rng(0).normal(0, 0.5, len(ks))
    assert abs(l_method(ks, noisy) - 8) <= 1


def test_elbow_knee_is_the_point_farthest_below_the_chord():
    from image_clustering.clustering import elbow_knee

    ks = np.arange(1, 21)
    assert elbow_knee(ks, 1.0 / ks) in (3, 4, 5)
    assert elbow_knee(ks, np.where(ks <= 6, 60 - 10 * ks, 0.0)) == 6


def test_sweep_reports_every_criterion():
    x, _ = blobs(k=5)
    sweep = sweep_k(x, k_max=30, n_init=2, seed=0, criterion="davies_bouldin")
    assert set(sweep.suggestions) == {"silhouette", "davies_bouldin", "elbow", "lmethod"}
    assert sweep.suggested_k == sweep.suggestions["davies_bouldin"] == 5
    assert sweep.suggestions["silhouette"] == 5 and np.isnan(sweep.davies_bouldin[0])
    assert np.nanmin(sweep.davies_bouldin) == sweep.davies_bouldin[4]


def test_sweep_on_a_sample_keeps_full_data_units(monkeypatch):
    import image_clustering.clustering as clustering

    x, _ = blobs(k=4, per=200)
    full = sweep_k(x, k_max=8, n_init=2, seed=0)
    monkeypatch.setattr(clustering, "SWEEP_SAMPLE", 300)
    sampled = sweep_k(x, k_max=8, n_init=2, seed=0)
    assert sampled.suggested_k == full.suggested_k == 4
    np.testing.assert_allclose(sampled.inertia[3], full.inertia[3], rtol=0.2)


def test_similarity_cut_follows_sim_and_leaves_small_clusters_unclustered():
    from image_clustering.clustering import UNCLUSTERED, cluster_hierarchical

    x, truth = blobs(k=4, spread=0.3)
    outliers = np.array([[60.0, 60.0], [-60.0, 60.0]])  # two lone points, far from every blob
    x = np.vstack([x, outliers])
    one, _, _ = cluster_hierarchical(x, "average", "euclidean", sim=0.0, min_cluster_size=1)
    alone, _, _ = cluster_hierarchical(x, "average", "euclidean", sim=1.0, min_cluster_size=1)
    assert one.k == 1 and alone.k == len(x)  # imagecluster's convention: 0 = one cluster, 1 = every image alone
    result, _, cut = cluster_hierarchical(x, "average", "euclidean", sim=0.95, min_cluster_size=2)
    assert result.k == 4 and list(result.labels[-2:]) == [UNCLUSTERED, UNCLUSTERED]
    assert result.unclustered == 2 and np.isnan(result.distances[-2:]).all()
    from sklearn.metrics import normalized_mutual_info_score

    assert normalized_mutual_info_score(truth, result.labels[:-2]) > 0.99


def test_hdbscan_finds_the_blobs_without_k_and_marks_noise():
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering.clustering import UNCLUSTERED, cluster_hdbscan

    x, truth = blobs(k=5, spread=0.3)
    noise = np.random.default_rng(1).uniform(-40, 40, size=(20, x.shape[1]))
    result = cluster_hdbscan(np.vstack([x, noise]), min_cluster_size=5)
    assert result.k == 5
    assert normalized_mutual_info_score(truth, result.labels[: len(x)]) > 0.95
    assert (result.labels[len(x):] == UNCLUSTERED).sum() >= 10  # most uniform noise stays out
    cosine = cluster_hdbscan(x + 50, min_cluster_size=5, metric="cosine")  # precomputed all-pairs path
    assert cosine.k >= 2


def test_time_mixing_splits_lookalikes_taken_far_apart():
    from image_clustering.clustering import cluster_hierarchical, pair_distances

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (6, 8)), rng.normal(5, 0.1, (6, 8))])  # two looks
    day = 86_400.0
    times = np.array([0, 1, 2, 300, 301, 302] * 2, dtype=float) * day  # each look: two trips
    d = pair_distances(x, "euclidean", times, 0.5)
    assert 0 <= d.min() and d.max() <= 1
    content, _, _ = cluster_hierarchical(x, "average", "euclidean", k=4)
    assert content.k == 4  # asked for 4, but content alone has two groups: the split is arbitrary
    mixed, _, _ = cluster_hierarchical(x, "average", "euclidean", sim=0.6, times=times, time_weight=0.5)
    assert mixed.k == 4
    assert len({tuple(np.flatnonzero(mixed.labels == c)) for c in range(4)} &
               {(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)}) == 4  # split by look and by trip
    together, _, _ = cluster_hierarchical(x, "average", "euclidean", sim=0.6, times=times * 0 + 7.0, time_weight=0.5)
    assert together.k == 2  # same time everywhere: only content separates


def test_sweep_cache_keeps_one_sweep_per_space_and_ignores_unrelated_keys(tmp_path, make_config, monkeypatch):
    from image_clustering import pipeline

    calls = []
    real = pipeline.sweep_k
    monkeypatch.setattr(pipeline, "sweep_k", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    x, _ = blobs(k=3)
    features = make_config(tmp_path / "photos", space="features", k_max=8)
    features_other_tsne = make_config(tmp_path / "photos", space="features", k_max=8, perplexity=10)
    embedding = make_config(tmp_path / "photos", k_max=8)

    def sweep(config, store):
        return pipeline._sweep(config, pipeline._space(config, x, x, store)[1], x, False)

    first = sweep(features, "store-a")
    sweep(features_other_tsne, "store-a")  # t-SNE settings do not touch this space
    assert len(calls) == 1
    sweep(embedding, "store-a")
    again = sweep(features, "store-a")  # still cached beside the other
    assert len(calls) == 2 and again.suggestions == first.suggestions == {**first.suggestions, "silhouette": 3}
    sweep(features, "store-b")  # new vectors: swept again
    assert len(calls) == 3


def directions(k=4, per=25, dim=64, seed=0, spread=0.15):
    """Photo-like feature vectors: non-negative, one random direction per group, cosine structure."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (k, dim))
    x = np.concatenate([np.abs(c + rng.normal(0, spread, (per + 3 * i, dim))) for i, c in enumerate(centres)])
    return x.astype(np.float32), np.repeat(np.arange(k), [per + 3 * i for i in range(k)])


def test_graph_neighbours_shrink_for_small_clusters():
    from image_clustering.clustering import graph_neighbors

    assert graph_neighbors(2000, 10) == 10  # clusters of 200: the full neighbourhood
    assert graph_neighbors(56, 14) == 3  # ukbench: 14 groups of 4 photos
    assert graph_neighbors(4, 2) == 3 and graph_neighbors(3, 2) == 2  # always below N


def test_knn_affinity_is_symmetric_and_sums_the_views():
    from image_clustering.clustering import knn_affinity

    x, _ = directions()
    one = knn_affinity([x], 5)
    assert (one != one.T).nnz == 0 and one.diagonal().sum() == 0
    assert (np.diff(one.indptr) >= 5).all() and set(np.unique(one.data)) <= {0.5, 1.0}
    two = knn_affinity([x, x * 3], 5)  # a second view with the same neighbours: every weight doubles
    np.testing.assert_allclose(two.toarray(), 2 * one.toarray())


def test_spectral_clustering_recovers_groups_numbered_by_size():
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering.clustering import AutoKClustering, cluster_spectral

    x, truth = directions()
    result = cluster_spectral(x, 4, seed=0)
    assert normalized_mutual_info_score(truth, result.labels) == pytest.approx(1.0)
    assert list(result.sizes) == sorted(result.sizes, reverse=True) and result.centers.shape == (4, x.shape[1])
    np.testing.assert_array_equal(result.labels, cluster_spectral(x, 4, seed=0).labels)  # seeded
    assert (cluster_spectral(x, 1).labels == 0).all() and cluster_spectral(x[:5], 5).k == 5
    # k chosen on 2-D points, the graph cut in the views: X need not be the features
    points = pca_features(x, 2, 0)
    model = AutoKClustering(n_clusters="auto", k_max=10).fit(points, views=[x[:, :32], x[:, 32:]])
    assert model.n_clusters_ == model.sweep_.suggested_k
    assert model.cluster_centers_.shape == (model.n_clusters_, 2)


@pytest.mark.parametrize("algorithm", ["leiden", "spectral"])
def test_graph_methods_above_the_sample_size_cut_a_sample_and_place_the_rest(monkeypatch, caplog, algorithm):
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering import clustering

    x, truth = directions(k=4, per=60)
    monkeypatch.setattr(clustering, "GRAPH_SAMPLE", 120)  # the exact graph of 120 photos is cut, the rest placed
    with caplog.at_level("INFO", logger="image_clustering"):
        model = clustering.AutoKClustering(n_clusters=4, algorithm=algorithm).fit(x)
    assert f"on the graph of 120 of {len(x)} photos" in caplog.text and "(exact graph)" in caplog.text
    assert model.n_clusters_ == 4 and normalized_mutual_info_score(truth, model.labels_) == pytest.approx(1.0)


def test_spread_labels_follows_the_graph_and_reaches_cut_off_photos():
    from scipy import sparse

    from image_clustering.clustering import spread_labels

    # a path 0-1-2-3-4 labelled at its ends, and photo 5 with no edge at all
    edges = sparse.coo_matrix((np.ones(4), ([0, 1, 2, 3], [1, 2, 3, 4])), shape=(6, 6))
    path = (edges + edges.T).tocsr()
    points = np.array([[0.0], [1], [2], [3], [4], [3.9]])
    np.testing.assert_array_equal(spread_labels(path, np.array([0, 4]), np.array([0, 1]), points), [0, 0, 0, 1, 1, 1])
    assert spread_labels(path, np.array([0, 4]), np.array([0, 1]))[5] == 0  # without points: cluster 0


def test_leiden_finds_exactly_k_communities_or_falls_back_to_spectral(caplog):
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering import clustering

    x, truth = directions(k=5)
    result = clustering.cluster_leiden(x, 5, seed=0)
    assert result.k == 5 and normalized_mutual_info_score(truth, result.labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(result.labels, clustering.cluster_leiden(x, 5, seed=0).labels)  # seeded
    affinity = clustering.knn_affinity([x], 10)
    assert len(np.unique(clustering.leiden_k(affinity, 5))) == 5
    # five groups with no edge between them cannot form 2 communities at any resolution: spectral
    # clustering of the same graph takes over and still gives 2 clusters
    assert clustering.leiden_k(affinity, 2) is None
    with caplog.at_level("INFO", logger="image_clustering"):
        fallback = clustering.cluster_leiden(x, 2, seed=0)
    assert "no resolution giving exactly 2 communities" in caplog.text and fallback.k == 2


def test_leiden_keeps_the_partition_of_highest_modularity_over_its_runs():
    """Overlapping groups: single seeds find different 6-community partitions; ``leiden_k`` with
    runs R returns the best of seeds seed..seed+R-1 by modularity, not the first one."""
    from image_clustering import clustering

    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(0, 1, (6, 16))[rng.integers(0, 6, 300)] + rng.normal(0, 0.9, (300, 16)))
    affinity = clustering.knn_affinity([x.astype(np.float32)], 10)
    singles = [clustering.leiden_k(affinity, 6, seed=s, runs=1) for s in range(5)]
    scores = [clustering.modularity(affinity, labels) for labels in singles]
    assert len({round(q, 9) for q in scores}) > 1  # the seeds disagree, so the choice matters
    best = clustering.leiden_k(affinity, 6, seed=0, runs=5)
    assert clustering.modularity(affinity, best) == pytest.approx(max(scores))
    np.testing.assert_array_equal(best, singles[int(np.argmax(scores))])


def test_neighbour_vote_settles_boundary_photos_without_emptying_a_cluster():
    from scipy import sparse

    from image_clustering.clustering import neighbour_vote

    # two triangles joined by one edge (2–3); photo 2 wrongly in the second cluster
    edges = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (4, 5)]
    rows, cols = zip(*edges)
    affinity = sparse.coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(6, 6))
    affinity = (affinity + affinity.T).tocsr()
    np.testing.assert_array_equal(neighbour_vote(affinity, np.array([0, 0, 1, 1, 1, 1])), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(neighbour_vote(affinity, np.array([0, 0, 1, 1, 1, 1]), sweeps=0), [0, 0, 1, 1, 1, 1])
    # photos with as much weight in each cluster stay where they are (0-1-2-3, cut in the middle of 1-2)
    path = sparse.diags([np.ones(3), np.ones(3)], [1, -1], shape=(4, 4)).tocsr()
    np.testing.assert_array_equal(neighbour_vote(path, np.array([1, 1, 0, 0])), [1, 1, 0, 0])
    # a cluster that would lose every photo keeps them, and the other moves of the sweep still happen:
    # photo 6, alone in cluster 2 and joined to 4 and 5, stays; photo 2 still joins its triangle
    seven = sparse.lil_matrix((7, 7))
    for i, j in edges + [(4, 6), (5, 6)]:
        seven[i, j] = seven[j, i] = 1
    np.testing.assert_array_equal(neighbour_vote(seven.tocsr(), np.array([0, 0, 1, 1, 1, 1, 2])), [0, 0, 0, 1, 1, 1, 2])
    # photos 0 and 1, tied to each other (weight 2) more than to their own cluster's anchors (2–3
    # and 4–5, weight 1), would swap places for ever: the vote stops, whatever the number of sweeps
    swap = sparse.lil_matrix((6, 6))
    for i, j, w in [(0, 1, 2), (0, 2, 1), (2, 3, 5), (1, 4, 1), (4, 5, 5)]:
        swap[i, j] = swap[j, i] = w
    assert {tuple(neighbour_vote(swap.tocsr(), np.array([0, 1, 0, 0, 1, 1]), sweeps=s)) for s in (1, 2, 3, 10)} == {
        (1, 0, 0, 0, 1, 1)}
    # labels need not be 0..k-1; a photo without neighbours stays where it is
    lone = sparse.block_diag([affinity, sparse.csr_matrix((1, 1))]).tocsr()
    np.testing.assert_array_equal(neighbour_vote(lone, np.array([7, 7, 9, 9, 9, 9, 7])), [0, 0, 0, 1, 1, 1, 0])


def test_modularity_agrees_with_igraph():
    import igraph
    from scipy import sparse

    from image_clustering.clustering import knn_affinity, modularity

    x, truth = directions(k=3)
    affinity = knn_affinity([x], 5)
    upper = sparse.triu(affinity, k=1).tocoo()
    graph = igraph.Graph(n=len(x), edges=np.column_stack([upper.row, upper.col]).tolist(),
                         edge_attrs={"weight": upper.data.tolist()})
    for labels in (truth, np.arange(len(x)) % 2, np.zeros(len(x), int)):
        assert modularity(affinity, labels) == pytest.approx(graph.modularity(labels.tolist(), weights="weight"))


def test_graph_k_takes_the_smallest_k_near_the_top():
    from image_clustering.clustering import graph_k

    ks = np.arange(1, 7)
    values = np.array([np.nan, 0.3, 0.60, 0.62, 0.61, 0.5])
    assert graph_k(ks, values) == 4 and graph_k(ks, values, tolerance=0.05) == 3
    assert graph_k(ks, np.full(6, np.nan)) == 1


def hierarchy(seed=0, fine=True):
    """A 2-D map with two far-apart islands, each of four touching groups (the silhouette of
    k-means on it prefers the two islands), and feature vectors in which the eight groups (or,
    with ``fine`` False, only the two islands) are separate directions."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(8), 40)
    island = groups // 4
    offsets = np.array([[0, 0], [3, 0], [0, 3], [3, 3]])
    points = np.array([[0, 0], [40, 0]])[island] + offsets[groups % 4] + rng.normal(0, 0.4, (len(groups), 2))
    centres = rng.uniform(0, 1, (8 if fine else 2, 64))
    vectors = np.abs(centres[groups if fine else island] + rng.normal(0, 0.1, (len(groups), 64)))
    return points.astype(np.float32), vectors.astype(np.float32), groups, island


def test_modularity_criterion_finds_the_groups_the_map_silhouette_merges():
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering.clustering import AutoKClustering

    points, vectors, groups, _ = hierarchy()
    by_silhouette = AutoKClustering(k_max=20, criterion="silhouette").fit(points, views=[vectors])
    assert by_silhouette.n_clusters_ == 2  # the two islands: what the 2-D silhouette rewards
    by_graph = AutoKClustering(k_max=20, criterion="modularity").fit(points, views=[vectors])
    assert by_graph.n_clusters_ == 8 and by_graph.sweep_.suggestions["modularity"] == 8
    assert normalized_mutual_info_score(groups, by_graph.labels_) == pytest.approx(1.0)
    assert np.isnan(by_graph.sweep_.modularity[0]) and np.nanargmax(by_graph.sweep_.modularity) == 7
    # the guard: the silhouette's 2 holds far less of the graph than 8 do, so the graph's k is taken
    guarded = AutoKClustering(k_max=20, criterion="guarded_silhouette").fit(points, views=[vectors])
    assert guarded.sweep_.suggestions["silhouette"] == 2 and guarded.n_clusters_ == 8


def test_modularity_criterion_keeps_two_where_two_is_the_structure():
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering.clustering import AutoKClustering

    points, vectors, _, island = hierarchy(fine=False)  # the features know only the islands
    for criterion in ("modularity", "guarded_silhouette"):
        model = AutoKClustering(k_max=20, criterion=criterion).fit(points, views=[vectors])
        assert model.n_clusters_ == 2 and normalized_mutual_info_score(island, model.labels_) == pytest.approx(1.0)


@pytest.mark.slow
def test_thirty_thousand_photos_are_clustered_by_leiden_on_an_approximate_graph(caplog):
    """Above the sample size (20,000) the default graph method still runs (no k-means fallback):
    the exact-k cut of a sample's graph, the rest placed on pynndescent's approximate graph."""
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering import clustering

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 12, 30_000)
    centres = rng.uniform(0, 1, (12, 48))
    vectors = np.abs(centres[truth] + rng.normal(0, 0.2, (len(truth), 48))).astype(np.float32)
    with caplog.at_level("INFO", logger="image_clustering"):
        model = clustering.AutoKClustering(n_clusters=12).fit(vectors[:, :2], views=[vectors[:, :24], vectors[:, 24:]])
    assert "leiden clustering of the 30,000-photo neighbour graph" in caplog.text
    assert "Leiden on the graph of 20,000 of 30,000 photos" in caplog.text and "(approximate graph)" in caplog.text
    assert model.n_clusters_ == 12 and normalized_mutual_info_score(truth, model.labels_) >= 0.99


@pytest.mark.slow  # pynndescent compiles its functions on first use (numba): up to minutes on a busy machine
def test_approximate_graph_matches_the_exact_one():
    from image_clustering.clustering import neighbour_graph

    x, _ = directions(k=4, per=50)
    exact = neighbour_graph(x, 8, approximate=False)
    approximate = neighbour_graph(x, 8, approximate=True)
    assert (approximate != approximate.T).nnz == 0 and approximate.diagonal().sum() == 0
    shared = exact.multiply(approximate).nnz / exact.nnz
    assert shared >= 0.99  # NN-descent keeping ANN_SEARCH candidates recovers nearly every exact pair
