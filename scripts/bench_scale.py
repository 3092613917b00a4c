"""find-k and cluster at scale: wall time and peak memory on synthetic feature stores.

For each N, a synthetic N × 2048 float32 feature matrix with cluster structure (50 Gaussian
clusters of random size) is written as an ``inception_v3`` store (appended in chunks and
compacted, as ``extract`` does), then ``imgclust find-k`` and ``imgclust cluster`` run as separate
processes under ``/usr/bin/time`` (wall seconds, peak resident memory). Also measures ``extract``'s
peak memory on two sizes of a real photo set, to show it does not grow with the collection.

    python scripts/bench_scale.py [--sizes 10000 30000 100000] [--out /tmp/imgclust-scale]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from image_clustering.features import _StoreWriter
from image_clustering.images import ImageFile
from image_clustering.networks import NETWORKS

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
IDENTITY = {"network": "inception_v3", "source": "synthetic", "sha256": "-"}


def synthetic_store(store_dir: Path, n: int, seed: int = 0, chunk: int = 10_000) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (50, 2048)).astype(np.float32)
    writer = _StoreWriter(store_dir, IDENTITY, 2048, keep_previous=False)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        labels = rng.choice(50, m, p=np.linspace(1, 3, 50) / np.linspace(1, 3, 50).sum())
        x = centres[labels] + rng.normal(0, 0.6, (m, 2048)).astype(np.float32)
        writer.append([ImageFile(f"c{c:02d}/{start + i:07d}.jpg", 1, 1) for i, c in enumerate(labels)],
                      {"features": x})
    writer.compact(_all_paths(store_dir),
                   NETWORKS["inception_v3"].outputs)


def _all_paths(store_dir: Path) -> set[str]:
    index = json.loads((store_dir / "index.json").read_text())
    return {row[0] for t in index["shards"] for row in json.loads((store_dir / f"{t}.json").read_text())["images"]}


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run under /usr/bin/time: (wall seconds, peak resident MB, stdout)."""
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    wall, kb = re.search(r"TIME ([\d.]+) (\d+)", result.stderr).groups()
    return float(wall), int(kb) / 1024, result.stdout.strip()


def write_config(path: Path, image_dir: Path, out: Path, name: str, **model) -> Path:
    path.write_text(json.dumps({
        "paths": {"image_dir": str(image_dir), "model_dir": str(ROOT / "models"), "vector_dir": str(out / "vectors"),
                  "cluster_label_dir": str(out / "labels"), "plot_dir": str(out / "plots"), "link_dir": str(out / "link")},
        "model": {"object_name": name, **model}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-scale"))
    parser.add_argument("--skip-extract", action="store_true")
    args = parser.parse_args()
    imgclust = str(Path(sys.executable).with_name("imgclust"))
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "images").mkdir(parents=True)
    print("| N | find-k s | find-k peak MB | cluster s | cluster peak MB | suggested k |\n|---|---|---|---|---|---|")
    for n in args.sizes:
        name = f"synthetic{n}"
        synthetic_store(args.out / "vectors" / name / "inception_v3", n)
        config = write_config(args.out / f"{name}.json", args.out / "images", args.out, name, extractor="inception_v3")
        fk = timed([imgclust, "find-k", "--config", str(config), "-q"])
        cl = timed([imgclust, "cluster", "--config", str(config), "-q"])
        k = re.search(r"suggested k = (\d+)", fk[2]).group(1)
        print(f"| {n:,} | {fk[0]:.0f} | {fk[1]:.0f} | {cl[0]:.0f} | {cl[1]:.0f} | {k} |", flush=True)
    if args.skip_extract:
        return
    print("\n| extract, efficientnet_lite0 | images | wall s | peak MB |\n|---|---|---|---|")
    photos = sorted(p for p in (DATASETS / "imagenette_val200").rglob("*") if p.is_file())
    for count in (250, 2000):
        folder = args.out / f"photos{count}"
        for p in photos[:: len(photos) // count][:count]:
            (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
            os.symlink(p, folder / p.parent.name / p.name)
        config = write_config(args.out / f"photos{count}.json", folder, args.out, f"photos{count}",
                              extractor="efficientnet_lite0")
        wall, mb, _ = timed([imgclust, "extract", "--config", str(config), "-q"])
        print(f"| imagenette | {count} | {wall:.0f} | {mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
