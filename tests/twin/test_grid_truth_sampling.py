import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.twin.generate import julian_day_0utc
from empirical_seaice.twin.grid import make_grid
from empirical_seaice.twin.sampling import GMI_MAX_ABS_LAT_DEG, SAMPLING, sample_day
from empirical_seaice.twin.truth import SmoothField, TruthModel, day_of_year


@pytest.fixture(scope="module")
def north():
    return make_grid("north", 100.0, 50.0)


@pytest.fixture(scope="module")
def south():
    return make_grid("south", 100.0, 50.0)


def test_grid_ocean_only_equal_spacing(north):
    assert north.lat.min() > 50.0
    # the pole is ocean; interior Greenland (72N, 40W) and Siberia (65N, 100E) are not on the grid
    d_pole = np.hypot(north.x_km, north.y_km).min()
    assert d_pole == pytest.approx(np.hypot(50.0, 50.0), abs=1e-6)
    for lat, lon in [(72.0, -40.0), (65.0, 100.0)]:
        dist = np.hypot(north.lat - lat, (north.lon - lon) * np.cos(np.deg2rad(lat)))
        assert dist.min() > 0.5
    # grid nodes on a 100 km lattice offset by half a cell
    np.testing.assert_allclose(np.mod(north.x_km - 50.0, 100.0), 0.0, atol=1e-6)
    # the northern 100 km domain: ~2800 ocean points of ~6000 poleward of 50N
    assert 2500 < north.ngrid < 3200


def test_is_ocean_reads_the_packages_land_mask_without_loading_it(tmp_path):
    """``grid.is_ocean`` gives ``global_land_mask.globe.is_ocean``'s values (random points over the globe and the
    polar caps, the axes' ends, both grids' own points), and a realistic twin made in a fresh process neither
    imports the package's module (which inflates its 0.9 GB mask) nor peaks above 800 MB (the package's import
    alone: 918 MB)."""
    import subprocess
    import sys

    from empirical_seaice.twin import grid

    rng = np.random.default_rng(5)
    lat = np.concatenate([rng.uniform(-90, 90, 50_000), rng.uniform(55, 90, 20_000), rng.uniform(-90, -55, 20_000),
                          [90.0, -90.0, 89.999999, -89.999999, 0.0, 65.0, -70.0]])  # fmt: skip
    lon = np.concatenate([rng.uniform(-180, 180, 90_000), [180.0, -180.0, 179.999999, -179.999999, 0.0, 0.0, 0.0]])
    got = grid.is_ocean(lat, lon)
    code = (  # a realistic twin (its footprints' land neighbours) of both hemispheres, one day
        "import sys\n"
        "from empirical_seaice.twin import generate_twin, get_twin_preset\n"
        f"generate_twin(get_twin_preset('tiny', days=1, realism='realistic', hemisphere='both'), {str(tmp_path)!r})\n"
        "peak = [int(ln.split()[1]) for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
        "print('global_land_mask.globe' in sys.modules, peak[0] // 1024)\n"  # (ru_maxrss keeps the forked parent's)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    imported, peak_mib = r.stdout.split()
    assert imported == "False" and int(peak_mib) < 800, r.stdout
    from global_land_mask import globe  # the reference (0.9 GB, 1.7-3.4 s)

    assert 0.5 < got.mean() < 0.8  # the ocean's share, more on the caps' seas
    np.testing.assert_array_equal(got, globe.is_ocean(lat.copy(), lon.copy()))
    for hemisphere in ("north", "south"):
        g = grid.make_grid(hemisphere, 100.0, 50.0)
        assert globe.is_ocean(g.lat.copy(), g.lon.copy()).all()


def test_grid_south_excludes_ice_shelves(south):
    assert south.lat.max() < -50.0
    assert south.lat.min() > -78.0


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"hemisphere": "east"}, "--hemisphere"),
        ({"resolution_km": 5.0}, "resolution_km"),
        ({"lat_limit_deg": 20.0}, "lat_limit_deg"),
    ],
)
def test_grid_errors(kwargs, flag):
    args = {"hemisphere": "north", "resolution_km": 100.0, "lat_limit_deg": 50.0, **kwargs}
    with pytest.raises(SeaIceError, match=flag):
        make_grid(**args)


def test_smooth_field_unit_variance_and_deterministic():
    f = SmoothField.draw(np.random.default_rng(3), 12, (500.0, 2000.0), (5.0, 20.0))
    g = SmoothField.draw(np.random.default_rng(3), 12, (500.0, 2000.0), (5.0, 20.0))
    x = np.random.default_rng(0).uniform(-4000, 4000, (2, 20000))
    v = f(x[0], x[1], 0.0)
    assert abs(v.var() - 1.0) < 0.35
    np.testing.assert_array_equal(v, g(x[0], x[1], 0.0))


def test_julian_day_and_day_of_year():
    assert julian_day_0utc("2000-01-01") == 2451544.5
    assert julian_day_0utc("2020-07-01") == 2459031.5
    assert day_of_year(julian_day_0utc("2021-03-01")) == pytest.approx(
        31 + 28 + 0.0, abs=1.0
    )  # mean-year approximation


