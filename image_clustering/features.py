"""Stage 1: images → feature vectors, kept in an incremental on-disk store per network.

Layout in ``<vector_dir>/<object_name>/``:

- ``failures.csv``: ``path,reason`` for every image the last run could not read.
- ``<network>/index.json`` (format 2): ``{"format": 2, "extractor": {...}, "dim": D,
  "arrays": {"features": "features-<token>.npy", ...}, "images": [[path, size_bytes, mtime_ns], ...]}``
  — row i of every array is ``images[i]``; paths are relative to ``paths.image_dir`` with ``/``.
- ``<network>/features-<token>.npy``: float32 (N, D), C order. Classifier networks also keep
  ``top_classes-<token>.npy`` int16 (N, 20) and ``top_scores-<token>.npy`` float32 (N, 20).

Each network's vectors are stored apart, so switching or combining networks never recomputes what
is there, and vectors of two networks are never mixed. A write saves new arrays under a fresh token,
then replaces ``index.json`` atomically: a crash leaves the previous store readable, and the next
run reuses what was checkpointed (every 1024 images).
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, atomic_write_text
from .config import Config
from .errors import ImgclustError
from .images import ImageFile, list_images, open_rgb, square

FORMAT = 2
INDEX = "index.json"
FAILURES = "failures.csv"
CHECKPOINT_EVERY = 1024  # images; bounds the work a crash can lose
INPUT_SIZES = {"inception_v3": 299, "efficientnet_lite0": 224}
# What each network's store keeps per image: name → (shape, dtype); see extractor.Network.run.
OUTPUTS = {
    "inception_v3": {"features": ((2048,), np.float32)},
    "efficientnet_lite0": {"features": ((1280,), np.float32), "top_classes": ((20,), np.int16),
                           "top_scores": ((20,), np.float32)},
}


@dataclass
class FeatureStore:
    """Outputs of one network for one collection.

    Attributes:
        images: one :class:`ImageFile` per row, sorted by path.
        arrays: name → array with one row per image (memory-mapped when loaded from disk);
            ``features`` is float32 (N, D).
        extractor: identifies the network and weights that made the rows.
        files: name → file name of each array (new names at every write).
    """

    images: list[ImageFile]
    arrays: dict[str, np.ndarray]
    extractor: dict
    files: dict[str, str]

    @property
    def token(self) -> str:
        """Unique per write: caches derived from the store key on it."""
        return self.files["features"]

    @property
    def vectors(self) -> np.ndarray:
        """float32 (N, D) feature vectors."""
        return self.arrays["features"]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.images]


def load_store(store_dir: Path) -> FeatureStore | None:
    """Open the store of one network (memory-mapped), or None when there is none yet.

    Raises:
        ImgclustError: the index is unreadable or does not match its arrays.
    """
    index_path = store_dir / INDEX
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"unknown format {index.get('format')!r}")
        arrays = {name: np.load(store_dir / file, mmap_mode="r") for name, file in index["arrays"].items()}
    except (OSError, ValueError, KeyError) as exc:
        raise ImgclustError(f"{index_path}: feature store unreadable ({exc}); delete the folder to rebuild it") from None
    images = [ImageFile(p, s, m) for p, s, m in index["images"]]
    if any(len(a) != len(images) for a in arrays.values()) or arrays["features"].shape[1:] != (index["dim"],):
        raise ImgclustError(f"{index_path}: {len(images)} images indexed but the arrays differ")
    return FeatureStore(images, arrays, index["extractor"], index["arrays"])


def _write_store(store_dir: Path, images: list[ImageFile], arrays: dict[str, np.ndarray], extractor: dict) -> None:
    token = uuid.uuid4().hex[:12]
    files = {name: f"{name}-{token}.npy" for name in arrays}
    for name, array in arrays.items():
        with atomic_path(store_dir / files[name]) as tmp:
            np.save(tmp, np.ascontiguousarray(array))
    index = {"format": FORMAT, "extractor": extractor, "dim": int(arrays["features"].shape[1]), "arrays": files,
             "images": [[f.path, f.size, f.mtime_ns] for f in images]}
    atomic_write_text(store_dir / INDEX, json.dumps(index))
    _drop_superseded(store_dir, keep=set(files.values()))


def _drop_superseded(store_dir: Path, keep: set[str]) -> None:
    """Delete arrays the index no longer names: earlier versions and a crash's leftovers."""
    for old in store_dir.glob("*.npy"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _write_failures(feature_dir: Path, failures: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    writer.writerows(failures)
    atomic_write_text(feature_dir / FAILURES, buf.getvalue())


def _safe_load(path: Path, sizes: tuple[int, ...]):
    """Network inputs of one image, size → uint8 array; or the reason it cannot be read."""
    try:
        im = open_rgb(path, max(sizes))
        return {s: square(im, s) for s in sizes}
    except Exception as exc:  # any decoder error means "skip this file and say why"
        return " ".join(f"{type(exc).__name__}: {exc}".split())


def _prefetched_batches(files: list[ImageFile], image_dir: Path, sizes: tuple[int, ...], batch_size: int):
    """Yield (files, inputs-or-error-strings) per batch; the next batch decodes in worker threads
    while the caller runs the networks on the current one (Pillow releases the GIL while decoding)."""
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        def submit(batch):
            return [pool.submit(_safe_load, image_dir / f.path, sizes) for f in batch]

        pending = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            current, pending = pending, (submit(batches[i + 1]) if i + 1 < len(batches) else [])
            yield batch, [future.result() for future in current]


@dataclass
class _Pending:
    """One network's store being brought up to date."""

    name: str
    loader: Callable
    identity: dict
    store_dir: Path
    previous: FeatureStore | None
    reuse: list[ImageFile]
    todo: set[ImageFile]
    new_rows: dict[ImageFile, dict[str, np.ndarray]] = field(default_factory=dict)
    network: object = None

    def save(self) -> None:
        done = sorted([*self.reuse, *self.new_rows], key=lambda f: f.path)
        old_rows = {f: i for i, f in enumerate(self.previous.images)} if self.previous else {}
        arrays = {}
        for name, (shape, dtype) in OUTPUTS[self.name].items():
            arrays[name] = np.empty((len(done), *shape), dtype)
            for i, f in enumerate(done):
                arrays[name][i] = self.previous.arrays[name][old_rows[f]] if f in old_rows else self.new_rows[f][name]
        _write_store(self.store_dir, done, arrays, self.identity)


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


def extract_features(config: Config, networks: dict[str, tuple[Callable, dict]], progress: bool = True) -> ExtractSummary:
    """Bring the stores of ``networks`` up to date with ``paths.image_dir``, in one pass.

    Only new or changed images (by size and modification time) go through a network; each image is
    decoded once for all networks; rows of deleted images are dropped; unreadable files are skipped
    and listed in ``failures.csv``.

    Args:
        config: validated config.
        networks: network name (``inception_v3``, ``efficientnet_lite0``) → ``(loader, identity)``;
            ``loader()`` returns an :class:`~image_clustering.extractor.Network` and is called only
            when that network has work; ``identity`` (JSON-able) names network and weights: vectors
            from another identity are recomputed.
        progress: show a progress bar (on a terminal).

    Raises:
        ImgclustError: the image folder is missing or holds no images.
    """
    start = time.perf_counter()
    image_dir, feature_dir = config.paths.image_dir, config.feature_dir
    files = list_images(image_dir)
    if not files:
        raise ImgclustError(f"paths.image_dir: no images (jpg, png, gif, webp, bmp, tif) found in {image_dir}")
    current_paths = {f.path for f in files}
    jobs, removed = [], set()
    for name, (loader, identity) in networks.items():
        previous = load_store(feature_dir / name)
        if previous is not None and previous.extractor != identity:
            previous = None  # another network or weights made those vectors: never mix them
        old = set(previous.images) if previous else set()
        removed |= {f.path for f in old} - current_paths
        jobs.append(_Pending(name, loader, identity, feature_dir / name, previous,
                             [f for f in files if f in old], {f for f in files if f not in old}))
    todo = sorted(set().union(*(job.todo for job in jobs)), key=lambda f: f.path)
    failures: list[tuple[str, str]] = []
    load_seconds = 0.0
    if todo:
        for job in jobs:
            if job.todo:
                job.network = job.loader()
        load_seconds = time.perf_counter() - start
        sizes = tuple(sorted({INPUT_SIZES[job.name] for job in jobs if job.todo}))
        since_save = 0
        bar = tqdm(total=len(todo), unit="img", desc="extract", disable=not progress or None)
        for batch, inputs in _prefetched_batches(todo, image_dir, sizes, config.model.batch_size):
            failures += [(f.path, x) for f, x in zip(batch, inputs) if isinstance(x, str)]
            for job in jobs:
                ok = [(f, x) for f, x in zip(batch, inputs) if isinstance(x, dict) and f in job.todo]
                if ok:
                    batch_in = np.stack([x[job.network.input_size] for _, x in ok])
                    out = _run_fixed_shape(job.network, batch_in, config.model.batch_size)
                    for i, (f, _) in enumerate(ok):
                        job.new_rows[f] = {name: array[i] for name, array in out.items()}
            since_save += len(batch)
            bar.update(len(batch))
            if since_save >= CHECKPOINT_EVERY:
                for job in jobs:
                    job.save()
                since_save = 0
        bar.close()
    for job in jobs:
        if job.todo or job.previous is None or len(job.reuse) != len(job.previous.images):
            job.save()
        else:
            _drop_superseded(job.store_dir, keep=set(job.previous.files.values()))
    _write_failures(feature_dir, failures)
    stored = set.intersection(*({f.path for f in job.reuse} | {f.path for f in job.new_rows} for job in jobs))
    computed = len({f for job in jobs for f in job.new_rows})
    return ExtractSummary(len(stored), computed, len(files) - len(todo), len(removed), len(failures),
                          time.perf_counter() - start, feature_dir, load_seconds)
