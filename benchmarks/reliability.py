"""The hostile-input matrix: every case through the CLI, its exit code, its one-line message, and
whether every file that was there before is still there, unchanged.

    python benchmarks/reliability.py            # writes docs/RELIABILITY.md and docs/reliability.json

Each case (benchmarks/reliability_cases.py) builds its input in a temporary folder, runs
``transferkit.cli.main`` on it and records the exit code, the stderr lines, whether a traceback
escaped, whether a run directory was left looking complete, and whether a file it did not create
changed. ``tests/test_reliability_matrix.py`` runs the same cases.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_cases import Case, error_cases, tester_cases  # noqa: E402
from reliability_inputs import image_input_cases, release_holders, run_folder_cases, tabular_cases  # noqa: E402
from reliability_models import (augment_cases, config_device_cases, engine_cases, export_hf_cases,  # noqa: E402
                                flag_cases)

#: the themed case builders after the first two lists, in the order the document lists them
THEMES = (run_folder_cases, tabular_cases, image_input_cases, config_device_cases, export_hf_cases, augment_cases,
          engine_cases, flag_cases)


@dataclass
class Outcome:
    case: str
    command: str
    expect: str
    exit_code: int
    message: str
    lines: int
    traceback: bool
    complete_run_left: bool
    files_intact: bool
    problem: str  # what a result case's check found wrong ("" when right)
    warnings: int = 0  # lines the command printed as it went (Case.live), not counted in ``lines``

    @property
    def ok(self) -> bool:
        if not self.files_intact or self.traceback:
            return False
        if self.expect == "result":
            return self.exit_code == 0 and not self.problem
        return self.exit_code != 0 and self.lines == 1 and not self.complete_run_left


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file under ``root`` (outside ``skip``): relative path -> digest of its bytes."""
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and skip not in f.parents:
            out[str(f.relative_to(root))] = hashlib.sha1(f.read_bytes()).hexdigest()
    return out


def run_case(name: str, case: Case, tmp: Path, out: Path) -> Outcome:
    from transferkit.cli import main

    before = snapshot(tmp, out)
    err, stdout = io.StringIO(), io.StringIO()
    traceback = False
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        try:
            code = main(case.argv)
        except SystemExit as e:  # argparse's way out: an exit code, no traceback
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001 - an escaped exception is exactly what we record
            code, traceback = 1, True
            print(f"{type(e).__name__}: {e}", file=err)
    msg = [line for line in err.getvalue().splitlines()
           if line.strip() and not line.startswith("transferkit: resuming")]
    live = [line for line in msg if case.live and case.live in line]
    msg = [line for line in msg if line not in live]
    complete = (out / "run.json").exists() and json.loads((out / "run.json").read_text()).get("status") == "complete"
    after = snapshot(tmp, out)
    changed = [f for f, digest in before.items() if after.get(f) != digest and f not in case.writes]
    problem = ""
    if case.expect == "result" and code == 0 and case.check is not None:
        problem = case.check(tmp, stdout.getvalue()) or ""
    if changed:
        problem = (problem + "; " if problem else "") + "changed or removed: " + ", ".join(changed[:3])
    return Outcome(name, "transferkit " + " ".join(case.argv), case.expect, code, msg[-1] if msg else "", len(msg),
                   traceback, complete, not changed, problem, len(live))


def tiny_source(where: Path) -> Path:
    from transferkit import pretrain

    run = where / "source"
    pretrain("digits8", "small_cnn", run, epochs=1, model_kwargs={"width": 8, "hidden": 32}, progress="off")
    return run


def build_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """Every case of the matrix, in the order the document lists them."""
    cases = {name: Case(argv) for name, argv in {**error_cases(tmp, source), **tester_cases(tmp, source)}.items()}
    for theme in THEMES:
        new = theme(tmp, source)
        assert not set(new) & set(cases), f"case names repeat: {set(new) & set(cases)}"
        cases |= new
    return cases


