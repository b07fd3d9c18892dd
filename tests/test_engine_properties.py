"""Property tests of the engine (hypothesis): no false alarms on correct gradients written in
many equivalent forms; every single-entry corruption above tolerance caught; any garbage the
learner returns gets a CheckFailed, never an exception from inside `checks`."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import CheckFailed, gradcheck

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def linear(x, W, b):
    return torch.tanh(x @ W.T + b)


def tanh_linear_reference_forms():
    """Correct gradients of sum(tanh(x Wᵀ + b) * dout), in equivalent styles."""

    def matmul(x, W, b, d):
        dz = d * (1 - np.tanh(x @ W.T + b) ** 2)
        return dz @ W, dz.T @ x, dz.sum(axis=0)

    def einsum(x, W, b, d):
        dz = d * (1 - np.tanh(np.einsum("ni,oi->no", x, W) + b) ** 2)
        return np.einsum("no,oi->ni", dz, W), np.einsum("no,ni->oi", dz, x), np.einsum("no->o", dz)

    def loops(x, W, b, d):
        dx, dW, db = np.zeros_like(x), np.zeros_like(W), np.zeros_like(b)
        for n in range(x.shape[0]):
            dz = d[n] * (1 - np.tanh(W @ x[n] + b) ** 2)
            dx[n] = W.T @ dz
            dW += np.outer(dz, x[n])
            db += dz
        return dx, dW, db

    def transposed_back(x, W, b, d):
        zT = W @ x.T + b[:, None]          # column-vector form, (out, N)
        dzT = d.T * (1 - np.tanh(zT) ** 2)
        return (W.T @ dzT).T, (x.T @ dzT.T).T, dzT.sum(axis=1)

    def explicit_casts(x, W, b, d):
        x, W, b, d = (np.asarray(a, dtype=np.float64) for a in (x, W, b, d))
        return tuple(g.astype(np.float64) for g in matmul(x.copy(), W, b, d))

    return [matmul, einsum, loops, transposed_back, explicit_casts]


shapes = st.tuples(st.integers(1, 7), st.integers(1, 6), st.integers(1, 6))


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), form=st.sampled_from(tanh_linear_reference_forms()))
def test_correct_forms_are_never_rejected(shape, seed, form):
    n, i, o = shape
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(n, i)), "W": rng.normal(size=(o, i)), "b": rng.normal(size=o)}
    assert gradcheck(form, linear, inputs, seed=seed)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), form=st.sampled_from(tanh_linear_reference_forms()))
def test_float32_inputs_are_cast_up_and_correct_forms_accepted(shape, seed, form):
    n, i, o = shape
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(n, i)).astype(np.float32),
              "W": rng.normal(size=(o, i)).astype(np.float32), "b": rng.normal(size=o).astype(np.float32)}
    assert gradcheck(form, linear, inputs, seed=seed)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), which=st.sampled_from(["x", "W", "b"]),
       eps=st.floats(1e-5, 1.0), sign=st.sampled_from([-1.0, 1.0]), pick=st.integers(0, 10**6))
def test_any_single_entry_corruption_is_caught(shape, seed, which, eps, sign, pick):
    n, i, o = shape
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(n, i)), "W": rng.normal(size=(o, i)), "b": rng.normal(size=o)}
    good = tanh_linear_reference_forms()[0]

    def corrupted(x, W, b, d):
        grads = dict(zip("xWb", good(x, W, b, d), strict=True))
        g = grads[which]
        scale = np.abs(g).max()
        g.flat[pick % g.size] += sign * eps * max(scale, 1e-3)
        return grads["x"], grads["W"], grads["b"]

    try:
        gradcheck(corrupted, linear, inputs, seed=seed)
    except CheckFailed as failure:
        assert f"d{which}" in str(failure)
    else:
        raise AssertionError("a corrupted gradient passed")


garbage = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
    st.lists(st.floats(), max_size=4), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(lambda n: np.full(n, np.nan), st.integers(0, 4)),
    st.builds(lambda n: np.ones((n, n + 1), dtype=np.int64), st.integers(1, 3)),
    st.builds(lambda n: torch.ones(n), st.integers(1, 3)),
)


@SETTINGS
@given(value=garbage, arity=st.integers(0, 4))
def test_garbage_output_always_gives_check_failed(value, arity):
    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(size=(3, 2)), "W": rng.normal(size=(4, 2)), "b": rng.normal(size=4)}
    result = value if arity == 0 else tuple([value] * arity)
    try:
        gradcheck(lambda x, W, b, d: result, linear, inputs)
    except CheckFailed as failure:
        assert str(failure).startswith("✗")
    else:
        raise AssertionError("garbage passed")
