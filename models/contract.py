"""What every model promises (``Model``) and the field checks its ``check()`` is written with.

A mistake in a model's fields must stop the run before anything is traced or compiled, with a
one-line message that names the field as the config spells it (``model.width``) and says what
would be accepted. The helpers below are the only place those messages are worded, so that
every model words them alike.
"""

from typing import Any, Protocol, runtime_checkable

from models.layers import DTYPES
from plain_numbers import is_int, is_number


@runtime_checkable
class Model(Protocol):
  """The contract of every model in ``models.available()``.

  A model is a ``flax.linen.Module`` whose fields are its hyperparameters (``models.build``
  passes the config's ``model`` section as keyword arguments) and which also has:

  * ``check()``: raises ``ValueError`` with a one-line message naming the bad ``model.<field>``
    and the accepted values, for any field that the module would otherwise fail on (or,
    worse, silently misread) once traced. It needs no input and no parameters: ``build`` calls
    it before anything is compiled. Checks that need the input's shape (a sequence longer
    than ``max_len``, a patch size that does not divide the image) run at ``init``, still
    before the train step is compiled.
  * ``flops_per_example(example)``: the training FLOPs (forward and backward, counted as
    6 x the multiply-adds of the matmuls and convolutions) of one example, where ``example`` is
    one example of the inputs without its batch axis.
  * the fields every model has besides its hyperparameters: ``dtype`` (the compute dtype of
    activations and matmuls, a name from ``models.layers.DTYPES``), ``param_dtype`` (the
    dtype parameters are stored in) and ``remat`` (rematerialise each repeated block in the
    backward pass instead of keeping its activations; a model without such blocks refuses
    ``True``). ``check_precision_and_remat`` checks the three.
  * parameter names that ``models.param_roles`` reads: input tables are named ``*embedding*``,
    the output layer is the module ``head``, every normalisation sits in a module whose name
    contains ``norm``, additive offsets are ``bias`` or ``*_bias``; other kernels with three or
    more axes are ``conv``, the remaining matrices ``hidden``.

  ``__call__(inputs, *, train=False)`` maps a batch of inputs to outputs (logits); ``train``
  switches BatchNorm to batch statistics where a model has it.
  """

  def __call__(self, inputs, *, train: bool = False) -> Any: ...

  def init(self, rngs, *args, **kwargs) -> Any: ...

  def apply(self, variables, *args, **kwargs) -> Any: ...

  def check(self) -> None: ...

  def flops_per_example(self, example) -> float: ...


def check_choice(field: str, value, valid) -> None:
  """``value`` must be one of the names in ``valid``."""
  if not isinstance(value, str) or value not in valid:
    raise ValueError(f"model.{field}={value!r}: valid are {sorted(valid)}")


def check_int(field: str, value, *, minimum: int = 1, reason: str = "") -> None:
  """``value`` must be an integer (not a float, string or bool) and at least ``minimum``."""
  if not is_int(value):
    raise ValueError(f"model.{field}={value!r} must be an integer >= {minimum}, "
                     f"not {type(value).__name__}")
  if value < minimum:
    raise ValueError(f"model.{field}={value!r} must be >= {minimum}{reason}")


def check_ints(field: str, values, *, minimum: int = 1, allow_empty: bool = False) -> None:
  """``values`` must be a tuple or list of integers, each at least ``minimum``."""
  what = f"a {'' if allow_empty else 'non-empty '}sequence of integers >= {minimum}"
  if not isinstance(values, (tuple, list)) or not (values or allow_empty):
    raise ValueError(f"model.{field}={values!r} must be {what}")
  for value in values:
    if not is_int(value) or value < minimum:
      raise ValueError(f"model.{field}={values!r} must be {what}; {value!r} is not")


def check_bool(field: str, value) -> None:
  """``value`` must be ``True`` or ``False`` (a string "false" would read as true)."""
  if not isinstance(value, bool):
    raise ValueError(f"model.{field}={value!r} must be True or False")


def check_range(field: str, value, low: float, high: float) -> None:
  """``value`` must be a real number in the half-open interval ``[low, high)``."""
  if not is_number(value) or not low <= value < high:
    raise ValueError(f"model.{field}={value!r} must be a number in [{low}, {high})")


def check_divisible(field: str, value: int, by_field: str, by: int) -> None:
  """``value`` must be a multiple of ``by`` (both already checked to be positive integers)."""
  if value % by:
    raise ValueError(f"model.{field}={value} is not divisible by model.{by_field}={by}: "
                     f"make {field} a multiple of {by_field}")


def check_precision_and_remat(model, *, has_blocks: bool) -> None:
  """The fields every model has: ``dtype`` and ``param_dtype`` name one of ``DTYPES``;
  ``remat`` is a bool, and ``True`` only where the model has blocks to rematerialise."""
  check_choice("dtype", model.dtype, DTYPES)
  check_choice("param_dtype", model.param_dtype, DTYPES)
  check_bool("remat", model.remat)
  if model.remat and not has_blocks:
    raise ValueError(f"model.remat=True: {type(model).__name__} has no repeated blocks to "
                     f"rematerialise; set model.remat=False")
