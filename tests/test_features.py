"""The feature store: incremental extraction, failures, consistency (random-weight network)."""
import csv
import dataclasses
import os

import numpy as np
import pytest

from image_clustering import ImgclustError
from image_clustering.features import extract_features, load_store
from tests.conftest import noise_photo


def photo(path, seed, size=(80, 60)):
    return noise_photo(path, seed, size)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for i, rel in enumerate(["a/same.jpg", "b/same.jpg", "c.png", "d e ü.jpg"]):
        photo(root / rel, i)
    return root


def run(config, extractor, counter=None):
    """Extract with ``extractor``; ``counter`` collects the batch sizes the network saw."""
    (loader, identity), = extractor.values()

    def counting_loader():
        network = loader()
        if counter is None:
            return network

        def run_counting(x):
            counter.append(len(x))
            return network.run(x)

        return dataclasses.replace(network, run=run_counting)

    return extract_features(config, {"inception_v3": (counting_loader, identity)}, progress=False)


def store_of(config):
    return load_store(config.feature_dir / "inception_v3")


def test_extract_then_rerun_computes_only_what_changed(photos, make_config, random_extractor):
    config = make_config(photos)
    first = run(config, random_extractor)
    assert (first.total, first.computed, first.failed) == (4, 4, 0)
    store = store_of(config)
    assert store.vectors.shape == (4, 2048) and store.vectors.dtype == np.float32
    assert store.paths == ["a/same.jpg", "b/same.jpg", "c.png", "d e ü.jpg"]  # same names, no collision
    assert not np.allclose(store.vectors[0], store.vectors[1])
    before = np.array(store.vectors)

    calls = []
    again = run(config, random_extractor, calls)
    assert (again.computed, again.reused, calls) == (0, 4, [])  # the network is not even loaded

    (photos / "c.png").unlink()
    photo(photos / "a/same.jpg", 99)
    os.utime(photos / "a/same.jpg", ns=(1, 1))  # a different mtime marks it changed
    photo(photos / "new.jpg", 7)
    third = run(config, random_extractor, calls)
    assert (third.total, third.computed, third.reused, third.removed) == (4, 2, 2, 1)
    store = store_of(config)
    assert store.paths == ["a/same.jpg", "b/same.jpg", "d e ü.jpg", "new.jpg"]
    np.testing.assert_array_equal(store.vectors[1], before[1])  # reused row kept as is
    assert not np.allclose(store.vectors[0], before[0])
    assert len(list((config.feature_dir / "inception_v3").glob("*.npy"))) == 1  # superseded arrays removed


def test_corrupt_files_are_skipped_and_listed(photos, make_config, random_extractor):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "page.png").write_text("<html>not a photo</html>")
    good = (photos / "c.png").read_bytes()
    (photos / "cut.png").write_bytes(good[: len(good) // 3])
    os.symlink(photos / "missing.jpg", photos / "dangling.jpg")
    config = make_config(photos)
    summary = run(config, random_extractor)
    assert (summary.computed, summary.failed) == (4, 4)
    with open(config.feature_dir / "failures.csv", newline="") as f:
        failures = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert set(failures) == {"empty.jpg", "page.png", "cut.png", "dangling.jpg"}
    assert all(reason for reason in failures.values())
    assert "4 failed" in summary.line()


def test_another_extractor_never_mixes_vectors(photos, make_config, random_extractor):
    config = make_config(photos)
    run(config, random_extractor)
    (loader, _), = random_extractor.values()
    other = extract_features(config, {"inception_v3": (loader, {"network": "another"})}, progress=False)
    assert other.computed == 4 and other.reused == 0
    assert store_of(config).extractor == {"network": "another"}


def test_no_images_is_a_clear_error(tmp_path, make_config, random_extractor):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgclustError, match="no images"):
        run(make_config(tmp_path / "empty"), random_extractor)


def test_a_half_written_store_is_ignored(photos, make_config, random_extractor):
    config = make_config(photos)
    run(config, random_extractor)
    # A crash after a shard was saved but before the index was replaced leaves an orphan.
    orphan = config.feature_dir / "inception_v3" / "0123456789ab.features.npy"
    orphan.write_bytes(b"partial")
    assert store_of(config).vectors.shape == (4, 2048)
    run(config, random_extractor)
    assert not orphan.exists()


def test_vgg16_fc2_and_resnet50_extract_side_by_side(photos, make_config):
    """The extractors of the imagecluster (VGG16 fc2) and ResNet50 workflows, randomly initialised
    (their official weights live on a host this machine cannot reach): shapes, Caffe
    preprocessing, one store per network recording which network and weights made it."""
    import keras

    from image_clustering.extractor import build_resnet50, build_vgg16, preprocess_caffe, wrap_network

    keras.utils.set_random_seed(0)
    networks = {"vgg16": wrap_network("vgg16", build_vgg16(), "caffe"),
                "resnet50": wrap_network("resnet50", build_resnet50(), "caffe")}
    batch = np.zeros((1, 224, 224, 3), np.uint8)
    batch[..., 0] = 255  # pure red: becomes channel 2 after RGB → BGR
    np.testing.assert_allclose(preprocess_caffe(batch)[0, 0, 0], [-103.939, -116.779, 255 - 123.68], rtol=1e-6)
    config = make_config(photos, extractor=["vgg16", "resnet50"])
    identities = {name: ((lambda n=n: n), {"network": name, "source": "random-test"}) for name, n in networks.items()}
    summary = extract_features(config, identities, progress=False)
    assert summary.computed == 4
    for name, dim in (("vgg16", 4096), ("resnet50", 2048)):
        store = load_store(config.feature_dir / name)
        assert store.vectors.shape == (4, dim) and np.isfinite(store.vectors).all()
        assert store.extractor == {"network": name, "source": "random-test"}
    assert not np.allclose(load_store(config.feature_dir / "vgg16").vectors[0],
                           load_store(config.feature_dir / "vgg16").vectors[1])


def test_resize_pad_reaches_the_network_and_is_part_of_the_store_identity(photos, make_config, random_extractor):
    from image_clustering import pipeline

    seen = []
    (loader, identity), = random_extractor.values()

    def recording_loader():
        network = loader()
        return dataclasses.replace(network, run=lambda x: seen.append(x.copy()) or network.run(x))

    config = make_config(photos, resize="pad")
    extract_features(config, {"inception_v3": (recording_loader, identity)}, progress=False)
    first = seen[1][:4]  # (seen[0] is the all-zero warm-up) 80×60 photos: 299 wide, 224 tall, bars above and below
    assert (first[:, :30] == 0).all() and (first[:, -30:] == 0).all() and first[:, 100:200].any(axis=(1, 2, 3)).all()
    assert pipeline._network(config, "inception_v3")[1]["resize"] == "pad"
    assert "resize" not in pipeline._network(make_config(photos, resize="squash"), "inception_v3")[1]  # as before the key
