"""Decoding photos in worker processes, several batches ahead of the network.

Threads decode in parallel only while Pillow holds no GIL (the JPEG/PNG inner loops); EXIF
handling, mode conversion and resizing set-up are Python and serialise. Worker processes do not
share a GIL, so with a GPU — where the decoder, not the network, is the limit — they keep up where
threads do not. Each worker runs the very same per-image function as the thread path
(``features._safe_load``: :func:`image_clustering.images.open_rgb` + ``square``), so pixels, EXIF
orientation, formats, the bomb guard and failure reasons are identical by construction.

Workers start with ``forkserver``, which imports the caller's main module again: a script that
extracts with worker processes needs the usual ``if __name__ == "__main__":`` guard (the
``imgclust`` command and notebooks need nothing). Ctrl-C is handled by the parent alone.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "IMGCLUST_DECODE_WORKERS"
AHEAD = 3  # batches decoding while the network runs: rides out slow photos without much memory


def workers(gpu_count: Callable[[], int]) -> int:
    """Decode worker processes: ``IMGCLUST_DECODE_WORKERS`` when set; else one per core with a GPU
    and 0 (the one-thread decoder) on CPU only, where the network already uses every core and
    processes were measured no faster (docs/performance.md). ``gpu_count`` is called only when
    the variable is unset (it imports the Keras backend).

    Raises:
        ValueError: ``IMGCLUST_DECODE_WORKERS`` is not a whole number ≥ 0.
    """
    value = os.environ.get(ENV)
    if value is None:
        return (os.cpu_count() or 1) if gpu_count() else 0
    if not value.isdigit():
        raise ValueError(f"{ENV}: expected a whole number of processes >= 0, got {value!r}")
    return int(value)


def _ignore_interrupt() -> None:
    # Ctrl-C reaches the whole process group: the parent handles it (and shuts the pool down);
    # workers dying mid-task would only add tracebacks and a broken pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _load_batch(load: Callable, paths: list[Path], sizes: tuple[int, ...]) -> list:
    # one task per batch, not per image: fewer round trips through the pool's pipes
    return [load(p, sizes) for p in paths]


def process_batches(files: list, image_dir: Path, sizes: tuple[int, ...], batch_size: int, load: Callable,
                    processes: int, ahead: int = AHEAD) -> Iterator[tuple[list, list]]:
    """Yield ``(files, results)`` per batch of ``batch_size``, decoded by ``processes`` worker
    processes, up to ``ahead`` batches ahead of the caller, in order.

    Args:
        files: objects with a ``path`` relative to ``image_dir``.
        sizes: square sides wanted per image.
        load: a module-level (picklable) ``load(path, sizes)`` → ``{size: uint8 (size, size, 3)}``
            or a failure reason ``str``.
        processes: worker processes (≥ 1). They are started with ``forkserver`` (``spawn`` where
            that is missing): forking a process that has TensorFlow's threads running can deadlock.

    Large batches split into per-worker chunks so every worker has work even with ``ahead`` 1.
    """
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    if not batches:
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    chunk = max(1, -(-batch_size // processes))
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_ignore_interrupt)
    try:
        def submit(batch):
            paths = [image_dir / f.path for f in batch]
            return [pool.submit(_load_batch, load, paths[i : i + chunk], sizes) for i in range(0, len(paths), chunk)]

        pending = deque(submit(b) for b in batches[:ahead])
        for i, batch in enumerate(batches):
            futures = pending.popleft()
            if i + ahead < len(batches):
                pending.append(submit(batches[i + ahead]))
            yield batch, [result for future in futures for result in future.result()]
    finally:
        # Stopped early (Ctrl-C, an error): drop the batches queued ahead rather than decode them,
        # as the executor's own exit would; chunks already running finish on their own.
        pool.shutdown(wait=False, cancel_futures=True)
