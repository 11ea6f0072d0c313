"""Input pipelines: determinism, the real TFDS path under mock data, embedded sources."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

import data
import training


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(name="stdlib_bytes", seq_len=64, eval_examples=8) | kw)


def test_stdlib_bytes_stream_is_deterministic_and_random_access():
  a = data.build(_cfg(), seed=3)
  b = data.build(_cfg(), seed=3)
  batch = a.examples(100, 8)
  np.testing.assert_array_equal(batch["inputs"], b.examples(100, 8)["inputs"])
  # any slice of the stream can be produced on its own
  np.testing.assert_array_equal(batch["inputs"][5:], a.examples(105, 3)["inputs"])
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert batch["inputs"].shape == (8, 64) and batch["inputs"].max() < 256
  other = data.build(_cfg(), seed=4).examples(100, 8)["inputs"]
  assert not np.array_equal(batch["inputs"], other)
  assert a.info["train_bytes"] > 10 * a.info["validation_bytes"] / 2 > 0
  assert len(a.info["sha256"]) == 64


def test_digits_epochs_are_permutations():
  source = data.build(ml_collections.ConfigDict(dict(name="digits")), seed=0)
  n = source.info["train_examples"]
  labels = source.examples(0, n)["targets"]
  again = source.examples(n, n)["targets"]
  assert sorted(labels) == sorted(again) and not np.array_equal(labels, again)
  test = source.eval_set()
  assert test["inputs"].shape == (359, 64) and 0.0 <= test["inputs"].min() <= 1.0


def test_unknown_source_lists_valid_names():
  with pytest.raises(ValueError, match="valid names are .*digits.*stdlib_bytes.*tfds_images"):
    data.build(_cfg(name="c4"), seed=0)
  with pytest.raises(ValueError, match="unexpected keyword argument 'seq_length'"):
    data.build(ml_collections.ConfigDict(dict(name="stdlib_bytes", seq_length=8)), seed=0)


def _load(spec):
  import importlib.util
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("cfg", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg)


def test_tfds_path_trains_two_steps_under_mock_data(tmp_path, root):
  config = _load(f"{root}/configs/digits_mlp.py:mnist,smoke")
  with config.unlocked():
    config.train.steps = 2
    config.train.eval_every = 2
    config.data.eval_examples = 64
  with tfds.testing.mock_data(num_examples=64):
    source = data.build(config.data, seed=0)
    assert source.examples(0, 4)["inputs"].shape == (4, 28, 28, 1)
    summary = training.run(config, str(tmp_path))
  assert summary["status"] == "ok" and summary["steps"] == 2
  assert summary["data"]["dataset"] == "tfds:mnist"
  assert np.isfinite(summary["final_loss"]) and summary["final_eval_accuracy"] is not None
