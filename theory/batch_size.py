r"""Batch size in theory: the BST transfer rule, and SGD's exact risk on noisy linear regression.

**The BST rule** (Islamov et al., ICML 2026, arXiv 2603.21191). For momentum stochastic
conditional-gradient methods (Scion) under a $\mu$-KL condition with noise
$\sigma^2 = \sigma_\star^2/(BS)$, the error after a budget of $T$ tokens is, up to logarithms
(their Corollary 4.1),

$$\varepsilon \approx \max\Big\{\frac{L\,BS}{\mu^2 T},\ \Big(\frac{L\rho^2\sigma_\star^2}{\mu^4 T}
\Big)^{1/3},\ \frac{\rho\sigma_\star}{\mu (T^2 BS)^{1/6}}\Big\}$$

(iteration-starved, batch-independent and noise-dominated terms). The first two cross at
$BS = (T\mu\rho\sigma_\star/L)^{2/3}$ (their Eq. 4) with the stepsize $\beta \sim BS/T$ (Eq. 5),
momentum unchanged. From a tuned $(B_0 S_0, \beta_0)$ at $T_0$ to $T_1$ (their Eqs. 7-8):

$$B_1S_1 = B_0S_0\Big(\frac{T_1}{T_0}\frac{\mu_1}{\mu_0}\frac{\rho_1}{\rho_0}\frac{L_0}{L_1}
\Big)^{2/3}, \qquad \beta_1 = \beta_0\,\frac{B_1S_1}{B_0S_0}\,\frac{T_0}{T_1}.$$

For one model $\mu$ and $L$ stay; $\rho$ (the ratio of the dual to the Euclidean norm of the
gradient noise) was measured to grow with the batch, $\rho \propto (B - 9.4)^{0.1}$ on their
NanoGPT (``PAPER_RHO``), so $B_1$ solves a fixed point. ``bst_transfer`` computes it; the paper
then rounds the batch down to a multiple of 32. With the paper's 124M model (10.8 tokens per
parameter, B = 256, S = 1024, beta = 3.6e-4) and budgets of 21.6, 43.1 and 64.7 tokens per
parameter (2x, 4x and 6x: the "2.7B, 5.3B, 8.0B" tokens of its text), this gives B = 416, 672
and 896 (the paper's table) and beta = 2.9e-4, 2.4e-4 and 2.1e-4 from the rounded batches
(the paper: 3.0e-4, 2.4e-4, 2.1e-4). The plain $T^{2/3}$ rule (no
$\rho$ change) gives 406, 645 and 845 at those budgets; with the rounded token counts 2.7/1.3,
5.3/1.3 and 8.0/1.3 it gives 417, 653 and 860.

**SGD on noisy linear regression**: inputs $x \sim N(0, H)$, labels $y = \langle x, w_\star\rangle
+ \sigma\xi$, a step $w \leftarrow w - \eta\,\frac1B\sum_j x_j(\langle x_j, w\rangle - y_j)$.
For Gaussian inputs and diagonal $H = \mathrm{diag}(h)$ the diagonal $c$ of the error's second
moment evolves on its own, exactly:

$$c_i \leftarrow (1 - \eta h_i)^2 c_i + \frac{\eta^2}{B}\Big(h_i^2 c_i + h_i \sum_j h_j c_j
+ \sigma^2 h_i\Big), \qquad \mathbb E\,R = \tfrac12\sum_i h_i c_i + \tfrac12\sigma^2$$

(from $\mathbb E[x x^\top C x x^\top] = 2HCH + \mathrm{tr}(HC)H$). ``sgd_linear_regression_risk``
runs it for any per-step learning rates and batch sizes: the expected risk without sampling,
for Seesaw's equivalence (a learning-rate decay against the batch ramp that replaces it) and for
the critical batch size of this problem.
"""

import math
from collections.abc import Callable

import numpy as np

PAPER_RHO = lambda batch: (batch - 9.4) ** 0.1  # noqa: E731 -- rho(B) up to a constant (Eq. 15)


def _positive(name: str, value) -> float:
  value = float(value)
  if not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name}={value} must be a finite number > 0")
  return value


def bst_batch_sequence(batch_seq: float, tokens: float, new_tokens: float, *,
                       mu_ratio: float = 1.0, rho_ratio: float = 1.0,
                       smoothness_ratio: float = 1.0) -> float:
  """$B_1S_1$ from $B_0S_0$ at ``tokens`` for ``new_tokens`` (Eq. 7); each ratio is the new
  constant over the old one ($\\mu_1/\\mu_0$, $\\rho_1/\\rho_0$, $L_1/L_0$)."""
  ratio = (_positive("new_tokens", new_tokens) / _positive("tokens", tokens)
           * _positive("mu_ratio", mu_ratio) * _positive("rho_ratio", rho_ratio)
           / _positive("smoothness_ratio", smoothness_ratio))
  return _positive("batch_seq", batch_seq) * ratio ** (2.0 / 3.0)


def bst_stepsize(stepsize: float, batch_seq: float, new_batch_seq: float, tokens: float,
                 new_tokens: float) -> float:
  """$\\beta_1 = \\beta_0 (B_1S_1 / B_0S_0)(T_0/T_1)$ (Eq. 8): the stepsize ~ BS / T."""
  return (_positive("stepsize", stepsize) * _positive("new_batch_seq", new_batch_seq)
          / _positive("batch_seq", batch_seq) * _positive("tokens", tokens)
          / _positive("new_tokens", new_tokens))


