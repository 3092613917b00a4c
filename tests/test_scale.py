"""The clustering stage above the embedding's sample size: PCA and t-SNE/UMAP fitted on a sample,
applied to / placed for every image, from feature rows read on demand (no whole matrix)."""
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from image_clustering.clustering import cluster_kmeans
from image_clustering.embedding import FeatureEmbedding, FeatureRows, clustering_space, combine, sampled_pca


def blobs(n, d, k, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d)).astype(np.float32)
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(0, 0.3, (n, d))).astype(np.float32), labels


def test_feature_rows_equal_combined_matrix():
    a, _ = blobs(500, 12, 3, 0)
    b, _ = blobs(600, 7, 3, 1)
    rows = [np.arange(500)[::-1].copy(), np.arange(100, 600)]
    fr = FeatureRows([a, b], rows)
    whole = combine([a[rows[0]], b[rows[1]]])
    assert fr.shape == whole.shape
    np.testing.assert_array_equal(fr.array(), whole)
    np.testing.assert_array_equal(np.concatenate([c for _, c in fr.chunks(64)]), whole)
    np.testing.assert_array_equal(fr.take(np.array([3, 70, 499])), whole[[3, 70, 499]])


def test_sampled_pca_projects_every_row_like_the_sample_fit():
    x, _ = blobs(3000, 40, 5, 2)
    out, index = sampled_pca(FeatureRows([x]), 10, seed=0, standardize=True, sample_size=1000)
    assert out.shape == (3000, 10) and out.dtype == np.float32 and len(index) == 1000
    again, _ = sampled_pca(FeatureRows([x]), 10, seed=0, standardize=True, sample_size=1000)
    np.testing.assert_array_equal(out, again)  # seeded: the pca space and the embedding agree


@pytest.mark.slow
@pytest.mark.parametrize("reducer", ["tsne", "umap"])
def test_sampled_embedding_keeps_the_clusters(reducer):
    """Fitted on 400 of 1,200 points and the rest placed: k-means finds the same clusters."""
    x, truth = blobs(1200, 30, 6, 3)
    est = FeatureEmbedding(pca_dimension=10, reducer=reducer, seed=0, sample_size=400)
    embedding = est.fit_transform(FeatureRows([x]))
    assert embedding.shape == (1200, 2) and embedding.dtype == np.float32
    assert np.isfinite(embedding).all()
    labels = cluster_kmeans(embedding, 6, 4, 0).labels
    assert normalized_mutual_info_score(truth, labels) > 0.95


@pytest.mark.slow
def test_below_the_sample_size_nothing_changes():
    x, _ = blobs(120, 30, 3, 4)
    a = FeatureEmbedding(pca_dimension=10, seed=0).fit_transform(x)
    b = FeatureEmbedding(pca_dimension=10, seed=0).fit_transform(FeatureRows([x]))
    np.testing.assert_array_equal(a, b)
    assert "sample_size" not in FeatureEmbedding().cache_key()


def test_features_space_refused_above_the_sample_size(monkeypatch):
    import image_clustering.embedding as embedding

    monkeypatch.setattr(embedding, "EMBED_SAMPLE", 100)
    x, _ = blobs(300, 8, 3, 5)
    with pytest.raises(ValueError, match="features space"):
        clustering_space(FeatureRows([x]), None, "features")
    assert clustering_space(FeatureRows([x]), None, "pca", pca_dimension=4).shape == (300, 4)


def test_most_similar_reads_feature_rows_chunk_by_chunk_like_the_matrix():
    from image_clustering.neighbours import most_similar

    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(40_000, 8)).astype(np.float32), rng.normal(size=(40_000, 4)).astype(np.float32)]
    rows = FeatureRows(blocks)  # 40,000 rows: three chunks of at most 16,384
    matrix = combine(blocks)
    query = matrix[31_000] + 0.01
    expected = most_similar(query, matrix, 5, exclude=31_000)
    got = most_similar(query, rows, 5, exclude=31_000)
    assert [i for i, _ in got] == [i for i, _ in expected] and 31_000 not in [i for i, _ in got]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)
