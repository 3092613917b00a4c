"""How the number of clusters should be chosen (issue 25): for every protocol set and seed
(``scripts/bench_protocol.py``'s cache), the default clustering (Leiden + vote on the feature
graph) at every k from 2 to ``--k-max``, with its NMI/ARI against the folders and the label-free
criteria a k rule could use:

- ``sil_tsne``: the sweep's silhouette of k-means on t-SNE 2 (today's rule: its maximum);
- ``sil_graph_tsne``: silhouette of the Leiden partition on the t-SNE map;
- ``sil_features``: silhouette of the Leiden partition in the graph space (each network's
  L2-normalised PCA 50, concatenated; cosine);
- ``modularity``: Newman–Girvan modularity (γ = 1) of the Leiden partition on the graph.

Then each rule's chosen k and its NMI per set and seed. Results go to ``<cache>/k-curves.json``.

    python scripts/bench_k_rules.py [--sets ...] [--seeds 0 1 2] [--k-max 30]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from bench_protocol import CACHE, SETS, embedded, load, set_name
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from image_clustering import clustering


def curves(cache: Path, name: str, seed: int, k_max: int) -> dict:
    views, truth = load(cache, name, "pad")
    embedding, sweep = embedded(cache, name, "pad", seed, views)
    n = len(truth)
    points = [clustering.graph_space(v, seed) for v in views]
    space = np.concatenate(points, axis=1)
    graphs: dict[int, object] = {}
    out = {"n": n, "classes": int(truth.max()) + 1, "ks": [], "nmi": [], "ari": [], "sil_tsne": [],
           "sil_graph_tsne": [], "sil_features": [], "modularity": []}
    for k in range(2, min(k_max, n - 1) + 1):
        m = clustering.graph_neighbors(n, k)
        if m not in graphs:
            graphs[m] = clustering._sum_graphs(points, m, seed, False)
        graph = graphs[m]
        labels = clustering.neighbour_vote(graph, clustering._cut(graph, k, seed, True))
        out["ks"].append(k)
        out["nmi"].append(float(normalized_mutual_info_score(truth, labels)))
        out["ari"].append(float(adjusted_rand_score(truth, labels)))
        out["sil_tsne"].append(float(sweep.silhouette[list(sweep.ks).index(k)]))
        one = len(np.unique(labels)) > 1
        out["sil_graph_tsne"].append(float(silhouette_score(embedding, labels)) if one else np.nan)
        out["sil_features"].append(float(silhouette_score(space, labels, metric="cosine")) if one else np.nan)
        out["modularity"].append(modularity(graph, labels))
    out["sweep_silhouette_k"] = int(sweep.suggested_k)
    return out


def modularity(graph, labels: np.ndarray) -> float:
    """Newman–Girvan modularity Q = Σ_c [w_in(c)/W − (d(c)/2W)²] of a weighted undirected graph."""
    degree = np.asarray(graph.sum(axis=1)).ravel()
    total = degree.sum()
    coo = graph.tocoo()
    inside = np.bincount(labels[coo.row], weights=coo.data * (labels[coo.row] == labels[coo.col]),
                         minlength=labels.max() + 1)
    strength = np.bincount(labels, weights=degree, minlength=labels.max() + 1)
    return float((inside / total - (strength / total) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--sets", nargs="*")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--k-max", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    path = args.cache / "k-curves.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.sets or [set_name(s, pc) for s, pc in SETS]:
        for seed in args.seeds:
            key = f"{name}/{seed}"
            if key not in data:
                data[key] = curves(args.cache, name, seed, args.k_max)
                path.write_text(json.dumps(data))
            c = data[key]
            best = lambda crit, c=c: c["ks"][int(np.nanargmax(c[crit]))]  # noqa: E731
            print(f"{key:28s} true {c['classes']:2d} sweep-sil {c['sweep_silhouette_k']:2d}  "
                  + "  ".join(f"{crit} {best(crit)}" for crit in ("sil_tsne", "sil_graph_tsne", "sil_features", "modularity"))
                  + f"  best-NMI k {c['ks'][int(np.argmax(c['nmi']))]} ({max(c['nmi']):.3f})", flush=True)


if __name__ == "__main__":
    main()
