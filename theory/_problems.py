"""Testbeds: a loss on a flat parameter vector, with its full-batch gradient.

Noise is not part of a problem: it is a separate model (``theory.gaussian_noise``,
``theory.student_t_noise``) added to the full-batch gradient, so the same loss can be run under
Gaussian, heavy-tailed or batch-scaled noise.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from theory import _validation


class Problem(NamedTuple):
  """A loss $f: \\mathbb R^d \\to \\mathbb R$ on flat parameters and its gradient.

  Attributes:
    loss: ``x (d,) -> f(x)``, a scalar.
    grad: ``x (d,) -> grad f(x) (d,)``.
    dim: ``d``.
    hessian: the constant Hessian of a quadratic, ``None`` otherwise.
  """

  loss: Callable[[jax.Array], jax.Array]
  grad: Callable[[jax.Array], jax.Array]
  dim: int
  hessian: np.ndarray | None = None


def quadratic(hessian=None, *, eigenvalues=None, rotation_seed: int | None = None) -> Problem:
  r"""The quadratic $f(x) = \tfrac12 x^\top H x$, minimum 0 at $x = 0$.

  Args:
    hessian: a symmetric positive semi-definite (d, d) matrix $H$.
    eigenvalues: instead of ``hessian``, the spectrum of $H$ (each >= 0).
    rotation_seed: with ``eigenvalues``, $H = Q\,\mathrm{diag}(\lambda)\,Q^\top$ for a random
      orthogonal $Q$ drawn with this seed; ``None`` keeps $H$ diagonal (axis-aligned, the case
      in which the SignSGD SDE's preconditioner $\Sigma^{-1/2}$ and $H$ commute).

  Returns:
    A ``Problem`` with ``hessian`` set.

  Raises:
    ValueError: neither or both of ``hessian`` and ``eigenvalues``, a non-square, non-symmetric
      or non-PSD Hessian, or a negative eigenvalue.
  """
  if (hessian is None) == (eigenvalues is None):
    raise ValueError("quadratic takes exactly one of hessian= or eigenvalues=")
  if eigenvalues is not None:
    eigenvalues = _validation.check_vector("eigenvalues", eigenvalues)
    if np.any(eigenvalues < 0):
      raise ValueError(f"hessian is not positive semi-definite: eigenvalue {eigenvalues.min()} < 0")
    hessian = np.diag(eigenvalues)
    if rotation_seed is not None:
      rng = np.random.default_rng(rotation_seed)
      q, r = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
      q = q * np.sign(np.diagonal(r))
      hessian = (q * eigenvalues) @ q.T
      hessian = 0.5 * (hessian + hessian.T)
  hessian = _validation.check_psd_matrix("hessian", hessian)
  h = jnp.asarray(hessian, jnp.float32)
  return Problem(loss=lambda x: 0.5 * x @ (h @ x), grad=lambda x: h @ x,
                 dim=hessian.shape[0], hessian=hessian)


def mlp_classification(*, hidden: Sequence[int] = (8,), num_examples: int = 64,
                       activation: str = "tanh", seed: int = 0) -> tuple[Problem, jax.Array]:
  """A small MLP (``models.MLP``) on the first ``num_examples`` scikit-learn digits, full batch.

  The loss is the mean softmax cross-entropy over those examples, a function of the MLP's
  parameters flattened into one vector; add a noise model to its gradient to imitate
  minibatches with a controlled noise.

  Returns:
    ``(problem, x0)``: the problem and the flat initial parameters (``seed``).
  """
  from data.digits import Digits
  from models.mlp import MLP

  num_examples = _validation.check_positive_int("num_examples", num_examples)
  examples = Digits(seed=0).examples(0, num_examples)
  inputs = jnp.asarray(examples["inputs"])
  targets = jax.nn.one_hot(examples["targets"], 10)
  model = MLP(num_classes=10, hidden=tuple(hidden), activation=activation)
  model.check()
  params = model.init(jax.random.key(seed), inputs[:1])
  x0, unravel = ravel_pytree(params)

  def loss(x):
    logits = model.apply(unravel(x), inputs)
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))

  return Problem(loss=loss, grad=jax.grad(loss), dim=int(x0.shape[0])), x0
