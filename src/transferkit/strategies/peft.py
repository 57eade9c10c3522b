"""Parameter-efficient fine-tuning: LoRA (through ``peft``) and BitFit.

Both train a small fraction of the backbone plus the whole head, then leave a *plain*
:class:`TransferModel` behind: LoRA's update is merged into the base weights after training, so
the run's ``model.safetensors`` reloads with no ``peft`` at all and with the trained head (the
classic pitfall of a peft adapter saved without its new classifier cannot happen). The small
trained part is kept separately as an :class:`Adapter` (``adapter.safetensors`` + ``adapter.json``)
that :func:`load_adapter` applies to the source model again, unmerged.

``peft`` (which imports ``transformers``) is imported only when LoRA layers are created.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.engine.loop import Phase
from transferkit.errors import CheckpointError, ConfigError
from transferkit.io import load_tensors, read_json, save_tensors, write_json
from transferkit.models.base import TransferModel
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, probe_phase, set_trainable

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
ADAPTER_NAME = "default"  # peft's adapter name inside the LoRA layers (``lora_A.default``)
LORA_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORM_KINDS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


# ------------------------------------------------------------------------------ shared helpers


def _qualnames(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def groups_holding(model: TransferModel, names: list[str]) -> list[str]:
    """Layer groups (input -> output, head included) that hold any of the qualified ``names``."""
    qual = _qualnames(model)
    out = []
    for gname, gmod in model.layer_groups():
        prefix = qual[id(gmod)]
        if any(_under(n, prefix) for n in names):
            out.append(gname)
    return out


def _head_prefix(model: TransferModel) -> str:
    return _qualnames(model)[id(model.head)]


def _count(params: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def _budget(trainable: list[nn.Parameter], model: nn.Module) -> dict[str, Any]:
    """Trainable parameters against all parameters of ``model`` (adapters included, as peft counts)."""
    total = _count(list(model.parameters()))
    n = _count(trainable)
    return {"trainable_params": n, "total_params": total, "trainable_fraction": n / total}


@dataclass
class Adapter:
    """The trained part of a parameter-efficient run: small tensors plus what re-applies them.

    ``tensors`` are keyed by the :class:`TransferModel`'s state-dict names (with LoRA injected,
    e.g. ``groups.fc.2.lora_A.default.weight``) and include the head; ``config`` records the
    method, its options, the LoRA target modules and the target class names.
    """

    method: str
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``adapter.safetensors`` and ``adapter.json`` into ``directory`` (atomically)."""
        d = Path(directory)
        save_tensors(d / ADAPTER_WEIGHTS, self.tensors, metadata={"format": "pt", "method": self.method})
        write_json(d / ADAPTER_CONFIG, {"method": self.method, **self.config})
        return [d / ADAPTER_WEIGHTS, d / ADAPTER_CONFIG]


def _head_tensors(model: TransferModel) -> dict[str, torch.Tensor]:
    prefix = _head_prefix(model)
    return {f"{prefix}.{k}": v.detach().clone() for k, v in model.head.state_dict().items()}


