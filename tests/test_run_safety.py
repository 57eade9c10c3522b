"""Output paths never cost a user a file: ``--out`` refuses a folder that is not a run, ``--overwrite``
removes only what a run wrote, a run folder is locked while a command writes it (a dead holder's run
resumes), and ``predict`` / ``report`` / ``rank`` / ``demo`` never replace a file they did not write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.errors import CheckpointError, ConfigError
from transferkit.locks import LOCK_NAME
from transferkit.runs import RunDir, load_run

FAST = ["--epochs", "1", "--batch-size", "128", "--precision", "fp32", "--progress", "off"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *parts: str) -> str:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code != 0
    assert err.startswith("transferkit: error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, (part, err)
    return err


def _user_folder(p: Path) -> None:
    """The issue's folder: a config.json and a checkpoints/ folder of the user's, no run.json."""
    (p / "checkpoints").mkdir(parents=True)
    (p / "config.json").write_text("x\n")
    (p / "checkpoints" / "keep.txt").write_text("k\n")


def _intact(p: Path) -> None:
    assert (p / "config.json").read_text() == "x\n"
    assert (p / "checkpoints" / "keep.txt").read_text() == "k\n"
    assert sorted(q.name for q in p.iterdir()) == ["checkpoints", "config.json"], "something was written into it"


# ------------------------------------------------------------------------------ --out: folders that are not runs


def test_transfer_refuses_a_folder_that_is_not_a_run(capsys: pytest.CaptureFixture[str], source_run: Path,
                                                     tmp_path: Path) -> None:
    p = tmp_path / "p"
    _user_folder(p)
    _one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--shots", "5",
                             "--strategy", "linear_probe", "--out", str(p), *FAST],
                    f"{p}: exists and is not a transferkit run (holds checkpoints/, config.json); pick another --out")
    _intact(p)
    _one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--shots", "5",
                             "--strategy", "linear_probe", "--out", str(p), "--overwrite", *FAST],
                    "is not a transferkit run")
    _intact(p)


@pytest.mark.parametrize("run_json", ['{"status": "complete"}', '{"name": "another tool"}', "not json"])
def test_a_run_json_that_is_not_ours_is_not_a_run(run_json: str, tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.mkdir()
    (p / "run.json").write_text(run_json)
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match="is not a transferkit run \\(holds run.json\\)"):
            RunDir.create(p, "pretrain", {}, overwrite=overwrite)
    assert [q.name for q in p.iterdir()] == ["run.json"] and (p / "run.json").read_text() == run_json
    with pytest.raises(CheckpointError, match="not a complete run"):
        transferkit.evaluate(p, "digits8")


def test_an_empty_folder_or_one_left_by_a_starting_run_is_fine(tmp_path: Path) -> None:
    for name, left in (("empty", []), ("lock", [LOCK_NAME]), ("half", [LOCK_NAME, ".run.json.x1y2.tmp"])):
        p = tmp_path / name
        p.mkdir()
        for f in left:
            (p / f).write_text("")
        run = RunDir.create(p, "pretrain", {"seed": 0})
        assert run.status() == "running"
        run.fail(RuntimeError("done"))


# ------------------------------------------------------------------------------ --overwrite and the manifest


def _tiny_run(p: Path, **config: object) -> RunDir:
    run = RunDir.create(p, "pretrain", {"seed": 0, **config}, overwrite=True)
    run.write("metrics.json", {"accuracy": 1.0})
    run.write("report.md", "# report\n")
    run.adopt("federation")
    (p / "federation").mkdir()
    (p / "federation" / "model.bin").write_text("m")
    run.complete()
    return run


def _add_user_files(p: Path) -> None:
    (p / "NOTES.txt").write_text("my notes\n")
    (p / "plots").mkdir()
    (p / "plots" / "a.png").write_text("png")


def _user_files_intact(p: Path) -> None:
    assert (p / "NOTES.txt").read_text() == "my notes\n"
    assert (p / "plots" / "a.png").read_text() == "png"


def test_overwrite_removes_only_what_the_run_wrote(tmp_path: Path) -> None:
    p = tmp_path / "run"
    _tiny_run(p)
    info = json.loads((p / "run.json").read_text())
    assert {"run.json", "config.json", "metrics.json", "report.md", "federation"} <= set(info["files"])
    _add_user_files(p)
    run = RunDir.create(p, "pretrain", {"seed": 1}, overwrite=True)
    _user_files_intact(p)
    assert not (p / "metrics.json").exists() and not (p / "report.md").exists() and not (p / "federation").exists()
    assert run.status() == "running"
    run.complete()


def test_overwrite_of_a_run_without_a_manifest_removes_only_run_file_names(tmp_path: Path) -> None:
    p = tmp_path / "run"
    _tiny_run(p)
    info = json.loads((p / "run.json").read_text())
    del info["files"]  # as written before run.json listed its files
    (p / "run.json").write_text(json.dumps(info))
    _add_user_files(p)
    (p / "model.safetensors").write_text("w")
    RunDir.create(p, "pretrain", {"seed": 1}, overwrite=True).complete()
    _user_files_intact(p)
    assert not (p / "model.safetensors").exists() and not (p / "metrics.json").exists()


def test_overwrite_keeps_notes_end_to_end(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    argv = ["transfer", "--source", str(source_run), "--data", "digits8", "--shots", "5", "--strategy",
            "linear_probe", "--out", str(out), *FAST]
    assert main(argv) == 0
    _add_user_files(out)
    assert main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    _user_files_intact(out)
    assert load_run(out).config["strategy"] == "linear_probe"


def test_artifacts_join_the_manifest(source_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    transferkit.transfer(source_run, "digits8", strategy="lora", shots=2, seed=0, out=out, epochs=1, progress="off")
    files = json.loads((out / "run.json").read_text())["files"]
    assert {"adapter.safetensors", "adapter.json", "model.safetensors", "report.md"} <= set(files)
    assert {p.name for p in out.iterdir()} <= {*files, LOCK_NAME}, "a file the manifest does not list"


def test_incomplete_runs_keep_foreign_files(tmp_path: Path) -> None:
    p = tmp_path / "run"
    run = RunDir.create(p, "pretrain", {"seed": 0})
    _add_user_files(p)
    run.fail(RuntimeError("boom"))
    for seed, overwrite in ((0, False), (1, False), (2, True)):  # resume; another job; --overwrite of a failed run
        RunDir.create(p, "pretrain", {"seed": seed}, overwrite=overwrite).fail(RuntimeError("again"))
        _user_files_intact(p)


# ------------------------------------------------------------------------------ the lock

_HOLDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from transferkit.errors import CheckpointError
    from transferkit.runs import RunDir
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    try:
        run = RunDir.create(sys.argv[1], "pretrain", {"seed": 0})
    except CheckpointError as e:
        print("lost", e, flush=True)
        sys.exit(2)
    (run.checkpoints / "0-scratch").mkdir(parents=True)
    print("won", os.getpid(), flush=True)
    if sys.argv[3] == "die":
        os.kill(os.getpid(), 9)
    sys.stdin.read()  # hold the run until the test closes stdin
""")


