"""Stage 4: clusters → files people use: the label table and one folder of links per cluster.

Original photos are only ever read: links point at them, copies are made from them.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .atomic import atomic_write_csv, atomic_write_json, exchange, read_csv
from .clustering import UNCLUSTERED, Clustering
from .errors import ImgclustError

UNCLUSTERED_NAME = "unclustered"
EXCLUDED_NAME = "excluded"
EXCLUDED = -2  # collection.EXCLUDED: a photo the user took out of every cluster
RESERVED = {UNCLUSTERED_NAME, EXCLUDED_NAME}


def cluster_id(cluster: int, k: int) -> str:
    """Cluster number zero-padded to the width of ``k - 1``, so file and folder names sort;
    ``unclustered`` for :data:`~image_clustering.clustering.UNCLUSTERED`."""
    return UNCLUSTERED_NAME if cluster == UNCLUSTERED else f"{cluster:0{len(str(max(k, 1) - 1))}d}"


def folder_name(cluster: int, size: int, k: int) -> str:
    """Link folder of a cluster: ``<cluster>_<size>``, as the original tool named them; the
    unclustered images go to ``unclustered``."""
    return UNCLUSTERED_NAME if cluster == UNCLUSTERED else f"{cluster_id(cluster, k)}_{size}"


def write_labels(label_dir: Path, object_name: str, paths: list[str], clustering: Clustering,
                 embedding: np.ndarray, ids: np.ndarray | None = None,
                 names: dict[int, str] | None = None) -> tuple[Path, Path]:
    """Write ``<object_name>.csv`` (path, cluster — -1 for unclustered —, name, distance to the
    cluster centre in the clustering space's units, embedding coordinates) and
    ``<object_name>.json`` (k, sizes, names, the member paths of each cluster nearest the centre
    first, and the unclustered paths).

    Args:
        clustering: the partition (labels 0..k−1 by size, -1 unclustered) with its distances.
        ids: int (N,) the stable cluster id of each photo (:mod:`image_clustering.collection`;
            -1 unclustered, -2 excluded by the user, written as -1 named ``excluded``); None: the
            labels of ``clustering``.
        names: cluster id → name, written in the ``name`` column (empty for unnamed clusters).

    Returns:
        The two paths written.
    """
    ids = np.asarray(clustering.labels if ids is None else ids)
    names = names or {}
    excluded = ids == EXCLUDED
    column = np.where(excluded, UNCLUSTERED, ids)

    def name(c: int, out: bool) -> str:
        return EXCLUDED_NAME if out else names.get(c, "")

    dims = [f"x{j}" for j in range(embedding.shape[1])]
    csv_path = label_dir / f"{object_name}.csv"
    atomic_write_csv(csv_path, ["path", "cluster", "name", "distance", *dims],
                     ([path, int(c), name(int(c), out), "" if np.isnan(d) else f"{d:.6g}", *(f"{v:.6g}" for v in e)]
                      for path, c, out, d, e in zip(paths, column, excluded, clustering.distances, embedding)))
    clusters = {}
    for c in sorted(int(c) for c in np.unique(ids) if c >= 0):
        members = np.flatnonzero(ids == c)
        members = members[np.argsort(clustering.distances[members], kind="stable")]
        clusters[str(c)] = [paths[i] for i in members]
    doc = {"object_name": object_name, "k": len(clusters), "sizes": [len(v) for v in clusters.values()],
           "names": {str(c): n for c, n in sorted(names.items()) if str(c) in clusters},
           "clusters": clusters,
           UNCLUSTERED_NAME: [paths[i] for i in np.flatnonzero(ids == UNCLUSTERED)],
           EXCLUDED_NAME: [paths[i] for i in np.flatnonzero(excluded)]}
    json_path = label_dir / f"{object_name}.json"
    atomic_write_json(json_path, doc)
    return csv_path, json_path


FOLDER_NAME_MAX = 100  # bytes: room under NAME_MAX for a suffix, and names a file manager shows whole


def safe_folder_name(text: str) -> str:
    """``text`` as one portable folder name: NFC, every character other than letters, digits,
    space and ``-_.,+()&'`` replaced by ``_``, runs of ``_`` and spaces collapsed, no leading
    or trailing dots or spaces, at most :data:`FOLDER_NAME_MAX` bytes (cut at a character
    boundary); ``""`` where nothing is left."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFC", str(text))
    text = "".join(ch if (ch.isalnum() or ch in " -_.,+()&'") else "_" for ch in text)
    text = re.sub(r"_+", "_", re.sub(r"\s+", " ", text)).strip(" ._")
    raw = text.encode("utf-8", "surrogateescape")[:FOLDER_NAME_MAX]
    return raw.decode("utf-8", "ignore").strip(" ._")


