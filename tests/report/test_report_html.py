"""The HTML report on tiny real runs (mnist5k -> digits8): its sections and inline plots, the layer
views on known cases, skipped views with notes, the ``report`` sub-command, and a real headless
Chromium that renders the page (screenshot, every image decoded, no console messages)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import transferkit
from transferkit.errors import CheckpointError
from transferkit.report.analysis import analyse_run
from transferkit.report.cli import add_parsers, run
from transferkit.report.html import write_html_report

TRAIN = {"precision": "fp32", "progress": "off", "batch_size": 64}
SECTIONS = ("summary", "comparison", "curves", "confusion", "forgetting", "layers", "saliency", "notes")
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny source (small_cnn, 1 epoch on mnist5k) and two transfers of it to digits8 (~8 s)."""
    root = tmp_path_factory.mktemp("report_runs")
    out = {"src": root / "src", "lp_ft": root / "lp_ft", "probe": root / "probe10"}
    transferkit.pretrain("mnist5k", "small_cnn", out["src"], seed=0, model_kwargs={"width": 8, "hidden": 32},
                         epochs=1, **TRAIN)
    transferkit.transfer(out["src"], "digits8", strategy="lp_ft", shots=5, out=out["lp_ft"], source_data="mnist5k",
                         epochs=2, **TRAIN)
    transferkit.transfer(out["src"], "digits8", strategy="linear_probe", shots=10, out=out["probe"],
                         source_data="mnist5k", epochs=2, **TRAIN)
    return out


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert write_html_report([runs["src"], runs["lp_ft"], runs["probe"]], out, max_samples=128) == out
    return out


def test_report_has_every_section_and_self_contained_inline_plots(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    pngs = IMG.findall(text)
    # comparison: bars + accuracy vs shots (5 and 10); curves, confusion, saliency: 3 runs each;
    # forgetting and layers: one chart each over the runs
    assert len(pngs) == 2 + 3 + 3 + 1 + 1 + 3
    for b64 in pngs:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and min(img.size) >= 150
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched at view time
    for label in ("src", "lp_ft", "probe10", "linear_probe", "lp_ft"):
        assert label in text


def test_layer_views_show_a_frozen_backbone_unmoved_and_fine_tuning_moved(runs: dict[str, Path]) -> None:
    probe = analyse_run(runs["probe"], max_samples=64, n_saliency=0)
    assert probe.change is not None and probe.cka is not None
    for g in ("conv1", "conv2", "fc"):  # a linear probe leaves the backbone exactly as it was
        assert probe.change[g] == 0.0
        assert probe.cka[g] == pytest.approx(1.0, abs=1e-6)
    assert probe.change["head"] > 0  # the kept source head was trained
    tuned = analyse_run(runs["lp_ft"], max_samples=64, n_saliency=2)
    assert tuned.change is not None and all(tuned.change[g] > 0 for g in ("conv1", "conv2", "fc"))
    assert tuned.saliency is not None and 1 <= len(tuned.saliency) <= 4


def test_views_that_cannot_be_built_are_skipped_with_a_note(runs: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / "orphan"
    shutil.copytree(runs["lp_ft"], moved)
    cfg = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**cfg, "source": str(tmp_path / "gone")}))
    view = analyse_run(moved, max_samples=32, n_saliency=0)
    assert view.change is None and view.cka is None
    assert any("not found" in n for n in view.notes)
    out = write_html_report([runs["src"]], tmp_path / "one.html", max_samples=32, n_saliency=2)
    text = out.read_text(encoding="utf-8")
    assert "pretrain run" in text and 'id="comparison"' not in text
    assert 'id="saliency"' in text and len(IMG.findall(text)) == 3  # curves, confusion, saliency


def test_report_subcommand(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="transferkit")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli" / "r.html"
    argv = ["report", str(runs["lp_ft"]), "--out", str(out), "--saliency", "0", "--max-samples", "32"]
    args = parser.parse_args(argv)
    assert run(args) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.stat().st_size > 10_000
    assert run(argparse.Namespace(command="pretrain")) is None
    with pytest.raises(CheckpointError, match="no such run directory"):
        run(parser.parse_args(["report", str(tmp_path / "missing"), "--out", str(out)]))


def test_transferkit_report_command_line(runs: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.cli import build_parser, main

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "report" not in commands:
        pytest.skip("`report` is not wired into transferkit.cli yet")
    out = tmp_path / "r.html"
    assert main(["report", str(runs["probe"]), "--out", str(out), "--saliency", "1"]) == 0
    assert out.exists() and f"report: {out}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transferkit: error:") and "no such run directory" in err and "\n" not in err


def test_report_subcommand_parser_imports_no_torch_or_matplotlib() -> None:
    code = ("import sys, argparse; from transferkit.report.cli import add_parsers; "
            "add_parsers(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]"  # `transferkit --help` stays fast with the command wired in


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found; CI must install it (scripts/ensure_chromium.sh)")
        pytest.skip("chromium not installed (scripts/ensure_chromium.sh installs it); runs in CI")
    shot = tmp_path / "report.png"
    cmd = [chromium, *BROWSER_FLAGS, f"--screenshot={shot}", "--window-size=1280,2400",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", report.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console  # the page has no scripts: any console message is a load error
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    colors = img.getcolors(maxcolors=1 << 22) or []
    assert len(colors) > 200, "screenshot is (nearly) blank"
    assert max(c for c, _ in colors) < 0.8 * img.width * img.height  # not one flat colour

    # every <img> decoded (naturalWidth > 0): a copy of the page with a probe that runs on load
    n_img = len(IMG.findall(report.read_text(encoding="utf-8")))
    probe = tmp_path / "probe.html"
    probe_js = ("<script>addEventListener('load',()=>{const i=[...document.images];document.body.setAttribute("
                "'data-images-ok',i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length)})</script>")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", probe_js + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *BROWSER_FLAGS, "--dump-dom", f"--user-data-dir={tmp_path / 'profile2'}",
                          probe.as_uri()], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'data-images-ok="{n_img}/{n_img}"' in dom.stdout
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom.stdout
