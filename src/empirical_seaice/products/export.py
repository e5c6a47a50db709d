"""Export of the trained emissivity model for a weather forecasting system.

Two formats:

1. A **self-describing NetCDF coefficient file** ``emis_model_TAG.nc``
   (:func:`write_emissivity_coefficients`): the layer weights and biases,
   the named inputs and their normalisations, the activation names, the
   unified channel list (frequencies per sensor, polarisations) and the
   provenance (data period, sensors, preset, code version, tag). A user
   needs nothing else to evaluate the model; :class:`NumpyEmissivityModel`
   is a reference evaluator in plain numpy that reads only that file.
2. **ONNX** ``emis_model_TAG.onnx`` (:func:`export_onnx`), with the input
   normalisation inside the graph, for runtimes that load ONNX; for v2 also
   ``emis_model_TAG_channel.onnx`` (:func:`export_onnx_channel`), the
   emissivity of one channel per row with its polarisation code and the scan
   angle as inputs (cross-track sounders' QV / QH channels).

The coefficient file carries the run's whole sensor catalogue (attribute
``sensor_catalogue``, JSON in the catalogue file format), so the channels of
*any* catalogue sensor, not only the training sensors, can be evaluated
(:meth:`NumpyEmissivityModel.emissivity_sensor`).

The model (PHYSICS.md step 3)
    ``x_T = max(t_ref - T_s, 0) / t_scale``  (t_ref = 273 K, t_scale = 30 K)

    - v2 (network, frequency as input): ``z = [x_T, P_0, .., Q_0, .., f / freq_scale]``
      (f in GHz, freq_scale = 100 GHz);
      ``h = sigmoid(W_h z + b_h)``; ``(e_V, e_H) = sigmoid(W_o h + b_o)``.
    - v1 (linear): ``z = [x_T, P_0, P_1, P_2]``; ``e_ice[c] = W_o[c] . z + b_o[c]``
      for the channels of the file's channel list.

Weights are stored in the ``torch.nn.Linear`` orientation: ``W`` (out, in).

This module imports neither torch nor xarray at import time, so that
``from empirical_seaice.products.export import NumpyEmissivityModel`` works (and is
tested) in an environment without torch; the writers import torch lazily.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cf
from empirical_seaice.io.cf import code_version
from empirical_seaice.io.transaction import atomic_path
from empirical_seaice.sensors import POL_H, POL_NAMES, POL_QH, POL_QV, POL_V, network_frequency_table

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel
    from empirical_seaice.sensors import ChannelBasis

log = logging.getLogger(__name__)

FORMAT_NAME = "empirical_seaice emissivity model coefficients"
FORMAT_VERSION = 1
"""Version of the coefficient-file layout (attribute ``format_version``)."""

ACTIVATIONS = ("identity", "sigmoid")
"""Activation names the coefficient file may use."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, stable for large |x| (float64)."""
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


_ACT = {"identity": lambda x: x, "sigmoid": _sigmoid}

EARTH_RADIUS_KM = 6371.0
"""Earth radius (km) of the scan-angle geometry (as :data:`empirical_seaice.model.physics.EARTH_RADIUS_KM`)."""


def scan_angle_deg_from_zenith(zenith_deg, altitude_km) -> np.ndarray:
    """Scan (nadir) angle ``a`` (degrees) at the satellite from the local zenith angle ``theta``.

    ``sin a = R sin(theta) / (R + h)``: numpy form of
    :func:`empirical_seaice.model.physics.scan_angle_cos2` (tested equal).
    """
    s = EARTH_RADIUS_KM * np.sin(np.deg2rad(zenith_deg)) / (EARTH_RADIUS_KM + np.asarray(altitude_km))
    return np.rad2deg(np.arcsin(s))


