#!/usr/bin/env python
"""Decode throughput (photos/s) of the extractor's decoders alone, no network: the thread pool of
features._prefetched_batches vs decode.py's worker processes, for 1..N workers.

    python scripts/bench_decode.py ../shared/datasets/imagenette_val200 --limit 200 --workers 1 2
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from image_clustering import decode
from image_clustering.features import _safe_load
from image_clustering.images import list_images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--sizes", nargs="+", type=int, default=[224, 299], help="network inputs (default both defaults')")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    files = list_images(args.folder)[: args.limit]
    sizes = tuple(args.sizes)
    for f in files:  # page cache warm for every variant alike
        (args.folder / f.path).read_bytes()
    print(f"{len(files)} photos from {args.folder}, sizes {sizes}, {os.cpu_count()} cores")
    for n in args.workers:
        with ThreadPoolExecutor(n) as pool:
            threads, failed = _rate(pool.map(lambda f: _safe_load(args.folder / f.path, sizes), files))
        processes, _ = _rate(r for _, batch in decode.process_batches(files, args.folder, sizes, args.batch_size,
                                                                      _safe_load, n) for r in batch)
        print(f"workers {n}: threads {threads:7.1f} photos/s   processes {processes:7.1f} photos/s   "
              f"({failed} failed)")


def _rate(results) -> tuple[float, int]:
    """Photos/s after the first photo arrives (so the workers' start-up, paid once per run, is out)."""
    first = count = failed = 0
    for result in results:
        count += 1
        failed += isinstance(result, str)
        if count == 1:
            first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - first), failed


if __name__ == "__main__":
    main()
