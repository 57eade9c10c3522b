"""README's headline numbers are the generated ``docs/benchmarks.json``, never typed in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import headline


def test_readme_block_is_rendered_from_the_benchmark_json() -> None:
    assert headline.main(["--check"]) == 0


def test_a_stale_block_is_detected_and_rewritten(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "docs" / "benchmarks.json").read_text())
    doc["checks"][0]["value"] = "999x"
    (tmp_path / "b.json").write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    args = ["--json", str(tmp_path / "b.json"), "--readme", str(readme)]
    assert headline.main([*args, "--check"]) == 1
    assert headline.main(args) == 0
    assert "| 999x |" in readme.read_text() and headline.main([*args, "--check"]) == 0
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="missing the markers"):
        headline.main(args)
