"""Hostile input (issue 10): odd numbers in the config, damaged manifests, non-regular files, Ctrl-C,
a full disk, huge photos, repeated failures, replaced photos. Each case ends in one clear line or a
clean skip, never a traceback, a hang or lost results."""
import csv
import errno
import json
import math
import os
import re
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
from tests.conftest import MODEL_DIR, noise_photo

BASE = {"paths": {"image_dir": "photos"}, "model": {"object_name": "x"}}


def with_model(**model):
    return {"paths": dict(BASE["paths"]), "model": {**BASE["model"], **model}}


def noise(path, seed, size=(48, 40)):
    return noise_photo(path, seed, size)


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


def test_config_file_with_a_utf8_byte_order_mark_loads(tmp_path):
    from image_clustering import load_config

    path = tmp_path / "notepad.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(with_model(seed=3)).encode())
    assert load_config(path).model.seed == 3


def fake_store(config, n, dim=16):
    """A compacted inception_v3 store of ``n`` random vectors (stand-in photo files, no network)."""
    from image_clustering.features import _StoreWriter
    from image_clustering.images import ImageFile

    images = [ImageFile(f"{i:03d}.jpg", 100, 1) for i in range(n)]
    config.paths.image_dir.mkdir(parents=True, exist_ok=True)
    for image in images:  # files as the store recorded them, so cluster finds none deleted
        (config.paths.image_dir / image.path).write_bytes(b"x" * image.size)
        os.utime(config.paths.image_dir / image.path, ns=(image.mtime_ns, image.mtime_ns))
    writer = _StoreWriter(config.feature_dir / "inception_v3", {"network": "fake"}, dim, keep_previous=False)
    writer.append(images, {"features": np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)})
    writer.compact({f.path for f in images}, {"features": ((dim,), np.float32)})
    return images


@pytest.mark.parametrize("min_cluster_size, needle", [(1000, "1000 is larger than the 12 images"),
                                                      (None, "5 (the default) is larger than the 4 images")])
def test_hdbscan_min_cluster_size_above_the_image_count_names_the_key(tmp_path, make_config, monkeypatch,
                                                                      min_cluster_size, needle):
    from image_clustering import pipeline

    n = 12 if min_cluster_size else 4
    config = make_config(tmp_path / "p", extractor="inception_v3", algorithm="hdbscan", space="pca",
                         min_cluster_size=min_cluster_size, pca_dimension=3)
    fake_store(config, n)
    # t-SNE is beside the point (and slow beside TensorFlow's threads): a flat embedding
    monkeypatch.setattr(pipeline, "embed", lambda config, vectors, key: np.zeros((len(vectors), 2), np.float32))
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


def test_download_replaces_a_damaged_manifest(tmp_path, caplog):
    from image_clustering.weights import download_weights, load_manifest

    models = tmp_path / "models"
    models.mkdir()
    (models / "inception_v3.json").write_text('{"source": "google-2015", "fo')
    h5 = tmp_path / "own.h5"
    h5.write_bytes(b"not really HDF5, but a local file is taken as given")
    with caplog.at_level("INFO", logger="image_clustering"):
        manifest = download_weights("inception_v3", str(h5), models, force=True)
    lines = [r.getMessage() for r in caplog.records]
    assert manifest["source"] == "local" and load_manifest(models, "inception_v3")["sha256"] == manifest["sha256"]
    assert any("damaged" in line for line in lines)


# ---- D3: FIFOs and other non-regular files, Ctrl-C -----------------------------------------------

@pytest.fixture
def cli_random_extractor(monkeypatch, random_extractor):
    """The CLI's inception_v3 is the random-weight one (no trained weights needed)."""
    from image_clustering import pipeline

    monkeypatch.setattr(pipeline, "_network", lambda config, name: random_extractor[name])
    return random_extractor


