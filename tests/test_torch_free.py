"""The command line's parser, the typed options and the run specs import no torch: ``transferkit --help``
stays fast, and these tests also run under the oldest supported Python (scripts/oldest_python.sh), where
this machine has no CPU torch wheel to install."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from transferkit.cli import build_parser
from transferkit.federated.spec import FederateSpec
from transferkit.spec import PretrainSpec, TransferSpec

COMMANDS = ("pretrain", "transfer", "evaluate", "predict", "export", "rank", "adapt", "federate", "zeroshot",
            "report", "suggest-labels")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0 and f"transferkit {command}" in out.getvalue()


def test_parsing_imports_no_torch() -> None:
    code = ("import sys; from transferkit.cli import build_parser; "
            "build_parser().parse_args(['transfer', '--source', 's', '--data', 'd', '--out', 'o']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_specs_round_trip_through_json_form() -> None:
    for spec in (PretrainSpec(data="mnist5k"), TransferSpec(source="runs/src", data="digits8", shots=5),
                 FederateSpec(source="runs/src", clients_from=("a.npz", "b.npz"), train={"lr": 0.1})):
        assert type(spec).from_dict(spec.to_dict()) == spec
