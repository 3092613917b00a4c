"""Pictures of each stage: the elbow plot, embedding scatters, dendrograms, contact sheets.

As in matplotlib's own advice for libraries (and HDBSCAN's plots), each function draws into the
axes it is given (``ax=None``: a new :class:`matplotlib.figure.Figure`, not a pyplot figure, so no
backend is chosen at import and a notebook shows the figure inline) and returns them; the workflow
(:mod:`image_clustering.pipeline`) saves them with :func:`save_figure`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path
from .clustering import KSweep
from .colours import UNCLUSTERED, cluster_colours
from .images import open_rgb


def new_axes(figsize: tuple[float, float], ax: Axes | None = None) -> Axes:
    """``ax``, or the axes of a new stand-alone figure of ``figsize`` inches."""
    return ax if ax is not None else Figure(figsize=figsize).add_subplot()


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


def save_image(image: Image.Image, path: Path) -> None:
    """Write a Pillow image (a contact sheet) as PNG atomically."""
    with atomic_path(path) as tmp:
        # zlib level 1: a photo montage compresses barely better at the default 6 (2.37 against
        # 2.48 MB for 100 thumbnails) but takes 3x as long (0.29 against 0.09 s per sheet).
        image.save(tmp, format="PNG", compress_level=1)


def thumbnail(path: Path, side: int) -> Image.Image | None:
    """The photo as an upright RGB image fitting in ``side``×``side`` (aspect kept), decoded as
    :func:`image_clustering.images.open_rgb` does; None when it cannot be read (a picture must not
    fail because of one broken photo)."""
    try:
        tile = open_rgb(path, side)
    except Exception:  # any decoding failure: the caller draws a placeholder
        return None
    tile.thumbnail((side, side))
    return tile


def plot_elbow(sweep: KSweep, title: str = "", ax: Axes | None = None) -> Axes:
    """Inertia against k (the elbow plot of the original tool) with the silhouette score on a second
    axis and the suggested k marked; returns ``ax``."""
    ax = new_axes((8, 4.5), ax)
    ax.plot(sweep.ks, sweep.inertia, "o-", ms=3, color="tab:blue", label="inertia")
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("inertia (sum of squared distances)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(sweep.ks, sweep.silhouette, "s-", ms=3, color="tab:orange", label="silhouette")
    ax2.set_ylabel("mean silhouette", color="tab:orange")
    ax.axvline(sweep.suggested_k, color="tab:red", ls="--")
    i = int(np.searchsorted(sweep.ks, sweep.suggested_k))
    ax.annotate(f"suggested k = {sweep.suggested_k}", (sweep.suggested_k, sweep.inertia[i]),
                xytext=(10, 20), textcoords="offset points", color="tab:red")
    ax.set_title(title)
    return ax


CRITERION_LABELS = {"silhouette": "silhouette max", "davies_bouldin": "Davies–Bouldin min",
                    "elbow": "elbow knee", "lmethod": "L-method"}


def plot_k_criteria(sweep: KSweep, title: str = "", fig: Figure | None = None) -> Figure:
    """Three panels side by side — inertia (elbow knee and L-method marked), mean silhouette,
    Davies–Bouldin index — each criterion's k drawn as a dashed line, the one in use solid; drawn
    into ``fig`` (default: a new figure), which is returned."""
    fig = fig if fig is not None else Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    panels = [(axes[0], sweep.inertia, "inertia", ("elbow", "lmethod")),
              (axes[1], sweep.silhouette, "mean silhouette (higher is better)", ("silhouette",)),
              (axes[2], sweep.davies_bouldin, "Davies–Bouldin (lower is better)", ("davies_bouldin",))]
    colours = {"silhouette": "tab:orange", "davies_bouldin": "tab:green", "elbow": "tab:purple", "lmethod": "tab:red"}
    for ax, values, label, criteria in panels:
        ax.plot(sweep.ks, values, "o-", ms=2.5, color="tab:blue")
        ax.set_xlabel("k")
        ax.set_ylabel(label)
        for c in criteria:
            k = sweep.suggestions[c]
            ax.axvline(k, color=colours[c], ls="-" if c == sweep.criterion else "--",
                       label=f"{CRITERION_LABELS[c]}: k = {k}" + (" (used)" if c == sweep.criterion else ""))
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_dendrogram(z: np.ndarray, k: int, cut: float, title: str = "", ax: Axes | None = None) -> Axes:
    """Dendrogram of a SciPy linkage matrix ``z`` (its last merges, leaves labelled with their
    image counts), branches below the ``cut`` height coloured per cluster and the cut drawn as a
    dashed line; ``k`` is the number of clusters it leaves (sets how many merges are shown)."""
    from scipy.cluster.hierarchy import dendrogram

    ax = new_axes((12, 5), ax)
    dendrogram(z, ax=ax, truncate_mode="lastp", p=min(max(3 * k, 30), 200), no_labels=False, leaf_font_size=7,
               color_threshold=cut, above_threshold_color="grey")
    ax.axhline(cut, color="tab:red", ls="--", label=f"cut: {k} clusters")
    ax.legend()
    ax.set_ylabel("merge distance")
    ax.set_xlabel("images (counts in brackets for merged leaves)")
    ax.set_title(title)
    return ax


SCATTER_MAX = 200_000  # points drawn: above, a seeded sample (a million dots are one blot, drawn slowly)


def plot_scatter(embedding: np.ndarray, labels: np.ndarray | None = None, title: str = "",
                 ax: Axes | None = None) -> Axes:
    """Scatter of the first two embedding dimensions (N, d), coloured by cluster when ``labels``
    (int (N,)) is given (:func:`~image_clustering.colours.cluster_colours`; each cluster's number
    written at its median point; unclustered images, label -1, light grey); above
    :data:`SCATTER_MAX` points a seeded random sample of that many is drawn. Returns ``ax``."""
    if len(embedding) > SCATTER_MAX:
        keep = np.sort(np.random.default_rng(0).choice(len(embedding), SCATTER_MAX, replace=False))
        embedding, labels = embedding[keep], (labels[keep] if labels is not None else None)
    ax = new_axes((7, 7), ax)
    y = embedding[:, 1] if embedding.shape[1] > 1 else np.zeros(len(embedding))
    if labels is None:
        ax.scatter(embedding[:, 0], y, s=6, alpha=0.7)
    else:
        k = int(labels.max()) + 1
        colours = cluster_colours(k)  # the report's colours too
        ax.scatter(embedding[:, 0], y, s=6, alpha=0.8, c=[colours[c] if c >= 0 else UNCLUSTERED for c in labels])
        for c in range(k):
            members = labels == c
            if members.any():
                ax.text(np.median(embedding[members, 0]), np.median(y[members]), str(c), fontsize=9,
                        weight="bold", ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0})
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_title(title)
    return ax


def contact_sheet(image_paths: list[Path], title: str, thumb: int = 128, columns: int = 10,
                  limit: int = 100) -> Image.Image:
    """A montage of up to ``limit`` thumbnails (``thumb`` px squares, aspect kept) under a title
    line, as an RGB Pillow image; the caller orders the images (e.g. nearest the cluster centre
    first). Unreadable images become grey tiles."""
    shown = image_paths[:limit]
    rows = max(1, -(-len(shown) // columns))
    cols = min(columns, max(1, len(shown)))
    header = 30
    sheet = Image.new("RGB", (max(cols * thumb, 480), rows * thumb + header), "white")
    ImageDraw.Draw(sheet).text((6, 5), title, fill="black", font=ImageFont.load_default(size=18))
    for i, p in enumerate(shown):
        tile = thumbnail(p, thumb - 4) or Image.new("RGB", (thumb - 4, thumb - 4), "lightgrey")
        x = (i % columns) * thumb + (thumb - tile.width) // 2
        y = header + (i // columns) * thumb + (thumb - tile.height) // 2
        sheet.paste(tile, (x, y))
    return sheet


def plot_tag_k(ks: np.ndarray, separation: np.ndarray, knee: int, title: str = "",
                 errors: tuple[np.ndarray, np.ndarray] | None = None, ylabel: str | None = None,
                 fig: Figure | None = None) -> Figure:
    """The label workflow's choice of k: the separation curve (within − between similarity) and the
    L-method's size-weighted two-line RMSE for each split (``errors`` = (splits, errors), else
    computed here), the knee marked on both; drawn into ``fig`` (default: a new figure), which is
    returned."""
    from .clustering import l_method_errors

    fig = fig if fig is not None else Figure(figsize=(12, 4.2))
    left, right = fig.subplots(1, 2)
    left.plot(ks, separation, "o-", ms=3)
    left.set_xlabel("k")
    left.set_ylabel(ylabel or "mean (within − between) Jaccard similarity")
    splits, errors = errors if errors is not None else l_method_errors(ks, separation)
    right.plot(splits, errors, "o-", ms=3, color="tab:red")
    right.set_xlabel("k at the split")
    right.set_ylabel("size-weighted RMSE of the two lines")
    for ax in (left, right):
        ax.axvline(knee, color="tab:red", ls="--", label=f"L-method knee: k = {knee}")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_boxed_dendrogram(z: np.ndarray, labels: np.ndarray, title: str = "", ax: Axes | None = None) -> Axes:
    """Full dendrogram (no leaf labels) with each cluster's leaves boxed, as R's ``rect.hclust``;
    ``labels`` (N,) gives each image's cluster (clusters must be subtrees: cuts of ``z``)."""
    from matplotlib.patches import Rectangle
    from scipy.cluster.hierarchy import dendrogram

    from .clustering import cut_height

    k = int(labels.max()) + 1
    cut = cut_height(z, k)
    ax = new_axes((14, 6), ax)
    tree = dendrogram(z, ax=ax, no_labels=True, color_threshold=cut, above_threshold_color="grey")
    order = np.asarray(labels)[tree["leaves"]]  # leaf i is drawn at x = 5 + 10·i
    for c in range(k):
        at = np.flatnonzero(order == c)
        ax.add_patch(Rectangle((10 * at.min() + 1, 0), 10 * (at.max() - at.min()) + 8, cut, fill=False,
                               edgecolor="tab:red", lw=1.2))
        ax.text(10 * (at.min() + at.max()) / 2 + 5, cut, str(c), ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set_ylabel("Ward merge height (Jaccard distance)")
    ax.set_title(title)
    return ax
