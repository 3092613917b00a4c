"""Stage 1: images → feature vectors, kept in an incremental on-disk store per network.

Layout in ``<vector_dir>/<object_name>/``:

- ``failures.csv``: ``path,reason,size,mtime_ns,ctime_ns,decoders`` for every image the last run
  could not read (non-regular files named like photos included, without the state columns); an
  image listed there is not tried again until it changes or the decoders do.
- ``<network>/index.json`` (format 3): ``{"format": 3, "extractor": {...}, "dim": D,
  "shards": [token, ...]}``.
- ``<network>/<token>.json``: ``{"images": [[path, size_bytes, mtime_ns], ...]}`` — row i of the
  shard's arrays is ``images[i]``; paths are relative to ``paths.image_dir`` with ``/``; with
  ``model.content_hash`` also ``"hashes": [blake2b hex or null, ...]`` (absent in older stores).
- ``<network>/<token>.<array>.npy``: ``features`` float32 (n, D), C order; classifier networks
  also keep ``top_classes`` int16 (n, 20) and ``top_scores`` float32 (n, 20).

``extract`` appends one shard per batch (arrays, then rows, then ``index.json``, each replaced
atomically, in a thread beside the network), so ``kill -9`` loses at most the batches in flight
(one computing, one being stored) and memory does not grow with the collection. When a path appears
in several shards the last one wins. A completed run compacts the shards into one, sorted by path,
streaming rows into a preallocated file (no writable memory map: a full disk is an error naming the
file, not SIGBUS), so after it the store loads lazily (memory-mapped). Each network's vectors are
stored apart: switching or combining networks never recomputes what is there, and vectors of other
weights are never mixed.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .atomic import atomic_path, atomic_write_csv, atomic_write_text, exclusive_lock, read_csv
from .config import Config
from .errors import ImgclustError
from .images import ImageFile, open_rgb, scan_images, square
from .networks import NETWORKS, load_network
from .progress import progress_bar

FORMAT = 3
INDEX = "index.json"
COMPACT_CHUNK = 4096  # rows copied at a time when compacting: bounds memory


@dataclass
class FeatureStore:
    """Outputs of one network for one collection.

    Attributes:
        images: one :class:`ImageFile` per row, sorted by path.
        arrays: name → array with one row per image (memory-mapped when the store is compacted);
            ``features`` is float32 (N, D).
        extractor: identifies the network and weights that made the rows.
        token: changes with every write; caches derived from the store key on it.
    """

    images: list[ImageFile]
    arrays: dict[str, np.ndarray]
    extractor: dict
    token: str

    @property
    def vectors(self) -> np.ndarray:
        """float32 (N, D) feature vectors."""
        return self.arrays["features"]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.images]


def _read_index(store_dir: Path) -> dict | None:
    path = store_dir / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImgclustError(f"{path}: feature store unreadable ({exc}); delete the folder to rebuild it") from None
    if index.get("format") != FORMAT:
        raise ImgclustError(f"{path}: feature store format {index.get('format')!r}, expected {FORMAT}; "
                            "delete the folder to rebuild it")
    return index


@contextmanager
def _reading(path: Path):
    """Turn a damaged store file's error into one line naming that file."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImgclustError(f"{path}: feature store file unreadable ({exc!r}); delete the folder {path.parent} "
                            "to rebuild it") from None


def _shard_arrays(store_dir: Path, token: str, names) -> dict[str, np.ndarray]:
    arrays = {}
    for name in names:
        path = store_dir / f"{token}.{name}.npy"
        with _reading(path):
            arrays[name] = np.load(path, mmap_mode="r")
    return arrays


def _live_rows(store_dir: Path, index: dict) -> dict[str, tuple[int, int, ImageFile, str | None]]:
    """path → (shard number, row, image, content hash or None) for the newest row of every path."""
    live = {}
    for s, token in enumerate(index["shards"]):
        with _reading(store_dir / f"{token}.json"):
            doc = json.loads((store_dir / f"{token}.json").read_text())
            hashes = doc.get("hashes") or [None] * len(doc["images"])  # shards before model.content_hash have none
            for r, ((path, size, mtime), digest) in enumerate(zip(doc["images"], hashes)):
                live[path] = (s, r, ImageFile(path, size, mtime), digest)
    return live


