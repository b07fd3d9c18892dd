"""Checks for notebook 05, automatic differentiation.

    from checks import autodiff as check
    check.value_ops(Value)          # forward values of every operator (numbers on both sides)
    check.value_derivatives(Value)  # the seed and each operator's derivative, in isolation
    check.value_backward(Value)     # whole graphs: reuse, order, random graphs, depth, twice
    check.value_class(Value)        # all of the above
    check.custom_sigmoid(Sigmoid)   # a torch.autograd.Function whose backward you wrote

Pinned semantics of `Value` (as PyTorch): `v.backward()` computes d v / d leaf for every leaf
of the graph that produced `v` and ADDS it to `leaf.grad`. Calling it a second time on the
same graph adds the same amounts again (leaf grads double). Intermediate nodes start every
backward() from 0 (PyTorch does not keep their gradients at all).

Every test builds the same expression twice: with the learner's `Value` and with torch
float64 scalars; the leaves' `.grad` are compared with torch autograd and finite differences
by the engine's `check_gradients`. Tests run from the simplest (one operator) to the whole
engine, so a failure names the first thing that is wrong.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Hypothesis,
    as_float,
    call,
    check_gradients,
    check_outputs,
    compare,
    devices,
    public_check,
    resolve_device,
    surrogate,
)
from .engine.diagnose import Diagnosis
from .engine.report import failure, worst_entries

Builder = Callable[[Sequence[Any]], Any]

REVERSE_HINT = ("implement __rmul__/__radd__/__rsub__/__rtruediv__: Python calls "
                "number.__mul__(value) first, which fails, then value.__rmul__(number). "
                "E.g. `def __rsub__(self, other): return Value(other) - self`.")


# --------------------------------------------------------------------------------------------
# Calling the learner's Value
# --------------------------------------------------------------------------------------------

def _is_value(obj: Any) -> bool:
    return hasattr(obj, "data") and hasattr(obj, "grad")


def _make(Value: Any, x: float) -> Any:
    """Value(x), with a clear message when the class is missing or the result is odd."""
    v = call(Value, float(x), name="Value")
    if not _is_value(v):
        raise CheckFailed(f"Value({float(x)!r}) should have the attributes .data and .grad; "
                          f"got {type(v).__name__} without them.")
    return v


def _guard(fn: Callable[[], Any], label: str, reverse: bool) -> Callable[[], Any]:
    """fn, with a TypeError from a number on the left explained (missing reverse operator)."""
    def run() -> Any:
        try:
            return fn()
        except TypeError as exc:
            if not reverse and "2.5" in label:
                raise CheckFailed(f"`{label}` raised TypeError ({exc}): operators must accept "
                                  "a plain number too. Hint: wrap it first, e.g. `other = other "
                                  "if isinstance(other, Value) else Value(other)`.") from None
            if reverse:
                raise CheckFailed(f"`{label}` raised TypeError ({exc}): the number is on the "
                                  f"left, so Python needs a reverse operator. Likely bug: "
                                  f"missing reverse operator. Hint: {REVERSE_HINT}") from None
            raise
    return run


def _build(Value: Any, build: Builder, x: np.ndarray, label: str, reverse: bool = True
           ) -> tuple[list[Any], Any]:
    leaves = [_make(Value, v) for v in np.asarray(x).reshape(-1)]
    out = call(_guard(lambda: build(leaves), label, reverse), name=f"Value: {label}")
    if not _is_value(out):
        raise CheckFailed(f"`{label}` gave a {type(out).__name__}, not a Value: every operator "
                          "must return a new Value (out = Value(result, (self, other), ...)).")
    return leaves, out


def _backward(out: Any, label: str, n_nodes: int | None = None) -> None:
    if not callable(getattr(out, "backward", None)):
        raise CheckFailed(f"{type(out).__name__} has no backward() method. Define it and attach "
                          "it to the class (Value.backward = backward), and run that cell again "
                          "each time you re-run the cell that defines the class.")

    def run() -> None:
        try:
            out.backward()
        except RecursionError:
            raise CheckFailed(
                f"backward() raised RecursionError (maximum recursion depth exceeded) on "
                f"`{label}`, a graph {n_nodes} operations deep. A recursive depth-first search needs "
                "one Python stack frame per node, and Python allows about "
                f"{sys.getrecursionlimit()}. Likely bug: recursive topological sort. Hint: use "
                "an iterative topological sort (a while loop over an explicit stack of "
                "(node, children_done) pairs).") from None
    call(run, name="Value.backward")


def _grad(leaf: Any, i: int) -> np.ndarray:
    g = leaf.grad
    if g is None:
        raise CheckFailed(f"leaf x{i}.grad is None after backward(): start every Value with "
                          "grad = 0.0 and add into it (+=).")
    if _is_value(g):
        raise CheckFailed(f"leaf x{i}.grad is a Value; .grad must hold a plain float (in a "
                          "backward closure use out.grad and .data, which are floats).")
    if isinstance(g, (bool, np.bool_)):
        raise CheckFailed(f"leaf x{i}.grad is a bool ({g}); expected a float.")
    if isinstance(g, (int, float, np.integer, np.floating)):
        return np.asarray(float(g))
    return np.asarray(as_float(g, f"leaf x{i}.grad"))


def _learner_grads(Value: Any, build: Builder, label: str, times: int = 1,
                   n_nodes: int | None = None) -> Callable:
    def learner(inputs: dict, _extra: dict, _dout: None) -> dict:
        leaves, out = _build(Value, build, inputs["x"], label)
        for _ in range(times):
            _backward(out, label, n_nodes)
        return {"x": np.stack([_grad(v, i) for i, v in enumerate(leaves)])}
    return learner


def _reference(x: torch.Tensor, build: Builder, times: int = 1) -> torch.Tensor:
    return times * build([x[i] for i in range(x.shape[0])])


# --------------------------------------------------------------------------------------------
# Restating a failure with the stage's own headline and diagnosis
# --------------------------------------------------------------------------------------------

_GENERIC = ("entries differ", "all zeros", "off by a constant factor")


def _restate(exc: CheckFailed, name: str, headline: str, bug: str | None = None,
             hint: str | None = None, extra: str | None = None, force: bool = False) -> CheckFailed:
    """The engine's report with our headline; our diagnosis replaces a generic one."""
    lines = str(exc).splitlines()
    if not lines or not lines[0].startswith("✗"):  # a message from call(): keep it as it is
        return exc
    lines[0] = f"✗ {name}: {headline}"
    at = next((i for i, ln in enumerate(lines) if ln.startswith("Likely bug:")), None)
    if bug is not None and at is not None and (force or any(g in lines[at] for g in _GENERIC)):
        end = at + 1 + (at + 1 < len(lines) and lines[at + 1].startswith("Hint:"))
        lines[at:end] = [f"Likely bug: {bug}"] + ([f"Hint: {hint}"] if hint else [])
    elif bug is not None and at is None:
        lines[2:2] = [f"Likely bug: {bug}"] + ([f"Hint: {hint}"] if hint else [])
    if extra:
        lines.insert(2, extra)
    return CheckFailed("\n".join(lines))


