"""Time the link-folder writer (first build, then two rebuilds of changed clusters) on N stand-in
files in symlink mode: the cost of the ownership manifest (issue 21).

    PYTHONPATH=. python scripts/bench_link_tree.py 20000 [--dir /dev/shm]

The files are one-byte stand-ins (the link tree never reads photos); ``--dir`` picks the file
system (tmpfs takes the disk's noise out of the comparison).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from image_clustering.outputs import MARKER, build_link_folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--dir", default=None, help="folder to work in (default: the system's temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        photos = Path(tmp) / "photos"
        names = [f"d{i // 1000}/p{i}.jpg" for i in range(args.n)]
        for name in names:
            (photos / name).parent.mkdir(parents=True, exist_ok=True)
            (photos / name).write_bytes(b"x")
        rng = np.random.default_rng(0)
        root = Path(tmp) / "links" / "set"
        for run in ("first", "rebuild", "rebuild"):
            labels = rng.integers(0, 50, args.n)
            start = time.perf_counter()
            build_link_folders(root, photos, names, labels, 50)
            print(f"{run}: {time.perf_counter() - start:.2f} s", flush=True)
        print(f"manifest: {(root / MARKER).stat().st_size} bytes")


if __name__ == "__main__":
    main()
