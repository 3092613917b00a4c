"""Label table → the bipartite image–label network of the Gephi workflow: exported for Gephi
(GEXF, and the ``edges.csv`` / ``nodes.csv`` spreadsheet pair its image-preview plugin reads) and
drawn by us with a ForceAtlas2 layout (Jacomy et al. 2014, PLoS ONE 9(6): e98679; networkx's
``forceatlas2_layout``), images as thumbnails and labels as words sized by degree."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from .atomic import atomic_path, atomic_write_csv
from .labels import LabelTable

LABEL_PREFIX = "label:"  # keeps label node ids apart from image ids (an image may be named "tree")
THUMBNAILS_MAX = 1500  # above this many images, dots instead of thumbnails (drawing time)


def label_graph(table: LabelTable, clusters: dict[str, int] | None = None) -> nx.Graph:
    """Bipartite graph: one node per image (id = the image as given; attributes ``type`` "image",
    ``label`` its file name, ``image`` its path, ``cluster`` when ``clusters`` gives one) and per
    label (id ``label:<word>``; ``type`` "label", ``label`` the word); an edge per (image, label)
    weighted by the label's score."""
    graph = nx.Graph()
    for image, labels in zip(table.images, table.labels):
        attrs = {"type": "image", "label": image.rsplit("/", 1)[-1], "image": image}
        if clusters is not None and image in clusters:
            attrs["cluster"] = int(clusters[image])
        graph.add_node(image, **attrs)
        for word, score in labels.items():
            graph.add_node(LABEL_PREFIX + word, type="label", label=word)
            graph.add_edge(image, LABEL_PREFIX + word, weight=float(score))
    return graph


def write_gephi(graph: nx.Graph, gexf: Path, edges_csv: Path, nodes_csv: Path) -> None:
    """Write the graph as GEXF 1.2 and as Gephi's spreadsheet pair: ``edges.csv`` (Source, Target,
    Weight; image → label) and ``nodes.csv`` (Id, Label, type, image, cluster)."""
    with atomic_path(gexf) as tmp:
        nx.write_gexf(graph, tmp)
    atomic_write_csv(edges_csv, ["Source", "Target", "Weight"],
                     ([u, v, f"{d['weight']:.4f}"] if graph.nodes[u]["type"] == "image" else [v, u, f"{d['weight']:.4f}"]
                      for u, v, d in graph.edges(data=True)))
    atomic_write_csv(nodes_csv, ["Id", "Label", "type", "image", "cluster"],
                     ([node, a["label"], a["type"], a.get("image", ""), a.get("cluster", "")]
                      for node, a in graph.nodes(data=True)))


def layout(graph: nx.Graph, seed: int = 0, iterations: int = 200) -> dict:
    """ForceAtlas2 positions (networkx), edges pulling by weight, LinLog off, as Gephi's defaults;
    node mass grows with degree so busy labels sit apart."""
    mass = {node: 1 + graph.degree(node) for node in graph}
    return nx.forceatlas2_layout(graph, max_iter=iterations, weight="weight", seed=seed, node_mass=mass,
                                 scaling_ratio=2.0, gravity=1.0, strong_gravity=False)


def render(graph: nx.Graph, positions: dict, photos: dict[str, Path], path: Path, title: str) -> None:
    """Draw the network: grey edges, each image as a thumbnail (20–64 px, smaller for more images;
    a dot above :data:`THUMBNAILS_MAX` images, or for an image that cannot be read or is not in
    ``photos``), each label as its word sized by degree. PNG written atomically.

    Args:
        photos: image node → the photo file it may open (:func:`~image_clustering.labels.local_photos`);
            nothing else is ever opened.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from .plots import plt, save_figure, thumbnail

    fig, ax = plt.subplots(figsize=(16, 16))
    xy = {node: np.asarray(p, dtype=float) for node, p in positions.items()}
    ax.add_collection(LineCollection([(xy[u], xy[v]) for u, v in graph.edges()], colors="0.8", linewidths=0.3,
                                     zorder=1))
    images = [n for n, a in graph.nodes(data=True) if a["type"] == "image"]
    words = [n for n, a in graph.nodes(data=True) if a["type"] == "label"]
    thumbnails = len(images) <= THUMBNAILS_MAX
    thumb = int(np.clip(900 / np.sqrt(max(len(images), 1)), 20, 64))
    dots = []
    for node in images:
        # a URL, a missing or a broken file: a dot instead
        tile = thumbnail(photos[node], thumb) if thumbnails and node in photos else None
        if tile is None:
            dots.append(xy[node])
        else:
            ax.add_artist(AnnotationBbox(OffsetImage(np.asarray(tile), zoom=1.0), xy[node], frameon=False, zorder=2))
    if dots:
        ax.scatter(*np.array(dots).T, s=8, color="tab:blue", zorder=2)
    degrees = np.array([graph.degree(w) for w in words], dtype=float)
    top = degrees.max() if len(degrees) else 1.0
    for word, degree in zip(words, degrees):
        ax.text(*xy[word], graph.nodes[word]["label"], fontsize=5 + 17 * np.sqrt(degree / top), ha="center",
                va="center", zorder=3, color="black",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.6, "lw": 0})
    everything = np.array(list(xy.values()))
    pad = 0.03 * (everything.max(axis=0) - everything.min(axis=0) + 1e-9)
    ax.set_xlim(everything[:, 0].min() - pad[0], everything[:, 0].max() + pad[0])
    ax.set_ylim(everything[:, 1].min() - pad[1], everything[:, 1].max() + pad[1])
    ax.set_axis_off()
    ax.set_title(title)
    save_figure(fig, path, dpi=100)
