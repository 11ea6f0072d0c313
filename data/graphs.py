"""Graph data as padded, fixed-shape examples: generated graphs with known structure, and TFDS
``ogbg_molpcba`` molecules.

Every example's inputs are ``{"nodes": (N, F) float32, "adjacency": (N, N) float32 0/1
symmetric, no self-loops, "node_mask": (N,) float32 1 = real node}``, with N the source's
``max_nodes``: a graph of n < N nodes fills the first n rows and the rest is zero padding,
which the models in ``models.gnn`` ignore.
"""

import numpy as np

from data.source import (
  check_choice,
  check_eval_examples,
  check_int,
  check_ints,
  check_number,
  stack,
)
from data.tfds_source import TfdsSource

# OGB's atom features are nine category indices (ogb.utils.features.get_atom_feature_dims):
# atomic number, chirality, degree, formal charge, H count, radical electrons, hybridisation,
# aromatic, in ring. They are one-hot encoded, 174 features per atom.
OGB_ATOM_FEATURE_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
OGB_NUM_TASKS = 128


def _check_sizes(min_nodes: int, max_nodes: int):
  check_int("min_nodes", min_nodes, low=1, hint=" (nodes of the smallest graph)")
  check_int("max_nodes", max_nodes, low=1, hint=" (nodes every graph is padded to)")
  if min_nodes > max_nodes:
    raise ValueError(f"data.min_nodes={min_nodes} is above data.max_nodes={max_nodes}: set "
                     f"data.min_nodes <= data.max_nodes")


def _symmetric_edges(rng, probs_nxn: np.ndarray) -> np.ndarray:
  """A random undirected simple graph: edge {i, j} (i < j) present with probability p_ij."""
  upper = np.triu(rng.random(probs_nxn.shape) < probs_nxn, k=1)
  return (upper | upper.T).astype(np.float32)


def _pad(nodes_nxf: np.ndarray, adjacency_nxn: np.ndarray, max_nodes: int) -> dict:
  n, f = nodes_nxf.shape
  nodes = np.zeros((max_nodes, f), np.float32)
  adjacency = np.zeros((max_nodes, max_nodes), np.float32)
  mask = np.zeros(max_nodes, np.float32)
  nodes[:n], adjacency[:n, :n], mask[:n] = nodes_nxf, adjacency_nxn, 1.0
  return {"nodes": nodes, "adjacency": adjacency, "node_mask": mask}


class _DrawnGraphs:
  """Generated graphs: training graph ``i`` is ``_one((0, seed, i))``, evaluation graph ``j``
  is ``_one((1, j))``, each drawn from ``default_rng`` of that key alone."""

  tokens_per_example = 0

  def examples(self, start: int, count: int) -> dict:
    return stack([self._one((0, self.seed, i)) for i in range(start, start + count)])

  def eval_set(self) -> dict:
    return stack([self._one((1, j)) for j in range(self.eval_examples)])


