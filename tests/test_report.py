"""The interactive report: built from a real photo set (ukbench, 12 objects × 4 photos, plus a
hostile-named copy and an unreadable file) through the real pipeline with a random-weight
InceptionV3, then opened from disk in headless Chromium with the network cut off.

Run the browser tests alone with ``pytest -m browser``; they skip when Chromium or Playwright is
missing. ``IMGCLUST_SCREENSHOT=docs/report.png`` also saves the screenshot the README shows.
"""
import base64
import io
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
    doc = json.loads(data[data.index("{"):data.rindex("}") + 1])
    days = np.frombuffer(base64.b64decode(doc["days"]), "<f4")  # when each photo was taken, for the Dates tab
    assert len(days) == N_PHOTOS and np.isfinite(days).all() and days.min() > 10_000  # after 1997
    assert (config.feature_dir / "dates.json").is_file()  # read once per photo, kept by path, size and mtime
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
def test_changing_k_stays_on_the_choosing_k_tab(page):
    """Comparing k values after a photo was selected: the k tab stays in front, the photo stays
    selected (its cluster number follows the k shown)."""
    page.fill("#search", "ukbench00012")
    page.locator("#search-results .thumb").click()
    assert page.locator("#tab-photo").is_visible()
    page.click("nav button[data-tab=k]")
    for k in (3, 7):
        page.select_option("#k-select", label=f"k-means, k = {k}")
        assert page.locator("#tab-k").is_visible() and not page.locator("#tab-photo").is_visible()
        assert page.locator("nav button.active").get_attribute("data-tab") == "k"
    page.locator("#k-charts svg").first.click(position={"x": 200, "y": 60})  # a curve: another k
    assert page.locator("#tab-k").is_visible()
    page.click("nav button[data-tab=photo]")
    assert page.inner_text("#photo-path") == "group003/ukbench00012.jpg"


@pytest.mark.browser
def test_clustering_menu_separates_the_result_from_the_k_sweep(page, collection):
    """The menu lists the clustering the folders hold apart from find-k's k-means partitions, and
    the page says what each is; a curve click at the result's k shows k-means and says so."""
    config, _ = collection
    k = label_doc(config)["k"]
    groups = page.locator("#k-select optgroup").evaluate_all(
        "gs => gs.map(g => [g.label, [...g.querySelectorAll('option')].map(o => o.textContent)])")
    assert len(groups) == 2
    (result_label, result), (sweep_label, sweep) = groups
    assert "imgclust cluster" in result_label and "link folders" in result_label
    assert len(result) == 1 and result[0].endswith(f"k = {k} (imgclust cluster)")
    assert "k-means" in sweep_label and "2-D t-SNE map" in sweep_label
    assert sweep == [f"k-means, k = {j}" for j in range(1, 21)]
    assert page.inner_text("#clustering-kind") == "the result"
    page.click("nav button[data-tab=k]")
    note = page.inner_text("#clustering-note")
    assert "label files and link folders hold" in note and "written nowhere" in note
    page.select_option("#k-select", label=f"k-means, k = {k}")
    assert page.inner_text("#clustering-kind") == "a comparison, not the result"


@pytest.mark.browser
def test_keyboard_map_zoom_buttons_and_cluster_jump(page, collection):
    """By keyboard: the map takes focus within a few Tab presses, arrows pan, + and − zoom, 0
    resets; the +/− buttons zoom; cluster n is a number and Enter away."""
    view = "window.imgclustReport.view()"

    def tab_to(element_id, limit):
        for presses in range(1, limit + 1):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return presses
        raise AssertionError(f"#{element_id} not reached in {limit} Tab presses")

    page.select_option("#k-select", label="k-means, k = 12")
    page.evaluate("document.activeElement.blur()")
    tab_to("cluster-jump", 5)
    page.keyboard.type("10")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.closest('.cluster').dataset.cluster") == "10"
    assert page.inner_text("#highlight").startswith("highlighted: cluster 10,")
    page.locator("#search").focus()
    tab_to("map", 4)
    page.keyboard.press("+")
    assert page.evaluate(view)["zoom"] == pytest.approx(1.5)
    page.keyboard.press("ArrowRight")
    assert page.evaluate(view)["x"] > 0.5
    page.keyboard.press("-")
    assert page.evaluate(view)["zoom"] == pytest.approx(1.0)
    page.keyboard.press("0")
    assert page.evaluate(view) == {"x": 0.5, "y": 0.5, "zoom": 1}
    page.keyboard.press("Tab")  # the zoom buttons come next
    assert page.evaluate("document.activeElement.id") == "zoom-in"
    page.keyboard.press("Enter")
    assert page.evaluate(view)["zoom"] == pytest.approx(1.5)
    page.click("#zoom-out")
    assert page.evaluate(view)["zoom"] == pytest.approx(1.0)


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
    page.mouse.down()
    page.mouse.move(x + 120, y + 60, steps=5)  # a drag pans: the point moves with the mouse
    page.mouse.up()
    x2, y2 = page.evaluate(f"window.imgclustReport.screenPosition({json.dumps(target)})")
    assert (x2 - x, y2 - y) == pytest.approx((120, 60), abs=2)


