"""imgclust's fast setting against fastdup, the peer people pick for speed, side by side in one
run on the same photos: wall time of the whole command (features + clustering, fresh work
folders) and NMI against the folder labels.

fastdup (PyPI ``fastdup``; its own small ONNX network, runs offline) gets the true number of
classes (``fastdup.run_kmeans``): its default connected components leave such photos alone.
imgclust chooses k itself. fastdup must live in another environment (its dependencies clash
with ours): ``python3 -m venv /tmp/fdenv && /tmp/fdenv/bin/pip install fastdup``.

    PYTHONPATH=. python scripts/bench_fastdup.py --fastdup-python /tmp/fdenv/bin/python \\
        [--sets imagenette_val200 clothing10_testval] [--setting fast default]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sklearn.metrics import normalized_mutual_info_score

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
# imgclust settings compared; "fast" is the one README's "Fast setting" documents.
SETTINGS = {
    "fast": {"extractor": "efficientnet_lite0", "k_max": 30},
    "lite0": {"extractor": "efficientnet_lite0"},
    "default": {},
}
FASTDUP = """
import sys, fastdup
fastdup.run_kmeans(input_dir=sys.argv[1], work_dir=sys.argv[2], num_clusters=int(sys.argv[3]),
                   nearest_neighbors_k=1, num_threads=int(sys.argv[4]))
"""


def truth_of(path: str, dataset: Path) -> str:
    return Path(path).resolve().relative_to(dataset.resolve()).parts[0]


def run_fastdup(python: str, dataset: Path, work: Path, k: int) -> tuple[float, float, int]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "SENTRY_OPT_OUT": "1"}
    start = time.perf_counter()
    subprocess.run([python, "-c", FASTDUP, str(dataset), str(work), str(k), str(os.cpu_count() or 1)],
                   check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    with open(work / "kmeans_assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [truth_of(r["filename"], dataset) for r in rows]
    clusters = [int(r["cluster"]) for r in rows]
    return seconds, normalized_mutual_info_score(names, clusters), len(rows)


def run_imgclust(dataset: Path, work: Path, model: dict) -> tuple[float, float, int, int]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "config.json"
    config.write_text(json.dumps({
        "paths": {"image_dir": str(dataset), "model_dir": str(ROOT / "models"), "vector_dir": str(work / "vectors"),
                  "cluster_label_dir": str(work / "labels"), "plot_dir": str(work / "plots"),
                  "link_dir": str(work / "links")},
        "model": {"object_name": dataset.name, **model}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "image_clustering.cli", "run", "--config", str(config), "-q"],
                   check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    with open(work / "labels" / f"{dataset.name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["path"].split("/")[0] for r in rows]
    labels = [int(r["cluster"]) for r in rows]
    return seconds, normalized_mutual_info_score(names, labels), len(rows), len(set(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastdup-python", required=True, help="a Python interpreter with fastdup installed")
    parser.add_argument("--sets", nargs="+", default=["imagenette_val200", "clothing10_testval"])
    parser.add_argument("--setting", nargs="+", default=["fast"], choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-fastdup"))
    args = parser.parse_args()
    print("| set | photos | tool | k | wall s | NMI |\n|---|---|---|---|---|---|", flush=True)
    for name in args.sets:
        dataset = DATASETS / name
        k = len([p for p in dataset.iterdir() if p.is_dir()])
        seconds, nmi, n = run_fastdup(args.fastdup_python, dataset, args.out / "fastdup" / name, k)
        print(f"| {name} | {n} | fastdup 2.54, k-means at the true k | {k} (given) | {seconds:.0f} | {nmi:.3f} |", flush=True)
        for setting in args.setting:
            seconds, nmi, n, found = run_imgclust(dataset, args.out / setting / name, SETTINGS[setting])
            print(f"| {name} | {n} | imgclust run, {setting} ({json.dumps(SETTINGS[setting])}) | {found} (chosen) | "
                  f"{seconds:.0f} | {nmi:.3f} |", flush=True)


if __name__ == "__main__":
    main()
