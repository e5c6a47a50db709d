"""models_TAG.nc carries the model under the ECMWF reference's own names, so the reference's
loaders (``SeaiceModel.load``: v1 in the ECMWF repository, v2 in the fork) take it unchanged.

The file is written the way a training run writes it (``emissivity_weights`` of the network,
then ``write_models``), for the fixture case of ``test_reference_equivalence.py`` (whose weights
are known). The test then reads it as the reference loaders do (the ``set_weights`` calls of
``SeaiceModel.load``) and checks names, dimensions and values: for v1 against what the
reference's own ``SeaiceModel.save`` wrote for the same weights (recorded in the fixture).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_reference_equivalence import FIXTURE, _case

from empirical_seaice.io import outputs
from empirical_seaice.run.model_file import emissivity_weights


def _write(ref, v, tmp_path):
    net, ot, basis, _ = _case(ref, v)
    weights, first = emissivity_weights(net)
    path = outputs.write_models(
        tmp_path / f"models_{v}.nc",
        weights=weights,
        input_names=[f"in{k}" for k in range(weights[first].shape[0])],
        input_layer=first,
        basis=basis,
        wind_coef=net.wind_coef.detach().numpy(),
        bias_ice=net.bias_ice_k.detach().numpy(),
        bias_ocean=net.bias_ocean_k.detach().numpy(),
        setup={"model": net.model_config},
        model_version=v,
    )
    return xr.open_dataset(path)


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


def test_v1_names_dims_and_values_as_the_reference_loader_reads_them(ref, tmp_path):
    with _write(ref, "v1", tmp_path) as models:
        # the reference's own save: name:dims
        for entry in ref["v1_saved_dims"]:
            name, dims = str(entry).split(":")
            assert models[name].dims == tuple(dims.split(",")), name
            np.testing.assert_array_equal(models[name].values, ref[f"v1_saved_{name}"], err_msg=name)
        # SeaiceModel.load: seaice_emis_layer.set_weights([ice_coefs, ice_emis]),
        # ocean_emis_layer.set_weights([ocean_emis_bias]), bias_layer.set_weights([tb_bias[:,0], tb_bias[:,1]])
        kernel, bias = models.ice_coefs.values, models.ice_emis.values
        assert kernel.shape == (4, 10) and bias.shape == (10,)
        np.testing.assert_array_equal(kernel, ref["v1_kernel"])
        np.testing.assert_array_equal(bias, ref["v1_bias"])
        np.testing.assert_array_equal(models.ocean_emis_bias.values, ref["v1_wind"])
        np.testing.assert_array_equal(models.tb_bias[:, 0].values, ref["v1_b_ocean"])  # instrument_bias_ocean
        np.testing.assert_array_equal(models.tb_bias[:, 1].values, ref["v1_b_ice"])  # instrument_bias_seaice
        # our own names are still there
        np.testing.assert_array_equal(models.emis_output_kernel.values, kernel)
        np.testing.assert_array_equal(models.bias_ice.values[0], ref["v1_b_ice"])


def test_v2_names_dims_and_values_as_the_reference_loader_reads_them(ref, tmp_path):
    with _write(ref, "v2", tmp_path) as models:
        # SeaiceModel.load (fork): seaice_emis_layer.set_weights([emis_layer1_weights, emis_layer1_biases,
        # emis_layer2_weights, emis_layer2_biases]); ocean_emis_layer.set_weights([ocean_emis_bias]);
        # bias_layer.set_weights([tb_bias]); dims as its save writes them
        expected = {
            "emis_layer1_weights": (("in", "width"), ref["v2_w1"]),
            "emis_layer1_biases": (("width",), ref["v2_b1"]),
            "emis_layer2_weights": (("width", "out"), ref["v2_w2"]),
            "emis_layer2_biases": (("out",), ref["v2_b2"]),
            "ocean_emis_bias": (("channel",), ref["v2_wind"]),
            "tb_bias": (("biases", "sensors", "channel"), ref["v2_inst_bias"]),  # [0] ice, [1] ocean
        }
        for name, (dims, values) in expected.items():
            assert models[name].dims == dims, name
            np.testing.assert_array_equal(models[name].values, values, err_msg=name)
        assert models.emis_layer1_weights.shape == (5, 7) and models.tb_bias.shape == (2, 3, 17)
        present = models.channel_present.values.astype(bool)  # bias_ocean: NaN where a sensor lacks the channel
        np.testing.assert_array_equal(models.bias_ocean.values[present], ref["v2_inst_bias"][1][present])
        assert np.isnan(models.bias_ocean.values[~present]).all()
        for name in ("ice_coefs", "ice_emis"):  # v1 names only in v1 files
            assert name not in models


def test_v1_model_of_several_sensors_has_no_reference_layout():
    w = {"output_kernel": np.zeros((4, 3)), "output_bias": np.zeros(3)}
    assert outputs.reference_model_variables("v1", w, np.zeros(3), np.zeros((2, 3)), np.zeros((2, 3))) == {}
