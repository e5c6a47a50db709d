"""The sensor catalogue (a data file), sensor definitions and the unified channel basis.

Where each part lives: :mod:`~empirical_seaice.sensors.definitions` (:class:`Channel`,
:class:`Sensor`, the polarisation codes), :mod:`~empirical_seaice.sensors.parse` (the
catalogue file format and its validation), :mod:`~empirical_seaice.sensors.catalogue`
(the shipped file, user files merged over it, sensor look-up) and
:mod:`~empirical_seaice.sensors.basis` (the unified channel basis of a run, the v2
network's frequency inputs). This package's namespace is the one to import from.

A run selects some sensors; their used channels, in catalogue order, form the **unified
channel basis** into which every observation is mapped (:class:`ChannelBasis`).

Examples
--------
>>> basis = build_channel_basis(["amsr2", "gmi"])
>>> basis.channel_names[:4]
('10v', '10h', '19v', '19h')
>>> basis.channel_index["89h"]
9
>>> get_sensor("atms").scan, len(get_sensor("atms").file_channels), len(get_sensor("atms").channels)
('cross-track', 22, 13)
"""

from __future__ import annotations

from empirical_seaice.sensors.basis import (
    NETWORK_FREQUENCIES,
    ChannelBasis,
    build_channel_basis,
    network_frequency_table,
)
from empirical_seaice.sensors.catalogue import (
    CATALOGUE,
    SENSORS,
    SHIPPED_CATALOGUE,
    SensorCatalogue,
    catalogue_from_dict,
    default_catalogue,
    get_sensor,
    load_catalogue,
    shipped_catalogue_path,
)
from empirical_seaice.sensors.definitions import POL_H, POL_NAMES, POL_QH, POL_QV, POL_V, Channel, Sensor
from empirical_seaice.sensors.parse import CATALOGUE_FORMAT_VERSION

__all__ = [
    "POL_V",
    "POL_H",
    "POL_QV",
    "POL_QH",
    "POL_NAMES",
    "CATALOGUE_FORMAT_VERSION",
    "SHIPPED_CATALOGUE",
    "Channel",
    "Sensor",
    "SensorCatalogue",
    "shipped_catalogue_path",
    "load_catalogue",
    "catalogue_from_dict",
    "default_catalogue",
    "CATALOGUE",
    "SENSORS",
    "get_sensor",
    "ChannelBasis",
    "build_channel_basis",
    "NETWORK_FREQUENCIES",
    "network_frequency_table",
]
