"""``seaice-twin``: generate a synthetic twin (argument parsing only).

Example::

    seaice-twin --output demo_data --preset demo
    seaice-twin --output /tmp/t --preset tiny --hemisphere south --days 3 --noise-scale 0
    seaice-twin --output /tmp/r --preset tiny --realism realistic --ice-model literature
    seaice-twin --output /tmp/f --preset tiny --effects footprint nwp_errors
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from empirical_seaice.errors import SeaIceError, as_flag

PRESET_NAMES = ("benchmark", "demo", "science", "tiny")
"""The twin presets (``empirical_seaice.twin.presets.TWIN_PRESETS``; listed here so that
``-h`` imports nothing heavy: the land mask loads only when a grid is built)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seaice-twin",
        description="Generate a synthetic twin: truth + simulated observations of catalogue sensors in layout C.",
    )
    p.add_argument("--output", required=True, type=Path, help="output directory (must be new or empty)")
    p.add_argument("--preset", default="demo", choices=PRESET_NAMES, help="size preset (default demo)")
    p.add_argument(
        "--hemisphere",
        choices=("north", "south", "both"),
        help="hemisphere (default: the preset's, north); both: a global grid of the two polar grids",
    )
    p.add_argument(
        "--sensors", nargs="+", help="sensors to simulate (default amsr2 gmi ssmisf17; any catalogue sensor)"
    )
    p.add_argument(
        "--sensor-catalogue",
        metavar="FILE",
        help="TOML file adding sensors to the shipped catalogue (README 'Sensors')",
    )
    p.add_argument("--days", type=int, help="number of days (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--start-date", help="first day, YYYY-MM-DD (default: the preset's)")
    p.add_argument(
        "--noise-scale",
        type=float,
        help="noise = scale x catalogue instrument noise (noise_k, else obs_error_k; 0 = noise-free; default 1)",
    )
    p.add_argument("--resolution-km", type=float, help="grid spacing in km (default: the preset's)")
    p.add_argument(
        "--realism",
        choices=("ideal", "realistic"),
        help="ideal: the network's own physics, exact inputs, white noise; realistic: every effect of "
        "--effects (default: the preset's; ideal except benchmark and science)",
    )
    p.add_argument(
        "--effects",
        nargs="*",
        metavar="EFFECT",
        help="apply only these realism effects (thin_ice melt_ponds footprint nwp_errors emitting_layer "
        "drifting_bias precip_scattering; none given = ideal)",
    )
    p.add_argument(
        "--ice-model",
        choices=("smrt", "literature"),
        help="ice emissivity: the SMRT table (default) or published mean spectra",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the twin in the output directory (never another directory, nor anything in it that the "
        "twin did not write)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from empirical_seaice.twin.generate import generate_twin
    from empirical_seaice.twin.presets import get_twin_preset

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        config = get_twin_preset(
            args.preset,
            hemisphere=args.hemisphere,
            sensors=tuple(args.sensors) if args.sensors else None,
            days=args.days,
            seed=args.seed,
            start_date=args.start_date,
            noise_scale=args.noise_scale,
            resolution_km=args.resolution_km,
            realism=args.realism,
            effects=tuple(args.effects) if args.effects is not None else None,
            ice_model=args.ice_model,
            sensor_catalogue=args.sensor_catalogue,
        )
        summary = generate_twin(config, args.output, overwrite=args.overwrite)
    except SeaIceError as exc:
        print(f"seaice-twin: error: {as_flag(str(exc), parser)}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
