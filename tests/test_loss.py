"""Mutant and acceptance tests for checks.loss (notebook 03)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import CheckFailed
from checks import loss as check

# --------------------------------------------------------------------------- correct versions


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_logsumexp(z):
    m = np.max(z, axis=1, keepdims=True)
    return np.exp(z - m - np.log(np.sum(np.exp(z - m), axis=1, keepdims=True)))


def softmax_loops(z):
    out = np.empty_like(z)
    for i, row in enumerate(z):
        e = np.exp(row - max(row))
        out[i] = e / e.sum()
    return out


def softmax_einsum(z):
    e = np.exp(z - z.max(axis=-1)[:, None])
    return e / np.einsum("nc->n", e)[:, None]


def cross_entropy(logits, y):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def cross_entropy_loop(logits, y):
    total = 0.0
    for row, label in zip(logits, y, strict=True):
        m = row.max()
        total += -(row[label] - m - np.log(np.sum(np.exp(row - m))))
    return total / len(y)


def cross_entropy_onehot(logits, y):
    onehot = np.eye(logits.shape[1])[y]
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return np.mean(lse - np.einsum("nc,nc->n", onehot, logits))  # a NumPy float


def cross_entropy_grad(logits, y):
    p = softmax(logits)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def cross_entropy_grad_onehot(logits, y):
    n, c = logits.shape
    onehot = np.zeros((n, c))
    onehot[np.arange(n), y] = 1.0
    return (softmax_loops(logits) - onehot) / n


def mse(pred, target):
    return float(np.mean((pred - target) ** 2))


def mse_einsum(pred, target):
    d = (pred - target).ravel()
    return np.einsum("i,i->", d, d) / d.size


def mse_grad(pred, target):
    return 2 * (pred - target) / pred.size


def mse_grad_loop(pred, target):
    g = np.zeros_like(pred)
    for idx in np.ndindex(pred.shape):
        g[idx] = 2 * (pred[idx] - target[idx]) / np.prod(pred.shape)
    return g


@pytest.mark.parametrize("fn", [softmax, softmax_logsumexp, softmax_loops, softmax_einsum])
def test_softmax_correct_variants_pass(fn):
    assert check.softmax(fn)


@pytest.mark.parametrize("fn", [cross_entropy, cross_entropy_loop, cross_entropy_onehot])
def test_cross_entropy_correct_variants_pass(fn):
    assert check.cross_entropy(fn)


@pytest.mark.parametrize("fn", [cross_entropy_grad, cross_entropy_grad_onehot])
def test_cross_entropy_grad_correct_variants_pass(fn):
    assert check.cross_entropy_grad(fn)


@pytest.mark.parametrize("fn", [mse, mse_einsum])
def test_mse_correct_variants_pass(fn):
    assert check.mse(fn)


@pytest.mark.parametrize("fn", [mse_grad, mse_grad_loop])
def test_mse_grad_correct_variants_pass(fn):
    assert check.mse_grad(fn)


def test_gradient_checks_say_they_used_finite_differences():
    assert "finite differences" in str(check.cross_entropy_grad(cross_entropy_grad))
    assert "finite differences" in str(check.mse_grad(mse_grad))


def test_worked_example_from_the_literature():
    """Three classes, probability 0.75 for the true class: L = −log 0.75 ≈ 0.288."""
    logits = np.log(np.array([[0.75, 0.125, 0.125]]))
    assert abs(cross_entropy(logits, np.array([0])) - 0.2877) < 1e-4


# --------------------------------------------------------------------------- softmax mutants


def naive_softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


SOFTMAX_MUTANTS = [
    (lambda z: np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0),
     r"wrong axis \(each column sums to 1\)"),
    (lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(), "whole batch"),
    (lambda z: np.exp(z), "without normalising"),
    (lambda z: z / z.sum(axis=1, keepdims=True), "the exp is missing"),
    (lambda z: softmax(z).T, "transpose"),
    (lambda z: softmax(z).astype(np.float32), "float32"),
    (lambda z: softmax(z).tolist(), "not a NumPy array"),
    (lambda z: torch.softmax(torch.as_tensor(z), 1), "torch.Tensor"),
    (lambda z: None, "is None"),
]


@pytest.mark.parametrize("fn,match", SOFTMAX_MUTANTS)
def test_softmax_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.softmax(fn)


def test_naive_softmax_overflow_is_named():
    with pytest.raises(CheckFailed, match="overflow: subtract the row max") as info:
        check.softmax(naive_softmax)
    assert "±1000" in str(info.value)


def test_softmax_exception_and_not_implemented():
    def todo(z):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.softmax(todo)
    with pytest.raises(CheckFailed, match="raised ZeroDivisionError"):
        check.softmax(lambda z: 1 / 0)


# --------------------------------------------------------------------------- cross-entropy mutants


def _logp(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


CE_MUTANTS = [
    (lambda z, y: float(-_logp(z)[np.arange(len(y)), y].sum()), r"missing 1/N"),
    (lambda z, y: float(-_logp(z)[:, 0].mean()), "probability of class 0"),
    (lambda z, y: float(-_logp(z).mean()), "every entry"),
    (lambda z, y: float(_logp(z)[np.arange(len(y)), y].mean()), "sign flipped"),
    (lambda z, y: float(-(_logp(z)[np.arange(len(y)), y] / np.log(10)).mean()), "log base 10"),
    (lambda z, y: -_logp(z)[np.arange(len(y)), y], "expected a single number"),
    (lambda z, y: float(-np.log(softmax(z)[np.arange(len(y)), y]).mean()), "log-softmax"),
    (lambda z, y: float(-np.log(naive_softmax(z)[np.arange(len(y)), y]).mean()),
     "overflow or log\\(0\\)"),
    (lambda z, y: None, "is None"),
]


@pytest.mark.parametrize("fn,match", CE_MUTANTS)
def test_cross_entropy_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.cross_entropy(fn)


def test_cross_entropy_wrong_axis():
    def cols(z, y):
        m = z.max(axis=0, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(axis=0, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())
    with pytest.raises(CheckFailed, match=r"wrong axis \(columns\)"):
        check.cross_entropy(cols)


def test_labels_are_copies():
    def mutates_y(z, y):
        y[:] = 0
        return cross_entropy(z, y)
    # the learner receives a copy of y: changing it cannot affect later cases or the reference
    with pytest.raises(CheckFailed, match="class 0"):
        check.cross_entropy(mutates_y)


# --------------------------------------------------------------------------- gradient mutants


def _grad(p_fn, onehot_fn, scale_fn):
    def fn(z, y):
        return (p_fn(z) - onehot_fn(z, y)) / scale_fn(z)
    return fn


def _onehot(z, y):
    o = np.zeros_like(z)
    o[np.arange(len(y)), y] = 1.0
    return o


CEG_MUTANTS = [
    (_grad(softmax, _onehot, lambda z: 1.0), "without 1/N"),
    (lambda z, y: softmax(z) / len(z), "forgot to subtract the one-hot labels"),
    (lambda z, y: softmax(z), "forgot to subtract the one-hot labels and the 1/N"),
    (_grad(softmax, lambda z, y: _onehot(z, np.zeros_like(y)), len), "class 0 for every sample"),
    (_grad(softmax, lambda z, y: np.isin(np.arange(z.shape[1]), y)[None, :] * np.ones_like(z),
           len), "one-hot wrong"),
    (_grad(lambda z: softmax(z.T).T, _onehot, len), r"wrong axis \(columns\)"),
    (_grad(softmax, _onehot, lambda z: z.shape[1]), "number of classes C instead of N"),
    (lambda z, y: -cross_entropy_grad(z, y), "sign flipped"),
    (lambda z, y: cross_entropy_grad(z, y).T, "shape"),
    (lambda z, y: (softmax(z) - _onehot(z, y)) / len(z) ** 2, "extra 1/N"),
    (_grad(naive_softmax, _onehot, len), "overflow: subtract the row max"),
    (lambda z, y: cross_entropy_grad(z, y)[:, :1], "has shape"),
]


@pytest.mark.parametrize("fn,match", CEG_MUTANTS)
def test_cross_entropy_grad_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.cross_entropy_grad(fn)


def test_cross_entropy_grad_in_place_is_reported():
    def in_place(z, y):
        z -= z.max(axis=1, keepdims=True)
        return cross_entropy_grad(z, y)
    with pytest.raises(CheckFailed, match="modified its input `logits` in place"):
        check.cross_entropy_grad(in_place)


# --------------------------------------------------------------------------- MSE mutants


def _rows(pred, target):
    d = (pred - target).reshape(len(pred), -1)
    return float((d ** 2).sum(axis=1).mean())


MSE_MUTANTS = [
    (_rows, "averaged over rows only"),
    (lambda p, t: float(((p - t) ** 2).sum()), r"summed instead of averaged"),
    (lambda p, t: float(np.sqrt(((p - t) ** 2).mean())), "RMSE"),
    (lambda p, t: float(np.abs(p - t).mean()), "absolute error"),
    (lambda p, t: float(0.5 * ((p - t) ** 2).mean()), "factor 1/2"),
    (lambda p, t: (p - t) ** 2, "expected a single number"),
    (lambda p, t: torch.tensor(1.0), "torch.Tensor"),
]


@pytest.mark.parametrize("fn,match", MSE_MUTANTS)
def test_mse_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.mse(fn)


MSE_GRAD_MUTANTS = [
    (lambda p, t: 2 * (p - t) / p.shape[0], "divided by N only"),
    (lambda p, t: 2 * (p - t), r"missing 1/\(N·C\)"),
    (lambda p, t: (p - t) / p.size, "factor 2"),
    (lambda p, t: 2 * (t - p) / p.size, "sign"),
    (lambda p, t: (2 * (p - t) / p.size).reshape(-1), "has shape"),
    (lambda p, t: np.zeros_like(p), "all zeros"),
    (lambda p, t: (2 * (p - t) / p.size).astype(np.float32), "float32"),
]


@pytest.mark.parametrize("fn,match", MSE_GRAD_MUTANTS)
def test_mse_grad_mutants_rejected(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check.mse_grad(fn)


# --------------------------------------------------------------------------- properties


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_correct_losses_accepted_for_any_seed(seed):
    assert check.cross_entropy(cross_entropy_loop, seed=seed)
    assert check.cross_entropy_grad(cross_entropy_grad_onehot, seed=seed)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_missing_mean_always_named(seed):
    with pytest.raises(CheckFailed, match="1/N"):
        check.cross_entropy_grad(_grad(softmax, _onehot, lambda z: 1.0), seed=seed)
    with pytest.raises(CheckFailed, match="averaged over rows only"):
        check.mse(_rows, seed=seed)


def test_checks_write_nothing_to_stderr_even_when_the_code_warns(capfd):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping the check would raise here
        with pytest.raises(CheckFailed):
            check.softmax(naive_softmax)
        with pytest.raises(CheckFailed):
            check.cross_entropy(lambda z, y: float(-np.log(naive_softmax(z)[np.arange(len(y)), y]).mean()))
        assert check.cross_entropy_grad(cross_entropy_grad)
    assert capfd.readouterr().err == ""


def test_cuda_path_is_taken_when_a_gpu_is_reported(fake_gpu):
    used = fake_gpu
    assert "device cuda" in str(check.cross_entropy_grad(cross_entropy_grad))
    assert "device cuda" in str(check.softmax(softmax, device="cuda"))
    with pytest.raises(CheckFailed, match="without 1/N"):  # hypotheses run on the device too
        check.cross_entropy_grad(_grad(softmax, _onehot, lambda z: 1.0))
    assert "cuda" in used


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_reference():
    for name, fn in [("softmax", softmax), ("cross_entropy", cross_entropy),
                     ("cross_entropy_grad", cross_entropy_grad), ("mse", mse), ("mse_grad", mse_grad)]:
        assert "device cuda" in str(getattr(check, name)(fn, device="cuda"))
