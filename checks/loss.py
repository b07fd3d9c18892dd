"""Checks for notebook 03, the loss.

    from checks import loss as check
    check.softmax(softmax)                          # rows sum to 1, stable for huge logits
    check.cross_entropy(cross_entropy)              # vs F.cross_entropy (a mean over the batch)
    check.cross_entropy_grad(cross_entropy_grad)    # (softmax − onehot) / N vs autograd + FD
    check.mse(mse)                                  # vs F.mse_loss (mean over every element)
    check.mse_grad(mse_grad)                        # 2 (pred − target) / (number of entries)

Values are compared with torch; gradients with torch autograd and finite differences. Each
check has a case with huge logits (±1000) that must not give NaN or inf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .engine import (
    Case,
    CheckFailed,
    CheckPassed,
    Hypothesis,
    as_float,
    call,
    check_gradients,
    check_outputs,
    public_check,
)

OVERFLOW_HINT = (
    "overflow: subtract the row max before exp. np.exp(1000) is inf and inf / inf is NaN; "
    "softmax(z) = softmax(z − max_j z_j) for every row, and then the largest exponent is 0."
)
LOG_HINT = (
    "overflow or log(0): subtract the row max, and take the log-softmax directly, "
    "log p = (z − m) − log Σ_j exp(z_j − m) with m the row max. Computing log(softmax(z)) "
    "gives log(0) = −inf once a probability underflows to 0."
)


def _with_grad(value: torch.Tensor, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A scalar equal to `value` whose gradient with respect to `x` is `grad`."""
    return value.detach() + ((x - x.detach()) * grad.detach()).sum()


