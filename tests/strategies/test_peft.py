"""LoRA (through peft) and BitFit: only the intended parameters train, the budget is small, the
merged model equals the adapter model, the run reloads with its trained head, and it learns.

The registry-driven contract (tests/strategies/test_contract.py) runs both strategies too; here
are the checks specific to parameter-efficient tuning, run over a table of backbones (a CNN, an
MLP, a 1-d CNN and a tiny BERT) in the PEFT style.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import transferkit
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.loop import fit
from transferkit.errors import CheckpointError, ConfigError
from transferkit.models import ModelSpec, TransferModel, build_model
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.strategies.peft import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    bitfit_parameters,
    inject_lora,
    load_adapter,
    lora_targets,
    merge_lora,
)

Tensors = tuple[torch.Tensor, torch.Tensor]
State = dict[str, torch.Tensor]


def _state(m: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0}
    return TrainConfig(**{**base, **kw})


def _ctx(model: TransferModel, target: tuple[Tensors, Tensors], **cfg: Any) -> TransferContext:
    return TransferContext(model, _state(model), target[0], target[1], _cfg(**cfg),
                           lambda: build_model(ModelSpec.from_json(model.spec.to_json()), seed=0),
                           cache=FeatureCache(), probe_epochs=10)


def _run_phases(name: str, ctx: TransferContext, options: dict[str, str] | None = None) -> Any:
    """Train every phase of ``name`` but stop before ``finish`` (so nothing is merged yet)."""
    strategy = make_strategy(name, options)
    for phase in strategy.phases(ctx):
        fit(phase, ctx.cfg)
    return strategy


# ------------------------------------------------------------------------------ a table of backbones


class _MeanPooledBert(nn.Module):
    """A HF ``BertModel`` returning the mask-averaged last hidden state. Input: int64 ids ``[N, L]``."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).long()
        h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def bert_model(hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int = 64, vocab: int = 100,
               classes: int = 2) -> TransferModel:
    """A randomly initialised BERT behind the TransferModel contract (groups: ``encoder``)."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    spec = ModelSpec("tiny_bert", (12,), [str(c) for c in range(classes)], modality="text")
    return TransferModel(OrderedDict(encoder=_MeanPooledBert(BertModel(cfg, add_pooling_layer=False))), hidden, spec)


def conv1d_model() -> TransferModel:
    spec = ModelSpec("conv1d", (2, 32), ["a", "b", "c"], modality="audio")
    torch.manual_seed(0)
    groups: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 3, groups=4)),  # grouped: skipped
        pool=nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 16), nn.LayerNorm(16)),
    )
    return TransferModel(groups, 16, spec)


def _image(name: str, **kw: Any) -> Callable[[], TransferModel]:
    return lambda: build_model(ModelSpec(name, (1, 28, 28), [str(c) for c in range(10)], kw), seed=0)


CASES: dict[str, tuple[Callable[[], TransferModel], Callable[[int], torch.Tensor], int]] = {
    # name: (model factory, input maker, LoRA targets expected)
    "small_cnn": (_image("small_cnn", width=8, hidden=32), lambda n: torch.rand(n, 1, 28, 28), 3),
    "mlp": (_image("mlp", hidden=32, depth=2), lambda n: torch.rand(n, 1, 28, 28), 2),
    "conv1d": (conv1d_model, lambda n: torch.randn(n, 2, 32), 2),
    "tiny_bert": (bert_model, lambda n: torch.randint(1, 100, (n, 12)), 2 * 6),
}


def _randomise_lora(model: nn.Module) -> None:
    """Give LoRA's B (initialised to zero) non-zero values, so the merge has something to fold."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B" in n:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("case", list(CASES))
def test_lora_merge_equals_adapter_model(case: str) -> None:
    make, inputs, n_targets = CASES[case]
    model = make().eval()
    keys = list(model.state_dict())
    base_params = sum(p.numel() for p in model.parameters())
    targets = lora_targets(model, ["*"])
    assert len(targets) == n_targets, targets
    assert not any(t.startswith("head") for t in targets)
    x = inputs(6)
    with torch.no_grad():
        before = model(x)
    lora = inject_lora(model, 4, 8.0, 0.0, targets)
    assert lora and sum(p.numel() for p in model.parameters()) == base_params + sum(p.numel() for p in lora)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # B = 0: the adapted model starts as the source
        _randomise_lora(model)
        adapted = model(x)
    assert not torch.allclose(adapted, before)
    assert merge_lora(model) == n_targets
    assert list(model.state_dict()) == keys  # a plain model again: same names, no peft layers
    assert not hasattr(model, "peft_config")
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted, rtol=1e-4, atol=1e-5)


def test_lora_target_globs_select_modules() -> None:
    model = bert_model()
    qv = lora_targets(model, ["*query", "*value"])
    assert len(qv) == 4 and all(t.endswith(("query", "value")) for t in qv)
    assert lora_targets(model, ["*nothing*"]) == []


