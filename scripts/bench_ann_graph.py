"""Approximate against exact neighbours for the clustering graph on the six protocol sets
(issue 25): Leiden + vote at the set's true k on the exact graph (scikit-learn, brute force) and
on pynndescent's approximate graph (``clustering.ANN_SEARCH`` candidates kept), three seeds; NMI
of each, the share of the exact graph's edges the approximate one has, and per set the mean over
the seeds (the protocol's target: within 0.005). Uses ``scripts/bench_protocol.py``'s feature cache.

    python scripts/bench_ann_graph.py [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from bench_protocol import CACHE, SETS, load, set_name
from sklearn.metrics import normalized_mutual_info_score

from image_clustering import clustering


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| set | seed | k | NMI exact | NMI approximate | difference | exact edges kept | seconds exact / approximate |")
    print("|---|---|---|---|---|---|---|---|")
    for name in [set_name(s, pc) for s, pc in SETS]:
        views, truth = load(CACHE, name, "pad")
        k = int(truth.max()) + 1
        scores = []
        for seed in args.seeds:
            points = [clustering.graph_space(v, seed) for v in views]
            m = clustering.graph_neighbors(len(truth), k)
            row = {}
            for approximate in (False, True):
                start = time.perf_counter()
                graph = clustering._sum_graphs(points, m, seed, approximate)
                built = time.perf_counter() - start
                labels = clustering.neighbour_vote(graph, clustering._cut(graph, k, seed, True))
                row[approximate] = (graph, normalized_mutual_info_score(truth, labels), built)
            kept = row[False][0].multiply(row[True][0]).nnz / row[False][0].nnz
            print(f"| {name} | {seed} | {k} | {row[False][1]:.3f} | {row[True][1]:.3f} | {row[True][1] - row[False][1]:+.3f} "
                  f"| {kept:.4f} | {row[False][2]:.1f} / {row[True][2]:.1f} |", flush=True)
            scores.append((row[False][1], row[True][1]))
        exact, approximate = np.mean(scores, axis=0)
        print(f"| **{name}** | mean | {k} | {exact:.3f} | {approximate:.3f} | **{approximate - exact:+.3f}** | | |", flush=True)


if __name__ == "__main__":
    main()