@pytest.mark.browser
def test_map_click_selects_the_photo_and_double_click_resets(page, collection):
    """A click on the map does what a thumbnail click does (the photo and its neighbours, no new
    tab); a double-click resets the view and opens nothing either."""
    config, _ = collection
    target = "group003/ukbench00012.jpg"
    page.evaluate("window.imgclustReport.setView(0.5, 0.5, 2)")
    x, y = page.evaluate(f"window.imgclustReport.screenPosition({json.dumps(target)})")
    page.mouse.click(x, y)
    assert page.locator("#tab-photo").is_visible() and page.inner_text("#photo-path") == target
    expected = pipeline.similar(config, config.paths.image_dir / target, 12)
    assert page.locator("#neighbours .thumb").evaluate_all("nodes => nodes.map(n => n.title)") == [p for p, _ in expected]
    assert page.get_attribute("#photo-open", "href").endswith(target)  # the original: one explicit link
    page.mouse.dblclick(x, y)
    page.wait_for_timeout(300)
    assert page.evaluate("window.imgclustReport.view()") == {"x": 0.5, "y": 0.5, "zoom": 1}
    assert len(page.context.pages) == 1


@pytest.mark.browser
def test_phone_layout_touch_pan_pinch_and_tap(browser, collection):
    """At 390 × 844 with touch: no sideways scrolling, every tab on screen and working, one finger
    pans, two fingers pinch-zoom about their centre, and a tap selects the photo (no new tab)."""
    _, index = collection
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(index.as_uri())
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for tab in page.locator("nav button").all():
        box = tab.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, tab.inner_text()
        tab.tap()
        assert page.locator(f"#tab-{tab.get_attribute('data-tab')}").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.evaluate("window.scrollTo(0, 0)")
    target = "group003/ukbench00012.jpg"
    where = f"window.imgclustReport.screenPosition({json.dumps(target)})"
    cdp = context.new_cdp_session(page)

    def touch(kind, *points):
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": x, "y": y, "id": j} for j, (x, y) in enumerate(points)]})

    x, y = page.evaluate(where)
    touch("touchStart", (x, y))
    for step in range(1, 6):
        touch("touchMove", (x + 12 * step, y + 8 * step))
    touch("touchEnd")
    assert page.evaluate(where) == pytest.approx([x + 60, y + 40], abs=2)
    x, y = page.evaluate(where)
    zoom = page.evaluate("window.imgclustReport.view().zoom")
    touch("touchStart", (x - 30, y), (x + 30, y))
    for step in range(1, 7):
        touch("touchMove", (x - 30 - 10 * step, y), (x + 30 + 10 * step, y))
    touch("touchEnd")
    assert page.evaluate("window.imgclustReport.view().zoom") == pytest.approx(3 * zoom, rel=0.02)
    assert page.evaluate(where) == pytest.approx([x, y], abs=2)  # the pinch centre stays put
    page.touchscreen.tap(*page.evaluate(where))
    assert page.inner_text("#photo-path") == target and page.locator("#tab-photo").is_visible()
    assert len(context.pages) == 1
    if os.environ.get("IMGCLUST_SCREENSHOT"):  # the README's phone picture, beside the wide one
        shot = Path(os.environ["IMGCLUST_SCREENSHOT"])
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shot.with_name(shot.stem + "_phone.png")))
    context.close()


