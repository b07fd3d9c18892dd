"""The small public API for any gradient function: no new comparison code per exercise.

    from checks import gradcheck
    gradcheck(my_softplus_grad, torch.nn.functional.softplus, x)                 # elementwise
    gradcheck(my_linear_grads, lambda x, W: x @ W.T, {"x": x, "W": W})            # with dout
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import references
from .arrays import as_float_array
from .compare import ATOL, RTOL, compare
from .core import Case, check_gradients, public_check
from .errors import CheckFailed
from .learner import call, unpack
from .report import CheckPassed, failure, worst_entries


def _as_inputs(inputs: Any) -> dict[str, np.ndarray]:
    """The inputs as named float64 arrays (float32 or integer inputs are cast up)."""
    if isinstance(inputs, Mapping):
        items = dict(inputs)
    elif isinstance(inputs, (list, tuple)):
        items = {f"x{i}": v for i, v in enumerate(inputs)}
    else:
        items = {"x": inputs}
    arrays = {}
    for k, v in items.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        try:
            arrays[k] = np.array(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise CheckFailed(f"input {k} cannot be read as an array of numbers: {v!r:.60}") from None
    return arrays


@public_check
def gradcheck(grad_fn: Callable[..., Any], torch_fn: Callable[..., Any],
              inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
              name: str | None = None, device: str | None = None, seed: int = 0,
              rtol: float = RTOL, atol: float = ATOL) -> CheckPassed:
    """Check a hand-written gradient function against torch autograd and finite differences.

    torch_fn(*tensors) is the forward maths in torch. If it returns a scalar, grad_fn(*arrays)
    must return its gradient with respect to every input (one array, or a tuple in input
    order). Otherwise grad_fn(*arrays, dout) must return the gradients of sum(out * dout) for
    a random upstream gradient dout of the output's shape. `inputs` is one array, a list of
    arrays, or a {name: array} dict (then both functions take keyword arguments).
    """
    arrays = _as_inputs(inputs)
    keys = list(arrays)
    label = name or getattr(grad_fn, "__name__", "grad_fn")

    def reference(**tensors: Any) -> Any:
        return torch_fn(*(tensors[k] for k in keys))

    out = references.evaluate(reference, arrays, {})
    scalar = np.ndim(out) == 0

    def learner(given: dict[str, np.ndarray], _extra: dict, dout: np.ndarray | None) -> dict:
        args = [given[k] for k in keys] + ([] if scalar else [dout])
        result = call(grad_fn, *args, name=label)
        if isinstance(result, Mapping):
            missing = [k for k in keys if k not in result]
            if missing:
                raise CheckFailed(f"{label} returned a dict without the key(s) {missing}; "
                                  f"expected one gradient per input: {keys}.")
            return dict(result)
        return dict(zip(keys, unpack(result, tuple(f"d{k}" for k in keys), label), strict=True))

    batch = int(np.shape(out)[0]) if np.ndim(out) >= 1 else None
    case = Case(arrays, batch=batch)
    return check_gradients(label, learner, reference, [case], upstream=not scalar,
                           device=device, seed=seed, rtol=rtol, atol=atol)


@public_check
def assert_close(actual: Any, expected: Any, name: str = "value", *, rtol: float = RTOL,
                 atol: float = ATOL) -> CheckPassed:
    """Compare an array the learner computed with an expected one: shape first, then values."""
    exp = np.asarray(expected.detach().cpu().numpy() if hasattr(expected, "detach") else expected,
                     dtype=np.float64)
    got = as_float_array(actual, name, exp.shape)
    c = compare(got, exp, rtol, atol)
    if not c.ok:
        rows = {name: (exp.shape, c)}
        raise CheckFailed(failure(name, f"{name} does not match", None, f"{name} {exp.shape}",
                                  rows, worst_entries(name, c), seed=0))
    return CheckPassed(name, name, "the expected values", 1, c.max_rel)
