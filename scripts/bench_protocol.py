"""The quality protocol (issue 25): every candidate default on all six labelled dev sets, three
seeds, NMI and ARI per set and their mean, and the decision rule — a default changes only when it
raises the mean NMI and loses more than 0.01 NMI on no set.

Sets (``../shared/datasets``, folder = class): imagenette_val200, clothing10_testval,
ukbench_groups14, intel_scenes_test, trashnet_6 and cifar10_test as a 2,000-photo stratified
sample (its first 200 photos of each class, by name). Features are extracted once per set and
resize mode (``pad``, ``squash``) with both default networks into ``--cache`` and saved as one
``<set>-<mode>.npz`` (paths, truth, one array per network); the t-SNE embedding and k-means
sweep of each (set, mode, seed) are cached beside them. Square sets give the same pixels either
way, so their squash features are their pad features. Every method then runs on those arrays
through the library's stages (the same calls ``imgclust cluster`` makes).

    python scripts/bench_protocol.py --extract                     # once: fill the cache
    python scripts/bench_protocol.py [--methods NAME ...] [--seeds 0 1 2] [--baseline NAME] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from bench_quality import BOTH, config_for, dataset_dir
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from image_clustering import clustering
from image_clustering.clustering import AutoKClustering, sweep_k
from image_clustering.embedding import FeatureEmbedding, combine

CACHE = Path(os.environ.get("IMGCLUST_PROTOCOL_CACHE", "/tmp/imgclust-protocol"))
# (set, photos per class or None for all); CIFAR-10 as 200 per class.
SETS = [("imagenette_val200", None), ("clothing10_testval", None), ("ukbench_groups14", None),
        ("intel_scenes_test", None), ("trashnet_6", None), ("cifar10_test", 200)]
SQUARE = {"imagenette_val200", "intel_scenes_test", "cifar10_test"}  # every photo square: pad = squash
MODES = ("pad", "squash")
SEEDS = (0, 1, 2)
TOLERANCE = 0.01  # the most NMI a new default may lose on any one set


def set_name(name: str, per_class: int | None) -> str:
    return f"{name}_{per_class}" if per_class else name


def extract(cache: Path) -> None:
    """Extract both networks' vectors of every set in both modes (pad first), once."""
    from image_clustering import pipeline
    from image_clustering.evaluation import folder_truth

    jobs = [(s, pc, "pad") for s, pc in SETS] + [(s, pc, "squash") for s, pc in SETS if s not in SQUARE]
    for name, per_class, mode in jobs:
        target = cache / f"{set_name(name, per_class)}-{mode}.npz"
        if target.exists():
            continue
        dataset = dataset_dir(name, cache, per_class)
        config = config_for(dataset, cache / mode, extractor=BOTH, resize=mode)
        start = time.perf_counter()
        line = pipeline.extract(config, progress=False).line()
        print(f"{name} {mode}: {line} ({time.perf_counter() - start:.0f} s)", flush=True)
        paths, rows, _ = pipeline.feature_rows(config)
        np.savez(target, paths=np.array(paths), truth=np.array(folder_truth(paths)),
                 **dict(zip(BOTH, rows.views())))


def load(cache: Path, name: str, mode: str) -> tuple[list[np.ndarray], np.ndarray]:
    """(per-network vectors float32 (N, D_i), int truth (N,)) of one set and mode."""
    if name.split("_200")[0] in SQUARE or name in SQUARE:
        mode = "pad"
    with np.load(cache / f"{name}-{mode}.npz") as f:
        views = [f[n].astype(np.float32) for n in BOTH]
        truth = np.unique(f["truth"], return_inverse=True)[1]
    return views, truth


def embedded(cache: Path, name: str, mode: str, seed: int, views: list[np.ndarray]):
    """(t-SNE 2 embedding float32 (N, 2), KSweep) of the default FeatureEmbedding and sweep, cached."""
    if name.split("_200")[0] in SQUARE or name in SQUARE:
        mode = "pad"
    path = cache / f"embedding-{name}-{mode}-seed{seed}.npz"
    if path.is_file():
        with np.load(path) as f:
            sweep = clustering.KSweep(f["ks"], f["inertia"], f["silhouette"], f["davies_bouldin"],
                                      json.loads(str(f["suggestions"])), "silhouette", f["labels"])
            return f["embedding"], sweep
    embedding = FeatureEmbedding(seed=seed).fit_transform(combine(views))
    sweep = sweep_k(embedding, 100, 4, seed)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # parallel runs: the file appears whole or not at all
    np.savez(tmp, embedding=embedding, ks=sweep.ks, inertia=sweep.inertia, silhouette=sweep.silhouette,
             davies_bouldin=sweep.davies_bouldin, suggestions=json.dumps(sweep.suggestions), labels=sweep.labels)
    tmp.replace(path)
    return embedding, sweep


