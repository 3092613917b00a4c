"""Keras backends (TensorFlow, JAX, PyTorch where installed) and precision: the golden weights tests under each backend, in a
fresh process (Keras fixes its backend at import), and the one-line errors."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_clustering import ImgclustError, backend
from tests.conftest import ROOT, SHARED, needs_shared

# The golden checks of tests/test_weights.py (same tolerances), run by a child process so that
# KERAS_BACKEND is read by a fresh Keras.
GOLDEN = r"""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from image_clustering import backend
from image_clustering.networks import load_network
manifests, precision = json.loads(sys.argv[1]), sys.argv[2]
backend.set_precision(precision)
out = {"backend": backend.current()}
for folder, manifest in manifests.items():
    ref = Path(sys.argv[3]) / folder
    index = json.loads((ref / "index.json").read_text())
    batch = np.stack([np.asarray(Image.open(ref / n).convert("RGB")) for n in index["images"]])
    got = load_network(manifest)
    result = got.run(batch)
    f, expected = result["features"], np.load(ref / "features.npy")
    cos = (f * expected).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(expected, axis=1)
    out[folder] = {"max_abs": float(np.abs(f - expected).max()), "min_cos": float(cos.min()),
                   "top5": [list(map(int, r[:5])) for r in result.get("top_classes", [])]}
print(json.dumps(out))
"""
# README's claims, as test_weights.py; XLA (JAX) sums InceptionV3's convolutions in another order:
# measured 6.4e-6 there (6.3e-6 from TensorFlow's own vectors, cosine 1.0).
TOLERANCE = {"tensorflow": {"inception2015": 3e-6, "efficientnet_lite0": 8e-6},
             "jax": {"inception2015": 1e-5, "efficientnet_lite0": 8e-6},
             "torch": {"inception2015": 1e-5, "efficientnet_lite0": 8e-6}}  # measured 3.8e-6 and 5.7e-6


def _golden(backend_name: str, manifests: dict, precision: str = "float32") -> dict:
    if importlib.util.find_spec(backend.BACKENDS[backend_name][0]) is None:
        pytest.skip(f"the {backend_name} backend is not installed (pip install 'imgclust[{backend_name}]')")
    env = {**os.environ, "KERAS_BACKEND": backend_name, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", GOLDEN, json.dumps(manifests), precision,
                           str(needs_shared(SHARED / "reference"))],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.shared
@pytest.mark.parametrize("name", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow),  # XLA compiles: ~95 s
                                  pytest.param("torch", marks=pytest.mark.slow)])  # skipped where torch is not installed
def test_golden_features_under_each_backend(name, real_weights, lite0_weights):
    out = _golden(name, {"inception2015": real_weights, "efficientnet_lite0": lite0_weights})
    assert out["backend"] == name
    for folder, tolerance in TOLERANCE[name].items():
        assert out[folder]["max_abs"] <= tolerance, (folder, out[folder])
    index = json.loads((SHARED / "reference" / "efficientnet_lite0" / "index.json").read_text())
    expected = [[entry[0] for entry in index["top5"][n]] for n in index["images"]]
    assert out["efficientnet_lite0"]["top5"] == expected


@pytest.mark.shared
def test_bfloat16_moves_lite0_features_but_keeps_their_direction(lite0_weights):
    out = _golden("tensorflow", {"efficientnet_lite0": lite0_weights}, "mixed_bfloat16")
    assert out["efficientnet_lite0"]["max_abs"] > 8e-6  # really computed in bfloat16
    assert out["efficientnet_lite0"]["min_cos"] >= 0.99


def test_unknown_backend_and_precision_name_their_key(monkeypatch):
    with pytest.raises(ImgclustError, match=r"^model\.backend: unknown Keras backend 'theano'"):
        backend.select("theano")
    monkeypatch.setenv("KERAS_BACKEND", "mxnet")
    with pytest.raises(ImgclustError, match=r"^KERAS_BACKEND: unknown Keras backend 'mxnet'"):
        backend.select()
    with pytest.raises(ImgclustError, match=r"^model\.precision: 'float8'"):
        backend.set_precision("float8")


def test_missing_backend_package_says_how_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as before the first import
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImgclustError, match=r"^model\.backend: the 'torch' backend needs torch.*imgclust\[torch\]"):
        backend.select("torch")


def test_switching_after_keras_was_imported_is_refused():
    from image_clustering.extractor import _keras

    loaded = _keras().backend.backend()
    other = "jax" if loaded != "jax" else "tensorflow"
    with pytest.raises(ImgclustError, match=f"already imported with the '{loaded}' backend.*KERAS_BACKEND={other}"):
        backend.select(other)
    assert backend.select(loaded) == loaded


def test_config_keys(make_config, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    config = make_config(photos, backend="jax", precision="mixed_bfloat16")
    assert (config.model.backend, config.model.precision) == ("jax", "mixed_bfloat16")
    assert make_config(photos).model.backend is None
    with pytest.raises(ImgclustError, match="model.backend"):
        make_config(photos, backend="theano")
    with pytest.raises(ImgclustError, match="model.precision"):
        make_config(photos, precision="half")


def test_cli_module_does_not_pin_the_backend():
    """Importing the package must not import Keras (the backend would be fixed too early)."""
    done = subprocess.run([sys.executable, "-c", "import image_clustering.cli, sys; print('keras' in sys.modules)"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          cwd=Path(ROOT))
    assert done.stdout.strip() == "False", done.stderr[-500:]
