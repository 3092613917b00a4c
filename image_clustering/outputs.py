"""Stage 4: clusters → files people use: the label table and one folder of links per cluster.

Original photos are only ever read: links point at them, copies are made from them.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_csv, atomic_write_json, exchange, read_csv
from .clustering import UNCLUSTERED, Clustering
from .errors import ImgclustError
from .ownership import MANIFEST, ManifestWriter, foreign, open_regular, read_manifest, remove_owned

log = logging.getLogger(__name__)

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
MARKER = MANIFEST  # the manifest of what imgclust made, at the root of every link folder (see ownership.py)


def _flat_name(rel_path: str, limit: int = NAME_MAX) -> str:
    """Link name of a photo: its relative path with ``/`` → ``__``, so equal file names from
    different folders differ. Names over ``limit`` bytes (default :data:`NAME_MAX`) keep their end
    (the file name and extension) behind a stable hash of the whole path, so they always fit and
    never collide."""
    flat = rel_path.replace("/", "__")
    raw = os.fsencode(flat)
    if len(raw) <= limit:
        return flat
    digest = hashlib.sha256(raw).hexdigest()[:16]
    tail = raw[-(limit - len(digest) - 1):]
    while True:  # do not start inside a multi-byte character
        try:
            return f"{digest}~{tail.decode('utf-8')}"
        except UnicodeDecodeError as exc:
            if exc.start > 0:  # undecodable bytes in the name itself: keep them as they are
                return f"{digest}~{os.fsdecode(tail)}"
            tail = tail[1:]


def _place(source: str | Path, target: str | Path, mode: str) -> str:
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
                with suppress(OSError):  # a partial copy, made this instant in a folder of our own
                    os.unlink(target)
                # A full disk is the copy's, not the photo's: shutil names the photo (sendfile) or no file.
                if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or exc.filename is None):
                    raise OSError(exc.errno, exc.strerror, str(target)) from exc
                raise
    raise AssertionError("unreachable")


def is_link_folder(folder: Path) -> bool:
    """Whether ``folder`` is a link folder imgclust provably made: its :data:`MARKER` manifest was
    written for this very folder (:func:`~image_clustering.ownership.read_manifest`; a copy of the
    folder, a backup or a folder made by hand never passes, marker or not)."""
    return read_manifest(folder) is not None


def remove_link_tree(link_root: Path) -> list[str]:
    """Remove from ``link_root`` what imgclust provably made there (:func:`~image_clustering.ownership.remove_owned`);
    files a user added stay, with the folders that hold them. Returns the relative paths left."""
    left = remove_owned(link_root)
    if left:
        log.warning(f"{link_root}: kept {len(left)} entries imgclust did not make (e.g. {left[0]})")
    return left


@dataclass(frozen=True)
class LinkTree:
    """What :func:`write_link_tree` did: ``made`` counts each kind of link made (``{"symlink": 56}``),
    ``kept`` lists the entries of the previous tree imgclust did not make, kept in place (relative
    POSIX paths)."""

    made: dict[str, int]
    kept: list[str]


_TEMP = ".imgclust-"  # <parent>/.<name>.imgclust-<32 hex>[-old]: the only names the leftover sweep looks at


def write_link_tree(link_root: Path, image_dir: Path, folders: Mapping[str, Sequence[str]], mode: str = "symlink",
                    before_swap=None, prefixes: Mapping[str, str] | None = None) -> LinkTree:
    """Make ``link_root`` hold one folder per key of ``folders`` with a link to each of its photos,
    replacing the previous tree only as far as imgclust provably made it.

    The new tree is built beside the old one, under a uuid-tagged hidden name, each entry recorded
    in its manifest (:mod:`image_clustering.ownership`) as it is made; then the two are exchanged in
    one atomic step (:func:`~image_clustering.atomic.exchange`; two renames where the system cannot),
    so a crash at any moment leaves a complete tree, the old or the new. What the previous tree's
    manifest does not prove imgclust's — a file a user added to a folder, a copy the user edited, a
    folder of the user's own links — is kept in place: it is given a second name (a hard link; the
    same inode) at the same path in the new tree before the exchange, so it is never anywhere but
    in its folder; a link that would take its name gets ``~1`` added instead. Only then is the old
    tree cleared of imgclust's entries, and leftovers of crashed runs are cleared the same way.

    Args:
        link_root: the tree's folder, e.g. ``<link_dir>/<object_name>``.
        image_dir: folder the relative photo paths start from (absolute).
        folders: folder name (one path component) → photo paths relative to ``image_dir``; each
            becomes a link named by :func:`_flat_name`. Empty folders are made too.
        mode: first choice of ``symlink``, ``hardlink``, ``copy``; later ones are fallbacks.
        before_swap: called once the new tree is complete, just before it replaces the old one.
        prefixes: photo path → text put before its link name, e.g. ``0-keeper__`` so that file
            managers, which sort by name, list that photo first; the name still fits NAME_MAX.

    Raises:
        ImgclustError: ``link_root`` exists and imgclust cannot prove it made it; a folder name is
            not one plain path component; a file imgclust did not make cannot be kept (a file
            system without hard links, a mount inside the tree) or sits where a folder goes.
        OSError: the links cannot be made (the previous tree is left as it was).
    """
    for name in folders:
        if (not isinstance(name, str) or name in ("", ".", "..", MARKER) or "/" in name or "\0" in name
                or len(os.fsencode(name)) > NAME_MAX):
            raise ImgclustError(f"{link_root}: {name!r} cannot be a folder name (one path component, not . or ..)")
    previous = None
    if link_root.exists() or link_root.is_symlink():
        previous = read_manifest(link_root)
        if previous is None and _old_marker(link_root):
            raise ImgclustError(f"{link_root}: made by an imgclust from before ownership manifests, or a copy of such a "
                                f"folder (its {MARKER} is the old marker, which proves nothing); delete it if it holds "
                                "only imgclust's links, or move it away — imgclust only replaces what it can prove it made")
        if previous is None and link_root.is_symlink():
            raise ImgclustError(f"{link_root}: is a symbolic link (to {os.readlink(link_root)}); imgclust writes its "
                                "link folder only as a real folder — remove the link (its target is left alone) or "
                                "choose another paths.link_dir")
        if previous is None:
            raise ImgclustError(f"{link_root}: exists and was not made by imgclust (no {MARKER} manifest written "
                                "for this folder: a copy, a backup or a folder made by hand); move it away or choose "
                                "another paths.link_dir — imgclust only replaces what it can prove it made")
    parent = link_root.parent
    parent.mkdir(parents=True, exist_ok=True)
    writer = ManifestWriter(parent / f".{link_root.name}{_TEMP}{uuid.uuid4().hex}")
    building, swapped = writer.root, False
    try:
        kept = _carry(link_root, previous, writer) if previous else []
        made = _fill(writer, link_root, image_dir, folders, mode, prefixes or {})
        writer.close()
        if before_swap is not None:
            before_swap()
        _swap_in(building, link_root)
        swapped = True
    finally:
        with suppress(OSError):  # closed already, or a full disk: the manifest's last line is lost at worst
            writer.close()
        _clear(building, link_root, previous if swapped else None)  # after the swap it holds the old tree
    pattern = re.compile(rf"\.{re.escape(link_root.name)}{re.escape(_TEMP)}[0-9a-f]{{32}}(-old)?")
    for stale in os.listdir(parent):  # leftovers of crashed runs
        if pattern.fullmatch(stale):
            _clear(parent / stale, link_root)
    if kept:
        log.info(f"{link_root}: kept {len(kept)} entries imgclust did not make where they were (e.g. {kept[0]})")
    return LinkTree(made, kept)


def build_link_folders(link_root: Path, image_dir: Path, paths: list[str], labels: np.ndarray, k: int,
                       mode: str = "symlink", before_swap=None, names: dict[int, str] | None = None,
                       prefixes: Mapping[str, str] | None = None) -> dict[str, int]:
    """Rebuild ``link_root`` with one folder per cluster (``names``, else :func:`folder_name`)
    holding a link to each member photo, through :func:`write_link_tree` (atomic; only what
    imgclust made is replaced).

    Args:
        link_root: ``<link_dir>/<object_name>``.
        image_dir: folder the relative ``paths`` start from (absolute).
        paths: relative photo paths, one per label.
        labels: int (N,) cluster numbers in 0..k−1, or -1 (into the ``unclustered`` folder).
        mode: first choice of ``symlink``, ``hardlink``, ``copy``; later ones are fallbacks.
        before_swap: called once the new tree is complete, just before it replaces the old one
            (the workflow writes the label files there, so labels and links change together).
        names: label → folder name (:func:`folder_names`); None: :func:`folder_name`.
        prefixes: photo path → text put before its link name (:func:`write_link_tree`).

    Returns:
        Count of each kind of link made, e.g. ``{"symlink": 56}``.

    Raises:
        ImgclustError, OSError: as :func:`write_link_tree`.
    """
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0], minlength=k)

    def name(c: int) -> str:
        if c < 0:
            return UNCLUSTERED_NAME
        return names[c] if names else folder_name(c, int(sizes[c]), k)

    folders: dict[str, list[str]] = {name(c): [] for c in range(k) if sizes[c]}  # no empty folders
    if (labels == UNCLUSTERED).any():
        folders[UNCLUSTERED_NAME] = []
    for rel, c in zip(paths, labels):
        folders[name(int(c))].append(rel)
    return write_link_tree(link_root, image_dir, folders, mode, before_swap, prefixes).made


def _old_marker(folder: Path) -> bool:
    """Whether ``folder`` carries the plain marker file of imgclust before the manifest."""
    try:
        with open_regular(folder / MARKER) as f:
            return f.read(64).startswith("made by imgclust:")
    except OSError:
        return False


def _clear(tree: Path, live: Path, owned=None) -> None:
    left = remove_owned(tree, live=live, owned=owned)
    if left:
        log.warning(f"{tree}: kept, as it holds {len(left)} entries imgclust did not make (e.g. {left[0]})")


def _record(writer: ManifestWriter, rel: str, kind: str, target: str | None = None) -> None:
    """Record the entry just made; if the manifest cannot take it (a full disk), the entry goes
    again, so that nothing unrecorded is left in the tree."""
    try:
        writer.record(rel, kind, target)
    except BaseException:
        path = writer.root / rel
        with suppress(OSError):
            os.rmdir(path) if path.is_dir() and not path.is_symlink() else os.unlink(path)
        raise


def _ensure_dir(writer: ManifestWriter, rel: str, link_root: Path, kind: str = "dir") -> None:
    """Make the folder ``rel`` of the tree being built, and its missing parents (recorded as ``kind``
    and ``dir``); a file kept in the way is an error naming it where it is, under ``link_root``."""
    parts = rel.split("/")
    for i in range(len(parts)):
        sub = "/".join(parts[:i + 1])
        path = writer.root / sub
        if path.is_dir() and not path.is_symlink():
            continue
        writer.intend([(sub, "dir", None)])
        try:
            path.mkdir()
        except FileExistsError:
            raise ImgclustError(f"{link_root / sub}: a file imgclust did not make is where the "
                                f"folder {sub} goes; move it away and run again") from None
        _record(writer, sub, kind if i == len(parts) - 1 else "dir")


def _carry(link_root: Path, previous, writer: ManifestWriter) -> list[str]:
    """Give each entry of ``link_root`` that ``previous`` does not prove imgclust's a second name at
    the same place in the tree being built (folders are made anew); returns their relative paths."""
    kept = []
    try:
        entries = foreign(link_root, previous)
    except OSError as exc:
        raise ImgclustError(f"{exc.filename}: cannot be read ({exc.strerror}), so imgclust cannot tell what in it is "
                            f"yours to keep; make it readable or move it out of {link_root}") from None
    for rel, st in entries:
        if stat.S_ISDIR(st.st_mode):
            _ensure_dir(writer, rel, link_root, "kept")
        else:
            if "/" in rel:
                _ensure_dir(writer, rel.rsplit("/", 1)[0], link_root)
            writer.intend([(rel, "kept", None)])
            try:
                os.link(link_root / rel, writer.root / rel, follow_symlinks=False)
            except OSError as exc:
                raise ImgclustError(f"{link_root / rel}: imgclust did not make this file and cannot keep it in the new "
                                    f"link folder ({exc.strerror}); move it out of {link_root} and run again") from None
            _record(writer, rel, "kept")
        kept.append(rel)
    return kept


def _fill(writer: ManifestWriter, link_root: Path, image_dir: Path, folders: Mapping[str, Sequence[str]],
          mode: str, prefixes: Mapping[str, str]) -> dict[str, int]:
    made: dict[str, int] = {}
    base, photos = os.fspath(writer.root), os.fspath(image_dir)  # strings, not pathlib: once per photo
    for name, members in folders.items():
        existed = os.path.isdir(f"{base}/{name}")  # made to keep a user's files: their names are taken
        _ensure_dir(writer, name, link_root)
        links, taken = [], set()
        for rel in members:
            prefix = prefixes.get(rel, "")  # kept whole in front, so the link still sorts where it is meant to
            room = NAME_MAX - len(os.fsencode(prefix))
            flat = _flat_name(rel, room)
            link, n = prefix + flat, 1
            if existed and link not in taken and _already_links(f"{base}/{name}/{link}", f"{photos}/{rel}"):
                taken.add(link)  # kept unproven (e.g. its manifest line lost), but already this very link: no twin
                continue
            # "a__b.jpg" and "a/b.jpg" flatten alike; a file kept from the previous tree keeps its name
            while link in taken or (existed and os.path.lexists(f"{base}/{name}/{link}")):
                stem, suffix = os.path.splitext(flat)
                link = prefix + _flat_name(f"{stem}~{n}{suffix}", room)
                n += 1
            taken.add(link)
            links.append((f"{name}/{link}", f"{photos}/{rel}"))
        writer.intend([(entry, "link", source) for entry, source in links])
        for entry, source in links:
            kind = _place(source, f"{base}/{entry}", mode)
            _record(writer, entry, kind, source)
            made[kind] = made.get(kind, 0) + 1
    return made


def _already_links(path: str, source: str) -> bool:
    """Whether ``path`` (a file kept in the tree as the user's) is already a link to ``source``: a
    symbolic link with exactly that target, or a hard link of that very file (same inode)."""
    try:
        if os.path.islink(path):
            return os.readlink(path) == source
        here, there = os.stat(path), os.stat(source)
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    except OSError:
        return False


def _swap_in(building: Path, link_root: Path) -> None:
    """Put ``building`` at ``link_root``; the previous tree, if any, ends up at ``building``."""
    if not (link_root.exists() or link_root.is_symlink()):
        os.rename(building, link_root)
    elif not exchange(building, link_root):
        # No atomic exchange here: two renames, with a window where only the -old twin exists.
        old = building.with_name(building.name + "-old")
        os.rename(link_root, old)
        os.rename(building, link_root)
        os.rename(old, building)