@pytest.mark.browser
def test_run_tab_shows_the_run_and_evaluate_updates_it(browser, collection, random_extractor, monkeypatch):
    """An extract that finds nothing new (as `tag` runs one) does not replace the record of the
    extraction that built the store; `evaluate` rewrites the report with its scores."""
    from image_clustering.run_log import read_run_log, record_step

    config, index = collection
    # The fixture extracted without the workflow: record that extraction as `extract` would have.
    record_step(config.feature_dir, "extract", 305.0, computed=N_PHOTOS - 1, reused=0, removed=0, failed=1)
    monkeypatch.setattr(pipeline, "_network", lambda config, name: random_extractor[name])
    assert pipeline.extract(config, progress=False).computed == 0  # what `tag` does first
    log = read_run_log(config.feature_dir)["extract"]
    assert log["seconds"] == 305.0 and log["computed"] == N_PHOTOS - 1 and "checked" in log
    scores, _ = pipeline.evaluate(config)
    page = open_report(browser, index)
    page.click("nav button[data-tab=run]")
    timings = page.inner_text("#timings")
    assert "extract\t305.0" in timings and "cluster\t" in timings and "find-k\t" in timings
    assert f"computed (last extract)\t{N_PHOTOS - 1}" in page.inner_text("#counts")
    assert f"nmi\t{round(scores['nmi'], 4)}" in page.inner_text("#evaluation")
    page.context.close()


@pytest.mark.browser
def test_portable_report_opens_without_the_photos(browser, collection, tmp_path):
    """`imgclust report --portable` prints the path it wrote as its last line; the folder, moved
    where no photo is, still shows thumbnails and previews, and names no local path."""
    from click.testing import CliRunner

    from image_clustering.cli import main

    config, _ = collection
    printed = CliRunner().invoke(main, ["report", "--portable", "--config", str(config.source), "-q"])
    assert printed.exit_code == 0, printed.output
    index = Path(printed.output.splitlines()[-1])
    assert index == config.plot_dir / "report_portable" / "index.html" and index.is_file()
    root = str(config.source.parent)
    for file in index.parent.rglob("*"):
        if file.suffix in (".html", ".js", ".css"):
            assert root not in file.read_text(), file  # no absolute path, not even in the config
    assert '"image_dir": "…/photos"' in index.read_text().replace("&#34;", '"').replace("&quot;", '"')
    moved = tmp_path / "sent" / "report"
    shutil.copytree(index.parent, moved)
    page = open_report(browser, moved / "index.html")
    target = "group003/ukbench00012.jpg"
    page.evaluate("window.imgclustReport.setView(0.5, 0.5, 2)")
    x, y = page.evaluate(f"window.imgclustReport.screenPosition({json.dumps(target)})")
    page.mouse.move(x, y)
    page.wait_for_function("document.getElementById('tooltip-img').naturalWidth > 0")
    page.mouse.click(x, y)
    assert page.inner_text("#photo-path") == target
    page.wait_for_function("document.getElementById('photo-img').naturalWidth > 0")
    assert max(page.evaluate("[document.getElementById('photo-img').naturalWidth, "
                             "document.getElementById('photo-img').naturalHeight]")) <= 512
    photos = [u for u in page.requests if u.endswith(".jpg")]
    assert photos and all(u.startswith((moved / "previews").as_uri()) for u in photos)
    page.context.close()


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
    config, _ = collection
    result = pipeline.cluster_by_tags(config)
    index = pipeline.tag_report(config)
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
            new PointerEvent(type, {clientX: x + dx, clientY: y + dy, bubbles: true, pointerId: 1, isPrimary: true,
                                    pointerType: 'mouse'}));
        at('pointerdown', 0, 0); at('pointermove', 80, 40);
        const transform = map.style.transform;
        at('pointerup', 80, 40);
        return transform; }""", [x, y])
    assert moved == "translate(80px, 40px) scale(1)"
    page.wait_for_function("document.getElementById('map').style.transform === ''")  # redrawn in place
    x2, y2 = page.evaluate("window.imgclustReport.screenPosition('missing/7.jpg')")
    assert (x2 - x, y2 - y) == pytest.approx((80, 40), abs=1)
    page.context.close()


def synthetic_report(folder: Path, n: int, k: int = 5, seed: int = 0, **extra) -> Path:
    """A report of n points in k separated blobs (cluster c around centre c), photos missing (grey
    tiles, which is all the map tests need); ``extra`` goes to :class:`ReportContent`."""
    from image_clustering.report import ReportClustering, ReportContent, write_report

    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, k, n))[::-1] if k > 1 else np.zeros(n, int)
    labels = np.searchsorted(np.sort(np.unique(labels)), labels)
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    labels = np.argsort(order)[labels]  # cluster 0 the largest
    angle = 2 * np.pi * labels / max(k, 1)
    coords = np.column_stack([np.cos(angle), np.sin(angle)]) * 10 + rng.normal(size=(n, 2))
    paths = [f"missing/{i}.jpg" for i in range(n)]
    clustering = ReportClustering(f"test, k = {k}", labels, rng.random(n), True)
    return write_report(folder, ReportContent(folder, paths, coords, [clustering], **extra))


@pytest.fixture(scope="module")
def big_report(tmp_path_factory):
    """30,000 points: above the page's LIVE_LIMIT (20,000), where pan and zoom move the last frame."""
    return synthetic_report(tmp_path_factory.mktemp("big") / "report", 30_000)