def test_fifo_socket_or_device_named_like_a_photo_is_listed_as_failed_not_opened(tmp_path, make_config,
                                                                                  cli_random_extractor):
    photos = tmp_path / "p"
    noise(photos / "a.jpg", 0)
    os.mkfifo(photos / "pipe.jpg")
    (photos / "link-to-pipe.png").symlink_to(photos / "pipe.jpg")
    (photos / "null.jpg").symlink_to("/dev/null")
    (photos / "link-to-a.jpg").symlink_to(photos / "a.jpg")  # a link to a photo is still a photo
    config = make_config(photos, extractor="inception_v3", batch_size=4)
    result = without_hanging_on(photos / "pipe.jpg", lambda: CliRunner().invoke(
        main, ["extract", "-q", "--config", str(config.source)]))
    assert result.exit_code == 0, result.output
    assert "2 images in store" in result.output and "3 failed" in result.output
    failures = failures_of(config)
    assert set(failures) == {"pipe.jpg", "link-to-pipe.png", "null.jpg"}
    assert failures["pipe.jpg"]["reason"] == "not a regular file (FIFO)"
    assert failures["null.jpg"]["reason"] == "not a regular file (character device)"


def without_hanging_on(fifo, call, seconds=60):
    """``call()``, failing the test (instead of hanging it) when it is still stuck opening ``fifo``
    after ``seconds``."""
    import threading

    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        for _ in range(20):  # be the writer the stuck open() waits for, so the run can end
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"blocked on {fifo.name} for {seconds} s")
    return outcome[0]


def test_a_fifo_that_appears_after_listing_does_not_block_decoding(tmp_path):
    from image_clustering.images import load_rgb

    os.mkfifo(tmp_path / "late.jpg")

    def decode():
        try:
            load_rgb(tmp_path / "late.jpg", 64)
        except OSError as exc:
            return str(exc)

    assert without_hanging_on(tmp_path / "late.jpg", decode, seconds=5) == "not a regular file (FIFO)"


