"""Label words → clusters: the workflow of Song, Richards & Tan (2020, Sci. Rep. 10, 808), where each
photo is described by the labels a labelling service gave it.

Label tables (CSV, UTF-8, one header row; :func:`read_tag_table`):

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
clusters) — and its knee by the L-method (Salvador & Chan 2004). Trees are cut into exactly k
clusters by merge order (R's ``cutree``).

``model.label_method: "song2020"`` computes instead exactly what the published R code computes,
differences included (the ``song2020_*`` functions at the end; README "Reproducing Song, Richards
& Tan (2020)").
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from scipy import sparse

from .atomic import read_csv
from .clustering import Clustering, check_pairwise, cut_tree_k, l_method, renumber_by_size
from .errors import ImgclustError

IMAGE_COLUMNS = ("path", "url", "image")
MISSING = {"", "na", "nan", "none", "null"}


@dataclass
class TagTable:
    """Tag words per image (what the label table's columns call labels).

    Attributes:
        images: image identifiers as given (a path relative to ``paths.image_dir``, or a URL).
        tags: per image, tag word → score in [0, 1] (confidence; 1 when the table has none).
        cells: per image, the non-empty label cells in the table, a tag repeated in a row
            counted each time (the R workflow's label count ``lengword``); None: one per tag.
    """

    images: list[str]
    tags: list[dict[str, float]]
    cells: list[int] | None = None


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


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as surrogateescape reads them


def _check_utf8(path: Path, header: list[str], rows: list[list[str]], image: int, lines: list[int]) -> None:
    """Refuse a table whose text (anything but the image names) is not UTF-8: a Latin-1 ``café``
    would otherwise become a word no font can draw.

    Raises:
        ImgclustError: naming the file and the line.
    """
    for number, cells in zip(lines, [header, *rows]):
        bad = next((c for i, c in enumerate(cells) if (i != image or cells is header) and _NOT_UTF8.search(c)), None)
        if bad is not None:
            shown = bad.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise ImgclustError(f"{path}: line {number}: {shown!r} is not UTF-8 text; save the label table as UTF-8 "
                                "(with or without a byte-order mark)")


def read_tag_table(path: Path) -> TagTable:
    """Read a wide or long label table (format detected from the header; see the module docstring).

    Raises:
        ImgclustError: unreadable file, unknown header, a non-numeric or out-of-range score, or an
            image repeated in a wide table; the message names the file and the row.
    """
    path = Path(path)
    try:
        # surrogateescape: image names are file names, whose bytes need not be UTF-8 (`imgclust tag`
        # writes them as they are); every other cell must be UTF-8 text (checked below).
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            # read_csv undoes the formula escaping of our own CSVs (the tag table, a label CSV)
            header, *rows = read_csv(f, lines := []) or [[]]
            header = [h.strip() for h in header]
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgclustError(f"{path}: cannot read label table ({getattr(exc, 'strerror', None) or exc})") from None
    except csv.Error as exc:
        raise ImgclustError(f"{path}: not a CSV file ({exc})") from None
    _check_utf8(path, header, [], -1, lines)  # the header first: a UTF-16 table has no recognisable column
    image = _image_column(header, path)
    _check_utf8(path, header, rows, header.index(image), lines)
    col = {name: i for i, name in enumerate(header)}
    for row_number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ImgclustError(f"{path}: row {row_number}: {len(row)} cells, header has {len(header)}")
    table: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}  # label cells per image, repeats included
    if "concept" in col:
        for row_number, row in enumerate(rows, start=2):
            cells = dict(zip(header, row))
            concept = cells["concept"].strip()
            if concept.lower() in MISSING:
                continue
            score = _score(cells["confidence"], path, row_number, "confidence") if "confidence" in col else 1.0
            labels = table.setdefault(cells[image].strip(), {})
            labels[concept] = max(score, labels.get(concept, 0.0))
            counts[cells[image].strip()] = counts.get(cells[image].strip(), 0) + 1
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
                counts[name] = counts.get(name, 0) + 1
            table[name] = labels
    if not table:
        raise ImgclustError(f"{path}: no images in the label table")
    return TagTable(list(table), list(table.values()), [counts.get(name, 0) for name in table])


def merge_tag_tables(tables: list[TagTable]) -> TagTable:
    """One table with every image of ``tables`` (in order of first appearance) and, per image, the
    labels of all of them (the best score where a label repeats; label cells added up)."""
    labels: dict[str, dict[str, float]] = {}
    cells: dict[str, int] = {}
    for table in tables:
        for i, (image, own) in enumerate(zip(table.images, table.tags)):
            merged = labels.setdefault(image, {})
            for word, score in own.items():
                merged[word] = max(score, merged.get(word, 0.0))
            cells[image] = cells.get(image, 0) + (table.cells[i] if table.cells is not None else len(own))
    return TagTable(list(labels), list(labels.values()), [cells[image] for image in labels])


@dataclass
class LocalPhotos:
    """Which rows of a label table name a photo that may be opened, linked or copied.

    Attributes:
        paths: row index → the photo's path (``image_dir / name``, symbolic link not followed).
        outside: rows whose name leaves ``image_dir``: absolute, ``..`` climbing out, or through a
            link to a folder elsewhere; never opened, linked or copied.
    """

    paths: dict[int, Path]
    outside: int


def local_photos(image_dir: Path, images: list[str]) -> LocalPhotos:
    """The rows of a label table that name a photo under ``image_dir``.

    A label table is input from elsewhere, so a row may only reach what ``imgclust extract`` would
    read: a relative path whose folder — symbolic links followed — lies inside the resolved
    ``image_dir``, not hidden (no ``.name`` part), with a photo extension, naming an existing file.
    The file itself may be a symbolic link to a photo elsewhere (the user's own link, as
    ``extract`` reads it); a link to a folder elsewhere does not make that folder part of the
    collection (``extract`` does not walk into it either). Other rows (URLs, missing files) are
    clustered but not opened, linked or copied.
    """
    from .images import EXTENSIONS

    root = image_dir.resolve()
    folder_inside: dict[Path, bool] = {}  # rows share folders: resolve each once
    paths, outside = {}, 0
    for i, name in enumerate(images):
        relative = PurePosixPath(name)
        if not name:
            continue
        if relative.is_absolute() or ".." in relative.parts:
            outside += 1
            continue
        full = image_dir / name
        try:
            if full.parent not in folder_inside:
                folder_inside[full.parent] = full.parent.resolve().is_relative_to(root)
            if not folder_inside[full.parent]:  # through a link to a folder elsewhere
                outside += 1
            elif (not any(p.startswith(".") for p in relative.parts)
                  and full.suffix.lower() in EXTENSIONS and full.is_file()):
                paths[i] = full
        except (OSError, ValueError, RuntimeError):  # NUL in the name, a link loop: not a photo
            continue
    return LocalPhotos(paths, outside)


def tag_matrix(table: TagTable) -> tuple[sparse.csr_matrix, list[str]]:
    """Images × unique labels, 1 where the image has the label.

    Returns:
        (CSR matrix (N, L) of float64 0/1, the L labels in column order, sorted).
    """
    vocabulary = sorted({word for labels in table.tags for word in labels})
    column = {word: j for j, word in enumerate(vocabulary)}
    rows = [i for i, labels in enumerate(table.tags) for _ in labels]
    cols = [column[word] for labels in table.tags for word in labels]
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(table.tags), len(vocabulary)))
    return x, vocabulary


def jaccard_similarity(x: sparse.spmatrix) -> np.ndarray:
    """Jaccard similarity of every pair of rows of a binary matrix: |A ∩ B| / |A ∪ B|.

    Args:
        x: (N, L) 0/1 sparse matrix.

    Returns:
        float64 (N, N), symmetric, in [0, 1], 1 on the diagonal (also for images without labels).

    Raises:
        ValueError: more than :data:`~image_clustering.clustering.PAIRWISE_LIMIT` images.
    """
    n = x.shape[0]
    check_pairwise(n, "tag clustering")
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
class TagK:
    """The separation curve over k, the L-method's error per split, and the knee.

    Attributes:
        ks: int (K,) the k tried, 2..k_max.
        separation: float (K,) mean (within − between) similarity per k.
        knee: the chosen k.
        splits, errors: float arrays: the k at each split and its size-weighted RMSE.
    """

    ks: np.ndarray
    separation: np.ndarray
    knee: int
    splits: np.ndarray | None = None
    errors: np.ndarray | None = None


def choose_k(sim: np.ndarray, tree: np.ndarray, k_min: int = 2, k_max: int = 20) -> TagK:
    """Cut ``tree`` into exactly k clusters (merge order, as R's ``cutree``) for k =
    k_min..min(k_max, N); the separation curve and its L-method knee."""
    from .clustering import l_method_errors

    ks = np.arange(k_min, max(k_min, min(k_max, len(sim))) + 1)
    curve = np.array([separation(sim, cut_tree_k(tree, k)) for k in ks])
    splits, errors = l_method_errors(ks, curve) if len(ks) >= 4 else (np.empty(0), np.empty(0))
    return TagK(ks, curve, l_method(ks, curve), splits, errors)


def cluster_tags_at_k(sim: np.ndarray, tree: np.ndarray, k: int) -> Clustering:
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


# --- Reproduction of the published R code (Song, Richards & Tan 2020) -------------------------
# ``model.label_method: "song2020"``. Each function follows one step of the R workflow's code
# (R-bloggers, "Automated image classification into content-type categories", 2020) as written,
# including what the default above corrects; README "Label words" puts the two side by side.

LABEL_METHODS = ("jaccard", "song2020")


def r_round(x: np.ndarray, digits: int = 2) -> np.ndarray:
    """R's ``round(x, digits)`` (R ≥ 4.0.0): of the two decimal neighbours of each double, the
    nearer one, ties to the even last digit. NumPy's ``round`` scales by 10^digits first and
    differs on values such as 1/40 (R 0.03, NumPy 0.02); this matches R 4.2 on every s/n,
    0 ≤ s ≤ n ≤ 200.

    Args:
        x: float array (any shape), non-negative.

    Returns:
        float64 array of the same shape.
    """
    x = np.asarray(x, dtype=np.float64)
    scale = 10.0 ** digits
    low = np.floor(x * scale)
    down, up = low / scale, np.ceil(x * scale) / scale
    go_up = (up - x < x - down) | ((up - x == x - down) & (np.fmod(low, 2) == 1))
    return np.where(go_up, up, down)


def song2020_similarity(x: sparse.spmatrix, images: list[str] | None = None,
                        cells: list[int] | None = None) -> np.ndarray:
    """The R code's photo similarity: labels shared by photos i and j over the labels of i plus
    the labels of j (not over their union, as the Jaccard index it is named after), rounded to
    2 decimals as R rounds; 1 on the diagonal.

    Args:
        x: (N, L) 0/1 sparse matrix (:func:`tag_matrix`).
        images: image names, for the error message.
        cells: label cells per image (:attr:`TagTable.cells`): the R code divides by these, so
            a label given twice in a row counts twice there (and once in the numerator); default:
            the row sums of ``x``.

    Returns:
        float64 (N, N), symmetric, in [0, 0.5] off the diagonal.

    Raises:
        ImgclustError: two images without labels (0/0: R gets NaN and ``hclust`` stops), or more
            than :data:`~image_clustering.clustering.PAIRWISE_LIMIT` images.
    """
    n = x.shape[0]
    check_pairwise(n, "tag clustering")
    counts = np.asarray(cells, dtype=np.float64) if cells is not None else np.asarray(x.sum(axis=1)).ravel()
    empty = np.flatnonzero(counts == 0)
    if len(empty) > 1:
        names = [images[i] if images else str(i) for i in empty[:2]]
        raise ImgclustError(f"model.label_method: images {names[0]!r} and {names[1]!r} have no labels; "
                            "song2020 divides by their label counts (0/0); drop them or use \"jaccard\"")
    total = counts[:, None] + counts[None, :]
    shared = (x @ x.T).toarray()
    sim = r_round(np.divide(shared, total, out=np.zeros_like(shared), where=total > 0))
    np.fill_diagonal(sim, 1.0)
    return sim


def song2020_tree(sim: np.ndarray) -> np.ndarray:
    """``fastcluster::hclust(as.dist(1 − sim), "ward.D2")`` with the Python build of the same
    C++ library (fastcluster, Müllner 2013), so tied distances merge in R's order.

    Returns:
        SciPy linkage matrix, float (N − 1, 4).
    """
    import fastcluster
    from scipy.spatial.distance import squareform

    distance = 1.0 - sim
    np.fill_diagonal(distance, 0.0)
    return fastcluster.linkage(squareform(distance, checks=False), method="ward")


def song2020_separation(sim: np.ndarray, groups: np.ndarray) -> float:
    """The R code's mean (within − between) similarity for one cut. Each photo's row of the R
    distance matrix is used, which the code filled only below the diagonal (``simi[1:i] <- 0``):
    the photos after it in the table count as distance 1, similarity 0. Itself is in its own
    cluster (similarity 1).

    Args:
        sim: float (N, N) from :func:`song2020_similarity`, rows in table order.
        groups: int (N,) 0-based cluster per photo.
    """
    return separation(np.tril(sim, -1) + np.eye(len(sim)), groups)


def song2020_knee(ks: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The R code's L-method on its curve ``distance`` over k = 2..K (K = ``ks[-1]``): one
    straight line ``lm(distance ~ k)`` fitted to the whole curve (not one line per side, as
    Salvador & Chan 2004 define it), then for each split i = 3..K − 2

        (i − 1)/(K − 1) · RMSE(residuals of rows 2..i) + (K − i)/(K − 1) · RMSE(rows i + 1..K)

    with rows numbered from 1 (row r is k = r + 1, so row 1 is never used and row K does not
    exist: qpcR's ``RMSE`` drops the NA), reported at k = i.

    Args:
        ks: int (K − 1,) 2..K; curve: float (K − 1,) 1 − separation.

    Returns:
        (the k of each split, float errors, the knee: the k of the smallest error; ``ks[-1]``
        when K < 5 leaves no split).
    """
    ks = np.asarray(ks, dtype=float)
    curve = np.asarray(curve, dtype=float)
    top = int(ks[-1])
    residuals = curve - np.polyval(np.polyfit(ks, curve, 1), ks)

    def rmse(rows: np.ndarray) -> float:
        return float(np.sqrt(np.mean(rows ** 2)))

    splits = np.arange(3, top - 1)
    if not len(splits):
        return splits, np.empty(0), top
    errors = np.array([(i - 1) / (top - 1) * rmse(residuals[1:i]) + (top - i) / (top - 1) * rmse(residuals[i:])
                       for i in splits])
    return splits, errors, int(splits[int(np.argmin(errors))])


def song2020_choose_k(sim: np.ndarray, tree: np.ndarray, k_max: int = 20) -> TagK:
    """The R code's "How many clusters?": cut ``tree`` (``cutree``: merge order) at k =
    2..min(k_max, N), :func:`song2020_separation` per k, and :func:`song2020_knee` of the curve
    1 − separation.

    Returns:
        :class:`TagK` (``separation`` as computed; the R code's curve is 1 − it).
    """
    ks = np.arange(2, max(2, min(k_max, len(sim))) + 1)
    curve = np.array([song2020_separation(sim, cut_tree_k(tree, k)) for k in ks])
    splits, errors, knee = song2020_knee(ks, 1.0 - curve)
    return TagK(ks, curve, knee, splits, errors)