@pytest.mark.browser
def test_large_map_drag_and_wheel_keep_the_photo_under_the_pointer(browser, big_report):
    """At 30,000 points a drag moves the map by as much as the pointer moved, and a fast run of
    wheel notches (no redraw between them) keeps the photo under the pointer: positions, not
    frame times."""
    page = open_report(browser, big_report)
    report = "window.imgclustReport"
    target = "missing/7.jpg"
    x, y = page.evaluate(f"{report}.screenPosition({json.dumps(target)})")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 200, y + 100, steps=8)
    page.mouse.up()
    page.wait_for_function("document.getElementById('map').style.transform === ''")
    x2, y2 = page.evaluate(f"{report}.screenPosition({json.dumps(target)})")
    assert (x2 - x, y2 - y) == pytest.approx((200, 100), abs=2)
    # Ten wheel notches in one script: the canvas still wears the transform of the first ones.
    page.evaluate("""([x, y]) => { const map = document.getElementById('map');
        for (let i = 0; i < 10; i++) map.dispatchEvent(new WheelEvent('wheel',
            {clientX: x, clientY: y, deltaY: -100, bubbles: true, cancelable: true})); }""", [x2, y2])
    assert page.evaluate(f"{report}.view().zoom") > 3
    page.wait_for_function("document.getElementById('map').style.transform === ''")
    assert page.evaluate(f"{report}.screenPosition({json.dumps(target)})") == pytest.approx([x2, y2], abs=2)
    # And as a person scrolls: notches 60 ms apart, then out again.
    for delta in [-100] * 5 + [100] * 10:
        page.mouse.wheel(0, delta)
        page.wait_for_timeout(60)
    page.wait_for_function("document.getElementById('map').style.transform === ''")
    assert page.evaluate(f"{report}.screenPosition({json.dumps(target)})") == pytest.approx([x2, y2], abs=2)
    page.mouse.move(x2 + 40, y2 + 40)
    page.mouse.move(x2, y2)
    assert page.inner_text("#tooltip-path") == target  # the drawn frame agrees: hover finds it there
    page.context.close()


