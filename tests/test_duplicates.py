"""imgclust duplicates: the grade ladder, the keeper rule, one group per photo, outliers, and the
files on real photos (edited copies made in tmp_path from the shared sets)."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from image_clustering import config_from_dict
from image_clustering.duplicates import (
    GRADES,
    PhotoFacts,
    Thresholds,
    find_duplicates,
    grade_pairs,
    grade_rank,
    group_pairs,
    keeper,
    outlier_scores,
    phash_bits,
    photo_facts,
    read_facts,
    trim_uniform,
)
from image_clustering.errors import ImgclustError

from .conftest import DATASETS, needs_shared

CLOTHING = DATASETS / "clothing10_testval"
UKBENCH = DATASETS / "ukbench_groups14"


def _photos(folder: Path, n: int) -> list[Path]:
    return sorted(needs_shared(folder).rglob("*.jpg"))[:n]


def _with_exif_time(src: Path, out: Path, stamp: str) -> Path:
    with Image.open(src) as im:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = stamp
        im.save(out, exif=exif, quality=95)
    return out


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def _phash(path: Path) -> tuple[int, int]:
    got = photo_facts(path)
    assert got is not None
    return got[0], got[1]


def test_phash_survives_reencoding_and_mirror_hash_matches_a_flipped_copy(tmp_path):
    src = _photos(CLOTHING, 1)[0]
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.save(tmp_path / "q30.jpg", quality=30)
        im.resize((im.width // 2, im.height // 2)).save(tmp_path / "half.jpg")
        ImageOps.mirror(im).save(tmp_path / "flip.jpg", quality=95)
    h, mirror = _phash(src)
    assert _hamming(h, _phash(tmp_path / "q30.jpg")[0]) <= 4
    assert _hamming(h, _phash(tmp_path / "half.jpg")[0]) <= 4
    flipped = _phash(tmp_path / "flip.jpg")[0]
    assert _hamming(mirror, flipped) <= 4 < _hamming(h, flipped)
    other = _phash(_photos(CLOTHING, 40)[-1])[0]
    assert _hamming(h, other) > 16


def test_trimmed_hash_sees_through_a_border(tmp_path):
    src = _photos(CLOTHING, 1)[0]
    with Image.open(src) as im:
        ImageOps.expand(im.convert("RGB"), border=60, fill="white").save(tmp_path / "framed.jpg", quality=90)
    plain, inside = photo_facts(src), photo_facts(tmp_path / "framed.jpg")
    assert _hamming(plain[2], inside[2]) <= 6 < _hamming(plain[0], inside[0])
    grey = np.full((50, 80), 255.0)
    grey[10:40, 20:70] = np.random.default_rng(0).uniform(0, 255, (30, 50))
    assert trim_uniform(grey).shape == (30, 50)


def test_phash_bits_by_hand():
    # A left-bright, right-dark square: only the coefficients with horizontal frequency differ from 0.
    grey = np.zeros((32, 32), np.float32)
    grey[:, :16] = 255
    bits = phash_bits(grey)
    assert 0 <= bits < 2**64
    assert phash_bits(grey[:, ::-1]) != bits


def _facts(n, **kw) -> PhotoFacts:
    facts = PhotoFacts.empty(n)
    for name, values in kw.items():
        getattr(facts, name)[:] = values
    return facts


def _unit(rows) -> np.ndarray:
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_grade_ladder_on_arrays():
    t = Thresholds()
    # rows: 0 and 1 same bytes; 0 and 2 very close; 0 and 3 burst-close with EXIF 2 s apart; 0 and 4 same scene
    base = np.eye(8, dtype=np.float32)[0]
    other = np.eye(8, dtype=np.float32)[1]

    def at(cos):
        return cos * base + np.sqrt(1 - cos**2) * other

    unit = _unit([base, base, at(0.99), at((t.burst_cosine + t.near_alone) / 2), at(t.scene_cosine + 0.01)])
    facts = _facts(5, time=[100, np.nan, np.nan, 102, 101], read=[True] * 5,
                   phash=[[0] * 4, [0] * 4, [0] * 4, [2**64 - 1] * 4, [2**64 - 1] * 4])
    facts.content[:] = ["aa", "aa", "bb", "cc", "dd"]
    pairs = np.array([[0, 1], [0, 2], [0, 3], [0, 4]])
    rank, cos = grade_pairs(pairs, unit, facts, t)
    assert [GRADES[r - 1] for r in rank] == ["exact", "near-identical", "burst", "same scene"]
    # 60 s apart is no burst: what is left is the look alone
    facts.time[3] = 160
    assert grade_pairs(pairs[2:3], unit, facts, t)[0][0] == grade_rank("same scene")


def test_same_scene_joins_by_complete_linkage_and_no_photo_is_in_two_groups():
    # a–b and b–c are same scene but a–c is not: single linkage would chain all three.
    ranks = {(0, 1): 1, (1, 2): 1, (0, 2): 0, (3, 4): 3}

    def pair_rank(p):
        return np.array([ranks.get((min(i, j), max(i, j)), 0) for i, j in p])

    pairs = np.array([[0, 1], [1, 2], [3, 4]])
    groups = group_pairs(5, pairs, np.array([1, 1, 3], np.int8), np.array([0.8, 0.75, 0.97], np.float32), 1,
                         pair_rank)
    assert [GRADES[g - 1] for g in groups.grade] == ["near-identical", "same scene"]
    assert groups.group.tolist() == [1, 1, -1, 0, 0]
    # above "same scene", the same pairs give only the near-identical group
    groups = group_pairs(5, pairs, np.array([1, 1, 3], np.int8), np.array([0.8, 0.75, 0.97], np.float32), 3,
                         pair_rank)
    assert groups.group.tolist() == [-1, -1, -1, 0, 0]


def test_keeper_rule_pixels_then_sharpness_then_time_then_path(tmp_path):
    src = _photos(CLOTHING, 1)[0]
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.save(tmp_path / "big.jpg", quality=95)
        small = im.resize((im.width // 2, im.height // 2))
        small.save(tmp_path / "small_sharp.jpg", quality=95)
        small.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "small_blurred.jpg", quality=95)
    files = [tmp_path / n for n in ("small_blurred.jpg", "big.jpg", "small_sharp.jpg")]
    names = [f.name for f in files]
    facts = read_facts(files, np.arange(3))
    assert keeper(np.arange(3), names, facts) == 1  # most pixels
    assert keeper(np.array([0, 2]), names, facts) == 2  # same size: the sharper
    # same bytes: the earlier EXIF time, then the shorter path
    late = _with_exif_time(tmp_path / "small_sharp.jpg", tmp_path / "late.jpg", "2020:01:01 10:00:05")
    early = _with_exif_time(tmp_path / "small_sharp.jpg", tmp_path / "early_but_long_name.jpg", "2020:01:01 10:00:01")
    files = [late, early]
    facts = read_facts(files, np.arange(2))
    facts.sharpness[:] = 1.0  # equal on purpose: the time decides
    assert keeper(np.arange(2), [f.name for f in files], facts) == 1
    facts.time[:] = np.nan
    assert keeper(np.arange(2), [f.name for f in files], facts) == 0


def test_burst_needs_exif_times_within_seconds(tmp_path):
    a, b = _photos(UKBENCH, 2)  # two views of one object, 16 s apart in their own EXIF
    shots = [_with_exif_time(a, tmp_path / "1.jpg", "2021:06:01 12:00:00"),
             _with_exif_time(b, tmp_path / "2.jpg", "2021:06:01 12:00:02"),
             _with_exif_time(b, tmp_path / "3.jpg", "2021:06:01 12:05:00")]
    facts = read_facts(shots, np.arange(3))
    assert facts.time[1] - facts.time[0] == 2
    unit = _unit([[1, 0], [1, 0.3], [1, 0.3]])  # cosine 0.958 … as a burst's neighbours have
    t = Thresholds(near_alone=0.999, near_cosine=0.999)
    rank, _ = grade_pairs(np.array([[0, 1], [0, 2]]), unit, facts, t)
    assert [GRADES[r - 1] for r in rank] == ["burst", "same scene"]


def test_outlier_score_is_the_distance_to_the_kth_neighbour():
    rng = np.random.default_rng(0)
    crowd = rng.normal(0, 0.05, (40, 16)) + np.eye(16)[0]
    odd = np.eye(16)[5]
    groups, index, sim = find_duplicates(np.vstack([crowd, odd]).astype(np.float32), None, "same scene")
    scores = outlier_scores(sim, k=5)
    assert int(np.argmax(scores)) == 40
    assert scores[40] == pytest.approx(1 - sim[40, 4])


def test_grade_config_key_is_checked(tmp_path):
    raw = {"paths": {"image_dir": str(tmp_path / "photos")}, "model": {"object_name": "x"},
           "duplicates": {"grade": "similar"}}
    with pytest.raises(ImgclustError, match=r"duplicates\.grade"):
        config_from_dict(raw, base_dir=tmp_path)
    raw["duplicates"]["grade"] = "same scene"
    assert config_from_dict(raw, base_dir=tmp_path).duplicates.grade == "same scene"
    del raw["duplicates"]
    assert config_from_dict(raw, base_dir=tmp_path).duplicates.grade == "burst"


def _edits(src: Path, out: Path) -> dict[str, Path]:
    """An exact copy and four edits of ``src`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    made = {"exact": out / f"{src.stem}.exact.jpg"}
    shutil.copyfile(src, made["exact"])
    with Image.open(src) as im:
        im = im.convert("RGB")
        for kind, edited in {"q30": im, "half": im.resize((im.width // 2, im.height // 2)),
                             "flip": ImageOps.mirror(im), "caption": _caption(im)}.items():
            made[kind] = out / f"{src.stem}.{kind}.jpg"
            edited.save(made[kind], quality=30 if kind == "q30" else 90)
    return made


def _caption(im: Image.Image) -> Image.Image:
    im = im.copy()
    ImageDraw.Draw(im).text((10, im.height - 30), "Holidays 2020", fill=(255, 255, 0))
    return im


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.shared
@pytest.mark.slow
def test_duplicates_on_real_photos(tmp_path, make_config, real_weights, lite0_weights):
    from click.testing import CliRunner

    from image_clustering.cli import main

    photos = tmp_path / "photos"
    distinct = _photos(CLOTHING, 30)
    originals = distinct[:10]
    for p in distinct:
        (photos / "album").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, photos / "album" / p.name)
    copies = {p.name: _edits(p, photos / "edited") for p in originals}
    for p in _photos(UKBENCH, 8):  # two objects, four views each: same scene
        (photos / "objects" / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, photos / "objects" / p.parent.name / p.name)
    before = _digests(photos)
    config = make_config(photos)
    raw = json.loads(config.source.read_text())
    raw["duplicates"] = {"grade": "near-identical"}
    config.source.write_text(json.dumps(raw))

    runner = CliRunner()
    assert runner.invoke(main, ["extract", "--config", str(config.source), "-q"]).exit_code == 0
    result = runner.invoke(main, ["duplicates", "--config", str(config.source), "-q"])
    assert result.exit_code == 0, result.output
    assert "duplicates: " in result.output

    table = tmp_path / "labels" / "test_duplicates.csv"
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["group", "grade", "path", "keeper", "similarity"]
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths))  # no photo in two groups
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for name, made in copies.items():
        want = {f"album/{name}", *(p.relative_to(photos).as_posix() for p in made.values())}
        assert any({r["path"] for r in g} == want for g in groups.values()), name
    # Other views of one round tin can pass for near-identical (docs/benchmarks.md, "Duplicates"),
    # but never join another object or a clothing photo.
    views = [g for g in groups.values() if not any(r["path"].startswith(("album/", "edited/")) for r in g)]
    assert len(groups) == 10 + len(views)
    assert all(len({r["path"].split("/")[1] for r in g}) == 1 for g in views)
    groups = {k: g for k, g in groups.items() if g not in views}
    for g in groups.values():
        assert [r["keeper"] for r in g] == ["yes"] + [""] * (len(g) - 1)  # keeper first
        # the keeper rule: most pixels, then sharpest (a caption's drawn text counts as detail)
        facts = [photo_facts(photos / r["path"]) for r in g]
        assert max((f[4], f[5]) for f in facts) == (facts[0][4], facts[0][5])
        # ... then the shorter path: an original and its exact copy tie on everything else
        kinds = [r["path"].rsplit(".", 2)[-2] if r["path"].startswith("edited/") else "original" for r in g]
        assert kinds.index("original") < kinds.index("exact")
        grades = {kind: r["grade"] for kind, r in zip(kinds[1:], g[1:])}
        assert set(grades.values()) <= {"exact", "near-identical"}
    doc = json.loads((tmp_path / "labels" / "test_duplicates.json").read_text())
    assert doc["keeper_rule"].startswith("largest pixel count") and len(doc["groups"]) == 10 + len(views)
    assert all(p["grade"] in GRADES for g in doc["groups"] for p in g["pairs"] if p["grade"])
    pairs = {(p["a"], p["b"]): p["grade"] for g in doc["groups"] for p in g["pairs"]}
    for name, made in copies.items():
        exact = made["exact"].relative_to(photos).as_posix()
        assert pairs.get((f"album/{name}", exact), pairs.get((exact, f"album/{name}"))) == "exact"

    links = tmp_path / "links" / "test_duplicates"
    folders = sorted(p for p in links.iterdir() if p.is_dir())
    assert len(folders) == 10 + len(views)
    keepers = {g[0]["path"] for g in groups.values()} | {min(v["path"] for v in g if v["keeper"]) for g in views}
    for folder in folders:
        targets = {os.path.realpath(p) for p in folder.iterdir()}
        assert all(t.startswith(str(photos)) for t in targets)
        first = folder / sorted(os.listdir(folder))[0]  # the keeper comes first in the folder
        assert first.name.startswith("0-keeper__") and Path(os.path.realpath(first)).relative_to(photos).as_posix() in keepers
    with open(tmp_path / "labels" / "test_outliers.csv", newline="") as f:
        outliers = list(csv.DictReader(f))
    assert len(outliers) == 50 and outliers[0]["rank"] == "1"
    assert float(outliers[0]["score"]) >= float(outliers[-1]["score"])
    assert _digests(photos) == before  # nothing deleted, moved or changed
    prefix = "window.IMGCLUST_DUPLICATES = "
    data = (tmp_path / "plots" / "test" / "report" / "duplicates_data.js").read_text()
    assert data.startswith(prefix) and "<" not in data  # the report's tabs read it as a script
    tabs = json.loads(data[len(prefix):].strip().rstrip(";"))
    assert len(tabs["groups"]) == 10 + len(views) and len(tabs["outliers"]) == 50
    first = next(iter(groups))
    assert tabs["groups"][int(first)]["members"][0][0] == groups[first][0]["path"]  # keeper first

    # same scene: the ukbench views join, object by object
    raw["duplicates"] = {"grade": "same scene"}
    config.source.write_text(json.dumps(raw))
    assert runner.invoke(main, ["duplicates", "--config", str(config.source), "-q"]).exit_code == 0
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    views = {}
    for r in rows:
        if r["path"].startswith("objects/"):
            views.setdefault(r["group"], set()).add(r["path"])
    assert sorted(len(v) for v in views.values()) == [4, 4]
    assert all(r["grade"] in ("same scene", "near-identical") for r in rows if r["path"].startswith("objects/"))
    assert _digests(photos) == before


@pytest.mark.browser
@pytest.mark.shared
def test_report_tabs_show_groups_keeper_first_and_outliers(tmp_path):
    """The Duplicates and Outliers tabs in headless Chromium, from a report of 8 ukbench photos
    and a duplicates data file written as ``imgclust duplicates`` writes it."""
    from image_clustering.duplicates import DuplicateGroup
    from image_clustering.duplicates_outputs import write_report_data
    from image_clustering.report import ReportClustering, build_report

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    photos = tmp_path / "photos"
    for p in _photos(UKBENCH, 8):
        (photos / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, photos / p.parent.name / p.name)
    paths = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    labels = np.repeat([0, 1], 4)
    index = build_report(tmp_path / "report", photos, paths, np.random.default_rng(0).normal(size=(8, 2)),
                         [ReportClustering("two", labels, np.zeros(8), True)])
    groups = [DuplicateGroup("same scene", [1, 0, 2, 3], ["", "same scene", "same scene", "same scene"],
                             [1.0, 0.8, 0.7, 0.66], []),
              DuplicateGroup("same scene", [4, 5, 6, 7], ["", "same scene", "same scene", "same scene"],
                             [1.0, 0.9, 0.8, 0.7], [])]
    write_report_data(tmp_path / "report", photos, paths, groups, "same scene", [7, 3], np.linspace(0, 1, 8),
                      np.array([6, 0, 0, 2, 5, 4, 7, 6]), 5)
    from image_clustering.report_browser import launch

    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(bypass_csp=True).new_page()  # the probes below evaluate strings
        page.route(lambda url: not url.startswith(("file:", "data:", "blob:")), lambda route: route.abort())
        page.goto(index.as_uri())
        page.click("nav button[data-tab=duplicates]")
        assert page.locator("#tab-duplicates").is_visible() and not page.locator("#tab-clusters").is_visible()
        assert page.locator(".dup-group").count() == 2
        first = page.locator(".dup-group").first.locator("img")
        assert first.count() == 4 and "keeper" in first.first.get_attribute("class")
        assert paths[1] in first.first.get_attribute("title")  # the keeper, first
        page.wait_for_function("[...document.querySelectorAll('#tab-duplicates .dup-thumb')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        first.nth(2).click()
        assert page.locator("#dup-overlay figure").count() == 2  # beside its keeper
        assert page.evaluate("[...document.querySelectorAll('#dup-overlay img')].map(i => i.naturalWidth)") == [640, 640]
        page.locator("#dup-overlay").click()
        assert page.locator("#dup-overlay").is_hidden()
        page.click("nav button[data-tab=outliers]")
        assert page.locator("#tab-outliers .dup-thumb").count() == 2
        page.click("nav button[data-tab=clusters]")
        assert page.locator("#tab-outliers").is_hidden()
        browser.close()


def test_facts_cache_reads_each_photo_version_once(tmp_path, monkeypatch):
    from image_clustering import duplicates

    files = []
    for i, src in enumerate(_photos(CLOTHING, 3)):
        files.append(tmp_path / f"{i}.jpg")
        shutil.copyfile(src, files[-1])
    names = [f.name for f in files]
    cache = tmp_path / "cache" / "facts.npz"
    first = duplicates.cached_facts(cache, files, names, np.arange(3))
    read = []
    monkeypatch.setattr(duplicates, "photo_facts", lambda p: read.append(p.name) or None)
    again = duplicates.cached_facts(cache, files, names, np.array([0, 2]))
    assert read == [] and (again.phash[[0, 2]] == first.phash[[0, 2]]).all() and again.content[2] == first.content[2]
    os.utime(files[2], ns=(0, 0))  # changed (its time): read again
    duplicates.cached_facts(cache, files, names, np.arange(3))
    assert read == ["2.jpg"]
    with np.load(cache) as z:
        assert sorted(z["path"]) == names


def test_keeper_link_comes_first_in_its_group_folder(tmp_path):
    """The keeper's link is named ``0-keeper__<flattened path>``, so a listing by name shows it
    first, even when its path sorts last; the other links keep their plain names."""
    from image_clustering.duplicates import DuplicateGroup
    from image_clustering.duplicates_outputs import KEEPER_PREFIX, link_duplicates
    from image_clustering.outputs import NAME_MAX
    from image_clustering.ownership import read_manifest

    photos = tmp_path / "photos"
    long_name = "z" * (NAME_MAX - 4) + ".jpg"  # longest allowed: the prefix must still fit in front
    paths = ["a/1.jpg", "b/2.jpg", "z/9.jpg", "c.jpg", long_name]
    for rel in paths:
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        (photos / rel).write_bytes(rel.encode())
    groups = [DuplicateGroup("exact", [2, 0, 1], ["", "exact", "exact"], [1.0, 1.0, 1.0], []),
              DuplicateGroup("exact", [4, 3], ["", "exact"], [1.0, 1.0], [])]
    root = tmp_path / "links" / "test_duplicates"
    for _ in range(2):  # and again: the previous tree is replaced, as imgclust's own
        link_duplicates(root, photos, paths, groups)
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        assert [f.name for f in folders] == ["0_3", "1_2"]
        listing = sorted(os.listdir(folders[0]))
        assert listing == [f"{KEEPER_PREFIX}z__9.jpg", "a__1.jpg", "b__2.jpg"]
        assert os.path.realpath(folders[0] / listing[0]) == str(photos / "z/9.jpg")
        listing = sorted(os.listdir(folders[1]))
        assert listing[0].startswith(KEEPER_PREFIX) and len(os.fsencode(listing[0])) <= NAME_MAX
        assert os.path.realpath(folders[1] / listing[0]) == str(photos / long_name)
        assert read_manifest(root) is not None  # the manifest proves the tree, keeper link included
