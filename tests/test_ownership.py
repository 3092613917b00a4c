"""Issue 21 D1: imgclust replaces or removes only what it can prove it made (the manifest of the
link tree, checked against the inodes on disk); a marker proves nothing, and a user's files in or
beside a link folder survive every later run."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_clustering import ImgclustError
from image_clustering.outputs import MARKER, build_link_folders
from tests.conftest import noise_photo

NAMES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links followed) → sha256 of its content."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for i, name in enumerate(NAMES):
        noise_photo(folder / name, i, (40, 32), format="JPEG")
    return folder


def run(root, photos, labels=(0, 0, 0, 1), mode="symlink"):
    labels = np.array(labels)
    return build_link_folders(root, photos, NAMES, labels, int(labels.max()) + 1, mode)


def test_a_cp_rL_copy_of_a_link_folder_with_the_marker_is_never_replaced(tmp_path, photos):
    """The copy holds real photos, the marker and the user's EDITED.txt; put back where the link
    folder was, the next run refuses it instead of replacing it."""
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    copy = tmp_path / "links" / "holiday-copy"
    subprocess.run(["cp", "-rL", str(root), str(copy)], check=True)
    (copy / "0_3" / "EDITED.txt").write_text("my notes")
    assert (copy / MARKER).is_file()
    subprocess.run(["rm", "-r", str(root)], check=True)
    copy.rename(root)
    before = digests(root)
    with pytest.raises(ImgclustError, match="not made by imgclust"):
        run(root, photos, (0, 1, 1, 1))
    assert digests(root) == before and digests(photos).keys() == set(NAMES)


@pytest.mark.parametrize("how", [["cp", "-rL"], ["cp", "-a"]])
def test_a_hidden_backup_beside_the_link_folder_survives(tmp_path, photos, how):
    """``.<name>.backup/`` (and a copy that even looks like imgclust's own temporary name) is not
    swept as a leftover, though it carries the marker."""
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    backups = [root.parent / ".holiday.backup", root.parent / ".holiday.new-0badcafe",
               root.parent / f".holiday.imgclust-{'0' * 32}"]
    for backup in backups:
        subprocess.run([*how, str(root), str(backup)], check=True)
    (backups[0] / "0_3" / "keep.txt").write_text("mine")
    before = {b.name: sorted(p.relative_to(b).as_posix() for p in b.rglob("*")) for b in backups}
    run(root, photos, (0, 1, 1, 1))
    run(root, photos, (1, 1, 0, 0))
    assert {b.name: sorted(p.relative_to(b).as_posix() for p in b.rglob("*")) for b in backups} == before
    assert (backups[0] / "0_3" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("mode", ["copy", "symlink", "hardlink"])
def test_files_a_user_adds_to_a_cluster_folder_survive_every_later_run(tmp_path, photos, mode):
    """Two photos and a captions.txt added to ``0_3/``, a copy the user edited, a file named like a
    link imgclust would make: kept in place (same inode, same bytes) through two more runs."""
    root = tmp_path / "links" / "holiday"
    run(root, photos, mode=mode)
    added = {"0_3/captions.txt": b"a: beach\n", "0_3/extra1.jpg": b"\xff\xd8 not ours 1",
             "0_3/extra2.jpg": b"\xff\xd8 not ours 2", "1_1/a.jpg~note": b"x"}
    for rel, data in added.items():
        (root / rel).write_bytes(data)
    inodes = {rel: os.lstat(root / rel).st_ino for rel in added}
    if mode == "copy":
        (root / "1_1" / "d.jpg").write_bytes(b"edited by the user")  # imgclust's copy, changed
        added["1_1/d.jpg"] = b"edited by the user"
    run(root, photos, (0, 1, 1, 1), mode)  # cluster sizes change: folders 0_1 and 1_3 now
    run(root, photos, (1, 1, 0, 0), mode)
    for rel, data in added.items():
        assert (root / rel).read_bytes() == data, rel
    assert {rel: os.lstat(root / rel).st_ino for rel in inodes} == inodes
    assert sorted(p.name for p in (root / "0_2").iterdir()) == ["c.jpg", "d.jpg"]
    assert sorted(p.name for p in (root / "1_1").iterdir()) == (
        ["a.jpg~note", "d.jpg"] if mode == "copy" else ["a.jpg~note"])
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    assert digests(photos).keys() == set(NAMES)


def test_a_link_named_like_a_kept_file_gets_another_name(tmp_path, photos):
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    (root / "0_3" / "b.jpg").unlink()
    (root / "0_3" / "b.jpg").write_text("the user's own b.jpg")
    run(root, photos)
    assert (root / "0_3" / "b.jpg").read_text() == "the user's own b.jpg"
    assert os.readlink(root / "0_3" / "b~1.jpg") == str(photos / "b.jpg")


@pytest.mark.parametrize("mode", ["symlink", "hardlink"])
def test_a_manifest_cut_short_keeps_the_unproven_links_without_twins(tmp_path, photos, mode):
    """Lines lost from the manifest (a truncated file) leave their links unproven: kept as the
    user's, never removed — and, being already the very link the new tree needs, not doubled as
    ``name~1`` (the audit found every link doubled)."""
    root = tmp_path / "links" / "holiday"
    run(root, photos, mode=mode)
    manifest = root / MARKER
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")  # only the header proves the folder
    run(root, photos, mode=mode)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert names == ["0_3/a.jpg", "0_3/b.jpg", "0_3/c.jpg", "1_1/d.jpg"]
    run(root, photos, (0, 1, 1, 1), mode=mode)  # unproven links are never removed: a and the moved ones stay
    assert {"0_3/a.jpg", "0_3/b.jpg", "0_3/c.jpg", "1_1/d.jpg"} <= {p.relative_to(root).as_posix()
                                                                  for p in root.rglob("*.jpg")}
    assert digests(photos).keys() == set(NAMES)


def test_a_hand_made_album_of_the_users_own_symlinks_survives(tmp_path, photos):
    """Inside the link folder it is kept; in place of the link folder (folders of nothing but
    symbolic links, as old imgclust link folders were) it is refused, not replaced."""
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    album = root / "my album"
    album.mkdir()
    for name in NAMES[:2]:
        os.symlink(photos / name, album / name)
    (root / "empty album").mkdir()
    run(root, photos, (0, 1, 1, 1))
    assert sorted(os.readlink(p) for p in album.iterdir()) == [str(photos / n) for n in NAMES[:2]]
    assert (root / "empty album").is_dir()

    hand_made = tmp_path / "links" / "trip"
    (hand_made / "best").mkdir(parents=True)
    os.symlink(photos / "a.jpg", hand_made / "best" / "a.jpg")
    with pytest.raises(ImgclustError, match="not made by imgclust"):
        run(hand_made, photos)
    assert os.readlink(hand_made / "best" / "a.jpg") == str(photos / "a.jpg")
    assert sorted(p.name for p in hand_made.iterdir()) == ["best"]


CRASH = """
import os, sys, numpy as np
from pathlib import Path
from image_clustering import outputs
photos, root, when = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if when == "before swap":
    outputs._swap_in = lambda *a: os._exit(9)
else:  # right after the swap, before the old tree is cleared
    outputs._clear = lambda *a: os._exit(9)
outputs.build_link_folders(root, photos, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], np.array([0, 1, 1, 1]), 2)
"""


@pytest.mark.parametrize("when", ["before swap", "after swap"])
def test_a_crash_with_user_files_in_the_tree_loses_nothing_and_the_next_run_resumes(tmp_path, photos, when):
    from tests.conftest import ROOT

    root = tmp_path / "links" / "holiday"
    run(root, photos)
    (root / "0_3" / "notes.txt").write_text("mine")
    inode = os.lstat(root / "0_3" / "notes.txt").st_ino
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CRASH, str(photos), str(root), when], env=env)
    assert done.returncode == 9
    assert (root / "0_3" / "notes.txt").read_text() == "mine" and (root / MARKER).is_file()
    assert len([p for p in root.parent.iterdir() if p.name.startswith(".holiday.imgclust-")]) == 1
    run(root, photos, (1, 1, 0, 0))
    assert (root / "0_3" / "notes.txt").read_text() == "mine"
    assert os.lstat(root / "0_3" / "notes.txt").st_ino == inode
    assert sorted(p.name for p in root.parent.iterdir()) == ["holiday"]  # the leftover cleared
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "0_2", "0_3", "1_2"]


def test_without_an_atomic_exchange_user_files_survive_too(tmp_path, photos, monkeypatch):
    from image_clustering import outputs

    monkeypatch.setattr(outputs, "exchange", lambda a, b: False)
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    (root / "0_3" / "notes.txt").write_text("mine")
    run(root, photos, (0, 1, 1, 1))
    assert (root / "0_3" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in root.parent.iterdir()) == ["holiday"]


def test_removing_a_link_tree_removes_only_what_imgclust_made(tmp_path, photos):
    from image_clustering.outputs import remove_link_tree

    root = tmp_path / "links" / "holiday"
    run(root, photos, mode="copy")
    (root / "1_1" / "mine.txt").write_text("mine")
    assert remove_link_tree(root) == ["1_1", "1_1/mine.txt"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [MARKER, "1_1", "1_1/mine.txt"]
    (root / "1_1" / "mine.txt").unlink()
    assert remove_link_tree(root) == [] and not root.exists()


def test_folder_names_are_checked_and_any_name_works(tmp_path, photos):
    """The tree writer takes any folder names (a collection's cluster names, say)."""
    from image_clustering.outputs import write_link_tree

    root = tmp_path / "links" / "named"
    done = write_link_tree(root, photos, {"Beach 2024": ["a.jpg", "b.jpg"], "café": ["c.jpg"], "empty": []})
    assert done.made == {"symlink": 3} and done.kept == []
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "Beach 2024", "café", "empty"]
    for bad in ["..", "a/b", "", MARKER]:
        with pytest.raises(ImgclustError, match="cannot be a folder name"):
            write_link_tree(root, photos, {bad: ["a.jpg"]})
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "Beach 2024", "café", "empty"]


