"""The GPU's fused cost (one kernel a step for the forward pass and the cost, one observation a thread)
equals the tensor step: its terms and gradients on a batch, training after 100 steps, sharded shares,
the frozen model, the fallbacks; compiled for the CPU here (no GPU needed). The CUDA kernel itself runs
under numba's CUDA simulator and compiles to PTX and sm_90 machine code without a GPU; on a machine
with one, it is compared with the tensor step there."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hybrid_case import assert_trained_alike, parameters, step_case
from test_fused_step import CASES, _trainer

from empirical_seaice.model.fused_device import DeviceCost
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.training import fused_step
from empirical_seaice.training.runtime import make_generator

pytestmark = pytest.mark.skipif(not fused_step.HAVE_NUMBA, reason="numba is not installed")


def _network(case, device="cpu"):
    kw = CASES[case]
    obs, bg, model, cost, counts = step_case(
        kw.get("model_kw"), kw.get("cost_kw"), kw.get("warm", False), kw.get("sensors", ("amsr2",))
    )
    net = HybridNetwork(model, cost, obs.basis, bg, obs.nobs, row_counts=counts, generator=make_generator(3))
    return net.to(device), ObservationTensors(obs, device), obs.nobs


def _gradients(net, values, terms):
    """The terms' values, and the gradients of their total (the step's loss) of the dense weights and
    of the state values handed over."""
    for p in net.parameters():
        p.grad = None
    net.total_cost(terms).backward()
    out = {k: float(v.detach()) for k, v in terms.items()}
    return out, [p.grad.clone() for p in net.dense_parameters()] + [v.grad.clone() for v in values]


def _evaluated(cost, index, values, total=None):
    """:meth:`DeviceCost.evaluate`'s terms (floats) and gradients, in :func:`_gradients`' order."""
    got = cost.evaluate(cost.batch_rows(index), index, values, total)
    return {k: float(v) for k, v in got.terms.items()}, got.dense_grads + got.state_grads


@pytest.mark.parametrize("case", list(CASES))
def test_device_cost_equals_tensor_cost_on_a_batch(case, device="cpu", target="cpu"):
    """Every term and every gradient of a 64-observation batch, to float32 rounding."""
    net, data, nobs = _network(case, device)
    cost, reason = net.device_cost(data, nobs, target=target)
    assert isinstance(cost, DeviceCost), reason
    index = torch.arange(3, 67, device=device)
    batch = data.batch(index)
    rows = net.state_rows(batch)
    ref_values = [table.detach()[r].clone().requires_grad_(True) for table, r in rows]
    ref_terms, ref_grads = _gradients(net, ref_values, net.cost_terms(batch, net(batch, state_values=ref_values), nobs))
    got_terms, got_grads = _evaluated(cost, index, [v.detach().clone() for v in ref_values])
    assert tuple(got_terms) == tuple(ref_terms)
    for name, value in ref_terms.items():
        assert got_terms[name] == pytest.approx(value, rel=2e-5, abs=1e-9), name
    assert ref_terms["obs"] > 1.0  # a real misfit: the gradients below are not all zero
    if "emis_ceiling" in ref_terms:
        assert ref_terms["emis_ceiling"] > 1.0  # it binds
    for ref, got in zip(ref_grads, got_grads, strict=True):
        scale = float(ref.abs().max())
        assert float((ref - got).abs().max()) <= 1e-4 * scale + 1e-9, (tuple(ref.shape), scale)
    assert float(ref_grads[0].abs().max()) > 1e-3  # the first weights really get a gradient


@pytest.mark.parametrize(
    "case", ["v2", "v1", "v2-anchor-frequency-priors-warm", "v2-amsr2-atms-angle", "v1-emis-ceiling"]
)
def test_device_cost_trains_as_the_tensor_step_after_100_steps(case, caplog):
    kw = CASES[case]
    tensor, device = _trainer(False, **kw), _trainer(True, **kw)
    device.device_cost_target = "cpu"  # the kernel the GPU runs, compiled for the CPU
    start = parameters(tensor)
    with caplog.at_level(logging.INFO, logger="empirical_seaice.training.trainer"):
        h_tensor, h_device = tensor.fit(), device.fit()
    assert isinstance(device._device, DeviceCost) and not isinstance(device._fused, fused_step.FusedStep)
    assert "the forward pass and cost in one cpu kernel" in caplog.text
    assert_trained_alike(tensor, device, start, h_tensor, h_device, warm=kw.get("warm", False))


@pytest.mark.parametrize("case", ["v2", "v1"])
def test_shares_of_a_batch_add_up_to_the_batch(case):
    """A run sharded over ranks: each rank's terms over its share of a global batch of B observations
    (``batch_total=B``), the shared parameters' priors on the first rank alone (``shared_prior_share``
    1, then 0), and the gradients of their totals add up to the whole batch's."""
    net, data, nobs = _network(case)
    with torch.no_grad():  # off the priors' minima (biases at their background, e0 at the anchor)
        for p in net.dense_parameters():
            p.add_(0.05 * torch.sin(torch.arange(p.numel(), dtype=p.dtype)).view_as(p))
    cost, _ = net.device_cost(data, nobs, target="cpu")
    index = torch.arange(32)
    parts = {"whole": (index, None, 1.0), "first": (index[:20], 32, 1.0), "second": (index[20:], 32, 0.0)}
    parts["none"] = (index[:0], 32, 0.0)  # a rank without observations in this step
    terms, grads = {}, {}
    for name, (rows, total, share) in parts.items():
        net.shared_prior_share = share
        values = [t.detach()[r].clone() for t, r in net.state_rows(cost.batch_rows(rows))]
        terms[name], g = _evaluated(cost, rows, values, total)
        grads[name] = g[: len(g) - len(values)]
    for term, value in terms["whole"].items():
        assert terms["first"][term] + terms["second"][term] + terms["none"][term] == pytest.approx(value, rel=1e-5)
    assert terms["second"]["bias"] == 0.0 < terms["first"]["bias"]
    for whole, first, second, none in zip(*grads.values(), strict=True):
        torch.testing.assert_close(first + second + none, whole, rtol=1e-5, atol=1e-6)
        assert float(none.abs().max()) == 0.0


