"""``federate``: federated transfer from one source model, written to a run directory.

Run directory (as the other commands, :class:`transferkit.runs.RunDir`): ``config.json`` (the
resolved :class:`FedConfig`), ``metrics.json`` (per-round history: bytes up/down, each client's
held-out accuracy, pooled accuracy, failures; totals; optional baselines), ``model.safetensors``
+ ``model.json`` (the final global model), ``payloads.json`` (names/shapes/dtypes of every
tensor that travelled) and ``report.md``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError
from transferkit.federated.config import FedConfig
from transferkit.federated.spec import FederateSpec
from transferkit.runs import RunDir, check_out, marks_failure

log = logging.getLogger("transferkit")

def simulate(cfg: FedConfig) -> tuple[Any, Any]:
    """Run ``cfg`` in Flower's simulation engine (Ray), one CPU per client; returns (model, tracker).

    Quiet (:func:`~transferkit.federated.quiet.quiet_simulation`): one line per round on the
    ``transferkit`` logger, one per failed client; Ray's session folder is removed afterwards."""
    from flwr.simulation import run_simulation

    from transferkit.federated.client_app import make_client_app
    from transferkit.federated.quiet import quiet_simulation, verbose
    from transferkit.federated.server_app import make_server_app

    sink: dict[str, Any] = {}
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"include_dashboard": False, "log_to_driver": verbose(),
                             "logging_level": "INFO" if verbose() else "ERROR"}}
    with quiet_simulation():
        run_simulation(make_server_app(cfg, sink), make_client_app(cfg), num_supernodes=cfg.clients,
                       backend_config=backend)  # type: ignore[arg-type]
    if "model" not in sink:
        raise ConfigError("the federation ended without a result (see the error above; --debug shows Flower's log)")
    return sink["model"], sink["tracker"]


def check_training(cfg: FedConfig) -> None:
    """Local training settings (``train``: TrainConfig fields, ``--device`` among them) checked once,
    here: in a client they would only fail every reply, and the federation end without a result."""
    from transferkit.engine.config import TrainConfig
    from transferkit.engine.precision import resolve_device
    from transferkit.errors import did_you_mean

    known = {f.name for f in fields(TrainConfig)}
    for key in cfg.train_overrides:
        if key not in known:
            raise ConfigError(f"train={cfg.train!r}: unknown setting '{key}'{did_you_mean(key, known)}")
    resolve_device(TrainConfig(**cfg.train_overrides).device)


def _deploy(cfg: FedConfig, run_path: Path | None, superlink: str | None) -> tuple[Any, Any, dict[str, Any]]:
    from transferkit.federated.clients import initial_model
    from transferkit.federated.deploy import local_federation, submit
    from transferkit.federated.server_app import load_result

    work = Path(tempfile.mkdtemp(prefix="tk-flower-"))
    result_dir = (run_path / "federation") if run_path is not None else work / "result"
    if superlink:
        t0 = time.perf_counter()
        submit(cfg, superlink, result_dir, work)
        info: dict[str, Any] = {"superlink": superlink, "seconds": time.perf_counter() - t0}
    else:
        info = local_federation(cfg, result_dir, work)
    model = initial_model(cfg)  # the ServerApp saved the global model merged (plain layers)
    tracker = load_result(result_dir, model)
    shutil.rmtree(work, ignore_errors=True)  # read: the app, Flower's home and the logs served their turn
    info.pop("work_dir", None)
    return model, tracker, info


def _totals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    last: dict[str, Any] = next((r for r in reversed(rounds) if "pooled_accuracy" in r), {})
    return {"bytes_up": sum(r["bytes_up"] for r in rounds), "bytes_down": sum(r["bytes_down"] for r in rounds),
            "bytes_total": sum(r["bytes_up"] + r["bytes_down"] for r in rounds),
            "pooled_accuracy": last.get("pooled_accuracy"),
            "clients": {k: v.get("accuracy") for k, v in last.get("clients", {}).items()},
            "failures": sum(len(r["failed"]) for r in rounds)}


def federate(spec: FederateSpec | str | None = None, data: str | None = None, *, out: str | Path | None = None,
             overwrite: bool = False, **fields: Any) -> dict[str, Any]:
    """Federated transfer of a source model to clients that keep their data.

    ``spec`` is a :class:`~transferkit.federated.spec.FederateSpec`, or the source (a run directory or a
    pretrained backbone name) with ``data`` and further spec fields as keywords: ``clients_from`` (one data
    set per client, a tuple or ``"a,b,c"``), ``share`` (``head``, ``lora`` or ``all``: what travels each
    round), ``aggregator`` (``fedavg`` | ``fedprox`` with ``mu``), ``mode`` (``simulation``: Flower's Ray
    engine, one CPU per client; ``deployment``: SuperLink + SuperNode processes on 127.0.0.1 unless
    ``superlink`` names a running one), ``baselines`` (also centralised and local-only models on the same
    splits), ``train`` (TrainConfig overrides for local training, a dict)... Returns the metrics written
    to ``metrics.json``.
    """
    spec = as_spec(spec, data, fields)
    if out is not None:
        check_out(out, overwrite)  # before any client data loads
    cfg = resolve(spec)
    config = {"command": "federate", **spec.to_dict(), "resolved": asdict(cfg), **run_record()}
    run = RunDir.create(out, "federate", config, overwrite) if out is not None else None
    with marks_failure(run):
        t0 = time.perf_counter()
        model, tracker, info = train(spec, cfg, run)
        metrics = assess(spec, cfg, tracker, info, time.perf_counter() - t0)
        if run is not None:
            run.save_model(model)
            run.write("metrics.json", metrics)
            run.write("payloads.json", tracker.payloads)
            run.write("report.md", render_report(config, metrics))
            run.complete()
    metrics["payloads"] = tracker.payloads
    return metrics


