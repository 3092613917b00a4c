"""``imgclust``: the command-line tool, a thin layer over :mod:`image_clustering.pipeline`."""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: hide its C++ start-up logs

import click  # noqa: E402

from .config import NETWORKS  # noqa: E402
from .config import load_config as _load_config  # noqa: E402
from .errors import ImgclustError  # noqa: E402

# The heavy libraries (scikit-learn, TensorFlow, matplotlib) load with the pipeline, inside each
# command, so `imgclust --help` answers at once.

DEFAULT_CONFIG = "configs/configs.json"


_own_process = False  # True when the command line started this process (not click's CliRunner)


class _Group(click.Group):
    def __call__(self, *args, **kwargs):  # the console script and `python -m` come here; CliRunner does not
        global _own_process
        _own_process = True
        return super().__call__(*args, **kwargs)


class _Command(click.Command):
    """Turns expected failures into one line on stderr and exit status 1 (no traceback), and
    Ctrl-C into "interrupted" and exit status 130 (128 + SIGINT, as shells report it)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Everything written so far is complete (atomic writes, one shard per batch, the lock
            # released): the next run resumes from it.
            click.echo("interrupted", err=True)
            if _own_process:
                # Tearing TensorFlow down takes seconds on a busy machine and the interpreter would
                # also wait for decode threads: nothing is left to save, so leave at once.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)
            ctx.exit(130)
        except ImgclustError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # e.g. an output folder that cannot be written
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


def load_config(path):
    """:func:`image_clustering.config.load_config`, saying how to name another file when there is none."""
    if not os.path.lexists(path):
        raise ImgclustError(f"{path}: no config file there; name yours with --config FILE "
                            "(README, \"Config reference\")")
    return _load_config(path)


def _common(func):
    func = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                        type=click.Path(dir_okay=False), help="JSON config file.")(func)
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or progress lines.")(func)


_SCHEDULER = click.option("--scheduler", metavar="local|ADDRESS",
                          help="Compute on Dask: 'local' (a LocalCluster of compute.workers processes) or a scheduler "
                               "address such as tcp://host:8786; overrides compute.scheduler.")


def _load(config_path, scheduler=None):
    return load_config(config_path).with_scheduler(scheduler)


def _start(quiet: bool):
    """Send the library's log lines (logger ``image_clustering``) to stderr — with ``-q`` only
    warnings — and return :mod:`image_clustering.pipeline`, imported only now."""
    from . import pipeline

    logger = logging.getLogger("image_clustering")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "imgclust_cli", False)]
    handler = logging.StreamHandler(sys.stderr)  # the stderr of this call (tests swap it)
    handler.imgclust_cli = True
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return pipeline


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgclust")
def main():
    """Group a photo collection by visual content.

    Each photo becomes the feature vectors of two ImageNet networks (InceptionV3 and
    EfficientNet-Lite0, by model.extractor); PCA reduces them and t-SNE (or UMAP) maps them in 2-D;
    a k-means sweep over k picks the number of clusters; the photos are then grouped by Leiden
    communities of their neighbour graph (model.algorithm: also k-means, spectral, hierarchical or
    HDBSCAN) and linked into one folder per cluster, with plots and an interactive report. Photos
    can also be grouped by label words (tag, ocr, cluster-labels). At least 3 photos.

    Run `imgclust run` for every step, or each step on its own; --config names the JSON config
    (default configs/configs.json).
    """
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \x.. escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


@main.command(cls=_Command)
@_common
@click.option("--network", type=click.Choice(NETWORKS), help="Only this network (default: those in model.extractor).")
@click.option("--source", help="google-2015, keras-2016 (InceptionV3), google-2020 (Lite0), keras (VGG16, ResNet50), "
                                "or a local weights file.")
@click.option("--force", is_flag=True, help="Fetch again even if verified weights are present.")
def download(config_path, quiet, network, source, force):
    """Fetch ImageNet weights into paths.model_dir (checksum-verified)."""
    config = load_config(config_path)
    networks = (network,) if network else config.model.extractor
    if source and len(networks) > 1:
        raise click.UsageError("--source applies to one network: add --network")
    pipeline = _start(quiet)
    for manifest in pipeline.download(config, source, force, networks):
        click.echo(f"download: {manifest['network']} {manifest['source']} weights at {manifest['file']}")


@main.command(cls=_Command)
@_common
@_SCHEDULER
def extract(config_path, quiet, scheduler):
    """Compute the feature vectors of every new or changed image."""
    pipeline = _start(quiet)
    click.echo(pipeline.extract(_load(config_path, scheduler), progress=not quiet).line())


@main.command("find-k", cls=_Command)
@_common
@_SCHEDULER
def find_k(config_path, quiet, scheduler):
    """Embed the features, sweep k-means over k, plot the elbow and suggest k."""
    config = _load(config_path, scheduler)
    pipeline = _start(quiet)
    result = pipeline.find_k(config, progress=not quiet)
    others = ", ".join(f"{c} {k}" for c, k in result.sweep.suggestions.items() if c != result.sweep.criterion)
    click.echo(f"find-k: suggested k = {result.suggested_k} ({result.sweep.criterion}; {others}); "
               f"plots in {config.plot_dir}")


def _cluster_line(result) -> str:
    left = f", {result.unclustered} unclustered" if result.unclustered else ""
    return (f"cluster: {len(result.paths)} images in {result.k} clusters (sizes {', '.join(map(str, result.sizes))}{left}); "
            f"labels {result.label_files[0]}; links {result.link_root}")


@main.command(cls=_Command)
@_common
@click.option("--recluster", is_flag=True, help="Cluster all photos afresh (ids matched to the previous run's by "
              "overlap, edits kept) instead of placing the new photos into the existing clusters.")
def cluster(config_path, quiet, recluster):
    """Cluster (model.algorithm) and link the images into one folder per cluster; later runs keep the clusters."""
    pipeline = _start(quiet)
    config = load_config(config_path)
    result = pipeline.cluster(config, progress=not quiet, recluster=recluster)
    click.echo(_cluster_line(result))
    click.echo(f"report: {pipeline.report(config)}")


@main.group(context_settings={"help_option_names": ["-h", "--help"]})
def edit():
    """Correct the clusters: every later `cluster` keeps these edits until undone.

    CLUSTER is a cluster id or name; PHOTO the path as the labels CSV writes it."""


def _edit(config_path, quiet, op, **args):
    pipeline = _start(quiet)
    for line in pipeline.edit(load_config(config_path), op, **args).lines:
        click.echo(line)


@edit.command("rename", cls=_Command)
@_common
@click.argument("cluster")
@click.argument("name")
def edit_rename(config_path, quiet, cluster, name):
    """Name a cluster (its folders take the name)."""
    _edit(config_path, quiet, "rename", cluster=cluster, name=name)


@edit.command("move", cls=_Command)
@_common
@click.argument("photo")
@click.argument("cluster")
def edit_move(config_path, quiet, photo, cluster):
    """Move PHOTO to CLUSTER and pin it there."""
    _edit(config_path, quiet, "move", photo=photo, cluster=cluster)


@edit.command("merge", cls=_Command)
@_common
@click.argument("into")
@click.argument("other")
def edit_merge(config_path, quiet, into, other):
    """Merge cluster OTHER into cluster INTO (which keeps its id and name)."""
    _edit(config_path, quiet, "merge", into=into, other=other)


@edit.command("split", cls=_Command)
@_common
@click.argument("cluster")
@click.option("--k", "k", default=2, show_default=True, type=click.IntRange(2), help="Into how many clusters.")
def edit_split(config_path, quiet, cluster, k):
    """Split a cluster in K by its photos' feature graph (the largest part keeps the id and name)."""
    _edit(config_path, quiet, "split", cluster=cluster, k=k)