def test_a_frozen_model_steps_its_state_alone():
    """The held-out fit's and the retrieval's frozen model: the state tables train as with the tensor
    step, the fixed weights stay the same to the bit."""
    from empirical_seaice.config import TrainingConfig
    from empirical_seaice.run.retrieve import FrozenModel
    from empirical_seaice.training.trainer import Trainer

    nets = []
    for target in (None, "cpu"):
        net, data, nobs = _network("v2")
        fixed = [p.detach().clone() for p in net.dense_parameters()]
        cfg = TrainingConfig(nepochs=2, batch_size=16, learning_rate=1e-2, fused_step=target is not None)
        trainer = Trainer(FrozenModel(net), data, cfg, np.arange(nobs), None, nobs, progress=False)
        trainer.device_cost_target = target
        start = [t.detach().clone() for t in net.sparse_parameters()]
        trainer.fit()
        assert isinstance(trainer._device, DeviceCost) == (target is not None)
        for a, b in zip(fixed, net.dense_parameters(), strict=True):
            assert torch.equal(a, b)
        nets.append((net, start))
    (tensor, start), (device, _) = nets
    for before, a, b in zip(start, tensor.sparse_parameters(), device.sparse_parameters(), strict=True):
        a, b = a.detach(), b.detach()
        moved, diff = float((a - before).abs().max()), float((a - b).abs().max())
        assert diff <= 2e-5 + 2e-7 * float(a.abs().max()) and moved > 50 * diff and moved > 1e-3, (moved, diff)


def test_device_cost_is_the_same_on_rerun():
    a, b = _trainer(True, **CASES["v2"], nepochs=1), _trainer(True, **CASES["v2"], nepochs=1)
    for t in (a, b):
        t.device_cost_target = "cpu"
        t.fit()
    for (name, x), y in zip(parameters(a).items(), parameters(b).values(), strict=True):
        assert torch.equal(x, y), name


