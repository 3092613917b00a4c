"""The living collection's targets (issue 22), on a labelled photo set whose feature vectors were
extracted once (network time excluded from every number):

1. Stability: cluster a seeded 70 % of the photos, add the other 30 %, ``cluster`` again
   (incremental, the default): the fraction of the first 70 % keeping their cluster id (target
   ≥ 98 %), NMI of the whole against the folder labels beside a full clustering of all photos
   from scratch (target within 0.01), and the time of the incremental run against the full one
   (target ≤ 20 %). ``--recluster`` from the same state is measured too (its ids matched by the
   Hungarian assignment).
2. Corrections: after rename, move, merge, split and exclude on the 70 %, three further runs
   (the 30 % added, ``--recluster``, a plain run) must keep every edit; an edit followed by
   ``undo`` must restore exactly the labels and names before it.
3. Organise: a dry run changes no byte under the target folder, ``image_dir`` or the collection
   database; a run then ``--undo`` leaves the target folder's entries as they were; nothing
   under ``image_dir`` changes.

The photo folders are seeded subsets made of symbolic links to the read-only set under
``--out``; the feature store is shared (``--vectors``, as ``imgclust extract`` left it for the set).

    python scripts/bench_collection.py --set clothing10_testval --vectors /tmp/vectors --out /tmp/bench [--k 10]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

from image_clustering import config_from_dict, pipeline
from image_clustering.collection import EXCLUDED, open_collection
from image_clustering.evaluation import folder_truth

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared"))


def make_config(image_dir: Path, vectors: Path, out: Path, name: str, k) -> object:
    raw = {"paths": {"image_dir": str(image_dir), "model_dir": str(ROOT / "models"), "vector_dir": str(vectors),
                     "cluster_label_dir": str(out / "labels"), "plot_dir": str(out / "plots"),
                     "link_dir": str(out / "links")},
           "model": {"object_name": name, "k": k}}
    return config_from_dict(raw)


def link_photos(source: Path, target: Path, rels: list[str]) -> None:
    for rel in rels:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (target / rel).is_symlink():
            os.symlink(source / rel, target / rel)


def clear_caches(config) -> None:
    """The embedding and k-sweep caches: a full clustering is timed from the features."""
    for path in [config.layout.embedding_cache, config.layout.sweep_cache,
                 *config.layout.feature_dir.glob("find_k.*.labels.npy")]:
        path.unlink(missing_ok=True)


def fresh(config) -> None:
    shutil.rmtree(config.paths.cluster_label_dir, ignore_errors=True)


CPU = {}  # run → CPU seconds of this process (all threads): less sensitive to a busy machine than wall time


def timed(config, recluster=False, name=None):
    start, cpu = time.perf_counter(), time.process_time()
    result = pipeline.cluster(config, progress=False, write=False, recluster=recluster)
    if name:
        CPU[name] = time.process_time() - cpu
    return result, time.perf_counter() - start


def tree_state(folder: Path) -> dict:
    """Every entry under ``folder``: kind, size, mtime, content hash (files), link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), st.st_mtime_ns)
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def stability(args, photos, vectors, out, rels, first) -> dict:
    truth_all = folder_truth(rels)
    grown = out / "grown"
    link_photos(photos, grown, first)
    cfg = make_config(grown, vectors, out / "stability", args.name, args.k)
    fresh(cfg)
    clear_caches(cfg)
    r70, t70 = timed(cfg, name="first")
    before = dict(zip(r70.paths, r70.ids.tolist()))
    link_photos(photos, grown, rels)
    shutil.copy(cfg.layout.collection_db, out / "state70.sqlite")
    rinc, tinc = timed(cfg, name="incremental")
    assert rinc.collection.mode == "incremental", rinc.collection.mode
    after = dict(zip(rinc.paths, rinc.ids.tolist()))
    kept = np.mean([after[p] == c for p, c in before.items()])
    truth = np.array([truth_all[rels.index(p)] for p in rinc.paths])
    # the same grown collection clustered from scratch (no state, caches cleared)
    full_cfg = make_config(grown, vectors, out / "full", args.name, args.k)
    fresh(full_cfg)
    clear_caches(full_cfg)
    rfull, tfull = timed(full_cfg, name="full")
    # --recluster from the 70 % state
    shutil.copy(out / "state70.sqlite", cfg.layout.collection_db)
    clear_caches(cfg)
    rre, tre = timed(cfg, recluster=True, name="recluster")
    re_after = dict(zip(rre.paths, rre.ids.tolist()))
    subject = {}
    if args.new_class:  # a subject absent from the first 70 %: does it become a cluster of its own?
        new_ids = set(rinc.collection.new_clusters)
        of_class = [c for p, c in after.items() if p.startswith(args.new_class + "/")]
        in_new = [p for p, c in after.items() if c in new_ids]
        subject = {"new_class": args.new_class, "new_class_photos": len(of_class),
                   "new_class_in_new_clusters": float(np.mean([c in new_ids for c in of_class])),
                   "new_cluster_sizes": [int(sum(c == i for c in after.values())) for i in sorted(new_ids)],
                   "new_cluster_purity": float(np.mean([p.startswith(args.new_class + "/") for p in in_new]))
                   if in_new else None}
    return {**subject, "photos_first": len(first), "photos_all": len(rels),
            "kept_id_incremental": float(kept),
            "kept_id_recluster": float(np.mean([re_after[p] == c for p, c in before.items()])),
            "new_clusters_incremental": len(rinc.collection.new_clusters),
            "nmi_incremental": float(nmi(truth, rinc.labels)), "nmi_full": float(nmi(truth, rfull.labels)),
            "nmi_recluster": float(nmi(truth, rre.labels)),
            "nmi_incremental_vs_full": float(nmi(rfull.labels, rinc.labels)),
            "k_incremental": int(rinc.k), "k_full": int(rfull.k),
            "seconds_first": t70, "seconds_incremental": tinc, "seconds_full": tfull, "seconds_recluster": tre,
            "incremental_over_full": tinc / tfull, "cpu_seconds": dict(CPU),
            "incremental_over_full_cpu": CPU["incremental"] / CPU["full"]}