@edit.command("exclude", cls=_Command)
@_common
@click.argument("photo")
def edit_exclude(config_path, quiet, photo):
    """Take PHOTO out of every cluster."""
    _edit(config_path, quiet, "exclude", photo=photo)


@edit.command("undo", cls=_Command)
@_common
def edit_undo(config_path, quiet):
    """Undo the latest edit still in force."""
    _edit(config_path, quiet, "undo")


@edit.command("log", cls=_Command)
@_common
def edit_log(config_path, quiet):
    """List the edits, oldest first."""
    _edit(config_path, quiet, "log")


@edit.command("apply", cls=_Command)
@_common
@click.argument("file", type=click.Path(dir_okay=False))
def edit_apply(config_path, quiet, file):
    """Apply a JSON list of edits (as the report exports them), all or none."""
    _edit(config_path, quiet, "apply", file=file)


@main.command(cls=_Command)
@_common
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
@click.option("--no-open", is_flag=True, help="Do not open the page in the browser.")
def serve(config_path, quiet, port, no_open):
    """Serve the report on 127.0.0.1 with controls to rename, move, merge, split and undo (Ctrl-C stops it)."""
    from .server import serve as serve_report

    _start(quiet)
    serve_report(load_config(config_path), port, open_browser=not no_open, announce=click.echo)


