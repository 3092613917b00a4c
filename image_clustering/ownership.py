"""Proof of what imgclust wrote: a manifest of the exact entries of a folder tree it made, checked
against the disk before anything is removed.

A marker file proves nothing: a ``cp -rL`` copy, a backup or a hand-made folder can carry it. A
manifest records, for the tree's root and for every entry imgclust made in it, the relative path,
the kind (``dir``, ``symlink``, ``hardlink``, ``copy``; ``kept`` for a second name given to a file
imgclust did not make), the device and inode number, and for a copy its size and modification time,
for a symbolic link its target. An entry counts as imgclust's only while the disk still shows the
same inode there (and, for a copy, unchanged size and time; for a symbolic link, the same target).
Any copy of the tree has new inodes, so it proves nothing, whatever files it carries; a file a user
adds, or a copy a user edits, is not in the manifest or no longer matches it, so it is never
removed.

The manifest is a JSON-lines file inside the tree (:data:`MANIFEST`): a header naming the root's
device and inode, then for each entry a line announcing it before it is made and one recording it
once made, so what a crash leaves of a half-built tree can still be cleared. Being inside the tree,
it moves with it through the atomic exchange that puts a new tree in place of the old one.

Used by :mod:`image_clustering.outputs` for the link folders; any step that makes a tree of files
for the user (organise into folders, say) can record and remove through :class:`ManifestWriter` and
:func:`remove_owned` the same way.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

MANIFEST = ".imgclust-links"  # name of the manifest file at the root of a tree imgclust made
_HEADER = "imgclust manifest of the entries it made in this folder; do not edit"


def _identity(st: os.stat_result) -> dict:
    return {"dev": st.st_dev, "ino": st.st_ino}


class ManifestWriter:
    """Create the folder ``root`` (which must not exist) and record, one by one, what is made in it.

    Args:
        root: the folder to create.
        manifest: the manifest's file name inside ``root``.

    Raises:
        OSError: ``root`` exists, or cannot be created or written.
    """

    def __init__(self, root: Path, manifest: str = MANIFEST):
        self.root = Path(root)
        self.root.mkdir()
        try:
            st = os.lstat(self.root)
            self._file = open(self.root / manifest, "x", encoding="ascii")
            self._line({"manifest": _HEADER, "version": 1, **_identity(st)}, flush=True)
        except BaseException:  # a full disk, say: nothing unprovable is left behind
            if hasattr(self, "_file"):
                with suppress(OSError):  # its buffered header cannot be written either
                    self._file.close()
            (self.root / manifest).unlink(missing_ok=True)
            self.root.rmdir()
            raise

    def _line(self, doc: dict, flush: bool = False) -> None:
        # ensure_ascii: names that are not UTF-8 (lone surrogates) round-trip as \udcXX escapes
        self._write(json.dumps(doc) + "\n", flush)

    def _write(self, text: str = "", flush: bool = True) -> None:
        try:
            self._file.write(text)
            if flush:
                self._file.flush()
        except OSError as exc:  # a failed write() (ENOSPC) names no file: name the manifest
            raise OSError(exc.errno, exc.strerror, self._file.name) from exc

    def intend(self, items) -> None:
        """Record, before making them, the entries about to be made: ``(rel, kind, source)`` with
        kind ``dir``, ``link`` (any of symlink, hardlink, copy of the photo ``source``) or ``kept``.
        Written through at once, so an entry a crash leaves unrecorded can still be cleared
        (:meth:`Manifest.half_made`)."""
        for rel, kind, source in items:
            self._line({"path": rel, "intent": kind, "source": source})
        self._write()

    def record(self, rel: str, kind: str, target: str | None = None) -> None:
        """Record the entry just made at ``root / rel`` (POSIX separators) as imgclust's.

        Args:
            kind: ``dir``, ``symlink``, ``hardlink``, ``copy`` or ``kept`` (a second name, made with
                a hard link, for a file imgclust did not make; never removable on its own).
            target: a symbolic link's target as written; for a copy, the photo it copies.
        """
        st = os.lstat(f"{self.root}/{rel}")  # strings, not pathlib: this runs once per photo
        doc = {"path": rel, "kind": kind, **_identity(st)}
        if kind == "copy":
            # the change time too: a user can set a file's size and mtime back (touch -r, rsync -t),
            # not its ctime; and the photo copied, which must outlive the copy
            doc.update(size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, source=target)
        if kind == "symlink":
            doc["target"] = target
        self._line(doc)

    def close(self) -> None:
        """Write the manifest through to the disk and close it (idempotent)."""
        if not self._file.closed:
            try:
                self._write()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()


@dataclass(frozen=True)
class Manifest:
    """A tree's manifest whose header matches the root it was read from (see :func:`read_manifest`):
    ``entries`` maps each recorded relative path to ``(kind, dev, ino, size, mtime_ns, target,
    ctime_ns)`` (size, times and photo of a copy, target of a symbolic link, else None), ``intents`` each path announced
    but never recorded to ``(kind, source)``."""

    root: Path
    name: str
    entries: dict[str, tuple]
    intents: dict[str, tuple]
    identity: tuple[int, int]  # device and inode of the folder it proves

    def owns(self, rel: str, st: os.stat_result | None = None) -> bool:
        """Whether the entry at ``root / rel`` is provably one imgclust made: recorded, and the disk
        shows the same inode (a copy with its size, modification and change times, while the photo
        it copies still exists; a symbolic link with its target; a hard link to a photo only while
        the photo has another name), so no photo is ever lost."""
        doc = self.entries.get(rel)
        if doc is None or doc[0] == "kept":
            return False
        kind, dev, ino, size, mtime_ns, target, ctime_ns = doc
        try:
            st = st or os.lstat(f"{self.root}/{rel}")
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (dev, ino):
            return False
        if kind == "dir":
            return stat.S_ISDIR(st.st_mode)
        if kind == "symlink":
            try:
                return stat.S_ISLNK(st.st_mode) and os.readlink(f"{self.root}/{rel}") == target
            except OSError:
                return False
        if kind == "hardlink":
            return stat.S_ISREG(st.st_mode) and st.st_nlink >= 2
        if kind == "copy":  # unchanged, and not the last copy of a photo deleted since
            return (stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (size, mtime_ns, ctime_ns)
                    and isinstance(target, str) and os.path.isfile(target))
        return False

    def half_made(self, rel: str, st: os.stat_result) -> bool:
        """Whether the entry at ``rel`` is one a crash stopped imgclust from recording: announced
        (:meth:`ManifestWriter.intend`) but never recorded, and of a kind whose removal loses
        nothing — an empty folder, a symbolic link to the announced photo, a second name of a file
        that has another, a copy no larger than the photo it copies."""
        doc = self.intents.get(rel)
        if doc is None or rel in self.entries:
            return False
        intent, source = doc
        if intent == "dir":
            return stat.S_ISDIR(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                return intent == "link" and os.readlink(f"{self.root}/{rel}") == source
            except OSError:
                return False
        if not stat.S_ISREG(st.st_mode):
            return False
        if st.st_nlink >= 2:
            return True
        try:
            return intent == "link" and isinstance(source, str) and st.st_size <= os.stat(source).st_size
        except OSError:
            return False


def read_manifest(root: Path, manifest: str = MANIFEST) -> Manifest | None:
    """The manifest of ``root`` if it proves ``root`` is the folder it was written for (same device
    and inode: a copy of the folder, manifest included, proves nothing), else None.

    Lines that cannot be read (a crash mid-line, an edit) are skipped: their entries stay unproven.
    Read line by line, each line bounded, so an edited file cannot exhaust memory.
    """
    root = Path(root)
    try:
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode):
            return None
        with open_regular(root / manifest) as f:
            header = _parse(f.readline(_LINE))
            if header is None or header.get("manifest") != _HEADER or \
                    (header.get("dev"), header.get("ino")) != (st.st_dev, st.st_ino):
                return None
            entries, intents = {}, {}
            for line in iter(lambda: f.readline(_LINE), ""):
                doc = _parse(line)
                if doc is None or not isinstance(doc.get("path"), str):
                    continue
                rel = doc["path"]
                if doc.get("intent") in ("dir", "link", "kept"):
                    intents[rel] = (doc["intent"], doc.get("source"))
                elif isinstance(doc.get("dev"), int) and isinstance(doc.get("ino"), int) \
                        and doc.get("kind") in ("dir", "symlink", "hardlink", "copy", "kept"):
                    intents.pop(rel, None)  # recorded: the announcement is no longer needed
                    entries[rel] = (doc["kind"], doc["dev"], doc["ino"], doc.get("size"), doc.get("mtime_ns"),
                                    doc.get("target", doc.get("source")), doc.get("ctime_ns"))
    except OSError:
        return None
    return Manifest(root, manifest, entries, intents, (st.st_dev, st.st_ino))


def open_regular(path: Path):
    """Open ``path`` as ASCII text only if it is a regular file itself: never through a symbolic
    link, and never blocking on a FIFO put in its place.

    Raises:
        OSError: missing, a link, or not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return open(fd, encoding="ascii", errors="replace")


