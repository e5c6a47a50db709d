"""Regenerate the README's pictures: docs/figures/map_sic.png and docs/figures/report.png.

Runs the demo twin and the demo training (the flags of ``make demo``) with
``--plots`` in a temporary directory, copies the SIC map and takes a
screenshot of the run report ``index.html`` with headless Chromium (Debian's
``chromium`` package). Both PNGs are reduced to a 256-colour palette to stay
small (< 300 kB). Usage::

    .venv/bin/python docs/make_figures.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
DEMO_FLAGS = ["--nepochs", "25", "--batchsize", "512", "--learning-rate", "2e-3", "--ice-emis-init", "0.9"]


def _small_png(src: Path, dst: Path, width: int | None = None) -> Path:
    """Copy ``src`` to ``dst`` as a 256-colour PNG, optionally scaled to ``width`` pixels."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    if width and img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    args = p.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="seaice_figures_"))
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    data, out = work / "demo_data", work / "demo_output"
    if not (data / "truth").is_dir():
        subprocess.run([bin_dir / "seaice-twin", "--preset", "demo", "--output", data], check=True)
    subprocess.run(
        [bin_dir / "seaice-training", "--data", data, "--output", out, "--tag", "demo", *DEMO_FLAGS]
        + ["--threads", "1", "--plots", "--quiet"],
        check=True,
    )
    plots = out / "plots_demo"
    FIGURES.mkdir(exist_ok=True)
    written = [_small_png(plots / "map_sic.png", FIGURES / "map_sic.png")]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        shot = work / "report_full.png"
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={work / 'chromium'}"]
            + [f"--screenshot={shot}", "--window-size=1100,1500", (plots / "index.html").as_uri()],
            check=True,
            capture_output=True,
        )
        written.append(_small_png(shot, FIGURES / "report.png", width=880))
    else:
        print("chromium not found: docs/figures/report.png not regenerated", file=sys.stderr)
    for path in written:
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size / 1024:.0f} kB")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