@main.command(cls=_Command)
@_common
@click.option("--to", "to", type=click.Path(file_okay=False), help="Folder to lay the clusters out in.")
@click.option("--mode", type=click.Choice(["copy", "hardlink", "symlink"]), default="copy", show_default=True,
              help="Copies (editing them never changes a photo), hard links or symbolic links.")
@click.option("--dry-run", is_flag=True, help="Print and write the plan; change nothing.")
@click.option("--undo", is_flag=True, help="Remove what earlier organise runs made (under --to, else everywhere).")
@click.option("--keepers-only", is_flag=True,
              help="Leave out the duplicates that are not their group's keeper (from the last `imgclust duplicates`).")
def organise(config_path, quiet, to, mode, dry_run, undo, keepers_only):
    """Lay the photos out as one named folder per cluster under DIR; re-run after edits, undo any time."""
    pipeline = _start(quiet)
    config = load_config(config_path)
    result = pipeline.organise(config, Path(to) if to else None, mode, dry_run, undo, keepers_only)
    if undo:
        click.echo(f"organise --undo: removed {result.done.get('removed', 0)}, left {result.done.get('left', 0)} "
                   "(changed since they were made)")
        return
    if dry_run or not quiet:
        for step in result.plan.steps:
            click.echo(step.line())
    counts = ", ".join(f"{a} {result.plan.count(a)}" for a in ("place", "remove", "mkdir", "rmdir", "conflict", "skip")
                       if result.plan.count(a))
    click.echo(f"organise{' (dry run)' if dry_run else ''}: {counts or 'nothing to do'} in {result.plan.root}; "
               f"plan {result.plan_file}")


@main.command(cls=_Command)
@_common
@click.option("--truth", type=click.Path(dir_okay=False), help="CSV path,label (default: first folder level).")
@click.option("--labels", "of_labels", is_flag=True, help="Score the clustering of cluster-labels instead.")
def evaluate(config_path, quiet, truth, of_labels):
    """Score the clustering against ground-truth classes: NMI, ARI, ACC, homogeneity, completeness."""
    from .evaluation import format_table

    pipeline = _start(quiet)
    scores, out = pipeline.evaluate(load_config(config_path), Path(truth) if truth else None, of_labels)
    click.echo(format_table(scores))
    click.echo(f"evaluate: scores in {out}", err=True)


@main.command(cls=_Command)
@_common
def tag(config_path, quiet):
    """Up to model.tag_count ImageNet labels per image (EfficientNet-Lite0), as a CSV."""
    pipeline = _start(quiet)
    out = pipeline.tag(load_config(config_path), progress=not quiet)
    click.echo(f"tag: labels in {out}")


@main.command(cls=_Command)
@_common
def ocr(config_path, quiet):
    """The text in every photo (Tesseract OCR), as a CSV and as label words; only new or changed photos are read."""
    pipeline = _start(quiet)
    click.echo(pipeline.ocr(load_config(config_path), progress=not quiet).line())