def corrections(args, photos, vectors, out, rels, first) -> dict:
    folder = out / "edited"
    shutil.rmtree(folder, ignore_errors=True)
    link_photos(photos, folder, first)
    cfg = make_config(folder, vectors, out / "corrections", args.name, args.k)
    fresh(cfg)
    r, _ = timed(cfg)
    sizes = {c: int((r.ids == c).sum()) for c in set(r.ids.tolist()) if c >= 0}
    a, b, c, d = sorted(sizes, key=lambda x: -sizes[x])[:4]
    moved = next(p for p, x in zip(r.paths, r.ids.tolist()) if x == c)
    out_photo = next(p for p, x in zip(r.paths, r.ids.tolist()) if x == a)
    pipeline.edit(cfg, "rename", cluster=a, name="first pick")
    pipeline.edit(cfg, "move", photo=moved, cluster=b)
    pipeline.edit(cfg, "merge", into="first pick", other=d)
    pipeline.edit(cfg, "split", cluster=b, k=2)
    pipeline.edit(cfg, "exclude", photo=out_photo)
    with open_collection(cfg.layout.collection_db) as state:
        split = next(e for e in state.edits(active_only=True) if e.op == "split").args

    def holds(result) -> list[str]:
        ids = dict(zip(result.paths, result.ids.tolist()))
        names = result.collection.names
        broken = []
        if names.get(a) != "first pick":
            broken.append("rename")
        if ids[moved] not in split["ids"]:  # moved into b, then b split: one of b's pieces
            broken.append("move")
        if d in ids.values():
            broken.append("merge")
        if any(ids[p] != piece for p, piece in split["pieces"].items() if p in ids and p != moved):
            broken.append("split")
        if ids[out_photo] != EXCLUDED:
            broken.append("exclude")
        return broken

    runs = {}
    link_photos(photos, folder, rels)
    runs["incremental with the 30 % added"] = holds(timed(cfg)[0])
    runs["--recluster"] = holds(timed(cfg, recluster=True)[0])
    runs["plain run"] = holds(timed(cfg)[0])
    with open_collection(cfg.layout.collection_db) as state:
        snapshot = (state.labels(), state.names())
    some = next(p for p, x in snapshot[0].items() if x == a)
    pipeline.edit(cfg, "move", photo=some, cluster=b)
    pipeline.edit(cfg, "undo")
    with open_collection(cfg.layout.collection_db) as state:
        restored = (state.labels(), state.names()) == snapshot
        problems = state.check()
    return {"edits_broken_per_run": runs, "undo_restores_exactly": restored, "state_check": problems}


