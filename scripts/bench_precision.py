#!/usr/bin/env python
"""Feature drift and clustering change of reduced precision against float32, on a labelled set
(one sub-folder per class): per precision, the time of the networks, the cosine of each photo's
vector to its float32 vector, and the NMI of k-means (k = number of classes, L2-normalised
features, 4 restarts, seed 0) against the labels.

    KERAS_BACKEND=tensorflow python scripts/bench_precision.py ../shared/datasets/ukbench_groups14
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--networks", nargs="+", default=["inception_v3", "efficientnet_lite0"])
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--limit", type=int, default=0, help="photos, 0 = all")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    args = p.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from image_clustering import backend
    from image_clustering.embedding import combine
    from image_clustering.extractor import _keras
    from image_clustering.features import _run_fixed_shape
    from image_clustering.images import list_images, load_rgb
    from image_clustering.networks import NETWORKS, load_network
    from image_clustering.weights import load_manifest

    keras = _keras()
    files = list_images(args.folder)
    files = files[: args.limit] if args.limit else files
    labels = [f.path.split("/")[0] for f in files]
    k = len(set(labels))
    pixels = {s: np.stack([load_rgb(args.folder / f.path, s) for f in files])
              for s in {NETWORKS[n].input_size for n in args.networks}}
    print(f"{len(files)} photos, {k} classes, backend {backend.current()}, networks {' + '.join(args.networks)}")
    reference = None
    for precision in args.precisions:
        keras.backend.clear_session()
        backend.set_precision(precision)
        blocks, seconds = [], 0.0
        for name in args.networks:
            network = load_network(load_manifest(args.model_dir, name, verify=False))
            x = pixels[network.input_size]
            network.run(x[: args.batch_size])  # traces: not timed
            start = time.perf_counter()
            blocks.append(np.concatenate([_run_fixed_shape(network, x[i : i + args.batch_size], args.batch_size)["features"]
                                          for i in range(0, len(x), args.batch_size)]))
            seconds += time.perf_counter() - start
        vectors = combine(blocks)
        reference = vectors if reference is None else reference
        cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        clusters = KMeans(k, n_init=4, random_state=0).fit_predict(unit)
        print(f"{precision:<15} {len(files) / seconds:6.1f} photos/s   cosine to {args.precisions[0]}: "
              f"min {cos.min():.5f} mean {cos.mean():.5f}   NMI {normalized_mutual_info_score(labels, clusters):.4f}")


if __name__ == "__main__":
    main()
