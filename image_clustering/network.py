"""Label table → the bipartite image–label network of the Gephi workflow: exported for Gephi
(GEXF, and the ``edges.csv`` / ``nodes.csv`` spreadsheet pair its image-preview plugin reads) and
drawn by us with a ForceAtlas2 layout (Jacomy et al. 2014, PLoS ONE 9(6): e98679; networkx's
``forceatlas2_layout``), images as thumbnails and labels as words sized by degree.

networkx's ForceAtlas2 holds several N × N arrays (N nodes) and takes O(N²) time per iteration, so
above :data:`FULL_LAYOUT_MAX` nodes only the label nodes are laid out (:func:`layout`)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import networkx as nx
import numpy as np
from scipy import sparse

from .atomic import atomic_path, atomic_write_csv
from .tags import TagTable

logger = logging.getLogger(__name__)

LABEL_PREFIX = "label:"  # label node ids; image ids never start with it (image_node)
IMAGE_PREFIX = "image:"
THUMBNAILS_MAX = 1500  # above this many images, dots instead of thumbnails (drawing time)
FULL_LAYOUT_MAX = 1_000  # nodes; ForceAtlas2 of all of them: ~10 s and ~0.2 GB (measured, 2 cores)
LABELS_LAID_OUT = 1_000  # above FULL_LAYOUT_MAX: ForceAtlas2 of the most used labels only
WORDS_DRAWN = 500  # the most used labels are written as words; more would only overlap
# Characters XML 1.0 does not allow (C0 controls but tab, LF, CR; surrogates; U+FFFE, U+FFFF).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


WORD_SHOWN = 40  # characters of a tag drawn in the picture; matplotlib lays out long text slowly


def _shown(word: str) -> str:
    # valid Unicode only: matplotlib's font code raises on lone surrogates (undecodable bytes)
    word = word.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return word if len(word) <= WORD_SHOWN else word[: WORD_SHOWN - 1] + "…"


def image_node(image: str) -> str:
    """Node id of an image: the image as given, or ``image:<image>`` when that starts with
    ``label:`` or ``image:`` — so no image id is ever a label id (``label:<word>``), and the map
    is one-to-one."""
    return IMAGE_PREFIX + image if image.startswith((LABEL_PREFIX, IMAGE_PREFIX)) else image


def xml_text(text: str) -> str:
    """``text`` with each character XML 1.0 forbids replaced by U+FFFD (�), so the GEXF stays XML."""
    return _XML_INVALID.sub("\ufffd", text)


def tag_graph(table: TagTable, clusters: dict[str, int] | None = None) -> nx.Graph:
    """Bipartite graph: one node per image (id :func:`image_node` of the image as given; attributes
    ``type`` "image", ``label`` its file name, ``image`` its path, ``cluster`` when ``clusters``
    gives one) and per label (id ``label:<word>``; ``type`` "label", ``label`` the word); an edge
    per (image, label) weighted by the label's score."""
    graph = nx.Graph()
    for image, labels in zip(table.images, table.tags):
        attrs = {"type": "image", "label": image.rsplit("/", 1)[-1], "image": image}
        if clusters is not None and image in clusters:
            attrs["cluster"] = int(clusters[image])
        node = image_node(image)
        graph.add_node(node, **attrs)
        for word, score in labels.items():
            graph.add_node(LABEL_PREFIX + word, type="label", label=word)
            graph.add_edge(node, LABEL_PREFIX + word, weight=float(score))
    return graph


def _xml_safe(graph: nx.Graph) -> nx.Graph:
    """A copy of ``graph`` with :func:`xml_text` applied to every node id and string attribute;
    an id that would then equal another node's gets ``~2``, ``~3``… appended."""
    ids, taken = {}, set()
    for node in graph:
        clean = xml_text(node)
        if clean != node:  # only a changed id can collide
            base, n = clean, 2
            while clean in graph or clean in taken:
                clean, n = f"{base}~{n}", n + 1
        taken.add(clean)
        ids[node] = clean
    safe = nx.Graph()
    safe.add_nodes_from((ids[node], {k: xml_text(v) if isinstance(v, str) else v for k, v in a.items()})
                        for node, a in graph.nodes(data=True))
    safe.add_edges_from((ids[u], ids[v], d) for u, v, d in graph.edges(data=True))
    return safe


