"""Hostile label tables (issue 10): paths leaving the photo folder, huge tables, characters XML
refuses, spreadsheet formulas, degenerate label sets, names that look like label nodes."""
import json
import os

import networkx as nx
import numpy as np
from click.testing import CliRunner
from PIL import Image

from image_clustering.cli import main


def _config(make_config, photos, labels_csv, **model):
    config = make_config(photos)
    raw = json.loads(config.source.read_text())
    raw["paths"]["label_file"] = str(labels_csv)
    raw["model"].update(model)
    config.source.write_text(json.dumps(raw))
    return config


def _invoke(command, config):
    result = CliRunner().invoke(main, [command, "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    return result


def _table(path, rows, header="path,label_1,label_2"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_rows_outside_image_dir_are_never_linked_copied_or_opened(tmp_path, make_config):
    photos, secret = tmp_path / "photos", tmp_path / "secret"
    photos.mkdir()
    secret.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 30), (200, 30, 30) if i < 2 else (30, 30, 200)).save(photos / f"p{i}.jpg")
    Image.new("RGB", (40, 30), (0, 255, 0)).save(secret / "secret.jpg")  # pure green: visible if drawn
    Image.new("RGB", (40, 30), (200, 30, 30)).save(secret / "mine.jpg")
    (photos / "escape").symlink_to(secret, target_is_directory=True)  # a folder link leaving image_dir
    (photos / "mine.jpg").symlink_to(secret / "mine.jpg")  # the user's own link to a photo elsewhere
    climb = "../" * len(photos.resolve().parts)
    hostile = ["../secret/secret.jpg", str(secret / "secret.jpg"), "escape/secret.jpg", "/etc/passwd",
               "/etc/hostname", f"{climb}etc/passwd", "sub/../../secret/secret.jpg"]
    rows = [f"p{i}.jpg,{'church,tower' if i < 2 else 'sea,wave'}" for i in range(4)]
    rows += ["mine.jpg,church,tower"] + [f"{h},sea,wave" for h in hostile]
    config = _config(make_config, photos, _table(tmp_path / "labels.csv", rows), label_k=2, link="copy")

    result = _invoke("cluster-labels", config)
    linked = sorted(p.name for p in (config.paths.link_dir / "test_labels").rglob("*") if p.is_file())
    assert linked == ["mine.jpg", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    copied = {p.read_bytes() for p in (config.paths.link_dir / "test_labels").rglob("*") if p.is_file()}
    assert (secret / "secret.jpg").read_bytes() not in copied
    assert not any(b"root:" in content for content in copied)
    assert f"{len(hostile)} images of the label table are not photo files" in result.output
    assert f"({len(hostile)} name a path outside it" in result.output
    doc = json.loads((config.paths.cluster_label_dir / "test_labels.json").read_text())
    assert sum(map(len, doc["clusters"].values())) == 12  # every row is still clustered

    result = _invoke("tag-network", config)
    pixels = np.asarray(Image.open(config.plot_dir / "tag_network.png").convert("RGB")).astype(int)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 60) & (pixels[..., 2] < 60)
    reds = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert green.sum() == 0 and reds.sum() > 200  # photos inside are drawn, the one outside is not
    assert f"({len(hostile)} name a path outside it" in result.output
    assert os.path.isfile(secret / "secret.jpg")  # nothing touched
