"""Time every stage of a whole ``seaice-training`` run and its peak memory (a benchmark; nothing is asserted).

Runs the CLI in this process (``empirical_seaice.cli.main``) with the given
arguments. The run's own stage display (``RunProgress.stage``: reading data,
packing observations, initial diagnostics, training, health checks, saving the
model, diagnostics, products, publishing) cuts the wall time into intervals;
a few functions are attributed to the stage they belong to wherever they are
called from (the gridded product's inputs count with the gridded product;
in the runs before the streamed diagnostics, the ``tbsim_initial`` write,
done after the health checks, with the initial diagnostics). Since the
streamed diagnostics, the "health checks" row is the final diagnostics' pass
(simulation, sums, the held per-observation files) and the "final
diagnostics" row what remains (moving the held files, truth scores,
summary). Every second of the run is in exactly one row, from the process's start: the first row
is Python's start and the imports of the package's run modules (torch, numba, xarray; a fixed cost
of each run, left out of the tables before 2026-12-02).

The peak resident memory of each stage is the process's ``VmHWM`` at the end
of its interval, with the high-water mark reset at the start of each interval
(``/proc/self/clear_refs``), so each row shows that stage's own peak; the last
row is the peak of the whole run. A thread samples the anonymous and the file-backed resident
memory (``RssAnon``, ``RssFile`` + ``RssShmem``) every 50 ms and keeps each stage's largest.

Each stage's observations per second is the run's number of observations over the
stage's wall time; its CPU seconds are the process's (every thread, user and system) over the same
interval, which a shared machine disturbs less than the wall time, and of them the system's
(``getrusage``: mostly the kernel bringing in memory the process touches for the first time, which
costs far more on some virtual machines than on others). The load average at the end is
printed with the table. Usage (the ``benchmark`` twin generated once under /tmp)::

    seaice-twin --output /tmp/bench_twin --preset benchmark
    python benchmarks/run_stages.py -- --data /tmp/bench_twin --output /tmp/bench_out --threads 1 --nepochs 1

Prints one Markdown table row per stage and a JSON line (``--json FILE`` writes it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

STARTUP = "start-up: the interpreter and the imports"
"""The row of the seconds before the CLI's ``main`` is called: Python's start and the imports of the
package's run modules (torch, numba, xarray), which every ``seaice-training`` pays once, whatever the
number of observations."""

ORDER = [
    STARTUP,
    "read and cache",
    "build (row counts, network, packing)",
    "initial diagnostics",
    "training",
    "fitting the held-out state",
    "health checks",
    "save model",
    "final diagnostics",
    "gridded product",
    "classic algorithms",
    "open-water filter",
    "export",
    "plots",
    "publishing",
    "other (the CLI's start, the end)",
]

HELD_OUT = "fitting the held-out state"
"""The held-out fit's stage (its name as the run shows it), its epochs included."""