def write_gephi(graph: nx.Graph, gexf: Path, edges_csv: Path, nodes_csv: Path) -> None:
    """Write the graph as GEXF 1.2 and as Gephi's spreadsheet pair: ``edges.csv`` (Source, Target,
    Weight; image → label) and ``nodes.csv`` (Id, Label, type, image, cluster).

    Characters XML forbids (control characters in a label or a file name) are replaced by U+FFFD
    in the GEXF (:func:`xml_text`), so Gephi and ``networkx.read_gexf`` read it; the CSVs keep
    every string as it is (formula cells neutralised, :func:`~image_clustering.atomic.neutralise_cell`).
    """
    with atomic_path(gexf) as tmp:
        nx.write_gexf(_xml_safe(graph), tmp)
    atomic_write_csv(edges_csv, ["Source", "Target", "Weight"],
                     ([u, v, f"{d['weight']:.4f}"] if graph.nodes[u]["type"] == "image" else [v, u, f"{d['weight']:.4f}"]
                      for u, v, d in graph.edges(data=True)))
    atomic_write_csv(nodes_csv, ["Id", "Label", "type", "image", "cluster"],
                     ([node, a["label"], a["type"], a.get("image", ""), a.get("cluster", "")]
                      for node, a in graph.nodes(data=True)))


def _forceatlas2(graph: nx.Graph, seed: int, iterations: int) -> dict:
    """ForceAtlas2 positions (networkx), edges pulling by weight, LinLog off, as Gephi's defaults;
    node mass grows with degree so busy nodes sit apart."""
    mass = {node: 1 + graph.degree(node) for node in graph}
    return nx.forceatlas2_layout(graph, max_iter=iterations, weight="weight", seed=seed, node_mass=mass,
                                 scaling_ratio=2.0, gravity=1.0, strong_gravity=False)


def layout(graph: nx.Graph, seed: int = 0, iterations: int = 200) -> dict:
    """Positions of the nodes of :func:`tag_graph`, node → (x, y).

    Up to :data:`FULL_LAYOUT_MAX` nodes: ForceAtlas2 of the whole graph. Above — time and memory
    then grow with the edges, not with N² —: ForceAtlas2 of the :data:`LABELS_LAID_OUT` most used
    labels alone, linked by how often two labels describe the same image (edge weight: the Ochiai
    coefficient co-occurrences / √(uses₁ · uses₂)); each other label goes to the mean of the
    laid-out labels it shares images with, each image to the mean of its labels (a
    little seeded jitter apart), and what shares nothing with the laid-out labels to a ring
    outside. One log line says which was done.
    """
    n = graph.number_of_nodes()
    if n <= FULL_LAYOUT_MAX:
        logger.info(f"ForceAtlas2 layout of {n} nodes, {graph.number_of_edges()} edges")
        return _forceatlas2(graph, seed, iterations)
    nodes = list(graph)
    index = {node: i for i, node in enumerate(nodes)}
    is_label = np.array([graph.nodes[node]["type"] == "label" for node in nodes])
    labels = np.flatnonzero(is_label)
    images = np.flatnonzero(~is_label)
    uses = np.array([graph.degree(nodes[i]) for i in labels])
    top = labels[np.argsort(-uses, kind="stable")[:LABELS_LAID_OUT]]
    row = np.full(n, -1)
    row[images] = np.arange(len(images))
    col = np.full(n, -1)
    col[labels] = np.arange(len(labels))
    e = graph.number_of_edges()
    u = np.fromiter((index[a] for a, _ in graph.edges()), dtype=int, count=e)
    v = np.fromiter((index[b] for _, b in graph.edges()), dtype=int, count=e)
    image_end = np.where(is_label[u], v, u)
    label_end = np.where(is_label[u], u, v)
    # (images, labels): 1 where the image has the label (a score of 0 still counts)
    has = sparse.csr_matrix((np.ones(e), (row[image_end], col[label_end])), shape=(len(images), len(labels)))
    binary = has[:, col[top]]
    together = (binary.T @ binary).tocoo()  # co-occurrence counts of the laid-out labels
    count = together.diagonal()
    keep = together.row < together.col
    ochiai = together.data[keep] / np.sqrt(count[together.row[keep]] * count[together.col[keep]])
    labels_graph = nx.Graph()
    labels_graph.add_nodes_from(range(len(top)))
    labels_graph.add_weighted_edges_from(zip(together.row[keep], together.col[keep], ochiai))
    which = f"the {len(top)} most used of {len(labels)}" if len(top) < len(labels) else f"all {len(labels)}"
    logger.info(f"{n} nodes are too many for ForceAtlas2 of all of them (above {FULL_LAYOUT_MAX:,}): ForceAtlas2 of "
        f"{which} labels, each of {len(images)} images at the mean of its labels")
    pos = np.zeros((n, 2))
    spread = _forceatlas2(labels_graph, seed, iterations)
    pos[top] = np.array([spread[i] for i in range(len(top))]).reshape(-1, 2)
    centre = np.median(pos[top], axis=0) if len(top) else np.zeros(2)
    reach = np.linalg.norm(pos[top] - centre, axis=1)
    jitter = 0.05 * (np.median(reach) if len(top) and np.median(reach) > 0 else 1.0)
    rng = np.random.default_rng(seed)
    # each other label at the mean of the laid-out labels it shares images with
    known = np.zeros(len(labels), bool)
    known[col[top]] = True
    rest = np.setdiff1d(labels, top)
    if len(rest):
        shared = has[:, col[rest]].T @ binary
        count = np.asarray(shared.sum(axis=1)).ravel()
        near = count > 0
        pos[rest[near]] = (shared[near] @ pos[top]) / count[near, None] + rng.normal(0, jitter, (int(near.sum()), 2))
        known[col[rest[near]]] = True
    # each image at the mean of its placed labels, a little jitter apart
    weights = has[:, np.flatnonzero(known)]
    total = np.asarray(weights.sum(axis=1)).ravel()
    placed = total > 0
    pos[images[placed]] = (weights[placed] @ pos[labels[known]]) / total[placed, None]
    pos[images[placed]] += rng.normal(0, jitter, (int(placed.sum()), 2))
    # what shares nothing with the laid-out labels (or has no label): evenly on a ring outside
    outside = np.concatenate([images[~placed], labels[~known]])
    radius = 1.2 * (reach.max(initial=0) or 1.0)
    angle = 2 * np.pi * np.arange(len(outside)) / max(len(outside), 1)
    pos[outside] = centre + radius * np.c_[np.cos(angle), np.sin(angle)]
    return dict(zip(nodes, pos))


