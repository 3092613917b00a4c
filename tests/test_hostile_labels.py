"""Hostile label tables (issue 10): paths leaving the photo folder, huge tables, characters XML
refuses, spreadsheet formulas, degenerate label sets, names that look like label nodes."""
import json
import os

import networkx as nx
import numpy as np
from click.testing import CliRunner
from PIL import Image

from image_clustering import load_config
from image_clustering.cli import main
from image_clustering.outputs import MARKER


def _config(make_config, photos, labels_csv, **model):
    config = make_config(photos)
    raw = json.loads(config.source.read_text())
    raw["paths"]["label_file"] = str(labels_csv)
    raw["model"].update(model)
    config.source.write_text(json.dumps(raw))
    return load_config(config.source)


def _invoke(command, config):
    result = CliRunner().invoke(main, [command, "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    return result


def _table(path, rows, header="path,label_1,label_2"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def photos_beside_a_secret(root):
    """``root/photos``: four photos (two red, two blue) and a folder link ``escape`` to
    ``root/secret``, which holds a pure green ``secret.jpg`` (visible wherever it is drawn)."""
    photos, secret = root / "photos", root / "secret"
    photos.mkdir()
    secret.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 30), (200, 30, 30) if i < 2 else (30, 30, 200)).save(photos / f"p{i}.jpg")
    Image.new("RGB", (40, 30), (0, 255, 0)).save(secret / "secret.jpg")
    (photos / "escape").symlink_to(secret, target_is_directory=True)  # a folder link leaving image_dir
    return photos, secret


def test_rows_outside_image_dir_are_never_linked_copied_or_opened(tmp_path, make_config):
    photos, secret = photos_beside_a_secret(tmp_path)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(secret / "mine.jpg")
    (photos / "mine.jpg").symlink_to(secret / "mine.jpg")  # the user's own link to a photo elsewhere
    climb = "../" * len(photos.resolve().parts)
    hostile = ["../secret/secret.jpg", str(secret / "secret.jpg"), "escape/secret.jpg", "/etc/passwd",
               "/etc/hostname", f"{climb}etc/passwd", "sub/../../secret/secret.jpg"]
    rows = [f"p{i}.jpg,{'church,tower' if i < 2 else 'sea,wave'}" for i in range(4)]
    rows += ["mine.jpg,church,tower"] + [f"{h},sea,wave" for h in hostile]
    config = _config(make_config, photos, _table(tmp_path / "labels.csv", rows), label_k=2, link="copy")

    result = _invoke("cluster-labels", config)
    linked = sorted(p.name for p in (config.paths.link_dir / "test_labels").rglob("*")
                    if p.is_file() and p.name != MARKER)
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


FORMULAS = ['=HYPERLINK("x")', "=cmd|' /C calc'!A0", "@SUM(A1)", "+1+1", "-1+1", "\tx", "\rx"]


def test_neutralised_cells_round_trip():
    from image_clustering.atomic import neutralise_cell, restore_cell

    for cell in [*FORMULAS, "'=x", "''@x", "'tis.jpg", "plain", "", "-", "=", "'"]:
        out = neutralise_cell(cell)
        assert restore_cell(out) == cell
        assert out[:1] not in ("=", "+", "-", "@", "\t", "\r"), out
    for number in ["-0.5", "+3", "1e-3", "-2.5E+4", ".5", "-inf", "nan", 7, -0.5]:
        assert neutralise_cell(number) == number  # numbers stay numbers


def _cells(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def test_formula_cells_are_neutralised_and_read_back(tmp_path, make_config):
    from image_clustering.outputs import read_labels
    from image_clustering.pipeline import write_tags
    from image_clustering.tags import read_tag_table

    photos = tmp_path / "photos"
    photos.mkdir()
    names = ['=HYPERLINK("x").jpg', "-a.jpg", "+b.jpg", "@c.jpg", "plain.jpg", "other.jpg"]
    for i, name in enumerate(names):
        Image.new("RGB", (20, 20), (40 * i, 30, 30)).save(photos / name)
    words = ["@SUM(A1)", "=cmd|' /C calc'!A0", "-1+1", "+1+1", "tree", "sea"]
    rows = [[name, words[i % 3], words[3 + i % 3]] for i, name in enumerate(names)]
    import csv

    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["path", "label_1", "label_2"], *rows])
    config = _config(make_config, photos, tmp_path / "labels.csv", label_k=2)
    _invoke("cluster-labels", config)
    _invoke("tag-network", config)
    out = config.paths.cluster_label_dir
    for csv_file in ("test_labels.csv", "test_nodes.csv", "test_edges.csv"):
        bad = [c for c in _cells(out / csv_file) if c[:1] in ("=", "+", "@", "\t", "\r")
               or c.startswith("-") and not c.lstrip("-").replace(".", "").isdigit()]
        assert not bad, (csv_file, bad)
    assert "'=HYPERLINK(\"x\").jpg" in _cells(out / "test_labels.csv")
    assert "label:@SUM(A1)" in (out / "test_nodes.csv").read_text()  # not at a cell start: left alone
    assert "'@SUM(A1)" in _cells(out / "test_nodes.csv")  # the Label column
    assert list(read_labels(out / "test_labels.csv")) == names  # our reader undoes the escaping
    graph = nx.read_gexf(out / "test_network.gexf")
    assert all("cluster" in graph.nodes[name] for name in names)  # tag-network matched the paths
    assert sorted(p.name for p in (config.paths.link_dir / "test_labels").rglob("*.jpg")) == sorted(names)

    # the tag table of `imgclust tag` reads back as written
    write_tags(tmp_path / "tags.csv", names, np.array([[0, 1]] * 6), np.array([[0.9, 0.5]] * 6), ["@SUM(A1)", "-x"],
               2, 0.0)
    table = read_tag_table(tmp_path / "tags.csv")
    assert table.images == names and table.tags[0] == {"@SUM(A1)": 0.9, "-x": 0.5}