def folder_names(labels: dict[int, str | None]) -> dict[int, str]:
    """Link and organise folder of each cluster: ``labels[id]`` (its name, else its tag words)
    made safe (:func:`safe_folder_name`), else the id; names equal apart from case get
    ``_<id>`` behind all but the lowest id, so every folder is unique and, while names do not
    change, the same run after run. ``unclustered`` and ``excluded`` are reserved.

    Args:
        labels: cluster id (≥ 0) → name or tag words (None or empty: no label).

    Returns:
        cluster id → folder name.
    """
    base = {c: safe_folder_name(t) if t else "" for c, t in labels.items()}
    base = {c: t if t and t.casefold() not in RESERVED else str(c) for c, t in base.items()}
    seen: set[str] = set()
    out = {}
    for c in sorted(base):
        name = base[c]
        if name.casefold() in seen:
            name = f"{name}_{c}"
        seen.add(name.casefold())
        out[c] = name
    return out


def read_labels(csv_path: Path) -> dict[str, int]:
    """The ``path → cluster`` column pair of a label CSV written by :func:`write_labels`, in file
    order (paths as given to it: the formula escaping of the CSV undone)."""
    with open(csv_path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        header, *rows = read_csv(f) or [[]]
    if not {"path", "cluster"} <= set(header):
        raise ImgclustError(f"{csv_path}: not a label file of imgclust (header {header}); run the clustering again")
    path, cluster = header.index("path"), header.index("cluster")
    return {row[path]: int(row[cluster]) for row in rows}


NAME_MAX = 255  # bytes in one file name on Linux file systems (ext4, XFS, btrfs, tmpfs)
MARKER = ".imgclust-links"  # in every link folder imgclust makes; no marker, no replacing it


def _flat_name(rel_path: str) -> str:
    """Link name of a photo: its relative path with ``/`` → ``__``, so equal file names from
    different folders differ. Names over :data:`NAME_MAX` bytes keep their end (the file name and
    extension) behind a stable hash of the whole path, so they always fit and never collide."""
    flat = rel_path.replace("/", "__")
    raw = os.fsencode(flat)
    if len(raw) <= NAME_MAX:
        return flat
    digest = hashlib.sha256(raw).hexdigest()[:16]
    tail = raw[-(NAME_MAX - len(digest) - 1):]
    while True:  # do not start inside a multi-byte character
        try:
            return f"{digest}~{tail.decode('utf-8')}"
        except UnicodeDecodeError as exc:
            if exc.start > 0:  # undecodable bytes in the name itself: keep them as they are
                return f"{digest}~{os.fsdecode(tail)}"
            tail = tail[1:]


def _place(source: Path, target: Path, mode: str) -> str:
    """Create ``target`` as a symlink, hard link or copy of ``source``, falling back in that order;
    returns the kind made."""
    order = ["symlink", "hardlink", "copy"]
    for kind in order[order.index(mode):]:
        try:
            if kind == "symlink":
                os.symlink(source, target)
            elif kind == "hardlink":
                os.link(source, target)
            else:
                shutil.copy2(source, target)
            return kind
        except (OSError, NotImplementedError) as exc:
            if kind == "copy":
                # A full disk is the copy's, not the photo's: shutil names the photo (sendfile) or no file.
                if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or exc.filename is None):
                    raise OSError(exc.errno, exc.strerror, str(target)) from exc
                raise
    raise AssertionError("unreachable")