def polarisation_weight_v(pol: int, scan_angle_deg) -> np.ndarray:
    """``w_V`` of ``e = w_V e_V + (1 - w_V) e_H``: 1 (V), 0 (H), ``cos^2 a`` (QV), ``sin^2 a`` (QH).

    numpy form of :func:`empirical_seaice.model.physics.polarisation_weight_v` (tested equal).
    """
    c2 = np.cos(np.deg2rad(np.asarray(scan_angle_deg, dtype=np.float64))) ** 2
    if pol == POL_V:
        return np.ones_like(c2)
    if pol == POL_H:
        return np.zeros_like(c2)
    return c2 if pol == POL_QV else 1.0 - c2


@dataclass(frozen=True)
class Provenance:
    """Where a trained model comes from (written as file attributes).

    tag: run tag.  preset: "v1"/"v2".  sensors: sensors trained on.
    period_start, period_end: first/last day of the training period (ISO dates), "" if unknown.
    data: training-data location.  extra: any further attributes.
    """

    tag: str = ""
    preset: str = ""
    sensors: tuple[str, ...] = ()
    period_start: str = ""
    period_end: str = ""
    data: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def attrs(self) -> dict[str, str]:
        out = {
            "run_tag": self.tag,
            "preset": self.preset,
            "training_sensors": " ".join(self.sensors),
            "training_period_start": self.period_start,
            "training_period_end": self.period_end,
            "training_data": self.data,
            "code_version": code_version(),
            "date_created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        out.update({str(k): str(v) for k, v in self.extra.items()})
        return out


def julian_day_to_iso(jd: float) -> str:
    """Astronomical Julian day -> ISO date (UTC) of that instant, e.g. 2459000.5 -> '2020-05-31'."""
    epoch = _dt.datetime(2000, 1, 1, 12, tzinfo=_dt.timezone.utc)  # JD 2451545.0
    return (epoch + _dt.timedelta(days=float(jd) - 2451545.0)).date().isoformat()


def input_names(model: ModelConfig) -> list[str]:
    """Names of the emissivity-model inputs in order: ``x_T, P0.., Q0.., [cos_theta,] f/100`` (v2)
    or ``x_T, P0..`` (v1); ``cos_theta`` (the view angle's cosine) when the network takes the angle."""
    names = ["x_T"] + [f"P{k}" for k in range(model.nprop_grid)] + [f"Q{k}" for k in range(model.nprop_obs)]
    if model.version == "v2":
        if model.angle_input:
            names.append("cos_theta")
        names.append(f"f/{model.freq_scale_ghz:g}")
    return names


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _atomic_netcdf(ds: Any, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=cf.encoding(ds.variables))
    return path


def write_emissivity_coefficients(
    path: Path,
    emissivity: EmissivityModel,
    model: ModelConfig,
    basis: ChannelBasis,
    provenance: Provenance | None = None,
) -> Path:
    """Write the self-describing coefficient file of a trained emissivity model.

    The run's sensor catalogue (every sensor, JSON) goes into the attribute
    ``sensor_catalogue``.

    Variables: ``hidden_weight`` (hidden, input), ``hidden_bias`` (hidden)
    [v2 only]; ``output_weight`` (output, hidden|input), ``output_bias``
    (output); coordinates ``input_name``, ``output_name`` (v2: ``e_V e_H``;
    v1: the channel names); the channel list ``channel_name``,
    ``polarisation`` (channel), ``frequency`` (sensor, channel) GHz,
    ``channel_present`` (sensor, channel), ``sensor_name`` (sensor).
    Attributes: ``model_version``, ``input_normalisation``, ``t_ref_k``,
    ``t_scale_k``, ``freq_scale_ghz``, ``hidden_activation``,
    ``output_activation``, ``nprop_grid``, ``nprop_obs`` and the provenance.

    Parameters
    ----------
    path : output file (``emis_model_TAG.nc``).
    emissivity : the trained LinearEmissivity (v1) or NetworkEmissivity (v2).
    model : its ModelConfig.
    basis : the run's ChannelBasis.
    provenance : data period, sensors, preset, tag.
    """
    import xarray as xr

    sd = {k: v.detach().cpu().double().numpy() for k, v in emissivity.state_dict().items()}
    names = input_names(model)
    nin = len(names)
    v2 = model.version == "v2"
    if sd["output.weight"].shape[1] != (model.hidden if v2 else nin):
        raise ValueError(f"output.weight {sd['output.weight'].shape} does not fit inputs {names}")
    out_names = ["e_V", "e_H"] if v2 else list(basis.channel_names)
    data: dict[str, Any] = {}
    if v2:
        data["hidden_weight"] = (
            ("hidden", "input"),
            sd["hidden.weight"],
            {"long_name": "hidden layer weight W_h (torch.nn.Linear orientation: out, in)", "units": "1"},
        )
        data["hidden_bias"] = (("hidden",), sd["hidden.bias"], {"long_name": "hidden layer bias b_h", "units": "1"})
        data["output_weight"] = (
            ("output", "hidden"),
            sd["output.weight"],
            {"long_name": "output layer weight W_o (out, in)", "units": "1"},
        )
    else:
        data["output_weight"] = (
            ("output", "input"),
            sd["output.weight"],
            {"long_name": "linear layer weight W (channel, input)", "units": "1"},
        )
    data["output_bias"] = (("output",), sd["output.bias"], {"long_name": "output layer bias b_o", "units": "1"})
    coords = {
        "input_name": (("input",), np.array(names, dtype=object), {"long_name": "model input, in order"}),
        "output_name": (("output",), np.array(out_names, dtype=object), {"long_name": "model output, in order"}),
        "channel_name": (
            ("channel",),
            np.array(basis.channel_names, dtype=object),
            {"long_name": "channel of the unified channel basis of the training run"},
        ),
        "polarisation": (
            ("channel",),
            np.array([POL_NAMES[p] for p in basis.pol], dtype=object),
            {
                "long_name": "polarisation: the v2 model's e_V or e_H output; QV = cos2(a) e_V + sin2(a) e_H, "
                "QH = sin2(a) e_V + cos2(a) e_H with a the scan angle at the satellite"
            },
        ),
        "sensor_name": (("sensor",), np.array(basis.sensor_names, dtype=object), {"long_name": "training sensor"}),
        "frequency": (
            ("sensor", "channel"),
            np.asarray(network_frequency_table(basis, model.network_frequencies), dtype=np.float64),
            {
                "units": "GHz",
                "long_name": "channel frequency on each sensor as given to the v2 model (input f), "
                f"in the '{model.network_frequencies}' convention",
            },
        ),
        "channel_present": (
            ("sensor", "channel"),
            np.asarray(basis.present, dtype=np.int8),
            {"units": "1", "long_name": "1 where the sensor has the channel"},
        ),
    }
    norm = (
        f"x_T = max({model.t_ref_k:g} - T_skin[K], 0) / {model.t_scale_k:g}; "
        "P*, Q*: empirical state (dimensionless, as trained)"
        + (f"; f/{model.freq_scale_ghz:g} = frequency[GHz] / {model.freq_scale_ghz:g}" if v2 else "")
    )
    equation = (
        "h = sigmoid(hidden_weight @ z + hidden_bias); (e_V, e_H) = sigmoid(output_weight @ h + output_bias); "
        "a channel takes e_V or e_H by its polarisation"
        if v2
        else "e_ice[channel] = output_weight[channel] @ z + output_bias[channel]"
    )
    attrs = cf.global_attributes(
        "sea ice microwave emissivity model (empirical state method, Geer 2024 JAMES)",
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
    )
    attrs.update(
        {
            "model_version": model.version,
            "equation": equation,
            "inputs": ", ".join(names),
            "input_normalisation": norm,
            "t_ref_k": float(model.t_ref_k),
            "t_scale_k": float(model.t_scale_k),
            "freq_scale_ghz": float(model.freq_scale_ghz),
            "network_frequencies": model.network_frequencies,
            "nprop_grid": int(model.nprop_grid),
            "nprop_obs": int(model.nprop_obs),
            "hidden_activation": "sigmoid" if v2 else "none",
            "output_activation": "sigmoid" if v2 else "identity",
            "weight_orientation": "torch.nn.Linear: weight (out, in), y = weight @ x + bias",
            **(provenance or Provenance()).attrs(),
        }
    )
    if basis.catalogue is not None:
        attrs["sensor_catalogue"] = basis.catalogue.to_json()
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return _atomic_netcdf(ds, path)


def export_onnx(path: Path, emissivity: EmissivityModel, model: ModelConfig) -> Path:
    """Export the emissivity model to ONNX with the input normalisation in the graph.

    v2 graph: inputs ``t_skin_k`` (N,), ``props`` (N, nprop), ``freq_ghz`` (N,)
    [, ``zenith_deg`` (N,) the local zenith (view) angle when the network takes
    the angle (``ModelConfig.angle_input``)] float32 -> output ``emis_vh`` (N, 2) = (e_V, e_H).
    v1 graph: inputs ``t_skin_k`` (N,), ``props`` (N, nprop) -> ``emis`` (N, nchan).
    N is dynamic. Uses ``torch.onnx.export`` (TorchScript exporter, opset 17).
    """
    import copy
    import warnings

    import torch

    em = copy.deepcopy(emissivity).float().cpu().eval()
    nprop = model.nprop_grid + model.nprop_obs
    t_ref, t_scale = float(model.t_ref_k), float(model.t_scale_k)

    class V2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.em = em

        def forward(self, t_skin_k, props, freq_ghz, zenith_deg=None):
            # Same formula as NetworkEmissivity.emissivity_vh, written with
            # tensor inputs only so that the trace keeps freq_ghz an input.
            return _network_vh(self.em, t_skin_k, props, freq_ghz, zenith_deg)

    class V1(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.em = em

        def forward(self, t_skin_k, props):
            x_t = torch.clamp(t_ref - t_skin_k, min=0.0) / t_scale
            return self.em(x_t, props)

    def _network_vh(em, t_skin_k, props, freq_ghz, zenith_deg):
        x_t = torch.clamp(t_ref - t_skin_k, min=0.0) / t_scale
        cols = [x_t.unsqueeze(-1), props]
        if zenith_deg is not None:
            cols.append(torch.cos(zenith_deg * (math.pi / 180.0)).unsqueeze(-1))
        cols.append((freq_ghz / em.freq_scale_ghz).unsqueeze(-1))
        return torch.sigmoid(em.output(torch.sigmoid(em.hidden(torch.cat(cols, dim=-1)))))

    n = 3
    if model.version == "v2":
        wrapper: torch.nn.Module = V2()
        args = (torch.full((n,), 260.0), torch.zeros(n, nprop), torch.full((n,), 37.0))
        in_names, out_names = ["t_skin_k", "props", "freq_ghz"], ["emis_vh"]
        if getattr(em, "angle_input", False):
            args = (*args, torch.full((n,), 55.0))
            in_names.append("zenith_deg")
    else:
        wrapper = V1()
        args = (torch.full((n,), 260.0), torch.zeros(n, nprop))
        in_names, out_names = ["t_skin_k", "props"], ["emis"]
    axes = {name: {0: "n"} for name in in_names + out_names}
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),
                dynamo=False,
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=axes,
                opset_version=17,
            )
    return path