@dataclass
class _Tally:
    """Sums the engine's pass reports over many small calls."""

    cases: int = 0
    worst: float = 0.0
    worst_fd: float = 0.0
    used_fd: bool = False

    def add(self, p: CheckPassed) -> None:
        self.cases += p.n_cases
        self.worst = max(self.worst, p.max_rel)
        if p.max_rel_fd is not None:
            self.used_fd = True
            self.worst_fd = max(self.worst_fd, p.max_rel_fd)

    def passed(self, name: str, what: str, device: str) -> CheckPassed:
        compared = "autograd and finite differences" if self.used_fd else "autograd"
        return CheckPassed(name, what, compared, self.cases, self.worst,
                           self.worst_fd if self.used_fd else None, device)


def _graph_case(name: str, Value: Any, build: Builder, x: Sequence[float], label: str, *,
                hypotheses: Sequence[Hypothesis] = (), device: str, seed: int,
                times: int = 1, n_nodes: int | None = None, fd: bool = True) -> CheckPassed:
    """d build(x) / d x by the learner's Value vs torch (autograd and finite differences)."""
    case = Case({"x": np.asarray(x, dtype=np.float64)}, extra={"build": build, "times": times},
                label=label, fd=fd)
    return check_gradients(name, _learner_grads(Value, build, label, times, n_nodes), _reference,
                           [case], upstream=False, labels={"x": "leaf grads"},
                           hypotheses=hypotheses, device=device, seed=seed)


# --------------------------------------------------------------------------------------------
# The operators: (label, builder on [a, b], reverse operator?, derivative in words)
# --------------------------------------------------------------------------------------------

def _op_table() -> list[tuple[str, Builder, bool, str]]:
    return [
        ("a + b", lambda v: v[0] + v[1], False, "d(a + b)/da = 1 and d(a + b)/db = 1"),
        ("a + 2.5", lambda v: v[0] + 2.5, False, "d(a + 2.5)/da = 1"),
        ("2.5 + a", lambda v: 2.5 + v[0], True, "d(2.5 + a)/da = 1"),
        ("a - b", lambda v: v[0] - v[1], False, "d(a − b)/da = 1 and d(a − b)/db = −1"),
        ("a - 2.5", lambda v: v[0] - 2.5, False, "d(a − 2.5)/da = 1"),
        ("2.5 - a", lambda v: 2.5 - v[0], True, "d(2.5 − a)/da = −1"),
        ("a * b", lambda v: v[0] * v[1], False, "d(a·b)/da = b and d(a·b)/db = a"),
        ("a * 2.5", lambda v: v[0] * 2.5, False, "d(2.5·a)/da = 2.5"),
        ("2.5 * a", lambda v: 2.5 * v[0], True, "d(2.5·a)/da = 2.5"),
        ("a / b", lambda v: v[0] / v[1], False, "d(a/b)/da = 1/b and d(a/b)/db = −a/b²"),
        ("a / 2.5", lambda v: v[0] / 2.5, False, "d(a/2.5)/da = 1/2.5"),
        ("2.5 / a", lambda v: 2.5 / v[0], True, "d(2.5/a)/da = −2.5/a²"),
        ("-a", lambda v: -v[0], False, "d(−a)/da = −1"),
        ("a ** 2", lambda v: v[0] ** 2, False, "d(a²)/da = 2a"),
        ("a ** 3", lambda v: v[0] ** 3, False, "d(a³)/da = 3a²"),
        ("a ** -1", lambda v: v[0] ** -1, False, "d(a⁻¹)/da = −a⁻²"),
        ("a ** 0.5", lambda v: v[0] ** 0.5, False, "d(a^0.5)/da = 0.5·a^−0.5 (d xⁿ/dx = n·xⁿ⁻¹)"),
        ("a.exp()", lambda v: v[0].exp(), False, "d exp(a)/da = exp(a)"),
        ("a.log()", lambda v: v[0].log(), False, "d log(a)/da = 1/a"),
        ("a.tanh()", lambda v: v[0].tanh(), False, "d tanh(a)/da = 1 − tanh(a)²"),
        ("a.relu()", lambda v: v[0].relu(), False, "d relu(a)/da = 1 for a > 0, 0 for a < 0"),
        ("b.relu()", lambda v: v[1].relu(), False, "d relu(b)/db = 0 for b < 0"),
    ]


