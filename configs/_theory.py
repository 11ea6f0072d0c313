"""Theory-sized task: a linear model on noisy linear regression with power-law spectra.

Used through ``configs/modalities.py:theory,linear[,smoke][,sgd]``. The loss is MSE/2, so the
evaluation loss minus ``summary["data"]["eval_bayes_risk"]`` is the excess risk; the batch-size
studies vary ``train.global_batch`` and the learning rate on it.
"""

from configs.base import set_adam, set_budget

ARCHS = ("linear",)
# Peak learning rate for SGD with heavy-ball momentum 0.9 (configs/modalities.py `sgd`):
# 0.05 / (1 - 0.9) = 0.5 per unit curvature, well inside the stable range for the top
# eigenvalue 1 and trace ~5 at batch 32.
SGD_LEARNING_RATE = {"linear": 0.05}


def apply(c, arch: str, smoke: bool) -> None:
  """Fills ``c`` (a fresh ``base_config()``) for ``arch`` on power-law linear regression."""
  if arch not in ARCHS:
    raise ValueError(f"unknown theory architecture {arch!r}: valid are {', '.join(ARCHS)}")
  dim = 32 if smoke else 128
  c.data.name = "linear_regression"  # y = <x, w*> + noise, x ~ N(0, diag(i^-alpha))
  c.data.dim = dim  # input dimension d
  c.data.spectrum_exponent = 1.0  # alpha: covariance eigenvalues i^-alpha
  c.data.target_exponent = 1.0  # beta: w*_i ∝ i^-beta (signal per direction i^-(alpha+2 beta))
  c.data.noise_std = 0.5  # label noise; Bayes risk = noise_std^2 / 2
  c.data.signal_variance = 1.0  # E<x, w*>^2 (w* is scaled to it)
  c.data.rotate = False  # True: a fixed random rotation takes the spectrum off the axes
  c.data.eval_examples = 4096 if smoke else 8192  # fixed evaluation set (seed-independent)

  c.model.name = arch  # models/linear.py: a linear model
  c.model.input_dim = dim  # must equal data.dim
  c.model.use_bias = False  # the data are centred

  c.loss = "mean_squared_error"  # (prediction - target)^2 / 2
  # (no weight decay: the excess risk is measured against w*)
  set_adam(
      c,
      learning_rate=0.1 if smoke else 0.02,  # Adam's peak learning rate
      grad_clip_norm=0.0,  # no clipping: the quadratic has no outliers to tame
      warmup_steps=2 if smoke else 20,  # linear warmup length
      end_factor=0.0)  # the decay to zero removes the noise floor
  set_budget(
      c,
      steps=20 if smoke else 400,  # optimizer updates
      batch=64 if smoke else 32,  # examples per update
      eval_batch=1024,  # examples per evaluation batch
      log_every=1 if smoke else 10,  # steps between metric lines
      eval_every=10 if smoke else 100,  # steps between evaluations (and at the end)
      checkpoint_every=10 if smoke else 400)  # steps between checkpoints
