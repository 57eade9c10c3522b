"""The Flower ServerApp (Message API): FedAvg / FedProx over the shared tensors, measured.

:class:`Tracker` wraps the strategy's four hooks and records, per round, the bytes of every
``ArrayRecord`` sent down and received up (``ArrayRecord.count_bytes``, i.e. the serialised
arrays), each client's held-out accuracy, the pooled held-out accuracy (sum of correct over sum
of examples: the accuracy on the union of the clients' test sets), the clients that failed (by
node id, with their partition id when known), and the names / shapes / dtypes of every tensor
that travelled (the "no samples leave a client" test reads those).

Faults: a failed or timed-out reply is logged and dropped; the round is aggregated from the
others when at least ``ceil(min_fit_fraction * clients)`` replied, else the global weights stay.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from transferkit.federated.config import FedConfig
from transferkit.federated.local import require_share, shared_state, sharing_form

log = logging.getLogger("transferkit")

RESULT_JSON = "federation.json"
RESULT_WEIGHTS = "global.safetensors"


def _describe(record: Any) -> dict[str, Any]:
    return {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in record.items()}


def _scalars_only(content: Any) -> bool:
    """Config / metric records hold scalars or short lists, never an array of examples."""
    for rec in list(content.config_records.values()) + list(content.metric_records.values()):
        for v in rec.values():
            if isinstance(v, (list, tuple, bytes)) and len(v) > 16:
                return False
    return True


def failure_reason(reason: str) -> str:
    """The last line of a failed reply's reason, without Flower's wrapping: ``Exception
    ClientAppException occurred. Message: injected fault ...'>`` -> ``injected fault ...``."""
    lines = reason.strip().splitlines()
    if not lines:
        return "no reason given"
    last = re.sub(r"^Exception \w+ occurred\. Message: ", "", lines[-1].strip())
    return last.removesuffix("'>").strip() or "no reason given"


class Tracker:
    """Counts and inspects the traffic of one federation; ``rounds[r]`` is round ``r``'s record."""

    def __init__(self, cfg: FedConfig) -> None:
        self.cfg = cfg
        self.rounds: dict[int, dict[str, Any]] = {}
        self.payloads: list[dict[str, Any]] = []
        self.partition_of: dict[int, int] = {}

    def round(self, r: int) -> dict[str, Any]:
        return self.rounds.setdefault(r, {"round": r, "bytes_down": 0, "bytes_up": 0, "failed": [], "clients": {},
                                          "aggregated": False})

    def sent(self, r: int, phase: str, messages: list[Any]) -> None:
        for m in messages:
            for rec in m.content.array_records.values():
                self.round(r)["bytes_down"] += rec.count_bytes()
                self.payloads.append({"round": r, "phase": phase, "direction": "down", "tensors": _describe(rec),
                                      "scalars_only": _scalars_only(m.content)})

    def received(self, r: int, phase: str, replies: list[Any]) -> list[Any]:
        ok = []
        for m in replies:
            node = int(m.metadata.src_node_id)
            if m.has_error():
                pid = self.partition_of.get(node)
                who = f"node {node}" + (f" (client {pid})" if pid is not None else "")
                log.warning("round %d %s: %s failed: %s", r, phase, who, failure_reason(m.error.reason))
                self.round(r)["failed"].append({"phase": phase, "node_id": node, "partition_id": pid,
                                                "reason": m.error.reason[-500:]})
                continue
            ok.append(m)
            metrics: Any = next(iter(m.content.metric_records.values()), {})
            if "partition-id" in metrics:
                self.partition_of[node] = int(metrics["partition-id"])
            for rec in m.content.array_records.values():
                self.round(r)["bytes_up"] += rec.count_bytes()
                self.payloads.append({"round": r, "phase": phase, "direction": "up", "node_id": node,
                                      "tensors": _describe(rec), "scalars_only": _scalars_only(m.content)})
            pid = self.partition_of.get(node, -1)
            entry = self.round(r)["clients"].setdefault(str(pid), {"node_id": node})
            entry.update({k.replace("-", "_"): float(v) for k, v in metrics.items() if k != "partition-id"})
        return ok

    def pooled(self, r: int) -> None:
        clients = [c for c in self.round(r)["clients"].values() if "correct" in c]
        n = sum(c["num_examples"] for c in clients)
        self.round(r)["pooled_accuracy"] = sum(c["correct"] for c in clients) / n if n else float("nan")
        rec = self.round(r)
        log.info("round %d/%d: pooled held-out accuracy %.2f%% over %d of %d clients%s", r, self.cfg.rounds,
                 100 * rec["pooled_accuracy"], len(clients), self.cfg.clients,
                 f"; failed replies: {len(rec['failed'])}" if rec["failed"] else "")


