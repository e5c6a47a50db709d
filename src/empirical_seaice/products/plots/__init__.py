"""Pictures of a run: maps, emissivity spectra, extent/area time series, loss curves, departure statistics.

Every drawing function takes plain arrays (not the network), writes one PNG and
returns its path, so each can be tested with synthetic arrays. The modules:

- :mod:`.style`: figure size and resolution, colours, colour maps, the open-water threshold, saving.
- :mod:`.grid`: the EASE-Grid 2.0 plane, the raster of grid cells, land from the shipped mask.
- :mod:`.maps`: maps of fields on the grid (:func:`~.maps.plot_maps`).
- :mod:`.series`: the daily extent and area, loss curves.
- :mod:`.spectra`: emissivity spectra of representative ice states.
- :mod:`.departures`: observed minus simulated TB per channel, before and after training.
- :mod:`.standard`: the standard set of a run (:func:`make_plots` from a :class:`PlotInputs`)
  and the run report ``index.html``.
"""

from empirical_seaice.products.plots.standard import MAP_CHANNELS, PlotInputs, make_plots

__all__ = ["MAP_CHANNELS", "PlotInputs", "make_plots"]
