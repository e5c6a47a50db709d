"""The file ``ice_emis_grid_TAG.nc`` of the gridded ice emissivity (:func:`write_gridded_emissivity`):
CF-1.10 conventions (:mod:`empirical_seaice.io.cf`); time the first dimension, named ``time`` (a
coordinate variable ``time(time)``: what CDO needs to read the file); chunked (one step per chunk) and
zlib-compressed; written one step at a time so a year of a large grid never has to be in memory at
once. The inputs and the model's evaluation on the grid are in :mod:`.gridded`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cf, chunk_writer
from empirical_seaice.io.grid_cells import grid_cells
from empirical_seaice.io.output_writer import drain_writes, write_behind
from empirical_seaice.io.transaction import atomic_path
from empirical_seaice.products.gridded import GridEvaluator, GridInputs, channel_frequencies
from empirical_seaice.sensors import POL_NAMES
from empirical_seaice.threads import torch_threads

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel
    from empirical_seaice.products.export import Provenance
    from empirical_seaice.sensors import ChannelBasis


def write_gridded_emissivity(
    path: Path,
    emissivity: EmissivityModel,
    model: ModelConfig,
    basis: ChannelBasis,
    inputs: GridInputs,
    *,
    channels: Sequence[str] | None = None,
    freq_ghz: Sequence[float] | None = None,
    provenance: Provenance | None = None,
    complevel: int = cf.COMPLEVEL,
) -> Path:
    """Write ``ice_emis_grid_TAG.nc`` (the module docstrings here and of :mod:`.gridded`).

    Variables (dims): ``ice_emis`` (time, grid, channel) for channels, or
    ``ice_emis_v``/``ice_emis_h`` (time, grid, frequency) for frequencies;
    ``seaice`` (time, grid); ``properties`` (time, grid, prop);
    ``properties_obs_mean`` (time, grid, prop_obs); ``nobs_cell`` (time, grid);
    ``t_skin`` (time, grid); ``lon``, ``lat`` (grid); ``time``, ``time_bnds``
    (time[, nv]); ``julian_day`` (time); ``channel_name``, ``frequency``,
    ``polarisation`` (channel) or ``frequency`` (frequency). The in-memory inputs are (grid, step[, x]);
    each step's chunk (1, grid[, x]) holds the same values in the same order as the (grid, 1[, x]) chunk
    of the (grid, step) layout before, so no array is transposed whole.

    Raises
    ------
    SeaIceError
        An unknown channel, both or neither of channels/frequencies wrongly
        combined, frequencies with a v1 model, or inputs of the wrong shape.
    """
    import netCDF4

    _check_request(model, basis, channels, freq_ghz)
    _check_inputs(inputs, emissivity)
    path = Path(path)
    chan_list = list(basis.channel_names if channels is None else channels)
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
            w = _GridWriter(ds, inputs, complevel)
            w.header(model, provenance)
            w.coordinates()
            # the (time, grid) state first: CDO (2.1) reads a (time, grid, x) variable only once a (time, grid)
            # one defined before it has made ``grid`` the horizontal axis (else "Unsupported array structure")
            state = w.state_variables()
            if freq_ghz is not None:
                out_vars = w.frequency_outputs(freq_ghz)
            else:
                out_vars = w.channel_outputs(basis, chan_list, model)
        # The steps: whole chunks (one step each, (1, grid[, x])), compressed on worker threads while the
        # next step is evaluated (io.chunk_writer; else by the netCDF library on its write-behind thread).
        if chunk_writer.AVAILABLE:
            writer = chunk_writer.ChunkWriter(tmp, out_vars + state)
            ok = False
            try:
                _write_steps(writer.write_chunk, emissivity, model, basis, inputs, chan_list, freq_ghz, out_vars, state)
                ok = True
            finally:
                writer.close(abort=not ok)
        else:
            with netCDF4.Dataset(tmp, "a") as ds:

                def put(name: str, offset: tuple[int, ...], values: np.ndarray) -> None:
                    key = (slice(offset[0], offset[0] + 1),) + (slice(None),) * (len(offset) - 1)
                    write_behind(ds[name], key, np.ascontiguousarray(values)[None])

                try:
                    _write_steps(put, emissivity, model, basis, inputs, chan_list, freq_ghz, out_vars, state)
                except BaseException:  # the step's error is the one to report, not a queued write's
                    with contextlib.suppress(Exception):
                        drain_writes()
                    raise
                drain_writes()  # every step is in the file before it closes
    return path


def _check_request(
    model: ModelConfig, basis: ChannelBasis, channels: Sequence[str] | None, freq_ghz: Sequence[float] | None
) -> None:
    """Channels or frequencies, not both; frequencies only for v2; only the run's channels."""
    if channels is not None and freq_ghz is not None:
        raise SeaIceError("gridded emissivity: give channels or frequencies, not both")
    if freq_ghz is not None and model.version != "v2":
        raise SeaIceError("gridded emissivity: arbitrary frequencies need the v2 model (v1 has per-channel outputs)")
    if channels is not None:
        bad = [c for c in channels if c not in basis.channel_index]
        if bad:
            raise SeaIceError(
                f"gridded emissivity: channel(s) {', '.join(bad)} not in the run's channels "
                f"({', '.join(basis.channel_names)})"
            )


