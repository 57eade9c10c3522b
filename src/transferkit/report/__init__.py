"""Human-readable run reports: ``report.md`` written with every run (cheap), and the HTML report
with plots and explainability views built on demand (:func:`transferkit.report.html.write_html_report`,
``transferkit report RUN...``).

Nothing heavy is imported here: the CLI imports :mod:`transferkit.report.cli` while building its
parser, so torch and matplotlib load only inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"


def render_markdown(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A short Markdown summary of one run from its config and metrics."""
    lines = [f"# transferkit {config.get('command', 'run')}: {config.get('data', '')}", ""]
    keys = ("source", "strategy", "shots", "seed", "model", "head")
    lines += [f"- **{k}**: {config[k]}" for k in keys if config.get(k) is not None]
    lines += ["", "| metric | value |", "|---|---|"]
    for name in ("source", "target"):
        if name in metrics and isinstance(metrics[name], dict):
            lines.append(f"| {name} accuracy | {_pct(metrics[name].get('accuracy'))} |")
            lines.append(f"| {name} macro-F1 | {_pct(metrics[name].get('macro_f1'))} |")
    for name in ("source_before", "source_after"):
        if name in metrics:
            lines.append(f"| {name.replace('_', ' ')} | {_pct(metrics[name].get('accuracy'))} |")
    if "forgetting" in metrics:
        lines.append(f"| forgetting (points) | {100 * metrics['forgetting']:.1f} |")
    if "gain_vs_scratch" in metrics:
        lines.append(f"| gain vs scratch (points) | {100 * metrics['gain_vs_scratch']:.1f} |")
    if "train_seconds" in metrics:
        lines.append(f"| training seconds | {metrics['train_seconds']:.1f} |")
    phases = metrics.get("phases", [])
    if phases:
        lines += ["", "| phase | epochs | best epoch | best val acc | seconds | bf16 | channels-last |",
                  "|---|---|---|---|---|---|---|"]
        for p in phases:
            lines.append(f"| {p['name']} | {p['epochs']} | {p['best_epoch']} | {_pct(p['best_val_acc'])} | "
                         f"{p['seconds']:.1f} | {p.get('bf16_autocast')} | {p.get('channels_last')} |")
    notes = metrics.get("notes", [])
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_report(run_path: Path) -> Path:
    """Write ``report.md`` into ``run_path`` from its ``config.json`` and ``metrics.json``."""
    from transferkit.io import atomic_write_bytes, read_json

    out = run_path / "report.md"
    text = render_markdown(read_json(run_path / "config.json"), read_json(run_path / "metrics.json"))
    atomic_write_bytes(out, text.encode())
    return out
