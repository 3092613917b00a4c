"""Extraction in-process against a Dask LocalCluster of 1 and 2 workers on this machine: the same
vectors (to 1e-5), and the overhead of the distributed path at equal cores.

Each mode extracts the same real photos (default extractor, InceptionV3 + EfficientNet-Lite0) into
a fresh store. Timed: the extraction with the networks already built — in-process, ``extract``'s
own time less its network loading; on the cluster, a second ``extract`` on the same warm workers
(their networks are built once per process by a first run on other photos) — and, separately, the
cold total including cluster start and network building. Modes are interleaved over ``--rounds``
so a busy shared machine slows them alike.

    PYTHONPATH=. python scripts/bench_distributed.py [--photos 128] [--rounds 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared")) / "datasets" / "imagenette_val200"


def photos(out: Path, count: int, offset: int = 0) -> Path:
    folder = out / f"photos{offset}"
    files = sorted(p for p in DATASET.rglob("*") if p.is_file())
    for p in files[offset :: len(files) // count][:count]:
        (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(p, folder / p.parent.name / p.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--task", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-distributed"))
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    from image_clustering import distributed, pipeline
    from image_clustering.config import config_from_dict
    from image_clustering.features import load_store

    shutil.rmtree(args.out, ignore_errors=True)
    images, warm_images = photos(args.out, args.photos), photos(args.out, 8, offset=1)

    def config(name, image_dir, scheduler=None, workers=1):
        return config_from_dict({
            "paths": {"image_dir": str(image_dir), "model_dir": str(ROOT / "models"), "vector_dir": str(args.out / name),
                      "cluster_label_dir": str(args.out / "labels"), "plot_dir": str(args.out / "plots"),
                      "link_dir": str(args.out / "links")},
            "model": {"object_name": "b", "batch_size": args.batch},
            "compute": {"scheduler": scheduler, "workers": workers, "task_size": args.task}})

    def vectors(cfg):
        return np.concatenate([np.asarray(load_store(cfg.layout.store_dir(n)).vectors) for n in cfg.model.extractor], 1)

    rows, reference = [], None
    for r in range(args.rounds):
        # in-process
        cfg = config(f"inproc{r}", images)
        start = time.perf_counter()
        s = pipeline.extract(cfg, progress=False)
        cold = time.perf_counter() - start
        warm = s.seconds - s.load_seconds
        reference = vectors(cfg) if reference is None else reference
        rows.append(("in-process", r, args.photos / warm, cold, 0.0))
        for workers in (1, 2):
            cfg = config(f"local{workers}-{r}", images, "local", workers)
            start = time.perf_counter()
            with distributed.client(cfg.compute) as client:
                pipeline.extract(dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, image_dir=warm_images,
                                 vector_dir=args.out / f"warm{workers}-{r}")), progress=False)
                client.run(lambda: None)
                t0 = time.perf_counter()
                pipeline.extract(cfg, progress=False)
                warm = time.perf_counter() - t0
            cold = time.perf_counter() - start
            diff = float(np.abs(vectors(cfg) - reference).max())
            rows.append((f"LocalCluster, {workers} worker{'s' * (workers > 1)}", r, args.photos / warm, cold, diff))
        print(*(f"{m} round {r}: {rate:.2f} images/s warm, {cold:.0f} s cold, max |Δ| {d:.1e}"
                for m, r, rate, cold, d in rows[-3:]), sep="\n", flush=True)
    print(f"\n| mode | images/s (warm networks, {args.photos} photos) | vs in-process | total with start-up "
          "| max abs. difference |")
    print("|---|---|---|---|---|")
    base = np.mean([rate for m, _, rate, _, _ in rows if m == "in-process"])
    for mode in dict.fromkeys(m for m, *_ in rows):
        rates = [rate for m, _, rate, _, _ in rows if m == mode]
        colds = [c for m, _, _, c, _ in rows if m == mode]
        diffs = [d for m, _, _, _, d in rows if m == mode]
        print(f"| {mode} | {np.mean(rates):.2f} ({', '.join(f'{x:.2f}' for x in rates)}) | {np.mean(rates) / base:.0%} | "
              f"{np.mean(colds):.0f} s | {max(diffs):.1e} |")


if __name__ == "__main__":
    main()