def _check_inputs(inputs: GridInputs, emissivity: EmissivityModel) -> None:
    """Every input array on the (grid, step) of the SIC; as many state variables as the model takes."""
    ng, ns = inputs.ngrid, inputs.nstep
    npg, npo = inputs.props_grid.shape[-1], inputs.props_obs_mean.shape[-1]
    for name, arr, shape in (
        ("t_skin_map_k", inputs.t_skin_map_k, (ng, ns)),
        ("props_grid", inputs.props_grid, (ng, ns, npg)),
        ("props_obs_mean", inputs.props_obs_mean, (ng, ns, npo)),
        ("nobs_cell", inputs.nobs_cell, (ng, ns)),
        ("time_bounds_jd", inputs.time_bounds_jd, (ns, 2)),
    ):
        if np.shape(arr) != shape:
            raise SeaIceError(f"gridded emissivity: {name} has shape {np.shape(arr)}, expected {shape}")
    if npg + npo != emissivity.nprop:
        raise SeaIceError(f"gridded emissivity: {npg} + {npo} state variables, the model takes {emissivity.nprop}")


class _GridWriter:
    """The steps of writing ``ice_emis_grid_TAG.nc`` into an open netCDF4 dataset: header and
    dimensions, coordinates, the emissivity variables (by frequency or by channel), the state
    variables, then one step at a time."""

    def __init__(self, ds: Any, inputs: GridInputs, complevel: int):
        self.ds = ds
        self.inputs = inputs
        self.ng, self.ns = inputs.ngrid, inputs.nstep
        self.npg, self.npo = inputs.props_grid.shape[-1], inputs.props_obs_mean.shape[-1]
        self.zl: dict[str, Any] = dict(zlib=True, complevel=complevel)
        self.cell_measures: dict[str, str] = {}
        """``cell_measures`` of the variables on the grid, once :meth:`coordinates` wrote the cells."""

    def var(self, name, dtype, dims, units, long_name, chunks=None, **attrs):
        """A variable (float32: NaN fill), chunked and compressed when ``chunks`` (grid vectors of a
        large grid always)."""
        if chunks is None and self.ng * 4 >= cf.COMPRESS_MIN_BYTES and dims == ("grid",):
            chunks = (self.ng,)
        v = self.ds.createVariable(
            name,
            dtype,
            dims,
            chunksizes=chunks,
            fill_value=np.nan if dtype == "f4" else None,
            **(self.zl if chunks else {}),
        )
        v.units = units
        v.long_name = long_name
        if "grid" in dims and name not in ("lon", "lat", cf.CELL_AREA):
            attrs = {**self.cell_measures, **attrs}
        for k, a in attrs.items():
            v.setncattr(k, a)
        return v

    def header(self, model: ModelConfig, provenance: Provenance | None) -> None:
        """CF global attributes with the provenance, the model version, the dimensions."""
        ds = self.ds
        attrs = cf.global_attributes(
            "gridded sea ice microwave emissivity (empirical state method, Geer 2024 JAMES)",
            comment=(
                "ice emissivity from the trained model at each grid point and step with x_T from the daily "
                "skin-temperature map, the grid empirical state P and Q = mean of the observation-space state "
                "over the cell's observations (0 where nobs_cell = 0)"
            ),
            **(provenance.attrs() if provenance is not None else {}),
        )
        for k, v in attrs.items():
            ds.setncattr(k, v)
        ds.model_version = model.version
        ds.createDimension("time", self.ns)
        ds.createDimension("grid", self.ng)
        ds.createDimension("nv", 2)
        ds.createDimension("prop", self.npg)
        ds.createDimension("prop_obs", self.npo)

    def coordinates(self) -> None:
        """``time``, ``time_bnds``, ``julian_day`` of each step; ``lon``, ``lat`` (NaN when unknown)."""
        jd = self.inputs.time_bounds_jd
        tv = self.ds.createVariable("time", "f8", ("time",))  # a coordinate variable: time(time)
        tv.setncatts(cf.time_attrs("centre of the step's 21 UTC window", bounds="time_bnds"))
        tv[:] = cf.julian_day_to_time(jd.mean(axis=1))
        self.ds.createVariable("time_bnds", "f8", ("time", "nv"))[:] = cf.julian_day_to_time(jd)
        self.var("julian_day", "f8", ("time",), "days", "Julian day at the centre of the step's window")[:] = jd.mean(1)
        lon = np.full(self.ng, np.nan) if self.inputs.lon is None else np.asarray(self.inputs.lon)
        lat = np.full(self.ng, np.nan) if self.inputs.lat is None else np.asarray(self.inputs.lat)
        cells = grid_cells(np.asarray(lon, np.float32), np.asarray(lat, np.float32))
        for name, values in (("lon", lon), ("lat", lat)):
            a = cf.lonlat_attrs(name)
            if cells is not None:
                a["bounds"] = f"{name}_bnds"
            self.var(name, "f4", ("grid",), a.pop("units"), a.pop("long_name"), **a)[:] = values
        if cells is not None:  # the grid's cells (io/grid_cells.py), as the other files on the grid have them
            self.ds.createDimension(cf.CELL_VERTICES, cells.nvertex)
            for name, values in (("lon_bnds", cells.lon_bounds), ("lat_bnds", cells.lat_bounds)):
                self.ds.createVariable(name, "f8", ("grid", cf.CELL_VERTICES), **self.zl)[:] = values
            a = cf.cell_area_attrs(cells.method)
            self.var(cf.CELL_AREA, "f8", ("grid",), a.pop("units"), a.pop("long_name"), **a)[:] = cells.area_m2
            self.cell_measures = {"cell_measures": cf.CELL_MEASURES}

    def frequency_outputs(self, freq_ghz: Sequence[float]) -> list[str]:
        """The ``frequency`` axis and ``ice_emis_v``, ``ice_emis_h`` (time, grid, frequency); their names."""
        self.ds.createDimension("frequency", len(freq_ghz))
        fv = self.ds.createVariable("frequency", "f4", ("frequency",))  # a coordinate variable: no _FillValue
        fv.setncatts(
            {"units": "GHz", "long_name": "frequency of the emissivity", "standard_name": "radiation_frequency"}
        )
        fv[:] = np.asarray(freq_ghz)
        for p in ("V", "H"):
            self.var(
                f"ice_emis_{p.lower()}",
                "f4",
                ("time", "grid", "frequency"),
                "1",
                f"sea ice surface emissivity, {p} polarisation",
                chunks=(1, self.ng, len(freq_ghz)),
                coordinates="lon lat",
                **cf.STANDARD["ice_emis"],
            )
        return ["ice_emis_v", "ice_emis_h"]

    def channel_outputs(self, basis: ChannelBasis, chan_list: list[str], model: ModelConfig) -> list[str]:
        """The ``channel`` axis (name, polarisation, the model's frequency input) and ``ice_emis``
        (time, grid, channel); its name."""
        ds = self.ds
        nch = len(chan_list)
        ds.createDimension("channel", nch)
        freq, pol, sens = channel_frequencies(basis, chan_list, model)
        _char_variable(ds, "channel_name", "channel", chan_list, "channel name", **cf.STANDARD["channel_name"])
        _char_variable(
            ds,
            "polarisation",
            "channel",
            [POL_NAMES[p] for p in pol],
            "polarisation (V, H; QV / QH: a cross-track sounder's channel, evaluated at nadir where it is V / H)",
        )
        fv = self.var(
            "frequency",
            "f4",
            ("channel",),
            "GHz",
            "frequency given to the model for the channel (on the first run sensor having it, "
            f"'{model.network_frequencies}' convention)",
        )
        fv[:] = freq
        fv.sensor = " ".join(sens)
        self.var(
            "ice_emis",
            "f4",
            ("time", "grid", "channel"),
            "1",
            "sea ice surface emissivity",
            chunks=(1, self.ng, nch),
            coordinates="lon lat channel_name",
            **cf.STANDARD["ice_emis"],
        )
        return ["ice_emis"]

    def state_variables(self) -> list[str]:
        """``seaice``, ``t_skin``, ``properties``, ``properties_obs_mean``, ``nobs_cell`` (time, grid[, prop]);
        the names of those with values (no ``properties`` without a grid state)."""
        ng, cg = self.ng, (1, self.ng)
        out = {
            "seaice": self.var(
                "seaice",
                "f4",
                ("time", "grid"),
                "1",
                "sea ice concentration",
                chunks=cg,
                coordinates="lon lat",
                **cf.STANDARD["sic"],
            ),
            "t_skin": self.var(
                "t_skin",
                "f4",
                ("time", "grid"),
                "K",
                "daily skin temperature (input of x_T)",
                chunks=cg,
                coordinates="lon lat",
                **cf.STANDARD["t_skin"],
            ),
            "properties": self.var(
                "properties",
                "f4",
                ("time", "grid", "prop"),
                "1",
                "grid empirical state P",
                chunks=(1, ng, max(self.npg, 1)),
                coordinates="lon lat",
            ),
            "properties_obs_mean": self.var(
                "properties_obs_mean",
                "f4",
                ("time", "grid", "prop_obs"),
                "1",
                "mean over the cell's observations of the observation-space empirical state Q (0 if none)",
                chunks=(1, ng, max(self.npo, 1)),
                coordinates="lon lat",
            ),
        }
        v_n = self.ds.createVariable("nobs_cell", "i4", ("time", "grid"), chunksizes=cg, **self.zl)
        v_n.units = "1"
        v_n.long_name = "number of observations of the cell"
        v_n.coordinates = "lon lat"
        v_n.setncatts(self.cell_measures)
        out["nobs_cell"] = v_n
        empty = {"properties": self.npg == 0, "properties_obs_mean": self.npo == 0}
        return [name for name in out if not empty.get(name, False)]


