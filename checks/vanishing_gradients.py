"""Checks for notebook 06, vanishing and exploding gradients.

    from checks import vanishing_gradients as check
    check.layer_grad_norms(layer_grad_norms)       # ‖dW‖ per layer vs torch autograd
    check.clip_grad_norm(clip_grad_norm)           # vs torch.nn.utils.clip_grad_norm_
    check.xavier_init(xavier_init)                 # Glorot uniform statistics (seeded)
    check.he_init(he_init)                         # Kaiming normal (fan_in, ReLU gain) statistics
    check.residual_forward(residual_forward)       # out = x + relu(x @ W.T + b)
    check.residual_backward(residual_forward, residual_backward)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Hypothesis,
    as_float,
    as_float_array,
    call,
    check_gradients,
    check_outputs,
    compare,
    public_check,
    resolve_device,
    surrogate,
    unpack,
)
from .engine.diagnose import Diagnosis
from .engine.learner import assert_unmodified, snapshot
from .engine.report import failure

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


# --------------------------------------------------------------------------- layer_grad_norms

def _n_layers(params: Mapping[str, Any]) -> int:
    return sum(1 for k in params if k.startswith("W"))


def _torch_grads(x: torch.Tensor, params: Mapping[str, np.ndarray], y: np.ndarray,
                 activation: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """dW and db of the mean softmax cross-entropy of the MLP, by autograd (first layer first)."""
    L = _n_layers(params)
    dev = x.device
    W = [torch.tensor(params[f"W{i}"], dtype=torch.float64, device=dev, requires_grad=True)
         for i in range(1, L + 1)]
    b = [torch.tensor(params[f"b{i}"], dtype=torch.float64, device=dev, requires_grad=True)
         for i in range(1, L + 1)]
    with torch.enable_grad():
        h = x.detach()
        for i in range(L):
            h = h @ W[i].T + b[i]
            if i < L - 1:
                h = ACTIVATIONS[activation](h)
        loss = torch.nn.functional.cross_entropy(h, torch.as_tensor(y, device=dev))
        grads = torch.autograd.grad(loss, W + b)
    return list(grads[:L]), list(grads[L:])


def _norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.linalg.vector_norm(t) for t in tensors])


def _net_case(rng: np.random.Generator, sizes: list[int], n: int, activation: str,
              std: float | str, label: str) -> Case:
    """An MLP with layer sizes `sizes` (input first), N samples, weights N(0, std²) or "xavier"."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        s = math.sqrt(2.0 / (fan_in + fan_out)) if std == "xavier" else float(std)
        params[f"W{i}"] = rng.normal(0.0, s, size=(fan_out, fan_in))
        params[f"b{i}"] = rng.normal(0.0, 0.1, size=fan_out)
    x = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], size=n)
    return Case({"x": x}, extra={"params": params, "y": y, "activation": activation},
                label=f"{label} ({len(sizes) - 1} layers, {activation}, N = {n})", batch=n)


