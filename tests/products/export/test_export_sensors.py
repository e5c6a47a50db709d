"""The export evaluates any catalogue sensor's channels, a sounder's QV/QH with the scan angle:
numpy evaluator and ONNX against the torch network built for that sensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.config import PRESETS
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import NetworkEmissivity
from empirical_seaice.products.export import (
    NumpyEmissivityModel,
    export_onnx_channel,
    scan_angle_deg_from_zenith,
    write_emissivity_coefficients,
)
from empirical_seaice.sensors import build_channel_basis, network_frequency_table


@pytest.fixture
def imager_model(tmp_path):
    """A v2 network trained (here: random weights) on imagers, exported."""
    cfg = PRESETS["v2"].model
    basis = build_channel_basis(["amsr2", "gmi"])
    em = NetworkEmissivity(3, basis, cfg.hidden, cfg.freq_scale_ghz, torch.Generator().manual_seed(5))
    with torch.no_grad():
        for p in em.parameters():
            p.mul_(3.0)
    path = write_emissivity_coefficients(tmp_path / "emis.nc", em, cfg, basis)
    return em, cfg, path


def test_numpy_evaluates_a_sounder_it_was_not_trained_on(imager_model):
    em, cfg, path = imager_model
    m = NumpyEmissivityModel.from_file(path)
    assert m.sensor_names == ["amsr2", "gmi"] and "atms" in m.catalogue().sensors
    rng = np.random.default_rng(0)
    n = 50
    t = rng.uniform(230.0, 280.0, n)
    props = rng.normal(0.0, 1.0, (n, 3))
    zenith = rng.uniform(0.0, 64.0, n)
    got = m.emissivity_sensor(t, props, "atms", zenith_deg=zenith)
    # torch: the same weights in a network built for ATMS, mixing by cos^2 of the scan angle
    atms = build_channel_basis(["atms"])
    assert cfg.network_frequencies == "reference"  # the v2 preset: 183.31 GHz for every 183 channel
    net = NetworkEmissivity(
        3, atms, cfg.hidden, cfg.freq_scale_ghz, freq_table_ghz=network_frequency_table(atms, cfg.network_frequencies)
    ).double()
    net.load_state_dict(
        {k: v.double() for k, v in em.state_dict().items() if k.startswith(("hidden", "output"))}, strict=False
    )
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    c2 = physics.scan_angle_cos2(torch.from_numpy(zenith), torch.tensor(824.0, dtype=torch.float64))
    with torch.no_grad():
        ref = net(x_t, torch.from_numpy(props), torch.zeros(n, dtype=torch.int64), c2).numpy()
    assert got.shape == (n, 13)
    np.testing.assert_allclose(got, ref, atol=1e-7)  # the network's frequency input is float32
    # at nadir QV is e_V: the 23.8 GHz QV channel equals e_V(23.8) of emissivity_vh
    nadir = m.emissivity_sensor(t, props, "atms", ["23.8qv", "50.3qh"], scan_angle_deg=0.0)
    vh = m.emissivity_vh(t, props, 23.8)
    np.testing.assert_array_equal(nadir[:, 0], vh[:, 0])
    with pytest.raises(SeaIceError, match="QV/QH channels need scan_angle_deg or zenith_deg"):
        m.emissivity_sensor(t, props, "atms")
    with pytest.raises(SeaIceError, match="unknown sensor 'mwri'"):
        m.emissivity_sensor(t, props, "mwri")
    # an imager of the catalogue that was not trained on: plain V/H at its frequencies
    ssmis = m.emissivity_sensor(t, props, "ssmisf18", ["19v", "166h"])
    np.testing.assert_allclose(ssmis[:, 1], m.emissivity_vh(t, props, 150.0)[:, 1])


def test_onnx_channel_graph_equals_numpy(imager_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    em, cfg, path = imager_model
    m = NumpyEmissivityModel.from_file(path)
    onnx_path = export_onnx_channel(tmp_path / "c.onnx", em, cfg)
    rng = np.random.default_rng(1)
    n = 40
    t = rng.uniform(230.0, 280.0, n)
    props = rng.normal(0.0, 1.0, (n, 3))
    sens = m.catalogue().sensors["atms"]
    chans = [sens.channels[k] for k in rng.integers(0, len(sens.channels), n)]
    freq = np.array([sens.channel_info[c].reference_freq_ghz for c in chans])  # the v2 preset's convention
    pol = np.array([sens.channel_info[c].pol for c in chans], dtype=np.int64)
    scan = scan_angle_deg_from_zenith(rng.uniform(0.0, 64.0, n), sens.altitude_km)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(
        None,
        {
            "t_skin_k": t.astype(np.float32),
            "props": props.astype(np.float32),
            "freq_ghz": freq.astype(np.float32),
            "polarisation": pol,
            "scan_angle_deg": scan.astype(np.float32),
        },
    )[0]
    ref = np.array(
        [m.emissivity_sensor(t[i], props[i], "atms", [chans[i]], scan_angle_deg=scan[i])[0] for i in range(n)]
    )
    assert got.shape == (n,)
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_angle_network_export_numpy_and_onnx_equal_torch(tmp_path):
    """A network with the view-angle input: the numpy evaluator and both ONNX graphs take the
    local zenith angle and agree with the torch network that trained."""
    from dataclasses import replace

    from empirical_seaice.products.export import export_onnx, zenith_deg_from_scan_angle

    cfg = replace(PRESETS["v2"].model, angle_input=True)
    basis = build_channel_basis(["amsr2", "atms"])
    em = NetworkEmissivity(
        3,
        basis,
        cfg.hidden,
        cfg.freq_scale_ghz,
        torch.Generator().manual_seed(6),
        freq_table_ghz=network_frequency_table(basis, cfg.network_frequencies),
        angle_input=True,
    )
    with torch.no_grad():
        for p in em.parameters():
            p.mul_(3.0)
    path = write_emissivity_coefficients(tmp_path / "emis.nc", em, cfg, basis)
    m = NumpyEmissivityModel.from_file(path)
    assert m.angle_input and m.nprop == 3 and m.input_names[-2:] == ["cos_theta", "f/100"]
    rng = np.random.default_rng(2)
    n = 30
    t = rng.uniform(230.0, 280.0, n)
    props = rng.normal(0.0, 1.0, (n, 3))
    zenith = rng.uniform(0.0, 64.0, n)
    got = m.emissivity_sensor(t, props, "atms", zenith_deg=zenith)
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    c2 = physics.scan_angle_cos2(torch.from_numpy(zenith), torch.tensor(824.0, dtype=torch.float64))
    mu = torch.from_numpy(np.cos(np.radians(zenith)))
    net = em.double()
    with torch.no_grad():
        ref = net(x_t, torch.from_numpy(props), torch.ones(n, dtype=torch.int64), c2, mu).numpy()
    ref = ref[:, basis.sensor_channel_map[1]]
    np.testing.assert_allclose(got, ref, atol=1e-7)
    # the scan angle alone gives the same answer (the zenith angle follows from the altitude)
    scan = scan_angle_deg_from_zenith(zenith, 824.0)
    np.testing.assert_allclose(zenith_deg_from_scan_angle(scan, 824.0), zenith, atol=1e-9)
    np.testing.assert_allclose(m.emissivity_sensor(t, props, "atms", scan_angle_deg=scan), got, atol=1e-9)
    # the file's `equation` names the input vector and the QV / QH mixing, which the evaluator follows
    eq = m.attrs["equation"]
    assert eq.startswith(f"z = [{', '.join(m.input_names)}]; ") and "cos_theta = cos(local zenith angle)" in eq
    assert "QV = cos^2(a) e_V + sin^2(a) e_H, QH = sin^2(a) e_V + cos^2(a) e_H" in eq
    sens = m.catalogue().sensors["atms"]
    chans = list(sens.channels)
    for pol, name in ((2, "QV"), (3, "QH")):
        j = next(k for k, c in enumerate(chans) if sens.channel_info[c].pol == pol)
        info = sens.channel_info[chans[j]]
        freq = info.reference_freq_ghz if m.network_frequencies == "reference" else info.freq_ghz
        vh = m.emissivity_vh(t, props, freq, zenith)
        cos2 = np.cos(np.radians(scan)) ** 2
        w = cos2 if name == "QV" else 1.0 - cos2
        np.testing.assert_allclose(got[:, j], w * vh[:, 0] + (1.0 - w) * vh[:, 1], atol=1e-12, err_msg=name)
    # AMSR2 at its 55 deg incidence
    with torch.no_grad():
        ref_a = net(
            x_t,
            torch.from_numpy(props),
            torch.zeros(n, dtype=torch.int64),
            c2,
            torch.full((n,), np.cos(np.radians(55.0)), dtype=torch.float64),
        )
    np.testing.assert_allclose(
        m.emissivity_channels(t, props, "amsr2"), ref_a.numpy()[:, basis.sensor_channel_map[0]], atol=1e-7
    )
    # a sounder's channels without a scan angle: QV / QH at nadir (e_V / e_H there), the imagers' view
    # (before, a QV channel gave e_H: 0.09 off for ATMS 23.8 GHz)
    atms = [c for c, ok in zip(m.channel_names, m.channel_present[1], strict=True) if ok]
    assert {m.polarisation[m.channel_names.index(c)] for c in atms} >= {"QV", "QH"}
    nadir = m.emissivity_sensor(t, props, "atms", atms, scan_angle_deg=np.zeros(n), zenith_deg=np.full(n, 55.0))
    np.testing.assert_allclose(m.emissivity_channels(t, props, "atms"), nadir, atol=1e-12)
    ort = pytest.importorskip("onnxruntime")
    sens = m.catalogue().sensors["atms"]
    chans = [sens.channels[k] for k in rng.integers(0, len(sens.channels), n)]
    freq = np.array([sens.channel_info[c].reference_freq_ghz for c in chans])
    pol = np.array([sens.channel_info[c].pol for c in chans], dtype=np.int64)
    sess = ort.InferenceSession(
        str(export_onnx_channel(tmp_path / "c.onnx", em, cfg)), providers=["CPUExecutionProvider"]
    )
    feeds = {
        "t_skin_k": t.astype(np.float32),
        "props": props.astype(np.float32),
        "freq_ghz": freq.astype(np.float32),
        "polarisation": pol,
        "scan_angle_deg": scan.astype(np.float32),
        "zenith_deg": zenith.astype(np.float32),
    }
    onnx_chan = sess.run(None, feeds)[0]
    expect = np.array(
        [m.emissivity_sensor(t[i], props[i], "atms", [chans[i]], zenith_deg=zenith[i])[0] for i in range(n)]
    )
    np.testing.assert_allclose(onnx_chan, expect, atol=2e-6)
    sess = ort.InferenceSession(str(export_onnx(tmp_path / "v.onnx", em, cfg)), providers=["CPUExecutionProvider"])
    vh = sess.run(None, {k: feeds[k] for k in ("t_skin_k", "props", "freq_ghz", "zenith_deg")})[0]
    np.testing.assert_allclose(vh, m.emissivity_vh(t, props, freq, zenith), atol=2e-6)