_STEP_BLOCK = 16
"""Steps whose inputs are made step-major at a time (:func:`_step_major`)."""


def _step_major(arr: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Steps ``t0 .. t1 - 1`` of a (grid, step, ...) array as a contiguous (step, grid, ...) copy: one
    pass that reads each grid point's steps together, instead of a strided gather of every grid
    point for each step (the same values)."""
    return np.ascontiguousarray(np.swapaxes(np.asarray(arr)[:, t0:t1], 0, 1))


def _write_steps(put, emissivity, model, basis, inputs: GridInputs, chan_list, freq_ghz, out_vars, state) -> None:
    """Evaluate the model at each step and give each variable's chunk of the step (one step, every
    grid point) to ``put(name, offset, values)``. The steps are evaluated on worker threads (one fewer
    than the chunk writer's compressing threads, at least one, :func:`empirical_seaice.io.chunk_writer.threads`:
    torch releases the GIL in its operations), each step on one torch thread, exactly as alone, while
    this thread hands the finished ones on in order. (On two cores, two steps at once on two torch threads
    each, beside two compressing threads, took 1.20-1.26 s on the benchmark twin against 0.98-1.04 s so:
    benchmarks/results.md.) The values do not depend on ``--threads``."""
    by_freq = freq_ghz is not None
    evaluate = GridEvaluator(emissivity, model, basis, channels=None if by_freq else chan_list, freq_ghz=freq_ghz)
    arrays = {
        "seaice": inputs.sic,
        "t_skin": inputs.t_skin_map_k,
        "properties": inputs.props_grid,
        "properties_obs_mean": inputs.props_obs_mean,
        "nobs_cell": inputs.nobs_cell,
    }

    needed = {"t_skin", "properties", "properties_obs_mean", *state}  # the model's inputs and the written state

    def step(block: dict[str, np.ndarray], k: int) -> np.ndarray:
        props = np.concatenate([block["properties"][k], block["properties_obs_mean"][k]], axis=-1)
        return evaluate(block["t_skin"][k], props)

    import torch

    workers = max(1, chunk_writer.threads() - 1)
    # each worker on one torch thread, set once (torch's count is also process-wide: a save and restore
    # per step in two workers at once could leave the wrong one), the run's count put back afterwards
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(torch.get_num_threads()))
        pool = stack.enter_context(
            ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="grid-steps", initializer=torch.set_num_threads, initargs=(1,)
            )
        )
        for t0 in range(0, inputs.nstep, _STEP_BLOCK):
            t1 = min(t0 + _STEP_BLOCK, inputs.nstep)
            block = {name: _step_major(a, t0, t1) for name, a in arrays.items() if name in needed}
            futures = [pool.submit(step, block, k) for k in range(t1 - t0)]
            for k, fut in enumerate(futures):
                t, e = t0 + k, fut.result()
                if by_freq:  # V and H
                    put(out_vars[0], (t, 0, 0), e[..., 0])
                    put(out_vars[1], (t, 0, 0), e[..., 1])
                else:
                    put(out_vars[0], (t, 0, 0), e)
                for name in state:
                    values = block[name][k]
                    put(name, (t, 0, 0)[: 2 if values.ndim == 1 else 3], values)


def _char_variable(ds, name: str, dim: str, values: Sequence[str], long_name: str, **attrs) -> None:
    """A fixed-length NetCDF ``char`` variable (dim, <name>_strlen) holding ``values``."""
    import netCDF4

    n = max(1, max((len(v) for v in values), default=1))
    ds.createDimension(f"{name}_strlen", n)
    v = ds.createVariable(name, "S1", (dim, f"{name}_strlen"))
    v.long_name = long_name
    for k, a in attrs.items():
        v.setncattr(k, a)
    v._Encoding = "utf-8"
    v[:] = netCDF4.stringtochar(np.array(list(values), dtype=f"S{n}"))


__all__ = ["write_gridded_emissivity"]