def export_onnx_channel(path: Path, emissivity: EmissivityModel, model: ModelConfig) -> Path:
    """Export a v2 model to ONNX as a per-channel emissivity with the scan angle as an input.

    Inputs (N rows, float32 unless stated): ``t_skin_k`` (N,) K, ``props``
    (N, nprop), ``freq_ghz`` (N,) the channel's network frequency,
    ``polarisation`` (N,) int64 code (0 V, 1 H, 2 QV, 3 QH),
    ``scan_angle_deg`` (N,) the scan (nadir) angle at the satellite (ignored
    for V and H) [, ``zenith_deg`` (N,) the local zenith (view) angle, when the
    network takes the angle]. Output ``emis`` (N,): ``w_V e_V + (1 - w_V) e_H`` with
    ``w_V`` of :func:`empirical_seaice.model.physics.polarisation_weight_v`.
    """
    import copy
    import warnings

    import torch

    if model.version != "v2":
        raise SeaIceError("export_onnx_channel: only the v2 network has a frequency input")
    em = copy.deepcopy(emissivity).float().cpu().eval()
    nprop = model.nprop_grid + model.nprop_obs
    t_ref, t_scale = float(model.t_ref_k), float(model.t_scale_k)

    class Channel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.em = em

        def forward(self, t_skin_k, props, freq_ghz, polarisation, scan_angle_deg, zenith_deg=None):
            x_t = torch.clamp(t_ref - t_skin_k, min=0.0) / t_scale
            cols = [x_t.unsqueeze(-1), props]
            if zenith_deg is not None:
                cols.append(torch.cos(zenith_deg * (math.pi / 180.0)).unsqueeze(-1))
            cols.append((freq_ghz / self.em.freq_scale_ghz).unsqueeze(-1))
            vh = torch.sigmoid(self.em.output(torch.sigmoid(self.em.hidden(torch.cat(cols, dim=-1)))))
            c2 = torch.cos(scan_angle_deg * (math.pi / 180.0)) ** 2
            w_v = torch.where(
                polarisation == 2,
                c2,
                torch.where(polarisation == 3, 1.0 - c2, (polarisation == 0).to(c2.dtype)),
            )
            return torch.lerp(vh[:, 1], vh[:, 0], w_v)

    n = 3
    args = (
        torch.full((n,), 260.0),
        torch.zeros(n, nprop),
        torch.full((n,), 37.0),
        torch.tensor([0, 2, 3]),
        torch.full((n,), 30.0),
    )
    in_names = ["t_skin_k", "props", "freq_ghz", "polarisation", "scan_angle_deg"]
    if getattr(em, "angle_input", False):
        args = (*args, torch.full((n,), 55.0))
        in_names.append("zenith_deg")
    axes = {name: {0: "n"} for name in [*in_names, "emis"]}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                Channel(),
                args,
                str(tmp),
                dynamo=False,
                input_names=in_names,
                output_names=["emis"],
                dynamic_axes=axes,
                opset_version=17,
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ---------------------------------------------------------------------------
# Pure-numpy evaluation
# ---------------------------------------------------------------------------


