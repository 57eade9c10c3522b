"""Sentences a benchmark page prints when its rows ran with a setting that differs from the CLI default.

The backbone recipes (src/transferkit/strategies/recipes.py) turn image augmentation on for some
(backbone, strategy) pairs. A benchmark measured before that, and kept reproducible by passing
``augment="off"`` explicitly, says so in one generated sentence built from the recipe table itself, so the
sentence follows the table when a recipe changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from transferkit.strategies.recipes import recipe_for


def augmented_by_default(backbone: str, strategies: Iterable[str]) -> list[str]:
    """The strategies among ``strategies`` whose recipe for ``backbone`` turns augmentation on."""
    out = []
    for name in strategies:
        rec = recipe_for(backbone, name)
        if rec is not None and rec.settings.get("augment") in ("on", "affine"):
            out.append(name)
    return out


def _names(strategies: list[str]) -> str:
    quoted = [f"`{s}`" for s in strategies]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def augment_off_note(backbone: str, strategies: Iterable[str], via_candidates: Iterable[str] = ()) -> str:
    """One sentence for a page whose ``backbone`` runs of ``strategies`` passed ``augment="off"``, when the
    CLI default (the recipe) augments some of them; ``via_candidates``: strategies such as ``auto`` that
    train those strategies' recipes as their candidates. Empty when no recipe of these pairs augments."""
    on = augmented_by_default(backbone, strategies)
    if not on:
        return ""
    via = list(via_candidates)
    also = f" (and {_names(via)}, whose candidates train with those recipes)" if via else ""
    return (f"The {backbone} rows of {_names(on)}{also} were measured without augmentation (`augment=\"off\"`, "
            f"passed by this script so the numbers stay reproducible); the CLI default for {backbone} {_names(on)} "
            "now augments the training batches (its recipe in src/transferkit/strategies/recipes.py): "
            "docs/AUGMENT.md measures the difference.")