def run_record() -> dict[str, Any]:
    """What every run's config.json records beside its spec: the folder it started in and the versions."""
    import os

    from transferkit.pipeline.transfer import versions

    return {"cwd": os.getcwd(), "versions": versions()}


def as_spec(spec: FederateSpec | str | None, data: str | None, fields: dict[str, Any]) -> FederateSpec:
    """The spec of a :func:`federate` call: given, or built from the source, ``data`` and keyword fields."""
    if isinstance(spec, FederateSpec):
        if data is not None or fields:
            raise ConfigError("federate: pass either a FederateSpec or the source with keyword fields, not both")
        return spec
    if spec is not None:
        fields["source"] = str(spec)
    if data is not None:
        fields["data"] = data
    return FederateSpec.from_dict(fields)


def resolve(spec: FederateSpec) -> FedConfig:
    """The federation's wire config, every setting checked before a client starts: the share's plumbing,
    the local training settings, and the target classes (read once from the data)."""
    from transferkit.federated.clients import class_names
    from transferkit.federated.local import require_share

    cfg = spec.fed_config()  # the partition, share and counts are checked here
    require_share(cfg.share)
    check_training(cfg)
    cfg.class_names = json.dumps(class_names(cfg))
    return cfg


def train(spec: FederateSpec, cfg: FedConfig, run: RunDir | None) -> tuple[Any, Any, dict[str, Any]]:
    """Run the federation (simulated or deployed); returns the global model, the round tracker and the
    deployment's details."""
    if spec.mode == "simulation":
        model, tracker = simulate(cfg)
        return model, tracker, {}
    if run is not None:
        run.adopt("federation")
    return _deploy(cfg, run.path if run else None, spec.superlink)


def assess(spec: FederateSpec, cfg: FedConfig, tracker: Any, info: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Per-round history, totals and (``baselines``) centralised and local-only models on the same splits."""
    rounds = [tracker.rounds[r] for r in sorted(tracker.rounds)]
    metrics: dict[str, Any] = {"mode": spec.mode, "seconds": seconds, "deployment": info, "history": rounds,
                               **_totals(rounds)}
    if spec.baselines:
        metrics["baselines"] = run_baselines(cfg)
    return metrics


def run_baselines(cfg: FedConfig) -> dict[str, Any]:
    """Centralised and local-only transfer on the federation's splits, with the same local strategy
    and the same number of passes over the data as the federation (``rounds`` x local epochs)."""
    from transferkit.federated.baselines import centralised, local_only
    from transferkit.federated.clients import all_clients
    from transferkit.federated.local import LOCAL_STRATEGY

    clients = all_clients(cfg)
    strategy = LOCAL_STRATEGY[cfg.share]
    epochs, probe = cfg.rounds * cfg.local_epochs, min(200, cfg.rounds * cfg.probe_epochs)
    return {"centralised": centralised(cfg, clients, strategy, epochs, probe),
            "local_only": local_only(cfg, clients, strategy, epochs, probe)}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def render_report(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A short markdown summary: setup, per-round table, baselines."""
    pct = _pct
    wire = config["resolved"]
    lines = [f"# Federated transfer ({config['mode']})", "",
             f"- source: `{config['source']}`; clients: {wire['clients']} "
             f"({wire['clients_from'] or wire['data'] + ' ' + wire['partition']})",
             f"- share: {config['share']}; aggregator: {config['aggregator']}; rounds: {config['rounds']}; "
             f"personal heads: {config['personal_head']}",
             f"- final pooled held-out accuracy: {pct(metrics.get('pooled_accuracy'))}; "
             f"bytes up {metrics['bytes_up']:,}, down {metrics['bytes_down']:,}; failed replies: {metrics['failures']}",
             "", "| round | bytes up | bytes down | pooled acc | per client | failed |", "|---|---|---|---|---|---|"]
    for r in metrics["history"]:
        per = ", ".join(f"{k}: {pct(v.get('accuracy'))}" for k, v in sorted(r["clients"].items()))
        failed = ", ".join(f"node {f['node_id']}" for f in r["failed"]) or "-"
        lines.append(f"| {r['round']} | {r['bytes_up']:,} | {r['bytes_down']:,} | {pct(r.get('pooled_accuracy'))} "
                     f"| {per} | {failed} |")
    if "baselines" in metrics:
        lines += ["", "| baseline | pooled acc |", "|---|---|"]
        for name, b in metrics["baselines"].items():
            lines.append(f"| {name} ({b['strategy']}) | {pct(b['pooled_accuracy'])} |")
    return "\n".join(lines) + "\n"