def run_matrix(tmp: Path, log: Callable[[str], None] = lambda s: None, only: str = "") -> list[Outcome]:
    """Run every case (or those whose name contains ``only``) under ``tmp``. Progress lines are off
    (``$TRANSFERKIT_PROGRESS=0``): what training prints as it goes is not an error message."""
    previous = os.environ.get("TRANSFERKIT_PROGRESS")
    os.environ["TRANSFERKIT_PROGRESS"] = "0"
    try:
        source = tiny_source(tmp)
        outcomes = []
        out = tmp / "out"
        for name, case in build_cases(tmp, source).items():
            if only not in name:
                continue
            shutil.rmtree(out, ignore_errors=True)  # error cases share one --out: start each from nothing
            o = run_case(name, case, tmp, out)
            log(f"{'ok ' if o.ok else 'BAD'} {name}: exit {o.exit_code}: {o.problem or o.message}")
            outcomes.append(o)
        return outcomes
    finally:
        release_holders()
        if previous is None:
            os.environ.pop("TRANSFERKIT_PROGRESS", None)
        else:
            os.environ["TRANSFERKIT_PROGRESS"] = previous


def _row(o: Outcome) -> str:
    msg = (o.problem or o.message).replace("|", "\\|")
    one = "-" if o.expect == "result" else ("yes" if o.lines == 1 else f"no ({o.lines})")
    if o.warnings:
        one += f" (after {o.warnings} warning{'s' if o.warnings > 1 else ''} while training)"
    return (f"| {o.case} | {o.expect} | {o.exit_code} | {one} | {'YES' if o.traceback else 'no'} | "
            f"{'yes' if o.files_intact else 'NO'} | {'pass' if o.ok else 'FAIL'} | `{msg}` |")


def render(outcomes: list[Outcome], command: str) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    good = sum(o.ok for o in outcomes)
    errors = [o for o in outcomes if o.expect == "error"]
    lines = ["# Reliability: the hostile-input matrix", "",
             f"> Generated by `{command}` on {date}. Do not edit by hand. Each case runs the CLI on a hostile "
             "input built in a temporary folder (paths below are shortened to `<tmp>`) from real data (scikit-learn's "
             "wine and digits, the built-in data sets). The matrix runs with `TRANSFERKIT_PROGRESS=0`: the lines "
             "training prints as it goes are progress, not error output. A warning a run prints while it trains "
             "(a rollback after divergence) is counted apart, in the one-line column.", "",
             f"**{good} of {len(outcomes)} cases pass.** An `error` case passes when it ends with exactly one line on "
             "stderr, a non-zero exit, no traceback and no run directory marked complete "
             f"({sum(o.ok for o in errors)} of {len(errors)}); a `result` case passes when the command succeeds and its "
             "result is checked right (the message column then shows the last stderr line, or what was wrong). "
             "In every case each file that existed before the command is still there, byte for byte, unless "
             "the case is one that may write it (\"files intact\").", "",
             "| case | expect | exit | one line | traceback | files intact | | message |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [_row(o) for o in outcomes]
    lines += ["", "Kill and resume, divergence, determinism and safe loading are covered by tests: "
              "`tests/test_kill_resume.py` (SIGKILL mid-training, then byte-identical weights after resuming), "
              "`tests/strategies/test_reliability.py` (NaN loss -> rollback and lower learning rate; bit-identical "
              "metrics per strategy family), `tests/test_runs.py` (torn checkpoints, corrupt weights). "
              "The same errors reach Python callers as typed one-line exceptions "
              "(`tests/test_reliability_matrix.py::test_the_api_raises_the_same_typed_one_line_errors`). "
              "Resource limits: an image folder past `$TRANSFERKIT_DATA_MEMORY` loads one file at a time into a "
              "memory-mapped array and a feature cache past `$TRANSFERKIT_CACHE_MEMORY` spills to disk "
              "(`tests/data/test_storage.py`, `tests/engine/test_features.py`). Config files cannot import "
              "modules or reach outside their folder (`tests/test_configfile.py`)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory(prefix="tk-reliability-") as d:
        tmp = Path(d)
        outcomes = run_matrix(tmp, lambda s: print(s, file=sys.stderr))

        def stable(text: str) -> str:  # the temporary folder and process ids change from run to run
            return re.sub(r"\(pid \d+\)", "(pid <pid>)", text.replace(str(tmp), "<tmp>"))

        text = stable(render(outcomes, "python benchmarks/reliability.py"))
        records = stable(json.dumps([{**asdict(o), "ok": o.ok} for o in outcomes], indent=1))
    docs = ROOT / "docs"
    (docs / "RELIABILITY.md").write_text(text)
    (docs / "reliability.json").write_text(records + "\n")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
