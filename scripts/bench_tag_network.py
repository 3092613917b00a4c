"""Time ``imgclust tag-network`` on a synthetic label table of N images (no photo files: every
image is drawn as a dot), one process per N so peak memory is that command's.

    python scripts/bench_tag_network.py 5000 100000 [--out /tmp/imgclust-tagnet]

Images draw 5 labels from one of 60 themes of 25 words (1,500 labels in all).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def table(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    theme = rng.integers(0, 60, n)
    words = np.argsort(rng.random((n, 25)), axis=1)[:, :5]
    lines = ["path,label_1,label_2,label_3,label_4,label_5"]
    lines += [f"set/{i}.jpg," + ",".join(f"t{t}w{w}" for w in ws) for i, (t, ws) in enumerate(zip(theme, words))]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-tagnet"))
    args = parser.parse_args()
    for n in args.sizes:
        out = args.out / str(n)
        out.mkdir(parents=True, exist_ok=True)
        table(out / "labels.csv", n)
        config = {"paths": {"image_dir": str(out / "photos"), "cluster_label_dir": str(out / "labels"),
                            "plot_dir": str(out / "plots"), "link_dir": str(out / "links"),
                            "vector_dir": str(out / "vectors"), "label_file": str(out / "labels.csv")},
                  "model": {"object_name": "bench"}}
        (out / "photos").mkdir(exist_ok=True)
        (out / "config.json").write_text(json.dumps(config))
        imgclust = str(Path(sys.executable).with_name("imgclust"))
        start = time.perf_counter()
        run = subprocess.run([imgclust, "tag-network", "--config", str(out / "config.json")], capture_output=True,
                             text=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GiB; the largest child so far
        print(f"N = {n:>7,}: {seconds:6.1f} s, peak RSS so far {peak:.2f} GiB, exit {run.returncode}")
        print("   ", run.stderr.strip().replace("\n", "\n    "))


if __name__ == "__main__":
    main()
