"""Optimizer state memory: every registered method against a count taken from its paper.

Each method is built by ``optimizers.build`` with its defaults, its state measured with
``optimizers.state_bytes`` (``jax.eval_shape`` of ``init``: nothing is allocated), and compared
byte for byte with an independent count: the buffers the method's update rule keeps (Adam's m and
v, Shampoo's L and R, ...) as functions of the parameter shapes, plus the fixed scalars (step
counts, logged step sizes, PRNG keys) listed one by one with their size. No tolerance: a method
that keeps one float too many fails.

A name registered without an entry in ``DEFAULTS`` fails, asking for its count.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
import pytest

import optimizers

F32 = I32 = 4  # bytes of a float32 and an int32

# A small tree with every role the optimizers tell apart (optimizers.ROLES) and every rank they
# treat differently (matrix, conv tensor, vector, scalar), in Flax layout (d_in, d_out). The
# "mlp" kernel has both sides >= 128 so that Adafactor factors it (optax factors only when the
# two largest axes reach min_dim_size_to_factor=128) and APOLLO's default rank 128 is below its
# smaller side; the other matrices are below both thresholds. It is not square, so a count that
# takes a kernel's d_in for its d_out (NorMuon's per-neuron v) fails.
LEAVES = {  # name: (shape, role)
    "embedding": ((50, 16), "embedding"),  # (vocab, width)
    "attn": ((16, 24), "hidden"),  # wider than tall
    "proj": ((24, 16), "hidden"),  # taller than wide
    "mlp": ((144, 192), "hidden"),
    "head": ((16, 50), "head"),  # (width, vocab)
    "bias": ((24,), "bias"),
    "norm_scale": ((16,), "norm"),
    "conv": ((3, 3, 4, 8), "conv"),  # (*window, in, out)
    "norm_gain": ((), "norm"),  # a scalar parameter
}
PARAMS = {k: jax.ShapeDtypeStruct(shape, jnp.float32) for k, (shape, _) in LEAVES.items()}
ROLES = {k: role for k, (_, role) in LEAVES.items()}
SHAPES = [shape for shape, _ in LEAVES.values()]
MATRICES = [s for s in SHAPES if len(s) == 2]
NOT_MATRICES = [s for s in SHAPES if len(s) != 2]


def size(shape) -> int:
  return math.prod(shape)


def entries(shapes) -> int:
  return sum(size(s) for s in shapes)


N = entries(SHAPES)  # parameter entries


class Count(NamedTuple):
  floats: int  # float32 entries that the update rule keeps (grow with the parameters)
  scalars: dict[str, int]  # bytes of each fixed piece of bookkeeping, by name
  source: str  # where the count comes from


def count(name: str) -> dict[str, int]:
  """An int32 step count, under ``name``."""
  return {name: I32}


# ---- counts of the methods whose state depends on shapes beyond their size ----

def factored_axes(shape, max_precond_dim: int) -> list[int]:
  """Axes of a tensor (two or more axes) that Shampoo and SOAP give a full-matrix factor:
  those of size <= max_precond_dim. Vectors and scalars get none (both papers' default)."""
  return [n for n in shape if n <= max_precond_dim] if len(shape) >= 2 else []


def shampoo_floats(*, max_precond_dim: int = 10000, roots_kept: bool) -> int:
  """Gupta et al. 2018, Alg. 1-2: a statistic H_i (n_i x n_i) per axis of each tensor, L and R
  for a matrix; a leaf with no factor (vectors: documented choice) keeps diagonal AdaGrad's sum
  of g^2, one per entry. ``roots_kept``: also the inverse roots H_i^(-1/2k), which a method that
  refreshes them every T > 1 steps must keep in between (Anil et al. 2020)."""
  total = 0
  for shape in SHAPES:
    factors = sum(n * n for n in factored_axes(shape, max_precond_dim))
    total += factors * (2 if roots_kept else 1) if factors else size(shape)
  return total


def soap_floats(*, max_precond_dim: int = 10000) -> int:
  """Vyas et al. 2024: Adam's M and V (one each per entry, in any basis), and per
  factored axis the statistic (L or R) and its eigenbasis (Q_L or Q_R)."""
  return 2 * N + sum(2 * n * n for s in SHAPES for n in factored_axes(s, max_precond_dim))


def adafactor_floats(*, momentum: bool = False) -> int:
  """Shazeer & Stern 2018, Alg. 4: a matrix whose two largest axes reach 128 (optax's
  min_dim_size_to_factor) keeps row and column sums of g^2 (d_other/d_max + d_other/d_second);
  other leaves a full second moment. beta_1 > 0 adds a first moment."""
  total = 0
  for shape in SHAPES:
    big = sorted(shape)[-2:]
    if len(shape) >= 2 and big[0] >= 128:
      total += size(shape) // big[1] + size(shape) // big[0]
    else:
      total += size(shape)
  return total + (N if momentum else 0)


def adafactor_placeholders() -> int:
  """optax keeps one slot for each of v_row, v_col and v in every leaf; the slots a leaf does
  not use hold a (1,) float32: one for a factored leaf (v), two for the others."""
  factored = sum(1 for s in SHAPES if len(s) >= 2 and sorted(s)[-2] >= 128)
  return F32 * (factored + 2 * (len(SHAPES) - factored))


def apollo_floats(*, rank: int) -> int:
  """Zhu et al. 2025, Alg. 1: for an (m, n) matrix, M and V of the projected gradient, r x
  max(m, n) each with r = min(rank, m, n) (the smaller side is projected; P is redrawn from a
  seed, not stored), and the norm-growth limiter's last norm; Adam's m, v on other leaves."""
  matrices = sum(2 * min(rank, *s) * max(s) + 1 for s in MATRICES)
  return matrices + 2 * entries(NOT_MATRICES)


# ---- every registered method, built with its defaults ----
# "Matrix methods" (Muon, NorMuon, APOLLO, SWAN) take every 2-D leaf by default (embedding and
# head included; ``by_role`` routes those elsewhere) and Adam's m, v for the rest.

DEFAULTS: dict[str, Count] = {
    "sgd": Count(0, {}, "SGD without momentum (optax.sgd's default momentum=None)"),
    "sign_sgd": Count(0, {}, "signSGD (Bernstein et al. 2018): stateless"),
    "signum": Count(N, count("count"), "Signum (Bernstein et al. 2018): momentum"),
    "lion": Count(N, count("count"), "Lion (Chen et al. 2023, Alg. 2): momentum m only"),
    "lars": Count(N, {}, "LARS (You et al. 2017, Alg. 1): momentum (optax default 0.9)"),
    "rmsprop": Count(N, {}, "RMSprop (Tieleman & Hinton 2012): v"),
    "adam": Count(2 * N, count("count"), "Adam (Kingma & Ba 2015, Alg. 1): m, v"),
    "adamw": Count(2 * N, count("count"), "AdamW (Loshchilov & Hutter 2019): m, v"),
    "nadamw": Count(2 * N, count("count"), "NAdam(W) (Dozat 2016): m, v"),
    "adamp": Count(2 * N, count("count"), "AdamP (Heo et al. 2021, Alg. 2): m, v"),
    "exadam": Count(2 * N, count("count"), "EXAdam (Adly 2024): m, v"),
    "adopt": Count(2 * N, count("count"), "ADOPT (Taniguchi et al. 2024): m, v"),
    "lamb": Count(2 * N, count("count"), "LAMB (You et al. 2020, Alg. 2): m, v"),
    "adabelief": Count(2 * N, count("count"), "AdaBelief (Zhuang et al. 2020, Alg. 2): m, s"),
    "diffgrad": Count(3 * N, count("count"), "diffGrad (Dubey et al. 2019): m, v, g_{t-1}"),
    "adan": Count(4 * N, count("t"),
                  "Adan (Xie et al. 2022, Alg. 1): m, v, n and the previous gradient"),
    "ademamix": Count(3 * N, {**count("count"), **count("count_m2")},
                      "AdEMAMix (Pagliardini et al. 2024, Alg. 1): m1, m2, nu"),
    "simplified_ademamix": Count(2 * N, count("t"),
                                 "Simplified AdEMAMix (Morwani et al. 2025): m, n"),
    "sophia": Count(2 * N, {**count("count"), "Hutchinson PRNG key (2 x uint32)": 8},
                    "Sophia (Liu et al. 2023, Alg. 3): m, h"),
    "adafactor": Count(adafactor_floats(), {**count("count"),
                                            "unused (1,) slots": adafactor_placeholders()},
                       "Adafactor (Shazeer & Stern 2018, Alg. 4), beta_1 = 0"),
    "adalayer": Count(N + len(SHAPES), count("count"),
                      "Adalayer (Zhao et al. 2024): m per entry, one v per leaf (block)"),
    "adagrad_norm": Count(0, {**count("count"), "b_j^2 (float32)": F32},
                          "AdaGrad-Norm (Ward et al. 2019, Alg. 1): one scalar b_j^2"),
    "ngn": Count(0, {**count("count"), "gamma, logged (float32)": F32},
                 "NGN (Orvieto & Xiao 2024): stateless"),
    "ngn_m": Count(N, {**count("count"), "gamma, logged (float32)": F32},
                   "NGN-M (Islamov et al. 2025, Alg. 1): heavy-ball buffer"),
    "ngn_md": Count(2 * N, {**count("count"), "gamma, logged (float32)": F32},
                    "NGN-MD (Islamov et al. 2025, Alg. 2): momentum and RMSprop v"),
    "scion": Count(N, count("count"), "Scion (Pethick et al. 2025, Alg. 2): averaged gradient"),
    "uscion": Count(N, count("count"), "uScion (Pethick et al. 2025, Alg. 1): averaged gradient"),
    "muon": Count(entries(MATRICES) + 2 * entries(NOT_MATRICES),
                  {**count("muon count"), **count("adam count"),
                   "Newton-Schulz (a, b, c), float32": 3 * F32},
                  "Muon (Jordan et al. 2024): momentum on matrices; Adam's m, v elsewhere"),
    "normuon": Count(sum(size(s) + s[1] for s in MATRICES) + 2 * entries(NOT_MATRICES),
                     {**count("normuon count"), **count("adam count")},
                     "NorMuon (Li et al. 2025, Alg. 1): M and one v per neuron (d_out)"),
    "apollo": Count(apollo_floats(rank=128), {**count("apollo count"), **count("adam count")},
                    "APOLLO (Zhu et al. 2025, Alg. 1), rank 128"),
    "apollo_mini": Count(apollo_floats(rank=1), {**count("apollo count"), **count("adam count")},
                         "APOLLO-Mini (Zhu et al. 2025): rank 1"),
    "swan": Count(2 * entries(NOT_MATRICES), count("adam count"),
                  "SWAN (Ma et al. 2024): stateless on matrices"),
    "shampoo": Count(shampoo_floats(roots_kept=False), count("count"),
                     "Shampoo (Gupta et al. 2018, Alg. 1-2): L, R (H_i per axis)"),
    "soap": Count(soap_floats(), {**count("count"), **count("weight-decay step count")},
                  "SOAP (Vyas et al. 2024): M, V, L, R, Q_L, Q_R"),
    "schedule_free_sgd": Count(N, {**count("step_count"), "b1, weight_sum, max_lr": 3 * F32},
                               "Schedule-Free SGD (Defazio et al. 2024): z (y is the params)"),
    "schedule_free_adamw": Count(2 * N, {**count("step_count"), **count("base count"),
                                         "b1, weight_sum, max_lr": 3 * F32},
                                 "Schedule-Free AdamW (Defazio et al. 2024): z, v"),
    "prodigy": Count(4 * N, {**count("count"), "d, r (float32)": 2 * F32},
                     "Prodigy (Mishchenko & Defazio 2023), Adam form: m, v, s, x_0"),
    "dog": Count(N, {"r_bar, G (float32)": 2 * F32, "first-step flag (bool)": 1},
                 "DoG (Ivgi et al. 2023, Alg. 1): x_0"),
    "momo": Count(N, {**count("count"), "f_bar, gamma, lower bound (float32)": 3 * F32},
                  "MoMo (Schaipp et al. 2023, Alg. 1): d"),
    "mechanize": Count(3 * N, {**count("count"), **count("adam count"),
                               "s, r, m, v per beta (6 betas, float32)": 4 * 6 * F32},
                       "Mechanic (Cutkosky et al. 2023, Alg. 1) on Adam: x_ref and Adam's m, v"),
}


class Excess(NamedTuple):
  bytes: int  # what the method keeps beyond its paper's count
  reason: str


# Methods that keep more than their paper's count: the exact excess and why. The test checks the
# excess to the byte, then reports the method as an expected failure until it is fixed.
EXCESS: dict = {}


# ---- non-default settings that change the state's size ----

VARIANTS = {  # id: (name, kwargs, count)
    "sgd-momentum": ("sgd", dict(momentum=0.9),
                     Count(N, {}, "heavy-ball SGD (Polyak 1964): one buffer")),
    "adam-mu_bf16": ("adam", dict(mu_dtype="bfloat16"),
                     Count(0, {"m in bfloat16": 2 * N, "v in float32": 4 * N, **count("count")},
                           "Adam with a bfloat16 first moment")),
    "adafactor-momentum": ("adafactor", dict(momentum=0.9),
                           Count(adafactor_floats(momentum=True),
                                 {**count("count"), "unused (1,) slots": adafactor_placeholders(),
                                  **count("momentum count")},
                                 "Adafactor with beta_1 > 0: first moment added")),
    "apollo-rank4": ("apollo", dict(rank=4),
                     Count(apollo_floats(rank=4), {**count("apollo count"),
                                                   **count("adam count")}, "APOLLO, rank 4")),
    "shampoo-amortized": ("shampoo", dict(precondition_frequency=10, max_precond_dim=32),
                          Count(shampoo_floats(max_precond_dim=32, roots_kept=True),
                                count("count"),
                                "Shampoo refreshing its roots every 10 steps: L, R and their "
                                "roots; axes longer than 32 unfactored")),
    "soap-max_dim32": ("soap", dict(max_precond_dim=32),
                       Count(soap_floats(max_precond_dim=32),
                             {**count("count"), **count("decay step count")},
                             "SOAP, axes longer than 32 unfactored")),
}


def build_overhead(float_kwargs: int = 0) -> int:
  """What ``optimizers.build`` adds to every method: ``optax.inject_hyperparams``'s step count,
  its injected hyperparameters (peak_learning_rate, learning_rate, weight_decay and each float
  method argument, float32) and the schedule's step count."""
  return I32 + F32 * (3 + float_kwargs) + I32


def _build(name: str, kwargs: dict | None = None) -> optax.GradientTransformation:
  cfg = ml_collections.ConfigDict(dict(
      name=name, learning_rate=1e-3, kwargs=kwargs or {}, weight_decay=0.0,
      decay_roles=("embedding", "hidden", "head", "conv"), grad_clip_norm=0.0,
      schedule=dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2)))
  return optimizers.build(cfg, total_steps=100, param_labels=lambda params: ROLES)


