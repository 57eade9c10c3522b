"""Write examples/digits/: twelve real UCI optdigits (scikit-learn) as 28x28 PNGs, for README's predict.

    python scripts/make_examples.py

The file names hold the true digit (``<index>_true<label>.png``) so a reader can check predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.data import load_dataset

OUT = Path(__file__).resolve().parent.parent / "examples" / "digits"


def main() -> None:
    ds = load_dataset("digits8")
    OUT.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds.y) - 12, len(ds.y)):
        pixels = (np.clip(ds.x[i, 0], 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels, "L").save(OUT / f"{i:04d}_true{ds.class_names[int(ds.y[i])]}.png")


if __name__ == "__main__":
    main()
