"""Regenerate data/digits.npz from the copy of the UCI digits that scikit-learn ships.

    pip install scikit-learn && python data/make_digits.py

The split is fixed (seed 0, 1,437 train / 360 test, stratified by class) so every learner
and every test sees the same numbers. Pixels are stored as uint8 in 0..16, as in the source.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent / "digits.npz"


def main() -> None:
    digits = load_digits()
    x = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    y = digits.target.astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=360, random_state=0, stratify=y)
    np.savez_compressed(OUT, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): train {len(y_train)}, test {len(y_test)}")


if __name__ == "__main__":
    main()
