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
from .embedding import FeatureRows, sample_index

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
    """

    name: str
    labels: np.ndarray
    distances: np.ndarray
    current: bool = False

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
    """

    counts: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    config: dict | None = None
    timings: dict = field(default_factory=dict)
    evaluation: dict | None = None


def display_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate-escaped bytes of a non-UTF-8 file name become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def url_path(text: str) -> str:
    """Percent-encoded URL path of a relative file path (its bytes as the file system has them)."""
    return quote(os.fsencode(text), safe="/")


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unit_square(coords: np.ndarray) -> np.ndarray:
    """The first two embedding axes scaled into [0, 1]², aspect kept, centred."""
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    if xy.shape[1] < 2:
        xy = np.column_stack([xy[:, 0] if xy.shape[1] else np.zeros(len(xy)), np.zeros(len(xy))])
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max()) or 1.0
    return ((xy - low) / span + (1 - (high - low) / span) / 2).astype(np.float32)


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

    def get(self, image_dir: Path, paths: list[str], stamps: list[tuple[int, int]], workers: int = 2) -> np.ndarray:
        """Thumbnails of ``paths`` (uint8 (N, cell, cell, 3)); decodes only those whose (path, size,
        mtime) the cache lacks, then rewrites the cache to hold exactly these photos."""
        keys = [(p, s, m) for p, (s, m) in zip(paths, stamps)]
        rows = [self.rows.get(k) for k in keys]
        missing = [i for i, r in enumerate(rows) if r is None]
        out = np.empty((len(paths), self.cell, self.cell, 3), np.uint8)
        have = [i for i, r in enumerate(rows) if r is not None]
        if have:
            out[have] = self.array[[rows[i] for i in have]]
        if missing:  # Pillow decodes outside the GIL: threads help
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for i, tile in zip(missing, pool.map(lambda i: _thumbnail(image_dir / paths[i], self.cell), missing)):
                    out[i] = tile
        if self.npy and (missing or len(self.rows) != len(keys) or rows != list(range(len(keys)))):
            with atomic_path(self.npy) as tmp:
                np.save(tmp, out)
            atomic_write_text(self.index, json.dumps({"rows": [list(k) for k in keys]}))
        return out


