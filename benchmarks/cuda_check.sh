#!/bin/sh
# The fused step's checks on a machine with an NVIDIA GPU, in one go within $BUDGET seconds (default 570:
# one command of a GPU machine lent for minutes; a benchmark, run by hand, never by the test suite):
#   1. the GPU, its driver, the Python packages, and whether numba compiles a CUDA kernel there;
#   2. the kernel's tests (tests/training/test_fused_device.py: on a GPU also the CUDA kernel against
#      the tensor step) and a default run on the GPU (tests/e2e/test_defaults.py; $TESTS chooses);
#   3. the tensor step without and with the one-kernel cost at batch 1024 and 16384, interleaved;
#      (part "profile", not in the default PARTS: that step at batch 1024 under torch.profiler and cProfile);
#   4. a default run of the `demo` twin on the GPU, then of the year-long `benchmark` twin, which is
#      generated on a CPU core of its own from the start (single-threaded: 376 s on this project's
#      2-core development machine; BENCHMARK=0 skips it).
#   5. (part "resume", not a default one) in a second call on the same machine, still warm: the benchmark
#      run that the first call's budget cut short (a run stopped by a signal keeps its checkpoint) finished
#      with --resume, its stage table in stages_benchmark_resumed.json; $WORK's twins and runs are kept.
# PARTS (default "versions tests throughput runs") chooses among them.
# Each part has a time limit of its own, cut to what is left of the budget, and a failed part does not
# stop the next. Eight small files go to $OUT (default /tmp/cuda_check): summary.txt (how each part
# ended and how long it took), versions.txt, tests.txt, throughput.txt (profile.txt), twin.txt, run.txt and the two
# runs' stage tables (stages_demo.json, stages_benchmark.json); the twins and the runs' outputs go to
# $WORK (default /tmp/cuda_check_work). Nothing is appended to benchmarks/results.md.
#
#     sh benchmarks/cuda_check.sh
#     DEVICE=cpu BENCHMARK=0 sh benchmarks/cuda_check.sh    # a dry run of the script without a GPU
#     PARTS=runs sh benchmarks/cuda_check.sh                 # the two runs only
#
# It runs with $PY, by default .venv's Python where `make test` built one, else the machine's `python3`,
# the package read from src/ (no install). A machine without .venv and without a network needs the
# packages it lacks as wheels in .whl/ (benchmarks/gpu_wheels.sh downloads them for Python 3.12); where
# $PY cannot import netCDF4, isal and pyproj, they are installed into /tmp/site first. numba compiles
# CUDA kernels with a CUDA toolkit's NVVM: where CUDA_HOME is not set and nvidia-cuda-nvcc-cu12 (a test
# dependency) is installed, its toolkit is used (docs/fused_step.md, "On a GPU"). numba-cuda 0.30 cannot
# compile with numpy 2.5 (it looks up np.row_stack); where the check of part 1 fails and .whl/numpy/
# holds an older numpy, that one is put first on the path and the check repeated.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cuda_check}
WORK=${WORK:-/tmp/cuda_check_work}
DEVICE=${DEVICE:-cuda}
BENCHMARK=${BENCHMARK:-1}
BUDGET=${BUDGET:-570}
PARTS=${PARTS:-versions tests throughput runs}
TESTS=${TESTS:-tests/training/test_fused_device.py tests/e2e/test_defaults.py::test_a_default_run_on_a_gpu}
START=$(date +%s)
mkdir -p "$OUT" "$WORK"
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
# this script's files of an earlier run go (its logs are appended to, and a twin is not written over);
# with the part "resume" the twins and runs of $WORK stay: it finishes the benchmark run cut short there
rm -rf "$OUT"/summary.txt "$OUT"/versions.txt "$OUT"/tests.txt "$OUT"/throughput.txt "$OUT"/profile.txt "$OUT"/twin.txt \
    "$OUT"/run.txt "$OUT"/stages_demo.json "$OUT"/stages_benchmark.json "$OUT"/stages_benchmark_resumed.json
want resume || rm -rf "$WORK"/twin_* "$WORK"/run_*
: > "$OUT/summary.txt"
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; else PY=$(command -v python3); fi
fi
WHEELS=${WHEELS:-.whl}
# wheels FROM TARGET: the wheels in FROM installed into TARGET (no network)
wheels() {
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl
}
if ! "$PY" -c "import netCDF4, isal, pyproj" 2> /dev/null && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    wheels "$WHEELS" /tmp/site && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
NVCC=$("$PY" -c "import nvidia.cuda_nvcc as m; print(list(m.__path__)[0])" 2> /dev/null || true)
if [ -n "$NVCC" ] && [ -z "${CUDA_HOME:-}" ]; then
    export CUDA_HOME="$NVCC"
    export LD_LIBRARY_PATH="$NVCC/nvvm/lib64:${LD_LIBRARY_PATH:-}"
fi

left() { echo $((BUDGET - ($(date +%s) - START))); }

