"""Loading and validating ``configs/configs.json``.

The key names of the original tool are kept (``paths.image_dir`` … ``model.k``); everything else has
a default. Validation uses JSON Schema (the ``jsonschema`` library); any problem becomes one
:class:`ImgclustError` line that names the file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from .errors import ImgclustError
from .networks import NETWORKS as REGISTRY

_PATH = {"type": "string", "minLength": 1, "pattern": "^[^\u0000]*$"}  # no NUL: no file name holds one
_INT = {"type": "integer"}
# The object name is part of file names (``<name>_collection.sqlite``, ``.<name>.imgclust-<32 hex>-old``):
# 100 characters leave those within the 255 bytes a file name may have.
OBJECT_NAME_MAX = 100
NETWORKS = list(REGISTRY)
_NETWORK = {"enum": NETWORKS}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["paths", "model"],
    "properties": {
        "paths": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image_dir"],
            "properties": {
                "image_dir": _PATH,
                "model_dir": _PATH,
                "vector_dir": _PATH,
                "cluster_label_dir": _PATH,
                "plot_dir": _PATH,
                "link_dir": _PATH,
                "label_file": _PATH,
            },
        },
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["object_name"],
            "properties": {
                "object_name": {"type": "string", "pattern": r"^(?!\.{1,2}$)[A-Za-z0-9._-]+$", "maxLength": OBJECT_NAME_MAX},
                "extractor": {"oneOf": [_NETWORK, {"type": "array", "items": _NETWORK, "minItems": 1,
                                                   "uniqueItems": True}]},
                "weights": {"oneOf": [_PATH, {"type": "object", "additionalProperties": False,
                                              "properties": {n: _PATH for n in NETWORKS}}]},
                "standardize": {"type": "boolean"},
                "content_hash": {"type": "boolean"},
                "batch_size": {**_INT, "minimum": 1, "maximum": 1024},
                "backend": {"oneOf": [{"type": "null"}, {"enum": ["tensorflow", "jax", "torch"]}]},
                "precision": {"enum": ["float32", "mixed_bfloat16", "mixed_float16"]},
                "resize": {"enum": ["squash", "pad"]},
                "pca_dimension": {**_INT, "minimum": 1, "maximum": 2048},
                "reducer": {"enum": ["tsne", "umap"]},
                "reduced_dimension": {**_INT, "minimum": 1, "maximum": 100},
                "perplexity": {"type": "number", "exclusiveMinimum": 0},
                "n_neighbors": {**_INT, "minimum": 2},
                "k": {"oneOf": [{**_INT, "minimum": 1}, {"const": "auto"}]},
                "k_max": {**_INT, "minimum": 1, "maximum": 1000},
                "k_criterion": {"enum": ["silhouette", "davies_bouldin", "elbow", "lmethod", "modularity", "guarded_silhouette"]},
                "space": {"enum": ["embedding", "pca", "features", "raw"]},
                "algorithm": {"enum": ["leiden", "spectral", "kmeans", "agglomerative", "hdbscan"]},
                "graph_neighbors": {**_INT, "minimum": 1},
                "sim": {"oneOf": [{"type": "null"}, {"type": "number", "minimum": 0, "maximum": 1}]},
                "min_cluster_size": {"oneOf": [{"type": "null"}, {**_INT, "minimum": 1}]},
                "time_weight": {"type": "number", "minimum": 0, "maximum": 1},
                "linkage": {"enum": ["ward", "average", "complete", "single"]},
                "metric": {"enum": ["euclidean", "cosine"]},
                "n_init": {**_INT, "minimum": 1},
                "seed": {**_INT, "minimum": 0, "maximum": 2**32 - 1},  # numpy's seed range
                "link": {"enum": ["symlink", "hardlink", "copy"]},
                "tag_count": {**_INT, "minimum": 1, "maximum": 20},
                "tag_min_score": {"type": "number", "minimum": 0, "maximum": 1},
                "label_k": {"oneOf": [{**_INT, "minimum": 2}, {"const": "auto"}]},
                "label_k_max": {**_INT, "minimum": 3, "maximum": 1000},
                "label_method": {"enum": ["jaccard", "song2020"]},
                "label_source": {"enum": ["tags", "text", "tags+text"]},
                "ocr_language": {"type": "string", "pattern": r"^[A-Za-z_]+(\+[A-Za-z_]+)*$"},
                "ocr_min_confidence": {"type": "number", "minimum": 0, "maximum": 100},
            },
        },
        "compute": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "scheduler": {"oneOf": [{"type": "null"}, {"const": "local"},
                                        {"type": "string", "pattern": r"^[a-z][a-z0-9+]*://.+"}]},
                "workers": {**_INT, "minimum": 1, "maximum": 1024},
                "task_size": {**_INT, "minimum": 1, "maximum": 100_000},
                "timeout": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "duplicates": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "grade": {"enum": ["exact", "near-identical", "burst", "same scene"]},
            },
        },
    },
}

DEFAULT_PATHS = {
    "model_dir": "models",
    "vector_dir": "results/vectors",
    "cluster_label_dir": "results/cluster_label",
    "plot_dir": "visualization",
    "link_dir": "results/link",
}
DEFAULT_MODEL = {
    # Best mean NMI with k "auto" over the dev sets and three seeds (docs/benchmarks.md).
    "extractor": ["inception_v3", "efficientnet_lite0"],
    "weights": {},
    "standardize": False,
    "content_hash": False,
    "batch_size": 32,
    # Keras backend: null = KERAS_BACKEND or TensorFlow. Vectors agree across backends (README).
    "backend": None,
    # float32: vectors match the reference outputs; bfloat16 moves them (cosine 0.9993) for 1.56x on
    # an AVX512-BF16 CPU and 5-18 % on an H100 (docs/performance.md).
    "precision": "float32",
    # pad: aspect kept, black bars (+0.022 NMI on portrait photos, none lost elsewhere: docs/benchmarks.md);
    # squash: stretched to the square, as the original tool.
    "resize": "pad",
    "pca_dimension": 50,
    "reducer": "tsne",
    "reduced_dimension": 2,
    # 20 rather than scikit-learn's 30: the silhouette maximum then lands on the same level at every
    # seed on the hard benchmark set (docs/benchmarks.md, "Over seeds").
    "perplexity": 20.0,
    "n_neighbors": 15,
    "k": "auto",
    "k_max": 100,
    "k_criterion": "guarded_silhouette",
    "space": "embedding",
    # Leiden communities of the feature vectors' neighbour graph (then a neighbour vote) at the k chosen
    # on the t-SNE embedding: +0.028 mean NMI over the dev sets at three seeds, no set worse (docs/benchmarks.md).
    "algorithm": "leiden",
    "graph_neighbors": 10,
    "sim": None,
    "min_cluster_size": None,
    "time_weight": 0.0,
    "linkage": "ward",
    "metric": "euclidean",
    "n_init": 4,
    "seed": 0,
    "link": "symlink",
    "tag_count": 10,
    "tag_min_score": 0.01,
    "label_k": "auto",
    "label_k_max": 20,
    # "song2020": what the published R code computes, for reproducing the paper (README).
    "label_method": "jaccard",
    # Labels for cluster-labels and tag-network: the tag table, the words `imgclust ocr` read, or both.
    "label_source": "tags",
    "ocr_language": "eng",
    "ocr_min_confidence": 60.0,
}
DEFAULT_COMPUTE = {
    "scheduler": None,  # None: in this process, as before; "local": a LocalCluster; else a scheduler address
    "workers": 2,  # LocalCluster worker processes
    "task_size": 256,  # images per extraction task: large enough to hide scheduling, small enough to lose little
    "timeout": 10,  # seconds to wait for a scheduler to answer
}
DEFAULT_DUPLICATES = {
    # the lowest grade `imgclust duplicates` reports (image_clustering.duplicates: the ladder)
    "grade": "burst",
}
DEFAULT_WEIGHTS = {name: spec.default_source for name, spec in REGISTRY.items()}


@dataclass(frozen=True)
class Paths:
    """Absolute folders; per-collection outputs live in ``<dir>/<object_name>``."""

    image_dir: Path
    model_dir: Path
    vector_dir: Path
    cluster_label_dir: Path
    plot_dir: Path
    link_dir: Path
    label_file: Path | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section; see README "Config reference" for each key's meaning."""

    object_name: str
    extractor: tuple[str, ...]
    weights: dict[str, str]
    standardize: bool
    batch_size: int
    backend: str | None
    precision: str
    resize: str
    pca_dimension: int
    reducer: str
    reduced_dimension: int
    perplexity: float
    n_neighbors: int
    k: int | str
    k_max: int
    k_criterion: str
    space: str
    algorithm: str
    graph_neighbors: int
    sim: float | None
    min_cluster_size: int | None
    time_weight: float
    linkage: str
    metric: str
    n_init: int
    seed: int
    link: str
    tag_count: int
    tag_min_score: float
    label_k: int | str
    label_k_max: int
    label_method: str
    label_source: str
    ocr_language: str
    ocr_min_confidence: float
    content_hash: bool = False


