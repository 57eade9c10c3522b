"""Every score prefers a tiny MNIST-pretrained CNN's view of real digits8 to untrained or random views."""

from __future__ import annotations

from typing import Any

import pytest

from transferkit.transferability import SCORES


@pytest.mark.parametrize("name", list(SCORES))
def test_pretrained_beats_random_init_and_noise(name: str, pretrained_inputs: Any, random_init_inputs: Any,
                                                noise_inputs: Any) -> None:
    score = SCORES.get(name)
    y = pretrained_inputs.labels
    real = score(pretrained_inputs.get(score.needs), y)
    untrained = score(random_init_inputs.get(score.needs), y)
    noise = score(noise_inputs.get(score.needs), y)
    sign = 1 if score.higher_is_better else -1
    assert sign * real > sign * untrained, (real, untrained)
    assert sign * real > sign * noise, (real, noise)
