"""Input pipelines: determinism, the real TFDS path under mock data, embedded sources."""

import json

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


# ----------------------------------------------------------------------------- the contract

# Every registered source, small enough to build in well under a second (TFDS ones under
# mock data): a source missing here fails the contract test below.
_SMALL = {
    "dna_motifs": dict(seq_len=24, eval_examples=4),
    "tfds_genomics_ood": dict(data_dir="", seq_len=32, eval_examples=4),
    "sbm_nodes": dict(max_nodes=8, min_nodes=4, eval_examples=4),
    "graph_properties": dict(max_nodes=8, min_nodes=4, eval_examples=4),
    "tfds_ogbg_molpcba": dict(data_dir="", max_nodes=16, eval_examples=4, tasks=(0, 5)),
    "stdlib_bytes": dict(seq_len=16, eval_examples=4),
    "digits": {},
    "digit_images": {},
    "mnist1d": dict(num_samples=200),
    "tfds_vision": dict(dataset="cifar10", data_dir="", eval_examples=4, augment="crop_flip"),
    "tfds_images": dict(dataset="mnist", data_dir="", eval_examples=4),
    "tfds_text": dict(dataset="lm1b", data_dir="", seq_len=16, eval_examples=4,
                      eval_split="test", docs_per_chunk=3, examples_per_chunk=2),
    "token_streams": dict(seq_len=8, vocab_size=32, eval_examples=4),
    "linear_regression": dict(dim=8, eval_examples=16),
}


def _flat(tree, prefix=""):
  """{"a/b": array} for a nested dict of arrays (a flat dict is returned as it is)."""
  if isinstance(tree, dict):
    return {k: v for key in tree
            for k, v in _flat(tree[key], f"{prefix}/{key}".lstrip("/")).items()}
  return {prefix: np.asarray(tree)}


def _assert_equal(a, b):
  """Two batches, nested or flattened by ``_flat``, hold the same arrays."""
  a, b = _flat(a), _flat(b)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _build_small(name, seed=0):
  return data.build(ml_collections.ConfigDict(dict(name=name) | _SMALL[name]), seed=seed)


@pytest.mark.parametrize("name", data.available())
def test_every_source_keeps_the_data_source_contract(name):
  with tfds.testing.mock_data(num_examples=12):
    source = _build_small(name)
    assert isinstance(source, data.DataSource)
    assert source.info and json.loads(json.dumps(source.info)) == source.info
    assert isinstance(source.tokens_per_example, int) and source.tokens_per_example >= 0
    first, later = _flat(source.examples(0, 5)), _flat(source.examples(37, 5))
    # fixed shapes and dtypes wherever the stream is read, leading dimension = count
    assert first.keys() == later.keys() and "targets" in first
    for k in first:
      assert first[k].shape == later[k].shape and first[k].shape[0] == 5, k
      assert first[k].dtype == later[k].dtype, k
    # deterministic: the same call, on the same or a rebuilt source, gives the same arrays
    _assert_equal(source.examples(37, 5), later)
    _assert_equal(_build_small(name).examples(37, 5), later)
    # random access: a window of the stream is the same as the same rows of a longer read
    _assert_equal({k: v[3:] for k, v in _flat(source.examples(34, 8)).items()}, later)
    evaluation = _flat(source.eval_set())
    _assert_equal(source.eval_set(), evaluation)
    assert evaluation.keys() == first.keys()
    rows = {v.shape[0] for v in evaluation.values()}
    assert len(rows) == 1 and rows.pop() > 0
    for k in first:  # the model and the eval step see the training shapes
      assert evaluation[k].shape[1:] == first[k].shape[1:], k
      assert evaluation[k].dtype == first[k].dtype, k


# ----------------------------------------------------------------------------- bad input