# --- the methods: name → (resize mode, function(views, embedding, sweep, seed) → labels) ---------

def _auto(algorithm: str, criterion: str = "silhouette", **kw):
    def run(views, embedding, sweep, seed):
        est = AutoKClustering(algorithm=algorithm, criterion=criterion, seed=seed, **kw)
        return est.fit(embedding, sweep=sweep, views=views).labels_
    return run


def _true_k(algorithm: str):
    def run(views, embedding, sweep, seed, classes=None):
        est = AutoKClustering(n_clusters=classes, algorithm=algorithm, seed=seed)
        return est.fit(embedding, views=views).labels_
    run.true_k = True
    return run


def _patched(inner, **constants):
    """``inner`` run with module constants of ``clustering`` set to ``constants`` (restored after)."""
    def run(views, embedding, sweep, seed, **kw):
        before = {name: getattr(clustering, name) for name in constants}
        for name, value in constants.items():
            setattr(clustering, name, value)
        try:
            return inner(views, embedding, sweep, seed, **kw)
        finally:
            for name, value in before.items():
                setattr(clustering, name, value)
    run.true_k = getattr(inner, "true_k", False)
    return run


def _approximate(inner):
    """``inner`` with the graph's neighbours from pynndescent at every size (ANN_LIMIT 0)."""
    return _patched(inner, ANN_LIMIT=0)


def _tolerant(inner, tolerance: float):
    """``inner`` with the modularity criterion's tolerance set to ``tolerance``."""
    return _patched(inner, MODULARITY_TOLERANCE=tolerance)


def _leiden_runs(inner, runs: int):
    """``inner`` with Leiden's search run from ``runs`` seeds (the best modularity kept); the rows
    measured before LEIDEN_RUNS existed ran it from one."""
    return _patched(inner, LEIDEN_RUNS=runs)


def _agreement(criterion: str, algorithms=("leiden", "spectral", "kmeans")):
    """Each algorithm at the criterion's k; the partition most like the others (mean ARI), a choice
    per collection made without labels (consensus by the medoid partition, as in Strehl & Ghosh 2002)."""
    def run(views, embedding, sweep, seed):
        found = [_auto(a, criterion)(views, embedding, sweep, seed) for a in algorithms]
        agreement = [np.mean([adjusted_rand_score(a, b) for b in found if b is not a]) for a in found]
        return found[int(np.argmax(agreement))]
    return run


GUARDED = "pad, Leiden + vote, k by silhouette guarded by graph modularity"  # the default since 2026-12-07

