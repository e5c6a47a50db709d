"""Tests of the SMRT ice emissivity table and its numpy interpolator."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.twin.ice_emissivity import (
    IceEmissivityTable,
    default_table_path,
    ice_emissivity,
    load_ice_table,
)

FYI, MYI = 0.0, 1.0
V, H = 0, 1


@pytest.fixture(scope="module")
def table() -> IceEmissivityTable:
    return load_ice_table()


def emis(table, freq, pol, myi, depth=0.15, corr=0.10, t=255.0, wet=0.0):
    return ice_emissivity(table, freq, pol, myi, depth, corr, t, wet)


# ---------------------------------------------------------------- the file


def test_shipped_table_loads_with_axes_and_metadata(table):
    assert default_table_path().is_file()
    assert default_table_path().stat().st_size < 1_000_000
    assert table.emissivity.shape == (2, 5, 4, 6, 3, 12, 2)
    assert table.emissivity.dtype == np.float32
    np.testing.assert_array_equal(table.ice_type, [0.0, 1.0])
    np.testing.assert_allclose(table.frequency_ghz[[0, 6, -1]], [6.925, 89.0, 190.31])
    assert table.snow_depth_m[0] == 0.0
    assert table.wetness[0] == 0.0
    assert table.attrs["smrt_version"].startswith("1.")
    assert "Kirchhoff" in table.attrs["emissivity_method"]
    assert table.attrs["incidence_angle_deg"] == 53.0
    assert np.all(np.isfinite(table.emissivity))
    assert 0.4 < table.emissivity.min() and table.emissivity.max() <= 1.0


def test_table_arrays_are_read_only(table):
    with pytest.raises(ValueError):
        table.emissivity[0, 0, 0, 0, 0, 0, 0] = 0.5


# ---------------------------------------------------------- interpolation


def test_broadcast_shape(table):
    freq = np.array([18.7, 36.5, 89.0])[:, None]
    myi = np.linspace(0.0, 1.0, 4)
    e = ice_emissivity(table, freq, "V", myi, 0.1, 0.1, 250.0, 0.0)
    assert e.shape == (3, 4)
    assert e.dtype == np.float32
    pol = np.array([[0], [1]])[:, :, None]  # (2, 1, 1)
    e2 = ice_emissivity(table, freq, pol, myi, 0.1, 0.1, 250.0, 0.0)
    assert e2.shape == (2, 3, 4)
    np.testing.assert_array_equal(e2[0], e)
    assert ice_emissivity(table, 18.7, "H", 0.0, 0.1, 0.1, 250.0, 0.0).shape == ()


def test_string_and_int_polarisation_agree(table):
    for s, i in (("V", 0), ("H", 1), ("h", 1)):
        assert emis(table, 36.5, s, 0.3) == emis(table, 36.5, i, 0.3)


def test_node_values_are_reproduced_exactly(table):
    rng = np.random.default_rng(1)
    idx = [rng.integers(0, n, 200) for n in table.emissivity.shape]
    e = ice_emissivity(
        table,
        table.frequency_ghz[idx[5]],
        idx[6],
        table.ice_type[idx[0]],
        table.snow_depth_m[idx[1]],
        table.corr_length_mm[idx[2]],
        table.t_surface_k[idx[3]],
        table.wetness[idx[4]],
    )
    np.testing.assert_array_equal(e, table.emissivity[tuple(idx)])


def test_midpoints_are_linear_in_each_axis(table):
    e = table.emissivity
    # snow depth midway between nodes 1 and 2 (FYI, corr node 1, T node 1, dry, 36.5 GHz V)
    d = 0.5 * (table.snow_depth_m[1] + table.snow_depth_m[2])
    got = ice_emissivity(table, 36.5, V, FYI, d, table.corr_length_mm[1], table.t_surface_k[1], 0.0)
    want = 0.5 * (e[0, 1, 1, 1, 0, 4, 0] + e[0, 2, 1, 1, 0, 4, 0])
    assert got == pytest.approx(want, abs=1e-6)
    # frequency: the geometric mean of two nodes is the log-frequency midpoint
    f = np.sqrt(table.frequency_ghz[6] * table.frequency_ghz[7])
    got = ice_emissivity(table, f, H, MYI, table.snow_depth_m[2], table.corr_length_mm[1], 250.0, 0.0)
    want = 0.5 * (e[1, 2, 1, 1, 0, 6, 1] + e[1, 2, 1, 1, 0, 7, 1])
    assert got == pytest.approx(want, abs=1e-6)


def test_myi_fraction_mixes_linearly(table):
    freq = [18.7, 89.0]
    fy = emis(table, freq, V, FYI, 0.13, 0.12, 258.0)
    my = emis(table, freq, V, MYI, 0.13, 0.12, 258.0)
    mix = emis(table, freq, V, 0.25, 0.13, 0.12, 258.0)
    np.testing.assert_allclose(mix, 0.75 * fy + 0.25 * my, atol=1e-6)


def test_clamped_outside_the_table(table):
    # beyond the edges the edge value is returned (no extrapolation)
    assert emis(table, 250.0, V, 1.5, depth=2.0, corr=0.5, t=200.0) == emis(
        table, 190.31, V, 1.0, depth=0.4, corr=0.2, t=235.0
    )
    assert emis(table, 1.4, H, -0.2, depth=-0.1, corr=0.01, t=280.0, wet=0.2) == emis(
        table, 6.925, H, 0.0, depth=0.0, corr=0.05, t=273.0, wet=0.03
    )


def test_values_in_unit_interval_and_nan_propagates(table):
    rng = np.random.default_rng(0)
    n = 20_000
    e = ice_emissivity(
        table,
        rng.uniform(1.0, 300.0, n),
        rng.integers(0, 2, n),
        rng.uniform(-0.5, 1.5, n),
        rng.uniform(-0.1, 1.0, n),
        rng.uniform(0.0, 0.4, n),
        rng.uniform(200.0, 290.0, n),
        rng.uniform(-0.01, 0.1, n),
    )
    assert np.all((e >= 0.0) & (e <= 1.0))
    assert np.isnan(emis(table, 36.5, V, 0.0, depth=np.nan))


def test_agrees_with_scipy_regular_grid_interpolator(table):
    from scipy.interpolate import RegularGridInterpolator

    rng = np.random.default_rng(3)
    n = 500
    pts = [
        rng.uniform(0, 1, n),
        rng.uniform(0, 0.4, n),
        rng.uniform(0.05, 0.2, n),
        rng.uniform(235, 273, n),
        rng.uniform(0, 0.03, n),
        np.log(rng.uniform(6.925, 190.31, n)),
    ]
    grid = (
        table.ice_type,
        table.snow_depth_m,
        table.corr_length_mm,
        table.t_surface_k,
        table.wetness,
        np.log(table.frequency_ghz),
    )
    for pol in (V, H):
        ref = RegularGridInterpolator(grid, table.emissivity[..., pol].astype(np.float64))(np.stack(pts, -1))
        got = ice_emissivity(table, np.exp(pts[5]), pol, *pts[:5])
        np.testing.assert_allclose(got, ref, atol=2e-6)


# ----------------------------------------------------- literature ranges


def test_dry_fyi_with_moderate_snow_v_pol_10_to_37ghz(table):
    # Eppler et al. 1992; Mathew et al. 2008: FYI 10-37 GHz V at ~50-55 deg ~0.90-0.98.
    # SMRT with flat interfaces puts V-pol at 53 deg (near the Brewster angle) at the
    # top of that range (0.975-0.983 here): allow 0.985 (0.005 over the literature's top), and pin the known
    # bias with the mean (a pin of the shipped table, not a literature value).
    e = emis(table, [10.65, 18.7, 23.8, 36.5], V, FYI, depth=np.array([0.05, 0.10, 0.20])[:, None], corr=0.10, t=250.0)
    assert np.all((e >= 0.90) & (e <= 0.985)), e
    assert 0.97 < e.mean() < 0.985


def test_h_pol_below_v_pol_for_dry_snow_and_ice(table):
    e = table.emissivity[:, :, :, :, 0, :, :]  # all dry nodes
    assert np.all(e[..., H] < e[..., V])
    # typical FYI: H lower by 0.05-0.15 at 19 GHz
    pd = emis(table, 18.7, V, FYI) - emis(table, 18.7, H, FYI)
    assert 0.05 < pd < 0.15


def test_myi_emissivity_falls_strongly_with_frequency(table):
    # typical cold MYI column: 0.2 m of snow with depth hoar (0.15 mm), 250 K
    e19, e37, e89 = emis(table, [18.7, 36.5, 89.0], V, MYI, depth=0.2, corr=0.15, t=250.0)
    assert e19 - e89 > 0.15
    assert e19 > e37 > e89
    # MYI 19V ~0.85-0.90 (Eppler et al. 1992), well below FYI
    assert 0.82 < e19 < 0.92
    assert emis(table, 18.7, V, FYI, depth=0.2, corr=0.15, t=250.0) - e19 > 0.08
    # bare or thinly covered MYI and any coarse-grained snow: 19V - 89V > 0.1 ...
    depth = np.array([0.0, 0.04, 0.1, 0.2, 0.4])[:, None]
    e = emis(table, [[[18.7]], [[89.0]]], V, MYI, depth=depth, corr=np.array([0.15, 0.2]), t=250.0)
    assert np.all(e[0] - e[1] > 0.1), e[0] - e[1]
    # ... but thick fine-grained snow (0.1 mm) masks the ice scattering (SMRT/IBA)
    e19, e89 = emis(table, [18.7, 89.0], V, MYI, depth=0.4, corr=0.10, t=250.0)
    assert 0.0 < e19 - e89 < 0.1


def test_myi_below_fyi_at_37ghz_and_above(table):
    for freq in (36.5, 89.0):
        for pol in (V, H):
            for depth in (0.05, 0.10, 0.20):
                fy = emis(table, freq, pol, FYI, depth=depth, t=250.0)
                my = emis(table, freq, pol, MYI, depth=depth, t=250.0)
                assert my < fy - 0.02, (freq, pol, depth, fy, my)


def test_wet_snow_raises_emissivity_and_reduces_polarisation_difference(table):
    for myi in (FYI, MYI):
        for freq in (18.7, 36.5, 89.0):
            for t_dry in (250.0, 271.0):
                dry_v, dry_h = emis(table, freq, [V, H], myi, depth=0.2, t=t_dry, wet=0.0)
                moist_v, moist_h = emis(table, freq, [V, H], myi, depth=0.2, t=t_dry, wet=0.01)
                wet_v, wet_h = emis(table, freq, [V, H], myi, depth=0.2, t=t_dry, wet=0.03)
                assert moist_v >= 0.98 and wet_v >= 0.98
                assert (wet_v + wet_h) / 2 > (dry_v + dry_h) / 2 + 0.02
                assert moist_v - moist_h < dry_v - dry_h
                # more water: Fresnel reflection at the wet-snow surface grows again
                assert 0.05 < wet_v - wet_h < 0.1


def test_wet_states_are_at_melting_point_independent_of_temperature(table):
    assert emis(table, 36.5, V, FYI, wet=0.01, t=240.0) == emis(table, 36.5, V, FYI, wet=0.01, t=272.0)


def test_89ghz_snow_depth_dependence_is_monotone_and_plausible(table):
    depth = np.linspace(0.0, 0.4, 41)
    for corr in (0.05, 0.10, 0.15, 0.20):
        fy = emis(table, 89.0, V, FYI, depth=depth, corr=corr, t=250.0)
        my = emis(table, 89.0, V, MYI, depth=depth, corr=corr, t=250.0)
        # FYI: snow is the only scatterer, more snow -> lower emissivity
        assert np.all(np.diff(fy) <= 1e-6), (corr, fy)
        # MYI: monotone too (up for fine snow masking the bubbly ice, flat at 0.15 mm,
        # down for coarse snow) ...
        d = np.diff(my)
        assert np.all(d >= -1e-3) or np.all(d <= 1e-3), (corr, my)
        # ... and deep snow makes both ice types look alike
        assert abs(fy[-1] - my[-1]) < abs(fy[0] - my[0]) - 0.15
    # pins of the shipped table, not literature values (none is cited for these two states): 89V of bare
    # FYI 0.983 and under 0.2 m of 0.1 mm snow 0.841, as generated; a regenerated table must keep them
    assert emis(table, 89.0, V, FYI, depth=0.0) == pytest.approx(0.984, abs=0.005)
    assert emis(table, 89.0, V, FYI, depth=0.2, t=250.0) == pytest.approx(0.84, abs=0.02)


def test_89ghz_falls_with_snow_correlation_length(table):
    e = emis(table, 89.0, V, FYI, depth=0.2, corr=np.array([0.05, 0.10, 0.15, 0.20]), t=250.0)
    assert np.all(np.diff(e) < -0.02), e


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("pol", ["X", 2, -1, 0.5, ["V", "Q"]])
def test_bad_polarisation_raises(table, pol):
    with pytest.raises(SeaIceError, match="pol"):
        emis(table, 36.5, pol, FYI)


@pytest.mark.parametrize("freq", [0.0, -10.0, np.nan])
def test_bad_frequency_raises(table, freq):
    with pytest.raises(SeaIceError, match="freq_ghz"):
        emis(table, [36.5, freq], V, FYI)


def test_missing_file_raises(tmp_path):
    with pytest.raises(SeaIceError, match="file not found"):
        load_ice_table(tmp_path / "nope.nc")


def test_not_netcdf_raises(tmp_path):
    p = tmp_path / "junk.nc"
    p.write_text("not a netcdf file")
    with pytest.raises(SeaIceError, match="not a readable NetCDF"):
        load_ice_table(p)


def _copy_table(src, dst, drop=None, units=None, dims_swap=False):
    import netCDF4

    with netCDF4.Dataset(src) as a, netCDF4.Dataset(dst, "w") as b:
        for name, dim in a.dimensions.items():
            b.createDimension(name, len(dim))
        for name, var in a.variables.items():
            if name == drop:
                continue
            dims = var.dimensions
            data = var[:]
            if dims_swap and name == "emissivity":
                continue
            out = b.createVariable(name, var.dtype, dims)
            out[:] = data
            out.units = units if (units and name == "snow_depth") else var.units
        if dims_swap:
            e = a.variables["emissivity"]
            dims = list(e.dimensions)
            dims[1], dims[2] = dims[2], dims[1]
            out = b.createVariable("emissivity", "f4", tuple(dims))
            out[:] = np.swapaxes(e[:], 1, 2)
            out.units = "1"


def test_missing_variable_raises(tmp_path):
    p = tmp_path / "t.nc"
    _copy_table(default_table_path(), p, drop="wetness")
    with pytest.raises(SeaIceError, match="'wetness' missing"):
        load_ice_table(p)


def test_wrong_units_raise(tmp_path):
    p = tmp_path / "t.nc"
    _copy_table(default_table_path(), p, units="cm")
    with pytest.raises(SeaIceError, match="units 'cm', expected 'm'"):
        load_ice_table(p)


def test_wrong_dimension_order_raises(tmp_path):
    p = tmp_path / "t.nc"
    _copy_table(default_table_path(), p, dims_swap=True)
    with pytest.raises(SeaIceError, match="dimensions"):
        load_ice_table(p)


def test_inconsistent_table_raises(table):
    with pytest.raises(SeaIceError, match="shape"):
        IceEmissivityTable(
            table.ice_type,
            table.snow_depth_m[:-1],
            table.corr_length_mm,
            table.t_surface_k,
            table.wetness,
            table.frequency_ghz,
            table.emissivity,
        )
    with pytest.raises(SeaIceError, match="strictly increasing"):
        IceEmissivityTable(
            table.ice_type,
            table.snow_depth_m[::-1],
            table.corr_length_mm,
            table.t_surface_k,
            table.wetness,
            table.frequency_ghz,
            table.emissivity,
        )
    bad = np.array(table.emissivity)
    bad[0, 0, 0, 0, 0, 0, 0] = np.nan
    with pytest.raises(SeaIceError, match="finite"):
        IceEmissivityTable(
            table.ice_type,
            table.snow_depth_m,
            table.corr_length_mm,
            table.t_surface_k,
            table.wetness,
            table.frequency_ghz,
            bad,
        )


# ----------------------------------------------- provenance (needs SMRT)


@pytest.mark.slow
def test_shipped_table_is_what_the_generator_computes(table):
    pytest.importorskip("smrt")
    from empirical_seaice.twin import smrt_column

    it, isd, ic, itt, iw = 0, 2, 1, 1, 0  # FYI, 0.10 m, 0.10 mm, 250 K, dry
    freqs = [18.7, 89.0]
    e = smrt_column.node_emissivity(
        smrt_column.ICE_TYPES[it],
        float(table.snow_depth_m[isd]),
        float(table.corr_length_mm[ic]),
        float(table.t_surface_k[itt]),
        float(table.wetness[iw]),
        frequency_ghz=freqs,
    )
    fidx = [int(np.flatnonzero(np.isclose(table.frequency_ghz, f))[0]) for f in freqs]
    np.testing.assert_allclose(e, table.emissivity[it, isd, ic, itt, iw, fidx, :], atol=1e-6)


@pytest.mark.slow
def test_kirchhoff_emissivity_equals_tb_over_t_for_isothermal_column():
    """Physics law: in an isothermal column the emitted TB is e T, so the
    two-run Kirchhoff emissivity must equal TB(sky = 0 K) / T."""
    pytest.importorskip("smrt")
    from smrt import PSU, make_atmosphere, make_ice_column, make_snowpack, sensor_list

    from empirical_seaice.twin import smrt_column

    t = 271.5  # above the freezing point of the 32 PSU water substrate
    col = make_snowpack([0.1], "exponential", density=300, temperature=t, corr_length=0.15e-3) + make_ice_column(
        "multiyear",
        [0.1, 1.0],
        [t, t],
        "sticky_hard_spheres",
        salinity=[1 * PSU, 2 * PSU],
        radius=1e-3,
        stickiness=0.3,
        porosity=[0.15, 0.0],
        water_temperature=t,
    )
    e = smrt_column.kirchhoff_emissivity(col, [18.7, 89.0])
    sky0 = make_atmosphere("simple_isotropic_atmosphere", tb_down=0.0, tb_up=0.0, transmittance=1.0)
    res = smrt_column.make_smrt_model().run(
        sensor_list.passive(np.array([18.7e9, 89e9]), smrt_column.INCIDENCE_DEG),
        sky0 + col,
        parallel_computation=False,
    )
    tb_over_t = np.stack([np.asarray(res.TbV()), np.asarray(res.TbH())], -1) / t
    np.testing.assert_allclose(e, tb_over_t, atol=5e-4)
    assert np.all(e[1] < e[0] - 0.1)  # the bubbly ice scatters strongly at 89 GHz
