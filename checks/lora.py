"""Checks for notebook 08, LoRA (low-rank adaptation).

    from checks import lora as check
    check.lora_forward(lora_forward)                    # h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ
    check.lora_backward(lora_forward, lora_backward)    # (dx, dA, dB); W0 is frozen
    check.lora_merge(lora_merge)                        # W0 + (alpha/r) B A
    check.lora_param_count(lora_param_count)            # r (d_in + d_out)

Conventions: x (N, in), W0 (out, in) frozen, A (r, in), B (out, r), scale s = alpha / r. The
LoRA layer has no bias of its own: a frozen base bias is added outside (it needs no gradient).
`load_pretrained_mlp()` loads the small pretrained digits MLP the notebook fine-tunes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from .data import DATA_DIR
from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Diagnosis,
    Hypothesis,
    call,
    check_gradients,
    check_outputs,
    public_check,
    resolve_device,
    unpack,
)
from .engine.report import failure

SHAPES = "x (N, in), W0 (out, in), A (r, in), B (out, r)"


def load_pretrained_mlp() -> dict[str, np.ndarray]:
    """The pretrained 64-64-10 ReLU digits MLP: {"W1" (64, 64), "b1", "W2" (10, 64), "b2"}."""
    path = DATA_DIR / "digits_mlp.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python data/make_pretrained.py`")
    with np.load(path) as d:
        return {k: d[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2")}


# --------------------------------------------------------------------------- cases


def _cases(seed: int) -> list[Case]:
    """Seeded LoRA inputs: (label, N, in, out, r, alpha, fresh adapter with B = 0).

    The first case is square (in = out = r) so that adapters used in the wrong orientation
    still compute something, and the bug can be named from the numbers. alpha is chosen so
    that alpha/r is never 1, 2 or 1/2 (those would be ambiguous with other bugs), except at
    r = 1 where alpha/r = alpha by definition.
    """
    rng = np.random.default_rng(seed)
    specs = [
        ("square layer, in = out = r", 3, 4, 4, 4, 6.0, False),
        ("N = 1, rank 1", 1, 5, 3, 1, 3.0, False),
        ("rank 2, out ≠ in", 5, 7, 4, 2, 5.0, False),
        ("rank 8, out > in", 7, 6, 9, 8, 12.0, False),
        ("fresh adapter (B = 0), rank 2", 3, 5, 4, 2, 3.0, True),
    ]
    cases = []
    for label, n, d_in, d_out, r, alpha, fresh in specs:
        inputs = {
            "x": rng.normal(size=(n, d_in)),
            "W0": rng.normal(size=(d_out, d_in)) / np.sqrt(d_in),
            "A": rng.normal(size=(r, d_in)) / np.sqrt(d_in),
            "B": np.zeros((d_out, r)) if fresh else rng.normal(size=(d_out, r)),
        }
        cases.append(Case(inputs, extra={"alpha": alpha}, label=f"{label}, alpha = {alpha:g}",
                          batch=n))
    return cases


# --------------------------------------------------------------------------- references


def _lora(x, W0, A, B, alpha, scale=None, grad_scale=None):
    """x W0ᵀ + s x Aᵀ Bᵀ; the adapter's value uses `scale`, its derivative `grad_scale`."""
    r = A.shape[0]
    s = alpha / r if scale is None else scale
    g = s if grad_scale is None else grad_scale
    adapter = x @ A.T @ B.T
    return x @ W0.T + s * adapter.detach() + g * (adapter - adapter.detach())


_WRONG_SCALES = [
    ("the alpha/r scale is missing (scale 1)",
     "The adapter's output is multiplied by alpha / r: h = x W0ᵀ + (alpha / r) · x Aᵀ Bᵀ.",
     lambda alpha, r: 1.0),
    ("scaled by alpha instead of alpha / r",
     "Divide by the rank: the scale is alpha / r (so that changing r does not change the "
     "size of the update).", lambda alpha, r: alpha),
    ("scaled by r / alpha instead of alpha / r",
     "The scale is alpha / r, not its inverse.", lambda alpha, r: r / alpha),
    ("scaled by 1 / r instead of alpha / r",
     "The scale is alpha / r: alpha is missing.", lambda alpha, r: 1.0 / r),
]


