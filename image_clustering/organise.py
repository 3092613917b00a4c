"""Floor 5: lay the collection out as one named folder per cluster under a folder the user
chooses, reversibly.

Three steps, as git's plumbing does them: :func:`plan` compares what should be there (each
cluster's photos) with what this tool created there before (the journal, kept in the
collection's database, :meth:`~image_clustering.collection.Collection.journal`) and lists the
operations; :func:`apply` carries them out, noting each file in the journal right after it is
made or removed; :func:`undo` removes what the journal lists. Safety rules:

- the photos are only read; nothing is made or removed under ``image_dir`` (a target folder
  inside it, or holding it, is refused);
- a path that exists and is not in the journal is never touched (reported as a conflict);
- a journal entry is removed only while it still is what was made: the same kind, the same
  inode, size and modification time (a copy the user edited, or a file put in its place, stays);
- folders are removed only when this tool made them and they are empty.
Each file is noted as pending before it is made and completed after: a crash in between leaves
a pending note, and the file is counted as made here only if it is exactly the photo's link or
copy (same link target; same inode for a hard link; same bytes for a copy).
"""
from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImgclustError

MODES = ("copy", "hardlink", "symlink")


@dataclass
class Step:
    """One operation: ``mkdir``, ``place`` (a photo as copy, hard link or symlink), ``remove``
    (a file made before and no longer wanted), ``rmdir``, ``conflict`` (a path that exists and
    was not made here: left alone), or ``skip`` (a photo left out on request; nothing is done).
    ``path`` is relative to the target folder (for ``skip``, to ``image_dir``)."""

    action: str
    path: str
    source: str | None = None
    note: str = ""

    def line(self) -> str:
        src = f" <- {self.source}" if self.source else ""
        return f"{self.action}\t{self.path}{src}{'  (' + self.note + ')' if self.note else ''}"


@dataclass
class Plan:
    """What organise would do to ``root`` (absolute) in ``mode``."""

    root: str
    mode: str
    steps: list[Step] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for s in self.steps if s.action == action)

    def doc(self) -> dict:
        return {"root": self.root, "mode": self.mode, "steps": [vars(s) for s in self.steps]}


def check_root(root: Path, image_dir: Path, outputs: dict[str, Path] | None = None) -> Path:
    """``root`` made absolute (symbolic links resolved), refused when it lies inside ``image_dir``
    or holds it, or lies inside one of imgclust's own output folders (``outputs``: a description →
    folder; a link folder that ``cluster`` rebuilds would take organised copies for the user's).

    Raises:
        ImgclustError: the folder overlaps ``image_dir``, lies in an output folder, or is a file.
    """
    root = Path(os.path.abspath(root))
    real = Path(os.path.realpath(root))

    def inside(folder: Path) -> bool:
        other = Path(os.path.realpath(folder))
        return real == other or other in real.parents

    photos = Path(os.path.realpath(image_dir))
    if real == photos or photos in real.parents or real in photos.parents:
        raise ImgclustError(f"--to {root}: overlaps paths.image_dir {image_dir}; organise into a folder outside it "
                            "(the photos are never touched)")
    for what, folder in (outputs or {}).items():
        if inside(folder):
            raise ImgclustError(f"--to {root}: inside imgclust's {what} {folder}; organise into a folder of its own")
    if root.exists() and not root.is_dir():
        raise ImgclustError(f"--to {root}: exists and is not a folder")
    return root


def _flat(rel: str) -> str:
    from .outputs import _flat_name

    return _flat_name(rel)


def wanted(folders: dict[str, list[str]]) -> dict[str, str]:
    """Target file (``<folder>/<flattened photo path>``, relative to the target folder) → photo
    path relative to ``image_dir``; equal flattened names in one folder get ``~1``, ``~2``."""
    out: dict[str, str] = {}
    for folder, photos in folders.items():
        for rel in sorted(photos):
            flat = _flat(rel)
            target, n = f"{folder}/{flat}", 1
            while target in out:
                stem, suffix = os.path.splitext(flat)
                target, n = f"{folder}/{_flat(f'{stem}~{n}{suffix}')}", n + 1
            out[target] = rel
    return out


