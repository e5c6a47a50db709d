"""The perturbations of an ensemble member: their statistics, their seeds, the ensemble statistics,
and the configuration's one-line errors (no training here; the runs are in tests/e2e/test_ensemble.py)."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.config.ensemble import EnsembleConfig, member_seed, perturbation_seed
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.ensemble_file import ensemble_statistics
from empirical_seaice.run.perturb import BLOCK_ROWS, perturb_sic, perturb_tb


def test_observation_perturbation_has_the_stated_std_per_channel_and_spares_masked_values():
    rng = np.random.default_rng(3)
    n, sigma = 40_000, np.array([1.0, 2.5, 10.0])
    y = rng.uniform(150.0, 280.0, (n, 3)).astype(np.float32)
    mask = rng.random((n, 3)) > 0.2
    y[~mask] = 0.0
    new = perturb_tb(y, mask, sigma, np.random.default_rng(7))
    d = new.astype(np.float64) - y
    assert np.all(d[~mask] == 0.0)
    for c in range(3):
        dc = d[mask[:, c], c]
        # sampling errors: std of the std ~ sigma / sqrt(2 n), of the mean ~ sigma / sqrt(n); float32 rounding ~1e-5 K
        assert abs(dc.std() / sigma[c] - 1.0) < 4.0 / np.sqrt(2 * dc.size)
        assert abs(dc.mean()) < 4.0 * sigma[c] / np.sqrt(dc.size)
    # channels are drawn independently
    both = mask[:, 0] & mask[:, 2]
    assert abs(np.corrcoef(d[both, 0], d[both, 2])[0, 1]) < 4.0 / np.sqrt(both.sum())


def test_observation_perturbation_is_the_same_in_blocks_as_whole():
    """The blocks of draws only bound the temporaries: more rows than a block give the same values
    for the rows of the first block as a call on that block alone."""
    n = BLOCK_ROWS + 5
    y = np.full((n, 1), 200.0, dtype=np.float32)
    mask = np.ones((n, 1), dtype=bool)
    whole = perturb_tb(y, mask, np.array([2.0]), np.random.default_rng(1))
    first = perturb_tb(y[:BLOCK_ROWS], mask[:BLOCK_ROWS], np.array([2.0]), np.random.default_rng(1))
    np.testing.assert_array_equal(whole[:BLOCK_ROWS], first)
    assert whole[BLOCK_ROWS:].std() > 0


def test_sic_perturbation_has_the_stated_std_and_keeps_missing_values():
    sic = np.tile(np.linspace(0.0, 1.0, 200, dtype=np.float32), (100, 1))
    sic[0, :5] = np.nan
    new = perturb_sic(sic, 0.1, np.random.default_rng(5))
    assert np.isnan(new[0, :5]).all()
    d = (new.astype(np.float64) - sic)[np.isfinite(sic)]
    assert abs(d.std() / 0.1 - 1.0) < 4.0 / np.sqrt(2 * d.size)
    assert abs(d.mean()) < 4.0 * 0.1 / np.sqrt(d.size)
    assert new.dtype == np.float32 and np.nanmin(new) < 0.0 < 1.0 < np.nanmax(new)  # not clipped: unbiased


def test_member_seeds_come_from_the_run_seed_and_the_member():
    assert member_seed(17, 0) == 17
    seeds = [member_seed(17, k) for k in range(1, 6)]
    assert len(set(seeds)) == 5 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [member_seed(17, k) for k in range(1, 6)]
    assert member_seed(18, 1) != member_seed(17, 1)
    a = np.random.default_rng(perturbation_seed(17, 1)).standard_normal(4)
    np.testing.assert_array_equal(a, np.random.default_rng(perturbation_seed(17, 1)).standard_normal(4))
    assert not np.allclose(a, np.random.default_rng(perturbation_seed(17, 2)).standard_normal(4))
    assert member_seed(-1, 1) >= 0  # a negative --seed works too


def test_ensemble_statistics_are_the_mean_and_the_sample_std():
    members = [np.array([[0.2, 1.0]]), np.array([[0.4, 1.0]]), np.array([[0.9, 1.0]])]
    mean, spread = ensemble_statistics(members)
    np.testing.assert_allclose(mean, [[0.5, 1.0]])
    # ((0.2-0.5)^2 + (0.4-0.5)^2 + (0.9-0.5)^2) / 2 = 0.13
    np.testing.assert_allclose(spread, [[np.sqrt(0.13), 0.0]])
    with pytest.raises(ValueError):
        ensemble_statistics(members[:1])


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"members": 1}, "--ensemble"),
        ({"members": 0}, "--ensemble"),
        ({"members": True}, "--ensemble"),
        ({"members": 3, "sic_error": -0.1}, "--ensemble-sic-error"),
        ({"members": 3, "sic_error": float("nan")}, "--ensemble-sic-error"),
        ({"members": 3, "inflation": "lots"}, "--ensemble-inflation"),
    ],
)
def test_bad_ensemble_settings_are_one_line_errors(kwargs, flag):
    with pytest.raises(SeaIceError) as err:
        EnsembleConfig(**kwargs)
    assert str(err.value).startswith(flag) and "\n" not in str(err.value)


def _consistent_case(tau: float, s0: float, n: int = 60_000, members: int = 5, seed: int = 11):
    """Members' simulations with spread ``s0`` about their mean, the mean in error by ``tau`` and the
    observations with noise sigma: E[d^2] = tau^2 + sigma^2, E[s^2] = s0^2 (K)."""
    rng = np.random.default_rng(seed)
    sigma = np.array([2.0, 5.0])
    truth = rng.uniform(180.0, 260.0, (n, 2))
    centre = truth + tau * rng.standard_normal((n, 2))
    sims = centre + s0 * rng.standard_normal((members, n, 2))
    y = truth + sigma * rng.standard_normal((n, 2))
    return y, sims, np.ones((n, 2), dtype=bool), sigma


def test_observation_space_inflation_recovers_the_missing_spread():
    from empirical_seaice.run.ensemble_calibration import consistency_sums, inflation_factor

    # the mean of 5 members has its own sampling error s0^2 / 5: E[d^2] = tau^2 + s0^2/5 + sigma^2
    tau, s0 = 6.0, 3.0
    y, sims, mask, sigma = _consistent_case(tau, s0)
    excess, spread, n = consistency_sums(y, sims, mask, sigma)
    assert n == mask.size
    lam = inflation_factor(excess, spread)
    assert abs(lam - np.sqrt((tau**2 + s0**2 / 5) / s0**2)) < 0.03
    # a consistent ensemble (the truth drawn like a member: tau = s0) gets the finite-ensemble factor
    # sqrt(1 + 1/N) of its mean's error; a larger spread is not deflated
    y, sims, mask, sigma = _consistent_case(s0, s0)
    assert abs(inflation_factor(*consistency_sums(y, sims, mask, sigma)[:2]) - np.sqrt(1.2)) < 0.03
    y, sims, mask, sigma = _consistent_case(1.0, s0)
    assert inflation_factor(*consistency_sums(y, sims, mask, sigma)[:2]) == 1.0
    assert inflation_factor(5.0, 0.0) == 1.0


def test_observation_space_sums_skip_masked_and_missing_values():
    from empirical_seaice.run.ensemble_calibration import consistency_sums

    y = np.array([[200.0, 0.0], [210.0, 220.0]])
    sims = np.array([[[201.0, np.nan], [208.0, 221.0]], [[203.0, np.nan], [212.0, 219.0]]])
    mask = np.array([[True, False], [True, True]])
    sigma = np.array([1.0, 2.0])
    excess, spread, n = consistency_sums(y, sims, mask, sigma)
    # valid: (0,0) d = -2, var 2; (1,0) d = 0, var 8; (1,1) d = 0, var 2
    assert n == 3
    assert excess == pytest.approx((4.0 - 1.0) / 1.0 + (0.0 - 1.0) / 1.0 + (0.0 - 4.0) / 4.0)
    assert spread == pytest.approx(2.0 / 1.0 + 8.0 / 1.0 + 2.0 / 4.0)


def test_a_missing_member_file_is_a_one_line_error_naming_it(tmp_path):
    from empirical_seaice.run.ensemble_calibration import _open_tbsim

    path = tmp_path / "members" / "01" / "tbsim_t.nc"
    with pytest.raises(SeaIceError, match=r"members/01/tbsim_t\.nc: cannot read a member's simulated TBs") as err:
        _open_tbsim(path)
    assert "\n" not in str(err.value) and "--ensemble-inflation none" in str(err.value)
