r"""The Adam–SGD gap model and its crossover batch size (Zhang et al., arXiv 2606.14259).

Proxies: SignSGD with momentum for Adam ($\ell_\infty$ geometry) and normalized SGD with momentum
for SGD ($\ell_2$ geometry), both with $m_{k+1} = \beta m_k + (1-\beta) g_k$ and

  Adam proxy: $x_{k+1} = x_k - \eta\,\mathrm{sign}(m_{k+1})$,
  SGD proxy:  $x_{k+1} = x_k - \eta\,m_{k+1}/\|m_{k+1}\|_2$,

on $f(x) = \tfrac12 x^\top H x$ with $g_k = Hx_k + z_k$, $z_k \sim N(0, \sigma^2 I/B)$, and
$K = T/B$ steps at a fixed example budget $T$.

Provenance. Only the paper's abstract could be retrieved, not its gap-model section, so the bound
below is derived here from the standard momentum analyses, not transcribed. Both proxies satisfy a
bound of one shape (Cutkosky & Mehta 2020 for normalized SGD; the SignSGD-momentum analogue with
$\ell_\infty$ smoothness and the $\ell_1$ noise norm), with $\alpha = 1 - \beta$:

  $G(L, S) = \min_{\eta > 0,\ 0 < \alpha \le 1}\ \Delta/(\eta K) + L\eta/\alpha + \sqrt\alpha\,S$
  $\quad = 2\sqrt{2}\,(aS)^{1/2}$ if $S > 2a$, else $2a + S$, with $a = \sqrt{\Delta L / K}$,

where the SGD proxy has $L = L_2$, $S = \|\sigma\|_2 = \sigma\sqrt{d/B}$ and the Adam proxy has
$L = L_\infty$ (the $\ell_\infty\to\ell_1$ norm of $H$), $S = \|\sigma\|_1 = \sigma d/\sqrt B$.
The first is a bound on the mean $\ell_2$ gradient norm, the second on the mean $\ell_1$ norm. They
are put on one scale by dividing the Adam bound by $d^{1/6}$. That factor is a calibration, not a
derivation: it is the one conversion $d^{-c}$ under which the bound reproduces the condition the
paper states. With it, the small-batch (noise-dominated, $B$-independent) ratio of the two bounds
is $r^{1/4} d^{1/12} > 1$ (SGD wins) and the large-batch ratio is $r^{1/2} d^{-1/6}$, so Adam wins
at large $B$, and a crossover exists, exactly when $r = L_\infty/L_2 < d^{1/3}$. $\beta$ is tuned
away in the bound; the simulation takes it as an argument.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy import optimize

ADAM_PROXY = "signsgd_momentum"
SGD_PROXY = "normalized_sgd_momentum"
PROXIES = (ADAM_PROXY, SGD_PROXY)
_SOURCES = ("measured", "fitted")
# The calibration exponent c of the l1 -> l2 scale conversion d^{-c} (see the module docstring).
_SCALE_EXPONENT = 1.0 / 6.0


@dataclasses.dataclass(frozen=True)
class GapConstants:
  """Constants of the gap model.

  Attributes:
    l2: $L_2$, the top Hessian eigenvalue.
    linf: $L_\\infty$, the $\\ell_\\infty\\to\\ell_1$ smoothness constant.
    sigma: per-coordinate gradient-noise standard deviation of one example.
    dim: the dimension $d$.
    delta: the initial suboptimality $\\Delta = f(x_0) - f^*$.
    budget: the example budget $T$ (steps are $T/B$).
    source: "measured" (from `estimate_constants`) or "fitted" (from `fit_constants`).
  """
  l2: float
  linf: float
  sigma: float
  dim: int
  delta: float
  budget: float
  source: str

  def __post_init__(self):
    for name in ("l2", "linf", "sigma", "delta", "budget"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
    if self.dim < 1:
      raise ValueError(f"dim must be at least 1, got {self.dim}.")
    if self.source not in _SOURCES:
      raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}.")

  @property
  def ratio(self) -> float:
    """$r = L_\\infty / L_2$."""
    return self.linf / self.l2


def crossover_exists(r: float, d: int) -> bool:
  """Whether the model has a crossover batch size: $r < d^{1/3}$ (else SGD wins at every B)."""
  if not r > 0 or d < 1:
    raise ValueError(f"r must be positive and d at least 1, got r={r}, d={d}.")
  return r < d ** (1.0 / 3.0)


def _tuned_bound(smoothness, noise, delta, steps):
  """$G(L, S)$ of the module docstring, elementwise."""
  a = np.sqrt(delta * smoothness / steps)
  return np.where(noise > 2.0 * a, 2.0 * np.sqrt(2.0 * a * noise), 2.0 * a + noise)


def predicted_bounds(batches, constants: GapConstants) -> tuple[np.ndarray, np.ndarray]:
  """Tuned bounds (Adam proxy, SGD proxy) at each batch size, on the common scale.

  Args:
    batches: batch sizes B (positive; K = T/B need not be an integer).
    constants: the model's constants.

  Returns:
    Two arrays shaped like `batches`.
  """
  b = np.asarray(batches, np.float64)
  if np.any(~(b > 0)):
    raise ValueError("batch sizes must be positive.")
  c, d = constants, float(constants.dim)
  steps = c.budget / b
  adam = _tuned_bound(c.linf, c.sigma * d / np.sqrt(b), c.delta, steps) * d**-_SCALE_EXPONENT
  sgd = _tuned_bound(c.l2, c.sigma * np.sqrt(d / b), c.delta, steps)
  return adam, sgd


def predicted_gap(batches, constants: GapConstants) -> np.ndarray:
  """Predicted Gap(B) = Adam-proxy bound minus SGD-proxy bound (negative: Adam wins)."""
  adam, sgd = predicted_bounds(batches, constants)
  return adam - sgd


def crossover_batch(batches, gaps) -> float | None:
  """First B where the gap turns from positive to non-positive, log-B interpolated, or None."""
  b = np.asarray(batches, np.float64)
  g = np.asarray(gaps, np.float64)
  if b.ndim != 1 or b.shape != g.shape or b.size < 2 or np.any(np.diff(b) <= 0):
    raise ValueError("batches must be increasing, 1-D, at least two, and match gaps.")
  for i in range(b.size - 1):
    if g[i] > 0 >= g[i + 1]:
      t = g[i] / (g[i] - g[i + 1])
      return float(np.exp((1 - t) * np.log(b[i]) + t * np.log(b[i + 1])))
  return None


def predicted_crossover(constants: GapConstants, batch_range=(1.0, 1e9),
                        num: int = 400) -> float | None:
  """Crossover batch size of the model within `batch_range` (log grid of `num` points), or None."""
  lo, hi = batch_range
  if not 0 < lo < hi:
    raise ValueError(f"batch_range must satisfy 0 < lo < hi, got {batch_range}.")
  batches = np.geomspace(lo, hi, num)
  return crossover_batch(batches, predicted_gap(batches, constants))


# ---------------------------------------------------------------------------------------------
# Simulation of the two proxies on the noisy quadratic.


def proxy_step(method, hessian, learning_rate, beta, state, noise):
  """One step of a proxy; `state` is (x, m), `noise` the batch-mean gradient noise."""
  x, m = state
  m = beta * m + (1.0 - beta) * (hessian @ x + noise)
  if method == ADAM_PROXY:
    direction = jnp.sign(m)
  elif method == SGD_PROXY:
    direction = m / jnp.maximum(jnp.linalg.norm(m), jnp.finfo(m.dtype).tiny)
  else:
    raise ValueError(f"method must be one of {PROXIES}, got {method!r}.")
  return x - learning_rate * direction, m


@functools.partial(jax.jit, static_argnames="method")
def proxy_trajectory(method, hessian, x0, noise_KxD, learning_rate, beta):
  """Iterates x_1..x_K of a proxy driven by given noise (K, d); returns (K, d)."""
  step = functools.partial(proxy_step, method, hessian, learning_rate, beta)

  def body(state, noise):
    state = step(state, noise)
    return state, state[0]

  _, xs = jax.lax.scan(body, (x0, jnp.zeros_like(x0)), noise_KxD)
  return xs


@jax.jit
def _final_losses(use_sign, steps, hessian, x0, noise_std, learning_rates, beta, keys):
  """Final loss f(x_K) for every (learning rate, seed); shape (num_lrs, num_seeds).

  The proxy (`use_sign`) and the step count are traced, so every batch size and both proxies
  share one compilation; step k draws its noise from `fold_in(key, k)`.
  """
  dim = x0.shape[0]

  def one(lr, key):
    def body(k, state):
      noise = noise_std * jax.random.normal(jax.random.fold_in(key, k), (dim,), x0.dtype)
      sign_state = proxy_step(ADAM_PROXY, hessian, lr, beta, state, noise)
      sgd_state = proxy_step(SGD_PROXY, hessian, lr, beta, state, noise)
      return jax.tree.map(lambda a, b: jnp.where(use_sign, a, b), sign_state, sgd_state)

    x, _ = jax.lax.fori_loop(0, steps, body, (x0, jnp.zeros_like(x0)))
    return 0.5 * x @ hessian @ x

  per_seed = jax.vmap(one, in_axes=(None, 0))
  return jax.vmap(per_seed, in_axes=(0, None))(learning_rates, keys)


def simulate_gap(hessian, x0, sigma, budget, batches, learning_rates, *, beta, num_seeds,
                 seed) -> dict:
  """Measured Gap(B): each proxy's best (over `learning_rates`) seed-mean final loss.

  Args:
    hessian: (d, d) PSD Hessian (diagonal or rotated).
    x0: (d,) start.
    sigma: per-example, per-coordinate noise std (the batch mean has std sigma / sqrt(B)).
    budget: example budget T; batch B runs K = T // B steps.
    batches: batch sizes, each at most T.
    learning_rates: the log grid the stepsize is tuned over.
    beta: momentum of both proxies.
    num_seeds: noise seeds, vmapped.
    seed: base PRNG seed.

  Returns:
    dict with "batches", "adam" and "sgd" (best losses) and "gap" (adam - sgd), NumPy arrays.
  """
  hessian = jnp.asarray(hessian, jnp.float32)
  x0 = jnp.asarray(x0, jnp.float32)
  lrs = jnp.asarray(learning_rates, jnp.float32)
  keys = jax.random.split(jax.random.key(seed), num_seeds)
  best = {ADAM_PROXY: [], SGD_PROXY: []}
  for b in batches:
    steps = int(budget) // int(b)
    if steps < 1:
      raise ValueError(f"batch size {b} exceeds the budget {budget}.")
    for method in PROXIES:
      losses = _final_losses(method == ADAM_PROXY, steps, hessian, x0, sigma / math.sqrt(b),
                             lrs, beta, keys)
      best[method].append(float(jnp.min(jnp.mean(losses, axis=1))))
  adam, sgd = np.array(best[ADAM_PROXY]), np.array(best[SGD_PROXY])
  return dict(batches=np.asarray(batches), adam=adam, sgd=sgd, gap=adam - sgd)


# ---------------------------------------------------------------------------------------------
# Constants from a model, and constants fitted to measured gaps.


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6, 7))
def _measure(loss_fn, unravel, flat, examples, key, power_iters, linf_probes, linf_iters):
  """(L_2, L_inf, sigma^2, mean loss) at `flat` (see `estimate_constants`)."""
  dim = flat.shape[0]

  def mean_loss(v):
    return jnp.mean(jax.vmap(loss_fn, in_axes=(None, 0))(unravel(v), examples))

  grad = jax.grad(mean_loss)
  hvp = lambda u: jax.jvp(grad, (flat,), (u,))[1]
  key_power, key_sign = jax.random.split(key)

  def power(_, v):
    hv = hvp(v)
    return hv / jnp.linalg.norm(hv)

  v = jax.random.normal(key_power, (dim,), flat.dtype)
  v = jax.lax.fori_loop(0, power_iters, power, v / jnp.linalg.norm(v))
  l2 = v @ hvp(v)

  def sign_power(_, carry):
    s, best = carry
    hs = hvp(s)
    return jnp.where(hs >= 0, 1.0, -1.0).astype(flat.dtype), jnp.maximum(best, s @ hs)

  def probe(k):
    s = jax.random.rademacher(k, (dim,), flat.dtype)
    return jax.lax.fori_loop(0, linf_iters, sign_power, (s, jnp.zeros((), flat.dtype)))[1]

  linf = jnp.max(jax.lax.map(probe, jax.random.split(key_sign, linf_probes)))
  per_example = jax.vmap(lambda e: ravel_pytree(jax.grad(loss_fn)(unravel(flat), e))[0])(examples)
  sigma2 = jnp.mean(jnp.var(per_example, axis=0, ddof=1))
  return l2, linf, sigma2, mean_loss(flat)


def estimate_constants(loss_fn, params, examples, *, budget, loss_floor=0.0, power_iters=100,
                       linf_probes=8, linf_iters=10, seed=0) -> GapConstants:
  """Measures the model's constants at `params`.

  - $L_2$: top Hessian eigenvalue by power iteration on Hessian-vector products (Rayleigh
    quotient of the last iterate; a lower bound that converges like $(\\lambda_2/\\lambda_1)^{2k}$).
  - $L_\\infty = \\|H\\|_{\\infty\\to 1} = \\max_{s\\in\\{\\pm1\\}^d} s^\\top H s$ (for PSD $H$),
    estimated from below by a sign power iteration $s \\leftarrow \\mathrm{sign}(Hs)$ (which does
    not decrease $s^\\top H s$ for PSD $H$) from `linf_probes` Rademacher starts; exact for
    diagonal $H$, where it equals $\\mathrm{tr}\\,H$.
  - $\\sigma^2$: per-coordinate variance of per-example gradients (`jax.vmap(jax.grad)`), averaged
    over coordinates (unbiased sample variance).
  - $\\Delta$: mean loss minus `loss_floor`.

  Args:
    loss_fn: `loss_fn(params, example) -> scalar`, the loss of one example.
    params: a pytree of parameters.
    examples: a pytree of examples stacked on axis 0 (at least two).
    budget: the example budget T recorded in the constants.
    loss_floor: the optimal loss $f^*$ (0 for a quadratic).
    power_iters: power-iteration steps for $L_2$.
    linf_probes: Rademacher starts for $L_\\infty$.
    linf_iters: sign-power steps per start.
    seed: PRNG seed of the probes.

  Returns:
    `GapConstants` with source "measured".
  """
  flat, unravel = ravel_pytree(params)
  if jax.tree.leaves(examples)[0].shape[0] < 2:
    raise ValueError("examples must hold at least two examples.")
  l2, linf, sigma2, loss = _measure(loss_fn, unravel, flat, examples, jax.random.key(seed),
                                    power_iters, linf_probes, linf_iters)
  dim = flat.shape[0]
  sigma2 = float(sigma2)
  delta = float(loss) - loss_floor
  return GapConstants(l2=float(l2), linf=float(linf), sigma=math.sqrt(sigma2), dim=dim, delta=delta,
                      budget=float(budget), source="measured")


def fit_constants(batches, measured_gaps, *, dim, delta, budget, initial=None) -> GapConstants:
  """Fits $L_2$, $L_\\infty$, $\\sigma$ to measured gaps (least squares in their logs).

  $d$, $\\Delta$ and $T$ are held fixed: $\\Delta$ enters only through $\\Delta L$ products and
  $\\Delta^{1/4}\\sigma^{1/2}$, so it is not identifiable together with the rest. Residuals are
  scaled by the mean absolute measured gap.

  Args:
    batches: batch sizes.
    measured_gaps: the gaps at those batch sizes.
    dim: d.
    delta: the initial suboptimality.
    budget: the example budget T.
    initial: optional (l2, linf, sigma) start; defaults to (1, d**(1/3), 1).

  Returns:
    `GapConstants` with source "fitted".
  """
  b = np.asarray(batches, np.float64)
  g = np.asarray(measured_gaps, np.float64)
  if b.shape != g.shape or b.size < 3:
    raise ValueError("batches and measured_gaps must match and hold at least three points.")
  scale = np.mean(np.abs(g))
  if not scale > 0:
    raise ValueError("measured_gaps must not all be zero.")

  def constants(log_params, source="fitted"):
    l2, linf, sigma = np.exp(log_params)
    return GapConstants(l2=l2, linf=linf, sigma=sigma, dim=dim, delta=delta, budget=budget,
                        source=source)

  def residuals(log_params):
    return (predicted_gap(b, constants(log_params)) - g) / scale

  start = np.log(initial if initial is not None else (1.0, dim ** (1.0 / 3.0), 1.0))
  result = optimize.least_squares(residuals, start, method="lm", xtol=1e-14, ftol=1e-14)
  return constants(result.x)