def load_store(store_dir: Path) -> FeatureStore | None:
    """Open the store of one network, or None when there is none yet. A compacted store (one shard,
    the normal state after ``extract``) is memory-mapped; otherwise rows are gathered in memory.

    Raises:
        ImgclustError: the store is unreadable or inconsistent.
    """
    index = _read_index(store_dir)
    if index is None:
        return None
    try:
        live = _live_rows(store_dir, index)
        shards = [_shard_arrays(store_dir, t, _array_names(store_dir, t)) for t in index["shards"]]
    except (OSError, ValueError, KeyError) as exc:
        raise ImgclustError(f"{store_dir / INDEX}: feature store unreadable ({exc}); delete the folder to rebuild it") from None
    order = sorted(live)
    images = [live[p][2] for p in order]
    if not shards:
        return FeatureStore([], {"features": np.zeros((0, index["dim"]), np.float32)}, index["extractor"], "empty")
    names = list(shards[0])
    if len(shards) == 1 and [live[p][1] for p in order] == list(range(len(shards[0]["features"]))):
        arrays = shards[0]
    else:
        arrays = {n: np.stack([shards[live[p][0]][n][live[p][1]] for p in order]) if order
                  else shards[0][n][:0] for n in names}
    return FeatureStore(images, arrays, index["extractor"], "+".join(index["shards"]))


def _array_names(store_dir: Path, token: str) -> list[str]:
    return sorted(p.name[len(token) + 1 : -4] for p in store_dir.glob(f"{token}.*.npy"))


class _StoreWriter:
    """Appends shards to one network's store and compacts it."""

    def __init__(self, store_dir: Path, extractor: dict, dim: int, keep_previous: bool):
        self.store_dir, self.extractor, self.dim = store_dir, extractor, dim
        index = _read_index(store_dir) if keep_previous else None
        self.shards: list[str] = index["shards"] if index else []

    def _write_index(self) -> None:
        atomic_write_text(self.store_dir / INDEX, json.dumps(
            {"format": FORMAT, "extractor": self.extractor, "dim": self.dim, "shards": self.shards}))

    def _write_shard(self, images: list[ImageFile], arrays: dict[str, np.ndarray]) -> str:
        token = uuid.uuid4().hex[:12]
        for name, array in arrays.items():
            with atomic_path(self.store_dir / f"{token}.{name}.npy") as tmp:
                np.save(tmp, np.ascontiguousarray(array))
        atomic_write_text(self.store_dir / f"{token}.json",
                          json.dumps({"images": [[f.path, f.size, f.mtime_ns] for f in images]}))
        return token

    def append(self, images: list[ImageFile], arrays: dict[str, np.ndarray]) -> None:
        """Add rows for ``images`` (arrays with one row each) as a new shard, durably."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.shards.append(self._write_shard(images, arrays))
        self._write_index()

    def compact(self, keep: set[str], outputs: dict, hashes: dict[str, str | None] | None = None) -> None:
        """Rewrite the store as one shard holding the newest row of every path in ``keep``,
        sorted by path, copying ``COMPACT_CHUNK`` rows at a time. On failure (a full disk) the
        store stays as it was and no temporary file is left. ``hashes`` (path → content hash, from
        ``model.content_hash``) are recorded with the rows; without them rows keep the hash they have.

        Raises:
            OSError: writing failed; ``filename`` is the shard file being written.
        """
        self.store_dir.mkdir(parents=True, exist_ok=True)
        index = {"shards": self.shards}
        live = _live_rows(self.store_dir, index)
        order = sorted(p for p in live if p in keep)
        sources = [_shard_arrays(self.store_dir, t, outputs) for t in self.shards]
        token = uuid.uuid4().hex[:12]
        for name, (shape, dtype) in outputs.items():
            chunks = ([sources[live[p][0]][name][live[p][1]] for p in order[start : start + COMPACT_CHUNK]]
                      for start in range(0, len(order), COMPACT_CHUNK))
            with atomic_path(self.store_dir / f"{token}.{name}.npy") as tmp:
                write_npy(tmp, (len(order), *shape), dtype, chunks)
        doc = {"images": [[p, live[p][2].size, live[p][2].mtime_ns] for p in order]}
        digests = [(hashes or {}).get(p) or live[p][3] for p in order]
        if any(digests):
            doc["hashes"] = digests
        atomic_write_text(self.store_dir / f"{token}.json", json.dumps(doc))
        self.shards = [token]
        self._write_index()
        drop_unlisted(self.store_dir, self.shards)


def write_npy(path: Path, shape: tuple[int, ...], dtype, chunks) -> None:
    """Write an ``.npy`` file of ``shape`` and ``dtype`` from ``chunks`` (arrays or lists of rows,
    in order, together exactly ``shape[0]`` rows) with ordinary writes, its space reserved first.

    Not through a writable memory map: on a full disk, writing into a sparse mapped file kills the
    process with SIGBUS (no error, a hidden temporary file left behind); reserving the space
    (``posix_fallocate``) fails at once with ENOSPC instead, and a plain write would too.

    Raises:
        OSError: ENOSPC and the like.
    """
    dtype = np.dtype(dtype)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
        f.flush()
        try:
            os.posix_fallocate(f.fileno(), 0, f.tell() + int(np.prod(shape)) * dtype.itemsize)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # not supported here: just write
                raise
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).data)


def drop_unlisted(store_dir: Path, shards: list[str]) -> None:
    """Delete shard files the index does not list: superseded shards and a crash's leftovers."""
    keep = set(shards)
    for old in [*store_dir.glob("*.npy"), *store_dir.glob("*.json")]:
        if old.name != INDEX and old.name.split(".")[0] not in keep:
            old.unlink(missing_ok=True)


