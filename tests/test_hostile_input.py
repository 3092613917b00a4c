"""Hostile input (issue 10): odd numbers in the config, damaged manifests, non-regular files, Ctrl-C,
a full disk, huge photos, repeated failures, replaced photos. Each case ends in one clear line or a
clean skip, never a traceback, a hang or lost results."""
import csv
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from image_clustering import ImgclustError, config_from_dict
from image_clustering.cli import main
from tests.conftest import MODEL_DIR

BASE = {"paths": {"image_dir": "photos"}, "model": {"object_name": "x"}}


def with_model(**model):
    return {"paths": dict(BASE["paths"]), "model": {**BASE["model"], **model}}


def noise(path, seed, size=(48, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def failures_of(config) -> dict[str, dict]:
    with open(config.feature_dir / "failures.csv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


# ---- D13: numbers in the config ------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("n_init", 2.0), ("pca_dimension", 10.0), ("reduced_dimension", 3.0), ("seed", 1.0), ("batch_size", 8.0),
    ("k", 5.0), ("seed", 2**32), ("perplexity", math.nan), ("time_weight", math.nan), ("sim", math.nan),
    ("perplexity", math.inf), ("tag_min_score", -math.inf), ("min_cluster_size", 3.0), ("label_k", 4.0),
])
def test_config_rejects_floats_for_integers_too_large_seeds_and_nan(key, value):
    raw = with_model(**{key: value})
    if key == "sim":
        raw["model"]["algorithm"] = "agglomerative"
    with pytest.raises(ImgclustError) as info:
        config_from_dict(raw, source="c.json")
    message = str(info.value)
    assert message.startswith(f"c.json: model.{key}: ") and "\n" not in message, message
    assert "algorithm" not in message


def test_config_still_accepts_whole_numbers_and_the_largest_seed():
    model = config_from_dict(with_model(n_init=2, seed=2**32 - 1, perplexity=5, sim=None)).model
    assert model.n_init == 2 and model.seed == 2**32 - 1 and model.perplexity == 5


def test_nan_in_a_config_file_names_the_key_in_one_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"paths": {"image_dir": "p"}, "model": {"object_name": "x", "perplexity": NaN}}')
    one_line_error(CliRunner().invoke(main, ["extract", "--config", str(path)]), "model.perplexity", "c.json")


def test_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.json"
    raw = {"paths": {"image_dir": "Fotos/\u00e9t\u00e9"}, "model": {"object_name": "x"}}
    path.write_bytes(json.dumps(raw, ensure_ascii=False).encode("latin-1"))
    one_line_error(CliRunner().invoke(main, ["extract", "--config", str(path)]), "latin1.json", "UTF-8")


def fake_store(config, n, dim=16):
    """A compacted inception_v3 store of ``n`` random vectors (no photos, no network)."""
    from image_clustering.features import OUTPUTS, _StoreWriter
    from image_clustering.images import ImageFile

    images = [ImageFile(f"{i:03d}.jpg", 100, 1) for i in range(n)]
    writer = _StoreWriter(config.feature_dir / "inception_v3", {"network": "fake"}, dim, keep_previous=False)
    writer.append(images, {"features": np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)})
    writer.compact({f.path for f in images}, {"features": ((dim,), np.float32)})
    return images


@pytest.mark.parametrize("min_cluster_size, needle", [(1000, "1000 is larger than the 12 images"),
                                                      (None, "5 (the default) is larger than the 4 images")])
def test_hdbscan_min_cluster_size_above_the_image_count_names_the_key(tmp_path, make_config, min_cluster_size, needle):
    n = 12 if min_cluster_size else 4
    config = make_config(tmp_path / "p", extractor="inception_v3", algorithm="hdbscan", space="pca",
                         min_cluster_size=min_cluster_size, pca_dimension=3, perplexity=2)
    fake_store(config, n)
    result = CliRunner().invoke(main, ["cluster", "-q", "--config", str(config.source)])
    one_line_error(result, "model.min_cluster_size", needle)


# ---- D14: damaged weights manifests --------------------------------------------------------------

def damaged_model_dir(tmp_path, damage):
    """A copy of models/ (weights linked, manifests copied) whose inception_v3.json is damaged."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("inception_v3", "efficientnet_lite0"):
        manifest = json.loads((MODEL_DIR / f"{name}.json").read_text())
        (models / manifest["file"]).symlink_to(MODEL_DIR / manifest["file"])
        (models / f"{name}.json").write_text(json.dumps(manifest))
    target = models / "inception_v3.json"
    good, other = json.loads(target.read_text()), json.loads((models / "efficientnet_lite0.json").read_text())
    if damage == "truncated":
        target.write_text(target.read_text()[:40])
    elif damage == "no sha256":
        target.write_text(json.dumps({k: v for k, v in good.items() if k != "sha256"}))
    elif damage == "other network's manifest":
        target.write_text(json.dumps(other))
    elif damage == "other network's file":
        target.write_text(json.dumps({**good, "file": other["file"], "sha256": other["sha256"]}))
    elif damage == "not an object":
        target.write_text("[]")
    return models


@pytest.mark.parametrize("damage", ["truncated", "no sha256", "other network's manifest", "other network's file",
                                    "not an object"])
def test_damaged_manifest_is_one_line_naming_it_and_the_fix(tmp_path, make_config, damage):
    if not (MODEL_DIR / "inception_v3.json").is_file() or not (MODEL_DIR / "efficientnet_lite0.json").is_file():
        pytest.skip("verified weights not in models/")
    noise(tmp_path / "p" / "a.jpg", 0)
    config = make_config(tmp_path / "p", extractor="inception_v3")
    raw = json.loads(config.source.read_text())
    raw["paths"]["model_dir"] = str(damaged_model_dir(tmp_path, damage))
    config.source.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["extract", "-q", "--config", str(config.source)])
    one_line_error(result, "inception_v3.json", "damaged", "imgclust download --force")


def test_download_replaces_a_damaged_manifest(tmp_path):
    from image_clustering.weights import download_weights, load_manifest

    models = tmp_path / "models"
    models.mkdir()
    (models / "inception_v3.json").write_text('{"source": "google-2015", "fo')
    h5 = tmp_path / "own.h5"
    h5.write_bytes(b"not really HDF5, but a local file is taken as given")
    lines = []
    manifest = download_weights("inception_v3", str(h5), models, force=True, log=lines.append)
    assert manifest["source"] == "local" and load_manifest(models, "inception_v3")["sha256"] == manifest["sha256"]
    assert any("damaged" in line for line in lines)
