"""The text in photos: Tesseract OCR (Smith 2007, "An overview of the Tesseract OCR engine";
Tesseract 5's LSTM recogniser, called through pytesseract), the second half of the ResNet50
workflow, which read the text on each photo with ``pytesseract.image_to_string``.

``imgclust ocr`` reads every photo under ``paths.image_dir`` once and keeps the recognised words
with their confidences in ``<vector_dir>/<name>/ocr/words.json``; later runs read only new or
changed photos (size and modification time, as ``extract``). Each run writes

- ``<cluster_label_dir>/<name>_text.csv``: ``path,text,confidence`` — every word Tesseract found,
  in reading order, and their mean confidence (0–100; empty when it found none);
- ``<cluster_label_dir>/<name>_text_labels.csv``: the words usable as labels, as a long label
  table ``image,concept,confidence`` (:mod:`image_clustering.tags` reads it; ``model.label_source``
  ``"text"`` or ``"tags+text"`` feeds it to ``cluster-labels`` and ``tag-network``);
- ``<vector_dir>/<name>/ocr/failures.csv``: ``path,reason`` for the photos that could not be read.
"""
from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_csv, atomic_write_text, exclusive_lock
from .config import Config
from .errors import ImgclustError
from .images import ImageFile, open_rgb, scan_images
from .progress import progress_bar

# Page segmentation mode 11, "sparse text": photos are not pages. On 12 real photos with a
# two-word sign drawn on each, it found 20 of the 24 words where the default (3, a page of text
# blocks) found 9.
PSM = 11
MAX_SIDE = 2500  # larger photos are scaled down first: Tesseract's time grows with the pixels
CACHE = "words.json"
CACHE_FORMAT = 1
SAVE_EVERY = 50  # photos between cache saves, so a crash loses little
INSTALL = "apt-get install tesseract-ocr tesseract-ocr-eng (Debian/Ubuntu; scripts/setup.sh does it as root)"
# A label word: letters and digits (inner - ' . & allowed), at least one letter, 3+ characters.
LABEL_WORD = re.compile(r"(?=.*[^\W\d_])\w[\w'&.-]+\w")


def check_tesseract(language: str) -> str:
    """The Tesseract version, after checking that it runs and has ``language``'s data.

    Raises:
        ImgclustError: pytesseract or the tesseract program is missing, or the language data is.
    """
    try:
        import pytesseract
    except ImportError:
        raise ImgclustError("imgclust ocr needs the pytesseract package: pip install pytesseract") from None
    try:
        version = str(pytesseract.get_tesseract_version())
        languages = pytesseract.get_languages(config="")
    except (pytesseract.TesseractNotFoundError, OSError):
        raise ImgclustError(f"tesseract is not installed or not on PATH; imgclust ocr needs it: {INSTALL}") from None
    missing = [code for code in language.split("+") if code not in languages]
    if missing:
        raise ImgclustError(f"model.ocr_language: tesseract has no {'+'.join(missing)!r} data (it has "
                            f"{', '.join(sorted(languages))}); apt-get install tesseract-ocr-{missing[0]}")
    return version


def read_words(path: Path, language: str) -> list[tuple[str, float]]:
    """The words Tesseract recognises on one photo, in reading order.

    The photo is decoded as everywhere else (:func:`~image_clustering.images.open_rgb`: EXIF
    orientation, any format), scaled down to :data:`MAX_SIDE`, and handed over losslessly (PNG):
    pytesseract re-saves a decoded JPEG as JPEG, whose new artefacts measurably cost words.

    Returns:
        (word, confidence 0–100) pairs.

    Raises:
        OSError, ValueError, pytesseract.TesseractError: unreadable photo, or Tesseract failed.
    """
    import pytesseract

    im = open_rgb(path, MAX_SIDE)
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE))
    data = pytesseract.image_to_data(np.asarray(im), lang=language, config=f"--psm {PSM}",
                                     output_type=pytesseract.Output.DICT)
    return [(w.strip(), float(c)) for w, c in zip(data["text"], data["conf"]) if w.strip() and float(c) >= 0]


def label_words(words: list[tuple[str, float]], min_confidence: float) -> dict[str, float]:
    """Words fit to be labels: lower-cased, stripped of surrounding punctuation, 3+ characters with
    a letter, recognised with at least ``min_confidence`` (0–100); single characters and symbol
    runs are mostly Tesseract reading texture as text.

    Returns:
        word → score in [0, 1] (the best confidence / 100).
    """
    labels: dict[str, float] = {}
    for word, confidence in words:
        word = word.strip("\"'“”‘’.,:;!?()[]{}<>|/\\*~_-—").lower()
        if confidence >= min_confidence and LABEL_WORD.fullmatch(word):
            labels[word] = max(labels.get(word, 0.0), confidence / 100)
    return labels


