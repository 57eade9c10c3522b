"""More cases of the hostile-input matrix (benchmarks/reliability.py): run folders a user owns, tables
and image inputs. Each function builds its inputs under the matrix's temporary folder from real data
(scikit-learn's wine and digits) and returns case name -> :class:`Case`.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from reliability_cases import Case, Check, png

#: processes holding a run folder's lock while the matrix runs (stopped by :func:`release_holders`)
HOLDERS: list[subprocess.Popen[bytes]] = []

_HOLD = ("import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n")


def hold_lock(folder: Path) -> int:
    """Start a process that holds ``folder``'s run lock (as a second transferkit command would) until
    :func:`release_holders` (or this process's exit closes its stdin); returns its pid."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder / ".transferkit.lock")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"held"
    HOLDERS.append(p)
    return p.pid


def release_holders() -> None:
    while HOLDERS:
        p = HOLDERS.pop()
        assert p.stdin is not None
        p.stdin.close()
        p.wait(timeout=30)


def copy_run(source: Path, to: Path) -> list[str]:
    """A copy of the complete run ``source`` at ``to``; returns the copied files relative to ``to``."""
    shutil.copytree(source, to, ignore=shutil.ignore_patterns(".transferkit.lock"))
    return [str(f.relative_to(to)) for f in to.rglob("*") if f.is_file()]


def accuracy_above(run: Path, threshold: float, key: str = "source") -> Check:
    """A check: the run at ``run`` is complete and its test accuracy in metrics.json is above ``threshold``."""
    def check(tmp: Path, stdout: str) -> str | None:
        metrics = run / "metrics.json"
        if not metrics.exists():
            return f"{metrics.name} missing"
        acc = json.loads(metrics.read_text())[key]["accuracy"]
        return None if acc > threshold else f"test accuracy {acc:.3f}, not above {threshold}"
    return check


def run_folder_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """A folder that is not a run, a run in use, a user's file where an output goes, a run holding a user's notes."""
    src, h = str(source), tmp / "h1"
    (h / "p" / "checkpoints").mkdir(parents=True)
    (h / "p" / "config.json").write_text("x\n")
    (h / "p" / "checkpoints" / "keep.txt").write_text("k\n")
    (h / "q").mkdir()
    (h / "q" / "run.json").write_text('{"name": "x"}')
    (h / "foreign").mkdir()
    (h / "foreign" / "run.json").write_text('{"status": "complete"}')
    race = h / "race"
    race.mkdir()
    pid = hold_lock(race)
    (race / "run.json").write_text(json.dumps({"status": "running", "kind": "pretrain", "pid": pid, "files": []}))
    for name in ("notes.csv", "index.html", "mine.json"):
        (h / name).write_text("a user's file\n")
    (h / "somefolder").mkdir()
    kept = h / "run_with_user_checkpoints"  # a complete run, then a user's own checkpoints/ folder in it
    copy_run(source, kept)
    (kept / "checkpoints").mkdir()
    (kept / "checkpoints" / "keep.txt").write_text("k\n")
    run = h / "noted_run"
    own = copy_run(source, run)
    (run / "NOTES.txt").write_text("my notes on this run\n")
    digits = str(tmp / "inputs" / "d8.npz")  # written by image_input_cases
    transfer = ["transfer", "--source", src, "--data", "digits8", "--shots", "5", "--strategy", "linear_probe"]

    def notes_kept(t: Path, stdout: str) -> str | None:
        status = json.loads((run / "run.json").read_text()).get("status")
        return None if status == "complete" and (run / "NOTES.txt").exists() else f"status {status}"
    return as_cases({
        "--out is a user's folder (the issue's p)": [*transfer, "--out", str(h / "p")],
        "--out is a user's folder, with --overwrite": [*transfer, "--out", str(h / "p"), "--overwrite"],
        "--out holds a run.json not written by transferkit": ["pretrain", "--data", "digits8", "--out", str(h / "q")],
        "--out is in use by a running command": ["pretrain", "--data", "digits8", "--epochs", "1", "--out", str(race)],
        "predict --out is a user's file": ["predict", src, digits, "--out", str(h / "notes.csv")],
        "report --out is a user's file": ["report", src, "--out", str(h / "index.html")],
        "rank --json is a user's file": ["rank", "--data", "digits8", "--candidates", src, "--shots", "5",
                                         "--scores", "logme", "--json", str(h / "mine.json")],
        "predict --out is a folder": ["predict", src, digits, "--out", str(h / "somefolder")],
        "evaluate a run.json with a foreign status": ["evaluate", str(h / "foreign"), "--data", "digits8"],
        "--overwrite a run holding a user's checkpoints/": ["pretrain", "--data", "digits8", "--epochs", "1",
                                                            "--out", str(kept), "--overwrite"],
        "--overwrite keeps a user's NOTES.txt (result)": Case(
            ["pretrain", "--data", "digits8", "--epochs", "1", "--model-opt", "width=8", "--model-opt", "hidden=32",
             "--out", str(run), "--overwrite"], "result", notes_kept, tuple(f"h1/noted_run/{f}" for f in own)),
    })


def as_cases(cases: dict[str, list[str] | Case]) -> dict[str, Case]:
    """Bare argument lists become error cases."""
    return {name: c if isinstance(c, Case) else Case(c) for name, c in cases.items()}


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def wine_table() -> tuple[list[str], list[list[object]], list[str]]:
    """scikit-learn's wine data (178 real wines, 13 measurements, 3 cultivars) plus a categorical
    column 'region' (three values, unrelated to the label): header, rows (label last), labels."""
    from sklearn.datasets import load_wine

    d = load_wine()
    names = [str(n) for n in d.feature_names]
    labels = [str(d.target_names[t]) for t in d.target]
    regions = ("north", "south", "east")
    rows = [[*(f"{v:g}" for v in x), regions[i % 3], labels[i]] for i, x in enumerate(d.data)]
    return [*names, "region", "label"], rows, labels


def predictions_match(labels: list[str], least: float) -> Check:
    """A check: predict's CSV on stdout has one row per label and at least ``least`` of them right."""
    def check(tmp: Path, stdout: str) -> str | None:
        got = [r["class"] for r in csv.DictReader(stdout.splitlines())]
        if len(got) != len(labels):
            return f"{len(got)} predictions for {len(labels)} rows"
        right = float(np.mean([a == b for a, b in zip(got, labels)]))
        return None if right >= least else f"{right:.3f} of the predictions right, under {least}"
    return check


def tabular_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """Tables: a header a reader cannot trust, typos in cells, columns that differ from the model's,
    and the results the issue asks for (wine above 90%, predict on unseen categories and gaps)."""
    from transferkit import pretrain

    t, out = tmp / "tab", str(tmp / "out")
    header, rows, labels = wine_table()
    wine = write_csv(t / "wine.csv", header, rows)
    run = t / "wine_run"
    pretrain(str(wine), "mlp", run, epochs=30, progress="off")
    f = {name: t / f"{name}.csv" for name in ("unnamed", "twice", "oops", "nolabel", "onlylabel", "review")}
    write_csv(f["unnamed"], ["a", "", "label"], [[1, 2, "x"], [3, 4, "y"]] * 4)
    write_csv(f["twice"], ["a", "b", "a", "label"], [[1, 2, 3, "x"], [3, 4, 5, "y"]] * 4)
    write_csv(f["oops"], ["a", "b", "label"], [[1, 2, "x"], [3, "oops", "y"]] + [[i, i, "xy"[i % 2]] for i in range(8)])
    write_csv(f["nolabel"], ["a", "b", "label"], [[1, 2, "x"], [3, 4, ""]] + [[i, i, "xy"[i % 2]] for i in range(8)])
    write_csv(f["onlylabel"], ["label"], [["x"], ["y"]] * 4)
    reviews = [f"review {i}: the {w} was {v}" for i, (w, v) in enumerate(zip(["film", "plot", "cast", "score"] * 5,
                                                                           ["great", "dull", "fine", "bad"] * 5))]
    write_csv(f["review"], ["stars", "review", "label"], [[i % 5, r, "pos" if i % 2 else "neg"]
                                                          for i, r in enumerate(reviews)])
    hue = header.index("hue")
    other = [*header[:hue], *header[hue + 1:-1], "tint", "extra", "label"]
    differ = write_csv(t / "differ.csv", other, [[*r[:hue], *r[hue + 1:-1], "1", "2", r[-1]] for r in rows])
    order = [*reversed(header[:-1]), "label"]
    reordered = write_csv(t / "reordered.csv", order, [[*reversed(r[:-1]), r[-1]] for r in rows])
    gaps = [list(r) for r in rows]
    gaps[0][header.index("region")] = "west"  # a category the model never saw
    gaps[1][0] = ""  # a missing cell
    gaps[2][3] = "NA"
    holes = write_csv(t / "holes.csv", header, gaps)
    png(t / "digit.png")
    r = str(run)
    return as_cases({
        "CSV header with an unnamed column": ["pretrain", "--data", str(f["unnamed"]), "--out", out],
        "CSV header names a column twice": ["pretrain", "--data", str(f["twice"]), "--out", out],
        "a word in a numeric column": ["pretrain", "--data", str(f["oops"]), "--out", out],
        "an empty label cell": ["pretrain", "--data", str(f["nolabel"]), "--out", out],
        "a table with only a label column": ["pretrain", "--data", str(f["onlylabel"]), "--out", out],
        "--label-column names no column": ["pretrain", "--data", str(wine), "--label-column", "kind", "--out", out],
        "--text-column names no column": ["evaluate", r, "--data", str(wine), "--text-column", "review"],
        "free text in a table, no --text-column": ["pretrain", "--data", str(f["review"]), "--out", out],
        "transfer: columns differ from the model's": ["transfer", "--source", r, "--data", str(differ),
                                                      "--strategy", "linear_probe", "--out", out],
        "evaluate: columns differ from the model's": ["evaluate", r, "--data", str(differ)],
        "predict: columns differ from the model's": ["predict", r, str(differ)],
        "transfer a tabular run to images": ["transfer", "--source", r, "--data", "digits8", "--out", out],
        "pretrain on text": ["pretrain", "--data", "vader-tweets", "--out", out],
        "predict an image with a tabular run": ["predict", r, str(t / "digit.png")],
        "wine.csv pretrain mlp above 90% (result)": Case(
            ["pretrain", "--data", str(wine), "--model", "mlp", "--out", out], "result",
            accuracy_above(tmp / "out", 0.9)),
        "predict a table with reordered columns (result)": Case(["predict", r, str(reordered)], "result",
                                                                predictions_match(labels, 0.9)),
        "predict: unseen category, missing cells (result)": Case(["predict", r, str(holes)], "result",
                                                                 predictions_match(labels, 0.9)),
        "evaluate the run's own table by another spelling of its path (result)": Case(
            ["evaluate", r, "--data", f"{t}/./wine.csv"], "result", held_out_only(len(rows)),
            ("tab/wine_run/metrics.json", "tab/wine_run/run.json")),
    })


def held_out_only(total: int) -> Check:
    """``evaluate`` printed a score on the held-out part (30% of ``total`` rows), not on every row."""
    def check(tmp: Path, stdout: str) -> str | None:
        n = json.loads(stdout[stdout.index("{"):])["target"]["n"]
        return None if n <= 0.35 * total else f"scored {n} of {total} rows: training rows included"
    return check


def digits_npz(path: Path, n: int = 600, declare: bool = True, **extra: object) -> Path:
    """scikit-learn's 8x8 digits (values 0..16, as shipped) as an .npz of ``n`` images; ``declare``: with
    ``x_range`` = [0, 16] (so no note on the assumed range joins an error case's one line)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x_range": np.array([0, 16]), **extra} if declare else extra
    np.savez(path, x=d.images[:n].astype(np.float32), y=d.target[:n], **arrays)  # type: ignore[arg-type]
    return path


def image_input_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """Images: one class, values on an unusual or impossible range, a 169-megapixel PNG, .webp/.tif,
    a corrupt file in a folder, strategy options and heads that do not fit."""
    i, out, src = tmp / "inputs", str(tmp / "out"), str(source)
    d8 = digits_npz(i / "d8.npz")
    undeclared = digits_npz(i / "undeclared.npz", declare=False)
    digits_npz(i / "declared.npz", x_range=np.array([0, 8]))
    neg = np.load(d8)
    np.savez(i / "negative.npz", x=neg["x"] - 4.0, y=neg["y"])
    for k in range(4):
        png(i / "one" / "3" / f"{k}.png")
    Image.new("L", (13000, 13000), 128).save(i / "big13k.png", optimize=False)
    from sklearn.datasets import load_digits

    d = load_digits()
    (i / "kinds").mkdir()
    for k in range(12):  # real digits, every image kind Pillow decodes
        img = Image.fromarray((d.images[k] * 15).astype(np.uint8)).resize((28, 28))
        img.save(i / "kinds" / f"{k}{('.webp', '.tif', '.png')[k % 3]}")
    (i / "kinds" / "notes.txt").write_text("not an image\n")
    png(i / "corrupt" / "4" / "good.png")
    (i / "corrupt" / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    letters = np.load(d8)
    np.savez(i / "letters10.npz", x=letters["x"], y=np.array(list("abcdefghij"))[letters["y"]], x_range=[0, 16])
    def read(label: str, n: int) -> Check:
        def check(t: Path, stdout: str) -> str | None:
            rows = list(csv.DictReader(stdout.splitlines()))
            return None if len(rows) == n else f"{label}: {len(rows)} predictions, expected {n}"
        return check
    return as_cases({
        "a data set with one class": ["pretrain", "--data", str(i / "one"), "--out", out],
        "values 0..16 beyond a declared 0..8": ["pretrain", "--data", str(i / "declared.npz"), "--out", out],
        "negative pixel values": ["pretrain", "--data", str(i / "negative.npz"), "--out", out],
        "a 13000x13000 PNG (decompression bomb)": ["predict", src, str(i / "big13k.png")],
        "a corrupt image in a predict folder": ["predict", src, str(i / "corrupt")],
        "partial --option k=99": ["transfer", "--source", src, "--data", "digits8", "--strategy", "partial",
                                  "--option", "k=99", "--out", out],
        "--head keep, same count, other class names": ["transfer", "--source", src, "--data", str(i / "letters10.npz"),
                                                       "--head", "keep", "--out", out],
        "predict --top-k 0": ["predict", src, str(d8), "--top-k", "0"],
        "digits 0..16 in an .npz train (result)": Case(
            ["pretrain", "--data", str(undeclared), "--epochs", "3", "--out", out], "result",
            accuracy_above(tmp / "out", 0.5)),
        ".webp and .tif images are read (result)": Case(["predict", src, str(i / "kinds")], "result",
                                                        read("kinds", 12)),
        "--skip-bad-files skips a corrupt image (result)": Case(["predict", src, str(i / "corrupt"),
                                                                 "--skip-bad-files"], "result", read("corrupt", 1)),
    })

