"""Bad input never stops a run; a killed run resumes; two runs never write one store at once."""
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from image_clustering import ImgclustError
from image_clustering.atomic import exclusive_lock
from image_clustering.cli import main
from image_clustering.features import extract_features, load_store
from tests.conftest import ROOT, noise_photo
from tests.golden import network_tolerance

noise = noise_photo


def png_header_only(path, width, height):
    """A PNG whose header claims width×height pixels (the decompression-bomb shape), no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.fixture
def bad_folder(tmp_path):
    root = tmp_path / "photos"
    good = [noise(root / "ok.jpg", 0), noise(root / "sub dir/ünï cødé.png", 1), noise(root / "-leading-dash.jpg", 2),
            noise(root / "tiny.png", 3, size=(1, 1)), noise(root / "cmyk.jpg", 4, mode="CMYK"),
            noise(root / "gray16.png", 5)]
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).save(good[-1])
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "anim.webp", save_all=True, append_images=frames[1:])
    bad = {"empty.jpg": b"", "text.jpg": b"just some text", "page.png": b"<!doctype html><html></html>"}
    for name, data in bad.items():
        (root / name).write_bytes(data)
    (root / "cut.jpg").write_bytes((root / "ok.jpg").read_bytes()[:200])
    png_header_only(root / "bomb.png", 30000, 30000)
    os.symlink(root / "nowhere.jpg", root / "broken-link.jpg")
    os.symlink(root / "loop-b.jpg", root / "loop-a.jpg")
    os.symlink(root / "loop-a.jpg", root / "loop-b.jpg")
    os.symlink(root, root / "sub dir" / "folder-loop")
    expected_bad = {"empty.jpg", "text.jpg", "page.png", "cut.jpg", "bomb.png", "broken-link.jpg", "loop-a.jpg",
                    "loop-b.jpg"}
    return root, expected_bad


def test_bad_files_are_skipped_listed_and_the_run_goes_on(bad_folder, make_config, random_extractor):
    root, expected_bad = bad_folder
    config = make_config(root, extractor="inception_v3")
    summary = extract_features(config, random_extractor, progress=False)
    with open(config.feature_dir / "failures.csv", newline="") as f:
        failures = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert set(failures) == expected_bad
    assert "pixels exceeds" in failures["bomb.png"] or "DecompressionBomb" in failures["bomb.png"]
    assert all(reason.strip() for reason in failures.values())
    store = load_store(config.feature_dir / "inception_v3")
    assert set(store.paths) == {"ok.jpg", "sub dir/ünï cødé.png", "-leading-dash.jpg", "tiny.png", "cmyk.jpg",
                                "gray16.png", "anim.gif", "anim.webp"}
    assert summary.failed == len(expected_bad) and np.isfinite(store.vectors).all()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_listed(tmp_path, make_config, random_extractor):
    locked = noise(tmp_path / "p" / "locked.jpg", 0)
    noise(tmp_path / "p" / "fine.jpg", 1)
    locked.chmod(0)
    config = make_config(tmp_path / "p", extractor="inception_v3")
    assert extract_features(config, random_extractor, progress=False).failed == 1


def test_heic_without_the_optional_decoder_is_explained(tmp_path, make_config, random_extractor):
    try:
        import pillow_heif  # noqa: F401
        pytest.skip("pillow-heif installed: HEIC decodes")
    except ImportError:
        pass
    noise(tmp_path / "p" / "fine.jpg", 1)
    (tmp_path / "p" / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    config = make_config(tmp_path / "p", extractor="inception_v3")
    extract_features(config, random_extractor, progress=False)
    assert "pillow-heif" in (config.feature_dir / "failures.csv").read_text()


def test_exif_rotated_photo_gives_the_upright_features(lite0_weights, tmp_path, make_config):
    from image_clustering.images import load_rgb
    from image_clustering.networks import load_network

    upright = Image.open(ROOT / "raw/example/chelsea/original.jpg")
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 8  # pixels stored turned 90° clockwise; orientation 8 tells viewers to turn them back
    upright.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    network = load_network(lite0_weights)
    a, b = (network.run(load_rgb(tmp_path / n, 224)[None])["features"][0] for n in ("upright.jpg", "rotated.jpg"))
    unrotated = network.run(np.asarray(Image.open(tmp_path / "rotated.jpg").convert("RGB").resize((224, 224)))[None])
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    assert cos(a, b) > 0.98 and cos(a, b) > cos(a, unrotated["features"][0]) + 0.02


def test_missing_empty_and_imageless_folders_are_one_line_errors(tmp_path, make_config):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no photos here")
    for folder, message in [("absent", "does not exist"), ("empty", "no images"), ("docs", "no images")]:
        config = make_config(tmp_path / folder)
        result = CliRunner().invoke(main, ["extract", "--config", str(config.source)])
        assert result.exit_code == 1 and message in result.output and "paths.image_dir" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_unwritable_output_folder_is_a_one_line_error(tmp_path, make_config):
    noise(tmp_path / "p" / "a.jpg", 0)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    config = make_config(tmp_path / "p")
    raw = json.loads(config.source.read_text())
    raw["paths"]["vector_dir"] = str(tmp_path / "blocker" / "vectors")
    config.source.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["extract", "--config", str(config.source)])
    assert result.exit_code == 1 and "blocker" in result.output and "Traceback" not in result.output


def test_a_second_run_on_the_same_collection_is_refused(tmp_path, make_config, random_extractor):
    noise(tmp_path / "p" / "a.jpg", 0)
    config = make_config(tmp_path / "p", extractor="inception_v3")
    with exclusive_lock(config.feature_dir, "extract"):
        with pytest.raises(ImgclustError, match="already working on this collection"):
            extract_features(config, random_extractor, progress=False)
    assert extract_features(config, random_extractor, progress=False).computed == 1  # lock released


def test_kill_9_during_extract_loses_at_most_a_batch(lite0_weights, tmp_path, make_config):
    photos = tmp_path / "p"
    for i in range(400):
        noise(photos / f"{i // 100}" / f"{i:03d}.png", i, size=(96, 96))
    config = make_config(photos, extractor="efficientnet_lite0", batch_size=8)
    index = config.feature_dir / "efficientnet_lite0" / "index.json"
    proc = subprocess.Popen([sys.executable, "-m", "image_clustering.cli", "extract", "--config", str(config.source),
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if index.is_file() and len(json.loads(index.read_text())["shards"]) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = load_store(config.feature_dir / "efficientnet_lite0")  # readable, consistent
    done_before = len(interrupted.images)
    assert 0 < done_before < 400
    resumed = CliRunner().invoke(main, ["extract", "--config", str(config.source), "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert f"{400 - done_before} computed, {done_before} reused" in resumed.output
    store = load_store(config.feature_dir / "efficientnet_lite0")
    assert len(store.images) == 400 and len(json.loads(index.read_text())["shards"]) == 1
    fresh = make_config(photos, extractor="efficientnet_lite0", batch_size=8)
    raw = json.loads(fresh.source.read_text())
    raw["paths"]["vector_dir"] = str(tmp_path / "clean")
    fresh.source.write_text(json.dumps(raw))
    assert CliRunner().invoke(main, ["extract", "--config", str(fresh.source), "-q"]).exit_code == 0
    clean = load_store(tmp_path / "clean" / "test" / "efficientnet_lite0")
    assert clean.paths == store.paths
    # other batches, other tiling of the sums: equal up to float32 reordering (tests/golden.py)
    assert np.abs(np.asarray(clean.vectors) - np.asarray(store.vectors)).max() <= network_tolerance(
        "efficientnet_lite0", np.asarray(clean.vectors))
