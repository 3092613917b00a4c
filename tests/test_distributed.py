"""Extraction and the k sweep on a real Dask cluster (``dask.distributed``, worker processes) against
the in-process path, on real photos with the real EfficientNet-Lite0 weights: the random-weight
test network cannot cross processes, and Lite0 is the fastest real network to build in a worker."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from image_clustering import pipeline
from image_clustering.cli import main
from image_clustering.config import config_from_dict
from image_clustering.evaluation import score
from image_clustering.features import _StoreWriter, load_store
from tests.conftest import DATASETS, MODEL_DIR, ROOT, folder_labels, needs_shared
from tests.golden import network_tolerance

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

CLASSES = ("cassette_player", "church", "golf_ball")
PER_CLASS = 8  # 24 photos: enough for tasks on both workers, few enough to stay quick


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """24 real photos in three class folders, plus one unreadable file."""
    source = needs_shared(DATASETS / "imagenette_val200")
    root = tmp_path_factory.mktemp("photos")
    for name in CLASSES:
        (root / name).mkdir()
        for path in sorted((source / name).iterdir())[:PER_CLASS]:
            shutil.copy(path, root / name / path.name)
    (root / "church" / "broken.jpg").write_bytes(b"not a photo")
    return root


def raw_config(root, image_dir, scheduler=None, task_size=4, timeout=60):
    return {"paths": {"image_dir": str(image_dir), "model_dir": str(MODEL_DIR), "vector_dir": str(root / "vectors"),
                      "cluster_label_dir": str(root / "labels"), "plot_dir": str(root / "plots"),
                      "link_dir": str(root / "links")},
            "model": {"object_name": "dist", "extractor": "efficientnet_lite0", "batch_size": 4, "k_max": 8},
            "compute": {"scheduler": scheduler, "task_size": task_size, "timeout": timeout}}


def make(root, image_dir, scheduler=None, **compute):
    return config_from_dict(raw_config(root, image_dir, scheduler, **compute))


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory, lite0_weights):
    """The in-process run: its config and store."""
    config = make(tmp_path_factory.mktemp("inproc"), photos)
    pipeline.extract(config, progress=False)
    return config, load_store(config.layout.store_dir("efficientnet_lite0"))


@pytest.fixture(scope="module")
def worker_path():
    """Worker processes import this worktree's package, as the test process does."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved]))
    yield
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def cluster(worker_path):
    """A real two-process LocalCluster and a client on it; closed with every process it started."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as client:
        yield lc, client


def assert_same_store(store, ref, network="efficientnet_lite0"):
    """Same photos, and vectors equal up to float32 reordering (workers tile the sums otherwise:
    tests/golden.py); the stored classes equal except where their scores tie within it."""
    assert store.paths == ref.paths
    got, want = (np.asarray(s.arrays["features"], np.float64) for s in (store, ref))
    assert np.abs(got - want).max() <= network_tolerance(network, want)
    if "top_scores" in ref.arrays:
        # softmax moves a probability by at most half the largest change of a logit, and logits of
        # this network stay below 20 on any photo: their tolerance bounds the scores'
        tolerance = 0.5 * network_tolerance(network, np.array([20.0]))
        scores = np.asarray(ref.arrays["top_scores"], np.float64)
        assert np.abs(np.asarray(store.arrays["top_scores"], np.float64) - scores).max() <= tolerance
        gaps = np.concatenate([np.diff(-scores, axis=1) > 2 * tolerance, np.ones((len(scores), 1), bool)], axis=1)
        fixed = np.logical_and.accumulate(gaps, axis=1)  # no tie at or above this rank
        classes = (np.asarray(s.arrays["top_classes"])[fixed] for s in (store, ref))
        np.testing.assert_array_equal(*classes)


def failures(config):
    with open(config.layout.failures_csv, newline="") as f:
        return list(csv.reader(f))


def own_children():
    """Live child processes, less multiprocessing's resource tracker: one per interpreter, started
    with the first spawned process and ended at interpreter exit, not by the cluster."""
    import psutil

    def helper(p):
        return any("resource_tracker" in part or "forkserver" in part for part in p.cmdline())

    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and not helper(p)]


def test_local_cluster_vectors_equal_in_process(photos, reference, tmp_path, worker_path):
    """`"scheduler": "local"` starts a LocalCluster of two worker processes: same vectors, same
    failures, and every process it started is gone afterwards."""
    ref_config, ref = reference
    before = {p.pid for p in own_children()}
    config = make(tmp_path, photos, "local")
    summary = pipeline.extract(config, progress=False)
    assert (summary.computed, summary.failed) == (len(ref.paths), 1)
    assert_same_store(load_store(config.layout.store_dir("efficientnet_lite0")), ref)
    assert failures(config) == failures(ref_config)
    deadline = time.monotonic() + 30
    while {p.pid for p in own_children()} - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not {p.pid for p in own_children()} - before, "LocalCluster processes left running"
    # Resumable and idempotent: a second run computes nothing and starts no network.
    assert pipeline.extract(config, progress=False).computed == 0


def test_killed_worker_every_image_exactly_once(photos, reference, tmp_path, cluster, monkeypatch):
    """kill -9 of a worker holding tasks mid-run: Dask reruns them elsewhere; the client writes
    every image once, none twice, and the vectors are the in-process ones."""
    lc, client = cluster
    _, ref = reference
    pids = client.run(os.getpid)  # worker address → pid
    written = []
    append = _StoreWriter.append

    def spy(self, images, arrays):  # the real append, counting what the client writes
        written.extend(f.path for f in images)
        return append(self, images, arrays)

    monkeypatch.setattr(_StoreWriter, "append", spy)
    config = make(tmp_path, photos, lc.scheduler_address, task_size=2)  # 12 tasks of 2 images
    killed = []

    def killer():
        deadline = time.monotonic() + 120
        while not written and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if busy:
            worker = max(busy, key=lambda w: len(busy[w]))
            os.kill(pids[worker], signal.SIGKILL)
            killed.append((worker, len(busy[worker])))

    thread = threading.Thread(target=killer)
    thread.start()
    summary = pipeline.extract(config, progress=False)
    thread.join()
    assert killed, "no worker held a task when the first result arrived"
    assert sorted(written) == sorted(ref.paths)  # every image once, none twice
    assert summary.failed == 1
    assert_same_store(load_store(config.layout.store_dir("efficientnet_lite0")), ref)


def test_unreachable_scheduler_one_line(photos, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw_config(tmp_path, photos, timeout=1)))
    start = time.monotonic()
    result = CliRunner().invoke(main, ["extract", "--config", str(path), "-q", "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "compute.scheduler" in lines[0] and "tcp://127.0.0.1:9" in lines[0], result.output
    assert time.monotonic() - start < 30


def test_sweep_and_clusters_on_the_cluster_equal_in_process(reference, tmp_path, cluster):
    """find-k's k-means fits on the workers (joblib's Dask backend) and cluster: the same sweep,
    the same clusters, the same quality as in-process."""
    lc, _ = cluster
    ref_config, _ = reference
    results = {}
    for where, scheduler in (("inproc", None), ("dask", lc.scheduler_address)):
        root = tmp_path / where
        shutil.copytree(ref_config.feature_dir, root / "vectors" / "dist")  # own caches: nothing reused
        config = make(root, ref_config.paths.image_dir, scheduler)
        results[where] = (pipeline.find_k(config, progress=False, write=False),
                          pipeline.cluster(config, progress=False, write=False))
    (fk_a, cl_a), (fk_b, cl_b) = results["inproc"], results["dask"]
    np.testing.assert_allclose(fk_b.sweep.inertia, fk_a.sweep.inertia, rtol=1e-6)
    np.testing.assert_allclose(fk_b.sweep.silhouette, fk_a.sweep.silhouette, rtol=1e-6)
    assert fk_b.sweep.suggestions == fk_a.sweep.suggestions
    np.testing.assert_array_equal(cl_b.labels, cl_a.labels)
    truth = folder_labels(cl_a.paths)
    assert score(truth, cl_b.labels)["nmi"] == score(truth, cl_a.labels)["nmi"]
    assert score(truth, cl_a.labels)["nmi"] > 0.8  # the three classes are found at all