def test_lora_trains_under_two_percent_of_a_transformer() -> None:
    """MiniLM-L6's shape (22.7M parameters): r=8 on every Linear of the encoder is ~1.5%."""
    model = bert_model(hidden=384, layers=6, heads=12, intermediate=1536, vocab=30522)
    ids = torch.randint(1, 30522, (8, 12))
    ctx = _ctx(model, ((ids, torch.zeros(8, dtype=torch.long)), (ids, torch.zeros(8, dtype=torch.long))))
    phase = next(make_strategy("lora").phases(ctx))
    info = ctx.info["lora"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert info["trainable_params"] == sum(p.numel() for p in trainable)
    assert {id(p) for g in phase.param_groups for p in g["params"]} == {id(p) for p in trainable}
    assert info["trainable_fraction"] < 0.02 and info["trainable_params"] > 300_000
    assert len(info["targets"]) == 6 * 6  # q, k, v, attention output, intermediate, output per layer
    merge_lora(model)
    ctx2 = _ctx(model, (ctx.train, ctx.train))
    next(make_strategy("bitfit").phases(ctx2))
    assert ctx2.info["bitfit"]["trainable_fraction"] < 0.002  # ~0.1% (the paper: 0.08% of BERT-base)


# ------------------------------------------------------------------------------ only the intended parameters


def test_lora_changes_only_adapter_and_head(source_model: TransferModel,
                                            digits_fewshot: tuple[Tensors, Tensors]) -> None:
    start = _state(source_model)
    ctx = _ctx(source_model, digits_fewshot)
    strategy = _run_phases("lora", ctx)
    now = _state(source_model)
    lora_keys = {k for k in now if ".lora_" in k}
    assert lora_keys and any(not torch.all(now[k] == 0) for k in lora_keys if ".lora_B" in k)
    for k, v in now.items():
        if k in lora_keys:
            continue
        orig = k.replace(".base_layer.", ".")
        if k.startswith("head."):
            assert not torch.equal(v, start[orig]), f"head did not train: {k}"
        else:  # frozen base weights, BatchNorm statistics included: bit-identical before the merge
            assert torch.equal(v, start[orig]), f"frozen tensor changed: {k}"
    x = digits_fewshot[1][0][:16]
    with torch.no_grad():
        unmerged = source_model.eval()(x)
    strategy.finish(ctx)
    assert ctx.info["lora"]["merged"] is True
    merged = _state(source_model)
    assert merged.keys() == start.keys()
    assert not torch.equal(merged["groups.fc.2.weight"], start["groups.fc.2.weight"])  # the update is folded in
    with torch.no_grad():
        torch.testing.assert_close(source_model.eval()(x), unmerged, rtol=1e-4, atol=1e-4)


def test_bitfit_changes_only_biases_and_head(source_model: TransferModel,
                                             digits_fewshot: tuple[Tensors, Tensors]) -> None:
    names = {n for n, _ in bitfit_parameters(source_model)}
    # small_cnn's convolutions have no bias: its BatchNorm shifts and the fc bias are the biases
    assert names == {"groups.conv1.1.bias", "groups.conv2.1.bias", "groups.fc.2.bias"}
    start = {n: p.detach().clone() for n, p in source_model.named_parameters()}
    ctx = _ctx(source_model, digits_fewshot)
    run_strategy(make_strategy("bitfit"), ctx)
    changed = {n for n, p in source_model.named_parameters() if not torch.equal(p.detach(), start[n])}
    assert changed == names | {"head.weight", "head.bias"}
    info = ctx.info["bitfit"]
    assert info["trainable_params"] == 16 + 32 + 64 + 65 * 10 and info["bias_params"] == 112


def test_bitfit_norm_weights_option(source_model: TransferModel) -> None:
    names = {n for n, _ in bitfit_parameters(source_model, norm_weights=True)}
    assert {"groups.conv1.1.weight", "groups.conv2.1.weight"} <= names
    assert "groups.fc.2.weight" not in names and "groups.conv1.0.weight" not in names
    ln = {n for n, _ in bitfit_parameters(conv1d_model(), norm_weights=True)}
    assert "groups.pool.3.weight" in ln and "groups.pool.3.bias" in ln


def test_probe_first_trains_the_head_before_lora(source_model: TransferModel,
                                                 digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot)
    results = run_strategy(make_strategy("lora", {"probe_first": "true"}), ctx)
    assert [r.name for r in results] == ["probe", "lora"]


# ------------------------------------------------------------------------------ saving and reloading


def test_run_directory_reloads_merged_model_with_trained_head(source_run: Path, tmp_path: Path,
                                                              digits_fewshot: tuple[Tensors, Tensors]) -> None:
    out = tmp_path / "lora"
    res = transferkit.transfer(source_run, "digits8", strategy="lora", shots=5, seed=0, out=out, epochs=2,
                               batch_size=32, precision="fp32", progress="off")
    from transferkit.io import load_tensors

    saved = load_tensors(out / "model.safetensors")
    assert not any("lora_" in k or "base_layer" in k for k in saved), "model.safetensors must be a plain model"
    loaded = transferkit.load_run(out)
    assert torch.equal(loaded.model.head.weight, res.model.head.weight)
    assert not torch.equal(loaded.model.head.weight, transferkit.load_run(source_run).model.head.weight)
    x = digits_fewshot[1][0]
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), res.model.eval()(x))
    info = loaded.metrics["strategy_info"]["lora"]
    assert info["merged"] is True and 0 < info["trainable_fraction"] < 1


