"""checks.manual_backprop: correct implementations in several styles pass; known bugs are
rejected with the right diagnosis (DESIGN.md §3, issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from checks import CheckFailed
from checks import manual_backprop as check

# --------------------------------------------------------------------------- reference code


def linear_forward(x, W, b):
    return x @ W.T + b, (x, W, b)


def linear_backward(dz, cache):
    x, W, _ = cache
    return dz @ W, dz.T @ x, dz.sum(axis=0)


def linear_backward_einsum(dz, cache):
    x, W, _ = cache
    return np.einsum("no,oi->ni", dz, W), np.einsum("no,ni->oi", dz, x), np.einsum("no->o", dz)


def linear_backward_loops(dz, cache):
    x, W, _ = cache
    dx = np.zeros_like(x)
    dW = np.zeros_like(W)
    db = np.zeros(W.shape[0])
    for n in range(x.shape[0]):
        dx[n] = W.T.dot(dz[n])
        dW += np.outer(dz[n], x[n])
        db += dz[n]
    return dx, dW, db


def linear_backward_dot(dz, cache):
    x, W, _ = cache
    return np.dot(dz, W), np.dot(x.T, dz).T, np.dot(np.ones(dz.shape[0]), dz)


def linear_forward_dict(x, W, b):  # a cache in another format
    return np.dot(x, W.T) + b, {"x": x, "W": W}


def linear_backward_dict(dz, cache):
    return dz @ cache["W"], dz.T @ cache["x"], dz.sum(0)


def relu_forward(z):
    return np.maximum(z, 0.0), z


def relu_backward(da, z):
    return da * (z > 0)


def relu_backward_where(da, z):
    return np.where(z > 0, da, 0.0)


def relu_backward_copy(da, z):
    dz = da.copy()
    dz[z <= 0] = 0
    return dz


def relu_forward_mask(z):  # caches the mask instead of z
    return np.maximum(z, 0.0), z > 0


def relu_backward_mask(da, mask):
    return da * mask


def sigmoid_forward(z):
    a = 1.0 / (1.0 + np.exp(-z))
    return a, a


def sigmoid_backward(da, a):
    return da * a * (1 - a)


def sigmoid_forward_z(z):  # caches z, recomputes in backward
    return 1.0 / (1.0 + np.exp(-z)), z


def sigmoid_backward_z(da, z):
    s = 1.0 / (1.0 + np.exp(-z))
    return da * s * (1.0 - s)


def tanh_forward(z):
    a = np.tanh(z)
    return a, a


def tanh_backward(da, a):
    return da * (1 - a**2)


def tanh_backward_cosh(da, a):
    return da / np.cosh(np.arctanh(a)) ** 2


FWD = {"relu": relu_forward, "sigmoid": sigmoid_forward, "tanh": tanh_forward}
BWD = {"relu": relu_backward, "sigmoid": sigmoid_backward, "tanh": tanh_backward}
ACT = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
       "tanh": np.tanh}


def mlp_forward(params, x, activation="relu"):
    L = len(params) // 2
    caches, h = [], x
    for layer in range(1, L + 1):
        z, lc = linear_forward(h, params[f"W{layer}"], params[f"b{layer}"])
        if layer == L:
            caches.append((lc, None, None))
            return z, caches
        h, ac = FWD[activation](z)
        caches.append((lc, activation, ac))
    raise AssertionError


def mlp_backward(dlogits, caches):
    grads, delta = {}, dlogits
    for layer in range(len(caches), 0, -1):
        lc, act, ac = caches[layer - 1]
        if act is not None:
            delta = BWD[act](delta, ac)
        delta, grads[f"W{layer}"], grads[f"b{layer}"] = linear_backward(delta, lc)
    return grads


def mlp_forward_flat(params, x, activation="relu"):
    """Another cache layout: lists of inputs and pre-activations, plus the activation name."""
    L = len(params) // 2
    hs, zs, h = [], [], x
    for layer in range(1, L + 1):
        hs.append(h)
        z = h @ params[f"W{layer}"].T + params[f"b{layer}"]
        zs.append(z)
        h = ACT[activation](z) if layer < L else z
    return h, {"hs": hs, "zs": zs, "Ws": [params[f"W{layer}"] for layer in range(1, L + 1)],
               "act": activation}


def _prime(act, z):
    if act == "relu":
        return (z > 0).astype(float)
    if act == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    return 1 - np.tanh(z) ** 2


def mlp_backward_flat(dlogits, cache, *, bug=None):
    """Correct (bug=None) or a planted bug, on mlp_forward_flat's cache."""
    hs, zs, Ws, act = cache["hs"], cache["zs"], cache["Ws"], cache["act"]
    L = len(Ws)
    grads, delta = {}, dlogits
    for layer in range(L, 0, -1):  # 1-based layer index; delta is dL/dz_layer here
        grads[f"W{layer}"] = np.einsum("no,ni->oi", delta, hs[layer - 1])
        grads[f"b{layer}"] = delta.sum(axis=0)
        if layer > 1:
            da = delta @ (Ws[layer - 1].T if bug == "dx_with_W" else Ws[layer - 1])
            z_prev = zs[layer - 2]
            if bug == "missing_all" or (bug == "missing_2_of_4" and L == 4 and layer - 1 == 2):
                delta = da
            elif bug == "at_activation":
                delta = da * _prime(act, ACT[act](z_prev))
            elif bug == "mask_next":
                delta = da * (zs[layer - 1] > 0)
            elif bug == "mask_prev" and layer >= 3 and zs[layer - 3].shape == z_prev.shape:
                delta = da * (zs[layer - 3] > 0)
            else:
                delta = da * _prime(act, z_prev)
    return grads


