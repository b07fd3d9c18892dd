"""Mutant and acceptance tests for checks.forward_pass (notebook 02)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import CheckFailed
from checks import forward_pass as check

# --------------------------------------------------------------------------- correct versions


def linear_forward(x, W, b):
    return x @ W.T + b, (x, W, b)


def linear_einsum(x, W, b):
    return np.einsum("ni,oi->no", x, W) + b, {"x": x, "W": W, "b": b}


def linear_loops(x, W, b):
    z = np.zeros((x.shape[0], W.shape[0]))
    for n in range(x.shape[0]):
        for o in range(W.shape[0]):
            z[n, o] = sum(x[n, i] * W[o, i] for i in range(W.shape[1])) + b[o]
    return z, SimpleNamespace(x=x, W=W)


def linear_column_form(x, W, b):
    """z = W a + b per sample (the textbook column-vector form), stacked."""
    z = np.stack([W @ x[n] + b for n in range(x.shape[0])])
    return z, [x, [W, b]]


def relu_forward(z):
    return np.maximum(z, 0), z


def relu_where(z):
    a = np.where(z > 0, z, 0.0)
    return a, {"a": a}


def relu_mask(z):
    mask = z > 0
    return z * mask, mask


def sigmoid_forward(z):
    a = 1 / (1 + np.exp(-z))
    return a, a


def sigmoid_tanh_form(z):
    return 0.5 * (1 + np.tanh(z / 2)), (z,)


def tanh_forward(z):
    a = np.tanh(z)
    return a, a


def tanh_exp_form(z):
    e2 = np.exp(-2 * np.abs(z))
    return np.sign(z) * (1 - e2) / (1 + e2), z


ACTS = {"relu": relu_forward, "sigmoid": sigmoid_forward, "tanh": tanh_forward}


def mlp_forward(params, x, activation="relu"):
    L = len(params) // 2
    caches, h = [], x
    for layer in range(1, L + 1):
        z, lin = linear_forward(h, params[f"W{layer}"], params[f"b{layer}"])
        if layer < L:
            h, act = ACTS[activation](z)
        else:
            h, act = z, None
        caches.append((lin, act))
    return h, caches


def mlp_dict_style(params, x, activation="relu"):
    L = max(int(k[1:]) for k in params if k.startswith("W"))
    f = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "tanh": np.tanh}[activation]
    caches, h = {}, x
    for layer in range(1, L + 1):
        caches[f"x{layer}"], caches[f"W{layer}"] = h, params[f"W{layer}"]
        h = np.einsum("ni,oi->no", h, params[f"W{layer}"]) + params[f"b{layer}"]
        caches[f"z{layer}"] = h
        if layer != L:
            h = f(h)
    return h, caches


@pytest.mark.parametrize("fn", [linear_forward, linear_einsum, linear_loops, linear_column_form])
def test_linear_correct_variants_pass(fn):
    assert check.linear_forward(fn)


@pytest.mark.parametrize("fn", [relu_forward, relu_where, relu_mask])
def test_relu_correct_variants_pass(fn):
    assert check.relu_forward(fn)


@pytest.mark.parametrize("fn", [sigmoid_forward, sigmoid_tanh_form])
def test_sigmoid_correct_variants_pass(fn):
    assert check.sigmoid_forward(fn)


@pytest.mark.parametrize("fn", [tanh_forward, tanh_exp_form])
def test_tanh_correct_variants_pass(fn):
    assert check.tanh_forward(fn)


@pytest.mark.parametrize("fn", [mlp_forward, mlp_dict_style])
def test_mlp_correct_variants_pass(fn):
    assert check.mlp_forward(fn)


def test_pass_message_is_one_line():
    text = str(check.linear_forward(linear_forward))
    assert text.startswith("✓ linear_forward") and "\n" not in text


# --------------------------------------------------------------------------- linear mutants

LINEAR_MUTANTS = [
    (lambda x, W, b: (x @ W + b, (x, W, b)), "W used without the transpose"),
    (lambda x, W, b: (x @ W.T, (x, W, b)), "bias b was not added"),
    (lambda x, W, b: (x @ W.T - b, (x, W, b)), "bias was subtracted"),
    (lambda x, W, b: ((x @ W.T + b).T, (x, W, b)), "transpose"),
    (lambda x, W, b: (x @ W.T + b, (W, b)), r"does not hold x \(the layer's input"),
    (lambda x, W, b: (x @ W.T + b, (x, b)), r"does not hold W"),
    (lambda x, W, b: (x @ W.T + b, None), "cache is None"),
    (lambda x, W, b: x @ W.T + b, r"should return 2 values \(z, cache\)"),
    (lambda x, W, b: ((x @ W.T + b).astype(np.float32), (x, W, b)), "float32"),
    (lambda x, W, b: ((x @ W.T + b).tolist(), (x, W, b)), "not a NumPy array"),
    (lambda x, W, b: (torch.as_tensor(x @ W.T + b), (x, W, b)), "torch.Tensor"),
    (lambda x, W, b: (None, (x, W, b)), "None"),
]


@pytest.mark.parametrize("fn,match", LINEAR_MUTANTS)
def test_linear_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.linear_forward(fn)


def test_linear_in_place_modification_is_reported():
    def mutating(x, W, b):
        x *= 1.0
        x += 0.0
        x[0, 0] = 5.0
        return x @ W.T + b, (x, W, b)
    with pytest.raises(CheckFailed, match="modified its input `x` in place"):
        check.linear_forward(mutating)


def test_not_implemented_and_exceptions():
    def todo(x, W, b):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.linear_forward(todo)

    def boom(x, W, b):
        return x @ W + b.reshape(1, -1, 1), None
    with pytest.raises(CheckFailed, match="raised ValueError"):
        check.linear_forward(boom)
    with pytest.raises(CheckFailed, match="is None"):
        check.linear_forward(None)


# --------------------------------------------------------------------------- activation mutants

ACT_MUTANTS = [
    (check.relu_forward, lambda z: (z, z), "ReLU was not applied"),
    (check.relu_forward, lambda z: (np.minimum(z, 0), z), r"min\(z, 0\)"),
    (check.relu_forward, lambda z: ((z > 0).astype(float), z), "mask z > 0"),
    (check.relu_forward, lambda z: (np.abs(z), z), r"\|z\|"),
    (check.relu_forward, lambda z: ((z > 0).astype(int) * 1, z), "integer"),
    (check.relu_forward, lambda z: (np.maximum(z, 0), None), r"does not hold z \(the input\) or a"),
    (check.relu_forward, lambda z: (np.maximum(z, 0), z.shape), "holding no arrays"),
    (check.sigmoid_forward, lambda z: (1 / (1 + np.exp(z)), z), "minus sign in the exponent"),
    (check.sigmoid_forward, lambda z: (np.tanh(z), z), "tanh instead of the sigmoid"),
    (check.sigmoid_forward, lambda z: (1 / (1 + np.exp(-z)), -z), "does not hold z"),
    (check.tanh_forward, lambda z: (1 / (1 + np.exp(-z)), z), "sigmoid instead of tanh"),
    (check.tanh_forward, lambda z: (2 / (1 + np.exp(-z)) - 1, z), r"factor 2 inside"),
    (check.tanh_forward, lambda z: (np.tanh(z)[..., :1], z), "has shape"),
]


@pytest.mark.parametrize("chk,fn,match", ACT_MUTANTS)
def test_activation_mutants_rejected(chk, fn, match):
    with pytest.raises(CheckFailed, match=match):
        chk(fn)


def test_nan_is_reported():
    with pytest.raises(CheckFailed, match="NaN"):
        check.sigmoid_forward(lambda z: (np.log(z) * 0 + 1 / (1 + np.exp(-z)), z))


# --------------------------------------------------------------------------- MLP mutants


def _mlp_mutant(*, act_last=False, skip=None, ignore_act=False, string_order=False,
                skip_last_hidden=False, cache=True):
    def fn(params, x, activation="relu"):
        L = len(params) // 2
        order = (sorted(int(k[1:]) for k in params if k[0] == "W") if not string_order
                 else [int(k[1:]) for k in sorted(k for k in params if k[0] == "W")])
        caches, h = [], x
        for i, layer in enumerate(order, start=1):
            z, lin = linear_forward(h, params[f"W{layer}"], params[f"b{layer}"])
            apply = i < L or act_last
            if skip is not None and i == skip:
                apply = False
            if skip_last_hidden and i == L - 1:
                apply = False
            if apply:
                h, act = ACTS["relu" if ignore_act else activation](z)
            else:
                h, act = z, None
            caches.append((lin, act) if cache else act)
        return h, caches
    return fn


MLP_MUTANTS = [
    (_mlp_mutant(act_last=True), "activation was also applied to the last layer"),
    (_mlp_mutant(skip=1), "activation is missing after the first hidden layer"),
    (_mlp_mutant(skip_last_hidden=True), "missing after the last hidden layer"),
    (_mlp_mutant(skip=99, act_last=False, ignore_act=True), r"`activation` argument was ignored"),
    (_mlp_mutant(string_order=True), "string order"),
    (_mlp_mutant(cache=False), r"does not hold the input of layer 1"),
    (lambda params, x, activation="relu": (mlp_forward(params, x, activation)[0], None),
     "caches are None"),
    (lambda params, x, activation="relu": mlp_forward(params, x, activation)[0],
     r"should return 2 values \(logits, caches\)"),
]


@pytest.mark.parametrize("fn,match", MLP_MUTANTS)
def test_mlp_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.mlp_forward(fn)


def test_mlp_without_any_activation():
    def linear_only(params, x, activation="relu"):
        L = len(params) // 2
        h, caches = x, []
        for layer in range(1, L + 1):
            h, c = linear_forward(h, params[f"W{layer}"], params[f"b{layer}"])
            caches.append(c)
        return h, caches
    # the 4-layer case comes first, so "first hidden" is not the explanation
    with pytest.raises(CheckFailed, match="no activation at all|missing after the first"):
        check.mlp_forward(linear_only)


def test_mlp_without_default_activation():
    def no_default(params, x, activation):
        return mlp_forward(params, x, activation)
    with pytest.raises(CheckFailed, match="raised TypeError"):
        check.mlp_forward(no_default)


def test_mlp_hard_coded_two_layers():
    def two_layers(params, x, activation="relu"):
        h = np.maximum(x @ params["W1"].T + params["b1"], 0)
        return h @ params["W2"].T + params["b2"], [(x, params["W1"]), (h, params["W2"])]
    with pytest.raises(CheckFailed):
        check.mlp_forward(two_layers)


def test_failure_is_deterministic_and_names_seed():
    def bad(x, W, b):
        return x @ W.T, (x, W)
    msgs = []
    for _ in range(2):
        with pytest.raises(CheckFailed) as info:
            check.linear_forward(bad, seed=3)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] and "seed=3" in msgs[0]


def test_cuda_requested_without_gpu_is_explained():
    if torch.cuda.is_available():
        assert check.linear_forward(linear_forward, device="cuda")
    else:
        from checks import CheckError
        with pytest.raises(CheckError, match="no CUDA GPU"):
            check.linear_forward(linear_forward, device="cuda")


# --------------------------------------------------------------------------- properties


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_correct_mlp_accepted_for_any_seed(seed):
    assert check.mlp_forward(mlp_forward, seed=seed)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.sampled_from(["act_last", "skip"]))
def test_activation_bugs_rejected_for_any_seed(seed, which):
    fn = _mlp_mutant(act_last=True) if which == "act_last" else _mlp_mutant(skip_last_hidden=True)
    match = "last layer" if which == "act_last" else "last hidden layer"
    with pytest.raises(CheckFailed, match=match):
        check.mlp_forward(fn, seed=seed)


def test_cuda_path_is_taken_when_a_gpu_is_reported(fake_gpu):
    used = fake_gpu
    assert "device cuda" in str(check.mlp_forward(mlp_forward))
    with pytest.raises(CheckFailed, match="last layer"):
        check.mlp_forward(_mlp_mutant(act_last=True), device="cuda")
    assert "cuda" in used


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_reference():
    assert "device cuda" in str(check.linear_forward(linear_forward, device="cuda"))
    assert "device cuda" in str(check.relu_forward(relu_forward, device="cuda"))
    assert "device cuda" in str(check.mlp_forward(mlp_forward, device="cuda"))
