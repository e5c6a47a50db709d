"""The argument parser of ``seaice-training``: every option with its default and help.

The options come in three groups, in ``-h``'s order: those of the reference's
``seaice_training.py`` (:func:`add_reference_options`), ours (the training and run control
options of :mod:`empirical_seaice.cli.further`) and the products (:func:`add_product_options`).
A parsing error is one :class:`~empirical_seaice.errors.SeaIceError` line, not a usage dump.
Turning the parsed flags into configuration: :mod:`empirical_seaice.cli.configure`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from empirical_seaice.cli.further import add_further_options
from empirical_seaice.errors import SeaIceError

PROG = "seaice-training"
"""The command's name (in its messages)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one-line :class:`SeaIceError` s (no usage dump)."""

    def error(self, message: str):
        raise SeaIceError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``seaice-training`` (every option, with its default)."""
    p = _Parser(
        prog=PROG,
        description=(
            "Train sea ice concentration, an empirical sea ice state and a sea ice emissivity "
            "model against satellite microwave radiances (Geer 2024, JAMES), and write the "
            "outputs and diagnostics."
        ),
    )
    add_reference_options(p.add_argument_group("options of the reference seaice_training.py"))
    add_further_options(p.add_argument_group("further options"))
    add_product_options(p.add_argument_group("products (README 'Products')"))
    return p


def add_reference_options(seed) -> None:
    """The options of the reference ``seaice_training.py`` (``--data`` ... ``--reproducible``)."""
    seed.add_argument(
        "--data",
        type=Path,
        default=Path("demo_data"),
        help="Directory containing the training data (layout B/C), or a layout-A "
        "monthly file (default: demo_data, the demo twin).",
    )
    seed.add_argument(
        "--sensors",
        nargs="+",
        default=None,
        metavar="SENSOR",
        help="Sensor names for training (default: the preset's: v1 amsr2; v2 amsr2 gmi ssmisf17).",
    )
    seed.add_argument(
        "--output", type=Path, default=Path("output"), help="Directory to store the output files (default: output)."
    )
    seed.add_argument(
        "--tag", default="run", help="Tag name distinguishing the output files, e.g. seaice_TAG.nc (default: run)."
    )
    seed.add_argument(
        "--modeltag",
        default=None,
        help="With --diagsonly: use the trained model of this tag (default: --tag); with --retrieve: the "
        "trained model to retrieve with (required).",
    )
    seed.add_argument(
        "--batchsize",
        type=int,
        default=None,
        help="Training batch size (default: automatic, the largest power of two up to 1024, the reference's, "
        "that gives an epoch at least ~200 steps: 1024 from 204,800 observations on).",
    )
    seed.add_argument(
        "--stepstart", type=int, default=0, help="Step in the training data from which to start (default 0)."
    )
    seed.add_argument(
        "--nsteps", type=int, default=None, help="Number of time steps (usually days) in the model (default: all)."
    )
    seed.add_argument(
        "--start-date",
        default=None,
        metavar="YYYY-MM-DD",
        help="First day of the data's period (step 0 = the 21 UTC window ending that day); "
        "default: from the bulk of the observations' Julian days.",
    )
    seed.add_argument(
        "--nepochs",
        type=int,
        default=None,
        help="Number of training epochs (default 25; with --exact-reference the reference's: v1 8, v2 25).",
    )
    mode = seed.add_mutually_exclusive_group()
    mode.add_argument(
        "--diagsonly", action="store_true", help="Compute the output diagnostics from an already-trained model."
    )
    mode.add_argument(
        "--trainonly",
        action="store_true",
        help="Only train the model and save it; write no diagnostics (it still writes the default "
        "products: --no-classic, --no-gridded, --no-open-water-filter skip them).",
    )
    seed.add_argument(
        "--reproducible",
        action="store_true",
        help="Seeded, deterministic training: identical output files on rerun (slower).",
    )


def add_product_options(prod) -> None:
    """What the run writes beside the trained model (``--export``, ``--plots``, ... ``--retrieve``)."""
    prod.add_argument(
        "--export",
        action="store_true",
        help="Write the trained emissivity model for NWP use: emis_model_TAG.nc (self-describing "
        "coefficients, evaluable in plain numpy), emis_model_TAG.onnx and, for v2, emis_model_TAG_channel.onnx "
        "(the ONNX files need the onnx package: pip install 'empirical-seaice[export]'). After training, or "
        "with --diagsonly --modeltag on a trained model.",
    )
    prod.add_argument(
        "--plots",
        action="store_true",
        help="Draw maps, spectra, loss curves and departure statistics into <output>/plots_TAG/ with an index.html.",
    )
    prod.add_argument(
        "--plot-day",
        type=int,
        default=None,
        metavar="STEP",
        help="Step (0-based, within the period) of the maps (default: the middle step).",
    )
    prod.add_argument(
        "--no-gridded", action="store_true", help="Do not write the gridded emissivity product ice_emis_grid_TAG.nc."
    )
    prod.add_argument(
        "--grid-channels",
        nargs="+",
        default=None,
        metavar="CH",
        help="Channels of the gridded emissivity product (default: the run's channels).",
    )
    prod.add_argument(
        "--grid-freqs",
        nargs="+",
        default=None,
        metavar="GHZ",
        help="Arbitrary frequencies (GHz) of the gridded product instead of channels (v2): ice_emis_v / ice_emis_h.",
    )
    prod.add_argument(
        "--no-classic",
        action="store_true",
        help="Do not compute the NASA Team / Bootstrap SIC (classic_sic_TAG.nc) and their scores.",
    )
    prod.add_argument(
        "--no-open-water-filter",
        action="store_true",
        help="Do not write seaice_filtered_TAG.nc (the trained SIC with the gradient-ratio open-water filter).",
    )
    prod.add_argument(
        "--retrieve",
        action="store_true",
        help="Retrieval: with the trained model --modeltag (in --output), fit only SIC and the "
        "empirical state to the observations of --data (emissivity model, wind correction "
        "and biases fixed); writes seaice/properties/tbsim files under --tag.",
    )


__all__ = ["PROG", "build_parser", "add_reference_options", "add_product_options"]
