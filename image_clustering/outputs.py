"""Stage 4: clusters → files people use: the label table and one folder of links per cluster.

Original photos are only ever read: links point at them, copies are made from them.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .atomic import atomic_write_csv, atomic_write_text, read_csv
from .clustering import UNCLUSTERED, Clustering
from .errors import ImgclustError

UNCLUSTERED_NAME = "unclustered"


def cluster_id(cluster: int, k: int) -> str:
    """Cluster number zero-padded to the width of ``k - 1``, so file and folder names sort;
    ``unclustered`` for :data:`~image_clustering.clustering.UNCLUSTERED`."""
    return UNCLUSTERED_NAME if cluster == UNCLUSTERED else f"{cluster:0{len(str(max(k, 1) - 1))}d}"


def folder_name(cluster: int, size: int, k: int) -> str:
    """Link folder of a cluster: ``<cluster>_<size>``, as the original tool named them; the
    unclustered images go to ``unclustered``."""
    return UNCLUSTERED_NAME if cluster == UNCLUSTERED else f"{cluster_id(cluster, k)}_{size}"


def write_labels(label_dir: Path, object_name: str, paths: list[str], clustering: Clustering,
                 embedding: np.ndarray) -> tuple[Path, Path]:
    """Write ``<object_name>.csv`` (path, cluster — -1 for unclustered —, distance to the cluster
    centre in the clustering space's units, embedding coordinates) and ``<object_name>.json`` (k,
    sizes, the member paths of each cluster nearest the centre first, and the unclustered paths).

    Returns:
        The two paths written.
    """
    dims = [f"x{j}" for j in range(embedding.shape[1])]
    csv_path = label_dir / f"{object_name}.csv"
    atomic_write_csv(csv_path, ["path", "cluster", "distance", *dims],
                     ([path, int(c), "" if np.isnan(d) else f"{d:.6g}", *(f"{v:.6g}" for v in e)]
                      for path, c, d, e in zip(paths, clustering.labels, clustering.distances, embedding)))
    clusters = {}
    for c in range(clustering.k):
        members = np.flatnonzero(clustering.labels == c)
        members = members[np.argsort(clustering.distances[members], kind="stable")]
        clusters[str(c)] = [paths[i] for i in members]
    doc = {"object_name": object_name, "k": clustering.k, "sizes": [len(v) for v in clusters.values()],
           "clusters": clusters,
           UNCLUSTERED_NAME: [paths[i] for i in np.flatnonzero(clustering.labels == UNCLUSTERED)]}
    json_path = label_dir / f"{object_name}.json"
    atomic_write_text(json_path, json.dumps(doc, indent=1, ensure_ascii=False))
    return csv_path, json_path


def read_labels(csv_path: Path) -> dict[str, int]:
    """The ``path → cluster`` column pair of a label CSV written by :func:`write_labels`, in file
    order (paths as given to it: the formula escaping of the CSV undone)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        header, *rows = read_csv(f) or [[]]
    if not {"path", "cluster"} <= set(header):
        raise ImgclustError(f"{csv_path}: not a label file of imgclust (header {header}); run the clustering again")
    path, cluster = header.index("path"), header.index("cluster")
    return {row[path]: int(row[cluster]) for row in rows}


def _flat_name(rel_path: str) -> str:
    # Keep the sub-folder in the link name so equal file names from different folders differ.
    return rel_path.replace("/", "__")


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
        except (OSError, NotImplementedError):
            if kind == "copy":
                raise
    raise AssertionError("unreachable")


def build_link_folders(link_root: Path, image_dir: Path, paths: list[str], labels: np.ndarray, k: int,
                       mode: str = "symlink") -> dict[str, int]:
    """Rebuild ``link_root`` with one folder per cluster holding a link to each member photo.

    The new tree is built beside the old one and swapped in by renames, so a crash leaves the
    previous folder (or, at worst, its ``.old`` twin) intact; files are named by their path relative
    to ``image_dir`` with ``/`` turned into ``__``.

    Args:
        link_root: ``<link_dir>/<object_name>``.
        image_dir: folder the relative ``paths`` start from (absolute).
        paths: relative photo paths, one per label.
        labels: int (N,) cluster numbers in 0..k−1, or -1 (into the ``unclustered`` folder).
        mode: first choice of ``symlink``, ``hardlink``, ``copy``; later ones are fallbacks.

    Returns:
        Count of each kind of link made, e.g. ``{"symlink": 56}``.
    """
    parent = link_root.parent
    parent.mkdir(parents=True, exist_ok=True)
    building = parent / f".{link_root.name}.new-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    folders = {c: building / folder_name(c, int(sizes[c]), k) for c in range(k)}
    if (labels == UNCLUSTERED).any():
        folders[UNCLUSTERED] = building / UNCLUSTERED_NAME
    for folder in folders.values():
        folder.mkdir()
    made: dict[str, int] = {}
    used: set[Path] = set()
    for rel, c in zip(paths, labels):
        target = folders[c] / _flat_name(rel)
        n = 1
        while target in used:  # "a__b.jpg" and "a/b.jpg" flatten alike
            target = target.with_name(f"{Path(_flat_name(rel)).stem}~{n}{Path(rel).suffix}")
            n += 1
        used.add(target)
        kind = _place(image_dir / rel, target, mode)
        made[kind] = made.get(kind, 0) + 1
    old = parent / f".{link_root.name}.old-{uuid.uuid4().hex[:8]}"
    if link_root.exists() or link_root.is_symlink():
        os.rename(link_root, old)
    os.rename(building, link_root)
    # Leftovers of this or earlier (crashed) runs; rmtree never follows the links into the photos.
    for stale in parent.glob(f".{link_root.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    return made