def test_a_link_folder_of_an_older_imgclust_is_refused_saying_so(tmp_path, photos):
    root = tmp_path / "links" / "holiday"
    (root / "0_1").mkdir(parents=True)
    (root / MARKER).write_text("made by imgclust: one folder of links per cluster; safe to delete\n")
    os.symlink(photos / "a.jpg", root / "0_1" / "a.jpg")
    with pytest.raises(ImgclustError, match="from before ownership manifests"):
        run(root, photos)
    assert os.readlink(root / "0_1" / "a.jpg") == str(photos / "a.jpg")


def test_a_users_file_where_a_cluster_folder_goes_is_one_line_naming_it(tmp_path, photos):
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    (root / "1_3").write_text("mine")
    with pytest.raises(ImgclustError, match=f"^{root / '1_3'}: a file imgclust did not make is where the folder"):
        run(root, photos, (0, 1, 1, 1))
    assert (root / "1_3").read_text() == "mine" and sorted(p.name for p in root.parent.iterdir()) == ["holiday"]


@pytest.mark.parametrize("swap", ["fifo", "symlink"])
def test_a_manifest_swapped_for_a_fifo_or_a_link_is_refused_without_waiting(tmp_path, photos, swap):
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    real = (root / MARKER).read_bytes()
    (root / MARKER).unlink()
    if swap == "fifo":
        os.mkfifo(root / MARKER)
    else:
        (tmp_path / "elsewhere").write_bytes(real)
        os.symlink(tmp_path / "elsewhere", root / MARKER)
    with pytest.raises(ImgclustError, match="not made by imgclust"):
        run(root, photos)
    assert len(list((root / "0_3").iterdir())) == 3


