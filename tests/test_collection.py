"""The living collection (issue 22) on real photos: stable cluster ids as photos come and go,
corrections that persist across runs and undo exactly, named folders, organise with a dry run and
an undo, and the state after ``kill -9``.

ukbench: 14 objects × 4 photos. The collection starts with 12 objects (48 photos); the two others
arrive later. Feature vectors are extracted once for all 56 (``shared_vectors``), the photo folder
of each test holds copies (``copy2``: same size and time, so the stored vectors are used).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import normalized_mutual_info_score

from image_clustering import pipeline
from image_clustering.cli import main
from image_clustering.collection import EXCLUDED, match_ids, open_collection
from image_clustering.errors import ImgclustError
from image_clustering.outputs import folder_names, safe_folder_name
from tests.conftest import DATASETS, ROOT, needs_shared

pytestmark = pytest.mark.shared

UKBENCH = DATASETS / "ukbench_groups14"
LATER = ("group012", "group013")  # the two objects added later


# ------------------------------------------------------------ pure parts

def test_match_ids_gives_each_new_cluster_the_previous_id_it_overlaps_most():
    previous = {f"p{i}": c for i, c in enumerate([0, 0, 0, 1, 1, 1, 2, 2])}
    paths = [f"p{i}" for i in range(10)]  # p8, p9 are new
    labels = np.array([5, 5, 7, 7, 7, 7, 9, 9, 9, 3])  # p2 moved to the second cluster; 3 is new
    ids, next_id = match_ids(previous, paths, labels, next_id=3)
    assert ids.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 3] and next_id == 4
    # a previous cluster is given to one new cluster only: the smaller overlap gets a fresh id
    ids, _ = match_ids({"a": 0, "b": 0, "c": 0}, ["a", "b", "c"], np.array([1, 1, 2]), next_id=1)
    assert ids.tolist() == [0, 0, 1]


def test_folder_names_are_safe_unique_and_fall_back_to_the_id():
    names = folder_names({0: "Beach", 1: "beach", 2: None, 3: "a/b:c\x00", 4: "..", 5: "unclustered", 6: "é" * 80})
    assert names[0] == "Beach" and names[1] == "beach_1" and names[2] == "2" and names[3] == "a_b_c"
    assert names[4] == "4" and names[5] == "5" and len(names[6].encode()) <= 100
    assert all("/" not in n and not n.startswith(".") for n in names.values())
    assert safe_folder_name("  church + monastery ") == "church + monastery"


def test_the_state_refuses_a_foreign_file_and_a_newer_schema(tmp_path):
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ImgclustError, match="not a collection database"):
        open_collection(tmp_path / "junk.sqlite")
    with open_collection(tmp_path / "c.sqlite") as state:
        state.db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ImgclustError, match="newer imgclust"):
        open_collection(tmp_path / "c.sqlite")


def test_edits_on_the_state_name_clusters_by_id_or_name_and_undo_in_order(tmp_path):
    paths = ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg", "c/\udce9.jpg"]  # one name that is not UTF-8
    with open_collection(tmp_path / "c.sqlite") as state:
        with pytest.raises(ImgclustError, match="no clusters yet"):
            state.rename(0, "x")
        state.recluster(paths, np.array([0, 0, 1, 1, 2]), None, "s", "first run")
        state.rename(1, "Beach")
        with pytest.raises(ImgclustError, match="already has it"):
            state.rename(0, "Beach")
        with pytest.raises(ImgclustError, match="cannot be a number"):
            state.rename(0, " 2 ")  # "2" would always mean cluster 2
        assert state.resolve_cluster("beach") == 1 and state.resolve_cluster("1") == 1
        state.move("a/1.jpg", "Beach")
        state.merge("Beach", 2)
        assert state.labels() == {"a/1.jpg": 1, "a/2.jpg": 0, "b/1.jpg": 1, "b/2.jpg": 1, "c/\udce9.jpg": 1}
        assert state.undo().op == "merge" and state.undo().op == "move"
        assert state.labels()["a/1.jpg"] == 0 and state.names() == {1: "Beach"}
        assert [e.undone for e in state.edits()] == [False, True, True, False, False]
        state.undo()
        with pytest.raises(ImgclustError, match="no edit to undo"):
            state.undo()
        assert state.check() == []


# ------------------------------------------------------------ on real photos

@pytest.fixture(scope="module")
def weights(real_weights, lite0_weights):
    return real_weights, lite0_weights


@pytest.fixture
def collection(weights, make_config, shared_vectors, tmp_path):
    """(config, photos folder, held-back folder): 48 ukbench photos in the collection, 8 waiting."""
    vectors = shared_vectors("ukbench")
    pipeline.extract(make_config(needs_shared(UKBENCH), vectors), progress=False)
    photos, later = tmp_path / "photos", tmp_path / "later"
    for group in sorted(p.name for p in UKBENCH.iterdir()):
        shutil.copytree(UKBENCH / group, (later if group in LATER else photos) / group)  # copy2: times kept
    return make_config(photos, vectors, k=12), photos, later


def labels_csv(config) -> list[dict]:
    with open(config.layout.labels_csv(), newline="") as f:
        return list(csv.DictReader(f))


def cli(config, *args, code=0):
    result = CliRunner().invoke(main, [*args, "--config", str(config.source), "-q"])
    assert result.exit_code == code, result.output
    return result.output


def test_a_grown_collection_keeps_its_clusters(collection):
    config, photos, later = collection
    first = pipeline.cluster(config, progress=False)
    assert first.collection.mode == "first" and first.k == 12
    before = dict(zip(first.paths, first.ids.tolist()))
    rows = labels_csv(config)
    assert list(rows[0])[:3] == ["path", "cluster", "name"] and len(rows) == 48

    for group in LATER:  # two new objects arrive
        shutil.copytree(later / group, photos / group)
    grown = pipeline.cluster(config, progress=False)
    after = dict(zip(grown.paths, grown.ids.tolist()))
    assert grown.collection.mode == "incremental" and grown.collection.added == 8
    assert all(after[p] == c for p, c in before.items())  # every old photo keeps its id
    for group in LATER:  # each new object is one new cluster of its own
        ids = {after[p] for p in after if p.startswith(group)}
        assert len(ids) == 1 and ids.isdisjoint(before.values())
    truth = [p.split("/")[0] for p in grown.paths]
    assert normalized_mutual_info_score(truth, grown.ids) > 0.9

    gone = next(p for p in grown.paths if p.startswith("group003"))
    (photos / gone).unlink()
    shrunk = pipeline.cluster(config, progress=False)
    assert gone not in shrunk.paths and shrunk.collection.removed == 1
    assert all(c == after[p] for p, c in zip(shrunk.paths, shrunk.ids.tolist()))

    again = pipeline.cluster(config, progress=False, recluster=True)  # full, ids matched by overlap
    assert again.collection.mode == "recluster"
    kept = np.mean([c == after[p] for p, c in zip(again.paths, again.ids.tolist())])
    assert kept > 0.8, kept  # k = 12 for 14 objects: a fresh clustering must join other pairs (measured 0.87)
    with open_collection(config.layout.collection_db) as state:
        assert [r["mode"] for r in state.runs()] == ["first", "incremental", "incremental", "recluster"]
        assert state.check() == []


def test_above_the_in_memory_size_the_features_are_never_read_whole(collection, monkeypatch):
    """Above EMBED_SAMPLE photos (100,000; here 40) the stores stay memory-mapped: a first run, a
    grown collection, a split and a recluster with that split in force never read the whole
    feature matrix (at 10^6 photos 13 GB: the run was killed for memory when they did), and the
    clusters still follow the objects."""
    from image_clustering import embedding

    config, photos, later = collection
    monkeypatch.setattr(embedding, "EMBED_SAMPLE", 40)

    def whole(self):
        raise AssertionError("the whole feature matrix was read")

    monkeypatch.setattr(embedding.FeatureRows, "array", whole)
    monkeypatch.setattr(embedding.FeatureRows, "views", whole)
    first = pipeline.cluster(config, progress=False)
    assert normalized_mutual_info_score([p.split("/")[0] for p in first.paths], first.ids) > 0.9
    for group in LATER:
        shutil.copytree(later / group, photos / group)
    grown = pipeline.cluster(config, progress=False)
    assert grown.collection.mode == "incremental" and grown.collection.added == 8
    assert normalized_mutual_info_score([p.split("/")[0] for p in grown.paths], grown.ids) > 0.9
    members = [p for p, c in zip(grown.paths, grown.ids.tolist()) if c == grown.ids[0]]
    pipeline.edit(config, "split", cluster=str(grown.ids[0]), k=2)
    again = pipeline.cluster(config, progress=False, recluster=True)
    after = dict(zip(again.paths, again.ids.tolist()))
    assert again.collection.mode == "recluster" and len({after[p] for p in members}) == 2  # the split holds


def test_edits_persist_across_runs_and_undo_exactly(collection, tmp_path):
    config, photos, later = collection
    result = pipeline.cluster(config, progress=False)
    ids = dict(zip(result.paths, result.ids.tolist()))
    of = {g: ids[f"{g}/{sorted(os.listdir(photos / g))[0]}"] for g in sorted(os.listdir(photos))}
    moved = sorted(p for p in ids if p.startswith("group001"))[0]
    excluded = sorted(p for p in ids if p.startswith("group002"))[0]

    cli(config, "edit", "rename", str(of["group000"]), "Kitchen / shelf")
    cli(config, "edit", "move", moved, "Kitchen / shelf")
    cli(config, "edit", "merge", str(of["group004"]), str(of["group005"]))
    cli(config, "edit", "exclude", excluded)
    with pytest.raises(ImgclustError, match="no such cluster"):
        pipeline.edit(config, "move", photo=moved, cluster=999)
    with pytest.raises(ImgclustError, match="not a photo of the collection"):
        pipeline.edit(config, "exclude", photo="nope.jpg")

    def check(tag):
        rows = {r["path"]: r for r in labels_csv(config)}
        kitchen = of["group000"]
        assert rows[moved]["cluster"] == str(kitchen) and rows[moved]["name"] == "Kitchen / shelf", tag
        assert {r["name"] for p, r in rows.items() if p.startswith("group000")} == {"Kitchen / shelf"}, tag
        merged = {r["cluster"] for p, r in rows.items() if p.startswith(("group004", "group005"))}
        assert merged == {str(of["group004"])}, tag
        assert rows[excluded]["cluster"] == "-1" and rows[excluded]["name"] == "excluded", tag
        folders = {p.name for p in config.layout.link_root().iterdir() if p.is_dir()}
        assert "Kitchen _ shelf" in folders and str(kitchen) not in folders, tag
        assert len(list((config.layout.link_root() / "Kitchen _ shelf").iterdir())) == 5, tag
        assert not any(p.name.endswith(Path(excluded).name) for p in config.layout.link_root().rglob("*")), tag

    check("after the edits")
    snapshot = open_collection(config.layout.collection_db)
    labels, names = snapshot.labels(), snapshot.names()
    snapshot.close()
    for group in LATER:
        shutil.copytree(later / group, photos / group)
    cli(config, "cluster")
    check("after new photos")
    cli(config, "cluster", "--recluster")
    check("after --recluster")
    (photos / moved).unlink()  # the moved photo is deleted: its edit is kept and reported
    cli(config, "cluster")
    log = cli(config, "edit", "log")
    assert len(log.strip().splitlines()) == 4 and "rename cluster" in log

    with open_collection(config.layout.collection_db) as state:
        labels, names = state.labels(), state.names()
        assert state.current().notes and "no longer in the collection" in state.current().notes[0]
    target = str(of["group006"])
    members = [p for p, c in labels.items() if c == of["group006"]]
    cli(config, "edit", "split", target, "--k", "2")
    with open_collection(config.layout.collection_db) as state:
        assert len({state.labels()[p] for p in members}) == 2
    out = cli(config, "edit", "undo")
    assert "undone" in out and "split" in out
    with open_collection(config.layout.collection_db) as state:
        assert state.labels() == labels and state.names() == names and state.check() == []

    edits = tmp_path / "edits.json"  # as the report will export them
    edits.write_text(json.dumps({"edits": [{"op": "rename", "cluster": target, "name": "Shoes"},
                                           {"op": "exclude", "photo": "group009/gone.jpg"}]}))
    out = cli(config, "edit", "apply", str(edits))
    assert "skipped" in out and "gone.jpg" in out
    assert "Shoes" in {p.name for p in config.layout.link_root().iterdir()}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"op": "rename", "cluster": target, "name": "X"}, {"op": "fly"}]))
    assert "not an edit" in cli(config, "edit", "apply", str(bad), code=1)
    with open_collection(config.layout.collection_db) as state:  # all or nothing
        assert "X" not in state.names().values()


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.is_symlink(), p.is_dir(), None if p.is_dir() else p.read_bytes(),
                                               os.lstat(p).st_mtime_ns if not p.is_dir() else None)
            for p in folder.rglob("*")}


def test_organise_dry_run_apply_rerun_and_undo(collection, tmp_path):
    config, photos, _ = collection
    pipeline.cluster(config, progress=False)
    target = tmp_path / "organised"
    (target / "0").mkdir(parents=True)
    (target / "0" / "mine.txt").write_text("the user's own file")
    photos_before, target_before = tree(photos), tree(target)
    db = config.layout.collection_db.read_bytes()

    out = cli(config, "organise", "--to", str(target), "--dry-run")
    assert "place" in out and "(dry run)" in out
    assert tree(target) == target_before and config.layout.collection_db.read_bytes() == db
    assert json.loads(config.layout.organise_plan.read_text())["dry_run"] is True

    cli(config, "organise", "--to", str(target))
    copies = [p for p in target.rglob("*.jpg")]
    assert len(copies) == 48 and all(not p.is_symlink() for p in copies)
    assert (target / "0" / "mine.txt").read_text() == "the user's own file"
    assert "nothing to do" in cli(config, "organise", "--to", str(target))

    with open_collection(config.layout.collection_db) as state:
        first = state.labels()
    photo = sorted(p for p, c in first.items() if c == 0)[0]
    cli(config, "edit", "rename", "0", "Desk")
    cli(config, "edit", "move", photo, "1")
    out = cli(config, "organise", "--to", str(target))
    assert "place 4," in out or "place 4 " in out or out.count("place\t") == 4  # only the difference
    assert not (target / "Desk" / photo.replace("/", "__")).exists()
    edited = next(p for p in (target / "Desk").iterdir())  # the user edits one copy: it is no longer ours
    edited.write_bytes(b"edited by the user")
    (target / "1" / "extra.txt").write_text("the user's note")
    undone = pipeline.organise(config, target, undo=True).done
    assert undone["left"] >= 1
    assert edited.read_bytes() == b"edited by the user" and (target / "1" / "extra.txt").exists()
    edited.unlink()
    (target / "1" / "extra.txt").unlink()
    (target / "1").rmdir()
    (target / "Desk").rmdir()
    assert tree(target) == target_before and tree(photos) == photos_before

    with pytest.raises(ImgclustError, match="overlaps paths.image_dir"):
        pipeline.organise(config, photos / "sorted")
    with pytest.raises(ImgclustError, match="overlaps paths.image_dir"):
        pipeline.organise(config, photos.parent)
    for inside in (config.layout.link_root(), config.layout.link_root() / "sorted", config.layout.plot_dir):
        with pytest.raises(ImgclustError, match="inside imgclust's"):  # cluster would rebuild it under the copies
            pipeline.organise(config, inside)


def test_organise_keepers_only_leaves_out_the_duplicates_that_are_not_kept(collection, tmp_path):
    config, photos, _ = collection
    pipeline.cluster(config, progress=False)
    target = tmp_path / "organised"
    with pytest.raises(ImgclustError, match="_duplicates.csv: not found; run `imgclust duplicates` first"):
        pipeline.organise(config, target, keepers_only=True)
    assert not target.exists()

    raw = json.loads(config.source.read_text())  # ukbench: four views of one object are the same scene
    raw["duplicates"] = {"grade": "same scene"}
    config.source.write_text(json.dumps(raw))
    cli(config, "duplicates")
    with open(config.layout.duplicates_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    left_out = {r["path"] for r in rows if r["keeper"] != "yes"}
    kept = {r["path"] for r in rows if r["keeper"] == "yes"}
    assert left_out and kept

    out = cli(config, "organise", "--to", str(target), "--dry-run", "--keepers-only")
    assert f"skip {len(left_out)}" in out and "(dry run)" in out and not target.exists()
    plan = json.loads(config.layout.organise_plan.read_text())
    assert {s["path"] for s in plan["steps"] if s["action"] == "skip"} == left_out
    cli(config, "organise", "--to", str(target), "--keepers-only")
    placed = {p.name for p in target.rglob("*.jpg")}
    assert len(placed) == 48 - len(left_out)
    assert all(p.replace("/", "__") in placed for p in kept)
    assert not any(p.replace("/", "__") in placed for p in left_out)
    cli(config, "organise", "--to", str(target))  # without the flag: they come back
    assert len(list(target.rglob("*.jpg"))) == 48
    cli(config, "organise", "--to", str(target), "--keepers-only")  # and go again, as imgclust made them
    assert len(list(target.rglob("*.jpg"))) == 48 - len(left_out)
    assert pipeline.organise(config, target, undo=True).done["left"] == 0
    assert not list(target.rglob("*.jpg"))

    config.layout.duplicates_csv.write_text("group,grade,path,keeper,similarity\n0,exact,a.jpg,maybe,1\n")
    with pytest.raises(ImgclustError, match="_duplicates.csv: line 2 is not a row"):
        pipeline.organise(config, target, keepers_only=True)


KILLER = """
import sys, time
from image_clustering.collection import open_collection
with open_collection(sys.argv[1]) as state:
    photos = sorted(state.labels())
    clusters = sorted({c for c in state.labels().values() if c >= 0})
    print("ready", flush=True)
    i = 0
    while True:  # edits and undos as fast as SQLite commits them
        state.move(photos[i % len(photos)], clusters[i % len(clusters)])
        state.rename(clusters[i % len(clusters)], f"name {i}")
        state.undo()
        i += 1
"""


@pytest.mark.slow
def test_the_state_survives_kill_9_at_any_moment(collection):
    config, photos, later = collection
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "image_clustering.cli", "cluster", "--config", str(config.source), "-q"]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    db = str(config.layout.collection_db)

    def sound():
        with open_collection(config.layout.collection_db) as state:
            assert state.check() == []
            assert all(c >= 0 or c in (-1, EXCLUDED) for c in state.labels().values())
            return state

    for delay in (0.2, 0.5, 1.0, 2.0):  # kill -9 in the middle of edit transactions
        child = subprocess.Popen([sys.executable, "-c", KILLER, db], env=env, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        sound()
    for group in LATER:
        shutil.copytree(later / group, photos / group)
    for fraction in (0.3, 0.6, 0.9):  # kill -9 during cluster runs (recluster: the longest)
        child = subprocess.Popen([*command, "--recluster"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(seconds * fraction)
        child.send_signal(signal.SIGKILL)
        child.wait()
        sound()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open_collection(config.layout.collection_db) as state:
        assert state.check() == [] and len(state.labels()) == 56
    assert len(labels_csv(config)) == 56
