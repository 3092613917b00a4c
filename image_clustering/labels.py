"""Label words → clusters: the workflow of Song, Richards & Tan (2020, Sci. Rep. 10, 808), where each
photo is described by the labels a labelling service gave it.

Label tables (CSV, UTF-8, one header row; :func:`read_label_table`):

- **wide** — one row per image: an image column (``path``, ``url`` or ``image``), label columns
  ``label_1..label_n`` (``imgclust tag``) or ``w1..w10`` (the Google Cloud Vision LABEL_DETECTION
  table of the R workflow), optional score columns ``score_i`` / ``p_i`` (missing: 1). Empty or
  ``NA`` cells mean "no label".
- **long** — one row per (image, label): columns ``image`` (or ``url``/``path``), ``concept``,
  ``confidence`` (the Clarifai export of the Gephi workflow).

Clustering: images × unique labels as a sparse binary matrix (SciPy); similarity of two images =
shared labels / all labels of the pair (Jaccard); distance = 1 − similarity; Ward linkage on the
condensed distances (the workflow's ``ward.D2``; SciPy's ``ward`` is the same update, and like the
original it treats Jaccard distances as if they were Euclidean, which Ward formally assumes). The
number of clusters comes from the separation curve — for each k, the mean over images of (mean
similarity within its cluster, itself included as in the original, − mean similarity to the other
clusters) — and its knee by the L-method (Salvador & Chan 2004).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from .clustering import Clustering, cut_tree_k, l_method, renumber_by_size
from .errors import ImgclustError

IMAGE_COLUMNS = ("path", "url", "image")
MISSING = {"", "na", "nan", "none", "null"}
PAIRWISE_LIMIT = 20_000  # the all-pairs similarity matrix takes 8·N² bytes (3.2 GB at this N)


@dataclass
class LabelTable:
    """Labels per image.

    Attributes:
        images: image identifiers as given (a path relative to ``paths.image_dir``, or a URL).
        labels: per image, label → score in [0, 1] (confidence; 1 when the table has none).
    """

    images: list[str]
    labels: list[dict[str, float]]


def _image_column(header: list[str], path: Path) -> str:
    for name in IMAGE_COLUMNS:
        if name in header:
            return name
    raise ImgclustError(f"{path}: no image column (expected one of {', '.join(IMAGE_COLUMNS)}; header {header})")


def _score(text: str, path: Path, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ImgclustError(f"{path}: row {row}: {column} {text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise ImgclustError(f"{path}: row {row}: {column} {value} is not a score in [0, 1]")
    return value


def _wide_columns(header: list[str]) -> list[tuple[str, str | None]]:
    """(label column, score column or None) pairs in label order."""
    pairs = []
    for name in header:
        m = re.fullmatch(r"label_(\d+)|w(\d+)", name)
        if m:
            i = m.group(1) or m.group(2)
            score = next((s for s in (f"score_{i}", f"p{i}", f"p_{i}") if s in header), None)
            pairs.append((int(i), name, score))
    return [(label, score) for _, label, score in sorted(pairs)]


def read_label_table(path: Path) -> LabelTable:
    """Read a wide or long label table (format detected from the header; see the module docstring).

    Raises:
        ImgclustError: unreadable file, unknown header, a non-numeric or out-of-range score, or an
            image repeated in a wide table; the message names the file and the row.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgclustError(f"{path}: cannot read label table ({getattr(exc, 'strerror', None) or exc})") from None
    except csv.Error as exc:
        raise ImgclustError(f"{path}: not a CSV file ({exc})") from None
    image = _image_column(header, path)
    col = {name: i for i, name in enumerate(header)}
    for row_number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ImgclustError(f"{path}: row {row_number}: {len(row)} cells, header has {len(header)}")
    table: dict[str, dict[str, float]] = {}
    if "concept" in col:
        for row_number, row in enumerate(rows, start=2):
            cells = dict(zip(header, row))
            concept = cells["concept"].strip()
            if concept.lower() in MISSING:
                continue
            score = _score(cells["confidence"], path, row_number, "confidence") if "confidence" in col else 1.0
            labels = table.setdefault(cells[image].strip(), {})
            labels[concept] = max(score, labels.get(concept, 0.0))
    else:
        pairs = _wide_columns(header)
        if not pairs:
            raise ImgclustError(f"{path}: no label columns (wide: label_1.. or w1..; long: image,concept,confidence)")
        for row_number, row in enumerate(rows, start=2):
            name = row[col[image]].strip()
            if name in table:
                raise ImgclustError(f"{path}: row {row_number}: image {name!r} listed twice")
            labels = {}
            for label_column, score_column in pairs:
                word = row[col[label_column]].strip()
                if word.lower() in MISSING:
                    continue
                text = row[col[score_column]].strip() if score_column else ""
                score = 1.0 if text.lower() in MISSING else _score(text, path, row_number, score_column)
                labels[word] = max(score, labels.get(word, 0.0))
            table[name] = labels
    if not table:
        raise ImgclustError(f"{path}: no images in the label table")
    return LabelTable(list(table), list(table.values()))


