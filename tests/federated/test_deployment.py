"""Deployment mode: a SuperLink and two SuperNodes as separate processes on 127.0.0.1, one round;
every process started is gone afterwards (stopped by PID)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import ArrayDataset, load_dataset


def per_class(ds: ArrayDataset, n: int) -> ArrayDataset:
    """The first ``n`` examples of every class."""
    y = ds.require_labels()
    return ds.subset(np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(ds.num_classes)])))

pytest.importorskip("flwr")
psutil = pytest.importorskip("psutil")


@pytest.mark.slow
def test_superlink_and_two_supernodes_run_a_federation(source_run: Path, tmp_path: Path) -> None:
    from transferkit.federated.clients import initial_model
    from transferkit.federated.config import FedConfig
    from transferkit.federated.deploy import local_federation
    from transferkit.federated.server_app import load_result

    paths = []
    for name in ("mnist5k", "digits8"):
        ds = per_class(load_dataset(name), 10)
        np.savez(tmp_path / f"{name}.npz", x=ds.x, y=ds.require_labels(), class_names=np.array(ds.class_names))
        paths.append(str(tmp_path / f"{name}.npz"))
    cfg = FedConfig(source=str(source_run), clients_from=",".join(paths), rounds=1, share="head", probe_epochs=5,
                    class_names=json.dumps([str(i) for i in range(10)]), round_timeout=120,
                    train=json.dumps({"precision": "fp32"}))
    started: list[int] = []
    try:
        info = local_federation(cfg, tmp_path / "result", tmp_path / "work", timeout=170, started=started)
    finally:
        from transferkit.federated.deploy import stop

        stop(started, grace=5)
    assert len(started) == 3  # SuperLink + 2 SuperNodes
    for pid in info["pids"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    tracker = load_result(tmp_path / "result", initial_model(cfg))
    r1 = tracker.rounds[1]
    assert r1["aggregated"] and r1["replies"] == 2 and not r1["failed"]
    assert set(r1["clients"]) == {"0", "1"} and r1["pooled_accuracy"] > 0.3
