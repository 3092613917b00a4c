"""Issue 21, the second hostile-input audit (D2–D4, D6–D10, D12) and the newcomer's findings: each
case ends in one clear line naming the file or key (exit status 1), never a traceback or a hang."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from image_clustering import ImgclustError, config_from_dict
from image_clustering.cli import main
from image_clustering.config import load_config
from tests.conftest import MODEL_DIR, ROOT, noise_photo
from tests.test_hostile_input import fake_store, one_line_error, without_hanging_on

BASE = {"paths": {"image_dir": "photos"}, "model": {"object_name": "x"}}
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}")


# ---- D3, D6: scheduler addresses ------------------------------------------------------------------

JUNK_SERVER = r"""
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(b"\xff" * 64)  # an 8-byte frame count of 2**64 - 1, and more
    c.close()
"""


@pytest.fixture
def listener():
    """``listener(args)``: a server started with ``python args`` on a free loopback port; killed after."""
    started = []

    def start(*args) -> int:
        port = free_port()
        started.append(subprocess.Popen([sys.executable, *args, str(port)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        wait_for_port(port)
        return port

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.parametrize("server", ["http", "junk"])
def test_a_scheduler_address_where_no_dask_listens_fails_within_the_timeout(tmp_path, make_config, lite0_weights,
                                                                          listener, server):
    if server == "http":
        port = listener("-m", "http.server", "--bind", "127.0.0.1")
    else:
        port = listener("-c", JUNK_SERVER)
    noise_photo(tmp_path / "p" / "a.jpg", 0)
    config = make_config(tmp_path / "p", extractor="efficientnet_lite0")
    address = f"tcp://127.0.0.1:{port}"
    raw = json.loads(config.source.read_text())
    raw["compute"] = {"timeout": 2}
    config.source.write_text(json.dumps(raw))
    start = time.monotonic()
    result = without_hanging_on(tmp_path / "unused", lambda: CliRunner().invoke(
        main, ["extract", "-q", "--config", str(config.source), "--scheduler", address]), seconds=60)
    one_line_error(result, "compute.scheduler", address)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("address", ["file:///etc/passwd", "ws://[::1", "tcp://host:99999", "tcp://host:8786/path"])
def test_a_scheduler_address_dask_cannot_use_is_one_line(tmp_path, address):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(BASE))
    result = CliRunner().invoke(main, ["extract", "--config", str(path), "--scheduler", address])
    one_line_error(result, "--scheduler", repr(address))
    path.write_text(json.dumps({**BASE, "compute": {"scheduler": address}}))
    one_line_error(CliRunner().invoke(main, ["extract", "--config", str(path)]), "compute.scheduler", str(path))


def test_ipv6_and_portless_scheduler_addresses_are_accepted():
    config = config_from_dict(BASE)
    for address in ("tcp://[::1]:8786", "tcp://head", "tls://head.example:8786", "local"):
        assert config.with_scheduler(address).compute.scheduler == address


# ---- D4: compute.workers ----------------------------------------------------------------------------

def test_more_local_workers_than_cpus_are_refused_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    local = {**BASE, "compute": {"scheduler": "local", "workers": 5}}
    with pytest.raises(ImgclustError, match=r"^compute\.workers: 5 .* at most 4"):
        config_from_dict(local)
    assert config_from_dict({**BASE, "compute": {"scheduler": "local", "workers": 4}}).compute.workers == 4
    elsewhere = config_from_dict({**BASE, "compute": {"scheduler": "tcp://head:8786", "workers": 1000}})
    assert elsewhere.compute.workers == 1000  # unused off a LocalCluster
    with pytest.raises(ImgclustError, match=r"^--scheduler local: compute\.workers: 1000"):
        elsewhere.with_scheduler("local")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**BASE, "compute": {"scheduler": "local", "workers": 1000}}))
    one_line_error(CliRunner().invoke(main, ["extract", "--config", str(path)]), "compute.workers", str(path))


@pytest.mark.slow
def test_a_local_cluster_leaves_no_scratch_folders(tmp_path, monkeypatch):
    """The workers' ``dask-scratch-space/worker-*`` folders go with the cluster (TMPDIR is where
    Dask would otherwise put them, for the workers too)."""
    import tempfile

    from image_clustering import distributed
    from image_clustering.config import ComputeConfig

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with distributed.client(ComputeConfig(scheduler="local", workers=1, timeout=60)) as client:
        assert client.submit(sum, [1, 2]).result() == 3
    assert list(tmp_path.iterdir()) == []


# ---- D9: the config file ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "2 MiB"])
def test_a_config_that_is_not_a_small_regular_file_is_one_line(tmp_path, kind):
    path = Path(kind) if kind.startswith("/") else tmp_path / "c.json"
    if kind == "/dev/zero":  # in a process of at most 2 GiB: without the limit it would fill the memory
        import resource

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

        done = subprocess.run([sys.executable, "-m", "image_clustering.cli", "find-k", "--config", str(path)],
                              capture_output=True, text=True, timeout=120, env=PYTHON_ENV, preexec_fn=limit)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-800:]
        assert str(path) in lines[0] and "cannot read config" in lines[0]
        return
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "2 MiB":
        path.write_text(json.dumps({**BASE, "pad": " " * (2 << 20)}))
    result = without_hanging_on(path if kind == "fifo" else tmp_path / "unused",
                                lambda: CliRunner().invoke(main, ["find-k", "--config", str(path)]), seconds=30)
    if kind == "folder":  # click's own check (dir_okay=False): a usage error, exit status 2
        assert result.exit_code == 2 and "is a directory" in result.output and "Traceback" not in result.output
        with pytest.raises(ImgclustError, match=f"^{path}: cannot read config"):
            load_config(path)
    else:
        one_line_error(result, str(path), "cannot read config")


# ---- D12 and item 4(b, c): messages ------------------------------------------------------------------

@pytest.mark.parametrize("model, needle", [
    ({"backend": "pytorch"}, "model.backend: must be null or one of \"tensorflow\", \"jax\", \"torch\" (got 'pytorch')"),
    ({"label_k": 1}, "model.label_k: must be a whole number ≥ 2 or \"auto\" (got 1)"),
    ({"sim": "high"}, "model.sim: must be null or a number from 0 to 1 (got 'high')"),
])
def test_a_bad_value_names_the_key_and_the_allowed_values(model, needle):
    with pytest.raises(ImgclustError) as info:
        config_from_dict({**BASE, "model": {**BASE["model"], **model}})
    assert str(info.value) == needle and "any of the given schemas" not in str(info.value)


@pytest.mark.parametrize("raw, suggestion", [
    ({**BASE, "model": {"object_name": "x", "algoritm": "kmeans"}}, "model.algoritm: unknown key (did you mean 'algorithm'?"),
    ({"paths": {"image_dir": "p", "vectordir": "v"}, "model": {"object_name": "x"}}, "did you mean 'vector_dir'?"),
    ({**BASE, "comptue": {}}, "comptue: unknown key (did you mean 'compute'?"),
])
def test_a_misspelt_key_gets_a_suggestion(raw, suggestion):
    with pytest.raises(ImgclustError, match="unknown key") as info:
        config_from_dict(raw)
    assert suggestion in str(info.value)


def test_run_without_a_config_mentions_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(CliRunner().invoke(main, ["run"]), "configs/configs.json", "--config")


def test_a_link_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
    raw = json.loads(json.dumps(BASE))
    raw["paths"].update(image_dir=str(tmp_path / "p"), link_dir=str(tmp_path / "links"))
    (tmp_path / "links").write_text("a file")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    one_line_error(CliRunner().invoke(main, ["cluster", "--config", str(path)]),
                   "paths.link_dir", "is not a folder", str(path))


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "missing"])
def test_similar_names_what_a_non_photo_is(tmp_path, make_config, kind):
    config = make_config(tmp_path / "p", extractor="inception_v3")
    fake_store(config, 4)
    photo = Path(kind) if kind.startswith("/") else tmp_path / "query.jpg"
    if kind == "fifo":
        os.mkfifo(photo)
    result = without_hanging_on(photo if kind == "fifo" else tmp_path / "unused", lambda: CliRunner().invoke(
        main, ["similar", "-q", "--config", str(config.source), str(photo)]), seconds=30)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    needle = {"fifo": "is a FIFO, not a regular file", "/dev/zero": "is a device, not a regular file",
              "missing": "does not exist"}[kind]
    assert needle in result.output and "no such photo" not in result.output


@pytest.mark.parametrize("kind, needle", [("fifo", "is a FIFO, not a regular file"), ("folder", "is a folder"),
                                          ("loop", "is a symbolic link that loops"), ("gone", "missing")])
def test_a_weights_file_that_is_not_a_file_says_what_it_is(tmp_path, kind, needle):
    from image_clustering.weights import load_manifest

    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((MODEL_DIR / "efficientnet_lite0.json").read_text()) if (
        MODEL_DIR / "efficientnet_lite0.json").is_file() else pytest.skip("no Lite0 manifest in models/")
    (models / "efficientnet_lite0.json").write_text(json.dumps(manifest))
    weights = models / manifest["file"]
    if kind == "fifo":
        os.mkfifo(weights)
    elif kind == "folder":
        weights.mkdir()
    elif kind == "loop":
        weights.symlink_to(weights)
    def load():
        try:
            return load_manifest(models, "efficientnet_lite0", verify=True)
        except ImgclustError as exc:
            return exc

    error = without_hanging_on(weights, load, seconds=20)
    assert isinstance(error, ImgclustError) and str(error).startswith(f"{weights}: weights file {needle}"), error


# ---- D2: the label-words report never links or opens a row outside image_dir ----------------------

@pytest.fixture(scope="module")
def label_collection(tmp_path_factory):
    """Four photos, a secret photo outside, and a label table whose other rows climb out, after
    ``cluster-labels`` (which writes the label-words report): (config, the rows outside)."""
    from tests.test_hostile_labels import photos_beside_a_secret

    tmp_path = tmp_path_factory.mktemp("labels")
    photos, secret = photos_beside_a_secret(tmp_path)
    climb = "../" * (len(photos.resolve().parts) + 2)
    hostile = ["../secret/secret.jpg", str(secret / "secret.jpg"), "escape/secret.jpg", f"{climb}etc/passwd",
               "/etc/passwd", "sub/../../secret/secret.jpg", "./../secret/secret.jpg"]
    rows = [f"p{i}.jpg,{'church,tower' if i < 2 else 'sea,wave'}" for i in range(4)]
    rows += [f'"{h}",sea,wave' for h in hostile]
    table = tmp_path / "labels.csv"
    table.write_text("\n".join(["path,label_1,label_2", *rows]) + "\n", encoding="utf-8")
    raw = {"paths": {"image_dir": str(photos), "vector_dir": str(tmp_path / "vectors"), "label_file": str(table),
                     "cluster_label_dir": str(tmp_path / "labels"), "plot_dir": str(tmp_path / "plots"),
                     "link_dir": str(tmp_path / "links")},
           "model": {"object_name": "test", "label_k": 2}}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["cluster-labels", "-q", "--config", str(tmp_path / "config.json")])
    assert result.exit_code == 0, result.output
    return load_config(tmp_path / "config.json"), hostile


def report_data(index: Path) -> dict:
    text = (index.parent / "data.js").read_text()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def test_the_label_report_links_and_reads_no_row_outside_the_photos(label_collection):
    from PIL import Image

    config, hostile = label_collection
    index = config.plot_dir / "report_labels" / "index.html"
    data = report_data(index)
    hrefs = dict(zip(data["paths"], data["hrefs"]))
    assert {p: hrefs[p] for p in hostile} == {p: None for p in hostile}
    assert all(hrefs[f"p{i}.jpg"] == f"p{i}.jpg" for i in range(4))
    for name in data["atlases"]:  # no thumbnail of the secret photo: it was never opened
        script = (index.parent / name).read_text()
        import base64
        import io

        jpeg = base64.b64decode(script[script.index('"') + 1:script.rindex('"')])
        pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
        green = (pixels[..., 1] > 200) & (pixels[..., 0] < 60) & (pixels[..., 2] < 60)
        assert green.sum() == 0


@pytest.mark.browser
def test_clicking_rows_outside_the_photos_in_the_label_report_loads_nothing(label_collection):
    from tests.conftest import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    config, hostile = label_collection
    index = config.plot_dir / "report_labels" / "index.html"
    photos = config.paths.image_dir.resolve().as_uri() + "/"
    with sync_api.sync_playwright() as p:
        from image_clustering.report_browser import launch

        browser = launch(p)
        try:
            from tests.test_report import open_report

            page = open_report(browser, index)
            popups = []
            page.context.on("page", lambda new: popups.append(new.url))
            shown = page.evaluate("""() => Array.from(document.querySelectorAll('.thumb')).map((b) => {
                b.click();
                const a = document.getElementById('photo-open');
                return [document.getElementById('photo-path').textContent, a.getAttribute('href'),
                        document.getElementById('photo-img').getAttribute('src')];
            })""")
            for path in hostile:  # hover and click its point on the map
                x, y = page.evaluate("(p) => window.imgclustReport.screenPosition(p)", path)
                page.mouse.move(x, y)
                page.mouse.click(x, y)
            page.wait_for_timeout(300)
            requests = list(page.requests)
        finally:
            browser.close()
    by_path = {path: (href, src) for path, href, src in shown}
    assert set(hostile) <= set(by_path)
    assert all(by_path[h] == (None, None) for h in hostile), by_path
    assert by_path["p0.jpg"][0].endswith("p0.jpg")
    report_dir = index.parent.resolve().as_uri() + "/"
    for url in requests + popups:
        if url.startswith("file:"):
            assert url.startswith((photos, report_dir)), url
    assert not any("passwd" in url or "secret" in url for url in requests + popups)


# ---- D7: label tables are UTF-8 -------------------------------------------------------------------

def latin1_collection(tmp_path, make_config, bom=False):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        Image.new("RGB", (40, 30), (40 * i, 30, 30)).save(photos / f"p{i}.jpg")
    rows = [f"p{i}.jpg,café,{'tree' if i < 3 else 'sky'}" for i in range(6)]
    text = "path,label_1,label_2\n" + "\n".join(rows) + "\n"
    table = tmp_path / "labels.csv"
    table.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8") if bom else text.encode("latin-1"))
    config = make_config(photos)
    raw = json.loads(config.source.read_text())
    raw["paths"]["label_file"] = str(table)
    config.source.write_text(json.dumps(raw))
    return config, table


@pytest.mark.parametrize("command", ["cluster-labels", "tag-network"])
def test_a_latin1_label_table_is_one_line_naming_the_file_and_line(tmp_path, make_config, command):
    config, table = latin1_collection(tmp_path, make_config)
    result = CliRunner().invoke(main, [command, "-q", "--config", str(config.source)])
    one_line_error(result, f"{table}: line 2:", "not UTF-8")


def test_a_utf8_table_with_a_byte_order_mark_draws_its_words(tmp_path, make_config):
    config, _ = latin1_collection(tmp_path, make_config, bom=True)
    result = CliRunner().invoke(main, ["tag-network", "-q", "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    nodes = (config.paths.cluster_label_dir / "test_nodes.csv").read_text(encoding="utf-8")
    assert "café" in nodes


def test_the_network_picture_draws_words_that_are_not_unicode(tmp_path):
    """A word with undecodable bytes (from a file name, say) reaches matplotlib as U+FFFD."""
    from image_clustering.network import layout, render, tag_graph
    from image_clustering.tags import TagTable

    table = TagTable(["a.jpg", "b.jpg"], [{os.fsdecode(b"caf\xe9"): 1.0}, {"tree": 1.0}], [1, 1])
    graph = tag_graph(table)
    render(graph, layout(graph), {}, tmp_path / "net.png", "title")
    assert (tmp_path / "net.png").stat().st_size > 0


# ---- D8: damaged report caches are rebuilt --------------------------------------------------------

@pytest.fixture(scope="module")
def clustered_once(tmp_path_factory):
    """A collection of 12 stand-in photos (random vectors) after find-k and cluster, built once."""
    root = tmp_path_factory.mktemp("clustered")
    raw = {"paths": {"image_dir": str(root / "p"), "model_dir": str(MODEL_DIR), "vector_dir": str(root / "vectors"),
                     "cluster_label_dir": str(root / "labels"), "plot_dir": str(root / "plots"),
                     "link_dir": str(root / "links")},
           "model": {"object_name": "test", "batch_size": 4, "extractor": "inception_v3", "k_max": 5}}
    (root / "config.json").write_text(json.dumps(raw))
    fake_store(config_from_dict(raw), 12)
    for command in ("find-k", "cluster"):
        result = CliRunner().invoke(main, [command, "-q", "--config", str(root / "config.json")])
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def clustered(clustered_once, tmp_path):
    """A copy of :func:`clustered_once` of the test's own (file times kept: nothing looks changed),
    without its link folders: a copy of those is not imgclust's (its manifest proves the original)."""
    import shutil

    root = tmp_path / "c"
    shutil.copytree(clustered_once, root, symlinks=True, ignore=lambda d, names: ["links"] if Path(d) == clustered_once else [])
    raw = json.loads((root / "config.json").read_text())
    raw["paths"] = {k: v.replace(str(clustered_once), str(root)) for k, v in raw["paths"].items()}
    (root / "config.json").write_text(json.dumps(raw))
    config = load_config(root / "config.json")
    (config.feature_dir / "run_log.json").write_text(json.dumps({"extract": {"seconds": 1.0, "computed": 12}}))
    return config


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        os.truncate(path, min(37, path.stat().st_size - 1))
    elif how == "garbage":
        path.write_bytes(b"PK\x03\x04" + os.urandom(300))
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a valid file of the wrong shape
        np.save(path, np.zeros((2, 3), np.int16)) if path.suffix == ".npy" else np.savez(
            path, key=np.array("x"), index=np.zeros(3), similarity=np.zeros(3))