def render(graph: nx.Graph, positions: dict, photos: dict[str, Path], path: Path, title: str) -> None:
    """Draw the network: grey edges, each image as a thumbnail (20–64 px, smaller for more images;
    a dot above :data:`THUMBNAILS_MAX` images, or for an image that cannot be read or is not in
    ``photos``), the :data:`WORDS_DRAWN` most used labels as their words sized by degree (taken
    literally: no ``$…$`` maths). PNG written atomically.

    Args:
        positions: node → (x, y), e.g. from :func:`layout`.
        photos: image node → the photo file it may open (:func:`~image_clustering.tags.local_photos`);
            nothing else is ever opened.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from .plots import new_axes, save_figure, thumbnail

    ax = new_axes((16, 16))
    nodes = list(graph)
    index = {node: i for i, node in enumerate(nodes)}
    xy = np.array([positions[node] for node in nodes], dtype=float).reshape(-1, 2)
    ends = np.fromiter((index[n] for edge in graph.edges() for n in edge), dtype=int,
                       count=2 * graph.number_of_edges()).reshape(-1, 2)
    ax.add_collection(LineCollection(xy[ends], colors="0.8", linewidths=0.3, zorder=1))
    images = [i for i, node in enumerate(nodes) if graph.nodes[node]["type"] == "image"]
    words = [i for i, node in enumerate(nodes) if graph.nodes[node]["type"] == "label"]
    thumbnails = len(images) <= THUMBNAILS_MAX
    thumb = int(np.clip(900 / np.sqrt(max(len(images), 1)), 20, 64))
    dots = []
    for i in images:
        # a URL, a missing or a broken file: a dot instead
        tile = thumbnail(photos[nodes[i]], thumb) if thumbnails and nodes[i] in photos else None
        if tile is None:
            dots.append(i)
        else:
            ax.add_artist(AnnotationBbox(OffsetImage(np.asarray(tile), zoom=1.0), xy[i], frameon=False, zorder=2))
    if dots:
        ax.scatter(*xy[dots].T, s=float(np.clip(8e3 / len(dots), 0.5, 8)), color="tab:blue", lw=0, zorder=2)
    degrees = np.array([graph.degree(nodes[i]) for i in words], dtype=float)
    drawn = np.argsort(-degrees, kind="stable")[:WORDS_DRAWN]
    if len(words) > WORDS_DRAWN:
        logger.info(f"the {WORDS_DRAWN} most used of {len(words)} labels are written as words")
    top = degrees.max() if len(degrees) else 1.0
    for j in drawn:
        ax.text(*xy[words[j]], _shown(graph.nodes[nodes[words[j]]]["label"]), fontsize=5 + 17 * np.sqrt(degrees[j] / top),
                ha="center", va="center", zorder=3, color="black", parse_math=False,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.6, "lw": 0})
    pad = 0.03 * (xy.max(axis=0) - xy.min(axis=0) + 1e-9)
    ax.set_xlim(xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0])
    ax.set_ylim(xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1])
    ax.set_axis_off()
    ax.set_title(title)
    save_figure(ax.figure, path, dpi=100)
