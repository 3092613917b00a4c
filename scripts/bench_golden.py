#!/usr/bin/env python
"""How far correct float32 runs of the converted networks are from the reference outputs, on
several kernel paths, against the tolerance of tests/golden.py; and how far planted conversion
errors are.

Each path runs in a fresh process (Keras fixes its backend at import; TensorFlow reads
TF_ENABLE_ONEDNN_OPTS at start):
  tf            TensorFlow, oneDNN kernels (the default on x86)
  tf-eigen      TensorFlow with TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels, other summation order)
  tf-1thread    TensorFlow, oneDNN, one intra-op thread (other tiling of the sums)
  jax           JAX / XLA
  tf-float64    TensorFlow computing in float64: a near-exact run, so each float32 path's own
                rounding error (and that of the reference, made by Google in float32) shows apart

    PYTHONPATH=. .venv/bin/python scripts/bench_golden.py [--paths tf tf-eigen tf-1thread jax tf-float64]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared"))
PATHS = {"tf": {"KERAS_BACKEND": "tensorflow"},
         "tf-eigen": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"},
         "tf-1thread": {"KERAS_BACKEND": "tensorflow", "IMGCLUST_GOLDEN_THREADS": "1"},
         "jax": {"KERAS_BACKEND": "jax"},
         "tf-float64": {"KERAS_BACKEND": "tensorflow", "IMGCLUST_GOLDEN_FLOATX": "float64"}}


def child(out: Path) -> None:
    """Run both networks on the reference batches in this process's kernel path; save the outputs
    and each network's tolerance."""
    from image_clustering.extractor import _keras

    keras = _keras()
    if os.environ.get("IMGCLUST_GOLDEN_THREADS"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["IMGCLUST_GOLDEN_THREADS"]))
    if os.environ.get("IMGCLUST_GOLDEN_FLOATX"):
        keras.config.set_floatx(os.environ["IMGCLUST_GOLDEN_FLOATX"])
    from tests.golden import float32_tolerance, sum_lengths
    from tests.test_weights import inception_outputs, lite0_outputs, reference_batch

    manifests = {n: json.loads((ROOT / "models" / f"{n}.json").read_text()) for n in ("inception_v3", "efficientnet_lite0")}
    for m in manifests.values():
        m["file"] = str(ROOT / "models" / m["file"])
    saved, meta = {}, {}
    for folder, run in (("inception2015", inception_outputs), ("efficientnet_lite0", lite0_outputs)):
        ref, _, batch = reference_batch(folder)
        model, outputs = run(manifests, batch)
        for name, values in outputs.items():
            expected = np.load(ref / f"{name}.npy")
            saved[f"{folder}.{name}"] = values
            meta[f"{folder}.{name}"] = {"tolerance": float32_tolerance(model, expected),
                                        "sum_depth": int(sum(sum_lengths(model))),
                                        "max_expected": float(np.abs(expected).max())}
    np.savez(out, **saved)
    out.with_suffix(".json").write_text(json.dumps(meta))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    results, meta = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths:
            out = Path(tmp) / f"{path}.npz"
            env = {**os.environ, **PATHS[path], "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, __file__, "--child", str(out)], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{path}: failed\n{done.stderr[-1500:]}")
                continue
            with np.load(out) as arrays:
                results[path] = dict(arrays)
            meta = json.loads(out.with_suffix(".json").read_text())
    exact = results.get("tf-float64")
    print("| output | path | max abs vs reference | vs float64 run | tolerance | reference / tolerance |")
    print("|---|---|---|---|---|---|")
    for key, info in (meta or {}).items():
        folder, name = key.split(".")
        expected = np.load(SHARED / "reference" / folder / f"{name}.npy")
        for path, outputs in results.items():
            diff = float(np.abs(outputs[key] - expected).max())
            vs64 = "" if exact is None else f"{float(np.abs(outputs[key] - exact[key]).max()):.2e}"
            print(f"| {key} | {path} | {diff:.2e} | {vs64} | {info['tolerance']:.2e} | {diff / info['tolerance']:.2f} |")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