def bst_transfer(batch: int, seq_len: int, stepsize: float, tokens: float, new_tokens: float, *,
                 rho: Callable[[float], float] | None = None, multiple: int = 1,
                 mu_ratio: float = 1.0, smoothness_ratio: float = 1.0) -> dict:
  """The BST rule at a new budget, the sequence length kept: ``dict(batch=, seq_len=,
  stepsize=, exact_batch=)``.

  Args:
    batch, seq_len, stepsize, tokens: the tuned run.
    new_tokens: the new budget.
    rho: $\\rho$ as a function of the batch size (up to a constant), e.g. ``PAPER_RHO``; then the
      new batch solves $B_1 = B_0 ((T_1/T_0)\\,\\rho(B_1)/\\rho(B_0))^{2/3}$ (by iteration: the map
      is a contraction, its slope about 0.07 for the paper's $\\rho$). ``None``: $\\rho$ fixed.
    multiple: the batch is rounded down to a multiple of this (the paper uses 32), and the
      stepsize follows the rounded batch (Eq. 8); ``exact_batch`` is the unrounded one.
    mu_ratio, smoothness_ratio: $\\mu_1/\\mu_0$ and $L_1/L_0$ (1 for the same model).
  """
  if not isinstance(multiple, int) or multiple < 1:
    raise ValueError(f"multiple={multiple!r} must be an integer >= 1")
  batch, seq_len = _positive("batch", batch), _positive("seq_len", seq_len)
  new = lambda rho_ratio: bst_batch_sequence(
      batch * seq_len, tokens, new_tokens, mu_ratio=mu_ratio, rho_ratio=rho_ratio,
      smoothness_ratio=smoothness_ratio) / seq_len
  exact = new(1.0)
  if rho is not None:
    for _ in range(200):
      previous, exact = exact, new(rho(exact) / rho(batch))
      if abs(exact - previous) < 1e-9 * exact:
        break
  rounded = max(multiple, multiple * math.floor(exact / multiple))
  return dict(batch=int(rounded), seq_len=int(seq_len), exact_batch=exact,
              stepsize=bst_stepsize(stepsize, batch * seq_len, rounded * seq_len, tokens,
                                    new_tokens))


def bst_bound_terms(batch_seq, tokens: float, *, mu: float, rho_sigma: float,
                    smoothness: float) -> np.ndarray:
  """The three terms of the BST bound (module doc) at ``batch_seq`` tokens per step, with the
  bound's unknown factors taken as 1: ``(..., 3)`` = (iteration-starved, batch-independent,
  noise-dominated); the error is their largest."""
  bs = np.asarray(batch_seq, np.float64)
  t, mu, ns, lip = (_positive("tokens", tokens), _positive("mu", mu),
                    _positive("rho_sigma", rho_sigma), _positive("smoothness", smoothness))
  starved = lip * bs / (mu**2 * t)
  flat = np.broadcast_to((lip * ns**2 / (mu**4 * t)) ** (1 / 3), bs.shape)
  noisy = ns / (mu * (t**2 * bs) ** (1 / 6))
  return np.stack([starved, flat, noisy], axis=-1)


def bst_regimes(tokens: float, *, mu: float, rho_sigma: float, smoothness: float) -> dict:
  r"""Where the measured constants put the BST regimes at a budget of ``tokens``.

  With $\kappa = \mu\rho\sigma_\star/L$: noise-dominated below $BS = \kappa^2$,
  batch-independent up to $BS^\star = (T\kappa)^{2/3}$ (Eq. 4, the largest batch that costs
  nothing), iteration-starved above; the stepsize there is $\beta^\star = BS^\star/(\mu T)$
  (Eq. 5 with its $\mu$: the contraction $\beta\mu$ per step over $T/BS$ steps), up to a
  logarithm. Returns ``dict(low=, optimum=, stepsize=, kappa=)`` in tokens per step.
  """
  mu, t = _positive("mu", mu), _positive("tokens", tokens)
  kappa = mu * _positive("rho_sigma", rho_sigma) / _positive("smoothness", smoothness)
  optimum = (t * kappa) ** (2.0 / 3.0)
  return dict(low=kappa**2, optimum=optimum, stepsize=optimum / (mu * t), kappa=kappa)


def sgd_linear_regression_risk(eigenvalues, w_star, noise_std: float, learning_rates,
                               batches) -> np.ndarray:
  """The exact expected risk of SGD from $w = 0$ after each step (module doc).

  Args:
    eigenvalues: the input covariance's eigenvalues $h$ (its eigenbasis is the axes).
    w_star: the target's coordinates in that basis.
    noise_std: the label noise $\\sigma$ (the Bayes risk is $\\sigma^2/2$).
    learning_rates, batches: one per step (equal length).

  Returns:
    The expected risk after steps ``1 .. K`` (float64, length K), starting from
    $\\frac12\\sum_i h_i w_{\\star i}^2 + \\frac12\\sigma^2$ before the first.
  """
  h = np.asarray(eigenvalues, np.float64)
  c = np.asarray(w_star, np.float64) ** 2
  lrs, bs = np.asarray(learning_rates, np.float64), np.asarray(batches, np.float64)
  if h.shape != c.shape or h.ndim != 1 or np.any(h <= 0):
    raise ValueError("eigenvalues and w_star must be vectors of one length, eigenvalues > 0")
  if lrs.shape != bs.shape or lrs.ndim != 1 or np.any(lrs <= 0) or np.any(bs < 1):
    raise ValueError("learning_rates and batches: one per step, rates > 0 and batches >= 1")
  sigma2 = float(noise_std) ** 2
  risks = np.empty(len(lrs))
  for k, (lr, b) in enumerate(zip(lrs, bs, strict=True)):
    c = (1 - lr * h) ** 2 * c + lr**2 / b * (h**2 * c + h * (h @ c) + sigma2 * h)
    risks[k] = 0.5 * (h @ c) + 0.5 * sigma2
  return risks
