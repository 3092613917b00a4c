"""The interactive report: one self-contained folder (``index.html``, its script and style, a data
script and thumbnail atlases) that any current browser opens from disk, offline.

What the page shows (drawn by our own WebGL code in ``report_assets/report.js``): every photo at
its embedding position as a thumbnail framed in its cluster's colour (dots when zoomed out), hover
details, galleries per cluster, the k sweep's curves with a k control that regroups the photos
for every k the sweep fitted, search by path or label word, nearest neighbours in feature space,
and the run's counts, failures, config, timings and scores.

Why it is built this way:

- Thumbnails are packed into JPEG atlas images (as PixPlot does), one texture per atlas, so
  100,000 photos are a few dozen images and one draw call each, not 100,000 ``<img>``. An
  atlas's file name hashes what is in it (paths, sizes, modification times), so a re-run with no
  new photos writes none; each photo's thumbnail is also cached (keyed by size and mtime) so new
  photos only cost their own decoding.
- Each atlas travels as a script (``atlas-<hash>.js``, the JPEG in base64): under ``file://`` a
  browser treats every other local file as another origin, and WebGL refuses such images as
  textures; bytes that arrive inside a script become a same-origin ``blob:`` image.
- The data is a ``data.js`` script (``<script src>``): Chromium forbids ``fetch`` of local files
  under ``file://``. Big arrays travel as base64 of little-endian typed arrays. Every string from
  the user's files is JSON-escaped (``<``, ``>`` and ``&`` as ``\\u003c``...) and the page only
  ever puts it into the document as text, never as HTML.
- Links to the originals are relative (report folder → ``paths.image_dir``) and percent-encode the
  file name's bytes, so non-UTF-8 names (surrogate-escaped by Python) still open.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageOps

from .atomic import atomic_path, atomic_write_text
from .colours import UNCLUSTERED, cluster_colours
from .embedding import sample_index

logger = logging.getLogger(__name__)
ASSETS = ("report.js", "report.css", "duplicates_tab.js", "duplicates_tab.css", "edit.js", "edit.css")
ATLAS_SIDE = 2048  # pixels: a texture size every WebGL device supports (most allow 4096 or more)
ATLAS_QUALITY = 80  # JPEG quality of the atlases: 10,000 64-pixel thumbnails take about 30 MB
MAX_TAGS = 5  # label words per photo carried into the page
REPORT_SAMPLE = 100_000  # photos shown at most; larger collections show a seeded sample


def cell_size(n: int) -> int:
    """Thumbnail side in the atlases: 64 pixels up to 20,000 photos, 32 above (PixPlot's map size),
    which keeps 100,000 photos at 25 atlases (400 MB of texture memory)."""
    return 64 if n <= 20_000 else 32


@dataclass
class ReportClustering:
    """One grouping of the photos the page can show.

    Attributes:
        name: shown in the k control, e.g. ``"k-means, k = 10"``.
        labels: int (N,) cluster per photo, 0 the largest, -1 unclustered.
        distances: float (N,) distance to the own cluster centre (NaN when unclustered).
        current: the clustering ``imgclust cluster`` wrote (selected when the page opens).
        group: the heading it is listed under in the clustering menu (e.g. the real result apart
            from the sweep's k-means partitions), or None.
        names: cluster → its name (e.g. from the living collection's state), for the legend,
            galleries and hover text; clusters without one show their number only.
    """

    name: str
    labels: np.ndarray
    distances: np.ndarray
    current: bool = False
    group: str | None = None
    names: dict[int, str] | None = None

    @property
    def k(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) and self.labels.max() >= 0 else 0


@dataclass
class ReportRun:
    """The "run" section: anything JSON-able; every field optional.

    Attributes:
        counts: e.g. ``{"images": 40, "computed": 0, "reused": 40, "failed": 1}``.
        failures: (path, reason) of the unreadable files.
        config: the config used, as nested dicts.
        timings: step → seconds.
        evaluation: the scores of ``imgclust evaluate``.
        finished: step → when it finished (local time, text).
    """

    counts: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    config: dict | None = None
    timings: dict = field(default_factory=dict)
    evaluation: dict | None = None
    finished: dict = field(default_factory=dict)


def display_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate-escaped bytes of a non-UTF-8 file name become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def url_path(text: str) -> str:
    """Percent-encoded URL path of a relative file path (its bytes as the file system has them)."""
    return quote(os.fsencode(text), safe="/")


def inside(path: str) -> bool:
    """Whether a relative photo path stays inside its folder by its name alone: not empty, not
    absolute, no ``..``, ``.`` or empty part (the report links and opens only such paths)."""
    return bool(path) and not path.startswith("/") and all(part not in ("", ".", "..") for part in path.split("/"))


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unit_square(coords: np.ndarray) -> np.ndarray:
    """The first two embedding axes scaled into [0, 1]², aspect kept, centred, the second axis
    turned downwards (page pixels grow downwards): the map shows the photos as the PNG plots do."""
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    if xy.shape[1] < 2:
        xy = np.column_stack([xy[:, 0] if xy.shape[1] else np.zeros(len(xy)), np.zeros(len(xy))])
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max()) or 1.0
    unit = (xy - low) / span + (1 - (high - low) / span) / 2
    unit[:, 1] = 1 - unit[:, 1]
    return unit.astype(np.float32)


# ---------------------------------------------------------------- thumbnails and atlases


def _thumbnail(path: Path, cell: int) -> np.ndarray:
    """uint8 (cell, cell, 3): the photo centre-cropped to a square; mid grey when unreadable."""
    from .images import open_rgb

    try:
        return np.asarray(ImageOps.fit(open_rgb(path, cell), (cell, cell), Image.Resampling.BILINEAR), np.uint8)
    except Exception:  # a broken photo gets a grey tile; the map must not fail because of it
        return np.full((cell, cell, 3), 96, np.uint8)


def _stamp(image_dir: Path, rel: str) -> tuple[int, int]:
    try:
        st = (image_dir / rel).stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


class ThumbnailCache:
    """Per-photo thumbnails of one size, kept between runs in ``<cache_dir>/thumbs<cell>.npy``
    (uint8 (M, cell, cell, 3)) and ``thumbs<cell>.json`` (``[path, size, mtime_ns]`` per row)."""

    def __init__(self, cache_dir: Path | None, cell: int):
        self.cell = cell
        self.npy = cache_dir / f"thumbs{cell}.npy" if cache_dir else None
        self.index = cache_dir / f"thumbs{cell}.json" if cache_dir else None
        self.rows: dict[tuple, int] = {}
        self.array = np.zeros((0, cell, cell, 3), np.uint8)
        if self.npy and self.npy.is_file() and self.index.is_file():
            try:
                rows = json.loads(self.index.read_text())["rows"]
                array = np.load(self.npy, mmap_mode="r")
                if len(rows) == len(array):
                    self.rows = {tuple(r): i for i, r in enumerate(rows)}
                    self.array = array
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt

    def get(self, image_dir: Path, paths: list[str], stamps: list[tuple[int, int]], workers: int = 2,
            openable: list[bool] | None = None) -> np.ndarray:
        """Thumbnails of ``paths`` (uint8 (N, cell, cell, 3)); decodes only those whose (path, size,
        mtime) the cache lacks and that are ``openable`` (None: all; the others are grey), then
        rewrites the cache to hold exactly these photos."""
        keys = [(p, s, m) for p, (s, m) in zip(paths, stamps)]
        rows = [self.rows.get(k) for k in keys]
        missing = [i for i, r in enumerate(rows) if r is None]
        out = np.empty((len(paths), self.cell, self.cell, 3), np.uint8)
        have = [i for i, r in enumerate(rows) if r is not None]
        if have:
            out[have] = self.array[[rows[i] for i in have]]
        if missing:  # Pillow decodes outside the GIL: threads help
            with ThreadPoolExecutor(max_workers=workers) as pool:
                def tile_of(i):
                    if openable is not None and not openable[i]:
                        return np.full((self.cell, self.cell, 3), 96, np.uint8)
                    return _thumbnail(image_dir / paths[i], self.cell)

                for i, tile in zip(missing, pool.map(tile_of, missing)):
                    out[i] = tile
        if self.npy and (missing or len(self.rows) != len(keys) or rows != list(range(len(keys)))):
            with atomic_path(self.npy) as tmp:
                np.save(tmp, out)
            atomic_write_text(self.index, json.dumps({"rows": [list(k) for k in keys]}))
        return out


def write_atlases(out_dir: Path, image_dir: Path, paths: list[str], cache_dir: Path | None,
                  cell: int | None = None, openable: list[bool] | None = None) -> dict:
    """Pack the thumbnails of ``paths`` (in that order) into JPEG atlases in ``out_dir``, each
    wrapped in a script ``atlas-<hash>.js`` calling ``imgclustAtlas(index, base64 JPEG)``.

    Atlas ``a`` holds photos ``a·P .. a·P + P − 1`` (P = per_atlas), row-major in a grid of
    ``columns`` cells of ``cell`` pixels. An atlas whose photos (path, size, mtime) did not change
    is not written again; atlases no longer used are deleted.

    ``openable``: per photo whether it may be read; the others (never opened, not even stat'ed)
    get a grey tile.

    Returns:
        ``{"cell", "columns", "per_atlas", "atlases": [script file names]}``.
    """
    n = len(paths)
    cell = cell or cell_size(n)
    columns = ATLAS_SIDE // cell
    per_atlas = columns * columns
    stamps = [_stamp(image_dir, p) if openable is None or openable[i] else (-1, -1) for i, p in enumerate(paths)]
    names, todo = [], []
    for a, start in enumerate(range(0, n, per_atlas)):
        digest = hashlib.sha1(json.dumps([cell, ATLAS_QUALITY, paths[start:start + per_atlas],
                                          stamps[start:start + per_atlas]]).encode("utf-8", "surrogateescape"))
        names.append(f"atlas-{digest.hexdigest()[:16]}.js")
        if not (out_dir / names[-1]).is_file():
            todo.append(a)
    if todo:
        # Every photo's thumbnail, not only the rewritten atlases': the cache then holds exactly
        # the collection, and a later shift of photos between atlases decodes nothing again.
        tiles = ThumbnailCache(cache_dir, cell).get(image_dir, paths, stamps, openable=openable)
        for a in todo:
            members = range(a * per_atlas, min(n, (a + 1) * per_atlas))
            rows = -(-len(members) // columns)
            sheet = np.full((rows * cell, columns * cell, 3), 40, np.uint8)
            for j, i in enumerate(members):
                r, c = divmod(j, columns)
                sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tiles[i]
            jpeg = io.BytesIO()
            Image.fromarray(sheet).save(jpeg, "JPEG", quality=ATLAS_QUALITY)
            atomic_write_text(out_dir / names[a],
                              f'imgclustAtlas({a},"{base64.b64encode(jpeg.getvalue()).decode("ascii")}");\n')
    for old in out_dir.glob("atlas-*.*"):
        if old.name not in names:
            old.unlink()
    return {"cell": cell, "columns": columns, "per_atlas": per_atlas, "atlases": names}


def photo_dates(image_dir: Path, paths: list[str], cache_dir: Path | None = None) -> np.ndarray:
    """float (N,) when each photo was taken, seconds since the epoch
    (:func:`~image_clustering.images.photo_time`: EXIF DateTimeOriginal, else the file time; NaN
    where the photo is gone). Kept between runs in ``<cache_dir>/dates.json`` keyed by path, size
    and mtime, so a re-run opens only new or changed photos."""
    from .images import photo_time

    cache = cache_dir / "dates.json" if cache_dir else None
    known = {}
    if cache and cache.is_file():
        try:
            known = {tuple(row[:3]): row[3] for row in json.loads(cache.read_text())["rows"]}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            known = {}  # a damaged cache is rebuilt
    rows, out = [], np.full(len(paths), np.nan)
    for i, path in enumerate(paths):
        key = (path, *_stamp(image_dir, path))
        if key[1] < 0:
            continue  # gone
        if key not in known:
            try:
                known[key] = photo_time(image_dir / path)
            except OSError:
                known[key] = None
        out[i] = np.nan if known[key] is None else known[key]
        rows.append([*key, known[key]])
    if cache:
        atomic_write_text(cache, json.dumps({"rows": rows}))
    return out


PREVIEW_SIDE = 512  # pixels, the longer side of a portable report's previews (about 40 kB each)


def write_previews(out_dir: Path, image_dir: Path, paths: list[str], workers: int = 2) -> list[str]:
    """A JPEG preview (longer side :data:`PREVIEW_SIDE`) of each photo in ``out_dir/previews``,
    for a report that travels without the photos. A preview's name hashes its photo's path,
    size and mtime, so a re-run encodes only new or changed photos; previews no longer used are
    deleted. Unreadable photos get none.

    Returns:
        Per photo its preview's path relative to ``out_dir`` (``previews/<hash>.jpg``), or "".
    """
    from .images import open_rgb

    folder = out_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    names = [hashlib.sha1(json.dumps([p, *_stamp(image_dir, p), PREVIEW_SIDE]).encode("utf-8", "surrogateescape"))
             .hexdigest()[:20] + ".jpg" for p in paths]

    def make(i: int) -> str:
        target = folder / names[i]
        if not target.is_file():
            try:
                image = open_rgb(image_dir / paths[i], PREVIEW_SIDE)
            except Exception:  # an unreadable photo has no preview; the report must not fail for it
                return ""
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
            with atomic_path(target) as tmp:
                image.save(tmp, "JPEG", quality=80)
        return "previews/" + names[i]

    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes outside the GIL
        made = list(pool.map(make, range(len(paths))))
    wanted = set(names)
    for old in folder.glob("*.jpg"):
        if old.name not in wanted and len(old.stem) == 20:
            old.unlink()
    return made


def without_local_paths(value):
    """``value`` (nested dicts and lists) with every absolute file path cut to ``…/<last part>``:
    what a shared report may say about where the files were."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return "…/" + Path(value).name
    return value


# ---------------------------------------------------------------- the page


def _script_json(value) -> str:
    """JSON safe to place anywhere in a script: ``<``, ``>``, ``&`` and the JavaScript line
    separators escaped, so no ``</script>`` or ``<!--`` can end or change the script."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _clustering_doc(c: ReportClustering) -> dict:
    labels = np.asarray(c.labels)
    dist = np.asarray(c.distances, dtype=np.float64)
    finite = np.isfinite(dist)
    dmax = float(dist[finite].max()) if finite.any() else 0.0
    # Distances as 16-bit fractions of the largest: a quarter of float32's size, 4–5 digits kept.
    q = np.where(finite, np.round(dist / (dmax or 1.0) * 65534), 65535).astype(np.uint16)
    # Labels as bytes (cluster + 1, 0 = unclustered) when they fit: half the size of int16.
    small = c.k < 255
    names = {str(int(c)): display_text(str(name)) for c, name in (c.names or {}).items()}
    return {"name": c.name, "k": c.k, "current": c.current, "group": c.group, "colours": cluster_colours(c.k),
            "names": names,
            "labels": _b64(labels + 1, "u1") if small else _b64(labels, "<i2"), "labelBytes": 1 if small else 2,
            "dist": _b64(q, "<u2"), "dmax": dmax}


@dataclass
class ReportCurves:
    """The "choosing k" panel: curves over k, marked k values and a note.

    Attributes:
        ks: int (K,) every k the page can show (the x axis).
        curves: title → (ks of that curve, values; NaN where undefined).
        marks: label → k, drawn as dashed lines (e.g. ``"elbow knee": 7``).
        note: one sentence above the curves, e.g. the suggested k.
        pictures: PNG files shown under the curves (copied into the report folder).
    """

    ks: np.ndarray
    curves: dict
    marks: dict
    note: str
    pictures: list = field(default_factory=list)


def sweep_curves(sweep) -> ReportCurves:
    """The curves of a :class:`~image_clustering.clustering.KSweep`: inertia, silhouette and
    Davies–Bouldin, with the four criteria's k marked."""
    s = sweep.suggestions
    return ReportCurves(
        sweep.ks, {"inertia (elbow)": (sweep.ks, sweep.inertia),
                   "silhouette (higher is better)": (sweep.ks, sweep.silhouette),
                   "Davies–Bouldin (lower is better)": (sweep.ks, sweep.davies_bouldin)},
        {"silhouette max": s["silhouette"], "Davies–Bouldin min": s["davies_bouldin"], "elbow knee": s["elbow"],
         "L-method": s["lmethod"]},
        f"Suggested k = {sweep.suggested_k} ({sweep.criterion}).")


def _curves_doc(curves: ReportCurves | None) -> dict | None:
    if curves is None:
        return None

    def clean(values):
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]

    return {"ks": [int(k) for k in curves.ks], "note": curves.note,
            "curves": [{"title": t, "ks": [int(k) for k in ks], "values": clean(v)} for t, (ks, v) in curves.curves.items()],
            "marks": [[name, int(k)] for name, k in curves.marks.items()]}


@dataclass
class ReportContent:
    """What the report shows, gathered by the workflow (:func:`image_clustering.pipeline.report`)
    and handed to :func:`write_report`, which only renders it.

    Attributes:
        image_dir: folder the relative ``paths`` start from.
        paths: N photo paths relative to ``image_dir`` (``/`` separators; surrogate-escaped
            non-UTF-8 names allowed).
        coords: float (N, d ≥ 2) embedding; the first two axes place the photos.
        clusterings: at least one grouping; the first with ``current`` set (else the first) is
            shown when the page opens.
        sweep: a :class:`~image_clustering.clustering.KSweep` or :class:`ReportCurves` for the
            "choosing k" panel, or None.
        neighbours: (int (N, m) row indices, float (N, m) cosine similarities), best first, or None.
        tags: per photo its label words, best first, or None when ``imgclust tag`` never ran.
        run: the "run" section.
        title: page title (the collection name).
        clustering_note: what the clustering menu's groups are, shown beside the curves.
        times: float (N,) when each photo was taken, seconds since the epoch (EXIF
            DateTimeOriginal, else the file time; NaN unknown), for the Dates tab; None: no tab.
        openable: per photo, whether the page may show and link its original (and the report
            read it for a thumbnail); None: all. Paths that are absolute or contain ``..`` are
            never opened or linked (:func:`inside`); the others are drawn as grey tiles.
    """

    image_dir: Path
    paths: list[str]
    coords: np.ndarray
    clusterings: list[ReportClustering]
    sweep: object = None
    neighbours: tuple[np.ndarray, np.ndarray] | None = None
    tags: list[list[str]] | None = None
    run: ReportRun | None = None
    title: str = "imgclust"
    clustering_note: str | None = None
    times: np.ndarray | None = None
    openable: list[bool] | None = None


def build_report(out_dir: Path, image_dir: Path, paths: list[str], coords: np.ndarray,
                 clusterings: list[ReportClustering], sweep=None, neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                 tags: list[list[str]] | None = None, run: ReportRun | None = None, title: str = "imgclust",
                 cache_dir: Path | None = None) -> Path:
    """Write the interactive report into ``out_dir``: :func:`write_report` of a
    :class:`ReportContent` made of these arguments (see there)."""
    return write_report(out_dir, ReportContent(Path(image_dir), paths, coords, clusterings, sweep, neighbours, tags,
                                               run, title), cache_dir)


def write_report(out_dir: Path, content: ReportContent, cache_dir: Path | None = None, portable: bool = False) -> Path:
    """Write the interactive report of ``content`` into ``out_dir`` (created): ``index.html``,
    ``report.js``, ``report.css``, ``data.js`` and ``atlas-*.js``.

    Args:
        out_dir: the report folder, e.g. ``<plot_dir>/<object_name>/report``; links to the
            originals are relative from it to ``content.image_dir``.
        content: what the page shows.
        cache_dir: where per-photo thumbnails are cached between runs (None: no cache).
        portable: a report another person can open without the photos: previews inside
            (:func:`write_previews`) instead of links to the originals, and no absolute local
            path in the page (:func:`without_local_paths`).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: arrays whose lengths differ from ``paths``, or no clustering.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    image_dir, paths, clusterings = Path(content.image_dir), content.paths, content.clusterings
    tags, title = content.tags, content.title
    n = len(paths)
    coords = np.asarray(content.coords)
    if coords.shape[0] != n or any(len(c.labels) != n or len(c.distances) != n for c in clusterings):
        raise ValueError(f"report: {n} paths but coordinates or labels of another length")
    if not clusterings:
        raise ValueError("report: at least one clustering is needed")
    if tags is not None and len(tags) != n:
        raise ValueError(f"report: {n} paths but {len(tags)} tag lists")
    if content.times is not None and len(content.times) != n:
        raise ValueError(f"report: {n} paths but {len(content.times)} dates")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = [inside(p) and (content.openable is None or bool(content.openable[i])) for i, p in enumerate(paths)]
    atlas = write_atlases(out_dir, image_dir, paths, cache_dir, openable=ok)
    curves = content.sweep if content.sweep is None or isinstance(content.sweep, ReportCurves) else sweep_curves(content.sweep)
    pictures = []
    for picture in (curves.pictures if curves else []):
        if Path(picture).is_file():
            with atomic_path(out_dir / Path(picture).name) as tmp:
                shutil.copyfile(picture, tmp)
            pictures.append(Path(picture).name)
    run = content.run or ReportRun()
    if portable:
        shown = [i for i in range(n) if ok[i]]  # rows outside the photos get no preview either
        previews = dict(zip(shown, write_previews(out_dir, image_dir, [paths[i] for i in shown])))
        hrefs = [url_path(previews[i]) if previews.get(i) else None for i in range(n)]
        image_base = ""
        roots = sorted({str(image_dir), os.path.abspath(image_dir), os.path.realpath(image_dir)}, key=len, reverse=True)

        def local(text: str) -> str:  # failure reasons quote the photo's full path: keep the relative part
            for root in roots:
                text = text.replace(root + os.sep, "").replace(root, "…")
            return text

        run = ReportRun(run.counts, [(p, local(r)) for p, r in run.failures], without_local_paths(run.config),
                        run.timings, without_local_paths(run.evaluation), run.finished)
    else:
        hrefs = [url_path(p) if o else None for p, o in zip(paths, ok)]
        image_base = url_path(os.path.relpath(os.path.abspath(image_dir), os.path.abspath(out_dir)).replace(os.sep, "/")) + "/"
    data = {
        "title": display_text(title), "n": n, **atlas, "portable": portable,
        "imageBase": image_base,
        "paths": [display_text(p) for p in paths],
        "hrefs": hrefs,
        "xy": _b64(_unit_square(coords) if n else np.zeros((0, 2)), "<f4"),
        "clusterings": [_clustering_doc(c) for c in clusterings],
        "sweep": _curves_doc(curves),
        "tags": [[display_text(w) for w in t[:MAX_TAGS]] for t in tags] if tags is not None else None,
        "neighbours": None,
        # Days since 1970 as float32 (a minute's precision): a quarter of the bytes of seconds as text.
        "days": None if content.times is None else _b64(np.asarray(content.times, np.float64) / 86400, "<f4"),
        "clusteringNote": content.clustering_note, "resultGroup": RESULT_GROUP, "unclustered": UNCLUSTERED,
    }
    if content.neighbours is not None and n:
        index, sim = content.neighbours
        data["neighbours"] = {"m": int(index.shape[1]), "index": _b64(index, "<i4"), "sim": _b64(sim, "<f4")}
    atomic_write_text(out_dir / "data.js", f"window.IMGCLUST_REPORT = {_script_json(data)};\n")
    # No clusters to edit unless the workflow writes them (pipeline.report, report_edits.py).
    atomic_write_text(out_dir / "collection.js", "window.IMGCLUST_COLLECTION = null;\n")
    if not (out_dir / "duplicates_data.js").is_file():  # `imgclust duplicates` writes the real one
        atomic_write_text(out_dir / "duplicates_data.js", "window.IMGCLUST_DUPLICATES = null;\n")
    assets = resources.files("image_clustering") / "report_assets"
    for name in ASSETS:
        with resources.as_file(assets / name) as source, atomic_path(out_dir / name) as tmp:
            shutil.copyfile(source, tmp)
    env = Environment(loader=PackageLoader("image_clustering", "report_assets"), autoescape=select_autoescape(["html"]))
    timings = {**run.timings, "report": round(time.perf_counter() - started, 2)}
    html = env.get_template("index.html").render(
        title=display_text(title), n=n, counts=run.counts,
        failures=[(display_text(p), display_text(r)) for p, r in run.failures],
        config=json.dumps(run.config, indent=1, ensure_ascii=False, default=str) if run.config else None,
        timings=timings, finished=run.finished, evaluation=run.evaluation, pictures=pictures, version=_cache_buster(out_dir))
    atomic_write_text(out_dir / "index.html", html)
    return out_dir / "index.html"


def _cache_buster(out_dir: Path) -> str:
    """Changes with data.js, so a browser reloading the page never mixes old and new data."""
    return hashlib.sha1((out_dir / "data.js").read_bytes()).hexdigest()[:10]




# ---------------------------------------------------------------- from results to what the page shows
# Pure functions over values the workflow hands in (it reads the files; these never do).


def report_sample(n: int, seed: int) -> np.ndarray | None:
    """Rows shown when a collection has more than :data:`REPORT_SAMPLE` photos (a seeded sample,
    ascending), else None: the page was measured usable up to 10^5 points, and every photo
    costs a thumbnail and a neighbour search."""
    if n <= REPORT_SAMPLE:
        return None
    logger.warning(f"report: {n:,} photos; it shows a seeded sample of {REPORT_SAMPLE:,} of them "
                   "(labels and links hold every photo)")
    return sample_index(n, REPORT_SAMPLE, seed)


RESULT_GROUP = "The result: what imgclust cluster wrote (label files, link folders)"


def collection_clusterings(points: np.ndarray, paths: list[str], saved: dict | None, how: str, sweep,
                           shown: np.ndarray | None, space: str = "clustering space") -> tuple[list[ReportClustering], str]:
    """The groupings of the collection report: the result of ``imgclust cluster`` (``saved``:
    path → cluster, None when it is missing or stale; ``how`` names its method) first, then
    k-means at every k of ``sweep`` (its per-k ``labels``; None: none) in ``space`` (words, e.g.
    "2-D UMAP embedding"), restricted to the rows ``shown`` (None: all). ``points`` (N shown, d)
    are the clustering-space points that order each cluster's members by distance to its centre.

    Returns:
        (the clusterings, a note on what the two groups are, for the page).
    """
    from .clustering import by_size

    clusterings, notes = [], []
    if saved is not None:
        result = by_size(points, np.array([saved[p] for p in paths]))
        clusterings.append(ReportClustering(f"{how}, k = {result.k} (imgclust cluster)", result.labels,
                                            result.distances, current=True, group=RESULT_GROUP))
        notes.append(f"The result is the clustering the label files and link folders hold ({how}, k = {result.k}).")
    else:
        notes.append("There is no result of imgclust cluster for these photos yet.")
    if sweep is not None:
        group = f"For comparing k: k-means in the {space} (find-k's sweep)"
        per_k = np.asarray(sweep.labels if shown is None else sweep.labels[:, shown])
        for k, labels in zip(sweep.ks, per_k):
            result = by_size(points, labels)
            clusterings.append(ReportClustering(f"k-means, k = {int(k)}", result.labels, result.distances, group=group))
        if not any(c.current for c in clusterings):  # no clustering yet: open at the suggested k
            clusterings[int(np.searchsorted(sweep.ks, sweep.suggested_k))].current = True
        notes.append(f"The k-means partitions are find-k's sweep in the {space}, one per k: they show how the "
                     "photos regroup as k changes and are written nowhere; a click on a curve shows one of them, "
                     "not the result, even at the same k.")
    return clusterings, " ".join(notes)


def run_section(n_all: int, n_shown: int | None, failures: list, run_log: dict, config: dict | None,
                evaluation: dict | None) -> ReportRun:
    """The "Run" tab of the collection report: ``n_all`` photos in the feature store (``n_shown``
    of them in a sample, or None), the unreadable files (path, reason), the run log (step →
    ``{"seconds", ...counts}``), the config as a dict and the evaluation scores."""
    counts = {"images in the feature store": n_all, "failed (unreadable)": len(failures)}
    if n_shown is not None:
        counts["shown in this report (seeded sample)"] = n_shown
    extract = run_log.get("extract", {})
    for name in ("computed", "reused", "removed"):
        if name in extract:
            counts[f"{name} (last extract)"] = extract[name]
    steps = {step: doc for step, doc in run_log.items() if isinstance(doc, dict) and "seconds" in doc}
    return ReportRun(counts, failures, config, {step: doc["seconds"] for step, doc in steps.items()}, evaluation,
                     {step: doc.get("finished", "") for step, doc in steps.items()})


def tag_words(images: list[str], tags: list[dict], paths: list[str]) -> list[list[str]]:
    """Per path of ``paths`` its label words, most probable first, from a label table's
    ``images`` and their ``tags`` (word → score); photos the table lacks get none."""
    words = {image: [w for w, _ in sorted(t.items(), key=lambda item: -item[1])] for image, t in zip(images, tags)}
    return [words.get(p, []) for p in paths]


def config_doc(config) -> dict:
    """A config dataclass as nested JSON-able dicts (paths and other objects as text)."""
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(config), default=lambda v: display_text(str(v))))


def label_content(table, chosen: int, k_max: int, perplexity: float, seed: int,
                  image_dir: Path, pictures: list[Path], run: ReportRun, title: str) -> ReportContent:
    """What the report of ``imgclust cluster-labels`` shows: the photos placed by a t-SNE of their
    Jaccard distances (1 − shared labels / all labels), the Ward clusters at k = ``chosen`` and at
    every k of the separation curve (k = 2..``k_max``), the curve with its L-method errors and knee,
    ``pictures`` (the label dendrogram and curve PNGs), and neighbours by Jaccard similarity.

    Args:
        table: the label table (:class:`~image_clustering.tags.TagTable`, N photos).
    """
    from sklearn.manifold import TSNE

    from .clustering import l_method_errors
    from .tags import choose_k, cluster_tags_at_k, jaccard_similarity, tag_matrix, ward_tree

    images = table.images
    n = len(images)
    x, _vocabulary = tag_matrix(table)
    sim = jaccard_similarity(x)
    tree = ward_tree(sim)
    choice = choose_k(sim, tree, 2, k_max)
    clusterings = []
    for k in sorted({*map(int, choice.ks), int(chosen)}):
        result = cluster_tags_at_k(sim, tree, k)
        clusterings.append(ReportClustering(f"Ward on label words, k = {k}" + (" (cluster-labels)" if k == chosen else ""),
                                            result.labels, result.distances, current=k == chosen))
    coords = TSNE(2, metric="precomputed", init="random", perplexity=min(perplexity, (n - 1) / 3),
                  random_state=seed).fit_transform(np.clip(1.0 - sim, 0.0, None))
    at, errors = l_method_errors(choice.ks, choice.separation)
    curves = ReportCurves(choice.ks, {"separation (within − between mean similarity)": (choice.ks, choice.separation),
                                      "L-method error (two-line fit RMSE)": (at, errors)},
                          {"L-method knee": choice.knee},
                          f"L-method knee of the separation curve: k = {choice.knee}; cluster-labels used k = {chosen}.",
                          list(pictures))
    m_nb = min(12, n - 1)
    off_self = sim - 2 * np.eye(n)  # never one's own neighbour
    index = np.argsort(-off_self, axis=1, kind="stable")[:, :m_nb].astype(np.int32)
    neighbours = (index, np.take_along_axis(sim, index, axis=1).astype(np.float32))
    words = tag_words(images, table.tags, images)
    return ReportContent(image_dir, images, coords, clusterings, curves, neighbours, words, run, title)
