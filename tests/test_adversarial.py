"""Reproductions of the defects an adversarial pass (helper adv, issue 21's follow-up audit) found on
the integrated main, each named after its defect (ADV-n); each failed before its fix.

The collection is a stand-in (random vectors, no network; ``fake_store``), as the defects lie in the
file handling, not in the clustering."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from image_clustering import pipeline
from image_clustering.cli import main
from tests.test_hostile_input import fake_store, one_line_error, without_hanging_on


def stand_in(make_config, tmp_path, monkeypatch, **settings):
    """A clustered stand-in collection of 12 photos in 3 clusters (k-means on a flat PCA space)."""
    config = make_config(tmp_path / "photos", extractor="inception_v3", algorithm="kmeans", k=3,
                         k_max=5, space="pca", pca_dimension=3, **settings)
    fake_store(config, 12)
    monkeypatch.setattr(pipeline, "embed", lambda config, vectors, key: np.zeros((len(vectors), 2), np.float32))
    run(config, "cluster")
    return config


@pytest.fixture
def clustered(make_config, tmp_path, monkeypatch):
    return stand_in(make_config, tmp_path, monkeypatch)


@pytest.fixture
def copied(make_config, tmp_path, monkeypatch):
    """The stand-in with ``"link": "copy"``: its link folder holds copies of the photos."""
    return stand_in(make_config, tmp_path, monkeypatch, link="copy")


def run(config, *args, code=0):
    result = CliRunner().invoke(main, [*args, "--config", str(config.source), "-q"])
    assert result.exit_code == code, result.output
    return result


def organised_copies(target):
    return sorted(p for p in target.rglob("*.jpg") if p.is_file())


# ADV-1 data loss: a re-run of organise removes copies whose originals the user deleted (the only copy left) (fixed)
def test_organise_rerun_keeps_a_copy_whose_original_is_gone(clustered, tmp_path):
    target = tmp_path / "Sorted"
    run(clustered, "organise", "--to", str(target))
    copies = organised_copies(target)
    assert len(copies) == 12
    (clustered.paths.image_dir / "000.jpg").unlink()  # organised: the user deletes the original
    run(clustered, "cluster")
    run(clustered, "organise", "--to", str(target))
    assert len(organised_copies(target)) == 12, "the last copy of 000.jpg was removed"


# ADV-2 data loss: organise --undo (hardlink or copy) removes the last link/copy of a photo whose original the
# user deleted (fixed)
@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_organise_undo_keeps_the_last_copy_of_a_deleted_photo(clustered, tmp_path, mode):
    target = tmp_path / "Sorted"
    run(clustered, "organise", "--to", str(target), "--mode", mode)
    (clustered.paths.image_dir / "001.jpg").unlink()
    run(clustered, "organise", "--undo")
    assert [p.name for p in organised_copies(target) if p.name.endswith("001.jpg")], \
        "the photo's bytes are gone from the disk"


# ADV-3 hang: `edit apply` opens a FIFO (or /dev/zero) with no check of the file type or size (fixed)
def test_edit_apply_refuses_a_fifo_without_hanging(clustered, tmp_path):
    fifo = tmp_path / "edits.json"
    os.mkfifo(fifo)
    result = without_hanging_on(fifo, lambda: CliRunner().invoke(
        main, ["edit", "apply", str(fifo), "--config", str(clustered.source)]), seconds=20)
    one_line_error(result, "edits.json")


# ADV-4 traceback: a NUL character in a paths.* value ends in ValueError: embedded null byte (fixed)
@pytest.mark.parametrize("key", ["image_dir", "link_dir"])
def test_a_nul_in_a_config_path_is_one_line_naming_the_key(tmp_path, key):
    paths = {"image_dir": str(tmp_path / "photos")}
    paths[key] = paths.get(key, str(tmp_path)) + "\x00x"
    (tmp_path / "photos").mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"paths": paths, "model": {"object_name": "x"}}))
    result = CliRunner().invoke(main, ["extract", "--config", str(config), "-q"])
    one_line_error(result, f"paths.{key}")


# ADV-5 data loss (narrow): an edit of a copy ("link": "copy") that keeps its size and modification time is
# replaced by the next run (ctime, which no user can set, is not compared) (fixed)
def test_an_edited_copy_of_the_same_size_and_time_survives(copied):
    copy = next(p for p in (copied.paths.link_dir / "test").rglob("*.jpg"))
    st = copy.stat()
    copy.write_bytes(b"y" * st.st_size)  # the user's edit: same size (e.g. a same-length tag edit) ...
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... time kept (exiftool -P, touch -r, rsync -t)
    run(copied, "cluster", "--recluster")
    assert any(p.read_bytes() == b"y" * st.st_size for p in (copied.paths.link_dir / "test").rglob("*.jpg"))


def test_user_files_in_link_folders_survive_rename_and_recluster(clustered):
    """Not a defect (passes): the kinds of user files the audit placed in the link folder all stay."""
    root = clustered.paths.link_dir / "test"
    first = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (first / "captions.txt").write_text("mine")
    (first / "album").mkdir()
    (first / "album" / "note.txt").write_text("x")
    (root / "TOP.txt").write_text("top")
    run(clustered, "edit", "rename", first.name, "Beach")
    run(clustered, "cluster", "--recluster")
    assert (first / "captions.txt").read_text() == "mine" and (first / "album" / "note.txt").exists()
    assert (root / "TOP.txt").read_text() == "top"
    shutil.rmtree(root / "Beach")  # imgclust's folder: removable by the user, rebuilt by the next run
    run(clustered, "cluster")
    assert (root / "Beach").is_dir()


# ADV-1b data loss: with "link": "copy", the next cluster removes the link folder's copy of a photo whose
# original the user deleted (fixed)
def test_a_copy_in_the_link_folder_outlives_its_deleted_original(copied):
    (copied.paths.image_dir / "002.jpg").unlink()
    run(copied, "cluster")
    assert list((copied.paths.link_dir / "test").rglob("002*.jpg")), "the photo's last copy was removed"


# Left from the audit: a `.lock` that is a FIFO said "File or stream is not seekable" naming no
# file; a `.lock` that is a link was opened through it and the file it points to truncated.
@pytest.mark.parametrize("kind", ["fifo", "symlink", "hardlink"])
def test_a_lock_file_that_is_not_a_file_is_one_line_and_nothing_is_truncated(clustered, tmp_path, kind):
    lock = clustered.feature_dir / ".lock"
    lock.unlink(missing_ok=True)
    precious = tmp_path / "notes.txt"
    precious.write_text("the user's own notes")
    {"fifo": lambda: os.mkfifo(lock), "symlink": lambda: lock.symlink_to(precious),
     "hardlink": lambda: os.link(precious, lock)}[kind]()
    result = without_hanging_on(lock, lambda: CliRunner().invoke(
        main, ["cluster", "--config", str(clustered.source), "-q"]), seconds=30)
    one_line_error(result, ".lock", "not a")
    assert precious.read_text() == "the user's own notes"


def test_a_lock_seen_again_through_a_hard_link_snapshot_still_works(clustered, tmp_path):
    """`cp -al` (rsnapshot-style backups) gives imgclust's own .lock a second name: still usable."""
    lock = clustered.feature_dir / ".lock"
    lock.write_text("imgclust (pid 1)")
    os.link(lock, tmp_path / "snapshot.lock")
    run(clustered, "cluster")