def spot_the_bug_backward(dlogits, cache):
    """dW from delta BEFORE the activation derivative is applied (the circulating version)."""
    hs, zs, Ws, act = cache["hs"], cache["zs"], cache["Ws"], cache["act"]
    L = len(Ws)
    grads = {}
    delta = dlogits
    grads[f"W{L}"] = delta.T @ hs[L - 1]
    grads[f"b{L}"] = delta.sum(0)
    for layer in range(L - 1, 0, -1):
        delta = delta @ Ws[layer]               # gradient w.r.t. a_l
        grads[f"W{layer}"] = delta.T @ hs[layer - 1]  # BUG: uses da_l, not dz_l
        grads[f"b{layer}"] = delta.sum(0)
        delta = delta * _prime(act, zs[layer - 1])
    return grads


def softmax_ce(logits, y, *, sum_=False):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y])
    d = p.copy()
    d[np.arange(n), y] -= 1
    return (loss.sum(), d) if sum_ else (loss.mean(), d / n)


def mlp_loss_and_grads(params, x, y, activation="relu"):
    logits, caches = mlp_forward(params, x, activation)
    loss, d = softmax_ce(logits, y)
    return loss, mlp_backward(d, caches)


def mlp_loss_and_grads_torchfree_loop(params, x, y, activation="relu"):
    """Per-sample accumulation with += (correct)."""
    total, grads = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    n = len(y)
    for i in range(n):
        logits, cache = mlp_forward_flat(params, x[i:i + 1], activation)
        loss, d = softmax_ce(logits, y[i:i + 1])
        total += loss / n
        for k, g in mlp_backward_flat(d / n, cache).items():
            grads[k] += g
    return total, grads


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("bwd", [linear_backward, linear_backward_einsum, linear_backward_loops,
                                 linear_backward_dot])
def test_linear_backward_correct_styles(bwd):
    assert check.linear_backward(linear_forward, bwd)


def test_linear_backward_other_cache_format():
    assert check.linear_backward(linear_forward_dict, linear_backward_dict)


@pytest.mark.parametrize("fwd,bwd", [(relu_forward, relu_backward), (relu_forward, relu_backward_where),
                                     (relu_forward, relu_backward_copy),
                                     (relu_forward_mask, relu_backward_mask)])
def test_relu_backward_correct(fwd, bwd):
    assert check.relu_backward(fwd, bwd)


@pytest.mark.parametrize("fwd,bwd", [(sigmoid_forward, sigmoid_backward),
                                     (sigmoid_forward_z, sigmoid_backward_z)])