_OPS_X = np.array([1.3, -0.8])  # a > 0 (log, sqrt), b < 0 (relu's flat side), |b| away from 0


def _derivative_hypotheses(label: str) -> list[Hypothesis]:
    """Wrong derivatives of one operator, as torch functions of x = [a, b]."""
    sg = surrogate

    def unary(f: Callable, local: Callable) -> Callable:
        return lambda x, build, times: sg(f(x[0]), x[0], local(x[0]))

    hyps: dict[str, list[Hypothesis]] = {
        "a.tanh()": [
            Hypothesis("d/dx of tanh is wrong: 1 − tanh (the square is missing)",
                       "expected 1 − tanh²: use t = out.data, then (1 - t**2) * out.grad.",
                       unary(torch.tanh, lambda a: 1 - torch.tanh(a))),
            Hypothesis("d/dx of tanh is wrong: 1 − x² (the formula taken at the input)",
                       "expected 1 − tanh²: the square is of tanh(x) (out.data), not of x.",
                       unary(torch.tanh, lambda a: 1 - a * a)),
            Hypothesis("d/dx of tanh is wrong: it returned tanh(x) itself",
                       "expected 1 − tanh²: d tanh(x)/dx = 1 − tanh(x)².",
                       unary(torch.tanh, torch.tanh)),
        ],
        "a.exp()": [
            Hypothesis("d/dx of exp is wrong: it used x instead of exp(x)",
                       "d exp(x)/dx = exp(x) = out.data.", unary(torch.exp, lambda a: a)),
            Hypothesis("d/dx of exp is wrong: the local derivative is 1",
                       "d exp(x)/dx = exp(x): multiply out.grad by out.data.",
                       unary(torch.exp, torch.ones_like)),
        ],
        "a.log()": [
            Hypothesis("d/dx of log is wrong: it used log(x) or x instead of 1/x",
                       "d log(x)/dx = 1/x: self.grad += out.grad / self.data.",
                       unary(torch.log, torch.log)),
            Hypothesis("d/dx of log is wrong: it used x instead of 1/x",
                       "d log(x)/dx = 1/x: self.grad += out.grad / self.data.",
                       unary(torch.log, lambda a: a)),
        ],
        "a.relu()": [
            Hypothesis("d/dx of relu is wrong: it passed out.grad through unconditionally",
                       "relu'(x) = 1 where x > 0, else 0: (out.data > 0) * out.grad.",
                       unary(torch.relu, torch.ones_like)),
        ],
        "b.relu()": [
            Hypothesis("d/dx of relu is wrong: gradient passed where the input is negative",
                       "relu'(x) = 0 for x < 0: (out.data > 0) * out.grad.",
                       lambda x, build, times: sg(torch.relu(x[1]), x[1], torch.ones_like(x[1]))),
        ],
        "a ** 2": [
            Hypothesis("d/dx of pow is wrong: n·xⁿ instead of n·xⁿ⁻¹",
                       "d xⁿ/dx = n·xⁿ⁻¹: other * self.data ** (other - 1).",
                       unary(lambda a: a ** 2, lambda a: 2 * a ** 2)),
            Hypothesis("d/dx of pow is wrong: xⁿ⁻¹ without the factor n",
                       "d xⁿ/dx = n·xⁿ⁻¹.", unary(lambda a: a ** 2, lambda a: a)),
        ],
        "a ** 3": [
            Hypothesis("d/dx of pow is wrong: n·xⁿ instead of n·xⁿ⁻¹",
                       "d xⁿ/dx = n·xⁿ⁻¹: other * self.data ** (other - 1).",
                       unary(lambda a: a ** 3, lambda a: 3 * a ** 3)),
            Hypothesis("d/dx of pow is wrong: xⁿ⁻¹ without the factor n",
                       "d xⁿ/dx = n·xⁿ⁻¹.", unary(lambda a: a ** 3, lambda a: a ** 2)),
        ],
        "a / b": [
            Hypothesis("d/dx of division is wrong: d(a/b)/db = 1/b² or −1/b² (the a is missing)",
                       "d(a/b)/db = −a/b². Simplest: a / b = a * b**-1, built from * and **.",
                       lambda x, build, times: x[0] / x[1].detach() + sg(
                           x[0].detach() / x[1], x[1], -1 / x[1].detach() ** 2)),
            Hypothesis("d/dx of division is wrong: d(a/b)/db has the wrong sign (+a/b²)",
                       "d(a/b)/db = −a/b².",
                       lambda x, build, times: x[0] / x[1].detach() + sg(
                           x[0].detach() / x[1], x[1], x[0].detach() / x[1].detach() ** 2)),
        ],
        "2.5 / a": [
            Hypothesis("d/dx of 2.5 / a is wrong: computed as a / 2.5",
                       "__rtruediv__(self, other) computes other / self: "
                       "return Value(other) / self, or other * self**-1.",
                       lambda x, build, times: sg(2.5 / x[0], x[0], torch.full_like(x[0], 0.4))),
        ],
        "2.5 - a": [
            Hypothesis("d/dx of 2.5 - a is wrong: computed as a - 2.5 (sign flipped)",
                       "__rsub__(self, other) computes other − self: return Value(other) - self, "
                       "or other + (-self).",
                       lambda x, build, times: sg(2.5 - x[0], x[0], torch.ones_like(x[0]))),
        ],
        "a - b": [
            Hypothesis("d/dx of subtraction is wrong: d(a − b)/db = +1",
                       "d(a − b)/db = −1: build a - b as a + (-b).",
                       lambda x, build, times: x[0] + sg(-x[1], x[1], torch.ones_like(x[1]))),
        ],
        "a * b": [
            Hypothesis("d/dx of multiplication is wrong: each factor got its own value",
                       "d(a·b)/da = b (the OTHER factor): self.grad += other.data * out.grad.",
                       lambda x, build, times: sg(x[0] * x[1], x[0], x[0].detach())
                       + sg(torch.zeros_like(x[1]), x[1], x[1].detach())),
        ],
    }
    return hyps.get(label, [])


