"""Build ``raw/example``: real photos shipped in scikit-image's wheel, four versions of each.

Each source photo gets its own folder (the expected group) holding ``original.jpg`` (longest side at
most 640 px), ``crop.jpg`` (central 70 %), ``flip.jpg`` (mirrored) and ``bright.jpg`` (brightness
×1.4). All sources are public domain or CC0 (see ``raw/example/README.md``). Needs scikit-image
(``pip install -e .[example]``); the result is committed, so users never run this.

    python scripts/make_example.py [OUT_DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

SOURCES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "hubble_deep_field.jpg",
           "retina.jpg", "rocket.jpg", "brick.png", "grass.png"]


def variants(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    dx, dy = int(w * 0.15), int(h * 0.15)
    return {
        "original": im,
        "crop": im.crop((dx, dy, w - dx, h - dy)),
        "flip": ImageOps.mirror(im),
        "bright": ImageEnhance.Brightness(im).enhance(1.4),
    }


def main(out: Path) -> None:
    data = Path(importlib.util.find_spec("skimage").origin).parent / "data"
    for name in SOURCES:
        with Image.open(data / name) as im:
            im = im.convert("RGB")
            im.thumbnail((640, 640))
            folder = out / Path(name).stem
            folder.mkdir(parents=True, exist_ok=True)
            for variant, image in variants(im).items():
                image.save(folder / f"{variant}.jpg", quality=88)
    print(f"wrote {len(SOURCES) * 4} photos under {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="raw/example", type=Path, help="output folder (default raw/example)")
    main(parser.parse_args().out)
