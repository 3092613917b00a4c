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
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared")) / "datasets"
SOURCES = {"clothing10_testval": 713, "trashnet_6": 787, "imagenette_val200": 500}  # 2,000 distinct photos
ORIGINALS = 200


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    truth = build(args.work)
    print(f"{truth['photos']} photos, {len(truth['copies'])} copies under {args.work / 'photos'}")


if __name__ == "__main__":
    main()