def test_sigmoid_backward_correct(fwd, bwd):
    assert check.sigmoid_backward(fwd, bwd)


@pytest.mark.parametrize("bwd", [tanh_backward, tanh_backward_cosh])
def test_tanh_backward_correct(bwd):
    assert check.tanh_backward(tanh_forward, bwd)


@pytest.mark.parametrize("fwd,bwd", [(mlp_forward, mlp_backward), (mlp_forward_flat, mlp_backward_flat)])
def test_mlp_backward_correct(fwd, bwd):
    passed = check.mlp_backward(fwd, bwd)
    assert "dW4" in str(passed) and "finite differences" in str(passed)


@pytest.mark.parametrize("fn", [mlp_loss_and_grads, mlp_loss_and_grads_torchfree_loop])
def test_mlp_loss_and_grads_correct(fn):
    assert "the loss" in str(check.mlp_loss_and_grads(fn))


def test_mlp_gradients_alias_and_seed():
    assert "mlp_loss_and_grads" in str(check.mlp_gradients(mlp_loss_and_grads, device="cpu", seed=3))


# --------------------------------------------------------------------------- linear mutants


def _lin(dx=None, dW=None, db=None):
    def bwd(dz, cache):
        x, W, _ = cache
        return ((dz @ W) if dx is None else dx(dz, x, W), (dz.T @ x) if dW is None else dW(dz, x, W),
                dz.sum(axis=0) if db is None else db(dz, x, W))
    return bwd


def _single_sample_loop(dz, cache):
    x, W, _ = cache
    dW = np.zeros_like(W)
    db = np.zeros(W.shape[0])
    for n in range(x.shape[0]):
        dW = np.outer(dz[n], x[n])  # BUG: = instead of +=
        db += dz[n]
    return dz @ W, dW, db


LINEAR_MUTANTS = [
    ("bias not summed", _lin(db=lambda dz, x, W: dz), r"db .*shape \(5, 3\).*batch axis"),
    ("bias of first sample", _lin(db=lambda dz, x, W: dz[0]), r"one sample only \(the first"),
    ("single sample via =", _single_sample_loop, r"dW does not match.*one sample only \(the last"),
    ("transposed dW", _lin(dW=lambda dz, x, W: x.T @ dz), r"dW .*shape \(4, 3\).*transpose"),
    ("dW mean over batch", _lin(dW=lambda dz, x, W: dz.T @ x / len(x)), r"N times too small \(N = 5\)"),
    ("extra N", _lin(db=lambda dz, x, W: dz.sum(0) * len(dz)), r"N times too large"),
    ("sign", _lin(dx=lambda dz, x, W: -(dz @ W)), r"sign flipped"),
    ("dx with W.T", _lin(dx=lambda dz, x, W: dz @ W.T if W.shape[0] == W.shape[1] else dz @ W),
     r"dx computed with W.T instead of W"),
    ("dx with W.T crashes", _lin(dx=lambda dz, x, W: dz @ W.T), r"raised ValueError.*\n.*at line"),
    ("NaN", _lin(db=lambda dz, x, W: dz.sum(0) * np.nan), r"NaN"),
    ("zeros", _lin(dW=lambda dz, x, W: np.zeros_like(W)), r"all zeros"),
    ("torch", _lin(dW=lambda dz, x, W: torch.tensor(dz.T @ x)), r"torch.Tensor"),
    ("list", _lin(db=lambda dz, x, W: list(dz.sum(0))), r"Python list"),
    ("float32", _lin(dW=lambda dz, x, W: (dz.T @ x).astype(np.float32)), r"float32"),
    ("None", lambda dz, cache: None, r"should return 3 values"),
    ("two values", lambda dz, cache: (dz, dz), r"should return 3 values"),
]


@pytest.mark.parametrize("label,bwd,pattern", LINEAR_MUTANTS, ids=[m[0] for m in LINEAR_MUTANTS])
def test_linear_backward_mutants(label, bwd, pattern):
    with pytest.raises(CheckFailed, match="(?s)" + pattern):
        check.linear_backward(linear_forward, bwd)


