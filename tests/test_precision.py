"""Mixed precision (``dtype``, ``param_dtype``), rematerialisation (``model.remat``) and
profiling (``profile_steps``).

The precision runs go through the real setup (``training.prepare`` builds the model with the
config's dtypes) and the real ``train_step``; their 50 steps run as one compiled ``lax.scan``,
so the test pays for two compilations and no per-step dispatch.
"""

import functools
import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from test_models import _SMALL

import models
import training
from training import cli
from training.setup import init_state
from training.step import train_step

SMOKE_GPT = str(ROOT / "configs/quickstart.py") + ":smoke"
SMOKE_DIGITS = str(ROOT / "configs/digits_mlp.py") + ":smoke"
STEPS = 50
# bfloat16 has an 8-bit significand (7 stored bits and the implicit one): neighbouring values
# are 2^-7 apart relative to the lower power of two, and a value rounded to it moves by at most
# half of that, u = 2^-8 ~ 0.39% relative. The test asks the bfloat16 run's loss to stay within
# u of the float32 run's at every one of the 50 steps: training in bfloat16 may move the loss no
# more than rounding the loss itself to bfloat16 would. Why that can hold although every
# bfloat16 op rounds by up to u: the loss averages 16 x 32 = 512 token losses whose rounding
# errors are independent (about sqrt(512) ~ 23 times smaller in the mean), and the float32
# parameters, optimizer state and updates keep the two trajectories together. Measured (smoke
# GPT, 50 steps, loss 5.55 -> 3.40): the largest gap is 3.9e-4 ~ u/10. It is not loose: with
# bfloat16 master weights as well (param_dtype=bfloat16; AdamW's updates of ~1e-3 relative
# fall below their resolution and the runs drift apart) the largest gap is 2.5e-2 ~ 6.5 u, and
# another seed in float32 gives 1.2e-1.
BF16_RTOL = 2.0**-8


def _config(spec: str, **overrides):
  """The config of ``spec`` with ``overrides`` (``train__steps=3`` sets ``train.steps``)."""
  config = cli.load_config(spec)
  with config.unlocked():
    config.update_from_flattened_dict({k.replace("__", "."): v for k, v in overrides.items()})
  return config


@pytest.fixture(scope="module")
def f32_and_bf16(tmp_path_factory):
  """The smoke GPT trained 50 steps in float32 and in bfloat16 on the data stream's first 50
  batches: ``{dtype: (losses, final state)}``."""
  setups = {dtype: training.prepare(_config(SMOKE_GPT, dtype=dtype, train__steps=STEPS),
                                    str(tmp_path_factory.mktemp(dtype)))
            for dtype in ("float32", "bfloat16")}
  first = setups["float32"]
  batch = first.config.train.global_batch
  examples = [first.source.examples(i * batch, batch) for i in range(STEPS)]
  batches = jax.tree.map(lambda *xs: np.stack(xs)[:, None], *examples)  # (steps, M=1, b, ...)
  # Both start from one state: with float32 parameters the initial state has no compute dtype.
  assert setups["bfloat16"].abstract_state == first.abstract_state
  state = jax.jit(functools.partial(init_state, model=first.model, tx=first.tx))(
      jax.random.PRNGKey(first.config.seed), examples[0]["inputs"])
  runs = {}
  for dtype, setup in setups.items():
    step = functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn)
    final, metrics = jax.jit(lambda s, b, step=step: jax.lax.scan(step, s, b))(state, batches)
    runs[dtype] = np.asarray(metrics["loss"]), final
  return runs


def test_bf16_loss_tracks_the_f32_loss_within_bf16_rounding(f32_and_bf16):
  f32, bf16 = f32_and_bf16["float32"][0], f32_and_bf16["bfloat16"][0]
  assert f32[-1] < f32[0] - 1.0  # the runs learn: the gap is measured against real progress
  gap = np.abs(bf16 - f32) / f32
  assert gap.max() <= BF16_RTOL, (gap.max(), gap.argmax())
  assert gap.max() > 0  # and the bfloat16 run is another computation, not the same one


