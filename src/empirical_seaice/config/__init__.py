"""Typed configuration (:mod:`~empirical_seaice.config.schema`) and the v1/v2 presets
(:mod:`~empirical_seaice.config.presets`).

The presets reproduce the reference settings exactly (docs/method.md, "Presets"); the CLI
only fills these in. This package's namespace is the one to import from
(``from empirical_seaice.config import TrainingConfig, get_preset``); ``replace`` is
:func:`dataclasses.replace`, for changing a frozen configuration.
"""

from __future__ import annotations

from dataclasses import replace

from empirical_seaice.config.presets import (
    DEFAULT_EMIS_CEILING_ERROR,
    DEFAULT_ICE_EMIS_INIT,
    DEFAULT_SIC_SMOOTHNESS_TIME,
    DEFAULT_TRAINING,
    PRESETS,
    REFERENCE_TRAINING,
    V2_FORK_ANCHOR,
    VALIDATION_MIN_OBS,
    Preset,
    get_preset,
    starting_configuration,
)
from empirical_seaice.config.schema import (
    BATCH_ORDERS,
    DEPRECATED_OPTIMIZERS,
    FULL_PRIORS_MAX_SIC_ROWS,
    MAP_PRIORS,
    OPTIMIZERS,
    CostConfig,
    DataConfig,
    ModelConfig,
    TrainingConfig,
    auto_batch_size,
    auto_learning_rate,
    choose_map_priors,
)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "CostConfig",
    "TrainingConfig",
    "Preset",
    "PRESETS",
    "get_preset",
    "replace",
    "OPTIMIZERS",
    "DEPRECATED_OPTIMIZERS",
    "MAP_PRIORS",
    "FULL_PRIORS_MAX_SIC_ROWS",
    "choose_map_priors",
    "BATCH_ORDERS",
    "auto_batch_size",
    "auto_learning_rate",
    "REFERENCE_TRAINING",
    "DEFAULT_ICE_EMIS_INIT",
    "DEFAULT_EMIS_CEILING_ERROR",
    "DEFAULT_SIC_SMOOTHNESS_TIME",
    "DEFAULT_TRAINING",
    "VALIDATION_MIN_OBS",
    "starting_configuration",
    "V2_FORK_ANCHOR",
]
