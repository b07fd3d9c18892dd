"""Mutants and correct variants for notebook 01's checks (checks.chain_rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checks import CheckFailed
from checks import chain_rule as check


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- central_difference ----------------------------------------------------------------------

@pytest.mark.parametrize("impl", [
    lambda f, x, h=1e-5: (f(x + h) - f(x - h)) / (2 * h),
    lambda f, x, h=1e-5: float(np.mean([(f(x + h) - f(x)) / h, (f(x) - f(x - h)) / h])),
    lambda f, x, h=1e-5: 0.5 * (f(x + h) - f(x - h)) / h,
])
def test_central_difference_correct_forms(impl):
    assert check.central_difference(impl)


@pytest.mark.parametrize("impl, expected", [
    (lambda f, x, h=1e-5: (f(x + h) - f(x)) / h, "one-sided"),
    (lambda f, x, h=1e-5: (f(x + h) - f(x - h)) / h, "2× too large"),
    (lambda f, x, h=1e-5: (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, "step h was ignored"),
    (lambda f, x, h=1e-5: (f(x - h) - f(x + h)) / (2 * h), "sign flipped"),
    (lambda f, x, h=1e-5: None, "None"),
    (lambda f, x, h=1e-5: np.array([1.0, 2.0]), "single number"),
    (lambda f, x: (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, "TypeError"),
])
def test_central_difference_mutants(impl, expected):
    with pytest.raises(CheckFailed, match=expected):
        check.central_difference(impl)


# --- activation derivatives ------------------------------------------------------------------

@pytest.mark.parametrize("impl", [
    lambda x: sigmoid(x) * (1 - sigmoid(x)),
    lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2,
    lambda x: 0.25 / np.cosh(x / 2) ** 2,
    lambda x: np.vectorize(lambda v: math.exp(-abs(v)) / (1 + math.exp(-abs(v))) ** 2)(x).astype(float),
])
def test_sigmoid_prime_correct_forms(impl):
    assert check.sigmoid_prime(impl)


@pytest.mark.parametrize("impl, expected", [
    (sigmoid, "returned σ.x. itself"),
    (lambda x: x * (1 - x), r"x\(1 − x\)"),
    (lambda x: sigmoid(sigmoid(x)) * (1 - sigmoid(sigmoid(x))), "at σ.x. instead of x"),
    (lambda x: -sigmoid(x) * (1 - sigmoid(x)), "sign flipped"),
    (lambda x: 2 * sigmoid(x) * (1 - sigmoid(x)), "2× too large"),
    (lambda x: np.zeros_like(x), "all zeros"),
    (lambda x: (sigmoid(x) * (1 - sigmoid(x))).astype(np.float32), "float32"),
    (lambda x: (sigmoid(x) * (1 - sigmoid(x))).tolist(), "list"),
    (lambda x: (sigmoid(x) * (1 - sigmoid(x))).reshape(-1), "shape"),
])
def test_sigmoid_prime_mutants(impl, expected):
    with pytest.raises(CheckFailed, match=expected):
        check.sigmoid_prime(impl)


@pytest.mark.parametrize("impl", [lambda x: 1 - np.tanh(x) ** 2, lambda x: 1 / np.cosh(x) ** 2])
def test_tanh_prime_correct_forms(impl):
    assert check.tanh_prime(impl)


@pytest.mark.parametrize("impl, expected", [
    (np.tanh, "returned tanh"),
    (lambda x: 1 - np.tanh(x), "square is missing"),
    (lambda x: 1 - x**2, "applied to x"),
    (lambda x: 1 - np.tanh(np.tanh(x)) ** 2, "at tanh.x. instead of x"),
])
def test_tanh_prime_mutants(impl, expected):
    with pytest.raises(CheckFailed, match=expected):
        check.tanh_prime(impl)


@pytest.mark.parametrize("impl", [
    lambda x: (x > 0).astype(float), lambda x: np.where(x > 0, 1.0, 0.0), lambda x: np.heaviside(x, 0.0),
])
def test_relu_prime_correct_forms(impl):
    assert check.relu_prime(impl)


@pytest.mark.parametrize("impl, expected", [
    (lambda x: (x >= 0).astype(float), r"relu'\(0\) = 1"),
    (lambda x: np.maximum(x, 0), "returned relu"),
    (lambda x: (x < 0).astype(float), "inverted"),
    (lambda x: x > 0, "boolean"),
    (lambda x: np.heaviside(x, 0.5), "differ"),
])
def test_relu_prime_mutants(impl, expected):
    with pytest.raises(CheckFailed, match=expected):
        check.relu_prime(impl)


# --- graph and neuron ------------------------------------------------------------------------

def test_graph_backward():
    assert check.graph_backward(lambda x, y, z: (z, z, x + y))
    with pytest.raises(CheckFailed, match="dz = z"):
        check.graph_backward(lambda x, y, z: (z, z, z))
    with pytest.raises(CheckFailed, match="q = x . y instead of z"):
        check.graph_backward(lambda x, y, z: (x + y, x + y, x + y))
    with pytest.raises(CheckFailed, match="should return 3 values"):
        check.graph_backward(lambda x, y, z: (z, z))


def good_neuron(w, x, b):
    f = sigmoid(w @ x + b)
    return f * (1 - f) * x, f * (1 - f) * w, float(f * (1 - f))


def test_neuron_backward_correct_forms():
    assert check.neuron_backward(good_neuron)

    def loops(w, x, b):
        z = b + sum(wi * xi for wi, xi in zip(w, x, strict=True))
        dz = math.exp(-z) / (1 + math.exp(-z)) ** 2
        return np.array([dz * xi for xi in x]), np.array([dz * wi for wi in w]), dz

    assert check.neuron_backward(loops)


@pytest.mark.parametrize("impl, expected", [
    (lambda w, x, b: (x, w, 1.0), "local derivative is missing"),
    (lambda w, x, b: good_neuron(w, x, b)[1::-1] + (good_neuron(w, x, b)[2],), "swapped"),
    (lambda w, x, b: tuple(-g for g in good_neuron(w, x, b)), "sign flipped"),
    (lambda w, x, b: (lambda f: (sigmoid(f) * (1 - sigmoid(f)) * x, sigmoid(f) * (1 - sigmoid(f)) * w,
                                 float(sigmoid(f) * (1 - sigmoid(f)))))(sigmoid(w @ x + b)), "at the output"),
])
def test_neuron_backward_mutants(impl, expected):
    with pytest.raises(CheckFailed, match=expected):
        check.neuron_backward(impl)


def test_in_place_modification_of_the_input_is_reported():
    def mutating(x):
        x *= 1.0 + 1e-3
        return sigmoid(x) * (1 - sigmoid(x))

    with pytest.raises(CheckFailed, match="modified its input `x` in place"):
        check.sigmoid_prime(mutating)