@pytest.mark.browser
def test_map_agrees_with_the_png_and_has_a_legend(browser, tmp_path):
    """Orientation and colours as in clusters_<d>D.png (plots.plot_scatter), each cluster's number
    on the map, and a legend with names and counts; past 20 clusters the colours stay apart."""
    from matplotlib.colors import to_hex

    from image_clustering.colours import cluster_colours, hex_to_rgb, srgb_to_lab
    from image_clustering.plots import plot_scatter

    n, k = 3000, 5
    index = synthetic_report(tmp_path / "report", n, k)
    data = (index.parent / "data.js").read_text()
    doc = json.loads(data[data.index("{"):data.rindex("}") + 1])
    labels = np.frombuffer(base64.b64decode(doc["clusterings"][0]["labels"]), np.uint8).astype(int) - 1
    rng = np.random.default_rng(0)  # the coordinates synthetic_report made
    rng.integers(0, k, n)
    angle = 2 * np.pi * labels / k
    coords = np.column_stack([np.cos(angle), np.sin(angle)]) * 10 + rng.normal(size=(n, 2))
    ax = plot_scatter(coords, labels)
    png_colours = [to_hex(c) for c in ax.collections[0].get_facecolors()[:, :3]]
    page = open_report(browser, index)
    page.evaluate("window.imgclustReport.setView(0.5, 0.5, 0.6)")  # dots: flat colours
    top, right = int(np.argmax(coords[:, 1])), int(np.argmax(coords[:, 0]))
    bottom, left = int(np.argmin(coords[:, 1])), int(np.argmin(coords[:, 0]))
    at = {i: page.evaluate(f"window.imgclustReport.screenPosition('missing/{i}.jpg')") for i in (top, right, bottom, left)}
    assert at[top][1] < at[bottom][1] and at[right][0] > at[left][0]  # up is up, right is right
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    for c in range(k):
        assert page.evaluate(f"window.imgclustReport.colourOf({c})") == png_colours[int(np.flatnonzero(labels == c)[0])]
        tag = page.locator(f'.map-label[data-cluster="{c}"]')
        assert tag.inner_text() == str(c)
        box = tag.bounding_box()  # the number sits on its cluster: the pixels around it have its colour
        x, y = int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] + 6)
        near = shot[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3)
        want = (hex_to_rgb([png_colours[int(np.flatnonzero(labels == c)[0])]])[0] * 255).round()
        assert (np.abs(near - want).max(axis=1) <= 3).mean() > 0.5, c
    sizes = np.bincount(labels)
    assert page.locator("#legend-list li").all_inner_texts() == [f"{c} · {sizes[c]}" for c in range(k)]
    page.locator('.legend-entry[data-cluster="3"]').click()
    assert page.inner_text("#highlight").startswith(f"highlighted: cluster 3, {sizes[3]} photos")
    page.context.close()
    # Names (e.g. the living collection's) in the legend, galleries and hover text; 30 clusters.
    from image_clustering.report import ReportClustering, ReportContent, write_report

    labels30 = np.arange(n) % 30
    named = ReportClustering("k = 30", labels30, np.zeros(n), True, names={0: "beach", 2: "<b>snow</b>"})
    index = write_report(tmp_path / "named", ReportContent(tmp_path, [f"m/{i}.jpg" for i in range(n)],
                                                            rng.normal(size=(n, 2)), [named]))
    page = open_report(browser, index)
    legend = page.locator("#legend-list li").all_inner_texts()
    assert legend[0] == "0 beach · 100" and legend[2] == "2 <b>snow</b> · 100" and len(legend) == 30
    assert page.locator('.cluster[data-cluster="2"] .cluster-head').inner_text().startswith("Cluster 2 · <b>snow</b> · 100")
    swatches = page.locator(".swatch").evaluate_all("s => s.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(swatches)) == 30
    lab = srgb_to_lab(hex_to_rgb(cluster_colours(30)))
    gaps = np.linalg.norm(lab[:, None] - lab[None], axis=2) + np.eye(30) * 1e9
    assert gaps.min() > 20  # CIE ΔE: clearly different colours (tab20's closest pair is 16.6)
    page.context.close()


@pytest.mark.browser
def test_big_cluster_and_search_grow_a_page_at_a_time(browser, tmp_path):
    """Highlighting a 3,000-photo cluster adds a page of thumbnails, not 3,000 elements; search
    shows 60 results and a "more" button for the rest."""
    index = synthetic_report(tmp_path / "report", 6000, 2)
    page = open_report(browser, index)
    count = "document.getElementsByTagName('*').length"
    before = page.evaluate(count)
    box = page.locator('.cluster[data-cluster="0"]')
    size = int(box.locator(".cluster-head").inner_text().split(" · ")[1].split()[0])
    assert size > 2900
    box.locator(".cluster-head").click()
    assert page.inner_text("#highlight") == f"highlighted: cluster 0, {size} photos"
    assert page.evaluate(count) - before < 300
    assert box.locator(".thumb").count() == 120
    box.locator(".more").click()
    assert box.locator(".thumb").count() == 240 and f"240 of {size} shown" in box.locator(".more").inner_text()
    page.fill("#search", "missing/1")  # 1, 10–19, 100–199, 1000–1999: 1,111 photos
    results = page.locator("#search-results")
    assert page.inner_text("#search-count") == "1111 matches"
    assert results.locator(".thumb").count() == 60
    results.locator(".more").click()
    assert results.locator(".thumb").count() == 180
    titles = results.locator(".thumb").evaluate_all("nodes => nodes.map(n => n.title)")
    assert len(set(titles)) == 180 and all(t.startswith("missing/1") for t in titles)
    page.context.close()


@pytest.mark.browser
def test_dates_timeline_and_range_filter(browser, tmp_path):
    """The Dates tab: a timeline coloured by cluster, and a date range that dims the map's photos
    outside it and keeps them out of the galleries."""
    from datetime import datetime, timezone

    from image_clustering.report import ReportClustering, ReportContent, write_report

    n = 400
    rng = np.random.default_rng(1)
    labels = (np.arange(n) >= 250).astype(int)  # cluster 0: 250 photos from 2019, cluster 1: 150 from 2021
    start = [datetime(2019, 6, 1, tzinfo=timezone.utc).timestamp(), datetime(2021, 3, 1, tzinfo=timezone.utc).timestamp()]
    times = np.array([start[c] + rng.uniform(0, 20 * 86400) for c in labels])
    times[5] = np.nan  # a photo whose date is unknown
    content = ReportContent(tmp_path, [f"m/{i}.jpg" for i in range(n)], rng.normal(size=(n, 2)),
                            [ReportClustering("k = 2", labels, rng.random(n), True)], times=times)
    page = open_report(browser, write_report(tmp_path / "report", content))
    page.click("nav button[data-tab=dates]")
    fills = set(page.locator("#timeline-chart rect").evaluate_all("rs => rs.map(r => r.getAttribute('fill'))"))
    assert fills == {page.evaluate(f"window.imgclustReport.colourOf({c})") for c in (0, 1)}
    bars = page.locator("#timeline-chart rect").evaluate_all(
        "rs => rs.map(r => [r.dataset.cluster, Number(r.getAttribute('x'))])")
    assert max(x for c, x in bars if c == "0") < min(x for c, x in bars if c == "1")  # 2019 left of 2021
    page.fill("#date-from", "2021-01-01")
    page.dispatch_event("#date-from", "change")
    assert page.evaluate("window.imgclustReport.brightCount()") == 150
    assert page.inner_text("#date-count").startswith(f"150 of {n} photos in the range")
    heads = page.locator(".cluster-head").all_inner_texts()
    assert heads == ["Cluster 1 · 150 photos in the date range (of 150)"]
    page.fill("#date-to", "2021-03-05")
    page.dispatch_event("#date-to", "change")
    inside = int(((times >= start[1]) & (times < start[1] + 5 * 86400)).sum())
    assert page.evaluate("window.imgclustReport.brightCount()") == inside < 150
    page.click("#date-clear")
    assert page.evaluate("window.imgclustReport.brightCount()") == n and page.locator(".cluster").count() == 2
    page.locator("#timeline-chart .bin").first.click()  # a bar keeps its dates: early 2019 only
    assert 0 < page.evaluate("window.imgclustReport.brightCount()") < 250
    assert page.locator(".cluster").count() == 1
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


def test_report_renders_values_and_never_calls_the_workflow():
    """Floors (docs/architecture.md): the workflow gathers a ReportContent and hands it over;
    report.py imports nothing from the workflow or the interfaces, not even inside a function."""
    import ast

    import image_clustering.report as report_mod

    tree = ast.parse(Path(report_mod.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.split(".")[-1] in ("pipeline", "cli", "distributed")}, imported


def test_photo_dates_come_from_exif_and_are_read_once(tmp_path, monkeypatch):
    """The Dates tab's dates: EXIF DateTimeOriginal where the photo has it, else the file time;
    a second call opens no photo (cached by path, size and mtime); a missing photo is NaN."""
    from datetime import datetime, timezone

    from image_clustering import images
    from image_clustering.report import photo_dates

    image_dir = tmp_path / "photos"
    image_dir.mkdir()
    exif = Image.Exif()
    exif.get_ifd(images.EXIF_IFD)[images.DATETIME_ORIGINAL] = "2019:06:01 12:30:00"
    Image.new("RGB", (32, 24)).save(image_dir / "dated.jpg", exif=exif)
    Image.new("RGB", (32, 24)).save(image_dir / "plain.jpg")
    os.utime(image_dir / "plain.jpg", (1_600_000_000, 1_600_000_000))
    paths = ["dated.jpg", "plain.jpg", "gone.jpg"]
    first = photo_dates(image_dir, paths, tmp_path)
    assert first[0] == datetime(2019, 6, 1, 12, 30, tzinfo=timezone.utc).timestamp()
    assert first[1] == 1_600_000_000 and np.isnan(first[2])
    opened = []
    monkeypatch.setattr(images, "photo_time", lambda path: opened.append(path) or 0.0)
    np.testing.assert_array_equal(photo_dates(image_dir, paths, tmp_path), first)
    assert opened == []
