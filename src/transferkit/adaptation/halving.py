"""``adapt --method auto --budget``: successive halving of auto's candidates on the label-free validator.

Rung ``k`` of ``R`` trains each surviving candidate to ``ceil(E / 2^(R-1-k))`` epochs (``E`` the epochs the
iteration budget gives), resuming from its checkpoints (a rung continues the last one's training, it does
not restart it); the better half by ``spec.validator`` goes on (Jamieson & Talwalkar, AISTATS 2016;
Li et al., JMLR 2018). Before a rung starts, its cost is estimated from the seconds per epoch the last rung
measured; a rung that would not end within the budget is not started, and the pick is the validator's best
of the last rung trained. Target labels are never read for the pick.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from transferkit.adaptation.spec import parse_budget
from transferkit.adaptation.stages import AdaptPlan, CandidateRun, Prepared, train_candidate
from transferkit.io import read_json, write_json
from transferkit.runs import RunDir


def rung_epochs(final_epochs: int, n_candidates: int) -> list[int]:
    """The epochs each rung trains to: halving ``n_candidates`` down to one, the last rung at ``final_epochs``."""
    rungs = max(1, math.ceil(math.log2(max(1, n_candidates)))) + 1 if n_candidates > 1 else 1
    return sorted({max(1, math.ceil(final_epochs / 2 ** (rungs - 1 - k))) for k in range(rungs)})


def reopen(ckpt_dir: Path) -> None:
    """Mark the finished phases under ``ckpt_dir`` as not done, so the next rung resumes and trains on."""
    for f in ckpt_dir.rglob("*.json"):
        meta = read_json(f)
        if isinstance(meta, dict) and isinstance(meta.get("loop"), dict) and meta["loop"].pop("done", None):
            write_json(f, meta)


def _rung(plan: AdaptPlan, prep: Prepared, alive: list[int], epochs: int, run: RunDir, k: int
          ) -> dict[int, CandidateRun]:
    step_prep = replace(prep, cfg=replace(prep.cfg, epochs=epochs))
    out: dict[int, CandidateRun] = {}
    for i in alive:
        cand = plan.candidates[i]
        if k > 0:
            reopen(run.checkpoints / f"{i}-{cand.name}")
        out[i] = train_candidate(plan, step_prep, i, run)
        score = out[i].record["validators"][plan.spec.validator]
        print(f"[auto rung {k}] {cand.label}: epoch {epochs}/{prep.cfg.epochs} {plan.spec.validator} {score:.4f}",
              file=sys.stderr, flush=True)
    return out


def halve(plan: AdaptPlan, prep: Prepared, run: RunDir | None) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Successive halving within ``plan.spec.budget``: the runs of the last rung trained (the pick is the
    validator's best of them) and every rung's record (epochs, candidates with scores, seconds, kept)."""
    assert plan.spec.budget is not None
    budget, t0 = parse_budget(plan.spec.budget), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="transferkit-halving-") as tmp:
        rd = run if run is not None else RunDir.create(Path(tmp) / "run", "adapt", {}, False)
        return _halve(plan, prep, rd, budget, t0)


def _halve(plan: AdaptPlan, prep: Prepared, run: RunDir, budget: float, t0: float
           ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    alive, v = list(range(len(plan.candidates))), plan.spec.validator
    schedule, rungs, last, done_epochs = rung_epochs(prep.cfg.epochs, len(alive)), [], {}, 0
    per_epoch: float | None = None  # seconds per candidate-epoch the last rung measured
    for k, epochs in enumerate(schedule):
        elapsed = time.perf_counter() - t0
        if k > 0 and per_epoch is not None and elapsed + per_epoch * len(alive) * (epochs - done_epochs) > budget:
            rungs.append({"rung": k, "epochs": epochs, "skipped": "would exceed the budget",
                          "elapsed_s": elapsed})
            break
        t_rung = time.perf_counter()
        last = _rung(plan, prep, alive, epochs, run, k)
        spent = time.perf_counter() - t_rung
        per_epoch = spent / max(1, len(alive) * (epochs - done_epochs))
        done_epochs = epochs
        order = sorted(alive, key=lambda i: -last[i].record["validators"][v])
        keep = order[: max(1, math.ceil(len(order) / 2))] if k < len(schedule) - 1 else order[:1]
        rungs.append({"rung": k, "epochs": epochs, "seconds": spent, "elapsed_s": time.perf_counter() - t0,
                      "scores": {plan.candidates[i].label: last[i].record["validators"][v] for i in alive},
                      "kept": [plan.candidates[i].label for i in keep]})
        alive = keep
    return [last[i] for i in sorted(last)], rungs
