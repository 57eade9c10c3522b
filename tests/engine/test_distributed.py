"""Data-parallel training under torchrun: shards, global-batch layers, and a 2-process CPU run
(gloo) that must match the one-process run with the same global batch and seed."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from transferkit.cli import main
from transferkit.engine import distributed
from transferkit.engine.global_batch import global_batch, shard_dropout, synced_batch_norm
from transferkit.io import load_tensors

WORKER = Path(__file__).with_name("_ddp_worker.py")
FLAGS = ["--epochs", "3", "--patience", "0", "--precision", "fp32", "--progress", "off", "--seed", "0",
         "--batch-size", "64"]


# ------------------------------------------------------------------------------ shards


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [1, 2, 5, 31, 64, 65, 255])
def test_shards_of_a_global_batch_partition_it_exactly(n: int, world: int) -> None:
    bounds = [distributed.shard_bounds(n, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous, in rank order, no overlap
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(n))  # a global batch of sample indices
    parts = [idx[lo:hi] for lo, hi in bounds]
    assert torch.equal(torch.cat(parts), idx)
    assert [len(p) for p in parts] == [len(p) for p in torch.tensor_split(idx, world)]


def test_not_distributed_is_a_no_op() -> None:
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_true(False) is False
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    loss = torch.tensor(1.5)
    assert distributed.sync_gradients([p], loss) is loss and torch.equal(p.grad, torch.full((3,), 2.0))


# ------------------------------------------------------------------------------ global-batch layers


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 4, 4)])
def test_synced_batch_norm_on_one_rank_is_batch_norm(shape: tuple[int, ...]) -> None:
    """With one rank the all-reduce is the identity: outputs, input/affine gradients and running
    statistics must equal PyTorch's BatchNorm (the NumPy-free reference)."""
    torch.manual_seed(0)
    ref = nn.BatchNorm1d(shape[1]) if len(shape) == 2 else nn.BatchNorm2d(shape[1])
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = type(ref)(shape[1])
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(shape) * 3 + 1
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = torch.randn(shape)
    for _ in range(2):  # twice: the running-average update compounds
        ya, yb = ref(xa), synced_batch_norm(ours, xb)
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [0.0, 0.25, 1.0])
def test_each_shard_gets_its_rows_of_the_one_process_dropout_mask(p: float) -> None:
    x = torch.randn(10, 7)
    torch.manual_seed(11)
    whole = nn.functional.dropout(x, p, training=True)
    after_whole = torch.rand(1)
    for r, (lo, hi) in enumerate(distributed.shard_bounds(10, 3, r) for r in range(3)):
        torch.manual_seed(11)
        assert torch.equal(shard_dropout(p, x[lo:hi], lo, 10, inplace=False), whole[lo:hi]), f"rank {r}"
        assert torch.equal(torch.rand(1), after_whole), "the RNG must advance as in one process"


def test_global_batch_patches_only_while_active() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    bn_forward = model[1].forward
    with global_batch(model, 4, 0, 8):
        assert "forward" in model[1].__dict__ and "forward" in model[2].__dict__
        model.eval()
        x = torch.randn(4, 4)
        torch.testing.assert_close(model(x), model[1](model[0](x)))  # eval: plain layers
    assert "forward" not in model[1].__dict__ and "forward" not in model[2].__dict__
    assert model[1].forward == bn_forward


# ------------------------------------------------------------------------------ torchrun, 2 processes


def _torchrun(args: list[str], log_dir: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*cmd, "--standalone", "--nproc_per_node", "2", "--log-dir", str(log_dir), "--redirects", "3",
                           *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _rank_logs(log_dir: Path, stream: str) -> dict[int, str]:
    """torchrun's per-rank logs: ``<log_dir>/<run id>/attempt_0/<local rank>/<stream>.log``."""
    files = sorted(log_dir.glob(f"*/attempt_0/*/{stream}.log"))
    return {int(f.parent.name): f.read_text() for f in files}


def _accuracy(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text())["target"]["accuracy"])


@pytest.mark.slow
def test_two_processes_on_cpu_match_one_process(source_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """full and linear_probe under ``torchrun --nproc_per_node 2`` (gloo) vs one process with the
    same global batch and seed: same accuracy (within 0.5 pt), run directories written once by
    rank 0, only rank 0 prints, one step matches to float rounding, resume is exact."""
    two, one, logs = tmp_path / "two", tmp_path / "one", tmp_path / "logs"
    two.mkdir()
    done = _torchrun([str(WORKER), str(source_run), str(two), *FLAGS], logs)
    out, err = _rank_logs(logs, "stdout"), _rank_logs(logs, "stderr")
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{err}"
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]

    # only rank 0 printed; rank 1 wrote nothing under the output folder
    assert out[0].count("target accuracy") == 2 and out[1] == ""
    assert "transferkit:" not in err[1]
    assert ranks[1]["written_by_this_rank"] == []

    # one optimizer step: gradients equal the one-process gradients up to float rounding
    for rank in ranks:
        bad = {k: v for k, v in rank["one_step"].items() if v > 1e-4}
        assert not bad, f"rank {rank['rank']}: {bad}"

    # kill-and-resume under 2 ranks gives bitwise the uninterrupted result
    assert ranks[0]["resume_equal"] and ranks[1]["resume_equal"]

    # features past the memory budget: one file on disk, filled by both ranks, exact on both
    for rank in ranks:
        assert rank["spill"]["equal"] and rank["spill"]["spilled"] == 1
        assert len(rank["spill"]["files"]) == 1 and rank["spill"]["files"][0].endswith(".npy")

    for strategy in ("full", "linear_probe"):
        assert ranks[0]["codes"][strategy] == 0 and ranks[1]["codes"][strategy] == 0
        run = two / strategy
        status = json.loads((run / "run.json").read_text())
        assert status["status"] == "complete" and status["pid"] == ranks[0]["pid"]
        assert not (run / "checkpoints").exists()
        assert main(["transfer", "--source", str(source_run), "--data", "digits8", "--strategy", strategy,
                     "--out", str(one / strategy), *FLAGS]) == 0
        acc1, acc2 = _accuracy(one / strategy), _accuracy(run)
        assert abs(acc2 - acc1) <= 0.005, f"{strategy}: 1 process {acc1:.4f}, 2 processes {acc2:.4f}"
    capsys.readouterr()

    # the linear probe: features were shared, not recomputed differently: the frozen backbone is
    # untouched and the head equals the one-process head to float rounding
    a, b = load_tensors(one / "linear_probe" / "model.safetensors"), load_tensors(two / "linear_probe" / "model.safetensors")
    for k in a:
        if k.startswith("head."):
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(a[k], b[k]), k
    shutil.rmtree(logs, ignore_errors=True)
