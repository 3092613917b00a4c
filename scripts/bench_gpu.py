#!/usr/bin/env python
"""Extraction throughput on this machine (GPU or CPU), per Keras backend, precision and batch size.

For each combination it prints images/s of
  model   the network alone on photos already decoded in memory (the ceiling),
  e2e     ``imgclust extract`` end to end: listing, decoding (decode.py's workers), network and
          the feature store on disk (network start-up excluded, as ExtractSummary reports it),
  loop    the original tool's loop: decode one photo, ``model.predict`` it, next photo,
plus the ratios e2e/model and e2e/loop (the issue's targets on a GPU: ≥ 0.9 and ≥ 10).

Each backend runs in a child process (Keras fixes its backend when first imported). Needs the
verified weights in --model-dir (``imgclust download``). Example, unchanged on a GPU machine:

    python scripts/bench_gpu.py ../shared/datasets/imagenette_val200 --limit 200 \\
        --backends tensorflow jax --precisions float32 mixed_bfloat16 --batch-sizes 32 128
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a folder of photos (searched recursively)")
    p.add_argument("--limit", type=int, default=64, help="photos used, the first by path (default 64)")
    p.add_argument("--network", default="efficientnet_lite0", help="registry name (default efficientnet_lite0)")
    p.add_argument("--model-dir", type=Path, default=ROOT / "models", help="verified weights (default models/)")
    p.add_argument("--backends", nargs="+", default=["tensorflow"], help="tensorflow jax torch (default tensorflow)")
    p.add_argument("--precisions", nargs="+", default=["float32"],
                   help="float32 mixed_bfloat16 mixed_float16 (default float32)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32], help="(default 32)")
    p.add_argument("--loop-limit", type=int, default=16, help="photos for the one-image loop (default 16)")
    p.add_argument("--repeats", type=int, default=3, help="model-only passes over the photos; best kept (default 3)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _photos(folder: Path, limit: int, into: Path) -> Path:
    """A folder of links to the first ``limit`` photos of ``folder``: extraction sees just them."""
    from image_clustering.images import list_images

    files = list_images(folder)[:limit]
    if not files:
        sys.exit(f"{folder}: no photos")
    for i, f in enumerate(files):
        (into / f"{i:06d}{Path(f.path).suffix}").symlink_to((folder / f.path).resolve())
    return into


def _model_only(network, pixels, batch_size, repeats):
    import numpy as np

    from image_clustering.features import _run_fixed_shape

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            _run_fixed_shape(network, pixels[i : i + batch_size], batch_size)
        best = min(best, time.perf_counter() - start)
    return len(pixels) / best, np.asarray(network.run(pixels[:batch_size])["features"])


def _one_image_loop(spec, manifest, photos: Path, files) -> float:
    """The original tool: decode one photo, ``model.predict`` it, next photo; photos/s."""
    from image_clustering.extractor import preprocess, preprocess_caffe
    from image_clustering.images import load_rgb

    model = spec.load(Path(manifest["file"]), manifest["format"])
    scaling = manifest["scaling"]

    def prepare(x):
        return preprocess_caffe(x) if scaling == "caffe" else preprocess(x, *scaling)

    model.predict(prepare(load_rgb(photos / files[0].path, spec.input_size)[None]), verbose=0)  # compiles
    start = time.perf_counter()
    for f in files:
        model.predict(prepare(load_rgb(photos / f.path, spec.input_size)[None]), verbose=0)
    return len(files) / (time.perf_counter() - start)


def child(args) -> list[dict]:
    """Runs in a process whose KERAS_BACKEND is ``args.child``."""
    import numpy as np

    from image_clustering import backend, config_from_dict
    from image_clustering.extractor import _keras, gpu_count
    from image_clustering.features import extract_features
    from image_clustering.images import list_images, load_rgb
    from image_clustering.networks import NETWORKS, load_network
    from image_clustering.pipeline import _network
    from image_clustering.weights import load_manifest

    backend.select(args.child)
    keras = _keras()
    spec = NETWORKS[args.network]
    manifest = load_manifest(args.model_dir, args.network, verify=False)
    if manifest is None:
        sys.exit(f"--model-dir: no {args.network} weights in {args.model_dir}; run `imgclust download`")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "photos").mkdir()
        photos = _photos(args.folder, args.limit, Path(tmp) / "photos")
        files = list_images(photos)
        pixels = np.stack([load_rgb(photos / f.path, spec.input_size) for f in files])
        reference = None
        for precision in args.precisions:
            for batch_size in args.batch_sizes:
                keras.backend.clear_session()
                backend.set_precision(precision)
                network = load_network(manifest)
                network.run(pixels[:batch_size])  # the first call traces / compiles: not timed
                model_rate, features = _model_only(network, pixels, batch_size, args.repeats)
                if precision == "float32" and reference is None:
                    reference = features
                drift = None
                if reference is not None and len(reference) == len(features):
                    cos = (features * reference).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(reference, axis=1)
                    drift = float(cos.min())
                raw = {"paths": {"image_dir": str(photos), "model_dir": str(args.model_dir),
                                 "vector_dir": str(Path(tmp) / f"vectors-{precision}-{batch_size}"),
                                 "cluster_label_dir": str(Path(tmp) / "l"), "plot_dir": str(Path(tmp) / "p"),
                                 "link_dir": str(Path(tmp) / "k")},
                       "model": {"object_name": "bench", "extractor": [args.network], "batch_size": batch_size,
                                 "backend": args.child, "precision": precision}}
                config = config_from_dict(raw, source=Path(tmp) / "config.json")
                summary = extract_features(config, {args.network: _network(config, args.network)}, progress=False)
                # the original tool: one photo decoded, then model.predict on it, photo after photo
                loop_rate = _one_image_loop(spec, manifest, photos, files[: args.loop_limit])
                rows.append({"backend": args.child, "precision": precision, "batch_size": batch_size,
                             "gpus": gpu_count(), "photos": len(files), "model": model_rate,
                             "e2e": summary.images_per_second, "loop": loop_rate, "min_cosine_to_float32": drift})
    return rows


def main(argv=None) -> None:
    args = parse(argv)
    if args.child:
        print("ROWS " + json.dumps(child(args)))
        return
    rows = []
    for name in args.backends:
        env = {**os.environ, "KERAS_BACKEND": name, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--child", name]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("ROWS ")]
        if done.returncode or not lines:
            print(f"{name}: failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows += json.loads(lines[-1][5:])
    print(f"{'backend':<11}{'precision':<15}{'batch':>6}{'model':>9}{'e2e':>9}{'loop':>8}"
          f"{'e2e/model':>11}{'e2e/loop':>10}{'cos>=':>9}  (images/s; {rows[0]['gpus'] if rows else '?'} GPU)")
    for r in rows:
        cos = f"{r['min_cosine_to_float32']:.4f}" if r["min_cosine_to_float32"] is not None else "-"
        print(f"{r['backend']:<11}{r['precision']:<15}{r['batch_size']:>6}{r['model']:>9.1f}{r['e2e']:>9.1f}"
              f"{r['loop']:>8.1f}{r['e2e'] / r['model']:>11.2f}{r['e2e'] / r['loop']:>10.1f}{cos:>9}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
