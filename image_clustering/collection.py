"""Floor 4: the living collection — clusters that keep their identity as photos come and go, and
the user's corrections, kept in one SQLite database per collection (:attr:`Layout.collection_db`).

Why SQLite (the standard library's ``sqlite3``): every change here touches several things at
once (an edit, the memberships it changes, the names), and SQLite commits them together or not
at all, survives ``kill -9`` and power loss at any moment (rollback journal, ``synchronous=FULL``),
refuses a second writer, keeps one self-contained file a user can back up, and can be read by
any SQLite tool. A folder of JSON files would need all of that written by hand.

What is stored:

- ``members``: per photo (path relative to ``image_dir``) its ``base`` cluster — the partition
  of the last ``cluster`` run, matched to the earlier ids — and its ``cluster`` after the edits.
- ``edits``: an append-only log (``rename``, ``move``, ``merge``, ``split``, ``exclude`` and
  ``undo``, which names the edit it cancels). The clusters the user sees are always
  ``apply_edits(base, active edits)``, so every later run, incremental or full, respects every
  edit until it is undone, and undoing restores exactly the state before the edit.
- ``clusters``: every id ever given (ids are never reused), its current name and the name its
  tag words gave it once (kept, so a folder name does not change run to run).
- ``runs`` and ``organised`` (the organise journal, :mod:`image_clustering.organise`).

Cluster ids: ``-1`` unclustered, ``-2`` excluded by the user (:data:`EXCLUDED`); real clusters
are ``0, 1, …`` and a number, once given, always means the same cluster.
"""
from __future__ import annotations

import datetime
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from .errors import ImgclustError

SCHEMA_VERSION = 1
UNCLUSTERED = -1
EXCLUDED = -2
OPS = ("rename", "move", "merge", "split", "exclude")

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clusters (id INTEGER PRIMARY KEY, name TEXT, auto_name TEXT);
CREATE TABLE members (path BLOB PRIMARY KEY, base INTEGER NOT NULL, cluster INTEGER NOT NULL);
CREATE TABLE edits (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, mode TEXT NOT NULL, reason TEXT,
                   photos INTEGER, added INTEGER, removed INTEGER, kept INTEGER, new_clusters INTEGER);
CREATE TABLE organised (root BLOB NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL, source BLOB,
                        inode INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, PRIMARY KEY (root, path));
