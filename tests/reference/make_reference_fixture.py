"""Regenerate ``tests/reference/reference_fixture.npz`` from the ECMWF reference code.

Usage (in a throwaway environment with TensorFlow 2.15 / Keras 2, numpy, xarray, netCDF4;
TensorFlow is not a dependency of this project)::

    python tests/reference/make_reference_fixture.py \\
        --reference-v1 PATH/empirical-state-learning-seaice-emissivity-model \\
        --reference-v2 PATH/fork/model \\
        --output tests/reference/reference_fixture.npz

``--reference-v1`` is a checkout of ``ecmwf-projects/empirical-state-learning-seaice-emissivity-model``
(the directory holding ``seaice_layers.py`` and ``seaice_model.py``); ``--reference-v2`` is the
directory of the v2 code of the fork ``crisgflorez/empirical-state-learning-seaice-emissivity-model``
holding ``seaice_layers.py`` and ``seaice_sensors.py`` (``model/`` in its newest commits). Both are
imported from there: no line of the reference is copied here.

What is built (numbers are drawn from a fixed seed, so the inputs are the same on every run):

- v1: the reference's own ``seaice_model.SeaiceModel`` with the settings of its yearly training
  script (AMSR2's 10 channels, 3 grid properties, nlag 1 with weights 0.6/0.4, range prior 0.02,
  warm-ice term on, no background or false-ice prior), fed through temporary ``ifs_seaice``/
  ``ifs_tsfc`` files, then every weight set to the fixed values below.
- v2: the reference layers (``IcePropertyGrid``, ``IcePropertyObsSpace``, ``SeaiceEmisNN``,
  ``OceanEmis``, ``SeaiceFraction``, ``SurfaceRadiationTerms``, ``Specular``, ``BiasCorrection``,
  ``loss_channel_weighted``) wired as the reference model wires them, for AMSR2 + GMI + SSMIS F17
  with the sensor tables of ``seaice_sensors.SeaiceSensors``. The *original* v2 emissivity anchor
  (kept in the fork as the commented "Old implementation original") evaluates the network at an
  extra 23.8 GHz V-polarised channel for every observation and holds it above 0.8: it is reproduced
  with the fork's layer by prepending that channel (frequency 23.8, polarisation weights V = 1,
  H = 0) and anchoring output 0; outputs 1.. are the real channels. With the newest fork layer
  (``zenith`` argument) the layer is built with ``trainable=False``, which is the branch without the
  fork's zenith input; its weights are watched explicitly for the gradients.

For each version the file stores the inputs (``v1_*``/``v2_*`` observation arrays in the
reference's own units, the state and the weights), the simulated TB, the ice emissivity, every cost
term (each already divided by nobs as the reference adds it) and the gradient of the total cost
(mean observation term over the one batch of all observations + every added loss) with respect to
every trainable weight. ``tests/reference/test_reference_equivalence.py`` recomputes all of it with
this project's operator and cost.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _import_from(directory: Path, names: list[str], tag: str) -> list:
    """Import modules ``names`` from ``directory`` under fresh module names (v1 and v2 share file names)."""
    sys.path.insert(0, str(directory))
    try:
        for n in names:
            sys.modules.pop(n, None)
        mods = [importlib.import_module(n) for n in names]
    finally:
        sys.path.pop(0)
    for n in names:
        sys.modules[f"{tag}_{n}"] = sys.modules.pop(n)
    return mods


def _atmosphere(rng: np.random.Generator, nobs: int, nchan: int, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible clear and cloudy atmospheric terms, zero where a channel is absent (as the reference pads)."""

    def f(lo, hi):
        return (rng.uniform(lo, hi, (nobs, nchan)) * mask).astype(np.float32)

    return {
        "emis_water": f(0.45, 0.75),
        "tau": f(0.6, 0.98),
        "t_down_k": f(5.0, 60.0),
        "t_up_k": f(5.0, 60.0),
        "tau_cld": f(0.4, 0.95),
        "t_down_cld_k": f(10.0, 90.0),
        "t_up_cld_k": f(10.0, 90.0),
        "tb_obs_k": f(150.0, 265.0),
    }