def test_ctrl_c_stops_extract_within_seconds_and_the_next_run_resumes(lite0_weights, tmp_path, make_config):
    photos = tmp_path / "p"
    for i in range(64):
        noise(photos / f"{i:03d}.png", i, size=(64, 64))
    os.mkfifo(photos / "zz-pipe.jpg")  # last in order: must not hold anything up either
    config = make_config(photos, extractor="efficientnet_lite0", batch_size=4)
    index = config.feature_dir / "efficientnet_lite0" / "index.json"
    proc = subprocess.Popen([sys.executable, "-m", "image_clustering.cli", "extract", "--config", str(config.source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if index.is_file() and len(json.loads(index.read_text())["shards"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130, err  # within the 10 s above: a hang guard, not a speed measure
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    resumed = CliRunner().invoke(main, ["extract", "-q", "--config", str(config.source)])
    assert resumed.exit_code == 0, resumed.output
    computed, reused = map(int, re.search(r"(\d+) computed, (\d+) reused", resumed.output).groups())
    # stopped mid-run: what it had finished is kept, the rest was left for this run
    assert reused >= 8 and computed >= 1 and "64 images in store" in resumed.output and "1 failed" in resumed.output


# ---- (a) failures are remembered -------------------------------------------------------------------

@pytest.mark.parametrize("odd", ["=formula.jpg", os.fsdecode(b"caf\xe9.jpg")])
def test_failed_files_with_odd_names_are_remembered_too(tmp_path, make_config, random_extractor, odd):
    """failures.csv escapes formula cells and keeps non-UTF-8 bytes; reading it back must match."""
    from image_clustering.features import extract_features

    photos = tmp_path / "p"
    noise(photos / "a.jpg", 0)
    (photos / odd).write_bytes(b"not a photo")
    loads = []
    loader, identity = random_extractor["inception_v3"]
    networks = {"inception_v3": (lambda: loads.append(1) or loader(), identity)}
    config = make_config(photos, extractor="inception_v3", batch_size=4)
    assert extract_features(config, networks, progress=False).failed == 1 and len(loads) == 1
    assert extract_features(config, networks, progress=False).failed == 1 and len(loads) == 1


def test_an_unchanged_failed_file_is_not_retried_and_no_network_is_loaded(tmp_path, make_config, random_extractor):
    photos = tmp_path / "p"
    noise(photos / "a.jpg", 0)
    noise(photos / "b.png", 1)
    (photos / "bad.jpg").write_bytes(b"not a photo")
    loads = []
    loader, identity = random_extractor["inception_v3"]
    networks = {"inception_v3": (lambda: loads.append(1) or loader(), identity)}
    config = make_config(photos, extractor="inception_v3", batch_size=4)
    from image_clustering.features import extract_features

    first = extract_features(config, networks, progress=False)
    assert (first.computed, first.failed, len(loads)) == (2, 1, 1)
    token = json.loads((config.feature_dir / "inception_v3" / "index.json").read_text())["shards"]
    again = extract_features(config, networks, progress=False)
    assert (again.total, again.computed, again.reused, again.failed, len(loads)) == (2, 0, 2, 1, 1)
    assert json.loads((config.feature_dir / "inception_v3" / "index.json").read_text())["shards"] == token
    row = failures_of(config)["bad.jpg"]
    assert "cannot identify image file" in row["reason"] and row["size"] == "11"
    (photos / "bad.jpg").chmod(0o600)  # status change (e.g. a permission fixed): tried again
    assert extract_features(config, networks, progress=False).failed == 1 and len(loads) == 2
    noise(photos / "bad.jpg", 2)  # replaced by a real photo: read now
    fixed = extract_features(config, networks, progress=False)
    assert (fixed.total, fixed.computed, fixed.failed, len(loads)) == (3, 1, 0, 3)
    assert failures_of(config) == {}


# ---- D6: a full disk while compacting ------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def test_full_disk_while_compacting_is_one_line_naming_the_file_and_keeps_the_store(tmp_path, make_config,
                                                                                    cli_random_extractor, monkeypatch):
    photos = tmp_path / "p"
    for i in range(3):
        noise(photos / f"{i}.jpg", i)
    config = make_config(photos, extractor="inception_v3", batch_size=4)
    args = ["extract", "-q", "--config", str(config.source)]
    assert CliRunner().invoke(main, args).exit_code == 0
    noise(photos / "new.jpg", 9)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    result = CliRunner().invoke(main, args)
    store_dir = config.feature_dir / "inception_v3"
    one_line_error(result, "No space left on device", f"{store_dir}/", ".features.npy")
    assert leftovers(tmp_path) == []
    from image_clustering.features import load_store

    assert load_store(store_dir).paths == ["0.jpg", "1.jpg", "2.jpg", "new.jpg"]  # old rows and the new shard
    monkeypatch.undo()
    monkeypatch.setattr(__import__("image_clustering.pipeline").pipeline, "_network",
                        lambda config, name: cli_random_extractor[name])
    again = CliRunner().invoke(main, args)  # space again: compaction finishes, nothing recomputed
    assert again.exit_code == 0 and "0 computed, 4 reused" in again.output, again.output


COMPACT_ON_SMALL_DISK = r"""
import sys
from pathlib import Path
import numpy as np
from image_clustering.features import _StoreWriter, load_store
from image_clustering.networks import NETWORKS
from image_clustering.images import ImageFile

store_dir, n = Path(sys.argv[1]), int(sys.argv[2])
writer = _StoreWriter(store_dir, {"network": "fake"}, 2048, keep_previous=False)
images = [ImageFile(f"{i:04d}.jpg", 1, 1) for i in range(n)]
rng = np.random.default_rng(0)
for start in range(0, n, 8):
    writer.append(images[start:start + 8], {"features": rng.normal(size=(len(images[start:start + 8]), 2048))
                                                         .astype(np.float32)})
try:
    writer.compact({f.path for f in images}, NETWORKS["inception_v3"].outputs)
    print("compacted")
except OSError as exc:
    print(f"OSError|{exc.errno}|{exc.filename}|{len(load_store(store_dir).paths)}")
"""


def test_compacting_on_a_really_full_disk_fails_cleanly(small_disk):
    """A real 512 KiB tmpfs: the shards fit, their compacted copy does not (8 KiB per row)."""
    disk = small_disk("512k")
    store_dir = disk / "vectors" / "inception_v3"
    run = subprocess.run([sys.executable, "-c", COMPACT_ON_SMALL_DISK, str(store_dir), "40"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(MODEL_DIR.parent)})
    assert run.returncode == 0, f"exit {run.returncode} (SIGBUS is -7): {run.stderr[-500:]}"
    kind, code, filename, rows = run.stdout.strip().split("|")
    assert (kind, int(code), int(rows)) == ("OSError", errno.ENOSPC, 40)
    assert filename.startswith(str(store_dir)) and filename.endswith(".features.npy")
    assert leftovers(disk) == []


def test_a_failed_write_names_the_file_it_was_writing(tmp_path):
    from image_clustering.atomic import atomic_path

    target = tmp_path / "out" / "table.csv"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(target.parent.iterdir()) == []


# ---- (b) the pixel limit is exactly MAX_PIXELS -----------------------------------------------------

@pytest.fixture(scope="module")
def huge_pngs(tmp_path_factory):
    """1-bit PNGs of 95 Mpx (10000×9500) and just over 100 Mpx (10000×10001): black, a few KiB each."""
    folder = tmp_path_factory.mktemp("huge")
    for name, size in (("95mpx.png", (10000, 9500)), ("over.png", (10000, 10001))):
        Image.new("1", size).save(folder / name, optimize=False, compress_level=1)
    return folder


def test_a_95_megapixel_photo_is_read_and_one_over_100_is_refused(huge_pngs):
    from image_clustering.images import MAX_PIXELS, load_rgb

    assert MAX_PIXELS == 100_000_000
    pixels = load_rgb(huge_pngs / "95mpx.png", 32)
    assert pixels.shape == (32, 32, 3) and pixels.max() == 0
    with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning), match="100,?000,?000"):
        load_rgb(huge_pngs / "over.png", 32)


# ---- (c) -q silences Keras' download messages ----------------------------------------------------

@pytest.mark.parametrize("quiet", [True, False])
def test_keras_download_messages_go_through_the_log_and_q_silences_them(tmp_path, make_config, monkeypatch, quiet):
    from dataclasses import replace

    from image_clustering import networks, weights

    served = tmp_path / "host"
    served.mkdir()
    (served / "vgg16.h5").write_bytes(b"stand-in for the VGG16 weights")
    md5 = weights.file_hash(served / "vgg16.h5", "md5")
    vgg16 = networks.NETWORKS["vgg16"]
    served_source = replace(vgg16.sources["keras"], keras_file={"file": "vgg16.h5", "md5": md5,
                                                                "origin": served.as_uri() + "/"})
    monkeypatch.setitem(networks.NETWORKS, "vgg16", replace(vgg16, sources={"keras": served_source}))
    config = make_config(tmp_path / "p", extractor="vgg16")
    raw = json.loads(config.source.read_text())
    raw["paths"]["model_dir"] = str(tmp_path / "models")
    config.source.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["download", *(["-q"] if quiet else []),
                                      "--config", str(config.source)])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.strip().splitlines() == [f"download: vgg16 keras weights at {tmp_path / 'models' / 'vgg16.h5'}"]
    if quiet:
        assert result.stderr == ""
    else:
        assert "Downloading data from file://" in result.stderr


# ---- (d) model.content_hash ------------------------------------------------------------------------

def replace_keeping_size_and_time(path, seed):
    st = path.stat()
    noise(path, seed)
    assert path.stat().st_size == st.st_size  # same dimensions, uncompressed-like PNG noise: same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_content_hash_notices_a_photo_replaced_with_the_same_size_and_time(tmp_path, make_config, random_extractor):
    from image_clustering.features import extract_features, load_store

    photos = tmp_path / "p"
    noise(photos / "a.bmp", 0)
    noise(photos / "b.bmp", 1)
    plain = make_config(photos, extractor="inception_v3", batch_size=4)
    extract_features(plain, random_extractor, progress=False)  # a store from before content_hash
    before = np.array(load_store(plain.feature_dir / "inception_v3").vectors)
    hashed = make_config(photos, extractor="inception_v3", batch_size=4, content_hash=True)
    adopt = extract_features(hashed, random_extractor, progress=False)
    assert (adopt.computed, adopt.reused) == (0, 2)  # old rows take the current hashes
    shard = json.loads((hashed.feature_dir / "inception_v3" / "index.json").read_text())["shards"][0]
    assert len(json.loads((hashed.feature_dir / "inception_v3" / f"{shard}.json").read_text())["hashes"]) == 2
    replace_keeping_size_and_time(photos / "a.bmp", 7)
    assert extract_features(plain, random_extractor, progress=False).computed == 0  # documented blind spot
    summary = extract_features(hashed, random_extractor, progress=False)
    assert (summary.computed, summary.reused) == (1, 1)
    after = np.array(load_store(hashed.feature_dir / "inception_v3").vectors)
    assert not np.allclose(after[0], before[0]) and np.allclose(after[1], before[1])
    assert extract_features(hashed, random_extractor, progress=False).computed == 0


def test_photo_time_of_a_fifo_is_its_file_time_without_waiting(tmp_path):
    from image_clustering.images import photo_time

    os.mkfifo(tmp_path / "late.jpg")
    taken = without_hanging_on(tmp_path / "late.jpg", lambda: photo_time(tmp_path / "late.jpg"), seconds=5)
    assert taken == os.stat(tmp_path / "late.jpg").st_mtime


def test_a_hand_edited_failures_csv_only_means_a_retry(tmp_path, make_config, random_extractor):
    from image_clustering.features import extract_features

    noise(tmp_path / "p" / "a.jpg", 0)
    (tmp_path / "p" / "bad.jpg").write_bytes(b"nope")
    config = make_config(tmp_path / "p", extractor="inception_v3", batch_size=4)
    extract_features(config, random_extractor, progress=False)
    table = config.feature_dir / "failures.csv"
    table.write_text(table.read_text().replace(",Pillow", "x,Pillow"))  # ctime_ns no longer a number
    assert extract_features(config, random_extractor, progress=False).failed == 1
    table.write_bytes(b"\xff\xfe garbage")
    assert extract_features(config, random_extractor, progress=False).failed == 1


def test_ctrl_c_in_any_command_is_one_line_and_status_130(tmp_path, make_config, monkeypatch):
    from image_clustering import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "find_k", interrupted)
    config = make_config(tmp_path / "p")
    result = CliRunner().invoke(main, ["find-k", "--config", str(config.source)])
    assert result.exit_code == 130 and result.output == "interrupted\n"