"""


def _blob(path: str) -> bytes:
    # File names that are not UTF-8 reach Python as lone surrogates; stored as their original bytes.
    return path.encode("utf-8", "surrogateescape")


def _text(blob: bytes) -> str:
    return bytes(blob).decode("utf-8", "surrogateescape")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Reconciled:
    """The clusters of the collection after a ``cluster`` run or an edit.

    Attributes:
        paths: photo paths relative to ``image_dir`` (N).
        ids: int64 (N,) stable cluster id per photo; -1 unclustered, -2 excluded.
        names: cluster id → the user's name (only named clusters).
        auto_names: cluster id → the name from its tag words, where one was given.
        mode: ``first``, ``incremental``, ``recluster`` or ``edit``.
        reason: why a full clustering ran (``None`` for incremental and edits).
        notes: edits that name a photo no longer in the collection (kept, reported).
        added, removed, kept: photos new since the previous run, gone since, and old photos whose
            cluster id did not change.
        new_clusters: ids first given in this run.
    """

    paths: list[str]
    ids: np.ndarray
    names: dict[int, str]
    auto_names: dict[int, str] = field(default_factory=dict)
    mode: str = "edit"
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    kept: int = 0
    new_clusters: list[int] = field(default_factory=list)

    def cluster_ids(self) -> list[int]:
        """The real clusters (id ≥ 0), in increasing order."""
        return sorted(int(c) for c in np.unique(self.ids) if c >= 0)


@dataclass
class Edit:
    """One row of the edit log: ``seq`` (1, 2, …), ISO time, ``op`` and its arguments; ``undone``
    when a later ``undo`` cancelled it."""

    seq: int
    at: str
    op: str
    args: dict
    undone: bool = False

    def line(self) -> str:
        a = self.args
        what = {"rename": lambda: f"rename cluster {a['cluster']} to {a['name']!r}",
                "move": lambda: f"move {a['photo']} to cluster {a['cluster']}",
                "merge": lambda: f"merge cluster {a['other']} into {a['into']}",
                "split": lambda: f"split cluster {a['cluster']} into {', '.join(map(str, a['ids']))}",
                "exclude": lambda: f"exclude {a['photo']}",
                "undo": lambda: f"undo edit {a['seq']}"}[self.op]()
        return f"{self.seq}\t{self.at}\t{what}{'  (undone)' if self.undone else ''}"


# ---------------------------------------------------------------- pure functions (arrays in, arrays out)

def match_ids(previous: dict[str, int], paths: list[str], labels: np.ndarray, next_id: int) -> tuple[np.ndarray, int]:
    """Give a fresh partition the previous partition's ids by overlap: the contingency table of
    (new cluster, previous id) over the photos in both, and the one-to-one assignment of largest
    total overlap (Hungarian method, Kuhn 1955; SciPy's ``linear_sum_assignment``). New clusters
    with no overlapping match get fresh ids from ``next_id`` on.

    Args:
        previous: photo path → previous cluster id (negative ids are ignored).
        paths: the photos of the new partition (N).
        labels: int (N,) new cluster per photo (any integers; negative: unclustered).
        next_id: the first id never given before.

    Returns:
        (int64 (N,) ids, -1 where ``labels`` is negative; the next unused id).
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels)
    ids = np.full(len(labels), UNCLUSTERED, dtype=np.int64)
    new = sorted(int(c) for c in np.unique(labels) if c >= 0)
    old = sorted({c for c in previous.values() if c >= 0})
    mapping: dict[int, int] = {}
    if new and old:
        row, col = {c: i for i, c in enumerate(new)}, {c: j for j, c in enumerate(old)}
        table = np.zeros((len(new), len(old)), dtype=np.int64)
        for p, c in zip(paths, labels):
            before = previous.get(p, UNCLUSTERED)
            if c >= 0 and before >= 0:
                table[row[int(c)], col[before]] += 1
        for i, j in zip(*linear_sum_assignment(table, maximize=True)):
            if table[i, j] > 0:
                mapping[new[i]] = old[j]
    for c in new:
        if c not in mapping:
            mapping[c] = next_id
            next_id += 1
    for c, target in mapping.items():
        ids[labels == c] = target
    return ids, next_id