METHODS = {
    "today: pad, Leiden + vote, k by silhouette on t-SNE 2": ("pad", _leiden_runs(_auto("leiden"), 1)),
    "squash, Leiden + vote, k by silhouette on t-SNE 2": ("squash", _leiden_runs(_auto("leiden"), 1)),
    "pad, spectral + vote, k by silhouette on t-SNE 2": ("pad", _leiden_runs(_auto("spectral"), 1)),
    "squash, spectral + vote, k by silhouette on t-SNE 2": ("squash", _leiden_runs(_auto("spectral"), 1)),
    "pad, k-means on t-SNE 2, k by silhouette": ("pad", _leiden_runs(_auto("kmeans"), 1)),
    "squash, k-means on t-SNE 2, k by silhouette (the 2026-11 default)": ("squash", _leiden_runs(_auto("kmeans"), 1)),
    "pad, Leiden + vote, approximate neighbours (pynndescent), k by silhouette on t-SNE 2":
        ("pad", _leiden_runs(_approximate(_auto("leiden")), 1)),
    "pad, Leiden + vote, k by graph modularity": ("pad", _leiden_runs(_tolerant(_auto("leiden", "modularity"), 0.0), 1)),
    "squash, Leiden + vote, k by graph modularity": ("squash", _leiden_runs(_tolerant(_auto("leiden", "modularity"), 0.0), 1)),
    "pad, spectral + vote, k by graph modularity": ("pad", _leiden_runs(_tolerant(_auto("spectral", "modularity"), 0.0), 1)),
    "pad, k-means on t-SNE 2, k by graph modularity": ("pad", _leiden_runs(_tolerant(_auto("kmeans", "modularity"), 0.0), 1)),
    "pad, Leiden + vote, k by graph modularity, smallest k within 1 %":
        ("pad", _leiden_runs(_tolerant(_auto("leiden", "modularity"), 0.01), 1)),
    "pad, Leiden + vote, k by silhouette guarded by graph modularity":
        ("pad", _leiden_runs(_auto("leiden", "guarded_silhouette"), 1)),
    "squash, Leiden + vote, k by silhouette guarded by graph modularity":
        ("squash", _leiden_runs(_auto("leiden", "guarded_silhouette"), 1)),
    "pad, spectral + vote, k by silhouette guarded by graph modularity":
        ("pad", _leiden_runs(_auto("spectral", "guarded_silhouette"), 1)),
    "squash, spectral + vote, k by silhouette guarded by graph modularity":
        ("squash", _leiden_runs(_auto("spectral", "guarded_silhouette"), 1)),
    "pad, k-means on t-SNE 2, k by silhouette guarded by graph modularity":
        ("pad", _leiden_runs(_auto("kmeans", "guarded_silhouette"), 1)),
    "squash, k-means on t-SNE 2, k by silhouette guarded by graph modularity":
        ("squash", _leiden_runs(_auto("kmeans", "guarded_silhouette"), 1)),
    "pad, the most agreeing of Leiden, spectral and k-means, k by guarded silhouette":
        ("pad", _leiden_runs(_agreement("guarded_silhouette"), 1)),
    "pad, Leiden + vote, true k": ("pad", _leiden_runs(_true_k("leiden"), 1)),
    "squash, Leiden + vote, true k": ("squash", _leiden_runs(_true_k("leiden"), 1)),
    "pad, k-means on t-SNE 2, true k": ("pad", _leiden_runs(_true_k("kmeans"), 1)),
    "squash, k-means on t-SNE 2, true k": ("squash", _leiden_runs(_true_k("kmeans"), 1)),
    # Leiden from LEIDEN_RUNS seeds, the partition of highest modularity kept (the default from 2026-12-07, late)
    "pad, Leiden best of 5 + vote, k by guarded silhouette": ("pad", _auto("leiden", "guarded_silhouette")),
    "squash, Leiden best of 5 + vote, k by guarded silhouette": ("squash", _auto("leiden", "guarded_silhouette")),
    "pad, Leiden best of 5 + vote, approximate neighbours, k by guarded silhouette":
        ("pad", _approximate(_auto("leiden", "guarded_silhouette"))),
    "pad, spectral + vote, approximate neighbours, k by guarded silhouette":
        ("pad", _approximate(_auto("spectral", "guarded_silhouette"))),
    "pad, Leiden best of 5 + vote, true k": ("pad", _true_k("leiden")),
}


def run_method(cache: Path, method: str, name: str, seed: int) -> dict:
    """One method on one set at one seed: k, NMI, ARI, seconds (clustering only)."""
    mode, fn = METHODS[method]
    views, truth = load(cache, name, mode)
    embedding, sweep = embedded(cache, name, mode, seed, views)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if getattr(fn, "true_k", False):
            labels = fn(views, embedding, sweep, seed, classes=int(truth.max()) + 1)
        else:
            labels = fn(views, embedding, sweep, seed)
    return {"k": int(len(np.unique(labels[labels >= 0]))), "nmi": float(normalized_mutual_info_score(truth, labels)),
            "ari": float(adjusted_rand_score(truth, labels)), "seconds": time.perf_counter() - start}


def results_file(cache: Path, part: str = "") -> Path:
    return cache / f"protocol-results{part}.json"


def saved(cache: Path) -> dict:
    """Every saved results file of the cache merged (runs in parallel write their own part)."""
    results: dict = {}
    for path in sorted(cache.glob("protocol-results*.json")):
        for method, sets in json.loads(path.read_text()).items():
            for name, seeds in sets.items():
                results.setdefault(method, {}).setdefault(name, {}).update(seeds)
    return results