def _labels(y: Any, logits: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(y, device=logits.device)


def _onehot(y: torch.Tensor, c: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, c).to(like.dtype)


def _nonfinite_guard(value: Any, case: Case, name: str, hint: str) -> None:
    """A special message when the huge-logits case gives NaN/inf."""
    if not case.extra.get("huge"):
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return
    if arr.size and not np.all(np.isfinite(arr)):
        raise CheckFailed(
            f"✗ {name}: NaN or inf for huge logits (±1000)\n"
            f"  case: {case.describe()}\n"
            f"Likely bug: {hint}\n"
            "Hint: every other case passed; only the large values break it. Networks do "
            "produce logits this large (a high learning rate, an unscaled input)."
        )


# --------------------------------------------------------------------------- cases

def _logit_cases(rng: np.random.Generator) -> list[Case]:
    """Logits (N, C): N = 1, odd N, several class counts, and huge logits."""
    cases = []
    for n, c in [(5, 3), (1, 4), (7, 10), (3, 6), (9, 2)]:
        z = rng.normal(size=(n, c)) * 2.0
        cases.append(Case({"logits": z}, extra={"y": rng.integers(0, c, size=n)}, batch=n))
    huge = np.array([[1000.0, -1000.0, 999.0], [-1000.0, 1000.0, 0.5],
                     [3.0, -1000.0, 1000.0]])
    cases.append(Case({"logits": huge}, extra={"y": np.array([1, 2, 2]), "huge": True},
                      label="huge logits (±1000)", batch=3, fd=False))
    return cases


def _copy_y(extra: dict) -> np.ndarray:
    return np.array(extra["y"], copy=True)


# --------------------------------------------------------------------------- softmax

@public_check
def softmax(softmax: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `softmax(z)` row by row against torch.softmax(z, dim=1), huge logits included."""
    cases = [Case({"z": c.inputs["logits"]}, extra={"huge": c.extra.get("huge", False)},
                  label=c.label, batch=c.batch) for c in _logit_cases(np.random.default_rng(seed))]
    huge_case = cases[-1]

    def learner(inputs: dict, extra: dict) -> dict:
        p = call(softmax, inputs["z"], name="softmax")
        if extra["huge"]:
            _nonfinite_guard(p, huge_case, "softmax", OVERFLOW_HINT)
        return {"softmax(z)": p}

    def reference(z: torch.Tensor, huge: bool) -> dict:
        return {"softmax(z)": torch.softmax(z, dim=1)}

    hyps = [
        Hypothesis("softmax over the wrong axis (each column sums to 1)",
                   "Normalise each row (one sample's classes): sum with axis=1, keepdims=True.",
                   lambda z, huge: {"softmax(z)": torch.softmax(z, dim=0)}),
        Hypothesis("normalised by the sum over the whole batch, not per row",
                   "Each row is its own distribution: divide by the row's sum "
                   "(axis=1, keepdims=True), not by the sum of every entry.",
                   lambda z, huge: {"softmax(z)": torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()}),
        Hypothesis("exp(z) without normalising", "Divide by the row sum so each row sums to 1.",
                   lambda z, huge: {"softmax(z)": torch.exp(z)}),
        Hypothesis("z / sum(z): the exp is missing", "softmax(z)_i = exp(z_i) / Σ_j exp(z_j).",
                   lambda z, huge: {"softmax(z)": z / z.sum(dim=1, keepdim=True)}),
        Hypothesis("the max was subtracted in the exponent but not consistently "
                   "(exp(z − max) / Σ exp(z))",
                   "Subtract the same row max m inside every exp: exp(z − m) / Σ exp(z − m).",
                   lambda z, huge: {"softmax(z)": torch.exp(z - z.max(dim=1, keepdim=True).values)
                                    / torch.exp(z).sum(dim=1, keepdim=True)}),
    ]
    return check_outputs("softmax", learner, reference, cases, hypotheses=hyps, device=device,
                         seed=seed, compared="torch.softmax(z, dim=1)")


# --------------------------------------------------------------------------- cross-entropy

_CE_HYPS_VALUE = [
    Hypothesis("summed over the batch instead of the mean (a missing 1/N)",
               "The loss is the mean over the batch: divide the sum by N (or use .mean()).",
               lambda logits, y, huge: {"loss": F.cross_entropy(logits, _labels(y, logits),
                                                                reduction="sum")}),
    Hypothesis("used the probability of class 0 for every sample (the labels y were ignored)",
               "Pick each sample's own class: logp[np.arange(N), y].",
               lambda logits, y, huge: {"loss": -torch.log_softmax(logits, 1)[:, 0].mean()}),
    Hypothesis("averaged −log p over every entry (all classes), not the true class only",
               "Only the true class counts: −mean over samples of log p[i, y_i].",
               lambda logits, y, huge: {"loss": -torch.log_softmax(logits, 1).mean()}),
    Hypothesis("softmax over the wrong axis (columns)",
               "Probabilities are per row (sample): normalise with axis=1.",
               lambda logits, y, huge: {"loss": F.nll_loss(torch.log_softmax(logits, 0),
                                                           _labels(y, logits))}),
    Hypothesis("log base 10 instead of the natural log", "Use np.log (base e).",
               lambda logits, y, huge: {"loss": F.cross_entropy(logits, _labels(y, logits))
                                        / np.log(10.0)}),
    Hypothesis("−log of the summed probabilities of the true class over the batch",
               "Take the mean of the per-sample losses −log p[i, y_i].",
               lambda logits, y, huge: {"loss": -torch.log(
                   torch.softmax(logits, 1)[torch.arange(len(logits)), _labels(y, logits)].mean())}),
]


@public_check
def cross_entropy(cross_entropy: Callable, *, device: str | None = None,
                  seed: int = 0) -> CheckPassed:
    """Check `cross_entropy(logits, y)` (mean over the batch) against F.cross_entropy."""
    cases = _logit_cases(np.random.default_rng(seed))
    huge_case = cases[-1]

    def learner(inputs: dict, extra: dict) -> dict:
        value = call(cross_entropy, inputs["logits"], _copy_y(extra), name="cross_entropy")
        if extra.get("huge"):
            _nonfinite_guard(value if not isinstance(value, (list, tuple)) else np.nan,
                             huge_case, "cross_entropy", LOG_HINT)
        return {"loss": as_float(value, "the loss returned by cross_entropy")}

    def reference(logits: torch.Tensor, y: Any, huge: bool = False) -> dict:
        return {"loss": F.cross_entropy(logits, _labels(y, logits))}

    for c in cases:
        c.extra.setdefault("huge", False)
    return check_outputs("cross_entropy", learner, reference, cases, hypotheses=_CE_HYPS_VALUE,
                         device=device, seed=seed, compared="F.cross_entropy")


@public_check
def cross_entropy_grad(cross_entropy_grad: Callable, *, device: str | None = None,
                       seed: int = 0) -> CheckPassed:
    """Check `cross_entropy_grad(logits, y)` = (softmax(logits) − onehot(y)) / N.

    Compared with the gradient of F.cross_entropy by autograd and by finite differences.
    """
    cases = _logit_cases(np.random.default_rng(seed))
    for c in cases:
        c.extra.setdefault("huge", False)
    huge_case = cases[-1]

    def learner(inputs: dict, extra: dict, _dout: None) -> dict:
        g = call(cross_entropy_grad, inputs["logits"], _copy_y(extra), name="cross_entropy_grad")
        if extra.get("huge"):
            _nonfinite_guard(g, huge_case, "cross_entropy_grad", OVERFLOW_HINT)
        return {"logits": g}

    def reference(logits: torch.Tensor, y: Any, huge: bool = False) -> torch.Tensor:
        return F.cross_entropy(logits, _labels(y, logits))

    def wrong(grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
        def fn(logits: torch.Tensor, y: Any, huge: bool = False) -> torch.Tensor:
            t = _labels(y, logits)
            return _with_grad(reference(logits, y), logits, grad(logits, t))
        return fn

    def onehot(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _onehot(t, z.shape[1], z)

    hyps = [
        Hypothesis("cross-entropy gradient without 1/N: the sum over the batch, not the mean",
                   "The loss is a mean over the batch, so its gradient is "
                   "(softmax − onehot) / N: divide by N = logits.shape[0].",
                   wrong(lambda z, t: torch.softmax(z, 1) - onehot(z, t))),
        Hypothesis("softmax − onehot: forgot to subtract the one-hot labels (softmax / N only)",
                   "∂L/∂z = (p − onehot(y)) / N: subtract 1 at each sample's true class.",
                   wrong(lambda z, t: torch.softmax(z, 1) / len(z))),
        Hypothesis("forgot to subtract the one-hot labels and the 1/N",
                   "∂L/∂z = (p − onehot(y)) / N.", wrong(lambda z, t: torch.softmax(z, 1))),
        Hypothesis("one-hot wrong: used class 0 for every sample (the labels y were ignored)",
                   "Build the one-hot from y: onehot[np.arange(N), y] = 1.",
                   wrong(lambda z, t: (torch.softmax(z, 1) - onehot(z, torch.zeros_like(t))) / len(z))),
        Hypothesis("one-hot wrong: subtracted 1 from every entry of the true column for all "
                   "samples, or indexed onehot[y] = 1 (rows instead of [arange(N), y])",
                   "onehot = np.zeros((N, C)); onehot[np.arange(N), y] = 1.",
                   wrong(lambda z, t: (torch.softmax(z, 1)
                                       - torch.zeros_like(z).index_fill(1, t, 1.0)) / len(z))),
        Hypothesis("softmax over the wrong axis (columns)",
                   "Probabilities are per row: softmax with axis=1.",
                   wrong(lambda z, t: (torch.softmax(z, 0) - onehot(z, t)) / len(z))),
        Hypothesis("divided by the number of classes C instead of N",
                   "The mean is over the N samples: divide by N = logits.shape[0].",
                   wrong(lambda z, t: (torch.softmax(z, 1) - onehot(z, t)) / z.shape[1])),
    ]
    return check_gradients("cross_entropy_grad", learner, reference, cases, upstream=False,
                           labels={"logits": "dlogits"}, hypotheses=hyps, device=device,
                           seed=seed)


# --------------------------------------------------------------------------- MSE

def _mse_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(5, 3), (1, 4), (7, 2), (3, 1), (9,), (3, 4, 2)]:
        cases.append(Case({"pred": rng.normal(size=shape), "target": rng.normal(size=shape)},
                          batch=shape[0]))
    return cases


def _mean_rows(d: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the features, averaged over the batch (axis 0) only."""
    return (d ** 2).reshape(d.shape[0], -1).sum(dim=1).mean()


@public_check
def mse(mse: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `mse(pred, target)` = mean over every element of (pred − target)², as F.mse_loss."""
    cases = _mse_cases(np.random.default_rng(seed))

    def learner(inputs: dict, _extra: dict) -> dict:
        value = call(mse, inputs["pred"], inputs["target"], name="mse")
        return {"loss": as_float(value, "the loss returned by mse")}

    hyps = [
        Hypothesis("mse averaged over rows only (summed over the features)",
                   "MSE is the mean over EVERY element, as torch.nn.MSELoss: np.mean((pred − "
                   "target) ** 2), i.e. divide by N·C, not by N.",
                   lambda pred, target: {"loss": _mean_rows(pred - target)}),
        Hypothesis("summed instead of averaged (a missing 1/(N·C))",
                   "Take the mean over every element: np.mean(...), not np.sum(...).",
                   lambda pred, target: {"loss": ((pred - target) ** 2).sum()}),
        Hypothesis("the square root was taken (RMSE, not MSE)", "MSE has no square root.",
                   lambda pred, target: {"loss": ((pred - target) ** 2).mean().sqrt()}),
        Hypothesis("the absolute error instead of the squared error (L1, not MSE)",
                   "Square the differences: (pred − target) ** 2.",
                   lambda pred, target: {"loss": (pred - target).abs().mean()}),
        Hypothesis("a factor 1/2 (½·mean of squares)",
                   "The course's MSE (and torch's) has no ½: np.mean((pred − target) ** 2).",
                   lambda pred, target: {"loss": 0.5 * ((pred - target) ** 2).mean()}),
    ]
    return check_outputs("mse", learner, lambda pred, target: {"loss": F.mse_loss(pred, target)},
                         cases, hypotheses=hyps, device=device, seed=seed, compared="F.mse_loss")


@public_check
def mse_grad(mse_grad: Callable, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `mse_grad(pred, target)` = 2 (pred − target) / pred.size, the gradient of mse."""
    cases = _mse_cases(np.random.default_rng(seed))

    def learner(inputs: dict, _extra: dict, _dout: None) -> dict:
        return {"pred": call(mse_grad, inputs["pred"], inputs["target"], name="mse_grad")}

    def reference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)

    def wrong(grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
        return lambda pred, target: _with_grad(reference(pred, target), pred, grad(pred, target))

    hyps = [
        Hypothesis("divided by N only (mse averaged over rows only): the mean is over all N·C "
                   "entries",
                   "MSE averages every element: the gradient is 2 (pred − target) / pred.size.",
                   wrong(lambda p, t: 2 * (p - t) / p.shape[0])),
        Hypothesis("the gradient of the sum (a missing 1/(N·C))",
                   "The loss is a mean over every element: divide by pred.size.",
                   wrong(lambda p, t: 2 * (p - t))),
        Hypothesis("the factor 2 from d(u²)/du = 2u is missing",
                   "d/dp mean((p − t)²) = 2 (p − t) / size.",
                   wrong(lambda p, t: (p - t) / p.numel())),
        Hypothesis("the gradient with respect to the target, (target − pred): a sign slip",
                   "d/dpred (pred − target)² = 2 (pred − target).",
                   wrong(lambda p, t: 2 * (t - p) / p.numel())),
    ]
    return check_gradients("mse_grad", learner, reference, cases, wrt=["pred"], upstream=False,
                           labels={"pred": "dpred"}, hypotheses=hyps, device=device, seed=seed)
