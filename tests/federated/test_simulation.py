"""A real federation in Flower's simulation engine: 3 clients, one digit domain each, 2 rounds,
``share=head``, client 1 crashing in round 2. Also checks that only shared weights travel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.data import ArrayDataset, load_dataset


def per_class(ds: ArrayDataset, n: int) -> ArrayDataset:
    """The first ``n`` examples of every class."""
    y = ds.require_labels()
    return ds.subset(np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(ds.num_classes)])))

pytest.importorskip("flwr")
pytestmark = pytest.mark.slow  # Ray start-up plus three client processes: ~40-90 s on 2 cores

DOMAINS = ("mnist5k", "digits8", "fontdigits")


@pytest.fixture(scope="module")
def domain_slices(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Small real slices of the three digit domains (20 per class), as .npz files."""
    out = tmp_path_factory.mktemp("domains")
    paths = []
    for name in DOMAINS:
        ds = per_class(load_dataset(name), 20)
        path = out / f"{name}.npz"
        np.savez(path, x=ds.x, y=ds.require_labels(), class_names=np.array(ds.class_names))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def federation(source_run: Path, domain_slices: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    import transferkit  # the top-level API (issue 18: federate from the package)

    out = tmp_path_factory.mktemp("fed") / "run"
    metrics = transferkit.federate(str(source_run), clients_from=domain_slices, rounds=2, share="head", out=out,
                       probe_epochs=10, fault="2:1", train=json.dumps({"precision": "fp32", "batch_size": 64}))
    return {"metrics": metrics, "out": out}


def test_federation_completes_and_writes_a_run(federation: dict) -> None:
    out, m = federation["out"], federation["metrics"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    for f in ("config.json", "metrics.json", "model.safetensors", "model.json", "report.md", "payloads.json"):
        assert (out / f).exists(), f
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["round"] for r in hist] == [1, 2]
    for r in hist:
        assert r["bytes_down"] > 0 and r["bytes_up"] > 0
        assert 0.0 <= r["pooled_accuracy"] <= 1.0
        assert set(r["clients"]) == {"0", "1", "2"}
    assert m["pooled_accuracy"] > 0.5  # a transferred head on real digits, far above chance (0.1)


def test_a_crashing_client_does_not_stop_the_round(federation: dict) -> None:
    r1, r2 = federation["metrics"]["history"]
    assert r1["failed"] == [] and r1["replies"] == 3
    assert len(r2["failed"]) == 1
    fail = r2["failed"][0]
    assert fail["phase"] == "train" and fail["partition_id"] == 1 and "injected fault" in fail["reason"]
    assert r2["aggregated"] and r2["replies"] == 2
    assert r2["bytes_up"] * 3 == r1["bytes_up"] * 2  # two replies instead of three, same tensors


def test_messages_hold_only_shared_weights_never_samples(federation: dict, source_run: Path,
                                                          domain_slices: list[str]) -> None:
    from transferkit.runs import load_run

    model = load_run(federation["out"]).model
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    sizes = {len(load_dataset(p).x) for p in domain_slices}
    sizes |= {int(n * f) for n in sizes for f in (0.3, 0.15, 0.55)}  # client parts, roughly
    payloads = federation["metrics"]["payloads"]
    assert {p["direction"] for p in payloads} == {"up", "down"}
    assert len([p for p in payloads if p["direction"] == "up"]) == 3 + 2  # train replies only carry arrays
    for p in payloads:
        assert p["scalars_only"], p
        assert set(p["tensors"]) == {"head.weight", "head.bias"}, p["tensors"].keys()
        for name, t in p["tensors"].items():
            assert t["shape"] == shapes[name] and t["dtype"] == "float32"
            assert t["shape"][0] not in sizes  # no axis the size of a client's data (head.weight is [10, 64])
    assert torch.is_tensor(model.head.weight)