def _expected(c: Count, kwargs: dict | None = None) -> int:
  floats = sum(isinstance(v, float) for v in (kwargs or {}).values())
  return F32 * c.floats + sum(c.scalars.values()) + build_overhead(floats)


def _layout(tx) -> str:
  """The measured state, leaf by leaf, for the failure message."""
  leaves = jax.tree_util.tree_flatten_with_path(jax.eval_shape(tx.init, PARAMS))[0]
  return "\n".join(f"  {jax.tree_util.keystr(path)} {leaf.shape} {leaf.dtype}"
                   for path, leaf in leaves)


def _compare(name: str, tx, c: Count, expected: int, note: str = "") -> None:
  measured = optimizers.state_bytes(tx, PARAMS)
  assert measured == expected, (
      f"{name}: state holds {measured} bytes, its count ({c.source}) gives {expected} "
      f"({c.floats} float32 entries + {c.scalars} + what build adds){note}; a difference "
      f"of {measured - expected:+d} bytes. State:\n{_layout(tx)}")


@pytest.mark.parametrize("name", optimizers.available())
def test_state_matches_the_papers_count(name):
  if name not in DEFAULTS:
    pytest.fail(f"optimizer {name!r} has no analytic state count: add its entry to DEFAULTS in "
                f"tests/test_optimizer_memory.py, counted from its paper's update rule")
  c = DEFAULTS[name]
  excess = EXCESS.get(name)
  note = (f" + {excess.bytes} bytes of known excess (EXCESS[{name!r}]: delete it if the method "
          f"no longer keeps them)") if excess else ""
  _compare(name, _build(name), c, _expected(c) + (excess.bytes if excess else 0), note)
  if excess:  # the exact excess was measured: the method still keeps it
    pytest.xfail(f"{name} keeps {excess.bytes} bytes beyond its paper: {excess.reason}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_state_follows_the_settings_that_change_its_size(variant):
  name, kwargs, c = VARIANTS[variant]
  _compare(variant, _build(name, kwargs), c, _expected(c, kwargs))


def test_every_count_names_a_registered_method():
  stale = sorted((set(DEFAULTS) | set(EXCESS)) - set(optimizers.available()))
  assert not stale, f"counts for optimizers that are not registered: {stale}"


def test_state_bytes_counts_array_leaves_by_their_itemsize_without_allocating():
  # 2^34 float32 entries (64 GiB): only an abstract evaluation can measure this.
  params = {"w": jax.ShapeDtypeStruct((2**17, 2**17), jnp.float32),
            "b": jax.ShapeDtypeStruct((3,), jnp.bfloat16)}
  tx = optax.chain(optax.scale_by_adam(), optax.clip(1.0), optax.scale_by_learning_rate(0.1))
  assert optimizers.state_bytes(tx, params) == 2 * (2**34 * 4 + 3 * 2) + I32
  assert optimizers.state_bytes(optax.sgd(0.1), params) == 0  # only empty states


def test_bytes_per_parameter_divides_by_the_parameter_entries():
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  assert optimizers.bytes_per_parameter(optax.sgd(0.1, momentum=0.9), params) == 4.0
  assert optimizers.bytes_per_parameter(optax.adam(0.1), params) == 8.0 + 4 / 16
  with pytest.raises(ValueError, match="at least one parameter"):
    optimizers.bytes_per_parameter(optax.adam(0.1), {})


def test_the_tree_reaches_the_factored_and_low_rank_paths():
  """Adafactor factors the mlp kernel and APOLLO's default rank truncates it: otherwise their
  counts above would equal the unfactored, full-rank ones and test nothing of either."""
  assert adafactor_floats() < N
  assert apollo_floats(rank=128) < 2 * N
