"""Checks for notebook 01, the chain rule.

    from checks import chain_rule as check
    check.central_difference(central_difference)
    check.sigmoid_prime(sigmoid_prime)      # likewise tanh_prime, relu_prime
    check.neuron_backward(neuron_backward)  # the chain rule through a composite function
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .engine import (
    Case,
    CheckPassed,
    Hypothesis,
    as_float,
    call,
    check_gradients,
    check_outputs,
    public_check,
    surrogate,
    unpack,
)

# Smooth scalar functions with known derivatives: (label, numpy f, torch f, point).
_SCALAR_FUNCTIONS = [
    ("sin at x = 0.7", np.sin, torch.sin, 0.7),
    ("x³ at x = 2", lambda x: x**3, lambda x: x**3, 2.0),
    ("exp at x = -1.5", np.exp, torch.exp, -1.5),
    ("log(1 + x²) at x = 3", lambda x: np.log1p(x * x), lambda x: torch.log1p(x * x), 3.0),
    ("x·sin(x) at x = 100", lambda x: x * np.sin(x), lambda x: x * torch.sin(x), 100.0),
]


@public_check
def central_difference(central_difference: Callable, *, device: str | None = None,
                       seed: int = 0) -> CheckPassed:
    """Check `central_difference(f, x, h=1e-5)` ≈ (f(x + h) − f(x − h)) / 2h.

    With the default h it must match the true derivative to ~1e-6; with a large h (0.1) it
    must equal the central formula itself, which tells a central difference from a one-sided
    one or a missing factor 2.
    """
    cases = []
    for label, f_np, f_t, x in _SCALAR_FUNCTIONS:
        cases.append(Case({"x": np.array(x)}, extra={"f": f_np, "f_t": f_t, "h": None}, label=label))
        cases.append(Case({"x": np.array(x)}, extra={"f": f_np, "f_t": f_t, "h": 0.1},
                          label=label + ", h = 0.1"))

    def learner(inputs: dict, extra: dict) -> dict:
        x = float(inputs["x"])
        args = (extra["f"], x) if extra["h"] is None else (extra["f"], x, extra["h"])
        value = call(central_difference, *args, name="central_difference")
        return {"f'(x)": as_float(value, "the value returned by central_difference")}

    def reference(x: torch.Tensor, f: Callable, f_t: Callable, h: float | None) -> dict:
        if h is None:  # the true derivative, by autograd
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(f_t(x), x)
            return {"f'(x)": grad}
        return {"f'(x)": (f_t(x + h) - f_t(x - h)) / (2 * h)}

    hypotheses = [
        Hypothesis("a one-sided (forward) difference (f(x + h) − f(x)) / h",
                   "The central difference evaluates f on both sides: (f(x + h) − f(x − h)) / (2h). "
                   "Its error shrinks like h² instead of h.",
                   lambda x, f, f_t, h: {"f'(x)": (f_t(x + (h or 1e-5)) - f_t(x)) / (h or 1e-5)}),
        Hypothesis("the step h was ignored",
                   "Use the h the caller passes (the default h=1e-5 only applies when none is given).",
                   lambda x, f, f_t, h: {"f'(x)": (f_t(x + 1e-5) - f_t(x - 1e-5)) / 2e-5}),
    ]
    return check_outputs("central_difference", learner, reference, cases, hypotheses=hypotheses,
                         device="cpu", seed=seed, rtol=1e-6, atol=0.0,
                         compared="the derivative (autograd) and the central formula")


def _elementwise_cases(rng: np.random.Generator, kink: bool) -> list[Case]:
    """Inputs of several shapes (N = 1, odd sizes, 3-D), kept away from 0 except when planted."""
    shapes = [(7,), (3, 5), (2, 3, 4), (1,)]  # richest first: it gives the clearest diagnosis
    cases = []
    for shape in shapes:
        x = rng.uniform(0.1, 4.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        cases.append(Case({"x": x}))
    cases.append(Case({"x": np.array([-30.0, -12.0, 12.0, 30.0])}, label="saturated inputs"))
    if kink:
        x = np.array([-1.5, -0.5, 0.0, 0.5, 1.5, 0.0])
        cases.append(Case({"x": x}, label="the kink at 0 (relu'(0) = 0 by convention)", fd=False))
    return cases


def _check_prime(name: str, fn: Callable, act: Callable, hypotheses: list[Hypothesis],
                 device: str | None, seed: int, kink: bool = False) -> CheckPassed:
    """Shared body of the elementwise derivative checks: gradient of sum(act(x))."""

    def learner(inputs: dict, _extra: dict, _dout: None) -> dict:
        return {"x": call(fn, inputs["x"], name=name)}

    cases = _elementwise_cases(np.random.default_rng(seed), kink)
    return check_gradients(name, learner, lambda x: act(x).sum(), cases, upstream=False,
                           labels={"x": f"{name}(x)"}, hypotheses=hypotheses, device=device,
                           seed=seed)


def _with_local_grad(act: Callable, local: Callable) -> Callable:
    """sum(act(x)) whose derivative is local(x): a learner's wrong derivative, as a reference."""
    return lambda x: surrogate(act(x), x, local(x)).sum()


