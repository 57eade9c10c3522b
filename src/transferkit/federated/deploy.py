"""Deployment mode: a Flower SuperLink, one SuperNode per data owner, and ``flwr run``.

:func:`submit` sends a federation to a running SuperLink (any machine): it writes a minimal
Flower app (``pyproject.toml`` naming ``transferkit.federated.server_app:app`` and
``client_app:app``, with the :class:`FedConfig` as the app's run config) and a Flower
configuration (``FLWR_HOME/config.toml`` with the SuperLink connection), then runs
``flwr run --stream``. The ServerApp writes its result where the run config's ``result-dir``
says (on the SuperLink's machine).

:func:`local_federation` starts everything on 127.0.0.1 -- ``flower-superlink --insecure
--disable-runtime-dependency-installation`` and ``clients`` ``flower-supernode`` processes on
free ports, each with ``partition-id=k`` in its node config -- submits, and stops every process
it started (and their children) by PID, whatever happens. Flower never installs packages here:
the SuperLink refuses runtime dependency installation and the app declares no dependencies.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError, TransferkitError
from transferkit.federated.config import FedConfig

log = logging.getLogger("transferkit")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_app(directory: Path, cfg: FedConfig, result_dir: Path) -> Path:
    """A Flower app folder whose run config is ``cfg`` (plus ``result-dir``)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = {**cfg.to_run_config(), "result-dir": str(result_dir.resolve())}
    lines = ["[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
             "[project]", 'name = "transferkit-federation"', 'version = "1.0.0"',
             'description = "transferkit federated transfer"', 'license = "Apache-2.0"', "dependencies = []", "",
             "[tool.hatch.build.targets.wheel]", 'packages = ["."]', "",
             "[tool.flwr.app]", 'publisher = "transferkit"', "",
             "[tool.flwr.app.components]", 'serverapp = "transferkit.federated.server_app:app"',
             'clientapp = "transferkit.federated.client_app:app"', "",
             "[tool.flwr.app.config]", *[f"{k} = {_toml(v)}" for k, v in conf.items()], ""]
    (directory / "pyproject.toml").write_text("\n".join(lines))
    return directory


def flower_env(home: Path, address: str) -> dict[str, str]:
    """Environment for Flower's CLI: its home with a default SuperLink connection to ``address``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "transferkit"\n\n[superlink.transferkit]\n'
                                      f'address = "{address}"\ninsecure = true\n')
    env = dict(os.environ)
    env.update(FLWR_HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return env


def submit(cfg: FedConfig, address: str, result_dir: Path, work: Path, timeout: float = 3600) -> None:
    """Run the federation on the SuperLink at ``address``; blocks until the ServerApp finished."""
    app = write_app(work / "app", cfg, result_dir)
    env = flower_env(work / "flwr-home", address)
    with open(work / "flwr-run.log", "w") as logf:
        try:
            rc = subprocess.run([str(BIN / "flwr"), "run", str(app), "transferkit", "--stream"], env=env,
                                stdout=logf, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            log_file = work / "flwr-run.log"
            raise TransferkitError(f"federation did not finish within {timeout:.0f}s; see {log_file}") from None
    if rc != 0:
        tail = (work / "flwr-run.log").read_text()[-400:].strip().splitlines()
        raise TransferkitError(f"flwr run failed (exit {rc}): {tail[-1] if tail else ''}; see {work / 'flwr-run.log'}")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise TransferkitError(f"{what} exited with code {proc.returncode} while starting")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TransferkitError(f"{what} did not open port {port} within {timeout:.0f}s")


def stop(pids: list[int], grace: float = 10.0) -> list[int]:
    """Terminate the processes ``pids`` and all their descendants, by PID; kill what outlives
    ``grace`` seconds. Returns every PID that was signalled."""
    import psutil

    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs += [*p.children(recursive=True), p]
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


def local_federation(cfg: FedConfig, result_dir: Path, work: Path | None = None, timeout: float = 3600,
                     started: list[int] | None = None) -> dict[str, Any]:
    """SuperLink + ``cfg.clients`` SuperNodes on 127.0.0.1, one federation, then everything stopped.

    ``started`` (if given) receives the PIDs as they start, so a caller can check they are gone.
    """
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="tk-flower-"))
    work.mkdir(parents=True, exist_ok=True)
    pids: list[int] = [] if started is None else started
    link_port = free_port()
    env = flower_env(work / "flwr-home", f"127.0.0.1:{link_port}")
    logs = []
    t0 = time.perf_counter()
    try:
        logs.append(open(work / "superlink.log", "w"))  # noqa: SIM115 (closed in finally)
        link = subprocess.Popen([str(BIN / "flower-superlink"), "--insecure",
                                 "--disable-runtime-dependency-installation",
                                 "--host", "127.0.0.1", "--port", str(link_port)],
                                env=env, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True)
        pids.append(link.pid)
        _wait_port(link_port, link, "flower-superlink")
        for k in range(cfg.clients):
            logs.append(open(work / f"supernode-{k}.log", "w"))  # noqa: SIM115 (closed in finally)
            node = subprocess.Popen([str(BIN / "flower-supernode"), "--insecure",
                                     "--superlink", f"127.0.0.1:{link_port}",
                                     "--host", "127.0.0.1", "--port", str(free_port()),
                                     "--node-config", f"partition-id={k} num-partitions={cfg.clients}"],
                                    env=env, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True)
            pids.append(node.pid)
        submit(cfg, f"127.0.0.1:{link_port}", result_dir, work, timeout)
    finally:
        stopped = stop(pids)
        for f in logs:
            f.close()
    if not (result_dir / "federation.json").exists():
        raise ConfigError(f"the ServerApp wrote no result to {result_dir}; see the logs in {work}")
    return {"work_dir": str(work), "pids": stopped, "seconds": time.perf_counter() - t0, "superlink_port": link_port}
