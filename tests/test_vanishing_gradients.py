"""Checks of notebook 06 (vanishing gradients): correct variants pass, mutants are diagnosed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import CheckFailed
from checks import vanishing_gradients as check

# ----------------------------------------------------------------------------- reference code

ACT = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(float)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: a * (1 - a)),
    "tanh": (np.tanh, lambda z, a: 1 - a * a),
}


def mlp_grads(params, x, y, activation, *, mean=True):
    L = sum(k.startswith("W") for k in params)
    f, fp = ACT[activation]
    caches, a = [], x
    for i in range(1, L + 1):
        z = a @ params[f"W{i}"].T + params[f"b{i}"]
        out = f(z) if i < L else z
        caches.append((a, z, out))
        a = out
    n = x.shape[0]
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d = p.copy()
    d[np.arange(n), y] -= 1
    if mean:
        d /= n
    grads = {}
    for i in range(L, 0, -1):
        a_prev, z, out = caches[i - 1]
        if i < L:
            d = d * fp(z, out)
        grads[f"W{i}"] = d.T @ a_prev
        grads[f"b{i}"] = d.sum(axis=0)
        d = d @ params[f"W{i}"]
    return grads


def norms_np(params, x, y, activation):
    g = mlp_grads(params, x, y, activation)
    return [float(np.linalg.norm(g[f"W{i}"])) for i in range(1, len(g) // 2 + 1)]


def norms_einsum_array(params, x, y, activation):
    g = mlp_grads(params, x, y, activation)
    L = len(g) // 2
    return np.array([np.sqrt(np.einsum("ij,ij->", g[f"W{i}"], g[f"W{i}"])) for i in range(1, L + 1)])


def norms_torch_autograd(params, x, y, activation):
    """A learner who uses torch autograd and returns plain floats."""
    L = sum(k.startswith("W") for k in params)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(x)
    for i in range(1, L + 1):
        h = h @ t[f"W{i}"].T + t[f"b{i}"]
        if i < L:
            h = getattr(torch, activation)(h)
    torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()
    return [t[f"W{i}"].grad.norm().item() for i in range(1, L + 1)]


def clip_np(grads, max_norm):
    total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        return {k: g * scale for k, g in grads.items()}, total
    return {k: g.copy() for k, g in grads.items()}, total


def clip_min_style(grads, max_norm):
    total = float(np.linalg.norm(np.concatenate([g.ravel() for g in grads.values()])))
    scale = min(1.0, max_norm / (total + 1e-6))
    return {k: scale * g for k, g in grads.items()}, total


def clip_returns_same_arrays_when_below(grads, max_norm):
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    scale = max_norm / (total + 1e-6)
    if scale >= 1:
        return dict(grads), np.float64(total)
    return {k: g * scale for k, g in grads.items()}, np.float64(total)


def xavier_np(fan_in, fan_out, rng):
    a = np.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def xavier_from_random(fan_in, fan_out, rng):
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return (2 * rng.random((fan_out, fan_in)) - 1) * a


def he_np(fan_in, fan_out, rng):
    return rng.normal(0.0, np.sqrt(2 / fan_in), size=(fan_out, fan_in))


def he_standard_normal(fan_in, fan_out, rng):
    return rng.standard_normal((fan_out, fan_in)) * math.sqrt(2.0) / math.sqrt(fan_in)


def residual_forward(x, W, b):
    z = x @ W.T + b
    return x + np.maximum(z, 0), (x, W, z)


def residual_backward(dout, cache):
    x, W, z = cache
    dz = dout * (z > 0)
    return dout + dz @ W, dz.T @ x, dz.sum(axis=0)


def residual_backward_einsum(dout, cache):
    x, W, z = cache
    dz = np.where(z > 0, dout, 0.0)
    return dout + np.einsum("nj,ji->ni", dz, W), np.einsum("nj,ni->ji", dz, x), np.einsum("nj->j", dz)


# ----------------------------------------------------------------------------- layer_grad_norms

@pytest.mark.parametrize("fn", [norms_np, norms_einsum_array, norms_torch_autograd])
def test_layer_grad_norms_accepts_correct_variants(fn):
    assert check.layer_grad_norms(fn)


def _norm_mutant(kind):
    def fn(params, x, y, activation):
        g = mlp_grads(params, x, y, activation, mean=(kind != "sum"))
        L = len(g) // 2
        W = [np.linalg.norm(g[f"W{i}"]) for i in range(1, L + 1)]
        b = [np.linalg.norm(g[f"b{i}"]) for i in range(1, L + 1)]
        return {
            "reverse": W[::-1],
            "db": b,
            "squared": [w**2 for w in W],
            "bias": [math.sqrt(w**2 + c**2) for w, c in zip(W, b, strict=True)],
            "sum": W,
            "short": W[1:],
        }[kind]
    return fn


@pytest.mark.parametrize("kind, message", [
    ("reverse", r"reverse order \(last layer first\)"),
    ("db", "norm of db instead of dW"),
    ("squared", "squared norm"),
    ("bias", "bias was included in the norm"),
    ("sum", "N times too large"),
    ("short", "returned 1 norms for a 2-layer net|norms for a 3-layer net"),
])
def test_layer_grad_norms_mutants(kind, message):
    with pytest.raises(CheckFailed, match=message):
        check.layer_grad_norms(_norm_mutant(kind))


def test_layer_grad_norms_is_relative_on_tiny_norms():
    """A learner off by 1e-3 relative on the first layer only of a deep sigmoid net is caught."""
    def fn(params, x, y, activation):
        out = norms_np(params, x, y, activation)
        if len(out) > 15:
            out[0] *= 1.001
        return out
    with pytest.raises(CheckFailed, match="very deep sigmoid"):
        check.layer_grad_norms(fn)


@pytest.mark.parametrize("value, message", [
    (None, "is None"),
    ({"W1": 1.0}, "expected a list of"),
    ("torch", "torch.Tensor"),
    ("nan", "NaN"),
])
def test_layer_grad_norms_bad_outputs(value, message):
    def fn(params, x, y, activation):
        L = sum(k.startswith("W") for k in params)
        if value == "torch":
            return [torch.tensor(1.0)] * L
        if value == "nan":
            return [float("nan")] * L
        return value
    with pytest.raises(CheckFailed, match=message):
        check.layer_grad_norms(fn)


def test_layer_grad_norms_detects_mutated_params_and_exceptions():
    def mutates(params, x, y, activation):
        out = norms_np(params, x, y, activation)
        params["W1"] *= 0
        return out

    def raises(params, x, y, activation):
        raise KeyError("W0")

    def todo(params, x, y, activation):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="modified its input `W1` in place"):
        check.layer_grad_norms(mutates)
    with pytest.raises(CheckFailed, match="raised KeyError"):
        check.layer_grad_norms(raises)
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.layer_grad_norms(todo)
    with pytest.raises(CheckFailed, match="is None"):
        check.layer_grad_norms(None)


# ----------------------------------------------------------------------------- clip_grad_norm

@pytest.mark.parametrize("fn", [clip_np, clip_min_style, clip_returns_same_arrays_when_below])
def test_clip_grad_norm_accepts_correct_variants(fn):
    assert check.clip_grad_norm(fn)


def _clip_mutant(kind):
    def fn(grads, max_norm):
        total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        scale = max_norm / (total + 1e-6)
        if kind == "inplace":
            if scale < 1:
                for g in grads.values():
                    g *= scale
            return grads, total
        if kind == "dict":
            if scale < 1:
                for k in grads:
                    grads[k] = grads[k] * scale
            return grads, total
        if kind == "per_tensor":
            out = {}
            for k, g in grads.items():
                n = np.linalg.norm(g)
                out[k] = g * min(1.0, max_norm / (n + 1e-6))
            return out, total
        if kind == "always":
            return {k: g * scale for k, g in grads.items()}, total
        if kind == "no_eps":
            s = min(1.0, max_norm / total) if total > 0 else 1.0
            return {k: g * s for k, g in grads.items()}, total
        if kind == "strict_gt":
            s = max_norm / (total + 1e-6) if total > max_norm else 1.0
            return {k: g * s for k, g in grads.items()}, total
        if kind == "clipped_norm":
            s = min(1.0, scale)
            return {k: g * s for k, g in grads.items()}, total * s
        if kind == "min_norm":
            s = min(1.0, scale)
            return {k: g * s for k, g in grads.items()}, min(total, max_norm)
        if kind == "no_clip":
            return {k: g.copy() for k, g in grads.items()}, total
        if kind == "div_by_zero":  # normalise, then rescale: 0/0 for all-zero gradients
            target = total * min(1.0, scale)
            return {k: g / total * target for k, g in grads.items()}, total
        raise AssertionError(kind)
    return fn


@pytest.mark.parametrize("kind, message", [
    ("inplace", "modified its input `W1` in place"),
    ("dict", "modified its input dict `grads`"),
    ("per_tensor", "per-tensor clipping instead of one global norm"),
    ("always", "clipped even when the total norm is below max_norm"),
    ("no_eps", r"missing \+ 1e-6"),
    ("strict_gt", "less than 1e-6 below max_norm"),
    ("clipped_norm", "returned the clipped norm instead of the original total norm"),
    ("min_norm", r"min\(total_norm, max_norm\)"),
    ("no_clip", "did not clip at all"),
    ("div_by_zero", "NaN"),
])
def test_clip_grad_norm_mutants(kind, message):
    with np.errstate(all="ignore"):
        with pytest.raises(CheckFailed, match=message):
            check.clip_grad_norm(_clip_mutant(kind))


@pytest.mark.parametrize("result, message", [
    (None, r"should return 2 values"),
    (("list", 1.0), "expected a dict with the same keys"),
    (("missing", 1.0), "has no key"),
    (("ok", "torch"), "torch.Tensor"),
    (("ok", np.ones(2)), "expected a single number"),
])
def test_clip_grad_norm_bad_outputs(result, message):
    def fn(grads, max_norm):
        clipped, total = clip_np(grads, max_norm)
        if result is None:
            return clipped
        kind, t = result
        if kind == "list":
            return list(clipped.values()), total
        if kind == "missing":
            clipped.pop(next(iter(clipped)))
            return clipped, total
        return clipped, (torch.tensor(total) if isinstance(t, str) else t)
    with pytest.raises(CheckFailed, match=message):
        check.clip_grad_norm(fn)


@settings(max_examples=20, deadline=None)
@given(st.floats(0.01, 100.0), st.integers(1, 4), st.integers(0, 10_000))
def test_clip_np_matches_torch_on_random_inputs(max_norm, n_keys, seed):
    """Property: the accepted reference agrees with torch for any max_norm and any shapes."""
    rng = np.random.default_rng(seed)
    grads = {f"g{i}": rng.normal(size=tuple(rng.integers(1, 5, size=rng.integers(1, 3))))
             for i in range(n_keys)}
    clipped, total = clip_np(grads, max_norm)
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads.values()]
    for p, g in zip(params, grads.values(), strict=True):
        p.grad = torch.tensor(g)
    t = torch.nn.utils.clip_grad_norm_(params, max_norm)
    assert abs(float(t) - total) <= 1e-12 * max(1.0, total)
    for p, k in zip(params, grads, strict=True):
        np.testing.assert_allclose(clipped[k], p.grad.numpy(), rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- init

@pytest.mark.parametrize("fn", [xavier_np, xavier_from_random])
def test_xavier_accepts_correct_variants(fn):
    assert check.xavier_init(fn)


@pytest.mark.parametrize("fn", [he_np, he_standard_normal])
def test_he_accepts_correct_variants(fn):
    assert check.he_init(fn)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inits_accept_correct_variants_on_other_seeds(seed):
    assert check.xavier_init(xavier_np, seed=seed)
    assert check.he_init(he_np, seed=seed)


XAVIER_MUTANTS = {
    "normal": (lambda fi, fo, rng: rng.normal(0, np.sqrt(2 / (fi + fo)), size=(fo, fi)),
               "Xavier normal instead of uniform"),
    "transposed": (lambda fi, fo, rng: xavier_np(fo, fi, rng), "transposed"),
    "fan_in": (lambda fi, fo, rng: rng.uniform(-1, 1, size=(fo, fi)) * np.sqrt(6 / fi),
               "used fan_in only"),
    "std_bound": (lambda fi, fo, rng: rng.uniform(-1, 1, size=(fo, fi)) * np.sqrt(2 / (fi + fo)),
                  "standard deviation .* as the bound"),
    "no_sqrt": (lambda fi, fo, rng: rng.uniform(-1, 1, size=(fo, fi)) * 6 / (fi + fo),
                "std instead of variance"),
    "positive": (lambda fi, fo, rng: rng.uniform(0, np.sqrt(6 / (fi + fo)), size=(fo, fi)),
                 "mean far from 0"),
    "global": (lambda fi, fo, rng: np.random.uniform(-1, 1, (fo, fi)) * np.sqrt(6 / (fi + fo)),
               "global state"),
    "fixed_seed": (lambda fi, fo, rng: xavier_np(fi, fo, np.random.default_rng(0)),
                   "`rng` argument is ignored"),
    "float32": (lambda fi, fo, rng: xavier_np(fi, fo, rng).astype(np.float32), "float32"),
    "list": (lambda fi, fo, rng: xavier_np(fi, fo, rng).tolist(), "Python list"),
    "triangular": (lambda fi, fo, rng: (rng.uniform(-1, 1, (fo, fi)) + rng.uniform(-1, 1, (fo, fi)))
                   * np.sqrt(3 / (fi + fo)), "not a (flat U|uniform distribution)"),
}


@pytest.mark.parametrize("kind", list(XAVIER_MUTANTS))
def test_xavier_mutants(kind):
    fn, message = XAVIER_MUTANTS[kind]
    with pytest.raises(CheckFailed, match=message):
        check.xavier_init(fn)


HE_MUTANTS = {
    "fan_out": (lambda fi, fo, rng: rng.normal(0, np.sqrt(2 / fo), size=(fo, fi)),
                "used fan_out instead of fan_in"),
    "uniform": (lambda fi, fo, rng: rng.uniform(-1, 1, size=(fo, fi)) * np.sqrt(6 / fi),
                "uniform instead of normal"),
    "no_sqrt": (lambda fi, fo, rng: rng.normal(0, 2 / fi, size=(fo, fi)),
                r"std instead of variance \(sqrt missing\)"),
    "lecun": (lambda fi, fo, rng: rng.normal(0, np.sqrt(1 / fi), size=(fo, fi)), "gain 2 is missing"),
    "xavier_var": (lambda fi, fo, rng: rng.normal(0, np.sqrt(2 / (fi + fo)), size=(fo, fi)),
                   "Xavier's variance"),
    "transposed": (lambda fi, fo, rng: he_np(fo, fi, rng), "transposed"),
    "none": (lambda fi, fo, rng: None, "is None"),
    "torch": (lambda fi, fo, rng: torch.nn.init.kaiming_normal_(torch.empty(fo, fi)), "torch.Tensor"),
    "todo": (lambda fi, fo, rng: (_ for _ in ()).throw(NotImplementedError()), "not implemented yet"),
    "laplace": (lambda fi, fo, rng: rng.laplace(0, np.sqrt(1 / fi), size=(fo, fi)),
                "not a normal distribution"),
}


@pytest.mark.parametrize("kind", list(HE_MUTANTS))
def test_he_mutants(kind):
    fn, message = HE_MUTANTS[kind]
    with pytest.raises(CheckFailed, match=message):
        check.he_init(fn)


def test_init_failure_reports_statistics():
    with pytest.raises(CheckFailed) as info:
        check.he_init(HE_MUTANTS["fan_out"][0])
    text = str(info.value)
    assert "variance" in text and "kurtosis" in text and "seed=0" in text


# ----------------------------------------------------------------------------- residual block

def test_residual_accepts_correct_variants():
    assert check.residual_forward(residual_forward)
    assert check.residual_backward(residual_forward, residual_backward)
    assert check.residual_backward(residual_forward, residual_backward_einsum)


def test_residual_forward_mutants():
    with pytest.raises(CheckFailed, match="skip connection is missing"):
        check.residual_forward(lambda x, W, b: (np.maximum(x @ W.T + b, 0), None))
    with pytest.raises(CheckFailed, match="relu applied after the sum"):
        check.residual_forward(lambda x, W, b: (np.maximum(x + x @ W.T + b, 0), None))
    with pytest.raises(CheckFailed, match="should return 2 values"):
        check.residual_forward(lambda x, W, b: x + np.maximum(x @ W.T + b, 0))


@pytest.mark.parametrize("kind, message", [
    ("no_skip", "skip path is missing from dx"),
    ("no_mask", "relu derivative is missing"),
    ("out_mask", r"mask was taken from the block output"),
    ("ge", r"relu'\(0\) = 1"),
    ("sum_db", "shape"),
])
def test_residual_backward_mutants(kind, message):
    def fwd(x, W, b):
        z = x @ W.T + b
        out = x + np.maximum(z, 0)
        return out, (x, W, z, out)

    def bwd(dout, cache):
        x, W, z, out = cache
        mask = {"no_mask": np.ones_like(z), "out_mask": (out > 0) * 1.0,
                "ge": (z >= 0) * 1.0}.get(kind, (z > 0) * 1.0)
        dz = dout * mask
        dx = dz @ W if kind == "no_skip" else dout + dz @ W
        db = dz if kind == "sum_db" else dz.sum(axis=0)
        return dx, dz.T @ x, db

    with pytest.raises(CheckFailed, match=message):
        check.residual_backward(fwd, bwd)


def test_checks_are_deterministic_and_quiet(capsys):
    fn = _clip_mutant("per_tensor")
    messages = []
    for _ in range(2):
        with pytest.raises(CheckFailed) as info:
            check.clip_grad_norm(fn)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert capsys.readouterr().err == ""