def _scale_hypotheses(kind: str) -> list[Hypothesis]:
    """The wrong scales a learner may use in place of alpha / r, in the value or the gradients."""
    hyps = []
    for bug, hint, f in _WRONG_SCALES:
        if kind == "value":
            hyps.append(Hypothesis(bug, hint, lambda x, W0, A, B, alpha, f=f: _lora(
                x, W0, A, B, alpha, scale=f(alpha, A.shape[0]))))
        else:
            hyps.append(Hypothesis(
                f"{bug} in the backward pass", hint + " The same factor multiplies dA, dB and "
                "the adapter's share of dx.", lambda x, W0, A, B, alpha, f=f: _lora(
                    x, W0, A, B, alpha, grad_scale=f(alpha, A.shape[0]))))
    return hyps


def _forward_hypotheses() -> list[Hypothesis]:
    transposed = ("Use the shapes: x (N, in) @ A.T (in, r) gives (N, r); that @ B.T (r, out) "
                  "gives (N, out). So h = x @ W0.T + (alpha / r) * (x @ A.T) @ B.T.")
    return [
        *_scale_hypotheses("value"),
        Hypothesis("alpha/r multiplies the whole output, base included",
                   "Only the adapter is scaled: h = x W0ᵀ + (alpha / r) · x Aᵀ Bᵀ; the frozen "
                   "base x W0ᵀ is left as it is.",
                   lambda x, W0, A, B, alpha: (alpha / A.shape[0]) * (x @ W0.T + x @ A.T @ B.T)),
        Hypothesis("the frozen base x W0ᵀ is missing", "h = x W0ᵀ + (alpha / r) · x Aᵀ Bᵀ: the "
                   "adapter adds to the pretrained layer, it does not replace it.",
                   lambda x, W0, A, B, alpha: (alpha / A.shape[0]) * (x @ A.T @ B.T)),
        Hypothesis("the adapters are transposed: x A Bᵀ instead of x Aᵀ Bᵀ", transposed,
                   lambda x, W0, A, B, alpha: x @ W0.T + (alpha / A.shape[0]) * (x @ A @ B.T)),
        Hypothesis("the adapters are transposed: x Aᵀ B instead of x Aᵀ Bᵀ", transposed,
                   lambda x, W0, A, B, alpha: x @ W0.T + (alpha / A.shape[0]) * (x @ A.T @ B)),
        Hypothesis("the adapters are transposed: x A B instead of x Aᵀ Bᵀ", transposed,
                   lambda x, W0, A, B, alpha: x @ W0.T + (alpha / A.shape[0]) * (x @ A @ B)),
        Hypothesis("A and B swapped: x Bᵀ Aᵀ instead of x Aᵀ Bᵀ",
                   "A (r, in) acts first, it maps the input down to r numbers; B (out, r) maps "
                   "them up: h = x W0ᵀ + (alpha / r) · (x @ A.T) @ B.T.",
                   lambda x, W0, A, B, alpha: x @ W0.T + (alpha / A.shape[0]) * (x @ B.T @ A.T)),
        Hypothesis("A and B swapped: x B A instead of x Aᵀ Bᵀ",
                   "A (r, in) acts first, it maps the input down to r numbers; B (out, r) maps "
                   "them up: h = x W0ᵀ + (alpha / r) · (x @ A.T) @ B.T.",
                   lambda x, W0, A, B, alpha: x @ W0.T + (alpha / A.shape[0]) * (x @ B @ A)),
        Hypothesis("W0 is not transposed: x W0 instead of x W0ᵀ",
                   "W0 has shape (out, in), as in PyTorch: the base output is x @ W0.T.",
                   lambda x, W0, A, B, alpha: x @ W0 + (alpha / A.shape[0]) * (x @ A.T @ B.T)),
    ]


def _shape_hint(exc: CheckFailed, name: str) -> CheckFailed:
    """Add the LoRA shapes to a learner's matmul error (usually a transposed adapter)."""
    text = str(exc)
    if "raised ValueError" in text and ("matmul" in text or "align" in text or "shape" in text):
        return CheckFailed(
            f"{text}\nHint: a matrix product has mismatched shapes, usually an adapter used "
            f"the wrong way round. Shapes: {SHAPES}; x @ A.T is (N, r), (x @ A.T) @ B.T is "
            "(N, out).")
    return exc