@dataclass(frozen=True)
class ComputeConfig:
    """The ``compute`` section: where extraction and the k sweep run (README, "Running on a cluster").

    Attributes:
        scheduler: None (in this process), ``"local"`` (a Dask ``LocalCluster`` of ``workers``
            processes on this machine) or a Dask scheduler address such as ``tcp://host:8786``.
        workers: worker processes of a ``"local"`` cluster.
        task_size: images per extraction task.
        timeout: seconds to wait for the scheduler to answer.
    """

    scheduler: str | None = None
    workers: int = 2
    task_size: int = 256
    timeout: float = 10


@dataclass(frozen=True)
class DuplicatesConfig:
    """The ``duplicates`` section: ``grade``, the lowest grade of the ladder ``imgclust duplicates``
    reports (``exact``, ``near-identical``, ``burst`` or ``same scene``; README, "Duplicates")."""

    grade: str = "burst"


@dataclass(frozen=True)
class Layout:
    """Every file and folder the workflow reads or writes for one collection, in one place.

    Folders: ``<vector_dir>/<object_name>/`` (feature stores and caches),
    ``<plot_dir>/<object_name>/`` (pictures), ``<cluster_label_dir>/`` (tables, prefixed with the
    object name) and ``<link_dir>/<object_name>[_labels]/`` (link folders).
    """

    paths: Paths
    name: str

    # feature stores and caches
    @property
    def feature_dir(self) -> Path:
        return self.paths.vector_dir / self.name

    def store_dir(self, network: str) -> Path:
        return self.feature_dir / network

    @property
    def failures_csv(self) -> Path:
        return self.feature_dir / "failures.csv"

    @property
    def embedding_cache(self) -> Path:
        return self.feature_dir / "embedding.npz"

    @property
    def sweep_cache(self) -> Path:
        return self.feature_dir / "find_k.json"

    def sweep_labels(self, key: str) -> Path:
        """The k-means labels of every k of the sweep cached under ``key`` (int16 (K, N))."""
        import hashlib

        return self.feature_dir / f"find_k.{hashlib.sha1(key.encode()).hexdigest()[:16]}.labels.npy"

    # tables
    def labels_csv(self, of_tags: bool = False) -> Path:
        """``<name>.csv`` (``cluster``), or ``<name>_labels.csv`` (``cluster-labels``)."""
        return self.paths.cluster_label_dir / f"{self._labels_name(of_tags)}.csv"

    def labels_json(self, of_tags: bool = False) -> Path:
        return self.paths.cluster_label_dir / f"{self._labels_name(of_tags)}.json"

    def evaluation_json(self, of_tags: bool = False) -> Path:
        return self.paths.cluster_label_dir / f"{self._labels_name(of_tags)}_evaluation.json"

    def _labels_name(self, of_tags: bool) -> str:
        return f"{self.name}_labels" if of_tags else self.name

    @property
    def tags_csv(self) -> Path:
        """The label table ``imgclust tag`` writes."""
        return self.paths.cluster_label_dir / f"{self.name}_tags.csv"

    @property
    def text_csv(self) -> Path:
        """``imgclust ocr``: the text of every photo."""
        return self.paths.cluster_label_dir / f"{self.name}_text.csv"

    @property
    def text_labels_csv(self) -> Path:
        """``imgclust ocr``: its words as a label table (``model.label_source`` ``"text"``)."""
        return self.paths.cluster_label_dir / f"{self.name}_text_labels.csv"

    @property
    def ocr_dir(self) -> Path:
        """``imgclust ocr``'s cache and failures."""
        return self.feature_dir / "ocr"

    @property
    def tag_table(self) -> Path:
        """The label table of the label workflows: ``paths.label_file``, else :attr:`tags_csv`."""
        return self.paths.label_file or self.tags_csv

    @property
    def network_files(self) -> tuple[Path, Path, Path]:
        """``tag-network``'s GEXF, edges CSV and nodes CSV."""
        folder = self.paths.cluster_label_dir
        return (folder / f"{self.name}_network.gexf", folder / f"{self.name}_edges.csv",
                folder / f"{self.name}_nodes.csv")

    @property
    def collection_db(self) -> Path:
        """The living collection's state (cluster ids, names, memberships, edits, organise
        journals; :mod:`image_clustering.collection`), with the tables it stands behind."""
        return self.paths.cluster_label_dir / f"{self.name}_collection.sqlite"

    @property
    def organise_plan(self) -> Path:
        """The plan of the last ``imgclust organise`` (dry run or real)."""
        return self.paths.cluster_label_dir / f"{self.name}_organise_plan.json"

    def link_root(self, of_tags: bool = False) -> Path:
        return self.paths.link_dir / self._labels_name(of_tags)

    # imgclust duplicates
    @property
    def duplicates_csv(self) -> Path:
        return self.paths.cluster_label_dir / f"{self.name}_duplicates.csv"

    @property
    def duplicates_json(self) -> Path:
        return self.paths.cluster_label_dir / f"{self.name}_duplicates.json"

    @property
    def outliers_csv(self) -> Path:
        return self.paths.cluster_label_dir / f"{self.name}_outliers.csv"

    @property
    def duplicates_links(self) -> Path:
        """One folder of links per duplicate group."""
        return self.paths.link_dir / f"{self.name}_duplicates"

    # pictures
    @property
    def plot_dir(self) -> Path:
        return self.paths.plot_dir / self.name

    def plot(self, name: str) -> Path:
        """A picture or table in the plot folder: ``cost_2D.png``, ``k_scores.csv``, ..."""
        return self.plot_dir / name

    def contact_sheet(self, cluster_id: str) -> Path:
        return self.plot_dir / f"contact_sheet_{cluster_id}.png"


