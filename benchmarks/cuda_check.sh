#!/bin/sh
# The fused step's checks on a machine with an NVIDIA GPU, in one go (a few minutes; a benchmark, run by
# hand, never by the test suite): the GPU and its driver; the kernel's tests there
# (tests/training/test_fused_device.py: on a GPU also the CUDA kernel against the tensor step); the
# tensor step without and with the one-kernel cost at batch 1024 and 16384, interleaved; and a whole
# run of a twin on the GPU. Everything goes to $OUT (default /tmp/cuda_check); nothing is appended to
# benchmarks/results.md. Usage, after `make test` has built .venv:
#
#     sh benchmarks/cuda_check.sh                  # the `demo` twin (about a minute to generate)
#     TWIN=benchmark sh benchmarks/cuda_check.sh   # the year-long `benchmark` twin (minutes more)
#
# numba compiles CUDA kernels with a CUDA toolkit's NVVM: where CUDA_HOME is not set and the test
# dependency nvidia-cuda-nvcc-cu12 is installed, its toolkit is used (docs/fused_step.md, "On a GPU").
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-/tmp/cuda_check}
TWIN=${TWIN:-demo}
mkdir -p "$OUT"
NVCC=$($PY -c "import nvidia.cuda_nvcc as m; print(list(m.__path__)[0])" 2>/dev/null || true)
if [ -n "$NVCC" ] && [ -z "${CUDA_HOME:-}" ]; then
    export CUDA_HOME="$NVCC"
    export LD_LIBRARY_PATH="$NVCC/nvvm/lib64:${LD_LIBRARY_PATH:-}"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())" \
    | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -rs tests/training/test_fused_device.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
$PY benchmarks/train_throughput.py --only device --device cuda --steps 150 --epochs 4 --repeat 2 --no-write \
    2>&1 | tee "$OUT/throughput.txt"
.venv/bin/seaice-twin --output "$OUT/twin_$TWIN" --preset "$TWIN" > "$OUT/twin.txt" 2>&1
$PY benchmarks/run_stages.py --json "$OUT/stages.json" -- --data "$OUT/twin_$TWIN" --output "$OUT/run" \
    --device cuda 2>&1 | tail -30 | tee "$OUT/run.txt"
