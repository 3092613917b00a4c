"""The interactive report: built from a real photo set (ukbench, 12 objects × 4 photos, plus a
hostile-named copy and an unreadable file) through the real pipeline with a random-weight
InceptionV3, then opened from disk in headless Chromium with the network cut off.

Run the browser tests alone with ``pytest -m browser``; they skip when Chromium or Playwright is
missing. ``IMGCLUST_SCREENSHOT=docs/report.png`` also saves the screenshot the README shows.
"""
import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_clustering import config_from_dict, pipeline
from image_clustering.features import extract_features
from image_clustering.report import _script_json, build_report, display_text, url_path
from tests.conftest import DATASETS, MODEL_DIR, needs_shared

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_DIR = "<script>alert(1)<"  # with the file below, the relative path is "<script>alert(1)</script>.jpg"
HOSTILE = f"{HOSTILE_DIR}/script>.jpg"
BROKEN = "<img src=x onerror=alert(2)>.jpg"
GROUPS = 12
N_PHOTOS = GROUPS * 4 + 2  # plus the hostile-named and the Unicode-named copies


@pytest.fixture(scope="module")
def collection(tmp_path_factory, random_extractor):
    """(config, report index.html): ukbench photos → extract → find-k → cluster → tag table → report."""
    source = needs_shared(DATASETS / "ukbench_groups14")
    root = tmp_path_factory.mktemp("report")
    photos = root / "photos"
    for group in sorted(source.iterdir())[:GROUPS]:
        shutil.copytree(group, photos / group.name)
    first = sorted((photos / "group000").iterdir())[0]
    (photos / HOSTILE_DIR).mkdir()
    shutil.copy(first, photos / HOSTILE)
    shutil.copy(first, photos / "group001" / "Ünïcødé 写真.jpg")
    (photos / BROKEN).write_bytes(b"not a photo")
    raw = {"paths": {"image_dir": str(photos), "model_dir": str(MODEL_DIR), "vector_dir": str(root / "vectors"),
                     "cluster_label_dir": str(root / "labels"), "plot_dir": str(root / "plots"),
                     "link_dir": str(root / "links")},
           "model": {"object_name": "ukb", "extractor": "inception_v3", "batch_size": 8, "k_max": 20}}
    (root / "config.json").write_text(json.dumps(raw))
    config = config_from_dict(raw, source=root / "config.json")
    extract_features(config, random_extractor, progress=False)
    pipeline.find_k(config, progress=False)
    pipeline.cluster(config, progress=False)
    paths = json.loads((config.paths.cluster_label_dir / "ukb.json").read_text())
    members = [p for c in paths["clusters"].values() for p in c]
    tags = config.label_file
    tags.write_text("path,label_1,label_2\n" + "".join(
        f'"{p}",{"<script>alert(3)</script>" if p == HOSTILE else "object " + p[5:8]},thing\n' for p in members),
        encoding="utf-8")
    return config, pipeline.report(config)


def label_doc(config):
    return json.loads((config.paths.cluster_label_dir / "ukb.json").read_text())


def test_report_files_and_fast_rerun(collection):
    config, index = collection
    folder = index.parent
    assert index == config.plot_dir / "report" / "index.html"
    data = (folder / "data.js").read_text()
    assert "<" not in data and "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e.jpg" in data  # JSON-escaped
    html = index.read_text()
    assert "&lt;img src=x onerror=alert(2)&gt;.jpg" in html and "<img src=x" not in html  # failure listed, escaped
    assert "http:" not in html + data + (folder / "report.js").read_text().replace("http://www.w3.org/2000/svg", "")
    atlases = sorted(folder.glob("atlas-*"))
    assert len(atlases) == 1 and atlases[0].read_text().startswith("imgclustAtlas(0,\"/9j/")  # a JPEG
    # The sweep's labels are kept per k beside find_k.json: no re-run for the k control.
    (labels_file,) = config.feature_dir.glob("find_k.*.labels.npy")
    labels = np.load(labels_file)
    assert labels.dtype == np.int16 and labels.shape == (20, N_PHOTOS)
    assert [len(np.unique(row)) for row in labels] == list(range(1, 21))
    before = {p: p.stat().st_mtime_ns for p in atlases}
    again = pipeline.report(config)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("atlas-*")} == before  # nothing re-encoded
    assert again == index


