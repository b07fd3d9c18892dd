"""Turning what the learner returned into float64 arrays, with a clear message when it cannot.

Every message names the value ("dW returned by linear_backward") and says what to do.
Shape and dtype are checked before any value is compared: a (64,) gradient must never pass
against a (1, 64) one through broadcasting.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import CheckFailed


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def as_float_array(value: Any, what: str, shape: tuple[int, ...] | None = None,
                   batch: int | None = None) -> np.ndarray:
    """Validate `value` as a float64 NumPy array (of `shape`, when given) and return it.

    Raises CheckFailed with a one-paragraph explanation for None, lists, torch tensors,
    non-float dtypes, float32, and wrong shapes (with a hint for the usual shape bugs).
    """
    if value is None:
        raise CheckFailed(f"{what} is None. Did your function forget to `return` it?")
    if _is_torch_tensor(value):
        raise CheckFailed(
            f"{what} is a torch.Tensor, but this exercise works in NumPy. Build it with NumPy "
            "operations (np.exp, @, .sum(axis=...)), not torch."
        )
    if isinstance(value, (list, tuple)):
        raise CheckFailed(
            f"{what} is a Python {type(value).__name__}, not a NumPy array. "
            "Use array operations, or wrap the result: np.array(...)."
        )
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.bool_)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise CheckFailed(
            f"{what} has type {type(value).__name__}; expected a NumPy float64 array"
            + (f" of shape {shape}." if shape is not None else ".")
        )
    if value.dtype == np.float32 or value.dtype == np.float16:
        raise CheckFailed(
            f"{what} has dtype {value.dtype}; the course works in float64 (NumPy's default), "
            "which the check needs to compare to 1e-6. Remove the dtype=... or .astype(...) "
            "that lowered the precision."
        )
    if value.dtype.kind in "iub":
        raise CheckFailed(
            f"{what} has integer/boolean dtype {value.dtype}; expected float64. A gradient "
            "or activation is real-valued: multiply a boolean mask by a float array, or use "
            ".astype(float)."
        )
    if value.dtype.kind != "f":
        raise CheckFailed(f"{what} has dtype {value.dtype}; expected float64.")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailed(shape_message(what, tuple(value.shape), tuple(shape), batch))
    return value.astype(np.float64, copy=False)


def as_float(value: Any, what: str) -> float:
    """Validate a scalar result (a loss, a derivative at a point) and return it as a float."""
    if isinstance(value, np.ndarray) and value.shape != ():
        raise CheckFailed(
            f"{what} is an array of shape {value.shape}; expected a single number. "
            "Reduce it (e.g. .mean() or .sum()) and return float(...)."
        )
    return float(as_float_array(value, what, shape=()))


def shape_message(what: str, got: tuple[int, ...], expected: tuple[int, ...],
                  batch: int | None = None) -> str:
    """Explain a shape mismatch, naming the likely cause where there is one."""
    head = f"{what} has shape {got}, expected {expected}."
    if len(got) == 2 and got == expected[::-1] and got != expected:
        return head + (" That is the transpose: check the order of the factors in the "
                       "matrix product (e.g. dz.T @ x, not x.T @ dz) or transpose the result.")
    if batch and got == (batch, *expected):
        return head + (" It still has the batch axis: a parameter's gradient sums the "
                       "contributions of every sample, e.g. .sum(axis=0).")
    if got == (1, *expected) or got == (*expected, 1):
        return head + (" It has an extra axis of length 1: drop keepdims=True or reshape "
                       "to the expected shape.")
    if len(got) + 1 == len(expected) and (1, *got) == expected:
        return head + " It lost the batch axis of length 1: keep it (e.g. x[None, :])."
    if int(np.prod(got)) == int(np.prod(expected)):
        return head + " It has the right number of entries, in the wrong layout."
    if batch and expected[:1] == (batch,) and got[:1] != (batch,):
        return head + f" The first axis should be the batch (N = {batch})."
    return head