_LABEL_FILE = click.option("--labels-file", type=click.Path(dir_okay=False),
                           help="Label table (wide or long CSV; default: by model.label_source, the tag table "
                                "— paths.label_file, else the tag CSV — and/or the OCR words).")


@main.command("cluster-labels", cls=_Command)
@_common
@_LABEL_FILE
def cluster_labels(config_path, quiet, labels_file):
    """Cluster images by their label words: Jaccard similarity, Ward linkage, k by the L-method."""
    pipeline = _start(quiet)
    result = pipeline.cluster_by_tags(load_config(config_path), Path(labels_file) if labels_file else None)
    links = f"; links {result.link_root}" if result.link_root else ""
    click.echo(f"cluster-labels: {len(result.images)} images ({result.vocabulary} labels) in {result.k} "
               f"cluster{'s' if result.k != 1 else ''} "
               f"(sizes {', '.join(map(str, result.sizes))}; L-method knee {result.knee}); "
               f"labels {result.label_files[0]}{links}")
    click.echo(f"report: {pipeline.tag_report(load_config(config_path), Path(labels_file) if labels_file else None)}")


@main.command("tag-network", cls=_Command)
@_common
@_LABEL_FILE
def tag_network(config_path, quiet, labels_file):
    """Export the image–label network for Gephi (GEXF, edges/nodes CSV) and draw it (ForceAtlas2)."""
    pipeline = _start(quiet)
    files = pipeline.tag_network(load_config(config_path), Path(labels_file) if labels_file else None)
    click.echo(f"tag-network: {files[0]}, {files[1].name}, {files[2].name}; picture {files[3]}")


@main.command(cls=_Command)
@_common
@click.option("--portable", is_flag=True,
              help="A report to send: previews of the photos inside, no links to them, no local paths; "
                   "prints its path as the last line.")
def report(config_path, quiet, portable):
    """Write the interactive report (open its index.html in a browser; works offline)."""
    pipeline = _start(quiet)
    index = pipeline.report(load_config(config_path), portable=portable)
    click.echo(str(index) if portable else f"report: {index}")


@main.command(cls=_Command)
@_common
@click.argument("photo", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "count", default=12, show_default=True, type=click.IntRange(1), help="How many photos.")
def similar(config_path, quiet, photo, count):
    """The photos most similar to PHOTO (inside or outside the collection): path and cosine similarity."""
    from .report import display_text

    pipeline = _start(quiet)
    for path, sim in pipeline.similar(load_config(config_path), Path(photo), count):
        click.echo(f"{display_text(path)}\t{sim:.4f}")


@main.command(cls=_Command)
@_common
def duplicates(config_path, quiet):
    """Groups of duplicate photos (exact, near-identical, burst, same scene: duplicates.grade) with a
    suggested keeper each, and the 50 most unusual photos. Nothing is deleted or moved."""
    pipeline = _start(quiet)
    result = pipeline.duplicates(load_config(config_path), progress=not quiet)
    grades = {}
    for group in result.groups:
        grades[group.grade] = grades.get(group.grade, 0) + 1
    counts = ", ".join(f"{n} {g}" for g, n in grades.items()) or "none"
    csv_path, _json, outliers, links = result.files
    click.echo(f"duplicates: {len(result.groups)} groups ({counts}) of {sum(len(g.members) for g in result.groups)} "
               f"photos; table {csv_path}; links {links}; outliers {outliers}")


@main.command(cls=_Command)
@_common
@_SCHEDULER
def run(config_path, quiet, scheduler):
    """All steps in order: download, extract, find-k, cluster, report."""
    start = time.perf_counter()
    pipeline = _start(quiet)
    result = pipeline.run(_load(config_path, scheduler), progress=not quiet)
    click.echo(result.extract.line())
    click.echo(f"find-k: suggested k = {result.find_k.suggested_k} ({result.find_k.sweep.criterion})")
    click.echo(_cluster_line(result.cluster))
    click.echo(f"report: {result.report}")
    click.echo(f"run: done in {time.perf_counter() - start:.1f} s", err=True)


if __name__ == "__main__":
    sys.exit(main())
