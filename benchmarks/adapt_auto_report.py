"""docs/ADAPT_AUTO.md from docs/adapt_auto.json (benchmarks/adapt_auto.py measures and writes the JSON; no number
is typed here): the verdict per pair (:func:`pair_rows`, :func:`checks`), (b)'s label-free choice
(:func:`full_choice`) and the page (:func:`render`), each a pure function of the JSON."""

from __future__ import annotations

import statistics
from typing import Any

from harness import generated_line, table

from transferkit.adaptation.spec import DEFAULT_ITERATIONS, SGD_DEFAULTS


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def full_choice(doc: dict[str, Any], pair: str, seed: int, cands: list[str] | None = None
                ) -> dict[str, Any] | None:
    """(b) of one cell: every candidate's record, the label-free choice by ``auto``'s rule (the validator's best,
    unless its lead over a candidate earlier in the candidates' order is within resampling noise: then the
    earliest such; :func:`transferkit.adaptation.validators.pick_within_noise`), the validator's best, and the
    oracle (highest held-out accuracy). ``None`` until every candidate ran."""
    import numpy as np

    from transferkit.adaptation.validators import pick_within_noise

    rows = [doc["cells"].get(f"full|{pair}|{seed}|{c}") for c in (cands or doc["candidates"])]
    if not all(rows):
        return None
    v = doc["validator"]
    res = [np.asarray(r["resampled"]) if "resampled" in r else None for r in rows]  # type: ignore[index, operator]
    lf, best, _ = pick_within_noise([r["validators"][v] for r in rows], res, list(range(len(rows))))  # type: ignore[index]
    oracle = max(range(len(rows)), key=lambda i: rows[i]["acc"])  # type: ignore[index]
    return {"rows": rows, "label_free": rows[lf], "validator_best": rows[best], "oracle": rows[oracle]}


def budget_seconds(doc: dict[str, Any]) -> float:
    from transferkit.adaptation.spec import parse_budget

    return parse_budget(doc["budget"])


