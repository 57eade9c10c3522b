"""``--device``: a device this machine lacks (cuda on a CPU build, tpu, cuda:99) is one line naming
it and what is available, for every command that trains, before any data loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transferkit.cli import main
from transferkit.engine.precision import available_devices, resolve_device
from transferkit.errors import ConfigError

MISSING_CUDA = "cuda:99" if torch.cuda.is_available() else "cuda"
CASES = [(MISSING_CUDA, "CUDA"), ("tpu", "'tpu' is not a device"), ("meta", "not available on this machine")]

COMMANDS = {
    "pretrain": ["pretrain", "--data", "mnist5k", "--out", "{tmp}/p"],
    "transfer": ["transfer", "--source", "mnist_cnn", "--data", "digits8", "--out", "{tmp}/t"],
    "adapt": ["adapt", "--source", "{tmp}/src", "--source-data", "mnist5k", "--target-data", "digits8", "--out", "{tmp}/a"],
    "federate": ["federate", "--source", "mnist_cnn", "--clients-from", "digits8,mnist5k", "--out", "{tmp}/f"],
}


def test_available_devices_lists_cpu_and_what_torch_sees() -> None:
    here = available_devices()
    assert here[:2] == ["auto", "cpu"] and ("cuda" in here) == torch.cuda.is_available()
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize(("device", "message"), CASES)
def test_resolve_device_is_a_config_error(device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        resolve_device(device)
    assert "available here: auto, cpu" in str(e.value) and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("device", "message"), CASES)
def test_every_training_command_fails_in_one_line(command: str, device: str, message: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[command]] + ["--device", device]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"transferkit: error: --device {device}" if "'" not in message else "transferkit: error:")
    assert message in err and "available here" in err
    assert not any(tmp_path.iterdir())  # failed before anything was written


def test_the_api_refuses_too(source_run: Path, tmp_path: Path) -> None:
    import transferkit

    with pytest.raises(ConfigError, match="--device 'tpu' is not a device"):
        transferkit.federate(str(source_run), clients_from="digits8,mnist5k", out=tmp_path / "f",
                             train=json.dumps({"device": "tpu"}))
    with pytest.raises(ConfigError, match="unknown setting 'epoch' .*did you mean 'epochs'"):
        transferkit.federate(str(source_run), clients_from="digits8,mnist5k", train=json.dumps({"epoch": 2}))
    assert not (tmp_path / "f").exists()
    with pytest.raises(ConfigError, match=f"--device {MISSING_CUDA}"):
        transferkit.transfer(source_run, "digits8", strategy="full", shots=2, device=MISSING_CUDA, epochs=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_under_torchrun_without_cuda_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="--device cuda: this torch build has no CUDA support"):
        resolve_device("cuda")
