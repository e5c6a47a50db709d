"""ONNX files of a trained emissivity model, with the input normalisation inside the graph:
``emis_model_TAG.onnx`` (:func:`export_onnx`) and, for v2, the per-channel graph
``emis_model_TAG_channel.onnx`` (:func:`export_onnx_channel`) with the polarisation code and the
scan angle as inputs (cross-track sounders' QV / QH channels). Torch is imported lazily.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel


ONNX_MISSING = (
    "the ONNX files need the onnx package; install it with pip install 'empirical-seaice[export]' (make demo does)"
)
"""What a run without the onnx package is told (torch's ONNX export needs it)."""


def onnx_available() -> bool:
    """Whether the onnx package, which torch's ONNX export needs, imports (False where it is missing, or
    installed but broken: torch would wrap that failure in its own ``OnnxExporterError``)."""
    try:
        import onnx  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or broken: either way no ONNX file
        return False
    return True


def _network_vh(em: Any, t_ref: float, t_scale: float, t_skin_k, props, freq_ghz, zenith_deg):
    """``(e_V, e_H)`` of the v2 network ``em`` in the graph: the formula of
    ``NetworkEmissivity.emissivity_vh``, written with tensor inputs only so that the trace keeps
    ``freq_ghz`` (and ``zenith_deg``) inputs of the graph."""
    import torch

    x_t = torch.clamp(t_ref - t_skin_k, min=0.0) / t_scale
    cols = [x_t.unsqueeze(-1), props]
    if zenith_deg is not None:
        cols.append(torch.cos(zenith_deg * (math.pi / 180.0)).unsqueeze(-1))
    cols.append((freq_ghz / em.freq_scale_ghz).unsqueeze(-1))
    return torch.sigmoid(em.output(torch.sigmoid(em.hidden(torch.cat(cols, dim=-1)))))


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
            return _network_vh(self.em, t_ref, t_scale, t_skin_k, props, freq_ghz, zenith_deg)

    class V1(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.em = em

        def forward(self, t_skin_k, props):
            x_t = torch.clamp(t_ref - t_skin_k, min=0.0) / t_scale
            return self.em(x_t, props)

    n = 3
    if model.version == "v2":
        wrapper: torch.nn.Module = V2()
        args: tuple[torch.Tensor, ...] = (torch.full((n,), 260.0), torch.zeros(n, nprop), torch.full((n,), 37.0))
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
    if not onnx_available():
        raise SeaIceError(f"--export: {ONNX_MISSING}")
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
            vh = _network_vh(self.em, t_ref, t_scale, t_skin_k, props, freq_ghz, zenith_deg)
            c2 = torch.cos(scan_angle_deg * (math.pi / 180.0)) ** 2
            w_v = torch.where(
                polarisation == 2,
                c2,
                torch.where(polarisation == 3, 1.0 - c2, (polarisation == 0).to(c2.dtype)),
            )
            return torch.lerp(vh[:, 1], vh[:, 0], w_v)

    n = 3
    args: tuple[torch.Tensor, ...] = (
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
    with atomic_path(path) as tmp:
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
    return path


__all__ = ["export_onnx", "export_onnx_channel"]
