"""Clustering quality of extractor and embedding choices on the labelled photo sets, k chosen
automatically (``k: "auto"``), scored against the folder labels (NMI, ARI).

Features are extracted once per set into ``--out`` (both networks in one pass) and reused on
re-runs; every configuration then runs ``find-k`` + ``cluster`` through the library API.

    python scripts/bench_quality.py [--sets imagenette_val200 clothing10_testval ukbench_groups14] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from image_clustering import config_from_dict, pipeline

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
BOTH = ["inception_v3", "efficientnet_lite0"]
GRID = {  # name → model keys
    "inception_v3, t-SNE 2 (original)": {"extractor": "inception_v3"},
    "efficientnet_lite0, t-SNE 2": {"extractor": "efficientnet_lite0"},
    "both, t-SNE 2": {"extractor": BOTH},
    "inception_v3, UMAP 10": {"extractor": "inception_v3", "reducer": "umap", "reduced_dimension": 10},
    "efficientnet_lite0, UMAP 10": {"extractor": "efficientnet_lite0", "reducer": "umap", "reduced_dimension": 10},
    "both, UMAP 10": {"extractor": BOTH, "reducer": "umap", "reduced_dimension": 10},
    "both, t-SNE 2, not standardized": {"extractor": BOTH, "standardize": False},
    "both, UMAP 10, not standardized": {"extractor": BOTH, "reducer": "umap", "reduced_dimension": 10,
                                        "standardize": False},
}


def config_for(dataset: Path, out: Path, **model):
    return config_from_dict({
        "paths": {"image_dir": str(dataset), "model_dir": str(ROOT / "models"), "vector_dir": str(out / "vectors"),
                  "cluster_label_dir": str(out / "labels"), "plot_dir": str(out / "plots"), "link_dir": str(out / "link")},
        "model": {"object_name": dataset.name, "k": "auto", **model},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["imagenette_val200", "clothing10_testval", "ukbench_groups14"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-quality"))
    parser.add_argument("--only", nargs="*", help="names of GRID entries to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="model.seed of every configuration")
    args = parser.parse_args()
    results = {}
    quiet = lambda msg: None  # noqa: E731
    for name in args.sets:
        dataset = DATASETS / name
        base = config_for(dataset, args.out, extractor=BOTH)
        pipeline.download(base, log=quiet)
        print(f"{name}: {pipeline.extract(base, progress=False).line()}", flush=True)
        for label, model in GRID.items():
            if args.only and label not in args.only:
                continue
            config = config_for(dataset, args.out, seed=args.seed, **model)
            start = time.perf_counter()
            result = pipeline.cluster(config, progress=False, log=quiet)
            truth = [p.split("/")[0] for p in result.paths]
            row = {"k": result.k, "classes": len(set(truth)),
                   "nmi": normalized_mutual_info_score(truth, result.labels),
                   "ari": adjusted_rand_score(truth, result.labels), "seconds": time.perf_counter() - start}
            row["k_by_criterion"] = json.loads((config.feature_dir / "find_k.json").read_text())["suggestions"]
            results.setdefault(label, {})[name] = row
            print(f"  {label:36s} k {row['k']:3d}/{row['classes']:<3d} NMI {row['nmi']:.3f} ARI {row['ari']:.3f} "
                  f"({row['seconds']:.0f} s) k by criterion {row['k_by_criterion']}", flush=True)
    print("\n| configuration | " + " | ".join(f"{s} k / NMI / ARI" for s in args.sets) + " | mean NMI |")
    print("|---|" + "---|" * (len(args.sets) + 1))
    for label, per_set in results.items():
        cells = [f"{per_set[s]['k']} / {per_set[s]['nmi']:.3f} / {per_set[s]['ari']:.3f}" for s in args.sets if s in per_set]
        mean = np.mean([per_set[s]["nmi"] for s in per_set])
        print(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f} |")
    (args.out / f"results-seed{args.seed}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
