"""The SMRT angular anomaly table of the twin's cross-track sounders."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.twin.ice_emissivity import (
    ice_emissivity,
    ice_emissivity_angle_anomaly,
    load_angular_table,
    load_ice_table,
)


@pytest.fixture(scope="module")
def angular():
    return load_angular_table()


def test_zero_at_53_degrees_and_v_equals_h_at_nadir(angular):
    i53 = int(np.flatnonzero(angular.incidence_deg == 53.0)[0])
    assert np.all(angular.anomaly[..., i53, :] == 0.0)
    # at nadir V and H are the same wave: e_V(0) = e_H(0) for every column of the table
    base = load_ice_table()
    for it in range(2):
        for isd, depth in enumerate(angular.snow_depth_m):
            for iw, wet in enumerate(angular.wetness):
                e53 = ice_emissivity(base, angular.frequency_ghz[:, None], [[0, 1]], it, depth, 0.10, 260.0, wet)
                e0 = e53 + angular.anomaly[it, isd, iw, :, 0, :]
                np.testing.assert_allclose(e0[:, 0], e0[:, 1], atol=2e-3)


def test_h_falls_and_v_rises_towards_the_brewster_angle(angular):
    d = ice_emissivity_angle_anomaly(angular, 18.7, [0, 1], 0.0, 0.10, 0.0, [[0.0], [35.0], [65.0]])
    assert d[0, 1] > d[1, 1] > 0 > d[2, 1]  # H: above its 53-deg value at nadir, below at 65 deg
    assert d[0, 0] < d[1, 0] < 0  # V: below its 53-deg value towards nadir


def test_interpolation_exact_at_nodes_and_clamped(angular):
    got = ice_emissivity_angle_anomaly(angular, 89.0, 1, 1.0, 0.40, 0.03, 20.0)
    f = int(np.flatnonzero(angular.frequency_ghz == 89.0)[0])
    assert got == pytest.approx(float(angular.anomaly[1, 2, 1, f, 1, 1]), abs=1e-7)
    assert ice_emissivity_angle_anomaly(angular, 89.0, 1, 1.0, 0.40, 0.03, 80.0) == pytest.approx(
        float(angular.anomaly[1, 2, 1, f, -1, 1]), abs=1e-7
    )


@pytest.mark.slow
def test_shipped_angular_table_is_what_the_generator_computes(angular):
    pytest.importorskip("smrt")
    from empirical_seaice.twin import smrt_angular, smrt_column

    medium = smrt_column.build_column("multiyear", 0.10, 0.10, 260.0, 0.0)
    e = smrt_angular.angular_emissivity(medium)
    np.testing.assert_allclose(e - e[:, 4:5, :], angular.anomaly[1, 1, 0], atol=1e-6)
