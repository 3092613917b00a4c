"""Stage 1: images → feature vectors, kept in an incremental on-disk store.

Store layout in ``<vector_dir>/<object_name>/`` (format 1):

- ``index.json``: ``{"format": 1, "extractor": {...}, "dim": 2048, "matrix": "features-<token>.npy",
  "images": [[path, size_bytes, mtime_ns], ...]}`` — row i of the matrix is ``images[i]``, paths are
  relative to ``paths.image_dir`` with ``/`` separators.
- ``features-<token>.npy``: float32 (N, 2048), C order; a new token per write.
- ``failures.csv``: ``path,reason`` for every image that could not be read in the last run.

A write saves the new matrix under a fresh name first and then replaces ``index.json`` atomically,
so a crash leaves the previous store readable and the next run reuses what was checkpointed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, atomic_write_text
from .config import Config
from .errors import ImgclustError
from .images import ImageFile, list_images, load_rgb

FORMAT = 1
INDEX = "index.json"
FAILURES = "failures.csv"
CHECKPOINT_EVERY = 1024  # images; bounds the work a crash can lose


@dataclass
class FeatureStore:
    """Feature vectors of one collection.

    Attributes:
        images: one :class:`ImageFile` per row, sorted by path.
        vectors: float32 (N, D) array (memory-mapped when loaded from disk).
        extractor: the weights manifest fields that identify the network (``source``, ``sha256``).
        token: the matrix file name, unique per write; caches derived from the store key on it.
    """

    images: list[ImageFile]
    vectors: np.ndarray
    extractor: dict
    token: str = ""

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.images]


def load_store(feature_dir: Path) -> FeatureStore | None:
    """Open the store in ``feature_dir`` (memory-mapped), or None when there is none yet.

    Raises:
        ImgclustError: the index is unreadable or does not match its matrix.
    """
    index_path = feature_dir / INDEX
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"unknown format {index.get('format')!r}")
        vectors = np.load(feature_dir / index["matrix"], mmap_mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise ImgclustError(f"{index_path}: feature store unreadable ({exc}); delete the folder to rebuild it") from None
    images = [ImageFile(p, s, m) for p, s, m in index["images"]]
    if vectors.shape != (len(images), index["dim"]):
        raise ImgclustError(f"{index_path}: {len(images)} images indexed but matrix is {vectors.shape}")
    return FeatureStore(images, vectors, index["extractor"], index["matrix"])


def _write_store(feature_dir: Path, images: list[ImageFile], vectors: np.ndarray, extractor: dict) -> None:
    feature_dir.mkdir(parents=True, exist_ok=True)
    name = f"features-{uuid.uuid4().hex[:12]}.npy"
    with atomic_path(feature_dir / name) as tmp:
        np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    index = {"format": FORMAT, "extractor": extractor, "dim": int(vectors.shape[1]), "matrix": name,
             "images": [[f.path, f.size, f.mtime_ns] for f in images]}
    atomic_write_text(feature_dir / INDEX, json.dumps(index))
    _drop_superseded(feature_dir, keep=name)


def _drop_superseded(feature_dir: Path, keep: str) -> None:
    """Delete matrices the index no longer names: earlier versions and a crash's leftovers."""
    for old in feature_dir.glob("features-*.npy"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def _write_failures(feature_dir: Path, failures: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    writer.writerows(failures)
    atomic_write_text(feature_dir / FAILURES, buf.getvalue())


def _safe_load(path: Path, size: int):
    try:
        return load_rgb(path, size)
    except Exception as exc:  # any decoder error means "skip this file and say why"
        return " ".join(f"{type(exc).__name__}: {exc}".split())


def _prefetched_batches(files: list[ImageFile], image_dir: Path, size: int, batch_size: int):
    """Yield (files, arrays-or-error-strings) per batch; the next batch decodes in worker threads
    while the caller runs the network on the current one (Pillow releases the GIL while decoding)."""
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        submit = lambda batch: [pool.submit(_safe_load, image_dir / f.path, size) for f in batch]  # noqa: E731
        pending = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            current, pending = pending, (submit(batches[i + 1]) if i + 1 < len(batches) else [])
            yield batch, [future.result() for future in current]


@dataclass
class ExtractSummary:
    """What one ``extract`` run did; ``seconds`` is wall time, ``computed`` images went through the
    network."""

    total: int
    computed: int
    reused: int
    removed: int
    failed: int
    seconds: float
    feature_dir: Path
    load_seconds: float = 0.0  # building the network, part of ``seconds``

    @property
    def images_per_second(self) -> float:
        """Images through the network per second of extraction, network start-up excluded."""
        busy = self.seconds - self.load_seconds
        return self.computed / busy if busy > 0 else 0.0

    def line(self) -> str:
        rate = (f" ({self.images_per_second:.1f} images/s after {self.load_seconds:.1f} s loading the network)"
                if self.computed else "")
        failed = f", {self.failed} failed (listed in {self.feature_dir / FAILURES})" if self.failed else ", 0 failed"
        return (f"extract: {self.total} images in store: {self.computed} computed, {self.reused} reused, "
                f"{self.removed} removed{failed}; {self.seconds:.1f} s{rate}")


def extract_features(config: Config, model_loader, extractor_id: dict, progress: bool = True) -> ExtractSummary:
    """Bring the feature store of ``config`` up to date with ``paths.image_dir``.

    Only new or changed images (by size and modification time) go through the network; rows of
    deleted images are dropped; unreadable files are skipped and listed in ``failures.csv``.

    Args:
        config: validated config.
        model_loader: zero-argument callable returning ``(model, preprocess)`` where ``model`` maps a
            float32 (B, 299, 299, 3) batch to (B, D) and ``preprocess`` maps uint8 batches to that
            input; called only when something needs computing.
        extractor_id: identifies the network; vectors from another extractor are recomputed.
        progress: show a progress bar (on a terminal).

    Returns:
        :class:`ExtractSummary`.

    Raises:
        ImgclustError: the image folder is missing or holds no images.
    """
    from .extractor import INPUT_SIZE

    start = time.perf_counter()
    image_dir, feature_dir = config.paths.image_dir, config.feature_dir
    files = list_images(image_dir)
    if not files:
        raise ImgclustError(f"paths.image_dir: no images (jpg, png, gif, webp, bmp, tif) found in {image_dir}")
    previous = load_store(feature_dir)
    if previous is not None and previous.extractor != extractor_id:
        previous = None  # another network made those vectors: never mix them
    old_rows = {f: i for i, f in enumerate(previous.images)} if previous else {}
    reuse = [f for f in files if f in old_rows]
    todo = [f for f in files if f not in old_rows]
    removed = len({f.path for f in old_rows} - {f.path for f in files})
    new_vectors: dict[ImageFile, np.ndarray] = {}
    failures: list[tuple[str, str]] = []

    def save():
        done = sorted([*reuse, *new_vectors], key=lambda f: f.path)
        rows = [previous.vectors[old_rows[f]] if f in old_rows else new_vectors[f] for f in done]
        dim = rows[0].shape[0] if rows else 2048
        _write_store(feature_dir, done, np.stack(rows) if rows else np.zeros((0, dim), np.float32), extractor_id)

    load_seconds = 0.0
    if todo:
        model, preprocess = model_loader()
        load_seconds = time.perf_counter() - start
        since_save = 0
        bar = tqdm(total=len(todo), unit="img", desc="extract", disable=not progress or None)
        for batch, arrays in _prefetched_batches(todo, image_dir, INPUT_SIZE, config.model.batch_size):
            ok = [(f, a) for f, a in zip(batch, arrays) if isinstance(a, np.ndarray)]
            failures += [(f.path, a) for f, a in zip(batch, arrays) if isinstance(a, str)]
            if ok:
                out = np.asarray(model(preprocess(np.stack([a for _, a in ok]))), dtype=np.float32)
                new_vectors.update((f, v) for (f, _), v in zip(ok, out))
            since_save += len(batch)
            bar.update(len(batch))
            if since_save >= CHECKPOINT_EVERY:
                save()
                since_save = 0
        bar.close()
    if todo or removed or previous is None:
        save()
    else:
        _drop_superseded(feature_dir, keep=previous.token)
    _write_failures(feature_dir, failures)
    return ExtractSummary(len(reuse) + len(new_vectors), len(new_vectors), len(reuse), removed, len(failures),
                          time.perf_counter() - start, feature_dir, load_seconds)
