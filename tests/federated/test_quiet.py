"""``federate`` speaks one line per round on stderr and leaves no Ray session folder behind:
only the folders this process created are removed, never another process's or an older one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import load_dataset
from transferkit.federated.quiet import own_sessions, quiet_simulation, ray_temp_root, remove_new_sessions


def _session(root: Path, pid: int, stamp: str = "2026-01-01_00-00-00_000000") -> Path:
    p = root / f"session_{stamp}_{pid}"
    (p / "logs").mkdir(parents=True)
    (p / "logs" / "raylet.out").write_text("x")
    return p


def test_only_this_processs_new_sessions_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "ray"
    old_own = _session(root, os.getpid(), "2025-01-01_00-00-00_000000")
    other = _session(root, os.getpid() + 1)
    before = own_sessions(root)
    new_own = _session(root, os.getpid())
    (root / "session_latest").symlink_to(new_own)
    assert remove_new_sessions(root, before, root_existed=True) == [new_own]
    assert old_own.is_dir() and other.is_dir() and not new_own.exists()
    assert not (root / "session_latest").is_symlink()  # it pointed at the removed session


def test_ray_folder_removed_only_when_this_run_made_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    assert ray_temp_root() == tmp_path / "ray"
    with quiet_simulation():
        _session(tmp_path / "ray", os.getpid())
    assert not (tmp_path / "ray").exists()
    keep = _session(tmp_path / "ray", os.getpid() + 1)
    with quiet_simulation():
        _session(tmp_path / "ray", os.getpid())
    assert [p.name for p in (tmp_path / "ray").iterdir()] == [keep.name]


@pytest.fixture()
def short_tmp() -> Iterator[Path]:
    """A private temp folder with a short path (Ray's socket paths must stay under 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="tkq", dir="/tmp"))  # noqa: S108
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_simulated_federate_stderr_is_one_line_per_round(source_run: Path, short_tmp: Path, tmp_path: Path) -> None:
    pytest.importorskip("flwr")
    ds = load_dataset("digits8")
    idx = np.concatenate([np.flatnonzero(ds.y == c)[:10] for c in range(10)])
    np.savez(tmp_path / "d.npz", x=ds.x[idx], y=ds.y[idx])
    other = _session(short_tmp / "ray", 1)  # another process's Ray session: must survive
    before = sorted(p.relative_to(short_tmp) for p in short_tmp.rglob("*"))
    env = {**os.environ, "TMPDIR": str(short_tmp), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_TMPDIR", None)
    out = subprocess.run([sys.executable, "-m", "transferkit", "federate", "--source", str(source_run),
                          "--clients-from", f"{tmp_path / 'd.npz'},{tmp_path / 'd.npz'}", "--rounds", "2",
                          "--probe-epochs", "2", "--precision", "fp32", "--out", str(tmp_path / "fed")],
                         env=env, capture_output=True, text=True, timeout=400, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    err = out.stderr.splitlines()
    assert len(err) == 2 and all(line.startswith("transferkit: round ") for line in err), out.stderr
    after = sorted(p.relative_to(short_tmp) for p in short_tmp.rglob("*"))
    assert other.is_dir() and [p for p in after if p.parts[0] == "ray"] == [p for p in before if p.parts[0] == "ray"]


def test_flower_held_to_errors_and_client_tracebacks_dropped() -> None:
    import logging

    flwr_log = logging.getLogger("flwr")
    client_failure = logging.makeLogRecord({"module": "vce_api", "levelno": logging.ERROR})
    server_error = logging.makeLogRecord({"module": "run_simulation", "levelno": logging.ERROR})
    with quiet_simulation():
        assert flwr_log.isEnabledFor(logging.ERROR) and not flwr_log.isEnabledFor(logging.WARNING)
        assert not flwr_log.filter(client_failure) and flwr_log.filter(server_error)
    assert flwr_log.filter(client_failure)  # restored after the block


def test_failure_reason_is_the_message() -> None:
    from transferkit.federated.server_app import failure_reason

    wrapped = "Traceback ...\nException ClientAppException occurred. Message: injected fault: client 1'>"
    assert failure_reason(wrapped) == "injected fault: client 1"
    assert failure_reason("  ") == "no reason given" and failure_reason("timed out") == "timed out"