def _forward(lora_forward: Callable, inputs: dict, alpha: float, name: str) -> tuple:
    try:
        result = call(lora_forward, inputs["x"], inputs["W0"], inputs["A"], inputs["B"], alpha,
                      name=name)
    except CheckFailed as exc:
        raise _shape_hint(exc, name) from None
    return unpack(result, ("h", "cache"), name)


@public_check
def lora_forward(lora_forward: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `lora_forward(x, W0, A, B, alpha)` -> (h, cache), h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ."""

    def learner(inputs: dict, extra: dict) -> dict:
        h, _cache = _forward(lora_forward, inputs, extra["alpha"], "lora_forward")
        return {"h": h}

    def reference(x, W0, A, B, alpha):
        return {"h": _lora(x, W0, A, B, alpha)}

    return check_outputs("lora_forward", learner, reference, _cases(seed),
                         hypotheses=_forward_hypotheses(), device=device, seed=seed)


# --------------------------------------------------------------------------- backward


def _backward_hypotheses() -> list[Hypothesis]:
    def dx_base_only(x, W0, A, B, alpha):  # dx = dh W0: the adapter path is not differentiated
        s = alpha / A.shape[0]
        return x @ W0.T + s * (x.detach() @ A.T @ B.T)

    def dx_adapter_only(x, W0, A, B, alpha):  # dx = s dh B A: the base path is forgotten
        return x.detach() @ W0.T + (alpha / A.shape[0]) * (x @ A.T @ B.T)

    def dx_unscaled_adapter(x, W0, A, B, alpha):  # dx = dh W0 + dh B A (no alpha/r on that path)
        s = alpha / A.shape[0]
        ad = x @ A.T @ B.T
        ad_x = x @ (A.T @ B.T).detach()
        return (x @ W0.T + s * ad.detach() + s * (ad - ad.detach())
                + (1 - s) * (ad_x - ad_x.detach()))

    def dB_with_x(x, W0, A, B, alpha):  # dB = s dhᵀ x (x instead of u = x Aᵀ): needs in = r
        s = alpha / A.shape[0]
        wrong = x.detach() @ B.T
        return x @ W0.T + s * (x @ A.T @ B.detach().T) + s * (wrong - wrong.detach())

    def dA_dB_swapped(x, W0, A, B, alpha):  # returned (dx, dB, dA): visible when A, B are square
        s = alpha / A.shape[0]
        Ad, Bd, xd = A.detach(), B.detach(), x.detach()
        t1 = xd @ Ad.T @ A.T  # A in B's place: its gradient is the true dB
        t2 = xd @ B.T @ Bd.T  # B in A's place: its gradient is the true dA
        return x @ W0.T + s * (x @ Ad.T @ Bd.T) + s * (t1 - t1.detach()) + s * (t2 - t2.detach())

    return [
        Hypothesis("dA and dB swapped",
                   "Return (dx, dA, dB) in that order: dA = (alpha / r) · (dh @ B).T @ x has A's "
                   "shape (r, in); dB = (alpha / r) · dh.T @ (x @ A.T) has B's shape (out, r).",
                   dA_dB_swapped),
        Hypothesis("dx is missing the adapter's path: dx = dh W0 only",
                   "x feeds both paths, so dx = dh @ W0 + (alpha / r) · (dh @ B) @ A: the "
                   "adapter's share comes back through B and then A.", dx_base_only),
        Hypothesis("dx is missing the frozen base path: only the adapter was differentiated",
                   "W0 is frozen, but x still flows through it: dx = dh @ W0 + (alpha / r) · "
                   "(dh @ B) @ A. Frozen means no dW0, not no gradient through W0.",
                   dx_adapter_only),
        Hypothesis("the adapter's share of dx has no alpha/r",
                   "dx = dh @ W0 + (alpha / r) · (dh @ B) @ A: the scale applies on this path too.",
                   dx_unscaled_adapter),
        *_scale_hypotheses("grad"),
        Hypothesis("dB uses x instead of the adapter's input u = x Aᵀ",
                   "B acts on u = x @ A.T (N, r), so dB = (alpha / r) · dh.T @ u, of shape "
                   "(out, r).", dB_with_x),
    ]


def _check_backward_shapes(dx, dA, dB, inputs: dict) -> None:
    """Name the frozen-W0 and swapped-gradient mistakes from the shapes alone."""
    shape = lambda v: tuple(np.shape(v)) if isinstance(v, np.ndarray) else None  # noqa: E731
    x, W0, A, B = (inputs[k] for k in ("x", "W0", "A", "B"))
    if A.shape != B.shape and shape(dA) == B.shape and shape(dB) == A.shape:
        raise CheckFailed(
            f"lora_backward returned dA with the shape of B {B.shape} and dB with the shape of "
            f"A {A.shape}: A and B (or dA and dB) are swapped. Return (dx, dA, dB) in that "
            f"order; dA has A's shape (r, in) and dB has B's shape (out, r). Shapes: {SHAPES}.")
    if W0.shape != x.shape and shape(dx) == W0.shape:
        raise CheckFailed(
            f"lora_backward's first value has the shape of W0 {W0.shape}, not of x {x.shape}: "
            "it looks like dW0. W0 is frozen: return (dx, dA, dB) only, with dx = dh @ W0 + "
            "(alpha / r) · (dh @ B) @ A.")


@public_check
def lora_backward(lora_forward: Callable, lora_backward: Callable, *, device: str | None = None,
                  seed: int = 0) -> CheckPassed:
    """Check `lora_backward(dh, cache)` -> (dx, dA, dB) against autograd and finite differences.

    W0 is frozen, so there is no dW0. Includes a fresh adapter (B = 0), where dA is exactly 0.
    """

    def learner(inputs: dict, extra: dict, dh: np.ndarray) -> dict:
        _h, cache = _forward(lora_forward, inputs, extra["alpha"], "lora_forward")
        result = call(lora_backward, dh, cache, name="lora_backward")
        if isinstance(result, (tuple, list)) and len(result) == 4:
            raise CheckFailed(
                "lora_backward returned 4 values; expected 3 (dx, dA, dB). W0 is frozen: "
                "return (dx, dA, dB) only. Its gradient dW0 is never used (the optimizer does "
                "not update W0), and not computing it is where LoRA saves memory.")
        dx, dA, dB = unpack(result, ("dx", "dA", "dB"), "lora_backward")
        _check_backward_shapes(dx, dA, dB, inputs)
        return {"x": dx, "A": dA, "B": dB}

    # dA and dB first: a wrong scale shows there, while a bug on dx's adapter path leaves them right.
    return check_gradients("lora_backward", learner, _lora, _cases(seed), wrt=["A", "B", "x"],
                           upstream_name="dh", hypotheses=_backward_hypotheses(), device=device,
                           seed=seed)


# --------------------------------------------------------------------------- merge


@public_check
def lora_merge(lora_merge: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `lora_merge(W0, A, B, alpha)` -> W0 + (alpha/r) B A, and that the merged layer
    x @ W.T gives the same outputs as the LoRA layer."""

    def learner(inputs: dict, extra: dict) -> dict:
        try:
            W = call(lora_merge, inputs["W0"], inputs["A"], inputs["B"], extra["alpha"],
                     name="lora_merge")
        except CheckFailed as exc:
            raise _shape_hint(exc, "lora_merge") from None
        out = {"W": W}
        if isinstance(W, np.ndarray) and W.shape == inputs["W0"].shape and W.dtype.kind == "f":
            out["x @ W.T"] = inputs["x"] @ W.T
        else:
            out["x @ W.T"] = W  # the shape/type problem is reported on W first
        return out

    def reference(x, W0, A, B, alpha):
        return {"W": W0 + (alpha / A.shape[0]) * (B @ A), "x @ W.T": _lora(x, W0, A, B, alpha)}

    def hyp(fn):
        return lambda x, W0, A, B, alpha: {"W": fn(W0, A, B, alpha)}

    hyps = [Hypothesis(bug, hint, hyp(lambda W0, A, B, alpha, f=f: W0 + f(alpha, A.shape[0]) * (B @ A)))
            for bug, hint, f in _WRONG_SCALES]
    hyps += [
        Hypothesis("W0 is missing: returned only the update (alpha/r) B A",
                   "Merging adds the update to the frozen weight: W = W0 + (alpha / r) · B @ A.",
                   hyp(lambda W0, A, B, alpha: (alpha / A.shape[0]) * (B @ A))),
        Hypothesis("A and B in the wrong order: A B instead of B A",
                   "B (out, r) @ A (r, in) has W0's shape (out, in): W = W0 + (alpha / r) · B @ A.",
                   hyp(lambda W0, A, B, alpha: W0 + (alpha / A.shape[0]) * (A @ B))),
        Hypothesis("the update is transposed: Aᵀ Bᵀ instead of B A",
                   "W0 has shape (out, in) and so does B @ A: W = W0 + (alpha / r) · B @ A.",
                   hyp(lambda W0, A, B, alpha: W0 + (alpha / A.shape[0]) * (A.T @ B.T))),
    ]
    return check_outputs("lora_merge", learner, reference, _cases(seed), hypotheses=hyps,
                         device=device, seed=seed, compared="W0 + (alpha/r) B A and the LoRA layer")


# --------------------------------------------------------------------------- parameter count


_COUNT_CASES = [(3, 5, 2), (4096, 4096, 8), (10, 64, 1), (64, 64, 4), (11008, 4096, 16),
                (7, 7, 7), (1000, 3, 2)]


def _count_diagnosis(got: int, d_out: int, d_in: int, r: int) -> Diagnosis:
    right = r * (d_in + d_out)
    known = [
        (right + d_out * d_in, "counted the frozen W0 as well: r (d_in + d_out) + d_out d_in",
         "Only A (r × d_in) and B (d_out × r) are trained; W0 is frozen and not counted."),
        (r * d_in, "counted A only: r · d_in", "B (d_out × r) is trained too: add d_out · r."),
        (r * d_out, "counted B only: r · d_out", "A (r × d_in) is trained too: add r · d_in."),
        (r * d_in * d_out, "multiplied the sizes: r · d_in · d_out",
         "A and B are two separate matrices: their sizes add, r · d_in + d_out · r."),
        (d_out * d_in, "counted the full matrix d_out · d_in",
         "That is what full fine-tuning trains; LoRA trains A and B only."),
        (r * r, "counted r · r", "A is r × d_in and B is d_out × r: r (d_in + d_out) numbers."),
        (2 * r * max(d_in, d_out), "assumed a square layer", "A is r × d_in and B is d_out × r."),
        (2 * r * min(d_in, d_out), "assumed a square layer", "A is r × d_in and B is d_out × r."),
    ]
    for value, bug, hint in known:
        if got == value:
            return Diagnosis(bug, hint)
    return Diagnosis("a wrong count", "A has r · d_in entries and B has d_out · r: add them.")


@public_check
def lora_param_count(lora_param_count: Callable, *, device: str | None = None,
                     seed: int = 0) -> CheckPassed:
    """Check `lora_param_count(d_out, d_in, r)` == r (d_in + d_out): the trainable numbers."""
    resolve_device(device)  # same options as every check; counting itself needs no device
    for d_out, d_in, r in _COUNT_CASES:
        got = call(lora_param_count, d_out, d_in, r, name="lora_param_count")
        what = f"lora_param_count({d_out}, {d_in}, {r})"
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (numbers.Real, np.generic)):
            raise CheckFailed(f"{what} returned {type(got).__name__} ({got!r:.60}); expected an int.")
        if not isinstance(got, (numbers.Integral, np.integer)):
            if isinstance(got, (float, np.floating)) and float(got).is_integer():
                raise CheckFailed(
                    f"{what} returned the float {got!r}; expected an int. A count is a whole "
                    "number: use integer arithmetic (* and +, // rather than /) or int(...).")
            raise CheckFailed(f"{what} returned {got!r}, which is not a whole number.")
        expected = r * (d_in + d_out)
        if int(got) != expected:
            diag = _count_diagnosis(int(got), d_out, d_in, r)
            raise CheckFailed(failure(
                "lora_param_count", f"{what} returned {int(got):,}, expected {expected:,}",
                diag, f"d_out = {d_out}, d_in = {d_in}, r = {r}", None, "", seed))
    return CheckPassed("lora_param_count", "parameter counts", "r · (d_in + d_out)",
                       len(_COUNT_CASES), 0.0, None, "cpu")
