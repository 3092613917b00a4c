"""Stage 1: images → feature vectors, kept in an incremental on-disk store per network.

Layout in ``<vector_dir>/<object_name>/``:

- ``failures.csv``: ``path,reason`` for every image the last run could not read.
- ``<network>/index.json`` (format 3): ``{"format": 3, "extractor": {...}, "dim": D,
  "shards": [token, ...]}``.
- ``<network>/<token>.json``: ``{"images": [[path, size_bytes, mtime_ns], ...]}`` — row i of the
  shard's arrays is ``images[i]``; paths are relative to ``paths.image_dir`` with ``/``.
- ``<network>/<token>.<array>.npy``: ``features`` float32 (n, D), C order; classifier networks
  also keep ``top_classes`` int16 (n, 20) and ``top_scores`` float32 (n, 20).

``extract`` appends one shard per batch (arrays, then rows, then ``index.json``, each replaced
atomically), so ``kill -9`` loses at most the batch in flight and memory does not grow with the
collection. When a path appears in several shards the last one wins. A completed run compacts
the shards into one, sorted by path, streaming rows through a memory-mapped output, so after it
the store loads lazily (memory-mapped). Each network's vectors are stored apart: switching or
combining networks never recomputes what is there, and vectors of other weights are never mixed.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, atomic_write_csv, atomic_write_text, exclusive_lock
from .config import Config
from .errors import ImgclustError
from .extractor import FEATURE_DIMS, INPUT_SIZES, TOP_STORED
from .images import ImageFile, list_images, open_rgb, square

FORMAT = 3
INDEX = "index.json"
FAILURES = "failures.csv"
COMPACT_CHUNK = 4096  # rows copied at a time when compacting: bounds memory
# What each network's store keeps per image: name → (shape, dtype); see extractor.Network.run.
OUTPUTS = {name: {"features": ((dim,), np.float32)} for name, dim in FEATURE_DIMS.items()}
OUTPUTS["efficientnet_lite0"].update({"top_classes": ((TOP_STORED,), np.int16), "top_scores": ((TOP_STORED,), np.float32)})


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


def _shard_arrays(store_dir: Path, token: str, names) -> dict[str, np.ndarray]:
    return {name: np.load(store_dir / f"{token}.{name}.npy", mmap_mode="r") for name in names}


def _live_rows(store_dir: Path, index: dict) -> dict[str, tuple[int, int, ImageFile]]:
    """path → (shard number, row, image) for the newest row of every path."""
    live = {}
    for s, token in enumerate(index["shards"]):
        rows = json.loads((store_dir / f"{token}.json").read_text())["images"]
        for r, (path, size, mtime) in enumerate(rows):
            live[path] = (s, r, ImageFile(path, size, mtime))
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

    def compact(self, keep: set[str], outputs: dict) -> None:
        """Rewrite the store as one shard holding the newest row of every path in ``keep``,
        sorted by path; copies ``COMPACT_CHUNK`` rows at a time through memory-mapped files."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        index = {"shards": self.shards}
        live = _live_rows(self.store_dir, index)
        order = sorted(p for p in live if p in keep)
        sources = [_shard_arrays(self.store_dir, t, outputs) for t in self.shards]
        token = uuid.uuid4().hex[:12]
        for name, (shape, dtype) in outputs.items():
            with atomic_path(self.store_dir / f"{token}.{name}.npy") as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(order), *shape))
                for start in range(0, len(order), COMPACT_CHUNK):
                    chunk = order[start : start + COMPACT_CHUNK]
                    out[start : start + len(chunk)] = [sources[live[p][0]][name][live[p][1]] for p in chunk]
                out.flush()
                del out
        atomic_write_text(self.store_dir / f"{token}.json",
                          json.dumps({"images": [[p, live[p][2].size, live[p][2].mtime_ns] for p in order]}))
        self.shards = [token]
        self._write_index()
        drop_unlisted(self.store_dir, self.shards)