@dataclass(frozen=True)
class Config:
    """A validated config: ``paths``, ``model`` and ``compute``, plus the file it came from."""

    paths: Paths
    model: ModelConfig
    source: Path | None = None
    compute: ComputeConfig = ComputeConfig()
    duplicates: DuplicatesConfig = DuplicatesConfig()

    def with_scheduler(self, scheduler: str | None) -> Config:
        """This config with ``compute.scheduler`` replaced (the ``--scheduler`` option); None keeps it."""
        if scheduler is None:
            return self
        if scheduler != "local":
            check_scheduler_address(scheduler, "--scheduler")
        compute = dataclasses.replace(self.compute, scheduler=scheduler)
        check_workers(compute, "--scheduler local: compute.workers")
        return dataclasses.replace(self, compute=compute)

    @property
    def layout(self) -> Layout:
        """Where this collection's files live."""
        return Layout(self.paths, self.model.object_name)

    @property
    def feature_dir(self) -> Path:
        return self.layout.feature_dir

    @property
    def plot_dir(self) -> Path:
        return self.layout.plot_dir

    @property
    def label_file(self) -> Path:
        return self.layout.tag_table


def _is_integer(checker, instance) -> bool:
    # JSON Schema counts 5.0 as an integer; numpy and scikit-learn do not (n_init=2.0 is a TypeError
    # deep inside k-means), so only JSON numbers written without a fraction or exponent pass.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    # Python's json parses NaN and Infinity; no number key has a use for them (NaN even passes
    # "minimum"/"maximum", as every comparison with it is false).
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer,
                                                                            "number": _is_number}))