def test_similar_inside_and_outside_the_collection(collection, random_extractor, monkeypatch):
    config, _ = collection
    inside = pipeline.similar(config, config.paths.image_dir / "group003" / "ukbench00012.jpg", 3)
    assert len(inside) == 3 and all(p != "group003/ukbench00012.jpg" for p, _ in inside)
    assert inside[0][1] >= inside[1][1] >= inside[2][1] and -1 <= inside[2][1] <= 1
    from click.testing import CliRunner

    from image_clustering.cli import main

    printed = CliRunner().invoke(main, ["similar", str(config.paths.image_dir / "group003" / "ukbench00012.jpg"),
                                        "-n", "3", "--config", str(config.source), "-q"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines() == [f"{p}\t{s:.4f}" for p, s in inside]  # path, cosine similarity
    # From outside: the vector comes from the loaded network (here the random-weight one).
    monkeypatch.setattr(pipeline, "_network", lambda config, name: random_extractor[name])
    outside = config.paths.image_dir.parent / "copy.jpg"
    shutil.copy(config.paths.image_dir / "group003" / "ukbench00012.jpg", outside)
    found = pipeline.similar(config, outside, 3)
    assert found[0][0] == "group003/ukbench00012.jpg" and found[0][1] == pytest.approx(1.0, abs=1e-4)


def test_text_from_files_is_escaped_and_links_encode_bytes():
    assert "<" not in _script_json({"p": "</script><!--"}) and json.loads(_script_json({"p": "</script>"})) == {"p": "</script>"}
    odd = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name on a UTF-8 system: surrogate-escaped
    assert display_text(odd) == "caf\ufffd.jpg" and url_path(odd) == "caf%E9.jpg"


def test_non_utf8_file_name_does_not_crash(tmp_path):
    image_dir = tmp_path / "photos"
    image_dir.mkdir()
    names = [os.fsdecode(b"caf\xe9.jpg"), "b.jpg", "c.jpg"]
    for i, name in enumerate(names):
        Image.new("RGB", (40, 30), (80 * i, 20, 200)).save(image_dir / name, "JPEG")
    from image_clustering.report import ReportClustering

    labels = np.array([0, 0, 1])
    index = build_report(tmp_path / "report", image_dir, names, np.random.default_rng(0).normal(size=(3, 2)),
                         [ReportClustering("k = 2", labels, np.array([0.1, 0.2, 0.0]), True)], tags=[["x"]] * 3)
    data = (index.parent / "data.js").read_text()
    assert "caf%E9.jpg" in data and "caf\\ufffd.jpg" in data


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium; scripts/setup.sh does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extras)")
    with sync_api.sync_playwright() as p:
        from image_clustering.report_browser import launch

        browser = launch(p)
        yield browser
        browser.close()


def open_report(browser, index, csp=False):
    """A new page with the report opened from disk, every request recorded and the dialogs a script
    would open caught. The page's Content-Security-Policy forbids evaluating strings, which the
    test's own probes need: it is bypassed unless ``csp``, so escaping is tested on its own."""
    context = browser.new_context(viewport={"width": 1400, "height": 850}, bypass_csp=not csp)
    page = context.new_page()
    page.requests, page.dialogs = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    # Anything not on disk is refused, as with the network cable pulled.
    context.route(lambda url: not url.startswith(("file:", "data:", "blob:")), lambda route: route.abort())
    page.goto(index.as_uri())
    if not csp:
        page.wait_for_function("document.body.dataset.ready === '1' && "
                               "window.imgclustReport.atlasesLoaded() === window.imgclustReport.atlasCount")
        page.wait_for_timeout(100)
    return page


@pytest.fixture
def page(browser, collection):
    page = open_report(browser, collection[1])
    yield page
    page.context.close()



@pytest.mark.browser
def test_map_shows_every_photo_as_a_thumbnail(page, collection, tmp_path):
    config, _ = collection
    doc = label_doc(config)
    clustered = sum(doc["sizes"]) + len(doc["unclustered"])
    assert page.inner_text("#map-count") == f"{clustered} photos on the map"
    assert page.evaluate("window.imgclustReport.pointCount") == clustered == N_PHOTOS
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    box = page.locator("#map").bounding_box()
    pixels = np.asarray(Image.open(shot).convert("RGB"))[int(box["y"]):int(box["y"] + box["height"]),
                                                           int(box["x"]):int(box["x"] + box["width"])]
    background = np.all(np.abs(pixels.astype(int) - [20, 20, 23]) < 6, axis=2)
    assert background.mean() < 0.97 and pixels.std() > 20  # not blank
    # Thumbnails, not flat dots: many distinct colours (photo content) off the background.
    assert len(np.unique(pixels[~background].reshape(-1, 3) // 8, axis=0)) > 500
    assert page.locator(".cluster").count() == doc["k"] + bool(doc["unclustered"])
    if os.environ.get("IMGCLUST_SCREENSHOT"):  # the README's picture: the 12 objects, one photo hovered
        page.select_option("#k-select", label="k-means, k = 12")
        page.mouse.move(*page.evaluate("window.imgclustReport.screenPosition('group005/ukbench00020.jpg')"))
        page.wait_for_timeout(300)
        page.screenshot(path=os.environ["IMGCLUST_SCREENSHOT"])


@pytest.mark.browser
def test_clicking_a_cluster_shows_exactly_its_members(page, collection):
    config, _ = collection
    doc = label_doc(config)
    box = page.locator('.cluster[data-cluster="1"]')
    box.locator(".cluster-head").click()
    shown = box.locator(".thumb").evaluate_all("nodes => nodes.map(n => n.title)")
    members = doc["clusters"]["1"]
    # all of them, nearest the centre first; the page keeps distances to 4–5 digits, so two copies
    # of one photo (at the same distance) may trade places
    assert sorted(shown) == sorted(members) and all(abs(members.index(p) - i) <= 1 for i, p in enumerate(shown))
    assert page.inner_text("#highlight") == f"highlighted: cluster 1, {doc['sizes'][1]} photos"
    assert box.inner_text().startswith(f"Cluster 1 · {doc['sizes'][1]} photos")
    assert "thing" in box.locator(".caption").inner_text()  # most frequent label words


@pytest.mark.browser
def test_k_control_regroups_the_photos(page, collection):
    config, _ = collection
    assert page.inner_text("#cluster-count").startswith(f"{label_doc(config)['k']} clusters")
    page.select_option("#k-select", label="k-means, k = 3")
    assert page.inner_text("#cluster-count") == "3 clusters"
    assert page.locator(".cluster").count() == 3
    sizes = [int(t.split(" · ")[1].split()[0]) for t in page.locator(".cluster-head").all_inner_texts()]
    assert sum(sizes) == N_PHOTOS and sizes == sorted(sizes, reverse=True)
    page.click("nav button[data-tab=k]")
    assert "Suggested k" in page.inner_text("#k-note") and page.locator("#k-charts svg").count() == 3


@pytest.mark.browser
def test_hostile_names_render_as_text_and_run_nothing(page, collection):
    page.fill("#search", "alert")
    assert page.inner_text("#search-count") == "1 match"  # the path and its label word
    thumb = page.locator("#search-results .thumb")
    assert thumb.get_attribute("title") == "<script>alert(1)</script>.jpg"
    thumb.click()
    assert page.inner_text("#photo-path") == "<script>alert(1)</script>.jpg"
    assert "<script>alert(3)</script>" in page.inner_text("#photo-info")
    page.click("nav button[data-tab=run]")
    assert "<img src=x onerror=alert(2)>.jpg" in page.inner_text("#failures")
    scripts = page.evaluate("[...document.scripts].map(s => [s.getAttribute('src'), s.textContent])")
    assert [src.split("?")[0] for src, _ in scripts[:6]] == [  # and no inline script
        "data.js", "duplicates_data.js", "duplicates_tab.js", "collection.js", "edit.js", "report.js"]
    assert all(text == "" for _, text in scripts) and all(src.startswith("atlas-") for src, _ in scripts[6:])
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert page.dialogs == []
    page.fill("#search", "写真")  # Unicode names: found, shown and linked as they are
    page.locator("#search-results .thumb").click()
    assert page.inner_text("#photo-path") == "group001/Ünïcødé 写真.jpg"
    assert page.get_attribute("#photo-open", "href").endswith("group001/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E5%86%99%E7%9C%9F.jpg")
    page.wait_for_function("document.getElementById('photo-img').naturalWidth > 0")  # the original loads


@pytest.mark.browser
def test_neighbours_and_hover(page, collection):
    config, _ = collection
    target = "group003/ukbench00012.jpg"
    page.fill("#search", "ukbench00012")
    page.locator("#search-results .thumb").click()
    shown = page.locator("#neighbours .thumb").evaluate_all("nodes => nodes.map(n => n.title)")
    sims = [float(s) for s in page.locator("#neighbours .sim").all_inner_texts()]
    expected = pipeline.similar(config, config.paths.image_dir / target, 12)
    assert shown == [p for p, _ in expected] and sims == pytest.approx([s for _, s in expected], abs=1e-3)
    # Hover over the photo on the map: its path, cluster and distance to the centre.
    x, y = page.evaluate(f"window.imgclustReport.screenPosition({json.dumps(target)})")
    page.mouse.move(x, y)
    assert page.inner_text("#tooltip-path") == target and "distance to centre" in page.inner_text("#tooltip-info")
    with page.context.expect_page() as opened:  # a click opens the original photo, by a relative link
        page.mouse.click(x, y)
    assert opened.value.url == (config.paths.image_dir / target).as_uri()
    opened.value.close()
    page.mouse.down()
    page.mouse.move(x + 120, y + 60, steps=5)  # a drag pans: the point moves with the mouse
    page.mouse.up()
    x2, y2 = page.evaluate(f"window.imgclustReport.screenPosition({json.dumps(target)})")
    assert (x2 - x, y2 - y) == pytest.approx((120, 60), abs=2)


@pytest.mark.browser
def test_no_request_leaves_the_machine(browser, collection):
    page = open_report(browser, collection[1], csp=True)  # as a user opens it: its policy in force
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#map-count") == f"{N_PHOTOS} photos on the map"
    page.hover("#map")
    page.fill("#search", "group00")
    page.locator("#search-results .thumb").first.click()  # loads an original photo
    page.wait_for_load_state("networkidle")
    assert page.requests and all(url.startswith(("file:", "data:", "blob:")) for url in page.requests), page.requests
    assert any(url.endswith(".jpg") and "/photos/" in url for url in page.requests)  # the relative link works
    page.context.close()


@pytest.mark.browser
def test_label_word_clustering_report(browser, collection):
    from image_clustering.report import label_report

    config, _ = collection
    result = pipeline.cluster_by_tags(config)
    index = label_report(config)
    assert index == config.plot_dir / "report_labels" / "index.html"
    page = open_report(browser, index)
    assert page.inner_text("#map-count") == f"{N_PHOTOS} photos on the map"
    assert page.inner_text("#cluster-count").startswith(f"{result.k} cluster")
    assert page.locator(".cluster").count() == result.k
    page.click("nav button[data-tab=k]")
    assert f"L-method knee of the separation curve: k = {result.knee}" in page.inner_text("#k-note")
    assert page.locator("#k-charts svg").count() == 2
    assert page.locator("img.picture").evaluate_all("imgs => imgs.map(i => i.naturalWidth > 100)") == [True, True]
    page.context.close()


def test_large_collection_shows_a_seeded_sample(collection, monkeypatch, caplog):
    """Above REPORT_SAMPLE photos the report shows a seeded sample (here 20 of 50): the map, the
    current clustering and every k of the sweep restricted to the same photos, neighbours among
    them, and the run section saying how many of how many are shown."""
    from image_clustering import report as report_mod

    config, index = collection
    monkeypatch.setattr(report_mod, "REPORT_SAMPLE", 20)
    with caplog.at_level("WARNING", logger="image_clustering"):
        pipeline.report(config)
    assert f"{N_PHOTOS:,} photos; it shows a seeded sample of 20" in caplog.text
    data = (index.parent / "data.js").read_text()
    doc = json.loads(data[data.index("{"):data.rindex("}") + 1])
    saved = {p: c for c, members in label_doc(config)["clusters"].items() for p in members}
    assert doc["n"] == 20 and len(set(doc["paths"])) == 20 and set(doc["paths"]) <= set(saved)
    assert len(doc["clusterings"]) == 1 + 20  # the clustering of `cluster` and k = 1..20 of the sweep
    assert np.frombuffer(base64.b64decode(doc["neighbours"]["index"]), "<i4").max() < 20
    html = index.read_text()
    assert "shown in this report (seeded sample)" in html and f"<td>{N_PHOTOS}</td>" in html
    monkeypatch.undo()
    pipeline.report(config)  # the whole collection again, for the tests after this one


def test_report_after_cluster_without_a_sweep(collection, caplog):
    """A fixed-k agglomerative clustering with no k sweep of its parameters: the report shows that
    clustering alone instead of fitting a sweep (minutes on a large collection). Runs last: it
    replaces the collection's clustering."""
    from dataclasses import replace

    config, index = collection
    config = replace(config, model=replace(config.model, algorithm="agglomerative", k=5, k_max=7))
    pipeline.cluster(config, progress=False)
    with caplog.at_level("INFO", logger="image_clustering"):
        pipeline.report(config)
    assert "no k sweep" in caplog.text
    data = (index.parent / "data.js").read_text()
    doc = json.loads(data[data.index("{"):data.rindex("}") + 1])
    assert [c["name"] for c in doc["clusterings"]] == ["ward linkage, k = 5 (imgclust cluster)"] and doc["sweep"] is None


@pytest.mark.browser
def test_large_map_pans_by_moving_the_last_frame(browser, tmp_path):
    """Above 20,000 points the drawn frame follows the mouse (a CSS transform) and the points are
    redrawn when the view rests; the photo under the mouse stays under it."""
    from image_clustering.report import ReportClustering

    n = 21_000
    rng = np.random.default_rng(0)
    paths = [f"missing/{i}.jpg" for i in range(n)]  # unreadable: grey tiles, which is all this needs
    labels = rng.integers(0, 5, n)
    index = build_report(tmp_path / "report", tmp_path, paths, rng.normal(size=(n, 2)),
                         [ReportClustering("k = 5", labels, rng.random(n), True)])
    page = open_report(browser, index)
    assert page.inner_text("#map-count") == f"{n} photos on the map"
    x, y = page.evaluate("window.imgclustReport.screenPosition('missing/7.jpg')")
    # The events in one script, so the reading comes before the rest timer (the machine may be slow).
    moved = page.evaluate("""([x, y]) => {
        const map = document.getElementById('map'), at = (type, dx, dy) => map.dispatchEvent(
            new MouseEvent(type, {clientX: x + dx, clientY: y + dy, bubbles: true}));
        at('mousedown', 0, 0); at('mousemove', 80, 40);
        const transform = map.style.transform;
        at('mouseup', 80, 40);
        return transform; }""", [x, y])
    assert moved == "translate(80px, 40px) scale(1)"
    page.wait_for_function("document.getElementById('map').style.transform === ''")  # redrawn in place
    x2, y2 = page.evaluate("window.imgclustReport.screenPosition('missing/7.jpg')")
    assert (x2 - x, y2 - y) == pytest.approx((80, 40), abs=1)
    page.context.close()


def test_thumbnails_are_decoded_once(tmp_path, monkeypatch):
    """Atlases hold 4 photos here (1024-pixel cells); adding a photo that sorts first shifts every
    photo to another atlas, yet only the new photo is decoded; a re-run decodes nothing."""
    from image_clustering import report

    image_dir, out, cache = tmp_path / "photos", tmp_path / "report", tmp_path / "cache"
    image_dir.mkdir()
    for i in range(1, 10):
        Image.new("RGB", (32, 24), (25 * i, 100, 50)).save(image_dir / f"p{i}.jpg")
    decoded = []
    real = report._thumbnail
    monkeypatch.setattr(report, "_thumbnail", lambda path, cell: decoded.append(path.name) or real(path, cell))

    def build():
        decoded.clear()
        paths = sorted(p.name for p in image_dir.iterdir())
        return report.write_atlases(out, image_dir, paths, cache, cell=1024)

    first = build()
    assert len(decoded) == 9 and len(first["atlases"]) == 3 and first["per_atlas"] == 4
    Image.new("RGB", (32, 24), (0, 0, 255)).save(image_dir / "p0.jpg")
    second = build()
    assert decoded == ["p0.jpg"] and len(second["atlases"]) == 3
    assert sorted(p.name for p in out.glob("atlas-*")) == sorted(second["atlases"])  # stale atlases removed
    before = {p: p.stat().st_mtime_ns for p in out.glob("atlas-*")}
    assert build() == second and decoded == []
    assert {p: p.stat().st_mtime_ns for p in out.glob("atlas-*")} == before