@dataclass
class OcrSummary:
    """What one ``ocr`` run did."""

    total: int
    read: int
    reused: int
    removed: int
    failed: int
    with_text: int
    seconds: float
    text_file: Path
    failures_file: Path

    def line(self) -> str:
        failed = f", {self.failed} failed (listed in {self.failures_file})" if self.failed else ", 0 failed"
        return (f"ocr: {self.total} images: {self.read} read, {self.reused} reused, {self.removed} removed{failed}; "
                f"{self.with_text} with text; {self.seconds:.1f} s; text in {self.text_file}")


def _load_cache(path: Path, settings: dict) -> dict:
    """path → {size, mtime_ns, words} from the last runs; empty when the settings changed."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if doc.get("format") != CACHE_FORMAT or doc.get("settings") != settings:
        return {}
    return doc.get("images", {})


def _save_cache(path: Path, settings: dict, images: dict) -> None:
    atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "settings": settings, "images": images},
                                       ensure_ascii=False))


def _read_one(image_dir: Path, f: ImageFile, language: str):
    try:
        return read_words(image_dir / f.path, language)
    except Exception as exc:  # any decoder or Tesseract error: skip this photo and say why
        return " ".join(f"{type(exc).__name__}: {exc}".split())


def ocr(config: Config, progress: bool = True) -> OcrSummary:
    """``imgclust ocr``: the text of every photo under ``paths.image_dir`` (see the module
    docstring for the files), reading only new or changed photos; Tesseract runs in one process
    per core, each single-threaded.

    Raises:
        ImgclustError: Tesseract missing, no images, or another ``ocr`` run holds the lock.
    """
    start = time.perf_counter()
    m = config.model
    version = check_tesseract(m.ocr_language)
    files, rejected = scan_images(config.paths.image_dir)  # rejected: FIFOs and such, listed unopened
    if not files:
        raise ImgclustError(f"paths.image_dir: no images found in {config.paths.image_dir}")
    folder = config.layout.ocr_dir
    settings = {"tesseract": version, "language": m.ocr_language, "psm": PSM, "max_side": MAX_SIDE}
    with exclusive_lock(folder, "ocr"):
        cached = _load_cache(folder / CACHE, settings)
        current = {f.path for f in files}
        removed = len(set(cached) - current)
        done = {f.path: cached[f.path] for f in files
                if f.path in cached and (cached[f.path]["size"], cached[f.path]["mtime_ns"]) == (f.size, f.mtime_ns)}
        todo = [f for f in files if f.path not in done]
        failures: list[tuple[str, str]] = []
        if todo:
            previous = os.environ.get("OMP_THREAD_LIMIT")
            os.environ["OMP_THREAD_LIMIT"] = "1"  # one core per tesseract process; parallel across photos
            try:
                with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
                        progress_bar(total=len(todo), unit="photos", desc="ocr", enabled=progress) as bar:
                    results = pool.map(lambda f: _read_one(config.paths.image_dir, f, m.ocr_language), todo)
                    for i, (f, words) in enumerate(zip(todo, results), start=1):
                        if isinstance(words, str):
                            failures.append((f.path, words))
                        else:
                            done[f.path] = {"size": f.size, "mtime_ns": f.mtime_ns, "words": words}
                        bar.update(1)
                        if i % SAVE_EVERY == 0:
                            _save_cache(folder / CACHE, settings, done)
            finally:
                if previous is None:
                    os.environ.pop("OMP_THREAD_LIMIT", None)
                else:
                    os.environ["OMP_THREAD_LIMIT"] = previous
        _save_cache(folder / CACHE, settings, done)
        ordered = sorted(done)
        atomic_write_csv(config.layout.text_csv, ["path", "text", "confidence"],
                         ([p, " ".join(w for w, _ in done[p]["words"]),
                           f"{np.mean([c for _, c in done[p]['words']]):.1f}" if done[p]["words"] else ""]
                          for p in ordered))
        atomic_write_csv(config.layout.text_labels_csv, ["image", "concept", "confidence"],
                         ([p, word, f"{score:.4f}"] for p in ordered
                          for word, score in label_words(done[p]["words"], m.ocr_min_confidence).items()))
        atomic_write_csv(folder / "failures.csv", ["path", "reason"], sorted(failures + rejected))
    return OcrSummary(len(done), len(todo) - len(failures), len(files) - len(todo), removed, len(failures) + len(rejected),
                      sum(1 for p in done if done[p]["words"]), time.perf_counter() - start, config.layout.text_csv,
                      folder / "failures.csv")
