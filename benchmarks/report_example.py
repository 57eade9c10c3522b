"""Make the README's report picture: a few real transfers, their HTML report, a headless screenshot.

    python benchmarks/report_example.py           # writes docs/report-example.html and docs/report-example.png
    python benchmarks/report_example.py --fresh   # train the source and the transfers again (after a default changed)

The transfers run with the library's defaults, what the CLI gives with no flags (small_cnn's lp_ft and
full recipes augment their fine-tuning batches: docs/AUGMENT.md); finished runs in runs/report-example/
are reused unless ``--fresh``. Needs Debian's chromium (scripts/ensure_chromium.sh installs it).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import transferkit  # noqa: E402
from transferkit.report.html import write_html_report  # noqa: E402
from transferkit.runs import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fresh", action="store_true", help="train the source and every transfer again")
    fresh = p.parse_args(argv).fresh
    work = ROOT / "runs" / "report-example"
    src = work / "source"
    if fresh or RunDir(src).status() != "complete":
        transferkit.pretrain("mnist5k", "small_cnn", src, epochs=8, progress="off", overwrite=True)
    runs = []
    for strategy, shots in (("linear_probe", 5), ("lp_ft", 5), ("full", 5), ("l2sp", 5), ("lp_ft", 10)):
        out = work / f"{strategy}-{shots}"
        if fresh or RunDir(out).status() != "complete":
            transferkit.transfer(str(src), "digits8", strategy=strategy, shots=shots, source_data="mnist5k",
                                 out=out, progress="off", overwrite=True)
        runs.append(out)
    html = ROOT / "docs" / "report-example.html"
    write_html_report(runs, html, title="mnist5k -> digits8: five transfers")
    png = ROOT / "docs" / "report-example.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", f"--user-data-dir={profile}", "--window-size=1280,1800",
                        f"--screenshot={png}", html.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {html} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
