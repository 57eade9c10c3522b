"""Training-state checkpoints as safetensors + JSON (never pickle), written atomically.

A checkpoint holds the module weights, the best weights so far, the optimizer state, the RNG
state and the loop counters, so a killed phase resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transferkit.errors import CheckpointError
from transferkit.io import load_tensors, read_json, save_tensors, write_json


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    groups = [dict(g) for g in sd["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    match_param_layout(opt)


def match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Store each per-parameter state tensor (moments, momentum) in its parameter's memory layout.

    Saved state comes back contiguous while a channels-last conv weight is not; fused optimiser
    kernels walk both as flat buffers, so a mismatch silently pairs wrong elements (measured with
    torch 2.13: AdamW one step off by 0.17 on a 3x3 kernel). ``tests/engine/test_checkpoint.py``
    checks a resumed channels-last fit against an uninterrupted one.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def save_checkpoint(
    path: Path,
    module: torch.nn.Module,
    opt: torch.optim.Optimizer,
    best: dict[str, torch.Tensor] | None,
    gen: torch.Generator,
    loop: dict[str, Any],
) -> None:
    """Write ``path.safetensors`` then ``path.json``; the JSON (written last) marks it valid."""
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v for k, v in best.items()})
    opt_t, opt_meta = flatten_optimizer(opt)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = gen.get_state()
    tensors["loop.step"] = torch.tensor(int(loop["step"]))  # pairs this file with its JSON
    save_tensors(path.with_suffix(".safetensors"), tensors)
    write_json(path.with_suffix(".json"), {"loop": loop, "optimizer": opt_meta, "has_best": best is not None})


def load_checkpoint(
    path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns (loop counters, best weights)."""
    meta = read_json(path.with_suffix(".json"))
    tensors = load_tensors(path.with_suffix(".safetensors"))
    if "loop.step" in tensors and int(tensors["loop.step"]) != int(meta["loop"]["step"]):
        raise CheckpointError(f"{path.with_suffix('.safetensors')}: does not match {path.with_suffix('.json').name} "
                              f"(interrupted while saving); delete {path.parent} to restart the run's training")
    try:
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        restore_optimizer(opt, tensors, meta["optimizer"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint does not fit this model ({str(e).splitlines()[0]})") from None
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.loader"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] else None
    return meta["loop"], best
