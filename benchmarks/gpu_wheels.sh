#!/bin/sh
# Downloads into .whl/ (ignored by git) the wheels of the packages this project runs with that a bare GPU
# machine lacks, for benchmarks/cuda_check.sh to install there, where nothing can be downloaded. The
# machine lent here runs Python 3.12 on x86-64 with torch, numpy, numba, numba-cuda, scipy, xarray,
# h5py, matplotlib, tqdm and pytest already installed; these are the rest (about 25 MB), and in
# .whl/numpy a numpy older than 2.5 (17 MB), which cuda_check.sh puts first on the path only where
# numba's CUDA compiler fails with the machine's own. Run it here, then hand .whl to the GPU machine
# beside the working tree:
#
#     sh benchmarks/gpu_wheels.sh        # PYVER=3.11 for another Python
set -eu
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
get() {
    dir=$1
    shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
mkdir -p .whl/numpy
get .whl netCDF4 cftime isal pyproj global-land-mask cmocean
get .whl/numpy "numpy<2.5"
ls -l .whl .whl/numpy