def test_device_cost_falls_back_with_a_notice(caplog):
    """Where it does not apply (another optimiser scheme than deferred-adam, or numba finding no GPU), the
    tensor step trains, and one line says why."""
    trainer = _trainer(True, **CASES["v2"], nepochs=1, optimizer="sparse-adam")
    trainer.device_cost_target = "cpu"
    with caplog.at_level(logging.WARNING, logger="empirical_seaice.training.trainer"):
        trainer.fit()
    assert trainer._device is False
    assert caplog.text.count("fused training step not used") == 1
    assert "needs the deferred-adam optimiser scheme" in caplog.text
    net, data, nobs = _network("v2")
    cost, reason = net.device_cost(data, nobs)  # "cuda": this machine has no GPU
    if cost is None:
        assert "CUDA" in reason or "cuda" in reason


def test_a_kernel_that_fails_at_its_first_launch_falls_back(monkeypatch, caplog):
    """A kernel that cannot be compiled or launched on this machine (e.g. numba without NVVM): one line,
    and the tensor step trains from the same step on, as a tensor step alone does."""

    def broken(self, *args):
        raise RuntimeError("libNVVM cannot be found\nsecond line")

    monkeypatch.setattr(DeviceCost, "launch", broken)
    tensor, device = _trainer(False, **CASES["v2"], nepochs=1), _trainer(True, **CASES["v2"], nepochs=1)
    device.device_cost_target = "cpu"
    with caplog.at_level(logging.WARNING, logger="empirical_seaice.training.trainer"):
        tensor.fit(), device.fit()
    assert device._device is False
    lines = [r.getMessage() for r in caplog.records if "fused training step not used" in r.getMessage()]
    assert lines == ["fused training step not used (its cpu kernel failed: RuntimeError: libNVVM cannot be found); "
                     "using the tensor step"]  # fmt: skip
    for (name, x), y in zip(parameters(tensor).items(), parameters(device).values(), strict=True):
        assert torch.equal(x, y), name


def test_an_epoch_waits_for_the_gpu_before_its_seconds_are_read(monkeypatch):
    """On CUDA an epoch's wall seconds (what the throughput benchmark reports) include the kernels still
    queued when its last step returns: the trainer synchronises the device once an epoch, and on the
    CPU not at all."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    trainer = _trainer(False, nepochs=2, **CASES["v2"])
    trainer.fit()
    assert calls == [] and len(trainer.history.epoch_wall_s) == 2
    trainer.device = torch.device("cuda", 0)  # what the trainer does there, without a GPU
    trainer._wait_for_device()
    assert calls == [torch.device("cuda", 0)]


_SIMULATED = """
import json, sys, torch
sys.path[:0] = {paths!r}
from test_fused_device import _network
net, data, nobs = _network({case!r})
out = {{}}
for target in ("cpu", "cuda"):
    cost, reason = net.device_cost(data, nobs, target=target)
    assert cost is not None, reason
    index = torch.arange(5, 29)
    batch = cost.batch_rows(index)
    values = [t.detach()[r] for t, r in net.state_rows(batch)]
    sv = torch.cat([v.reshape(index.numel(), -1) for v in values], dim=1)
    rows = net.state.sic_rows(batch.igrid, batch.istep)
    out[target] = [x.tolist() for x in cost.launch(index, rows, sv, index.numel())]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "case", ["v2-amsr2-atms-angle-anchor-frequency", "v1-amsr2-ssmis-anchor-lacking", "v1-emis-ceiling"]
)
def test_the_cuda_kernel_under_the_simulator_equals_the_cpu_kernel(case):
    """numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba loads: a process of its own)
    runs the CUDA kernel, one Python thread per CUDA thread, on 24 observations: its per-observation
    terms and gradients equal the CPU-compiled kernel's (the simulator computes ``exp`` in float64:
    float32 rounding apart)."""
    here = Path(__file__).parent
    paths = [str(here), str(here.parent.parent / "src")]
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    code = _SIMULATED.format(paths=paths, case=case)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, cpu, cuda in zip(("terms", "gd", "gs"), out["cpu"], out["cuda"], strict=True):
        cpu, cuda = np.asarray(cpu), np.asarray(cuda)
        assert np.abs(cpu).max() > 1e-6, name  # not all zero
        np.testing.assert_allclose(cuda, cpu, rtol=1e-5, atol=1e-6 * np.abs(cpu).max(), err_msg=name)