def test_bf16_run_keeps_float32_params_and_optimizer_state(f32_and_bf16):
  state = f32_and_bf16["bfloat16"][1]
  floats = [x for x in jax.tree.leaves((state.params, state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and {x.dtype for x in floats} == {jnp.dtype(jnp.float32)}


def test_param_dtype_stores_parameters_in_it(tmp_path):
  config = _config(SMOKE_GPT, dtype="bfloat16", param_dtype="bfloat16")
  setup = training.prepare(config, str(tmp_path))  # abstract: nothing compiled
  dtypes = {x.dtype for x in jax.tree.leaves(setup.abstract_state.params)}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}


def _eqns(jaxpr):
  """Every equation of ``jaxpr`` and of the jaxprs inside it (jit, remat, custom rules)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from _eqns(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from _eqns(sub)


def _operand_dtypes(jaxpr, *primitives) -> set[str]:
  return {str(v.aval.dtype) for eqn in _eqns(jaxpr) if eqn.primitive.name in primitives
          for v in eqn.invars}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_loss_computes_in_dtype_and_its_softmaxes_in_float32(tmp_path, dtype):
  """The smoke GPT's loss as the train step computes it: every matmul in ``dtype``, every
  exponential (the attention softmax, the loss's logsumexp) in float32, a float32 loss."""
  setup = training.prepare(_config(SMOKE_GPT, dtype=dtype), str(tmp_path))
  batch = setup.source.examples(0, 2)
  loss = functools.partial(setup.loss_fn, model=setup.model)
  closed = jax.make_jaxpr(loss)(setup.abstract_state.params, {}, batch, jax.random.PRNGKey(0))
  assert _operand_dtypes(closed.jaxpr, "dot_general") == {dtype}
  assert _operand_dtypes(closed.jaxpr, "exp") == {"float32"}
  assert closed.out_avals[0].dtype == jnp.float32


@pytest.mark.parametrize("name", models.available())
def test_every_model_computes_in_bf16_from_float32_parameters(name):
  """The forward pass of every model with ``dtype="bfloat16"``: its matmuls and convolutions
  take bfloat16 operands, its softmaxes run in float32, its parameters are float32."""
  config, example, _ = _SMALL[name]
  model = models.build(dict(name=name) | config, dtype="bfloat16")
  batch = jax.tree.map(lambda x: jnp.asarray(x)[None], example)
  variables = jax.eval_shape(functools.partial(model.init, train=False),
                             jax.random.PRNGKey(0), batch)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  closed = jax.make_jaxpr(functools.partial(model.apply, train=False))(variables, batch)
  assert _operand_dtypes(closed.jaxpr, "dot_general", "conv_general_dilated") == {"bfloat16"}
  assert _operand_dtypes(closed.jaxpr, "exp") <= {"float32"}


def test_an_unknown_dtype_is_refused_in_one_line(tmp_path):
  for key, value in (("dtype", "float16"), ("param_dtype", "fp8")):
    with pytest.raises(ValueError, match=rf"^{key}='{value}': valid are bfloat16, float32$"):
      training.prepare(_config(SMOKE_GPT, **{key: value}), str(tmp_path))


# ----------------------------------------------------------------------------- remat

# The models built of blocks, a tiny config each, and the number of blocks remat wraps.
_BLOCKS = {"gpt": 1, "vit": 1, "gated_conv": 1, "graph_transformer": 1, "resnet": 1,
           "resnet18": 8, "resnet20": 9, "resnet50": 16}


def _remats(closed) -> int:
  return sum(eqn.primitive.name in ("checkpoint", "remat", "remat2")
             for eqn in _eqns(closed.jaxpr))


@pytest.mark.parametrize("name", models.available())
def test_remat_wraps_every_block_or_is_refused(name):
  config, example, _ = _SMALL[name]
  if name not in _BLOCKS:
    with pytest.raises(ValueError, match=r"^model\.remat=True: \w+ has no repeated blocks"):
      models.build(dict(name=name) | config | dict(remat=True))
    return
  batch = jax.tree.map(lambda x: jnp.asarray(x)[None], example)
  counts = {}
  for remat in (False, True):
    model = models.build(dict(name=name) | config | dict(remat=remat))
    variables = jax.eval_shape(functools.partial(model.init, train=False),
                               jax.random.PRNGKey(0), batch)
    counts[remat] = _remats(jax.make_jaxpr(functools.partial(model.apply, train=False))(
        variables, batch))
  assert counts == {False: 0, True: _BLOCKS[name]}


def test_remat_on_a_model_without_blocks_is_a_usage_error(capsys, tmp_path):
  code = cli.main(["train.py", f"--config={SMOKE_DIGITS}", f"--workdir={tmp_path / 'run'}",
                   "--config.model.remat=True"])
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1, lines
  assert "model.remat=True: MLP has no repeated blocks to rematerialise" in lines[0]
  assert not (tmp_path / "run").exists()


_RNG = np.random.default_rng(0)
# The two kinds of block remat must carry through: a transformer block (the GPT's; the ViT's,
# the gated-conv LM's and the graph transformer's are wrapped the same way) and a residual block
# with BatchNorm, whose batch statistics it updates in training mode and whose mode is a static
# argument of the rematerialised block (the ResNet's).
_REMAT_CASES = {
    "gpt": (dict(vocab_size=32, max_len=8, width=16, depth=2, num_heads=2, attn_chunks=1),
            _RNG.integers(0, 32, (4, 8)).astype(np.int32)),
    "resnet": (dict(num_classes=3, stage_sizes=(1, 1), width=4),
               _RNG.normal(size=(4, 8, 8, 3)).astype(np.float32)),
}


def _random_variables(model, inputs):
  """Variables of ``model`` drawn with NumPy (no initialiser to compile): parameters
  N(0, 0.3^2), BatchNorm's running means and variances in [0.5, 1.5)."""
  shapes = dict(jax.eval_shape(functools.partial(model.init, train=False),
                               jax.random.PRNGKey(0), inputs))
  draw = {"params": lambda s: _RNG.normal(size=s.shape) * 0.3,
          "batch_stats": lambda s: _RNG.uniform(0.5, 1.5, size=s.shape)}
  return {kind: jax.tree.map(lambda s, kind=kind: draw[kind](s).astype(s.dtype), tree)
          for kind, tree in shapes.items()}


@pytest.mark.parametrize("name", sorted(_REMAT_CASES))
def test_remat_leaves_loss_gradients_and_batch_stats_unchanged(name):
  config, inputs = _REMAT_CASES[name]
  targets = inputs if inputs.dtype == np.int32 else np.arange(len(inputs)) % 3
  model_state = dict(_random_variables(models.build(dict(name=name) | config), inputs))
  params = model_state.pop("params")  # the rest: BatchNorm's batch_stats, if any
  results = {}
  for remat in (False, True):
    model = models.build(dict(name=name) | config | dict(remat=remat))

    def loss(params, model=model):
      logits, new_state = model.apply({"params": params, **model_state}, inputs, train=True,
                                      mutable=list(model_state))
      logp = jax.nn.log_softmax(logits.astype(jnp.float32))
      return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean(), new_state

    results[remat] = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  (loss_plain, state_plain), grads_plain = results[False]
  (loss_remat, state_remat), grads_remat = results[True]
  np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-6)
  assert jax.tree.structure(grads_remat) == jax.tree.structure(grads_plain)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               grads_remat, grads_plain)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state_remat,
               state_plain)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_plain)) > 1e-4  # not zero


# ----------------------------------------------------------------------------- profiling


def test_profile_steps_writes_a_trace_of_those_steps(tmp_path):
  config = _config(SMOKE_DIGITS, train__steps=3, train__eval_every=0, profile_steps="2,3")
  summary = training.execute(training.prepare(config, str(tmp_path)), plot=False)
  assert summary["status"] == "ok" and summary["steps"] == 3
  traces = list((tmp_path / "profile").glob("plugins/profile/*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces
  # The Perfetto trace beside it holds the annotated steps: the window's, and no other.
  with gzip.open(traces[0].parent / "perfetto_trace.json.gz") as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  steps = {e["args"]["step_num"] for e in events if e.get("name") == "train"}
  assert steps == {"2", "3"}