@pytest.mark.parametrize("cache", ["neighbours.npz", "find_k.labels.npy"])
@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "wrong shape"])
def test_a_damaged_report_cache_is_rebuilt(clustered, cache, how):
    args = ["report", "-q", "--config", str(clustered.source)]
    assert CliRunner().invoke(main, args).exit_code == 0
    if cache == "neighbours.npz":
        path = clustered.feature_dir / "neighbours.npz"
    else:
        (path,) = clustered.feature_dir.glob("find_k.*.labels.npy")
    if how == "wrong shape" and cache == "neighbours.npz":  # the right key, arrays of the wrong shape
        with np.load(path) as cached:
            key = cached["key"]
        np.savez(path.with_suffix(""), key=key, index=np.zeros(3, np.int32), similarity=np.zeros(3, np.float32))
    else:
        damage(path, how)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Traceback" not in result.output and "Aborted" not in result.output, result.output
    data = report_data(clustered.plot_dir / "report" / "index.html")
    assert data["n"] == 12 and data["neighbours"] is not None and len(data["clusterings"]) >= 1
    again = CliRunner().invoke(main, ["find-k", "-q", "--config", str(clustered.source)])
    assert again.exit_code == 0, again.output  # fits the sweep again
    assert CliRunner().invoke(main, args).exit_code == 0
    data = report_data(clustered.plot_dir / "report" / "index.html")
    assert len(data["clusterings"]) >= 2  # the clustering and the sweep's k-means per k


