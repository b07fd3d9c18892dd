"""checks.lora: correct implementations in several styles pass; known bugs are rejected with the
right diagnosis; bad inputs are explained; the notebook's solution agrees with loralib
(DESIGN.md §3, §6; issue 6, notebook 08)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import CheckFailed
from checks import lora as check
from checks.lora import _cases

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "08_lora" / "08_lora.ipynb"

# --------------------------------------------------------------------------- reference code


def lora_forward(x, W0, A, B, alpha):
    s = alpha / A.shape[0]
    u = x @ A.T
    return x @ W0.T + s * u @ B.T, (x, W0, A, B, s, u)


def lora_backward(dh, cache):
    x, W0, A, B, s, u = cache
    du = s * dh @ B
    return dh @ W0 + du @ A, du.T @ x, s * dh.T @ u


def lora_forward_einsum(x, W0, A, B, alpha):
    r = A.shape[0]
    h = np.einsum("ni,oi->no", x, W0) + (alpha / r) * np.einsum("ni,ri,or->no", x, A, B)
    return h, {"x": x, "W0": W0, "A": A, "B": B, "alpha": alpha}


def lora_backward_einsum(dh, cache):
    x, W0, A, B, alpha = (cache[k] for k in ("x", "W0", "A", "B", "alpha"))
    s = alpha / A.shape[0]
    dA = s * np.einsum("no,or,ni->ri", dh, B, x)
    dB = s * np.einsum("no,ni,ri->or", dh, x, A)
    dx = np.einsum("no,oi->ni", dh, W0) + s * np.einsum("no,or,ri->ni", dh, B, A)
    return dx, dA, dB


def lora_forward_merged(x, W0, A, B, alpha):  # merged-weight style: one product with W0 + sBA
    return x @ (W0 + (alpha / A.shape[0]) * B @ A).T, (x, W0, A, B, alpha)


def lora_backward_loops(dh, cache):
    x, W0, A, B, alpha = cache
    s = alpha / A.shape[0]
    dx, dA, dB = np.zeros_like(x), np.zeros_like(A), np.zeros_like(B)
    for n in range(x.shape[0]):
        u = A @ x[n]  # (r,)
        g = s * (B.T @ dh[n])  # (r,)
        dB += s * np.outer(dh[n], u)
        dA += np.outer(g, x[n])
        dx[n] = W0.T @ dh[n] + A.T @ g
    return dx, dA, dB


def lora_backward_via_merged(dh, cache):  # dx through the merged weight
    x, W0, A, B, alpha = cache
    s = alpha / A.shape[0]
    return dh @ (W0 + s * B @ A), s * (dh @ B).T @ x, s * dh.T @ (x @ A.T)


def lora_merge(W0, A, B, alpha):
    return W0 + (alpha / A.shape[0]) * (B @ A)


def lora_merge_einsum(W0, A, B, alpha):
    return W0 + alpha / A.shape[0] * np.einsum("or,ri->oi", B, A)


def lora_merge_outer(W0, A, B, alpha):  # B A as a sum of r outer products
    W = W0.copy()
    for k in range(A.shape[0]):
        W += (alpha / A.shape[0]) * np.outer(B[:, k], A[k])
    return W


def lora_param_count(d_out, d_in, r):
    return r * (d_in + d_out)


def _solution_functions() -> dict:
    """The exercise functions as written in the instructor notebook."""
    nb = nbformat.read(SOLUTION, as_version=4)
    ns: dict = {"np": np}
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            exec(cell.source, ns)  # noqa: S102 - our own notebook
    return ns


# --------------------------------------------------------------------------- correct code passes


@pytest.mark.parametrize("fwd", [lora_forward, lora_forward_einsum, lora_forward_merged])
def test_forward_variants_pass(fwd):
    assert check.lora_forward(fwd)


@pytest.mark.parametrize("fwd, bwd", [
    (lora_forward, lora_backward),
    (lora_forward_einsum, lora_backward_einsum),
    (lora_forward_merged, lora_backward_loops),
    (lora_forward_merged, lora_backward_via_merged),
])
def test_backward_variants_pass(fwd, bwd):
    result = check.lora_backward(fwd, bwd)
    assert "dA, dB, dx" in str(result) and "finite differences" in str(result)


@pytest.mark.parametrize("merge", [lora_merge, lora_merge_einsum, lora_merge_outer])
def test_merge_variants_pass(merge):
    assert check.lora_merge(merge)


@pytest.mark.parametrize("count", [
    lora_param_count,
    lambda d_out, d_in, r: int(np.prod((r, d_in))) + d_out * r,
    lambda d_out, d_in, r: np.int64(r) * (d_in + d_out),
])
def test_param_count_variants_pass(count):
    assert check.lora_param_count(count)


def test_notebook_solution_passes_every_check():
    ns = _solution_functions()
    assert check.lora_forward(ns["lora_forward"])
    assert check.lora_backward(ns["lora_forward"], ns["lora_backward"])
    assert check.lora_merge(ns["lora_merge"])
    assert check.lora_param_count(ns["lora_param_count"])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_correct_code_passes_for_any_seed(seed):
    assert check.lora_forward(lora_forward_einsum, seed=seed)
    assert check.lora_backward(lora_forward_merged, lora_backward_loops, seed=seed)
    assert check.lora_merge(lora_merge_outer, seed=seed)


def test_cases_cover_the_required_shapes():
    cases = _cases(0)
    ranks = {c.inputs["A"].shape[0] for c in cases}
    batches = {c.inputs["x"].shape[0] for c in cases}
    assert {1, 2, 4, 8} <= ranks and 1 in batches and any(n % 2 for n in batches - {1})
    assert 2 not in batches
    assert any(c.inputs["W0"].shape[0] != c.inputs["W0"].shape[1] for c in cases)
    fresh = [c for c in cases if not c.inputs["B"].any()]
    assert fresh, "a fresh adapter (B = 0) must be among the cases"
    # ... where the expected dA is exactly zero
    c = fresh[0]
    t = {k: torch.tensor(v, requires_grad=True) for k, v in c.inputs.items()}
    s = c.extra["alpha"] / c.inputs["A"].shape[0]
    h = t["x"] @ t["W0"].T + s * (t["x"] @ t["A"].T) @ t["B"].T
    (h * torch.randn(h.shape, dtype=torch.float64)).sum().backward()
    assert torch.count_nonzero(t["A"].grad) == 0 and torch.count_nonzero(t["B"].grad) > 0


def test_checks_are_deterministic_and_quiet(capfd):
    a = str(check.lora_backward(lora_forward, lora_backward, seed=3))
    b = str(check.lora_backward(lora_forward, lora_backward, seed=3))
    assert a == b
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- forward mutants


def _fwd(expr):
    """A forward mutant: h = expr(x, W0, A, B, alpha, s)."""
    def f(x, W0, A, B, alpha):
        return expr(x, W0, A, B, alpha, alpha / A.shape[0]), (x, W0, A, B, alpha / A.shape[0], x @ A.T)
    return f


FORWARD_MUTANTS = {
    "missing scale": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + x @ A.T @ B.T),
                      "alpha/r scale is missing"),
    "alpha not alpha/r": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + a * x @ A.T @ B.T),
                          "scaled by alpha instead of alpha / r"),
    "r/alpha": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + (1 / s) * x @ A.T @ B.T),
                r"r / alpha instead"),
    "scale on the base too": (_fwd(lambda x, W0, A, B, a, s: s * (x @ W0.T + x @ A.T @ B.T)),
                              "multiplies the whole output"),
    "no base": (_fwd(lambda x, W0, A, B, a, s: s * x @ A.T @ B.T), "frozen base x W0ᵀ is missing"),
    "x A Bᵀ": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + s * x @ A @ B.T),
               "adapters are transposed: x A Bᵀ"),
    "x Aᵀ B": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + s * x @ A.T @ B),
               "adapters are transposed: x Aᵀ B "),
    "A and B swapped": (_fwd(lambda x, W0, A, B, a, s: x @ W0.T + s * x @ B.T @ A.T),
                        "A and B swapped"),
    "W0 not transposed": (_fwd(lambda x, W0, A, B, a, s: x @ W0 + s * x @ A.T @ B.T),
                          "W0 is not transposed"),
}


@pytest.mark.parametrize("name", FORWARD_MUTANTS)
def test_forward_mutants_are_diagnosed(name):
    fn, message = FORWARD_MUTANTS[name]
    with pytest.raises(CheckFailed, match=message):
        check.lora_forward(fn)


def test_forward_shape_error_gets_the_lora_shapes():
    def fwd(x, W0, A, B, alpha):
        raise ValueError("matmul: Input operand 1 has a mismatch in its core dimension 0")
    with pytest.raises(CheckFailed, match=r"(?s)raised ValueError.*x @ A.T is \(N, r\)"):
        check.lora_forward(fwd)


# --------------------------------------------------------------------------- backward mutants


def _bwd(expr):
    """A backward mutant built from the correct pieces: expr(dh, x, W0, A, B, s, u)."""
    def f(dh, cache):
        x, W0, A, B, s, u = cache
        return expr(dh, x, W0, A, B, s, u)
    return f


BACKWARD_MUTANTS = {
    "no scale in backward": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + dh @ B @ A, (dh @ B).T @ x, dh.T @ u)), "scale is missing .* in the backward"),
    "alpha in backward": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * A.shape[0] * dh @ B @ A, s * A.shape[0] * (dh @ B).T @ x,
        s * A.shape[0] * dh.T @ u)), "scaled by alpha instead .* in the backward"),
    "dx without adapter path": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0, s * (dh @ B).T @ x, s * dh.T @ u)), "dx is missing the adapter's path"),
    "dx without base path": (_bwd(lambda dh, x, W0, A, B, s, u: (
        s * dh @ B @ A, s * (dh @ B).T @ x, s * dh.T @ u)), "dx is missing the frozen base path"),
    "dx adapter path unscaled": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + dh @ B @ A, s * (dh @ B).T @ x, s * dh.T @ u)), "share of dx has no alpha/r"),
    "dA dB swapped": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, s * dh.T @ u, s * (dh @ B).T @ x)), "dA and dB swapped"),
    "dB with x": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, s * (dh @ B).T @ x, s * dh.T @ x)), "dB uses x instead"),
    "dW0 returned too": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, dh.T @ x, s * (dh @ B).T @ x, s * dh.T @ u)),
        r"W0 is frozen: return \(dx, dA, dB\) only"),
    "dW0 instead of dx": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh.T @ x, s * (dh @ B).T @ x, s * dh.T @ u)), "looks like dW0"),
    "dA transposed": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, s * x.T @ (dh @ B), s * dh.T @ u)), "transpose"),
    "sign of dB": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, s * (dh @ B).T @ x, -s * dh.T @ u)), "sign flipped"),
    "one sample": (_bwd(lambda dh, x, W0, A, B, s, u: (
        dh @ W0 + s * dh @ B @ A, s * np.outer((dh @ B)[-1], x[-1]), s * dh.T @ u)),
        "one sample only"),
}


@pytest.mark.parametrize("name", BACKWARD_MUTANTS)
def test_backward_mutants_are_diagnosed(name):
    fn, message = BACKWARD_MUTANTS[name]
    with pytest.raises(CheckFailed, match=message):
        check.lora_backward(lora_forward, fn)


def test_dA_nonzero_for_a_fresh_adapter_is_rejected():
    """A bug visible only when B = 0 (expected dA exactly 0) is caught by the fresh-adapter case."""
    def bwd(dh, cache):
        dx, dA, dB = lora_backward(dh, cache)
        B = cache[3]
        return dx, (dA + 1e-3 if not B.any() else dA), dB
    with pytest.raises(CheckFailed, match=r"(?s)dA does not match.*B = 0"):
        check.lora_backward(lora_forward, bwd)


def test_dA_dB_swapped_shapes_are_named():
    def bwd(dh, cache):
        dx, dA, dB = lora_backward(dh, cache)
        return dx, dB, dA
    # the first (square) case is diagnosed from the values; shapes name it in the others
    with pytest.raises(CheckFailed, match="dA and dB swapped"):
        check.lora_backward(lora_forward, bwd)
    from checks.lora import _check_backward_shapes
    inputs = _cases(0)[2].inputs
    with pytest.raises(CheckFailed, match="A and B .* are swapped"):
        _check_backward_shapes(inputs["x"], inputs["B"], inputs["A"], inputs)


# --------------------------------------------------------------------------- merge mutants

MERGE_MUTANTS = {
    "no scale": (lambda W0, A, B, alpha: W0 + B @ A, "alpha/r scale is missing"),
    "alpha": (lambda W0, A, B, alpha: W0 + alpha * B @ A, "scaled by alpha instead"),
    "no W0": (lambda W0, A, B, alpha: alpha / A.shape[0] * B @ A, "W0 is missing"),
    "A B": (lambda W0, A, B, alpha: W0 + alpha / A.shape[0] * A @ B, "wrong order: A B"),
    "transposed update": (lambda W0, A, B, alpha: W0 + alpha / A.shape[0] * A.T @ B.T,
                          "update is transposed"),
}


@pytest.mark.parametrize("name", MERGE_MUTANTS)
def test_merge_mutants_are_diagnosed(name):
    fn, message = MERGE_MUTANTS[name]
    with pytest.raises(CheckFailed, match=message):
        check.lora_merge(fn)


def test_merge_in_place_is_rejected():
    def merge(W0, A, B, alpha):
        W0 += alpha / A.shape[0] * B @ A
        return W0
    with pytest.raises(CheckFailed, match="modified its input `W0` in place"):
        check.lora_merge(merge)


# --------------------------------------------------------------------------- parameter count

COUNT_MUTANTS = {
    "with W0": (lambda o, i, r: r * (i + o) + o * i, "counted the frozen W0"),
    "A only": (lambda o, i, r: r * i, "counted A only"),
    "B only": (lambda o, i, r: r * o, "counted B only"),
    "product": (lambda o, i, r: r * i * o, "multiplied the sizes"),
    "full matrix": (lambda o, i, r: o * i, "counted the full matrix"),
    "float": (lambda o, i, r: r * (i + o) / 1, "returned the float 16.0; expected an int"),
    "None": (lambda o, i, r: None, "expected an int"),
    "other": (lambda o, i, r: r * (i + o) + 1, "a wrong count"),
}


@pytest.mark.parametrize("name", COUNT_MUTANTS)
def test_param_count_mutants_are_diagnosed(name):
    fn, message = COUNT_MUTANTS[name]
    with pytest.raises(CheckFailed, match=message):
        check.lora_param_count(fn)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("fwd, message", [
    (None, "is None"),
    (lambda x, W0, A, B, alpha: None, r"should return 2 values \(h, cache\)"),
    (lambda x, W0, A, B, alpha: lora_forward(x, W0, A, B, alpha)[0], "should return 2 values"),
    (lambda x, W0, A, B, alpha: (lora_forward(x, W0, A, B, alpha)[0].tolist(), None), "Python list"),
    (lambda x, W0, A, B, alpha: (torch.tensor(lora_forward(x, W0, A, B, alpha)[0]), None),
     "torch.Tensor"),
    (lambda x, W0, A, B, alpha: (lora_forward(x, W0, A, B, alpha)[0].astype(np.float32), None),
     "float32"),
    (lambda x, W0, A, B, alpha: (lora_forward(x, W0, A, B, alpha)[0][0], None), "has shape"),
    (lambda x, W0, A, B, alpha: (np.full((x.shape[0], W0.shape[0]), np.nan), None), "NaN"),
    (lambda x, W0, A, B, alpha: 1 / 0, "raised ZeroDivisionError"),
])
def test_forward_bad_inputs_are_explained(fwd, message):
    with pytest.raises(CheckFailed, match=message):
        check.lora_forward(fwd)


def test_not_implemented_is_reported_as_such():
    def todo(*args):
        raise NotImplementedError()
    for run in (lambda: check.lora_forward(todo), lambda: check.lora_backward(todo, todo),
                lambda: check.lora_backward(lora_forward, todo), lambda: check.lora_merge(todo),
                lambda: check.lora_param_count(todo)):
        with pytest.raises(CheckFailed, match="not implemented yet"):
            run()


def test_backward_mutating_dh_is_rejected():
    def bwd(dh, cache):
        dh *= 1.0
        dh[0, 0] = 0.0
        return lora_backward(dh, cache)
    with pytest.raises(CheckFailed, match="modified its input `dh` in place"):
        check.lora_backward(lora_forward, bwd)


def test_cuda_path_is_taken_when_a_gpu_is_reported(fake_gpu):
    """The CUDA path on a CPU-only machine: pretend a GPU exists and record the device used."""
    used = fake_gpu
    assert "device cuda" in str(check.lora_forward(lora_forward))
    assert "device cuda" in str(check.lora_backward(lora_forward, lora_backward))
    assert "device cuda" in str(check.lora_merge(lora_merge))
    with pytest.raises(CheckFailed, match="A and B swapped"):  # hypotheses run there too
        check.lora_forward(FORWARD_MUTANTS["A and B swapped"][0])
    assert "cuda" in used


def test_cuda_without_gpu_is_an_error(monkeypatch):
    from checks.engine import CheckError, devices
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    for run in (lambda: check.lora_backward(lora_forward, lora_backward, device="cuda"),
                lambda: check.lora_param_count(lora_param_count, device="cuda")):
        with pytest.raises(CheckError, match="no CUDA GPU"):
            run()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_reference():
    assert "device cuda" in str(check.lora_forward(lora_forward, device="cuda"))
    assert "device cuda" in str(check.lora_backward(lora_forward, lora_backward, device="cuda"))
    assert "device cuda" in str(check.lora_merge(lora_merge, device="cuda"))


# --------------------------------------------------------------------------- a real LoRA library

loralib = pytest.importorskip("loralib")


@pytest.mark.parametrize("n, d_in, d_out, r, alpha", [(1, 5, 3, 1, 3), (7, 6, 9, 8, 16),
                                                      (5, 64, 10, 4, 8), (3, 4, 4, 2, 1)])
def test_solution_matches_loralib(n, d_in, d_out, r, alpha):
    """The notebook's lora_forward and lora_merge agree with loralib.Linear (scaling alpha / r)."""
    ns = _solution_functions()
    rng = np.random.default_rng(n * 100 + r)
    x = rng.normal(size=(n, d_in))
    W0 = rng.normal(size=(d_out, d_in))
    A = rng.normal(size=(r, d_in))
    B = rng.normal(size=(d_out, r))
    layer = loralib.Linear(d_in, d_out, r=r, lora_alpha=alpha, bias=False).double()
    assert layer.scaling == alpha / r
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.lora_A.copy_(torch.from_numpy(A))
        layer.lora_B.copy_(torch.from_numpy(B))
    layer.train()  # unmerged: W0 x + scaling * B A x
    expected = layer(torch.from_numpy(x)).detach().numpy()
    h, _ = ns["lora_forward"](x, W0, A, B, alpha)
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-12)
    assert not layer.weight.requires_grad  # loralib freezes W0 too
    layer.eval()  # loralib merges B A into the weight for inference
    np.testing.assert_allclose(ns["lora_merge"](W0, A, B, alpha), layer.weight.detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_solution_backward_matches_loralib_autograd():
    ns = _solution_functions()
    rng = np.random.default_rng(0)
    x, dh = rng.normal(size=(5, 7)), rng.normal(size=(5, 4))
    layer = loralib.Linear(7, 4, r=2, lora_alpha=5, bias=False).double()
    with torch.no_grad():
        layer.lora_B.copy_(torch.from_numpy(rng.normal(size=(4, 2))))
    xt = torch.from_numpy(x).requires_grad_(True)
    (layer(xt) * torch.from_numpy(dh)).sum().backward()
    W0, A, B = (p.detach().numpy() for p in (layer.weight, layer.lora_A, layer.lora_B))
    _, cache = ns["lora_forward"](x, W0, A, B, 5)
    dx, dA, dB = ns["lora_backward"](dh, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dA, layer.lora_A.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dB, layer.lora_B.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert layer.weight.grad is None  # frozen: no dW0, as in lora_backward


# --------------------------------------------------------------------------- pretrained weights


def test_pretrained_mlp_loads_and_is_accurate():
    from checks.data import load_digits
    params = check.load_pretrained_mlp()
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (64, 64), "b1": (64,), "W2": (10, 64), "b2": (10,)}
    assert all(v.dtype == np.float64 for v in params.values())
    _, _, x_test, y_test = load_digits()
    a1 = np.maximum(x_test @ params["W1"].T + params["b1"], 0.0)
    acc = ((a1 @ params["W2"].T + params["b2"]).argmax(1) == y_test).mean()
    assert acc >= 0.90
    assert (ROOT / "data" / "digits_mlp.npz").stat().st_size < 200_000