def _sic_state(rng: np.random.Generator, ngrid: int, ncol: int) -> np.ndarray:
    """SIC values covering every piece of the priors: < 0, (0, 0.025], (0.025, 0.275), [0.275, 0.3), [0.3, 1], > 1."""
    pieces = [(-0.05, -0.001), (0.001, 0.024), (0.03, 0.27), (0.277, 0.299), (0.31, 0.99), (1.001, 1.04)]
    vals = np.concatenate([rng.uniform(lo, hi, ngrid * ncol // len(pieces) + 1) for lo, hi in pieces])
    return rng.permutation(vals)[: ngrid * ncol].reshape(ngrid, ncol).astype(np.float32)


def _t_map(rng: np.random.Generator, ngrid: int, nstep: int) -> np.ndarray:
    return rng.uniform(255.0, 278.0, (ngrid, nstep)).astype(np.float32)


def _per_obs(rng: np.random.Generator, nobs: int, ngrid: int, nstep: int) -> dict[str, np.ndarray]:
    return {
        "igrid": rng.integers(0, ngrid, nobs).astype(np.int32),
        "istep": rng.integers(0, nstep, nobs).astype(np.int32),
        "t_skin_k": rng.uniform(245.0, 276.0, nobs).astype(np.float32),
        "wind_ms": rng.uniform(0.0, 15.0, nobs).astype(np.float32),
        "cloud_fraction": rng.uniform(0.0, 1.0, nobs).astype(np.float32),
    }


def _write_maps(tmp: Path, sic: np.ndarray, t_map: np.ndarray) -> tuple[str, str]:
    import xarray as xr

    fs, ft = str(tmp / "ifs_seaice.nc"), str(tmp / "ifs_tsfc.nc")
    xr.Dataset({"SEAICE": (("grid", "lagstep"), sic)}).to_netcdf(fs)
    xr.Dataset({"TSFC": (("grid", "step"), t_map)}).to_netcdf(ft)
    return fs, ft


def _grads(tape, terms: dict, variables: dict, overrides: dict | None = None) -> dict[str, np.ndarray]:
    """``grad_<term>_<variable>`` for every term and every variable it depends on (None = does not)."""
    import tensorflow as tf

    out = {}
    for term, value in terms.items():
        tv = dict(variables, **(overrides or {}).get(term, {}))
        for name, g in zip(tv, tape.gradient(value, list(tv.values())), strict=True):
            if g is None:
                continue
            if isinstance(g, tf.IndexedSlices):
                g = tf.convert_to_tensor(g)
            out[f"grad_{term}_{name}"] = np.asarray(g, dtype=np.float32)
    return out


def _saved_model_variables(sm, tmp: Path) -> dict[str, np.ndarray]:
    """What the v1 reference's own ``SeaiceModel.save`` writes to ``models_*.nc`` for the names its
    ``load`` reads: ``saved_<name>`` (values) and ``saved_dims`` ("name:dim,dim" strings)."""
    import xarray as xr

    class History:  # the one attribute save() reads from a Keras History
        history = {"loss": [0.0]}

    sm.save(History(), "fixture", str(tmp) + "/")
    out, dims = {}, []
    with xr.open_dataset(tmp / "models_fixture.nc") as ds:
        for name in ("ice_coefs", "ice_emis", "ocean_emis_bias", "tb_bias"):
            out[f"saved_{name}"] = np.asarray(ds[name].values)
            dims.append(f"{name}:{','.join(ds[name].dims)}")
    out["saved_dims"] = np.asarray(dims)
    return out


# ----------------------------------------------------------------------------- v1
def make_v1(directory: Path, rng: np.random.Generator, tmp: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    layers, model_mod = _import_from(directory, ["seaice_layers", "seaice_model"], "ref_v1")
    model_mod.seaice_layers = layers  # the model module refers to the layers module by that name
    ngrid, nstep, nlag, nobs, nchan, nprop = 12, 3, 1, 200, 10, 3
    obs = _per_obs(rng, nobs, ngrid, nstep)
    mask = np.ones((nobs, nchan), np.float32)
    atm = _atmosphere(rng, nobs, nchan, mask)
    sic = _sic_state(rng, ngrid, nstep + nlag)
    t_map = _t_map(rng, ngrid, nstep)
    layers.ifs_seaice_file, layers.ifs_tsfc_file = _write_maps(tmp, sic, t_map)
    sm = model_mod.SeaiceModel(
        ngrid=ngrid,
        nstep=nstep,
        nobs=nobs,
        seaice_use_pdf_loss=True,
        seaice_use_loss=False,
        seaice_use_tsfc_loss=True,
        bg_error_seaice=0.02,
        adjust_cloud_fraction=False,
        nlag=1,
        alpha=[0.6, 0.4],
    )
    model = tf.keras.Model(sm.inputs, sm.outputs)
    # the x0 layout of the reference's training-data readers
    x_t = np.maximum(273.0 - obs["t_skin_k"].astype(np.float64), 0.0) / 30.0
    x0 = np.column_stack(
        [
            x_t,
            obs["igrid"],
            obs["istep"],
            obs["t_skin_k"],
            obs["wind_ms"],
            obs["cloud_fraction"],
            np.arange(nobs),
            atm["emis_water"],
            atm["tau"],
            atm["t_down_k"],
            atm["t_up_k"],
            atm["tau_cld"],
            atm["t_down_cld_k"],
            atm["t_up_cld_k"],
        ]
    ).astype(np.float32)
    init = {
        "kernel_initial": sm.seaice_emis_layer.weights[0].numpy(),
        "bias_initial": sm.seaice_emis_layer.weights[1].numpy(),
        "tb_bias_ocean_initial": sm.bias_layer.weights[0].numpy(),
        "tb_bias_ice_initial": sm.bias_layer.weights[1].numpy(),
    }
    props = rng.normal(0.0, 0.5, (ngrid, nstep, nprop)).astype(np.float32)
    kernel = rng.uniform(-0.05, 0.05, (nprop + 1, nchan)).astype(np.float32)
    bias = (0.93 + rng.uniform(-0.02, 0.02, nchan)).astype(np.float32)
    bias[0] = np.float32(0.93) + np.float32(1e-6)  # anchor term small: its gradient comparable to the others
    wind = rng.uniform(-0.003, 0.003, nchan).astype(np.float32)
    b_ocean = (2.5 + rng.uniform(-0.002, 0.002, nchan)).astype(np.float32)
    b_ice = (5.0 + rng.uniform(-0.002, 0.002, nchan)).astype(np.float32)
    sm.ice_prop_layer.set_weights([props])
    sm.seaice_emis_layer.set_weights([kernel, bias])
    sm.ocean_emis_layer.set_weights([wind])
    sm.seaice_layer.set_weights([sic, t_map])
    sm.bias_layer.set_weights([b_ocean, b_ice])
    variables = {
        "sic": sm.seaice_layer.seaice,
        "props_grid": sm.ice_prop_layer.properties,
        "kernel": sm.seaice_emis_layer.weights[0],
        "bias": sm.seaice_emis_layer.weights[1],
        "wind": sm.ocean_emis_layer.windspeed_bias,
        "b_ocean": sm.bias_layer.instrument_bias_ocean,
        "b_ice": sm.bias_layer.instrument_bias_seaice,
    }
    with tf.GradientTape(persistent=True) as tape:
        tb = model(x0, training=True)
        obs_term = tf.reduce_mean(layers.loss_channel_weighted(tf.constant(atm["tb_obs_k"]), tb))
        anchor = tf.add_n(sm.seaice_emis_layer.losses)
        sic_range, warm = sm.seaice_layer.losses  # pdf (range) loss, then the Tsfc loss
        bias_term = tf.add_n(sm.bias_layer.losses)
        total = obs_term + tf.add_n(model.losses)
    terms = {
        "obs": obs_term,
        "anchor": anchor,
        "sic_range": sic_range,
        "warm_ice": warm,
        "bias": bias_term,
        "total": total,
    }
    grads = _grads(tape, terms, variables)
    emis = tf.keras.Model(sm.inputs, sm.emis_seaice)(x0).numpy()
    saved = _saved_model_variables(sm, tmp)
    out = {
        "x0": x0,
        "obs_error": np.asarray(layers.obs_error, np.float32),
        "t_map": t_map,
        "ngrid": ngrid,
        "nstep": nstep,
        "nlag": nlag,
        "nprop": nprop,
        **{k: v for k, v in obs.items()},
        **atm,
        "sic": sic,
        "props_grid": props,
        "kernel": kernel,
        "bias": bias,
        "wind": wind,
        "b_ocean": b_ocean,
        "b_ice": b_ice,
        **init,
        **saved,
        "tb": tb.numpy(),
        "emis_ice": emis,
        "term_obs": obs_term.numpy(),
        "term_anchor": anchor.numpy(),
        "term_sic_range": sic_range.numpy(),
        "term_warm_ice": warm.numpy(),
        "term_bias": bias_term.numpy(),
        "term_total": total.numpy(),
        **grads,
    }
    return {f"v1_{k}": np.asarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- v2
def make_v2(directory: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import tensorflow as tf

    layers, sensors_mod = _import_from(directory, ["seaice_layers", "seaice_sensors"], "ref_v2")
    sensor_names = ["amsr2", "gmi", "ssmisf17"]
    info = sensors_mod.SeaiceSensors(sensor_names)
    nchan = len(info.channel_names)
    ns = len(sensor_names)
    ngrid, nstep, nlag, nprop_grid, nprop_obs, width = 12, 3, 1, 2, 1, 7
    per_sensor = 80
    nobs = per_sensor * ns
    isensor = np.repeat(np.arange(ns), per_sensor).astype(np.int32)
    mask = np.zeros((nobs, nchan), np.float32)
    for s, cmap in enumerate(info.channel_maps):
        mask[np.ix_(isensor == s, np.asarray(cmap))] = 1.0
    obs = _per_obs(rng, nobs, ngrid, nstep)
    atm = _atmosphere(rng, nobs, nchan, mask)
    sic = _sic_state(rng, ngrid, nstep + nlag)
    t_map = _t_map(rng, ngrid, nstep)
    layers.obs_error = info.obs_error

    # the original anchor: an extra channel 0 at 23.8 GHz, V polarisation, for every sensor
    freq_ext = np.concatenate([np.full((ns, 1), 23.8, np.float32), info.frequency_maps.astype(np.float32)], axis=1)
    pol_ext = np.concatenate([np.zeros((ns, 1), np.float32), info.polarisation_maps.astype(np.float32)], axis=1)
    pol0 = (1.0 - pol_ext[isensor]).astype(np.float32)  # weight of the V output (conical: one-hot)
    pol1 = pol_ext[isensor].astype(np.float32)
    params = inspect.signature(layers.SeaiceEmisNN.call).parameters
    kw = dict(
        width=width,
        background=0.8,
        emissivity_mapping=(freq_ext, pol_ext),
        nobs=nobs,
        npol=2,
        bg_error=1e-5,
        use_loss=True,
        loss_channel=0,
    )
    if "zenith" in params:  # newest fork layer: trainable=False is the branch without the zenith input
        emis_layer = layers.SeaiceEmisNN(nchan + 1, trainable=False, **kw)
    else:
        emis_layer = layers.SeaiceEmisNN(nchan + 1, **kw)
    grid_layer = layers.IcePropertyGrid(nprop_grid, ngrid, nstep)
    obs_layer = layers.IcePropertyObsSpace(nobs, nprop_obs)
    ocean_layer = layers.OceanEmis(nchan)
    frac_layer = layers.SeaiceFraction(nchan, ngrid, nstep, nlag, nobs, alpha=[0.6, 0.4])  # reference defaults
    range_only = layers.SeaiceFraction(
        nchan, ngrid, nstep, nlag, nobs, alpha=[0.6, 0.4], penalise_false_sic=False, use_tsfc_loss=False
    )
    surf_layer = layers.SurfaceRadiationTerms(nchan)
    spec_clear, spec_cloud = layers.Specular(), layers.Specular()
    bias_layer = layers.BiasCorrection(
        nchan, nsensors=ns, nobs=nobs, background=info.background_bias, bg_error=info.background_bias_error
    )

    geo = tf.constant(np.column_stack([obs["igrid"], obs["istep"]]).astype(np.int32))
    x_t = tf.constant((np.maximum(273.0 - obs["t_skin_k"].astype(np.float32), 0.0) / 30.0).astype(np.float32))
    tsfc = tf.constant(obs["t_skin_k"])
    iobs = tf.constant(np.arange(nobs, dtype=np.int32))
    isens = tf.constant(isensor)
    zen = tf.zeros((nobs,), tf.float32)

    def call_emis(props):
        if "zenith" in params:
            return emis_layer(x_t, props, isens, tf.constant(pol0), tf.constant(pol1), zen)
        return emis_layer(x_t, props, isens, tf.constant(pol0), tf.constant(pol1))

    # build the layers once, then set the fixed weights
    call_emis(tf.concat([grid_layer(geo), obs_layer(iobs)], 1))
    init = {
        "layer1_kernel_initial": emis_layer.layers[0].get_weights()[0],
        "layer1_bias_initial": emis_layer.layers[0].get_weights()[1],
        "layer2_bias_initial": emis_layer.layers[1].get_weights()[1],
    }
    ocean_layer(tf.constant(obs["wind_ms"]), tf.constant(atm["emis_water"]))
    frac_layer(geo, tsfc, training=True)
    range_only(geo, tsfc, training=True)

    props_grid = rng.normal(0.0, 0.5, (ngrid, nstep, nprop_grid)).astype(np.float32)
    props_obs = rng.normal(0.0, 0.3, (nobs, nprop_obs)).astype(np.float32)
    nin = 1 + nprop_grid + nprop_obs + 1
    w1 = rng.uniform(-0.8, 0.8, (nin, width)).astype(np.float32)
    b1 = rng.uniform(-0.3, 0.3, width).astype(np.float32)
    w2 = rng.uniform(-0.8, 0.8, (width, 2)).astype(np.float32)
    b2 = rng.uniform(1.1, 1.25, 2).astype(np.float32)  # e ~ 0.8 so that some observations are below the 0.8 floor
    wind = rng.uniform(-0.003, 0.003, nchan).astype(np.float32)
    inst_bias = (
        np.asarray(info.background_bias, np.float32)[:, :, None] + rng.uniform(-0.3, 0.3, (2, ns, nchan))
    ).astype(np.float32)
    grid_layer.set_weights([props_grid])
    obs_layer.set_weights([props_obs])
    emis_layer.layers[0].set_weights([w1, b1])
    emis_layer.layers[1].set_weights([w2, b2])
    ocean_layer.set_weights([wind])
    frac_layer.set_weights([sic, t_map])
    range_only.set_weights([sic])
    variables = {
        "sic": frac_layer.seaice,
        "props_grid": grid_layer.properties,
        "props_obs": obs_layer.properties,
        "w1": emis_layer.layers[0].kernel,
        "b1": emis_layer.layers[0].bias,
        "w2": emis_layer.layers[1].kernel,
        "b2": emis_layer.layers[1].bias,
        "wind": ocean_layer.windspeed_bias,
        "inst_bias": None,
    }
    y = tf.constant(np.stack([atm["tb_obs_k"], mask], axis=2))
    chan = lambda a: tf.constant(a)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(
            [
                emis_layer.layers[0].kernel,
                emis_layer.layers[0].bias,
                emis_layer.layers[1].kernel,
                emis_layer.layers[1].bias,
            ]
        )
        props = tf.concat([grid_layer(geo), obs_layer(iobs)], 1)
        out_ext = call_emis(props)
        emis_ice = out_ext[:, 1:]
        emis_ocean = ocean_layer(tf.constant(obs["wind_ms"]), chan(atm["emis_water"]))
        c = frac_layer(geo, tsfc, training=True)
        range_only(geo, tsfc, training=True)
        surf, emis_mix = surf_layer(c, emis_ocean, emis_ice, tsfc)
        clear = spec_clear(surf, emis_mix, chan(atm["tau"]), chan(atm["t_down_k"]), chan(atm["t_up_k"]))
        cloudy = spec_cloud(surf, emis_mix, chan(atm["tau_cld"]), chan(atm["t_down_cld_k"]), chan(atm["t_up_cld_k"]))
        f = tf.tensordot(tf.constant(obs["cloud_fraction"]), tf.ones((nchan,)), 0)
        allsky = f * cloudy + (1 - f) * clear
        if variables["inst_bias"] is None:
            bias_layer(allsky, c, isens)  # build
            bias_layer.set_weights([inst_bias])
            variables["inst_bias"] = bias_layer.instrument_bias
        tb = bias_layer(allsky, c, isens)
        obs_term = tf.reduce_mean(layers.loss_channel_weighted(y, tf.stack([tb, tb], axis=2)))
        anchor = tf.add_n(emis_layer.losses)
        seaice_total, warm = frac_layer.losses  # range + false ice, then the Tsfc loss
        sic_range = tf.add_n(range_only.losses)
        bias_term = bias_layer.losses[-1]
        total = obs_term + anchor + seaice_total + warm + bias_term
    terms = {
        "obs": obs_term,
        "anchor": anchor,
        "sic_range": sic_range,
        "sic_range_false_ice": seaice_total,
        "warm_ice": warm,
        "bias": bias_term,
        "total": total,
    }
    grads = _grads(tape, terms, variables, {"sic_range": {"sic": range_only.seaice}})
    below = float(np.mean(out_ext.numpy()[:, 0] < 0.8))
    print(f"v2: fraction of observations below the 0.8 floor at 23.8 GHz V: {below:.2f}")
    out = {
        "channel_names": np.asarray(info.channel_names, dtype=str),
        "sensor_names": np.asarray(sensor_names, dtype=str),
        "freq_table_ghz": np.asarray(info.frequency_maps, np.float32),
        "pol_table": np.asarray(info.polarisation_maps, np.float32),
        "obs_error": np.asarray(info.obs_error, np.float32),
        "bias_background": np.asarray(info.background_bias, np.float32),
        "bias_error": np.asarray(info.background_bias_error, np.float32),
        "frac_bg_error": np.float32(frac_layer.bg_error),
        "frac_bg_error_false_sic": np.float32(frac_layer.bg_error_false_sic),
        "ngrid": ngrid,
        "nstep": nstep,
        "nlag": nlag,
        "nprop_grid": nprop_grid,
        "nprop_obs": nprop_obs,
        "width": width,
        "isensor": isensor,
        "mask": mask,
        "t_map": t_map,
        **obs,
        **atm,
        "sic": sic,
        "props_grid": props_grid,
        "props_obs": props_obs,
        "w1": w1,
        "b1": b1,
        "w2": w2,
        "b2": b2,
        "wind": wind,
        "inst_bias": inst_bias,
        **init,
        "tb": tb.numpy(),
        "emis_ice": emis_ice.numpy(),
        "emis_anchor": out_ext.numpy()[:, 0],
        "term_obs": obs_term.numpy(),
        "term_anchor": anchor.numpy(),
        "term_sic_range": sic_range.numpy(),
        "term_sic_range_false_ice": seaice_total.numpy(),
        "term_warm_ice": warm.numpy(),
        "term_bias": bias_term.numpy(),
        "term_total": total.numpy(),
        **grads,
    }
    return {f"v2_{k}": np.asarray(v) for k, v in out.items()}


def make_adam(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Keras' Adam (``optimizer="adam"`` of both references: lr 1e-3, betas 0.9/0.999, eps 1e-7)
    on a fixed sequence of gradients whose sizes span 1e-9 .. 1 (where eps matters and not)."""
    import tensorflow as tf

    n, steps = 16, 6
    w0 = rng.normal(0.0, 0.01, n).astype(np.float32)  # small: float32 resolves the tiny updates
    scale = (10.0 ** -(np.arange(n) % 10)).astype(np.float32)
    grads = (rng.normal(0.0, 1.0, (steps, n)) * scale).astype(np.float32)
    var = tf.Variable(w0)
    opt = tf.keras.optimizers.Adam()
    traj = []
    for k in range(steps):
        opt.apply_gradients([(tf.constant(grads[k]), var)])
        traj.append(var.numpy().copy())
    return {
        "adam_w0": w0,
        "adam_grads": grads,
        "adam_traj": np.stack(traj),
        "adam_epsilon": np.float32(opt.epsilon),
        "adam_lr": np.float32(opt.learning_rate.numpy()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-v1", type=Path, required=True, help="checkout of the ECMWF v1 repository")
    p.add_argument("--reference-v2", type=Path, required=True, help="directory of the fork's v2 code (model/)")
    p.add_argument("--output", type=Path, default=Path(__file__).with_name("reference_fixture.npz"))
    p.add_argument("--seed", type=int, default=20240409)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(a.seed)  # the reference's own initial weights (stored as *_initial)
    rng = np.random.default_rng(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_v1(a.reference_v1.resolve(), rng, Path(tmp))
    data.update(make_v2(a.reference_v2.resolve(), rng))
    data.update(make_adam(rng))
    data["tensorflow_version"] = np.asarray(tf.__version__)
    np.savez_compressed(a.output, **data)
    print(f"wrote {a.output} ({a.output.stat().st_size} bytes, {len(data)} arrays)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
