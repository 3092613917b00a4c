"""End-to-end extraction throughput of each network on the same photos, in one process.

Each network extracts the same images into a fresh store (decoding included, network build time
excluded); the ratio to InceptionV3 is the figure to compare, since absolute images/s depend on the
machine.

    python scripts/bench_extractors.py [IMAGE_DIR] [--limit 400]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from image_clustering import config_from_dict, pipeline

ROOT = Path(__file__).resolve().parents[1]
CHOICES = {"inception_v3": "inception_v3", "efficientnet_lite0": "efficientnet_lite0",
           "both (one pass)": ["inception_v3", "efficientnet_lite0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", type=Path, nargs="?", default=ROOT.parent / "shared/datasets/imagenette_val200")
    parser.add_argument("--limit", type=int, default=400, help="images, taken evenly from the class folders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "images"
        photos = sorted(p for p in args.image_dir.rglob("*") if p.is_file())
        for photo in photos[:: max(1, len(photos) // args.limit)][: args.limit]:
            link = subset / photo.relative_to(args.image_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(photo, link)
        rates = {}
        for label, extractor in CHOICES.items():
            config = config_from_dict({
                "paths": {"image_dir": str(subset), "model_dir": str(ROOT / "models"),
                          "vector_dir": f"{tmp}/vectors-{len(rates)}"},
                "model": {"object_name": "bench", "extractor": extractor}})
            pipeline.download(config)
            summary = pipeline.extract(config, progress=False)
            rates[label] = summary.images_per_second
            print(f"{label:20s} {summary.computed} images: {summary.images_per_second:5.1f} images/s "
                  f"({summary.seconds - summary.load_seconds:.1f} s, network build {summary.load_seconds:.1f} s); "
                  f"{rates[label] / rates['inception_v3']:.2f}× InceptionV3")


if __name__ == "__main__":
    main()
