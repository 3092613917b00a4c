"""Label-based clustering (``imgclust tag`` words → Jaccard → Ward → L-method) against the
feature-based default on the labelled photo sets, scored with NMI/ARI against the folder labels.

Reuses the feature stores of ``scripts/bench_quality.py`` (same ``--out``); the labels come from
the stored EfficientNet-Lite0 classifier outputs, so no network runs when they exist.

    python scripts/bench_labels.py [--sets ...] [--out /tmp/imgclust-quality]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_quality import DATASETS, DEV_SETS, config_for  # same stores and output folders

from image_clustering import pipeline
from image_clustering.evaluation import folder_truth, score

ROWS = {  # name → model keys for the label workflow
    "labels: top-10 tags, k by L-method (k = 2..20)": {"tag_count": 10},
    "labels: top-5 tags, k by L-method (k = 2..20)": {"tag_count": 5},
    "labels: top-10 tags, true k": {"tag_count": 10, "label_k": "TRUE_K"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=DEV_SETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-quality"))
    parser.add_argument("--labels-only", action="store_true",
                        help="only the label rows: needs EfficientNet-Lite0's vectors alone (extracted if missing)")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for name in args.sets:
        dataset = DATASETS / name
        classes = len({p.name for p in dataset.iterdir() if p.is_dir()})
        if not args.labels_only:
            default = config_for(dataset, args.out)
            start = time.perf_counter()
            clustered = pipeline.cluster(default, progress=False)
            row = score(folder_truth(clustered.paths), clustered.labels)
            results.setdefault("features: default (k-means on t-SNE 2, k by silhouette)", {})[name] = {
                **row, "seconds": time.perf_counter() - start}
        for label, model in ROWS.items():
            model = {key: (classes if value == "TRUE_K" else value) for key, value in model.items()}
            if args.labels_only:  # the tags come from Lite0 alone; the clustering extractor is unused here
                model["extractor"] = "efficientnet_lite0"
            config = config_for(dataset, args.out, **model)
            pipeline.tag(config, progress=False)
            start = time.perf_counter()
            result = pipeline.cluster_by_tags(config)
            row = {**score(folder_truth(result.images), result.labels), "seconds": time.perf_counter() - start,
                   "knee": result.knee, "vocabulary": result.vocabulary}
            results.setdefault(label, {})[name] = row
        for label, per_set in results.items():
            r = per_set[name]
            print(f"{name:20s} {label:52s} clusters {r['clusters']:3d}/{classes:<3d} NMI {r['nmi']:.3f} "
                  f"ARI {r['ari']:.3f} ({r['seconds']:.1f} s)", flush=True)
    print("\n| method | " + " | ".join(f"{s} clusters / NMI / ARI" for s in args.sets) + " | mean NMI |")
    print("|---|" + "---|" * (len(args.sets) + 1))
    for label, per_set in results.items():
        cells = [f"{per_set[s]['clusters']} / {per_set[s]['nmi']:.3f} / {per_set[s]['ari']:.3f}" for s in args.sets]
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean([per_set[s]['nmi'] for s in args.sets]):.3f} |")
    (args.out / "labels-results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