class _AdapterStrategy(Strategy):
    """Shared by LoRA and BitFit: the kept :class:`Adapter` and its export to a run directory."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.adapter: Adapter | None = None

    def save_artifacts(self, directory: str | Path) -> list[Path]:
        """Write the adapter of the last run into ``directory``; nothing before a run finished."""
        return [] if self.adapter is None else self.adapter.save(directory)

    def _maybe_probe(self, ctx: TransferContext, probe_first: bool) -> Iterator[Phase]:
        if probe_first:
            yield probe_phase(ctx)


def _positive(method: str, **values: float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise ConfigError(f"{method}: {name} must be positive, got {v}")


# ------------------------------------------------------------------------------ LoRA


@dataclass
class LoRAOptions:
    r: int = opt(8, "rank of the low-rank update B A")
    alpha: float = opt(16.0, "scaling: the update is (alpha / r) B A")
    dropout: float = opt(0.0, "dropout on the input of the LoRA branch")
    targets: tuple[str, ...] = opt(("*",), "globs over backbone module names (nn.Linear, nn.Conv1d, nn.Conv2d); e.g. "
                                           "'*query,*value' for the paper's W_q, W_v")
    lr_scale: float = opt(1.0, "learning rate of the LoRA matrices relative to --lr")
    probe_first: bool = opt(False, "linear-probe the head before LoRA (LP-FT style)")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora: r must be at least 1, got {self.r}")
        _positive("lora", alpha=self.alpha, lr_scale=self.lr_scale)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora: dropout must be in [0, 1), got {self.dropout}")
        if not self.patterns:
            raise ConfigError(f"lora: targets={','.join(self.targets)!r} names no module glob")

    @property
    def patterns(self) -> list[str]:
        return [p.strip() for p in self.targets if p.strip()]


def lora_targets(model: TransferModel, patterns: list[str]) -> list[str]:
    """Qualified names of the modules LoRA adapts.

    Every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` of the backbone whose name matches one of
    the globs; never the head (it trains fully), never a grouped (e.g. depthwise) convolution,
    whose LoRA update peft cannot merge.
    """
    head = _head_prefix(model)
    out = []
    for name, m in model.named_modules():
        if not name or _under(name, head) or ".lora_" in f".{name}" or name.endswith("base_layer"):
            continue
        if not isinstance(m, LORA_KINDS) or (isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out.append(name)
    return out


def _lora_config(r: int, alpha: float, dropout: float, targets: list[str]) -> Any:
    import re

    from peft import LoraConfig

    # an exact alternation (peft full-matches a string pattern): no suffix matching surprises
    pattern = "|".join(re.escape(t) for t in targets)
    # peft annotates lora_alpha as int, but uses it only as scaling = lora_alpha / r: a float is fine
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")  # type: ignore[arg-type]


def inject_lora(model: TransferModel, r: int, alpha: float, dropout: float, targets: list[str],
                seed: int = 0) -> list[nn.Parameter]:
    """Add peft LoRA layers to ``targets`` of ``model`` in place; returns the new LoRA parameters.

    LoRA (Hu et al., ICLR 2022): a frozen ``W0 [d_out, d_in]`` gains ``(alpha / r) B A`` with
    ``A [r, d_in]`` (Kaiming-uniform, drawn from ``seed`` without touching the global RNG) and
    ``B [d_out, r] = 0``, so the adapted model starts identical to the source.
    """
    from peft import inject_adapter_in_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(_lora_config(r, alpha, dropout, targets), model, adapter_name=ADAPTER_NAME)
    if hasattr(model, "peft_config"):  # peft's bookkeeping on the model; our Adapter records the config
        del model.peft_config
    return [p for n, p in model.named_parameters() if ".lora_" in n]


def merge_lora(model: nn.Module) -> int:
    """Fold every peft layer's update into its base layer (``W = W0 + (alpha / r) B A``) and put
    the base layer back in place (peft's ``merge`` + unload); returns the number merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        layer.merge()
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return len(layers)


class LoRA(_AdapterStrategy):
    """LoRA via peft (Hu et al., 2022): low-rank updates of the backbone's Linear/Conv layers, merged after training.

    The head always trains fully (at the head learning-rate scale). After the last phase the
    update is merged into the base weights, so the saved model is a plain model; the adapter
    (LoRA matrices + head) is kept in :attr:`adapter`.
    """

    name = "lora"
    Options = LoRAOptions

    def trained_groups(self, model: TransferModel) -> list[str]:
        return [*groups_holding(model, lora_targets(model, self.options.patterns)), "head"]

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        o: LoRAOptions = self.options
        model = ctx.model
        targets = lora_targets(model, o.patterns)
        if not targets:
            kinds = sorted(n for n, m in model.named_modules() if isinstance(m, LORA_KINDS) and n
                           and not _under(n, _head_prefix(model)))
            raise ConfigError(f"lora: targets={','.join(o.targets)!r} match no Linear/Conv layer of the backbone "
                              f"(candidates: {', '.join(kinds[:6]) or 'none'}{' ...' if len(kinds) > 6 else ''})")
        yield from self._maybe_probe(ctx, o.probe_first)
        self.adapter = None
        self._targets = targets
        lora = inject_lora(model, o.r, o.alpha, o.dropout, targets, seed=ctx.cfg.seed)
        head = list(model.head.parameters())
        set_trainable(model, lora + head)
        ctx.info["lora"] = {"r": o.r, "alpha": o.alpha, "dropout": o.dropout, "targets": targets,
                            **_budget(lora + head, model), "lora_params": _count(lora), "merged": False}
        yield Phase(name="lora", module=model, train=ctx.train, val=ctx.val, placement=ctx.placement(),
                    param_groups=[{"params": lora, "lr_scale": o.lr_scale},
                                  {"params": head, "lr_scale": ctx.head_lr_scale}])

    def finish(self, ctx: TransferContext) -> None:
        model = ctx.model
        o: LoRAOptions = self.options
        tensors = {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}
        tensors.update(_head_tensors(model))
        self.adapter = Adapter("lora", tensors, {
            "r": o.r, "alpha": o.alpha, "dropout": o.dropout, "targets": list(self._targets),
            "class_names": list(model.spec.class_names), "base_model": model.spec.name})
        merge_lora(model)
        ctx.info["lora"]["merged"] = True


# ------------------------------------------------------------------------------ BitFit


@dataclass
class BitFitOptions:
    norm_weights: bool = opt(False, "also train the scales (gamma) of BatchNorm/LayerNorm/GroupNorm; BitFit proper "
                                    "trains biases only")
    lr_scale: float = opt(1.0, "learning rate of the biases relative to --lr")
    probe_first: bool = opt(False, "linear-probe the head before BitFit (LP-FT style)")

    def __post_init__(self) -> None:
        _positive("bitfit", lr_scale=self.lr_scale)


def bitfit_parameters(model: TransferModel, norm_weights: bool = False) -> list[tuple[str, nn.Parameter]]:
    """The backbone parameters BitFit trains: every bias (normalisation shifts included, as the
    paper's ``b_LN``), plus normalisation scales when ``norm_weights``; never the head's."""
    head = _head_prefix(model)
    out = []
    for mname, m in model.named_modules():
        if _under(mname, head) and head:
            continue
        for pname, p in m.named_parameters(recurse=False):
            if pname == "bias" or (norm_weights and pname == "weight" and isinstance(m, NORM_KINDS)):
                out.append((f"{mname}.{pname}" if mname else pname, p))
    return out


class BitFit(_AdapterStrategy):
    """BitFit (Ben Zaken, Ravfogel & Goldberg, ACL 2022): train only the backbone's bias terms and the head.

    Every other weight stays frozen; BatchNorm running statistics follow the engine's rule (they
    update in a normalisation layer whose shift trains). The model is changed in place (nothing
    to merge); the trained biases, those BatchNorm statistics and the head are kept in :attr:`adapter`.
    """

    name = "bitfit"
    Options = BitFitOptions

    def trained_groups(self, model: TransferModel) -> list[str]:
        names = [n for n, _ in bitfit_parameters(model, self.options.norm_weights)]
        return [*groups_holding(model, names), "head"]

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        o: BitFitOptions = self.options
        model = ctx.model
        named = bitfit_parameters(model, o.norm_weights)
        if not named:
            raise ConfigError(f"bitfit: the backbone of {model.spec.name} has no bias parameters to train "
                              "(use linear_probe, or norm_weights=true if it has normalisation layers)")
        yield from self._maybe_probe(ctx, o.probe_first)
        self.adapter = None
        self._names = [n for n, _ in named]
        biases = [p for _, p in named]
        head = list(model.head.parameters())
        set_trainable(model, biases + head)
        ctx.info["bitfit"] = {"norm_weights": o.norm_weights, **_budget(biases + head, model),
                              "bias_params": _count(biases)}
        yield Phase(name="bitfit", module=model, train=ctx.train, val=ctx.val, placement=ctx.placement(),
                    param_groups=[{"params": biases, "lr_scale": o.lr_scale},
                                  {"params": head, "lr_scale": ctx.head_lr_scale}])

    def finish(self, ctx: TransferContext) -> None:
        sd = ctx.model.state_dict()
        # a BatchNorm whose shift trained also updated its running statistics: they belong to the adapter
        owners = {n.rpartition(".")[0] for n in self._names}
        stats = [f"{o}.{b}" if o else b for o in owners
                 if isinstance(ctx.model.get_submodule(o), nn.modules.batchnorm._BatchNorm)
                 for b, _ in ctx.model.get_submodule(o).named_buffers(recurse=False)]
        tensors = {n: sd[n].detach().clone() for n in [*self._names, *stats]}
        tensors.update(_head_tensors(ctx.model))
        self.adapter = Adapter("bitfit", tensors, {"norm_weights": self.options.norm_weights,
                                                   "class_names": list(ctx.model.spec.class_names),
                                                   "base_model": ctx.model.spec.name})


# ------------------------------------------------------------------------------ reloading an adapter


def load_adapter(model: TransferModel, directory: str | Path) -> TransferModel:
    """Apply the adapter saved in ``directory`` to ``model`` (the *source* model), in place.

    The head is replaced for the adapter's classes; a LoRA adapter is injected *unmerged* (call
    :func:`merge_lora` to fold it in). Raises :class:`CheckpointError` when the files are
    missing, corrupt, or do not fit ``model``.
    """
    d = Path(directory)
    cfg = read_json(d / ADAPTER_CONFIG)
    tensors = load_tensors(d / ADAPTER_WEIGHTS)
    method = cfg.get("method")
    try:
        names = [str(c) for c in cfg["class_names"]]
        if names != model.spec.class_names:
            model.reset_head(names)
        if method == "lora":
            inject_lora(model, int(cfg["r"]), float(cfg["alpha"]), float(cfg["dropout"]), list(cfg["targets"]))
        elif method != "bitfit":
            raise CheckpointError(f"{d / ADAPTER_CONFIG}: unknown adapter method {method!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{d / ADAPTER_CONFIG}: malformed or does not fit the model ({e})") from None
    own = model.state_dict()
    bad = sorted(k for k in tensors if k not in own or own[k].shape != tensors[k].shape)
    lora_missing = sorted(k for k in own if ".lora_" in k and k not in tensors)
    if bad or lora_missing:
        raise CheckpointError(f"{d / ADAPTER_WEIGHTS}: does not fit the model "
                              f"(first mismatch: {(bad or lora_missing)[0]})")
    model.load_state_dict(tensors, strict=False)
    return model


def adapter_summary(directory: str | Path) -> dict[str, Any]:
    """The adapter's ``adapter.json`` plus its tensor count and parameter total."""
    d = Path(directory)
    cfg = read_json(d / ADAPTER_CONFIG)
    tensors = load_tensors(d / ADAPTER_WEIGHTS)
    return {**cfg, "tensors": len(tensors), "params": sum(t.numel() for t in tensors.values())}


__all__ = ["Adapter", "BitFit", "LoRA", "adapter_summary", "bitfit_parameters", "inject_lora", "load_adapter",
           "lora_targets", "merge_lora"]
