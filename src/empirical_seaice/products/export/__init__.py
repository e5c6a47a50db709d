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

The model (docs/method.md step 3)
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

The modules: :mod:`.coefficients` (the coefficient file: format, provenance,
writer, reader), :mod:`.onnx_files` (the ONNX graphs), :mod:`.numpy_model`
(the numpy evaluator), :mod:`.geometry` (scan and zenith angles, the
polarisation weight, in numpy). :func:`write_export` writes the set of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from empirical_seaice.products.export.coefficients import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Provenance,
    julian_day_to_iso,
    write_emissivity_coefficients,
)
from empirical_seaice.products.export.geometry import (
    polarisation_weight_v,
    scan_angle_deg_from_zenith,
    zenith_deg_from_scan_angle,
)
from empirical_seaice.products.export.numpy_model import NumpyEmissivityModel
from empirical_seaice.products.export.onnx_files import export_onnx, export_onnx_channel

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel
    from empirical_seaice.sensors import ChannelBasis


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
    "julian_day_to_iso",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]