def test_linear_backward_reports_table_and_seed():
    with pytest.raises(CheckFailed) as err:
        check.linear_backward(linear_forward, _lin(dW=lambda dz, x, W: 2 * dz.T @ x), seed=7)
    text = str(err.value)
    assert "2× too large" in text and "seed" in text and "dW" in text and "max abs err" in text


def test_linear_backward_mutating_dz():
    def bwd(dz, cache):
        x, W, _ = cache
        dz *= 1.0
        dz[:] = dz + 0.0
        dz[0, 0] += 1.0
        return dz @ W, dz.T @ x, dz.sum(0)
    with pytest.raises(CheckFailed, match=r"modified its input `dz` in place"):
        check.linear_backward(linear_forward, bwd)


def test_wrong_forward_is_blamed_not_backward():
    def bad_forward(x, W, b):
        return x @ W.T, (x, W, b)
    with pytest.raises(CheckFailed, match=r"your linear_forward does not compute the forward pass"):
        check.linear_backward(bad_forward, linear_backward)


def test_not_implemented_and_exception():
    def todo(dz, cache):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.linear_backward(linear_forward, todo)
    with pytest.raises(CheckFailed, match=r"is None"):
        check.linear_backward(linear_forward, None)

    def boom(dz, cache):
        raise KeyError("W")
    with pytest.raises(CheckFailed, match=r"raised KeyError"):
        check.linear_backward(linear_forward, boom)


# --------------------------------------------------------------------------- activation mutants


def test_relu_backward_mutants():
    with pytest.raises(CheckFailed, match=r"relu'\(0\) = 1"):
        check.relu_backward(relu_forward, lambda da, z: da * (z >= 0))
    with pytest.raises(CheckFailed, match=r"mask is inverted"):
        check.relu_backward(relu_forward, lambda da, z: da * (z < 0))
    with pytest.raises(CheckFailed, match=r"without multiplying by the upstream"):
        check.relu_backward(relu_forward, lambda da, z: (z > 0).astype(float))
    with pytest.raises(CheckFailed, match=r"upstream gradient unchanged"):
        check.relu_backward(relu_forward, lambda da, z: da.copy())
    with pytest.raises(CheckFailed, match=r"integer/boolean"):
        check.relu_backward(relu_forward, lambda da, z: z > 0)


def test_relu_backward_in_place_on_da():
    def bwd(da, z):
        da[z <= 0] = 0.0  # writes into the upstream gradient
        return da
    with pytest.raises(CheckFailed, match=r"modified its input `da` in place"):
        check.relu_backward(relu_forward, bwd)


def test_sigmoid_backward_mutants():
    def at_activation(da, a):
        s = 1 / (1 + np.exp(-a))
        return da * s * (1 - s)
    with pytest.raises(CheckFailed, match=r"at the activation a = σ\(z\) instead of at z"):
        check.sigmoid_backward(sigmoid_forward, at_activation)
    with pytest.raises(CheckFailed, match=r"z·\(1 − z\)"):
        check.sigmoid_backward(sigmoid_forward_z, lambda da, z: da * z * (1 - z))
    with pytest.raises(CheckFailed, match=r"without multiplying by the upstream"):
        check.sigmoid_backward(sigmoid_forward, lambda da, a: a * (1 - a))
    with pytest.raises(CheckFailed, match=r"sign flipped"):
        check.sigmoid_backward(sigmoid_forward, lambda da, a: -da * a * (1 - a))


def test_tanh_backward_mutants():
    with pytest.raises(CheckFailed, match=r"1 − tanh\(a\)²"):
        check.tanh_backward(tanh_forward, lambda da, a: da * (1 - np.tanh(a) ** 2))
    with pytest.raises(CheckFailed, match=r"1 − a \(the square is missing\)"):
        check.tanh_backward(tanh_forward, lambda da, a: da * (1 - a))
    with pytest.raises(CheckFailed, match=r"NaN"):
        check.tanh_backward(tanh_forward, lambda da, a: da * (1 - a**2) / (a * 0))
    with pytest.raises(CheckFailed, match=r"shape"):
        check.tanh_backward(tanh_forward, lambda da, a: (da * (1 - a**2)).sum(0))


# --------------------------------------------------------------------------- MLP mutants


