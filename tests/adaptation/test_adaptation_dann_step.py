"""One step of the library's ``dann`` (through the one training loop) equals a hand-written step."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from transferkit.adaptation.base import AdaptContext
from transferkit.adaptation.functional import dann_schedule
from transferkit.adaptation.methods import make_method
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import fit
from transferkit.models import ModelSpec, build_model


def test_one_dann_step_matches_hand_written_step() -> None:
    torch.manual_seed(0)
    spec = ModelSpec("mlp", (1, 4, 4), [str(i) for i in range(3)], {"hidden": 8, "depth": 1, "dropout": 0.0})
    model = build_model(spec, seed=0)
    xs, ys = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    xt = torch.randn(9, 1, 4, 4) + 0.5
    lr, seed, trade_off = 0.05, 3, 0.8
    cfg = TrainConfig(epochs=4, batch_size=6, lr=lr, optimizer="sgd", schedule="constant", weight_decay=0.0,
                      grad_clip=0.0, precision="fp32", progress="off", seed=seed, patience=0)
    ctx = AdaptContext(model, (xs, ys), None, xt, None, cfg)
    phase = next(make_method("dann", {"trade_off": str(trade_off), "hidden": "5", "dropout": "0"}).phases(ctx))
    phase.epochs = 1  # a single optimizer step (6 examples, batch 6)
    module = phase.module
    module.grl.step.fill_(2)  # mid-schedule, so the reversed gradient is not zero
    lam = dann_schedule(2 / ctx.total_steps())
    assert ctx.total_steps() == 4
    hand_model, hand_disc = copy.deepcopy(model), copy.deepcopy(module.discriminator)

    fit(phase, cfg)

    # the loop's sampling: permutation of the source, then target indices, from one seeded generator
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(6, generator=gen)
    xu = xt[torch.randint(9, (6,), generator=gen)]
    xb, yb = xs[perm], ys[perm]
    fs, ft = hand_model.forward_features(xb), hand_model.forward_features(xu)
    cls = F.cross_entropy(hand_model.head(fs), yb)
    fs_d, ft_d = fs.detach().requires_grad_(), ft.detach().requires_grad_()
    d = hand_disc(torch.cat([fs_d, ft_d])).squeeze(1)
    dom = 0.5 * (-F.logsigmoid(d[:6]).mean() - F.logsigmoid(-d[6:]).mean())
    disc_params = list(hand_disc.parameters())
    grads = torch.autograd.grad(trade_off * dom, [*disc_params, fs_d, ft_d])
    g_disc, g_fs, g_ft = grads[:-2], grads[-2], grads[-1]
    surrogate = cls - lam * ((fs * g_fs).sum() + (ft * g_ft).sum())  # gradient reversal by hand
    model_params = list(hand_model.parameters())
    g_model = torch.autograd.grad(surrogate, model_params)
    with torch.no_grad():  # first SGD step with Nesterov momentum 0.9: p -= lr * 1.9 * g
        for p, g in [*zip(model_params, g_model), *zip(disc_params, g_disc)]:
            p -= lr * 1.9 * g

    for (name, p), q in zip(model.named_parameters(), hand_model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    for p, q in zip(module.discriminator.parameters(), hand_disc.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    assert int(module.grl.step) == 3
    assert "grl.step" in module.state_dict()
