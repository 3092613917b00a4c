"""``imgclust serve`` (issue 22, item 6): the report on 127.0.0.1 behind a URL token, with edit
requests that go through the same library call as ``imgclust edit``.

Real photos (ukbench, 14 objects × 4), the real weights (the feature store is shared with
test_collection.py's), a real socket on the loopback interface and Debian's Chromium. Every server
here runs in a thread that a timer stops after :data:`LIFETIME` seconds even if a test hangs.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from image_clustering import config_from_dict, pipeline
from image_clustering.cli import main
from image_clustering.collection import Reconciled
from image_clustering.errors import ImgclustError
from image_clustering.report_edits import collection_doc
from image_clustering.server import ReportServer, _edit_args
from tests.conftest import DATASETS, MODEL_DIR, ROOT, needs_shared

HEAVY = (pytest.mark.shared, pytest.mark.slow)  # the real weights and 56 real photos


def heavy(test):
    for mark in HEAVY:
        test = mark(test)
    return test

UKBENCH = DATASETS / "ukbench_groups14"
LIFETIME = 300  # seconds: no server of these tests outlives this


def make_collection(root: Path, vectors: Path):
    """A clustered collection of the 56 photos under ``root`` (its own labels, plots, links)."""
    photos = root / "photos"
    for group in sorted(p.name for p in UKBENCH.iterdir()):
        shutil.copytree(UKBENCH / group, photos / group)  # copy2: times kept, the stored vectors are used
    raw = {"paths": {"image_dir": str(photos), "model_dir": str(MODEL_DIR), "vector_dir": str(vectors),
                     "cluster_label_dir": str(root / "labels"), "plot_dir": str(root / "plots"),
                     "link_dir": str(root / "links")},
           "model": {"object_name": "test", "batch_size": 4, "k": 14}}
    (root / "config.json").write_text(json.dumps(raw))
    config = config_from_dict(raw, source=root / "config.json")
    pipeline.cluster(config, progress=False)
    pipeline.report(config)
    return config


@pytest.fixture(scope="module")
def vectors(real_weights, lite0_weights, shared_vectors):
    folder = shared_vectors("ukbench")
    source = needs_shared(UKBENCH)
    raw = {"paths": {"image_dir": str(source), "model_dir": str(MODEL_DIR), "vector_dir": str(folder)},
           "model": {"object_name": "test", "batch_size": 4}}
    pipeline.extract(config_from_dict(raw), progress=False)
    return folder


def test_edit_requests_are_checked_before_they_reach_the_collection():
    assert _edit_args({"op": "move", "photos": ["a.jpg", "b.jpg"], "cluster": "Beach"}) == (
        "move", [{"photo": "a.jpg", "cluster": "Beach"}, {"photo": "b.jpg", "cluster": "Beach"}])
    assert _edit_args({"op": "split", "cluster": 3}) == ("split", [{"cluster": 3, "k": 2}])
    assert _edit_args({"op": "undo", "extra": 1}) == ("undo", [{}])
    for bad, why in [([], "'op'"), ({"op": "drop"}, "'op'"), ({"op": "move", "photos": "a.jpg", "cluster": 1}, "photos"),
                     ({"op": "move", "photos": [], "cluster": 1}, "photos"), ({"op": "split", "cluster": 1, "k": 1}, "'k'"),
                     ({"op": "split", "cluster": 1, "k": True}, "'k'"), ({"op": "merge", "into": [1], "other": 2}, "'into'"),
                     ({"op": "rename", "cluster": 1}, "missing name")]:
        with pytest.raises(ImgclustError, match=why):
            _edit_args(bad)


def test_the_panel_state_names_photos_exactly_as_the_collection_does():
    placed = Reconciled(["a/1.jpg", "a/2.jpg", "b/\udce9 x.jpg", "c.jpg"], np.array([4, 4, 7, -2]), {4: "Beach"},
                        auto_names={7: "church"})
    doc = collection_doc(placed)
    assert [(c["id"], c["name"], c["auto_name"], len(c["photos"])) for c in doc["clusters"]] == [
        (4, "Beach", None, 2), (7, None, "church", 1)]
    assert doc["clusters"][1]["photos"][0] == {"path": "b/\udce9 x.jpg", "href": "b/%E9%20x.jpg"}
    assert doc["excluded"] == [{"path": "c.jpg", "href": "c.jpg"}] and doc["unclustered"] == []
    assert json.loads(json.dumps(doc))["clusters"][1]["photos"][0]["path"] == "b/\udce9 x.jpg"  # survives JSON


class Running:
    """A ReportServer serving in a thread, stopped at exit or after LIFETIME seconds."""

    def __init__(self, config):
        self.server = ReportServer(config)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.timer = threading.Timer(LIFETIME, self.server.shutdown)

    def __enter__(self):
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def request(self, method, path, body=None, headers=None, token=True):
        """(status, body bytes); ``path`` below the token unless ``token`` is False."""
        h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.putrequest(method, f"/{self.server.token}/{path}" if token else path, skip_host=True)
            for k, v in h.items():
                if v is not None:
                    conn.putheader(k, v)
            data = json.dumps(body).encode() if body is not None else b""
            if body is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data or None)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def edit(self, **doc):
        status, body = self.request("POST", "api/edit", doc, {"Content-Type": "application/json"})
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="module")
def served(vectors, tmp_path_factory):
    config = make_collection(tmp_path_factory.mktemp("served"), vectors)
    with Running(config) as running:
        yield config, running


@heavy
def test_the_server_refuses_strangers_and_serves_only_the_report_and_its_photos(served):
    config, s = served
    status, page = s.request("GET", "index.html")
    assert status == 200 and b'src="edit.js' in page and b"connect-src 'self'" in page
    assert s.request("GET", "api/state")[0] == 200
    photo = sorted(pipeline.clusters(config).paths)[0]
    status, data = s.request("GET", f"photos/{photo}")
    assert status == 200 and data == (config.paths.image_dir / photo).read_bytes()

    # no token, a wrong one, one cut short
    assert s.request("GET", "/index.html", token=False)[0] == 403
    assert s.request("GET", "/" + "x" * len(s.server.token) + "/index.html", token=False)[0] == 403
    assert s.request("GET", f"/{s.server.token[:-1]}/index.html", token=False)[0] == 403
    # another site's page, or a DNS name rebound to 127.0.0.1
    assert s.request("GET", "index.html", headers={"Origin": "http://evil.example"})[0] == 403
    assert s.request("GET", "index.html", headers={"Host": f"localhost:{s.port}"})[0] == 403
    assert s.request("GET", "index.html", headers={"Host": None})[0] == 403
    before = pipeline.clusters(config)
    for headers in ({"Origin": "http://evil.example", "Content-Type": "application/json"},
                    {"Origin": "null", "Content-Type": "application/json"},
                    {"Content-Type": "text/plain"}):  # a form or no-cors fetch cannot send JSON
        status, _ = s.request("POST", "api/edit", {"op": "rename", "cluster": 0, "name": "pwned"}, headers)
        assert status in (403, 415)
    assert pipeline.clusters(config).names == before.names

    # nothing outside the report folder and the collection's photos
    secret = config.paths.image_dir.parent / "config.json"
    (config.paths.image_dir / "notes.txt").write_text("not a photo of the collection")
    link = config.plot_dir / "report" / "escape.json"
    link.symlink_to(secret)
    for path in ("../config.json", "..%2Fconfig.json", "%2e%2e/%2e%2e/config.json", "photos/../../config.json",
                 f"photos/{photo.split('/')[0]}/../../config.json", "photos/notes.txt", "escape.json",
                 "photos//etc/passwd", "/etc/passwd", "photos/%2Fetc%2Fpasswd", "api/../../config.json"):
        status, body = s.request("GET", path)
        assert status in (403, 404), path
        assert b"vector_dir" not in body and b"root:" not in body and b"not a photo" not in body, path
    link.unlink()


@heavy
def test_an_edit_over_http_equals_the_same_edit_through_the_cli(served, vectors, tmp_path):
    config, s = served
    twin = make_collection(tmp_path, vectors)  # the same photos and settings: the same clusters
    a, b = pipeline.clusters(config), pipeline.clusters(twin)
    assert a.paths == b.paths and a.ids.tolist() == b.ids.tolist()
    ids = dict(zip(a.paths, a.ids.tolist()))
    first, second, third = a.cluster_ids()[:3]
    photo = next(p for p in a.paths if ids[p] == second)

    def cli(*args):
        result = CliRunner().invoke(main, ["edit", *args, "--config", str(twin.source), "-q"])
        assert result.exit_code == 0, result.output

    s.edit(op="rename", cluster=first, name="Shelf")
    cli("rename", str(first), "Shelf")
    s.edit(op="move", photos=[photo], cluster="Shelf")
    cli("move", photo, "Shelf")
    s.edit(op="merge", into=third, other=second)
    cli("merge", str(third), str(second))
    s.edit(op="split", cluster=third, k=2)
    cli("split", str(third), "--k", "2")
    s.edit(op="rename", cluster=third, name="Mugs")
    doc = s.edit(op="undo")
    cli("rename", str(third), "Mugs")
    cli("undo")
    a, b = pipeline.clusters(config), pipeline.clusters(twin)
    assert a.paths == b.paths and np.array_equal(a.ids, b.ids) and a.names == b.names
    assert a.names[first] == "Shelf" and third not in a.names and ids[photo] != a.ids[a.paths.index(photo)]
    assert (config.layout.labels_csv().read_text() == twin.layout.labels_csv().read_text())
    # the answer is the new state, and the report was rewritten from it
    assert {c["id"]: c.get("name") for c in doc["clusters"]}[first] == "Shelf"
    assert any(line.startswith("undone:") for line in doc["lines"])
    # a refused edit changes nothing and says why
    status, body = s.request("POST", "api/edit", {"op": "merge", "into": 999, "other": first},
                             {"Content-Type": "application/json"})
    assert status == 400 and "999" in json.loads(body)["error"]
    assert s.request("POST", "api/edit", {"op": "drop"}, {"Content-Type": "application/json"})[0] == 400


@heavy
def test_the_cli_prints_the_url_last_and_serves_it(served):
    config, _ = served
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "image_clustering.cli", "serve", "--no-open", "-q",
                             "--config", str(config.source)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while not line.startswith("http://") and time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/index.html"), line
        host, _, rest = line.removeprefix("http://").partition("/")
        conn = http.client.HTTPConnection(*host.split(":"), timeout=60)
        conn.request("GET", "/" + rest)
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@heavy
@pytest.mark.browser
def test_rename_and_move_through_the_page(served, browser):
    config, s = served
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(s.server.url)
        page.wait_for_selector("body[data-edit-ready='1']", timeout=60_000)
        page.click("#edit-toggle")
        before = pipeline.clusters(config)
        target, source = before.cluster_ids()[-1], before.cluster_ids()[-2]
        block = page.locator(f".edit-cluster[data-cluster='{target}']")
        block.locator(".edit-name").fill("Red mug")
        with page.expect_response(lambda r: r.url.endswith("/api/edit")):
            block.locator(".edit-rename").click()
        page.wait_for_selector(f".edit-cluster[data-cluster='{target}'] .edit-name[value='Red mug']")
        assert pipeline.clusters(config).names[target] == "Red mug"

        photo = next(p for p, c in zip(before.paths, before.ids.tolist()) if c == source)
        img = page.locator(f".edit-cluster[data-cluster='{source}'] img[data-photo='{photo}']")
        assert img.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0  # the photo came from the server
        img.click()
        page.select_option("#edit-move-to", str(target))
        with page.expect_response(lambda r: r.url.endswith("/api/edit")):
            page.click("#edit-move")
        page.wait_for_selector(f".edit-cluster[data-cluster='{target}'] img[data-photo='{photo}']")
        after = pipeline.clusters(config)
        assert after.ids[after.paths.index(photo)] == target
        assert page.locator("#edit-count").inner_text().startswith("2 edits")
        # the map (report.js) draws its photos from the server too, and nothing failed
        page.goto(s.server.url)
        page.wait_for_selector("body[data-edit-ready='1']", timeout=60_000)
        assert not errors, errors
    finally:
        page.close()


@heavy
@pytest.mark.browser
def test_the_static_report_exports_its_edits_for_edit_apply(vectors, browser, tmp_path):
    config = make_collection(tmp_path / "static", vectors)
    before = pipeline.clusters(config)
    target, source = before.cluster_ids()[0], before.cluster_ids()[1]
    photo = next(p for p, c in zip(before.paths, before.ids.tolist()) if c == source)
    page = browser.new_page(accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto((config.plot_dir / "report" / "index.html").as_uri())
        page.wait_for_selector("body[data-edit-ready='1']", timeout=60_000)
        page.click("#edit-toggle")
        block = page.locator(f".edit-cluster[data-cluster='{target}']")
        block.locator(".edit-name").fill("Books")
        block.locator(".edit-rename").click()
        page.click(f".edit-cluster[data-cluster='{source}'] img[data-photo='{photo}']")
        page.select_option("#edit-move-to", str(target))
        page.click("#edit-move")
        page.wait_for_selector(f".edit-cluster[data-cluster='{target}'] img[data-photo='{photo}']")
        n = page.locator(".edit-cluster").count()
        page.click(f".edit-cluster[data-cluster='{source}'] .edit-merge")  # then undone: not exported
        assert page.locator(".edit-cluster").count() == n - 1
        page.click("#edit-undo")
        assert page.locator(".edit-cluster").count() == n
        assert page.locator("#edit-count").inner_text().startswith("2 edits")
        with page.expect_download() as download:
            page.click("#edit-export")
        exported = tmp_path / "edits.json"
        download.value.save_as(exported)
        assert not errors, errors
    finally:
        page.close()
    assert pipeline.clusters(config).names == before.names  # the page itself changed nothing
    assert json.loads(exported.read_text()) == {"edits": [{"op": "rename", "cluster": target, "name": "Books"},
                                                          {"op": "move", "photo": photo, "cluster": target}]}
    result = CliRunner().invoke(main, ["edit", "apply", str(exported), "--config", str(config.source), "-q"])
    assert result.exit_code == 0, result.output
    after = pipeline.clusters(config)
    assert after.names[target] == "Books" and after.ids[after.paths.index(photo)] == target