_PTX = """
import sys, types
sys.path[:0] = {paths!r}
import numba, torch
from numba import cuda
import numba.cuda.dispatcher as dispatcher

# no GPU here: numba asks the current device for its compute capability when it compiles the kernel's
# device functions; they compile for the capability compile_ptx is given below instead
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
from test_fused_device import _network
from empirical_seaice.model.fused_device import cuda_kernel_function

net, data, nobs = _network({case!r})
cost, reason = net.device_cost(data, nobs, target="cpu")
cost.target = "cuda"  # the CUDA layouts of the outputs and scratch (host arrays: no GPU)
index = torch.arange(7, 39)
batch = cost.batch_rows(index)
values = [t.detach()[r] for t, r in net.state_rows(batch)]
sv = torch.cat([v.reshape(index.numel(), -1) for v in values], dim=1)
args, _ = cost.kernel_args(index, net.state.sic_rows(batch.igrid, batch.istep), sv, index.numel())
sig = (numba.int64,) + tuple(numba.typeof(a) for a in args)
ptx, _ = cuda.compile_ptx(cuda_kernel_function(), sig, cc=(9, 0))
open({out!r}, "w").write(ptx)
"""


def _nvvm_home() -> Path | None:
    """The CUDA toolkit directory of the ``nvidia-cuda-nvcc-cu12`` package (NVVM and libdevice: what
    numba compiles CUDA kernels with), None where it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia.cuda_nvcc")
    if spec is None or not spec.submodule_search_locations:
        return None
    home = Path(next(iter(spec.submodule_search_locations)))
    return home if (home / "nvvm" / "libdevice").is_dir() else None


@pytest.mark.skipif(_nvvm_home() is None, reason="nvidia-cuda-nvcc-cu12 (NVVM) is not installed")
def test_the_cuda_kernel_compiles_to_ptx(tmp_path, case="v2-anchor-frequency-priors-warm"):
    """The CUDA kernel through numba's CUDA compiler and NVVM to PTX, and the PTX through ``ptxas`` to
    machine code for a compute capability 9.0 GPU (an H100 or H200), without a GPU: what the simulator
    cannot show, that numba's CUDA target types and lowers every line (its built-in ``min`` and ``max``
    it cannot, for one), and that a thread's values fit in its registers. One kernel for every
    configuration (they branch at run time on the program's switches): one case. In a process of its
    own, with the package's toolkit first (``CUDA_HOME``, and ``LD_LIBRARY_PATH`` for its libNVVM)."""
    here, home = Path(__file__).parent, _nvvm_home()
    assert home is not None
    paths = [str(here), str(here.parent.parent / "src")]
    lib = home / "nvvm" / "lib64"
    env = dict(os.environ, CUDA_HOME=str(home), LD_LIBRARY_PATH=f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    out = tmp_path / "kernel.ptx"
    code = _PTX.format(paths=paths, case=case, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ptx = out.read_text()
    assert ".entry" in ptx and ".target sm_90" in ptx and len(ptx) > 10_000  # a whole kernel
    done = subprocess.run(
        [str(home / "bin" / "ptxas"), "-arch=sm_90", "-v", str(out), "-o", str(tmp_path / "kernel.cubin")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 bytes spill stores, 0 bytes spill loads" in done.stderr  # every value in registers
    registers = int(done.stderr.split("Used ")[1].split(" registers")[0])
    assert 32 <= registers <= 255, registers


_ON_A_GPU = """
import sys
sys.path[:0] = {paths!r}
import test_fused_device as t

for case in t.CASES:  # every term and gradient of a batch on the GPU, to float32 rounding
    t.test_device_cost_equals_tensor_cost_on_a_batch(case, device="cuda", target="cuda")
for case in ("v2", "v1"):  # training: 100 steps of the tensor step on the GPU, without and with the kernel
    kw = t.CASES[case]
    tensor, device = t._trainer(False, **kw, device="cuda"), t._trainer(True, **kw, device="cuda")
    start = t.parameters(tensor)
    h_tensor, h_device = tensor.fit(), device.fit()
    assert isinstance(device._device, t.DeviceCost) and device._device.target == "cuda"
    t.assert_trained_alike(tensor, device, start, h_tensor, h_device)
print("ok")
"""


def test_numbas_low_occupancy_warning_is_not_said_once_the_cuda_kernel_is_made(monkeypatch):
    """A default run's batches fill a few blocks of a GPU, and numba warned at each launch of a new size
    (nine NumbaPerformanceWarnings on the demo twin's run, an H200): once the CUDA kernel is made, that
    warning (its message starts with a terminal's bold code) is not said; another of numba's still is.
    Compared without terminal codes: where numba colours its messages (numba-cuda on a GPU machine) it
    puts a bold code of its own before any warning's text (an H200, 2026-12-04)."""
    import re
    import warnings

    from numba.core.errors import NumbaPerformanceWarning

    from empirical_seaice.model import fused_device

    low = "\x1b[1mGrid size 4 will likely result in GPU under-utilization due to low occupancy.\x1b[0m"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        warnings.warn(NumbaPerformanceWarning(low), stacklevel=1)
        monkeypatch.setattr(fused_device, "_KERNELS", {})
        fused_device._kernels("cuda")
        warnings.warn(NumbaPerformanceWarning(low), stacklevel=1)
        warnings.warn(NumbaPerformanceWarning("Host array used in CUDA kernel"), stacklevel=1)
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)) for w in said]
    assert plain == [
        "Grid size 4 will likely result in GPU under-utilization due to low occupancy.",
        "Host array used in CUDA kernel",
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_on_a_gpu_the_kernel_equals_the_tensor_step():
    """On a machine with a GPU: the CUDA kernel's terms and gradients on a batch of every case, and
    100 training steps, against the tensor step on the same GPU. In a process of its own, with the
    ``nvidia-cuda-nvcc-cu12`` toolkit (if installed) where numba looks for NVVM."""
    here, home = Path(__file__).parent, _nvvm_home()
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if home is not None and "CUDA_HOME" not in env:
        lib = home / "nvvm" / "lib64"
        env.update(CUDA_HOME=str(home), LD_LIBRARY_PATH=f"{lib}:{env.get('LD_LIBRARY_PATH', '')}")
    code = _ON_A_GPU.format(paths=[str(here), str(here.parent.parent / "src")])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_gpu_check_script_reports_the_machine(tmp_path):
    """``benchmarks/cuda_check.sh``, what a session with a GPU runs first, here with its first part
    alone (``PARTS=versions``): the packages and their versions, whether numba finds a driver and
    whether it compiles a CUDA kernel (with the NVVM of ``nvidia-cuda-nvcc-cu12`` where installed),
    each part's exit status in ``summary.txt``, and no other part run."""
    root = Path(__file__).parents[2]
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), WORK=str(tmp_path / "work"), PARTS="versions", BENCHMARK="0")
    env.update(WHEELS=str(tmp_path / "no_wheels"), DEVICE="cpu", PY=sys.executable)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    done = subprocess.run(
        ["sh", str(root / "benchmarks" / "cuda_check.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("versions: exit 0,") and summary[1].startswith("compile: exit ")
    assert summary[-1].startswith("whole script: ")
    versions = (out / "versions.txt").read_text()
    assert f"torch {torch.__version__}" in versions and f"numpy {np.__version__}" in versions
    assert "numba finds a CUDA driver: (" in versions
    if _nvvm_home() is not None:  # the PTX of a one-line kernel for sm_90
        assert summary[1].startswith("compile: exit 0,") and "numba CUDA compiles for sm_90: " in versions
    assert sorted(p.name for p in out.iterdir()) == ["summary.txt", "versions.txt"]
