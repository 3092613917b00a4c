"""Issue 10: output folders never destroy input; link folders swap atomically with their labels;
awkward file names (not UTF-8, too long) and deleted photos work end to end."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from image_clustering import ImgclustError, config_from_dict, pipeline
from image_clustering.cli import main
from image_clustering.features import extract_features
from image_clustering.outputs import MARKER, NAME_MAX, build_link_folders, read_labels
from tests.conftest import ROOT, noise_photo


def photo(path: Path, seed: int) -> Path:
    return noise_photo(path, seed, (48, 40), format="JPEG")  # JPEG whatever the name says


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def raw_config(image_dir, tmp_path, **paths):
    defaults = {"model_dir": str(ROOT / "models"), "vector_dir": str(tmp_path / "vectors"),
                "cluster_label_dir": str(tmp_path / "labels"), "plot_dir": str(tmp_path / "plots"),
                "link_dir": str(tmp_path / "links")}
    return {"paths": {"image_dir": str(image_dir), **defaults, **paths}, "model": {"object_name": "holiday"}}


def test_link_dir_above_the_photo_folder_is_refused(tmp_path):
    """D1: photos in ~/Photos/holiday, link_dir ~/Photos, object_name holiday."""
    holiday = tmp_path / "Photos" / "holiday"
    photo(holiday / "a.jpg", 0)
    before = digests(holiday)
    with pytest.raises(ImgclustError, match=r"paths\.link_dir: .* contains paths\.image_dir"):
        config_from_dict(raw_config(holiday, tmp_path, link_dir=str(tmp_path / "Photos")))
    # the same through the command line: one line, exit 1, photos untouched
    (tmp_path / "c.json").write_text(json.dumps(raw_config(holiday, tmp_path, link_dir=str(tmp_path / "Photos"))))
    result = CliRunner().invoke(main, ["cluster", "--config", str(tmp_path / "c.json")])
    assert result.exit_code == 1 and "paths.link_dir" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert digests(holiday) == before


@pytest.mark.parametrize("key", ["link_dir", "plot_dir", "vector_dir", "cluster_label_dir", "model_dir"])
def test_every_output_folder_inside_or_at_the_photos_is_refused(tmp_path, key):
    """D2: an output folder that is the photo folder, or lies inside it."""
    photos = tmp_path / "photos"
    photo(photos / "holiday" / "a.jpg", 0)
    for folder in (photos, photos / "holiday", photos / "out"):
        with pytest.raises(ImgclustError, match=rf"paths\.{key}: .*paths\.image_dir"):
            config_from_dict(raw_config(photos, tmp_path, **{key: str(folder)}))


def test_symlinked_output_folder_is_followed(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "a.jpg", 0)
    os.symlink(photos, tmp_path / "alias")
    with pytest.raises(ImgclustError, match=r"paths\.link_dir: .* is paths\.image_dir"):
        config_from_dict(raw_config(photos, tmp_path, link_dir=str(tmp_path / "alias")))
    config_from_dict(raw_config(photos, tmp_path))  # separate folders are fine


def test_a_folder_imgclust_did_not_make_is_never_replaced(tmp_path):
    photos = tmp_path / "photos"
    names = ["a.jpg", "b.jpg"]
    for i, n in enumerate(names):
        photo(photos / n, i)
    own = tmp_path / "links" / "holiday"
    photo(own / "mine.jpg", 5)  # the user's own folder where the link folder would go
    with pytest.raises(ImgclustError, match="not made by imgclust"):
        build_link_folders(own, photos, names, np.array([0, 1]), 2)
    assert (own / "mine.jpg").is_file() and not [p for p in own.parent.iterdir() if p.name.startswith(".")]

    # Only folders of links, as link folders made before the marker were, and as a hand-made album
    # is (issue 21 D1): nothing proves imgclust made it, so it is refused too.
    legacy = tmp_path / "links" / "legacy"
    (legacy / "0_1").mkdir(parents=True)
    os.symlink(photos / "a.jpg", legacy / "0_1" / "a.jpg")
    with pytest.raises(ImgclustError, match="not made by imgclust"):
        build_link_folders(legacy, photos, names, np.array([0, 0]), 1)
    assert os.readlink(legacy / "0_1" / "a.jpg") == str(photos / "a.jpg")
    assert digests(photos).keys() == set(names)


def test_link_failure_leaves_previous_labels_and_links(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    names = ["a.jpg", "b.jpg", "c.jpg"]
    for i, n in enumerate(names):
        photo(photos / n, i)
    root = tmp_path / "links" / "set"
    build_link_folders(root, photos, names, np.array([0, 0, 1]), 2)
    written = []

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "symlink", refuse)
    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr("shutil.copy2", refuse)
    with pytest.raises(OSError):
        build_link_folders(root, photos, names, np.array([0, 1, 2]), 3, before_swap=lambda: written.append(1))
    assert not written  # the labels are written only once every link is made
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "0_2", "1_1"]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]


SWAPPER = """
import sys, numpy as np
from pathlib import Path
from image_clustering.outputs import build_link_folders
photos, root, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
names = sorted(p.name for p in photos.iterdir())
i = 0
while True:
    k = 2 + i % 3
    build_link_folders(root, photos, names, np.arange(n) % k, k)
    i += 1
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_complete_link_folder(tmp_path):
    """D11: the new tree replaces the old one in one atomic exchange; a kill -9 at a random moment
    (8 tries) always leaves a complete link folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    n = 600
    for i in range(n):
        (photos / f"p{i:04d}.jpg").write_bytes(b"x")
    root = tmp_path / "links" / "set"
    build_link_folders(root, photos, sorted(p.name for p in photos.iterdir()), np.zeros(n, int), 1)
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", SWAPPER, str(photos), str(root), str(n)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # at least one rebuild done, imports out of the way
        time.sleep(rng.uniform(0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (root / MARKER).is_file()
        assert sum(len(list(f.iterdir())) for f in root.iterdir() if f.is_dir()) == n
    build_link_folders(root, photos, sorted(p.name for p in photos.iterdir()), np.zeros(n, int), 1)
    assert [p.name for p in root.parent.iterdir()] == ["set"]  # the crashed runs' leftovers are gone


def test_long_and_deep_paths_get_link_names_that_fit(tmp_path):
    """D5: flattened names over 255 bytes are shortened with a stable hash, keeping the file name."""
    photos = tmp_path / "photos"
    deep = "/".join(["ü" * 60] * 3)  # 360 bytes of folder names
    names = [f"{deep}/one.jpg", f"{deep}/two.jpg", "x" * 250 + ".jpg"]
    for i, n in enumerate(names):
        photo(photos / n, i)
    root = tmp_path / "links" / "set"
    build_link_folders(root, photos, names, np.array([0, 0, 0]), 1)
    links = sorted((root / "0_3").iterdir())
    assert len(links) == 3
    assert all(len(os.fsencode(link.name)) <= NAME_MAX for link in links)
    assert sorted(link.resolve().relative_to(photos).as_posix() for link in links) == sorted(names)
    assert {link.name[-7:] for link in links} >= {"one.jpg", "two.jpg"}


@pytest.fixture
def collection(tmp_path, make_config):
    """Six photos, one with a name that is not UTF-8 (Latin-1 'café'), extracted with a random network."""
    photos = tmp_path / "photos"
    for i in range(5):
        photo(photos / f"p{i}.jpg", i)
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    photo(photos / latin1, 9)
    config = make_config(photos, extractor="inception_v3", batch_size=4, k=2)
    return config, latin1


def test_a_name_that_is_not_utf8_works_end_to_end(collection, random_extractor):
    """D4: store, label CSV/JSON, links and the command's report line."""
    config, latin1 = collection
    assert extract_features(config, random_extractor, progress=False).computed == 6
    result = CliRunner().invoke(main, ["cluster", "--config", str(config.source), "-q"])
    assert result.exit_code == 0, result.output
    labels = read_labels(config.paths.cluster_label_dir / "test.csv")
    assert latin1 in labels and len(labels) == 6
    doc = json.loads((config.paths.cluster_label_dir / "test.json").read_text())
    assert latin1 in [p for members in doc["clusters"].values() for p in members]
    links = [p for p in (config.paths.link_dir / "test").rglob("*") if p.is_symlink()]
    assert b"caf\xe9.jpg" in {os.fsencode(p.name) for p in links} and all(p.resolve().is_file() for p in links)