@pytest.mark.parametrize("name, content", [("embedding.npz", "wrong shape"), ("evaluation", b"{"),
                                           ("evaluation", b'{"NMI": [1, 2], "ARI": {"x": 1}}')])
def test_a_damaged_embedding_cache_or_scores_file_is_not_a_traceback(clustered, name, content):
    if name == "embedding.npz":  # the right key, an embedding of the wrong shape
        path = clustered.layout.embedding_cache
        with np.load(path) as cached:
            key = cached["key"]
        np.savez(path.with_suffix(""), key=key, embedding=np.zeros((3, 2), np.float32))
    else:
        clustered.layout.evaluation_json().write_bytes(content)
    for command in ("cluster", "report"):
        result = CliRunner().invoke(main, [command, "-q", "--config", str(clustered.source)])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("log", ["[1, 2]", '{"extract": 5}', '{"extract": {"seconds": "soon", "computed": []}}',
                                 '"text"', "{", ""])
def test_a_run_log_of_the_wrong_shape_is_ignored(clustered, log):
    (clustered.feature_dir / "run_log.json").write_text(log)
    for command in ("report", "cluster"):
        result = CliRunner().invoke(main, [command, "-q", "--config", str(clustered.source)])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output


# ---- D10: a full disk under vector_dir ------------------------------------------------------------

