"""Calling the learner's code: on copies, quietly, and with every failure explained.

A learner's function may be missing, unimplemented, raise, warn, print to stderr or modify
its inputs in place. Each of these becomes a short CheckFailed message (or is captured), never
a traceback from inside `checks` and never output on stderr.
"""

from __future__ import annotations

import contextlib
import copy
import linecache
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .errors import CheckFailed

_CHECKS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Silence warnings and stderr for the duration; yields the list of warning texts seen.

    nbgrader counts any stderr output of a test cell as a failure, so nothing a check does,
    nor anything the learner's code does inside a check, may reach stderr. What the learner's
    code printed to stderr is sent to stdout instead, so it stays visible.
    """
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
        warnings.simplefilter("always")
        with contextlib.redirect_stderr(sys.stdout):
            try:
                yield seen
            finally:
                for w in caught:
                    text = f"{w.category.__name__}: {w.message}"
                    if text not in seen:
                        seen.append(text)


def require_callable(fn: Any, name: str) -> None:
    """Fail clearly when the learner passed something that is not a function."""
    if fn is None:
        raise CheckFailed(f"`{name}` is None: pass your function itself, e.g. check(..., {name}).")
    if not callable(fn):
        raise CheckFailed(
            f"`{name}` should be your function, but got a {type(fn).__name__} "
            f"({_short_repr(fn)}). Pass the function without calling it: `{name}`, not `{name}(...)`."
        )


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _learner_frame(tb: traceback.StackSummary) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is not inside the checks package."""
    for frame in reversed(tb):
        if not os.path.abspath(frame.filename).startswith(_CHECKS_DIR):
            return frame
    return None


def call(fn: Callable[..., Any], *args: Any, name: str, **kwargs: Any) -> Any:
    """Call the learner's `fn(*args, **kwargs)`, turning any exception into CheckFailed.

    NotImplementedError becomes "not implemented yet"; any other exception is shown with
    its type, message and the learner's line that raised it.
    """
    require_callable(fn, name)
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        failure = CheckFailed(
            f"{name}: not implemented yet. Replace `raise NotImplementedError()` with your "
            "code, run that cell, then run this check again."
        )
    except CheckFailed:
        raise
    except RecursionError:
        failure = CheckFailed(
            f"{name} raised RecursionError (maximum recursion depth exceeded). A recursive "
            "walk over a deep structure overflows Python's stack: use a loop with an "
            "explicit stack or list instead."
        )
    except Exception as exc:  # the learner's bug, reported rather than re-raised
        frame = _learner_frame(traceback.extract_tb(exc.__traceback__))
        where = ""
        if frame is not None:
            line = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
            where = f"\n  at line {frame.lineno} of your code: {line}" if line else ""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        failure = CheckFailed(
            f"{name} raised {type(exc).__name__}"
            + (f": {message}" if message else "")
            + where
        )
    raise failure


def snapshot(values: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copies of the arrays handed to the learner, to detect in-place modification."""
    return {k: copy.deepcopy(v) for k, v in values.items()}


def assert_unmodified(before: Mapping[str, Any], after: Mapping[str, Any], name: str) -> None:
    """Fail when the learner's code changed an input array in place."""
    for key, old in before.items():
        new = after[key]
        if isinstance(old, np.ndarray):
            same = isinstance(new, np.ndarray) and new.shape == old.shape and np.array_equal(
                new, old, equal_nan=True)
            if not same:
                raise CheckFailed(
                    f"{name} modified its input `{key}` in place. Later steps (and the caller) "
                    f"still need the original values: work on a copy, e.g. `{key}.copy()`, or "
                    "build a new array instead of assigning into this one (x[...] = ..., +=, "
                    "out=...)."
                )


def to_copies(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fresh copies of the inputs for one learner call (the originals stay untouched)."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in values.items()}


def unpack(result: Any, names: tuple[str, ...], name: str) -> tuple[Any, ...]:
    """Check that `result` is a tuple of len(names) values and return it."""
    if len(names) == 1:
        return (result,)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = (f"{len(result)} values" if isinstance(result, (tuple, list))
               else f"a single {type(result).__name__}")
        raise CheckFailed(
            f"{name} should return {len(names)} values ({', '.join(names)}), but returned {got}."
            f" End it with: return {', '.join(names)}"
        )
    return tuple(result)

