"""Graphs for the Adam-SGD gap study: a message-passing GNN or a graph transformer.

Used through ``configs/modalities.py:graphs,<arch>[,<data>][,smoke][,sgd]``.

* ``gnn``: GCN layers (``--config.model.conv=gat`` for graph attention), ``models/gnn.py``.
* ``transformer``: attention over the nodes of each graph, the adjacency as a learned bias
  (``--config.model.adjacency=mask`` to attend to neighbours only).

The default task (``sbm``) is node classification on stochastic-block-model graphs (the
community is the label; features alone are weakly informative, so structure must be used;
chance 1/4). ``<data>`` picks one of ``DATA`` instead: ``triangles`` / ``mean_degree``
(graph regression of a structural property of random graphs, trained and reported as MAE) or
``molpcba`` (TFDS ``ogbg_molpcba``: 128 binary assays as a multi-label cross-entropy with
missing labels weighted 0; set ``--config.data.data_dir``). Architectural switches are one
override each: ``--config.model.activation=gelu``, ``--config.model.norm=rms``,
``--config.model.readout=sum``.
"""

from configs.base import set_adam, set_budget

ARCHS = ("gnn", "transformer")
DATA = ("sbm", "triangles", "mean_degree", "molpcba")
# Peak learning rates for SGD with heavy-ball momentum 0.9 (configs/modalities.py `sgd`).
SGD_LEARNING_RATE = {"gnn": 0.1, "transformer": 0.05}


def _data(c, data: str, smoke: bool) -> None:
  if data == "sbm":
    c.data.name = "sbm_nodes"  # node classification on stochastic-block-model graphs
    c.data.max_nodes = 16 if smoke else 32  # every graph is padded to this many nodes
    c.data.min_nodes = 8 if smoke else 16  # graph sizes are uniform in [min_nodes, max_nodes]
    c.data.num_communities = 4  # communities = classes
    c.data.p_in = 0.7  # edge probability inside a community
    c.data.p_out = 0.02  # edge probability across communities
    c.data.num_features = 8  # node feature dimension
    c.data.feature_signal = 0.6 if smoke else 0.25  # x = signal * class mean + N(0, I): weak
    c.data.task_seed = 0  # draws the class means: part of the task, not of the run seed
    c.data.eval_examples = 32 if smoke else 256  # evaluation graphs (fixed, seed-free)
  elif data in ("triangles", "mean_degree"):
    c.data.name = "graph_properties"  # graph regression on Erdos-Renyi graphs
    c.data.target = data  # triangles (count) | mean_degree
    c.data.max_nodes = 16  # every graph is padded to this many nodes
    c.data.min_nodes = 6  # graph sizes are uniform in [min_nodes, max_nodes]
    c.data.min_edge_prob = 0.1  # each graph's edge probability is uniform in [min, max]
    c.data.max_edge_prob = 0.5  # (a wide range of densities makes the target vary)
    c.data.eval_examples = 32 if smoke else 256  # evaluation graphs (fixed, seed-free)
  else:
    c.data.name = "tfds_ogbg_molpcba"  # TFDS ogbg_molpcba via tfds.data_source + grain
    c.data.dataset = "ogbg_molpcba"  # TFDS name
    c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
    c.data.max_nodes = 64  # atoms per padded molecule; larger molecules get weight 0
    c.data.tasks = ()  # assay indices to predict (empty = all 128)
    c.data.train_split = "train"  # TFDS split of the training stream
    c.data.eval_split = "validation"  # TFDS split evaluated
    c.data.eval_examples = 64 if smoke else 1024  # evaluation molecules


def apply(c, arch: str, smoke: bool, data: str = "sbm") -> None:
  """Fills ``c`` (a fresh ``base_config()``) for ``arch`` on ``data`` (one of ``DATA``)."""
  if arch not in ARCHS:
    raise ValueError(f"unknown graphs architecture {arch!r}: valid are {', '.join(ARCHS)}")
  if data not in DATA:
    raise ValueError(f"unknown graphs data {data!r}: valid are {', '.join(DATA)}")
  _data(c, data, smoke)

  c.model.name = "gnn" if arch == "gnn" else "graph_transformer"  # models/gnn.py
  if arch == "gnn":
    c.model.conv = "gcn"  # gcn (normalised adjacency) | gat (graph attention)
  else:
    c.model.adjacency = "bias"  # bias (learned edge bonus, all nodes) | mask (neighbours only)
    c.model.mlp_ratio = 2  # MLP hidden width / D
  c.model.width = 16 if smoke else 64  # node state width D
  c.model.depth = 1 if smoke else 3  # message-passing layers / transformer blocks
  c.model.num_heads = 2 if smoke else 4  # attention heads (gat and transformer)
  c.model.activation = "relu"  # relu | gelu
  c.model.norm = "layer"  # layer | rms | none
  if data == "sbm":
    c.model.output = "node"  # one prediction per node
    c.model.num_outputs = c.data.num_communities  # classes
    c.model.num_tasks = 0  # (graph outputs only)
    c.model.readout = "mean"  # (graph outputs only)
    c.loss = "cross_entropy"  # node classification, padded nodes weighted 0
  elif data == "molpcba":
    c.model.output = "graph"  # one prediction per molecule
    c.model.num_outputs = 2  # two-way softmax per assay (= sigmoid cross-entropy)
    c.model.num_tasks = 128  # assays predicted at once (must match len(data.tasks) or 128)
    c.model.readout = "mean"  # pools the real atoms: mean | sum | max
    c.loss = "cross_entropy"  # multi-label: missing labels weighted 0
  else:
    c.model.output = "graph"  # one prediction per graph
    c.model.num_outputs = 1  # the regression target
    c.model.num_tasks = 0  # a single (B, 1) output
    c.model.readout = "sum" if data == "triangles" else "mean"  # counts grow with the graph
    c.loss = "mean_absolute_error"  # trained and reported as MAE

  set_adam(
      c,
      learning_rate=3e-3,  # Adam's peak learning rate
      grad_clip_norm=1.0,  # both methods clip the global gradient norm at 1
      warmup_steps=2 if smoke else 30,  # linear warmup length
      end_factor=0.1)  # final learning rate / peak
  set_budget(
      c,
      steps=20 if smoke else 400,  # optimizer updates
      batch=16 if smoke else 32,  # graphs per update
      eval_batch=32 if smoke else 64,  # graphs per evaluation batch
      log_every=1 if smoke else 20,  # steps between metric lines
      eval_every=20 if smoke else 100,  # steps between evaluations (and at the end)
      checkpoint_every=20 if smoke else 200)  # steps between checkpoints (and at the end)
