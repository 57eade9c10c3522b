"""``zs_init``'s pieces that need no encoder: the head prior, the alpha rules, option checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.strategies import make_strategy
from transferkit.strategies.text_prior import HeadPrior, select_alpha


def test_head_prior_is_the_l2_pull_toward_its_anchor() -> None:
    torch.manual_seed(0)
    head = nn.Linear(4, 3)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    pen = HeadPrior(head, 0.3)
    assert float(pen().detach()) == 0.0
    with torch.no_grad():
        head.weight.add_(0.5)
        head.bias.sub_(1.0)
    expected = 0.15 * (((head.weight - w0) ** 2).sum() + ((head.bias - b0) ** 2).sum())
    torch.testing.assert_close(pen(), expected)
    pen().backward()
    torch.testing.assert_close(head.weight.grad, 0.3 * (head.weight - w0).detach())
    assert set(pen.state_dict()) == {"w0", "b0"}  # the anchor travels with .to() / state_dict


def test_select_alpha_one_standard_error_boundary() -> None:
    acc = {"0.0": 0.70, "0.5": 0.75, "1.0": 0.80}
    se = (0.8 * 0.2 / 64) ** 0.5  # 0.05: 0.75 is exactly one standard error below the best
    assert abs(se - 0.05) < 1e-12
    assert select_alpha(acc, 64, "1se") == 0.5
    assert select_alpha(acc, 65, "1se") == 1.0
    assert select_alpha({"0.0": 0.8, "1.0": 0.8}, 10, "best") == 0.0  # ties go to the prior


@pytest.mark.parametrize("opts", [{"templates": "no slot"}, {"scale": "0"}, {"prior": "-1"}, {"ft_lr_scale": "0"},
                                  {"train": "everything"}, {"wise": "1.5"}, {"wise_rule": "2se"}])
def test_bad_options_raise_one_config_error(opts: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(opts))) as e:  # the error names the option
        make_strategy("zs_init", opts)
    assert "\n" not in str(e.value)
