"""Running on a Dask cluster (``dask.distributed``): where extraction and the k sweep compute.

``compute.scheduler`` (or ``--scheduler``) picks the place: None, today's in-process path;
``"local"``, a :class:`~dask.distributed.LocalCluster` of ``compute.workers`` processes on this
machine; or the address of a running scheduler (``tcp://host:8786``).

Extraction (:func:`dask_runner`): the images to compute are cut into tasks of ``compute.task_size``
images. Each worker process builds its networks once (a per-process cache, :func:`_networks`),
decodes and runs the images of a task in ``model.batch_size`` batches exactly as the in-process
path does (the same decoder and padded batch shape), and returns the arrays. Only this process —
the client, which holds the collection's lock — writes them into the feature store, one shard per
task per network, so format 3 stays single-writer and resumable: ``kill -9`` of the client loses
the tasks not yet written, and the next run computes only the rest. Workers read the photos and
the weights by the same absolute paths: they need the filesystem the client sees.

A worker that dies mid-task: the scheduler reruns its tasks on another worker (Dask's
``allowed-failures``, 3 by default); each task's result is written once, when it first arrives.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import ComputeConfig, check_workers
from .errors import ImgclustError
from .images import ImageFile
from .networks import NETWORKS
from .progress import progress_bar

logger = logging.getLogger(__name__)

_active = None  # the client of the outermost open `client()`: `run` shares one cluster for all steps


@contextlib.contextmanager
def client(compute: ComputeConfig):
    """A Dask client for ``compute.scheduler``: a new :class:`~dask.distributed.LocalCluster`
    (closed with every process it started on exit) for ``"local"``, else a connection to the
    running scheduler at that address. Nested calls reuse the outer client.

    Yields:
        :class:`dask.distributed.Client`.

    Raises:
        ImgclustError: ``compute.scheduler`` did not answer within ``compute.timeout`` seconds.
    """
    global _active
    if _active is not None:
        yield _active
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImgclustError(f"compute.scheduler: {compute.scheduler!r} needs Dask; pip install 'imgclust[dask]'") from None

    with contextlib.ExitStack() as stack:
        if compute.scheduler == "local":
            # One thread per worker: a task is a whole network pass, which uses the worker's cores
            # itself. Dask starts workers with OpenMP/BLAS at one thread; give each its share of cores.
            import dask

            threads = worker_threads(compute)
            environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                       **{var: threads for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": environ}))
            check_workers(compute)
            # The workers' scratch folders (dask-scratch-space/worker-*) go into a temporary folder
            # of ours, removed after the cluster closes, instead of piling up in the system's.
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="imgclust-dask-"))
            stack.enter_context(dask.config.set({"temporary-directory": scratch}))
            cluster = stack.enter_context(LocalCluster(n_workers=compute.workers, threads_per_worker=1,
                                                       processes=True, dashboard_address=":0",
                                                       local_directory=scratch))
            dask_client = stack.enter_context(Client(cluster, timeout=compute.timeout))
            logger.info("Dask LocalCluster with %d worker processes", compute.workers)
        else:
            check_scheduler(compute.scheduler, compute.timeout)
            try:
                dask_client = stack.enter_context(Client(compute.scheduler, timeout=compute.timeout))
            except (OSError, TimeoutError) as exc:
                raise ImgclustError(f"compute.scheduler: no Dask scheduler answered at {compute.scheduler} within "
                                    f"{compute.timeout:g} s ({type(exc).__name__})") from None
            logger.info("Dask scheduler %s: %d workers", compute.scheduler,
                        len(dask_client.scheduler_info().get("workers", {})))
        _active = dask_client
        try:
            yield dask_client
        finally:
            _active = None


def check_scheduler(address: str, timeout: float) -> None:
    """Make sure a Dask scheduler answers at ``address`` within ``timeout`` seconds, all of it
    bounded: connecting, the handshake and one ``identity`` request. Dask's own client bounds only
    the connection, and waits forever on a port where something else listens (a web server, the
    dashboard); an endpoint sending other bytes can make it allocate what a junk length says.

    Raises:
        ImgclustError: one line naming the address and what went wrong.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    def ask():  # in its own thread: asyncio.run needs a thread with no running loop (notebooks have one)
        return asyncio.run(asyncio.wait_for(identity(), timeout))

    where = f"compute.scheduler: {address}"
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(ask).result()
    except (TimeoutError, asyncio.TimeoutError):
        raise ImgclustError(f"{where}: no Dask scheduler answered within {timeout:g} s (compute.timeout); "
                            "is it the scheduler's port and not, e.g., its dashboard?") from None
    except Exception as exc:  # refused, reset, junk (even a MemoryError for a junk frame length)
        raise ImgclustError(f"{where}: no Dask scheduler there ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        kind = answer.get("type") if isinstance(answer, dict) else type(answer).__name__
        raise ImgclustError(f"{where}: answered, but as {kind!r}, not as a Dask scheduler")


def worker_threads(compute: ComputeConfig) -> int | None:
    """TensorFlow threads per worker: this machine's cores shared among a LocalCluster's workers
    (so two workers on two cores do not each start two threads); None (TensorFlow's default, all
    of the worker's cores) on a real cluster."""
    if compute.scheduler == "local":
        return max(1, (os.cpu_count() or 1) // compute.workers)
    return None


# Per worker process: (network, sha256, batch_size) → built, warmed-up network. Building takes
# seconds (TensorFlow import, weights, graph tracing): once per process, never per task.
_NETWORKS: dict = {}


def _networks(manifests: dict[str, dict], batch_size: int, threads: int | None) -> dict:
    """This worker's built networks for ``manifests`` (name → manifest), building what is missing;
    the weights file's sha256 is checked before it is loaded."""
    from .networks import load_network
    from .weights import file_hash

    built = {}
    for name, manifest in manifests.items():
        key = (name, manifest["sha256"], batch_size)
        if key not in _NETWORKS:
            if threads and not _NETWORKS:
                from .extractor import _keras

                if _keras().backend.backend() == "tensorflow":  # imported with its start-up lines muted
                    import tensorflow as tf

                    with contextlib.suppress(RuntimeError):  # only possible before TensorFlow starts
                        tf.config.threading.set_intra_op_parallelism_threads(threads)
                        tf.config.threading.set_inter_op_parallelism_threads(threads)
            if file_hash(manifest["file"]) != manifest["sha256"]:
                raise ImgclustError(f"{manifest['file']}: sha256 mismatch on a Dask worker (corrupt, or another "
                                    "file at that path?); the workers must see the client's paths.model_dir")
            network = load_network(manifest)
            size = network.input_size
            network.run(np.zeros((batch_size, size, size, 3), np.uint8))  # traces the graph once
            _NETWORKS[key] = network
        built[name] = _NETWORKS[key]
    return built


def extract_task(files: list[tuple[str, int, int]], wanted: dict[str, list[bool]], image_dir: str,
                 manifests: dict[str, dict], batch_size: int, threads: int | None, resize: str) -> dict:
    """One extraction task, run on a worker: decode ``files`` and run the networks on them.

    Args:
        files: ``(path relative to image_dir, size, mtime_ns)`` per image.
        wanted: network name → one bool per file: whether that network computes it.
        image_dir: the photo folder, as the client sees it (shared filesystem).
        manifests: network name → weights manifest (:func:`image_clustering.weights.load_manifest`).
        batch_size: images per network call (short batches are padded, as in-process).
        threads: TensorFlow threads (see :func:`worker_threads`).
        resize: how each photo becomes a square input (:func:`image_clustering.images.square`).

    Returns:
        ``{"failures": [(path, reason)], "rows": {network: (files, {array name: (n, ...) array})}}``,
        ``features`` float32 (n, D) as in :attr:`image_clustering.networks.NetworkSpec.outputs`.
    """
    from .features import _prefetched_batches, _run_fixed_shape

    images = [ImageFile(*f) for f in files]
    todo = {name: {f for f, w in zip(images, flags) if w} for name, flags in wanted.items()}
    networks = _networks({n: manifests[n] for n in wanted if todo[n]}, batch_size, threads)
    sizes = tuple(sorted({NETWORKS[n].input_size for n in networks}))
    failures, rows, parts = [], {n: [] for n in networks}, {n: [] for n in networks}
    for batch, inputs in _prefetched_batches(images, Path(image_dir), sizes, batch_size, resize):
        failures += [(f.path, x) for f, x in zip(batch, inputs) if isinstance(x, str)]
        for name, network in networks.items():
            ok = [(f, x) for f, x in zip(batch, inputs) if isinstance(x, dict) and f in todo[name]]
            if ok:
                pixels = np.stack([x[network.input_size] for _, x in ok])
                parts[name].append(_run_fixed_shape(network, pixels, batch_size))
                rows[name] += [(f.path, f.size, f.mtime_ns) for f, _ in ok]
    out = {n: (rows[n], {a: np.concatenate([p[a] for p in parts[n]]) for a in parts[n][0]})
           for n in networks if parts[n]}
    return {"failures": failures, "rows": out}


def dask_runner(manifests: dict[str, dict], compute: ComputeConfig) -> Callable:
    """The ``runner`` for :func:`image_clustering.features.extract_features` that computes on the
    workers of ``compute.scheduler`` (connecting only when there is something to compute) and
    appends each finished task's rows as shards (see the module docstring). At most two tasks per
    worker thread are in flight, so results never pile up faster than the client writes them.
    """
    def run(jobs, todo: list[ImageFile], image_dir: Path, batch_size: int, progress: bool, resize: str):
        with client(compute) as dask_client:
            return _run_tasks(dask_client, manifests, compute, jobs, todo, image_dir, batch_size, progress, resize)

    return run


def _run_tasks(dask_client, manifests, compute, jobs, todo, image_dir, batch_size, progress, resize):
    """:func:`dask_runner`'s work on a connected client: submit, gather, append; returns the failures."""
    from dask.distributed import as_completed
    from distributed.client import FutureCancelledError

    threads = worker_threads(compute)
    tasks = [todo[i : i + compute.task_size] for i in range(0, len(todo), compute.task_size)]
    job_todo = {job.name: job.todo for job in jobs if job.todo}
    used = {name: manifests[name] for name in job_todo}
    slots = max(2, 2 * sum(dask_client.nthreads().values()))
    run_id = uuid.uuid4().hex[:8]
    logger.info("extract: %d images in %d tasks of up to %d on %d Dask workers", len(todo), len(tasks),
                compute.task_size, len(dask_client.nthreads()))

    def submit(i):
        chunk = tasks[i]
        wanted = {name: [f in t for f in chunk] for name, t in job_todo.items()}
        return dask_client.submit(extract_task, [(f.path, f.size, f.mtime_ns) for f in chunk], wanted,
                                  str(image_dir), used, batch_size, threads, resize, pure=False,
                                  key=f"imgclust-extract-{run_id}-{i}")

    failures, done_images, start = [], 0, time.perf_counter()
    queue = as_completed([submit(i) for i in range(min(slots, len(tasks)))])
    following = min(slots, len(tasks))
    by_name = {job.name: job for job in jobs}
    with progress_bar(total=len(tasks), unit="tasks", desc="extract", enabled=progress) as bar:
        for future in queue:
            try:
                result = future.result()
            except FutureCancelledError:
                raise ImgclustError("compute.scheduler: the Dask cluster cancelled an extraction task "
                                    "(scheduler restarted or gone?); run `imgclust extract` again to resume") from None
            except Exception as exc:
                if type(exc).__name__ == "KilledWorker":
                    raise ImgclustError(f"compute.scheduler: extraction task {future.key} killed several Dask "
                                        "workers (out of memory?); run `imgclust extract` again to resume") from None
                raise
            future.release()
            failures += result["failures"]
            for name, (rows, arrays) in result["rows"].items():
                job = by_name[name]
                job.writer.append([ImageFile(*r) for r in rows], arrays)
                job.computed += len(rows)
            done_images += len(tasks[int(future.key.rsplit("-", 1)[1])])
            bar.update(1)
            bar.set_postfix_str(f"{done_images / (time.perf_counter() - start):.1f} images/s")
            if following < len(tasks):
                queue.add(submit(following))
                following += 1
    return sorted(failures)  # the in-process order: by path
