"""Label-word workflows: label tables, Jaccard/Ward/L-method clustering, the Gephi tag network."""
import json

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from image_clustering import ImgclustError
from image_clustering.cli import main
from image_clustering.tags import (
    choose_k,
    cluster_tags_at_k,
    jaccard_similarity,
    read_tag_table,
    separation,
    tag_matrix,
    ward_tree,
)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_wide_tables_in_both_shapes(tmp_path):
    tag = read_tag_table(write(tmp_path / "tags.csv", "path,label_1,label_2,score_1,score_2\n"
                                                         "a.jpg,church,tower,0.9,0.05\nb.jpg,tench,,0.7,\n"))
    assert tag.images == ["a.jpg", "b.jpg"]
    assert tag.tags == [{"church": 0.9, "tower": 0.05}, {"tench": 0.7}]
    gcv = read_tag_table(write(tmp_path / "gcv.csv", "photoid,url,w1,w2,w3\n"
                                                       "1,http://x/1.jpg,tree,nature,NA\n2,http://x/2.jpg,sea,water,wave\n"))
    assert gcv.images == ["http://x/1.jpg", "http://x/2.jpg"]
    assert gcv.tags[0] == {"tree": 1.0, "nature": 1.0}  # NA is no label; no score columns: 1


def test_long_table(tmp_path):
    table = read_tag_table(write(tmp_path / "clarifai.csv", "image,concept,confidence\n"
                                                              "a.jpg,dog,0.98\na.jpg,pet,0.9\nb.jpg,cat,0.97\n"))
    assert table.images == ["a.jpg", "b.jpg"] and table.tags[0] == {"dog": 0.98, "pet": 0.9}


@pytest.mark.parametrize("text, message", [
    ("name,label_1\na.jpg,x\n", "no image column"),
    ("path,colour\na.jpg,red\n", "no label columns"),
    ("path,label_1,score_1\na.jpg,x,high\n", "row 2: score_1 'high' is not a number"),
    ("path,label_1,score_1\na.jpg,x,0.5\nb.jpg,y,1.7\n", "row 3: score_1 1.7 is not a score"),
    ("path,label_1\na.jpg,x\na.jpg,y\n", "row 3: image 'a.jpg' listed twice"),
    ("image,concept,confidence\na.jpg,dog\n", "row 2: 2 cells"),
    ("path,label_1\n", "no images"),
])
def test_malformed_tables_name_the_row(tmp_path, text, message):
    with pytest.raises(ImgclustError, match=message) as info:
        read_tag_table(write(tmp_path / "bad.csv", text))
    assert str(info.value).startswith(str(tmp_path / "bad.csv")) and "\n" not in str(info.value)


def test_jaccard_on_a_hand_made_example(tmp_path):
    table = read_tag_table(write(tmp_path / "t.csv", "path,label_1,label_2,label_3\n"
                                                       "a,tree,sky,grass\nb,tree,sky,\nc,sea,,\nd,,,\n"))
    x, vocabulary = tag_matrix(table)
    assert vocabulary == ["grass", "sea", "sky", "tree"] and x.shape == (4, 4) and x.nnz == 6
    sim = jaccard_similarity(x)
    assert sim[0, 1] == pytest.approx(2 / 3)  # shared {tree, sky} / all {tree, sky, grass}
    assert sim[0, 2] == 0 and sim[2, 3] == 0  # nothing shared; d has no labels at all
    np.testing.assert_array_equal(np.diag(sim), 1.0)
    np.testing.assert_array_equal(sim, sim.T)


def test_separation_and_knee_recover_planted_label_groups():
    rng = np.random.default_rng(0)
    rows = []
    for group in range(6):  # six themes of eight words; each image draws five words of its theme
        for _ in range(15):
            rows.append({f"t{group}w{w}": 1.0 for w in rng.choice(8, 5, replace=False)})
    from image_clustering.tags import TagTable

    table = TagTable([f"{i}.jpg" for i in range(len(rows))], rows)
    sim = jaccard_similarity(tag_matrix(table)[0])
    tree = ward_tree(sim)
    choice = choose_k(sim, tree, 2, 20)
    assert choice.knee == 6
    truth = np.repeat(np.arange(6), 15)
    assert separation(sim, truth) > separation(sim, np.zeros(90, int) + (np.arange(90) % 2))
    result = cluster_tags_at_k(sim, tree, 6)
    from sklearn.metrics import normalized_mutual_info_score

    assert normalized_mutual_info_score(truth, result.labels) == pytest.approx(1.0)
    assert list(result.sizes) == [15] * 6 and (result.distances < 1).all()


