"""Label files and link folders: atomic rebuild, fallbacks, originals untouched."""
import hashlib
import json
import os

import numpy as np

from image_clustering.clustering import Clustering
from image_clustering.outputs import MARKER, build_link_folders, write_labels


def make_photos(root, names):
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes([i]) * 100)
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


def test_links_one_folder_per_cluster_and_rebuild_replaces_old(tmp_path):
    images = tmp_path / "photos"
    names = ["a/x.jpg", "b/x.jpg", "c.jpg", "a__x.jpg"]
    digests = make_photos(images, names)
    root = tmp_path / "links" / "set"
    made = build_link_folders(root, images, names, np.array([0, 0, 1, 0]), 2)
    assert made == {"symlink": 4}
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "0_3", "1_1"]
    linked = sorted(p.name for p in (root / "0_3").iterdir())
    assert linked == ["a__x.jpg", "a__x~1.jpg", "b__x.jpg"]  # same-named files from two folders, and a clash
    assert os.readlink(root / "1_1" / "c.jpg") == str(images / "c.jpg")

    build_link_folders(root, images, names, np.array([0, 1, 2, 0]), 3)
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "0_2", "1_1", "2_1"]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    assert {n: hashlib.sha256((images / n).read_bytes()).hexdigest() for n in names} == digests


def test_falls_back_to_hard_links_then_copies(tmp_path, monkeypatch):
    images = tmp_path / "photos"
    make_photos(images, ["p.jpg", "q.jpg"])

    def refuse(*args, **kwargs):
        raise OSError("links not supported here")

    monkeypatch.setattr(os, "symlink", refuse)
    made = build_link_folders(tmp_path / "l1", images, ["p.jpg", "q.jpg"], np.array([0, 0]), 1)
    assert made == {"hardlink": 2} and os.stat(tmp_path / "l1" / "0_2" / "p.jpg").st_nlink == 2
    monkeypatch.setattr(os, "link", refuse)
    made = build_link_folders(tmp_path / "l2", images, ["p.jpg", "q.jpg"], np.array([0, 0]), 1)
    assert made == {"copy": 2}
    assert (tmp_path / "l2" / "0_2" / "q.jpg").read_bytes() == (images / "q.jpg").read_bytes()
    assert (images / "p.jpg").exists() and (images / "q.jpg").exists()


def test_tag_table_keeps_labels_above_the_minimum(tmp_path):
    from image_clustering.pipeline import write_tags

    names = [f"class{i}" for i in range(1000)]
    classes = np.array([[3, 1, 2], [5, 6, 7]])
    scores = np.array([[0.9, 0.05, 0.01], [0.4, 0.3, 0.2]], np.float32)
    write_tags(tmp_path / "t.csv", ["a.jpg", "b.jpg"], classes, scores, names, n=2, min_score=0.1)
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "path,label_1,label_2,score_1,score_2", "a.jpg,class3,,0.9000,", "b.jpg,class5,class6,0.4000,0.3000"]


def test_label_files(tmp_path):
    result = Clustering(np.array([1, 0, 0]), np.array([0.5, 0.2, 0.1], np.float32), np.zeros((2, 2), np.float32))
    csv_path, json_path = write_labels(tmp_path, "set", ["a.jpg", "b.jpg", "c.jpg"], result, np.ones((3, 2)))
    assert csv_path.read_text().splitlines()[:2] == ["path,cluster,name,distance,x0,x1", "a.jpg,1,,0.5,1,1"]
    doc = json.loads(json_path.read_text())
    assert doc["k"] == 2 and doc["sizes"] == [2, 1] and doc["clusters"]["0"] == ["c.jpg", "b.jpg"]
    # the collection's stable ids and names; -2 (excluded by the user) is written as -1 "excluded"
    csv_path, json_path = write_labels(tmp_path, "set", ["a.jpg", "b.jpg", "c.jpg"], result, np.ones((3, 2)),
                                       ids=np.array([7, -2, 3]), names={7: "Beach"})
    assert csv_path.read_text().splitlines()[1:3] == ["a.jpg,7,Beach,0.5,1,1", "b.jpg,-1,excluded,0.2,1,1"]
    doc = json.loads(json_path.read_text())
    assert doc["clusters"] == {"3": ["c.jpg"], "7": ["a.jpg"]} and doc["names"] == {"7": "Beach"}
    assert doc["excluded"] == ["b.jpg"]


def test_unclustered_images_get_their_own_folder_and_label(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    for name in names:
        (photos / name).write_bytes(b"x")
    labels = np.array([0, 0, -1, 1])
    result = Clustering(labels, np.array([0.1, 0.2, np.nan, 0.0], np.float32), np.zeros((2, 2), np.float32))
    csv_path, json_path = write_labels(tmp_path, "set", names, result, np.zeros((4, 2)))
    assert csv_path.read_text().splitlines()[3] == "c.jpg,-1,,,0,0"
    doc = json.loads(json_path.read_text())
    assert doc["k"] == 2 and doc["unclustered"] == ["c.jpg"]
    build_link_folders(tmp_path / "links", photos, names, labels, 2)
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == [MARKER, "0_2", "1_1", "unclustered"]
    assert [p.name for p in (tmp_path / "links" / "unclustered").iterdir()] == ["c.jpg"]


def test_copies_on_a_really_full_disk_name_the_file_and_keep_the_previous_links(tmp_path, monkeypatch, small_disk):
    """A real 256 KiB tmpfs holds the link folders; copying four 100 KiB photos there fills it."""
    import errno

    import pytest

    disk = small_disk("256k")
    images = tmp_path / "photos"
    names = [f"{i}.jpg" for i in range(4)]
    for i, name in enumerate(names):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(bytes([i]) * 100_000)
    root = disk / "links"
    build_link_folders(root, images, names, np.array([0, 0, 1, 1]), 2)  # symlinks: they fit
    monkeypatch.setattr(os, "symlink", lambda *a, **k: (_ for _ in ()).throw(OSError("no links")))
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError("no links")))
    with pytest.raises(OSError) as info:
        build_link_folders(root, images, names, np.array([0, 1, 0, 1]), 2)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename.startswith(str(disk)) and info.value.filename.endswith(".jpg")
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "0_2", "1_2"]  # the previous links, intact
    assert [p.name for p in disk.iterdir()] == ["links"]  # the half-built copy tree is gone
    assert os.readlink(root / "1_2" / "3.jpg") == str(images / "3.jpg")
