"""Scores against ground truth: hand-checked values and the evaluate command."""
import json

import pytest
from click.testing import CliRunner

from image_clustering import ImgclustError
from image_clustering.cli import main
from image_clustering.evaluation import clustering_accuracy, csv_truth, folder_truth, format_table, score


def test_perfect_clustering_scores_one_whatever_the_cluster_numbers():
    s = score(["a", "a", "b", "b", "c"], [7, 7, 3, 3, 0])
    assert s["nmi"] == pytest.approx(1) and s["ari"] == pytest.approx(1) and s["acc"] == pytest.approx(1)
    assert (s["images"], s["classes"], s["clusters"]) == (5, 3, 3)


def test_accuracy_uses_the_best_one_to_one_matching():
    # classes a,a,a,b,b,b; clusters 0,0,1,1,1,1: best matching a→0, b→1 gets 2 + 3 right
    import numpy as np

    assert clustering_accuracy(np.array(list("aaabbb")), np.array([0, 0, 1, 1, 1, 1])) == pytest.approx(5 / 6)
    # one cluster for everything: only the largest class can match
    assert score(list("aabbbb"), [0] * 6)["acc"] == pytest.approx(4 / 6)
    assert score(list("aabbbb"), [0] * 6)["completeness"] == pytest.approx(1)


def test_ground_truth_sources(tmp_path):
    assert folder_truth(["cat/x.jpg", "dog/sub/y.jpg", "z.jpg"]) == ["cat", "dog", None]
    table = tmp_path / "truth.csv"
    table.write_text("path,label\nx.jpg,cat\ny.jpg,dog\n")
    assert csv_truth(table, ["y.jpg", "x.jpg", "w.jpg"]) == ["dog", "cat", None]
    table.write_text("path,label\nx.jpg,cat\nx.jpg,dog\n")
    with pytest.raises(ImgclustError, match="row 3"):
        csv_truth(table, ["x.jpg"])
    table.write_text("file,class\nx.jpg,cat\n")
    with pytest.raises(ImgclustError, match="path,label"):
        csv_truth(table, ["x.jpg"])
    with pytest.raises(ImgclustError, match="no image has a ground-truth class"):
        score([None, None], [0, 1])


def test_evaluate_command_reads_the_cluster_table(tmp_path, make_config):
    config = make_config(tmp_path / "photos")
    label_dir = config.paths.cluster_label_dir
    label_dir.mkdir(parents=True)
    (label_dir / "test.csv").write_text("path,cluster,distance\ncat/1.jpg,0,0.1\ncat/2.jpg,0,0.1\ndog/3.jpg,1,0.2\n")
    result = CliRunner().invoke(main, ["evaluate", "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    assert "NMI" in result.output and "1.000" in result.output
    saved = json.loads((label_dir / "test_evaluation.json").read_text())
    assert saved["acc"] == 1 and saved["classes"] == 2 and saved["truth"] == "first folder level"
    assert "ACC" in format_table(saved)