_LINE = 1 << 16  # longest manifest line read whole (a path is at most 4096 bytes)


def _parse(line: str) -> dict | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def walk(root: Path, manifest: str = MANIFEST, skip_unreadable: bool = False):
    """Every entry under ``root`` but the top-level manifest, parents before children, as
    ``(relative POSIX path, lstat result)``; symbolic links are not followed.

    Raises:
        OSError: a folder cannot be read (unless ``skip_unreadable``: its content is then left out).
    """
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(f"{root}/{rel_dir}" if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            if skip_unreadable:
                continue
            raise
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if rel == manifest:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # gone since the folder was listed
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)


def foreign(root: Path, owned: Manifest) -> list[tuple[str, os.stat_result]]:
    """The entries under ``root`` that ``owned`` does not prove imgclust made (files a user added or
    edited, folders a user made), parents before children.

    Raises:
        OSError: a folder under ``root`` cannot be read.
    """
    return [(rel, st) for rel, st in walk(root, owned.name) if not owned.owns(rel, st)]


def remove_owned(root: Path, live: Path | None = None, manifest: str = MANIFEST,
                 owned: Manifest | None = None) -> list[str]:
    """Remove from ``root`` what imgclust provably made there, and nothing else; the folder goes
    too once nothing else is left in it.

    An entry goes when ``root``'s manifest proves it imgclust's (:meth:`Manifest.owns`; or
    :meth:`Manifest.half_made`, what a crash left unrecorded), or — when
    ``live`` is given — when ``live`` holds the very same inode at the same relative path (the
    user's file lives on there: it was given a second name in the new tree before this old one is
    cleared). Folders go only when empty (``rmdir``, never a recursive delete). Without a manifest
    that matches ``root``, nothing is touched. ``owned``: the manifest already read for this folder
    (under another name, before a rename), to save reading it again; it must prove ``root`` too.

    Returns:
        The relative paths left in place (empty when ``root`` is gone).
    """
    root = Path(root)
    if owned is not None:
        try:
            st = os.lstat(root)
            owned = dataclasses.replace(owned, root=root) if (st.st_dev, st.st_ino) == owned.identity else None
        except OSError:
            owned = None
    if owned is None:
        owned = read_manifest(root, manifest)
    if owned is None:
        return ["."] if root.exists() or root.is_symlink() else []
    entries = list(walk(root, manifest, skip_unreadable=True))  # what cannot be read is not proven: kept
    left = []
    for rel, st in reversed(entries):  # children before their folder
        path = f"{root}/{rel}"
        ours = owned.owns(rel, st) or owned.half_made(rel, st) or _twin(live, rel, st)
        try:
            if stat.S_ISDIR(st.st_mode):
                if ours:
                    os.rmdir(path)  # fails while something not ours is inside: kept
                else:
                    left.append(rel)
            elif ours:
                os.unlink(path)
            else:
                left.append(rel)
        except OSError:
            left.append(rel)
    if not left:
        (root / manifest).unlink(missing_ok=True)
        try:
            os.rmdir(root)
        except OSError:
            return ["."]
    return sorted(left)


def _twin(live: Path | None, rel: str, st: os.stat_result) -> bool:
    """Whether ``live / rel`` is the same inode as the entry ``st`` (a file's other name)."""
    if live is None:
        return False
    try:
        other = os.lstat(f"{live}/{rel}")
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return stat.S_ISDIR(other.st_mode)  # the folder exists in the live tree: an empty one may go
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) and other.st_nlink >= 2
