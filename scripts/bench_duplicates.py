"""Near-duplicate benchmark: ``imgclust duplicates`` against imagededup on edited copies of real photos.

The test set is built from ``../shared/datasets`` (read only) into ``--work``: 2,000 distinct photos
(clothing10, trashnet, imagenette), 200 of them originals with nine copies each — a byte-identical
copy (``exact``) and eight edits (JPEG quality 30, 50 % size, 10 % crop, brightness +20 %, a white
border, a caption drawn on it, a horizontal flip, a screenshot-like rescale inside a window frame).
Truth: two photos are duplicates when they come from the same original.

Scored per edit kind: recall = share of (original, copy) pairs whose two photos end in one group at
``near-identical`` or above (``exact`` for the exact copies); precision = share of the pairs in
those groups that share an original. ``ukbench_groups14`` is the ``same scene`` check: every group of
4 views found, no two groups merged. imagededup (PHash, CNN) runs in its own environment
(``python3 -m venv ENV && ENV/bin/pip install imagededup``) on the same folder.

    PYTHONPATH=. nice -n 10 python scripts/bench_duplicates.py --work /tmp/dupbench \\
        [--imagededup-python ENV/bin/python]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared")) / "datasets"
SOURCES = {"clothing10_testval": 713, "trashnet_6": 787, "imagenette_val200": 500}  # 2,000 distinct photos
ORIGINALS = 200
# Photos that are near-identical in the source sets themselves (found by the benchmark, checked by
# eye: the same shot twice): counted as duplicates of each other, not as false pairs.
SOURCE_DUPLICATES = [("trashnet_6/paper/paper101.jpg", "trashnet_6/paper/paper108.jpg"),
                     ("trashnet_6/paper/paper136.jpg", "trashnet_6/paper/paper148.jpg"),
                     ("trashnet_6/metal/metal11.jpg", "trashnet_6/metal/metal221.jpg")]


def _caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    size = max(12, im.height // 12)
    font = ImageFont.load_default(size=size)
    draw.rectangle([0, im.height - int(size * 1.6), im.width, im.height], fill=(0, 0, 0))
    draw.text((size // 2, im.height - int(size * 1.4)), "Summer 2019 - grandma's garden", fill=(255, 255, 255), font=font)
    return out


def _screenshot(im: Image.Image) -> Image.Image:
    """The photo shown at 70 % inside a window (title bar, grey desktop), as a screen grab saves it."""
    small = im.resize((int(im.width * 0.7), int(im.height * 0.7)), Image.Resampling.BILINEAR)
    bar = max(16, small.height // 14)
    canvas = Image.new("RGB", (small.width + 80, small.height + bar + 60), (200, 200, 205))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([30, 20, 30 + small.width + 19, 20 + bar + small.height + 19], fill=(250, 250, 250),
                   outline=(90, 90, 90))
    draw.rectangle([31, 21, 30 + small.width + 18, 20 + bar], fill=(60, 90, 150))
    canvas.paste(small, (40, 30 + bar))
    return canvas


def _crop(im: Image.Image) -> Image.Image:
    w, h = im.size
    return im.crop((w // 20, h // 20, w - w // 20, h - h // 20))  # 10 % of each side's length off


# kind → (edit, file suffix, save options)
EDITS = {
    "jpeg_q30": (lambda im: im, ".jpg", {"quality": 30}),
    "resize_50": (lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), ".jpg", {"quality": 90}),
    "crop_10": (_crop, ".jpg", {"quality": 90}),
    "brightness_20": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), ".jpg", {"quality": 90}),
    "white_border": (lambda im: ImageOps.expand(im, border=max(8, min(im.size) // 10), fill="white"), ".jpg",
                     {"quality": 90}),
    "caption": (_caption, ".jpg", {"quality": 90}),
    "flip": (ImageOps.mirror, ".jpg", {"quality": 90}),
    "screenshot": (_screenshot, ".png", {}),
}
KINDS = ["exact", *EDITS]


def build(work: Path, seed: int = 0) -> dict:
    """Write the test set under ``work/photos`` (once; kept) and return its truth:
    ``{"copies": {copy path: [original path, kind]}, "photos": n}``."""
    photos, truth_file = work / "photos", work / "truth.json"
    if truth_file.is_file():
        return json.loads(truth_file.read_text())
    rng = random.Random(seed)
    distinct = []
    for name, n in SOURCES.items():
        files = sorted(p for p in (DATASETS / name).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        distinct += rng.sample(files, n)
    originals = set(rng.sample(range(len(distinct)), ORIGINALS))
    shutil.rmtree(photos, ignore_errors=True)
    copies = {}
    for i, source in enumerate(distinct):
        rel = f"{source.parent.parent.name}/{source.parent.name}/{source.name}"
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, photos / rel)
        if i not in originals:
            continue
        stem = Path(rel).with_suffix("")
        exact = f"copies/{stem}.exact{source.suffix}"
        (photos / exact).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, photos / exact)
        copies[exact] = [rel, "exact"]
        with Image.open(source) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            for kind, (edit, suffix, options) in EDITS.items():
                out = f"copies/{stem}.{kind}{suffix}"
                edit(im).save(photos / out, **options)
                copies[out] = [rel, kind]
    truth = {"copies": copies, "photos": len(distinct) + len(copies)}
    truth_file.write_text(json.dumps(truth, indent=1))
    return truth


IMAGEDEDUP = """
import json, sys, time
from imagededup.methods import CNN, PHash
method = {"phash": PHash, "cnn": CNN}[sys.argv[2]]()
start, cpu0 = time.perf_counter(), time.process_time()
found = method.find_duplicates(image_dir=sys.argv[1], recursive=True)
print(json.dumps({"seconds": time.perf_counter() - start, "duplicates": found}))
"""


def config_for(work: Path, image_dir: Path, name: str, grade: str = "near-identical") -> Path:
    path = work / f"{name}.json"
    path.write_text(json.dumps({
        "paths": {"image_dir": str(image_dir), "model_dir": str(ROOT / "models"), "vector_dir": str(work / "vectors"),
                  "cluster_label_dir": str(work / "labels"), "plot_dir": str(work / "plots"),
                  "link_dir": str(work / "links")},
        "model": {"object_name": name}, "duplicates": {"grade": grade}}))
    return path


def extract(config: Path) -> float:
    """``imgclust extract`` (reuses the store when it is there); wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "image_clustering.cli", "extract", "--config", str(config), "-q"],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def imgclust_groups(config: Path) -> tuple[list[set[str]], float]:
    """``imgclust duplicates`` in this process: its groups (sets of paths) and wall seconds
    (features already extracted)."""
    from image_clustering import pipeline
    from image_clustering.config import load_config

    start = time.perf_counter()
    result = pipeline.duplicates(load_config(config), progress=False)
    seconds = time.perf_counter() - start
    paths = result.paths
    return [{paths[i] for i in g.members} for g in result.groups], seconds


