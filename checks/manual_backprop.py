"""Checks for notebook 04, manual backpropagation.

    from checks import manual_backprop as check
    check.linear_backward(linear_forward, linear_backward)      # (dx, dW, db) of z = x @ W.T + b
    check.relu_backward(relu_forward, relu_backward)            # likewise sigmoid, tanh
    check.mlp_backward(mlp_forward, mlp_backward)               # the grads dict of a whole MLP
    check.mlp_loss_and_grads(mlp_loss_and_grads)                # loss value and its gradients
    check.mlp_gradients(mlp_loss_and_grads, device="cuda")      # the same, reference on the GPU

A backward function reads whatever its forward function put in the cache, so each check takes
the learner's forward function too: it runs the forward, checks its output (a wrong forward is
reported as such), then feeds the cache and a random upstream gradient to the backward.

The cases are chosen so the classic backprop bugs cannot hide: batches of N = 1 and odd N > 1
(a bias gradient not summed over the batch, or a loop that keeps one sample, only shows with
N > 1), non-square layers (transposes), square layers (W where W.T belongs), nets of 1 to 4
layers with all three activations (a missing activation derivative in a middle layer), inputs
kept away from ReLU's kink, and one case that plants pre-activations exactly at 0 on purpose
(compared with autograd only; relu'(0) = 0 as in PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Hypothesis,
    allclose,
    as_float,
    as_float_array,
    call,
    check_gradients,
    check_outputs,
    public_check,
    surrogate,
    unpack,
)

ACTIVATIONS = ("relu", "sigmoid", "tanh")
_MARGIN = 1e-3  # smallest |pre-activation| allowed in finite-difference cases (ReLU's kink)

_NP_ACT = {
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}
_T_ACT = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _t_prime(activation: str, z: torch.Tensor) -> torch.Tensor:
    """f'(z) in torch (relu'(0) = 0)."""
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    return 1 - torch.tanh(z) ** 2


class _IgnoresUpstream(torch.autograd.Function):
    """Forward: `value`; backward: `local` whatever the upstream gradient (a bug: forgot × da)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(local)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (local,) = ctx.saved_tensors
        return local, None, None


