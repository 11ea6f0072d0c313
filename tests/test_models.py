import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import models
from models import layers


def _gpt_cfg(**kw):
  cfg = dict(name="gpt", vocab_size=256, max_len=16, width=32, depth=2, num_heads=2,
             attn_chunks=2)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _causality_holds(model):
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, 256)
  params = model.init(jax.random.PRNGKey(1), tokens)
  logits = model.apply(params, tokens)
  changed = tokens.at[:, 10].set((tokens[:, 10] + 1) % 256)
  logits2 = model.apply(params, changed)
  before = np.abs(np.asarray(logits[:, :10] - logits2[:, :10])).max()
  after = np.abs(np.asarray(logits[:, 10:] - logits2[:, 10:])).max()
  return before, after


@pytest.mark.parametrize("attention", ["softmax", "linear"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_gpt_is_causal(attention, norm):
  before, after = _causality_holds(models.build(_gpt_cfg(attention=attention, norm=norm)))
  assert before < 1e-6  # earlier positions never see a later token
  assert after > 1e-4   # later ones do


def test_chunked_attention_equals_unchunked():
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, 256)
  one = models.build(_gpt_cfg(attn_chunks=1))
  four = models.build(_gpt_cfg(attn_chunks=4))
  params = one.init(jax.random.PRNGKey(1), tokens)
  np.testing.assert_allclose(one.apply(params, tokens), four.apply(params, tokens), atol=1e-5)


def test_param_roles_name_every_parameter():
  model = models.build(_gpt_cfg(use_bias=True))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))["params"]
  roles = models.param_roles(params)
  assert roles["embedding"] == "embedding" and roles["pos_embedding"] == "embedding"
  assert roles["head"] == "head"
  assert roles["block_0"]["qkv"] == "hidden" and roles["block_1"]["mlp_out"] == "hidden"
  assert roles["block_0"]["qkv_bias"] == "bias"
  assert roles["block_0"]["attn_norm"]["scale"] == "norm"
  assert roles["final_norm"]["bias"] == "norm"
  assert set(jax.tree.leaves(roles)) <= set(models.ROLES)

  mlp = models.build(ml_collections.ConfigDict(dict(name="mlp", num_classes=10, hidden=(8,))))
  mlp_roles = models.param_roles(mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"])
  assert mlp_roles == {"dense_0": {"kernel": "hidden", "bias": "bias"},
                       "head": {"kernel": "head", "bias": "bias"}}


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_gpt_flops_agree_with_xla_cost_analysis(attention):
  """``flops_per_example`` against XLA's count of the compiled forward and backward pass.

  The formula counts the matmuls only: 6 N per token and 12 L D T for the T x T scores and
  their product with the values (the linear attention forms the same masked T x T matrix).
  XLA counts each of those multiply-adds as 2 flops too, so its count can only be larger, by the
  elementwise work the formula leaves out. Per token and forward: a LayerNorm is about 8 ops per
  element (two per block and a final one, 8 D each), the residual adds 2 D, the ReLU F, the
  causal softmax about 5 ops per score (H T per layer), the elu feature map and normaliser of
  the linear attention fewer, the log-softmax loss about 5 V; the backward pass is about twice
  that, so ~3 x [L (18 D + F + 5 H T) + 8 D + 5 V]. The bound below is twice this estimate.
  T is large next to D so that the attention term (a quarter of the total here) is not lost in
  that margin: halving or doubling it fails the test. ``attn_chunks=1`` computes the full
  T x T matrix that the formula counts (chunks skip the masked blocks); ReLU, not the exact
  GELU, whose erf XLA expands into a polynomial of tens of ops per element.
  """
  V, T, D, L, H, B = 128, 128, 64, 2, 4, 2
  F = 4 * D
  model = models.build(_gpt_cfg(vocab_size=V, max_len=T, width=D, depth=L, num_heads=H,
                                attention=attention, activation="relu", attn_chunks=1))
  tokens = jax.ShapeDtypeStruct((B, T), jnp.int32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)

  def loss(params, tokens_BxT):
    logp_BxTxV = jax.nn.log_softmax(model.apply(params, tokens_BxT))
    return -jnp.take_along_axis(logp_BxTxV, tokens_BxT[..., None], axis=-1).mean()

  cost = jax.jit(jax.grad(loss)).lower(params, tokens).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  xla = cost["flops"] / B
  formula = model.flops_per_example(np.zeros(T, np.int32))
  omitted = 2 * 3 * T * (L * (18 * D + F + 5 * H * T) + 8 * D + 5 * V)
  assert formula <= xla <= formula + omitted, (formula, xla, omitted)


def test_bad_model_input_names_the_fix():
  with pytest.raises(ValueError, match="unknown model .transformer.: valid names are .*gpt.*mlp"):
    models.build(ml_collections.ConfigDict(dict(name="transformer")))
  with pytest.raises(ValueError, match="valid are"):
    models.build(_gpt_cfg(activation="swish"))
  model = models.build(_gpt_cfg())
  with pytest.raises(ValueError, match=r"sequence length 32 exceeds the model's max_len=16"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))