def _read_coefficients(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, list[str]]]:
    """Read variables, attributes and string coordinates with netCDF4 (no xarray, no torch)."""
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise SeaIceError(f"{path}: emissivity coefficient file not found")
    try:
        ds = netCDF4.Dataset(path)
    except OSError as exc:
        raise SeaIceError(f"{path}: not a readable NetCDF file ({exc})") from None
    with ds:
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
        if attrs.get("format") != FORMAT_NAME:
            raise SeaIceError(
                f"{path}: not an emissivity coefficient file (attribute format={attrs.get('format')!r}, "
                f"expected {FORMAT_NAME!r})"
            )
        arrays, strings = {}, {}
        for name, var in ds.variables.items():
            var.set_auto_mask(False)
            val = var[:]
            if var.dtype == str or var.dtype.kind in "SU":  # vlen strings (old files) or char arrays
                strings[name] = [str(s) for s in np.asarray(val).ravel()]
            else:
                arrays[name] = np.asarray(val, dtype=np.float64)
    return arrays, attrs, strings


DEFAULT_VIEW_DEG = 55.0
"""View angle (deg) at which :meth:`NumpyEmissivityModel.emissivity_vh` evaluates a network with an
angle input when none is given (the conical imagers' view)."""


def zenith_deg_from_scan_angle(scan_angle_deg, altitude_km: float) -> np.ndarray:
    """Local zenith angle (deg) of a footprint seen at scan (nadir) angle ``a`` from altitude h (km):
    ``sin(theta) = (R + h) sin(a) / R``, R = 6371 km (the inverse of :func:`scan_angle_deg_from_zenith`)."""
    r = EARTH_RADIUS_KM
    s = (r + float(altitude_km)) / r * np.sin(np.radians(np.asarray(scan_angle_deg, dtype=np.float64)))
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


