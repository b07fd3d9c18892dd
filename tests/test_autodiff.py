"""Tests of checks.autodiff: correct engines accepted, buggy ones rejected with the right
diagnosis (DESIGN.md §6.2)."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import autodiff as check
from checks.engine import CheckFailed

# ---------------------------------------------------------------------------------------------
# A correct engine, micrograd style (recursive closures, iterative post-order topological sort)
# ---------------------------------------------------------------------------------------------

class Value:
    def __init__(self, data, _children=(), _op=""):
        self.data = float(data)
        self.grad = 0.0
        self._backward = lambda: None
        self._prev = set(_children)
        self._op = _op

    def __add__(self, other):
        other = other if isinstance(other, Value) else type(self)(other)
        out = type(self)(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else type(self)(other)
        out = type(self)(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, k):
        assert isinstance(k, (int, float))
        out = type(self)(self.data ** k, (self,), f"**{k}")

        def _backward():
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        out = type(self)(math.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = type(self)(math.log(self.data), (self,), "log")

        def _backward():
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def tanh(self):
        out = type(self)(math.tanh(self.data), (self,), "tanh")

        def _backward():
            self.grad += (1 - out.data ** 2) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        out = type(self)(max(self.data, 0.0), (self,), "relu")

        def _backward():
            self.grad += (self.data > 0) * out.grad
        out._backward = _backward
        return out

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        return self * other ** -1

    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return type(self)(other) - self

    def __rmul__(self, other):
        return self * other

    def __rtruediv__(self, other):
        return type(self)(other) / self

    def _topo(self):
        topo, seen, stack = [], set(), [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                topo.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            for child in node._prev:
                if child not in seen:
                    stack.append((child, False))
        return topo

    def backward(self):
        topo = self._topo()
        for node in topo:
            if node._prev:
                node.grad = 0.0
        self.grad = 1.0
        for node in reversed(topo):
            node._backward()


# ---------------------------------------------------------------------------------------------
# A second correct style: local derivatives stored on the edges, Kahn's algorithm for the order
# ---------------------------------------------------------------------------------------------

class EdgeValue:
    """Each node keeps [(parent, d self / d parent)]; backward walks consumers-count order."""

    def __init__(self, data, parents=()):
        self.data = data
        self.grad = 0
        self.parents = list(parents)

    @staticmethod
    def _wrap(x):
        return x if isinstance(x, EdgeValue) else EdgeValue(float(x))

    def __add__(self, o):
        o = self._wrap(o)
        return EdgeValue(self.data + o.data, [(self, 1.0), (o, 1.0)])

    __radd__ = __add__

    def __mul__(self, o):
        o = self._wrap(o)
        return EdgeValue(self.data * o.data, [(self, o.data), (o, self.data)])

    __rmul__ = __mul__

    def __sub__(self, o):
        o = self._wrap(o)
        return EdgeValue(self.data - o.data, [(self, 1.0), (o, -1.0)])

    def __rsub__(self, o):
        return self._wrap(o) - self

    def __truediv__(self, o):
        o = self._wrap(o)
        return EdgeValue(self.data / o.data, [(self, 1 / o.data), (o, -self.data / o.data ** 2)])

    def __rtruediv__(self, o):
        return self._wrap(o) / self

    def __neg__(self):
        return EdgeValue(-self.data, [(self, -1.0)])

    def __pow__(self, k):
        return EdgeValue(self.data ** k, [(self, k * self.data ** (k - 1))])

    def exp(self):
        e = math.exp(self.data)
        return EdgeValue(e, [(self, e)])

    def log(self):
        return EdgeValue(math.log(self.data), [(self, 1 / self.data)])

    def tanh(self):
        t = math.tanh(self.data)
        return EdgeValue(t, [(self, 1 - t * t)])

    def relu(self):
        return EdgeValue(max(0.0, self.data), [(self, 1.0 if self.data > 0 else 0.0)])

    def backward(self):
        consumers, stack, seen = {}, [self], {id(self)}
        while stack:
            n = stack.pop()
            for p, _ in n.parents:
                consumers[id(p)] = consumers.get(id(p), 0) + 1
                if id(p) not in seen:
                    seen.add(id(p))
                    stack.append(p)
        upstream = {id(self): 1.0}
        ready = [self]
        while ready:
            n = ready.pop()
            g = upstream.get(id(n), 0.0)
            if not n.parents:
                n.grad += g
            for p, local in n.parents:
                upstream[id(p)] = upstream.get(id(p), 0.0) + local * g
                consumers[id(p)] -= 1
                if consumers[id(p)] == 0:
                    ready.append(p)


def _mutant(**methods):
    """A subclass of the correct Value with some methods replaced."""
    return type("Mutant", (Value,), methods)


# ---------------------------------------------------------------------------------------------
# Accepted
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Value, EdgeValue], ids=["micrograd", "edges"])
def test_correct_engines_pass_every_check(cls):
    assert check.value_ops(cls)
    assert check.value_derivatives(cls)
    passed = check.value_class(cls)
    assert "value_class" in str(passed)


def test_pass_line_and_other_seed():
    text = str(check.value_backward(Value, seed=3))
    assert text.startswith("✓ value_backward") and "finite differences" in text


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_leaves=st.integers(1, 6), n_ops=st.integers(1, 40))
def test_random_expression_agrees_with_torch_for_the_reference_engine(seed, n_leaves, n_ops):
    """The generator makes well-conditioned graphs: a correct engine agrees with torch."""
    build, x = check.random_expression(seed, n_leaves=n_leaves, n_ops=n_ops)
    leaves = [Value(v) for v in x]
    out = build(leaves)
    out.backward()
    t = torch.tensor(x, requires_grad=True)
    ref = build([t[i] for i in range(len(x))])
    ref.backward()
    assert math.isclose(out.data, ref.item(), rel_tol=1e-12, abs_tol=1e-12)
    np.testing.assert_allclose([v.grad for v in leaves], t.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Rejected, each with its diagnosis
# ---------------------------------------------------------------------------------------------

def _mul_assign(self, other):
    other = other if isinstance(other, Value) else type(self)(other)
    out = type(self)(self.data * other.data, (self, other), "*")

    def _backward():
        self.grad = other.data * out.grad
        other.grad = self.data * out.grad
    out._backward = _backward
    return out


def _add_assign(self, other):
    other = other if isinstance(other, Value) else type(self)(other)
    out = type(self)(self.data + other.data, (self, other), "+")

    def _backward():
        self.grad = out.grad
        other.grad = out.grad
    out._backward = _backward
    return out


def _tanh_assign(self):
    out = type(self)(math.tanh(self.data), (self,), "tanh")

    def _backward():
        self.grad = (1 - out.data ** 2) * out.grad
    out._backward = _backward
    return out


@pytest.mark.parametrize("methods", [{"__mul__": _mul_assign}, {"__add__": _add_assign},
                                     {"tanh": _tanh_assign}], ids=["mul", "add", "tanh"])
def test_assign_instead_of_accumulate(methods):
    with pytest.raises(CheckFailed, match=r"gradient not accumulated on a reused node: use \+="):
        check.value_backward(_mutant(**methods))


def _backward_preorder(self):
    """No topological sort: run a node's backward, then recurse into its children once."""
    seen = set()

    def visit(node):
        if node in seen:
            return
        seen.add(node)
        node._backward()
        for child in node._prev:
            visit(child)
    self.grad = 1.0
    visit(self)