# ----------------------------------------------------------------------------- the model contract

_GRAPH = {"nodes": np.zeros((6, 4), np.float32), "adjacency": np.eye(6, k=1, dtype=np.float32),
          "node_mask": np.ones(6, np.float32)}
_TOKENS = np.zeros(8, np.int32)

# Every model: a small valid config, one example (no batch axis), and the roles its parameters
# must have under the naming convention.
_SMALL = {
    "cnn": (dict(num_classes=3, features=(4,), dense=(8,)), np.zeros((8, 8, 1), np.float32),
            {"conv", "norm", "hidden", "bias", "head"}),
    "dna_cnn": (dict(num_classes=3, width=8, depth=2, kernel_size=3), _TOKENS,
                {"embedding", "conv", "bias", "norm", "head"}),
    "gated_conv": (dict(vocab_size=32, width=8, depth=1), _TOKENS,
                   {"embedding", "conv", "hidden", "norm", "head"}),
    "gnn": (dict(num_outputs=3, width=8, depth=2, num_heads=2), _GRAPH,
            {"hidden", "bias", "norm", "head"}),
    "gpt": (dict(vocab_size=32, max_len=8, width=8, depth=1, num_heads=2), _TOKENS,
            {"embedding", "hidden", "norm", "head"}),
    "graph_transformer": (dict(num_outputs=3, width=8, depth=1, num_heads=2), _GRAPH,
                          {"hidden", "bias", "norm", "head"}),
    "linear": (dict(input_dim=4), np.zeros(4, np.float32), {"head"}),
    "mlp": (dict(num_classes=3, hidden=(8,)), np.zeros(4, np.float32),
            {"hidden", "bias", "head"}),
    "resnet": (dict(num_classes=3, stage_sizes=(1,), width=4), np.zeros((8, 8, 3), np.float32),
               {"conv", "norm", "bias", "head"}),
    "resnet18": (dict(num_classes=3), np.zeros((8, 8, 3), np.float32),
                 {"conv", "norm", "bias", "head"}),
    "resnet20": (dict(num_classes=3), np.zeros((8, 8, 3), np.float32),
                 {"conv", "norm", "bias", "head"}),
    "resnet50": (dict(num_classes=3), np.zeros((32, 32, 3), np.float32),
                 {"conv", "norm", "bias", "head"}),
    "vit": (dict(num_classes=3, patch_size=4, width=8, depth=1, num_heads=2),
            np.zeros((8, 8, 1), np.float32), {"embedding", "bias", "hidden", "norm", "head"}),
}


def _small(name: str, **overrides):
  return models.build(dict(name=name) | _SMALL[name][0] | overrides)


def test_every_model_is_in_the_contract_table():
  assert sorted(_SMALL) == models.available()


@pytest.mark.parametrize("name", models.available())
def test_every_model_keeps_the_contract(name):
  _, example, roles = _SMALL[name]
  model = _small(name)
  assert isinstance(model, nn.Module) and isinstance(model, models.Model)
  model.check()  # a valid config passes its own check
  batch = jax.tree.map(lambda x: jnp.asarray(x)[None], example)
  variables = jax.eval_shape(functools.partial(model.init, train=False),
                             jax.random.PRNGKey(0), batch)
  found = set(jax.tree.leaves(models.param_roles(variables["params"])))
  assert found <= set(models.ROLES)
  assert found == roles
  flops = model.flops_per_example(example)
  assert np.isfinite(flops) and flops > 0


