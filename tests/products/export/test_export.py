"""Export: the NetCDF coefficient file, the pure-numpy evaluator (no torch)
and ONNX all reproduce the torch emissivity model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from empirical_seaice.config import PRESETS, replace
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import LinearEmissivity, NetworkEmissivity, make_emissivity
from empirical_seaice.products.export import (
    FORMAT_NAME,
    NumpyEmissivityModel,
    Provenance,
    export_onnx,
    julian_day_to_iso,
    write_emissivity_coefficients,
    write_export,
)
from empirical_seaice.sensors import build_channel_basis


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 1.5)


@pytest.fixture
def v2_model():
    cfg = PRESETS["v2"].model
    basis = build_channel_basis(["amsr2", "gmi", "ssmisf17"])
    em = make_emissivity(cfg, basis)  # the reference's network frequencies (166.5, 183.31, GMI 36.5)
    assert isinstance(em, NetworkEmissivity)
    _randomise(em, 3)
    return em, cfg, basis


@pytest.fixture
def v1_model():
    cfg = PRESETS["v1"].model
    basis = build_channel_basis(["amsr2"])
    em = LinearEmissivity(cfg.nprop_grid + cfg.nprop_obs, basis)
    _randomise(em, 4)
    return em, cfg, basis


def _random_inputs(n, nprop, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(220.0, 285.0, n)  # includes T_s > 273 (x_T = 0)
    props = rng.normal(0.0, 1.0, (n, nprop))
    freq = rng.uniform(6.0, 200.0, n)
    return t, props, freq


def test_numpy_evaluator_equals_torch_v2(v2_model, tmp_path):
    em, cfg, basis = v2_model
    path = write_emissivity_coefficients(tmp_path / "emis_model_t.nc", em, cfg, basis, Provenance(tag="t"))
    m = NumpyEmissivityModel.from_file(path)
    t, props, freq = _random_inputs(2000, 3)
    got = m.emissivity_vh(t, props, freq)
    assert got.shape == (2000, 2)
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    with torch.no_grad():
        ref32 = em.emissivity_vh(x_t.float(), torch.from_numpy(props).float(), torch.from_numpy(freq).float())
        ref64 = em.double().emissivity_vh(x_t, torch.from_numpy(props), torch.from_numpy(freq))
    np.testing.assert_allclose(got, ref64.numpy(), atol=1e-12, rtol=0)
    np.testing.assert_allclose(got, ref32.numpy(), atol=1e-6, rtol=0)
    # The output spans a real range (not a saturated constant).
    assert got.std() > 0.05


def test_numpy_channels_match_torch_forward_v2(v2_model, tmp_path):
    em, cfg, basis = v2_model
    path = write_emissivity_coefficients(tmp_path / "m.nc", em, cfg, basis)
    m = NumpyEmissivityModel.from_file(path)
    t, props, _ = _random_inputs(50, 3, seed=1)
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    for s, sensor in enumerate(basis.sensor_names):
        with torch.no_grad():
            ref = em.double()(x_t, torch.from_numpy(props), torch.full((50,), s, dtype=torch.int64)).numpy()
        got = m.emissivity_channels(t, props, sensor=sensor)  # the sensor's own channels
        present = basis.present[s]
        assert got.shape == (50, int(present.sum()))
        np.testing.assert_allclose(got, ref[:, present], atol=1e-12)
    with pytest.raises(SeaIceError, match="not in the model's channels"):
        m.emissivity_channels(t, props, channels=["6.9v"])
    with pytest.raises(SeaIceError, match="not a training sensor"):
        m.emissivity_channels(t, props, sensor="amsre")
    with pytest.raises(SeaIceError, match="last dimension of 3"):
        m.emissivity_vh(t, props[:, :2], 37.0)


@pytest.mark.parametrize("convention", ["reference", "physical"])
def test_export_evaluates_channels_with_the_training_frequencies(convention, tmp_path):
    """A network trained with either frequency convention is evaluated, from its export, at the
    frequencies it was trained with (the convention is saved in the file)."""
    cfg = replace(PRESETS["v2"].model, network_frequencies=convention)
    basis = build_channel_basis(["amsr2", "gmi", "ssmisf17"])
    em = make_emissivity(cfg, basis)
    _randomise(em, 5)
    m = NumpyEmissivityModel.from_file(write_emissivity_coefficients(tmp_path / "m.nc", em, cfg, basis))
    assert m.network_frequencies == convention
    g, j = basis.sensor_names.index("gmi"), basis.channel_index["183pm7v"]
    assert m.frequency_ghz[g, j] == pytest.approx(183.31 if convention == "reference" else 190.31)
    t, props, _ = _random_inputs(20, 3, seed=2)
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    with torch.no_grad():
        ref = em.double()(x_t, torch.from_numpy(props), torch.full((20,), g, dtype=torch.int64)).numpy()
    got = m.emissivity_channels(t, props, sensor="gmi")
    np.testing.assert_allclose(got, ref[:, basis.present[g]], atol=1e-12)


def test_numpy_evaluator_v1(v1_model, tmp_path):
    em, cfg, basis = v1_model
    path = write_emissivity_coefficients(tmp_path / "m1.nc", em, cfg, basis)
    m = NumpyEmissivityModel.from_file(path)
    t, props, _ = _random_inputs(300, 3, seed=2)
    x_t = physics.normalised_temperature(torch.from_numpy(t), cfg.t_ref_k, cfg.t_scale_k)
    with torch.no_grad():
        ref = em.double()(x_t, torch.from_numpy(props)).numpy()
    np.testing.assert_allclose(m.emissivity_channels(t, props), ref, atol=1e-12)
    np.testing.assert_allclose(m.emissivity_channels(t, props, channels=["37v"])[:, 0], ref[:, 6], atol=1e-12)
    with pytest.raises(SeaIceError, match="v1"):
        m.emissivity_vh(t, props, 37.0)


def test_coefficient_file_is_self_describing(v2_model, tmp_path):
    import xarray as xr

    em, cfg, basis = v2_model
    prov = Provenance(
        tag="demo",
        preset="v2",
        sensors=basis.sensor_names,
        period_start=julian_day_to_iso(2459031.5),
        period_end="2020-07-10",
    )
    path = write_emissivity_coefficients(tmp_path / "emis_model_demo.nc", em, cfg, basis, prov)
    with xr.open_dataset(path) as ds:
        assert list(ds["input_name"].values) == ["x_T", "P0", "P1", "Q0", "f/100"]
        assert list(ds["output_name"].values) == ["e_V", "e_H"]
        assert ds["hidden_weight"].shape == (7, 5)
        assert ds.attrs["hidden_activation"] == "sigmoid" and ds.attrs["output_activation"] == "sigmoid"
        assert ds.attrs["t_ref_k"] == 273.0 and ds.attrs["t_scale_k"] == 30.0 and ds.attrs["freq_scale_ghz"] == 100.0
        assert ds.attrs["training_sensors"] == "amsr2 gmi ssmisf17"
        assert ds.attrs["training_period_start"] == "2020-07-01"
        assert ds.attrs["preset"] == "v2" and ds.attrs["run_tag"] == "demo"
        assert ds.attrs["code_version"].startswith("0.1.0")
        assert ds.attrs["format"] == FORMAT_NAME
        j = list(ds["channel_name"].values).index("37v")
        # GMI's 37 GHz as the v2 network is given it: 36.5 in the reference's convention (36.64 physical)
        assert float(ds["frequency"][1, j]) == pytest.approx(36.5)
        assert ds.attrs["network_frequencies"] == "reference"
        assert ds["polarisation"].values[j] == "V"
        np.testing.assert_allclose(ds["output_bias"].values, em.output.bias.detach().double().numpy())
    import netCDF4

    with netCDF4.Dataset(path) as nc:  # CF defines no global "coordinates" (xarray wrote the channel tables' names)
        assert "coordinates" not in nc.ncattrs()
        assert {"channel_name", "polarisation", "frequency", "sensor_name"} <= set(nc.variables)


def test_evaluator_imports_no_torch(v2_model, tmp_path):
    em, cfg, basis = v2_model
    path = write_emissivity_coefficients(tmp_path / "m.nc", em, cfg, basis)
    x_t = physics.normalised_temperature(torch.tensor([250.0]), 273.0, 30.0).double()
    with torch.no_grad():
        ref = (
            em.double()
            .emissivity_vh(
                x_t, torch.tensor([[0.3, -0.1, 0.2]], dtype=torch.float64), torch.tensor([89.0], dtype=torch.float64)
            )
            .numpy()[0]
        )
    code = (
        "import sys\n"
        "from empirical_seaice.products.export import NumpyEmissivityModel\n"
        f"m = NumpyEmissivityModel.from_file({str(path)!r})\n"
        "e = m.emissivity_vh(250.0, [0.3, -0.1, 0.2], 89.0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(repr(float(e[0])), repr(float(e[1])))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = [float(v) for v in res.stdout.split()]
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_onnx_equals_torch(v2_model, v1_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    em, cfg, basis = v2_model
    path = export_onnx(tmp_path / "m.onnx", em, cfg)
    t, props, freq = _random_inputs(1000, 3, seed=5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(
        None, {"t_skin_k": t.astype(np.float32), "props": props.astype(np.float32), "freq_ghz": freq.astype(np.float32)}
    )[0]
    x_t = physics.normalised_temperature(torch.from_numpy(t).float(), 273.0, 30.0)
    with torch.no_grad():
        ref = em.float().emissivity_vh(x_t, torch.from_numpy(props).float(), torch.from_numpy(freq).float()).numpy()
    assert got.shape == (1000, 2)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    em1, cfg1, _ = v1_model
    path1 = export_onnx(tmp_path / "m1.onnx", em1, cfg1)
    sess1 = ort.InferenceSession(str(path1), providers=["CPUExecutionProvider"])
    got1 = sess1.run(None, {"t_skin_k": t.astype(np.float32), "props": props.astype(np.float32)})[0]
    with torch.no_grad():
        ref1 = em1.float()(x_t, torch.from_numpy(props).float()).numpy()
    np.testing.assert_allclose(got1, ref1, atol=1e-5)


def test_write_export_and_file_errors(v2_model, tmp_path):
    em, cfg, basis = v2_model
    paths = write_export(tmp_path, "x", em, cfg, basis, onnx=False)
    assert [p.name for p in paths] == ["emis_model_x.nc"]
    with pytest.raises(SeaIceError, match="not found"):
        NumpyEmissivityModel.from_file(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(SeaIceError, match="not a readable NetCDF"):
        NumpyEmissivityModel.from_file(bad)
    import xarray as xr

    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(other)
    with pytest.raises(SeaIceError, match="not an emissivity coefficient file"):
        NumpyEmissivityModel.from_file(other)


def test_julian_day_to_iso():
    assert julian_day_to_iso(2451545.0) == "2000-01-01"
    assert julian_day_to_iso(2459031.5) == "2020-07-01"


def test_unknown_activation_is_reported(v2_model, tmp_path):
    import netCDF4

    em, cfg, basis = v2_model
    path = write_emissivity_coefficients(tmp_path / "m.nc", em, cfg, basis)
    with netCDF4.Dataset(path, "a") as ds:
        ds.hidden_activation = "relu6"
    with pytest.raises(SeaIceError, match="unknown activation 'relu6'"):
        NumpyEmissivityModel.from_file(path)


def test_export_without_the_onnx_package_writes_the_coefficient_file_and_says_how_to_get_onnx(
    v2_model, tmp_path, monkeypatch, caplog
):
    """``--export`` where the onnx package is missing: a one-line warning naming the package and how to
    install it, and the coefficient file (what a forecasting system reads), instead of an error after the
    run's other outputs; ``export_onnx`` called directly refuses with the same fix."""
    import logging
    import sys
    from types import SimpleNamespace

    from empirical_seaice.products.write import ProductOptions, _export

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    em, cfg, basis = v2_model
    network = SimpleNamespace(model_config=cfg, basis=basis, emissivity=em)
    with caplog.at_level(logging.WARNING):
        paths, evaluator = _export(ProductOptions(export=True), network, tmp_path, "x", None)
    assert [p.name for p in paths] == ["emis_model_x.nc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emis_model_x.nc"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "emis_model_x.nc" in warned[0]
    assert "pip install 'empirical-seaice[export]'" in warned[0]
    t, props, freq = _random_inputs(50, cfg.nprop_grid + cfg.nprop_obs)
    assert np.isfinite(evaluator.emissivity_vh(t, props, freq)).all()
    with pytest.raises(SeaIceError, match=r"--export: the ONNX files need the onnx package; install it"):
        export_onnx(tmp_path / "m.onnx", em, cfg)


def test_an_onnx_package_that_fails_to_import_counts_as_missing(tmp_path, monkeypatch):
    """An installed but broken onnx (its import raises): no ONNX files and the warning, as for a missing
    one, not torch's ``OnnxExporterError`` in the middle of the products (``find_spec`` finds such a
    package, so it cannot tell)."""
    import importlib.util
    import sys

    from empirical_seaice.products.export.onnx_files import onnx_available

    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "__init__.py").write_text("raise RuntimeError('a broken onnx build')\n")
    for name in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.util.find_spec("onnx") is not None
    assert not onnx_available()
