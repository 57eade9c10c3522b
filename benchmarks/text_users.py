"""docs/TEXT.md's first table: what a user can run on vader-movies with 64 labelled snippets per class, the
command that trains what the benchmark measured, its accuracy and seconds, and SetFit beside them.

The command of a row is derived, not typed: the benchmark's settings of the row (``text_rows.RECIPES``: options
and training overrides, plus ``text.py``'s fixed epochs, patience, batch size and precision) are compared with
what ``transferkit transfer --source minilm --shots 64 --strategy S`` resolves to with no flag (the MiniLM recipe
in ``transferkit.strategies.recipes``, else the library's defaults), and every difference becomes a flag. The
learning rates compare as the rates the body and the head train at (``lr`` times the strategy's scale), so a
recipe that reaches the benchmark's rates by another split of ``lr`` and ``head_lr_scale`` needs no flag.
tests/test_text_users.py parses each command with the CLI's own parser and checks the round trip.

``contrastive`` and SetFit come from benchmarks/fewshot.py (docs/fewshot.json, cells ``movies-64|*``): the same
seeded split and 500-text test draws, but neither side gets a validation draw, so contrastive trains its recipe's
whole schedule there; the CLI's ``--shots 64`` adds a validation draw, on which the recipe's body and probe phases
early-stop (the recipe's patience) and keep their best epoch, so the command does not train exactly the cells.
"""

from __future__ import annotations

import statistics
from typing import Any

from text_rows import RECIPES, TRAIN_FIXED, ZS_ENSEMBLE, head_lr_scale

from transferkit.engine.config import TrainConfig
from transferkit.strategies import make_strategy
from transferkit.strategies.recipes import resolve_settings

#: the rows of text.py's main table a user runs as one `transfer` (or `zeroshot`) command, in the table's order
USER_ROWS = ("zero_shot (prompt ensemble)", "linear_probe", "lp_ft", "full", "lora", "zs_init", "self_train")
#: fixed by text.py for every trained row (``Bench.run``): TrainConfig fields
FIXED = ("epochs", "patience", "batch_size", "precision")
FEWSHOT_TASK = "movies-64"


def _body_scale(strategy: str, options: dict[str, Any]) -> float:
    """The body's learning rate relative to ``lr`` for ``strategy`` with (CLI-string) ``options``."""
    strat = make_strategy(strategy, options)
    o = strat.options
    if strategy == "self_train":
        return _body_scale(o.base, dict(o.base_options))
    return float(getattr(o, "ft_lr_scale", 1.0))


