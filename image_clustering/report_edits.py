"""The collection's clusters as the report's edit panel (``report_assets/edit.js``) reads them:
the JSON ``imgclust serve`` answers with, and ``collection.js`` beside a static report so the page
opened from disk can record edits and export them for ``imgclust edit apply FILE``."""
from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write_text
from .collection import Reconciled
from .report import _script_json, url_path

SCRIPT = "collection.js"


def collection_doc(placed: Reconciled, lines: list[str] | None = None) -> dict:
    """``{"clusters": [{"id", "name", "auto_name", "photos": [{"path", "href"}]}], "unclustered":
    [...], "excluded": [...], "lines": [...]}``: ``path`` the photo as ``imgclust edit`` names it
    (a non-UTF-8 file name keeps its surrogate escapes, which JSON carries as ``\\udcXX``),
    ``href`` its percent-encoded path below ``image_dir``; ``lines`` what the last edit printed."""
    def photo(p):  # the path as stored, so an edit names it exactly (a non-UTF-8 name: lone surrogates, JSON-escaped)
        return {"path": p, "href": url_path(p)}

    members: dict[int, list] = {}
    for p, c in zip(placed.paths, placed.ids.tolist()):
        members.setdefault(int(c), []).append(photo(p))
    clusters = [{"id": c, "name": placed.names.get(c), "auto_name": placed.auto_names.get(c), "photos": members[c]}
                for c in placed.cluster_ids()]
    return {"clusters": clusters, "unclustered": members.get(-1, []), "excluded": members.get(-2, []),
            "lines": lines or []}


def write_collection_script(report_dir: Path, placed: Reconciled | None) -> Path:
    """``<report_dir>/collection.js`` setting ``window.IMGCLUST_COLLECTION`` (None, written as
    ``null``, when there are no clusters yet: the page then shows no edit controls)."""
    doc = collection_doc(placed) if placed is not None else None
    path = Path(report_dir) / SCRIPT
    atomic_write_text(path, f"window.IMGCLUST_COLLECTION = {_script_json(doc)};\n")
    return path
