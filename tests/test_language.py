"""Language modality: the gated-convolution LM, the Zipf/uniform token streams, the TFDS text
sets (under mock data) and the configs of configs/_language.py trained end to end."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import loss_curve

import data
import models
import training
from configs import _language, base, modalities
from data import tfds_text
from data.token_streams import TokenStreams, fit_zipf_exponent, unigram_law


def _config(arch: str, *, smoke: bool = True, sgd: bool = False, data_choice: str = "stdlib",
            **overrides):
  """What ``configs/modalities.py:language,<arch>[,smoke][,sgd]`` builds, on ``data_choice``."""
  if data_choice == "stdlib":
    c = modalities.get_config(f"language,{arch}{',smoke' if smoke else ''}{',sgd' if sgd else ''}")
  else:  # the data knob is apply's argument (modalities.py has no flag for it yet)
    c = base.base_config()
    c.optimizer.name = "adam"
    _language.apply(c, arch, smoke, data=data_choice)
    c.optimizer.kwargs.momentum = 0.9
    c.optimizer.kwargs.nesterov = False
    if sgd:
      c.optimizer.name = "sgd"
      c.optimizer.learning_rate = _language.SGD_LEARNING_RATE[arch]
    c.lock()
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c



def _conv_cfg(**kw):
  return ml_collections.ConfigDict(dict(name="gated_conv", vocab_size=256, width=32, depth=3,
                                        kernel_size=3) | kw)


# ----------------------------------------------------------------------------- gated conv LM


@pytest.mark.parametrize("dilation_base,norm,gate", [(1, "layer", "sigmoid"), (2, "rms", "silu"),
                                                     (3, "none", "relu")])
def test_gated_conv_is_causal_with_the_stated_receptive_field(dilation_base, norm, gate):
  model = models.build(_conv_cfg(dilation_base=dilation_base, norm=norm, gate=gate))
  T, t = 48, 20
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, T), 0, 256)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), tokens)
  changed = tokens.at[:, t].set((tokens[:, t] + 1) % 256)
  logits = jax.jit(model.apply)(params, jnp.concatenate([tokens, changed]))
  diff = np.abs(np.asarray(logits[:2] - logits[2:])).max(-1)
  reach = model.receptive_field  # position t influences t .. t + reach - 1, nothing else
  assert reach == 1 + 2 * sum(dilation_base**i for i in range(3))
  assert diff[:, :t].max() < 1e-7  # no earlier logit sees a later token
  assert diff[:, t + reach:].max() < 1e-7  # nor any beyond the receptive field
  if norm != "none":  # (unnormalised, deep paths are products of 0.02-scale weights; relu zeros)
    assert diff[:, t:t + reach].min() > 1e-6  # every position inside the field does


def test_gated_conv_param_roles_and_flops():
  model = models.build(_conv_cfg(use_bias=True, expansion=2))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  roles = models.param_roles(params)
  assert roles["embedding"] == "embedding" and roles["head"] == "head"
  assert roles["block_0"]["conv"] == "conv" and params["block_0"]["conv"].shape == (3, 32, 128)
  assert roles["block_2"]["out"] == "hidden"
  assert roles["block_1"]["conv_bias"] == "bias" and roles["block_1"]["out_bias"] == "bias"
  assert roles["block_0"]["norm"]["scale"] == "norm" and roles["final_norm"]["bias"] == "norm"
  D, F, K, V, L, T = 32, 64, 3, 256, 3, 8
  assert model.flops_per_example(np.zeros(T, np.int32)) == 6 * T * (L * (K * D * 2 * F + F * D)
                                                                    + D * V)
  tied = models.build(_conv_cfg(tie_embeddings=True))
  assert "head" not in jax.eval_shape(tied.init, jax.random.PRNGKey(0),
                                      jnp.zeros((1, 8), jnp.int32))["params"]


def test_gated_conv_bad_input_names_the_fix():
  with pytest.raises(ValueError, match=r"model.gate='swish': valid are \['gelu', 'gelu_tanh', 're"):
    models.build(_conv_cfg(gate="swish"))
  with pytest.raises(ValueError, match=r"model.norm='batch': valid are \['layer', 'none', 'rms'\]"):
    models.build(_conv_cfg(norm="batch"))
  with pytest.raises(ValueError, match="model.kernel_size=0 must be >= 1"):
    models.build(_conv_cfg(kernel_size=0))
  model = models.build(_conv_cfg())
  with pytest.raises(ValueError, match=r"integer tokens of shape \(batch, time\); got float32 of "
                                       r"shape \(2, 8, 4\)"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 4)))


# ----------------------------------------------------------------------------- token streams


@pytest.mark.parametrize("exponent", [0.0, 0.7, 1.0, 1.5])
def test_token_stream_unigram_law_is_the_requested_one(exponent):
  source = TokenStreams(seq_len=128, seed=0, vocab_size=512, zipf_exponent=exponent)
  tokens = source.examples(0, 1024)["inputs"].ravel()  # 131k tokens
  freq = np.bincount(tokens, minlength=512) / tokens.size
  law = unigram_law(512, exponent)
  assert 0.5 * np.abs(freq - law).sum() < 0.03  # total variation (token id = rank)
  fitted = fit_zipf_exponent(np.bincount(tokens, minlength=512))
  # ranking by observed frequency biases a flat law's fit upwards a little
  assert abs(fitted - exponent) < (0.15 if exponent == 0 else 0.03), fitted


def test_zipf_exponent_knob_changes_the_measured_law():
  fitted = {}
  for exponent in (0.0, 1.0, 1.5):
    source = data.build(_config("gpt", data_choice="zipf", data__zipf_exponent=exponent).data,
                        seed=0)
    fitted[exponent] = fit_zipf_exponent(np.bincount(source.examples(0, 512)["inputs"].ravel(),
                                                     minlength=256))
  assert fitted[0.0] < 0.2 < 0.9 < fitted[1.0] < 1.1 < 1.4 < fitted[1.5] < 1.6, fitted
  # the MLE recovers an exact law from its own expected counts
  assert fit_zipf_exponent(1e6 * unigram_law(300, 1.3)) == pytest.approx(1.3, abs=1e-4)


@pytest.mark.parametrize("exponent", [0.0, 1.0])
def test_token_stream_has_structure_beyond_the_unigram_law(exponent):
  source = TokenStreams(seq_len=64, seed=0, vocab_size=256, zipf_exponent=exponent)
  h1, rate = source.info["unigram_entropy_nats"], source.info["entropy_rate_nats"]
  assert h1 == pytest.approx(-(source.law * np.log(source.law)).sum())
  assert rate < h1 - 1.5
  # a count-based bigram model fitted on the training stream, scored on the evaluation set
  train = source.examples(0, 2048)
  counts = np.full((256, 256), 0.01)
  np.add.at(counts, (train["inputs"].ravel(), train["targets"].ravel()), 1.0)
  bigram = counts / counts.sum(1, keepdims=True)
  held_out = source.eval_set()
  loss = -np.log(bigram[held_out["inputs"].ravel(), held_out["targets"].ravel()]).mean()
  assert rate - 0.1 < loss < rate + 0.3 < h1, (loss, rate, h1)
  # the chain's stationary law is the unigram law: p P = p on the sparse transitions
  rows = np.repeat(np.arange(256), np.diff(source._indptr))
  pP = np.bincount(source._successors, weights=source.law[rows] * source._probs, minlength=256)
  np.testing.assert_allclose(pP, source.law, rtol=1e-9)


def test_token_streams_are_deterministic_and_random_access():
  a = TokenStreams(seq_len=32, seed=3, vocab_size=128)
  b = TokenStreams(seq_len=32, seed=3, vocab_size=128)
  batch = a.examples(100, 6)
  np.testing.assert_array_equal(batch["inputs"], b.examples(100, 6)["inputs"])
  np.testing.assert_array_equal(batch["inputs"][2:], a.examples(102, 4)["inputs"])
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert batch["inputs"].shape == (6, 32) and batch["inputs"].dtype == np.int32
  other = TokenStreams(seq_len=32, seed=4, vocab_size=128)
  assert not np.array_equal(batch["inputs"], other.examples(100, 6)["inputs"])
  # same task for every run seed: the evaluation set depends on structure_seed only
  np.testing.assert_array_equal(a.eval_set()["inputs"], other.eval_set()["inputs"])
  with pytest.raises(ValueError, match="data.zipf_exponent=-1 must be >= 0"):
    TokenStreams(seq_len=32, seed=0, zipf_exponent=-1)


@pytest.mark.slow
@pytest.mark.parametrize("data_choice,margin", [("uniform", 1.0), ("zipf", 0.3)])
def test_a_model_learns_below_the_unigram_entropy(tmp_path, data_choice, margin):
  config = _config("gated_conv", data_choice=data_choice, train__steps=60, train__eval_every=60,
                   train__checkpoint_every=1000)
  summary = training.run(config, str(tmp_path))
  h1 = summary["data"]["unigram_entropy_nats"]
  assert summary["final_eval_loss"] < h1 - margin, (summary["final_eval_loss"], h1)


# ----------------------------------------------------------------------------- TFDS text


def test_tfds_text_packing_is_random_access_and_keeps_documents_whole():
  with tfds.testing.mock_data(num_examples=40):
    cfg = _config("gpt", data_choice="lm1b", data__examples_per_chunk=4,
                  data__docs_per_chunk=6).data
    source = data.build(cfg, seed=1)
    docs = {tfds_text.encode(tfds.data_source("lm1b", split="train")[i]["text"])[:-1].tobytes()
            for i in range(40)}
    again = data.build(cfg, seed=1)
    batch = source.examples(0, 12)  # three chunks
    np.testing.assert_array_equal(batch["inputs"], again.examples(0, 12)["inputs"])
    np.testing.assert_array_equal(batch["inputs"][7:], again.examples(7, 5)["inputs"])
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert batch["inputs"].shape == (12, 32) and 0 <= batch["inputs"].min() <= 255
    for row in np.concatenate([batch["inputs"], batch["targets"][:, -1:]], 1).astype(np.uint8):
      pieces = row.tobytes().split(bytes([tfds_text.EOS]))
      assert all(p in docs for p in pieces[1:-1])  # whole documents between end bytes
      assert any(d.endswith(pieces[0]) for d in docs)  # a document's tail first
      assert any(d.startswith(pieces[-1]) for d in docs)  # a document's head last
    assert (batch["inputs"] == tfds_text.EOS).any()  # documents were packed back to back
    other = data.build(cfg, seed=2)
    assert not np.array_equal(batch["inputs"], other.examples(0, 12)["inputs"])
    np.testing.assert_array_equal(source.eval_set()["inputs"], other.eval_set()["inputs"])
    assert source.info["text_feature"] == "text" and source.info["eval_split"] == "test"
    with pytest.raises(ValueError, match="'body' is not a text feature of lm1b: valid are text"):
      data.build(_config("gpt", data_choice="lm1b", data__text_feature="body").data, seed=0)


@pytest.mark.parametrize("dataset,eval_split", [("lm1b", "test"),
                                                ("tiny_shakespeare", "validation"),
                                                ("c4", "validation")])
def test_tfds_text_sets_open_under_mock_data(dataset, eval_split):
  with tfds.testing.mock_data(num_examples=16):
    source = data.build(_config("gpt", data_choice=dataset).data, seed=0)
    batch = source.examples(0, 4)
    assert batch["inputs"].shape == batch["targets"].shape == (4, 32)
    assert source.eval_set()["inputs"].shape[1] == 32 and source.tokens_per_example == 32
  assert source.info["text_feature"] == "text" and source.info["eval_split"] == eval_split


@pytest.mark.slow  # each run compiles the train and eval steps: 15-25 s on the loaded CPU
@pytest.mark.parametrize("dataset", ["lm1b", "tiny_shakespeare", "c4"])
def test_tfds_text_trains_two_steps_under_mock_data(tmp_path, dataset):
  config = _config("gated_conv", data_choice=dataset, train__steps=2, train__eval_every=2,
                   train__checkpoint_every=1000)
  with tfds.testing.mock_data(num_examples=64):
    summary = training.run(config, str(tmp_path))
  assert summary["status"] == "ok" and summary["steps"] == 2
  assert summary["data"]["dataset"] == f"tfds:{dataset}" and summary["tokens_seen"] == 2 * 16 * 32
  assert np.isfinite(summary["final_loss"]) and np.isfinite(summary["final_eval_loss"])


# ----------------------------------------------------------------------------- configs


def test_gpt_switches_are_one_override_each():
  config = _config("gpt")
  variants = {}
  for field, value in (("attention", "linear"), ("activation", "relu"), ("norm", "rms")):
    switched = _config("gpt", **{f"model__{field}": value}).model
    assert switched.to_dict() == config.model.to_dict() | {field: value}
    variants[field] = models.build(switched)
    assert getattr(variants[field], field) == value
  model = models.build(config.model)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 32), 0, 256)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), tokens)
  # attention and activation have no parameters: same parameters, a different function
  outputs = jax.jit(lambda p, x: [m.apply(p, x) for m in (model, variants["attention"],
                                                          variants["activation"])])(params, tokens)
  assert np.abs(np.asarray(outputs[1] - outputs[0])).max() > 1e-4
  assert np.abs(np.asarray(outputs[2] - outputs[0])).max() > 1e-4
  with pytest.raises(ValueError, match=r"model.attention='flash': valid are \['linear', 'soft"):
    models.build(_config("gpt", model__attention="flash").model)


def test_language_config_errors_list_the_valid_values(tmp_path):
  with pytest.raises(ValueError, match="valid are stdlib, zipf, uniform, lm1b, tiny_shakespeare"):
    _language.apply(base.base_config(), "gpt", True, data="wikitext")
  with pytest.raises(ValueError, match="valid are gpt, gated_conv"):
    modalities.get_config("language,lstm")
  config = _config("gpt", data__seq_len=64)  # longer than the model's position table
  with pytest.raises(ValueError, match=r"sequence length 64 exceeds the model's max_len=32 "
                                       r"\(inputs of shape \(1, 64\)\)"):
    training.prepare(config, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("arch", _language.ARCHS)
@pytest.mark.parametrize("sgd", [False, True], ids=["adam", "sgd"])
def test_smoke_config_trains_with_adam_and_sgd(tmp_path, arch, sgd):
  config = _config(arch, sgd=sgd, train__checkpoint_every=1000)
  assert config.optimizer.name == ("sgd" if sgd else "adam")
  summary = training.run(config, str(tmp_path))
  losses = loss_curve(tmp_path)
  assert summary["status"] == "ok" and len(losses) == 20
  assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5, losses
  assert summary["flops_per_example"] == models.build(config.model).flops_per_example(
      np.zeros(32, np.int32))
