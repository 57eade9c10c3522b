"""Python 3.10 works for real (``requires-python >= 3.10``): no 3.11-only syntax or modules in
``src`` (vermin, and the parser's 3.10 grammar), and under a real 3.10 interpreter, when this
machine has one, every source file compiles and ``--config`` reads TOML through ``tomli``."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
FILES = sorted(SRC.rglob("*.py"))


def python310() -> str | None:
    """A working Python 3.10 interpreter on this machine (PATH, then pyenv's versions), or None."""
    home = os.path.expanduser("~/.pyenv/versions")
    for exe in [shutil.which("python3.10"), *sorted(glob.glob(f"{home}/3.10*/bin/python3.10"))]:
        if exe and subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                  capture_output=True, check=False).returncode == 0:
            return exe
    return None


def test_vermin_finds_nothing_newer_than_3_10() -> None:
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (it is in the test extra)")
    out = subprocess.run([vermin, "--target=3.10-", "--no-tips", "--violations", "--no-parse-comments", str(SRC)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-500:]


def test_source_parses_with_the_3_10_grammar() -> None:
    bad = []
    for path in FILES:
        try:
            ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))
        except SyntaxError as e:
            bad.append(f"{path.relative_to(SRC)}:{e.lineno}: {e.msg}")
    assert not bad, bad


def test_under_a_real_python_3_10(tmp_path: Path) -> None:
    exe = python310()
    if exe is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    import tomli

    shutil.copytree(Path(tomli.__file__).parent, tmp_path / "lib" / "tomli",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))  # pure-Python tomli for 3.10
    (tmp_path / "run.toml").write_text('data = "digits8"\nepochs = 3\n')
    code = (f"import sys; sys.path[:0] = [{str(tmp_path / 'lib')!r}, {str(SRC)!r}]\n"
            f"for f in {[str(f) for f in FILES]!r}: compile(open(f, encoding='utf-8').read(), f, 'exec')\n"
            "from pathlib import Path; from transferkit.configfile import read_config, tomllib\n"
            f"assert tomllib.__name__ == 'tomli' and read_config(Path({str(tmp_path / 'run.toml')!r})) == "
            "{'data': 'digits8', 'epochs': 3}")
    # a clean environment: libraries loaded earlier in this process (Ray, for one) may have set PYTHONPATH or
    # PYTHONHOME to this interpreter's standard library, which a 3.10 interpreter must not read
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([exe, "-I", "-c", code], capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