def tracked_strategy(cfg: FedConfig, tracker: Tracker) -> Any:
    """A FedAvg or FedProx instance whose hooks feed ``tracker`` and tolerate failed clients."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    base = FedProx if cfg.aggregator == "fedprox" else FedAvg

    class Tracked(base):  # type: ignore[misc, valid-type]
        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            msgs = list(super().configure_train(server_round, arrays, config, grid))
            tracker.sent(server_round, "train", msgs)
            return msgs

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            ok = tracker.received(server_round, "train", list(replies))
            if len(ok) < cfg.min_replies:
                log.warning("round %d: only %d of %d clients replied (need %d); the global weights stay",
                            server_round, len(ok), cfg.clients, cfg.min_replies)
                return None, None
            tracker.round(server_round)["aggregated"] = True
            tracker.round(server_round)["replies"] = len(ok)
            return super().aggregate_train(server_round, ok)

        def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            msgs = list(super().configure_evaluate(server_round, arrays, config, grid))
            tracker.sent(server_round, "evaluate", msgs)
            return msgs

        def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
            ok = tracker.received(server_round, "evaluate", list(replies))
            tracker.pooled(server_round)
            return super().aggregate_evaluate(server_round, ok) if ok else None

    kwargs: dict[str, Any] = {"proximal_mu": cfg.mu} if cfg.aggregator == "fedprox" else {}
    return Tracked(min_train_nodes=cfg.clients, min_evaluate_nodes=cfg.clients, min_available_nodes=cfg.clients,
                   **kwargs)


def run_server(grid: Any, cfg: FedConfig) -> tuple[Any, Tracker]:
    """Run the federation on ``grid``; returns the final global model and the tracker."""
    from transferkit.federated.client_app import from_record, to_record
    from transferkit.federated.clients import initial_model
    from transferkit.federated.local import load_shared

    require_share(cfg.share)
    model = sharing_form(initial_model(cfg), cfg)
    tracker = Tracker(cfg)
    strategy = tracked_strategy(cfg, tracker)
    result = strategy.start(grid, to_record(shared_state(model, cfg)), num_rounds=cfg.rounds,
                            timeout=cfg.round_timeout)
    if result.arrays is not None and len(result.arrays):
        load_shared(model, from_record(result.arrays))
    if cfg.share == "lora":
        from transferkit.strategies.peft import merge_lora

        merge_lora(model)
    return model, tracker


def make_server_app(cfg: FedConfig | None = None, sink: dict[str, Any] | None = None) -> Any:
    """A ServerApp; ``cfg=None`` reads the config from ``Context.run_config``. The result goes
    into ``sink`` (simulation) and, when the run config names a ``result-dir``, to files there."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        c = cfg if cfg is not None else FedConfig.from_run_config(context.run_config)
        model, tracker = run_server(grid, c)
        if sink is not None:
            sink.update(model=model, tracker=tracker)
        out = context.run_config.get("result-dir")
        if out:
            save_result(Path(str(out)), model, tracker)

    return app


def save_result(out: Path, model: Any, tracker: Tracker) -> None:
    from transferkit.io import save_tensors, write_json

    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / RESULT_WEIGHTS, {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                 metadata={"format": "pt"})
    write_json(out / RESULT_JSON, {"rounds": [tracker.rounds[r] for r in sorted(tracker.rounds)],
                                   "payloads": tracker.payloads})


def load_result(out: Path, model: Any) -> Tracker:
    """Read what :func:`save_result` wrote (deployment mode) back into ``model`` and a tracker."""
    from transferkit.io import load_tensors, read_json

    model.load_state_dict(load_tensors(out / RESULT_WEIGHTS))
    data = read_json(out / RESULT_JSON)
    tracker = Tracker.__new__(Tracker)
    tracker.rounds = {int(r["round"]): r for r in data["rounds"]}
    tracker.payloads = data["payloads"]
    tracker.partition_of = {}
    return tracker


def __getattr__(name: str) -> Any:
    """``app`` is built on first access, so importing this module never imports flwr."""
    if name == "app":
        return make_server_app()
    raise AttributeError(name)


__all__ = ["Tracker", "make_server_app", "run_server", "tracked_strategy"]