# --------------------------------------------------------------------------------------------
# Stage 1: forward values
# --------------------------------------------------------------------------------------------

def _construct(Value: Any) -> None:
    v = _make(Value, 1.5)
    data = as_float(v.data if not _is_value(v.data) else None, "Value(1.5).data")
    if data != 1.5:
        raise CheckFailed(f"Value(1.5).data is {data}; it should store the number given.")
    g = v.grad
    if g is None or _is_value(g) or isinstance(g, bool) or float(g) != 0.0:
        raise CheckFailed(f"Value(1.5).grad is {g!r}; a new Value starts with grad = 0.0.")


@public_check
def value_ops(Value: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Forward values of every operator: + − × ÷ ** exp log tanh relu, unary minus, and the
    reverse operators (2.5 + a, 2.5 − a, 2.5 · a, 2.5 / a), against torch."""
    _construct(Value)
    cases = []
    for label, build, reverse, _ in _op_table():
        cases.append(Case({"x": _OPS_X.copy()}, extra={"build": build, "key": label,
                                                       "reverse": reverse}, label=label))

    def learner(inputs: dict, extra: dict) -> dict:
        _, out = _build(Value, extra["build"], inputs["x"], extra["key"], extra["reverse"])
        data = out.data
        if _is_value(data):
            raise CheckFailed(f"`{extra['key']}` gave a Value whose .data is itself a Value: "
                              "store a float, e.g. Value(self.data + other.data, ...).")
        return {extra["key"]: as_float(data, f"({extra['key']}).data")}

    def reference(x: torch.Tensor, build: Builder, key: str, reverse: bool) -> dict:
        return {key: build([x[0], x[1]])}

    hyps = [Hypothesis("the operands are swapped (other − self instead of self − other, or "
                       "self / other in __rtruediv__)",
                       "In __rsub__/__rtruediv__ `self` is the Value on the RIGHT: 2.5 - a calls "
                       "a.__rsub__(2.5), which must return 2.5 − a.",
                       lambda x, build, key, reverse: {key: build([x[0], x[1]]) if not reverse
                                                       else _swapped(key, x[0])})]
    r = check_outputs("value_ops", learner, reference, cases, hypotheses=hyps,
                      device="cpu", seed=seed, compared="PyTorch")
    return CheckPassed("value_ops", "forward values of every operator", r.compared, r.n_cases,
                       r.max_rel, None, r.device)


def _swapped(key: str, a: torch.Tensor) -> torch.Tensor:
    return {"2.5 - a": a - 2.5, "2.5 / a": a / 2.5}.get(key, a * torch.nan)


# --------------------------------------------------------------------------------------------
# Stage 2: the seed and each operator in isolation
# --------------------------------------------------------------------------------------------

def _seed(Value: Any, name: str) -> None:
    x = _make(Value, 0.8)
    y = call(_guard(lambda: x * 3.0, "x * 3.0", False), name="Value: x * 3.0")
    _backward(y, "x * 3.0")
    gx = float(_grad(x, 0))
    if gx == 3.0:
        return
    gy = y.grad
    headline = "after y = x * 3.0; y.backward(), x.grad should be 3.0"
    if gx == 0.0 and not gy:
        diag = Diagnosis("all gradients are zero: the output's gradient was never seeded",
                         "seed the output's grad with 1.0 (dy/dy = 1) in backward(), before "
                         "calling the _backward closures: self.grad = 1.0.")
    elif gx == 0.0:
        diag = Diagnosis("x.grad stayed 0: the multiplication's backward closure never ran "
                         "(or did not add into x.grad)",
                         "backward() must call every node's _backward(), the output's first; "
                         "each operator must set out._backward to its closure.")
    else:
        diag = None
    rows = {"x.grad": ((), compare(np.asarray(gx), np.asarray(3.0)))}
    raise CheckFailed(failure(name, headline, diag, "y = x * 3.0 at x = 0.8", rows,
                              worst_entries("x.grad", rows["x.grad"][1]), 0))


def _derivatives(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    _construct(Value)
    _seed(Value, name)
    table = _op_table()
    primitive = [op for op in table if op[0] not in _DERIVED]
    derived = [op for op in table if op[0] in _DERIVED]
    _one_by_one(Value, name, dev, seed, tally, primitive)
    _relu_kink(Value, name, dev, seed, tally)
    _upstream(Value, name, dev, seed, tally, primitive)
    # Derived operators (−, /, unary minus) are often built from the primitive ones, i.e. as
    # small graphs: make sure gradients flow through a graph before blaming them.
    _chains(Value, name, dev, seed, tally, _chain_table()[:2], [])
    _one_by_one(Value, name, dev, seed, tally, derived)


_FLOW_BUG = ("the gradient does not flow back through the whole graph: backward() must call "
             "_backward() of EVERY node, from the output back to the leaves (reversed "
             "topological order), not only the output's, and not leaves first")


def _upstream(Value: Any, name: str, dev: str, seed: int, tally: _Tally,
              table: list[tuple[str, Builder, bool, str]]) -> None:
    """op(a, b) * c: the op's closure must multiply by out.grad (here c, not 1)."""
    x = np.array([*_OPS_X, 1.7])
    for label, op, _reverse, _rule in table:
        def build(v: Sequence[Any], op: Builder = op) -> Any:
            return op(v) * v[2]

        def ignored(x: Any, build: Builder, times: int, op: Builder = op) -> Any:
            y = op(x)
            return y + y.detach() * x[2]

        hyp = Hypothesis(f"the backward of `{label}` ignores out.grad (it only worked because "
                         "out.grad was 1 when the operation was the output)",
                         "chain rule: multiply the local derivative by out.grad, e.g. "
                         "self.grad += local * out.grad.", ignored)
        case = f"({label}) * c, c = {x[2]}"
        try:
            tally.add(_graph_case(name, Value, build, x, case, hypotheses=[hyp], device=dev,
                                  seed=seed))
        except CheckFailed as exc:
            raise _restate(exc, name, f"wrong gradients for `{case}` (`{label}` alone was "
                           "right)", _FLOW_BUG, _ORDER_HINT) from None


def _relu_kink(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    """relu'(0) = 0, as in PyTorch (no finite differences on the kink)."""
    hyps = [Hypothesis("relu'(0) = 1: the kink at 0 is counted as positive",
                       "by convention (and in PyTorch) relu'(0) = 0: test self.data > 0, "
                       "not >= 0.",
                       lambda x, build, times: surrogate(torch.relu(x[0]), x[0],
                                                         torch.ones_like(x[0])) + x[1])]
    try:
        tally.add(_graph_case(name, Value, lambda v: v[0].relu() + v[1], [0.0, 0.5],
                              "relu(a) + b at a = 0 (the kink)", hypotheses=hyps, device=dev,
                              seed=seed, fd=False))
    except CheckFailed as exc:
        raise _restate(exc, name, "d/dx of relu at x = 0 should be 0 (as PyTorch)",
                       "d/dx of relu is wrong at the kink: relu'(0) should be 0",
                       "use (self.data > 0), not >= 0.") from None


_DERIVED = {"a - b", "a - 2.5", "2.5 - a", "a / b", "a / 2.5", "2.5 / a", "-a"}


def _one_by_one(Value: Any, name: str, dev: str, seed: int, tally: _Tally,
                table: list[tuple[str, Builder, bool, str]]) -> None:
    for label, build, _reverse, rule in table:
        try:
            tally.add(_graph_case(name, Value, build, _OPS_X, label,
                                  hypotheses=_derivative_hypotheses(label), device=dev, seed=seed))
        except CheckFailed as exc:
            op = label.replace("a", "x").replace("b", "x")
            raise _restate(exc, name, f"the derivative of `{label}` is wrong (tested alone, "
                           f"leaves [a, b] = {[float(v) for v in _OPS_X]})",
                           f"d/dx of {op} is wrong: expected {rule}",
                           "fix that operator's _backward closure: local derivative × out.grad, "
                           "added (+=) to each input's grad.", extra=f"Expected: {rule}") from None


@public_check
def value_derivatives(Value: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """backward() on one operator at a time: the seed (1.0) and every operator's derivative."""
    dev = resolve_device(device)
    tally = _Tally()
    _derivatives(Value, "value_derivatives", dev, seed, tally)
    return tally.passed("value_derivatives", "leaf grads of each operator", dev)


# --------------------------------------------------------------------------------------------
# Stage 3: whole graphs
# --------------------------------------------------------------------------------------------

def _reuse_table() -> list[tuple[str, Callable[[Any, Any, Sequence[Any]], Any]]]:
    """(label, g(u, v, x)): u and v are two uses of the same leaf x[0]."""
    return [
        ("a + a", lambda u, v, x: u + v),
        ("a * a", lambda u, v, x: u * v),
        ("a - a", lambda u, v, x: u - v),
        ("a / a", lambda u, v, x: u / v),
        ("a*b + a*c", lambda u, v, x: u * x[1] + v * x[2]),
        ("b*a + c*a", lambda u, v, x: x[1] * u + x[2] * v),
        ("(a + b) * (a + c)", lambda u, v, x: (u + x[1]) * (v + x[2])),
        ("(a - b) * (c - a)", lambda u, v, x: (u - x[1]) * (x[2] - v)),
        ("a/b + c/a", lambda u, v, x: u / x[1] + x[2] / v),
        ("a**2 + a**3", lambda u, v, x: u ** 2 + v ** 3),
        ("exp(a) + exp(a)", lambda u, v, x: u.exp() + v.exp()),
        ("log(a) * log(a)", lambda u, v, x: u.log() * v.log()),
        ("tanh(a) + tanh(a)", lambda u, v, x: u.tanh() + v.tanh()),
        ("relu(a) * relu(a)", lambda u, v, x: u.relu() * v.relu()),
        ("-a * -a", lambda u, v, x: (-u) * (-v)),
        ("2·a + a·3", lambda u, v, x: 2.0 * u + v * 3.0),
    ]


_REUSE_X = np.array([1.2, 0.7, -1.6])


def _reuse(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    for label, g in _reuse_table():
        def build(x: Sequence[Any], g: Callable = g) -> Any:
            return g(x[0], x[0], x)

        hyps = [
            Hypothesis("gradient not accumulated on a reused node: use +=",
                       "a node used twice receives a gradient from each use; `self.grad = ...` "
                       "in a backward closure overwrites the first: write self.grad += ... "
                       "(and other.grad += ...) in every operator.",
                       lambda x, build, times, g=g: g(x[0], x[0].detach(), x)),
            Hypothesis("gradient not accumulated on a reused node: use +=",
                       "a node used twice receives a gradient from each use; `self.grad = ...` "
                       "in a backward closure overwrites the first: write self.grad += ... "
                       "(and other.grad += ...) in every operator.",
                       lambda x, build, times, g=g: g(x[0].detach(), x[0], x)),
        ]
        try:
            tally.add(_graph_case(name, Value, build, _REUSE_X, label, hypotheses=hyps,
                                  device=dev, seed=seed))
        except CheckFailed as exc:
            raise _restate(exc, name, f"wrong gradient when the leaf a is used twice: `{label}` "
                           "(every operator alone was right)",
                           "gradient not accumulated on a reused node: use +=",
                           "each use of a node adds its share to node.grad: write += (never =) "
                           "in every _backward closure.") from None


def _chain_table() -> list[tuple[str, Builder]]:
    return [
        ("tanh(a*b + c) * d", lambda x: (x[0] * x[1] + x[2]).tanh() * x[3]),
        ("log(relu(a*b + 2) * 3) + d ** 3", lambda x: ((x[0] * x[1] + 2.0).relu() * 3.0).log()
         + x[3] ** 3),
        ("exp((a - b) / c) + d ** 2", lambda x: ((x[0] - x[1]) / x[2]).exp() + x[3] ** 2),
    ]


def _order_table() -> list[tuple[str, Builder]]:
    """Diamonds: a node with several consumers at different depths."""
    def d1(x):
        u = x[0] * x[1]
        return u + u.tanh()

    def d2(x):
        u = x[0].exp()
        return (u * x[1]).tanh() + u

    def d3(x):
        u = x[0] + x[1]
        return u * (u * x[2]).tanh()

    def d4(x):
        u = x[0] * x[2]
        w = u.tanh()
        return (w * u + w.exp() * x[1]) * u

    def d5(x):
        u = x[1] - x[0]
        v = u * u
        return v.exp() * 0.5 + (v + u) ** 2 - u

    return [("u + tanh(u), u = a*b", d1), ("tanh(u*b) + u, u = exp(a)", d2),
            ("u * tanh(u*c), u = a + b", d3), ("(w*u + exp(w)*b) * u, w = tanh(u), u = a*c", d4),
            ("exp(v)/2 + (v + u)² − u, v = u², u = b − a", d5)]


_CHAIN_X = np.array([0.9, -0.6, 0.4, 1.3])

_ORDER_BUG = ("wrong topological order: a node's backward ran before all its consumers had "
              "added their gradient to it")
_ORDER_HINT = ("build the order by depth-first search, appending a node only after all its "
               "children (post-order), each node once (keep a visited set); then set "
               "self.grad = 1.0 and call node._backward() for node in reversed(topo).")


def _chains(Value: Any, name: str, dev: str, seed: int, tally: _Tally,
            chains: list[tuple[str, Builder]], diamonds: list[tuple[str, Builder]]) -> None:
    for label, build in chains:
        try:
            tally.add(_graph_case(name, Value, build, _CHAIN_X, label, device=dev, seed=seed))
        except CheckFailed as exc:
            raise _restate(exc, name, f"wrong gradients through a chain of operators: `{label}` "
                           "(every operator alone was right)", _FLOW_BUG, _ORDER_HINT,
                           force=True) from None
    for label, build in diamonds:
        try:
            tally.add(_graph_case(name, Value, build, _CHAIN_X, label, device=dev, seed=seed))
        except CheckFailed as exc:
            raise _restate(exc, name, f"wrong gradients on a graph where a node has two "
                           f"consumers: `{label}` (single operators, reuse and chains were "
                           "right)", _ORDER_BUG, _ORDER_HINT, force=True) from None


# Random expression graphs: a program of instructions interpreted on Values or torch scalars.

_BINARY = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q,
           "/": lambda p, q: p / q}
_UNARY = {"exp": lambda p: p.exp(), "log": lambda p: p.log(), "tanh": lambda p: p.tanh(),
          "relu": lambda p: p.relu(), "neg": lambda p: -p}
_MATH = {"exp": math.exp, "log": math.log, "tanh": math.tanh, "relu": lambda t: max(t, 0.0),
         "neg": lambda t: -t}
_POWERS = (2, 3, -1, 0.5, 1.5, -0.5)


def _valid(kind: str, op: Any, p: float, q: float | None) -> bool:
    if kind == "unary":
        return {"log": p > 0.3, "exp": p < 2.5, "relu": abs(p) > 0.05}.get(op, True)
    if kind == "pow":
        if isinstance(op, float) or op < 0:
            return p > 0.3 if isinstance(op, float) else abs(p) > 0.5
        return True
    if op == "/":
        return q is not None and abs(q) > 0.5
    return True


def _apply_float(kind: str, op: Any, p: float, q: float | None) -> float:
    if kind == "unary":
        return _MATH[op](p)
    if kind == "pow":
        return p ** op
    return {"+": p + q, "-": p - q, "*": p * q, "/": p / q if q else math.inf}[op]


def random_program(rng: np.random.Generator, n_leaves: int, n_ops: int
                   ) -> tuple[list[tuple], np.ndarray]:
    """A random expression over n_leaves leaves: (instructions, leaf values).

    Instructions ("bin", op, i, j), ("num_left", op, c, i) = c op node i, ("num_right", op, i, c),
    ("unary", name, i) and ("pow", i, p) refer to earlier nodes (the leaves are nodes
    0..n_leaves-1); node i may be used several times, and i == j happens (shared
    sub-expressions). Ops are only chosen where they are smooth and well conditioned (log of
    > 0.3, division by |q| > 0.5, relu away from 0), and values stay below 20 in size.
    """
    x = rng.choice([-1.0, 1.0], size=n_leaves) * rng.uniform(0.4, 1.8, size=n_leaves)
    vals = list(map(float, x))
    prog: list[tuple] = []
    while len(prog) < n_ops:
        n = len(vals)
        i = max(0, n - int(rng.geometric(0.35))) if rng.random() < 0.7 else int(rng.integers(n))
        j = i if rng.random() < 0.25 else int(rng.integers(n))
        r = rng.random()
        if r < 0.35:
            op = str(rng.choice(list(_BINARY)))
            ins, kind, p, q = ("bin", op, i, j), "bin", vals[i], vals[j]
        elif r < 0.55:
            op = str(rng.choice(list(_BINARY)))
            c = float(np.round(rng.uniform(0.5, 3.0) * rng.choice([-1, 1]), 2))
            if rng.random() < 0.5:
                ins, kind, p, q = ("num_left", op, c, i), "bin", c, vals[i]
            else:
                ins, kind, p, q = ("num_right", op, i, c), "bin", vals[i], c
        elif r < 0.85:
            op = str(rng.choice(list(_UNARY)))
            ins, kind, p, q = ("unary", op, i), "unary", vals[i], None
        else:
            op = _POWERS[int(rng.integers(len(_POWERS)))]
            ins, kind, p, q = ("pow", i, op), "pow", vals[i], None
        if not _valid(kind, ins[1] if kind != "pow" else op, p, q):
            continue
        value = _apply_float(kind, ins[1] if kind != "pow" else op, p, q)
        if not math.isfinite(value) or abs(value) > 20 or (kind == "bin" and ins[1] == "/"
                                                           and abs(q) < 0.5):
            continue
        prog.append(ins)
        vals.append(value)
    return prog, x


def run_program(prog: Sequence[tuple], leaves: Sequence[Any]) -> Any:
    """Interpret `prog` on leaves (Values or torch scalars); the output is the sum of the
    nodes nobody consumed (so every part of the graph reaches the output)."""
    nodes = list(leaves)
    used = [False] * len(nodes)
    for ins in prog:
        kind = ins[0]
        if kind == "bin":
            _, op, i, j = ins
            node = _BINARY[op](nodes[i], nodes[j])
            used[i] = used[j] = True
        elif kind == "num_left":
            _, op, c, i = ins
            node = _BINARY[op](c, nodes[i])
            used[i] = True
        elif kind == "num_right":
            _, op, i, c = ins
            node = _BINARY[op](nodes[i], c)
            used[i] = True
        elif kind == "unary":
            _, op, i = ins
            node = _UNARY[op](nodes[i])
            used[i] = True
        else:
            _, i, p = ins
            node = nodes[i] ** p
            used[i] = True
        nodes.append(node)
        used.append(False)
    sinks = [nd for nd, u in zip(nodes[len(leaves):], used[len(leaves):], strict=True) if not u]
    out = sinks[0]
    for nd in sinks[1:]:
        out = out + nd
    return out


def random_expression(seed: int = 0, n_leaves: int = 4, n_ops: int = 20
                      ) -> tuple[Callable[[Sequence[Any]], Any], np.ndarray]:
    """(build, leaf values): build(leaves) makes a random expression from Values or torch
    scalars alike (operators and .exp/.log/.tanh/.relu), for comparing an engine with torch."""
    prog, x = random_program(np.random.default_rng(seed), n_leaves, n_ops)
    return (lambda leaves: run_program(prog, leaves)), x


def _random_graphs(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    rng = np.random.default_rng(seed + 505)
    for n_leaves, n_ops in ((3, 12), (5, 25), (4, 40), (7, 60)):
        prog, x = random_program(rng, n_leaves, n_ops)
        label = f"random expression, {n_leaves} leaves, {n_ops} operations"
        try:
            tally.add(_graph_case(name, Value, lambda v, p=prog: run_program(p, v), x, label,
                                  device=dev, seed=seed))
        except CheckFailed as exc:
            raise _restate(exc, name, f"wrong gradients on a {label} (seed={seed}); the small "
                           "tests passed", "the engine fails on a larger graph with shared "
                           "sub-expressions and numbers on both sides of operators",
                           "rebuild this graph with checks.autodiff.random_expression(seed) and "
                           "compare node by node with torch.") from None


def _chain_builder(n: int) -> Builder:
    def build(x: Sequence[Any]) -> Any:
        v = x[0]
        for _ in range(n):
            v = v * 0.999 + x[1] * 0.001
        return v
    return build


def _deep_chain(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    n = min(max(3000, sys.getrecursionlimit() + 1000), 20000)
    label = f"v = v*0.999 + y*0.001 repeated {n} times ({2 * n} operations)"
    try:
        tally.add(_graph_case(name, Value, _chain_builder(n), [0.5, -1.5], label,
                              device=dev, seed=seed, n_nodes=2 * n, fd=False))
    except CheckFailed as exc:
        raise _restate(exc, name, f"wrong gradients on a deep chain: {label}") from None


def _twice(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    def build(x: Sequence[Any]) -> Any:
        u = x[0] * x[1]
        return (u.tanh() * x[2] + u).exp() * 0.5

    x = np.array([0.8, -0.7, 0.6])
    label = "out = exp(tanh(u)·c + u)/2 with u = a·b; out.backward(); out.backward()"
    hyps = [
        Hypothesis("the second backward() reset the leaves' gradients",
                   "backward() must ADD into leaf.grad, like torch: a second call on the same "
                   "graph adds the same amounts again. Zero gradients only between training "
                   "steps (for p in params: p.grad = 0.0), never inside backward().",
                   lambda x, build, times: build([x[i] for i in range(3)])),
    ]
    try:
        tally.add(_graph_case(name, Value, build, x, label, hypotheses=hyps, device=dev,
                              seed=seed, times=2))
    except CheckFailed as exc:
        raise _restate(exc, name, "calling backward() twice on the same graph should double "
                       "the leaves' gradients (as in torch)",
                       "the intermediate nodes kept their gradient from the first backward(), "
                       "so it was propagated again on top of the new one",
                       "at the start of backward(), after the topological sort, set grad = 0.0 "
                       "on every node that has children (the non-leaves), then self.grad = 1.0. "
                       "Leaves keep accumulating; torch does the same.") from None


def _whole_graphs(Value: Any, name: str, dev: str, seed: int, tally: _Tally) -> None:
    _derivatives(Value, name, dev, seed, tally)
    _reuse(Value, name, dev, seed, tally)
    _chains(Value, name, dev, seed, tally, _chain_table(), _order_table())
    _random_graphs(Value, name, dev, seed, tally)
    _deep_chain(Value, name, dev, seed, tally)
    _twice(Value, name, dev, seed, tally)


@public_check
def value_backward(Value: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Gradients of whole graphs: each operator alone, nodes used twice (+=), chains and
    diamonds (topological order), random expression graphs with shared sub-expressions, a
    chain of thousands of nodes (iterative sort) and backward() called twice (accumulation)."""
    dev = resolve_device(device)
    tally = _Tally()
    _whole_graphs(Value, "value_backward", dev, seed, tally)
    return tally.passed("value_backward", "leaf grads of whole graphs", dev)


@public_check
def value_class(Value: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """The whole `Value` engine: forward values of every operator, then `value_backward`."""
    dev = resolve_device(device)
    value_ops(Value, seed=seed)
    tally = _Tally()
    _whole_graphs(Value, "value_class", dev, seed, tally)
    return tally.passed("value_class", "values and leaf grads", dev)


# --------------------------------------------------------------------------------------------
# torch.autograd.Function
# --------------------------------------------------------------------------------------------

@public_check
def custom_sigmoid(Sigmoid: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check a `torch.autograd.Function` computing σ(x) with a hand-written backward:
    `Sigmoid.apply(x)` must equal torch.sigmoid(x), and its backward must give
    grad_output · σ(x)(1 − σ(x)) (checked with a random upstream gradient)."""
    dev = resolve_device(device)
    if not (isinstance(Sigmoid, type) and issubclass(Sigmoid, torch.autograd.Function)):
        raise CheckFailed("Sigmoid should be your class itself, a subclass of "
                          f"torch.autograd.Function; got {type(Sigmoid).__name__}.")
    rng = np.random.default_rng(seed)
    shapes = [(1,), (7,), (3, 5)]
    cases = [Case({"x": rng.uniform(0.2, 4.0, size=s) * rng.choice([-1.0, 1.0], size=s)},
                  extra={"w": rng.standard_normal(s)}) for s in shapes]
    cases.append(Case({"x": np.array([-30.0, -8.0, 8.0, 30.0])}, extra={"w": np.ones(4)},
                      label="saturated inputs"))

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = call(Sigmoid.apply, x, name="Sigmoid.apply")
        if not isinstance(y, torch.Tensor):
            raise CheckFailed(f"Sigmoid.apply(x) returned {type(y).__name__}; forward must "
                              "return a torch.Tensor.")
        return y

    tdev = devices.torch_device(dev)

    def values(inputs: dict, extra: dict) -> dict:
        x = torch.tensor(inputs["x"], dtype=torch.float64, device=tdev)
        return {"Sigmoid.apply(x)": forward(x).detach().cpu().numpy()}

    check_outputs("custom_sigmoid", values, lambda x, w: {"Sigmoid.apply(x)": torch.sigmoid(x)},
                  cases, device=dev, seed=seed)

    def learner(inputs: dict, extra: dict, _dout: None) -> dict:
        x = torch.tensor(inputs["x"], dtype=torch.float64, device=tdev, requires_grad=True)
        w = torch.tensor(extra["w"], dtype=torch.float64, device=tdev)
        y = forward(x)
        call(lambda: (y * w).sum().backward(), name="Sigmoid.backward")
        if x.grad is None:
            raise CheckFailed("x.grad is None after backward: Sigmoid.backward must return the "
                              "gradient with respect to x.")
        return {"x": x.grad.detach().cpu().numpy()}

    def ref(x: torch.Tensor, w: np.ndarray) -> torch.Tensor:
        return (torch.sigmoid(x) * torch.as_tensor(w, dtype=x.dtype, device=x.device)).sum()

    def local(fn: Callable) -> Callable:
        def h(x: torch.Tensor, w: np.ndarray) -> torch.Tensor:
            wt = torch.as_tensor(w, dtype=x.dtype, device=x.device)
            return (surrogate(torch.sigmoid(x), x, fn(x, wt)) * wt).sum()
        return h

    s = torch.sigmoid
    hyps = [
        Hypothesis("grad_output was ignored: backward returned σ'(x) alone",
                   "backward(ctx, grad_output) returns grad_output * σ(x) * (1 − σ(x)) — the "
                   "chain rule with the upstream gradient.",
                   local(lambda x, w: s(x) * (1 - s(x)) / w)),
        Hypothesis("σ(x)(1 − σ(x)) computed from x instead of σ(x): x(1 − x)",
                   "save the output in forward (ctx.save_for_backward(y)) and use y * (1 - y).",
                   local(lambda x, w: x * (1 - x))),
        Hypothesis("backward returned grad_output · σ(x): the derivative is missing (1 − σ)",
                   "σ'(x) = σ(x)(1 − σ(x)).", local(lambda x, w: s(x))),
        Hypothesis("backward passed grad_output through unchanged",
                   "multiply by the local derivative σ(x)(1 − σ(x)).",
                   local(lambda x, w: torch.ones_like(x))),
    ]
    return check_gradients("custom_sigmoid", learner, ref, cases, upstream=False,
                           labels={"x": "x.grad"}, hypotheses=hyps, device=dev, seed=seed)
