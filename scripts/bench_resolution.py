"""EfficientNet-Lite0 at a smaller input than its 224 px: photos/s of the network alone and the NMI
of Leiden clustering at the true k on its feature vectors, per input size — the price of the
one route to a faster network with the same weights (docs/performance.md, "Re-measured on the
idle machine").

    PYTHONPATH=. python scripts/bench_resolution.py [--sets imagenette_val200 clothing10_testval] [--sizes 224 160 128]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from image_clustering import extractor, images
from image_clustering.clustering import cluster_leiden
from image_clustering.embedding import pca_features, unit_rows
from image_clustering.evaluation import folder_truth

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
WEIGHTS = ROOT / "models" / "efficientnet_lite0_google-2020.npz"  # from `imgclust download`


def lite0_at(size: int):
    """Lite0 with trained weights for ``size``-px square inputs (all layers are size-independent)."""
    keras = extractor._keras()
    original = keras.Input
    keras.Input = lambda shape, **kw: original((size, size, 3), **kw)  # the builder's one fixed shape
    try:
        model = extractor.build_efficientnet_lite0()
    finally:
        keras.Input = original
    with np.load(WEIGHTS) as arrays:
        extractor.set_lite0_weights(model, dict(arrays))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["imagenette_val200", "clothing10_testval"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 160, 128])
    args = parser.parse_args()
    print("| set | input px | network photos/s | NMI (Leiden, true k) |\n|---|---|---|---|")
    for size in args.sizes:
        model = lite0_at(size)
        for name in args.sets:
            root = DATASETS / name
            files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in images.EXTENSIONS]
            paths = [p.relative_to(root).as_posix() for p in files]
            batch = np.stack([images.load_rgb(p, size) for p in files])
            model.predict_on_batch(extractor.preprocess(batch[:32], 127.0, 128.0))  # trace once
            start = time.perf_counter()
            features = np.concatenate([model.predict_on_batch(extractor.preprocess(batch[i:i + 32], 127.0, 128.0))[0]
                                       for i in range(0, len(batch), 32)])
            rate = len(batch) / (time.perf_counter() - start)
            truth = folder_truth(paths)
            k = len(set(truth))
            labels = cluster_leiden(pca_features(unit_rows(features), 50, 0, standardize=False), k, views=[features]).labels
            print(f"| {name} | {size} | {rate:.0f} | {normalized_mutual_info_score(truth, labels):.3f} |", flush=True)


if __name__ == "__main__":
    main()
