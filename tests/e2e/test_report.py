"""The run's summary files and the HTML report: content, links, and that Chromium renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from .conftest import TAG


def test_summary_json_beside_the_text_summary(trained):
    text = (trained.output / f"summary_{TAG}.txt").read_text()
    data = json.loads((trained.output / f"summary_{TAG}.json").read_text())
    assert text.strip() == trained.stdout.strip()  # the printed table, product lines included
    run = data["run"]
    assert run["tag"] == TAG and run["preset"] == "v2" and run["sensors"] == ["amsr2", "gmi", "ssmisf17"]
    assert run["epochs"] == 10 and run["nsteps"] == 3 and run["period_start"] == "2021-03-01"
    assert run["train_seconds"] > 0 and run["wall_seconds"] >= run["train_seconds"]
    assert 4000 < run["nobs"] < 8000 and run["ngrid"] == 346
    # the same numbers as the text table
    t = data["truth"]
    line = next(li for li in text.splitlines() if "SIC vs truth" in li)
    assert f"RMSE background {t['sic_rmse']['background']:.4f} -> trained {t['sic_rmse']['trained']:.4f}" in line
    assert t["sic_rmse"]["trained"] < t["sic_rmse"]["background"]
    assert data["cost"]["total"]["after"] < data["cost"]["total"]["before"]
    ch = data["channels"]["19v"]
    assert f"{ch['departure_mean_k_after']:+7.2f} /{ch['departure_std_k_after']:6.2f}" in text
    assert set(data["classic_sic_rmse"]) == {"nasa_team", "bootstrap"}


class _Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.captions, self.headings, self.cells = [], [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in = tag

    def handle_data(self, data):
        if self._in == "figcaption":
            self.captions.append(data.strip())
        elif self._in in ("h1", "h2"):
            self.headings.append(data.strip())
        elif self._in == "td":
            self.cells.append(data.strip())

    def handle_endtag(self, tag):
        self._in = None


def test_report_opens_with_the_run_facts_then_figures(products_run):
    assert products_run.stdout == ""  # --quiet
    index = products_run.output / f"plots_{TAG}" / "index.html"
    page = _Report()
    page.feed(index.read_text())
    assert page.headings[:5] == [
        f"run {TAG} report",
        "Run",
        "Scores against the truth",
        "Cost J by term",
        "Observed minus simulated TB per channel",
    ]
    assert page.headings[-1] == "Figures"
    for fact in ("v2", "amsr2 gmi ssmisf17", "2021-03-01", "2021-03-03", "10"):  # preset, sensors, dates, epochs
        assert fact in page.cells, fact
    assert any(re.fullmatch(r"0\.1\.0(\+g[0-9a-f]+)?", c) for c in page.cells)  # code version
    assert {"nasa team", "bootstrap", "trained", "background"} <= set(page.cells)
    assert len(page.images) == len(page.captions) >= 10
    for src in page.images:
        assert (index.parent / src).is_file(), src
    assert "map_sic.png" in page.images and "timeseries_extent_area.png" in page.images
    assert all(c.endswith(".") for c in page.captions)
    assert any("2021-03-02" in c for c in page.captions)  # the maps' date (middle step)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(products_run, tmp_path):
    index = products_run.output / f"plots_{TAG}" / "index.html"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*cmd, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Scores against the truth" in dom.stdout and "<figcaption>" in dom.stdout
    shot = tmp_path / "report.png"
    r = subprocess.run(
        [*cmd, f"--screenshot={shot}", "--window-size=1200,1600", index.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    from matplotlib import image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1200) and float(img[..., :3].std()) > 0.05  # not a blank page
