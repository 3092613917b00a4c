"""Clustering quality of every method on the labelled photo sets, scored against the folder labels
(NMI, ARI, ACC; imgclust's own ``evaluate`` scoring), with the number of clusters chosen by the
method itself unless the row says "true k".

Features are extracted once per set into ``--out`` (every network a row needs, in one pass) and
reused on re-runs, as are embeddings and k sweeps; each row then runs ``cluster`` through the
library API. The tables go to stdout and, with ``--write``, between the markers in
``docs/benchmarks.md``; raw numbers to ``<out>/results-seed<seed>.json``.

    python scripts/bench_quality.py [--sets ...] [--only ROW ...] [--seed 0] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from image_clustering import config_from_dict, pipeline
from image_clustering.evaluation import folder_truth, score

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("IMGCLUST_SHARED", ROOT.parent / "shared")) / "datasets"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_quality:begin -->", "<!-- bench_quality:end -->"
INCEPTION = "inception_v3"
BOTH = ["inception_v3", "efficientnet_lite0"]
DEV_SETS = ["imagenette_val200", "clothing10_testval", "ukbench_groups14"]
ORIGINAL = {"extractor": INCEPTION, "resize": "squash", "standardize": True, "perplexity": 30, "algorithm": "kmeans"}
COSINE_FEATURES = {"space": "features", "metric": "cosine", "algorithm": "agglomerative", "linkage": "average"}
# Row name → model keys on top of the defaults. Rows sharing an embedding are kept together so
# each embedding is computed once per set. "TRUE_K" is replaced by the set's number of classes.
GRID = {
    "original pipeline, true k (baseline)": {**ORIGINAL, "k": "TRUE_K"},
    "original pipeline, k auto (silhouette)": ORIGINAL,
    "default, true k": {"k": "TRUE_K"},
    "default: Leiden on the feature graph, k by silhouette on t-SNE 2": {},
    "default with photos squashed to the square (resize squash; the 2026-12-07 default)": {"resize": "squash"},
    "spectral on the feature graph, k by silhouette on t-SNE 2": {"algorithm": "spectral"},
    "spectral, true k": {"k": "TRUE_K", "algorithm": "spectral"},
    "k-means on t-SNE 2 (perplexity 20), k by silhouette (previous default)": {"algorithm": "kmeans", "resize": "squash"},
    "k-means on t-SNE 2, perplexity 30, k by silhouette": {"perplexity": 30, "algorithm": "kmeans"},
    "k-means on t-SNE 2, k by Davies-Bouldin": {"k_criterion": "davies_bouldin", "algorithm": "kmeans"},
    "k-means on t-SNE 2, k by elbow knee": {"k_criterion": "elbow", "algorithm": "kmeans"},
    "k-means on t-SNE 2, k by L-method": {"k_criterion": "lmethod", "algorithm": "kmeans"},
    "Ward on t-SNE 2, k by silhouette": {"algorithm": "agglomerative", "linkage": "ward"},
    "average linkage on t-SNE 2, k by silhouette": {"algorithm": "agglomerative", "linkage": "average"},
    "HDBSCAN on t-SNE 2": {"algorithm": "hdbscan"},
    "HDBSCAN on t-SNE 2, min size 10": {"algorithm": "hdbscan", "min_cluster_size": 10},
    "k-means on PCA 50, k by silhouette": {"space": "pca", "algorithm": "kmeans"},
    "Ward on PCA 50, k by silhouette": {"space": "pca", "algorithm": "agglomerative", "linkage": "ward"},
    "k-means on L2 features, k by silhouette": {"space": "features", "algorithm": "kmeans"},
    "average/cosine on L2 features, k by silhouette": COSINE_FEATURES,
    "average/cosine on L2 features, sim 0.5 (imagecluster)": {**COSINE_FEATURES, "sim": 0.5},
    "average/cosine on L2 features, sim 0.4": {**COSINE_FEATURES, "sim": 0.4},
    "k-means on UMAP 10, k by silhouette": {"reducer": "umap", "reduced_dimension": 10, "algorithm": "kmeans"},
    "spectral at the k of UMAP 10 (silhouette)": {"reducer": "umap", "reduced_dimension": 10, "algorithm": "spectral"},
    "HDBSCAN on UMAP 10": {"reducer": "umap", "reduced_dimension": 10, "algorithm": "hdbscan"},
}


def config_for(dataset: Path, out: Path, **model):
    return config_from_dict({
        "paths": {"image_dir": str(dataset), "model_dir": str(ROOT / "models"), "vector_dir": str(out / "vectors"),
                  "cluster_label_dir": str(out / "labels"), "plot_dir": str(out / "plots"), "link_dir": str(out / "link")},
        "model": {"object_name": dataset.name, "k": "auto", **model},
    })


def dataset_dir(name: str, out: Path, per_class: int | None) -> Path:
    """The set's folder, or with ``per_class`` a folder of links to the first N photos of each class
    (built once under ``<out>/subsets``; the shared originals are only linked to)."""
    source = DATASETS / name
    if not per_class:
        return source
    subset = out / "subsets" / f"{name}_{per_class}"
    if not subset.is_dir():
        for cls in sorted(p for p in source.iterdir() if p.is_dir()):
            (subset / cls.name).mkdir(parents=True)
            for photo in sorted(cls.iterdir())[:per_class]:
                (subset / cls.name / photo.name).symlink_to(photo)
    return subset


def run_row(dataset: Path, out: Path, model: dict, classes: int) -> dict:
    model = {key: (classes if value == "TRUE_K" else value) for key, value in model.items()}
    if "k" in model and isinstance(model["k"], int):
        model["k_max"] = max(100, model["k"])
    if "resize" in model:  # other pixels, other vectors: their own stores beside the others, extracted first
        config = config_for(dataset, out / f"resize-{model['resize']}", **model)
        pipeline.extract(config, progress=False)
    else:
        config = config_for(dataset, out, **model)
    start = time.perf_counter()
    result = pipeline.cluster(config, progress=False)
    row = score(folder_truth(result.paths), result.labels)
    row["seconds"] = time.perf_counter() - start
    return row


def tables(results: dict, sets: list[str]) -> str:
    """One markdown table per set, then the mean NMI/ARI over the sets."""
    lines = []
    for name in sets:
        rows = [(label, per_set[name]) for label, per_set in results.items() if name in per_set]
        if not rows:
            continue
        classes = rows[0][1]["classes"]
        lines += [f"#### {name} ({rows[0][1]['images']} images, {classes} classes)", "",
                  "| method | clusters | unclustered | NMI | ARI | ACC | seconds |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {label} | {r['clusters']} | {r['unclustered']} | {r['nmi']:.3f} | {r['ari']:.3f} | "
                  f"{r['acc']:.3f} | {r['seconds']:.0f} |" for label, r in rows]
        lines.append("")
    lines += ["#### Mean over the sets", "", "| method | " + " | ".join(f"{s} NMI" for s in sets) +
              " | mean NMI | mean ARI |", "|---|" + "---|" * (len(sets) + 2)]
    for label, per_set in results.items():
        if all(s in per_set for s in sets):
            nmi = [per_set[s]["nmi"] for s in sets]
            ari = [per_set[s]["ari"] for s in sets]
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in nmi) +
                         f" | **{np.mean(nmi):.3f}** | {np.mean(ari):.3f} |")
    return "\n".join(lines) + "\n"


def seed_table(out: Path, seeds: list[int], sets: list[str]) -> str:
    """Mean NMI over the sets for each row run at every seed in ``seeds``, per seed and averaged."""
    runs = {s: json.loads((out / f"results-seed{s}.json").read_text()) for s in seeds}
    lines = ["#### Over seeds (mean NMI over the sets)", "",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | clothing10 NMI (mean) |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for label in GRID:
        if all(label in runs[s] and all(x in runs[s][label] for x in sets) for s in seeds):
            means = [np.mean([runs[s][label][x]["nmi"] for x in sets]) for s in seeds]
            clothing = [runs[s][label][x]["nmi"] for s in seeds for x in sets if x.startswith("clothing")]
            hardest = f"{np.mean(clothing):.3f}" if clothing else ""
            lines.append(f"| {label} | " + " | ".join(f"{m:.3f}" for m in means) +
                         f" | **{np.mean(means):.3f}** | {hardest} |")
    return "\n".join(lines) + "\n"


def write_doc(text: str, seed: int) -> None:
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    note = (f"\n_Generated by `python scripts/bench_quality.py --write` (seed {seed}); "
            "do not edit between the markers._\n\n")
    DOC.write_text(head + BEGIN + note + text + END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=DEV_SETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/imgclust-quality"))
    parser.add_argument("--only", nargs="*", help="row names of GRID to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="model.seed of every row")
    parser.add_argument("--per-class", type=int, help="use only the first N photos of each class (e.g. cifar10_test)")
    parser.add_argument("--write", action="store_true", help="put the tables into docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only print (and --write) the tables of the saved results")
    parser.add_argument("--seeds", nargs="*", type=int, default=[], help="with --render: add a table over these seeds")
    args = parser.parse_args()
    grid = {label: model for label, model in GRID.items() if not args.only or label in args.only}
    results_file = args.out / f"results-seed{args.seed}{f'-per{args.per_class}' if args.per_class else ''}.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in [] if args.render else args.sets:
        dataset = dataset_dir(name, args.out, args.per_class)
        classes = len({p.name for p in dataset.iterdir() if p.is_dir()})
        networks = sorted({*BOTH, *(n for m in grid.values() for n in np.atleast_1d(m.get("extractor", BOTH)))})
        base = config_for(dataset, args.out, extractor=networks)
        pipeline.download(base)
        print(f"{name}: {pipeline.extract(base, progress=False).line()}", flush=True)
        for label, model in grid.items():
            row = run_row(dataset, args.out, {**model, "seed": args.seed}, classes)
            results.setdefault(label, {})[dataset.name] = row
            print(f"  {label:55s} clusters {row['clusters']:3d}/{classes:<3d} unclustered {row['unclustered']:4d} "
                  f"NMI {row['nmi']:.3f} ARI {row['ari']:.3f} ({row['seconds']:.0f} s)", flush=True)
            results_file.write_text(json.dumps(results, indent=1))
    ordered = {label: results[label] for label in GRID if label in results}
    names = [dataset_dir(s, args.out, args.per_class).name for s in args.sets]
    text = tables(ordered, names)
    if args.seeds:
        text += "\n" + seed_table(args.out, args.seeds, names)
    print("\n" + text)
    if args.write:
        write_doc(text, args.seed)


if __name__ == "__main__":
    main()