def pairs_of_groups(groups: list[set[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in combinations(sorted(g), 2)}


def score(predicted: set[frozenset], truth: dict, kinds=KINDS) -> dict[str, tuple[float, float]]:
    """Per edit kind: (precision, recall). Recall over the (original, copy) pairs of that kind;
    precision over the predicted pairs that hold a copy of that kind (a pair of two copies is
    true when both come from one original); "all" over every predicted pair."""
    twin = {b: a for a, b in SOURCE_DUPLICATES}
    origin = {c: o for c, (o, _k) in truth["copies"].items()}
    kind_of = {c: k for c, (_o, k) in truth["copies"].items()}

    def source(p):
        p = origin.get(p, p)
        return twin.get(p, p)

    out = {}
    for kind in kinds:
        want = {frozenset((o, c)) for c, (o, k) in truth["copies"].items() if k == kind}
        mine = [p for p in predicted if any(kind_of.get(x) == kind for x in p)]
        good = sum(len({source(x) for x in p}) == 1 for p in mine)
        out[kind] = (good / len(mine) if mine else 1.0, len(want & predicted) / len(want))
    good = sum(len({source(x) for x in p}) == 1 for p in predicted)
    originals = {o for o, _k in truth["copies"].values()}
    everything = {frozenset(p) for o in originals
                  for p in combinations(sorted([o] + [c for c, (oo, _k) in truth["copies"].items() if oo == o]), 2)}
    out["all"] = (good / len(predicted) if predicted else 1.0, len(everything & predicted) / len(everything))
    return out


def run_imagededup(python: str, photos: Path, method: str) -> tuple[set[frozenset], float]:
    done = subprocess.run([python, "-c", IMAGEDEDUP, str(photos), method], check=True, capture_output=True, text=True)
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    pairs = {frozenset((a, b)) for a, found in doc["duplicates"].items() for b in found}
    return pairs, doc["seconds"]


def table(name: str, scores: dict, seconds: float) -> None:
    cells = " | ".join(f"{p:.3f} / {r:.3f}" for p, r in scores.values())
    print(f"| {name} | {cells} | {seconds:.1f} |", flush=True)


SCALE_CHILD = """
import resource, sys, time
import numpy as np
from image_clustering.duplicates import describe_groups, find_duplicates, outlier_scores
n, base_file, seed = int(sys.argv[1]), sys.argv[2], 0
base = np.load(base_file)
rng = np.random.default_rng(seed)
x = np.empty((n, base.shape[1]), np.float32)  # real vectors repeated, each with its own noise
for s in range(0, n, 4096):
    rows = base[np.arange(s, min(n, s + 4096)) % len(base)]
    x[s:s + len(rows)] = rows / np.linalg.norm(rows, axis=1, keepdims=True) + rng.normal(
        0, float(sys.argv[3]) / np.sqrt(base.shape[1]), rows.shape).astype(np.float32)
start, cpu0 = time.perf_counter(), time.process_time()
groups, index, sim = find_duplicates(x, None, "same scene")
described = describe_groups(groups, [f"p{i:06d}.jpg" for i in range(n)])
scores = outlier_scores(sim)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"| {n:,} | {base.shape[1]} | {seconds:.0f} | {cpu:.0f} | {peak:.2f} | {len(described)} | "
      f"{sum(len(g.members) for g in described)} |")
"""


def scale(work: Path, sizes: list[int], noise: float) -> None:
    """``find_duplicates`` (+ keepers, outlier scores) on ``sizes`` synthetic rows: the bench
    set's real vectors repeated, each copy with Gaussian noise of norm ``noise`` (cosine between
    two copies about 1 / (1 + noise²)); no photo is read. Peak memory of the whole process."""
    import numpy as np

    from image_clustering import pipeline
    from image_clustering.config import load_config

    base_file = work / "base_vectors.npy"
    if not base_file.is_file():
        _paths, vectors, _key = pipeline.features(load_config(config_for(work, work / "photos", "bench")))
        np.save(base_file, vectors)
    print("| vectors | dimensions | wall s | CPU s | peak GiB | groups | photos in groups |\n|---|---|---|---|---|---|---|")
    for n in sizes:
        subprocess.run([sys.executable, "-c", SCALE_CHILD, str(n), str(base_file), str(noise)], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--imagededup-python", help="a Python with imagededup installed (its own environment)")
    parser.add_argument("--imagededup-methods", nargs="*", default=["phash", "cnn"])
    parser.add_argument("--scale", nargs="*", type=int, help="only the scale test, at these numbers of vectors")
    parser.add_argument("--noise", type=float, default=0.8, help="noise norm of the scale test's copies")
    args = parser.parse_args()
    if args.scale:
        return scale(args.work, args.scale, args.noise)
    truth = build(args.work)
    print(f"{truth['photos']} photos, {len(truth['copies'])} copies under {args.work / 'photos'}", flush=True)
    if args.build_only:
        return
    photos = args.work / "photos"
    seconds = extract(config_for(args.work, photos, "bench"))
    print(f"imgclust extract: {seconds:.0f} s (0 when the store was there)", flush=True)
    print("| tool | " + " | ".join(KINDS) + " | all | wall s |\n|---" * 1 + "|---" * (len(KINDS) + 2) + "|")
    for grade in ("exact", "near-identical"):
        groups, seconds = imgclust_groups(config_for(args.work, photos, "bench", grade))
        counted = [p for g in groups for p in g]
        assert len(counted) == len(set(counted)), "a photo in two groups"
        table(f"imgclust duplicates, {grade} and above", score(pairs_of_groups(groups), truth), seconds)
    for method in args.imagededup_methods if args.imagededup_python else []:
        try:
            pairs, seconds = run_imagededup(args.imagededup_python, photos, method)
        except subprocess.CalledProcessError as exc:
            print(f"| imagededup {method} | failed: {exc.stderr.strip().splitlines()[-1][:200]} |", flush=True)
            continue
        table(f"imagededup {method} (default threshold)", score(pairs, truth), seconds)
    uk = DATASETS / "ukbench_groups14"
    uk_config = config_for(args.work, uk, "ukbench", "same scene")
    extract(uk_config)
    groups, seconds = imgclust_groups(uk_config)
    truth_groups = {}
    for p in (q.relative_to(uk).as_posix() for q in uk.rglob("*.jpg")):
        truth_groups.setdefault(p.split("/")[0], set()).add(p)
    found = sum(any(t <= g for g in groups) for t in truth_groups.values())
    merged = sum(len({p.split("/")[0] for p in g}) > 1 for g in groups)
    exact = sum(g in truth_groups.values() for g in groups)
    print(f"ukbench_groups14, same scene and above: {len(groups)} groups; {found} of {len(truth_groups)} groups of 4 "
          f"found whole, {exact} exactly; {merged} groups mixing objects; {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
