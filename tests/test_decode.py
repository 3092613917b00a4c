"""The process decoder (decode.py) gives exactly the pixels and failure reasons of open_rgb + square."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from image_clustering import decode
from image_clustering.features import _prefetched_batches, _safe_load
from image_clustering.images import ImageFile, open_rgb, square
from tests.conftest import DATASETS

SIZES = (224, 299)


def _odd_photos(folder):
    """Photos that exercise every branch of open_rgb; returns their names."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    base.save(folder / "rotated.jpg", exif=exif.tobytes())
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (40, 50))).astype(np.uint16)).save(folder / "gray16.png")
    rgba = Image.fromarray(rng.integers(0, 255, (30, 40, 4), dtype=np.uint8), "RGBA")
    rgba.convert("P").save(folder / "palette.png", transparency=0)
    frames = [base.convert("P"), base.rotate(90).convert("P")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    rgba.save(folder / "alpha.webp", lossless=True)
    base.save(folder / "plain.bmp")
    base.save(folder / "plain.tiff")
    buf = io.BytesIO()
    base.save(buf, "JPEG")
    (folder / "corrupt.jpg").write_bytes(buf.getvalue()[:200])
    (folder / "notimage.png").write_bytes(b"plain text")
    return sorted(p.name for p in folder.iterdir())


def _real_photos(n=4):
    folder = DATASETS / "ukbench_groups14"
    if not folder.is_dir():
        return []
    return sorted(folder.rglob("*.jpg"))[:n]


def _expected(path):
    try:
        im = open_rgb(path, max(SIZES))
    except Exception as exc:
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return {s: square(im, s) for s in SIZES}


def _assert_same(got, want):
    assert type(got) is type(want)
    if isinstance(want, str):
        assert got == want
    else:
        for s in SIZES:
            assert got[s].dtype == np.uint8 and got[s].shape == (s, s, 3)
            np.testing.assert_array_equal(got[s], want[s])


def test_processes_give_the_same_pixels_and_failures(tmp_path):
    names = _odd_photos(tmp_path)
    real = _real_photos()
    files = [ImageFile(n, 0, 0) for n in names] + [ImageFile(str(p), 0, 0) for p in real]
    paths = [tmp_path / n for n in names] + real
    got = []
    for batch, results in decode.process_batches(files, tmp_path, SIZES, 4, _safe_load, processes=2, ahead=2):
        assert len(batch) == len(results)
        got += results
    assert len(got) == len(files)
    for path, result in zip(paths, got):
        _assert_same(result, _expected(path))
    reasons = dict(zip(names, got))
    assert isinstance(reasons["corrupt.jpg"], str) and "truncated" in reasons["corrupt.jpg"].lower()
    assert reasons["notimage.png"].startswith("UnidentifiedImageError")
    rotated = reasons["rotated.jpg"][299]
    assert rotated.shape == (299, 299, 3)  # upright: EXIF applied (checked against open_rgb above)


def test_the_hook_uses_processes_when_asked(tmp_path, monkeypatch):
    names = _odd_photos(tmp_path)
    files = [ImageFile(n, 0, 0) for n in names]
    monkeypatch.setenv(decode.ENV, "2")
    seen = [r for _, results in _prefetched_batches(files, tmp_path, SIZES, 4, "pad") for r in results]
    for name, result in zip(names, seen):
        _assert_same(result, _expected(tmp_path / name))


def test_worker_count(monkeypatch):
    monkeypatch.delenv(decode.ENV, raising=False)
    assert decode.workers(lambda: 0) == 0
    assert decode.workers(lambda: 1) == (os.cpu_count() or 1)
    monkeypatch.setenv(decode.ENV, "3")
    assert decode.workers(lambda: 0) == 3
    monkeypatch.setenv(decode.ENV, "many")
    with pytest.raises(ValueError, match=decode.ENV):
        decode.workers(lambda: 0)
