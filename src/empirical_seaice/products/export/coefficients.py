"""The self-describing NetCDF coefficient file ``emis_model_TAG.nc`` of a trained emissivity model:
its format name and version, the provenance attributes, the writer and the reader.

The reader uses netCDF4 only (no xarray, no torch), so that the numpy evaluator
(:mod:`.numpy_model`) runs anywhere; the writer imports xarray lazily.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cf
from empirical_seaice.io.cf import code_version
from empirical_seaice.io.transaction import atomic_path
from empirical_seaice.sensors import POL_NAMES, network_frequency_table

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel
    from empirical_seaice.sensors import ChannelBasis

FORMAT_NAME = "empirical_seaice emissivity model coefficients"
FORMAT_VERSION = 1
"""Version of the coefficient-file layout (attribute ``format_version``)."""

ACTIVATIONS = ("identity", "sigmoid")
"""Activation names the coefficient file may use."""


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
    extra: Mapping[str, str | int] = field(default_factory=dict)
    """More attributes: integers (``stepstart``, ``nsteps``, ``nobs``) stay integers, as in the other files."""

    def attrs(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {
            "run_tag": self.tag,
            "preset": self.preset,
            "training_sensors": " ".join(self.sensors),
            "training_period_start": self.period_start,
            "training_period_end": self.period_end,
            "training_data": self.data,
            "code_version": code_version(),
            "date_created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        out.update({str(k): v if isinstance(v, int) else str(v) for k, v in self.extra.items()})
        return out


def julian_day_to_iso(jd: float) -> str:
    """Astronomical Julian day -> ISO date (UTC) of that instant, e.g. 2459000.5 -> '2020-05-31'."""
    epoch = _dt.datetime(2000, 1, 1, 12, tzinfo=_dt.timezone.utc)  # JD 2451545.0
    return (epoch + _dt.timedelta(days=float(jd) - 2451545.0)).date().isoformat()


def _atomic_netcdf(ds: Any, path: Path) -> Path:
    """``ds`` written atomically, its coordinates of no data variable (the channel and sensor tables) as
    variables: xarray would list them in a global ``coordinates`` attribute, which CF does not define."""
    from empirical_seaice.io.output_writer import orphans_as_variables

    path = Path(path)
    ds = orphans_as_variables(ds)
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
    names = model.input_names()
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
    equation = f"z = [{', '.join(names)}]; " + (
        "h = sigmoid(hidden_weight @ z + hidden_bias); (e_V, e_H) = sigmoid(output_weight @ h + output_bias); "
        "a V or H channel takes e_V or e_H; a cross-track sounder's QV or QH channel mixes them by the scan "
        "angle a at the satellite: QV = cos^2(a) e_V + sin^2(a) e_H, QH = sin^2(a) e_V + cos^2(a) e_H"
        + ("; cos_theta = cos(local zenith angle) of the observation" if "cos_theta" in names else "")
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


def read_coefficients(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, list[str]]]:
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


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ACTIVATIONS",
    "Provenance",
    "julian_day_to_iso",
    "write_emissivity_coefficients",
    "read_coefficients",
]