@public_check
def layer_grad_norms(layer_grad_norms: Callable, *, device: str | None = None,
                     seed: int = 0) -> CheckPassed:
    """Check `layer_grad_norms(params, x, y, activation)` -> [‖dW1‖, ‖dW2‖, ...].

    The Frobenius norm of each layer's weight gradient for the mean softmax cross-entropy of
    the MLP, compared entry by entry *relatively* with torch autograd (deep sigmoid nets have
    first-layer norms many orders of magnitude below the last layer's).
    """
    name = "layer_grad_norms"
    rng = np.random.default_rng(seed)
    cases = [
        _net_case(rng, [6, 7, 5, 4], 5, "relu", "xavier", "small net"),
        _net_case(rng, [3, 2], 1, "tanh", 0.8, "one linear layer, one sample"),
        _net_case(rng, [9, 8, 8, 8, 8, 3], 7, "tanh", "xavier", "tanh net"),
        _net_case(rng, [5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 3], 3, "sigmoid", 1.0,
                  "deep sigmoid net, N(0, 1) weights"),
        _net_case(rng, [8] + [10] * 20 + [4], 5, "sigmoid", "xavier",
                  "very deep sigmoid net (norms ~1e-12)"),
        _net_case(rng, [4, 16, 16, 16, 16, 16, 16, 5], 9, "relu", 0.4, "relu net"),
    ]

    def learner(inputs: dict, extra: dict) -> dict:
        params = {k: v.copy() for k, v in extra["params"].items()}
        before = snapshot(params)
        result = call(layer_grad_norms, params, inputs["x"], extra["y"].copy(),
                      extra["activation"], name=name)
        assert_unmodified(before, params, name)
        L = _n_layers(params)
        if isinstance(result, Mapping):
            raise CheckFailed(
                f"{name} returned a {type(result).__name__}; expected a list of {L} floats "
                "(‖dW1‖, ‖dW2‖, ...), first layer first."
            )
        if isinstance(result, (list, tuple)):
            values = [as_float(v, f"entry {i} of the list returned by {name}")
                      for i, v in enumerate(result)]
            result = np.array(values, dtype=np.float64)
        if isinstance(result, np.ndarray) and result.ndim == 1 and result.shape[0] != L:
            raise CheckFailed(
                f"{name} returned {result.shape[0]} norms for a {L}-layer net; expected one "
                "per layer (one per weight matrix W1..WL), first layer first."
            )
        return {"‖dW‖ per layer": as_float_array(result, f"the norms returned by {name}", (L,))}

    def reference(x, params, y, activation):
        dW, _ = _torch_grads(x, params, y, activation)
        return {"‖dW‖ per layer": _norms(dW)}

    def alt(fn):
        return lambda x, params, y, activation: {"‖dW‖ per layer": fn(*_torch_grads(x, params, y, activation))}

    hyps = [
        Hypothesis("norms in reverse order (last layer first)",
                   "The backward pass visits the layers last to first; return the norms first "
                   "layer first, e.g. reverse the list before returning it.",
                   alt(lambda dW, db: _norms(dW).flip(0))),
        Hypothesis("the norm of db instead of dW",
                   "Take the norm of each weight gradient grads['W1'], grads['W2'], ... "
                   "(keys starting with W), not of the bias gradients.",
                   alt(lambda dW, db: _norms(db))),
        Hypothesis("the squared norm (the square root is missing)",
                   "The Frobenius norm is sqrt(sum(dW**2)) = np.linalg.norm(dW).",
                   alt(lambda dW, db: _norms(dW) ** 2)),
        Hypothesis("the bias was included in the norm: sqrt(‖dW‖² + ‖db‖²)",
                   "Only the weight gradient dW counts: np.linalg.norm(grads[f'W{l}']).",
                   alt(lambda dW, db: torch.sqrt(_norms(dW) ** 2 + _norms(db) ** 2))),
        Hypothesis("the norms in reverse order, and of db instead of dW",
                   "Use the weight gradients (W keys), first layer first.",
                   alt(lambda dW, db: _norms(db).flip(0))),
    ]
    return check_outputs(name, learner, reference, cases, hypotheses=hyps, device=device,
                         seed=seed, rtol=1e-6, atol=0.0, compared="torch autograd")


# --------------------------------------------------------------------------- clip_grad_norm

def _torch_clip(grads: dict[str, torch.Tensor], max_norm: float) -> tuple[dict, torch.Tensor]:
    params = []
    for g in grads.values():
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return {k: p.grad for k, p in zip(grads, params, strict=True)}, total


def _clip_result(clipped: Mapping[str, torch.Tensor], total: torch.Tensor) -> dict:
    return {**{f"clipped {k}": v for k, v in clipped.items()}, "total_norm": total}


def _clip_hypothesis(scale_fn: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
                     returned_norm: Callable[[torch.Tensor, float], torch.Tensor] | None = None
                     ) -> Callable:
    """A buggy clip: either grads * scale_fn(total, max_norm) (the clipped arrays only) or
    total_norm = returned_norm(total, max_norm) (the norm only), so that each bug is judged
    on the values it changes."""
    def fn(max_norm, **grads):
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
        if returned_norm is not None:
            return {"total_norm": returned_norm(total, float(max_norm))}
        scale = scale_fn(total, float(max_norm))
        return {f"clipped {k}": g * scale for k, g in grads.items()}
    return fn


def _per_tensor(max_norm, **grads):
    clipped = {}
    for k, g in grads.items():
        n = torch.linalg.vector_norm(g)
        clipped[f"clipped {k}"] = g * torch.clamp(max_norm / (n + 1e-6), max=1.0)
    return clipped


