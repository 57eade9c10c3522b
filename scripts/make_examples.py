"""Write the README's example inputs from real data shipped inside scikit-learn.

    python scripts/make_examples.py

- examples/digits/: twelve UCI optdigits as 28x28 PNGs; the file names hold the true digit
  (``<index>_true<label>.png``) so a reader can check predictions.
- examples/wine.csv: the UCI wine table (178 rows, 13 numeric columns, the label column ``cultivar``);
  examples/wine_new.csv: six of its rows without the label, as new inputs to predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.data import load_dataset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def digits() -> None:
    ds = load_dataset("digits8")
    out = EXAMPLES / "digits"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds.y) - 12, len(ds.y)):
        pixels = (np.clip(ds.x[i, 0], 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels, "L").save(out / f"{i:04d}_true{ds.class_names[int(ds.y[i])]}.png")


def wine() -> None:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    names = [n.replace("/", "_") for n in bunch.feature_names]
    rows = [",".join(f"{v:g}" for v in x) for x in bunch.data]
    labels = [f"cultivar_{int(c) + 1}" for c in bunch.target]
    (EXAMPLES / "wine.csv").write_text("\n".join([",".join([*names, "cultivar"]),
                                                   *(f"{r},{c}" for r, c in zip(rows, labels))]) + "\n")
    pick = [0, 40, 70, 100, 140, 170]
    (EXAMPLES / "wine_new.csv").write_text("\n".join([",".join(names), *(rows[i] for i in pick)]) + "\n")


def main() -> None:
    digits()
    wine()


if __name__ == "__main__":
    main()
