"""Deployment mode: a SuperLink and two SuperNodes as separate processes on 127.0.0.1, one round;
every process started is gone afterwards (stopped by PID)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "federated_deploy.sh"


def _script(args: list[str], cwd: Path, tmpdir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_script_help_and_its_no_argument_default(tmp_path: Path) -> None:
    """``scripts/federated_deploy.sh`` as the README writes it uses runs/src; without it, one line."""
    out = _script(["--help"], tmp_path, tmp_path)
    assert out.returncode == 0 and "With no arguments" in out.stdout, out.stderr
    out = _script([], tmp_path, tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "federated_deploy.sh: error: runs/src: no such source run (make it with: transferkit pretrain --data "
        "mnist5k --out runs/src)"]
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.slow
def test_script_runs_a_deployment_and_stops_everything(source_run: Path, tmp_path: Path) -> None:
    """The script's path: SuperLink + 2 SuperNodes + ``flwr run``; exit 0, a complete run, every
    process it started gone, its temporary folder removed."""
    (tmp_path / "runs").mkdir()
    shutil.copytree(source_run, tmp_path / "runs" / "src")
    for name in ("mnist5k", "digits8"):
        ds = per_class(load_dataset(name), 10)
        np.savez(tmp_path / f"{name}.npz", x=ds.x, y=ds.require_labels(), class_names=np.array(ds.class_names))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = _script(["runs/src", "mnist5k.npz,digits8.npz", "runs/fed", "--rounds", "1", "--probe-epochs", "5",
                   "--precision", "fp32"], tmp_path, tmpdir, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "fed" / "run.json").read_text())["status"] == "complete"
    assert "final pooled accuracy" in out.stdout
    pids = [int(p) for p in out.stderr.split("stopped PIDs:")[-1].split()]
    assert len(pids) >= 3  # SuperLink + 2 SuperNodes (+ their children)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not list(tmpdir.glob("tk-flower-*"))
