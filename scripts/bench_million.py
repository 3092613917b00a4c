"""find-k and cluster on a synthetic collection of the default extractor's shape, up to 10^6 photos:
wall time and peak memory of each command.

For each N: the feature stores of the default extractor (``inception_v3`` 2048-d and
``efficientnet_lite0`` 1280-d float32, together 3,328-d: 13.3 GB at 10^6) are written directly in
their compacted form (one shard each, as ``extract`` leaves them) with cluster structure (50
Gaussian clusters of unequal size in a shared latent space, mapped into both networks), and the
photo folder holds N symbolic links to one real photo (``find-k``/``cluster`` check every photo
still exists; ``cluster`` links them and draws contact sheets). Then ``imgclust find-k`` and
``imgclust cluster`` (which also writes the report, of a seeded sample of 100,000 photos above
that many) run as separate processes under ``/usr/bin/time`` (wall seconds, peak resident
memory), default settings. Prints one Markdown table row per N, with the NMI of the
clusters against the 50 generating clusters.

    PYTHONPATH=. python scripts/bench_million.py --n 100000 300000 1000000 [--out /tmp/imgclust-million]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "raw" / "example"
DIMS = {"inception_v3": 2048, "efficientnet_lite0": 1280}
CLUSTERS = 50
CHUNK = 20_000


def photo_file() -> Path:
    return sorted(p for p in PHOTO.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0]


def names(n: int) -> list[str]:
    """Photo paths in 100 folders, sorted as the rows (a compacted store is sorted by path)."""
    return [f"c{i * 100 // n:02d}/{i:07d}.jpg" for i in range(n)]


def synthetic(out: Path, name: str, n: int, seed: int = 0) -> np.ndarray:
    """Write the photo links and both stores; returns the generating cluster of each row (path order)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(0, 1, (CLUSTERS, 64)).astype(np.float32)
    maps = {net: rng.normal(0, 1 / 8, (64, d)).astype(np.float32) for net, d in DIMS.items()}
    weights = np.linspace(1, 3, CLUSTERS)
    labels = rng.choice(CLUSTERS, n, p=weights / weights.sum())
    paths = names(n)
    images = out / "images" / name
    target = photo_file()
    st = target.stat()
    for d in range(100):
        (images / f"c{d:02d}").mkdir(parents=True, exist_ok=True)
    for p in paths:
        os.symlink(target, images / p)
    token = "synthetic0001"
    for net, d in DIMS.items():
        store = out / "vectors" / name / net
        store.mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(store / f"{token}.features.npy", mode="w+", dtype=np.float32, shape=(n, d))
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            z = latent[labels[start:stop]] + rng.normal(0, 0.5, (stop - start, 64)).astype(np.float32)
            array[start:stop] = np.maximum(z @ maps[net], 0) + rng.normal(0, 0.05, (stop - start, d)).astype(np.float32)
        array.flush()
        del array
        (store / f"{token}.json").write_text(json.dumps({"images": [[p, st.st_size, st.st_mtime_ns] for p in paths]}))
        (store / "index.json").write_text(json.dumps({"format": 3, "extractor": {"network": net, "source": "synthetic",
                                                      "sha256": "-"}, "dim": d, "shards": [token]}))
    return labels


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run under /usr/bin/time: (wall seconds, peak resident MB, stdout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    wall, kb = re.search(r"TIME ([\d.]+) (\d+)", result.stderr).groups()
    return float(wall), int(kb) / 1024, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-million"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic stores (default: delete each after use)")
    args = parser.parse_args()
    from sklearn.metrics import normalized_mutual_info_score

    print("| N | store GB | find-k s | find-k peak MB | cluster s | cluster peak MB | suggested k (true 50) | NMI |\n"
          "|---|---|---|---|---|---|---|---|", flush=True)
    for n in args.n:
        name = f"million{n}"
        for sub in ("images", "vectors", "labels", "plots", "link"):
            shutil.rmtree(args.out / sub / name, ignore_errors=True)
        start = time.perf_counter()
        truth = synthetic(args.out, name, n)
        print(f"(synthetic store of {n:,} written in {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        config = args.out / f"{name}.json"
        config.write_text(json.dumps({
            "paths": {"image_dir": str(args.out / "images" / name), "model_dir": str(ROOT / "models"),
                      "vector_dir": str(args.out / "vectors"), "cluster_label_dir": str(args.out / "labels"),
                      "plot_dir": str(args.out / "plots"), "link_dir": str(args.out / "link")},
            "model": {"object_name": name}}))
        cli = [sys.executable, "-m", "image_clustering.cli"]
        fk = timed([*cli, "find-k", "--config", str(config), "-q"])
        print(f"(find-k: {fk[0]:.0f} s, peak {fk[1]:.0f} MB)", file=sys.stderr, flush=True)
        cl = timed([*cli, "cluster", "--config", str(config), "-q"])
        k = re.search(r"suggested k = (\d+)", fk[2]).group(1)
        with open(args.out / "labels" / f"{name}.csv", newline="") as f:
            found = {row["path"]: int(row["cluster"]) for row in csv.DictReader(f)}
        nmi = normalized_mutual_info_score(truth, [found[p] for p in names(n)])
        gb = sum(f.stat().st_size for f in (args.out / "vectors" / name).rglob("*.npy")) / 1e9
        print(f"| {n:,} | {gb:.1f} | {fk[0]:.0f} | {fk[1]:.0f} | {cl[0]:.0f} | {cl[1]:.0f} | {k} | {nmi:.3f} |",
              flush=True)
        if not args.keep:
            for sub in ("images", "vectors", "link"):
                shutil.rmtree(args.out / sub / name, ignore_errors=True)


if __name__ == "__main__":
    main()