def measure(cache: Path, methods: list[str], seeds, names: list[str], fresh: bool = False, part: str = "") -> dict:
    """results[method][set][seed] = run_method(...), kept in ``<cache>/protocol-results<part>.json``."""
    path = results_file(cache, part)
    results = json.loads(path.read_text()) if path.is_file() else {}
    done = saved(cache)
    for method in methods:
        for name in names:
            for seed in seeds:
                cell = results.setdefault(method, {}).setdefault(name, {})
                if (str(seed) in cell or str(seed) in done.get(method, {}).get(name, {})) and not fresh:
                    continue
                cell[str(seed)] = run_method(cache, method, name, seed)
                r = cell[str(seed)]
                print(f"{method[:60]:60s} {name:22s} seed {seed} k {r['k']:3d} NMI {r['nmi']:.3f} ARI {r['ari']:.3f}",
                      flush=True)
                path.write_text(json.dumps(results, indent=1))
    return results


def mean_over_seeds(results: dict, method: str, names: list[str], seeds, key: str = "nmi") -> dict[str, float]:
    return {n: float(np.mean([results[method][n][str(s)][key] for s in seeds])) for n in names}


def decide(results: dict, baseline: str, candidate: str, names: list[str], seeds) -> tuple[bool, str]:
    """The protocol's rule: ``candidate`` replaces ``baseline`` only if its mean NMI (sets and
    seeds) is higher and no set's mean NMI over the seeds is lower by more than TOLERANCE."""
    b, c = mean_over_seeds(results, baseline, names, seeds), mean_over_seeds(results, candidate, names, seeds)
    gain = np.mean(list(c.values())) - np.mean(list(b.values()))
    worst = min(names, key=lambda n: c[n] - b[n])
    ok = gain > 0 and c[worst] - b[worst] >= -TOLERANCE
    return ok, f"mean {gain:+.3f}, worst set {worst} {c[worst] - b[worst]:+.3f}"


def markdown(results: dict, methods: list[str], names: list[str], seeds, baseline: str | None) -> str:
    """Per method: one row per seed (k / NMI / ARI per set, mean NMI and ARI) and the seed mean."""
    short = [n.replace("_testval", "").replace("_val200", "").replace("_groups14", "").replace("_test", "")
             for n in names]
    if baseline and not all(str(s) in results.get(baseline, {}).get(n, {}) for n in names for s in seeds):
        baseline = None  # the baseline was not measured on these sets and seeds: no rule column
    lines = ["| method | seed | " + " | ".join(short) + " | mean NMI | mean ARI |" + (" rule |" if baseline else ""),
             "|---|---|" + "---|" * (len(names) + 2) + ("---|" if baseline else "")]
    for method in methods:
        if not all(str(s) in results.get(method, {}).get(n, {}) for n in names for s in seeds):
            continue
        for s in seeds:
            cells = [results[method][n][str(s)] for n in names]
            lines.append(f"| {method} | {s} | " + " | ".join(f"{c['k']} / {c['nmi']:.3f} / {c['ari']:.3f}" for c in cells)
                         + f" | {np.mean([c['nmi'] for c in cells]):.3f} | {np.mean([c['ari'] for c in cells]):.3f} |"
                         + (" |" if baseline else ""))
        nmi = mean_over_seeds(results, method, names, seeds)
        ari = mean_over_seeds(results, method, names, seeds, "ari")
        rule = ""
        if baseline:
            rule = "baseline" if method == baseline else ("passes" if decide(results, baseline, method, names, seeds)[0]
                                                         else "fails") + f": {decide(results, baseline, method, names, seeds)[1]}"
            rule = f" {rule} |"
        lines.append(f"| **{method}** | mean | " + " | ".join(f"{nmi[n]:.3f} / {ari[n]:.3f}" for n in names)
                     + f" | **{np.mean(list(nmi.values())):.3f}** | {np.mean(list(ari.values())):.3f} |" + rule)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--extract", action="store_true", help="fill the feature cache and stop")
    parser.add_argument("--methods", nargs="*", help="names of METHODS (default: all)")
    parser.add_argument("--sets", nargs="*", help="set names (default: the six)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--baseline", default=GUARDED)
    parser.add_argument("--fresh", action="store_true", help="recompute cells already in the results file")
    parser.add_argument("--render", action="store_true", help="only print the table of the saved results")
    parser.add_argument("--part", default="", help="suffix of this run's results file (parallel runs)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.extract:
        extract(args.cache)
        return
    names = args.sets or [set_name(s, pc) for s, pc in SETS]
    methods = args.methods or list(METHODS)
    if not args.render:
        measure(args.cache, methods, args.seeds, names, args.fresh, args.part)
    results = saved(args.cache)
    print(markdown(results, methods, names, args.seeds, args.baseline))


if __name__ == "__main__":
    main()
