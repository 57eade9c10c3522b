"""README.md's command blocks: parsed as CI runs them (scripts/readme_check.py), and every command they
name exists; the blocks themselves run in CI (.ci/run), in order, as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.cli import build_parser
from transferkit.engine.config import MAX_EPOCHS_ENV, capped_epochs
from transferkit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_check  # noqa: E402


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


def test_blocks_are_found_in_order_with_their_language() -> None:
    found = readme_check.blocks((ROOT / "README.md").read_text())
    langs = [b.language for b in found]
    assert langs[0] == "bash" and "python" in langs
    assert "make demo" in found[0].text and "make test" in found[0].text
    assert [b.line for b in found] == sorted(b.line for b in found)


def test_every_transferkit_command_in_the_readme_exists() -> None:
    known = _subcommands()
    text = "\n".join(b.text for b in readme_check.blocks((ROOT / "README.md").read_text()) if b.language == "bash")
    used = set(re.findall(r"(?:^|\s)transferkit\s+([a-z][a-z-]*)", text, re.M))
    assert used, "no transferkit command found in README.md"
    assert used <= known, f"README.md uses unknown sub-commands: {sorted(used - known)}"


def test_no_placeholder_paths_in_commands() -> None:
    text = "\n".join(b.text for b in readme_check.blocks((ROOT / "README.md").read_text()) if b.language == "bash")
    assert "..." not in text and "path/to/" not in text


def test_the_script_stops_at_the_first_failing_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("```bash\necho one > one.txt\n```\n\n```text\nnot a command\n```\n\n"
                      "```bash\nfalse\necho never > never.txt\n```\n\n```python\nopen('py.txt', 'w')\n```\n")
    assert readme_check.main(["--readme", str(readme)]) != 0
    assert (tmp_path / "one.txt").exists() and not (tmp_path / "never.txt").exists()
    assert not (tmp_path / "py.txt").exists()


def test_python_blocks_run(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("```python\nopen('py.txt', 'w').write('ok')\n```\n")
    rc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_check.py"), "--readme", str(readme)],
                        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}).returncode
    assert rc == 0 and (tmp_path / "py.txt").read_text() == "ok"


def test_a_block_in_another_shell_language_is_refused() -> None:
    with pytest.raises(ValueError, match="README.md:1: a ```sh block"):
        readme_check.script(readme_check.blocks("```sh\necho hi\n```\n"))


def test_unterminated_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        readme_check.blocks("```bash\necho\n")


def test_epoch_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_EPOCHS_ENV, raising=False)
    assert capped_epochs(40) == 40
    monkeypatch.setenv(MAX_EPOCHS_ENV, "2")
    assert capped_epochs(40) == 2 and capped_epochs(1) == 1
    monkeypatch.setenv(MAX_EPOCHS_ENV, "zero")
    with pytest.raises(ConfigError, match=MAX_EPOCHS_ENV):
        capped_epochs(40)
