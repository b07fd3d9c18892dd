"""Train the small pretrained digits MLP that notebook 08 (LoRA) fine-tunes: data/digits_mlp.npz.

    python data/make_pretrained.py

A 64-64-10 ReLU network (W1 (64, 64), b1 (64,), W2 (10, 64), b2 (10,), float64, PyTorch's
(out, in) layout) trained on the course's digits split (`checks.data.load_digits`) with plain
NumPy: He-initialised from seed 0, full-batch Adam (lr 0.01) on the mean cross-entropy for
300 steps. Everything is deterministic: the same file comes out on every machine (up to the
last bits of floating point). Only NumPy is needed; no torch, no randomness left unseeded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checks.data import load_digits  # noqa: E402

OUT = Path(__file__).resolve().parent / "digits_mlp.npz"
SIZES = (64, 64, 10)
STEPS = 300
LR = 0.01
SEED = 0


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the hidden activations of the 64-64-10 ReLU MLP."""
    a1 = np.maximum(x @ params["W1"].T + params["b1"], 0.0)
    return a1 @ params["W2"].T + params["b2"], a1


def loss_and_grads(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy and its gradients (the backprop of notebook 04)."""
    logits, a1 = forward(params, x)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y]).mean())
    dz2 = p.copy()
    dz2[np.arange(n), y] -= 1.0
    dz2 /= n
    da1 = dz2 @ params["W2"]
    dz1 = da1 * (a1 > 0)
    grads = {"W2": dz2.T @ a1, "b2": dz2.sum(0), "W1": dz1.T @ x, "b1": dz1.sum(0)}
    return loss, grads


def accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((forward(params, x)[0].argmax(axis=1) == y).mean())


def train() -> dict[str, np.ndarray]:
    x_train, y_train, _, _ = load_digits()
    rng = np.random.default_rng(SEED)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True), start=1):
        params[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in))
        params[f"b{i}"] = np.zeros(n_out)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, STEPS + 1):
        _, grads = loss_and_grads(params, x_train, y_train)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            params[k] -= LR * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return params


def main() -> None:
    params = train()
    x_train, y_train, x_test, y_test = load_digits()
    np.savez_compressed(OUT, **params)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(f"train accuracy {accuracy(params, x_train, y_train):.4f}, "
          f"test accuracy {accuracy(params, x_test, y_test):.4f}")
    flipped = x_test.reshape(-1, 8, 8)[:, :, ::-1].reshape(len(x_test), -1)
    print(f"test accuracy on horizontally flipped digits: {accuracy(params, flipped, y_test):.4f}")


if __name__ == "__main__":
    main()