def _grads(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]], scale: float) -> dict:
    return {k: rng.normal(0.0, scale, size=s) for k, s in shapes.items()}


def _total(grads: Mapping[str, np.ndarray]) -> float:
    return float(math.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))


@public_check
def clip_grad_norm(clip_grad_norm: Callable, *, device: str | None = None,
                   seed: int = 0) -> CheckPassed:
    """Check `clip_grad_norm(grads, max_norm)` -> (clipped_grads, total_norm).

    Must match torch.nn.utils.clip_grad_norm_ to ~1e-9: one global L2 norm over every array,
    scale = max_norm / (total_norm + 1e-6) applied when it is < 1, the original total norm
    returned, and neither the input dict nor its arrays modified.
    """
    name = "clip_grad_norm"
    rng = np.random.default_rng(seed)
    mlp = {"W1": (5, 3), "b1": (5,), "W2": (2, 5), "b2": (2,)}
    cases = []
    g = _grads(rng, mlp, 1e-5)
    cases.append(Case(g, extra={"max_norm": 0.5 * _total(g)},
                      label=f"tiny gradients (total norm {_total(g):.1e}), above max_norm"))
    g = _grads(rng, {"W1": (4, 3), "b1": (4,), "W2": (3, 4)}, 0.5)
    cases.append(Case(g, extra={"max_norm": 2.0 * _total(g)}, label="total norm below max_norm"))
    g = _grads(rng, mlp, 1.0)
    cases.append(Case(g, extra={"max_norm": 0.3 * _total(g)}, label="total norm above max_norm"))
    g = _grads(rng, {"W1": (7, 5), "b1": (7,), "conv": (2, 3, 4), "W2": (1, 7), "b2": (1,)}, 3.0)
    cases.append(Case(g, extra={"max_norm": 1}, label="several shapes, max_norm = 1 (an int)"))
    g = _grads(rng, mlp, 1e-4)
    cases.append(Case(g, extra={"max_norm": _total(g) * (1 + 1e-9)},
                      label=f"total norm {_total(g):.1e}, less than 1e-6 below max_norm"))
    g = _grads(rng, {"W": (3, 3), "b": (3,)}, 1.0)
    cases.append(Case(g, extra={"max_norm": 0.0}, label="max_norm = 0"))
    cases.append(Case({"W1": np.zeros((3, 2)), "b1": np.zeros(3)}, extra={"max_norm": 1.0},
                      label="all-zero gradients"))
    g = _grads(rng, {"W": (6, 5)}, 100.0)
    cases.append(Case(g, extra={"max_norm": 1e6}, label="one array, max_norm = 1e6"))

    def learner(inputs: dict, extra: dict) -> dict:
        keys = list(inputs)
        ids = {k: id(v) for k, v in inputs.items()}
        result = call(clip_grad_norm, inputs, extra["max_norm"], name=name)
        clipped, total = unpack(result, ("clipped_grads", "total_norm"), name)
        if list(inputs) != keys or any(id(inputs[k]) != ids[k] for k in keys):
            raise CheckFailed(
                f"{name} modified its input dict `grads` (it replaced, added or removed entries). "
                "The caller still needs the original gradients: build a new dict, e.g. "
                "{k: g * scale for k, g in grads.items()}."
            )
        if not isinstance(clipped, Mapping):
            raise CheckFailed(
                f"clipped_grads returned by {name} is a {type(clipped).__name__}; expected a "
                "dict with the same keys as grads."
            )
        missing = [k for k in keys if k not in clipped]
        if missing:
            raise CheckFailed(
                f"clipped_grads returned by {name} has no key {missing[0]!r} (keys: "
                f"{list(clipped)}); expected the same keys as grads: {keys}."
            )
        out = {f"clipped {k}": clipped[k] for k in keys}
        out["total_norm"] = as_float(total, f"total_norm returned by {name}")
        return out

    def reference(max_norm, **grads):
        return _clip_result(*_torch_clip(grads, max_norm))

    hyps = [
        Hypothesis("returned the clipped norm instead of the original total norm",
                   "torch returns the total norm *before* clipping (useful to log how large "
                   "the gradients really were).",
                   _clip_hypothesis(returned_norm=lambda t, m: t * torch.clamp(m / (t + 1e-6), max=1.0))),
        Hypothesis("returned min(total_norm, max_norm) instead of the original total norm",
                   "torch returns the total norm *before* clipping.",
                   _clip_hypothesis(returned_norm=lambda t, m: torch.clamp(t, max=m))),
        Hypothesis("clipped even when the total norm is below max_norm (gradients scaled up)",
                   "Scale only when max_norm / (total_norm + 1e-6) < 1: the factor is "
                   "min(1, max_norm / (total_norm + 1e-6)). Clipping never enlarges a gradient.",
                   _clip_hypothesis(lambda t, m: m / (t + 1e-6))),
        Hypothesis("per-tensor clipping instead of one global norm",
                   "Compute ONE norm over all arrays together, sqrt(sum of ‖g‖² over every "
                   "key), and scale every array by the same factor.",
                   _per_tensor),
        Hypothesis("no clipping when total_norm is less than 1e-6 below max_norm (tested "
                   "total_norm > max_norm)",
                   "torch does not test total_norm > max_norm: it always computes "
                   "scale = max_norm / (total_norm + 1e-6) and scales when scale < 1.",
                   _clip_hypothesis(lambda t, m: m / (t + 1e-6) if t > m else torch.ones_like(t))),
        Hypothesis("missing + 1e-6: scale = max_norm / total_norm (a different formula)",
                   "torch uses scale = max_norm / (total_norm + 1e-6), clamped to at most 1. "
                   "The 1e-6 matters for small norms and avoids a division by zero.",
                   _clip_hypothesis(lambda t, m: torch.clamp(m / t, max=1.0))),
        Hypothesis("did not clip at all",
                   "When max_norm / (total_norm + 1e-6) < 1, multiply every array by that factor.",
                   _clip_hypothesis(lambda t, m: torch.ones_like(t))),
    ]
    passed = check_outputs(name, learner, reference, cases, hypotheses=hyps, device=device,
                           seed=seed, rtol=1e-9, atol=1e-15,
                           compared="torch.nn.utils.clip_grad_norm_")
    passed.what = "clipped_grads and total_norm"
    return passed


