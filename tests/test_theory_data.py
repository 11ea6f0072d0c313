"""Theory-sized task: power-law noisy linear regression, the linear model, configs/_theory.py."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import loss_curve

import data
import models
import training
from configs import modalities


def _source(seed=0, **kw):
  cfg = dict(name="linear_regression", dim=32, spectrum_exponent=1.5, target_exponent=0.5,
             noise_std=0.3, eval_examples=8192) | kw
  return data.build(ml_collections.ConfigDict(cfg), seed=seed)



def test_linear_regression_stream_is_deterministic_and_random_access():
  a, b = _source(eval_examples=64), _source(eval_examples=64)
  batch = a.examples(50, 8)
  np.testing.assert_array_equal(batch["inputs"], b.examples(50, 8)["inputs"])
  np.testing.assert_array_equal(batch["targets"][3:], a.examples(53, 5)["targets"])
  assert batch["inputs"].shape == (8, 32) and batch["targets"].shape == (8,)
  assert batch["inputs"].dtype == batch["targets"].dtype == np.float32
  other = _source(seed=1, eval_examples=64)
  assert not np.allclose(batch["inputs"], other.examples(50, 8)["inputs"])
  # the evaluation set is the same for every run seed
  np.testing.assert_array_equal(a.eval_set()["inputs"], other.eval_set()["inputs"])


def test_spectrum_target_and_bayes_risk_are_the_requested_ones():
  source = _source()
  x, y = (source.eval_set()[k].astype(np.float64) for k in ("inputs", "targets"))
  variances = x.var(0)
  lam = np.arange(1, 33) ** -1.5
  np.testing.assert_allclose(variances, lam, rtol=0.08)
  slope = np.polyfit(np.log(np.arange(1, 33)), np.log(variances), 1)[0]
  assert slope == pytest.approx(-1.5, abs=0.05)
  # least squares on the evaluation set recovers w* (a power law in i) and the noise
  w_hat = np.linalg.lstsq(x, y, rcond=None)[0]
  standard_error = 0.3 / np.sqrt(8192 * lam)  # of the least-squares coefficients
  assert np.all(np.abs(w_hat - source.w_star) < 4 * standard_error)
  assert np.polyfit(np.log(np.arange(1, 9)), np.log(w_hat[:8]), 1)[0] == pytest.approx(-0.5,
                                                                                        abs=0.1)
  info = source.info
  assert info["bayes_risk"] == pytest.approx(0.5 * 0.3**2)
  assert info["eval_bayes_risk"] == pytest.approx(info["bayes_risk"], rel=0.04)
  assert 0.5 * np.mean(y**2) == pytest.approx(info["null_risk"], rel=0.05)
  assert info["null_risk"] == pytest.approx(0.5 * (1.0 + 0.09))  # unit signal variance


@pytest.mark.parametrize("rotate", [False, True])
def test_excess_risk_closed_form_matches_the_evaluation_set(rotate):
  source = _source(rotate=rotate)
  x, y = (source.eval_set()[k].astype(np.float64) for k in ("inputs", "targets"))
  eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1]
  np.testing.assert_allclose(eigenvalues[:4], np.arange(1, 5) ** -1.5, rtol=0.1)
  # the rotation takes the spectrum off the axes: coordinate variances are mixed
  assert (np.abs(x.var(0) - np.arange(1, 33) ** -1.5).max() > 0.2) == rotate
  w = source.w_star + 0.3 * np.random.default_rng(0).normal(size=32)
  measured = 0.5 * np.mean((x @ w - y) ** 2) - source.info["eval_bayes_risk"]
  assert measured == pytest.approx(source.excess_risk(w), rel=0.1)
  assert source.excess_risk(source.w_star) == pytest.approx(0.0, abs=1e-12)
  assert source.excess_risk(np.zeros(32)) == pytest.approx(
      source.info["null_risk"] - source.info["bayes_risk"])


def test_linear_model_roles_flops_and_bad_input():
  model = models.build(ml_collections.ConfigDict(dict(name="linear", input_dim=5, use_bias=True)))
  params = model.init(jax.random.PRNGKey(0), jnp.ones((3, 5)))["params"]
  assert models.param_roles(params) == {"head": {"kernel": "head", "bias": "bias"}}
  x = jnp.arange(15.0).reshape(3, 5)
  params = {"head": {"kernel": jnp.arange(5.0)[:, None], "bias": jnp.array([1.0])}}
  np.testing.assert_allclose(model.apply({"params": params}, x), x @ jnp.arange(5.0) + 1.0)
  assert model.flops_per_example(np.zeros(5)) == 30.0
  no_bias = models.build(ml_collections.ConfigDict(dict(name="linear", input_dim=5)))
  assert "bias" not in no_bias.init(jax.random.PRNGKey(0), jnp.ones((1, 5)))["params"]["head"]
  with pytest.raises(ValueError, match=r"linear takes inputs of shape \(batch, 5\) "
                                       r"\(model.input_dim=5\); got shape \(3, 4\)"):
    model.init(jax.random.PRNGKey(0), jnp.ones((3, 4)))
  with pytest.raises(ValueError, match="model.input_dim=0 must be >= 1"):
    models.build(ml_collections.ConfigDict(dict(name="linear", input_dim=0)))


@pytest.mark.parametrize("sgd", [False, True], ids=["adam", "sgd"])
def test_smoke_config_trains_with_adam_and_sgd(tmp_path, sgd):
  config = modalities.get_config("theory,linear,smoke" + (",sgd" if sgd else ""))
  assert config.optimizer.name == ("sgd" if sgd else "adam") and config.model.input_dim == 32
  summary = training.run(config, str(tmp_path))
  losses = loss_curve(tmp_path)
  assert summary["status"] == "ok" and len(losses) == 20
  assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
  assert summary["flops_per_example"] == 6 * 32


def test_sgd_approaches_the_bayes_risk_in_a_few_hundred_steps(tmp_path):
  config = modalities.get_config("theory,linear,sgd")
  with config.unlocked():
    config.train.checkpoint_every = 1000
  summary = training.run(config, str(tmp_path))
  info = summary["data"]
  excess = summary["final_eval_loss"] - info["eval_bayes_risk"]
  # measured 0.0018 (400 steps, batch 32, d = 128): 1.4% of the Bayes risk 0.125,
  # 0.4% of the zero predictor's excess risk 0.5
  assert summary["steps"] == 400 and 0.0 < excess < 0.01, excess
  assert excess < 0.02 * (info["null_risk"] - info["bayes_risk"])
