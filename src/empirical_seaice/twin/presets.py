"""Configuration of a twin run and its named presets.

Examples
--------
>>> cfg = get_twin_preset("tiny")
>>> cfg.days, cfg.resolution_km
(6, 100.0)
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, replace

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import load_catalogue
from empirical_seaice.twin.grid import HEMISPHERES

TWIN_HEMISPHERES = (*HEMISPHERES, "both")
"""The twin's ``--hemisphere`` values."""

MAX_DAYS = 3660
"""The longest twin (ten years): ``--days`` beyond it is a mistyped number, not a twin to wait hours for."""


@dataclass(frozen=True)
class TwinConfig:
    """One twin run.

    name: preset name (recorded in the output).
    hemisphere: "north", "south" or "both" (a global grid: the two polar grids, north first; each
        hemisphere's truth and observations as its own twin's, the south's from a seed of its own).
    resolution_km: grid spacing (km).
    lat_limit_deg: equatorward |latitude| limit of the domain (degrees).
    days: number of daily steps (21 UTC windows).
    start_date: first day, YYYY-MM-DD (its window starts at 21 UTC the day before).
    sensors: sensors to simulate (layout-C sub-directories).
    keep_fraction: fraction of swath grid points kept per pass (thinning).
    noise_scale: multiplier of the catalogue's instrument noise (`noise_k`, else `obs_error_k`) for the Gaussian
        noise (0 = noise-free).
    seed: seed of the run's one random generator.
    realism: "ideal" (the network's own physics, exact inputs, white noise) or "realistic" (every effect of
        :mod:`empirical_seaice.twin.realism`).
    effects: the realism effects to apply instead of the level's (None = the level's).
    ice_model: "smrt" (the SMRT table) or "literature" (published spectra, :mod:`.ice_literature`).
    sensor_catalogue: TOML file adding sensors to the shipped catalogue (the twin can write any catalogue sensor).
    ice_view_angle: True: a cross-track sensor's ice emissivity changes with its view angle (the SMRT
        angular table); False: the 53-deg table at every angle, which the model without the view-angle
        input can represent (a diagnostic twin: docs/usage.md, "Sensors").
    """

    name: str = "custom"
    hemisphere: str = "north"
    resolution_km: float = 100.0
    lat_limit_deg: float = 50.0
    days: int = 30
    start_date: str = "2020-09-10"
    sensors: tuple[str, ...] = ("amsr2", "gmi", "ssmisf17")
    keep_fraction: float = 0.2
    noise_scale: float = 1.0
    seed: int = 0
    realism: str = "ideal"
    effects: tuple[str, ...] | None = None
    ice_model: str = "smrt"
    sensor_catalogue: str | None = None
    ice_view_angle: bool = True

    def __post_init__(self) -> None:
        self._check_realism()
        if self.hemisphere not in TWIN_HEMISPHERES:
            raise SeaIceError(f"--hemisphere: expected one of {', '.join(TWIN_HEMISPHERES)}, got {self.hemisphere!r}")
        if not self.sensors:
            raise SeaIceError("--sensors: give at least one sensor")
        catalogue = load_catalogue(self.sensor_catalogue)
        for s in self.sensors:
            catalogue.sensor(s)
        if len(set(self.sensors)) != len(self.sensors):
            raise SeaIceError(f"--sensors: a sensor is given twice in {' '.join(self.sensors)}")
        self._check_numbers()
        try:
            start = _dt.date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            raise SeaIceError(f"--start-date: expected YYYY-MM-DD, got {self.start_date!r}") from None
        if not 1970 <= start.year <= 2090:  # the training reads Julian days of 1970-2100 only
            raise SeaIceError(f"--start-date: expected a day of 1970-2090 (what training reads), got {self.start_date}")

    def _check_numbers(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise SeaIceError(f"--days: expected 1 to {MAX_DAYS} (ten years), got {self.days}")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise SeaIceError(f"keep_fraction: expected (0, 1], got {self.keep_fraction}")
        if not self.noise_scale >= 0.0:  # NaN too (a twin of NaN TBs)
            raise SeaIceError(f"--noise-scale: must be a number >= 0, got {self.noise_scale}")
        if self.seed < 0:
            raise SeaIceError(f"--seed: must be >= 0, got {self.seed}")

    def _check_realism(self) -> None:
        from empirical_seaice.twin.ice_literature import ICE_MODELS
        from empirical_seaice.twin.realism import effects_from

        effects_from(self.realism, self.effects)
        if self.ice_model not in ICE_MODELS:
            raise SeaIceError(f"--ice-model: expected one of {', '.join(ICE_MODELS)}, got {self.ice_model!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sensors"] = list(self.sensors)
        d["effects"] = list(self.active_effects)
        return d

    @property
    def active_effects(self) -> tuple[str, ...]:
        """The realism effects this run applies."""
        from empirical_seaice.twin.realism import effects_from

        return effects_from(self.realism, self.effects)


TWIN_PRESETS = {
    # tests: seconds, a few thousand observations per sensor, Arctic late winter
    "tiny": TwinConfig(
        name="tiny", resolution_km=100.0, lat_limit_deg=60.0, days=6, start_date="2021-03-01", keep_fraction=0.08
    ),
    # make demo: ~150k observations, Arctic freeze-up after the September minimum
    "demo": TwinConfig(
        name="demo", resolution_km=100.0, lat_limit_deg=50.0, days=30, start_date="2020-09-10", keep_fraction=0.2
    ),
    # performance work: a year (the reference period starts 2020-07-01), > 2 million observations
    "benchmark": TwinConfig(
        name="benchmark",
        resolution_km=50.0,
        lat_limit_deg=50.0,
        days=365,
        start_date="2020-07-01",
        keep_fraction=0.08,
        realism="realistic",
    ),
    # the science benchmark (benchmarks/science.py): realistic, small enough for a shared 2-core machine
    "science": TwinConfig(
        name="science",
        resolution_km=100.0,
        lat_limit_deg=55.0,
        days=20,
        start_date="2020-09-20",
        keep_fraction=0.2,
        realism="realistic",
    ),
}


def get_twin_preset(name: str, **overrides) -> TwinConfig:
    """A preset, with ``overrides`` (fields of :class:`TwinConfig`; None values ignored)."""
    try:
        base = TWIN_PRESETS[name]
    except KeyError:
        raise SeaIceError(f"--preset: unknown twin preset {name!r}; known presets: {', '.join(TWIN_PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
