"""Files of ``imgclust duplicates``: the group table (CSV and JSON), one folder of links per group,
and the outlier list. Photos are only read: the links point at them (or copy them), nothing is
deleted or moved."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write_csv, atomic_write_json
from .duplicates import KEEPER_RULE, DuplicateGroup
from .outputs import build_link_folders

OUTLIERS_LISTED = 50
KEEPER_PREFIX = "0-keeper__"  # before the keeper's link name: file managers sort by name, so it is listed first


def write_duplicates(csv_path: Path, json_path: Path, paths: list[str], groups: list[DuplicateGroup],
                     min_grade: str) -> None:
    """``<name>_duplicates.csv`` (group, grade, path, keeper — ``yes`` on the keeper's row —,
    similarity to the keeper: cosine of the feature vectors) and ``<name>_duplicates.json`` (the
    keeper rule, the lowest grade asked for, and per group its grade, keeper, members and graded
    pairs), each written atomically."""
    rows = []
    for g, group in enumerate(groups):
        for i, grade, sim, first in zip(group.members, group.member_grade, group.similarity,
                                         [True] + [False] * (len(group.members) - 1)):
            rows.append([g, grade or group.grade, paths[i], "yes" if first else "", f"{sim:.4f}"])
    atomic_write_csv(csv_path, ["group", "grade", "path", "keeper", "similarity"], rows)
    doc = {"keeper_rule": KEEPER_RULE, "lowest_grade": min_grade, "groups": [
        {"group": g, "grade": group.grade, "keeper": paths[group.members[0]],
         "members": [{"path": paths[i], "grade": grade or group.grade, "similarity": round(sim, 4)}
                     for i, grade, sim in zip(group.members, group.member_grade, group.similarity)],
         "pairs": [{"a": paths[a], "b": paths[b], "grade": grade or None, "similarity": round(cos, 4)}
                   for a, b, grade, cos in group.pairs]}
        for g, group in enumerate(groups)]}
    atomic_write_json(json_path, doc)


def link_duplicates(link_root: Path, image_dir: Path, paths: list[str], groups: list[DuplicateGroup],
                    mode: str = "symlink", before_swap=None) -> dict[str, int]:
    """One ``<group>_<size>`` folder of links per group under ``link_root``
    (:func:`image_clustering.outputs.build_link_folders`: replaced atomically, only when imgclust
    made it); photos in no group are not linked. The keeper's link name starts with
    :data:`KEEPER_PREFIX`, so it comes first in the folder.

    Returns:
        Count of each kind of link made.
    """
    members = [paths[i] for group in groups for i in group.members]
    labels = np.array([g for g, group in enumerate(groups) for _ in group.members], np.int64)
    keepers = {paths[group.members[0]]: KEEPER_PREFIX for group in groups}
    return build_link_folders(link_root, image_dir, members, labels, len(groups), mode, before_swap=before_swap,
                              prefixes=keepers)


def read_non_keepers(csv_path: Path) -> dict[str, str]:
    """The photos of ``<name>_duplicates.csv`` (:func:`write_duplicates`) that are not their
    group's suggested keeper, each with its keeper: what ``imgclust organise --keepers-only``
    leaves out.

    Returns:
        Photo path → its group's keeper path (paths relative to ``image_dir``, as in the table).

    Raises:
        ImgclustError: the table is missing, unreadable, lacks its columns, or a group has not
            exactly one keeper.
    """
    import csv

    from .errors import ImgclustError

    hint = "run `imgclust duplicates` again"
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ImgclustError(f"{csv_path}: not found; run `imgclust duplicates` first (--keepers-only reads it)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgclustError(f"{csv_path}: cannot be read ({exc}); {hint}") from None
    groups: dict[str, list[dict]] = {}
    for n, row in enumerate(rows, 2):
        if not row.get("group") or not row.get("path") or row.get("keeper") not in ("yes", ""):
            raise ImgclustError(f"{csv_path}: line {n} is not a row of group, grade, path, keeper, similarity; {hint}")
        groups.setdefault(row["group"], []).append(row)
    out = {}
    for g, members in groups.items():
        keepers = [r["path"] for r in members if r["keeper"] == "yes"]
        if len(keepers) != 1:
            raise ImgclustError(f"{csv_path}: group {g} has {len(keepers)} keepers, not one; {hint}")
        out.update({r["path"]: keepers[0] for r in members if r["keeper"] != "yes"})
    return out


def write_outliers(csv_path: Path, paths: list[str], scores: np.ndarray, neighbour: np.ndarray,
                   count: int = OUTLIERS_LISTED) -> list[int]:
    """``<name>_outliers.csv``: the ``count`` photos with the highest outlier score, most unusual
    first (rank, path, score, nearest photo).

    Args:
        scores: float (N,) outlier scores (:func:`image_clustering.duplicates.outlier_scores`).
        neighbour: int (N,) row of each photo's nearest neighbour (-1: none).

    Returns:
        The rows listed, in order.
    """
    top = np.argsort(-scores, kind="stable")[:count]
    atomic_write_csv(csv_path, ["rank", "path", "score", "nearest"],
                     ([r + 1, paths[i], f"{scores[i]:.4f}", paths[neighbour[i]] if neighbour[i] >= 0 else ""]
                      for r, i in enumerate(top)))
    return [int(i) for i in top]


REPORT_GROUPS = 200  # groups the report's Duplicates tab shows (the CSV has them all)


def write_report_data(report_dir: Path, image_dir: Path, paths: list[str], groups: list[DuplicateGroup],
                      min_grade: str, outliers: list[int], scores: np.ndarray, nearest: np.ndarray,
                      outlier_k: int) -> Path:
    """``<report>/duplicates_data.js``: what the report's Duplicates and Outliers tabs show
    (``report_assets/duplicates_tab.js``, which the report loads when the file is there). The
    first :data:`REPORT_GROUPS` groups, keeper first; the listed outliers with their nearest photo.

    Returns:
        The file written.
    """
    import os

    from .atomic import atomic_write_text
    from .report import _script_json, display_text, url_path

    report_dir.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(os.path.abspath(image_dir), os.path.abspath(report_dir)).replace(os.sep, "/")
    doc = {
        "imageBase": url_path(base) + "/", "keeperRule": KEEPER_RULE, "lowestGrade": min_grade,
        "shown": min(len(groups), REPORT_GROUPS), "outlierK": outlier_k,
        "groups": [{"grade": g.grade, "members": [[display_text(paths[i]), url_path(paths[i]), grade or g.grade,
                                                   round(sim, 4)]
                                                  for i, grade, sim in zip(g.members, g.member_grade, g.similarity)]}
                   for g in groups[:REPORT_GROUPS]],
        "outliers": [[display_text(paths[i]), url_path(paths[i]), round(float(scores[i]), 4),
                      display_text(paths[nearest[i]]) if nearest[i] >= 0 else "",
                      url_path(paths[nearest[i]]) if nearest[i] >= 0 else ""] for i in outliers],
    }
    path = report_dir / "duplicates_data.js"
    atomic_write_text(path, f"window.IMGCLUST_DUPLICATES = {_script_json(doc)};\n")
    return path