class SBMNodes(_DrawnGraphs):
  """Node classification on graphs from a stochastic block model (a contextual SBM).

  Each graph has n ~ U{min_nodes..max_nodes} nodes, each in one of ``num_communities``
  communities (uniform); an edge joins two nodes with probability ``p_in`` inside a community
  and ``p_out`` across. The label of a node is its community. Its ``num_features`` features
  are ``feature_signal * mu_label + N(0, I)``, the class means ``mu_k ~ N(0, I)`` fixed by
  ``task_seed``: weakly informative on their own, so a model does well only by pooling the
  features of a node's neighbours (mostly of its own community). ``info`` records the
  accuracy of the best feature-only rule (nearest class mean, which is Bayes-optimal for
  these Gaussians) on the evaluation set, the bar that using the structure must clear.

  Targets are ``(max_nodes,)`` community ids; ``weights`` is the node mask, so padded nodes
  are outside the loss and the accuracy. Training graph ``i`` comes from
  ``default_rng((0, seed, i))``, evaluation graph ``j`` from ``default_rng((1, j))``.
  """

  def __init__(self, *, seed: int, max_nodes: int = 32, min_nodes: int = 16,
               num_communities: int = 4, p_in: float = 0.7, p_out: float = 0.02,
               num_features: int = 8, feature_signal: float = 0.25, task_seed: int = 0,
               eval_examples: int = 256):
    _check_sizes(min_nodes, max_nodes)
    check_int("num_communities", num_communities, low=2, hint=" (the classes)")
    check_number("p_in", p_in, low=0.0, high=1.0)
    check_number("p_out", p_out, low=0.0, high=1.0)
    check_int("num_features", num_features, low=1)
    check_number("feature_signal", feature_signal, low=0.0, hint=" (0 = features carry no class)")
    check_int("task_seed", task_seed, low=0)
    check_eval_examples(eval_examples)
    self.seed, self.max_nodes, self.min_nodes = seed, max_nodes, min_nodes
    self.num_communities, self.p_in, self.p_out = num_communities, p_in, p_out
    self.feature_signal, self.eval_examples = feature_signal, eval_examples
    self.means_KxF = np.random.default_rng(task_seed).normal(size=(num_communities, num_features))
    self.info = {"dataset": "sbm-node-classification", "max_nodes": max_nodes,
                 "min_nodes": min_nodes, "num_communities": num_communities, "p_in": p_in,
                 "p_out": p_out, "num_features": num_features,
                 "feature_signal": feature_signal, "task_seed": task_seed,
                 "num_classes": num_communities, "eval_examples": eval_examples}
    self.info["feature_only_accuracy"] = self.feature_only_accuracy(self.eval_set())

  def _one(self, key) -> dict:
    rng = np.random.default_rng(key)
    n = int(rng.integers(self.min_nodes, self.max_nodes + 1))
    labels = rng.integers(0, self.num_communities, n)
    same = labels[:, None] == labels[None, :]
    adjacency = _symmetric_edges(rng, np.where(same, self.p_in, self.p_out))
    noise = rng.normal(size=(n, self.means_KxF.shape[1]))
    nodes = (self.feature_signal * self.means_KxF[labels] + noise).astype(np.float32)
    inputs = _pad(nodes, adjacency, self.max_nodes)
    targets = np.zeros(self.max_nodes, np.int32)
    targets[:n] = labels
    return {"inputs": inputs, "targets": targets, "weights": inputs["node_mask"].copy()}

  def feature_only_accuracy(self, batch: dict) -> float:
    """Accuracy of the nearest-class-mean rule on each node's own features (no structure)."""
    nodes_BxNxF = batch["inputs"]["nodes"]
    dist_BxNxK = ((nodes_BxNxF[:, :, None, :]
                   - self.feature_signal * self.means_KxF[None, None]) ** 2).sum(-1)
    correct = (dist_BxNxK.argmin(-1) == batch["targets"]).astype(np.float64)
    return float((correct * batch["weights"]).sum() / batch["weights"].sum())


class GraphProperties(_DrawnGraphs):
  """Graph regression of a structural property of Erdos-Renyi graphs, reported as MAE.

  Graph ``i`` has n ~ U{min_nodes..max_nodes} nodes and edge probability
  p ~ U[min_edge_prob, max_edge_prob]. A node's two features are 1 and its degree / (max_nodes
  - 1): with identical features alone, normalised aggregation (GCN, attention) could not tell
  one graph from another, as every node would stay identical. The target (shape ``(1,)``,
  float32) is ``target``:

  * ``"triangles"``: the number of triangles, trace(A^3) / 6, which needs message passing
    (the degrees bound it but do not fix it);
  * ``"mean_degree"``: the mean number of neighbours of a node, a mean readout of a feature:
    the sanity-check target every model should fit.

  Seeds as in ``SBMNodes``.
  """

  TARGETS = ("triangles", "mean_degree")

  def __init__(self, *, seed: int, target: str = "triangles", max_nodes: int = 16,
               min_nodes: int = 6, min_edge_prob: float = 0.1, max_edge_prob: float = 0.5,
               eval_examples: int = 256):
    _check_sizes(min_nodes, max_nodes)
    check_choice("target", target, self.TARGETS)
    check_number("min_edge_prob", min_edge_prob, low=0.0, high=1.0)
    check_number("max_edge_prob", max_edge_prob, low=0.0, high=1.0)
    if min_edge_prob > max_edge_prob:
      raise ValueError(f"data.min_edge_prob={min_edge_prob} is above data.max_edge_prob="
                       f"{max_edge_prob}: set data.min_edge_prob <= data.max_edge_prob")
    check_eval_examples(eval_examples)
    self.seed, self.target, self.max_nodes, self.min_nodes = seed, target, max_nodes, min_nodes
    self.edge_prob = (min_edge_prob, max_edge_prob)
    self.eval_examples = eval_examples
    self.info = {"dataset": f"erdos-renyi-{target}", "target": target, "max_nodes": max_nodes,
                 "min_nodes": min_nodes, "min_edge_prob": min_edge_prob,
                 "max_edge_prob": max_edge_prob, "eval_examples": eval_examples}
    targets = self.eval_set()["targets"]
    # The MAE of always predicting the median: the bar a model that ignores the graph sets.
    self.info["constant_prediction_mae"] = float(np.abs(targets - np.median(targets)).mean())

  def _one(self, key) -> dict:
    rng = np.random.default_rng(key)
    n = int(rng.integers(self.min_nodes, self.max_nodes + 1))
    p = rng.uniform(*self.edge_prob)
    adjacency = _symmetric_edges(rng, np.full((n, n), p))
    if self.target == "triangles":
      value = np.trace(adjacency @ adjacency @ adjacency) / 6.0
    else:
      value = adjacency.sum() / n
    degree = adjacency.sum(1) / max(self.max_nodes - 1, 1)
    nodes = np.stack([np.ones(n), degree], 1).astype(np.float32)
    return {"inputs": _pad(nodes, adjacency, self.max_nodes),
            "targets": np.array([value], np.float32)}


