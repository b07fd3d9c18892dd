"""Loading the course's small datasets from data/ (never from the internet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def load_digits(flatten: bool = True, scale: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 8×8 handwritten digits with the course's fixed split.

    Returns (x_train, y_train, x_test, y_test): 1,437 training and 360 test images. With
    flatten, images are rows of 64 pixels; with scale, pixels are float64 in [0, 1]
    (raw values are integers 0..16). Labels are integer class ids 0..9 of shape (N,).
    """
    path = DATA_DIR / "digits.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python data/make_digits.py` to rebuild it")
    with np.load(path) as d:
        x_train, y_train, x_test, y_test = (d["x_train"], d["y_train"], d["x_test"], d["y_test"])
    if scale:
        x_train, x_test = x_train / 16.0, x_test / 16.0
    if flatten:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)