def _refused(name, key, value, **others):
  """The one-line error ``data.build`` gives for ``data.<key>=<value>``, built without mock data:
  a TFDS source that opened its files first would fail on the missing data instead."""
  cfg = dict(name=name) | _SMALL[name] | others | {key: value}
  with pytest.raises(ValueError) as error:
    data.build(ml_collections.ConfigDict(cfg), seed=0)
  message = str(error.value)
  assert "\n" not in message and message.startswith(f"data.{key}={value!r}"), message
  assert f"set data.{key}" in message or "valid are" in message, message  # and the fix
  return message


@pytest.mark.parametrize("name,key", [
    ("stdlib_bytes", "seq_len"), ("stdlib_bytes", "eval_examples"), ("token_streams", "num_maps"),
    ("dna_motifs", "num_motifs"), ("dna_motifs", "motif_len"), ("sbm_nodes", "num_features"),
    ("graph_properties", "max_nodes"), ("linear_regression", "dim"),
    ("linear_regression", "signal_variance"), ("tfds_text", "examples_per_chunk"),
    ("tfds_text", "max_chunk_bytes"), ("tfds_images", "std"), ("tfds_images", "eval_examples"),
    ("tfds_genomics_ood", "seq_len"), ("tfds_ogbg_molpcba", "max_nodes"),
    ("tfds_vision", "min_crop_scale"), ("digits", "test_fraction"), ("mnist1d", "train_split"),
])
def test_a_zero_that_cannot_work_is_refused(name, key):
  _refused(name, key, 0)


@pytest.mark.parametrize("name,key,value", [
    ("token_streams", "seq_len", -1), ("token_streams", "zipf_exponent", -1),
    ("token_streams", "structure_seed", -3), ("dna_motifs", "n_rate", -0.1),
    ("dna_motifs", "motif_seed", -1), ("sbm_nodes", "p_out", -0.2),
    ("sbm_nodes", "feature_signal", -1.0), ("graph_properties", "min_nodes", -3),
    ("linear_regression", "noise_std", -0.5), ("linear_regression", "eval_examples", -8),
    ("tfds_vision", "crop_padding", -1), ("tfds_vision", "image_size", -32),
    ("tfds_vision", "std", (0.2, -0.2, 0.2)), ("digits", "eval_examples", -1),
    ("mnist1d", "generator_seed", -1), ("tfds_text", "seq_len", -16),
])
def test_a_negative_value_is_refused(name, key, value):
  _refused(name, key, value)


@pytest.mark.parametrize("name,key,value", [
    ("stdlib_bytes", "seq_len", "64"), ("token_streams", "vocab_size", 256.0),
    ("token_streams", "seq_len", True), ("token_streams", "zipf_exponent", "1.0"),
    ("dna_motifs", "mutation_rate", None), ("sbm_nodes", "max_nodes", 8.5),
    ("linear_regression", "rotate", "yes"), ("mnist1d", "channel_axis", 1),
    ("tfds_ogbg_molpcba", "tasks", "0,5"), ("tfds_ogbg_molpcba", "tasks", (0, 1.5)),
    ("tfds_images", "mean", "0.5"), ("tfds_vision", "augment", 3),
    ("tfds_vision", "mean", "imagenet"), ("tfds_images", "data_dir", None),
    ("tfds_images", "dataset", 10), ("tfds_text", "text_feature", 0),
    ("tfds_genomics_ood", "eval_split", ["validation"]),
])
def test_a_value_of_the_wrong_type_is_refused(name, key, value):
  _refused(name, key, value)