def _expects_integer(schema: dict) -> bool:
    return schema.get("type") == "integer" or any(s.get("type") == "integer" for s in schema.get("oneOf", []))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _allowed(schema: dict) -> str:
    """What a schema accepts, in words: 'null', 'one of "a", "b"', 'a whole number from 1 to 9'."""
    if "oneOf" in schema:
        return " or ".join(_allowed(s) for s in schema["oneOf"])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if kind in ("integer", "number"):
        words = "a whole number" if kind == "integer" else "a number"
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        op = ">" if "exclusiveMinimum" in schema else "≥"
        if low is not None and "maximum" in schema:
            return f"{words} from {low} to {schema['maximum']}"
        return f"{words} {op} {low}" if low is not None else words
    return {"null": "null", "string": "a text", "object": "an object", "array": "a list",
            "boolean": "true or false"}.get(kind, "another value")


def _unknown_key(error: jsonschema.ValidationError) -> str:
    known = list(error.schema.get("properties", {}))
    extra = sorted(set(error.instance) - set(known))[0]
    close = difflib.get_close_matches(str(extra), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{_key([*error.absolute_path, extra])}: unknown key ({hint}known: {', '.join(known)})"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return _unknown_key(error)
    key = _key(error.absolute_path)
    if error.validator == "required":
        return f"{key}: {error.message}"
    if isinstance(error.instance, float) and not math.isfinite(error.instance):
        return f"{key}: must be a finite number (got {error.instance!r})"
    if isinstance(error.instance, float) and _expects_integer(error.schema):
        return f"{key}: must be a whole number written without a decimal point (got {error.instance!r})"
    if key == "model.k":
        return f"model.k: must be a positive integer or \"auto\" (got {error.instance!r})"
    if key == "model.extractor" or key.startswith("model.extractor."):
        return f"model.extractor: must be one of {', '.join(NETWORKS)}, or a list of them (got {error.instance!r})"
    if key == "compute.scheduler":
        return ("compute.scheduler: must be null, \"local\" or a scheduler address such as tcp://host:8786 "
                f"(got {error.instance!r})")
    if key == "model.object_name" and error.validator == "maxLength":
        return (f"model.object_name: at most {OBJECT_NAME_MAX} characters (it names files and folders; "
                f"got {len(error.instance)})")
    if key == "model.object_name" and error.validator == "pattern":
        return f"model.object_name: use letters, digits, '.', '_' and '-' only (got {error.instance!r})"
    if error.validator in ("oneOf", "enum"):  # jsonschema's "not valid under any of the given schemas"
        return f"{key}: must be {_allowed(error.schema)} (got {error.instance!r})"
    return f"{key}: {error.message}"


def _check_combinations(model: dict) -> None:
    if model["reducer"] == "tsne" and model["reduced_dimension"] > 3:
        raise ImgclustError(
            "model.reduced_dimension: t-SNE (Barnes-Hut) supports at most 3 dimensions; use \"reducer\": \"umap\" for more"
        )
    if model["algorithm"] == "agglomerative" and model["linkage"] == "ward" and model["metric"] != "euclidean":
        raise ImgclustError("model.metric: Ward linkage is defined for Euclidean distances only; "
                            "use \"linkage\": \"average\" with cosine")
    algorithm = model["algorithm"]
    if model["sim"] is not None and algorithm != "agglomerative":
        raise ImgclustError("model.sim: a similarity cut needs \"algorithm\": \"agglomerative\"")
    if (model["sim"] is not None or algorithm == "hdbscan") and model["k"] != "auto":
        raise ImgclustError(f"model.k: {'model.sim' if algorithm != 'hdbscan' else 'HDBSCAN'} chooses the number "
                            "of clusters itself; set \"k\": \"auto\"")
    if model["time_weight"] > 0 and algorithm in ("kmeans", "spectral", "leiden"):
        raise ImgclustError("model.time_weight: time mixing works on pair distances; use \"algorithm\": "
                            "\"agglomerative\" or \"hdbscan\"")
    if algorithm == "hdbscan" and model["min_cluster_size"] == 1:
        raise ImgclustError("model.min_cluster_size: HDBSCAN needs at least 2")
    if isinstance(model["k"], int) and model["k"] > model["k_max"]:
        raise ImgclustError(f"model.k: {model['k']} is larger than model.k_max ({model['k_max']})")


def config_from_dict(raw: dict, base_dir: Path | None = None, source: Path | None = None) -> Config:
    """Validate a config mapping and fill in defaults.

    Args:
        raw: the parsed JSON object.
        base_dir: folder that relative paths resolve against (default: the current directory).
        source: the file it came from, for error messages.

    Raises:
        ImgclustError: one line, ``<file>: <key>: <problem>``.
    """
    prefix = f"{source}: " if source else ""
    errors = sorted(_Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        raise ImgclustError(prefix + _describe(errors[0]))
    model = {**DEFAULT_MODEL, **raw["model"]}
    if isinstance(model["extractor"], str):
        model["extractor"] = [model["extractor"]]
    model["extractor"] = tuple(model["extractor"])
    if isinstance(model["weights"], str):  # the original single-network form: InceptionV3's source
        model["weights"] = {"inception_v3": model["weights"]}
    model["weights"] = {**DEFAULT_WEIGHTS, **model["weights"]}
    try:
        _check_combinations(model)
    except ImgclustError as exc:
        raise ImgclustError(prefix + str(exc)) from None
    base = (base_dir or Path.cwd()).resolve()
    paths = {**DEFAULT_PATHS, **raw["paths"]}
    resolved = {name: (base / Path(value).expanduser()).resolve() for name, value in paths.items()}
    try:
        check_output_folders(resolved, model["object_name"])
    except ImgclustError as exc:
        raise ImgclustError(prefix + str(exc)) from None
    compute = ComputeConfig(**{**DEFAULT_COMPUTE, **raw.get("compute", {})})
    try:
        check_not_files(resolved)
        if compute.scheduler not in (None, "local"):
            check_scheduler_address(compute.scheduler, "compute.scheduler")
        check_workers(compute)
    except ImgclustError as exc:
        raise ImgclustError(prefix + str(exc)) from None
    duplicates = DuplicatesConfig(**{**DEFAULT_DUPLICATES, **raw.get("duplicates", {})})
    return Config(Paths(**resolved), ModelConfig(**model), source, compute, duplicates)


# Dask's transports (distributed.comm.registry): an address with another scheme, or none, would
# reach Dask's own parser and end in a ValueError traceback.
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def check_scheduler_address(address: str, key: str = "compute.scheduler") -> None:
    """Refuse a scheduler address Dask cannot connect to: an unknown scheme (``file://``), no host,
    a bad port or an unclosed IPv6 bracket (``ws://[::1``).

    Raises:
        ImgclustError: one line naming ``key`` and the address.
    """
    from urllib.parse import urlsplit

    usage = f'{key}: {address!r} is neither "local" nor a Dask scheduler address such as tcp://host:8786'
    try:
        parts = urlsplit(address)
        port = parts.port  # parses it: a ValueError when it is not a number from 0 to 65535
    except ValueError as exc:
        raise ImgclustError(f"{usage} ({exc})") from None
    if parts.scheme not in SCHEDULER_SCHEMES:
        raise ImgclustError(f"{usage} (the scheme must be one of {', '.join(SCHEDULER_SCHEMES)})")
    if parts.scheme != "inproc" and (not parts.hostname or parts.path not in ("", "/") or parts.query
                                     or parts.fragment or (port is not None and port == 0)):
        raise ImgclustError(f"{usage} (it needs a host and at most a port)")


def max_workers() -> int:
    """The most ``compute.workers`` a LocalCluster may start here: the CPUs this process may use (at
    least 2). Each worker is a process with its own copy of the networks; beyond one per core they only
    compete for the same cores and memory."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(2, cpus)


def check_workers(compute: ComputeConfig, key: str = "compute.workers") -> None:
    """Refuse more LocalCluster workers than :func:`max_workers` (only with ``"scheduler": "local"``:
    on a real cluster the key is unused).

    Raises:
        ImgclustError: one line naming ``key``, the value and the limit.
    """
    if compute.scheduler == "local" and compute.workers > max_workers():
        raise ImgclustError(f"{key}: {compute.workers} worker processes on a machine with {max_workers()} usable "
                            f"CPUs; use at most {max_workers()} (each worker holds its own copy of the networks)")


def check_not_files(paths: dict[str, Path]) -> None:
    """Refuse an output folder that exists as something else (a file), before any work is done.

    Raises:
        ImgclustError: one line naming the key.
    """
    for name in OUTPUT_FOLDERS:
        folder = paths[name]
        if os.path.lexists(folder) and not folder.is_dir():
            raise ImgclustError(f"paths.{name}: {folder} exists and is not a folder")


OUTPUT_FOLDERS = ("model_dir", "vector_dir", "cluster_label_dir", "plot_dir", "link_dir")


def check_output_folders(paths: dict[str, Path], object_name: str) -> None:
    """Refuse an output folder — or the per-collection folder ``<folder>/<object_name>`` (and
    ``<link_dir>/<object_name>_labels`` and ``_duplicates``) the outputs go into, which may be a symbolic link — that
    is, contains or lies inside ``image_dir``.

    Rebuilding ``<link_dir>/<object_name>`` replaces that folder, so a link folder above the photos
    could replace the photo folder itself, and outputs inside it would be clustered as photos on
    the next run. Paths must already be resolved (symbolic links followed); folders that exist are
    also compared by device and inode, so a second path to the photos (a bind mount, a share
    mounted twice) is caught too.

    Raises:
        ImgclustError: one line naming both keys.
    """
    image_dir = paths["image_dir"]
    for name in OUTPUT_FOLDERS:
        inner = [object_name, f"{object_name}_labels", f"{object_name}_duplicates"] if name == "link_dir" else [object_name]
        for folder in [paths[name], *((paths[name] / sub).resolve() for sub in inner)]:
            how = ("is" if folder == image_dir else "lies inside" if image_dir in folder.parents
                   else "contains" if folder in image_dir.parents else _same_folder_as(folder, image_dir))
            if how:
                raise ImgclustError(f"paths.{name}: {folder} {how} paths.image_dir ({image_dir}); outputs must "
                                    "live outside the photo folder, where they can neither replace nor pass for photos")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _same_folder_as(folder: Path, image_dir: Path) -> str | None:
    """How ``folder`` relates to ``image_dir`` when a second path leads to the same folder (a bind
    mount, a share mounted twice), which path strings cannot tell: folders are compared by device
    and inode. ``folder`` need not exist yet: its nearest existing parent decides."""
    photos = _identity(image_dir)
    if photos is None:
        return None
    mine = _identity(folder)
    if mine == photos:
        return "is"
    if any(_identity(p) == photos for p in folder.parents):
        return "lies inside"
    if mine is not None and any(_identity(p) == mine for p in image_dir.parents):
        return "contains"
    return None


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a few hundred bytes; /dev/zero would fill the memory


def read_limited(path: Path, limit: int = MAX_CONFIG_BYTES, what: str = "a config file is a small JSON object") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, opened without blocking (a FIFO
    would wait for a writer forever; /dev/zero would fill the memory).

    Raises:
        OSError: cannot be opened, is not a regular file, or is larger than the limit (``what``
            says what such a file should be).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "device or socket"
            raise OSError(f"not a regular file ({kind})")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"larger than {limit // 1024} KiB; {what}")
    return data


def load_config(path) -> Config:
    """Read and validate a JSON config file; relative paths resolve against the current directory.

    Raises:
        ImgclustError: the file is missing, is not UTF-8 JSON, or fails validation.
    """
    path = Path(path)
    try:
        data = read_limited(path)
        text = data.decode("utf-8-sig")  # -sig: a leading byte-order mark (Notepad) is fine
    except OSError as exc:
        raise ImgclustError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ImgclustError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImgclustError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # a number of thousands of digits, nesting thousands deep
        raise ImgclustError(f"{path}: not a usable JSON config ({type(exc).__name__}: {str(exc)[:80]})") from None
    return config_from_dict(raw, source=path)