def _extent(model, date):
    d = model.daily(julian_day_0utc(date) + 0.375, 0)
    return d, (d["sic"] > 0.15).sum() * model.grid.cell_area_km2 / 1e6


def test_sic_range_and_seasonal_extent(north, south):
    mn = TruthModel(north, np.random.default_rng(0), 0, julian_day_0utc("2020-01-01"))
    ms = TruthModel(south, np.random.default_rng(0), 0, julian_day_0utc("2020-01-01"))
    march_n, ext_mar_n = _extent(mn, "2020-03-15")
    sept_n, ext_sep_n = _extent(mn, "2020-09-15")
    _, ext_mar_s = _extent(ms, "2020-03-15")
    _, ext_sep_s = _extent(ms, "2020-09-15")
    for d in (march_n, sept_n):
        assert d["sic"].min() == 0.0 and d["sic"].max() <= 1.0
        # a marginal ice zone: intermediate concentrations exist
        assert ((d["sic"] > 0.2) & (d["sic"] < 0.8)).sum() > 20
    # Arctic: ~14-17 million km2 in March, ~4-7 in September; Antarctic the other way round
    assert 13.0 < ext_mar_n < 18.0 and 4.0 < ext_sep_n < 7.5
    assert ext_sep_s > 3 * ext_mar_s
    # cold winter pack, open water never below freezing, skin temperature consistent
    pack = march_n["sic"] > 0.9
    assert march_n["t_ice_k"][pack].mean() < 252.0
    assert march_n["t_water_k"].min() >= 271.35
    np.testing.assert_allclose(
        march_n["t_skin_k"], march_n["sic"] * march_n["t_ice_k"] + (1 - march_n["sic"]) * march_n["t_water_k"]
    )
    assert march_n["wetness"][march_n["sic"] > 0].max() == 0.0
    assert march_n["wetness"][march_n["sic"] == 0].max() == 0.0  # no snow on open water
    assert 0.02 <= march_n["snow_depth_m"].min() and march_n["snow_depth_m"].max() <= 0.5


def test_freeze_thaw_within_a_day(north):
    m = TruthModel(north, np.random.default_rng(0), 0, julian_day_0utc("2020-01-01"))
    jd = julian_day_0utc("2020-07-20")
    g = np.arange(north.ngrid)
    # local afternoon (14 h solar) vs local night (2 h solar) at each point
    afternoon = jd + (14.0 - north.lon / 15.0) / 24.0
    night = jd + (2.0 - north.lon / 15.0) / 24.0
    wet_day = m.wetness(g, afternoon, m.t_air_k(g, afternoon))
    wet_night = m.wetness(g, night, m.t_air_k(g, night))
    ice = m.sic(jd, 0) > 0.5
    assert wet_day[ice].mean() > 2 * wet_night[ice].mean()
    assert wet_day[ice].max() <= 0.03
    assert np.mean(wet_day[ice] > 0.0) > 0.3  # melt is widespread in July


def test_gmi_sees_nothing_poleward_of_its_limit(north):
    rng = np.random.default_rng(0)
    g, jd = sample_day(north, SAMPLING["gmi"], 2459000.875, 0, 1.0, rng)
    assert np.abs(north.lat[g]).max() <= GMI_MAX_ABS_LAT_DEG
    assert np.abs(north.lat[g]).max() > GMI_MAX_ABS_LAT_DEG - 1.0
    assert g.size > 1000


def test_polar_orbiters_cover_the_domain_through_the_day(north):
    rng = np.random.default_rng(0)
    for name in ("amsr2", "ssmisf17"):
        g, jd = sample_day(north, SAMPLING[name], 2459000.875, 0, 1.0, rng)
        assert np.unique(g).size > 0.9 * north.ngrid
        t = jd - 2459000.875
        assert t.min() > 0.0 and t.max() < 1.0 and np.all(np.diff(jd) >= 0)
        hours = np.floor(t * 24)
        assert np.unique(hours).size >= 12  # ~14 passes spread through the day
        # near the pole several passes per day
        near_pole = north.lat[g] > 85
        assert np.bincount(g[near_pole]).max() >= 5


def test_cached_field_evaluation_equals_direct(north):
    m = TruthModel(north, np.random.default_rng(5), 5, 2459000.5)
    g = np.array([0, 17, 17, north.ngrid - 1])
    t = np.array([0.3, 1.7, 2.0, 40.0])
    np.testing.assert_allclose(m._f(m.f_wind, g, t), m.f_wind(north.x_km[g], north.y_km[g], t), atol=1e-10)


def test_day0_first_pass_is_never_thinned(north):
    rng = np.random.default_rng(0)
    g0, jd0 = sample_day(north, SAMPLING["gmi"], 2459000.875, 0, 1e-9, rng)
    g1, jd1 = sample_day(north, SAMPLING["gmi"], 2459001.875, 1, 1e-9, rng)
    assert g0.size > 20 and g1.size == 0
    assert jd0.max() - 2459000.875 < 0.2  # all from the first pass, early in the window