def test_numbers_in_label_csvs_stay_numbers(tmp_path):
    from image_clustering.clustering import Clustering
    from image_clustering.outputs import write_labels

    clustering = Clustering(np.array([0, 1]), np.array([0.5, 0.25], np.float32), np.zeros((2, 2), np.float32))
    csv_path, _ = write_labels(tmp_path, "n", ["-1.jpg", "a.jpg"], clustering, np.array([[-0.5, 1e-7], [2.0, -3.0]]))
    rows = (csv_path.read_text()).splitlines()
    assert rows[0] == "path,cluster,name,distance,x0,x1"
    assert rows[1] == "'-1.jpg,0,,0.5,-0.5,1e-07" and rows[2] == "a.jpg,1,,0.25,2,-3"


def test_tag_network_of_thousands_of_images_is_bounded(tmp_path, make_config, monkeypatch):
    from image_clustering import network, pipeline

    rng = np.random.default_rng(0)
    rows = [f"set/{i}.jpg," + ",".join(f"t{i % 40}w{w}" for w in rng.choice(10, 3, replace=False))
            for i in range(3000)]  # no photo files: every image is a dot
    (tmp_path / "photos").mkdir()
    config = _config(make_config, tmp_path / "photos", _table(tmp_path / "labels.csv", rows,
                                                                  "path,label_1,label_2,label_3"))
    assert 3000 > network.FULL_LAYOUT_MAX
    result = _invoke("tag-network", config)
    assert "too many for ForceAtlas2 of all of them" in result.output
    graph = nx.read_gexf(config.paths.cluster_label_dir / "test_network.gexf")
    assert graph.number_of_nodes() == 3000 + 400 and graph.number_of_edges() == 9000
    pixels = np.asarray(Image.open(config.plot_dir / "tag_network.png").convert("RGB"), dtype=float)
    assert pixels.std() > 10

    # the exports are written before the picture, so they exist whatever happens to it
    for name in ("test_network.gexf", "test_edges.csv", "test_nodes.csv"):
        (config.paths.cluster_label_dir / name).unlink()

    def fail(*args, **kwargs):
        raise MemoryError("picture")

    monkeypatch.setattr(network, "render", fail)
    try:
        pipeline.tag_network(config)
    except MemoryError:
        pass
    assert all((config.paths.cluster_label_dir / name).is_file()
               for name in ("test_network.gexf", "test_edges.csv", "test_nodes.csv"))


def test_large_layout_places_every_node(caplog, monkeypatch):
    from image_clustering import network
    from image_clustering.network import layout, tag_graph
    from image_clustering.tags import TagTable

    monkeypatch.setattr(network, "LABELS_LAID_OUT", 100)  # so some labels are placed, not laid out

    # themes of words, one image with no label, one label only rare images share
    rows = [{f"t{i % 30}w{j}": 0.0 if j == 0 else 0.5 for j in range(4)} for i in range(1200)]
    rows += [{}, {"lonely": 1.0}]
    graph = tag_graph(TagTable([f"{i}.jpg" for i in range(len(rows))], rows))
    with caplog.at_level("INFO", logger="image_clustering"):
        positions = layout(graph, seed=0)
    xy = np.array([positions[node] for node in graph])
    assert xy.shape == (graph.number_of_nodes(), 2) and np.isfinite(xy).all()
    assert "ForceAtlas2 of the 100 most used of 121 labels" in caplog.text
    # images of a theme sit nearer their own words than other themes' words
    own = np.linalg.norm(positions["0.jpg"] - positions["label:t0w1"])
    other = np.median([np.linalg.norm(positions["0.jpg"] - positions[f"label:t{t}w1"]) for t in range(1, 30)])
    assert own < other


