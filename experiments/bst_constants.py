r"""The BST rule's constants measured along one Scion run, and where they put the optimal batch.

The rule's bound (``theory/batch_size.py``) depends on the smoothness $L$, the KL constant $\mu$
and the noise in the dual norm, $\rho\sigma_\star$ (the noise of a batch of $BS$ tokens is
$\rho\sigma_\star/\sqrt{BS}$), all in Scion's geometry (``optimizers.scion_norm`` and its dual).
``measure`` trains the config's run and, at ``points`` steps spread over it, evaluates on fixed
data drawn from the training stream far beyond the run's own examples:

- $f(x)$ and $\nabla f(x)$ on a "full" batch of ``full_batch`` sequences;
- the gradients of ``draws`` batches of ``probe_batch`` sequences: $\rho\sigma_\star$ from
  $\mathbb E\|g_b - g_N\|_*^2 = \rho^2\sigma_\star^2 (\frac1{bS} - \frac1{NS})$ (the full batch's
  own noise removed), and $\rho$ itself as the dual over the Euclidean norm of that noise;
- $\mu$ from the KL inequality $\|\nabla f(x)\|_* \ge \mu (f(x) - f^\star)$: the least ratio over
  the points (the assumption holds along the whole run, so its constant is the smallest);
- $L$ from $\|\nabla f(x') - \nabla f(x)\|_* \le L\|x' - x\|$ over one step, $x'$ the next
  iterate: the largest ratio over the points.

$f^\star$ is not known for a language model; the caller gives it (the protocol takes the best
eval loss any run of its grid reached, so $\mu$ is measured against what the budget attains).
The constants place the rule's optimum with the bound's unknown factors taken as 1
(``theory.batch_size.bst_regimes``): a test of whether the theory gets the magnitude right.
"""

import math
import tempfile

import jax
import numpy as np

import models
import optimizers
import training

FAR = 10_000_000  # the stream position of the measurement data: far beyond any run's examples


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(jax.device_get(x), np.float64))
                         for x in jax.tree.leaves(tree)])


def _batch(source, start: int, count: int, seq_len: int) -> dict:
  rows = source.examples(start, count)
  full = source.tokens_per_example
  if seq_len and seq_len != full:
    rows = jax.tree.map(lambda v: v[:, :seq_len] if v.ndim >= 2 and v.shape[1] == full else v,
                        rows)
  return rows


def measure(config, *, points: int = 6, full_batch: int = 256, probe_batch: int = 8,
            draws: int = 8, f_star: float = 0.0) -> dict:
  """Trains ``config`` (a Scion run) and measures $L$, $\\mu$, $\\rho\\sigma_\\star$, $\\rho$
  (module doc). Returns the constants and each point's figures (``points``: a list of dicts)."""
  if config.optimizer.name not in ("scion", "uscion"):
    raise ValueError(f"optimizer.name={config.optimizer.name!r}: the BST constants are measured "
                     "in Scion's norm; use scion or uscion")
  if points < 2 or draws < 2 or probe_batch < 1 or full_batch <= probe_batch:
    raise ValueError("measure needs points >= 2, draws >= 2, probe_batch >= 1 and "
                     "full_batch > probe_batch")
  kwargs = config.optimizer.kwargs
  radii, lmos = dict(kwargs.get("radii", {}) or {}), dict(kwargs.get("lmos", {}) or {})
  with tempfile.TemporaryDirectory() as workdir:
    setup = training.prepare(config, workdir)
    steps_lib = training.compile_steps(setup)
    state, _ = training.fresh_state(setup, steps_lib)
  cfg, source, model = setup.config, setup.source, setup.model
  seq_len = source.tokens_per_example
  loss_fn = setup.loss_fn
  rng = jax.random.PRNGKey(0)

  @jax.jit
  def value_and_grad(params, model_state, batch):
    return jax.value_and_grad(
        lambda p: loss_fn(p, model_state, batch, rng, model=model, train=False)[0])(params)

  full = _batch(source, FAR, full_batch, seq_len)
  probes = [_batch(source, FAR + full_batch + i * probe_batch, probe_batch, seq_len)
            for i in range(draws)]
  total = cfg.train.steps
  at = sorted({int(round(k)) for k in np.linspace(0, total - 2, points)})
  labels = models.param_roles(state.params)
  dual = lambda g: optimizers.scion_dual_norm(g, labels, radii=radii, lmos=lmos)  # noqa: E731
  primal = lambda x: optimizers.scion_norm(x, labels, radii=radii, lmos=lmos)  # noqa: E731
  batch_size, micro = cfg.train.global_batch, cfg.train.num_microbatches
  sharding = steps_lib.batch_sharding
  rows, pending = [], None
  for step in range(total):
    if step in at or pending is not None:
      loss, grad = value_and_grad(state.params, state.model_state, full)
      params = jax.device_get(state.params)
      if pending is not None:  # the next iterate of a point: the one-step smoothness ratio
        p_params, p_grad = pending
        step_norm = primal(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                                        params, p_params))
        rows[-1]["smoothness"] = (dual(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                                                    grad, p_grad)) / step_norm
                                  if step_norm > 0 else math.nan)
        pending = None
      if step in at:
        noise = [jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                              value_and_grad(state.params, state.model_state, p)[1], grad)
                 for p in probes]
        dual_sq = float(np.mean([dual(n) ** 2 for n in noise]))
        euclid_sq = float(np.mean([np.sum(_flat(n) ** 2) for n in noise]))
        variance_factor = (1 / probe_batch - 1 / full_batch) / seq_len  # per token
        rows.append(dict(step=step, loss=float(loss), grad_dual=dual(grad),
                         grad_euclid=float(np.linalg.norm(_flat(grad))),
                         rho_sigma=math.sqrt(dual_sq / variance_factor),
                         sigma=math.sqrt(euclid_sq / variance_factor),
                         rho=math.sqrt(dual_sq / euclid_sq)))
        pending = (params, jax.device_get(grad))
    batch = training.train_batch(source, step * batch_size, batch_size, micro, sharding)
    state, _ = steps_lib.train(state, batch)
  gaps = [(r["grad_dual"] / (r["loss"] - f_star)) for r in rows if r["loss"] > f_star]
  if not gaps:
    raise ValueError(f"f_star={f_star} is not below any measured loss: the KL constant needs "
                     "f(x) > f_star")
  ratios = [r["smoothness"] for r in rows if math.isfinite(r.get("smoothness", math.nan))]
  if not ratios:
    raise ValueError("no point moved the parameters (a zero stepsize at every point): measure "
                     "over a run whose stepsize is not zero")
  return dict(
      mu=min(gaps), smoothness=max(ratios),
      rho_sigma=float(np.median([r["rho_sigma"] for r in rows])),
      rho=float(np.median([r["rho"] for r in rows])),
      sigma=float(np.median([r["sigma"] for r in rows])),
      f_star=f_star, seq_len=seq_len, batch=batch_size, steps=total, points=rows)
