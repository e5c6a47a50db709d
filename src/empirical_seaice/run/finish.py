"""What training runs and retrievals both do around the fit: diagnostics and the state files.

- :func:`initial_diagnostics`: simulate every observation before the fit,
  ``tbsim_initial_TAG.nc``, the cost and departures before;
- :func:`final_diagnostics`: simulate after the fit, ``tbobs``, ``tbsim``,
  ``ice_emis``, the cost and departures after, the truth scores on a twin;
- :func:`write_state_files`: ``seaice_TAG.nc``, ``properties_grid_TAG.nc``,
  ``properties_obs_TAG.nc`` from the trained state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from empirical_seaice.io import outputs as out
from empirical_seaice.model.operator import HybridNetwork, ObservationTensors
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag


def initial_diagnostics(
    network: HybridNetwork, data: ObservationTensors, obs: Observations, path: Path, nobs_total: int, result: Any
) -> Path:
    """Simulate every observation before the fit; fill ``result.cost_before`` and
    ``.departures_before``; write ``tbsim_initial`` to ``path`` and return it."""
    sim = diag.simulate(network, data, obs.nobs)
    result.cost_before = diag.full_cost(network, obs, sim, nobs_total)
    result.departures_before = diag.departure_stats(obs, sim.tb)
    return out.write_tb(path, sim.tb, obs.basis, "tbsim_initial", obs.mask)


def final_diagnostics(
    network: HybridNetwork,
    data: ObservationTensors,
    obs: Observations,
    background: BackgroundMaps,
    data_dir: Path,
    output: Path,
    tag: str,
    nobs_total: int,
    result: Any,
):
    """Simulate every observation with the trained model and state; write ``tbobs``, ``tbsim`` and
    ``ice_emis``; fill ``result.cost_after``, ``.departures_after``, ``.files`` and, when ``data_dir``
    holds a twin truth, ``.truth``. Returns the truth (None without one)."""
    from empirical_seaice.io.truth import read_truth

    basis = obs.basis
    sim = diag.simulate(network, data, obs.nobs)
    result.cost_after = diag.full_cost(network, obs, sim, nobs_total)
    result.departures_after = diag.departure_stats(obs, sim.tb)
    result.files.append(out.write_tbobs(out.output_path(output, "tbobs", tag), obs, background.lon, background.lat))
    result.files.append(out.write_tb(out.output_path(output, "tbsim", tag), sim.tb, basis, "tbsim", obs.mask))
    result.files.append(out.write_ice_emis(out.output_path(output, "ice_emis", tag), sim.emis_ice, basis, obs.mask))
    truth = read_truth(data_dir, obs)
    if truth is not None:
        result.truth = diag.truth_scores(
            obs,
            background,
            network.state.sic_array(),
            sim.emis_ice,
            truth,
            network.bias_ice_k.detach().cpu().numpy(),
            network.bias_ocean_k.detach().cpu().numpy(),
        )
    return truth


def write_state_files(
    network: HybridNetwork,
    obs: Observations,
    background: BackgroundMaps,
    output: Path,
    tag: str,
    steps_per_day: int,
) -> list[Path]:
    """``seaice_TAG.nc``, ``properties_grid_TAG.nc`` and ``properties_obs_TAG.nc`` of the trained state."""
    st = network.state
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, steps_per_day)
    return [
        out.write_seaice(
            out.output_path(output, "seaice", tag),
            st.sic_array(),
            jd,
            background.lon,
            background.lat,
            nlag=st.nlag,
            step_days=1.0 / steps_per_day,
        ),
        out.write_properties_grid(
            out.output_path(output, "properties_grid", tag),
            st.grid_properties_array(),
            jd[st.nlag :],
            background.lon,
            background.lat,
            step_days=1.0 / steps_per_day,
        ),
        out.write_properties_obs(out.output_path(output, "properties_obs", tag), st.obs_properties_array()),
    ]


__all__ = ["initial_diagnostics", "final_diagnostics", "write_state_files"]