def _ignores_upstream(value: torch.Tensor, x: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    return _IgnoresUpstream.apply(x, value.detach(), local.detach())


# --------------------------------------------------------------------------- validation helpers


def _forward_ok(value: Any, expected: np.ndarray, fwd: str, bwd: str, what: str) -> None:
    """Fail clearly when the learner's forward function (not the backward) is wrong."""
    got = as_float_array(value, f"{what} returned by {fwd}", expected.shape)
    if not allclose(got, expected, 1e-6, 1e-8):
        raise CheckFailed(
            f"✗ {bwd}: your {fwd} does not compute the forward pass correctly ({what} differs "
            f"from the expected values), so {bwd} cannot be checked with its cache.\n"
            f"Hint: use the {fwd} given in this notebook (or fix yours with "
            f"checks.forward_pass.{fwd} first)."
        )


def _n_layers(params: Mapping[str, Any]) -> int:
    return sum(1 for k in params if k.startswith("W"))


def _grads_dict(grads: Any, params: Mapping[str, np.ndarray], name: str) -> dict[str, Any]:
    """Validate the grads dict's type and keys (the engine then checks each array)."""
    example = "{'W1': dW1, 'b1': db1, 'W2': dW2, ...}"
    if grads is None:
        raise CheckFailed(f"{name} returned None for the gradients. Return a dict {example}.")
    if not isinstance(grads, Mapping):
        raise CheckFailed(
            f"{name} should return the gradients as a dict {example} with the same keys as "
            f"params, but returned a {type(grads).__name__}."
        )
    keys, want = set(grads), list(params)
    missing = [k for k in want if k not in keys]
    if missing:
        L = _n_layers(params)
        if keys >= {"d" + k for k in want}:
            raise CheckFailed(
                f"{name}: the grads dict uses keys like 'dW1'; use the parameter names "
                f"themselves ('W1', 'b1', ...), so that params[k] -= lr * grads[k] works.")
        shifted = {f"{p}{i}" for i in range(L) for p in "Wb"}
        if keys >= shifted:
            raise CheckFailed(
                f"{name}: the grads keys are off by one layer: got {sorted(keys)}, expected "
                f"{want}. Layers are numbered from 1 (W1 is the first layer): with "
                "`for l in reversed(range(L))` the key of layer l is f'W{l + 1}'.")
        raise CheckFailed(
            f"{name}: the grads dict has keys {sorted(map(str, keys))}, but needs one per "
            f"parameter: {want} (missing: {missing}).")
    for k in want:
        value, shape = grads[k], np.shape(params[k])
        if isinstance(value, np.ndarray) and value.shape != shape:
            layer = int(k[1:])
            for other in (layer - 1, layer + 1):
                key = f"{k[0]}{other}"
                if key in params and np.shape(params[key]) == value.shape:
                    raise CheckFailed(
                        f"{name}: grads['{k}'] has shape {value.shape}, the shape of {key}, not "
                        f"{shape}: the gradients are stored under the wrong layer's key (off by "
                        f"one). In the backward loop, the layer whose dW you just computed is "
                        f"the one whose cache you used.")
    return dict(grads)


def _resample(draw: Callable[[], tuple[Any, list[np.ndarray]]], rng_tries: int = 200) -> Any:
    """Redraw until every pre-activation is at least _MARGIN away from 0."""
    for _ in range(rng_tries):
        value, pre = draw()
        if all(np.min(np.abs(z)) > _MARGIN for z in pre if z.size):
            return value
    raise RuntimeError("could not draw inputs away from the kink")


# --------------------------------------------------------------------------- linear_backward


def _linear_cases(rng: np.random.Generator) -> list[Case]:
    # (N, in, out): N > 1 and non-square first (bias sums, single sample, transposed dW show
    # as such), then N = 1, square layers (W vs W.T in dx), and a 1-feature layer.
    shapes = [(5, 4, 3), (1, 3, 6), (7, 5, 5), (3, 1, 4), (5, 6, 2)]
    cases = []
    for n, i, o in shapes:
        x = rng.standard_normal((n, i))
        W = rng.standard_normal((o, i)) / np.sqrt(i)
        b = rng.standard_normal(o)
        cases.append(Case({"x": x, "W": W, "b": b}, batch=n, label=f"N = {n}, {i} -> {o}"))
    return cases


def _linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x @ W.T + b


def _linear_dx_with_W(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Right z and dW, db, but dx = dz @ W.T (only possible for square W)."""
    if W.shape[0] != W.shape[1]:
        raise ValueError("square layers only")
    return x.detach() @ W.T + b + (x - x.detach()) @ W.detach()


_LINEAR_HYPOTHESES = [
    Hypothesis("dx computed with W.T instead of W (dx = dz @ W.T)",
               "z = x @ W.T + b, so dx = dz @ W: shape (N, out) @ (out, in) = (N, in). With a "
               "square W both products run, but only one is right.", _linear_dx_with_W),
]


@public_check
def linear_backward(linear_forward: Callable, linear_backward: Callable, *,
                    device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `linear_backward(dz, cache) -> (dx, dW, db)` for z = x @ W.T + b.

    dx = dz @ W, dW = dz.T @ x, db = dz.sum(axis=0), against autograd and finite differences
    for a random upstream gradient dz.
    """
    cases = _linear_cases(np.random.default_rng(seed))

    def learner(inputs: dict, _extra: dict, dout: np.ndarray) -> dict:
        expected = inputs["x"] @ inputs["W"].T + inputs["b"]
        z, cache = unpack(call(linear_forward, inputs["x"], inputs["W"], inputs["b"],
                               name="linear_forward"), ("z", "cache"), "linear_forward")
        _forward_ok(z, expected, "linear_forward", "linear_backward", "z")
        result = call(linear_backward, dout, cache, name="linear_backward")
        dx, dW, db = unpack(result, ("dx", "dW", "db"), "linear_backward")
        return {"x": dx, "W": dW, "b": db}

    return check_gradients("linear_backward", learner, _linear, cases, upstream_name="dz",
                           hypotheses=_LINEAR_HYPOTHESES, device=device, seed=seed)


# --------------------------------------------------------------------------- activations


def _activation_cases(rng: np.random.Generator, activation: str) -> list[Case]:
    shapes = [(5, 3), (1, 4), (7, 6), (3, 1)]
    cases = []
    for shape in shapes:
        z = rng.uniform(0.05, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        cases.append(Case({"z": z}, batch=shape[0], label=f"N = {shape[0]}"))
    cases.append(Case({"z": np.array([[-9.0, -4.0, 0.3], [4.0, 9.0, -0.3], [12.0, -12.0, 1.0]])},
                      batch=3, label="large |z| (saturation)"))
    if activation == "relu":
        z = np.array([[-1.5, 0.0, 0.5], [0.0, 2.0, -0.5], [1.0, -2.0, 0.0]])
        cases.append(Case({"z": z}, batch=3, fd=False,
                          label="z exactly 0 (the kink: relu'(0) = 0, as in PyTorch)"))
    return cases


def _act_hypotheses(activation: str) -> list[Hypothesis]:
    act = _T_ACT[activation]

    def local(fn: Callable) -> Callable:
        return lambda z: surrogate(act(z), z, fn(z))

    common = [
        Hypothesis("returned the upstream gradient unchanged (no activation derivative)",
                   "dz = da * f'(z): multiply the upstream gradient by the local derivative.",
                   local(torch.ones_like)),
        Hypothesis("returned f'(z) without multiplying by the upstream gradient da",
                   "Chain rule: dz = da * f'(z), elementwise.",
                   lambda z: _ignores_upstream(act(z), z, _t_prime(activation, z))),
        Hypothesis("multiplied da by the activation f(z) instead of its derivative f'(z)",
                   "dz = da * f'(z), not da * f(z).", local(act)),
    ]
    if activation == "relu":
        return [
            Hypothesis("relu'(0) = 1: the mask lets z = 0 through",
                       "By convention (and in PyTorch) relu'(0) = 0: use z > 0, not z >= 0.",
                       local(lambda z: (z >= 0).double())),
            Hypothesis("the mask is inverted (passes the gradient where z < 0)",
                       "relu'(z) is 1 where z > 0 and 0 elsewhere: dz = da * (z > 0).",
                       local(lambda z: (z < 0).double())),
            *common,
        ]
    if activation == "sigmoid":
        s = torch.sigmoid
        return [
            Hypothesis("derivative taken at the activation a = σ(z) instead of at z: σ'(a)",
                       "σ'(z) = a·(1 − a) with a = σ(z): apply a·(1 − a) to a itself, do not pass "
                       "a through σ again.", local(lambda z: s(s(z)) * (1 - s(s(z))))),
            Hypothesis("used z·(1 − z) instead of a·(1 − a)",
                       "The formula σ'(z) = a·(1 − a) needs the output a = σ(z), not z.",
                       local(lambda z: z * (1 - z))),
            *common,
        ]
    t = torch.tanh
    return [
        Hypothesis("derivative taken at the activation a = tanh(z) instead of at z: 1 − tanh(a)²",
                   "tanh'(z) = 1 − a² with a = tanh(z): square a itself, do not pass it through "
                   "tanh again.", local(lambda z: 1 - t(t(z)) ** 2)),
        Hypothesis("used 1 − z² instead of 1 − a²",
                   "tanh'(z) = 1 − tanh(z)² = 1 − a²: the formula needs the output a.",
                   local(lambda z: 1 - z * z)),
        Hypothesis("used 1 − a (the square is missing)", "tanh'(z) = 1 − a².",
                   local(lambda z: 1 - t(z))),
        *common,
    ]


def _check_activation(activation: str, forward: Callable, backward: Callable,
                      device: str | None, seed: int) -> CheckPassed:
    fwd, bwd = f"{activation}_forward", f"{activation}_backward"
    cases = _activation_cases(np.random.default_rng(seed), activation)
    np_act = _NP_ACT[activation]

    def learner(inputs: dict, _extra: dict, dout: np.ndarray) -> dict:
        expected = np_act(inputs["z"])
        a, cache = unpack(call(forward, inputs["z"], name=fwd), ("a", "cache"), fwd)
        _forward_ok(a, expected, fwd, bwd, "a")
        return {"z": call(backward, dout, cache, name=bwd)}

    act = _T_ACT[activation]
    return check_gradients(bwd, learner, lambda z: act(z), cases, upstream_name="da",
                           hypotheses=_act_hypotheses(activation), device=device, seed=seed)


@public_check
def relu_backward(relu_forward: Callable, relu_backward: Callable, *,
                  device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `relu_backward(da, cache) -> dz = da * (z > 0)` (relu'(0) = 0, as PyTorch)."""
    return _check_activation("relu", relu_forward, relu_backward, device, seed)


@public_check
def sigmoid_backward(sigmoid_forward: Callable, sigmoid_backward: Callable, *,
                     device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `sigmoid_backward(da, cache) -> dz = da * a * (1 - a)` with a = σ(z)."""
    return _check_activation("sigmoid", sigmoid_forward, sigmoid_backward, device, seed)


@public_check
def tanh_backward(tanh_forward: Callable, tanh_backward: Callable, *,
                  device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `tanh_backward(da, cache) -> dz = da * (1 - a**2)` with a = tanh(z)."""
    return _check_activation("tanh", tanh_forward, tanh_backward, device, seed)


# --------------------------------------------------------------------------- whole MLP


def _np_mlp(params: Mapping[str, np.ndarray], x: np.ndarray, activation: str
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits and the hidden pre-activations, in NumPy."""
    L = _n_layers(params)
    h, pre = x, []
    for layer in range(1, L + 1):
        z = h @ params[f"W{layer}"].T + params[f"b{layer}"]
        if layer == L:
            return z, pre
        pre.append(z)
        h = _NP_ACT[activation](z)
    raise AssertionError("unreachable")


# (label, activation, N, widths): orders matter for the diagnosis (the first failing case is
# explained), see the module docstring.
_MLP_SPECS = [
    ("1 layer (no activation)", "relu", 5, [6, 3]),
    ("3 layers, relu, square hidden layers", "relu", 5, [4, 6, 6, 6]),
    ("2 layers, relu", "relu", 7, [5, 8, 3]),
    ("4 layers, relu", "relu", 3, [4, 7, 5, 6, 3]),
    ("3 layers, sigmoid", "sigmoid", 1, [3, 5, 4, 2]),
    ("4 layers, tanh", "tanh", 7, [6, 5, 5, 5, 3]),
    ("2 layers, tanh", "tanh", 3, [2, 3, 4]),
    ("4 layers, sigmoid", "sigmoid", 5, [5, 4, 6, 3, 4]),
    ("2 layers, relu, N = 1", "relu", 1, [7, 5, 3]),
]


def _mlp_cases(rng: np.random.Generator, labels: bool) -> list[Case]:
    cases = []
    for label, act, n, widths in _MLP_SPECS:
        def draw(n: int = n, widths: list[int] = widths, act: str = act) -> tuple[Any, list]:
            x = rng.standard_normal((n, widths[0]))
            params = {}
            for layer, (i, o) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
                params[f"W{layer}"] = rng.standard_normal((o, i)) * (1.5 / np.sqrt(i))
                params[f"b{layer}"] = 0.5 * rng.standard_normal(o)
            _, pre = _np_mlp(params, x, act)
            return (x, params), (pre if act == "relu" else [])

        x, params = _resample(draw)
        extra: dict[str, Any] = {"activation": act}
        if labels:
            extra["y"] = rng.integers(0, widths[-1], size=n)
        cases.append(Case({"x": x, **params}, extra=extra, batch=n, label=label))
    # The kink, planted: sample 0 is all zeros and half the first-layer biases are 0, so those
    # pre-activations are exactly 0 (compared with autograd only).
    n, widths = 3, [4, 6, 3]
    x = rng.standard_normal((n, widths[0]))
    x[0] = 0.0
    params = {"W1": rng.standard_normal((6, 4)) / 2, "b1": rng.standard_normal(6),
              "W2": rng.standard_normal((3, 6)) / 2, "b2": rng.standard_normal(3)}
    params["b1"][::2] = 0.0
    extra = {"activation": "relu"}
    if labels:
        extra["y"] = rng.integers(0, 3, size=n)
    cases.append(Case({"x": x, **params}, extra=extra, batch=n, fd=False,
                      label="2 layers, relu, pre-activations exactly 0 (relu'(0) = 0)"))
    return cases


def _params_of(tensors: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tensors.items() if k[:1] in "Wb" and k[1:].isdigit()}


def _mlp_t(tensors: Mapping[str, torch.Tensor], activation: str, *,
           local: Callable[[int, list[torch.Tensor], str], torch.Tensor | None] | None = None,
           late: bool = False, dx_with_W: bool = False) -> torch.Tensor:
    """The MLP in torch; with the options, the autograd of a known bug.

    local(layer, zs, activation) -> the local derivative to use for hidden `layer` (None: the right one),
    where zs are all pre-activations (z1..zL, detached). late: dW, db of every hidden layer
    miss the activation derivative while dx still gets it (the spot-the-bug loop).
    dx_with_W: dx = dz @ W.T in every layer above the first (square layers only).
    """
    params = _params_of(tensors)
    x = tensors["x"]
    L = _n_layers(params)
    act = _T_ACT[activation]
    zs: list[torch.Tensor] = []
    if local is not None:
        with torch.no_grad():
            h = x
            for layer in range(1, L + 1):
                z = h @ params[f"W{layer}"].T + params[f"b{layer}"]
                zs.append(z)
                h = act(z)
    h = x
    for layer in range(1, L + 1):
        W, b = params[f"W{layer}"], params[f"b{layer}"]
        if dx_with_W and layer > 1:
            if W.shape[0] != W.shape[1]:
                raise ValueError("square layers only")
            z = h.detach() @ W.T + b + (h - h.detach()) @ W.detach()
        else:
            z = h @ W.T + b
        if layer == L:
            return z
        a = act(z)
        lg = local(layer, zs, activation) if local is not None else None
        if lg is not None:
            h = surrogate(a, z, lg)
        elif late:
            zp = h.detach() @ W.T + b
            zx = h @ W.detach().T
            h = (a.detach() + (zp - zp.detach())
                 + (zx - zx.detach()) * _t_prime(activation, z).detach())
        else:
            h = a
    raise AssertionError("unreachable")


def _mlp_reference(**kw: Any) -> torch.Tensor:
    return _mlp_t(kw, kw["activation"])


def _missing_in(which: int | None) -> Callable[..., torch.Tensor | None]:
    def local(layer: int, zs: list[torch.Tensor], _act: str) -> torch.Tensor | None:
        return torch.ones_like(zs[layer - 1]) if which in (None, layer) else None
    return local


def _mask_from(offset: int) -> Callable[..., torch.Tensor | None]:
    def local(layer: int, zs: list[torch.Tensor], _act: str) -> torch.Tensor | None:
        other = layer + offset  # 1-based layer whose z gives the mask
        if 1 <= other <= len(zs) and zs[other - 1].shape == zs[layer - 1].shape:
            return (zs[other - 1] > 0).to(zs[0].dtype)
        return None
    return local


def _relu_prime_one_at_zero(layer: int, zs: list[torch.Tensor], activation: str) -> torch.Tensor | None:
    return (zs[layer - 1] >= 0).to(zs[0].dtype) if activation == "relu" else None


def _at_activation(layer: int, zs: list[torch.Tensor], activation: str) -> torch.Tensor:
    return _t_prime(activation, _T_ACT[activation](zs[layer - 1]))


def _mlp_hypotheses(wrap: Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor]
                    ) -> list[Hypothesis]:
    """Known MLP-backward bugs; `wrap(logits, kw)` turns logits into the checked output."""

    def hyp(bug: str, hint: str, **options: Any) -> Hypothesis:
        def fn(**kw: Any) -> torch.Tensor:
            return wrap(_mlp_t(kw, kw["activation"], **options), kw)
        return Hypothesis(bug, hint, fn)

    hyps = [
        hyp("dW and db of a hidden layer computed before multiplying by the activation "
            "derivative (the spot-the-bug loop)",
            "In the backward loop, first turn the gradient of the layer's output a into the "
            "gradient of its pre-activation z (dz = da * f'(z)), and only then compute "
            "dW = dz.T @ a_prev and db = dz.sum(axis=0) from dz.", late=True),
        hyp("the activation derivative is missing in every hidden layer",
            "Going down through a hidden layer, multiply the gradient by f'(z) of that layer "
            "(relu_backward / sigmoid_backward / tanh_backward) before the linear backward.",
            local=_missing_in(None)),
    ]
    for layer in range(1, 4):
        hyps.append(hyp(
            f"the activation derivative is missing in hidden layer {layer} (only there)",
            f"Going down from layer {layer + 1} to layer {layer}, the gradient must pass through "
            f"the activation of layer {layer}: multiply by f'(z{layer}) before computing "
            f"dW{layer}, db{layer}.", local=_missing_in(layer)))
    hyps += [
        hyp("the activation derivative taken at the activation a instead of the "
            "pre-activation z (f'(a) instead of f'(z))",
            "f'(z) for sigmoid is a·(1 − a) and for tanh 1 − a²: apply the formula to the "
            "cached output a, do not compute f(a) again.", local=_at_activation),
        hyp("relu'(0) = 1: the ReLU mask lets z = 0 through",
            "By convention (and in PyTorch) relu'(0) = 0: the mask is z > 0, not z >= 0.",
            local=_relu_prime_one_at_zero),
        hyp("the ReLU mask of each hidden layer taken from the next layer's pre-activation",
            "Layer l's mask is (z_l > 0) with z_l that layer's own pre-activation: the "
            "cache of the layer you are going down into, not the one you just left.",
            local=_mask_from(+1)),
        hyp("the ReLU mask of each hidden layer taken from the previous layer's "
            "pre-activation", "Layer l's mask is (z_l > 0) with z_l that layer's own "
            "pre-activation, from its own cache.", local=_mask_from(-1)),
        hyp("dx computed with W.T instead of W (dx = dz @ W.T) when going down a layer",
            "z = x @ W.T + b gives dx = dz @ W, shape (N, out) @ (out, in). With square layers "
            "both products run, but only one is right.", dx_with_W=True),
    ]
    return hyps


def _call_mlp_forward(mlp_forward: Callable, params: dict, x: np.ndarray, activation: str,
                      bwd: str) -> Any:
    expected, _ = _np_mlp(params, x, activation)
    logits, caches = unpack(call(mlp_forward, params, x, activation=activation,
                                 name="mlp_forward"), ("logits", "caches"), "mlp_forward")
    _forward_ok(logits, expected, "mlp_forward", bwd, "logits")
    return caches


def _param_names(case: Case) -> list[str]:
    return list(_params_of(case.inputs))


@public_check
def mlp_backward(mlp_forward: Callable, mlp_backward: Callable, *, device: str | None = None,
                 seed: int = 0) -> CheckPassed:
    """Check `mlp_backward(dlogits, caches) -> {"W1": dW1, "b1": db1, ...}`.

    The caches come from the learner's `mlp_forward(params, x, activation)`; dlogits is a
    random upstream gradient. Nets of 1 to 4 layers, relu / sigmoid / tanh, N = 1, 3, 5, 7.
    """
    cases = _mlp_cases(np.random.default_rng(seed), labels=False)

    def learner(inputs: dict, extra: dict, dout: np.ndarray) -> dict:
        params = _params_of(inputs)
        caches = _call_mlp_forward(mlp_forward, params, inputs["x"], extra["activation"],
                                   "mlp_backward")
        grads = call(mlp_backward, dout, caches, name="mlp_backward")
        return _grads_dict(grads, params, "mlp_backward")

    names = sorted({k for c in cases for k in _param_names(c)}, key=lambda k: (int(k[1:]), k[0] != "W"))
    passed = None
    for case in cases:  # one call per case: the parameter names differ with the depth
        passed_one = check_gradients(
            "mlp_backward", learner, _mlp_reference, [case], wrt=_param_names(case),
            upstream_name="dlogits", hypotheses=_mlp_hypotheses(lambda out, kw: out),
            device=device, seed=seed)
        passed = _merge(passed, passed_one)
    assert passed is not None
    passed.what = ", ".join("d" + k for k in names)
    return passed


def _merge(acc: CheckPassed | None, new: CheckPassed) -> CheckPassed:
    if acc is None:
        return new
    acc.n_cases += new.n_cases
    acc.max_rel = max(acc.max_rel, new.max_rel)
    if new.max_rel_fd is not None:
        acc.max_rel_fd = max(acc.max_rel_fd or 0.0, new.max_rel_fd)
    if "finite" in new.compared:
        acc.compared = new.compared
    return acc


def _cross_entropy(logits: torch.Tensor, kw: Mapping[str, Any]) -> torch.Tensor:
    """Mean softmax cross-entropy (the maths of F.cross_entropy, which is slow on tiny inputs)."""
    y = torch.as_tensor(np.asarray(kw["y"]), dtype=torch.long, device=logits.device)
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -logp[torch.arange(logits.shape[0], device=logits.device), y].mean()


def _loss_reference(**kw: Any) -> torch.Tensor:
    return _cross_entropy(_mlp_reference(**kw), kw)


def _no_one_hot(logits: torch.Tensor, kw: Mapping[str, Any]) -> torch.Tensor:
    """Right loss, but dlogits = softmax / N (the one-hot was not subtracted)."""
    p = torch.softmax(logits, dim=1).detach()
    ce = _cross_entropy(logits, kw)
    return ce.detach() + ((logits - logits.detach()) * p).sum() / logits.shape[0]


def _loss_hypotheses() -> list[Hypothesis]:
    return [
        Hypothesis("dlogits = softmax / N: the one-hot of the true class was not subtracted",
                   "The gradient of the mean cross-entropy is (softmax(logits) − one_hot(y)) / N.",
                   lambda **kw: _no_one_hot(_mlp_reference(**kw), kw)),
        *_mlp_hypotheses(_cross_entropy),
    ]


@public_check
def mlp_loss_and_grads(mlp_loss_and_grads: Callable, *, device: str | None = None,
                       seed: int = 0) -> CheckPassed:
    """Check `mlp_loss_and_grads(params, x, y, activation) -> (loss, grads)`.

    loss is the mean softmax cross-entropy of the MLP's logits (as F.cross_entropy); grads
    holds its gradient for every parameter (vs autograd and finite differences).
    """
    name = "mlp_loss_and_grads"
    cases = _mlp_cases(np.random.default_rng(seed), labels=True)

    def run(inputs: dict, extra: dict) -> tuple[Any, dict]:
        params = _params_of(inputs)
        result = call(mlp_loss_and_grads, params, inputs["x"], np.array(extra["y"]),
                      activation=extra["activation"], name=name)
        return unpack(result, ("loss", "grads"), name)

    def loss_only(inputs: dict, extra: dict) -> dict:
        return {"loss": as_float(run(inputs, extra)[0], f"the loss returned by {name}")}

    def grads_only(inputs: dict, extra: dict, _dout: None) -> dict:
        return _grads_dict(run(inputs, extra)[1], _params_of(inputs), name)

    loss_hyps = [
        Hypothesis("the loss is averaged over all N·C logits instead of over the N samples",
                   "Cross-entropy: −log p(true class) per sample, then the mean over the batch "
                   "(divide by N only).",
                   lambda **kw: {"loss": _loss_reference(**kw) / _last_width(kw)}),
    ]
    check_outputs(name, loss_only, lambda **kw: {"loss": _loss_reference(**kw)}, cases,
                  hypotheses=loss_hyps, device=device, seed=seed,
                  compared="torch.nn.functional.cross_entropy")
    passed = None
    for case in cases:
        passed = _merge(passed, check_gradients(
            name, grads_only, _loss_reference, [case], wrt=_param_names(case), upstream=False,
            hypotheses=_loss_hypotheses(), device=device, seed=seed))
    assert passed is not None
    names = sorted({k for c in cases for k in _param_names(c)}, key=lambda k: (int(k[1:]), k[0] != "W"))
    passed.what = "the loss and " + ", ".join("d" + k for k in names)
    return passed


def _last_width(kw: Mapping[str, Any]) -> int:
    L = _n_layers(_params_of(kw))
    return int(kw[f"W{L}"].shape[0])


#: The name DESIGN.md uses: check.mlp_gradients(mlp_loss_and_grads, device="cuda").
mlp_gradients = mlp_loss_and_grads