def test_a_full_vector_dir_names_the_file_and_says_no_space(tmp_path, make_config, small_disk, random_extractor,
                                                             monkeypatch):
    from image_clustering import pipeline

    monkeypatch.setattr(pipeline, "_network", lambda config, name: random_extractor[name])
    disk = small_disk("48k")
    for i in range(8):
        noise_photo(tmp_path / "p" / f"{i}.jpg", i)
    config = make_config(tmp_path / "p", vector_dir=disk / "vectors", extractor="inception_v3")
    result = CliRunner().invoke(main, ["extract", "-q", "--config", str(config.source)])
    one_line_error(result, "No space left on device", f"{disk}/vectors/")
    assert "requested and" not in result.output
    line = result.output.strip()
    named = Path(line.split(": ")[1])  # "Error: <file>: No space left on device"
    assert named.name and disk in named.parents, line


def test_a_short_write_by_numpy_on_a_full_disk_says_no_space_and_names_the_file(small_disk):
    """numpy's ``tofile`` reports a short write as "6400 requested and 5088 written", without errno
    or file name (the audit's message): the atomic writer turns it into ENOSPC naming the target."""
    import errno

    from image_clustering.atomic import atomic_path

    disk = small_disk("48k")
    (disk / "filler").write_bytes(b"x" * 28672)
    target = disk / "vectors" / "shard.features.npy"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            np.save(tmp, np.zeros(6400, np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target), repr(info.value)
    assert "No space left on device" in str(info.value)
    assert list(target.parent.iterdir()) == []  # no temporary file left


# ---- D12: ocr lists what it skips ---------------------------------------------------------------

def test_ocr_lists_a_skipped_fifo_in_its_failures(tmp_path, make_config):
    import csv
    import shutil

    if shutil.which("tesseract") is None or not pytest.importorskip("pytesseract"):
        pytest.skip("tesseract is not installed")
    photos = tmp_path / "p"
    noise_photo(photos / "a.jpg", 0)
    os.mkfifo(photos / "pipe.jpg")
    config = make_config(photos)
    result = without_hanging_on(photos / "pipe.jpg", lambda: CliRunner().invoke(
        main, ["ocr", "-q", "--config", str(config.source)]), seconds=120)
    assert result.exit_code == 0, result.output
    with open(config.layout.ocr_dir / "failures.csv", newline="") as f:
        rows = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert rows == {"pipe.jpg": "not a regular file (FIFO)"}
    assert "1 failed" in result.output


# ---- item 4(a): progress reaches a log ------------------------------------------------------------

PROGRESS_SNIPPET = r"""
import time
from image_clustering.progress import progress_bar
with progress_bar(total=30, unit="photos", desc="extract") as bar:
    for i in range(30):
        time.sleep(0.05)
        bar.update(1)
with progress_bar(total=3, unit="photos", desc="short") as bar:  # shorter than the interval: silent
    bar.update(3)
"""

LINE = r"^extract: (\d+)/30 photos, \d+\.\d photos/s, \d\d:\d\d left$"


def test_progress_into_a_pipe_is_plain_lines_at_a_steady_interval():
    import re

    done = subprocess.run([sys.executable, "-c", PROGRESS_SNIPPET], capture_output=True, text=True, timeout=60,
                          env={**PYTHON_ENV, "IMGCLUST_PROGRESS_SECONDS": "0.3"})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "short" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) >= 3 and all(re.match(LINE, line) for line in lines), lines
    counts = [int(re.match(LINE, line).group(1)) for line in lines]
    assert counts == sorted(counts) and counts[-1] == 30 and counts[0] < 30