def test_gexf_of_labels_with_control_characters_is_xml(tmp_path, make_config):
    import csv

    photos = tmp_path / "photos"
    photos.mkdir()
    rows = [["path", "label_1", "label_2"], ["a\x01.jpg", "tr\x01ee", "s\x0bk\x1fy"], ["a\x02.jpg", "tr\x01ee", "$\\frac{"],
            ["b.jpg", "sea", "uni\ufffecode"], ["c.jpg", "sea", "tab\tok"]]
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    config = _config(make_config, photos, tmp_path / "labels.csv")
    _invoke("tag-network", config)
    graph = nx.read_gexf(config.paths.cluster_label_dir / "test_network.gexf")
    images = sorted(n for n, a in graph.nodes(data=True) if a["type"] == "image")
    assert images == ["a\ufffd.jpg", "a\ufffd.jpg~2", "b.jpg", "c.jpg"]  # still four images
    words = {a["label"] for n, a in graph.nodes(data=True) if a["type"] == "label"}
    assert words == {"tr\ufffdee", "s\ufffdk\ufffdy", "$\\frac{", "sea", "uni\ufffdcode", "tab\tok"}
    nodes = _cells(config.paths.cluster_label_dir / "test_nodes.csv")
    assert "tr\x01ee" in nodes and "a\x02.jpg" in nodes  # the CSVs keep the strings as they are


def test_image_named_like_a_label_node_stays_apart(tmp_path, make_config):
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = ["label:x,x,y", "image:label:x,x,", "x,y,", "plain.jpg,x,"]
    config = _config(make_config, photos, _table(tmp_path / "labels.csv", rows))
    _invoke("tag-network", config)
    graph = nx.read_gexf(config.paths.cluster_label_dir / "test_network.gexf")
    assert graph.number_of_nodes() == 4 + 2 and graph.number_of_edges() == 5
    assert graph.nodes["image:label:x"]["type"] == "image" and graph.nodes["image:label:x"]["image"] == "label:x"
    assert graph.nodes["image:image:label:x"]["image"] == "image:label:x"
    assert graph.nodes["label:x"]["type"] == "label" and graph.nodes["x"]["type"] == "image"
    assert set(graph["label:x"]) == {"image:label:x", "image:image:label:x", "plain.jpg"}


def test_identical_labels_make_one_cluster_and_no_empty_folders(tmp_path, make_config):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20):
        Image.new("RGB", (20, 20), (10 * i, 30, 30)).save(photos / f"p{i:02d}.jpg")
    rows = [f"p{i:02d}.jpg,tree,sky" for i in range(20)]
    for label_k in (4, "auto"):
        config = _config(make_config, photos, _table(tmp_path / "labels.csv", rows), label_k=label_k)
        result = _invoke("cluster-labels", config)
        assert "all 20 images have the same labels: one cluster" in result.output
        assert "in 1 cluster (sizes 20;" in result.output
        folders = sorted(p.name for p in (config.paths.link_dir / "test_labels").iterdir() if p.is_dir())
        assert folders == ["0_20"]


def test_fewer_label_sets_than_k_are_reported_as_such(tmp_path, make_config):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 20), (10 * i, 30, 30)).save(photos / f"p{i:02d}.jpg")
    rows = [f"p{i:02d}.jpg," + ("tree,sky" if i < 8 else "sea,wave") for i in range(12)]
    config = _config(make_config, photos, _table(tmp_path / "labels.csv", rows), label_k=5)
    result = _invoke("cluster-labels", config)
    assert "only 2 different label sets among the 12 images: 2 clusters, not 5" in result.output
    assert "in 2 clusters (sizes 8, 4;" in result.output
    folders = [p for p in (config.paths.link_dir / "test_labels").iterdir() if p.is_dir()]
    assert sorted(f.name for f in folders) == ["0_8", "1_4"] and all(any(f.iterdir()) for f in folders)


def test_url_only_table_removes_the_old_link_folders(tmp_path, make_config):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (60 * i, 30, 30)).save(photos / f"p{i}.jpg")
    config = _config(make_config, photos, _table(tmp_path / "labels.csv", [f"p{i}.jpg,{'tree' if i < 2 else 'sea'},x"
                                                                           for i in range(4)]), label_k=2)
    _invoke("cluster-labels", config)
    _table(tmp_path / "labels.csv", [f"http://x/{i}.jpg,{'tree' if i < 2 else 'sea'},x" for i in range(4)])
    result = _invoke("cluster-labels", config)
    assert "test_labels: link folders of an earlier run removed" in result.output
    assert "; links" not in result.output and not (config.paths.link_dir / "test_labels").exists()


def test_tag_table_with_a_non_utf8_name(tmp_path):
    """`tag` writes a Latin-1 file name's bytes as they are; reading the table back keeps them."""
    from image_clustering.tags import read_tag_table

    table = tmp_path / "t.csv"
    table.write_bytes(b"path,label_1,score_1\ncaf\xe9.jpg,tree,0.5\nb.jpg,sky,0.4\n")
    assert read_tag_table(table).images[0] == os.fsdecode(b"caf\xe9.jpg")