class NumpyEmissivityModel:
    """Evaluate an exported emissivity model in plain numpy (float64).

    Reads only the coefficient file of :func:`write_emissivity_coefficients`.

    Examples
    --------
    >>> m = NumpyEmissivityModel.from_file("emis_model_demo.nc")      # doctest: +SKIP
    >>> m.emissivity_vh(t_skin_k=260.0, props=[0.1, -0.2, 0.0], freq_ghz=36.5)  # doctest: +SKIP
    array([0.93..., 0.86...])
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], strings: Mapping[str, list[str]]):
        self.version = str(attrs["model_version"])
        self.t_ref_k = float(attrs["t_ref_k"])
        self.t_scale_k = float(attrs["t_scale_k"])
        self.freq_scale_ghz = float(attrs["freq_scale_ghz"])
        # files written before the convention was recorded were trained on the physical frequencies
        self.network_frequencies = str(attrs.get("network_frequencies", "physical"))
        self.input_names = list(strings["input_name"])
        self.output_names = list(strings["output_name"])
        self.channel_names = list(strings["channel_name"])
        self.polarisation = list(strings["polarisation"])
        self.sensor_names = list(strings["sensor_name"])
        self.frequency_ghz = np.asarray(arrays["frequency"])
        self.channel_present = np.asarray(arrays["channel_present"]) > 0
        self.hidden_activation = str(attrs["hidden_activation"])
        self.output_activation = str(attrs["output_activation"])
        self.attrs = dict(attrs)
        self.output_weight = np.asarray(arrays["output_weight"])
        self.output_bias = np.asarray(arrays["output_bias"])
        self.hidden_weight = arrays.get("hidden_weight")
        self.hidden_bias = arrays.get("hidden_bias")
        if self.output_activation not in _ACT or (self.version == "v2" and self.hidden_activation not in _ACT):
            raise SeaIceError(
                f"emissivity coefficient file: unknown activation "
                f"{self.hidden_activation!r}/{self.output_activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        self.angle_input = "cos_theta" in self.input_names
        self.nprop = len(self.input_names) - (2 + int(self.angle_input) if self.version == "v2" else 1)
        self.catalogue_json = attrs.get("sensor_catalogue")

    @classmethod
    def from_file(cls, path: Path | str) -> NumpyEmissivityModel:
        """Load from ``emis_model_TAG.nc``.

        Raises
        ------
        SeaIceError
            Missing or unreadable file, or not a coefficient file.
        """
        return cls(*_read_coefficients(Path(path)))

    def normalised_temperature(self, t_skin_k: np.ndarray) -> np.ndarray:
        """``x_T = max(t_ref - T_s, 0) / t_scale`` (T_s in K)."""
        return np.maximum(self.t_ref_k - np.asarray(t_skin_k, dtype=np.float64), 0.0) / self.t_scale_k

    def _props(self, props: np.ndarray | Sequence[float], shape: tuple[int, ...]) -> np.ndarray:
        p = np.asarray(props, dtype=np.float64)
        if p.shape[-1:] != (self.nprop,):
            raise SeaIceError(
                f"props: expected a last dimension of {self.nprop} "
                f"({', '.join(self.input_names[1 : 1 + self.nprop])}), got shape {p.shape}"
            )
        return np.broadcast_to(p, (*shape, self.nprop))

    def emissivity_vh(self, t_skin_k, props, freq_ghz, zenith_deg=None) -> np.ndarray:
        """v2: ``(e_V, e_H)`` at any frequency (and view angle, for a model with an angle input).

        Parameters
        ----------
        t_skin_k : array (...,)
            Skin temperature T_s (K).
        props : array (..., nprop)
            Empirical state ``[P0, P1, Q0]`` (broadcast against the others).
        freq_ghz : array (...,)
            Frequency (GHz), ~10 to 190.
        zenith_deg : array (...,), optional
            Local zenith (view) angle (deg), used when the model takes the angle
            (:attr:`angle_input`, input ``cos_theta``); None = the imagers' 55 deg.

        Returns
        -------
        float64 array (..., 2): e_V, e_H.
        """
        if self.version != "v2":
            raise SeaIceError(
                "emissivity_vh: this is a v1 (per-channel linear) model with no frequency input; "
                "use emissivity_channels"
            )
        x_t = self.normalised_temperature(t_skin_k)
        f = np.asarray(freq_ghz, dtype=np.float64) / self.freq_scale_ghz
        mu = np.cos(np.radians(np.asarray(DEFAULT_VIEW_DEG if zenith_deg is None else zenith_deg, dtype=np.float64)))
        x_t, f, mu = np.broadcast_arrays(x_t, f, mu)
        shape = np.broadcast_shapes(x_t.shape, np.shape(props)[:-1])
        x_t, f, mu = np.broadcast_to(x_t, shape), np.broadcast_to(f, shape), np.broadcast_to(mu, shape)
        cols = [x_t[..., None], self._props(props, shape)] + ([mu[..., None]] if self.angle_input else [])
        z = np.concatenate([*cols, f[..., None]], axis=-1)
        h = _ACT[self.hidden_activation](z @ self.hidden_weight.T + self.hidden_bias)
        return _ACT[self.output_activation](h @ self.output_weight.T + self.output_bias)

    def emissivity_channels(
        self, t_skin_k, props, sensor: str | None = None, channels: Sequence[str] | None = None
    ) -> np.ndarray:
        """Ice emissivity of named channels of the file's channel list, (..., nch).

        v2: evaluated at the channel's frequency on ``sensor`` (default: the
        first training sensor), taking e_V or e_H by its polarisation. v1: the
        linear model's channel outputs. ``channels`` defaults to the channels
        of ``sensor`` when it is given, else to the whole channel list.

        Raises
        ------
        SeaIceError
            A channel or sensor the file does not list.
        """
        if channels is None:
            if sensor is not None and sensor in self.sensor_names:
                row = self.channel_present[self.sensor_names.index(sensor)]
                channels = [c for c, ok in zip(self.channel_names, row) if ok]
            else:
                channels = list(self.channel_names)
        channels = list(channels)
        unknown = [c for c in channels if c not in self.channel_names]
        if unknown:
            raise SeaIceError(
                f"channels: {', '.join(unknown)} not in the model's channels ({', '.join(self.channel_names)})"
            )
        if sensor is not None and sensor not in self.sensor_names:
            raise SeaIceError(f"sensor: {sensor!r} not a training sensor ({', '.join(self.sensor_names)})")
        idx = [self.channel_names.index(c) for c in channels]
        if self.version == "v1":
            x_t = self.normalised_temperature(t_skin_k)
            shape = np.broadcast_shapes(x_t.shape, np.shape(props)[:-1])
            z = np.concatenate([np.broadcast_to(x_t, shape)[..., None], self._props(props, shape)], axis=-1)
            out = _ACT[self.output_activation](z @ self.output_weight.T + self.output_bias)
            return out[..., idx]
        s = self.sensor_names.index(sensor) if sensor is not None else 0
        view = None
        if self.angle_input and self.catalogue_json:
            inc = self.catalogue().sensor(self.sensor_names[s], "sensor").incidence_deg
            view = inc if np.isfinite(inc) else None
        cols = []
        for j in idx:
            freq = self.frequency_ghz[s, j]
            vh = self.emissivity_vh(t_skin_k, props, freq, view)
            cols.append(vh[..., 0 if self.polarisation[j] == "V" else 1])
        return np.stack(cols, axis=-1)

    def catalogue(self):
        """The run's :class:`~empirical_seaice.sensors.SensorCatalogue` stored in the file."""
        import json

        from empirical_seaice.sensors import catalogue_from_dict

        if not self.catalogue_json:
            raise SeaIceError(
                "emissivity coefficient file: no sensor_catalogue attribute (written by an older version)"
            )
        return catalogue_from_dict(json.loads(self.catalogue_json), "emissivity coefficient file")

    def emissivity_sensor(
        self,
        t_skin_k,
        props,
        sensor: str,
        channels: Sequence[str] | None = None,
        *,
        scan_angle_deg=None,
        zenith_deg=None,
    ) -> np.ndarray:
        """v2: ice emissivity (..., nch) of any catalogue sensor's channels (default: its used channels).

        Each channel is evaluated at its network frequency on ``sensor`` in the
        model's convention (``network_frequencies``; catalogue stored in the file). A cross-track sensor's QV / QH
        channels need the scan (nadir) angle at the satellite, ``scan_angle_deg``
        (...,), or the local zenith angle ``zenith_deg`` (...,), converted with
        the sensor's altitude (:func:`scan_angle_deg_from_zenith`).

        Raises
        ------
        SeaIceError
            A v1 model, a sensor or channel not in the catalogue, or QV/QH
            channels without an angle.
        """
        if self.version != "v2":
            raise SeaIceError("emissivity_sensor: a v1 model has outputs for its training channels only")
        sens = self.catalogue().sensor(sensor, "sensor")
        names = list(sens.channels if channels is None else channels)
        bad = [c for c in names if c not in sens.channel_info]
        if bad:
            raise SeaIceError(f"channels: {', '.join(bad)} not channels of {sensor} ({', '.join(sens.file_channels)})")
        quasi = any(sens.channel_info[c].pol in (POL_QV, POL_QH) for c in names)
        if quasi and scan_angle_deg is None:
            if zenith_deg is None:
                raise SeaIceError(f"{sensor}: QV/QH channels need scan_angle_deg or zenith_deg")
            scan_angle_deg = scan_angle_deg_from_zenith(zenith_deg, sens.altitude_km)
        view = None
        if self.angle_input:  # the network's view angle: the local zenith angle
            if zenith_deg is not None:
                view = zenith_deg
            elif scan_angle_deg is not None and np.isfinite(sens.altitude_km):
                view = zenith_deg_from_scan_angle(scan_angle_deg, sens.altitude_km)
            elif np.isfinite(sens.incidence_deg):
                view = sens.incidence_deg
        cols = []
        for c in names:
            info = sens.channel_info[c]
            f = info.reference_freq_ghz if self.network_frequencies == "reference" else info.freq_ghz
            vh = self.emissivity_vh(t_skin_k, props, f, view)
            angle = 0.0 if scan_angle_deg is None else scan_angle_deg
            w = polarisation_weight_v(info.pol, angle)
            cols.append(w * vh[..., 0] + (1.0 - w) * vh[..., 1])  # exact e_V / e_H at w = 1 / 0
        return np.stack(np.broadcast_arrays(*cols), axis=-1)


def write_export(
    output: Path,
    tag: str,
    emissivity: EmissivityModel,
    model: ModelConfig,
    basis: ChannelBasis,
    provenance: Provenance | None = None,
    onnx: bool = True,
) -> list[Path]:
    """Write ``emis_model_TAG.nc`` (and ``emis_model_TAG.onnx``) in ``output``; returns the paths."""
    output = Path(output)
    paths = [write_emissivity_coefficients(output / f"emis_model_{tag}.nc", emissivity, model, basis, provenance)]
    if onnx:
        paths.append(export_onnx(output / f"emis_model_{tag}.onnx", emissivity, model))
        if model.version == "v2":
            paths.append(export_onnx_channel(output / f"emis_model_{tag}_channel.onnx", emissivity, model))
    return paths


__all__ = [
    "Provenance",
    "write_emissivity_coefficients",
    "export_onnx",
    "export_onnx_channel",
    "write_export",
    "scan_angle_deg_from_zenith",
    "zenith_deg_from_scan_angle",
    "polarisation_weight_v",
    "NumpyEmissivityModel",
    "input_names",
    "code_version",
    "julian_day_to_iso",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]