def pair_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pair, over the seeds where both (a) and (b) ran: the means, the gap and the verdict."""
    out = []
    for pair in doc["pairs"]:
        autos = {s: doc["cells"].get(f"auto|{pair}|{s}|{doc['budget']}") for s in doc["seeds"]}
        fulls = {s: full_choice(doc, pair, s) for s in doc["seeds"]}
        both = [s for s in doc["seeds"] if autos[s] and fulls[s]]
        row: dict[str, Any] = {"pair": pair, "seeds": both, "auto_seeds": [s for s in doc["seeds"] if autos[s]],
                               "full_seeds": [s for s in doc["seeds"] if fulls[s]]}
        walls = [a["wall_seconds"] for a in autos.values() if a]
        row["max_wall"] = max(walls) if walls else None
        row["in_budget"] = bool(walls) and max(walls) <= budget_seconds(doc)
        if both:
            a = statistics.fmean(autos[s]["acc"] for s in both)  # type: ignore[index]
            b = statistics.fmean(fulls[s]["label_free"]["acc"] for s in both)  # type: ignore[index]
            o = statistics.fmean(fulls[s]["oracle"]["acc"] for s in both)  # type: ignore[index]
            row.update(auto=a, full=b, oracle=o, gap=a - b, held=row["in_budget"] and a >= b - doc["tolerance"])
        else:
            row["held"] = None
        out.append(row)
    return out


def _verdict(doc: dict[str, Any], r: dict[str, Any]) -> str:
    if r["held"] is not None:
        return "held" if r["held"] else "NOT HELD"
    ran = sum(k.startswith(f"full|{r['pair']}|") for k in doc["cells"])
    part = f"not measured: (b) ran {ran} of {len(doc['candidates']) * len(doc['seeds'])} candidate runs"
    return part if not r["auto_seeds"] else part + ("; (a) within budget" if r["in_budget"] else "; (a) OVER BUDGET")


def _setup(doc: dict[str, Any]) -> list[str]:
    src = "; ".join(f"{s}: `{c['model']}`{' ' + str(c['model_kwargs']) if c['model_kwargs'] else ''}, "
                    f"{c['epochs']} epochs, {c['optimizer']}"
                    for s, c in doc["source"].items())
    counts = {}
    for c in doc["cells"].values():
        counts.setdefault(c["pair"], (c["n_target_train"], c["n_target_val"], c.get("n_target_test")))
    n = "; ".join(f"{p}: {a} adapted on, {b} for the validator, {c} held out" for p, (a, b, c) in counts.items())
    threads = "/".join(str(t) for t in sorted({c["threads"] for c in doc["cells"].values() if "threads" in c})) or "?"
    return [f"Source models (`transferkit pretrain --data SOURCE --out ...`, the CLI's defaults): {src}.", "",
            f"Unlabelled target images (the whole target set, split label-free by adapt): {n}.", "",
            f"Candidates (`auto`'s defaults): {', '.join(f'`{c}`' for c in doc['candidates'])}. Validator: "
            f"`{doc['validator']}` in both (a) and (b). Accuracy: % on the held-out target part (never adapted on).",
            "",
            "(a) is the CLI as a user types it, `transferkit adapt --source SRC --source-data S --target-data T "
            f"--method auto --budget {doc['budget']} --eval-data T` (the labels of `--eval-data` only score the "
            f"held-out part afterwards), timed from process start to exit with {threads} torch thread(s). (b) trains "
            f"every candidate with the same defaults ({DEFAULT_ITERATIONS} iterations, SGD lr {SGD_DEFAULTS['lr']}, "
            "source re-styling) through the stages `adapt --method auto` runs without a budget, in the benchmark's "
            "own process (its threads: the command above), on the same split; its oracle is the highest held-out "
            "accuracy.", "",
            "The label-free choice, the same rule in (a) and (b) (`choose` in src/transferkit/adaptation/stages.py): "
            "the validator's best, unless it scores above a candidate earlier in the candidates' order (listed above: "
            "their mean held-out accuracy over docs/uda.json's cells) in fewer than 95% of 200 paired bootstrap "
            "resamples of the target validation inputs; then the earliest such candidate. A lead the validation "
            "inputs cannot tell from noise is settled by the measured order. In (a) the rule picks between the last "
            "rung's two finalists; the rungs before it keep the better half by the raw score. The order was measured "
            "on docs/uda.json, whose cells include these pairs and seeds 0-2 (with its own source recipe): on these "
            "cells the rule is not an out-of-sample test.", "",
            "How `auto --budget` spends it (src/transferkit/adaptation/halving.py): each candidate trains one epoch, "
            "timed; from those seconds the schedule is sized once (the default epochs when successive halving is "
            "expected to fit, the survivors of later rungs costed at the mean seconds of the candidates still "
            "training; else fewer for every candidate from the start); each rung pauses the candidates at an epoch of "
            "their one learning-rate schedule and the better half by the validator resumes from its checkpoints; "
            "before each rung the plan left is re-estimated from the survivors' measured seconds and the time left, "
            "and the last rung ends where that allows (when that is well before the schedule's end, the validator's "
            "best finishes its schedule alone), so the finalists have exactly a full run's training when the default "
            "epochs fit; time left after the last rung trains the pick again with a longer schedule, from its first "
            "step, when that fits. No epoch starts unless its expected seconds fit before the deadline."]


def _method(label: str) -> str:
    """``self_training(base=mcc, ...)`` or ``self_training:base=mcc`` -> ``self_training``."""
    return label.split("(")[0].split(":")[0]


def _differ(doc: dict[str, Any]) -> list[str]:
    """The cells where (a) and (b) chose different methods: the validator's scores of both picks on each side
    (how far apart the validator saw them) and their held-out accuracies."""
    v, out, gaps = doc["validator"], [], []
    for pair in doc["pairs"]:
        for s in doc["seeds"]:
            a, f = doc["cells"].get(f"auto|{pair}|{s}|{doc['budget']}"), full_choice(doc, pair, s)
            if a is None or f is None or _method(a["chosen"]) == _method(f["label_free"]["label"]):
                continue
            last = next((r for r in reversed(a["rungs"]) if "scores" in r and r["rung"] != "longer"), {})
            pa = {_method(k): x for k, x in last.get("scores", {}).items()}
            pb = {_method(r["label"]): r for r in f["rows"]}
            ma, mb = _method(a["chosen"]), _method(f["label_free"]["label"])
            qb = {m: r["validators"][v] for m, r in pb.items()}
            gaps += [abs(q[ma] - q[mb]) for q in (pa, qb) if ma in q and mb in q]
            out.append([pair, str(s), f"`{ma}` {_pct(a['acc'])}", f"`{mb}` {_pct(f['label_free']['acc'])}",
                        *(" vs ".join(f"{q[m]:.3f}" if m in q else "—" for m in (ma, mb)) for q in (pa, qb))])
    if not out:
        return []
    return ["## Where (a) and (b) chose differently", "",
            f"The `{v}` scores of the two picks, (a)'s at its last rung and (b)'s after the full runs: at most "
            f"{max(gaps, default=float('nan')):.3f} apart on either side, where the two picks' held-out accuracies "
            "differ as shown.", "",
            *table(["pair", "seed", "(a) chose", "(b) chose", f"(a) {v}: its pick vs (b)'s",
                    f"(b) {v}: (a)'s pick vs its own"], out), ""]


def render(doc: dict[str, Any]) -> str:
    rows = pair_rows(doc)
    head = ["pair", "seeds (a) / (b)", f"(a) auto --budget {doc['budget']}: wall s (max)", "(a) accuracy",
            "(b) every candidate fully: label-free choice accuracy", "gap (a) − (b)", "oracle (target labels)",
            f"within budget and ≥ (b) − {100 * doc['tolerance']:.0f} pt"]
    lines = ["# `adapt --method auto --budget` vs every method run fully", "", generated_line(doc), "",
             *_setup(doc), "",
             "## Per pair (mean over seeds where both ran)", "",
             *table(head, [[r["pair"], f"{len(r['auto_seeds'])} / {len(r['full_seeds'])}",
                            "—" if r["max_wall"] is None else f"{r['max_wall']:.0f}",
                            *([_pct(r["auto"]), _pct(r["full"]), f"{100 * r['gap']:+.1f}", _pct(r["oracle"])]
                              if "auto" in r else ["—"] * 4), _verdict(doc, r)] for r in rows]), "",
             *_differ(doc), *_auto_table(doc), *_full_table(doc), *_self_training_note(doc),
             (f"Load averages (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in doc['load_average_end'])}; "
              "2 cores shared with other jobs. The budget is wall-clock: under load, auto trains fewer rungs."), ""]
    return "\n".join(lines)


def _rung_text(r: dict[str, Any]) -> str:
    """One rung of an auto run: candidates × epochs reached (the probe: the plan's epochs it sized)."""
    if r["rung"] == "longer":
        note = r.get("note", "")
        return f"the pick again ×{r['epochs']}" + (" (failed: not used)" if note.startswith("failed") else
                                                    " (deadline: not used)" if "scores" not in r else
                                                    " (lower score: not used)" if "run kept" in note else "")
    if r["rung"] == "probe":
        n, e = len(r["seconds_per_epoch"]), r["probe_epochs"]
        return f"probe {n}×{e} (plan: {r['epochs']} of {r['full_epochs']} epochs)"
    if "scores" in r:
        note = r.get("note", "")
        return f"{len(r['scores'])}×{r['epochs']}" + (
            " (deadline: the best as it stood)" if "as it stands" in note else
            " (the budget's end, before the schedule's)" if "expected to fit" in note else
            " (best finished alone)" if note else "")
    return f"stopped: {r['skipped']}"


def _auto_choice(a: dict[str, Any]) -> str:
    """(a)'s choice, and the validator's best where the noise rule chose another (with its lead's share)."""
    ch = a.get("choice") or {}
    best = ch.get("validator_best", a["chosen"])
    if best == a["chosen"]:
        return a["chosen"]
    return (f"{a['chosen']} (`{_method(best)}` leads in {100 * ch['lead_share'][a['chosen']]:.0f}% of the resamples: "
            "within noise)")


def _auto_table(doc: dict[str, Any]) -> list[str]:
    out = []
    for pair in doc["pairs"]:
        for s in doc["seeds"]:
            a = doc["cells"].get(f"auto|{pair}|{s}|{doc['budget']}")
            if a is None:
                continue
            rungs = " → ".join(_rung_text(r) for r in a["rungs"])
            out.append([pair, str(s), f"{a['wall_seconds']:.0f}", f"{a['load_average_start'][0]:.1f} / "
                        f"{a['load_average_end'][0]:.1f}", str(a["threads"]), _auto_choice(a), _pct(a["acc"]), rungs])
    if not out:
        return []
    return ["## (a) `auto` runs", "", *table(["pair", "seed", "wall s", "load (1 min) start / end", "threads",
                                               "chosen", "accuracy", "rungs (candidates × epochs)"], out), ""]


def _full_table(doc: dict[str, Any]) -> list[str]:
    out = []
    for pair in doc["pairs"]:
        for s in doc["seeds"]:
            f = full_choice(doc, pair, s)
            if f is None:
                continue
            v = doc["validator"]
            out.append([pair, str(s), *[f"{_pct(r['acc'])} ({r['validators'][v]:.3f}, {r['train_seconds']:.0f} s)"
                                        for r in f["rows"]], choice_text(f), f["oracle"]["method"],
                        f"{100 * (f['oracle']['acc'] - f['label_free']['acc']):.1f}"])
    if not out:
        return []
    names = [c.split(":")[0] for c in doc["candidates"]]
    return ["## (b) every candidate fully: accuracy (validator score, train seconds)", "",
            *table(["pair", "seed", *names, "label-free choice", "oracle", "oracle − label-free"], out), ""]


def choice_text(f: dict[str, Any]) -> str:
    """(b)'s label-free choice, and the validator's best where the noise rule chose another."""
    lf, vb = f["label_free"], f["validator_best"]
    return lf["method"] if lf is vb else f"{lf['method']} (`{vb['method']}` leads within noise)"


def _self_training_note(doc: dict[str, Any]) -> list[str]:
    """Whether UDA.md's self_training recipe earns its place among the defaults: (b)'s label-free choice with it
    and without it, per cell."""
    st = [c for c in doc["candidates"] if c.startswith("self_training")]
    if not st:
        return []
    rest = [c for c in doc["candidates"] if c not in st]
    cells = [(p, s, full_choice(doc, p, s), full_choice(doc, p, s, rest)) for p in doc["pairs"] for s in doc["seeds"]]
    cells = [c for c in cells if c[2] and c[3]]
    if not cells:
        return ["## Is `self_training` (docs/UDA.md's recipe) a default candidate?", "", *_uda_note(doc)]
    diffs = [w["label_free"]["acc"] - wo["label_free"]["acc"] for _, _, w, wo in cells]  # type: ignore[index]
    picked = sum(w["label_free"]["method"] == "self_training" for _, _, w, _ in cells)  # type: ignore[index]
    return ["## Is `self_training` (docs/UDA.md's recipe) a default candidate?", "",
            (f"(b)'s label-free choice with it among the candidates vs without it, over {len(cells)} cells: "
             f"{100 * statistics.fmean(diffs):+.1f} points on average (per cell: "
             + ", ".join(f"{p} seed {s} {100 * d:+.1f}" for (p, s, _, _), d in zip(cells, diffs, strict=True))
             + f"); the label-free choice is it in {picked} of {len(cells)} cells."), "", *_uda_note(doc)]


def _uda_note(doc: dict[str, Any]) -> list[str]:
    ev = doc.get("uda_evidence", {}).get("cells") or {}
    if not ev:
        return []
    diffs = [c["with"] - c["without"] for c in ev.values()]
    picked = sum(c["choice"].startswith("self_training") for c in ev.values())
    return [(f"docs/uda.json (benchmarks/uda.py: {len(ev)} cells, its digit pairs and seeds, the same adapt "
             "defaults on its own source recipe): the validator's choice with `self_training` among the candidates "
             f"vs without it: {100 * statistics.fmean(diffs):+.1f} points on average (worst cell "
             f"{100 * min(diffs):+.1f}, best {100 * max(diffs):+.1f}); it is the choice in {picked} of {len(ev)} "
             "cells. So it is one of `auto`'s default candidates."), ""]


def checks(doc: dict[str, Any]) -> list[str]:
    out = []
    for r in pair_rows(doc):
        if r["auto_seeds"] and not r["in_budget"]:
            out.append(f"{r['pair']}: auto took {r['max_wall']:.0f} s, over the budget {doc['budget']}")
        if "gap" in r and r["gap"] < -doc["tolerance"]:
            out.append(f"{r['pair']}: auto {_pct(r['auto'])} vs full label-free {_pct(r['full'])} "
                       f"({100 * r['gap']:+.1f} pt, must be >= -{100 * doc['tolerance']:.0f})")
    return out
