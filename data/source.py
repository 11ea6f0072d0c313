"""What every data source promises (``DataSource``), and the checks of its constructor arguments.

A bad argument fails in the constructor, before any data is read or drawn (but for the checks
that need the data's size, such as a window longer than the text), with one line that names
the config key as ``data.<key>=<value>`` and what to set instead: a run must never compile a
model for data that cannot be made.
"""

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from plain_numbers import is_int, is_number


@runtime_checkable
class DataSource(Protocol):
  """The contract between ``data`` and ``training``: a deterministic, random-access stream.

  * ``info``: what a run's summary records about the data (name, sizes, the generator's
    parameters): JSON-serialisable, enough to tell two data sets apart.
  * ``tokens_per_example``: tokens a training example contributes to ``tokens_seen`` (0 where
    the data are not sequences of tokens).
  * ``examples(start, count)``: rows ``start .. start + count - 1`` of an infinite training
    stream, a (possibly nested) dict of numpy arrays with leading dimension ``count`` and the
    same shapes and dtypes at every position; the same call always gives the same arrays, and
    any slice of the stream can be produced on its own, so a stream position is one integer.
  * ``eval_set()``: the fixed evaluation set, the same dict structure with ``targets``.
  """

  @property
  def info(self) -> dict[str, Any]: ...

  @property
  def tokens_per_example(self) -> int: ...

  def examples(self, start: int, count: int) -> dict[str, Any]: ...

  def eval_set(self) -> dict[str, Any]: ...


def stack(items):
  """Stacks a list of (possibly nested) example dicts into one batch."""
  first = items[0]
  if isinstance(first, dict):
    return {k: stack([it[k] for it in items]) for k in first}
  return np.stack(items)


def _fail(key: str, value, problem: str, fix: str):
  raise ValueError(f"data.{key}={value!r} {problem}: {fix}")


def _a(value) -> str:
  """``a str``, ``an int``: the type of ``value`` as the error sentence names it."""
  name = type(value).__name__
  return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
  show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # 0.0 reads as 0
  parts = []
  if low is not None:
    parts.append(f"{'>' if low_open else '>='} {show(low)}")
  if high is not None:
    parts.append(f"{'<' if high_open else '<='} {show(high)}")
  return " and ".join(parts)


def check_int(key: str, value, *, low: int | None = None, high: int | None = None,
              hint: str = "") -> None:
  """``value`` is an integer (not a bool) within ``[low, high]``."""
  wanted = " ".join(filter(None, ("an integer", _bounds(low, high))))
  fix = f"set data.{key} to {wanted}{hint}"
  if not is_int(value):
    _fail(key, value, f"is {_a(value)}, not an integer", fix)
  if (low is not None and value < low) or (high is not None and value > high):
    _fail(key, value, f"must be {_bounds(low, high)}", fix)


def check_number(key: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, hint: str = "") -> None:
  """``value`` is a finite real number within the given (closed unless ``*_open``) bounds."""
  bounds = _bounds(low, high, low_open, high_open)
  fix = f"set data.{key} to a number{' ' + bounds if bounds else ''}{hint}"
  if not is_number(value):
    _fail(key, value, f"is {_a(value)}, not a number", fix)
  if not math.isfinite(value):
    _fail(key, value, "must be finite", fix)
  if ((low is not None and (value <= low if low_open else value < low))
      or (high is not None and (value >= high if high_open else value > high))):
    _fail(key, value, f"must be {bounds}", fix)


def check_bool(key: str, value) -> None:
  if not isinstance(value, (bool, np.bool_)):
    _fail(key, value, f"is {_a(value)}, not a bool",
          f"set data.{key} to True or False")


def check_choice(key: str, value, valid) -> None:
  if not isinstance(value, str) or value not in valid:
    raise ValueError(f"data.{key}={value!r}: valid are {list(valid)}")


def check_str(key: str, value, *, nonempty: bool = False, what: str = "a string") -> None:
  """``value`` is a string (not empty if ``nonempty``); ``what`` describes a good one."""
  if not isinstance(value, str):
    _fail(key, value, f"is {_a(value)}, not a string", f"set data.{key} to {what}")
  if nonempty and not value:
    _fail(key, value, "is empty", f"set data.{key} to {what}")


def check_ints(key: str, value, *, low: int, high: int) -> None:
  """``value`` is a list or tuple of integers within ``[low, high]``."""
  fix = f"set data.{key} to a list of integers in {low}..{high}"
  if not isinstance(value, (list, tuple)):
    _fail(key, value, f"is {_a(value)}, not a list", fix)
  bad = [v for v in value
         if not is_int(v) or not low <= v <= high]
  if bad:
    _fail(key, tuple(value), f"has {bad}, not integers in {low}..{high}", fix)


def check_eval_examples(value, *, low: int = 1) -> None:
  check_int("eval_examples", value, low=low, hint=" (examples in the evaluation set)")
