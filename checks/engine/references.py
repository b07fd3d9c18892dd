"""The two independent references a learner's gradient is compared with.

A: PyTorch autograd in float64 on the chosen device (exact up to rounding).
D: central differences in float64 on the CPU, with the step h = eps^(1/3) * max(1, |x|)
   that balances truncation error (~h^2) against rounding error (~eps/h). Every coordinate
   is perturbed while the inputs have at most MAX_FULL entries in total; beyond that a fixed
   sample of coordinates plus a few random directions, so the cost does not grow with the
   parameter count.
Both differentiate the same scalar: sum(f(inputs) * dout) for a random upstream gradient
dout, or f(inputs) itself when f is scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import devices

EPS = float(np.finfo(np.float64).eps)
H_SCALE = EPS ** (1.0 / 3.0)  # ~6.1e-6
MAX_FULL = 2000
N_SAMPLED_COORDS = 24  # per tensor, when sampling
N_DIRECTIONS = 3  # random-direction derivatives per tensor, when sampling

TorchFn = Callable[..., Any]


def _tensor(value: np.ndarray, device: torch.device, grad: bool) -> torch.Tensor:
    return torch.tensor(np.asarray(value, dtype=np.float64), dtype=torch.float64, device=device,
                        requires_grad=grad)


def _scalar(out: Any, dout: np.ndarray | None) -> torch.Tensor:
    """Reduce the reference output to the scalar whose gradient is compared."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"reference returned {type(out).__name__}, expected a torch.Tensor")
    if dout is None:
        return out.reshape(())
    return (out * torch.as_tensor(dout, dtype=out.dtype, device=out.device)).sum()


def evaluate(fn: TorchFn, inputs: Mapping[str, np.ndarray], extra: Mapping[str, Any],
             device: str = "cpu") -> Any:
    """Run the reference forward (no autograd); tensors come back as NumPy arrays."""
    dev = devices.torch_device(device)
    with torch.no_grad():
        out = fn(**{k: _tensor(v, dev, False) for k, v in inputs.items()}, **extra)
    return _to_numpy(out)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy().astype(np.float64)
    if isinstance(out, Mapping):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, tuple):
        return tuple(_to_numpy(v) for v in out)
    return out


def autograd(fn: TorchFn, inputs: Mapping[str, np.ndarray], extra: Mapping[str, Any],
             wrt: Sequence[str], dout: np.ndarray | None, device: str) -> dict[str, np.ndarray]:
    """Reference A: d/d(inputs[wrt]) of sum(fn(inputs) * dout), by torch autograd."""
    dev = devices.torch_device(device)
    tensors = {k: _tensor(v, dev, k in wrt) for k, v in inputs.items()}
    loss = _scalar(fn(**tensors, **extra), dout)
    grads = torch.autograd.grad(loss, [tensors[k] for k in wrt], allow_unused=True)
    return {k: (np.zeros(inputs[k].shape) if g is None else g.detach().cpu().numpy())
            for k, g in zip(wrt, grads, strict=True)}


@dataclass
class FiniteDifferences:
    """Reference D: derivatives at sampled coordinates and along random directions."""

    coords: dict[str, np.ndarray] = field(default_factory=dict)  # flat indices per tensor
    values: dict[str, np.ndarray] = field(default_factory=dict)  # d/dx at those indices
    directions: dict[str, list[tuple[np.ndarray, float]]] = field(default_factory=dict)
    evaluations: int = 0
    full: bool = True
    noise: float = 0.0  # absolute rounding-noise floor of a difference quotient


def finite_differences(fn: TorchFn, inputs: Mapping[str, np.ndarray], extra: Mapping[str, Any],
                       wrt: Sequence[str], dout: np.ndarray | None,
                       rng: np.random.Generator, max_full: int = MAX_FULL) -> FiniteDifferences:
    """Central differences of sum(fn(inputs) * dout) in float64 on the CPU."""
    cpu = torch.device("cpu")
    tensors = {k: _tensor(v, cpu, False) for k, v in inputs.items()}
    total = sum(int(np.asarray(inputs[k]).size) for k in wrt)
    result = FiniteDifferences(full=total <= max_full)

    def f() -> float:
        result.evaluations += 1
        return float(_scalar(fn(**tensors, **extra), dout))

    with torch.no_grad():
        # Rounding noise of (f(x+h) - f(x-h)) / 2h is about eps * |f| / h: never blame less.
        result.noise = 64 * EPS * max(1.0, abs(f())) / H_SCALE
        for name in wrt:
            flat = tensors[name].view(-1)
            n = flat.numel()
            idx = (np.arange(n) if result.full
                   else np.sort(rng.choice(n, size=min(n, N_SAMPLED_COORDS), replace=False)))
            vals = np.empty(len(idx))
            for j, i in enumerate(idx):
                x0 = float(flat[i])
                h = H_SCALE * max(1.0, abs(x0))
                flat[i] = x0 + h
                up = f()
                flat[i] = x0 - h
                down = f()
                flat[i] = x0
                vals[j] = (up - down) / (2 * h)
            result.coords[name] = idx
            result.values[name] = vals
            if not result.full:
                base = flat.clone()
                h = H_SCALE * max(1.0, float(base.abs().max()))
                dirs = []
                for _ in range(N_DIRECTIONS):
                    v = rng.standard_normal(n)
                    v /= np.linalg.norm(v)
                    vt = torch.as_tensor(v, dtype=torch.float64)
                    flat.copy_(base + h * vt)
                    up = f()
                    flat.copy_(base - h * vt)
                    down = f()
                    dirs.append((v, (up - down) / (2 * h)))
                flat.copy_(base)
                result.directions[name] = dirs
    return result


def fd_mismatch(fd: FiniteDifferences, grads: Mapping[str, np.ndarray], rtol: float,
                atol: float) -> tuple[str, float] | None:
    """Where autograd-style `grads` disagree with the finite differences, else None.

    Returns (tensor name, worst relative error). Tolerances are relative to the largest
    gradient entry of each tensor (finite differences are accurate to ~1e-9 of that scale).
    """
    for name, idx in fd.coords.items():
        g = np.asarray(grads[name], dtype=np.float64).reshape(-1)
        scale = max(float(np.max(np.abs(g), initial=0.0)), float(np.max(np.abs(fd.values[name]), initial=0.0)))
        err = np.abs(g[idx] - fd.values[name])
        tol = rtol * np.maximum(np.abs(g[idx]), np.abs(fd.values[name])) + atol * scale + fd.noise
        if np.any(err > tol):
            return name, float(np.max(err / np.maximum(scale, 1e-300)))
        for v, d in fd.directions.get(name, []):
            dd = float(v @ g)
            norm = float(np.linalg.norm(g))
            if abs(dd - d) > rtol * max(abs(dd), abs(d)) + atol * norm + fd.noise:
                return name, abs(dd - d) / max(norm, 1e-300)
    return None


def fd_max_rel(fd: FiniteDifferences, grads: Mapping[str, np.ndarray]) -> float:
    """Largest error of `grads` against the finite differences, relative to each tensor's scale."""
    worst = 0.0
    for name, idx in fd.coords.items():
        g = np.asarray(grads[name], dtype=np.float64).reshape(-1)
        if len(idx) == 0:
            continue
        scale = max(float(np.max(np.abs(g), initial=0.0)), 1e-300)
        err = np.maximum(np.abs(g[idx] - fd.values[name]) - fd.noise, 0.0)
        worst = max(worst, float(np.max(err)) / scale)
    return worst