# Left from the audit: a damaged shard was reported as "index.json: feature store unreadable".
@pytest.mark.parametrize("part", ["features.npy", "json"])
def test_a_damaged_shard_is_named_itself(clustered, part):
    store = clustered.feature_dir / "inception_v3"
    token = json.loads((store / "index.json").read_text())["shards"][0]
    (store / f"{token}.{part}").write_bytes(b"\x93NUMPY garbage" if part.endswith("npy") else b'{"images": [[1')
    result = run(clustered, "cluster", code=1)
    one_line_error(result, f"{token}.{part}", "unreadable")


# Left from the audit: six byte-identical photos were split into 4 clusters, with a scikit-learn
# ConvergenceWarning printed through -q. Equal feature vectors now share one place on the map.
def test_copies_of_one_photo_form_one_cluster_without_warnings(make_config, tmp_path):
    from image_clustering.embedding import FeatureEmbedding, join_equal_rows
    from image_clustering.features import _StoreWriter
    from image_clustering.images import ImageFile

    config = make_config(tmp_path / "photos", extractor="inception_v3")
    images = [ImageFile(f"{i:03d}.jpg", 100, 1) for i in range(6)]
    config.paths.image_dir.mkdir(parents=True)
    for image in images:
        (config.paths.image_dir / image.path).write_bytes(b"x" * image.size)
        os.utime(config.paths.image_dir / image.path, ns=(1, 1))
    same = np.tile(np.random.default_rng(0).random(16, dtype=np.float32), (6, 1))
    writer = _StoreWriter(config.feature_dir / "inception_v3", {"network": "fake"}, 16, keep_previous=False)
    writer.append(images, {"features": same})
    writer.compact({f.path for f in images}, {"features": ((16,), np.float32)})
    result = CliRunner().invoke(main, ["cluster", "--config", str(config.source), "-q"])
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    assert json.loads(config.layout.labels_json().read_text())["k"] == 1
    # the rule itself: only equal rows are joined, each group at its mean
    x = np.array([[1, 2], [3, 4], [1, 2], [5, 6]], np.float32)
    points = np.array([[0.0, 0], [9, 9], [2, 4], [7, 7]], np.float32)
    np.testing.assert_array_equal(join_equal_rows(x, points), [[1, 2], [9, 9], [1, 2], [7, 7]])
    assert FeatureEmbedding(pca_dimension=4).fit_transform(np.vstack([same, same[:1] + 1])).round(4).tolist()[0] \
        == FeatureEmbedding(pca_dimension=4).fit_transform(np.vstack([same, same[:1] + 1])).round(4).tolist()[5]
