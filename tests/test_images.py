"""Finding and decoding photos: formats, modes, orientation, names."""
import numpy as np
import pytest
from PIL import Image

from image_clustering import ImgclustError
from image_clustering.images import list_images, load_rgb


def gradient(w=64, h=48):
    x = np.linspace(0, 255, w, dtype=np.uint8)
    y = np.linspace(0, 255, h, dtype=np.uint8)
    return np.stack([np.tile(x, (h, 1)), np.tile(y[:, None], (1, w)), np.full((h, w), 90, np.uint8)], axis=2)


def test_list_images_is_recursive_case_insensitive_and_keeps_folders_apart(tmp_path):
    for rel in ["a/x.JPG", "b/x.jpg", "b/c/y.PnG", "z.webp", "t.TIFF", "notes.txt", ".hidden.jpg", ".cache/q.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [f.path for f in list_images(tmp_path)] == ["a/x.JPG", "b/c/y.PnG", "b/x.jpg", "t.TIFF", "z.webp"]


def test_missing_image_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ImgclustError, match="paths.image_dir"):
        list_images(tmp_path / "nope")


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    rgb = Image.fromarray(gradient())
    if mode == "I;16":
        im = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    else:
        im = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    im.save(path)
    out = load_rgb(path, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16"):  # 16-bit is scaled, not clipped to white
        ref = load_rgb(_save(tmp_path, rgb.convert("L"), "ref.png"), 32)
        assert np.abs(out.astype(int) - ref).max() <= 2


def _save(folder, im, name, **kw):
    im.save(folder / name, **kw)
    return folder / name


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.fromarray(gradient(64, 48))
    # Stored rotated, with EXIF orientation 6 ("rotate 90° clockwise to display").
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = load_rgb(_save(tmp_path, stored, "r.jpg", exif=exif, quality=95), 48)
    plain = load_rgb(_save(tmp_path, upright, "u.jpg", quality=95), 48)
    assert np.abs(rotated.astype(int) - plain).mean() < 4


def test_animation_uses_first_frame_and_alpha_goes_on_white(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert tuple(load_rgb(tmp_path / "a.gif", 8)[4, 4]) == (255, 0, 0)
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert tuple(load_rgb(tmp_path / "clear.png", 8)[4, 4]) == (255, 255, 255)


def test_corrupt_files_raise(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    good = _save(tmp_path, Image.fromarray(gradient()), "good.jpg")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:300])
    for name in ("text.jpg", "cut.jpg"):
        with pytest.raises((OSError, ValueError)):  # PIL's UnidentifiedImageError is an OSError
            load_rgb(tmp_path / name, 32)


def test_pad_keeps_the_aspect_ratio_inside_black_bars_and_squash_stretches():
    from image_clustering.images import square

    portrait = Image.new("RGB", (60, 120), (200, 10, 10))  # half as wide as tall
    padded = square(portrait, 100, "pad")
    assert padded.shape == (100, 100, 3) and padded.dtype == np.uint8
    assert (padded[:, :20] == 0).all() and (padded[:, -20:] == 0).all()  # 25 px bars, black
    assert (padded[:, 30:70] == (200, 10, 10)).all()  # the photo, 50 px wide, centred
    assert (square(portrait, 100, "squash") == (200, 10, 10)).all()  # stretched over the whole square
    with pytest.raises(ValueError, match="unknown resize 'crop'"):
        square(portrait, 100, "crop")
