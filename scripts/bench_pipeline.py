"""Run the four commands on a labelled photo folder and report wall time and quality.

The folder's first path level is the ground-truth class. Each command runs as its own process
(what a user sees, start-up included); outputs go to a scratch folder, features are recomputed
unless --keep is given and the scratch folder already holds them.

    python scripts/bench_pipeline.py ../shared/datasets/imagenette_val200 [--out /tmp/imgclust-bench] [--keep]
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-bench"))
    parser.add_argument("--keep", action="store_true", help="reuse features from an earlier run")
    parser.add_argument("--reducer", default="tsne", choices=["tsne", "umap"])
    args = parser.parse_args()
    name = args.image_dir.resolve().name
    if not args.keep:
        shutil.rmtree(args.out / "vectors" / name, ignore_errors=True)
    config = {
        "paths": {"image_dir": str(args.image_dir.resolve()), "model_dir": str(ROOT / "models"),
                  "vector_dir": str(args.out / "vectors"), "cluster_label_dir": str(args.out / "labels"),
                  "plot_dir": str(args.out / "plots"), "link_dir": str(args.out / "link")},
        "model": {"object_name": name, "k": "auto", "reducer": args.reducer},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = args.out / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=1))
    imgclust = str(Path(sys.executable).with_name("imgclust"))
    for command in ("extract", "find-k", "cluster"):
        start = time.perf_counter()
        out = subprocess.run([imgclust, command, "--config", str(config_path), "-q"], check=True,
                             capture_output=True, text=True).stdout.strip()
        print(f"{command:8s} {time.perf_counter() - start:7.1f} s  {out}")
    with open(args.out / "labels" / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    truth = [r["path"].split("/")[0] for r in rows]
    labels = [int(r["cluster"]) for r in rows]
    print(f"images {len(rows)}, classes {len(set(truth))}, clusters {len(set(labels))}: "
          f"NMI {normalized_mutual_info_score(truth, labels):.3f}, ARI {adjusted_rand_score(truth, labels):.3f}")


if __name__ == "__main__":
    main()
