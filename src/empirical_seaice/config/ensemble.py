"""The configuration of an ensemble of data assimilations (``--ensemble N``).

An ensemble run trains ``members`` copies of the run: member 0 is the ordinary, unperturbed run;
member ``k >= 1`` trains on perturbed observations ``y + eps_o`` (``eps_o ~ N(0, sigma_o,c^2)``
per observation and channel, ``sigma_o,c`` the cost's observation error), from a perturbed
first-guess SIC ``C_b + eps_b`` (``eps_b ~ N(0, sic_error^2)`` per grid point and day) and with
its own training seed (docs/method.md, "Ensemble of data assimilations"). Member ``k``'s
training seed and perturbations come from the run's seed and ``k`` alone
(:func:`member_seed`, :func:`perturbation_seed`), so an ensemble is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empirical_seaice.errors import SeaIceError

DEFAULT_SIC_ERROR = 0.1
"""Standard deviation of the first-guess SIC perturbation (``--ensemble-sic-error``): the default
error of the SIC background prior (``--sic-background-error``), a stated error, not tuned on the
twin (0.05 gave a better ensemble mean but too little spread in summer: benchmarks/science_notes.md)."""

INFLATIONS = ("none", "observations")
"""``--ensemble-inflation``: none (the raw member spread) or observations (the spread scaled so that
the held-out observations' departures match it in observation space, docs/method.md)."""


@dataclass(frozen=True)
class EnsembleConfig:
    """An ensemble of data assimilations.

    members: number of members N >= 2 (member 0 = the unperturbed run).
    sic_error: standard deviation of the first-guess SIC perturbation (SIC units, >= 0).
    obs_error_scale: the observation perturbation's standard deviation in units of the cost's
        observation error sigma_o (> 0 ... 1 = the cost's).
    inflation: how the stated spread is derived from the members' spread (:data:`INFLATIONS`).
    """

    members: int
    sic_error: float = DEFAULT_SIC_ERROR
    obs_error_scale: float = 1.0
    inflation: str = "observations"

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 2:
            raise SeaIceError(
                f"--ensemble: expected a number of members N >= 2 (member 0 is the ordinary run), got {self.members!r}"
            )
        if not np.isfinite(self.sic_error) or self.sic_error < 0.0:
            raise SeaIceError(f"--ensemble-sic-error: expected a standard deviation >= 0, got {self.sic_error}")
        if not np.isfinite(self.obs_error_scale) or self.obs_error_scale <= 0.0:
            raise SeaIceError(f"obs_error_scale: expected a number > 0, got {self.obs_error_scale}")
        if self.inflation not in INFLATIONS:
            raise SeaIceError(f"--ensemble-inflation: expected one of {', '.join(INFLATIONS)}, got {self.inflation!r}")


def _entropy(seed: int) -> int:
    return int(seed) & 0xFFFFFFFFFFFFFFFF  # SeedSequence takes non-negative integers


def member_seed(seed: int, member: int) -> int:
    """The training seed of ``member``: the run's ``seed`` for member 0, else a seed drawn from
    ``(seed, member)`` (``numpy.random.SeedSequence``), in ``[0, 2**31)``."""
    if member == 0:
        return int(seed)
    state = np.random.SeedSequence(_entropy(seed), spawn_key=(int(member), 0)).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def perturbation_seed(seed: int, member: int) -> np.random.SeedSequence:
    """The seed sequence of ``member``'s perturbations, from the run's ``seed`` and ``member``
    (independent of :func:`member_seed`'s stream)."""
    return np.random.SeedSequence(_entropy(seed), spawn_key=(int(member), 1))


__all__ = ["DEFAULT_SIC_ERROR", "INFLATIONS", "EnsembleConfig", "member_seed", "perturbation_seed"]