# part NAME SECONDS FILE COMMAND...: COMMAND's output appended to $OUT/FILE, ended after SECONDS or
# when the budget is spent; its exit status (124: out of time) and wall seconds to summary.txt
part() {
    name=$1 limit=$2 file=$3
    shift 3
    if [ "$(left)" -lt "$limit" ]; then limit=$(left); fi
    if [ "$limit" -lt 10 ]; then
        echo "$name: not run, the budget is spent" | tee -a "$OUT/summary.txt"
        return 1
    fi
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >> "$OUT/$file" 2>&1
    rc=$?
    echo "$name: exit $rc, $(($(date +%s) - t0)) s" | tee -a "$OUT/summary.txt"
    return $rc
}

want runs || BENCHMARK=0
if [ "$BENCHMARK" = 1 ]; then  # the year-long twin, on a core of its own while the rest runs
    (
        timeout "$BUDGET" "$PY" -m empirical_seaice.twin.cli --output "$WORK/twin_benchmark" --preset benchmark \
            > "$WORK/twin_benchmark.log" 2>&1
        echo $? > "$WORK/twin_benchmark.rc"
    ) &
fi

# 1. what the machine has (numba's CUDA compiler checked on a kernel of one line: no GPU needed)
if want versions; then
    { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi"; } \
        > "$OUT/versions.txt" 2>&1
    echo "$(nproc) cores" >> "$OUT/versions.txt"
    part versions 60 versions.txt "$PY" - << 'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "numpy", "numba", "llvmlite", "numba_cuda", "xarray", "netCDF4", "h5py", "isal", "pyproj"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # a missing package is a line of the report, not the end of the script
        print(name, "MISSING", type(exc).__name__, exc)
import torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
print("torch CUDA", torch.version.cuda, torch.cuda.is_available(), gpu)
from empirical_seaice.model.fused_device import cuda_usable
print("numba finds a CUDA driver:", cuda_usable())
EOF
    COMPILE='from numba import cuda, float32
def add(x): x[0] += 1
print("numba CUDA compiles for sm_90:", len(cuda.compile_ptx(add, (float32[:],), cc=(9, 0))[0]), "characters of PTX")'
    if ! part compile 120 versions.txt "$PY" -c "$COMPILE" && ls "$WHEELS"/numpy/*.whl > /dev/null 2>&1; then
        wheels "$WHEELS"/numpy /tmp/site_numpy && export PYTHONPATH="/tmp/site_numpy:$PYTHONPATH"
        echo "numpy from .whl/numpy first on the path" >> "$OUT/versions.txt"
        part compile-again 120 versions.txt "$PY" -c "$COMPILE"
    fi
fi

# 2. and 3. the kernel's tests; the step with and without it
want tests && part tests 200 tests.txt "$PY" -m pytest -q -rs -p no:cacheprovider $TESTS
want throughput && part throughput 150 throughput.txt "$PY" benchmarks/train_throughput.py --only device \
    --device "$DEVICE" --steps 150 --epochs 4 --repeat 2 --no-write
# 3b. where the step's time goes: torch.profiler's operations and kernels, then cProfile's Python functions
want profile && part profile 90 profile.txt "$PY" benchmarks/train_throughput.py --profile --device "$DEVICE" \
    --nobs 300000 --steps 100 --epochs 2

# 4. whole runs with the default flags
want runs && part twin-demo 120 twin.txt "$PY" -m empirical_seaice.twin.cli --output "$WORK/twin_demo" --preset demo
want runs && part run-demo 150 run.txt "$PY" benchmarks/run_stages.py --json "$OUT/stages_demo.json" -- \
    --data "$WORK/twin_demo" --output "$WORK/run_demo" --device "$DEVICE"
if [ "$BENCHMARK" = 1 ]; then
    while [ ! -f "$WORK/twin_benchmark.rc" ] && [ "$(left)" -gt 60 ]; do sleep 5; done
    rc=$(cat "$WORK/twin_benchmark.rc" 2> /dev/null || echo 'none: still running')
    echo "twin-benchmark: exit $rc, ready after $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
    cat "$WORK/twin_benchmark.log" >> "$OUT/twin.txt"
    if [ "$rc" = 0 ]; then
        part run-benchmark 600 run.txt "$PY" benchmarks/run_stages.py --json "$OUT/stages_benchmark.json" -- \
            --data "$WORK/twin_benchmark" --output "$WORK/run_benchmark" --device "$DEVICE"
    fi
fi
# 5. the benchmark run of an earlier call of this script on the same machine (still warm: $WORK kept), cut
# short by that call's budget (it keeps a checkpoint), finished with --resume
if want resume; then
    if [ -f "$WORK/twin_benchmark.rc" ] && [ -d "$WORK/run_benchmark" ]; then
        part run-benchmark-resumed 600 run.txt "$PY" benchmarks/run_stages.py --json "$OUT/stages_benchmark_resumed.json" \
            -- --data "$WORK/twin_benchmark" --output "$WORK/run_benchmark" --device "$DEVICE" --resume
    else
        echo "run-benchmark-resumed: not run, no benchmark run in $WORK (the machine was handed back?)" | tee -a "$OUT/summary.txt"
    fi
fi
echo "whole script: $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