def _safe_load(path: Path, sizes: tuple[int, ...], resize: str = "pad"):
    """Network inputs of one image, size → uint8 array (:func:`~image_clustering.images.square`
    with ``resize``); or the reason it cannot be read."""
    try:
        im = open_rgb(path, max(sizes))
        return {s: square(im, s, resize) for s in sizes}
    except Exception as exc:  # any decoder error means "skip this file and say why"
        return " ".join(f"{type(exc).__name__}: {exc}".split())


def decode_threads() -> int:
    """Worker threads decoding ahead of the network: on CPU one (the network already uses every
    core; more decoders only slow its threads, measured in docs/performance.md), with a GPU one per
    core. ``IMGCLUST_DECODE_THREADS`` overrides."""
    from .extractor import gpu_count

    default = (os.cpu_count() or 2) if gpu_count() else 1
    return int(os.environ.get("IMGCLUST_DECODE_THREADS", default))


def _prefetched_batches(files: list[ImageFile], image_dir: Path, sizes: tuple[int, ...], batch_size: int,
                        resize: str):
    """Yield (files, inputs-or-error-strings) per batch; the next batch decodes in worker threads
    while the caller runs the networks on the current one (Pillow releases the GIL while decoding)."""
    from . import decode
    from .extractor import gpu_count

    processes = decode.workers(gpu_count)
    if processes:  # worker processes (decode.py), several batches ahead: with a GPU, or when asked
        yield from decode.process_batches(files, image_dir, sizes, batch_size, partial(_safe_load, resize=resize), processes)
        return
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    pool = ThreadPoolExecutor(max_workers=decode_threads())
    try:
        def submit(batch):
            return [pool.submit(_safe_load, image_dir / f.path, sizes, resize) for f in batch]

        pending = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            current, pending = pending, (submit(batches[i + 1]) if i + 1 < len(batches) else [])
            yield batch, [future.result() for future in current]
    finally:
        # On Ctrl-C (or any error) drop the batch queued ahead instead of decoding it first, as the
        # executor's own exit would; a decode in progress finishes on its own.
        pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Job:
    """One network's store being brought up to date."""

    name: str
    loader: Callable
    writer: _StoreWriter
    todo: set[ImageFile]
    dirty: bool  # rows to drop or shards to merge even if nothing is computed
    network: object = None
    computed: int = 0