def write_atlases(out_dir: Path, image_dir: Path, paths: list[str], cache_dir: Path | None,
                  cell: int | None = None) -> dict:
    """Pack the thumbnails of ``paths`` (in that order) into JPEG atlases in ``out_dir``, each
    wrapped in a script ``atlas-<hash>.js`` calling ``imgclustAtlas(index, base64 JPEG)``.

    Atlas ``a`` holds photos ``a·P .. a·P + P − 1`` (P = per_atlas), row-major in a grid of
    ``columns`` cells of ``cell`` pixels. An atlas whose photos (path, size, mtime) did not change
    is not written again; atlases no longer used are deleted.

    Returns:
        ``{"cell", "columns", "per_atlas", "atlases": [script file names]}``.
    """
    n = len(paths)
    cell = cell or cell_size(n)
    columns = ATLAS_SIDE // cell
    per_atlas = columns * columns
    stamps = [_stamp(image_dir, p) for p in paths]
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
        tiles = ThumbnailCache(cache_dir, cell).get(image_dir, paths, stamps)
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
    return {"name": c.name, "k": c.k, "current": c.current,
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


def build_report(out_dir: Path, image_dir: Path, paths: list[str], coords: np.ndarray,
                 clusterings: list[ReportClustering], sweep=None, neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                 tags: list[list[str]] | None = None, run: ReportRun | None = None, title: str = "imgclust",
                 cache_dir: Path | None = None) -> Path:
    """Write the interactive report into ``out_dir`` (created): ``index.html``, ``report.js``,
    ``report.css``, ``data.js`` and ``atlas-*.jpg``.

    Args:
        out_dir: the report folder, e.g. ``<plot_dir>/<object_name>/report``.
        image_dir: folder the relative ``paths`` start from; links to the originals are relative
            from ``out_dir`` to it.
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
        cache_dir: where per-photo thumbnails are cached between runs (None: no cache).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: arrays whose lengths differ from ``paths``, or no clustering.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    n = len(paths)
    coords = np.asarray(coords)
    if coords.shape[0] != n or any(len(c.labels) != n or len(c.distances) != n for c in clusterings):
        raise ValueError(f"report: {n} paths but coordinates or labels of another length")
    if not clusterings:
        raise ValueError("report: at least one clustering is needed")
    if tags is not None and len(tags) != n:
        raise ValueError(f"report: {n} paths but {len(tags)} tag lists")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atlas = write_atlases(out_dir, Path(image_dir), paths, cache_dir)
    curves = sweep if sweep is None or isinstance(sweep, ReportCurves) else sweep_curves(sweep)
    pictures = []
    for picture in (curves.pictures if curves else []):
        if Path(picture).is_file():
            with atomic_path(out_dir / Path(picture).name) as tmp:
                shutil.copyfile(picture, tmp)
            pictures.append(Path(picture).name)
    run = run or ReportRun()
    base = os.path.relpath(os.path.abspath(image_dir), os.path.abspath(out_dir))
    data = {
        "title": display_text(title), "n": n, **atlas,
        "imageBase": url_path(base.replace(os.sep, "/")) + "/",
        "paths": [display_text(p) for p in paths],
        "hrefs": [url_path(p) for p in paths],
        "xy": _b64(_unit_square(coords) if n else np.zeros((0, 2)), "<f4"),
        "clusterings": [_clustering_doc(c) for c in clusterings],
        "sweep": _curves_doc(curves),
        "tags": [[display_text(w) for w in t[:MAX_TAGS]] for t in tags] if tags is not None else None,
        "neighbours": None,
    }
    if neighbours is not None and n:
        index, sim = neighbours
        data["neighbours"] = {"m": int(index.shape[1]), "index": _b64(index, "<i4"), "sim": _b64(sim, "<f4")}
    atomic_write_text(out_dir / "data.js", f"window.IMGCLUST_REPORT = {_script_json(data)};\n")
    # No clusters to edit unless the workflow writes them (pipeline.report, report_edits.py).
    atomic_write_text(out_dir / "collection.js", "window.IMGCLUST_COLLECTION = null;\n")
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
        timings=timings, evaluation=run.evaluation, pictures=pictures, version=_cache_buster(out_dir))
    atomic_write_text(out_dir / "index.html", html)
    return out_dir / "index.html"


def _cache_buster(out_dir: Path) -> str:
    """Changes with data.js, so a browser reloading the page never mixes old and new data."""
    return hashlib.sha1((out_dir / "data.js").read_bytes()).hexdigest()[:10]


# ---------------------------------------------------------------- the workflow (Config → report)

RUN_LOG = "run_log.json"


def record_step(feature_dir: Path, step: str, seconds: float, **info) -> None:
    """Remember how long a pipeline step took (and e.g. the extraction counts) for the report's
    "run" section, in ``<feature_dir>/run_log.json``."""
    path = feature_dir / RUN_LOG
    try:
        log = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        log = {}
    log[step] = {"seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    atomic_write_text(path, json.dumps(log, indent=1))


def _tags(config, paths: list[str]) -> list[list[str]] | None:
    from .errors import ImgclustError
    from .pipeline import _tag_table

    try:
        table = _tag_table(config, None)
    except ImgclustError as exc:  # no tags yet, or a damaged table: the report goes without words
        logger.info(f"report: tag words left out ({exc})")
        return None
    words = {image: [w for w, _ in sorted(tags.items(), key=lambda item: -item[1])]
             for image, tags in zip(table.images, table.tags)}
    return [words.get(p, []) for p in paths]


def _config_doc(config) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(config), default=lambda v: display_text(str(v))))


def _report_sample(n: int, seed: int) -> np.ndarray | None:
    """Rows shown when a collection has more than :data:`REPORT_SAMPLE` photos (a seeded sample,
    ascending), else None: the page was measured usable up to 10^5 points, and every photo
    costs a thumbnail and a neighbour search."""
    if n <= REPORT_SAMPLE:
        return None
    logger.warning(f"report: {n:,} photos; it shows a seeded sample of {REPORT_SAMPLE:,} of them "
                   "(labels and links hold every photo)")
    return sample_index(n, REPORT_SAMPLE, seed)


def collection_report(config, progress: bool = False) -> Path:
    """``imgclust report``: the report of the collection as the last ``cluster`` left it, in
    ``<plot_dir>/<object_name>/report/index.html``.

    Uses the cached embedding, the cached k sweep with its per-k labels (not fitted here: after
    ``cluster`` with a fixed k on many photos that would take minutes; run ``find-k`` for the k
    control), the label CSV of ``cluster`` (its clustering is the one shown first), the neighbours
    (computed once per feature store), the ``imgclust tag`` labels, ``failures.csv``, the run log
    and the evaluation scores when they exist.

    Raises:
        ImgclustError: no feature vectors yet, or neither a clustering nor a k sweep.
    """
    from .atomic import exclusive_lock
    from .clustering import by_size
    from .errors import ImgclustError
    from .neighbours import cached_neighbours
    from .outputs import read_labels
    from .pipeline import algorithm_name, current_sweep

    started = time.perf_counter()
    m = config.model
    with exclusive_lock(config.feature_dir, "report"):
        paths, vectors, key, embedding, points, sweep = current_sweep(config, progress, fit=False)
        every = set(paths)
        shown = _report_sample(len(paths), m.seed)
        if shown is not None:
            paths, embedding, points = [paths[i] for i in shown], embedding[shown], points[shown]
            vectors = vectors.take(shown) if isinstance(vectors, FeatureRows) else vectors[shown]
            key += f"-sample{len(shown)}-{m.seed}"
        clusterings = []
        label_csv = config.layout.labels_csv()
        if label_csv.is_file():
            saved = read_labels(label_csv)
            if set(saved) == every:
                result = by_size(points, np.array([saved[p] for p in paths]))
                how = algorithm_name(m)
                clusterings.append(ReportClustering(f"{how}, k = {result.k} (imgclust cluster)", result.labels,
                                                    result.distances, current=True))
            else:
                logger.info(f"report: {label_csv} is older than the feature store; run `imgclust cluster` to show it")
        if sweep is not None:
            per_k = np.asarray(sweep.labels if shown is None else sweep.labels[:, shown])
            for k, labels in zip(sweep.ks, per_k):
                result = by_size(points, labels)
                clusterings.append(ReportClustering(f"k-means, k = {int(k)}", result.labels, result.distances))
        else:
            logger.info("report: no k sweep of this clustering space yet; run `imgclust find-k` for the k control")
        if not clusterings:
            raise ImgclustError(f"{config.feature_dir}: nothing to show yet; run `imgclust find-k` or `imgclust cluster`")
        if not any(c.current for c in clusterings):  # no clustering yet: open at the suggested k
            clusterings[int(np.searchsorted(sweep.ks, sweep.suggested_k))].current = True
        neighbours = cached_neighbours(config.feature_dir, key, vectors)
        run_log = {}
        if (config.feature_dir / RUN_LOG).is_file():
            try:
                run_log = json.loads((config.feature_dir / RUN_LOG).read_text())
            except ValueError:
                pass
        from .features import read_failures

        failures = [(path, row.get("reason", "")) for path, row in read_failures(config.layout.failures_csv).items()]
        counts = {"images in the feature store": len(every), "failed (unreadable)": len(failures)}
        if shown is not None:
            counts["shown in this report (seeded sample)"] = len(shown)
        extract = run_log.get("extract", {})
        for name in ("computed", "reused", "removed"):
            if name in extract:
                counts[f"{name} (last extract)"] = extract[name]
        evaluation_file = config.layout.evaluation_json()
        evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else None
        run = ReportRun(counts, failures, _config_doc(config),
                        {step: doc["seconds"] for step, doc in run_log.items() if "seconds" in doc}, evaluation)
        index = build_report(config.plot_dir / "report", config.paths.image_dir, paths, embedding, clusterings,
                             sweep, neighbours, _tags(config, paths), run, m.object_name,
                             cache_dir=config.feature_dir)
    logger.info(f"report: {len(paths)} photos in {time.perf_counter() - started:.1f} s")
    return index


def label_report(config, label_file: Path | None = None) -> Path:
    """The report of ``imgclust cluster-labels``, in ``<plot_dir>/<object_name>/report_labels/``:
    the photos placed by a t-SNE of their Jaccard distances (1 − shared labels / all labels), the
    Ward clusters of the last ``cluster-labels`` run (and every k of the separation curve), the
    separation curve with its L-method errors and knee, the label dendrogram, and neighbours by
    Jaccard similarity.

    Raises:
        ImgclustError: no label table, or no ``cluster-labels`` result yet.
    """
    from sklearn.manifold import TSNE

    from .clustering import l_method_errors
    from .errors import ImgclustError
    from .pipeline import _tag_table
    from .tags import choose_k, cluster_tags_at_k, jaccard_similarity, tag_matrix, ward_tree

    started = time.perf_counter()
    m = config.model
    result_file = config.layout.labels_json(of_tags=True)
    if not result_file.is_file():
        raise ImgclustError(f"{result_file}: no label clustering yet; run `imgclust cluster-labels`")
    chosen = json.loads(result_file.read_text())["k"]
    table = _tag_table(config, label_file)
    n = len(table.images)
    x, vocabulary = tag_matrix(table)
    sim = jaccard_similarity(x)
    tree = ward_tree(sim)
    choice = choose_k(sim, tree, 2, m.label_k_max)
    clusterings = []
    for k in sorted({*map(int, choice.ks), int(chosen)}):
        result = cluster_tags_at_k(sim, tree, k)
        clusterings.append(ReportClustering(f"Ward on label words, k = {k}" + (" (cluster-labels)" if k == chosen else ""),
                                            result.labels, result.distances, current=k == chosen))
    coords = TSNE(2, metric="precomputed", init="random", perplexity=min(m.perplexity, (n - 1) / 3),
                  random_state=m.seed).fit_transform(np.clip(1.0 - sim, 0.0, None))
    at, errors = l_method_errors(choice.ks, choice.separation)
    curves = ReportCurves(choice.ks, {"separation (within − between mean similarity)": (choice.ks, choice.separation),
                                      "L-method error (two-line fit RMSE)": (at, errors)},
                          {"L-method knee": choice.knee},
                          f"L-method knee of the separation curve: k = {choice.knee}; cluster-labels used k = {chosen}.",
                          [config.layout.plot("label_dendrogram.png"), config.layout.plot("label_k.png")])
    m_nb = min(12, n - 1)
    off_self = sim - 2 * np.eye(n)  # never one's own neighbour
    index = np.argsort(-off_self, axis=1, kind="stable")[:, :m_nb].astype(np.int32)
    neighbours = (index, np.take_along_axis(sim, index, axis=1).astype(np.float32))
    tags = [[w for w, _ in sorted(words.items(), key=lambda item: -item[1])] for words in table.tags]
    evaluation_file = config.layout.evaluation_json(of_tags=True)
    run = ReportRun({"images in the label table": n, "distinct labels": len(vocabulary)}, [], _config_doc(config), {},
                    json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else None)
    index_html = build_report(config.plot_dir / "report_labels", config.paths.image_dir, table.images, coords,
                              clusterings, curves, neighbours, tags, run, f"{m.object_name}: label words",
                              cache_dir=config.feature_dir)
    logger.info(f"label report: {n} photos in {time.perf_counter() - started:.1f} s")
    return index_html
