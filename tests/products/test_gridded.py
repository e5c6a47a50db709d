"""Gridded emissivity product: values at grid points equal the per-observation
ice emissivity of the network when the inputs coincide; file layout."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import xarray as xr
from products_fixtures import make_observations

from empirical_seaice.config import PRESETS
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.products.gridded import UNIX_EPOCH_JD, cell_mean, grid_inputs, step_time_bounds
from empirical_seaice.products.gridded_file import write_gridded_emissivity


def build(version, sensors, seed=0):
    """A network on hand-made observations where each observation's T_s equals the
    daily map and its Q equals its cell's mean (two identical-Q observations per cell)."""
    preset = PRESETS[version]
    rng = np.random.default_rng(seed)
    ngrid, nstep = 5, 3
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(sensors)
    cells = [(g, t) for g in range(ngrid) for t in range(nstep) if (g + t) % 4 != 0]  # some cells empty
    ig = np.array([g for g, t in cells for _ in range(2)])
    it = np.array([t for g, t in cells for _ in range(2)])
    isn = np.arange(ig.size) % len(sensors)
    tb = np.full((ig.size, basis.nchan), 200.0)
    obs = make_observations(tb, ig, it, isn, sensors=sensors, ngrid=ngrid, nstep=nstep, lat=np.linspace(70, 85, ngrid))
    t_map = rng.uniform(230.0, 280.0, (ngrid, nstep)).astype(np.float32)
    obs.t_skin_k[:] = t_map[ig, it]
    bg = BackgroundMaps(
        sic=rng.uniform(0, 1, (ngrid, nstep + 1)).astype(np.float32),
        t_skin_map_k=t_map,
        nlag=1,
        lon=obs.lon,
        lat=obs.lat,
    )
    net = HybridNetwork(preset.model, preset.cost, basis, bg, obs.nobs, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(seed + 5)
    with torch.no_grad():
        for p in net.emissivity.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        st = net.state
        if st.props_grid is not None:
            st.props_grid.weight.copy_(torch.randn(st.props_grid.weight.shape, generator=g))
        if st.props_obs is not None:
            q_cell = torch.randn(len(cells), st.nprop_obs, generator=g)
            st.props_obs.weight.copy_(q_cell.repeat_interleave(2, dim=0))
    return net, obs, bg


@pytest.mark.parametrize("version,sensors", [("v2", ("amsr2",)), ("v2", ("gmi",)), ("v1", ("amsr2",))])
def test_gridded_values_equal_per_observation_emissivity(version, sensors, tmp_path):
    net, obs, bg = build(version, sensors)
    data = ObservationTensors(obs)
    with torch.no_grad():
        per_obs = net(data.all())["emis_ice"].numpy()
    inputs = grid_inputs(net, obs, bg)
    path = write_gridded_emissivity(tmp_path / "g.nc", net.emissivity, net.model_config, net.basis, inputs)
    with xr.open_dataset(path) as ds:
        grid = ds["ice_emis"].values  # (time, grid, channel)
        assert ds["ice_emis"].dims == ("time", "grid", "channel")
        assert list(ds["channel_name"].values) == list(obs.basis.channel_names)
        nobs_cell = ds["nobs_cell"].values
    present = obs.basis.present[0]
    got = grid[obs.istep, obs.igrid][:, present]
    np.testing.assert_allclose(got, per_obs[:, present], atol=2e-6)
    assert per_obs[:, present].std() > 0.01  # a real test: values differ between cells
    assert nobs_cell.sum() == obs.nobs and (nobs_cell == 0).sum() == 4


def test_gridded_frequencies_and_file_layout(tmp_path):
    net, obs, bg = build("v2", ("amsr2",))
    inputs = grid_inputs(net, obs, bg)
    freqs = [10.65, 55.0, 150.0]
    path = write_gridded_emissivity(
        tmp_path / "f.nc", net.emissivity, net.model_config, net.basis, inputs, freq_ghz=freqs
    )
    with xr.open_dataset(path, decode_times=False) as ds:
        ev, eh = ds["ice_emis_v"].values, ds["ice_emis_h"].values
        assert ev.shape == (3, 5, 3)  # (time, grid, frequency)
        # 10.65 GHz V on the grid = the 10v channel of the network at the cell inputs.
        g, t = 2, 1
        x = torch.tensor([max(273.0 - float(bg.t_skin_map_k[g, t]), 0.0) / 30.0])
        props = torch.cat([net.state.props_grid.weight[g * 3 + t], torch.from_numpy(inputs.props_obs_mean[g, t])])
        with torch.no_grad():
            ref = net.emissivity.emissivity_vh(x, props[None], torch.tensor([55.0])).numpy()[0]
        np.testing.assert_allclose([ev[t, g, 1], eh[t, g, 1]], ref, atol=2e-6)
        # CF time: the window of step 0 starts at jd_origin + 0.375.
        np.testing.assert_allclose(ds["time_bnds"].values[0, 0], obs.jd_origin + 0.375 - UNIX_EPOCH_JD)
        assert ds["time"].attrs["units"].startswith("days since 1970")
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert ds["seaice"].attrs["standard_name"] == "sea_ice_area_fraction"
        np.testing.assert_allclose(ds["seaice"].values, net.state.sic_array()[:, 1:].T)
        np.testing.assert_allclose(ds["t_skin"].values, bg.t_skin_map_k.T)
        np.testing.assert_allclose(ds["properties_obs_mean"].values, inputs.props_obs_mean.transpose(1, 0, 2))
        np.testing.assert_array_equal(ds["nobs_cell"].values, inputs.nobs_cell.T)
    with netcdf_dataset(path) as nc:
        v = nc["ice_emis_v"]
        assert v.filters()["zlib"] and v.chunking() == [1, 5, 3]  # one step a chunk
        assert nc["time"].dimensions == ("time",) and nc["seaice"].chunking() == [1, 5]
        assert "_FillValue" not in nc["frequency"].ncattrs()  # a coordinate variable has none (CF 2.5.1)


def test_gridded_sounder_channels_are_labelled_as_they_are_evaluated(tmp_path):
    """A cross-track sounder's QV / QH channels are labelled QV / QH (before: every non-V channel "H")
    and hold e_V / e_H at the channel's frequency (nadir, where they are V / H)."""
    from empirical_seaice.products.gridded import channel_frequencies
    from empirical_seaice.sensors import POL_NAMES

    net, obs, bg = build("v2", ("amsr2", "atms"))
    inputs = grid_inputs(net, obs, bg)
    path = write_gridded_emissivity(tmp_path / "s.nc", net.emissivity, net.model_config, net.basis, inputs)
    freq, pol, _ = channel_frequencies(net.basis, list(net.basis.channel_names), net.model_config)
    with xr.open_dataset(path) as ds:
        labels = list(ds["polarisation"].values)
        emis = ds["ice_emis"].values
    assert labels == [POL_NAMES[p] for p in pol] and {"QV", "QH"} <= set(labels)
    g, t = 2, 1
    x = torch.tensor([max(273.0 - float(bg.t_skin_map_k[g, t]), 0.0) / 30.0])
    props = torch.cat([net.state.props_grid.weight[g * 3 + t], torch.from_numpy(inputs.props_obs_mean[g, t])])
    for k, label in enumerate(labels):
        with torch.no_grad():
            vh = net.emissivity.emissivity_vh(x, props[None], torch.tensor([freq[k]], dtype=torch.float32))
        want = vh.numpy()[0, 0 if label in ("V", "QV") else 1]
        np.testing.assert_allclose(emis[t, g, k], want, atol=2e-6, err_msg=f"{net.basis.channel_names[k]} {label}")


def netcdf_dataset(path):
    import netCDF4

    return netCDF4.Dataset(path)


def test_gridded_errors(tmp_path):
    net, obs, bg = build("v1", ("amsr2",))
    inputs = grid_inputs(net, obs, bg)
    em, mc, basis = net.emissivity, net.model_config, net.basis
    with pytest.raises(SeaIceError, match="need the v2 model"):
        write_gridded_emissivity(tmp_path / "x.nc", em, mc, basis, inputs, freq_ghz=[10.0])
    with pytest.raises(SeaIceError, match="not both"):
        write_gridded_emissivity(tmp_path / "x.nc", em, mc, basis, inputs, channels=["10v"], freq_ghz=[10.0])
    with pytest.raises(SeaIceError, match="183pm7v"):
        write_gridded_emissivity(tmp_path / "x.nc", em, mc, basis, inputs, channels=["183pm7v"])
    inputs.t_skin_map_k = inputs.t_skin_map_k[:, :2]
    with pytest.raises(SeaIceError, match="t_skin_map_k has shape"):
        write_gridded_emissivity(tmp_path / "x.nc", em, mc, basis, inputs)
    inputs = grid_inputs(net, obs, bg)
    inputs.props_grid = inputs.props_grid[..., :2]
    inputs.props_obs_mean = np.zeros(inputs.props_grid.shape[:2] + (0,), np.float32)
    with pytest.raises(SeaIceError, match="the model takes 3"):
        write_gridded_emissivity(tmp_path / "x.nc", em, mc, basis, inputs)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cell_mean_equals_numpys_bincount_means_bit_for_bit():
    """The compiled sums are numpy's (float64 in observation order): the means the same to the bit, 0 and a
    count of 0 in empty cells; an observation outside the grid or the steps is an error."""
    rng = np.random.default_rng(3)
    ngrid, nstep, n = 40, 30, 5000
    g, t = rng.integers(0, ngrid, n).astype(np.int32), rng.integers(0, nstep, n).astype(np.int32)
    q = rng.normal(0, 1, (n, 2)).astype(np.float32) * np.float32(1e3) ** rng.integers(-2, 3, (n, 2))
    mean, count = cell_mean(q, g, t, ngrid, nstep)
    cell = g.astype(np.int64) * nstep + t
    want_n = np.bincount(cell, minlength=ngrid * nstep)
    for j in range(2):
        s = np.bincount(cell, weights=q[:, j].astype(np.float64), minlength=ngrid * nstep)
        want = np.where(want_n > 0, s / np.maximum(want_n, 1), 0.0).astype(np.float32).reshape(ngrid, nstep)
        np.testing.assert_array_equal(mean[..., j].view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(count, want_n.reshape(ngrid, nstep))
    assert (count == 0).sum() > 10 and count.max() > 10
    for bad in ((ngrid, 0), (-1, 0), (0, nstep)):
        with pytest.raises(ValueError, match="outside"):
            cell_mean(q[:3], np.array([0, bad[0], 1]), np.array([0, bad[1], 1]), ngrid, nstep)


def test_cell_mean_and_time_bounds_hand_values():
    mean, count = cell_mean(np.array([[1.0], [3.0], [5.0]]), [0, 0, 1], [1, 1, 0], 2, 2)
    assert mean[0, 1, 0] == 2.0 and mean[1, 0, 0] == 5.0 and mean[0, 0, 0] == 0.0
    np.testing.assert_array_equal(count, [[0, 2], [1, 0]])
    np.testing.assert_allclose(
        step_time_bounds(2459000.0, 2, 2), [[2459002.375, 2459003.375], [2459003.375, 2459004.375]]
    )


@pytest.mark.parametrize("freq_ghz", [None, [10.65, 89.0]])
def test_gridded_file_by_whole_chunks_equals_the_library_write(tmp_path, monkeypatch, freq_ghz):
    """The steps compressed on worker threads and written as whole chunks (io/chunk_writer) give the
    file the netCDF library writes without it: every variable, attribute and value the same."""
    from empirical_seaice.io import chunk_writer

    net, obs, bg = build("v2", ("amsr2", "gmi"))
    inputs = grid_inputs(net, obs, bg)
    args = (net.emissivity, net.model_config, net.basis, inputs)
    direct = write_gridded_emissivity(tmp_path / "direct.nc", *args, freq_ghz=freq_ghz)
    monkeypatch.setattr(chunk_writer, "AVAILABLE", False)
    library = write_gridded_emissivity(tmp_path / "library.nc", *args, freq_ghz=freq_ghz)
    with xr.open_dataset(direct, decode_times=False) as a, xr.open_dataset(library, decode_times=False) as b:
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
        assert list(a.variables) == list(b.variables)
        assert np.isfinite(a["ice_emis_v" if freq_ghz else "ice_emis"].values).all()
    with netcdf_dataset(direct) as a, netcdf_dataset(library) as b:  # the same layout: time first, a step a chunk
        for name, v in a.variables.items():
            w = b[name]
            assert (v.dimensions, v.chunking(), v.filters()) == (w.dimensions, w.chunking(), w.filters()), name
        assert a["seaice"].dimensions == ("time", "grid") and a["seaice"].chunking() == [1, a.dimensions["grid"].size]


def test_gridded_steps_on_one_torch_thread_each_whatever_the_threads(tmp_path, monkeypatch):
    """The steps are evaluated on one thread fewer than the compressing ones (at least one), each step
    on one torch thread: the file's values are the same for any ``--threads``."""
    from empirical_seaice.io import chunk_writer
    from empirical_seaice.products import gridded_file

    net, obs, bg = build("v2", ("amsr2", "gmi"))
    inputs = grid_inputs(net, obs, bg)
    args = (net.emissivity, net.model_config, net.basis, inputs)
    seen: dict[str, list[int]] = {"workers": [], "torch": []}
    pool, evaluate = gridded_file.ThreadPoolExecutor, gridded_file.GridEvaluator.__call__

    def counted_pool(max_workers, **kwargs):
        seen["workers"].append(max_workers)
        return pool(max_workers=max_workers, **kwargs)

    def counted_evaluate(self, *a):
        seen["torch"].append(torch.get_num_threads())
        return evaluate(self, *a)

    monkeypatch.setattr(gridded_file, "ThreadPoolExecutor", counted_pool)
    monkeypatch.setattr(gridded_file.GridEvaluator, "__call__", counted_evaluate)
    before, torch_before = chunk_writer.threads(), torch.get_num_threads()
    files = []
    try:
        torch.set_num_threads(2)
        for n in (1, 2, 3):
            chunk_writer.set_threads(n)
            files.append(write_gridded_emissivity(tmp_path / f"t{n}.nc", *args))
            # the run's torch count is the process's again: a thread started now has it too
            fresh: list[int] = []
            probe = threading.Thread(target=lambda out=fresh: out.append(torch.get_num_threads()))
            probe.start()
            probe.join()
            assert (torch.get_num_threads(), fresh) == (2, [2]), n
    finally:
        chunk_writer.set_threads(before)
        torch.set_num_threads(torch_before)
    assert seen["workers"] == [1, 1, 2]
    assert set(seen["torch"]) == {1} and len(seen["torch"]) == 3 * inputs.nstep
    with xr.open_dataset(files[0]) as a:
        for f in files[1:]:
            with xr.open_dataset(f) as b:
                np.testing.assert_array_equal(a["ice_emis"].values, b["ice_emis"].values)


def test_network_vh_stays_on_the_networks_device():
    """The v2 network's (e_V, e_H) at every frequency at once equals emissivity_vh's, and computes on the
    network's own device: on the meta device (which refuses a CPU tensor in its operations, as CUDA does)
    it gives a meta tensor of (2, nfreq, n). On CUDA the frequencies were a CPU tensor, and every default
    run's gridded product failed after training there (an H200, 2026-12-04)."""
    from empirical_seaice.products.gridded import _network_vh

    net, _, _ = build("v2", ("amsr2",))
    em = net.emissivity
    freqs = np.array([10.65, 36.5, 89.0])
    x_t = torch.tensor([0.1, 0.5, 1.2])
    props = torch.randn(3, em.hidden.weight.shape[1] - 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = _network_vh(em, x_t, props, freqs)
        ref = em.emissivity_vh(x_t[:, None], props[:, None, :], torch.as_tensor(freqs, dtype=torch.float32)[None, :])
        np.testing.assert_allclose(got.numpy(), ref.permute(2, 1, 0).numpy(), atol=1e-6)  # (2, nfreq, n)
        assert got.std() > 0.01
        meta = _network_vh(em.to("meta"), x_t.to("meta"), props.to("meta"), freqs)
    assert meta.device.type == "meta" and tuple(meta.shape) == (2, 3, 3)