def _run_fixed_shape(network, batch: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Run a short batch padded to ``batch_size`` rows: one input shape means TensorFlow traces
    the network once instead of once per odd batch size."""
    n = len(batch)
    if n < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
    return {name: array[:n] for name, array in network.run(batch).items()}


@dataclass
class ExtractSummary:
    """What one ``extract`` run did. ``computed`` images went through at least one network;
    ``seconds`` is wall time, ``load_seconds`` the part spent building networks."""

    total: int
    computed: int
    reused: int
    removed: int
    failed: int
    seconds: float
    failures_csv: Path
    load_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Images through the networks per second of extraction, network start-up excluded."""
        busy = self.seconds - self.load_seconds
        return self.computed / busy if busy > 0 else 0.0

    def line(self) -> str:
        rate = (f" ({self.images_per_second:.1f} images/s after {self.load_seconds:.1f} s loading the network)"
                if self.computed else "")
        failed = f", {self.failed} failed (listed in {self.failures_csv})" if self.failed else ", 0 failed"
        return (f"extract: {self.total} images in store: {self.computed} computed, {self.reused} reused, "
                f"{self.removed} removed{failed}; {self.seconds:.1f} s{rate}")


def _plan(config: Config, name: str, identity: dict, files: list[ImageFile], current: set[str],
          hashes: dict[str, str | None] | None = None):
    """What one network must compute: (writer, images to compute, store needs compaction,
    paths of removed images). With ``hashes`` (path → content hash) a row whose recorded hash
    differs is computed again; a row without one (stored before) takes the current hash."""
    store_dir = config.layout.store_dir(name)
    index = _read_index(store_dir)
    same = index is not None and index["extractor"] == identity  # other weights: never mix, start over
    rows = _live_rows(store_dir, index) if same else {}
    live = {f for _, _, f, _ in rows.values()}
    removed = {f.path for f in live} - current
    todo = {f for f in files if f not in live}
    unhashed = False
    if hashes is not None:
        recorded = {f.path: digest for _, _, f, digest in rows.values()}
        todo |= {f for f in files if recorded.get(f.path) and recorded[f.path] != hashes.get(f.path)}
        unhashed = any(f in live and not recorded[f.path] and hashes.get(f.path) for f in files)
    dim = NETWORKS[name].dim
    # rows of removed or changed images to drop, shards to merge, or hashes to record
    dirty = not same or len(index["shards"]) != 1 or bool(live - set(files)) or unhashed
    return _StoreWriter(store_dir, identity, dim, keep_previous=same), todo, dirty, removed


def content_hash(path: Path) -> str | None:
    """BLAKE2b (128-bit) of the file's bytes, hex; None when it cannot be read (decoding will say why)."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


FAILURE_COLUMNS = ["path", "reason", "size", "mtime_ns", "ctime_ns", "decoders"]


def _decoders() -> str:
    """What decodes photos here: a failure is retried when this changes (pillow-heif installed…)."""
    import importlib.util

    import PIL

    return f"Pillow {PIL.__version__}" + (" pillow-heif" if importlib.util.find_spec("pillow_heif") else "")


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime_ns, ctime_ns) of what ``path`` points to, else of the link itself (broken
    link); ctime moves on chmod, chown and rewrites, so a fixed permission is retried too."""
    for stat_ in (os.stat, os.lstat):
        try:
            st = stat_(path)
            return st.st_size, st.st_mtime_ns, st.st_ctime_ns
        except OSError:
            continue
    return None


def read_failures(path: Path) -> dict[str, dict[str, str]]:
    """``failures.csv`` as path → its row (column → cell); empty when there is none or it cannot
    be read (the next run then retries every failed file)."""
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            header, *body = read_csv(f)  # the formula escaping of our CSV writer undone
    except (OSError, ValueError, csv.Error):
        return {}
    if "path" not in header:
        return {}
    return {row[header.index("path")]: dict(zip(header, row)) for row in body}


def _unchanged_failures(path: Path, image_dir: Path, candidates: set[ImageFile]) -> dict[ImageFile, str]:
    """The images of ``candidates`` that failed last time and have not changed since (same size,
    modification and status-change time, same decoders), with the reason they failed: not worth
    trying again (nor loading a network for)."""
    rows = read_failures(path)
    decoders, known = _decoders(), {}
    for image in candidates:
        row = rows.get(image.path)
        if not row or row.get("decoders") != decoders:
            continue
        try:
            recorded = tuple(int(row[k]) for k in ("size", "mtime_ns", "ctime_ns"))
        except (KeyError, TypeError, ValueError):  # a row without state (hand-edited…): retry
            continue
        key = _stat_key(image_dir / image.path)
        if key is not None and (image.size, image.mtime_ns, key[2]) == recorded:
            known[image] = row["reason"]
    return known


def extract_features(config: Config, networks: dict[str, tuple[Callable, dict]], progress: bool = True,
                     runner: Callable | None = None) -> ExtractSummary:
    """Bring the stores of ``networks`` up to date with ``paths.image_dir``, in one pass.

    Only new or changed images (by size and modification time, and with ``model.content_hash`` by
    a hash of their bytes) go through a network; each image is
    decoded once for all networks; each batch is saved as it is done (a crash loses at most the
    batches in flight: one computing, one being stored); rows of deleted images are dropped;
    unreadable files are skipped and listed in ``failures.csv`` (and not tried again while they and
    the decoders stay the same); files named like photos that are not regular files (FIFO, socket,
    device) are listed there unopened. Holds the collection's lock for the whole run; Ctrl-C stops
    it within about one image decode.

    Args:
        config: validated config.
        networks: network name (``inception_v3``, ``efficientnet_lite0``) → ``(loader, identity)``;
            ``loader()`` returns an :class:`~image_clustering.extractor.Network` and is called only
            when that network has work; ``identity`` (JSON-able) names network and weights: vectors
            from another identity are recomputed.
        progress: show a progress bar (on a terminal).
        runner: computes the images elsewhere instead of in this process:
            ``runner(jobs, todo, image_dir, batch_size, progress, resize)`` gets the :class:`_Job` of each
            network and the sorted images to compute, appends rows with ``job.writer.append``
            (counting them in ``job.computed``) and returns the failures ``[(path, reason)]``; see
            :func:`image_clustering.distributed.dask_runner`. The lock, planning, compaction and
            ``failures.csv`` stay here.

    Raises:
        ImgclustError: the image folder is missing or holds no images, or another run holds the lock.
    """
    start = time.perf_counter()
    image_dir, feature_dir = config.paths.image_dir, config.feature_dir
    files, rejected = scan_images(image_dir)
    if not files:
        raise ImgclustError(f"paths.image_dir: no images (jpg, png, gif, webp, bmp, tif) found in {image_dir}")
    current = {f.path for f in files}
    with exclusive_lock(feature_dir, "extract"):
        # model.content_hash: also notice a photo replaced by one of the same size and time
        hashes = {f.path: content_hash(image_dir / f.path) for f in files} if config.model.content_hash else None
        jobs, removed = [], set()
        for name, (loader, identity) in networks.items():
            writer, todo, dirty, gone = _plan(config, name, identity, files, current, hashes)
            jobs.append(_Job(name, loader, writer, todo, dirty))
            removed |= gone
        # An unchanged file that failed before fails again: skip it rather than load a network for it.
        known = _unchanged_failures(config.layout.failures_csv, image_dir, set().union(*(job.todo for job in jobs)))
        for job in jobs:
            job.todo -= known.keys()
        todo = sorted(set().union(*(job.todo for job in jobs)), key=lambda f: f.path)
        new_failures: list[tuple[str, str]] = []
        load_seconds = 0.0
        if todo and runner is not None:  # elsewhere (image_clustering.distributed): it appends the shards
            new_failures = runner(jobs, todo, image_dir, config.model.batch_size, progress, config.model.resize)
        elif todo:
            for job in jobs:
                if job.todo:
                    job.network = job.loader()
                    warm_up = np.zeros((config.model.batch_size, job.network.input_size, job.network.input_size, 3), np.uint8)
                    job.network.run(warm_up)  # the first call traces the graph: part of building the network
            load_seconds = time.perf_counter() - start
            new_failures = _extract_batches(jobs, todo, image_dir, config.model.batch_size, progress, config.model.resize)
        failed = {path for path, _ in new_failures} | {f.path for f in known}
        for job in jobs:
            if job.dirty or job.computed:
                job.writer.compact(current - failed, NETWORKS[job.name].outputs, hashes)
            else:
                drop_unlisted(job.writer.store_dir, job.writer.shards)
        _write_failures(config.layout.failures_csv, image_dir, files, known, new_failures, rejected)
    stored = len(current - failed)
    return ExtractSummary(stored, len(todo) - len(new_failures), len(files) - len(todo) - len(known), len(removed),
                          len(failed) + len(rejected), time.perf_counter() - start, config.layout.failures_csv, load_seconds)


def _write_failures(path: Path, image_dir: Path, files: list[ImageFile], known: dict[ImageFile, str],
                    new: list[tuple[str, str]], rejected: list[tuple[str, str]]) -> None:
    """``failures.csv``: every image that could not be read, with the reason and what identifies
    the file's state (see :func:`_unchanged_failures`); non-regular files carry no state."""
    by_path, decoders = {f.path: f for f in files}, _decoders()
    rows = [[f.path, reason, f.size, f.mtime_ns, (_stat_key(image_dir / f.path) or (0, 0, ""))[2], decoders]
            for f, reason in [*known.items(), *((by_path[p], r) for p, r in new)]]
    rows += [[path, reason, "", "", "", ""] for path, reason in rejected]
    atomic_write_csv(path, FAILURE_COLUMNS, sorted(rows, key=lambda row: row[0]))


def _extract_batches(jobs: list[_Job], todo: list[ImageFile], image_dir: Path, batch_size: int,
                     progress: bool, resize: str) -> list[tuple[str, str]]:
    """Run every job's network over the images it needs, one shard per batch; returns failures."""
    failures = []
    sizes = tuple(sorted({NETWORKS[job.name].input_size for job in jobs if job.todo}))

    def store(shards):
        for writer, files, arrays in shards:
            writer.append(files, arrays)

    # Storing runs in a thread while the network computes the next batch (with a GPU, the fsyncs
    # would otherwise idle it); at most one batch waits to be stored, so a crash loses at most two.
    with progress_bar(total=len(todo), unit="photos", desc="extract", enabled=progress) as bar, \
            ThreadPoolExecutor(max_workers=1) as storer:
        stored = None
        for batch, inputs in _prefetched_batches(todo, image_dir, sizes, batch_size, resize):
            failures += [(f.path, x) for f, x in zip(batch, inputs) if isinstance(x, str)]
            shards = []
            for job in jobs:
                ok = [(f, x) for f, x in zip(batch, inputs) if isinstance(x, dict) and f in job.todo]
                if ok:
                    pixels = np.stack([x[job.network.input_size] for _, x in ok])
                    shards.append((job.writer, [f for f, _ in ok], _run_fixed_shape(job.network, pixels, batch_size)))
                    job.computed += len(ok)
            if stored is not None:
                stored.result()  # the previous batch is on disk (or its error is raised here)
            stored = storer.submit(store, shards)
            bar.update(len(batch))
        if stored is not None:
            stored.result()
    return failures


@dataclass
class Vectors:
    """Feature vectors of a list of photos (:func:`extract_vectors`).

    Attributes:
        paths: the photos that could be read, in the order given.
        vectors: float32 array of shape (n_paths, n_features): one network's vectors as it gives
            them; several networks' each L2-normalised, then concatenated (as the workflow does).
        failures: path → reason, for the photos that could not be read.
    """

    paths: list[Path]
    vectors: np.ndarray
    failures: dict[Path, str]


def extract_vectors(image_paths, networks=("inception_v3", "efficientnet_lite0"), model_dir="models",
                    batch_size: int = 32, progress: bool = False, resize: str = "pad") -> Vectors:
    """Photos → feature vectors, with no store, no config and no cache: the library call behind
    ``imgclust extract`` for a notebook.

    Weights are fetched (checksum-verified) into ``model_dir`` when they are not there yet; each
    photo is decoded as :func:`image_clustering.images.open_rgb` does (EXIF orientation, any mode,
    size limit) and brought to each network's input as ``resize`` says
    (:func:`image_clustering.images.square`).

    Args:
        image_paths: photo files (str or Path).
        networks: network names (``inception_v3``, ``efficientnet_lite0``, ``vgg16``, ``resnet50``).
        model_dir: folder of the verified weights.
        batch_size: images per network call.

    Raises:
        ImgclustError: weights missing and not obtainable.
    """
    from .embedding import combine
    from .weights import download_weights

    loaded = []
    for name in networks:
        manifest = download_weights(name, NETWORKS[name].default_source, Path(model_dir))
        loaded.append(load_network(manifest))
    # Absolute or relative, each path is used as given: image_dir "" leaves it unchanged.
    files = [ImageFile(os.fspath(p), 0, 0) for p in image_paths]
    sizes = tuple(sorted({n.input_size for n in loaded}))
    rows, blocks, failures = [], [[] for _ in loaded], {}
    with progress_bar(total=len(files), unit="photos", desc="extract", enabled=progress) as bar:
        for batch, inputs in _prefetched_batches(files, Path(""), sizes, batch_size, resize):
            ok = [(f, x) for f, x in zip(batch, inputs) if isinstance(x, dict)]
            failures.update({Path(f.path): x for f, x in zip(batch, inputs) if isinstance(x, str)})
            if ok:
                rows += [Path(f.path) for f, _ in ok]
                for block, network in zip(blocks, loaded):
                    pixels = np.stack([x[network.input_size] for _, x in ok])
                    block.append(_run_fixed_shape(network, pixels, batch_size)["features"])
            bar.update(len(batch))
    arrays = [np.concatenate(b) if b else np.zeros((0, n.dim), np.float32) for b, n in zip(blocks, loaded)]
    return Vectors(rows, combine(arrays), failures)