def organise_check(args, photos, vectors, out) -> dict:
    cfg = make_config(out / "edited", vectors, out / "corrections", args.name, args.k)
    target = out / "organised"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    (target / "mine.txt").write_text("a file the user had here\n")
    (target / "first pick").mkdir()
    (target / "first pick" / "note.txt").write_text("the user's own note\n")
    photos_before, target_before = tree_state(cfg.paths.image_dir), tree_state(target)
    db_before = hashlib.sha256(cfg.layout.collection_db.read_bytes()).hexdigest()
    dry = pipeline.organise(cfg, target, "copy", dry_run=True)
    dry_clean = (tree_state(target) == target_before and tree_state(cfg.paths.image_dir) == photos_before
                 and hashlib.sha256(cfg.layout.collection_db.read_bytes()).hexdigest() == db_before)
    start = time.perf_counter()
    done = pipeline.organise(cfg, target, "copy")
    seconds = time.perf_counter() - start
    placed = sum(1 for v in tree_state(target).values() if v[0] == "file") - 2
    pipeline.edit(cfg, "rename", cluster="first pick", name="renamed pick")
    again = pipeline.organise(cfg, target, "copy")
    undone = pipeline.organise(cfg, target, undo=True)
    after = tree_state(target)
    same_entries = {k: v for k, v in after.items() if v[0] != "dir"} == {
        k: v for k, v in target_before.items() if v[0] != "dir"} and set(after) == set(target_before)
    return {"dry_run_changes_nothing": dry_clean, "planned": dry.plan.count("place"), "copied": placed,
            "organise_seconds": seconds, "rerun_after_rename": {a: again.plan.count(a) for a in ("place", "remove")},
            "undo": undone.done, "undo_leaves_target_as_before": same_entries,
            "image_dir_untouched": tree_state(cfg.paths.image_dir) == photos_before,
            "first_run": done.done}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="clothing10_testval")
    parser.add_argument("--name", help="object_name of the feature store (default: from --set)")
    parser.add_argument("--vectors", type=Path, required=True, help="vector_dir holding <name>/ feature stores")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", default=10, type=lambda v: v if v == "auto" else int(v))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--new-class", help="leave this class (folder) out of the first 70 %% entirely")
    parser.add_argument("--only-stability", action="store_true")
    args = parser.parse_args()
    args.name = args.name or args.set.split("_")[0]
    photos = SHARED / "datasets" / args.set
    rels = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file())
    order = rels[:]
    random.Random(args.seed).shuffle(order)
    first = sorted(order[:int(0.7 * len(order))])
    if args.new_class:
        first = [p for p in first if not p.startswith(args.new_class + "/")]
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "grown", ignore_errors=True)
    report = {"set": args.set, "k": args.k, "seed": args.seed}
    report["stability"] = stability(args, photos, args.vectors, args.out, rels, first)
    print(json.dumps(report["stability"], indent=1), flush=True)
    if args.only_stability:
        (args.out / f"collection_{args.set}_{args.new_class}.json").write_text(json.dumps(report, indent=1))
        return
    report["corrections"] = corrections(args, photos, args.vectors, args.out, rels, first)
    print(json.dumps(report["corrections"], indent=1), flush=True)
    report["organise"] = organise_check(args, photos, args.vectors, args.out)
    print(json.dumps(report["organise"], indent=1), flush=True)
    (args.out / f"collection_{args.set}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
