"""Scoring a clustering against ground-truth classes (scikit-learn metrics, SciPy's Hungarian
algorithm). Ground truth is the first folder level under ``paths.image_dir`` or a ``path,label`` CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics

from .errors import ImgclustError


def folder_truth(paths: list[str]) -> list[str | None]:
    """The first folder of each relative path (``"cat/x.jpg"`` → ``"cat"``); None for files at the top."""
    return [p.split("/", 1)[0] if "/" in p else None for p in paths]


def csv_truth(csv_path: Path, paths: list[str]) -> list[str | None]:
    """Labels from a CSV with columns ``path,label`` (paths relative to ``paths.image_dir``); None
    for paths it does not list.

    Raises:
        ImgclustError: the file is missing, lacks the columns, or repeats a path (names the row).
    """
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"path", "label"} <= set(reader.fieldnames or []):
                raise ImgclustError(f"{csv_path}: needs columns path,label (has {reader.fieldnames})")
            table: dict[str, str] = {}
            for row_number, row in enumerate(reader, start=2):
                if row["path"] in table:
                    raise ImgclustError(f"{csv_path}: row {row_number}: path {row['path']!r} listed twice")
                table[row["path"]] = row["label"]
    except OSError as exc:
        raise ImgclustError(f"{csv_path}: cannot read ({exc.strerror})") from None
    return [table.get(p) for p in paths]


def clustering_accuracy(truth: np.ndarray, labels: np.ndarray) -> float:
    """ACC: the share of images whose cluster maps to their class under the best one-to-one matching
    of clusters to classes (Hungarian algorithm on the contingency table); unmatched clusters count
    as wrong."""
    table = metrics.cluster.contingency_matrix(truth, labels)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def score(truth: list, labels: list | np.ndarray) -> dict:
    """Compare cluster labels with classes.

    Args:
        truth: class per image (None = unknown, left out).
        labels: cluster per image, same order.

    Returns:
        ``images`` (scored), ``classes``, ``clusters`` (label -1 not counted), ``unclustered``
        (images with label -1), ``nmi`` (normalized mutual information, arithmetic mean), ``ari``
        (adjusted Rand index), ``acc``, ``homogeneity``, ``completeness``. The unclustered images
        are scored as one more cluster: leaving images out costs, as it should.

    Raises:
        ImgclustError: no image has a known class.
    """
    keep = [i for i, t in enumerate(truth) if t is not None]
    if not keep:
        raise ImgclustError("no image has a ground-truth class (photos directly in image_dir have none; give --truth CSV)")
    t = np.asarray([str(truth[i]) for i in keep])
    c = np.asarray(labels)[keep]
    return {
        "images": len(keep), "classes": int(len(set(t))), "clusters": int(len(set(c.tolist()) - {-1})),
        "unclustered": int(np.sum(c == -1)),
        "nmi": float(metrics.normalized_mutual_info_score(t, c)),
        "ari": float(metrics.adjusted_rand_score(t, c)),
        "acc": clustering_accuracy(t, c),
        "homogeneity": float(metrics.homogeneity_score(t, c)),
        "completeness": float(metrics.completeness_score(t, c)),
    }


def format_table(scores: dict) -> str:
    """The scores as an aligned two-column plain-text table."""
    rows = [("images scored", scores["images"]), ("classes", scores["classes"]), ("clusters", scores["clusters"]),
            ("unclustered", scores["unclustered"]),
            ("NMI", f"{scores['nmi']:.3f}"), ("ARI", f"{scores['ari']:.3f}"), ("ACC", f"{scores['acc']:.3f}"),
            ("homogeneity", f"{scores['homogeneity']:.3f}"), ("completeness", f"{scores['completeness']:.3f}")]
    return "\n".join(f"{name:<14} {value:>7}" for name, value in rows)