def drop_unlisted(store_dir: Path, shards: list[str]) -> None:
    """Delete shard files the index does not list: superseded shards and a crash's leftovers."""
    keep = set(shards)
    for old in [*store_dir.glob("*.npy"), *store_dir.glob("*.json")]:
        if old.name != INDEX and old.name.split(".")[0] not in keep:
            old.unlink(missing_ok=True)


def _safe_load(path: Path, sizes: tuple[int, ...]):
    """Network inputs of one image, size → uint8 array; or the reason it cannot be read."""
    try:
        im = open_rgb(path, max(sizes))
        return {s: square(im, s) for s in sizes}
    except Exception as exc:  # any decoder error means "skip this file and say why"
        return " ".join(f"{type(exc).__name__}: {exc}".split())


def decode_threads() -> int:
    """Worker threads decoding ahead of the network: on CPU one (the network already uses every
    core; more decoders only slow its threads, measured in docs/performance.md), with a GPU one per
    core. ``IMGCLUST_DECODE_THREADS`` overrides."""
    from .extractor import gpu_count

    default = (os.cpu_count() or 2) if gpu_count() else 1
    return int(os.environ.get("IMGCLUST_DECODE_THREADS", default))


def _prefetched_batches(files: list[ImageFile], image_dir: Path, sizes: tuple[int, ...], batch_size: int):
    """Yield (files, inputs-or-error-strings) per batch; the next batch decodes in worker threads
    while the caller runs the networks on the current one (Pillow releases the GIL while decoding)."""
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=decode_threads()) as pool:
        def submit(batch):
            return [pool.submit(_safe_load, image_dir / f.path, sizes) for f in batch]

        pending = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            current, pending = pending, (submit(batches[i + 1]) if i + 1 < len(batches) else [])
            yield batch, [future.result() for future in current]


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
    feature_dir: Path
    load_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Images through the networks per second of extraction, network start-up excluded."""
        busy = self.seconds - self.load_seconds
        return self.computed / busy if busy > 0 else 0.0

    def line(self) -> str:
        rate = (f" ({self.images_per_second:.1f} images/s after {self.load_seconds:.1f} s loading the network)"
                if self.computed else "")
        failed = f", {self.failed} failed (listed in {self.feature_dir / FAILURES})" if self.failed else ", 0 failed"
        return (f"extract: {self.total} images in store: {self.computed} computed, {self.reused} reused, "
                f"{self.removed} removed{failed}; {self.seconds:.1f} s{rate}")


def _plan(config: Config, name: str, identity: dict, files: list[ImageFile], current: set[str]):
    """What one network must compute: (writer, images to compute, store needs compaction,
    paths of removed images)."""
    store_dir = config.feature_dir / name
    index = _read_index(store_dir)
    same = index is not None and index["extractor"] == identity  # other weights: never mix, start over
    live = {f for _, _, f in _live_rows(store_dir, index).values()} if same else set()
    removed = {f.path for f in live} - current
    todo = {f for f in files if f not in live}
    dim = OUTPUTS[name]["features"][0][0]
    dirty = not same or bool(removed) or len(index["shards"]) != 1 or len(live) != len(files) - len(todo)
    return _StoreWriter(store_dir, identity, dim, keep_previous=same), todo, dirty, removed


def extract_features(config: Config, networks: dict[str, tuple[Callable, dict]], progress: bool = True,
                     runner: Callable | None = None) -> ExtractSummary:
    """Bring the stores of ``networks`` up to date with ``paths.image_dir``, in one pass.

    Only new or changed images (by size and modification time) go through a network; each image is
    decoded once for all networks; each batch is saved as it is done (a crash loses at most the
    batch in flight); rows of deleted images are dropped; unreadable files are skipped and listed
    in ``failures.csv``. Holds the collection's lock for the whole run.

    Args:
        config: validated config.
        networks: network name (``inception_v3``, ``efficientnet_lite0``) → ``(loader, identity)``;
            ``loader()`` returns an :class:`~image_clustering.extractor.Network` and is called only
            when that network has work; ``identity`` (JSON-able) names network and weights: vectors
            from another identity are recomputed.
        progress: show a progress bar (on a terminal).
        runner: computes the images elsewhere instead of in this process:
            ``runner(jobs, todo, image_dir, batch_size, progress)`` gets the :class:`_Job` of each
            network and the sorted images to compute, appends rows with ``job.writer.append``
            (counting them in ``job.computed``) and returns the failures ``[(path, reason)]``; see
            :func:`image_clustering.distributed.dask_runner`. The lock, planning, compaction and
            ``failures.csv`` stay here.

    Raises:
        ImgclustError: the image folder is missing or holds no images, or another run holds the lock.
    """
    start = time.perf_counter()
    image_dir, feature_dir = config.paths.image_dir, config.feature_dir
    files = list_images(image_dir)
    if not files:
        raise ImgclustError(f"paths.image_dir: no images (jpg, png, gif, webp, bmp, tif) found in {image_dir}")
    current = {f.path for f in files}
    with exclusive_lock(feature_dir, "extract"):
        jobs, removed = [], set()
        for name, (loader, identity) in networks.items():
            writer, todo, dirty, gone = _plan(config, name, identity, files, current)
            jobs.append(_Job(name, loader, writer, todo, dirty))
            removed |= gone
        todo = sorted(set().union(*(job.todo for job in jobs)), key=lambda f: f.path)
        failures: list[tuple[str, str]] = []
        load_seconds = 0.0
        if todo and runner is not None:  # elsewhere (image_clustering.distributed): it appends the shards
            failures = runner(jobs, todo, image_dir, config.model.batch_size, progress)
        elif todo:
            for job in jobs:
                if job.todo:
                    job.network = job.loader()
                    warm_up = np.zeros((config.model.batch_size, job.network.input_size, job.network.input_size, 3), np.uint8)
                    job.network.run(warm_up)  # the first call traces the graph: part of building the network
            load_seconds = time.perf_counter() - start
            failures = _extract_batches(jobs, todo, image_dir, config.model.batch_size, progress)
        failed = {path for path, _ in failures}
        for job in jobs:
            if job.dirty or job.computed:
                job.writer.compact(current - failed, OUTPUTS[job.name])
            else:
                drop_unlisted(job.writer.store_dir, job.writer.shards)
        atomic_write_csv(feature_dir / FAILURES, ["path", "reason"], failures)
    stored = len(current - failed)
    return ExtractSummary(stored, len(todo) - len(failures), len(files) - len(todo), len(removed), len(failures),
                          time.perf_counter() - start, feature_dir, load_seconds)


def _extract_batches(jobs: list[_Job], todo: list[ImageFile], image_dir: Path, batch_size: int,
                     progress: bool) -> list[tuple[str, str]]:
    """Run every job's network over the images it needs, one shard per batch; returns failures."""
    failures = []
    sizes = tuple(sorted({INPUT_SIZES[job.name] for job in jobs if job.todo}))
    with tqdm(total=len(todo), unit="img", desc="extract", disable=not progress or None) as bar:
        for batch, inputs in _prefetched_batches(todo, image_dir, sizes, batch_size):
            failures += [(f.path, x) for f, x in zip(batch, inputs) if isinstance(x, str)]
            for job in jobs:
                ok = [(f, x) for f, x in zip(batch, inputs) if isinstance(x, dict) and f in job.todo]
                if ok:
                    pixels = np.stack([x[job.network.input_size] for _, x in ok])
                    job.writer.append([f for f, _ in ok], _run_fixed_shape(job.network, pixels, batch_size))
                    job.computed += len(ok)
            bar.update(len(batch))
    return failures