@pytest.mark.parametrize("name,key,value,others", [
    ("token_streams", "vocab_size", 1, {}),
    ("token_streams", "restart_prob", 1.5, {}),
    ("token_streams", "zipf_exponent", 400.0, {}),  # the rarest token's probability underflows
    ("token_streams", "zipf_exponent", float("nan"), {}),
    ("dna_motifs", "mutation_rate", 1.1, {}),
    ("dna_motifs", "task", "lm", {}),
    ("dna_motifs", "motif_len", 40, {}),  # longer than seq_len=24
    ("sbm_nodes", "p_in", 1.5, {}),
    ("sbm_nodes", "num_communities", 1, {}),
    ("sbm_nodes", "min_nodes", 12, {}),  # above max_nodes=8
    ("graph_properties", "min_edge_prob", 0.6, dict(max_edge_prob=0.5)),
    ("graph_properties", "target", "cycles", {}),
    ("stdlib_bytes", "validation_every", 1, {}),
    ("digits", "test_fraction", 1.0, {}),
    ("mnist1d", "num_samples", 19, {}),
    ("mnist1d", "train_split", 0.01, dict(num_samples=40)),  # no signal left for training
    ("tfds_ogbg_molpcba", "tasks", (0, 128), {}),
    ("tfds_vision", "center_crop_fraction", 1.5, {}),
    ("tfds_vision", "augment", "mixup", {}),
    ("tfds_vision", "mean", (), {}),
    ("tfds_genomics_ood", "task", "regression", {}),
    # the check comes before the allocation: a million-square rotation is never drawn
    ("linear_regression", "noise_std", float("inf"), dict(dim=10**6, rotate=True)),
])
def test_a_value_out_of_range_is_refused(name, key, value, others):
  _refused(name, key, value, **others)


def _mnist_metadata(folder):
  """A TFDS data_dir holding only mnist's metadata, with the splits train and test: under
  ``MockPolicy.USE_FILES`` TFDS reads split names from it as from a prepared data set."""
  version = folder / "mnist" / "3.0.1"
  version.mkdir(parents=True)
  template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
  splits = [{"name": s, "shardLengths": ["8"], "numBytes": "100", "filepathTemplate": template}
            for s in ("train", "test")]
  (version / "dataset_info.json").write_text(json.dumps(
      {"name": "mnist", "version": "3.0.1", "fileFormat": "array_record", "splits": splits}))


@pytest.mark.parametrize("case", ["no_folder", "a_file", "not_prepared", "unknown_dataset",
                                  "unknown_split", "missing_key"])
def test_a_missing_folder_file_split_or_key_is_named(case, tmp_path):
  (tmp_path / "file").write_text("not a folder")
  if case == "no_folder":
    message = _refused("tfds_images", "data_dir", str(tmp_path / "nowhere"))
    assert "cannot be read" in message
  elif case == "a_file":
    _refused("tfds_images", "data_dir", str(tmp_path / "file"))
  elif case == "not_prepared":  # a readable folder without the data set in it
    with pytest.raises(ValueError, match=r"^data.data_dir='.*': TFDS dataset 'mnist' .*not "
                                         r"prepared.* run `tfds build mnist"):
      data.build(ml_collections.ConfigDict(dict(name="tfds_images", dataset="mnist",
                                                data_dir=str(tmp_path))), seed=0)
  elif case == "unknown_dataset":
    _refused("tfds_images", "dataset", "mnits")
  elif case == "unknown_split":
    _mnist_metadata(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path / "tfds")):
      message = _refused("tfds_images", "eval_split", "validation",
                         data_dir=str(tmp_path / "tfds"))
      assert "valid are ['train', 'test']" in message
      cfg = dict(name="tfds_images") | _SMALL["tfds_images"] | dict(data_dir=str(tmp_path / "tfds"))
      assert data.build(ml_collections.ConfigDict(cfg), seed=0).info["train_examples"] == 8
  else:  # a key the source needs is absent from the config
    with pytest.raises(ValueError, match=r"^data.data_dir is missing: data source 'tfds_vision' "
                                         r"needs it: add data.data_dir to the config$"):
      data.build(ml_collections.ConfigDict(dict(name="tfds_vision", dataset="cifar10")), seed=0)
    with pytest.raises(ValueError, match=r"^seed=-1 must be an integer >= 0"):
      data.build(ml_collections.ConfigDict(dict(name="digits")), seed=-1)
