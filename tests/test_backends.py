"""Keras backends (TensorFlow, JAX, PyTorch where installed) and precision: the golden weights tests under each backend, in a
fresh process (Keras fixes its backend at import), and the one-line errors."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_clustering import ImgclustError, backend
from tests.conftest import ROOT, SHARED, needs_shared
from tests.golden import top_classes_agree

# The golden checks of tests/test_weights.py (same tolerances: tests/golden.py, float32 reordering
# on any kernel path), run by a child process so that KERAS_BACKEND is read by a fresh Keras.
GOLDEN = r"""
import json, sys
from image_clustering import backend
from tests.test_weights import golden_check
manifests, folders, precision = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
backend.set_precision(precision)
out = {"backend": backend.current()}
for folder in folders:
    out[folder] = {name: {k: (v.tolist() if k == "values" else v) for k, v in check.items()}
                   for name, check in golden_check(folder, manifests).items()}
print(json.dumps(out))
"""


def _golden(backend_name: str, manifests: dict, folders: list[str], precision: str = "float32", env: dict = ()) -> dict:
    if importlib.util.find_spec(backend.BACKENDS[backend_name][0]) is None:
        pytest.skip(f"the {backend_name} backend is not installed (pip install 'imgclust[{backend_name}]')")
    needs_shared(SHARED / "reference")
    env = {**os.environ, "KERAS_BACKEND": backend_name, "PYTHONPATH": str(ROOT), **dict(env)}
    done = subprocess.run([sys.executable, "-c", GOLDEN, json.dumps(manifests), json.dumps(folders), precision],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def manifests(real_weights, lite0_weights):
    return {"inception_v3": real_weights, "efficientnet_lite0": lite0_weights}


FOLDERS = ["inception2015", "efficientnet_lite0"]


def _assert_golden(out: dict) -> None:
    for folder in FOLDERS:
        for name, check in out[folder].items():
            assert check["max_abs"] <= check["tolerance"], (folder, name, check["max_abs"], check["tolerance"])
    index = json.loads((SHARED / "reference" / "efficientnet_lite0" / "index.json").read_text())
    top5 = [[entry[0] for entry in index["top5"][n]] for n in index["images"]]
    logits = out["efficientnet_lite0"]["logits"]
    assert top_classes_agree(np.array(logits["values"]), top5, logits["tolerance"])


@pytest.mark.shared
@pytest.mark.parametrize("name", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow),  # XLA compiles: ~95 s
                                  pytest.param("torch", marks=pytest.mark.slow)])  # skipped where torch is not installed
def test_golden_features_under_each_backend(name, manifests):
    out = _golden(name, manifests, FOLDERS)
    assert out["backend"] == name
    _assert_golden(out)


@pytest.mark.shared
@pytest.mark.slow
def test_golden_features_on_tensorflows_eigen_kernels(manifests):
    """Another kernel path on the same CPU: TensorFlow without oneDNN sums in another order."""
    _assert_golden(_golden("tensorflow", manifests, FOLDERS, env={"TF_ENABLE_ONEDNN_OPTS": "0"}))


@pytest.mark.shared
def test_bfloat16_moves_lite0_features_but_keeps_their_direction(manifests):
    out = _golden("tensorflow", manifests, ["efficientnet_lite0"], "mixed_bfloat16")["efficientnet_lite0"]["features"]
    assert out["max_abs"] > out["tolerance"]  # really computed in bfloat16, beyond any float32 reordering
    assert out["min_cos"] >= 0.99


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