def _holder(out: Path, go: Path, then: str = "hold") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(go), then], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def test_two_processes_racing_on_one_out(tmp_path: Path) -> None:
    out, go = tmp_path / "race", tmp_path / "go"
    procs = [_holder(out, go), _holder(out, go)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    go.touch()  # both create at the same instant
    lines = [p.stdout.readline().strip() for p in procs if p.stdout is not None]
    winners = [ln for ln in lines if ln.startswith("won ")]
    losers = [ln for ln in lines if ln.startswith("lost ")]
    assert len(winners) == 1 and len(losers) == 1, lines
    assert f"{out}: in use by a running transferkit command (pid {winners[0].split()[1]})" in losers[0]
    for p in procs:
        p.communicate("")
    assert sorted(p.returncode for p in procs) == [0, 2]


@pytest.mark.slow
def test_two_cli_commands_racing_on_one_out(tmp_path: Path) -> None:
    """The issue's race: two ``pretrain --out runs/race`` at once. One trains; the other ends in one line
    (in use, or, if it came late, already complete) and the folder holds the winner's run alone."""
    out = tmp_path / "race"
    argv = [sys.executable, "-m", "transferkit", "pretrain", "--data", "mnist5k", "--model", "mlp", "--out", str(out),
            *FAST]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*argv, "--seed", str(seed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (0, 1)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    (_, out_won, _), = [r for r in results if r[0] == 0]
    (_, _, err), = [r for r in results if r[0] != 0]
    assert err.count("\n") == 1 and ("in use by a running transferkit command (pid " in err
                                     or "already holds a complete run" in err), err
    won_seed = 0 if results[0][0] == 0 else 1
    assert load_run(out).config["seed"] == won_seed
    assert str(out) in out_won


def test_a_live_run_is_not_taken_over_by_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, go = tmp_path / "busy", tmp_path / "go"
    go.touch()
    holder = _holder(out, go)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        pid = holder.stdout.readline().split()[1]
        _one_line_error(capsys, ["pretrain", "--data", "mnist5k", "--model", "mlp", "--out", str(out), *FAST],
                        f"{out}: in use by a running transferkit command (pid {pid})")
        assert (out / "checkpoints" / "0-scratch").is_dir(), "the live run's state was touched"
    finally:
        holder.communicate("")
    assert holder.returncode == 0


def test_a_run_whose_process_died_resumes(tmp_path: Path) -> None:
    out, go = tmp_path / "dead", tmp_path / "go"
    go.touch()
    holder = _holder(out, go, then="die")
    holder.communicate("", timeout=120)
    assert holder.returncode == -signal.SIGKILL
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    run = RunDir.create(out, "pretrain", {"seed": 0})  # the same job: resumes, keeping its checkpoints
    assert (out / "checkpoints" / "0-scratch").is_dir()
    assert json.loads((out / "run.json").read_text())["pid"] == os.getpid()
    run.fail(RuntimeError("done"))


def test_the_lock_is_released_when_a_run_ends(tmp_path: Path) -> None:
    out = tmp_path / "r"
    RunDir.create(out, "pretrain", {"seed": 0}).complete()
    probe = subprocess.run([sys.executable, "-c", "import sys, transferkit.locks as l; from pathlib import Path; "
                            "l.acquire(Path(sys.argv[1]))", str(out)], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr


# ------------------------------------------------------------------------------ other output files


def test_predict_out_never_replaces_a_users_file(capsys: pytest.CaptureFixture[str], source_run: Path,
                                                 tmp_path: Path) -> None:
    npz, csv = tmp_path / "x.npz", tmp_path / "preds.csv"
    np.savez(npz, x=np.zeros((2, 1, 28, 28), dtype=np.float32))
    csv.write_text("my,own\n1,2\n")
    _one_line_error(capsys, ["predict", str(source_run), str(npz), "--out", str(csv)],
                    f"{csv}: exists and was not written by transferkit predict; pass --overwrite")
    assert csv.read_text() == "my,own\n1,2\n"
    assert main(["predict", str(source_run), str(npz), "--out", str(csv), "--overwrite"]) == 0
    assert csv.read_text().startswith("input,class,probability\n")
    assert main(["predict", str(source_run), str(npz), "--out", str(csv)]) == 0, "rewriting its own output"
    _one_line_error(capsys, ["predict", str(source_run), str(npz), "--out", str(tmp_path)], "is a folder")


def test_report_and_rank_never_replace_a_users_file(capsys: pytest.CaptureFixture[str], source_run: Path,
                                                    tmp_path: Path) -> None:
    page, ranking = tmp_path / "index.html", tmp_path / "ranking.json"
    page.write_text("<html>my page</html>")
    ranking.write_text('{"mine": 1}')
    _one_line_error(capsys, ["report", str(source_run), "--out", str(page)],
                    f"{page}: exists and was not written by transferkit report; pass --overwrite")
    _one_line_error(capsys, ["rank", "--data", "digits8", "--candidates", str(source_run), "--json", str(ranking)],
                    f"{ranking}: exists and was not written by transferkit rank; pass --overwrite")
    assert page.read_text() == "<html>my page</html>" and ranking.read_text() == '{"mine": 1}'


def test_demo_never_replaces_a_users_results(tmp_path: Path) -> None:
    from transferkit.demo import run_demo

    (tmp_path / "results.md").write_text("my results\n")
    with pytest.raises(ConfigError, match="results.md: exists and was not written by transferkit demo"):
        run_demo(tmp_path, log=lambda *_: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]


def test_evaluate_writes_only_into_a_complete_run(source_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(source_run, run)
    transferkit.evaluate(run, "digits8")
    assert "digits8" in load_run(run).metrics["evaluations"]
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    with pytest.raises(CheckpointError, match="not a complete run"):
        transferkit.evaluate(run, "digits8")


# ------------------------------------------------------------------------------ the manifest lists what the run wrote


def test_a_complete_runs_manifest_lists_only_what_exists(tmp_path: Path) -> None:
    p = tmp_path / "run"
    run = RunDir.create(p, "pretrain", {"seed": 0})
    assert "checkpoints" in json.loads((p / "run.json").read_text())["files"], "listed while it runs"
    (run.checkpoints / "0-scratch").mkdir(parents=True)
    run.write("metrics.json", {"accuracy": 1.0})
    run.complete()
    files = json.loads((p / "run.json").read_text())["files"]
    assert files == ["config.json", "metrics.json", "run.json"]
    assert {q.name for q in p.iterdir()} == {*files, LOCK_NAME}


def test_overwrite_keeps_a_checkpoints_folder_the_user_added(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    """The issue's own example: a checkpoints/ of the user's, added beside a complete run."""
    p = tmp_path / "cap2"
    _tiny_run(p)
    (p / "checkpoints").mkdir()
    (p / "checkpoints" / "keep.txt").write_text("k\n")
    for tensorboard in ("tensorboard", "history.csv"):  # names a run may write, but this one did not
        assert tensorboard not in json.loads((p / "run.json").read_text())["files"]
    _one_line_error(capsys, ["pretrain", "--data", "mnist5k", "--model", "mlp", "--out", str(p), "--overwrite", *FAST],
                    f"{p / 'checkpoints'}: not written by this run")
    with pytest.raises(CheckpointError, match="not written by this run"):
        RunDir.create(p, "pretrain", {"seed": 1}, overwrite=True)
    assert (p / "checkpoints" / "keep.txt").read_text() == "k\n"
    assert json.loads((p / "run.json").read_text())["status"] == "complete" and (p / "metrics.json").exists()


def test_overwrite_of_an_incomplete_run_removes_its_own_checkpoints(tmp_path: Path) -> None:
    p = tmp_path / "run"
    run = RunDir.create(p, "pretrain", {"seed": 0})
    (run.checkpoints / "0-scratch").mkdir(parents=True)
    run.fail(RuntimeError("killed"))
    RunDir.create(p, "pretrain", {"seed": 1}, overwrite=True).fail(RuntimeError("again"))  # another job
    assert not (p / "checkpoints").exists()


def test_the_metrics_log_is_listed_when_written(source_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.engine import runlog

    monkeypatch.setattr(runlog, "tensorboard_available", lambda: False)  # as without the tensorboard package
    out = tmp_path / "t"
    transferkit.transfer(source_run, "digits8", strategy="linear_probe", shots=5, out=out, epochs=1, progress="off")
    files = json.loads((out / "run.json").read_text())["files"]
    assert "history.csv" in files and "tensorboard" not in files and "checkpoints" not in files
    assert {q.name for q in out.iterdir()} == {*files, LOCK_NAME}


def test_artifacts_are_listed_before_they_are_written(source_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.strategies import peft

    out, save = tmp_path / "lora", peft.Adapter.save

    def listed_first(self: peft.Adapter, directory: str | Path) -> list[Path]:
        files = json.loads((out / "run.json").read_text())["files"]
        assert Path(directory).relative_to(out).parts[0] in files, (directory, files)
        return save(self, directory)

    monkeypatch.setattr(peft.Adapter, "save", listed_first)
    transferkit.transfer(source_run, "digits8", strategy="lora", shots=2, out=out, epochs=1, progress="off")
    files = json.loads((out / "run.json").read_text())["files"]
    assert {"adapter.safetensors", "adapter.json"} <= set(files)
    assert {q.name for q in out.iterdir()} == {*files, LOCK_NAME}


# ------------------------------------------------------------------------------ --out is checked before data loads


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import transferkit.adaptation.api as adapt_api
    import transferkit.federated.api as fed_api
    from transferkit.pipeline import pretrain as pretrain_stages
    from transferkit.pipeline import transfer as transfer_stages

    def loads(*args: object, **kwargs: object) -> None:
        raise AssertionError("data or a source loaded before --out was checked")

    for module, name in ((pretrain_stages, "load_dataset"), (transfer_stages, "load_dataset"),
                         (transfer_stages, "load_source"), (adapt_api, "load_source"), (fed_api, "check_training")):
        monkeypatch.setattr(module, name, loads)


def test_out_is_checked_before_anything_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, done = tmp_path / "p", tmp_path / "done"
    _user_folder(p)
    _tiny_run(done)
    _no_loading(monkeypatch)
    calls = {"pretrain": lambda out: transferkit.pretrain("mnist5k", "mlp", out),
             "transfer": lambda out: transferkit.transfer("src", "digits8", out=out),
             "adapt": lambda out: transferkit.adapt("src", "mnist5k", "digits8", out=out),
             "federate": lambda out: transferkit.federate("src", "digits8", out=out)}
    for name, call in calls.items():
        with pytest.raises(CheckpointError, match="is not a transferkit run"):
            call(p)
        with pytest.raises(CheckpointError, match="already holds a complete run"):
            call(done)
    _intact(p)


# ------------------------------------------------------------------------------ a file system without flock


def test_a_file_system_without_flock_runs_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    p = tmp_path / "nfs"
    with caplog.at_level("WARNING", logger="transferkit"):
        run = RunDir.create(p, "pretrain", {"seed": 0})
    assert [r.getMessage() for r in caplog.records if str(p) in r.getMessage() and "unlocked" in r.getMessage()]
    run.write("metrics.json", {"accuracy": 1.0})
    run.complete()
    assert run.status() == "complete"
