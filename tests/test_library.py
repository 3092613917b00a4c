"""The library as a notebook uses it: arrays in, arrays and figures out, no config file."""
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import normalized_mutual_info_score

from image_clustering.clustering import AutoKClustering
from image_clustering.embedding import FeatureEmbedding
from tests.conftest import MODEL_DIR, ROOT


@pytest.mark.weights
def test_folder_to_clusters_and_an_inline_figure(real_weights, lite0_weights):
    """The README's notebook session: folder → vectors → embedding → clusters → figure."""
    from matplotlib.figure import Figure

    from image_clustering.features import extract_vectors
    from image_clustering.images import list_images
    from image_clustering.plots import plot_k_criteria, plot_scatter

    folder = ROOT / "raw" / "example"
    photos = [folder / f.path for f in list_images(folder)]
    found = extract_vectors(photos, model_dir=MODEL_DIR, batch_size=8)
    assert found.vectors.shape == (40, 2048 + 1280) and found.vectors.dtype == np.float32 and not found.failures

    embedding = FeatureEmbedding(perplexity=10).fit_transform(found.vectors)
    assert embedding.shape == (40, 2)
    model = AutoKClustering(n_clusters="auto", k_max=20).fit(embedding, views=[found.vectors])
    truth = [p.parent.name for p in found.paths]
    assert model.n_clusters_ == 10 and model.sweep_.suggested_k == 10
    assert normalized_mutual_info_score(truth, model.labels_) == pytest.approx(1.0)
    assert model.cluster_centers_.shape == (10, 2) and model.labels_.shape == (40,)

    ax = plot_scatter(embedding, model.labels_, "example")
    fig = plot_k_criteria(model.sweep_)
    assert isinstance(ax.figure, Figure) and isinstance(fig, Figure) and len(fig.axes) == 3


def test_estimators_follow_scikit_learn_conventions():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-10, 10, (3, 20))
    x = np.concatenate([c + rng.normal(0, 0.3, (30, 20)) for c in centres]).astype(np.float32)
    embedding = FeatureEmbedding(pca_dimension=5, perplexity=10)
    assert embedding.get_params()["perplexity"] == 10 and clone(embedding).get_params() == embedding.get_params()
    assert embedding.fit(x) is embedding and embedding.embedding_.shape == (90, 2)
    assert embedding.pca_features_.shape == (90, 5)
    # the cache key holds only the chosen reducer's parameters
    assert "n_neighbors" not in embedding.cache_key() and "perplexity" in embedding.cache_key()
    assert "perplexity" not in embedding.set_params(reducer="umap").cache_key()

    for params in ({"n_clusters": 3}, {"n_clusters": "auto", "k_max": 8}, {"algorithm": "kmeans", "n_clusters": 3},
                   {"algorithm": "agglomerative", "linkage": "average", "n_clusters": 3},
                   {"algorithm": "hdbscan", "min_cluster_size": 10}):
        model = AutoKClustering(**params)
        labels = model.fit_predict(x)
        assert model.n_clusters_ == 3 and normalized_mutual_info_score(np.repeat([0, 1, 2], 30), labels) == 1.0
        assert (model.sweep_ is not None) == (params.get("n_clusters") == "auto")
    with pytest.raises(ValueError, match="larger than the number of images"):
        AutoKClustering(n_clusters=200).fit(x)


def test_imgclust_help_answers_without_loading_the_heavy_libraries():
    """Importing the CLI and answering --help load none of the heavy libraries (what makes --help
    instant; its speed itself is no test's business: it depends on the machine)."""
    code = ("import sys\nfrom image_clustering.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('sklearn', 'tensorflow', 'matplotlib', 'keras') if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "Usage:" in out.stdout and out.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.py")))
def test_every_script_explains_itself(script):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stderr[-500:]


def test_ruff_is_clean():
    ruff = pytest.importorskip("ruff", reason="ruff is in the test extras")
    del ruff
    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:]