def _backward_not_reversed(self):
    topo = self._topo()
    self.grad = 1.0
    for node in topo:  # leaves first: forgot reversed()
        node._backward()


def _backward_only_output(self):
    self.grad = 1.0
    self._backward()


def _backward_topo_with_duplicates(self):
    """Post-order without a visited set: a shared node appears (and runs) more than once."""
    topo, stack = [], [(self, False)]
    while stack:
        node, done = stack.pop()
        if done:
            topo.append(node)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev)
    for node in topo:
        if node._prev:
            node.grad = 0.0
    self.grad = 1.0
    for node in reversed(topo):
        node._backward()


@pytest.mark.parametrize("fn", [_backward_preorder, _backward_topo_with_duplicates])
def test_wrong_topological_order(fn):
    with pytest.raises(CheckFailed, match="wrong topological order"):
        check.value_backward(_mutant(backward=fn))


@pytest.mark.parametrize("fn", [_backward_not_reversed, _backward_only_output])
def test_gradient_does_not_flow_through_the_chain(fn):
    with pytest.raises(CheckFailed, match="does not flow back through the whole graph"):
        check.value_backward(_mutant(backward=fn))


def _mul_without_upstream(self, other):
    other = other if isinstance(other, Value) else type(self)(other)
    out = type(self)(self.data * other.data, (self, other), "*")

    def _backward():
        self.grad += other.data
        other.grad += self.data
    out._backward = _backward
    return out


def _tanh_without_upstream(self):
    out = type(self)(math.tanh(self.data), (self,), "tanh")

    def _backward():
        self.grad += 1 - out.data ** 2
    out._backward = _backward
    return out


