"""Naming the likely bug from the numbers.

Given the learner's array `s` and the reference `a`, try explanations from the most to the
least specific: non-finite values, all zeros, the topic's own hypotheses (alternative
references that implement a known bug), a transpose, the gradient of a single sample, and a
constant factor (−1, N, 1/N, 2, 1/2, ...). The first explanation that reproduces `s` wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .compare import allclose

# Explanations must reproduce the learner's numbers closely, but the learner's buggy code may
# round differently from our re-creation of the bug: allow a little more than the check does.
MATCH_RTOL = 1e-5
MATCH_ATOL = 1e-7


@dataclass(frozen=True)
class Diagnosis:
    """A likely bug and a hint on how to fix it."""

    bug: str
    hint: str = ""


def _matches(s: np.ndarray, candidate: np.ndarray | None) -> bool:
    return candidate is not None and allclose(s, candidate, MATCH_RTOL, MATCH_ATOL)


def _factor_diagnosis(k: float, batch: int | None) -> Diagnosis:
    """Describe a constant ratio k = yours / expected."""
    def near(x: float) -> bool:
        return abs(k - x) <= 1e-4 * abs(x)

    if near(-1.0):
        return Diagnosis("sign flipped: yours = −expected",
                         "Check the sign of each term (d(a − b)/db = −1; gradient descent "
                         "subtracts the gradient, the gradient itself has no minus).")
    if batch and batch > 2:
        if near(batch):
            return Diagnosis(f"N times too large (N = {batch}): a missing 1/N",
                             "The loss is a mean over the batch, so its gradient carries a "
                             "1/N: you summed where a mean was needed.")
        if near(1.0 / batch):
            return Diagnosis(f"N times too small (N = {batch}): an extra 1/N",
                             "Divide by N once, where the mean is taken (the loss). Layers "
                             "further back receive it through the upstream gradient and must "
                             "not divide again.")
        if near(-float(batch)) or near(-1.0 / batch):
            return Diagnosis(f"sign flipped and off by a factor N = {batch}",
                             "Fix the sign, and take the batch mean exactly once (in the loss).")
    if near(2.0):
        return Diagnosis("2× too large: an extra factor 2",
                         "Look for a factor 2 that should not be there (or a term counted "
                         "twice).")
    if near(0.5):
        return Diagnosis("half the expected value: a lost factor 2",
                         "Look for a missing factor 2, e.g. d(x²)/dx = 2x, or a central "
                         "difference divided by h instead of 2h.")
    if near(-2.0) or near(-0.5):
        return Diagnosis(f"sign flipped and off by a factor {abs(k):g}",
                         "Fix the sign and the factor 2.")
    return Diagnosis(f"off by a constant factor: yours ≈ {k:.4g} × expected",
                     "Everything but a scale factor is right: look for a wrong constant "
                     "(a scale like alpha/r, a learning rate, 1/N).")


def diagnose(s: np.ndarray, a: np.ndarray, *, batch: int | None = None,
             hypotheses: Mapping[str, tuple[str, np.ndarray | None]] | None = None,
             single_samples: Mapping[str, np.ndarray] | None = None) -> Diagnosis:
    """Explain why `s` differs from `a` (same shape). Always returns a Diagnosis.

    hypotheses: label -> (hint, what a learner with that bug would get) for this array.
    single_samples: "first"/"last" -> the reference computed from that sample alone.
    """
    s = np.asarray(s, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    nonfinite = ~np.isfinite(s)
    if nonfinite.any():
        first = np.unravel_index(int(np.argmax(nonfinite)), s.shape) if s.shape else ()
        kind = "NaN" if np.isnan(s).any() else "inf"
        return Diagnosis(
            f"{int(nonfinite.sum())} of {s.size} entries are NaN/inf (first at index "
            f"{tuple(int(i) for i in first)}: {s[first] if s.shape else s})",
            f"{kind} usually comes from exp() of a large number (overflow), log(0), 0/0 or "
            "a division by a value that can be zero: subtract the max before exp, or clip.",
        )
    if not s.any() and a.any():
        return Diagnosis("all zeros",
                         "Nothing reached this array: was it allocated with np.zeros and "
                         "never filled, returned before the computation, or multiplied by an "
                         "all-zero mask?")
    for label, (hint, candidate) in (hypotheses or {}).items():
        if _matches(s, candidate):
            return Diagnosis(label, hint)
    if s.ndim == 2 and s.shape[0] == s.shape[1] and s.shape[0] > 1 and _matches(s, a.T):
        return Diagnosis("transposed: yours equals the transpose of the expected array",
                         "With W of shape (out, in) and z = x @ W.T + b, dW = dz.T @ x has "
                         "shape (out, in). Check the order of the matrix product.")
    for which, candidate in (single_samples or {}).items():
        if _matches(s, candidate):
            return Diagnosis(
                f"the gradient of one sample only (the {which} in the batch)",
                "Every sample in the batch contributes: accumulate with += inside the loop "
                "(not =), or use a matrix product / .sum(axis=0) over the batch.",
            )
    denom = float(np.vdot(a, a))
    if denom > 0:
        k = float(np.vdot(s, a)) / denom
        if k != 0 and _matches(s, k * a):
            return _factor_diagnosis(k, batch)
    bad = ~np.isclose(s, a, rtol=1e-6, atol=1e-8 * float(np.max(np.abs(a), initial=0.0)))
    return Diagnosis(f"{int(bad.sum())} of {s.size} entries differ",
                     "No common bug explains the difference; compare the worst entries "
                     "below with a small example worked by hand.")