def test_names_that_are_not_utf8_are_proven_and_kept_alike(tmp_path):
    """A photo and a user's file whose names are Latin-1 bytes: imgclust's link to the first is
    replaced on the next run (not kept as foreign), the second is kept."""
    photos = tmp_path / "photos"
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    noise_photo(photos / latin1, 0, (40, 32), format="JPEG")
    noise_photo(photos / "b.jpg", 1, (40, 32), format="JPEG")
    root = tmp_path / "links" / "set"
    build_link_folders(root, photos, [latin1, "b.jpg"], np.array([0, 0]), 1)
    mine = os.fsdecode(b"notes-\xff.txt")
    (root / "0_2" / mine).write_text("mine")
    build_link_folders(root, photos, [latin1, "b.jpg"], np.array([0, 1]), 2)
    assert sorted(os.fsencode(p.name) for p in (root / "0_2").iterdir()) == [b"notes-\xff.txt"]
    assert [os.fsencode(p.name) for p in (root / "0_1").iterdir()] == [b"caf\xe9.jpg"]


def test_a_link_folder_replaced_by_a_symbolic_link_is_named_as_one(tmp_path, photos):
    root = tmp_path / "links" / "holiday"
    run(root, photos)
    elsewhere = tmp_path / "elsewhere"
    root.rename(elsewhere)
    root.symlink_to(elsewhere)
    with pytest.raises(ImgclustError, match="is a symbolic link") as info:
        run(root, photos)
    assert "\n" not in str(info.value) and root.is_symlink() and (elsewhere / MARKER).is_file()
