"""Checks for notebook 02, the forward pass.

    from checks import forward_pass as check
    check.linear_forward(linear_forward)     # z = x @ W.T + b, and a cache with x and W
    check.relu_forward(relu_forward)         # likewise sigmoid_forward, tanh_forward
    check.mlp_forward(mlp_forward)           # any depth, three activations, caches

Every check compares the learner's outputs with the same maths in torch (float64), then
looks inside the returned cache(s) for what the backward pass (notebook 04) will need. A
cache may be a tuple, list, dict, array or object: it is searched generically.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Hypothesis,
    call,
    check_outputs,
    public_check,
    unpack,
)

ACTIVATIONS = ("relu", "sigmoid", "tanh")
_TORCH_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}


# --------------------------------------------------------------------------- caches

def cache_arrays(cache: Any, depth: int = 0) -> list[np.ndarray]:
    """Every NumPy array (and scalar-free container content) found inside `cache`.

    Tuples, lists, dicts (values) and plain objects (their attributes) are searched up to a
    few levels deep; torch tensors are converted so they are still found.
    """
    if depth > 6 or cache is None or isinstance(cache, (types.ModuleType, type, str, bytes)):
        return []
    if isinstance(cache, np.ndarray):
        return [cache]
    if type(cache).__module__.startswith("torch") and hasattr(cache, "detach"):
        return [cache.detach().cpu().numpy()]
    if isinstance(cache, Mapping):
        items = list(cache.values())
    elif isinstance(cache, (tuple, list)):
        items = list(cache)
    elif hasattr(cache, "__dict__") and not callable(cache):
        items = list(vars(cache).values())
    else:
        return []
    found: list[np.ndarray] = []
    for item in items:
        found.extend(cache_arrays(item, depth + 1))
    return found


def _holds(arrays: list[np.ndarray], target: np.ndarray) -> bool:
    """Whether one of `arrays` has the shape and the values of `target`."""
    for a in arrays:
        if a.shape == target.shape:
            try:
                if np.allclose(np.asarray(a, dtype=np.float64), target, rtol=1e-9, atol=1e-12):
                    return True
            except (TypeError, ValueError):
                continue
    return False


def _describe_cache(cache: Any) -> str:
    arrays = cache_arrays(cache)
    if cache is None:
        return "your cache is None"
    if not arrays:
        return f"your cache is a {type(cache).__name__} holding no arrays"
    shapes = ", ".join(str(a.shape) for a in arrays[:6]) + (", ..." if len(arrays) > 6 else "")
    return f"your cache is a {type(cache).__name__} holding arrays of shapes {shapes}"


def _require(cache: Any, needed: list[tuple[str, list[np.ndarray], str]], name: str,
             example: str) -> None:
    """Fail unless `cache` holds, for each (what, candidates, why), one of the candidates."""
    arrays = cache_arrays(cache)
    for what, candidates, why in needed:
        if not any(_holds(arrays, c) for c in candidates):
            raise CheckFailed(
                f"✗ {name}: the output is right, but the cache does not hold {what}.\n"
                f"Likely bug: the cache is missing something the backward pass needs: {why}\n"
                f"Hint: {_describe_cache(cache)}. Return the arrays backward will need, "
                f"e.g. {example}."
            )


# --------------------------------------------------------------------------- linear

def _linear_cases(rng: np.random.Generator) -> list[Case]:
    # (N, in, out): square first (so x @ W + b is recognised), then N = 1, odd N, non-square.
    shapes = [(3, 4, 4), (1, 3, 5), (5, 6, 2), (7, 4, 3), (9, 1, 6)]
    cases = []
    for n, d_in, d_out in shapes:
        cases.append(Case({"x": rng.normal(size=(n, d_in)), "W": rng.normal(size=(d_out, d_in)),
                           "b": rng.normal(size=d_out)}, batch=n))
    return cases


@public_check
def linear_forward(linear_forward: Callable, *, device: str | None = None,
                   seed: int = 0) -> CheckPassed:
    """Check `linear_forward(x, W, b)` -> (z, cache) with z = x @ W.T + b (W of shape (out, in)).

    z is compared with torch.nn.functional.linear; the cache must contain x and W, which
    linear_backward needs (dW = dz.T @ x, dx = dz @ W).
    """
    cases = _linear_cases(np.random.default_rng(seed))
    caches: list[tuple[Case, Any]] = []

    def learner(inputs: dict, _extra: dict) -> dict:
        result = call(linear_forward, inputs["x"], inputs["W"], inputs["b"], name="linear_forward")
        z, cache = unpack(result, ("z", "cache"), "linear_forward")
        caches.append((inputs, cache))
        return {"z": z}

    def reference(x, W, b):
        return {"z": torch.nn.functional.linear(x, W, b)}

    hyps = [
        Hypothesis("x @ W + b: W used without the transpose",
                   "W has shape (out, in), as in torch.nn.Linear: z = x @ W.T + b.",
                   lambda x, W, b: {"z": x @ W + b}),
        Hypothesis("the bias b was not added", "z = x @ W.T + b: add b (it broadcasts over the rows).",
                   lambda x, W, b: {"z": x @ W.T}),
        Hypothesis("the bias was subtracted", "z = x @ W.T + b, with a plus.",
                   lambda x, W, b: {"z": x @ W.T - b}),
    ]
    passed = check_outputs("linear_forward", learner, reference, cases, hypotheses=hyps,
                           device=device, seed=seed, compared="torch.nn.functional.linear")
    for inputs, cache in caches:
        _require(cache, [
            ("x (the layer's input, shape (N, in))", [inputs["x"]],
             "linear_backward computes dW = dz.T @ x from it."),
            ("W (shape (out, in))", [inputs["W"]], "linear_backward computes dx = dz @ W from it."),
        ], "linear_forward", "cache = (x, W, b)")
    passed.what = "z and the cache"
    return passed


# --------------------------------------------------------------------------- activations

def _activation_cases(rng: np.random.Generator) -> list[Case]:
    """Pre-activations of several shapes, away from ReLU's kink, plus saturated values."""
    cases = []
    for shape in [(1, 4), (3, 5), (7, 2), (5, 3, 2)]:
        z = rng.uniform(0.05, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        cases.append(Case({"z": z}, batch=shape[0]))
    cases.append(Case({"z": np.array([[-30.0, -12.0, 0.5], [12.0, 30.0, -0.5]])},
                      label="saturated inputs", batch=2))
    return cases


def _check_activation(name: str, fn: Callable, act: Callable, hyps: list[Hypothesis],
                      device: str | None, seed: int, needed_hint: str) -> CheckPassed:
    cases = _activation_cases(np.random.default_rng(seed))
    caches: list[tuple[Case, Any]] = []

    def learner(inputs: dict, _extra: dict) -> dict:
        a, cache = unpack(call(fn, inputs["z"], name=name), ("a", "cache"), name)
        caches.append((inputs, cache))
        return {"a": a}

    passed = check_outputs(name, learner, lambda z: {"a": act(z)}, cases, hypotheses=hyps,
                           device=device, seed=seed, compared=f"torch.{name.split('_')[0]}")
    for inputs, cache in caches:
        z = inputs["z"]
        a = act(torch.as_tensor(z)).numpy()
        candidates = [z, a]
        if name == "relu_forward":
            candidates.append((z > 0).astype(np.float64))
        _require(cache, [("z (the input) or a (the output)", candidates, needed_hint)], name,
                 "cache = z" if name == "relu_forward" else "cache = a")
    passed.what = "a and the cache"
    return passed


@public_check
def relu_forward(relu_forward: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `relu_forward(z)` -> (a, cache) with a = max(z, 0); the cache holds z (or a)."""
    hyps = [
        Hypothesis("returned z unchanged (the ReLU was not applied)", "a = max(z, 0) elementwise: np.maximum(z, 0).",
                   lambda z: {"a": z}),
        Hypothesis("kept the negative part: min(z, 0)", "ReLU keeps the positive part: np.maximum(z, 0).",
                   lambda z: {"a": torch.clamp(z, max=0)}),
        Hypothesis("returned the mask z > 0 instead of max(z, 0)",
                   "The mask is ReLU's derivative; ReLU itself is z where z > 0, else 0.",
                   lambda z: {"a": (z > 0).double()}),
        Hypothesis("|z| instead of max(z, 0)", "Negative inputs become 0, not their absolute value.",
                   lambda z: {"a": z.abs()}),
    ]
    return _check_activation("relu_forward", relu_forward, torch.relu, hyps, device, seed,
                             "relu_backward needs to know where z > 0.")


@public_check
def sigmoid_forward(sigmoid_forward: Callable, *, device: str | None = None,
                    seed: int = 0) -> CheckPassed:
    """Check `sigmoid_forward(z)` -> (a, cache) with a = 1 / (1 + exp(−z)); cache holds a (or z)."""
    hyps = [
        Hypothesis("1 / (1 + exp(z)): the minus sign in the exponent is missing",
                   "σ(z) = 1 / (1 + exp(−z)); σ(0) = 0.5 and σ grows with z.",
                   lambda z: {"a": torch.sigmoid(-z)}),
        Hypothesis("1 − exp(−z) or exp(−z) / (1 + exp(z)) style slip", "σ(z) = 1 / (1 + exp(−z)).",
                   lambda z: {"a": 1 - torch.exp(-z)}),
        Hypothesis("tanh instead of the sigmoid", "σ(z) = 1 / (1 + exp(−z)) lies in (0, 1).",
                   lambda z: {"a": torch.tanh(z)}),
    ]
    return _check_activation("sigmoid_forward", sigmoid_forward, torch.sigmoid, hyps, device, seed,
                             "sigmoid_backward computes σ'(z) = a(1 − a) from it.")


@public_check
def tanh_forward(tanh_forward: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `tanh_forward(z)` -> (a, cache) with a = tanh(z); the cache holds a (or z)."""
    hyps = [
        Hypothesis("the sigmoid instead of tanh", "np.tanh(z), whose values lie in (−1, 1).",
                   lambda z: {"a": torch.sigmoid(z)}),
        Hypothesis("2σ(z) − 1 = tanh(z / 2): the factor 2 inside is missing",
                   "tanh(z) = 2σ(2z) − 1, or simply np.tanh(z).",
                   lambda z: {"a": 2 * torch.sigmoid(z) - 1}),
        Hypothesis("(exp(z) − exp(−z)) / (exp(z) + exp(z)): a sign slip in the denominator",
                   "tanh(z) = (e^z − e^−z) / (e^z + e^−z), or simply np.tanh(z).",
                   lambda z: {"a": (torch.exp(z) - torch.exp(-z)) / (2 * torch.exp(z))}),
    ]
    return _check_activation("tanh_forward", tanh_forward, torch.tanh, hyps, device, seed,
                             "tanh_backward computes 1 − a² from it.")


# --------------------------------------------------------------------------- MLP

def n_layers(keys: Any) -> int:
    """The number of layers L in a parameter dict with keys W1, b1, ..., WL, bL."""
    return sum(1 for k in keys if isinstance(k, str) and k.startswith("W") and k[1:].isdigit())


def _mlp_torch(inputs: dict, activation: str, *, act_on_last: bool = False,
               skip_act: set[int] | None = None, act_name: str | None = None,
               order: list[int] | None = None) -> torch.Tensor:
    """The MLP in torch, with switches that reproduce known bugs."""
    L = n_layers(inputs)
    act = _TORCH_ACT[act_name or activation]
    h = inputs["x"]
    for i, layer in enumerate(order or range(1, L + 1), start=1):
        h = h @ inputs[f"W{layer}"].T + inputs[f"b{layer}"]
        if (i < L or act_on_last) and i not in (skip_act or set()):
            h = act(h)
    return h


def _mlp_cases(rng: np.random.Generator) -> list[Case]:
    """Depths 1, 2, 4 with non-square widths, N = 1 and odd N, for each activation; the
    default activation; and a 10-layer net (W10 sorts before W2 as a string)."""
    nets = [(7, [5, 8, 6, 4, 3]), (1, [6, 7, 3]), (5, [4, 3])]  # deepest first: it tells bugs apart
    cases = []

    def params(widths: list[int], n: int) -> dict[str, np.ndarray]:
        p = {"x": rng.normal(size=(n, widths[0]))}
        for layer, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
            p[f"W{layer}"] = rng.normal(size=(d_out, d_in)) / np.sqrt(d_in) * 1.5
            p[f"b{layer}"] = rng.normal(size=d_out) * 0.5
        return p

    def centred(p: dict[str, np.ndarray], activation: str | None) -> dict[str, np.ndarray]:
        # Shift the last bias so the logits have both signs (column means ±1): a ReLU wrongly
        # applied to the last layer then changes some logits without zeroing all of them.
        t = {k: torch.as_tensor(v) for k, v in p.items()}
        logits = _mlp_torch(t, activation or "relu").numpy()
        L = n_layers(p)
        signs = np.where(np.arange(logits.shape[1]) % 2 == 0, 1.0, -1.0)
        p[f"b{L}"] = p[f"b{L}"] - logits.mean(axis=0) + signs
        return p

    for activation in ACTIVATIONS:
        for n, widths in nets:
            cases.append(Case(centred(params(widths, n), activation),
                              extra={"activation": activation},
                              label=f"{len(widths) - 1} layer(s), {activation}", batch=n))
    cases.append(Case(centred(params([4, 6, 5, 3], 3), None), extra={"activation": None},
                      label="3 layers, default activation (relu)", batch=3))
    cases.append(Case(centred(params([3] * 11, 5), "tanh"), extra={"activation": "tanh"},
                      label="10 layers, tanh", batch=5))
    return cases


@public_check
def mlp_forward(mlp_forward: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `mlp_forward(params, x, activation="relu")` -> (logits, caches).

    L layers read from the keys W1, b1, ..., WL, bL; the activation after every layer but
    the last. Depths 1, 2, 4 and 10, non-square widths, N = 1 and odd N, all three
    activations and the default. The caches must hold every layer's input and weights.
    """
    cases = _mlp_cases(np.random.default_rng(seed))
    caches: list[tuple[dict, Any]] = []

    def learner(inputs: dict, extra: dict) -> dict:
        params = {k: v for k, v in inputs.items() if k != "x"}
        if extra["activation"] is None:
            result = call(mlp_forward, params, inputs["x"], name="mlp_forward")
        else:
            result = call(mlp_forward, params, inputs["x"], activation=extra["activation"],
                          name="mlp_forward")
        logits, cache = unpack(result, ("logits", "caches"), "mlp_forward")
        caches.append((inputs, extra, cache))
        return {"logits": logits}

    def hyp(**switches: Any) -> Callable:
        def fn(activation: str | None = None, **inputs: Any) -> dict:
            act = activation or "relu"
            s = dict(switches)
            if s.pop("skip_last_hidden", False):
                s["skip_act"] = {n_layers(inputs) - 1}
            if s.pop("string_order", False):
                s["order"] = [int(k[1:]) for k in sorted(k for k in inputs if k.startswith("W"))]
            return {"logits": _mlp_torch(inputs, act, **s)}
        return fn

    hyps = [
        Hypothesis("the activation was also applied to the last layer",
                   "The last layer gives the logits: no activation after it (the loss applies "
                   "softmax itself). Apply the activation for layers 1 .. L−1 only.",
                   hyp(act_on_last=True)),
        Hypothesis("the activation is missing after the first hidden layer",
                   "Every layer except the last is followed by the activation: check the "
                   "loop's range and the index where the activation is applied.",
                   hyp(skip_act={1})),
        Hypothesis("the activation is missing after the last hidden layer (an off-by-one)",
                   "Apply the activation for layers 1 .. L−1: in a loop over l = 1 .. L, the "
                   "condition is l < L, not l < L − 1.",
                   hyp(skip_last_hidden=True)),
        Hypothesis("no activation at all: the net is one big linear map",
                   "Apply the activation after every hidden layer.", hyp(skip_act=set(range(1, 20)))),
        Hypothesis("the `activation` argument was ignored (always ReLU)",
                   'Choose the function from the argument: "relu", "sigmoid" or "tanh".',
                   hyp(act_name="relu")),
        Hypothesis("the layers were taken in string order of the keys (W1, W10, W2, ...)",
                   "Read L from the keys, then loop l = 1 .. L and use params[f\"W{l}\"]; "
                   "sorted() on the keys puts W10 before W2.", hyp(string_order=True)),
    ]

    def reference(activation: str | None = None, **inputs: Any) -> dict:
        return {"logits": _mlp_torch(inputs, activation or "relu")}

    passed = check_outputs("mlp_forward", learner, reference, cases, hypotheses=hyps,
                           device=device, seed=seed, compared="the same MLP in PyTorch")
    for inputs, extra, cache in caches:
        act = _TORCH_ACT[extra["activation"] or "relu"]
        L = n_layers(inputs)
        h = inputs["x"]
        needed = []
        for layer in range(1, L + 1):
            needed.append((f"the input of layer {layer} (shape {h.shape})", [h],
                           f"the backward pass computes dW{layer} = dz.T @ (layer {layer}'s input)."))
            needed.append((f"W{layer}", [inputs[f"W{layer}"]],
                           f"the backward pass sends the gradient through layer {layer} with W{layer}."))
            z = torch.nn.functional.linear(torch.as_tensor(h), torch.as_tensor(inputs[f"W{layer}"]),
                                           torch.as_tensor(inputs[f"b{layer}"]))
            h = act(z).numpy() if layer < L else z.numpy()
        if cache is None:
            raise CheckFailed("✗ mlp_forward: the logits are right, but the caches are None.\n"
                              "Hint: collect every layer's cache in a list and return "
                              "(logits, caches).")
        _require(cache, needed, "mlp_forward",
                 "caches.append((linear_cache, activation_cache)) for every layer")
    passed.what = "logits and the caches"
    return passed
