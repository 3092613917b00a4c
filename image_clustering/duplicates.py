"""Duplicates and odd ones out: groups of photos graded on a similarity ladder, a suggested keeper
per group, and an outlier score per photo. Nothing here deletes, moves or rewrites a photo.

The ladder (highest first; ``duplicates.grade`` names the lowest one reported):

- ``exact``: the same bytes (BLAKE2b content hash, :func:`image_clustering.features.content_hash`).
- ``near-identical``: the same picture re-encoded, resized, cropped a little, colour-adjusted,
  framed, captioned or mirrored: feature cosine ≥ ``near_alone``, or cosine ≥ ``near_cosine`` with
  perceptual hashes (DCT pHash of the photo, its mirror image, and the picture inside any even
  border) at most ``near_hash`` bits apart, or cosine ≥ ``loose_cosine`` with hashes at most
  ``loose_hash`` bits apart.
- ``burst``: cosine ≥ ``burst_cosine`` and EXIF capture times at most ``burst_seconds`` apart
  (file times are not used: a copy's file time says when it was copied).
- ``same scene``: cosine ≥ ``scene_cosine`` (the same subject from another angle, ukbench's groups).

Cosine is that of the combined, L2-normalised feature vectors (:mod:`image_clustering.neighbours`).
The thresholds were calibrated on ``scripts/bench_duplicates.py`` (docs/benchmarks.md, "Duplicates").

Candidate pairs come from each photo's nearest neighbours (exact below
:data:`~image_clustering.neighbours.EXACT_LIMIT` photos; above, pynndescent on a PCA projection and
the cosine recomputed on the full vectors), so the cost grows with N, not N². Groups are joined
strongest pair first (exact, then near-identical, burst, same scene; within a grade by cosine):
pairs of the three upper grades join their groups directly (single linkage: copies of copies are
still the same picture), a ``same scene`` pair only when every photo of one group is at least
``same scene`` with every photo of the other (complete linkage: views of two objects never chain).
A photo is in at most one group.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GRADES = ("same scene", "burst", "near-identical", "exact")  # lowest first; rank = index + 1
NONE = 0


def grade_rank(grade: str) -> int:
    """1 (``same scene``) … 4 (``exact``).

    Raises:
        ValueError: not a grade of :data:`GRADES`.
    """
    if grade not in GRADES:
        raise ValueError(f"unknown grade {grade!r}; one of {', '.join(GRADES)}")
    return GRADES.index(grade) + 1


def grade_name(rank: int) -> str:
    return GRADES[rank - 1] if rank > 0 else ""


@dataclass(frozen=True)
class Thresholds:
    """Where each grade begins (calibrated in docs/benchmarks.md, "Duplicates").

    Attributes:
        near_alone: cosine at or above which two photos are near-identical whatever their hashes.
        near_cosine: cosine at or above which a pHash distance of at most ``near_hash`` bits (of 64)
            makes two photos near-identical.
        near_hash: see ``near_cosine``.
        loose_cosine, loose_hash: a second, looser gate on the features for a closer match of the
            hashes (a screen grab: the photo small inside a window).
        burst_cosine: cosine for a burst pair (with EXIF times at most ``burst_seconds`` apart).
        burst_seconds: seconds between two shots of one burst.
        scene_cosine: cosine for ``same scene``.
    """

    near_alone: float = 0.92
    near_cosine: float = 0.85
    near_hash: int = 16
    loose_cosine: float = 0.55
    loose_hash: int = 4
    burst_cosine: float = 0.80
    burst_seconds: float = 5.0
    scene_cosine: float = 0.62

    def floor(self, min_rank: int) -> float:
        """Lowest cosine a pair of grade ``min_rank`` or above can have (candidate pairs below it
        are dropped before any photo is read)."""
        near = min(self.near_alone, self.near_cosine, self.loose_cosine)
        return {1: min(near, self.burst_cosine, self.scene_cosine), 2: min(near, self.burst_cosine),
                3: near, 4: near}[min_rank]


@dataclass
class PhotoFacts:
    """What grading and the keeper rule read from the photos of candidate pairs, one row per photo
    (arrays of length N; photos that were not read hold the missing value).

    Attributes:
        content: BLAKE2b hex of the bytes, or None.
        phash: uint64 (N, 4): DCT pHash of the photo, of its mirror image, and the same two of the
            picture inside its even borders (:func:`trim_uniform`); 0 with ``read`` False.
        read: bool (N,): whether the photo could be decoded.
        pixels: int64 (N,): width × height (0 when unread).
        sharpness: float64 (N,): variance of the Laplacian of the grey image (NaN when unread).
        time: float64 (N,): EXIF capture time, seconds since the epoch (NaN when absent).
    """

    content: list[str | None]
    phash: np.ndarray
    read: np.ndarray
    pixels: np.ndarray
    sharpness: np.ndarray
    time: np.ndarray

    @classmethod
    def empty(cls, n: int) -> PhotoFacts:
        return cls([None] * n, np.zeros((n, 4), np.uint64), np.zeros(n, bool), np.zeros(n, np.int64),
                   np.full(n, np.nan), np.full(n, np.nan))


# --- reading photos (only those in candidate pairs) ------------------------------------------

HASH_SIDE = 32  # pHash: DCT of a 32×32 grey image, its 8×8 lowest frequencies (Zauner 2010)
SHARPNESS_SIDE = 1024  # sharpness measured at most this long a side, so every photo is treated alike


def phash_bits(grey: np.ndarray) -> int:
    """64-bit perceptual hash of a 32×32 float grey image: the 8×8 lowest-frequency 2-D DCT-II
    coefficients compared with their median (the pHash of Zauner 2010, as ``imagehash.phash``).

    Returns:
        int in [0, 2**64), bit i (row-major over the 8×8 block) set where the coefficient > median.
    """
    from scipy.fft import dctn

    low = dctn(grey, type=2, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


TRIM_STD = 6.0  # grey levels: an edge line this even is a border, a frame or a plain background


def trim_uniform(grey: np.ndarray, tol: float = TRIM_STD, keep: float = 0.4) -> np.ndarray:
    """``grey`` (H, W) without its even edges: a line (row or column) on any side whose standard
    deviation is at most ``tol`` is peeled off, one at a time, until no side has one, so borders,
    mats and nested frames (a screen grab's desktop, window edge and title bar) go and the picture
    inside is what gets hashed. At least ``keep`` of each side's length is kept."""
    top, bottom, left, right = 0, grey.shape[0], 0, grey.shape[1]
    min_h, min_w = max(8, int(grey.shape[0] * keep)), max(8, int(grey.shape[1] * keep))
    peeled = True
    while peeled:
        peeled = False
        if bottom - top > min_h:
            if grey[top, left:right].std() <= tol:
                top, peeled = top + 1, True
            if grey[bottom - 1, left:right].std() <= tol:
                bottom, peeled = bottom - 1, True
        if right - left > min_w:
            if grey[top:bottom, left].std() <= tol:
                left, peeled = left + 1, True
            if grey[top:bottom, right - 1].std() <= tol:
                right, peeled = right - 1, True
    return grey[top:bottom, left:right]


def photo_facts(path: Path) -> tuple[int, int, int, int, int, float, float] | None:
    """(pHash, pHash of the mirror image, the same two of the picture inside any even border or
    frame (:func:`trim_uniform`), pixel count, sharpness, EXIF time or NaN) of one photo, or None
    when it cannot be decoded. Sharpness is the variance of the Laplacian (Pech-Pacheco
    et al. 2000) of the grey image scaled to at most :data:`SHARPNESS_SIDE` on its long side."""
    from PIL import Image
    from scipy.ndimage import laplace

    from .images import exif_time, open_rgb

    try:
        with Image.open(path) as head:
            pixels = head.width * head.height
        im = open_rgb(path, SHARPNESS_SIDE).convert("L")
    except Exception:  # noqa: BLE001 - any decoder failure: the photo is left out of grading
        return None
    im.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE))
    sharpness = float(laplace(np.asarray(im, np.float32)).var())
    grey = np.asarray(im, np.float32)
    inside = trim_uniform(grey[::max(1, max(grey.shape) // 256), ::max(1, max(grey.shape) // 256)])
    hashes = []
    for picture in (grey, inside):
        small = np.asarray(Image.fromarray(picture).resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS),
                           np.float32)
        hashes += [phash_bits(small), phash_bits(small[:, ::-1])]
    taken = exif_time(path)
    return (*hashes, pixels, sharpness, np.nan if taken is None else taken)


def read_facts(paths: list[Path], rows: np.ndarray, content: dict[int, str | None] | None = None,
               threads: int | None = None) -> PhotoFacts:
    """:class:`PhotoFacts` for ``rows`` of ``paths`` (the others stay missing), read in threads.

    Args:
        paths: absolute photo paths, one per feature row.
        rows: int indices of the photos to read.
        content: row → content hash already known (the feature store's, ``model.content_hash``);
            the others are hashed here.
    """
    from .features import content_hash

    facts = PhotoFacts.empty(len(paths))
    content = content or {}

    def one(i):
        digest = content.get(int(i)) or content_hash(paths[i])
        return i, digest, photo_facts(paths[i])

    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
        for i, digest, got in pool.map(one, rows):
            facts.content[i] = digest
            if got is not None:
                facts.phash[i] = got[:4]
                facts.read[i] = True
                facts.pixels[i], facts.sharpness[i], facts.time[i] = got[4:]
    return facts


FACTS_CACHE = "duplicates_facts.npz"


def cached_facts(cache: Path, paths: list[Path], names: list[str], rows: np.ndarray) -> PhotoFacts:
    """:func:`read_facts` for ``rows``, reusing what ``cache`` holds for photos whose size and
    modification time have not changed, and writing the cache back (atomically) with every photo
    read so far that is still in ``names``.

    Args:
        cache: the ``.npz`` file (e.g. ``<vector_dir>/<name>/duplicates_facts.npz``).
        paths: absolute photo paths; ``names``: the same relative to the photo folder (the keys).
        rows: int indices of the photos needed.
    """
    from .atomic import atomic_path

    stamp = {}
    for i in rows:
        try:
            st = os.stat(paths[i])
            stamp[int(i)] = (st.st_size, st.st_mtime_ns)
        except OSError:
            pass  # gone since extract: read_facts leaves it unread
    old = {}
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            old = {str(n): j for j, n in enumerate(arrays["path"])}
        except (OSError, ValueError, KeyError):
            old = {}  # unreadable cache: read the photos again
    facts = PhotoFacts.empty(len(paths))
    todo = []
    for i in (int(i) for i in rows):
        j = old.get(names[i])
        if j is None or stamp.get(i) != (int(arrays["size"][j]), int(arrays["mtime_ns"][j])):
            todo.append(i)
            continue
        facts.content[i] = str(arrays["content"][j]) or None
        facts.phash[i], facts.read[i] = arrays["phash"][j], bool(arrays["read"][j])
        facts.pixels[i], facts.sharpness[i], facts.time[i] = arrays["pixels"][j], arrays["sharpness"][j], arrays["time"][j]
    if todo:
        fresh = read_facts(paths, np.array(todo))
        for i in todo:
            facts.content[i] = fresh.content[i]
            facts.phash[i], facts.read[i] = fresh.phash[i], fresh.read[i]
            facts.pixels[i], facts.sharpness[i], facts.time[i] = fresh.pixels[i], fresh.sharpness[i], fresh.time[i]
    keep = [i for i in range(len(paths)) if i in stamp]
    kept = {names[i] for i in keep}
    wanted = set(names)
    carry = [j for n, j in old.items() if n not in kept and n in wanted]
    doc = {
        "path": np.array([names[i] for i in keep] + [str(arrays["path"][j]) for j in carry], dtype=str),
        "size": np.array([stamp[i][0] for i in keep] + [int(arrays["size"][j]) for j in carry], np.int64),
        "mtime_ns": np.array([stamp[i][1] for i in keep] + [int(arrays["mtime_ns"][j]) for j in carry], np.int64),
        "content": np.array([facts.content[i] or "" for i in keep] + [str(arrays["content"][j]) for j in carry], dtype=str),
        "phash": np.concatenate([facts.phash[keep], arrays["phash"][carry] if carry else np.zeros((0, 4), np.uint64)]),
        "read": np.concatenate([facts.read[keep], arrays["read"][carry] if carry else np.zeros(0, bool)]),
        "pixels": np.concatenate([facts.pixels[keep], arrays["pixels"][carry] if carry else np.zeros(0, np.int64)]),
        "sharpness": np.concatenate([facts.sharpness[keep], arrays["sharpness"][carry] if carry else np.zeros(0)]),
        "time": np.concatenate([facts.time[keep], arrays["time"][carry] if carry else np.zeros(0)]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **doc)
    return facts


# --- candidate pairs ---------------------------------------------------------------------------

BLOCK = 1024  # rows (or pairs) handled at a time where vectors are gathered: bounds memory at any N


def pair_cosines(pairs: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """float32 (P,) cosine of each pair (int (P, 2) rows of L2-normalised ``unit``), in blocks."""
    out = np.empty(len(pairs), np.float32)
    for s in range(0, len(pairs), BLOCK):
        p = pairs[s:s + BLOCK]
        out[s:s + BLOCK] = np.einsum("ij,ij->i", unit[p[:, 0]], unit[p[:, 1]])
    return out


def candidate_pairs(unit: np.ndarray, n_neighbors: int = 10, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each photo's ``n_neighbors`` nearest others by cosine, as a k-nearest-neighbour graph.

    Exact up to :data:`~image_clustering.neighbours.EXACT_LIMIT` rows; above, pynndescent's
    approximate graph (Euclidean) on a 128-dimensional PCA projection (fitted on 20,000 rows), the
    cosine then recomputed on the full vectors so grading never sees a projected value.

    Args:
        unit: float32 (N, D) L2-normalised vectors.

    Returns:
        (int32 (N, m) neighbour rows, most similar first; float32 (N, m) cosines; the same as an
        int64 (P, 2) array of unique pairs i < j and their float32 (P,) cosines), m = min(n_neighbors, N − 1).
    """
    from .neighbours import EXACT_LIMIT, nearest_neighbours

    n = len(unit)
    if n <= EXACT_LIMIT:
        index, sim = nearest_neighbours(unit, n_neighbors, seed)
    else:
        from pynndescent import NNDescent
        from sklearn.decomposition import PCA

        rng = np.random.default_rng(seed)
        sample = unit[np.sort(rng.choice(n, min(n, 20_000), replace=False))]
        pca = PCA(n_components=min(128, unit.shape[1]), svd_solver="randomized", random_state=seed).fit(sample)
        reduced = np.concatenate([pca.transform(unit[s:s + BLOCK]) for s in range(0, n, BLOCK)]).astype(np.float32)
        # Euclidean distance in the centred projection approximates that of the unit vectors,
        # which orders pairs as their cosine does.
        m = min(n_neighbors, n - 1)
        graph = NNDescent(reduced, metric="euclidean", n_neighbors=m + 1, random_state=seed, low_memory=True)
        index = _without_self(graph.neighbor_graph[0], m)
        del reduced, graph
        sim = np.empty(index.shape, np.float32)
        for s in range(0, n, BLOCK):  # exact cosines of the graph's pairs, a block of rows at a time
            sim[s:s + BLOCK] = np.einsum("id,ijd->ij", unit[s:s + BLOCK], unit[index[s:s + BLOCK]])
        order = np.argsort(-sim, axis=1, kind="stable")
        index, sim = np.take_along_axis(index, order, 1), np.take_along_axis(sim, order, 1)
    rows = np.repeat(np.arange(n), index.shape[1])
    pairs = np.stack([np.minimum(rows, index.ravel()), np.maximum(rows, index.ravel())], 1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return index, sim, pairs, sim.ravel()[first]


def _without_self(index: np.ndarray, m: int) -> np.ndarray:
    """int32 (N, m): each row's neighbours without the row itself (equal vectors may push it off
    first place; pynndescent may also leave -1 where it found too few)."""
    out = np.empty((len(index), m), np.int32)
    for r, row in enumerate(index):
        row = row[(row != r) & (row >= 0)][:m]
        out[r] = np.pad(row, (0, m - len(row)), constant_values=row[0] if len(row) else (r + 1) % len(index))
    return out


# --- grading and grouping ------------------------------------------------------------------------

def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (the Hamming distance of two hashes XOR-ed)."""
    x = np.asarray(x, np.uint64)
    if hasattr(np, "bitwise_count"):  # NumPy 2
        return np.bitwise_count(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    return np.unpackbits(flat.view(np.uint8).reshape(-1, 8), axis=1).sum(1).reshape(x.shape)


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits apart of two photos' pHashes, uint64 (P, 4) each (:class:`PhotoFacts`): the least of
    whole photo against whole photo and inside against inside, each also against the other's
    mirror image (a flipped copy). int (P,) in 0..64."""
    return np.minimum.reduce([_popcount(a[:, 0] ^ b[:, 0]), _popcount(a[:, 0] ^ b[:, 1]),
                              _popcount(a[:, 2] ^ b[:, 2]), _popcount(a[:, 2] ^ b[:, 3])])


def grade_pairs(pairs: np.ndarray, unit: np.ndarray, facts: PhotoFacts, thresholds: Thresholds
                ) -> tuple[np.ndarray, np.ndarray]:
    """The grade of each pair.

    Args:
        pairs: int (P, 2) rows.
        unit: float32 (N, D) L2-normalised feature vectors.

    Returns:
        (int8 (P,) rank — 0 none, 1 same scene … 4 exact —, float32 (P,) cosine).
    """
    t = thresholds
    a, b = pairs[:, 0], pairs[:, 1]
    cos = pair_cosines(pairs, unit)
    both = facts.read[a] & facts.read[b]
    hamming = hash_distance(facts.phash[a], facts.phash[b])
    same_bytes = np.array([facts.content[i] is not None and facts.content[i] == facts.content[j]
                           for i, j in pairs], bool)
    near = (cos >= t.near_alone) | (both & (cos >= t.near_cosine) & (hamming <= t.near_hash)) | (
        both & (cos >= t.loose_cosine) & (hamming <= t.loose_hash))
    with np.errstate(invalid="ignore"):
        burst = (cos >= t.burst_cosine) & (np.abs(facts.time[a] - facts.time[b]) <= t.burst_seconds)
    rank = np.where(same_bytes, 4, np.where(near, 3, np.where(burst, 2, np.where(cos >= t.scene_cosine, 1, 0))))
    return rank.astype(np.int8), cos


@dataclass
class Groups:
    """Duplicate groups (:func:`find_duplicates`).

    Attributes:
        group: int (N,) group number per photo, -1 for photos in no group; groups are numbered by
            grade (highest first), then size.
        grade: int (G,) rank of each group: the lowest grade of the pairs that joined it.
        pairs: int (E, 2) the pairs that joined the groups, with ``pair_grade`` int8 (E,) and
            ``pair_cosine`` float32 (E,).
    """

    group: np.ndarray
    grade: np.ndarray
    pairs: np.ndarray
    pair_grade: np.ndarray
    pair_cosine: np.ndarray
    members: list[np.ndarray] = field(default_factory=list)
    facts: PhotoFacts | None = None
    unit: np.ndarray | None = None


def group_pairs(n: int, pairs: np.ndarray, rank: np.ndarray, cos: np.ndarray, min_rank: int,
                pair_rank) -> Groups:
    """Join photos into groups along graded pairs (strongest first; see the module's docstring).

    Args:
        n: number of photos.
        pairs, rank, cos: from :func:`grade_pairs`.
        min_rank: lowest grade rank used.
        pair_rank: callable (int (P, 2) pairs) → int (P,) ranks, for the complete-linkage check of
            ``same scene`` joins.
    """
    keep = rank >= min_rank
    pairs, rank, cos = pairs[keep], rank[keep], cos[keep]
    order = np.lexsort((-cos, -rank))
    parent = np.arange(n)
    members = {}
    low = {}  # root → lowest joining rank

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    used = []
    for e in order:
        i, j = pairs[e]
        ri, rj = root(i), root(j)
        if ri == rj:
            continue
        a, b = members.get(ri, [ri]), members.get(rj, [rj])
        if rank[e] == 1:
            cross = np.array([(x, y) for x in a for y in b])
            if (pair_rank(cross) < 1).any():
                continue
        if len(a) < len(b):
            ri, rj, a, b = rj, ri, b, a
        parent[rj] = ri
        members[ri] = a + b
        members.pop(rj, None)
        low[ri] = min(low.get(ri, 9), low.pop(rj, 9), int(rank[e]))
        used.append(e)
    roots = sorted(members, key=lambda r: (-low[r], -len(members[r]), min(members[r])))
    group = np.full(n, -1, np.int64)
    for g, r in enumerate(roots):
        group[members[r]] = g
    used = np.array(used, np.int64)
    return Groups(group, np.array([low[r] for r in roots], np.int8), pairs[used].reshape(-1, 2),
                  rank[used], cos[used], [np.sort(np.array(members[r])) for r in roots])


def find_duplicates(vectors: np.ndarray, facts_of=None, min_grade: str = "burst",
                    thresholds: Thresholds = Thresholds(), n_neighbors: int = 10, seed: int = 0
                    ) -> tuple[Groups, np.ndarray, np.ndarray]:
    """Duplicate groups of a collection, plus its neighbour graph for :func:`outlier_scores`.

    Args:
        vectors: float (N, D) feature vectors (normalised here, in place when float32 and writable).
        facts_of: callable (int rows) → :class:`PhotoFacts` reading those photos; None grades on
            the features alone (no exact, pHash or burst evidence).
        min_grade: the lowest grade reported, one of :data:`GRADES`.

    Returns:
        (:class:`Groups`, int32 (N, m) neighbour rows, float32 (N, m) their cosines).

    Raises:
        ValueError: unknown ``min_grade``.
    """
    min_rank = grade_rank(min_grade)
    unit = _unit_in_place(vectors)
    index, sim, pairs, cos = candidate_pairs(unit, n_neighbors, seed)
    pairs = pairs[cos >= thresholds.floor(min_rank) - 1e-6]
    rows = np.unique(pairs)
    facts = facts_of(rows) if facts_of is not None and len(rows) else PhotoFacts.empty(len(unit))
    rank, cos = grade_pairs(pairs, unit, facts, thresholds)
    groups = group_pairs(len(unit), pairs, rank, cos, min_rank,
                         lambda p: grade_pairs(p, unit, facts, thresholds)[0])
    groups.facts, groups.unit = facts, unit
    return groups, index, sim


def _unit_in_place(x: np.ndarray) -> np.ndarray:
    x = x if (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.writeable) else np.array(x, np.float32)
    for s in range(0, len(x), BLOCK):
        block = x[s:s + BLOCK]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return x


# --- keeper -------------------------------------------------------------------------------------

KEEPER_RULE = ("largest pixel count, then sharpest (variance of the Laplacian), then earliest EXIF time, "
               "then shortest path")


def keeper(members: np.ndarray, paths: list[str], facts: PhotoFacts) -> int:
    """The suggested photo to keep among ``members`` (rows), by :data:`KEEPER_RULE`; unknown values
    (unread photo, no EXIF time) rank last on their criterion."""
    def key(i):
        sharp = facts.sharpness[i]
        taken = facts.time[i]
        return (-int(facts.pixels[i]), -(sharp if np.isfinite(sharp) else -1.0),
                taken if np.isfinite(taken) else np.inf, len(paths[i]), paths[i])

    return int(min(members, key=key))


@dataclass
class DuplicateGroup:
    """One group as written: ``members`` rows with the keeper first.

    Attributes:
        grade: the group's grade name (its weakest joining pair).
        members: int rows, keeper first, then by similarity to it.
        member_grade: grade name of each member's pair with the keeper ("" for the keeper), at
            least the group's grade (members reached through a chain of pairs get the group's).
        similarity: float cosine of each member with the keeper (1 for the keeper).
        pairs: [(row, row, grade name, cosine)] within the group.
    """

    grade: str
    members: list[int]
    member_grade: list[str]
    similarity: list[float]
    pairs: list[tuple[int, int, str, float]]


PAIRS_LISTED = 100  # groups up to this size list every pair's grade; larger ones their joining pairs


def describe_groups(groups: Groups, paths: list[str], thresholds: Thresholds = Thresholds()) -> list[DuplicateGroup]:
    """Each group with its keeper (:func:`keeper`) first, then the others by cosine with it, and
    the grade of every pair (groups up to :data:`PAIRS_LISTED` photos; above, the joining pairs)."""
    out = []
    for g, members in enumerate(groups.members):
        best = keeper(members, paths, groups.facts)
        others = members[members != best]
        sims = groups.unit[others] @ groups.unit[best]
        order = np.argsort(-sims, kind="stable")
        others, sims = others[order], sims[order]
        direct = grade_pairs(np.stack([others, np.full(len(others), best)], 1), groups.unit, groups.facts,
                             thresholds)[0] if len(others) else np.zeros(0, np.int8)
        member_grade = [""] + [grade_name(max(int(r), int(groups.grade[g]))) for r in direct]
        if len(members) <= PAIRS_LISTED:
            a, b = np.triu_indices(len(members), 1)
            pairs = np.stack([members[a], members[b]], 1)
            rank, cos = grade_pairs(pairs, groups.unit, groups.facts, thresholds)
        else:
            inside = np.isin(groups.pairs[:, 0], members)
            pairs, rank, cos = groups.pairs[inside], groups.pair_grade[inside], groups.pair_cosine[inside]
        out.append(DuplicateGroup(grade_name(int(groups.grade[g])), [best, *others.tolist()], member_grade,
                                  [1.0, *sims.astype(float).tolist()],
                                  [(int(i), int(j), grade_name(int(r)), float(c)) for (i, j), r, c in zip(pairs, rank, cos)]))
    return out


# --- outliers -------------------------------------------------------------------------------------

OUTLIER_K = 5


def outlier_scores(sim: np.ndarray, k: int = OUTLIER_K) -> np.ndarray:
    """Outlier score per photo: the cosine distance (1 − cosine) to its ``k``-th nearest neighbour
    (the k-NN distance of Ramaswamy et al. 2000): high when even the k-th most similar photo is far.

    Args:
        sim: float32 (N, m) neighbour cosines, most similar first (:func:`find_duplicates`).

    Returns:
        float32 (N,) in [0, 2]; with fewer than ``k`` neighbours, the farthest one's.
    """
    if sim.shape[1] == 0:
        return np.zeros(len(sim), np.float32)
    return (1.0 - sim[:, min(k, sim.shape[1]) - 1]).astype(np.float32)