def test_cluster_notices_deleted_and_changed_photos(collection, random_extractor, caplog):
    """D12: a photo deleted after extract is left out with a warning (no dangling link); a changed
    one is kept with a warning."""
    config, _ = collection
    extract_features(config, random_extractor, progress=False)
    (config.paths.image_dir / "p0.jpg").unlink()
    photo(config.paths.image_dir / "p1.jpg", 42)
    os.utime(config.paths.image_dir / "p1.jpg", ns=(1, 1))
    result = pipeline.cluster(config, progress=False)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "p0.jpg" not in result.paths and len(result.paths) == 5
    assert any("1 photos were deleted" in s and "p0.jpg" in s for s in said)
    assert any("1 photos changed" in s and "p1.jpg" in s for s in said)
    links = [p for p in result.link_root.rglob("*") if p.is_symlink()]
    assert len(links) == 5 and all(p.resolve().is_file() for p in links)


@pytest.fixture
def bind_mount(tmp_path):
    """``bind_mount(folder)``: a second path to ``folder`` (``mount --bind``), unmounted afterwards;
    the test is skipped where mounting is not allowed (not root)."""
    mounted = []

    def bind(folder: Path) -> Path:
        alias = tmp_path / f"alias{len(mounted)}"
        alias.mkdir()
        done = subprocess.run(["mount", "--bind", str(folder), str(alias)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
        mounted.append(alias)
        return alias

    yield bind
    for alias in reversed(mounted):
        subprocess.run(["umount", "-l", str(alias)], capture_output=True)


@pytest.mark.parametrize("key", ["link_dir", "plot_dir", "vector_dir", "cluster_label_dir", "model_dir"])
def test_outputs_in_the_photos_through_a_second_path_are_refused(tmp_path, bind_mount, key):
    """Issue 21 D5: the photo folder reached through a bind mount (a share mounted twice) is the
    same folder: same device and inode, whatever the path says."""
    photos = tmp_path / "Photos"
    photo(photos / "holiday" / "a.jpg", 0)
    (photos / "holiday" / "plots").mkdir()
    alias = bind_mount(photos)
    holiday = photos / "holiday"
    for folder, how in [(alias / "holiday", "is"), (alias / "holiday" / "plots", "lies inside"),
                        (alias / "holiday" / "new" / "deeper", "lies inside"), (alias, "contains")]:
        with pytest.raises(ImgclustError, match=rf"paths\.{key}: .* {how} paths\.image_dir"):
            config_from_dict(raw_config(holiday, tmp_path, **{key: str(folder)}))
    config_from_dict(raw_config(holiday, tmp_path, **{key: str(tmp_path / "elsewhere")}))  # still fine


def test_a_photo_replaced_by_a_folder_or_a_fifo_is_left_out_like_a_deleted_one(collection, random_extractor,
                                                                             caplog):
    """Issue 21 D11: ``rm p.jpg; mkdir p.jpg`` (or a FIFO) after extract: not linked, not 'changed'."""
    config, _ = collection
    extract_features(config, random_extractor, progress=False)
    (config.paths.image_dir / "p0.jpg").unlink()
    (config.paths.image_dir / "p0.jpg").mkdir()
    (config.paths.image_dir / "p2.jpg").unlink()
    os.mkfifo(config.paths.image_dir / "p2.jpg")
    result = pipeline.cluster(config, progress=False)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "p0.jpg" not in result.paths and "p2.jpg" not in result.paths and len(result.paths) == 4
    assert any("2 photos were deleted" in s for s in said) and not any("changed" in s for s in said)
    links = [p for p in result.link_root.rglob("*") if p.is_symlink()]
    assert len(links) == 4 and all(p.resolve().is_file() for p in links)


def test_files_added_to_a_copied_cluster_folder_survive_the_next_cluster(tmp_path, make_config, random_extractor):
    """Issue 21 D1 as reported: ``"link": "copy"``, cluster, add a photo and a captions file to a
    cluster folder, cluster again with another k: both still there, byte for byte."""
    photos = tmp_path / "photos"
    for i in range(6):
        photo(photos / f"p{i}.jpg", i)
    config = make_config(photos, extractor="inception_v3", k=2, link="copy")
    extract_features(config, random_extractor, progress=False)
    result = CliRunner().invoke(main, ["cluster", "--config", str(config.source), "-q"])
    assert result.exit_code == 0, result.output
    folder = next(p for p in (config.paths.link_dir / "test").iterdir() if p.is_dir())
    (folder / "captions.txt").write_text("p0: the beach\n")
    photo(folder / "my_edit.jpg", 99)
    added = digests(folder)
    added = {name: added[name] for name in ("captions.txt", "my_edit.jpg")}
    raw = json.loads(config.source.read_text())
    raw["model"]["k"] = 3
    config.source.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["cluster", "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    assert {name: digests(folder).get(name) for name in added} == added
    copies = [p for p in (config.paths.link_dir / "test").rglob("*.jpg") if p.name.startswith("p")]
    assert len(copies) == 6 and not any(p.is_symlink() for p in copies)