def bench_settings(row: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """What text.py trains ``row`` with: the fixed fields, the body's and the head's learning rates, options."""
    options, overrides = RECIPES[row]
    lr = float(overrides.get("lr", TrainConfig.lr))
    return {"epochs": cfg["epochs"], "patience": cfg["patience"], **TRAIN_FIXED,
            "body_lr": lr * _body_scale(row.split("@")[0], options), "head_lr": lr * head_lr_scale(row),
            "options": dict(options)}


def cli_settings(strategy: str, options: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """What ``transferkit transfer --source minilm --strategy strategy`` trains with, given ``options`` and the
    training flags ``train`` (TrainConfig fields), in :func:`bench_settings`' terms."""
    recipe_of = getattr(make_strategy(strategy, options), "recipe_strategy", lambda: strategy)()
    s = resolve_settings("minilm", recipe_of, train, 0, new_run=False)
    return {**{f: getattr(s.cfg, f) for f in FIXED}, "body_lr": s.cfg.lr * _body_scale(strategy, options),
            "head_lr": s.cfg.lr * s.head_lr_scale, "options": dict(options)}


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _flag_options(strategy: str, options: dict[str, str]) -> dict[str, str]:
    """The options a user must pass: those not at the strategy's default, less an ``ft_lr_scale`` (alone or in
    ``base_options``) that only moves the body's rate, which the rate comparison covers."""
    defaults = make_strategy(strategy, {}).options
    parsed = make_strategy(strategy, options).options
    out = {}
    for k, v in options.items():
        if k == "ft_lr_scale" or (k == "base_options" and all(p.split("=")[0] == "ft_lr_scale"
                                                               for p in v.split(","))):
            continue
        if getattr(parsed, k) != getattr(defaults, k):
            out[k] = v
    return out


def train_flags(row: str, cfg: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """(``--option`` values, training flags) that make the CLI train ``row`` as text.py did; None when no
    command does (a head rate the flags cannot reach). The shorter option set is tried first: the one without
    an ``ft_lr_scale`` that only moves the body's rate (the recipe may reach that rate at the default)."""
    want = bench_settings(row, cfg)
    strategy = row.split("@")[0]
    full = {k: str(v) for k, v in want["options"].items()}
    for options in (_flag_options(strategy, full), full):
        got = cli_settings(strategy, options, {})
        train: dict[str, Any] = {f: want[f] for f in FIXED if want[f] != got[f]}
        if not _same(want["body_lr"], got["body_lr"]):  # --lr moves body and head together
            train["lr"] = want["body_lr"] / _body_scale(strategy, options)
        got = cli_settings(strategy, options, train)
        if _same(want["body_lr"], got["body_lr"]) and _same(want["head_lr"], got["head_lr"]):
            return options, train
    return None


def command(row: str, cfg: dict[str, Any]) -> str:
    """The command line of ``row`` (markdown code), or a note when none reproduces it."""
    if row.startswith("zero_shot"):
        tmpl = " ".join(f'--template "{t}"' for t in ZS_ENSEMBLE)
        return f"`transferkit zeroshot --data vader-movies {tmpl}`"
    flags = train_flags(row, cfg)
    if flags is None:
        return "(no single command: see the appendix's recipe)"
    options, train = flags
    strategy = row.split("@")[0]
    parts = ["transferkit transfer --source minilm --data vader-movies --shots 64", f"--strategy {strategy}"]
    parts += [f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
              for k, v in train.items()]
    parts += [f'--option {k}="{v}"' if " " in v else f"--option {k}={v}" for k, v in options.items()]
    if strategy == "self_train":
        parts.append("--unlabelled rest")
    return "`" + " ".join(parts) + " --out runs/m64`"


def _mean_sd(vals: list[float]) -> str:
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def _fewshot_row(name: str, cmd: str, cells: list[dict[str, Any]]) -> str:
    movies = [c["vader-movies"]["accuracy"] for c in cells]
    tweets = [c["vader-tweets"]["balanced_accuracy"] for c in cells]
    secs = statistics.mean(c["train_wall_seconds"] for c in cells)
    return f"| {name} | {cmd} | {_mean_sd(movies)} | {_mean_sd(tweets)} | {secs:.0f} | {len(cells)} |"


def user_section(results: dict[str, Any], cfg: dict[str, Any], fewshot: dict[str, Any] | None) -> list[str]:
    """The page's first section: the table a user needs (command, accuracy, seconds), SetFit beside it."""
    lines = ["## What a user runs: vader-movies, 64 labelled snippets per class", "",
             ("Each row is one command (derived from the benchmark's settings, and checked against the CLI's parser "
              "by tests/test_text_users.py); accuracy on 500 held-out movie snippets and balanced accuracy on 500 "
              "tweets (never trained on), mean ± std over seeds; seconds: wall seconds of training on one thread. "
              "The research variants (ensembles, priors, other rates) are in the appendix below."), "",
             "| strategy | command | movies acc | tweets balanced acc | train s | seeds |", "|---|---|---|---|---|---|"]
    for row in USER_ROWS:
        runs = results["main"].get(row) or []
        if not runs:
            continue
        movies = [r["movies"]["accuracy"] for r in runs]
        tweets = [r["tweets"]["balanced_accuracy"] for r in runs]
        secs = statistics.mean(r["train_seconds"] for r in runs)
        lines.append(f"| {row} | {command(row, cfg)} | {_mean_sd(movies)} | {_mean_sd(tweets)} | {secs:.0f} | "
                     f"{len(runs)} |")
    cells = (fewshot or {}).get("cells", {})
    peers = {m: [c for k, c in sorted(cells.items()) if k.startswith(f"{FEWSHOT_TASK}|{m}|")]
             for m in ("contrastive", "setfit")}
    if peers["contrastive"]:
        lines.append(_fewshot_row("contrastive", "`transferkit transfer --source minilm --data vader-movies "
                                  "--shots 64 --strategy contrastive --out runs/m64`", peers["contrastive"]))
    if peers["setfit"]:
        lines.append(_fewshot_row("SetFit 1.2.0 (peer)", "benchmarks/setfit_worker.py (SetFit's defaults, 20 pair "
                                  "iterations)", peers["setfit"]))
    if any(peers.values()):
        lines += ["", ("`contrastive` and SetFit: benchmarks/fewshot.py (docs/FEWSHOT.md), the same seeded split and "
                       "test draws, both sides on exactly the 64 labelled snippets per class (no validation draw, "
                       "which the CLI's `--shots 64` adds for early stopping), with their own thread count; "
                       "their seconds are wall seconds of training there. Paired differences: docs/FEWSHOT.md.")]
    lines += ["", ("`zeroshot` scores the task's whole held-out split; the row above is its score on the benchmark's "
                   "500-snippet draws."), ""]
    return lines