@pytest.fixture
def photo_set(tmp_path):
    """Six small photos and a tag table for them: two themes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = ["path,label_1,label_2,label_3,score_1,score_2,score_3"]
    for i in range(6):
        colour = (200, 30, 30) if i < 3 else (30, 30, 200)
        Image.new("RGB", (40, 30), colour).save(photos / f"p{i}.jpg")
        words = "church,tower,bell" if i < 3 else "sea,beach,wave"
        rows.append(f"p{i}.jpg,{words},0.8,0.5,0.2")
    rows.append("http://elsewhere/remote.jpg,sea,boat,,0.9,0.4,")
    return photos, write(tmp_path / "labels.csv", "\n".join(rows) + "\n")


def test_cluster_labels_and_tag_network_end_to_end(photo_set, make_config):
    photos, labels_csv = photo_set
    config = make_config(photos)
    config_path = config.source
    raw = json.loads(config_path.read_text())
    raw["paths"]["label_file"] = str(labels_csv)
    raw["model"]["label_k"] = 2
    config_path.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["cluster-labels", "--config", str(config_path), "-q"])
    assert result.exit_code == 0, result.output
    assert "7 images" in result.output and "2 clusters" in result.output
    doc = json.loads((config.paths.cluster_label_dir / "test_labels.json").read_text())
    groups = sorted(sorted(members) for members in doc["clusters"].values())
    assert groups == [["http://elsewhere/remote.jpg", "p3.jpg", "p4.jpg", "p5.jpg"], ["p0.jpg", "p1.jpg", "p2.jpg"]]
    links = config.paths.link_dir / "test_labels"
    assert sum(1 for _ in links.rglob("*.jpg")) == 6  # the remote image has no file to link
    assert (config.plot_dir / "label_dendrogram.png").stat().st_size > 10_000
    assert (config.plot_dir / "label_k.png").is_file()

    result = CliRunner().invoke(main, ["tag-network", "--config", str(config_path), "-q"])
    assert result.exit_code == 0, result.output
    graph = nx.read_gexf(config.paths.cluster_label_dir / "test_network.gexf")
    assert graph.number_of_nodes() == 7 + 7 and graph.number_of_edges() == 20
    assert graph.nodes["p0.jpg"]["type"] == "image" and graph.nodes["p0.jpg"]["image"] == "p0.jpg"
    assert graph.nodes["label:church"]["label"] == "church"
    assert graph.edges["p0.jpg", "label:church"]["weight"] == pytest.approx(0.8)
    assert {graph.nodes[f"p{i}.jpg"]["cluster"] for i in range(3)} != {graph.nodes[f"p{i}.jpg"]["cluster"] for i in range(3, 6)}
    edges = (config.paths.cluster_label_dir / "test_edges.csv").read_text().splitlines()
    assert edges[0] == "Source,Target,Weight" and "p0.jpg,label:church,0.8000" in edges
    nodes = (config.paths.cluster_label_dir / "test_nodes.csv").read_text().splitlines()
    assert nodes[0] == "Id,Label,type,image,cluster" and any(n.startswith("label:sea,sea,label") for n in nodes)
    png = Image.open(config.plot_dir / "tag_network.png")
    pixels = np.asarray(png.convert("RGB"), dtype=float)
    assert png.width > 500 and pixels.std() > 10  # not a blank canvas
    reds = ((pixels[..., 0] > 150) & (pixels[..., 2] < 80)).sum()
    assert reds > 200  # the red photos are drawn as thumbnails


def test_missing_label_table_says_what_to_do(tmp_path, make_config):
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(main, ["cluster-labels", "--config", str(make_config(tmp_path / "photos").source)])
    assert result.exit_code == 1 and "imgclust tag" in result.output and "Traceback" not in result.output


@pytest.mark.shared
def test_label_workflows_on_real_photos(lite0_weights, make_config):
    """tag → cluster-labels → evaluate → tag-network on the 56 ukbench photos (14 objects × 4)."""
    from tests.conftest import DATASETS, needs_shared

    config = make_config(needs_shared(DATASETS / "ukbench_groups14"), extractor="efficientnet_lite0")
    for command in (["tag"], ["cluster-labels"], ["evaluate", "--labels"], ["tag-network"]):
        result = CliRunner().invoke(main, [*command, "--config", str(config.source), "-q"])
        assert result.exit_code == 0, result.output
    scores = json.loads((config.paths.cluster_label_dir / "test_labels_evaluation.json").read_text())
    # measured: 9-10 clusters by the L-method knee, NMI 0.87-0.90 (docs/benchmarks.md)
    assert 6 <= scores["clusters"] <= 16 and scores["nmi"] >= 0.80 and scores["images"] == 56
    graph = nx.read_gexf(config.paths.cluster_label_dir / "test_network.gexf")
    images = [n for n, a in graph.nodes(data=True) if a["type"] == "image"]
    assert len(images) == 56 and all(graph.degree(n) >= 1 for n in images)
    assert all("cluster" in graph.nodes[n] for n in images)
    pixels = np.asarray(Image.open(config.plot_dir / "tag_network.png").convert("RGB"), dtype=float)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3)[::50], axis=0)) > 500  # photos drawn