def matches(path: Path, entry: dict) -> bool:
    """Whether ``path`` is still exactly what the journal ``entry`` says was made there."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind = entry["kind"]
    if entry["inode"] is None:  # pending: noted before it was made, the process died before completing it
        return _is_made_from(path, kind, entry["source"], st)
    if kind == "dir":
        return os.path.isdir(path) and not os.path.islink(path) and st.st_ino == entry["inode"]
    if kind == "symlink":
        return os.path.islink(path) and os.readlink(path) == entry["source"] and st.st_ino == entry["inode"]
    same = (not os.path.islink(path) and os.path.isfile(path) and st.st_ino == entry["inode"]
            and st.st_size == entry["size"] and st.st_mtime_ns == entry["mtime_ns"])
    if kind == "copy":  # a user can set size and mtime back, not the change time
        same = same and entry.get("ctime_ns") in (None, st.st_ctime_ns)
    else:  # a hard link: removable only while the photo has another name
        same = same and st.st_nlink >= 2
    # never the last copy of a photo deleted (or moved) since: it is the user's only one now
    return same and isinstance(entry.get("source"), str) and os.path.isfile(entry["source"])


def _is_made_from(path: Path, kind: str, source: str | None, st: os.stat_result) -> bool:
    import filecmp

    if kind == "symlink":
        return os.path.islink(path) and os.readlink(path) == source
    if kind == "dir":
        return os.path.isdir(path) and not os.path.islink(path)
    if os.path.islink(path) or not os.path.isfile(path) or source is None:
        return False
    if kind == "hardlink":
        return os.stat(source).st_ino == st.st_ino
    return os.path.getsize(source) == st.st_size and filecmp.cmp(source, path, shallow=False)


def plan(folders: dict[str, list[str]], image_dir: Path, root: Path, mode: str, journal: dict[str, dict]) -> Plan:
    """The operations that bring ``root`` to one folder per cluster, given what the journal says
    was made there before: only the difference (photos moved between clusters by edits, new
    photos, renamed clusters).

    Args:
        folders: folder name → photo paths relative to ``image_dir``.
        image_dir: the photos' folder (absolute).
        root: the target folder (from :func:`check_root`).
        mode: ``copy``, ``hardlink`` or ``symlink``.
        journal: :meth:`~image_clustering.collection.Collection.journal` of ``root``.
    """
    if mode not in MODES:
        raise ImgclustError(f"--mode {mode}: one of {', '.join(MODES)}")
    result = Plan(str(root), mode)
    want = wanted(folders)
    sources = {t: str(Path(image_dir) / rel) for t, rel in want.items()}
    keep: set[str] = set()
    changed: set[str] = set()
    for path, entry in sorted(journal.items()):
        if entry["kind"] == "dir":
            continue
        if not os.path.lexists(root / path):  # deleted since, or never made (a pending note): made again if wanted
            result.steps.append(Step("forget", path, note="no longer there"))
            continue
        if path in want and entry["kind"] == mode and entry["source"] == sources[path] and matches(root / path, entry):
            keep.add(path)
        elif matches(root / path, entry):
            result.steps.append(Step("remove", path, note="no longer wanted here"))
        else:
            changed.add(path)
            result.steps.append(Step("forget", path, note="changed since it was made: left alone"))
    dirs_wanted = {""} | set(folders)
    for path, entry in sorted(journal.items(), key=lambda kv: -kv[0].count("/")):
        if entry["kind"] == "dir" and path not in dirs_wanted:
            result.steps.append(Step("rmdir", path, note="if empty"))
    for folder in sorted(dirs_wanted, key=lambda d: (d.count("/"), d)):
        path = root / folder
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            result.steps.append(Step("conflict", folder, note="not a folder made here"))
        elif not path.is_dir():
            result.steps.append(Step("mkdir", folder))
    for target in sorted(want):
        if target in keep:
            continue
        path = root / target
        if target in changed or ((path.exists() or path.is_symlink()) and target not in journal):
            result.steps.append(Step("conflict", target, sources[target], "exists and was not made by imgclust"))
        else:
            result.steps.append(Step("place", target, sources[target]))
    return result


def _entry(path: Path, kind: str, source: str | None) -> dict:
    st = os.lstat(path)
    return {"kind": kind, "source": source, "inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _make(source: str, target: Path, mode: str) -> None:
    if mode == "symlink":
        os.symlink(source, target)
    elif mode == "hardlink":
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise ImgclustError(f"--to {target.parent.parent}: on another file system than the photos; hard "
                                    "links cannot cross it — use --mode copy or symlink") from None
            raise
    else:
        shutil.copy2(source, target)


def apply(p: Plan, state) -> dict[str, int]:
    """Carry out plan ``p`` (from :func:`plan`), noting every file and folder made or removed in
    the journal of ``state`` (a :class:`~image_clustering.collection.Collection`) right after
    the change.

    Returns:
        Count per action done, plus ``conflict`` and ``left`` (journal entries changed by the user).
    """
    root, done = Path(p.root), {}
    conflicted = {s.path for s in p.steps if s.action == "conflict"}

    def count(what):
        done[what] = done.get(what, 0) + 1

    for step in p.steps:
        path = root / step.path if step.path else root
        if step.action == "remove":
            path.unlink()
            state.record(p.root, step.path, None)
        elif step.action == "forget":
            state.record(p.root, step.path, None)
            if os.path.lexists(path):
                count("left")
            continue
        elif step.action == "rmdir":
            try:
                path.rmdir()
            except OSError:  # not empty (the user put something there) or gone: left as it is
                pass
            state.record(p.root, step.path, None)
        elif step.action == "mkdir":
            state.record(p.root, step.path, {"kind": "dir", "source": None})  # pending
            path.mkdir(parents=not step.path)
            state.record(p.root, step.path, _entry(path, "dir", None))
        elif step.action == "place":
            if str(Path(step.path).parent) in conflicted:
                count("conflict")
                continue
            if path.is_symlink() or path.exists():  # a stale entry of ours in the way
                path.unlink()
                state.record(p.root, step.path, None)
            state.record(p.root, step.path, {"kind": p.mode, "source": step.source})  # pending
            _make(step.source, path, p.mode)
            state.record(p.root, step.path, _entry(path, p.mode, step.source))
        count(step.action)
    return done


def undo(root: str, state) -> dict[str, int]:
    """Remove everything the journal of ``root`` lists that is still exactly what was made
    (files first, then folders deepest first, a folder only when empty); entries changed since
    are left in place and dropped from the journal.

    Returns:
        ``{"removed": n, "left": m}`` (folders included).
    """
    journal = state.journal(root)
    done = {"removed": 0, "left": 0}
    files = [p for p, e in journal.items() if e["kind"] != "dir"]
    dirs = sorted((p for p, e in journal.items() if e["kind"] == "dir"), key=lambda d: (-d.count("/"), -len(d)))
    for rel in [*sorted(files), *dirs]:
        entry, path = journal[rel], Path(root) / rel if rel else Path(root)
        if not os.path.lexists(path):
            pass
        elif matches(path, entry):
            try:
                path.rmdir() if entry["kind"] == "dir" else path.unlink()
                done["removed"] += 1
            except OSError:  # a folder the user put files in
                done["left"] += 1
        else:
            done["left"] += 1
        state.record(root, rel, None)
    return done