DISPLAY = {
    "reading data": "read and cache",
    "packing observations": "build (row counts, network, packing)",
    "initial diagnostics": "initial diagnostics",
    "training": "training",
    "health checks": "health checks",
    "saving the model": "save model",
    "diagnostics": "final diagnostics",
    "products": "gridded product",
    "products: gridded emissivity": "gridded product",
    "products: classic SIC": "classic algorithms",
    "products: open-water filter": "open-water filter",
    "products: export": "export",
    "products: plots": "plots",
    "publishing": "publishing",
    "start": "other (the CLI's start, the end)",
    "done": "other (the CLI's start, the end)",
}


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_split_mib() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory now (MiB): file-backed pages are the memory-mapped
    cache and libraries, which the kernel can drop without writing them anywhere."""
    anon = file = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            anon = int(line.split()[1]) / 1024
        elif line.startswith("RssFile:") or line.startswith("RssShmem:"):
            file += int(line.split()[1]) / 1024
    return anon, file


def _system_s() -> float:
    """System CPU seconds of the process so far (every thread)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _since_start_s() -> float:
    """Wall seconds since this process started (Linux: ``/proc/self/stat``'s start time against
    ``/proc/uptime``, to the clock tick), else 0."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Timeline:
    """Wall time and peak memory by label: the active label is the innermost wrapped call's, else the
    run's current display stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.sys: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}
        self.stack: list[str] = []
        self.display = DISPLAY["start"]
        self.t = time.perf_counter()
        self.c = time.process_time()
        self.k = _system_s()
        self.run_peak = 0.0
        self.resets = _reset_hwm()
        self.anon_peak: dict[str, float] = {}
        self.file_peak: dict[str, float] = {}
        self.lock = threading.Lock()  # the sampler writes the peaks while the report reads them
        threading.Thread(target=self._sample, daemon=True).start()

    def label(self) -> str:
        return self.stack[-1] if self.stack else self.display

    def _sample(self) -> None:
        """Every 50 ms: the largest anonymous and file-backed resident memory of the current stage."""
        while True:
            anon, file = _rss_split_mib()
            label = self.label()
            with self.lock:
                self.anon_peak[label] = max(self.anon_peak.get(label, 0.0), anon)
                self.file_peak[label] = max(self.file_peak.get(label, 0.0), file)
            time.sleep(0.05)

    def peaks(self) -> tuple[dict[str, float], dict[str, float]]:
        """Copies of the sampled anonymous and file-backed peaks per stage."""
        with self.lock:
            return dict(self.anon_peak), dict(self.file_peak)

    def _switch(self) -> None:
        now, cpu, system, hwm = time.perf_counter(), time.process_time(), _system_s(), _hwm_mib()
        label = self.label()
        self.seconds[label] = self.seconds.get(label, 0.0) + now - self.t
        self.cpu[label] = self.cpu.get(label, 0.0) + cpu - self.c
        self.sys[label] = self.sys.get(label, 0.0) + system - self.k
        self.peak_mib[label] = max(self.peak_mib.get(label, 0.0), hwm)
        self.run_peak = max(self.run_peak, hwm)
        self.t, self.c, self.k = now, cpu, system
        _reset_hwm()

    def stage(self, name: str) -> None:
        self._switch()
        if name.startswith("training"):  # the held-out fit's own trainer shows its epochs too: they are its stage's
            self.display = HELD_OUT if self.display == HELD_OUT else "training"
        else:
            self.display = DISPLAY.get(name, name)

    def wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*a, **k):
            self._switch()
            self.stack.append(label)
            try:
                return fn(*a, **k)
            finally:
                self._switch()
                self.stack.pop()

        setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="seaice-training arguments (after --)")
    args = ap.parse_args(argv)
    cli_args = [a for a in args.cli if a != "--"]

    import empirical_seaice.io as io
    from empirical_seaice import cli
    from empirical_seaice.products import gridded
    from empirical_seaice.run import train
    from empirical_seaice.training import runtime

    startup = (_since_start_s(), time.process_time(), _system_s())  # wall, CPU and system seconds so far
    startup_peak = _hwm_mib()
    tl = Timeline()
    tl.seconds[STARTUP], tl.cpu[STARTUP], tl.sys[STARTUP] = startup
    tl.peak_mib[STARTUP] = startup_peak
    orig_stage = runtime.RunProgress.stage

    def stage(self, name):
        tl.stage(name)
        return orig_stage(self, name)

    runtime.RunProgress.stage = stage
    if hasattr(train, "write_initial"):  # the whole-array runs write tbsim_initial after the health checks
        tl.wrap(train, "write_initial", "initial diagnostics")
    tl.wrap(gridded, "grid_inputs", "gridded product")
    nobs = {}
    orig_read = io.read_training_data

    def read_and_count(*a, **k):
        obs, bg = orig_read(*a, **k)
        nobs["n"] = obs.nobs
        return obs, bg

    io.read_training_data = read_and_count
    t_start, c_start, k_start = time.perf_counter(), time.process_time(), _system_s()
    rc = cli.main(cli_args)
    tl._switch()
    # the whole run from the process's start (the start-up row included)
    total, total_cpu = time.perf_counter() - t_start + startup[0], time.process_time() - c_start + startup[1]
    total_sys = _system_s() - k_start + startup[2]
    anon_peak, file_peak = tl.peaks()
    load = os.getloadavg()
    n = nobs.get("n", 0)
    names = [k for k in ORDER if k in tl.seconds] + [k for k in tl.seconds if k not in ORDER]
    print(
        f"| stage | wall s | obs/s | CPU s | of it system | peak RSS of the stage (MiB) | of it anonymous, "
        f"file-backed (MiB, sampled) |  ({n:,} observations, exit {rc})"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        s = tl.seconds[name]
        obs_s = n / s if s > 0 else float("inf")
        split = f"{anon_peak.get(name, 0):,.0f}, {file_peak.get(name, 0):,.0f}"
        cpu = f"{tl.cpu[name]:.1f} | {tl.sys[name]:.1f}"
        print(f"| {name} | {s:.1f} | {obs_s:,.0f} | {cpu} | {tl.peak_mib[name]:,.0f} | {split} |")
    anon, file = max(anon_peak.values(), default=0), max(file_peak.values(), default=0)
    whole = f"| whole run | {total:.1f} | {n / total:,.0f} | {total_cpu:.1f} | {total_sys:.1f} | {tl.run_peak:,.0f}"
    print(f"{whole} | {anon:,.0f}, {file:,.0f} |")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    record = {
        "nobs": n,
        "total_s": total,
        "stages": {
            k: {
                "s": tl.seconds[k],
                "cpu_s": tl.cpu[k],
                "sys_s": tl.sys[k],
                "peak_mib": tl.peak_mib[k],
                "anon_peak_mib": anon_peak.get(k, 0.0),
                "file_peak_mib": file_peak.get(k, 0.0),
            }
            for k in names
        },
        "cpu_s": total_cpu,
        "sys_s": total_sys,
        "loadavg": load,
        "peak_mib": tl.run_peak,
        "hwm_reset": tl.resets,
        "argv": cli_args,
    }
    print(json.dumps(record))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