@public_check
def sigmoid_prime(sigmoid_prime: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check σ'(x) = σ(x)(1 − σ(x)) elementwise against autograd and finite differences."""
    s = torch.sigmoid
    hyps = [
        Hypothesis("returned σ(x) itself, not its derivative",
                   "σ'(x) = σ(x)·(1 − σ(x)).", _with_local_grad(s, s)),
        Hypothesis("used x(1 − x) instead of σ(x)(1 − σ(x))",
                   "The formula is in terms of σ(x): compute s = σ(x) first, then s·(1 − s).",
                   _with_local_grad(s, lambda x: x * (1 - x))),
        Hypothesis("took the derivative at σ(x) instead of x: σ(σ(x))(1 − σ(σ(x)))",
                   "Apply s·(1 − s) to s = σ(x), not σ(s).",
                   _with_local_grad(s, lambda x: s(s(x)) * (1 - s(s(x))))),
        Hypothesis("a sign slip: σ(x)(1 + σ(x)) or −σ(x)(1 − σ(x))",
                   "σ'(x) = σ(x)·(1 − σ(x)) is always positive and at most 1/4.",
                   _with_local_grad(s, lambda x: s(x) * (1 + s(x)))),
    ]
    return _check_prime("sigmoid_prime", sigmoid_prime, s, hyps, device, seed)


@public_check
def tanh_prime(tanh_prime: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check tanh'(x) = 1 − tanh²(x) elementwise."""
    t = torch.tanh
    hyps = [
        Hypothesis("returned tanh(x) itself, not its derivative", "tanh'(x) = 1 − tanh(x)².",
                   _with_local_grad(t, t)),
        Hypothesis("1 − tanh(x) (the square is missing)", "tanh'(x) = 1 − tanh(x)².",
                   _with_local_grad(t, lambda x: 1 - t(x))),
        Hypothesis("1 − x² (the formula applied to x instead of tanh(x))",
                   "Compute t = tanh(x) first, then 1 − t².", _with_local_grad(t, lambda x: 1 - x * x)),
        Hypothesis("took the derivative at tanh(x) instead of x: 1 − tanh(tanh(x))²",
                   "Apply 1 − t² to t = tanh(x), not to tanh(t).",
                   _with_local_grad(t, lambda x: 1 - t(t(x)) ** 2)),
    ]
    return _check_prime("tanh_prime", tanh_prime, t, hyps, device, seed)


@public_check
def relu_prime(relu_prime: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check relu'(x) = 1 for x > 0, else 0 (relu'(0) = 0, as PyTorch), including x = 0."""
    r = torch.relu
    hyps = [
        Hypothesis("relu'(0) = 1: the kink at 0 is counted as positive",
                   "By convention (and in PyTorch) relu'(0) = 0: use x > 0, not x >= 0.",
                   _with_local_grad(r, lambda x: (x >= 0).double())),
        Hypothesis("returned relu(x) itself, not its derivative",
                   "relu'(x) is 1 where x > 0 and 0 elsewhere.", _with_local_grad(r, r)),
        Hypothesis("the mask is inverted (1 for x < 0)", "relu'(x) is 1 where x > 0.",
                   _with_local_grad(r, lambda x: (x < 0).double())),
    ]
    return _check_prime("relu_prime", relu_prime, r, hyps, device, seed, kink=True)


def _swapped_dot(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w · x, but with ∂/∂w = w and ∂/∂x = x (the two partial derivatives swapped)."""
    value = (w @ x).detach()
    return value + (w - w.detach()) @ w.detach() + (x - x.detach()) @ x.detach()


@public_check
def neuron_backward(neuron_backward: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `neuron_backward(w, x, b)` -> (dw, dx, db) for f = σ(w · x + b), by the chain rule."""
    rng = np.random.default_rng(seed)
    cases = [Case({"w": rng.normal(size=n), "x": rng.normal(size=n), "b": np.array(rng.normal())})
             for n in (1, 2, 5, 9)]

    def reference(w, x, b):
        return torch.sigmoid(w @ x + b)

    def learner(inputs: dict, _extra: dict, _dout: None) -> dict:
        result = call(neuron_backward, inputs["w"], inputs["x"], float(inputs["b"]),
                      name="neuron_backward")
        dw, dx, db = unpack(result, ("dw", "dx", "db"), "neuron_backward")
        return {"w": dw, "x": dx, "b": np.asarray(db) if np.isscalar(db) else db}

    hyps = [
        Hypothesis("the sigmoid's local derivative is missing",
                   "Chain rule: df/dw = σ'(z)·x with z = w·x + b; every path passes through σ'.",
                   lambda w, x, b: surrogate(torch.sigmoid(w @ x + b), w @ x + b, torch.ones(()))),
        Hypothesis("dw and dx swapped (dw = σ'(z)·w)",
                   "∂z/∂w = x and ∂z/∂x = w: each gradient picks up the *other* factor.",
                   lambda w, x, b: torch.sigmoid(_swapped_dot(w, x) + b)),
        Hypothesis("σ' taken at the output: σ(f)(1 − σ(f)) with f = σ(z)",
                   "σ'(z) = f·(1 − f) where f = σ(z) is the neuron's output.",
                   lambda w, x, b: surrogate(torch.sigmoid(w @ x + b), w @ x + b,
                                             torch.sigmoid(torch.sigmoid(w @ x + b))
                                             * (1 - torch.sigmoid(torch.sigmoid(w @ x + b))))),
    ]
    return check_gradients("neuron_backward", learner, reference, cases, upstream=False,
                           hypotheses=hyps, device=device, seed=seed)


@public_check
def graph_backward(graph_backward: Callable, *, device: str | None = None,
                   seed: int = 0) -> CheckPassed:
    """Check `graph_backward(x, y, z)` -> (dx, dy, dz) for f = (x + y) · z, worked by hand."""
    rng = np.random.default_rng(seed)
    points = [(-2.0, 5.0, -4.0)] + [tuple(rng.uniform(-3, 3, size=3)) for _ in range(4)]
    cases = [Case({"x": np.array(x), "y": np.array(y), "z": np.array(z)}) for x, y, z in points]

    def learner(inputs: dict, _extra: dict, _dout: None) -> dict:
        args = (float(inputs["x"]), float(inputs["y"]), float(inputs["z"]))
        dx, dy, dz = unpack(call(graph_backward, *args, name="graph_backward"),
                            ("dx", "dy", "dz"), "graph_backward")
        return {"x": dx, "y": dy, "z": dz}

    hyps = [
        Hypothesis("dz = z instead of x + y",
                   "f = q·z with q = x + y, so ∂f/∂z = q: the *other* factor of the product.",
                   lambda x, y, z: (x + y) * z.detach() + (z - z.detach()) * z.detach()),
        Hypothesis("dx and dy use q = x + y instead of z",
                   "∂f/∂x = ∂f/∂q · ∂q/∂x = z · 1.",
                   lambda x, y, z: surrogate((x + y) * z, x + y, (x + y).detach())),
    ]
    return check_gradients("graph_backward", learner, lambda x, y, z: (x + y) * z, cases,
                           upstream=False, hypotheses=hyps, device=device, seed=seed)
