import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import models


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


def test_gpt_flops_match_a_hand_count():
  model = models.build(_gpt_cfg())
  D, F, V, L, T = 32, 128, 256, 2, 16
  n = L * (4 * D * D + 2 * D * F) + D * V
  assert model.flops_per_example(np.zeros(T, np.int32)) == T * (6 * n + 12 * L * D * T)


def test_bad_model_input_names_the_fix():
  with pytest.raises(ValueError, match="unknown model .transformer.: valid names are .*gpt.*mlp"):
    models.build(ml_collections.ConfigDict(dict(name="transformer")))
  with pytest.raises(ValueError, match="valid are"):
    models.build(_gpt_cfg(activation="swish"))
  model = models.build(_gpt_cfg())
  with pytest.raises(ValueError, match=r"sequence length 32 exceeds the model's max_len=16"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))
