"""Extraction speed: model-only ceiling vs end-to-end ``extract`` vs a one-image-per-call loop.

For each photo set, in one process and with the same networks and batch size:
- model-only: the networks on already-decoded, already-resized tensors (the floor of the cost);
- end-to-end: ``pipeline.extract`` into a fresh store (decoding, resizing, saving included);
- one at a time: decode one photo, run the networks on a batch of one (the original tool's loop).
Network build time is excluded everywhere. Sets: (a) imagenette_val200 (evenly sampled), (b) camera-
size JPEGs (4000×3000, made by upscaling shared photos into a temporary folder).

    python scripts/bench_extract.py [--images 400] [--camera 200] [--loop 40] [--extractor inception_v3 ...]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from image_clustering import config_from_dict, pipeline
from image_clustering.features import _run_fixed_shape
from image_clustering.images import list_images, load_rgb
from image_clustering.networks import NETWORKS

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


def sample(folder: Path, n: int) -> list[Path]:
    photos = sorted(p for p in folder.rglob("*") if p.is_file())
    return photos[:: max(1, len(photos) // n)][:n]


def link_set(photos: list[Path], base: Path, dest: Path) -> Path:
    for p in photos:
        target = dest / p.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, target)
    return dest


def camera_set(n: int, dest: Path) -> Path:
    dest.mkdir(parents=True)
    sources = sample(DATASETS / "clothing10_testval", n)
    for i, p in enumerate(sources[:n]):
        with Image.open(p) as im:
            im.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(dest / f"cam{i:04d}.jpg", quality=90)
    return dest


def measure(label: str, image_dir: Path, work: Path, extractor, batch: int, loop_n: int) -> dict:
    config = config_from_dict({"paths": {"image_dir": str(image_dir), "model_dir": str(ROOT / "models"),
                                         "vector_dir": str(work / f"vectors-{label}")},
                               "model": {"object_name": label, "extractor": extractor, "batch_size": batch}})
    pipeline.download(config)
    networks = [pipeline._network(config, n)[0]() for n in config.model.extractor]
    files = list_images(image_dir)
    # model-only: decode everything first, then time the networks alone
    pixels = {n.name: np.stack([load_rgb(image_dir / f.path, n.input_size) for f in files]) for n in networks}
    for n in networks:  # warm-up: first call traces the graph
        _run_fixed_shape(n, pixels[n.name][:batch], batch)
    start = time.perf_counter()
    for i in range(0, len(files), batch):
        for n in networks:
            _run_fixed_shape(n, pixels[n.name][i : i + batch], batch)
    model_only = len(files) / (time.perf_counter() - start)
    summary = pipeline.extract(config, progress=False)
    end_to_end = summary.images_per_second
    for n in networks:  # warm-up for batches of one
        n.run(pixels[n.name][:1])
    start = time.perf_counter()
    for f in files[:loop_n]:
        for n in networks:
            n.run(load_rgb(image_dir / f.path, NETWORKS[n.name].input_size)[None])
    one_at_a_time = loop_n / (time.perf_counter() - start)
    row = {"set": label, "images": len(files), "model_only": model_only, "end_to_end": end_to_end,
           "one_at_a_time": one_at_a_time}
    print(f"{label:12s} {len(files):4d} images  model-only {model_only:6.1f}/s  end-to-end {end_to_end:6.1f}/s "
          f"({end_to_end / model_only:5.1%} of model-only)  one-at-a-time {one_at_a_time:5.1f}/s "
          f"(end-to-end is {end_to_end / one_at_a_time:.2f}×)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--camera", type=int, default=200)
    parser.add_argument("--loop", type=int, default=40, help="photos for the one-at-a-time loop")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--extractor", nargs="+", default=["inception_v3", "efficientnet_lite0"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {"imagenette": link_set(sample(DATASETS / "imagenette_val200", args.images),
                                       DATASETS / "imagenette_val200", work / "imagenette"),
                "camera-12MP": camera_set(args.camera, work / "camera")}
        print(f"extractor {args.extractor}, batch {args.batch}, {os.cpu_count()} CPUs")
        for label, folder in sets.items():
            measure(label, folder, work, args.extractor, args.batch, args.loop)


if __name__ == "__main__":
    main()
