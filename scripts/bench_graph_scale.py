"""The clustering graph at 10^5–10^6 photos (issue 25): wall time and peak memory of Leiden +
vote on synthetic feature vectors of the default extractor's shape, through
``AutoKClustering(n_clusters=k).fit`` (the call ``imgclust cluster`` makes after find-k): each
network's vectors to PCA 50 (sampled above 100,000), pynndescent's approximate 10-neighbour graph
of every photo per network, Leiden on the graph of a 20,000-photo sample, the rest placed by
their neighbours and the neighbour vote. With ``--graph-only`` just the approximate graph of one
network's 50-d points (the step that grows with N).

Vectors: ``--clusters`` Gaussian groups of unequal size in a 64-d latent space mapped into a
2048-d and a 1280-d view (non-negative, as pooled CNN features), generated in memory.

    python scripts/bench_graph_scale.py --n 100000 [--graph-only] [--k 50] [--runs 1 5]

``--runs``: Leiden's search from that many seeds (``clustering.LEIDEN_RUNS``), each value timed.
"""
from __future__ import annotations

import argparse
import logging
import resource
import time

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from image_clustering import clustering

DIMS = (2048, 1280)


def synthetic(n: int, clusters: int, seed: int = 0, dims=DIMS) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(0, 1, (clusters, 64)).astype(np.float32)
    weights = np.linspace(1, 3, clusters)
    truth = rng.choice(clusters, n, p=weights / weights.sum())
    views = []
    for d in dims:
        mapping = rng.normal(0, 1 / 8, (64, d)).astype(np.float32)
        view = np.empty((n, d), np.float32)
        for start in range(0, n, 20_000):
            part = truth[start : start + 20_000]
            z = latent[part] + rng.normal(0, 0.5, (len(part), 64)).astype(np.float32)
            view[start : start + len(part)] = np.maximum(z @ mapping, 0)
        views.append(view)
    return views, truth


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--graph-only", action="store_true")
    parser.add_argument("--runs", type=int, nargs="+", default=[clustering.LEIDEN_RUNS])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    clustering.neighbour_graph(np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32), 5, approximate=True)
    print(f"pynndescent's compilation (once per process): {time.perf_counter() - start:.0f} s", flush=True)
    for n in args.n:
        if args.graph_only:
            points = synthetic(n, args.k, dims=(50,))[0][0]
            start = time.perf_counter()
            graph = clustering.neighbour_graph(points, clustering.GRAPH_NEIGHBORS, approximate=True)
            print(f"| {n:,} | graph of one network: {time.perf_counter() - start:.0f} s | {graph.nnz:,} edges "
                  f"| peak {peak_mb():,.0f} MB |", flush=True)
            continue
        views, truth = synthetic(n, args.k)
        before = peak_mb()
        for runs in args.runs:
            clustering.LEIDEN_RUNS = runs
            start = time.perf_counter()
            model = clustering.AutoKClustering(n_clusters=args.k).fit(np.zeros((n, 2), np.float32), views=views)
            seconds = time.perf_counter() - start
            print(f"| {n:,} | Leiden ({runs} runs) + vote: {seconds:.0f} s | k {model.n_clusters_} | NMI "
                  f"{normalized_mutual_info_score(truth, model.labels_):.3f} | peak {peak_mb():,.0f} MB "
                  f"(vectors alone {before:,.0f} MB) |", flush=True)


if __name__ == "__main__":
    main()