@pytest.mark.parametrize("name", ["lora", "bitfit"])
def test_adapter_reapplies_to_the_source(name: str, source_loaded: Any, digits_fewshot: tuple[Tensors, Tensors],
                                         tmp_path: Path) -> None:
    """The saved adapter (small) on a fresh copy of the source gives the trained model's outputs."""
    model = copy.deepcopy(source_loaded.model)
    model.reset_head([f"d{c}" for c in range(10)])
    ctx = _ctx(model, digits_fewshot)
    strategy = make_strategy(name)
    run_strategy(strategy, ctx)
    files = strategy.save_artifacts(tmp_path)
    assert [f.name for f in files] == [ADAPTER_WEIGHTS, ADAPTER_CONFIG]
    adapter_params = sum(t.numel() for t in strategy.adapter.tensors.values())
    assert adapter_params < 0.25 * sum(p.numel() for p in model.parameters())
    fresh = load_adapter(copy.deepcopy(source_loaded.model), tmp_path)
    assert fresh.spec.class_names == model.spec.class_names
    x = digits_fewshot[1][0]
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(fresh.eval()(x), want, rtol=1e-4, atol=1e-4)
        if name == "lora":
            assert any(".lora_A" in k for k in fresh.state_dict())  # applied unmerged
            merge_lora(fresh)
            torch.testing.assert_close(fresh.eval()(x), want, rtol=1e-4, atol=1e-4)


def test_adapter_that_does_not_fit_raises_checkpoint_error(source_loaded: Any, digits_fewshot: tuple[Tensors, Tensors],
                                                           tmp_path: Path) -> None:
    strategy = make_strategy("lora", {"r": "2"})
    run_strategy(strategy, _ctx(copy.deepcopy(source_loaded.model), digits_fewshot, epochs=1))
    strategy.save_artifacts(tmp_path)
    other = build_model(ModelSpec("mlp", (1, 28, 28), [str(c) for c in range(10)], {"hidden": 8}), seed=0)
    with pytest.raises(CheckpointError, match="adapter.json: malformed or does not fit"):
        load_adapter(other, tmp_path)
    (tmp_path / ADAPTER_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="adapter.safetensors"):
        load_adapter(copy.deepcopy(source_loaded.model), tmp_path)


# ------------------------------------------------------------------------------ options and imports


@pytest.mark.parametrize(("name", "options", "message"), [
    ("lora", {"r": "0"}, "lora: r must be at least 1, got 0"),
    ("lora", {"alpha": "-1"}, "lora: alpha must be positive"),
    ("lora", {"dropout": "1"}, r"lora: dropout must be in \[0, 1\)"),
    ("lora", {"targets": " , "}, "lora: targets='' names no module glob"),
    ("lora", {"rank": "4"}, "unknown strategy option 'rank'"),
    ("lora", {"r": "four"}, "r='four' is not a valid int"),
    ("bitfit", {"lr_scale": "0"}, "bitfit: lr_scale must be positive"),
])
def test_bad_option_is_one_line_config_error(name: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        make_strategy(name, options)
    assert "\n" not in str(e.value)


def test_targets_matching_nothing_names_the_candidates(source_model: TransferModel,
                                                       digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot)
    with pytest.raises(ConfigError, match=r"targets='\*attn\*' match no Linear/Conv layer .*groups.conv1.0") as e:
        next(make_strategy("lora", {"targets": "*attn*"}).phases(ctx))
    assert "\n" not in str(e.value)


def test_import_transferkit_does_not_import_peft() -> None:
    code = "import sys, transferkit, transferkit.strategies; print('peft' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------ it learns


def test_lora_learns_mnist_to_digits8(source_run: Path) -> None:
    """10 shots per class of digits8 from the MNIST source: far above the 10% of chance."""
    res = transferkit.transfer(source_run, "digits8", strategy="lora", shots=10, seed=0, epochs=5,
                               precision="fp32", progress="off")
    assert res.metrics["target"]["accuracy"] > 0.5


def test_lora_learns_on_a_linear_model(tmp_path: Path) -> None:
    src = transferkit.pretrain("mnist5k", "mlp", tmp_path / "src", seed=0, model_kwargs={"hidden": 64}, epochs=2,
                               batch_size=128, precision="fp32", progress="off")
    res = transferkit.transfer(src.run_dir, "digits8", strategy="lora", shots=10, seed=0, epochs=5,
                               precision="fp32", progress="off")
    assert res.metrics["strategy_info"]["lora"]["targets"] == ["groups.fc1.1", "groups.fc2.0"]
    assert res.metrics["target"]["accuracy"] > 0.4