def test_the_protocol_refuses_a_module_without_the_contract():
  class Bare(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
      return nn.Dense(2, name="head")(x)

  assert not isinstance(Bare(), models.Model)


# ----------------------------------------------------------------------------- bad fields
# Every field of every model is broken in each way a config can break it; check() (called by
# build, before anything is traced) must refuse it with one line naming the field.


def _fields_holding(kind) -> list[tuple[str, str]]:
  """(model, field) for every field whose valid value is of type ``kind``."""
  out = []
  for name in models.available():
    model = _small(name)
    for field in dataclasses.fields(model):
      value = getattr(model, field.name)
      if field.name not in ("parent", "name") and type(value) is kind:
        out.append((name, field.name))
  return out


_INTS, _SEQUENCES = _fields_holding(int), _fields_holding(tuple)
_CHOICES, _BOOLS, _FLOATS = _fields_holding(str), _fields_holding(bool), _fields_holding(float)
_ZERO_IS_VALID = {("gnn", "num_tasks"), ("graph_transformer", "num_tasks")}


def _refused(name: str, message: str, **overrides) -> None:
  with pytest.raises(ValueError, match=message) as err:
    _small(name, **overrides)
  assert "\n" not in str(err.value)


def test_the_field_tables_cover_every_field():
  # a new field of another type would escape the tests below
  for name in models.available():
    model = _small(name)
    fields = {f.name for f in dataclasses.fields(model)} - {"parent", "name"}
    covered = {f for table in (_INTS, _SEQUENCES, _CHOICES, _BOOLS, _FLOATS)
               for n, f in table if n == name}
    assert fields == covered, name


@pytest.mark.parametrize("name,field", _INTS + _SEQUENCES)
def test_a_zero_count_is_refused(name, field):
  if (name, field) in _ZERO_IS_VALID:
    _small(name, **{field: 0})
    return
  if (name, field) in _INTS:
    _refused(name, rf"^model\.{field}=0 must be >= [12]", **{field: 0})
  else:
    _refused(name, rf"^model\.{field}=\(0,\) must be a .*sequence of integers >= 1",
             **{field: (0,)})


@pytest.mark.parametrize("name,field", _INTS + _SEQUENCES)
def test_a_negative_count_is_refused(name, field):
  if (name, field) in _INTS:
    _refused(name, rf"^model\.{field}=-1 must be >= [012]", **{field: -1})
  else:
    _refused(name, rf"^model\.{field}=\(8, -1\) must be .*; -1 is not", **{field: (8, -1)})


@pytest.mark.parametrize("name,field", _INTS + _SEQUENCES + _CHOICES + _BOOLS + _FLOATS)
def test_a_value_of_the_wrong_type_is_refused(name, field):
  if (name, field) in _INTS:
    for wrong in (8.0, "8", True):
      _refused(name, rf"^model\.{field}={wrong!r} must be an integer >= \d, not ", **{field: wrong})
  elif (name, field) in _SEQUENCES:
    for wrong in (8, "8"):
      _refused(name, rf"^model\.{field}={wrong!r} must be a .*sequence of integers",
               **{field: wrong})
    _refused(name, rf"^model\.{field}=\(8.0,\) must be .*; 8.0 is not", **{field: (8.0,)})
  elif (name, field) in _CHOICES:
    _refused(name, rf"^model\.{field}=1: valid are \['", **{field: 1})
  elif (name, field) in _BOOLS:
    _refused(name, rf"^model\.{field}='false' must be True or False", **{field: "false"})
  else:
    _refused(name, rf"^model\.{field}='0.9' must be a number in ", **{field: "0.9"})


_OUT_OF_RANGE = [
    *[(n, {f: "bogus"}, rf"^model\.{f}='bogus': valid are \['") for n, f in _CHOICES],
    *[(n, {f: v}, rf"^model\.{f}={v} must be a number in \[0.0, 1.0\)")
      for n, f in _FLOATS for v in (1.0, -0.1)],
    *[(n, dict(width=30, num_heads=4), r"^model\.width=30 is not divisible by model\.num_heads=4")
      for n in ("gpt", "vit", "graph_transformer")],
    ("gnn", dict(conv="gat", width=30, num_heads=4), r"^model\.width=30 is not divisible by"),
    ("dna_cnn", dict(num_classes=1), r"^model\.num_classes=1 must be >= 2 for classification"),
    ("gnn", dict(num_tasks=2, output="node"), r"^model\.num_tasks=2 needs model\.output='graph'"),
]


@pytest.mark.parametrize("name,overrides,message", _OUT_OF_RANGE,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                              for n, o, _ in _OUT_OF_RANGE])
def test_a_value_out_of_range_is_refused(name, overrides, message):
  _refused(name, message, **overrides)


# ----------------------------------------------------------------------------- shared layers


def test_gelu_is_the_exact_curve_and_its_tanh_approximation_has_its_own_name():
  x = jnp.linspace(-4.0, 4.0, 101)
  exact = 0.5 * np.asarray(x) * (1 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2)))
  np.testing.assert_allclose(layers.ACTIVATIONS["gelu"](x), exact, rtol=1e-5, atol=1e-6)
  approx = layers.ACTIVATIONS["gelu_tanh"](x)
  assert 1e-5 < np.abs(np.asarray(approx) - exact).max() < 1e-2


class _Normed(nn.Module):
  kind: str

  @nn.compact
  def __call__(self, x):
    return layers.norm_layer(self.kind, "norm", train=True)(x)


@pytest.mark.parametrize("kind,leaves", [("layer", {"scale", "bias"}), ("rms", {"scale"}),
                                         ("batch", {"scale", "bias"}), ("none", set())])
def test_norm_layer_gives_each_kind_its_parameters(kind, leaves):
  variables = jax.eval_shape(_Normed(kind).init, jax.random.PRNGKey(0), jnp.ones((2, 4)))
  assert set(variables.get("params", {}).get("norm", {})) == leaves
  assert ("batch_stats" in variables) == (kind == "batch")


def test_norm_layer_refuses_what_it_cannot_build():
  with pytest.raises(ValueError, match=r"needs train=True or train=False"):
    layers.norm_layer("batch", "norm")
  with pytest.raises(ValueError, match=r"norm kind 'group': valid are \['batch', 'layer'"):
    layers.norm_layer("group", "norm")
