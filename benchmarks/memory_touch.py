"""What this machine charges for memory a process touches for the first time (a benchmark; nothing is asserted).

A run's build, first read and final pass pay mostly for memory new to the process: the packed
observation table (296 bytes per observation where no sensor has more than 13 channels), the slab,
the cache files' pages.
Their CPU time is then mostly system time (``benchmarks/run_stages.py``'s "of it system" column),
and how much depends on the machine: on some virtual machines the host backs a page only when the
guest first writes it, and takes back the pages the guest has left free for a few seconds. This
measures it, so that a stage table from one machine can be read on another:

- **new**: ``--gib`` of new anonymous memory in 2 MiB pages (the table's allocation,
  :func:`empirical_seaice.compiled.empty_huge`), faulted in with ``madvise(MADV_POPULATE_WRITE)``
  on one thread (:func:`empirical_seaice.memory.populate_pages`), as the build's background thread does;
- **freed just before**: the same again right after freeing it;
- **freed N s before**: the same again ``--idle`` seconds after freeing it.

Each is the wall and system CPU seconds per GiB (one thread, nothing else running in the process).
Usage::

    python benchmarks/memory_touch.py --gib 1 --idle 5 --repeat 3 [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from empirical_seaice import compiled  # noqa: E402
from empirical_seaice.memory import populate_pages  # noqa: E402


def touch(nbytes: int) -> tuple[float, float]:
    """(wall s, system CPU s) to fault in ``nbytes`` of new memory in 2 MiB pages; the memory is freed on return."""
    a = compiled.empty_huge((nbytes,), np.uint8)
    t, k = time.perf_counter(), resource.getrusage(resource.RUSAGE_THREAD).ru_stime
    if not populate_pages(a):
        a[::4096] = 1  # no MADV_POPULATE_WRITE: one write a page faults the rest in
    wall, system = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_THREAD).ru_stime - k
    del a
    gc.collect()
    return wall, system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="memory faulted in per measurement (GiB)")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds between freeing and the third measurement")
    ap.add_argument("--repeat", type=int, default=3, help="sets of the three measurements")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = ap.parse_args(argv)
    nbytes = int(args.gib * (1 << 30))
    rows: dict[str, list[tuple[float, float]]] = {
        "new": [],
        "freed just before": [],
        f"freed {args.idle:g} s before": [],
    }
    for _ in range(args.repeat):
        time.sleep(args.idle)  # what earlier sets freed is handed back by now, where the machine does that
        rows["new"].append(touch(nbytes))
        rows["freed just before"].append(touch(nbytes))
        time.sleep(args.idle)
        rows[f"freed {args.idle:g} s before"].append(touch(nbytes))
    gib = nbytes / (1 << 30)
    print(f"| memory ({gib:g} GiB, 2 MiB pages, one thread) | wall s per GiB | system CPU s per GiB |")
    print("|---|---:|---:|")
    for name, runs in rows.items():
        wall = ", ".join(f"{w / gib:.2f}" for w, _ in runs)
        system = ", ".join(f"{s / gib:.2f}" for _, s in runs)
        print(f"| {name} | {wall} | {system} |")
    if args.json:
        record = {
            name: [{"wall_s_per_gib": w / gib, "sys_s_per_gib": s / gib} for w, s in runs]
            for name, runs in rows.items()
        }
        args.json.write_text(json.dumps({"gib": gib, "idle_s": args.idle, "runs": record}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