@pytest.mark.parametrize("methods,op", [({"__mul__": _mul_without_upstream}, "a * b"),
                                        ({"tanh": _tanh_without_upstream}, "a.tanh()")])
def test_closure_ignoring_out_grad(methods, op):
    with pytest.raises(CheckFailed, match=f"the backward of `{re.escape(op)}` ignores out.grad"):
        check.value_derivatives(_mutant(**methods))


def _backward_recursive(self):
    topo, seen = [], set()

    def build(v):
        if v not in seen:
            seen.add(v)
            for child in v._prev:
                build(child)
            topo.append(v)
    build(self)
    for node in topo:
        if node._prev:
            node.grad = 0.0
    self.grad = 1.0
    for node in reversed(topo):
        node._backward()


def test_recursive_topological_sort_fails_on_the_deep_chain():
    with pytest.raises(CheckFailed, match="use an iterative topological sort") as err:
        check.value_backward(_mutant(backward=_backward_recursive))
    assert "RecursionError" in str(err.value)


def _backward_unseeded(self):
    for node in reversed(self._topo()):
        node._backward()


def test_unseeded_gradient():
    with pytest.raises(CheckFailed, match=r"seed the output's grad with 1\.0"):
        check.value_derivatives(_mutant(backward=_backward_unseeded))


@pytest.mark.parametrize("missing", ["__rmul__", "__radd__", "__rsub__", "__rtruediv__"])
def test_missing_reverse_operators(missing):
    cls = _mutant(**{missing: lambda self, other: NotImplemented})
    with pytest.raises(CheckFailed, match=r"__rmul__/__radd__/__rsub__/__rtruediv__"):
        check.value_ops(cls)
    with pytest.raises(CheckFailed, match="missing reverse operator"):
        check.value_class(cls)


def _unary(fn, local):
    def method(self):
        out = type(self)(fn(self.data), (self,), "f")

        def _backward():
            self.grad += local(self.data, out.data) * out.grad
        out._backward = _backward
        return out
    return method


def _pow_wrong(self, k):
    out = type(self)(self.data ** k, (self,), "**")

    def _backward():
        self.grad += k * self.data ** k * out.grad
    out._backward = _backward
    return out


def _div_wrong(self, other):
    other = other if isinstance(other, Value) else type(self)(other)
    out = type(self)(self.data / other.data, (self, other), "/")

    def _backward():
        self.grad += out.grad / other.data
        other.grad += -out.grad / other.data ** 2
    out._backward = _backward
    return out


@pytest.mark.parametrize("methods,pattern", [
    ({"tanh": _unary(math.tanh, lambda x, t: 1 - t)}, r"d/dx of tanh is wrong.*1 − tanh"),
    ({"tanh": _unary(math.tanh, lambda x, t: 1 - x * x)}, r"d/dx of tanh is wrong"),
    ({"exp": _unary(math.exp, lambda x, e: x)}, r"d/dx of exp is wrong"),
    ({"exp": _unary(math.exp, lambda x, e: 1.0)}, r"d/dx of exp is wrong"),
    ({"log": _unary(math.log, lambda x, y: x)}, r"d/dx of log is wrong"),
    ({"log": _unary(math.log, lambda x, y: -1 / x)}, r"(?s)Expected: d log\(a\)/da = 1/a.*sign flipped"),
    ({"__pow__": _pow_wrong}, r"d/dx of pow is wrong: n·xⁿ instead of n·xⁿ⁻¹"),
    ({"__truediv__": _div_wrong}, r"d/dx of division is wrong"),
    ({"relu": _unary(lambda x: max(x, 0.0), lambda x, y: 1.0)}, r"d/dx of relu is wrong"),
    ({"__rsub__": lambda self, other: self - other}, r"2\.5 - a"),
])
def test_wrong_derivative_of_one_operator_is_named(methods, pattern):
    with pytest.raises(CheckFailed, match=pattern):
        check.value_class(_mutant(**methods))


def test_relu_derivative_at_the_kink_is_zero_as_in_torch():
    kink = _unary(lambda x: max(x, 0.0), lambda x, y: 1.0 if x >= 0 else 0.0)
    with pytest.raises(CheckFailed, match=r"relu'\(0\) = 1: the kink at 0 is counted as positive"):
        check.value_derivatives(_mutant(relu=kink))
    # the convention through out.data (micrograd's `out.data > 0`) is the same at 0: accepted
    via_output = _unary(lambda x: max(x, 0.0), lambda x, y: float(y > 0))
    assert check.value_derivatives(_mutant(relu=via_output))


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_accept_correct_engines(seed):
    assert check.value_backward(EdgeValue, seed=seed)