def _flat(bug):
    return lambda d, cache: mlp_backward_flat(d, cache, bug=bug)


MLP_MUTANTS = [
    ("spot the bug", spot_the_bug_backward, r"spot-the-bug loop"),
    ("missing derivative everywhere", _flat("missing_all"), r"missing in every hidden layer"),
    ("missing derivative in layer 2 of a 4-layer net", _flat("missing_2_of_4"),
     r"4 layers, relu.*missing in hidden layer 2 \(only there\)"),
    ("sigma'(a)", _flat("at_activation"), r"at the activation a instead of the pre-activation z"),
    ("mask of the next layer", _flat("mask_next"), r"next layer's pre-activation"),
    ("dx with W.T", _flat("dx_with_W"), r"dx computed with W.T instead of W"),
    ("mask of the previous layer", _flat("mask_prev"), r"previous layer's pre-activation"),
]


@pytest.mark.parametrize("label,bwd,pattern", MLP_MUTANTS, ids=[m[0] for m in MLP_MUTANTS])
def test_mlp_backward_mutants(label, bwd, pattern):
    with pytest.raises(CheckFailed, match="(?s)" + pattern):
        check.mlp_backward(mlp_forward_flat, bwd)


def test_mlp_backward_relu_kink_convention():
    def bwd(d, caches):
        grads, delta = {}, d
        for layer in range(len(caches), 0, -1):
            lc, act, ac = caches[layer - 1]
            if act == "relu":
                delta = delta * (ac >= 0)
            elif act is not None:
                delta = BWD[act](delta, ac)
            delta, grads[f"W{layer}"], grads[f"b{layer}"] = linear_backward(delta, lc)
        return grads
    with pytest.raises(CheckFailed, match=r"(?s)exactly 0.*relu'\(0\) = 1"):
        check.mlp_backward(mlp_forward, bwd)


def test_mlp_backward_key_problems():
    def off_by_one(d, caches):
        g = mlp_backward(d, caches)
        return {f"{k[0]}{int(k[1:]) - 1}": v for k, v in g.items()}
    with pytest.raises(CheckFailed, match=r"off by one layer"):
        check.mlp_backward(mlp_forward, off_by_one)

    def d_keys(d, caches):
        return {"d" + k: v for k, v in mlp_backward(d, caches).items()}
    with pytest.raises(CheckFailed, match=r"keys like 'dW1'"):
        check.mlp_backward(mlp_forward, d_keys)

    def as_list(d, caches):
        return list(mlp_backward(d, caches).values())
    with pytest.raises(CheckFailed, match=r"as a dict"):
        check.mlp_backward(mlp_forward, as_list)

    def swapped_values(d, caches):
        g = mlp_backward(d, caches)
        if len(caches) >= 3:
            g["W1"], g["W2"] = g["W2"], g["W1"]
        return g
    with pytest.raises(CheckFailed, match=r"wrong layer's key"):
        check.mlp_backward(mlp_forward, swapped_values)


def test_mlp_backward_bias_not_summed_and_single_sample():
    # the last layer's db would be dlogits itself without the sum over the batch
    with pytest.raises(CheckFailed, match=r"batch axis"):
        check.mlp_backward(mlp_forward, lambda d, c: {**mlp_backward(d, c),
                                                       f"b{len(c)}": d})
    with pytest.raises(CheckFailed, match=r"one sample only \(the last"):
        check.mlp_backward(mlp_forward, lambda d, c: {**mlp_backward(d, c),
                                                       f"W{len(c)}": np.outer(d[-1], c[-1][0][0][-1])})


def test_mlp_backward_torch_tensor_and_mutation():
    with pytest.raises(CheckFailed, match=r"torch.Tensor"):
        check.mlp_backward(mlp_forward, lambda d, c: {k: torch.tensor(v) for k, v in mlp_backward(d, c).items()})

    def mutates(d, caches):
        g = mlp_backward(d, caches)
        d *= 0.0
        return g
    with pytest.raises(CheckFailed, match=r"modified its input `dlogits` in place"):
        check.mlp_backward(mlp_forward, mutates)


