"""Cluster colours, one scheme for the PNG plots (:mod:`image_clustering.plots`) and the
interactive report, so cluster 7 looks the same in both.

Up to 10 clusters: matplotlib's ``tab10``; up to 20: ``tab20`` (its pairs of a strong and a light
shade of ten hues). Past 20, cycling either would give neighbouring clusters the same colour, so
the colours are chosen greedily, each the farthest (CIE 1976 ΔE in L*a*b*) from those chosen
before, from a grid of sRGB colours of middle lightness that read on white and on the report's
dark background alike: the farthest-point method of Glasbey et al. (2007, "Colour displays for
categorical images"), started from ``tab10``'s nine coloured hues. Past :data:`DISTINCT_MAX`
clusters no palette stays distinguishable; the plots and the map also write each cluster's number.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf"]
TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
         "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
         "#17becf", "#9edae5"]
UNCLUSTERED = "#d9d9d9"  # matplotlib's "0.85": the plots' light grey for unclustered photos
DISTINCT_MAX = 64  # colours generated past 20 clusters; more clusters cycle through them


def hex_to_rgb(colours: list[str]) -> np.ndarray:
    """float (n, 3) sRGB in [0, 1] of ``#rrggbb`` strings."""
    return np.array([[int(c[j:j + 2], 16) / 255 for j in (1, 3, 5)] for c in colours])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65 white) of float (n, 3) sRGB colours in [0, 1] (IEC 61966-2-1, CIE 15)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.column_stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])])


@lru_cache(maxsize=1)
def _distinct() -> tuple[str, ...]:
    levels = np.linspace(0, 1, 16)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    keep = (lab[:, 0] > 35) & (lab[:, 0] < 82)  # neither lost on white nor on the dark map
    grid, lab = grid[keep], lab[keep]
    seeds = [c for c in TAB10 if c != "#7f7f7f"]
    # Distances to the chosen colours and to white, black and the unclustered grey.
    avoid = srgb_to_lab(hex_to_rgb(seeds + ["#ffffff", "#141416", UNCLUSTERED]))
    nearest = np.min(np.linalg.norm(lab[:, None] - avoid[None], axis=2), axis=1)
    chosen = list(seeds)
    while len(chosen) < DISTINCT_MAX:
        best = int(np.argmax(nearest))
        chosen.append("#" + "".join(f"{round(v * 255):02x}" for v in grid[best]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=1))
    return tuple(chosen)


def cluster_colours(k: int) -> list[str]:
    """``#rrggbb`` colour of each of clusters 0..k−1 (unclustered photos: :data:`UNCLUSTERED`)."""
    palette = TAB10 if k <= 10 else TAB20 if k <= 20 else list(_distinct())
    return [palette[c % len(palette)] for c in range(k)]