def test_grad_starting_as_none_is_explained():
    class NoneGrad(Value):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.grad = None
    with pytest.raises(CheckFailed, match="grad = 0.0"):
        check.value_ops(NoneGrad)


def test_checks_are_silent(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check.value_ops(Value)
        with pytest.raises(CheckFailed):
            check.value_class(_mutant(__mul__=_mul_assign))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def _backward_no_reset(self):
    """micrograd's backward: intermediate grads from a previous call are propagated again."""
    self.grad = 1.0
    for node in reversed(self._topo()):
        node._backward()


def _backward_resets_leaves(self):
    topo = self._topo()
    for node in topo:
        node.grad = 0.0
    self.grad = 1.0
    for node in reversed(topo):
        node._backward()


def test_backward_twice_without_reset_of_intermediate_nodes():
    with pytest.raises(CheckFailed, match="kept their gradient from the first backward"):
        check.value_backward(_mutant(backward=_backward_no_reset))


def test_backward_twice_resetting_the_leaves():
    with pytest.raises(CheckFailed, match="the second backward\\(\\) reset the leaves"):
        check.value_backward(_mutant(backward=_backward_resets_leaves))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

class _NotImplemented(Value):
    def __add__(self, other):
        raise NotImplementedError()


def test_not_implemented_yet():
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.value_ops(_NotImplemented)


def test_none_and_not_a_class():
    with pytest.raises(CheckFailed, match="is None"):
        check.value_class(None)
    with pytest.raises(CheckFailed, match="should have the attributes"):
        check.value_ops(float)


def test_operator_without_numbers():
    def add(self, other):
        if not isinstance(other, Value):
            return NotImplemented
        return Value.__add__(self, other)
    with pytest.raises(CheckFailed, match="must accept a plain number too"):
        check.value_ops(_mutant(__add__=add))


def test_operator_returning_a_float():
    cls = _mutant(__add__=lambda self, other: self.data + getattr(other, "data", other))
    with pytest.raises(CheckFailed, match="not a Value"):
        check.value_ops(cls)


def test_missing_backward_method():
    class NoBackward(Value):
        backward = None
    with pytest.raises(CheckFailed, match=r"attach it to the class \(Value.backward = backward\)"):
        check.value_derivatives(NoBackward)


def test_exception_in_backward_is_shown():
    def boom(self):
        raise ValueError("oops")
    with pytest.raises(CheckFailed, match="ValueError: oops"):
        check.value_derivatives(_mutant(backward=boom))


# ---------------------------------------------------------------------------------------------
# Custom torch.autograd.Function
# ---------------------------------------------------------------------------------------------

class Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * y * (1 - y)


def _sigmoid_with(backward):
    return type("S", (torch.autograd.Function,), {
        "forward": staticmethod(Sigmoid.forward), "backward": staticmethod(backward)})


def test_custom_sigmoid_accepted():
    assert "custom_sigmoid" in str(check.custom_sigmoid(Sigmoid))
    assert torch.autograd.gradcheck(Sigmoid.apply, torch.randn(5, dtype=torch.float64,
                                                               requires_grad=True))


@pytest.mark.parametrize("backward,pattern", [
    (lambda ctx, g: ctx.saved_tensors[0] * (1 - ctx.saved_tensors[0]), "grad_output was ignored"),
    (lambda ctx, g: g * ctx.saved_tensors[0], "the derivative is missing"),
    (lambda ctx, g: g, "passed grad_output through unchanged"),
])
def test_custom_sigmoid_bugs(backward, pattern):
    with pytest.raises(CheckFailed, match=pattern):
        check.custom_sigmoid(_sigmoid_with(backward))


def test_custom_sigmoid_not_a_function_class():
    with pytest.raises(CheckFailed, match="subclass of torch.autograd.Function"):
        check.custom_sigmoid(torch.sigmoid)


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

def test_cuda_path_is_taken_when_a_gpu_is_reported(fake_gpu):
    """The CUDA path on a CPU-only machine: pretend a GPU exists and record the device used."""
    used = fake_gpu
    assert "device cuda" in str(check.value_derivatives(Value))
    assert "device cuda" in str(check.custom_sigmoid(Sigmoid))
    assert "cuda" in used


def test_cuda_without_gpu_is_an_error(monkeypatch):
    from checks.engine import CheckError, devices
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    with pytest.raises(CheckError, match="no CUDA GPU"):
        check.value_class(Value, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_reference():
    assert "device cuda" in str(check.value_class(Value, device="cuda"))
    assert "device cuda" in str(check.custom_sigmoid(Sigmoid, device="cuda"))