def is_link_folder(folder: Path) -> bool:
    """Whether ``folder`` is a link folder imgclust made: it carries :data:`MARKER`, or (made
    before the marker existed) holds nothing but folders of symbolic links."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / MARKER).is_file():
        return True
    return all(sub.is_dir() and not sub.is_symlink() and all(f.is_symlink() for f in sub.iterdir())
               for sub in folder.iterdir())


def _remove_link_folder(folder: Path) -> None:
    # Only ever a folder we made: its files are links or copies, never the photos themselves.
    if is_link_folder(folder):
        shutil.rmtree(folder, ignore_errors=True)


def build_link_folders(link_root: Path, image_dir: Path, paths: list[str], labels: np.ndarray, k: int,
                       mode: str = "symlink", before_swap=None, names: dict[int, str] | None = None) -> dict[str, int]:
    """Rebuild ``link_root`` with one folder per cluster holding a link to each member photo.

    The new tree is built beside the old one, then the two are exchanged in one atomic step
    (:func:`~image_clustering.atomic.exchange`; two renames where the system cannot), so a crash
    at any moment leaves a complete link folder, the old or the new. ``link_root`` is only replaced
    when imgclust made it (:func:`is_link_folder`); files are named by :func:`_flat_name`.

    Args:
        link_root: ``<link_dir>/<object_name>``.
        image_dir: folder the relative ``paths`` start from (absolute).
        paths: relative photo paths, one per label.
        labels: int (N,) cluster numbers in 0..k−1, or -1 (into the ``unclustered`` folder).
        mode: first choice of ``symlink``, ``hardlink``, ``copy``; later ones are fallbacks.
        before_swap: called once the new tree is complete, just before it replaces the old one
            (the workflow writes the label files there, so labels and links change together).
        names: label → folder name (:func:`folder_names`); None: :func:`folder_name`.

    Returns:
        Count of each kind of link made, e.g. ``{"symlink": 56}``.

    Raises:
        ImgclustError: ``link_root`` exists and was not made by imgclust.
        OSError: the links cannot be made (the previous folder is left as it was).
    """
    if (link_root.exists() or link_root.is_symlink()) and not is_link_folder(link_root):
        raise ImgclustError(f"{link_root}: exists and was not made by imgclust (no {MARKER} file); move it "
                            "away or choose another paths.link_dir — imgclust only replaces folders it made")
    parent = link_root.parent
    parent.mkdir(parents=True, exist_ok=True)
    building = parent / f".{link_root.name}.new-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    try:
        (building / MARKER).write_text("made by imgclust: one folder of links per cluster; safe to delete\n")
        made = _fill(building, image_dir, paths, labels, k, mode, names)
        if before_swap is not None:
            before_swap()
        _swap_in(building, link_root)
    finally:
        _remove_link_folder(building)  # after the swap it holds the old tree
    # Leftovers of crashed runs (ours only: they carry the marker).
    for stale in parent.glob(f".{link_root.name}.*"):
        _remove_link_folder(stale)
    return made


def _fill(building: Path, image_dir: Path, paths: list[str], labels: np.ndarray, k: int, mode: str,
          names: dict[int, str] | None = None) -> dict[str, int]:
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    folders = {c: building / (names[c] if names else folder_name(c, int(sizes[c]), k))
               for c in range(k) if sizes[c]}  # no empty folders
    if (labels == UNCLUSTERED).any():
        folders[UNCLUSTERED] = building / UNCLUSTERED_NAME
    for folder in folders.values():
        folder.mkdir()
    made: dict[str, int] = {}
    used: set[Path] = set()
    for rel, c in zip(paths, labels):
        flat = _flat_name(rel)
        target = folders[c] / flat
        n = 1
        while target in used:  # "a__b.jpg" and "a/b.jpg" flatten alike
            stem, suffix = os.path.splitext(flat)
            target = folders[c] / _flat_name(f"{stem}~{n}{suffix}")
            n += 1
        used.add(target)
        kind = _place(image_dir / rel, target, mode)
        made[kind] = made.get(kind, 0) + 1
    return made


def _swap_in(building: Path, link_root: Path) -> None:
    """Put ``building`` at ``link_root``; the previous tree, if any, ends up at ``building``."""
    if not (link_root.exists() or link_root.is_symlink()):
        os.rename(building, link_root)
    elif not exchange(building, link_root):
        # No atomic exchange here: two renames, with a window where only the .old twin exists.
        old = building.with_name(building.name.replace(".new-", ".old-"))
        os.rename(link_root, old)
        os.rename(building, link_root)
        os.rename(old, building)