# ---- found by the second audit ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["plot_dir", "vector_dir", "link_dir"])
def test_a_per_collection_folder_that_links_into_the_photos_is_refused(tmp_path, key):
    """<plot_dir>/<object_name> as a symlink into image_dir let plots overwrite a photo."""
    from image_clustering import config_from_dict

    photos = tmp_path / "img"
    noise(photos / "brick" / "clusters_2D.png", 0)
    outputs = {k: str(tmp_path / "out" / k) for k in ("vector_dir", "cluster_label_dir", "plot_dir", "link_dir")}
    (tmp_path / "out" / key).mkdir(parents=True)
    os.symlink(photos / "brick", tmp_path / "out" / key / "t")
    raw = {"paths": {"image_dir": str(photos), "model_dir": str(tmp_path / "models"), **outputs},
           "model": {"object_name": "t"}}
    with pytest.raises(ImgclustError, match=rf"paths\.{key}: .* lies inside paths\.image_dir"):
        config_from_dict(raw)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"paths": {}, "model": {"k_max": ' + "9" * 5000 + "}}"])
def test_pathological_json_is_one_line(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    result = CliRunner().invoke(main, ["find-k", "--config", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output and str(path) in result.output


def test_damaged_caches_are_recomputed(tmp_path, make_config, random_extractor):
    from image_clustering import pipeline
    from image_clustering.features import extract_features

    photos = tmp_path / "p"
    for i in range(6):
        noise(photos / f"{i}.jpg", i)
    config = make_config(photos, extractor="inception_v3", k=2)
    extract_features(config, random_extractor, progress=False)
    first = pipeline.cluster(config, progress=False)
    config.layout.embedding_cache.write_bytes(b"PK\x03\x04junk")
    config.layout.sweep_cache.write_text("[1,")
    again = pipeline.cluster(config, progress=False)
    assert list(again.labels) == list(first.labels)