def test_mlp_loss_and_grads_mutants():
    def summed(params, x, y, activation="relu"):
        logits, caches = mlp_forward(params, x, activation)
        loss, d = softmax_ce(logits, y, sum_=True)
        return loss, mlp_backward(d, caches)
    with pytest.raises(CheckFailed, match=r"(?s)loss does not match.*N times too large"):
        check.mlp_loss_and_grads(summed)

    def grad_summed(params, x, y, activation="relu"):
        logits, caches = mlp_forward(params, x, activation)
        loss, d = softmax_ce(logits, y)
        return loss, mlp_backward(d * len(y), caches)
    with pytest.raises(CheckFailed, match=r"N times too large \(N = 5\)"):
        check.mlp_loss_and_grads(grad_summed)

    def no_one_hot(params, x, y, activation="relu"):
        logits, caches = mlp_forward(params, x, activation)
        loss, d = softmax_ce(logits, y)
        d[np.arange(len(y)), y] += 1 / len(y)
        return loss, mlp_backward(d, caches)
    with pytest.raises(CheckFailed, match=r"one-hot of the true class was not subtracted"):
        check.mlp_loss_and_grads(no_one_hot)

    def spot(params, x, y, activation="relu"):
        logits, cache = mlp_forward_flat(params, x, activation)
        loss, d = softmax_ce(logits, y)
        return loss, spot_the_bug_backward(d, cache)
    with pytest.raises(CheckFailed, match=r"spot-the-bug loop"):
        check.mlp_gradients(spot)

    with pytest.raises(CheckFailed, match=r"should return 2 values"):
        check.mlp_loss_and_grads(lambda params, x, y, activation="relu": 0.0)
    with pytest.raises(CheckFailed, match=r"expected a single number"):
        check.mlp_loss_and_grads(lambda p, x, y, activation="relu": (np.zeros(len(y)), {}))


def test_checks_are_quiet_and_deterministic(capfd):
    with pytest.raises(CheckFailed) as a:
        check.mlp_backward(mlp_forward_flat, _flat("missing_all"), seed=1)
    with pytest.raises(CheckFailed) as b:
        check.mlp_backward(mlp_forward_flat, _flat("missing_all"), seed=1)
    assert str(a.value) == str(b.value)
    assert capfd.readouterr().err == ""


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        assert check.linear_backward(linear_forward, linear_backward, device="cuda")
    else:
        with pytest.raises(Exception, match=r"(?i)cuda|gpu"):
            check.linear_backward(linear_forward, linear_backward, device="cuda")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_false_alarms_for_other_seeds(seed):
    assert check.linear_backward(linear_forward, linear_backward_einsum, seed=seed)
    assert check.sigmoid_backward(sigmoid_forward, sigmoid_backward, seed=seed)
    assert check.mlp_backward(mlp_forward_flat, mlp_backward_flat, seed=seed)
    assert check.mlp_gradients(mlp_loss_and_grads_torchfree_loop, seed=seed)


def test_cuda_path_by_injection(fake_gpu):
    """The device="cuda" path on a CPU-only machine: the reference runs where torch_device says."""
    passed = check.mlp_gradients(mlp_loss_and_grads, device="cuda")
    assert "device cuda" in str(passed)
    with pytest.raises(CheckFailed, match="spot-the-bug"):
        check.mlp_backward(mlp_forward_flat, spot_the_bug_backward, device="cuda")


hyp = pytest.importorskip("hypothesis")


@hyp.settings(max_examples=5, deadline=None)
@hyp.given(seed=hyp.strategies.integers(0, 10**6), entry=hyp.strategies.integers(0, 11))
def test_property_linear_accepts_correct_and_rejects_any_corrupted_entry(seed, entry):
    assert check.linear_backward(linear_forward, linear_backward_einsum, seed=seed)

    def corrupted(dz, cache):
        dx, dW, db = linear_backward(dz, cache)
        dW = dW.copy()
        dW.flat[entry % dW.size] += 1e-3 * (1 + np.abs(dW).max())
        return dx, dW, db
    with pytest.raises(CheckFailed, match=r"dW does not match"):
        check.linear_backward(linear_forward, corrupted, seed=seed)