def min_new_cluster(sizes: list[int]) -> int:
    """Fewest new photos that form a new cluster of their own in an incremental run: half the
    median size of the existing clusters, but 3 to 10 (a handful of similar new photos is a
    new subject; one or two are kept unclustered until more arrive)."""
    median = int(np.median(sizes)) if sizes else 0
    return max(3, min(10, median // 2))


def place_new(affinity: sparse.spmatrix, base: np.ndarray, new: np.ndarray, min_new: int, next_id: int,
              sweeps: int = 30) -> tuple[np.ndarray, int, list[int]]:
    """Place new photos into an existing partition by their neighbours in the feature graph.

    1. New photos whose edge weight to other new photos exceeds their weight to the clustered
       ones have no strong home; the connected groups of mutual neighbours among them
       (:func:`_communities`) become new clusters where a group holds at least ``min_new``
       photos and more weight inside it than towards all clustered photos.
    2. Every other new photo goes to the cluster holding most of its neighbours' edge weight,
       propagated with the clustered photos held fixed (label propagation with clamped labels,
       Zhu & Ghahramani 2002), so a chain of new photos reaches its cluster through each other.
    3. A new photo with no path to any cluster stays unclustered (-1) and is placed again the
       next run.

    Args:
        affinity: float (N, N) symmetric graph (:func:`~image_clustering.clustering.knn_affinity`).
        base: int (N,) cluster id of every photo; values of new photos are ignored.
        new: bool (N,) the photos to place.
        min_new: fewest photos of a new cluster (:func:`min_new_cluster`).
        next_id: first unused id.

    Returns:
        (int64 (N,) ids — old photos unchanged —, the next unused id, the new clusters' ids).
    """
    a = sparse.csr_matrix(affinity)
    ids = np.asarray(base, dtype=np.int64).copy()
    new = np.asarray(new, dtype=bool)
    ids[new] = UNCLUSTERED
    old = ~new & (ids >= 0)
    created: list[int] = []
    to_old = np.asarray(a[:, old].sum(axis=1)).ravel()
    to_new = np.asarray(a[:, new].sum(axis=1)).ravel()
    homeless = np.flatnonzero(new & (to_new > to_old))
    if len(homeless) >= min_new:
        for group in _communities(a[homeless][:, homeless]):
            members = homeless[group]
            inside = a[members][:, members].sum()
            if len(members) >= min_new and inside > to_old[members].sum():
                ids[members] = next_id
                created.append(next_id)
                next_id += 1
    todo = np.flatnonzero(new & (ids == UNCLUSTERED))
    if len(todo) and (ids >= 0).any():
        values, index = np.unique(ids[ids >= 0], return_inverse=True)
        known = np.flatnonzero(ids >= 0)
        for _ in range(sweeps):
            onehot = sparse.csr_matrix((np.ones(len(known)), (known, index)), shape=(len(ids), len(values)))
            weight = (a[todo] @ onehot).toarray()
            has = weight.max(axis=1) > 0
            choice = np.where(has, values[weight.argmax(axis=1)], UNCLUSTERED)
            if (choice == ids[todo]).all():
                break
            ids[todo] = choice
            known = np.flatnonzero(ids >= 0)
            _, index = np.unique(ids[known], return_inverse=True)
            values = np.unique(ids[known])
    return ids, next_id, created


def _communities(graph: sparse.spmatrix) -> list[np.ndarray]:
    """Connected components of the mutual nearest-neighbour graph (an edge only where each photo
    is among the other's neighbours; Brito et al. 1997, *Stat. Probab. Lett.* 35, 33), as index
    arrays. On clothing10 a held-out class of 99 photos came back as one component of exactly
    those 99, where modularity communities cut it in five (docs/collection.md)."""
    from scipy.sparse.csgraph import connected_components

    graph = sparse.csr_matrix(graph)
    n, labels = connected_components(graph.minimum(graph.T), directed=False)
    return [np.flatnonzero(labels == c) for c in range(n)]


def apply_edits(paths: list[str], base: np.ndarray, edits: list[Edit], previous: dict[str, int] | None = None,
                affinity: sparse.spmatrix | None = None) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """The clusters the user sees: ``base`` with the active ``edits`` applied in log order.

    ``move`` pins a photo to a cluster, ``exclude`` takes it out (-2), ``merge`` gives every photo
    of one cluster the other's id (the name of the first, else the second, stays), ``rename``
    names a cluster, ``split`` gives each photo it recorded its piece (wherever the clustering put
    it) and places the photos of the cluster it did not see (added since) with the piece most of their graph neighbours are in
    (``affinity``), else where they were (``previous``), else in the first piece (which keeps the
    cluster's id and name). Edits naming a photo that is gone are skipped and reported.

    Returns:
        (int64 (N,) ids, id → name, one note per edit naming a photo no longer present).
    """
    ids = np.asarray(base, dtype=np.int64).copy()
    index = {p: i for i, p in enumerate(paths)}
    names: dict[int, str] = {}
    notes: list[str] = []
    for edit in edits:
        a = edit.args
        if edit.op in ("move", "exclude"):
            i = index.get(a["photo"])
            if i is None:
                notes.append(f"edit {edit.seq} ({edit.op} {a['photo']}): the photo is no longer in the collection; "
                             "the edit is kept")
            else:
                ids[i] = a["cluster"] if edit.op == "move" else EXCLUDED
        elif edit.op == "rename":
            names = {c: n for c, n in names.items() if n != a["name"]}
            names.pop(a["cluster"], None)
            if a["name"]:  # an empty name removes the name
                names[a["cluster"]] = a["name"]
        elif edit.op == "merge":
            ids[ids == a["other"]] = a["into"]
            other_name = names.pop(a["other"], None)
            if a["into"] not in names and other_name is not None:
                names[a["into"]] = other_name
        elif edit.op == "split":
            _apply_split(ids, paths, index, a, previous, affinity)
    return ids, names, notes


def _apply_split(ids, paths, index, args, previous, affinity) -> None:
    # The photos the split saw stay in their pieces wherever a later clustering put them.
    unseen = [i for i in np.flatnonzero(ids == args["cluster"]) if paths[i] not in args["pieces"]]
    for p, piece in args["pieces"].items():
        if p in index:
            ids[index[p]] = piece
    if not unseen:
        return
    piece_ids = np.array(args["ids"])
    recorded = np.array([index[p] for p in args["pieces"] if p in index], dtype=np.int64)
    affinity = None if affinity is None else sparse.csr_matrix(affinity)
    for i in unseen:
        choice = None
        if affinity is not None and len(recorded):
            row = affinity[i].toarray().ravel()[recorded]
            weight = [row[ids[recorded] == c].sum() for c in piece_ids]
            if max(weight) > 0:
                choice = int(piece_ids[int(np.argmax(weight))])
        if choice is None and previous is not None and previous.get(paths[i]) in set(piece_ids.tolist()):
            choice = previous[paths[i]]
        ids[i] = args["cluster"] if choice is None else choice


# ---------------------------------------------------------------- the state

class Collection:
    """The collection's state, one SQLite database (see the module docstring). Open with
    :func:`open_collection`; each public method is one transaction (all of it or none of it is
    kept, whatever happens to the process).

    Raises:
        ImgclustError: the file is not a database of imgclust, or one of a newer schema.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=5)
            # Rollback journal: the database is one self-contained file between operations.
            self.db.execute("PRAGMA journal_mode=DELETE")
            self.db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ImgclustError(f"{self.path}: not a collection database of imgclust ({exc}); move it away") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "schema_version" not in tables:
                if tables:
                    raise sqlite3.DatabaseError("tables but no schema_version")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                return
            version = db.execute("SELECT version FROM schema_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ImgclustError(f"{self.path}: written by a newer imgclust (schema {version}); update imgclust")

    # ------------------------------------------------------------ reading
    def _meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def is_empty(self) -> bool:
        """True before the first ``cluster`` run."""
        return self.db.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 0

    def _members(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        rows = sorted((_text(r[0]), r[1], r[2]) for r in self.db.execute("SELECT path, base, cluster FROM members"))
        return ([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64),
                np.array([r[2] for r in rows], dtype=np.int64))

    def base(self) -> dict[str, int]:
        """Photo → cluster id of the last run before the edits."""
        paths, base, _ = self._members()
        return dict(zip(paths, base.tolist()))

    def labels(self) -> dict[str, int]:
        """Photo → cluster id the user sees (edits applied); -1 unclustered, -2 excluded."""
        paths, _, final = self._members()
        return dict(zip(paths, final.tolist()))

    def names(self) -> dict[int, str]:
        """Cluster id → name, for the named clusters."""
        return {r[0]: r[1] for r in self.db.execute("SELECT id, name FROM clusters WHERE name IS NOT NULL")}

    def auto_names(self) -> dict[int, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT id, auto_name FROM clusters WHERE auto_name IS NOT NULL")}

    def current(self) -> Reconciled:
        """The state as it stands (no recomputation)."""
        paths, _, final = self._members()
        _, _, notes = apply_edits(paths, final, self.edits(active_only=True))
        return Reconciled(paths, final, self.names(), self.auto_names(), notes=notes)

    def edits(self, active_only: bool = False) -> list[Edit]:
        """The edit log, oldest first (``undo`` rows included unless ``active_only``, which keeps
        only the edits in force)."""
        rows = [Edit(r[0], r[1], r[2], json.loads(r[3]))
                for r in self.db.execute("SELECT seq, at, op, args FROM edits ORDER BY seq")]
        undone = {e.args["seq"] for e in rows if e.op == "undo"}
        for e in rows:
            e.undone = e.seq in undone
        if active_only:
            return [e for e in rows if e.op != "undo" and not e.undone]
        return rows

    def runs(self) -> list[dict]:
        cols = ("id", "at", "mode", "reason", "photos", "added", "removed", "kept", "new_clusters")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id")]

    def full_reason(self, paths: list[str], settings: str) -> str | None:
        """Why the next ``cluster`` must cluster from scratch (matched to the previous ids), or
        None when new photos can be placed into the existing clusters."""
        if self.is_empty():
            return "first run"
        if self._meta("settings") != settings:
            return "the clustering settings changed"
        base = self.base()
        old = sum(1 for p in paths if base.get(p, UNCLUSTERED) >= 0)
        if old < len(paths) - old:
            return "the new photos outnumber the clustered ones"
        return None

    # ------------------------------------------------------------ cluster runs
    def incremental(self, paths: list[str], affinity: sparse.spmatrix, settings: str) -> Reconciled:
        """Keep every old photo's cluster, place the new ones (:func:`place_new`), drop the gone
        ones, apply the edits, and store the result (one transaction).

        Args:
            paths: the photos now (N), rows of ``affinity``.
            affinity: float (N, N) feature graph of all of them.
            settings: a key of the clustering settings (a change forces a full clustering).
        """
        with self._transaction():
            previous = self.base()
            base = np.array([previous.get(p, UNCLUSTERED) for p in paths], dtype=np.int64)
            new = base < 0
            sizes = np.bincount(base[base >= 0]).tolist() if (base >= 0).any() else []
            ids, next_id, created = place_new(affinity, base, new, min_new_cluster([s for s in sizes if s]),
                                              self._meta("next_id", 0))
            self._set_meta("next_id", next_id)
            return self._store(paths, ids, previous, "incremental", None, affinity, created, settings)

    def recluster(self, paths: list[str], labels: np.ndarray, affinity: sparse.spmatrix | None, settings: str,
                  reason: str) -> Reconciled:
        """Take a fresh partition, give its clusters the previous ids by overlap
        (:func:`match_ids`), apply the edits, and store the result (one transaction).

        Args:
            labels: int (N,) the new partition (any integers, negative: unclustered).
            reason: why (``first run``, ``--recluster``, ...), kept in the run log.
        """
        with self._transaction():
            previous = self.base()
            ids, next_id = match_ids(previous, paths, labels, self._meta("next_id", 0))
            self._set_meta("next_id", next_id)
            created = sorted({int(c) for c in ids if c >= 0} - {c for c in previous.values() if c >= 0})
            mode = "first" if not previous else "recluster"
            return self._store(paths, ids, previous, mode, reason, affinity, created, settings)

    def _store(self, paths, base, previous, mode, reason, affinity, created, settings) -> Reconciled:
        before = self.labels()
        final, names, notes = self._write(paths, base, before, affinity)
        self._set_meta("settings", settings)
        kept = sum(1 for p, c in zip(paths, final.tolist()) if p in before and before[p] == c)
        added = sum(1 for p in paths if p not in previous)
        removed = len(set(previous) - set(paths))
        self.db.execute("INSERT INTO runs (at, mode, reason, photos, added, removed, kept, new_clusters) "
                        "VALUES (?,?,?,?,?,?,?,?)", (_now(), mode, reason, len(paths), added, removed, kept, len(created)))
        return Reconciled(list(paths), final, names, self.auto_names(), mode, reason, notes, added, removed, kept,
                          list(created))

    def _write(self, paths, base, previous_final, affinity) -> tuple[np.ndarray, dict[int, str], list[str]]:
        """Store ``base``, the edits applied to it and the names (inside a transaction)."""
        final, names, notes = apply_edits(paths, base, self.edits(active_only=True), previous_final, affinity)
        self.db.execute("DELETE FROM members")
        self.db.executemany("INSERT INTO members VALUES (?, ?, ?)",
                            ((_blob(p), int(b), int(f)) for p, b, f in zip(paths, base, final)))
        live = {int(c) for c in final if c >= 0} | set(names)
        self.db.executemany("INSERT OR IGNORE INTO clusters (id) VALUES (?)", ((c,) for c in sorted(live)))
        self.db.execute("UPDATE clusters SET name = NULL")
        self.db.executemany("UPDATE clusters SET name = ? WHERE id = ?", ((n, c) for c, n in names.items()))
        return final, names, notes

    # ------------------------------------------------------------ edits
    def resolve_cluster(self, text: str | int) -> int:
        """A cluster the user named: its id (a number) or its name (exact, else ignoring case).

        Raises:
            ImgclustError: no such cluster now.
        """
        live = {c for c in self.labels().values() if c >= 0}
        names = self.names()
        if isinstance(text, int) or str(text).strip().lstrip("-").isdigit():
            c = int(text)
            if c in live:
                return c
            raise ImgclustError(f"cluster {c}: no such cluster now (clusters: {_ranges(sorted(live))})")
        for fold in (False, True):
            found = [c for c, n in names.items() if (n.casefold() == str(text).casefold() if fold else n == text)]
            if len(found) == 1:
                return found[0]
        raise ImgclustError(f"cluster {text!r}: no cluster has this name (named: "
                            f"{', '.join(repr(n) for n in sorted(names.values())) or 'none'})")

    def _photo(self, photo: str) -> str:
        if photo not in self.labels():
            raise ImgclustError(f"{photo}: not a photo of the collection (give the path as the labels CSV writes it)")
        return photo

    def _edit(self, op: str, args: dict, affinity=None) -> Reconciled:
        """Append one edit and recompute the clusters (inside a transaction)."""
        self.db.execute("INSERT INTO edits (at, op, args) VALUES (?, ?, ?)", (_now(), op, json.dumps(args)))
        paths, base, final = self._members()
        final, names, notes = self._write(paths, base, dict(zip(paths, final.tolist())), affinity)
        return Reconciled(paths, final, names, self.auto_names(), notes=notes)

    def _require_state(self) -> None:
        if self.is_empty():
            raise ImgclustError(f"{self.path}: no clusters yet; run `imgclust cluster` first")

    def rename(self, cluster: str | int, name: str) -> Reconciled:
        """Name a cluster (names are unique; an empty name removes it).

        Raises:
            ImgclustError: no such cluster, or another cluster has this name.
        """
        with self._transaction():
            self._require_state()
            c = self.resolve_cluster(cluster)
            name = name.strip()
            if name.lstrip("-").isdigit():  # a number names a cluster by its id, so this name could never be used
                raise ImgclustError(f"name {name!r}: a cluster name cannot be a number (numbers are cluster ids)")
            taken = [other for other, n in self.names().items() if n == name and other != c]
            if taken:
                raise ImgclustError(f"name {name!r}: cluster {taken[0]} already has it")
            return self._edit("rename", {"cluster": c, "name": name})

    def move(self, photo: str, cluster: str | int) -> Reconciled:
        """Pin ``photo`` to ``cluster`` (every later run keeps it there until undone)."""
        with self._transaction():
            self._require_state()
            return self._edit("move", {"photo": self._photo(photo), "cluster": self.resolve_cluster(cluster)})

    def merge(self, into: str | int, other: str | int) -> Reconciled:
        """Merge cluster ``other`` into ``into`` (which keeps its id and name)."""
        with self._transaction():
            self._require_state()
            a, b = self.resolve_cluster(into), self.resolve_cluster(other)
            if a == b:
                raise ImgclustError(f"merge: cluster {a} with itself")
            return self._edit("merge", {"into": a, "other": b})

    def exclude(self, photo: str) -> Reconciled:
        """Take ``photo`` out of every cluster (id -2) until undone or moved back."""
        with self._transaction():
            self._require_state()
            return self._edit("exclude", {"photo": self._photo(photo)})

    def split(self, cluster: str | int, k: int, paths: list[str], views: list[np.ndarray], seed: int = 0) -> Reconciled:
        """Split a cluster into ``k`` by Leiden communities of its photos' feature graph
        (:func:`~image_clustering.clustering.cluster_leiden`); the largest piece keeps the id and
        name, the others get new ids. The pieces are recorded photo by photo in the edit.

        Args:
            paths: photos (N) the rows of ``views`` belong to.
            views: per network float (N, D_i) feature vectors.

        Raises:
            ImgclustError: no such cluster, or fewer photos than ``k``.
        """
        from .clustering import cluster_leiden, graph_neighbors
        from .embedding import FeatureRows

        with self._transaction():
            self._require_state()
            c = self.resolve_cluster(cluster)
            labels = self.labels()
            row = {p: i for i, p in enumerate(paths)}
            members = [p for p, x in labels.items() if x == c and p in row]
            if k < 2 or len(members) < k:
                raise ImgclustError(f"split: cluster {c} has {len(members)} photos; cannot split it into {k}")
            take = np.array([row[p] for p in members])
            parts = [v.take(take) if isinstance(v, FeatureRows) else np.asarray(v)[take] for v in views]
            x = np.hstack(parts).astype(np.float32)
            pieces = cluster_leiden(x, k, parts, seed, graph_neighbors(len(members), k)).labels
            next_id = self._meta("next_id", 0)
            ids = [c, *range(next_id, next_id + int(pieces.max()))]
            self._set_meta("next_id", next_id + int(pieces.max()))
            return self._edit("split", {"cluster": c, "k": k, "ids": ids,
                                        "pieces": {p: ids[int(q)] for p, q in zip(members, pieces)}})

    def undo(self) -> Edit:
        """Cancel the latest edit in force; the clusters return exactly to what they were before it
        (given the same base partition).

        Returns:
            The edit undone.

        Raises:
            ImgclustError: nothing to undo.
        """
        with self._transaction():
            active = self.edits(active_only=True)
            if not active:
                raise ImgclustError("undo: no edit to undo")
            last = active[-1]
            self._edit("undo", {"seq": last.seq})
            return last

    def apply(self, edits: list[dict], paths: list[str], views: list[np.ndarray], seed: int = 0) -> list[str]:
        """Apply a list of edits as the static report exports them: ``{"op": "rename", "cluster":
        C, "name": N}``, ``{"op": "move", "photo": P, "cluster": C}``, ``{"op": "merge", "into": C,
        "other": C}``, ``{"op": "split", "cluster": C, "k": K}``, ``{"op": "exclude", "photo": P}``
        or ``{"op": "undo"}``. All or none are kept (one transaction); edits naming a photo that
        is no longer in the collection are skipped and reported.

        Returns:
            One line per skipped edit.

        Raises:
            ImgclustError: a malformed edit or one naming an unknown cluster (nothing is kept).
        """
        skipped = []
        with self._transaction():
            for n, e in enumerate(edits, 1):
                if not isinstance(e, dict) or e.get("op") not in (*OPS, "undo"):
                    raise ImgclustError(f"edit {n}: not an edit ({e!r:.80}); op is one of {', '.join(OPS)}, undo")
                try:
                    photo = e.get("photo")
                    if photo is not None and photo not in self.labels():
                        skipped.append(f"edit {n} ({e['op']} {photo}): the photo is no longer in the collection")
                        continue
                    self._nested(e, paths, views, seed)
                except KeyError as exc:
                    raise ImgclustError(f"edit {n} ({e['op']}): missing {exc}") from None
        return skipped

    def do(self, e: dict, paths: list[str] | None = None, views: list[np.ndarray] | None = None,
           seed: int = 0) -> None:
        """Carry out one edit in the form :meth:`apply` takes (``{"op": "rename", "cluster": C,
        "name": N}`` …; ``split`` needs the collection's ``paths`` and feature ``views``).

        Raises:
            KeyError: an argument the operation needs is missing.
            ImgclustError: as the operation's method.
        """
        op = e["op"]
        if op == "rename":
            self.rename(e["cluster"], e["name"])
        elif op == "move":
            self.move(e["photo"], e["cluster"])
        elif op == "merge":
            self.merge(e["into"], e["other"])
        elif op == "split":
            self.split(e["cluster"], int(e.get("k", 2)), paths, views, seed)
        elif op == "exclude":
            self.exclude(e["photo"])
        else:
            self.undo()

    def _nested(self, e: dict, paths, views, seed: int = 0) -> None:
        # The public methods open their own transaction; inside apply() one outer one holds them all.
        saved, self._transaction = self._transaction, _no_transaction
        try:
            self.do(e, paths, views, seed)
        finally:
            self._transaction = saved

    def set_auto_names(self, words: dict[int, str]) -> dict[int, str]:
        """Give clusters without one the name their tag words suggest (kept once given, so it
        does not change run to run). Returns every cluster's automatic name."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO clusters (id) VALUES (?)", ((c,) for c in words))
            db.executemany("UPDATE clusters SET auto_name = ? WHERE id = ? AND auto_name IS NULL",
                           ((w, c) for c, w in words.items() if w))
        return self.auto_names()

    # ------------------------------------------------------------ organise journal
    def journal(self, root: str) -> dict[str, dict]:
        """What organise created under ``root`` (absolute path) and has not removed: path relative
        to ``root`` → {kind, source, inode, size, mtime_ns, ctime_ns}."""
        rows = self.db.execute("SELECT path, kind, source, inode, size, mtime_ns, ctime_ns FROM organised WHERE root = ?",
                               (_blob(root),))
        return {_text(r[0]): {"kind": r[1], "source": _text(r[2]) if r[2] is not None else None, "inode": r[3],
                              "size": r[4], "mtime_ns": r[5], "ctime_ns": r[6]} for r in rows}

    def record(self, root: str, path: str, entry: dict | None) -> None:
        """Note one thing organise created (``entry``) or removed (None) under ``root``: one
        transaction per file, written right after the file system change."""
        with self._transaction() as db:
            if entry is None:
                db.execute("DELETE FROM organised WHERE root = ? AND path = ?", (_blob(root), _blob(path)))
            else:
                db.execute("INSERT OR REPLACE INTO organised VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (_blob(root), _blob(path), entry["kind"],
                            None if entry.get("source") is None else _blob(entry["source"]),
                            entry.get("inode"), entry.get("size"), entry.get("mtime_ns"), entry.get("ctime_ns")))

    def organised_roots(self) -> list[str]:
        return [_text(r[0]) for r in self.db.execute("SELECT DISTINCT root FROM organised")]

    def check(self) -> list[str]:
        """Consistency problems of the stored state (empty when sound): SQLite's integrity check,
        and memberships that disagree with the base and the edit log."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        paths, base, final = self._members()
        expected, _, _ = apply_edits(paths, base, self.edits(active_only=True), dict(zip(paths, final.tolist())))
        wrong = int((expected != final).sum())
        if wrong:
            problems.append(f"{wrong} photos whose cluster disagrees with the edit log")
        return problems


@contextmanager
def _no_transaction():
    yield None


def _ranges(values: list[int]) -> str:
    return ", ".join(map(str, values[:20])) + (" …" if len(values) > 20 else "")


def open_collection(path: Path) -> Collection:
    """Open (creating if needed) the collection database at ``path``; use as a context manager."""
    return Collection(path)