class TfdsMolPCBA(TfdsSource):
  """TFDS ``ogbg_molpcba`` (OGB's 437,929 molecules, 128 bioassays) via ``tfds.data_source``.

  Each molecule is padded to ``max_nodes`` atoms: node features are OGB's nine atom
  categories one-hot (174 features), the adjacency comes from ``edge_index`` (made symmetric;
  edges naming an atom that does not exist, which TFDS's mock data draws at random, are
  dropped). Bond features are not used: the models here take a plain adjacency.

  Targets: the assays in ``tasks`` (indices into the 128; empty = all), as a multi-label
  problem written with the ordinary ``cross_entropy``: targets ``(T,)`` int32 in {0, 1},
  weights ``(T,)`` 0 where the label is missing (NaN in OGB), and the model predicts
  ``(T, 2)`` logits per molecule (``models.gnn`` with ``output="graph"``, ``num_tasks=T``,
  ``num_outputs=2``). A two-way softmax per task is exactly a sigmoid cross-entropy on the
  logit difference, so this is the usual multi-label binary cross-entropy, averaged over the
  present labels; the accuracy reported is per present label (OGB ranks by average
  precision, which is not computed here). A molecule with more than ``max_nodes`` atoms is
  truncated to fit and given weight 0 everywhere: it is skipped by the loss, never silently
  trained on a different molecule.
  """

  def __init__(self, *, seed: int, data_dir: str, dataset: str = "ogbg_molpcba",
               max_nodes: int = 64, tasks: tuple[int, ...] = (), train_split: str = "train",
               eval_split: str = "validation", eval_examples: int = 1024):
    check_int("max_nodes", max_nodes, low=1, hint=" (atoms per padded molecule)")
    check_ints("tasks", tasks, low=0, high=OGB_NUM_TASKS - 1)
    tasks = tuple(int(t) for t in tasks) or tuple(range(OGB_NUM_TASKS))
    self.max_nodes, self.tasks = max_nodes, np.array(tasks)
    self._offsets = np.cumsum((0,) + OGB_ATOM_FEATURE_DIMS[:-1])
    self._max_index = np.array(OGB_ATOM_FEATURE_DIMS) - 1
    super().__init__(dataset=dataset, data_dir=data_dir, seed=seed, train_split=train_split,
                     eval_split=eval_split, eval_examples=eval_examples)
    self.info.update({"max_nodes": max_nodes, "num_tasks": len(tasks),
                      "num_features": sum(OGB_ATOM_FEATURE_DIMS)})

  def _prepare(self, example) -> dict:
    categories = np.asarray(example["node_feat"]).astype(np.int64)
    n = len(categories)
    fits = n <= self.max_nodes
    m = min(n, self.max_nodes)
    categories = np.clip(categories[:m], 0, self._max_index[None])
    nodes = np.zeros((m, sum(OGB_ATOM_FEATURE_DIMS)), np.float32)
    nodes[np.arange(m)[:, None], categories + self._offsets[None]] = 1.0
    edges = np.asarray(example["edge_index"], np.int64).reshape(-1, 2)
    edges = edges[(edges >= 0).all(1) & (edges < m).all(1)]
    adjacency = np.zeros((m, m), np.float32)
    adjacency[edges[:, 0], edges[:, 1]] = adjacency[edges[:, 1], edges[:, 0]] = 1.0
    np.fill_diagonal(adjacency, 0.0)
    labels = np.asarray(example["labels"], np.float32)[self.tasks]
    present = np.isfinite(labels) & fits
    return {"inputs": _pad(nodes, adjacency, self.max_nodes),
            "targets": np.where(present, labels > 0.5, 0).astype(np.int32),
            "weights": present.astype(np.float32)}
