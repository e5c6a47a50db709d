"""Emissivity spectra: the representative ice states by hand; the PNGs are drawn, bad spectra refused."""

from __future__ import annotations

import numpy as np
import pytest
from plot_helpers import assert_png

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots import spectra as sp


def test_plot_spectra(tmp_path):
    f = sp.SPECTRUM_FREQ_GHZ
    spectra = {
        "a": np.column_stack([0.95 - 0.001 * f, 0.85 - 0.002 * f]),
        "b": np.column_stack([0.9 - 0.0005 * f, 0.8 - 0.001 * f]),
    }
    assert_png(sp.plot_spectra(tmp_path / "s.png", f, spectra))
    with pytest.raises(SeaIceError, match="expected"):
        sp.plot_spectra(tmp_path / "s2.png", f, {"x": np.zeros((3, 2))})
    with pytest.raises(SeaIceError, match="no spectrum"):
        sp.plot_spectra(tmp_path / "s3.png", f, {})


def test_spectra_mark_trained_channels(tmp_path):
    """The trained channels are drawn: the picture differs from the same spectra without them."""
    f = sp.SPECTRUM_FREQ_GHZ
    spectra = {"x": np.column_stack([0.95 - 0.001 * f, 0.85 - 0.002 * f])}
    marked = assert_png(
        sp.plot_spectra(tmp_path / "s.png", f, spectra, trained_freqs_ghz={"amsr2": [10.65, 89.0], "gmi": [166.0]})
    )
    plain = assert_png(sp.plot_spectra(tmp_path / "p.png", f, spectra))
    assert marked.shape == plain.shape and (marked != plain).any(axis=-1).sum() > 100


def test_spectrum_groups_from_masks():
    sic = np.array([0.9, 0.95, 0.5, 1.0])
    props = np.array([[1.0, 0.0], [3.0, 0.0], [9.0, 9.0], [5.0, 2.0]])
    t = np.array([250.0, 254.0, 260.0, 240.0])
    g = sp.spectrum_groups_from_masks({"a": [True, True, True, False], "b": [False] * 4}, sic, props, t)
    ((label, (tm, pm)),) = g.items()
    assert label == "a (n=2)" and tm == 252.0  # the SIC 0.5 cell is not consolidated ice
    np.testing.assert_allclose(pm, [2.0, 0.0])


def test_spectrum_groups():
    sic = np.array([0.9, 0.95, 1.0, 0.99, 0.3, 0.85])
    props = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [9.0, 9.0], [4.0, 2.0]])
    t = np.array([250.0, 251.0, 252.0, 253.0, 270.0, 254.0])
    g = sp.spectrum_groups(sic, props, t)
    assert len(g) == 3
    total = sum(int(k.split("n=")[1].rstrip(")")) for k in g)
    assert total == 5  # the SIC 0.3 point is excluded
    low = [v for k, v in g.items() if k.startswith("lowest third of P0: P0 < ")][0]
    assert low[1][0] < 1.5 and low[0] <= 251.0
    assert sp.spectrum_groups(np.zeros(3), props[:3], t[:3]) == {}