# --------------------------------------------------------------------------- xavier / he init

Z = 6.0  # width of the confidence bands, in standard errors
FAN_CASES = [(7, 5), (256, 64), (48, 400)]
MIN_SAMPLES = 60_000


def _draw(fn: Callable, name: str, fan_in: int, fan_out: int, seed: int) -> np.ndarray:
    W = call(fn, fan_in, fan_out, np.random.default_rng(seed), name=name)
    if isinstance(W, np.ndarray) and W.shape == (fan_in, fan_out) and fan_in != fan_out:
        raise CheckFailed(
            f"{name}({fan_in}, {fan_out}, rng) returned shape {W.shape} = (fan_in, fan_out), "
            f"expected (fan_out, fan_in) = {(fan_out, fan_in)}: it is transposed. W has one row "
            "per output unit, as torch's nn.Linear.weight, so that z = x @ W.T + b."
        )
    return as_float_array(W, f"W returned by {name}({fan_in}, {fan_out}, rng)", (fan_out, fan_in))


def _stat_row(measured: float, expected: float, rtol: float) -> tuple[tuple[int, ...], Any]:
    return ((), compare(np.array(measured), np.array(expected), rtol, 0.0))


def _check_init(name: str, fn: Callable, family: str, seed: int) -> float:
    """Shape, reproducibility, mean, variance and distribution family of an init function."""
    worst = 0.0
    for fan_in, fan_out in FAN_CASES:
        label = f"fan_in = {fan_in}, fan_out = {fan_out}"
        s0 = seed * 1000 + fan_in * 7 + fan_out
        W = _draw(fn, name, fan_in, fan_out, s0)
        again = _draw(fn, name, fan_in, fan_out, s0)
        if not np.array_equal(W, again):
            raise CheckFailed(
                f"✗ {name}: two calls with identically seeded generators gave different "
                f"weights ({label}).\nLikely bug: random numbers drawn from NumPy's global "
                "state (np.random.randn, np.random.uniform) instead of the generator passed in.\n"
                "Hint: draw from the `rng` argument: rng.uniform(...) or rng.normal(...)."
            )
        other = _draw(fn, name, fan_in, fan_out, s0 + 1)
        if np.array_equal(W, other):
            raise CheckFailed(
                f"✗ {name}: generators with different seeds gave identical weights ({label}).\n"
                "Likely bug: the `rng` argument is ignored (e.g. a generator created with a "
                "fixed seed inside the function).\nHint: draw from the rng you are given."
            )
        n_draws = max(1, -(-MIN_SAMPLES // W.size)) if W.size >= 1000 else 0
        if not n_draws:
            continue  # a small layer: shape and reproducibility only
        w = np.concatenate([W.ravel(), other.ravel()] + [
            _draw(fn, name, fan_in, fan_out, s0 + 2 + i).ravel() for i in range(n_draws - 2)])
        worst = max(worst, _init_statistics(name, w, fan_in, fan_out, family, label, seed))
    return worst


def _init_statistics(name: str, w: np.ndarray, fan_in: int, fan_out: int, family: str,
                     label: str, seed: int) -> float:
    n = w.size
    if not np.all(np.isfinite(w)):
        raise CheckFailed(f"✗ {name}: the weights contain NaN or inf ({label}).")
    if family == "uniform":  # torch.nn.init.xavier_uniform_, gain 1
        var = 2.0 / (fan_in + fan_out)
        kurt = 1.8
        what = "Glorot/Xavier uniform U(−a, a), a = sqrt(6 / (fan_in + fan_out))"
        both = "Glorot averages both fans: a = sqrt(6 / (fan_in + fan_out))."
        candidates = {
            "used fan_in only: a = sqrt(6 / fan_in)": (2.0 / fan_in, both),
            "used fan_out only: a = sqrt(6 / fan_out)": (2.0 / fan_out, both),
            "used the standard deviation sqrt(2 / (fan_in + fan_out)) as the bound a": (
                2.0 / (3 * (fan_in + fan_out)),
                "U(−a, a) has variance a²/3, so the bound is a = sqrt(6 / (fan_in + fan_out)), "
                "not sqrt(2 / ...)."),
            "std instead of variance (sqrt missing): a = 6 / (fan_in + fan_out)": (
                (6.0 / (fan_in + fan_out)) ** 2 / 3,
                "The bound is a square root: a = np.sqrt(6 / (fan_in + fan_out))."),
        }
    else:  # torch.nn.init.kaiming_normal_(mode="fan_in", nonlinearity="relu")
        gain = torch.nn.init.calculate_gain("relu")
        var = gain**2 / fan_in
        kurt = 3.0
        what = "He/Kaiming normal N(0, 2 / fan_in)"
        candidates = {
            "used fan_out instead of fan_in": (
                2.0 / fan_out,
                "He init keeps the forward variance: std = sqrt(2 / fan_in), where fan_in is the "
                "number of inputs of the layer."),
            "std instead of variance (sqrt missing): std = 2 / fan_in": (
                (2.0 / fan_in) ** 2,
                "rng.normal(loc, scale) takes the standard deviation: scale = np.sqrt(2 / fan_in)."),
            "the ReLU gain 2 is missing: variance 1 / fan_in (LeCun init)": (
                1.0 / fan_in, "For ReLU the variance is 2 / fan_in: ReLU zeroes half of the inputs."),
            "Xavier's variance 2 / (fan_in + fan_out) instead of He's 2 / fan_in": (
                2.0 / (fan_in + fan_out), "He init for ReLU: std = sqrt(2 / fan_in)."),
        }
    bound = math.sqrt(3 * var)  # the uniform distribution with the expected variance
    mean, m2 = float(np.mean(w)), float(np.mean(w * w))
    k = float(np.mean(w**4)) / m2**2 if m2 > 0 else float("nan")
    largest = float(np.max(np.abs(w)))
    var_tol = Z * math.sqrt((kurt - 1) / n)  # relative standard error of the variance, times Z
    mean_tol = Z * math.sqrt(m2 / n)
    k_tol = max(Z * math.sqrt((24.0 if family == "normal" else 0.1) / n), 0.05)
    uniform_note = "for U(−a, a)" if family == "uniform" else "of a uniform with that variance"
    stats = (f"statistics over {n:,} weights ({label}), yours vs expected:\n"
             f"  mean      {mean:.3g} vs 0 (± {mean_tol:.2g})\n"
             f"  variance  {m2:.4g} vs {var:.4g} (± {var_tol:.1%})\n"
             f"  max |w|   {largest:.4g} vs the bound {bound:.4g} {uniform_note}\n"
             f"  kurtosis  {k:.3g} vs {kurt:g} ({'uniform' if kurt < 2 else 'normal'}, ± {k_tol:.2g})")
    rows = {"variance": _stat_row(m2, var, var_tol), "kurtosis": _stat_row(k, kurt, k_tol / kurt)}

    def fail(headline: str, bug: str, hint: str) -> CheckFailed:
        return CheckFailed(failure(name, headline, Diagnosis(bug, hint), label, rows, stats, seed))

    if abs(mean) > mean_tol:
        raise fail("the weights are not centred on 0",
                   "mean far from 0 (e.g. U(0, a) instead of U(−a, a), or a shift)",
                   "Initial weights are symmetric around 0: rng.uniform(-a, a, size) or "
                   "rng.normal(0, std, size).")
    if abs(m2 / var - 1) > var_tol:
        for bug, (v, hint) in candidates.items():
            if abs(m2 / v - 1) <= var_tol:
                raise fail("the variance of the weights is wrong", bug, hint)
        raise fail("the variance of the weights is wrong",
                   f"variance off by a factor {m2 / var:.3g}", f"Expected {what}.")
    beyond = largest > bound * (1 + 1e-9)
    if family == "uniform":
        if k > 2.4 and beyond:
            normal = abs(k - 3) < Z * math.sqrt(24 / n)
            raise fail("the weights are not uniformly distributed",
                       "Xavier normal instead of uniform (kurtosis ≈ 3, values beyond the bound a)"
                       if normal else "not a uniform distribution",
                       "Glorot uniform draws rng.uniform(-a, a, size=(fan_out, fan_in)) with "
                       "a = sqrt(6 / (fan_in + fan_out)) (torch.nn.init.xavier_uniform_).")
        hist = np.histogram(w, bins=10, range=(-bound, bound))[0]
        flat = np.all(np.abs(hist - n / 10) <= Z * math.sqrt(n * 0.1 * 0.9))
        if beyond or not flat or abs(k - kurt) > k_tol:
            raise fail("the weights are not uniformly distributed", "not a flat U(−a, a) distribution",
                       "Use rng.uniform(-a, a, size=(fan_out, fan_in)).")
    elif abs(k - kurt) > k_tol:
        uniformish = not beyond and k < 2.4
        raise fail("the weights are not normally distributed",
                   "uniform instead of normal (all |w| ≤ sqrt(3)·std, kurtosis ≈ 1.8)" if uniformish
                   else "not a normal distribution",
                   "He/Kaiming normal draws rng.normal(0.0, np.sqrt(2 / fan_in), size=(fan_out, fan_in)) "
                   "(torch.nn.init.kaiming_normal_ with nonlinearity='relu').")
    return abs(m2 / var - 1)


def _init_passed(name: str, worst: float) -> CheckPassed:
    return CheckPassed(name, "shape, reproducibility, mean, variance and distribution",
                       "the theory (seeded samples)", len(FAN_CASES), worst, None, "cpu")


@public_check
def xavier_init(xavier_init: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `xavier_init(fan_in, fan_out, rng)`: Glorot uniform, as torch.nn.init.xavier_uniform_.

    W has shape (fan_out, fan_in), is reproducible given the generator, and its entries are
    U(−a, a) with a = sqrt(6 / (fan_in + fan_out)) (variance 2 / (fan_in + fan_out)), judged
    by seeded statistics within 6 standard errors.
    """
    resolve_device(device)
    return _init_passed("xavier_init", _check_init("xavier_init", xavier_init, "uniform", seed))


@public_check
def he_init(he_init: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `he_init(fan_in, fan_out, rng)`: Kaiming normal with fan_in and the ReLU gain.

    As torch.nn.init.kaiming_normal_(W, nonlinearity="relu"): entries N(0, 2 / fan_in),
    W of shape (fan_out, fan_in), reproducible given the generator.
    """
    resolve_device(device)
    return _init_passed("he_init", _check_init("he_init", he_init, "normal", seed))


# --------------------------------------------------------------------------- residual block

def _residual_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for n, d in ((1, 3), (5, 4), (7, 9)):
        while True:  # both signs of z present, every z clear of relu's kink
            x = rng.normal(size=(n, d))
            W = rng.normal(0, 1 / math.sqrt(d), size=(d, d))
            b = rng.normal(0, 0.5, size=d)
            z = x @ W.T + b
            if (z > 0).any() and (z < 0).any() and np.abs(z).min() > 0.05:
                break
        cases.append(Case({"x": x, "W": W, "b": b}, batch=n))
    x = rng.normal(size=(3, 4))
    x[0] = 0.0
    W = rng.normal(size=(4, 4))
    b = np.array([0.0, 0.7, 0.0, -0.4])
    cases.append(Case({"x": x, "W": W, "b": b}, label="z = 0 planted (relu'(0) = 0)", batch=3,
                      fd=False))
    return cases


def _residual(x, W, b):
    return x + torch.relu(x @ W.T + b)


@public_check
def residual_forward(residual_forward: Callable, *, device: str | None = None,
                     seed: int = 0) -> CheckPassed:
    """Check `residual_forward(x, W, b)` -> (out, cache) with out = x + relu(x @ W.T + b)."""
    name = "residual_forward"

    def learner(inputs: dict, _extra: dict) -> dict:
        out, _cache = unpack(call(residual_forward, inputs["x"], inputs["W"], inputs["b"], name=name),
                             ("out", "cache"), name)
        return {"out": out}

    hyps = [
        Hypothesis("the skip connection is missing: out = relu(x @ W.T + b)",
                   "A residual block adds its input back: out = x + f(x).",
                   lambda x, W, b: {"out": torch.relu(x @ W.T + b)}),
        Hypothesis("relu applied after the sum: out = relu(x + x @ W.T + b)",
                   "The identity path is not passed through the activation: out = x + relu(z).",
                   lambda x, W, b: {"out": torch.relu(x + x @ W.T + b)}),
        Hypothesis("W not transposed: out = x + relu(x @ W + b)",
                   "W has shape (out, in): z = x @ W.T + b.",
                   lambda x, W, b: {"out": x + torch.relu(x @ W + b)}),
    ]
    return check_outputs(name, learner, lambda x, W, b: {"out": _residual(x, W, b)},
                         _residual_cases(seed), hypotheses=hyps, device=device, seed=seed)


@public_check
def residual_backward(residual_forward: Callable, residual_backward: Callable, *,
                      device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `residual_backward(dout, cache)` -> (dx, dW, db) against autograd and finite differences."""
    name = "residual_backward"

    def learner(inputs: dict, _extra: dict, dout: np.ndarray) -> dict:
        _out, cache = unpack(call(residual_forward, inputs["x"], inputs["W"], inputs["b"],
                                  name="residual_forward"), ("out", "cache"), "residual_forward")
        dx, dW, db = unpack(call(residual_backward, dout, cache, name=name), ("dx", "dW", "db"), name)
        return {"x": dx, "W": dW, "b": db}

    def no_skip_grad(x, W, b):
        return x.detach() + torch.relu(x @ W.T + b)

    def mask_at(x, W, b, local):
        z = x @ W.T + b
        return x + surrogate(torch.relu(z), z, local(x, z))

    hyps = [
        Hypothesis("the skip path is missing from dx (dx = only the branch's gradient)",
                   "out = x + f(x), so dx = dout + (branch gradient): the identity passes dout "
                   "straight through. That highway is what keeps deep residual nets trainable.",
                   no_skip_grad),
        Hypothesis("the relu derivative is missing (dz = dout)",
                   "dz = dout * (z > 0): the branch passes gradient only where relu was active.",
                   lambda x, W, b: mask_at(x, W, b, lambda x, z: torch.ones_like(z))),
        Hypothesis("the relu mask was taken from the block output (out > 0) instead of z > 0",
                   "Cache z = x @ W.T + b in the forward pass and use (z > 0).",
                   lambda x, W, b: mask_at(x, W, b, lambda x, z: (x + torch.relu(z) > 0).double())),
        Hypothesis("relu'(0) = 1 (mask z >= 0)",
                   "By convention relu'(0) = 0: use z > 0.",
                   lambda x, W, b: mask_at(x, W, b, lambda x, z: (z >= 0).double())),
    ]
    return check_gradients(name, learner, _residual, _residual_cases(seed), hypotheses=hyps,
                           device=device, seed=seed)

