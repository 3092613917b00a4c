"""Finding photos under a folder and decoding them into network-sized RGB arrays (Pillow)."""
from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImgclustError

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif"})
HEIF = frozenset({".heic", ".heif"})
# We refuse photos above twice a 48 Mpx camera frame. Pillow's own decompression-bomb guard
# (warning above Image.MAX_IMAGE_PIXELS, ~89.5 Mpx by default, error above twice that) is set to the
# same limit, or it would refuse the 89.5-100 Mpx photos first; open_rgb turns its warning into an error.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class ImageFile:
    """One photo: ``path`` relative to the image folder (POSIX separators), its size in bytes and its
    modification time in nanoseconds (together they tell whether it changed since extraction)."""

    path: str
    size: int
    mtime_ns: int


def list_images(image_dir: Path) -> list[ImageFile]:
    """All photos under ``image_dir``, recursively, sorted by relative path; see :func:`scan_images`.

    Raises:
        ImgclustError: ``image_dir`` is missing or not a folder.
    """
    return scan_images(image_dir)[0]


def scan_images(image_dir: Path) -> tuple[list[ImageFile], list[tuple[str, str]]]:
    """The photos under ``image_dir``, recursively, sorted by relative path, and the photo-named
    entries that are not regular files.

    Hidden files and folders (``.name``) are skipped, as are symbolic links to folders (they can
    loop); a file counts as a photo by its extension, in any case: jpg, jpeg, png, bmp, gif, webp,
    tif, tiff, heic, heif (the last two need the optional pillow-heif). Symbolic links count as what
    they point to; a broken or looping link is still listed (size and time 0), so that reading it
    fails and is reported. A FIFO, socket or device named like a photo is not listed (opening a FIFO
    waits for a writer forever) but returned with its reason.

    Returns:
        (photos, [(relative path, "not a regular file (FIFO)"), ...]).

    Raises:
        ImgclustError: ``image_dir`` is missing or not a folder.
    """
    if not image_dir.is_dir():
        missing = not os.path.lexists(image_dir)
        raise ImgclustError(f"paths.image_dir: {image_dir} {'does not exist' if missing else 'is not a folder'}")
    found, rejected = [], []
    for root, dirs, files in os.walk(image_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in EXTENSIONS:
                continue
            full = Path(root, name)
            relative = full.relative_to(image_dir).as_posix()
            try:
                st = full.stat()
            except OSError:  # broken symlink: still listed, so its failure is reported
                st = os.stat_result((0,) * 10)
            if st.st_mode and not stat.S_ISREG(st.st_mode):
                rejected.append((relative, f"not a regular file ({_file_kind(st.st_mode)})"))
                continue
            found.append(ImageFile(relative, st.st_size, st.st_mtime_ns))
    return sorted(found, key=lambda f: f.path), sorted(rejected)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder")]
    return next((name for test, name in kinds if test(mode)), "special file")


class _PhotoFile(io.BufferedReader):
    """A buffered photo file that Pillow's messages show as its path (as when given the path)."""

    def __repr__(self) -> str:
        return repr(os.fspath(self.name))


def _open_regular(path: Path):
    """Open ``path`` for binary reading without ever blocking: a FIFO swapped in after listing
    would make a plain open() wait for a writer forever (and the decode thread with it).

    Raises:
        OSError: cannot be opened, or is not a regular file.
    """
    # O_NONBLOCK: a FIFO opens at once instead of waiting; it means nothing for regular files.
    f = _PhotoFile(io.FileIO(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)))
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        raise OSError(f"not a regular file ({_file_kind(mode)})")
    return f


def _enable_heif() -> None:
    """Register pillow-heif's HEIC/HEIF decoder (optional dependency) with Pillow, once."""
    try:
        import pillow_heif
    except ImportError:
        raise OSError("HEIC/HEIF photos need the optional package pillow-heif (pip install pillow-heif)") from None
    pillow_heif.register_heif_opener()


def open_rgb(path: Path, min_side: int) -> Image.Image:
    """Decode one photo as an upright RGB Pillow image.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images become RGB
    (alpha composited on white); for animations the first frame is used. JPEGs far larger than
    needed are decoded at a reduced scale (Pillow ``draft``: 1/2, 1/4 or 1/8 in the DCT domain),
    keeping at least ``min_side`` pixels on each side.

    Raises:
        OSError, ValueError, Image.DecompressionBombError: unreadable, corrupt or too large file.
    """
    if path.suffix.lower() in HEIF:
        _enable_heif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _open_regular(path) as f, Image.open(f) as im:
            if im.width * im.height > MAX_PIXELS:
                raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels exceeds the {MAX_PIXELS:,} limit")
            if im.format == "JPEG":
                im.draft("RGB", (min_side, min_side))  # DCT-domain downscale, never below min_side
            return _to_rgb(ImageOps.exif_transpose(im))


def square(im: Image.Image, size: int, resize: str = "pad") -> np.ndarray:
    """``im`` as the network's ``size``×``size`` input, uint8 (size, size, 3), antialiased bilinear.

    Args:
        resize: ``"pad"`` (default): scaled to fit inside the square, aspect kept, the rest
            black (letterbox: a portrait photo keeps its shape; measured in docs/benchmarks.md);
            ``"squash"``: stretched to the square whatever its aspect ratio (what the original
            tool and Keras' ``load_img(target_size=…)`` do).

    Raises:
        ValueError: an unknown ``resize``.
    """
    if resize == "squash":
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    if resize == "pad":
        return np.asarray(ImageOps.pad(im, (size, size), Image.Resampling.BILINEAR, color=(0, 0, 0)), dtype=np.uint8)
    raise ValueError(f"unknown resize {resize!r}; 'squash' or 'pad'")


def load_rgb(path: Path, size: int, resize: str = "pad") -> np.ndarray:
    """Decode one photo into a ``size``×``size`` RGB uint8 array (H, W, 3); see :func:`open_rgb`
    and :func:`square`."""
    return square(open_rgb(path, size), size, resize)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I"):
        # 16-bit grayscale (Pillow's "I;16*" or "I"): map the 0..65535 range onto 0..255; a plain
        # convert("RGB") would clip everything above 255 to white.
        arr = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


EXIF_IFD = 0x8769  # the Exif sub-IFD pointer tag
DATETIME_ORIGINAL = 0x9003  # "YYYY:MM:DD HH:MM:SS", when the shutter fired


def exif_time(path: Path) -> float | None:
    """When a photo was taken by its EXIF DateTimeOriginal, in seconds since the epoch read as UTC
    (only differences between photos matter); None when the photo has no usable EXIF time (a
    copy's file time says when it was copied, not taken: burst detection must not use it)."""
    try:
        with _open_regular(path) as f, Image.open(f) as im:
            stamp = im.getexif().get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)
        if isinstance(stamp, str):
            from datetime import datetime, timezone

            taken = datetime.strptime(stamp.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
            return taken.replace(tzinfo=timezone.utc).timestamp()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        pass  # no or malformed EXIF (cameras write "0000:00:00 00:00:00")
    return None


def photo_time(path: Path) -> float:
    """When a photo was taken, in seconds since the epoch (float): EXIF DateTimeOriginal read as
    UTC (:func:`exif_time`), else the file's modification time.

    Raises:
        OSError: the file cannot be read at all (not even its modification time).
    """
    taken = exif_time(path)
    return os.stat(path).st_mtime if taken is None else taken