def label_matrix(table: LabelTable) -> tuple[sparse.csr_matrix, list[str]]:
    """Images × unique labels, 1 where the image has the label.

    Returns:
        (CSR matrix (N, L) of float64 0/1, the L labels in column order, sorted).
    """
    vocabulary = sorted({word for labels in table.labels for word in labels})
    column = {word: j for j, word in enumerate(vocabulary)}
    rows = [i for i, labels in enumerate(table.labels) for _ in labels]
    cols = [column[word] for labels in table.labels for word in labels]
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(table.labels), len(vocabulary)))
    return x, vocabulary


def jaccard_similarity(x: sparse.spmatrix) -> np.ndarray:
    """Jaccard similarity of every pair of rows of a binary matrix: |A ∩ B| / |A ∪ B|.

    Args:
        x: (N, L) 0/1 sparse matrix.

    Returns:
        float64 (N, N), symmetric, in [0, 1], 1 on the diagonal (also for images without labels).

    Raises:
        ImgclustError: more than :data:`PAIRWISE_LIMIT` images.
    """
    n = x.shape[0]
    if n > PAIRWISE_LIMIT:
        raise ImgclustError(f"label clustering holds all {n}² image pairs; it is limited to {PAIRWISE_LIMIT:,} images")
    shared = (x @ x.T).toarray()
    counts = np.asarray(x.sum(axis=1)).ravel()
    union = counts[:, None] + counts[None, :] - shared
    sim = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    np.fill_diagonal(sim, 1.0)
    return sim


def ward_tree(sim: np.ndarray) -> np.ndarray:
    """Ward linkage (SciPy) on distance = 1 − similarity; returns the linkage matrix (N − 1, 4)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    distance = 1.0 - sim
    np.fill_diagonal(distance, 0.0)
    return linkage(squareform(distance, checks=False), method="ward")


def separation(sim: np.ndarray, groups: np.ndarray) -> float:
    """Mean over images of (mean similarity to its own cluster, itself included − mean similarity
    to the images of other clusters), as in the R workflow; 0-based ``groups`` (N,)."""
    k = int(groups.max()) + 1
    members = np.eye(k)[groups]  # (N, k) one-hot
    sums = sim @ members  # similarity of each image to each cluster, summed
    sizes = members.sum(axis=0)
    own = sums[np.arange(len(groups)), groups] / sizes[groups]
    other_count = len(groups) - sizes[groups]
    other = np.divide(sums.sum(axis=1) - sums[np.arange(len(groups)), groups], other_count,
                      out=np.zeros(len(groups)), where=other_count > 0)
    return float(np.mean(own - other))


@dataclass
class LabelK:
    """The separation curve over k and its L-method knee."""

    ks: np.ndarray
    separation: np.ndarray
    knee: int


def choose_k(sim: np.ndarray, tree: np.ndarray, k_min: int = 2, k_max: int = 20) -> LabelK:
    """Cut ``tree`` into exactly k clusters (merge order, as R's ``cutree``) for k =
    k_min..min(k_max, N); the separation curve and its L-method knee."""
    ks = np.arange(k_min, max(k_min, min(k_max, len(sim))) + 1)
    curve = np.array([separation(sim, cut_tree_k(tree, k)) for k in ks])
    return LabelK(ks, curve, l_method(ks, curve))


def label_clustering(sim: np.ndarray, tree: np.ndarray, k: int) -> Clustering:
    """Cut the Ward tree into exactly ``k`` clusters (merge order), numbered by size (largest first).

    Returns:
        :class:`Clustering` whose ``distances`` are 1 − mean Jaccard similarity to the other
        members of the cluster (0 for a cluster of one), and ``centers`` are empty (k, 0): label
        sets have no mean.
    """
    labels, k = renumber_by_size(cut_tree_k(tree, k))
    members = np.eye(k)[labels]
    sizes = members.sum(axis=0)[labels]
    own = (sim @ members)[np.arange(len(labels)), labels] - np.diag(sim)
    distances = np.where(sizes > 1, 1.0 - own / np.maximum(sizes - 1, 1), 0.0).astype(np.float32)
    return Clustering(labels, distances, np.empty((k, 0), np.float32))
