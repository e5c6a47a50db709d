"""The typed configuration: one frozen dataclass per concern.

:class:`DataConfig` (what data a run reads), :class:`ModelConfig` (the empirical state and
the emissivity model), :class:`CostConfig` (the terms of J and their errors) and
:class:`TrainingConfig` (how J is minimised, with the automatic batch size and learning
rate). Every field has a one-line description in its class docstring. Values are validated
in ``__post_init__`` and raise :class:`~empirical_seaice.errors.SeaIceError` naming the
option. The named reference configurations built from these are in
:mod:`empirical_seaice.config.presets`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from empirical_seaice.errors import SeaIceError


@dataclass(frozen=True)
class DataConfig:
    """Where the training data is and which part of it to use.

    data: training-data directory (layout B/C) or a layout-A monthly file.
    sensors: sensor names (data sub-directories in layout C).
    stepstart: first time step of the selected period (seed ``--stepstart``).
    nsteps: number of steps to use; None = all (seed ``--nsteps``).
    seaice_background: background SIC file; None = find ``ifs_seaice*.nc`` in ``data``.
    tsfc_background: daily skin-temperature file; None = find ``ifs_tsfc*.nc`` in ``data``.
    grid_file: grid description (``lon``, ``lat`` per grid point); None = ``grid.nc`` in ``data`` if there.
    steps_per_day: time steps per day (n_per_day of the step rule).
    cache: cache the assembled observations as memory-mapped arrays in the output directory.
    sensor_catalogue: TOML file adding or overriding sensors of the shipped catalogue; None = shipped only.
    start_date: first day of the data's period, ISO ``YYYY-MM-DD`` (its step 0 is the 21 UTC window ending
        that day); None = from the bulk of the observations' Julian days (``--start-date``).
    """

    data: Path
    sensors: tuple[str, ...] = ("amsr2",)
    stepstart: int = 0
    nsteps: int | None = None
    seaice_background: Path | None = None
    tsfc_background: Path | None = None
    grid_file: Path | None = None
    steps_per_day: int = 1
    cache: bool = True
    sensor_catalogue: Path | None = None
    start_date: str | None = None

    def __post_init__(self) -> None:
        if self.start_date is not None:
            import datetime

            try:
                datetime.date.fromisoformat(self.start_date)
            except (TypeError, ValueError):
                raise SeaIceError(f"--start-date: expected a date YYYY-MM-DD, got {self.start_date!r}") from None
        if self.stepstart < 0:
            raise SeaIceError(f"--stepstart: must be >= 0, got {self.stepstart}")
        if self.nsteps is not None and self.nsteps < 1:
            raise SeaIceError(f"--nsteps: must be >= 1, got {self.nsteps}")
        if self.steps_per_day < 1:
            raise SeaIceError(f"steps_per_day: must be >= 1, got {self.steps_per_day}")
        if not self.sensors:
            raise SeaIceError("--sensors: give at least one sensor")


@dataclass(frozen=True)
class ModelConfig:
    """The hybrid network: empirical state, emissivity model, physics options.

    version: "v1" (linear, per-channel outputs) or "v2" (frequency-input network, V/H outputs).
    nprop_grid: grid empirical variables per grid point and step (P).
    nprop_obs: observation-space empirical variables per observation (Q).
    nlag: number of lag days in the SIC smoothing.
    lag_weights: alpha_l, l = 0..nlag, weights of C[g, t - l].
    hidden: width of the v2 hidden layer (sigmoid).
    t_ref_k: reference temperature of x_T = max(t_ref - T_s, 0) / t_scale (K).
    t_scale_k: scale of x_T (K).
    ocean_t_floor_k: floor of the ocean surface temperature T_o (K); None = T_s (v1).
    freq_scale_ghz: the v2 network's frequency input is f / freq_scale (GHz).
    ice_emis_init: initial ice emissivity set through the output biases; None = Keras zero biases
        (v2 reference; the v1 reference initialises every channel's bias to 0.93).
    network_frequencies: the v2 network's frequency input per channel: "reference" (the ECMWF v2
        table: 166.5 GHz, 183.31 GHz for every 183 +/- d channel, 36.5 GHz for GMI's 37 GHz) or
        "physical" (each channel's actual frequency: 166.0, 183.31 + d, GMI 36.64). Saved with the
        model and the export, so a trained network is always evaluated with its own convention.
    angle_input: the v2 network also takes cos(theta) of the observation's local zenith (view)
        angle (the conical imagers' incidence, a cross-track sounder's ZENITH); None = on when the
        run has a cross-track sensor (off in the reference-exact v2 preset).
    """

    version: Literal["v1", "v2"] = "v2"
    nprop_grid: int = 2
    nprop_obs: int = 1
    nlag: int = 1
    lag_weights: tuple[float, ...] = (0.6, 0.4)
    hidden: int = 7
    t_ref_k: float = 273.0
    t_scale_k: float = 30.0
    ocean_t_floor_k: float | None = 271.35
    freq_scale_ghz: float = 100.0
    ice_emis_init: float | None = None
    network_frequencies: Literal["reference", "physical"] = "physical"
    angle_input: bool | None = None

    def __post_init__(self) -> None:
        if self.network_frequencies not in ("reference", "physical"):
            raise SeaIceError(f"network_frequencies: expected reference or physical, got {self.network_frequencies!r}")
        if self.ice_emis_init is not None and not 0.0 < self.ice_emis_init < 1.0:
            raise SeaIceError(f"ice_emis_init: must be in (0, 1) or None, got {self.ice_emis_init}")
        if self.version not in ("v1", "v2"):
            raise SeaIceError(f"--model: expected v1 or v2, got {self.version!r}")
        if len(self.lag_weights) != self.nlag + 1:
            raise SeaIceError(
                f"lag_weights: expected {self.nlag + 1} weights for nlag={self.nlag}, got {len(self.lag_weights)}"
            )
        if self.nprop_grid < 0 or self.nprop_obs < 0:
            raise SeaIceError("nprop_grid/nprop_obs: must be >= 0")

    def input_names(self) -> list[str]:
        """Names of the emissivity-model inputs in order: ``x_T, P0.., Q0.., [cos_theta,] f/100`` (v2) or
        ``x_T, P0..`` (v1); ``cos_theta`` (the view angle's cosine) when the network takes the angle.

        The one spelling of the inputs, used by every file that describes the model
        (``models_TAG.nc``, ``emis_model_TAG.nc``).
        """
        names = ["x_T"] + [f"P{k}" for k in range(self.nprop_grid)] + [f"Q{k}" for k in range(self.nprop_obs)]
        if self.version == "v2":
            if self.angle_input:
                names.append("cos_theta")
            names.append(f"f/{self.freq_scale_ghz:g}")
        return names


@dataclass(frozen=True)
class CostConfig:
    """The cost function J = J_o + J_b (docs/method.md, "The cost function J").

    sic_error: sigma_C of the SIC range ("pdf") prior (reference: v1 0.02, v2 0.002).
    sic_background_prior: add sum (C - C_b)^2 / sigma^2 (off in the published runs).
    sic_background_error: sigma of that prior.
    false_ice_prior: add the v2 false-ice prior on SIC in (0, 0.3).
    false_ice_error: error scale of the false-ice prior.
    false_ice_shape: "smooth" (the v2 reference's C1 bump, peak 0.00375 / sigma^2 at C = 0.15) or
        "tent" (min(C, 0.3 - C)^2 / sigma^2, peak 0.0225 / sigma^2, kink at 0.15).
    false_ice_peak_scaling: curvature ratio s of the smooth bump's cap to its quadratic flanks (0.2).
    warm_ice: "diagnostic" (reference: zero gradient, monitored only) or "effective" (differentiable).
    warm_ice_factor: factor of the warm-ice term (4 in the reference).
    warm_ice_threshold_k: skin temperature above which ice is "warm" (K).
    anchor: "mean" (v1: mean 10v ice emissivity held at anchor_value) or "floor" (v2: one-sided floor).
    anchor_channels: anchor channel, first one the run has (10v, else 24v); unused when
        anchor_frequency_ghz is set.
    anchor_frequency_ghz: v2 floor only: evaluate the network once more per observation at this
        frequency, V polarisation, and hold that emissivity above the floor (original v2: 23.8);
        None = floor the emissivity of the run's anchor channel (the fork's later variant).
    anchor_value: v1 anchor value / v2 floor of the anchor ice emissivity.
    anchor_error: error of the anchor term.
    bias_bg: per-sensor override {sensor: (ice K, ocean K, error K)}; sensors not listed use the catalogue.
    sic_smoothness_error: sigma_s of the SIC smoothness prior between neighbouring grid points on the same
        day, sum (C_g - C_h)^2 / sigma_s^2 (docs/method.md); None = off (the reference: every grid point
        independent).
    sic_smoothness_time_error: sigma_t of the same prior between consecutive days of one grid point; None = off.
    emis_ceiling_error: sigma_e of the ice-emissivity ceiling, ``sum_i sum_c m_ic max(e_ic - 1, 0)^2 /
        sigma_e^2`` over every observed channel of every observation (an emissivity cannot exceed 1; the v1
        linear model alone can leave (0, 1]); None = off (the reference).
    """

    sic_error: float = 0.02
    sic_background_prior: bool = False
    sic_background_error: float = 0.1
    false_ice_prior: bool = True
    false_ice_error: float = 0.02
    false_ice_shape: Literal["smooth", "tent"] = "smooth"
    false_ice_peak_scaling: float = 0.2
    warm_ice: Literal["diagnostic", "effective"] = "diagnostic"
    warm_ice_factor: float = 4.0
    warm_ice_threshold_k: float = 273.2
    anchor: Literal["mean", "floor"] = "floor"
    anchor_channels: tuple[str, ...] = ("10v", "24v")
    anchor_frequency_ghz: float | None = None
    anchor_value: float = 0.7
    anchor_error: float = 1e-5
    bias_bg: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    sic_smoothness_error: float | None = None
    sic_smoothness_time_error: float | None = None
    emis_ceiling_error: float | None = None

    @property
    def sic_smoothness(self) -> bool:
        """Whether the SIC smoothness prior is on (in space, time or both)."""
        return self.sic_smoothness_error is not None or self.sic_smoothness_time_error is not None

    def __post_init__(self) -> None:
        if self.warm_ice not in ("diagnostic", "effective"):
            raise SeaIceError(f"--warm-ice: expected diagnostic or effective, got {self.warm_ice!r}")
        if self.anchor not in ("mean", "floor"):
            raise SeaIceError(f"anchor: expected mean or floor, got {self.anchor!r}")
        if self.false_ice_shape not in ("smooth", "tent"):
            raise SeaIceError(f"false_ice_shape: expected smooth or tent, got {self.false_ice_shape!r}")
        if not 0.0 < self.false_ice_peak_scaling:
            raise SeaIceError(f"false_ice_peak_scaling: must be > 0, got {self.false_ice_peak_scaling}")
        if self.anchor_frequency_ghz is not None and not 1.0 <= self.anchor_frequency_ghz <= 400.0:
            raise SeaIceError(f"anchor_frequency_ghz: expected 1..400 GHz or None, got {self.anchor_frequency_ghz}")
        if self.anchor_frequency_ghz is not None and self.anchor != "floor":
            raise SeaIceError("anchor_frequency_ghz: only the v2 floor anchor evaluates an extra frequency")
        for name in ("sic_error", "sic_background_error", "false_ice_error", "anchor_error"):
            if getattr(self, name) <= 0:
                raise SeaIceError(f"{name}: must be > 0, got {getattr(self, name)}")
        self._check_smoothness()

    def _check_smoothness(self) -> None:
        for flag, value in (
            ("--sic-smoothness", self.sic_smoothness_error),
            ("--sic-smoothness-time", self.sic_smoothness_time_error),
            ("--emis-ceiling", self.emis_ceiling_error),
        ):
            if value is not None and not 0.0 < value < float("inf"):
                raise SeaIceError(f"{flag}: the error must be a finite number > 0, got {value}")


OPTIMIZERS = ("deferred-adam", "sparse-adam", "dense-adam")
"""State-table optimiser schemes (TrainingConfig.optimizer)."""
DEPRECATED_OPTIMIZERS: Mapping[str, str] = {"sparse": "deferred-adam", "lazy": "sparse-adam", "dense": "dense-adam"}
"""Old names of the optimiser schemes, still accepted."""
MAP_PRIORS = ("auto", "sampled", "full")
"""How the whole-map SIC priors enter a step (TrainingConfig.map_priors)."""
FULL_PRIORS_MAX_SIC_ROWS = 200_000
"""``map_priors="auto"`` takes the full whole-map priors up to this many SIC-map rows (grid points x
(days + lag days)), where their pass over the map costs about as much as the rest of a fused step
(measured: benchmarks/results.md, "Whole-map priors at every step, fused"); sampled above."""
BATCH_ORDERS = ("shuffled", "reference-blocks")
"""How an epoch is cut into minibatches (TrainingConfig.batch_order)."""

AUTO_STEPS_PER_EPOCH = 200
"""The automatic batch size gives an epoch at least about this many steps."""
AUTO_BATCH_RANGE = (128, 1024)
"""Smallest and largest automatic batch size (the largest is the reference's)."""
REFERENCE_BATCH_SIZE = 1024
REFERENCE_LEARNING_RATE = 1e-3


def auto_batch_size(nobs: int) -> int:
    """The default batch size for ``nobs`` training observations.

    The largest power of two not above ``nobs / AUTO_STEPS_PER_EPOCH``, within
    ``AUTO_BATCH_RANGE``: the reference's 1024 from 204,800 observations on
    (a month of one imager and more); smaller for small data sets, so that an
    epoch still has enough steps to move every SIC cell.

    >>> auto_batch_size(9322), auto_batch_size(141596), auto_batch_size(2_730_000)
    (128, 512, 1024)
    """
    lo, hi = AUTO_BATCH_RANGE
    target = max(int(nobs) // AUTO_STEPS_PER_EPOCH, 1)
    return int(min(max(1 << (target.bit_length() - 1), lo), hi))


def choose_map_priors(sic_rows: int, fused_reason: str = "") -> tuple[str, str]:
    """What ``map_priors="auto"`` takes for a SIC map of ``sic_rows`` rows: ``(mode, why)``.

    "full" (the reference's exact whole-map priors at every step, in the fused step) up to
    :data:`FULL_PRIORS_MAX_SIC_ROWS` rows, where its pass over the map costs about what the
    rest of a step does; "sampled" above, or where the fused step does not apply
    (``fused_reason``: why not; the tensor step has no full mode with deferred-adam).

    >>> choose_map_priors(87_513)[0], choose_map_priors(2_000_000)[0]
    ('full', 'sampled')
    """
    limit = FULL_PRIORS_MAX_SIC_ROWS
    if fused_reason:
        return "sampled", f"the fused step does not apply ({fused_reason})"
    if sic_rows <= limit:
        return "full", f"{sic_rows:,} SIC-map rows <= {limit:,}: the reference's exact priors at every step"
    return "sampled", f"{sic_rows:,} SIC-map rows > {limit:,}: the whole map at every step costs more than the step"


def auto_learning_rate(batch_size: int) -> float:
    """The default Adam step for a batch size: ``1e-3 * 1024 / batch_size``.

    The reference's 1e-3 at its batch of 1024. A SIC cell is seen by a few
    observations per epoch whatever the batch, and Adam moves a parameter by
    about the learning rate per step, so a smaller batch (more steps) with a
    proportionally larger step lets a cell travel as far per observation.

    >>> auto_learning_rate(1024), auto_learning_rate(128)
    (0.001, 0.008)
    """
    return REFERENCE_LEARNING_RATE * REFERENCE_BATCH_SIZE / int(batch_size)


@dataclass(frozen=True)
class TrainingConfig:
    """How the cost is minimised.

    The field defaults are the library's (the seed's 8 epochs, the reference's
    batch and step); a command-line run starts from :data:`~empirical_seaice.config.presets.DEFAULT_TRAINING`
    or :data:`~empirical_seaice.config.presets.REFERENCE_TRAINING` instead
    (:func:`~empirical_seaice.config.presets.starting_configuration`).

    nepochs: passes over the training observations.
    batch_size: observations per minibatch; None = :func:`auto_batch_size` of the training observations.
    learning_rate: Adam step size of the per-cell tables (the SIC map, the empirical state); None =
        :func:`auto_learning_rate` of the batch size.
    network_learning_rate: Adam step size of the dense weights (the network, the TB biases, which get
        a gradient at every step); None = :meth:`network_step`'s rule: ``learning_rate`` up to the
        reference's 1e-3, above it the geometric mean ``sqrt(learning_rate * 1e-3)``.
    seed: seed of the one random generator of the run.
    reproducible: deterministic algorithms and seeded everything (identical files on rerun).
    validation_fraction: fraction of observations held out of training.
    early_stopping: stop when the held-out observation cost stops improving.
    patience: epochs without improvement before early stopping.
    region_stopping: with early stopping on a grid of both hemispheres, hold each hemisphere's state at
        its own best epoch once its own held-out cost has not improved for ``patience`` epochs, while
        the rest trains on (:mod:`empirical_seaice.training.regions`).
    validation_min_obs: hold observations out only from this many on (fewer: no held-out
        observations and no early stopping, :meth:`resolved`); 0 = always.
    lr_decay: the learning rate of epoch k (0-based) is ``learning_rate * lr_decay ** k``.
    plateau_cuts: with early stopping, up to this many times the learning rate is multiplied by
        ``plateau_factor`` where training would stop (the held-out cost not falling for ``patience``
        epochs since its best or the last cut); then it stops.
    device: "auto" (CUDA if available), "cpu" or "cuda".
    optimizer: state-table optimiser: "deferred-adam" (dense Adam's updates, applied when a row is
        next read: cost per step scales with the batch), "sparse-adam" (torch SparseAdam: rows a batch
        misses keep their moments) or "dense-adam" (plain Adam over every table, the reference's way);
        the old names sparse, lazy, dense are accepted.
    map_priors: whole-map SIC priors per step: "sampled" over the batch's rows (unbiased; O(batch)),
        "full" (every row every step, the reference's way: dense-adam, or deferred-adam in the fused
        step, which then steps the whole SIC map at every step) or "auto" (deferred-adam: full up to
        :data:`FULL_PRIORS_MAX_SIC_ROWS` SIC-map rows when the fused step applies, else sampled,
        :func:`choose_map_priors`; other optimisers: their default); None = full with dense-adam,
        else sampled.
    batch_order: "shuffled" (observations shuffled each epoch) or "reference-blocks" (contiguous
        batch_size blocks in file order, only the block order shuffled, as the v2 reference).
    adam_epsilon: where Adam's epsilon (1e-7) enters: "torch" (added to the bias-corrected sqrt(v_hat))
        or "keras" (added to sqrt(v) before the bias correction, as the reference's Keras Adam does:
        the torch-convention epsilon eps / sqrt(1 - beta2^t), 3.2e-6 at step 1).
    fused_step: run each training step as one compiled step (forward, cost, gradient and Adam;
        ``empirical_seaice.training.fused_step``) where it applies (CPU, "deferred-adam" scheme, numba installed);
        False = the tensor step. Equal results to float32 rounding.
    tensor_step_threads: torch's CPU threads while the tensor step trains (where the fused step is
        off or does not apply); None = the run's count (``--threads``). An automatic ``--threads`` sets 1:
        the tensor step's operations are small (on two cores, two threads trained 10% slower than one,
        for 60% more CPU time; docs/usage.md, "Presets").
    exact_reference: the run started from the reference's configuration (``--exact-reference``:
        :data:`~empirical_seaice.config.presets.REFERENCE_TRAINING`). Trains nothing differently; kept in
        ``model_TAG.pt`` and ``models_TAG.nc`` so that a later ``--diagsonly`` of the model writes the
        products the reference has (no open-water filter) as the trained run did.
    """

    nepochs: int = 8
    batch_size: int | None = REFERENCE_BATCH_SIZE
    learning_rate: float | None = REFERENCE_LEARNING_RATE
    network_learning_rate: float | None = None
    seed: int = 0
    reproducible: bool = False
    validation_fraction: float = 0.0
    early_stopping: bool = False
    patience: int = 1
    region_stopping: bool = True
    validation_min_obs: int = 0
    lr_decay: float = 1.0
    plateau_cuts: int = 0
    plateau_factor: float = 0.5
    device: str = "auto"
    optimizer: str = "deferred-adam"
    map_priors: str | None = None
    batch_order: str = "shuffled"
    adam_epsilon: Literal["torch", "keras"] = "torch"
    fused_step: bool = True
    tensor_step_threads: int | None = None
    exact_reference: bool = False

    def __post_init__(self) -> None:
        self._check_schemes()
        if self.adam_epsilon not in ("torch", "keras"):
            raise SeaIceError(f"adam_epsilon: expected torch or keras, got {self.adam_epsilon!r}")
        self._check_counts()
        if not 0.0 <= self.validation_fraction < 1.0:
            raise SeaIceError(f"--validation-fraction: must be in [0, 1), got {self.validation_fraction}")
        if self.early_stopping and self.validation_fraction == 0.0:
            raise SeaIceError("--early-stopping needs --validation-fraction > 0")
        if self.learning_rate is not None and not 0 < self.learning_rate < float("inf"):  # also NaN
            raise SeaIceError(f"--learning-rate: must be a finite number > 0, got {self.learning_rate}")
        if self.network_learning_rate is not None and not 0 < self.network_learning_rate < float("inf"):
            raise SeaIceError(f"--network-learning-rate: must be a finite number > 0, got {self.network_learning_rate}")
        if self.plateau_cuts < 0:
            raise SeaIceError(f"--plateau-cuts: must be >= 0, got {self.plateau_cuts}")
        if not 0.0 < self.plateau_factor < 1.0:  # no flag: set in Python (TrainingConfig.plateau_factor)
            raise SeaIceError(f"TrainingConfig.plateau_factor: must be in (0, 1), got {self.plateau_factor}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise SeaIceError(f"--lr-decay: must be in (0, 1], got {self.lr_decay}")
        if self.patience < 1:
            raise SeaIceError(f"--patience: must be >= 1, got {self.patience}")

    def _check_counts(self) -> None:
        """Check the epochs, the batch size and the tensor step's threads."""
        if self.nepochs < 0:
            raise SeaIceError(f"--nepochs: must be >= 0, got {self.nepochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise SeaIceError(f"--batchsize: must be >= 1, got {self.batch_size}")
        if self.tensor_step_threads is not None and self.tensor_step_threads < 1:
            raise SeaIceError(f"tensor_step_threads: must be >= 1 or None, got {self.tensor_step_threads}")

    def _check_schemes(self) -> None:
        """Normalise a deprecated optimiser name; check the optimiser, prior and batch schemes."""
        if self.optimizer in DEPRECATED_OPTIMIZERS:
            object.__setattr__(self, "optimizer", DEPRECATED_OPTIMIZERS[self.optimizer])
        if self.optimizer not in OPTIMIZERS:
            raise SeaIceError(f"--optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.map_priors is not None and self.map_priors not in MAP_PRIORS:
            raise SeaIceError(f"--map-priors: expected auto, sampled or full, got {self.map_priors!r}")
        if self.map_priors == "full" and self.optimizer == "sparse-adam":
            raise SeaIceError(
                "--map-priors full: every SIC row moves at every step, which sparse-adam does not do; "
                "use --optimizer deferred-adam or dense-adam, or --map-priors sampled"
            )
        if self.batch_order not in BATCH_ORDERS:
            raise SeaIceError(f"--batch-order: expected shuffled or reference-blocks, got {self.batch_order!r}")

    @property
    def prior_mode(self) -> str:
        """The whole-map prior mode in effect: ``map_priors``, or its default for the optimiser
        (None: full with dense-adam, else sampled); "auto" stays "auto" with deferred-adam (the
        trainer chooses, :func:`choose_map_priors`) and is the optimiser's default otherwise."""
        if self.map_priors == "auto" and self.optimizer == "deferred-adam":
            return "auto"
        if self.map_priors not in (None, "auto"):
            return self.map_priors
        return "full" if self.optimizer == "dense-adam" else "sampled"

    @property
    def too_few_to_hold_out(self) -> bool:
        """Whether :meth:`resolved` switched the hold-out off (fewer than ``validation_min_obs``)."""
        return self.validation_fraction == 0.0 and self.validation_min_obs > 0

    @property
    def network_step(self) -> float:
        """The dense weights' Adam step: ``network_learning_rate``, else ``learning_rate`` where it is at
        most the reference's 1e-3 and ``sqrt(learning_rate * 1e-3)`` above (2.8e-3 at batch 128).

        :func:`auto_learning_rate` raises the step with smaller batches so that a SIC cell, read by a
        few observations an epoch, travels as far. The network and the TB biases get a gradient at
        every step: the full raise moved them far along the SIC-emissivity trade-off the observations
        hardly see (more steps, lower SIC in the pack), the reference's 1e-3 left short runs unfit;
        the geometric mean was measured between the two (docs/training-defaults.md)."""
        if self.network_learning_rate is not None:
            return self.network_learning_rate
        if self.learning_rate is None:
            raise SeaIceError("TrainingConfig.network_step: learning_rate is automatic; call resolved() first")
        if self.learning_rate <= REFERENCE_LEARNING_RATE:
            return self.learning_rate  # the very same value: --exact-reference's one Adam group stays one
        return math.sqrt(self.learning_rate * REFERENCE_LEARNING_RATE)

    def check_batch(self, nobs_train: int) -> None:
        """A batch asked for holds at most the ``nobs_train`` training observations: more is an epoch of one
        step, at an automatic learning rate that shrinks with the batch (``--batchsize 8192`` on 4,856
        observations trained at 1.25e-4 and ended where it began). Raises :class:`SeaIceError` naming the
        largest batch allowed and the automatic one; an automatic batch (None) is not checked. The command
        line checks the batch it was given (``--batchsize``, or ``--exact-reference``'s 1024); the library's
        default, the reference's 1024, is not refused on fewer observations elsewhere."""
        if self.batch_size is not None and self.batch_size > nobs_train > 0:
            rate = "" if self.learning_rate is None else f" at learning rate {self.learning_rate:.3g}"
            raise SeaIceError(
                f"--batchsize {self.batch_size}: more than the {nobs_train:,} training observations, so every epoch "
                f"would be one step{rate}; give at most {nobs_train:,}, or leave --batchsize out (automatic: "
                f"{auto_batch_size(nobs_train)} here)"
            )

    def resolved(self, nobs_train: int) -> TrainingConfig:
        """This configuration with the automatic batch size and learning rates made concrete, and the
        hold-out decided: none (and no early stopping) with fewer than ``validation_min_obs``
        observations, else kept (``validation_min_obs`` then 0, so a second call keeps it)."""
        batch = self.batch_size if self.batch_size is not None else auto_batch_size(nobs_train)
        lr = self.learning_rate if self.learning_rate is not None else auto_learning_rate(batch)
        fraction, stopping, min_obs = self.validation_fraction, self.early_stopping, self.validation_min_obs
        if fraction > 0.0 and min_obs > 0:
            if nobs_train < min_obs:
                fraction, stopping = 0.0, False
            else:
                min_obs = 0
        return replace(
            self,
            batch_size=batch,
            learning_rate=lr,
            network_learning_rate=replace(self, learning_rate=lr).network_step,
            map_priors=self.prior_mode,
            validation_fraction=fraction,
            early_stopping=stopping,
            validation_min_obs=min_obs,
        )


__all__ = [
    "DataConfig",
    "ModelConfig",
    "CostConfig",
    "TrainingConfig",
    "OPTIMIZERS",
    "DEPRECATED_OPTIMIZERS",
    "MAP_PRIORS",
    "FULL_PRIORS_MAX_SIC_ROWS",
    "choose_map_priors",
    "BATCH_ORDERS",
    "AUTO_STEPS_PER_EPOCH",
    "AUTO_BATCH_RANGE",
    "REFERENCE_BATCH_SIZE",
    "REFERENCE_LEARNING_RATE",
    "auto_batch_size",
    "auto_learning_rate",
]
