"""Entrywise comparison with a symmetric tolerance.

An entry of the learner's array `s` matches the reference `a` when

    |s - a| <= rtol * max(|s|, |a|) + atol * max|a|

The tolerance is symmetric in s and a (so it cannot be gamed by returning something huge),
scaled by the largest reference entry (so a gradient of size 1e-30 is judged on its own
scale), and two zero arrays compare equal (relative error has a floor instead of 0/0 = NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RTOL = 1e-6
ATOL = 1e-8


@dataclass
class Comparison:
    """The outcome of comparing one array with its reference."""

    ok: bool
    max_abs: float
    max_rel: float
    n_bad: int
    size: int
    worst: list[tuple[tuple[int, ...], float, float]] = field(default_factory=list)


def compare(s: np.ndarray, a: np.ndarray, rtol: float = RTOL, atol: float = ATOL,
            n_worst: int = 5) -> Comparison:
    """Compare `s` (learner) with `a` (reference) of the same shape, entry by entry."""
    s = np.asarray(s, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if s.size == 0:
        return Comparison(True, 0.0, 0.0, 0, 0)
    finite = np.isfinite(s)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    with np.errstate(all="ignore"):
        err = np.where(finite, np.abs(s - a), np.inf)
        mag = np.maximum(np.abs(np.where(finite, s, 0.0)), np.abs(a))
        tol = rtol * mag + atol * scale
        bad = ~(err <= tol)
        rel = np.where(err == 0, 0.0, err / np.maximum(mag, max(atol * scale, 1e-300)))
    order = np.argsort(-np.where(bad, err, -1.0), axis=None, kind="stable")
    worst = []
    for flat in order[:n_worst]:
        if not bad.flat[flat]:
            break
        idx = np.unravel_index(flat, s.shape) if s.shape else ()
        worst.append((tuple(int(i) for i in idx), float(s.flat[flat]), float(a.flat[flat])))
    return Comparison(
        ok=not bool(bad.any()),
        max_abs=float(np.max(err)),
        max_rel=float(np.max(rel)),
        n_bad=int(bad.sum()),
        size=int(s.size),
        worst=worst,
    )


def allclose(s: np.ndarray, a: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """True when `s` matches `a` under the symmetric tolerance (shapes must be equal)."""
    s = np.asarray(s, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    return s.shape == a.shape and compare(s, a, rtol, atol, n_worst=0).ok
