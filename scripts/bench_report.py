"""Benchmark of the interactive report (docs/performance.md).

1. Build time and size of the report for synthetic collections (distinct generated JPEG photos,
   random 2-D coordinates, clusterings for k = 1..K from k-means on them): a first build (every
   thumbnail decoded) and a re-run with no new photos.
2. In headless Chromium (/usr/bin/chromium, software WebGL): page load time until the page is
   usable (``ready_s``) and until every atlas is a texture (``thumbnails_s``); the intervals
   between the frames the page shows while the mouse drags across the map (what a person sees
   when panning), zoomed out (dots) and zoomed in (thumbnails); and the time of one full redraw
   of every point. N points (default 100,000; one repeated thumbnail, served through the
   thumbnail cache so nothing is decoded).
3. In the same pages, correctness where pan and zoom move the last frame (above 20,000 points):
   pointer accuracy (how far a photo ends from where a 200 × 100 px drag should put it) and
   wheel stability (how far the photo under the pointer drifts after 10 wheel notches 60 ms
   apart in, then 10 out), in CSS pixels, after the view rests; and the time and elements that
   highlighting the largest cluster adds.

Each line ends with the 1-minute load average: on a shared machine, timings taken under load
are slower by about that factor over the core count.

    python scripts/bench_report.py --build 1000 10000 --browser 10000 100000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_clustering.clustering import KSweep, by_size  # noqa: E402
from image_clustering.report import ReportClustering, ReportRun, build_report, cell_size  # noqa: E402


def make_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n distinct 320×240 JPEGs (coloured shapes on a gradient) in sub-folders of 1,000."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 320)[None, :, None]
    paths = []
    for i in range(n):
        rel = f"f{i // 1000:03d}/photo_{i:06d}.jpg"
        target = folder / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            im = Image.fromarray(np.broadcast_to(a * (1 - ramp) + b * ramp, (240, 320, 3)).astype(np.uint8))
            draw = ImageDraw.Draw(im)
            for _ in range(3):
                x, y = rng.integers(0, 280), rng.integers(0, 200)
                draw.ellipse([x, y, x + rng.integers(20, 120), y + rng.integers(20, 120)],
                             fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            im.save(target, "JPEG", quality=85)
        paths.append(rel)
    return paths


def linked_photos(folder: Path, n: int, sources: list[Path]) -> list[str]:
    """n symbolic links cycling through the real photos under ``sources`` (their thumbnails
    compress like real photos do, unlike generated ones)."""
    files = sorted(p for s in sources for p in s.rglob("*") if p.is_file())
    paths = []
    for i in range(n):
        rel = f"r{i // 1000:03d}/photo_{i:06d}{files[i % len(files)].suffix.lower()}"
        if not (folder / rel).exists():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(files[i % len(files)], folder / rel)
        paths.append(rel)
    return paths


def synthetic_clusterings(n: int, k_max: int, seed: int = 0):
    """Coordinates in 30 blobs, and by_size clusterings for k = 1..k_max (nearest of k blob
    centres), as the sweep would give them, plus a KSweep for the curves."""
    rng = np.random.default_rng(seed)
    blobs = max(30, k_max)
    centres = rng.normal(size=(blobs, 2)) * 10
    xy = (centres[rng.integers(0, blobs, n)] + rng.normal(size=(n, 2))).astype(np.float32)
    clusterings, inertia = [], []
    best, nearest = np.full(n, np.inf), np.zeros(n, int)
    for k in range(1, k_max + 1):  # nearest of the first k centres, updated one centre at a time
        d = ((xy - centres[k - 1]) ** 2).sum(1)
        closer = d < best
        best[closer], nearest[closer] = d[closer], k - 1
        result = by_size(xy, nearest)
        clusterings.append(ReportClustering(f"k-means, k = {k}", result.labels, result.distances, k == min(10, k_max)))
        inertia.append(float(np.nansum(result.distances ** 2)))
    ks = np.arange(1, k_max + 1)
    sweep = KSweep(ks, np.array(inertia), np.r_[np.nan, np.linspace(0.3, 0.5, k_max - 1)],
                   np.r_[np.nan, np.linspace(1.0, 0.7, k_max - 1)],
                   {"silhouette": k_max, "davies_bouldin": k_max, "elbow": 5, "lmethod": 6})
    return xy, clusterings, sweep


def neighbours(n: int, m: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, (n, m)).astype(np.int32), np.sort(rng.random((n, m)).astype(np.float32))[:, ::-1]


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def bench_build(work: Path, n: int, k_max: int, sources: list[Path]) -> dict:
    photos = work / ("real" if sources else "photos")
    t = time.perf_counter()
    paths = linked_photos(photos, n, sources) if sources else make_photos(photos, n)
    made = time.perf_counter() - t
    xy, clusterings, sweep = synthetic_clusterings(n, k_max)
    out, cache = work / f"report{n}{'real' if sources else ''}", work / f"cache{n}{'real' if sources else ''}"
    for old in (out, cache):  # the first build starts cold
        shutil.rmtree(old, ignore_errors=True)
    args = dict(sweep=sweep, neighbours=neighbours(n), tags=[["label one", "label two"]] * n,
                run=ReportRun({"images": n}), title=f"bench {n}", cache_dir=cache)
    t = time.perf_counter()
    build_report(out, photos, paths, xy, clusterings, **args)
    first = time.perf_counter() - t
    t = time.perf_counter()
    build_report(out, photos, paths, xy, clusterings, **args)
    again = time.perf_counter() - t
    return {"photos": n, "kind": "real (linked)" if sources else "generated", "k_values": k_max,
            "make_photos_s": round(made, 1), "first_build_s": round(first, 2),
            "rerun_s": round(again, 2), "report_mb": round(folder_size(out) / 1e6, 1),
            "atlases": len(list(out.glob("atlas-*"))), "thumb_cache_mb": round(folder_size(cache) / 1e6, 1)}


def repeated_thumbnail_report(work: Path, n: int, k_max: int) -> Path:
    """A report of n points sharing one photo (n symbolic links), thumbnails pre-seeded in the
    cache so the build decodes nothing."""
    photos = work / f"same{n}"
    photos.mkdir(exist_ok=True)
    make_photos(work / "one", 1)
    source = work / "one" / "f000" / "photo_000000.jpg"
    paths = [f"p{i:06d}.jpg" for i in range(n)]
    for p in paths:
        if not (photos / p).exists():
            os.symlink(source, photos / p)
    st = source.stat()
    cell = cell_size(n)
    cache = work / f"cache_same{n}"
    cache.mkdir(exist_ok=True)
    from image_clustering.report import _thumbnail

    tile = _thumbnail(source, cell)
    np.save(cache / f"thumbs{cell}.npy", np.broadcast_to(tile, (n, *tile.shape)))
    (cache / f"thumbs{cell}.json").write_text(json.dumps({"rows": [[p, st.st_size, st.st_mtime_ns] for p in paths]}))
    xy, clusterings, sweep = synthetic_clusterings(n, k_max)
    t = time.perf_counter()
    index = build_report(work / f"report_same{n}", photos, paths, xy, clusterings, sweep=sweep,
                         neighbours=neighbours(n), title=f"bench {n}", cache_dir=cache)
    print(f"  built the {n}-point report in {time.perf_counter() - t:.1f} s "
          f"({folder_size(index.parent) / 1e6:.1f} MB)", flush=True)
    return index


def bench_browser(index: Path, frames: int) -> dict:
    from playwright.sync_api import sync_playwright

    from image_clustering.report_browser import launch

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 850}, bypass_csp=True)
        t = time.perf_counter()
        page.goto(index.as_uri(), wait_until="commit")
        page.wait_for_function("document.body && document.body.dataset.ready === '1'", timeout=120_000, polling=20)
        ready = time.perf_counter() - t  # map (dots), galleries and controls usable
        page.wait_for_function("window.imgclustReport.atlasesLoaded() === window.imgclustReport.atlasCount",
                               timeout=120_000, polling=20)
        load = time.perf_counter() - t  # every thumbnail atlas a texture
        drag = {}
        for zoom, label in ((1, "overview"), (12, "zoomed")):  # zoom 12: thumbnails, not dots
            page.evaluate(f"window.imgclustReport.setView(0.5, 0.5, {zoom})")
            drag[label] = drag_frames(page, frames)
        zoomed_out = page.evaluate(f"window.imgclustReport.panFrames({frames})")
        page.evaluate("window.imgclustReport.setView(0.5, 0.5, 12)")
        zoomed_in = page.evaluate(f"window.imgclustReport.panFrames({frames})")
        accuracy = pointer_accuracy(page)
        highlight = highlight_cost(page)
        browser.close()
    frames = {f"drag_{k}_{stat}": v for k, d in drag.items() for stat, v in d.items()}
    return {"ready_s": round(ready, 2), "thumbnails_s": round(load, 2), **frames,
            "redraw_ms_overview": round(zoomed_out, 1), "redraw_ms_zoomed": round(zoomed_in, 1), **accuracy, **highlight}


REST = "document.getElementById('map').style.transform === ''"  # the view rested and was redrawn


def pointer_accuracy(page, target: str = "p000007.jpg") -> dict:
    """Where a photo ends after a 200 × 100 px drag (error from pointer motion, px), and how far
    the photo under the pointer drifts after 10 wheel notches 60 ms apart (in, then out; px),
    with the zoom reached: what a person sees, not how fast."""
    where = f"window.imgclustReport.screenPosition({json.dumps(target)})"
    page.evaluate("window.imgclustReport.setView(0.5, 0.5, 1)")
    x, y = page.evaluate(where)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 200, y + 100, steps=8)
    page.mouse.up()
    page.wait_for_function(REST, timeout=60_000)
    x2, y2 = page.evaluate(where)
    drag_error = float(np.hypot(x2 - x - 200, y2 - y - 100))
    result = {"drag_error_px": round(drag_error, 1)}
    other = f"window.imgclustReport.screenPosition({json.dumps(target.replace('7', '8'))})"
    for direction, delta in (("in", -100), ("out", 100)):
        px, py = round(x2), round(y2)  # the pointer sits on whole pixels
        before, spread = np.array(page.evaluate(where)), np.subtract(page.evaluate(other), page.evaluate(where))
        page.mouse.move(px, py)
        for _ in range(10):
            page.mouse.wheel(0, delta)
            page.wait_for_timeout(60)
        page.wait_for_function(REST, timeout=60_000)
        after = np.array(page.evaluate(where))
        zoom = float(np.linalg.norm(np.subtract(page.evaluate(other), after)) / np.linalg.norm(spread))
        expected = np.array([px, py]) + zoom * (before - [px, py])  # the world point under the pointer stays
        result[f"wheel_{direction}_drift_px"] = round(float(np.linalg.norm(after - expected)), 1)
        result[f"wheel_{direction}_zoom"] = round(zoom, 2)
        x2, y2 = after
    return result


def highlight_cost(page) -> dict:
    """Milliseconds of script and elements added when the largest cluster is highlighted."""
    cost = page.evaluate("""() => { const before = document.getElementsByTagName('*').length, t = performance.now();
        document.querySelector('.cluster-head').click();
        return [performance.now() - t, document.getElementsByTagName('*').length - before]; }""")
    return {"highlight_ms": round(cost[0], 1), "highlight_new_elements": cost[1]}


def drag_frames(page, moves: int) -> dict:
    """Frame intervals (ms) the page shows while the mouse drags across the map in ``moves`` steps,
    the way a person pans: median and 95th percentile."""
    box = page.locator("#map").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.evaluate("window.imgclustReport.startFrameLog()")
    for i in range(moves):
        page.mouse.move(x + 200 * np.sin(i / 8), y + 120 * np.cos(i / 8) - 120)
    page.mouse.up()
    stamps = np.array(page.evaluate("window.imgclustReport.stopFrameLog()"))
    gaps = np.diff(stamps)
    return {"median_ms": round(float(np.median(gaps)), 1), "p95_ms": round(float(np.percentile(gaps, 95)), 1),
            "frames": len(gaps)}


def bench_neighbours(n: int, dim: int = 3328, seed: int = 0) -> dict:
    """Time of the 12 nearest neighbours of n random unit vectors (the default extractor's 2048 +
    1280 dimensions): exact up to 20,000, pynndescent above."""
    from image_clustering.neighbours import nearest_neighbours

    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    t = time.perf_counter()
    nearest_neighbours(x, 12)
    return {"neighbours_of": n, "seconds": round(time.perf_counter() - t, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=int, nargs="*", default=[1000, 10000], help="collection sizes to build")
    parser.add_argument("--browser", type=int, nargs="*", default=[100000], help="point counts to open in Chromium")
    parser.add_argument("--neighbours", type=int, nargs="*", default=[], help="collection sizes to time neighbours for")
    parser.add_argument("--k-max", type=int, default=100, help="clusterings per report (k = 1..K)")
    parser.add_argument("--frames", type=int, default=60, help="frames drawn per pan measurement")
    parser.add_argument("--photos", type=Path, nargs="*", default=[],
                        help="folders of real photos to cycle through (symbolic links) instead of generated ones")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, kept for re-runs)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "imgclust_bench_report"
    work.mkdir(parents=True, exist_ok=True)
    for n in args.build:
        print(json.dumps({**bench_build(work, n, args.k_max, args.photos), "load_avg": os.getloadavg()[0]}), flush=True)
    for n in args.neighbours:
        print(json.dumps({**bench_neighbours(n), "load_avg": os.getloadavg()[0]}), flush=True)
    for n in args.browser:
        index = repeated_thumbnail_report(work, n, args.k_max)
        print(json.dumps({"points": n, **bench_browser(index, args.frames), "load_avg": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
