"""The reference evaluator of an exported emissivity model in plain numpy (float64):
:class:`NumpyEmissivityModel`, which reads only the coefficient file (:mod:`.coefficients`) and
imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.export.coefficients import ACTIVATIONS, read_coefficients
from empirical_seaice.products.export.geometry import (
    polarisation_weight_v,
    scan_angle_deg_from_zenith,
    zenith_deg_from_scan_angle,
)
from empirical_seaice.sensors import POL_QH, POL_QV


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, stable for large |x| (float64)."""
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


_ACT = {"identity": lambda x: x, "sigmoid": _sigmoid}


DEFAULT_VIEW_DEG = 55.0
"""View angle (deg) at which :meth:`NumpyEmissivityModel.emissivity_vh` evaluates a network with an
angle input when none is given (the conical imagers' view)."""


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
        return cls(*read_coefficients(Path(path)))

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
        assert self.hidden_weight is not None and self.hidden_bias is not None  # v2 files have a hidden layer
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
        first training sensor), taking e_V or e_H by its polarisation; a
        cross-track sounder's QV / QH channel at nadir, where it is V / H (as in
        the gridded product; :meth:`emissivity_sensor` takes the scan angle).
        v1: the linear model's channel outputs. ``channels`` defaults to the
        channels of ``sensor`` when it is given, else to the whole channel list.

        Raises
        ------
        SeaIceError
            A channel or sensor the file does not list.
        """
        if channels is None:
            if sensor is not None and sensor in self.sensor_names:
                row = self.channel_present[self.sensor_names.index(sensor)]
                channels = [c for c, ok in zip(self.channel_names, row, strict=True) if ok]
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
            cols.append(vh[..., 0 if self.polarisation[j] in ("V", "QV") else 1])  # QV / QH: nadir
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


__all__ = ["DEFAULT_VIEW_DEG", "NumpyEmissivityModel"]
