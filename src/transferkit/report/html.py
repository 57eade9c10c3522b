"""One self-contained HTML file for one or several runs: plots inlined as base64 PNG, no scripts,
no external CSS, fonts or images, so it opens offline and can be mailed or archived as is.

``write_html_report(["runs/src", "runs/lp_ft"], "report.html")``; several runs side by side
compare strategies (bars per strategy and shots, accuracy vs shots, forgetting, layer views).
"""

from __future__ import annotations

import base64
import html
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transferkit import __version__
from transferkit.errors import ConfigError
from transferkit.evaluation.saliency import SaliencyExamples, TextSaliency
from transferkit.io import atomic_write_bytes
from transferkit.report import plots
from transferkit.report.analysis import RunView, analyse_runs

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#c8cdd8;font-size:13px}
nav{padding:8px 32px;background:#e8ebf0;font-size:13px}nav a{margin-right:14px;color:#1f4f99;text-decoration:none}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:14px 20px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:4px 0 8px}p.lead{color:#555c6b;font-size:13px;margin:0 0 10px}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 10px;border-bottom:1px solid #e3e6eb;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f2f5}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figure img{max-width:100%;border:1px solid #e3e6eb}
table.tokens td.text{text-align:left;line-height:1.7;max-width:900px}
figcaption{font-size:12px;color:#555c6b}.note{font-size:12px;color:#7a5d00}ul.notes{margin:4px 0;font-size:13px}
"""


def _img(png: bytes, alt: str, caption: str = "") -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{html.escape(alt)}">{cap}</figure>'


def _pct(v: object) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _num(v: float | None) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "n/a"


def _acc(metrics: dict[str, object], key: str) -> float | None:
    m = metrics.get(key)
    return float(m["accuracy"]) if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)) else None


def _section(sid: str, title: str, lead: str, body: str) -> str:
    return (f'<section id="{sid}"><h2>{html.escape(title)}</h2><p class="lead">{html.escape(lead)}</p>'
            f"{body}</section>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _summary(views: Sequence[RunView]) -> str:
    head = ("run", "kind", "data", "strategy", "shots", "seed", "test accuracy", "macro-F1", "source before",
            "source after", "forgetting", "train s")
    rows = []
    for v in views:
        own = v.metrics.get("target") if v.kind == "transfer" else v.metrics.get("source")
        f1 = own.get("macro_f1") if isinstance(own, dict) else None
        forget = v.metrics.get("forgetting")
        secs = v.metrics.get("train_seconds")
        shots = v.config.get("shots")
        if shots is None:
            shots = "all" if v.kind == "transfer" else "-"
        cells = (v.label, v.kind, v.config.get("data", "-"), v.strategy if v.kind == "transfer" else "-", shots,
                 v.config.get("seed", "-"), _pct(v.accuracy), _pct(f1), _pct(_acc(v.metrics, "source_before")),
                 _pct(_acc(v.metrics, "source_after")),
                 f"{100 * forget:+.1f} pt" if isinstance(forget, (int, float)) else "-",
                 f"{secs:.1f}" if isinstance(secs, (int, float)) else "-")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    return _section("summary", "Summary", "One row per run; accuracy is on the run's own held-out test split.", table)


def _comparison(views: Sequence[RunView]) -> str:
    transfers = [v for v in views if v.kind == "transfer" and v.accuracy is not None]
    if len(transfers) < 2:
        return ""
    groups: dict[tuple[str, int | None], list[float]] = defaultdict(list)
    for v in transfers:
        shots = v.config.get("shots")
        groups[(v.strategy, int(shots) if shots is not None else None)].append(float(v.accuracy or 0.0))
    order = sorted(groups, key=lambda k: (k[1] if k[1] is not None else 10**9, k[0]))
    rows = [(f"{s}\n{k}-shot" if k is not None else f"{s}\nall", float(np.mean(a)), float(np.std(a)), len(a))
            for (s, k), a in ((key, groups[key]) for key in order)]
    body = _img(plots.strategy_bars(rows), "strategy comparison bar chart",
                "mean target test accuracy per strategy and shots (error bar: std over runs/seeds)")
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for (s, k), accs in groups.items():
        if k is not None:
            series[s].append((float(k), float(np.mean(accs)), float(np.std(accs))))
    if len({p[0] for pts in series.values() for p in pts}) > 1:
        body += _img(plots.accuracy_vs_shots(series), "accuracy versus shots",
                     "target accuracy against shots per class")
    else:
        body += _note("accuracy vs shots needs transfer runs with at least two different --shots values")
    lead = "The transfer runs side by side, grouped by strategy and shots."
    return _section("comparison", "Strategy comparison", lead, f'<div class="figs">{body}</div>')


def _curves(views: Sequence[RunView]) -> str:
    figs = [_img(plots.training_curves(v.history, v.label), f"training curves of {v.label}")
            for v in views if any(p.get("history") for p in v.history)]
    body = f'<div class="figs">{"".join(figs)}</div>' if figs else _note("no history.json records in these runs")
    return _section("curves", "Training curves", "Training / validation loss and validation accuracy per epoch; "
                    "dotted lines separate phases (e.g. the linear probe, then fine-tuning).", body)


def _confusions(views: Sequence[RunView]) -> str:
    figs = []
    for v in views:
        cm = v.confusion
        if cm is not None:
            task = "target" if v.kind == "transfer" else "source"
            png = plots.confusion(cm, v.class_names, f"{v.label} ({task} test)")
            figs.append(_img(png, f"confusion matrix of {v.label}"))
    body = f'<div class="figs">{"".join(figs)}</div>' if figs else _note("no confusion matrix in metrics.json")
    lead = "Rows: true class, columns: predicted; counts on the test split."
    return _section("confusion", "Confusion matrices", lead, body)


def _forgetting(views: Sequence[RunView]) -> str:
    pairs = [(v.label, _acc(v.metrics, "source_before"), _acc(v.metrics, "source_after")) for v in views]
    rows = [(label, b, a) for label, b, a in pairs if b is not None and a is not None]
    body = (_img(plots.forgetting(rows), "forgetting: source accuracy before and after") if rows else
            _note("no source accuracy recorded: transfer with --source-data to measure forgetting"))
    return _section("forgetting", "Forgetting", "Accuracy on the source task's test split through the saved source "
                    "head, before and after transfer (labels: the change in points; negative = forgotten).", body)


def _layers(views: Sequence[RunView]) -> str:
    rows = [(v.label, v.change, v.cka) for v in views if v.change or v.cka]
    notes = "".join(_note(f"{v.label}: {v.layer_note}") for v in views if v.layer_note)
    if not rows:
        lead = "Layer views need a transfer run whose source run is reachable."
        return _section("layers", "Which layers moved", lead, notes or _note("no transfer runs"))
    groups = list(dict.fromkeys(g for _, c, k in rows for d in (c or {}, k or {}) for g in d))
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(g)}<br>change / CKA</th>" for g in groups) + "</tr>"

    def cell(c: dict[str, float] | None, k: dict[str, float] | None, g: str) -> str:
        return f"<td>{_num((c or {}).get(g))} / {_num((k or {}).get(g))}</td>"

    table = head + "".join(f"<tr><td>{html.escape(lab)}</td>" + "".join(cell(c, k, g) for g in groups) + "</tr>"
                           for lab, c, k in rows)
    body = _img(plots.layer_views(rows), "relative weight change and linear CKA per layer group")
    body += f"<table>{table}</table>"
    lead = ("Per layer group, how far the weights moved from the source model (relative L2) and how similar the "
            "representations stay (linear CKA, Kornblith et al. 2019, on the run's test examples, a text layer's token "
            "states averaged over the text; 1 = same up to rotation and scale). High CKA and small change: the "
            "layer was reused; low CKA: it was re-learned.")
    return _section("layers", "Which layers moved", lead, body + notes)


def _tokens_html(tokens: list[str], scores: np.ndarray) -> str:
    """Word pieces shaded by score (``##`` pieces joined to the word before); special tokens left out."""
    out: list[str] = []
    for tok, sc in zip(tokens, scores.tolist(), strict=True):
        if tok in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        glue = tok.startswith("##")
        text = html.escape(tok[2:] if glue else tok)
        space = "" if glue or not out else " "
        out.append(f'{space}<span style="background:rgba(214,39,40,{sc:.2f})">{text}</span>')
    return "".join(out)


def _text_saliency(v: RunView, ex: TextSaliency) -> str:
    def name(i: int) -> str:
        return v.class_names[i] if 0 <= i < len(v.class_names) else str(i)

    rows = "".join(f'<tr><td>{"ok" if ok else "WRONG"} {html.escape(name(int(t)))}&rarr;{html.escape(name(int(p)))}'
                   f'</td><td class="text">{_tokens_html(toks, sc)}</td></tr>'
                   for toks, sc, t, p, ok in zip(ex.tokens, ex.scores, ex.y_true, ex.y_pred, ex.correct, strict=True))
    return (f"<p><b>{html.escape(v.label)}</b> (true&rarr;predicted; a darker red token moved the predicted "
            f'class\'s logit more)</p><table class="tokens">{rows}</table>')


def _saliency(views: Sequence[RunView]) -> str:
    figs = [_img(plots.saliency_grid(v.saliency, v.class_names, v.label), f"saliency maps of {v.label}")
            for v in views if isinstance(v.saliency, SaliencyExamples) and len(v.saliency)]
    body = f'<div class="figs">{"".join(figs)}</div>' if figs else ""
    body += "".join(_text_saliency(v, v.saliency) for v in views if isinstance(v.saliency, TextSaliency)
                    and len(v.saliency))
    body += "".join(_note(f"{v.label}: {v.saliency_note}") for v in views if v.saliency_note)
    body = body or _note("no saliency views requested (--saliency 0) or no test predictions to show")
    return _section("saliency", "Saliency", "Input gradients of the predicted class for a few correct and wrong test "
                    "predictions: over an image's pixels (Simonyan et al. 2014; bright pixels changed the decision "
                    "most), or gradient x input at a text's token embeddings (Denil et al. 2014).", body)


def _notes(views: Sequence[RunView]) -> str:
    items = "".join(f"<li><b>{html.escape(v.label)}</b>: {html.escape(n)}</li>" for v in views for n in v.notes)
    return _section("notes", "Notes", "What the runs recorded, and the views that were skipped and why.",
                    f'<ul class="notes">{items}</ul>' if items else _note("none"))


def render_html(views: Sequence[RunView], title: str | None = None) -> str:
    """The report page for already analysed runs."""
    if title is None:
        title = "transferkit report: " + ", ".join(v.label for v in views[:4]) + (" ..." if len(views) > 4 else "")
    sections = [_summary(views), _comparison(views), _curves(views), _confusions(views), _forgetting(views),
                _layers(views), _saliency(views), _notes(views)]
    ids = [("summary", "Summary"), ("comparison", "Comparison"), ("curves", "Training"), ("confusion", "Confusion"),
           ("forgetting", "Forgetting"), ("layers", "Layers"), ("saliency", "Saliency"), ("notes", "Notes")]
    present = "".join(sections)
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in ids if f'id="{i}"' in present)
    when = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f"<header><h1>{html.escape(title)}</h1><p>{len(views)} run(s) &middot; transferkit {__version__} &middot; "
            f"{when}</p></header><nav>{nav}</nav><main>{present}</main></body></html>\n")


def write_html_report(runs: Sequence[str | Path], out: str | Path, *, max_samples: int = 256, n_saliency: int = 4,
                      title: str | None = None) -> Path:
    """Analyse ``runs`` (complete run directories) and write one self-contained HTML report to ``out``.

    ``max_samples`` test examples per run feed CKA and saliency; ``n_saliency`` correct and as
    many wrong predictions get a saliency map. Returns the path written.
    """
    if not runs:
        raise ConfigError("a report needs at least one run directory")
    views = analyse_runs(list(runs), max_samples=max_samples, n_saliency=n_saliency)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render_html(views, title).encode("utf-8"))
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)  # a page to share, not a private temp file (mkstemp makes 0600)
    return path