@pytest.mark.slow
def test_extract_into_a_pipe_logs_its_progress(tmp_path, make_config, lite0_weights):
    for i in range(12):
        noise_photo(tmp_path / "p" / f"{i:02d}.jpg", i)
    config = make_config(tmp_path / "p", extractor="efficientnet_lite0", batch_size=2)
    done = subprocess.run([sys.executable, "-m", "image_clustering.cli", "extract", "--config", str(config.source)],
                          capture_output=True, text=True, timeout=300,
                          env={**PYTHON_ENV, "IMGCLUST_PROGRESS_SECONDS": "0.001"})
    assert done.returncode == 0, done.stderr[-2000:]
    progress = [line for line in done.stderr.splitlines() if line.startswith("extract: ")]
    assert progress and progress[-1].startswith("extract: 12/12 photos, ") and "\r" not in done.stderr, done.stderr


# ---- item 4(d): a collection too small to group ---------------------------------------------------

@pytest.mark.parametrize("photos, model, needle", [
    (2, {}, "2 photos in"), (1, {}, "1 photo in"),
    (4, {"algorithm": "hdbscan"}, "at least 5 (model.min_cluster_size"),
    (5, {"k": 6, "k_max": 10}, "at least 6 (model.k is 6)"),
])
def test_run_refuses_a_too_small_collection_before_loading_anything(tmp_path, make_config, monkeypatch,
                                                                   photos, model, needle):
    from image_clustering import pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("weights fetched or a network loaded")

    monkeypatch.setattr(pipeline, "download", forbidden)
    monkeypatch.setattr(pipeline, "_network", forbidden)
    for i in range(photos):
        noise_photo(tmp_path / "p" / f"{i}.jpg", i)
    config = make_config(tmp_path / "p", **model)
    result = CliRunner().invoke(main, ["run", "-q", "--config", str(config.source)])
    one_line_error(result, "paths.image_dir", needle)
    if not model:
        assert "at least 3 (t-SNE/UMAP and the k sweep need 3)" in result.output


