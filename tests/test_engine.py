"""Unit tests of the check engine: every diagnosis class, bad inputs, quietness, determinism,
devices, and the public gradcheck API. These teach what the engine promises."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch

from checks import CheckError, CheckFailed, CheckPassed, assert_close, gradcheck
from checks.engine import Case, Hypothesis, check_gradients, devices, surrogate
from checks.engine.compare import compare

RNG = np.random.default_rng(1)
X = RNG.normal(size=(5, 3))   # N = 5 (odd, so factor N is not confused with 2)
W = RNG.normal(size=(4, 3))   # non-square
WSQ = RNG.normal(size=(3, 3))


def linear(x, W):
    return x @ W.T


def good_linear(x, W, dout):
    return dout @ W, dout.T @ x


def run_linear(grad_fn, w=W):
    return gradcheck(grad_fn, linear, {"x": X, "W": w})


def failure_text(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return str(info.value)


# --- passing -------------------------------------------------------------------------------

def test_correct_gradient_passes_with_one_line_and_html():
    result = run_linear(good_linear)
    assert isinstance(result, CheckPassed)
    text = str(result)
    assert text.startswith("✓") and "\n" not in text
    assert "autograd and finite differences" in text
    assert "backprop-check-pass" in result._repr_html_()


def test_gradcheck_accepts_list_and_single_array_inputs():
    assert gradcheck(lambda x, W, d: (d @ W, d.T @ x), linear, [X, W])
    assert gradcheck(lambda x: np.cos(x), lambda t: torch.sin(t).sum(), X)


# --- diagnoses: each bug class planted, each named ------------------------------------------

@pytest.mark.parametrize("grad_fn, w, expected", [
    (lambda x, W, d: (d @ W, -(d.T @ x)), W, "sign flipped"),
    (lambda x, W, d: (d @ W, 5 * (d.T @ x)), W, r"N times too large \(N = 5\)"),
    (lambda x, W, d: (d @ W, (d.T @ x) / 5), W, r"N times too small \(N = 5\)"),
    (lambda x, W, d: (d @ W, 2 * (d.T @ x)), W, "2× too large"),
    (lambda x, W, d: (d @ W, 0.5 * (d.T @ x)), W, "lost factor 2"),
    (lambda x, W, d: (d @ W, 3.7 * (d.T @ x)), W, "constant factor"),
    (lambda x, W, d: (d @ W, (d.T @ x).T), WSQ, "transposed"),
    (lambda x, W, d: (d @ W, np.zeros_like(W)), W, "all zeros"),
    (lambda x, W, d: (d @ W, np.full(W.shape, np.nan)), W, "NaN"),
    (lambda x, W, d: (d @ W, np.outer(d[-1], x[-1])), W, "one sample only .the last"),
    (lambda x, W, d: (d @ W, np.outer(d[0], x[0])), W, "one sample only .the first"),
])
def test_planted_bug_is_named(grad_fn, w, expected):
    text = failure_text(run_linear, grad_fn, w)
    assert "Likely bug" in text
    assert __import__("re").search(expected, text), text


def test_shape_errors_are_explained_before_values():
    text = failure_text(run_linear, lambda x, W, d: (d @ W, x.T @ d))
    assert "transpose" in text and "(3, 4)" in text
    # a (1, n) result never passes against (n,) through broadcasting
    text = failure_text(gradcheck, lambda x, b, d: (d, d.sum(axis=0, keepdims=True)),
                        lambda x, b: x + b, {"x": X, "b": W[0]})
    assert "extra axis of length 1" in text


def test_bias_not_summed_over_batch():
    text = failure_text(gradcheck, lambda x, b, d: (d, d), lambda x, b: x + b, {"x": X, "b": W[0]})
    assert "batch axis" in text and ".sum(axis=0)" in text


def test_topic_hypothesis_is_preferred_and_reported():
    x = RNG.normal(size=(7,))
    hyp = Hypothesis("derivative taken at the output", "use z, not a",
                     lambda x: surrogate(torch.tanh(x), x, 1 - torch.tanh(torch.tanh(x)) ** 2).sum())

    def learner(inputs, extra, dout):
        return {"x": 1 - np.tanh(np.tanh(inputs["x"])) ** 2}

    text = failure_text(check_gradients.__wrapped__ if hasattr(check_gradients, "__wrapped__")
                        else check_gradients, "tanh'", learner, lambda x: torch.tanh(x).sum(),
                        [Case({"x": x})], upstream=False, hypotheses=[hyp])
    assert "derivative taken at the output" in text and "use z, not a" in text


def test_failure_report_has_table_worst_entries_and_seed():
    text = failure_text(run_linear, lambda x, W, d: (d @ W, d.T @ x + np.eye(4, 3)))
    for part in ("tensor", "shape", "max abs err", "max rel err", "worst entries of dW", "seed=0"):
        assert part in text
    assert len(text.splitlines()) < 25  # readable without scrolling


def test_single_entry_corruption_is_caught_and_located():
    def corrupt(x, W, d):
        dW = d.T @ x
        dW[2, 1] *= 1.05
        return d @ W, dW

    text = failure_text(run_linear, corrupt)
    assert "(2, 1)" in text and "1 of 12 entries differ" in text


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("grad_fn, expected", [
    (lambda x, W, d: None, "None"),
    (lambda x, W, d: (d @ W, (d.T @ x).tolist()), "list"),
    (lambda x, W, d: (d @ W, torch.tensor(d.T @ x)), "torch.Tensor"),
    (lambda x, W, d: (d @ W, (d.T @ x).astype(np.float32)), "float32"),
    (lambda x, W, d: (d @ W, (d.T @ x > 0)), "boolean"),
    (lambda x, W, d: (d @ W, "dW"), "type str"),
    (lambda x, W, d: d @ W, "should return 2 values"),
    (lambda x, W, d: 1 / 0, "ZeroDivisionError"),
])
def test_bad_output_gets_a_clear_message(grad_fn, expected):
    assert expected in failure_text(run_linear, grad_fn)


def test_not_implemented_and_not_callable():
    def todo(x, W, d):
        raise NotImplementedError()

    assert "not implemented yet" in failure_text(run_linear, todo)
    assert "is None" in failure_text(run_linear, None)
    assert "should be your function" in failure_text(run_linear, 3.0)


def test_learner_exception_shows_the_learners_line():
    def broken(x, W, d):
        dW = d.T @ x
        return d @ W, dW @ np.ones((5, 5))

    text = failure_text(run_linear, broken)
    assert "ValueError" in text and "dW @ np.ones((5, 5))" in text


def test_mutating_an_input_is_reported():
    def mutating(x, W, d):
        d *= 2
        return d @ W / 2, d.T @ x / 2

    assert "modified its input `dout` in place" in failure_text(run_linear, mutating)


def test_recursion_error_gets_advice():
    def deep(x, W, d):
        return deep(x, W, d)

    assert "RecursionError" in failure_text(run_linear, deep)


def test_traceback_is_short():
    with pytest.raises(CheckFailed) as info:
        run_linear(lambda x, W, d: None)
    frames = [f for f in info.traceback if "checks" in str(f.path)]
    assert len(frames) <= 1, [str(f.path) for f in frames]
    assert info.value.__cause__ is None and info.value.__suppress_context__ or info.value.__context__ is None


# --- quiet, deterministic ------------------------------------------------------------------

def test_checks_write_nothing_to_stderr_and_emit_no_warnings():
    def noisy(x, W, d):
        np.exp(np.full(3, 1000.0))  # overflow warning inside the learner's code
        print("debug", file=__import__("sys").stderr)
        return d @ W, d.T @ x

    err = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.redirect_stderr(err):
            assert run_linear(noisy)
            with pytest.raises(CheckFailed):
                run_linear(lambda x, W, d: (d @ W, np.exp(1000 * d.T @ x)))
    assert err.getvalue() == ""


def test_same_seed_same_report_other_seed_other_inputs():
    def bad(x, W, d):
        return d @ W, 2 * d.T @ x

    a = failure_text(gradcheck, bad, linear, {"x": X, "W": W}, seed=3)
    b = failure_text(gradcheck, bad, linear, {"x": X, "W": W}, seed=3)
    c = failure_text(gradcheck, bad, linear, {"x": X, "W": W}, seed=4)
    assert a == b and a != c


# --- references and devices ----------------------------------------------------------------

def test_references_disagreeing_is_not_blamed_on_the_learner():
    # a reference with a kink exactly at the input: autograd and finite differences disagree
    x = np.array([0.0, 1.0, -1.0])
    with pytest.raises(CheckError, match="not in your code"):
        gradcheck(lambda x: (x > 0).astype(float), lambda t: torch.relu(t).sum(), x)


def test_cuda_without_gpu_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    with pytest.raises(CheckError, match="no CUDA GPU"):
        gradcheck(good_linear, linear, {"x": X, "W": W}, device="cuda")
    assert "device cpu" in str(gradcheck(good_linear, linear, {"x": X, "W": W}, device=None))


def test_cuda_path_is_taken_when_a_gpu_is_reported(fake_gpu):
    """The CUDA path on a CPU-only machine: pretend a GPU exists and record the device used."""
    result = gradcheck(good_linear, linear, {"x": X, "W": W}, device=None)
    assert "device cuda" in str(result) and "cuda" in fake_gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_reference():
    assert "device cuda" in str(gradcheck(good_linear, linear, {"x": X, "W": W}, device="cuda"))


def test_large_inputs_sample_finite_differences_at_bounded_cost():
    from checks.engine import references

    x = RNG.normal(size=(16, 784))
    W1 = RNG.normal(size=(100, 784)) * 0.05
    fd = references.finite_differences(lambda x, W: torch.tanh(x @ W.T), {"x": x, "W": W1}, {},
                                       ["x", "W"], RNG.normal(size=(16, 100)), np.random.default_rng(0))
    assert not fd.full and fd.evaluations < 300


def test_compare_is_symmetric_with_a_floor():
    zeros = np.zeros(3)
    assert compare(zeros, zeros).ok and compare(zeros, zeros).max_rel == 0
    a = np.array([1.0, 2.0, 3.0])
    assert compare(a * (1 + 1e-9), a).ok and not compare(a * (1 + 1e-4), a).ok
    assert compare(a, a * 1.01).n_bad == compare(a * 1.01, a).n_bad


def test_assert_close_checks_shape_first():
    assert assert_close(np.ones(3), np.ones(3))
    with pytest.raises(CheckFailed, match="shape"):
        assert_close(np.ones((1, 3)), np.ones(3))