def test_three_photos_are_enough(tmp_path, make_config):
    from image_clustering import pipeline

    config = make_config(tmp_path / "p", extractor="inception_v3", k_max=5)
    fake_store(config, 3)
    pipeline.check_enough_photos(config)
    assert pipeline.cluster(config, progress=False).k >= 1


def test_two_extracted_photos_name_the_photo_folder(tmp_path, make_config):
    config = make_config(tmp_path / "p", extractor="inception_v3")
    fake_store(config, 2)
    result = CliRunner().invoke(main, ["find-k", "-q", "--config", str(config.source)])
    one_line_error(result, "paths.image_dir: need at least 3 images", str(config.paths.image_dir))


# ---- item 4(e): --help describes today's pipeline -----------------------------------------------

def test_help_describes_todays_pipeline():
    from image_clustering.config import DEFAULT_MODEL

    text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert DEFAULT_MODEL["extractor"] == ["inception_v3", "efficientnet_lite0"] and DEFAULT_MODEL["algorithm"] == "leiden"
    for words in ("InceptionV3 and EfficientNet-Lite0", "PCA", "t-SNE (or UMAP)", "k-means sweep", "Leiden communities",
                  "At least 3 photos", "--config"):
        assert words in text, words
    assert "embedding, k-means." not in text  # the first tool's description


def test_a_utf16_label_table_is_refused_at_its_header(tmp_path):
    from image_clustering.tags import read_tag_table

    table = tmp_path / "t.csv"
    table.write_text("path,label_1\na.jpg,café\n", encoding="utf-16")
    with pytest.raises(ImgclustError, match=f"^{table}: line 1: .* is not UTF-8 text"):
        read_tag_table(table)
