"""The fused program's forward pass, sampled cost and gradient on a GPU: one observation a thread
(numba.cuda), its gradients handed to the optimisers without autograd.

The CPU's fused step (:mod:`empirical_seaice.training.fused_step`) is built around one core: a
batch's distinct rows found with a mark array, 8- and 16-lane LLVM vectors, prefetches. None of
that carries over to a GPU. What costs a tensor step on a GPU is the number of kernels: its
forward pass and cost are most of its operations (of 257 that compute, v2), each a launch of a few
microseconds, however small the batch. :class:`DeviceCost` puts them in one kernel, one thread per
observation: the same equations as :func:`empirical_seaice.model.fused_kernels._chunk` (the v1
linear model or the v2 network with frequency input, the factored radiative transfer, the
observation term, the sampled whole-map priors of the SIC rows seen, the v2 anchor floor, the
ice-emissivity ceiling, and the backward pass of all of them), written as scalar code. Each thread
writes its observation's terms, dense-weight gradients and state-row gradients to columns of its own;
the batch's sums are then taken by torch (sums over a fixed shape: the same bits on rerun). The tiny
priors on the dense weights alone (the bias prior, v1's mean anchor) are computed beside the kernel's
sums, their gradients added to its (:meth:`DeviceCost.evaluate`). The rest of a step stays the tensor
step's: :meth:`DeferredAdam.gather <empirical_seaice.training.deferred_adam.DeferredAdam.gather>`
catches up and hands over the rows, :meth:`~empirical_seaice.training.deferred_adam.DeferredAdam.set_gathered_gradients`
adds the rows' gradients into them as autograd's backward pass would (the same bits), the dense
weights get theirs as they are, and the optimisers step as before (a step: 178 outermost ATen
operations and no autograd node, v2; docs/fused_step.md, "On a GPU").

The per-observation code (:func:`_observation`) is written once and compiled twice: for CUDA
(``numba.cuda.jit``, its helpers swapped for device functions) and for the CPU (``numba.njit``, a
``prange`` over the observations). The CPU form is what the tests run (``tests/training/
test_fused_device.py``: terms and gradients equal to the tensor step's to float32 rounding, and
training steps equal); numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs the CUDA kernel
itself on the CPU, and the CUDA kernel is compiled to PTX and machine code without a GPU (NVVM and
``ptxas`` of the ``nvidia-cuda-nvcc-cu12`` package); on a GPU a test compares it with the tensor step
there. Its scratch (the hidden units, the emissivities and their gradients) is in global memory, one
column per observation: on CUDA neighbouring threads touch neighbouring addresses; on the CPU the
same arrays are transposed views, one observation's column contiguous.

Applies where :func:`build_device_cost` says so: the sampled whole-map priors (not the "full"
mode), float32 tables, the deferred-adam scheme; the trainer uses it on CUDA in place of the
tensor step's forward pass and cost, and says once why not where it cannot or where its first
launch fails (:meth:`~empirical_seaice.training.trainer.Trainer._device_cost`). Run on an H200 once
(docs/fused_step.md, "On a GPU": it equals the tensor step there, at 3.4-4.8 ms a step, bound by its
launches).
"""

from __future__ import annotations

import math
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from empirical_seaice.cost.objective import CEILING
from empirical_seaice.model.fused_kernels import (
    _T_ANCHOR,
    _T_BG,
    _T_CEIL,
    _T_FALSE,
    _T_OBS,
    _T_RANGE,
    _T_WARM,
    NTERMS,
    _false_ice,
)

_THREADS = 128
"""CUDA threads per block (one observation each)."""

prange = range
"""The loop of :func:`_batch_cpu` (numba's ``prange`` where :func:`_kernels` compiles it)."""
cuda: Any = None
"""numba's CUDA module in :func:`_batch_cuda` (given where :func:`_kernels` compiles it)."""


def _sigmoid32(x):
    """``1 / (1 + exp(-x))`` of a float32 ``x``, with ``x`` held in [-88, 87] (``exp`` stays finite)."""
    if x < np.float32(-88.0):  # (comparisons, not min and max: numba's CUDA target cannot compile those)
        x = np.float32(-88.0)
    elif x > np.float32(87.0):
        x = np.float32(87.0)
    return np.float32(1.0) / (np.float32(1.0) + math.exp(-x))


def _max(a, b):
    """``max(a, b)`` of two numbers, for numba's CUDA target, which cannot compile the built-in ``max`` of
    numba 0.68 (its implementation takes ``*args``): the false-ice residual's ``max`` there
    (:func:`cuda_kernel_function`)."""
    return a if a >= b else b


def _observation(  # noqa: C901 - one observation's forward, cost and backward, branching on the configuration
    b, index, floats, ints, sv, rows, w1, b1, w2, b2, wc, bi, bo, p, ip, fp, lay,
    count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w, cmap, nch, anchor_k,
    terms, gd, gs, s32, s64,
):  # fmt: skip
    """Observation ``b`` of the batch: its cost terms into ``terms[:, b]``, the gradient of their sum
    (the warm-ice term's only in its "effective" form) with respect to the dense weights into
    ``gd[:, b]`` and to its state values ``sv[b]`` into ``gs[b]``.

    ``index[b]``: its row of the packed tables ``floats``, ``ints``; ``sv[b]``: the state values it reads
    (SIC at lags 0 .. nlag, then the grid properties, then its own properties; float32); ``rows[b]``:
    its SIC-map rows (for the row counts ``count``, the background ``bg``, the skin temperature
    ``t_map``). ``w1 .. bo``: the dense weights as the network holds them (v1: ``w1`` (nchan, nin),
    ``b1`` (nchan), ``w2``, ``b2`` empty; v2: (nh, nin + 1), (nh), (2, nh), (2)), ``wc`` (nchan),
    ``bi``, ``bo`` (nsensor, nchan); ``p``: ``2 / (sigma_c^2 B)`` (nchan). ``ip``, ``fp``: the fused
    program's switches and constants (:func:`empirical_seaice.model.fused.build_program`); ``lay``: the
    rows of ``gd`` (w1, its row length, b1, w2, b2, wc, bi, bo) and of the scratch ``s32`` (float32:
    the hidden units ``H[h, f]`` at ``h ns + f``, then the outputs ``O[q, f]``) and ``s64`` (float64:
    emissivities, their gradients, the outputs' gradients, the inputs and theirs), ``ns`` the
    evaluations per observation at most. The equations and the float32/float64 steps are those of
    :func:`empirical_seaice.model.fused_kernels._chunk` in training mode, in scalar code."""
    version, nlag, ngp, nop, nh = ip[0], ip[2], ip[3], ip[4], ip[5]
    anchor_ch, floor_on, false_shape = ip[6], ip[7], ip[8]
    bg_on, warm_eff, false_on = ip[9], ip[10], ip[11]
    c_tb, c_ew, c_tau, c_down, c_k, c_mask = ip[12], ip[13], ip[14], ip[15], ip[16], ip[17]
    c_cos2, angle_col = ip[20], ip[21]
    t_ref, t_scale, t_floor, anchor_v = fp[0], fp[1], fp[2], fp[5]
    s_range, s_bg, s_false, warm_scale, anchor_g = fp[6], fp[7], fp[8], fp[9], fp[10]
    o_w1, n_col1, o_b1, o_w2, o_b2, o_wc, o_bi, o_bo = lay[0], lay[1], lay[2], lay[3], lay[4], lay[5], lay[6], lay[7]
    ns, o_out, o_emis, o_de, o_dok, o_z, o_dz = lay[8], lay[9], lay[10], lay[11], lay[12], lay[13], lay[14]
    for t in range(terms.shape[0]):
        terms[t, b] = 0.0
    for j in range(gd.shape[0]):
        gd[j, b] = 0.0
    i = index[b]
    s = ints[i, 2]
    ncs = nch[s]
    ts = floats[i, 0]
    u = floats[i, 1]
    # (comparisons, not min and max, throughout: numba's CUDA target cannot compile those builtins)
    xt = (t_ref - ts if t_ref > ts else 0.0) / t_scale
    to_k = ts if (t_floor <= 0.0 or ts >= t_floor) else t_floor
    nin = 1 + ngp + nop + (1 if angle_col >= 0 else 0)  # the network's inputs without the frequency
    s64[o_z, b] = xt
    for j in range(ngp + nop):
        s64[o_z + 1 + j, b] = sv[b, nlag + 1 + j]
    if angle_col >= 0:  # cos(theta) of the view angle: an input, not a state row
        s64[o_z + nin - 1, b] = floats[i, angle_col]
    c = 0.0
    for lag in range(nlag + 1):
        c += lag_w[lag] * sv[b, lag]
    # ---- the ice emissivity of each of the sensor's channels
    nf = nfreq[s]
    nfa = nf + 1 if (anchor_ch < 0 and floor_on) else nf  # + the anchor frequency
    cos2 = floats[i, c_cos2] if c_cos2 >= 0 else 1.0
    if version == 2:
        for h in range(nh):
            acc = np.float64(b1[h])
            for j in range(nin):
                acc += w1[h, j] * s64[o_z + j, b]
            wf = np.float64(w1[h, nin])
            for f in range(nfa):
                s32[h * ns + f, b] = _sigmoid32(np.float32(acc + wf * freq_pad[s, f]))
        for q in range(2):
            for f in range(nfa):
                a = np.float32(b2[q])
                for h in range(nh):
                    a += w2[q, h] * s32[h * ns + f, b]
                s32[o_out + q * ns + f, b] = _sigmoid32(a)
        for f in range(2 * ns):
            s64[o_dok + f, b] = 0.0
        for ch in range(ncs):
            pc = pol[s, ch]
            kf = chan_freq[s, ch]
            if pc < 2:  # V or H
                s64[o_emis + ch, b] = s32[o_out + pc * ns + kf, b]
            else:  # QV / QH: e_H + w_V (e_V - e_H), w_V = cos^2 or sin^2 of the scan angle
                wv = cos2 if pc == 2 else 1.0 - cos2
                e_v = np.float64(s32[o_out + kf, b])
                e_h = np.float64(s32[o_out + ns + kf, b])
                s64[o_emis + ch, b] = e_h + wv * (e_v - e_h)
    else:
        for ch in range(ncs):
            cb = cmap[s, ch]
            acc = np.float64(b1[cb])
            for j in range(nin):
                acc += w1[cb, j] * s64[o_z + j, b]
            s64[o_emis + ch, b] = acc
    ak = anchor_k[s, 0]  # the anchor channel's column (-1: the sensor lacks it)
    e_anchor = 0.0
    if anchor_ch >= 0:
        if ak >= 0:
            e_anchor = s64[o_emis + ak, b]
        elif version == 2:
            e_anchor = np.float64(s32[o_out + anchor_k[s, 1] * ns + anchor_k[s, 2], b])
        else:
            e_anchor = np.float64(b1[anchor_ch])
            for j in range(nin):
                e_anchor += w1[anchor_ch, j] * s64[o_z + j, b]
    # ---- TB, the observation term and its gradient
    obs = 0.0
    dc = 0.0
    for ch in range(ncs):
        cb = cmap[s, ch]
        tau = floats[i, c_tau + ch]
        down = floats[i, c_down + ch]
        a_i = ts * tau - down
        a_o = to_k * tau - down
        e_o = floats[i, c_ew + ch] + wc[cb] * u
        e_i = s64[o_emis + ch, b]
        tb_i = floats[i, c_k + ch] + bi[s, cb] + e_i * a_i
        tb_o = floats[i, c_k + ch] + bo[s, cb] + e_o * a_o
        tb = tb_o + c * (tb_i - tb_o)
        m = 1.0 if (ints[i, c_mask + (ch >> 5)] >> (ch & 31)) & 1 else 0.0
        d = tb - floats[i, c_tb + ch]
        g = d * (m * p[cb])  # 2 (TB' - y) mask / (sigma^2 B)
        obs += d * g
        dc += g * (tb_i - tb_o)
        s64[o_de + ch, b] = g * c * a_i
        gd[o_wc + cb, b] += g * (1.0 - c) * a_o * u
        gd[o_bi + cb, b] += g * c
        gd[o_bo + cb, b] += g * (1.0 - c)
    terms[_T_OBS, b] = 0.5 * obs
    # ---- the sampled whole-map priors of the SIC rows seen (weight 1 / count(r) each)
    for lag in range(nlag + 1):
        cl = np.float64(sv[b, lag])
        row = rows[b, lag]
        w = 1.0 / np.float64(count[row])  # 0 where the count is inf
        dcl = dc * lag_w[lag]
        r = cl - 1.0 if cl > 1.0 else (cl if cl < 0.0 else 0.0)  # C - clip(C, 0, 1)
        terms[_T_RANGE, b] += w * r * r * s_range
        dcl += 2.0 * w * r * s_range
        if bg_on:
            r = cl - np.float64(bg[row])
            terms[_T_BG, b] += w * r * r * s_bg
            dcl += 2.0 * w * r * s_bg
        if false_on:
            r, sl = _false_ice(cl, false_shape, fp[11], fp[12], fp[13], fp[14])
            terms[_T_FALSE, b] += w * r * r * s_false
            dcl += 2.0 * w * r * sl * s_false
        ww = np.float64(t_map[row]) - fp[15]
        ww = ww * fp[16] if ww > 0.0 else 0.0
        if warm_eff:
            terms[_T_WARM, b] += w * (cl if cl > 0.0 else 0.0) * ww * warm_scale
            if cl >= 0.0:
                dcl += ww * w * warm_scale
        elif cl > 0.01:
            terms[_T_WARM, b] += w * ww * warm_scale
        gs[b, lag] = dcl
    # ---- the v2 anchor floor, summed over the batch / nobs
    d_own = 0.0  # the anchor's gradient where the sensor lacks the anchor channel
    if floor_on:
        e_a = np.float64(s32[o_out + nf, b]) if anchor_ch < 0 else e_anchor
        r = anchor_v - e_a if anchor_v > e_a else 0.0
        terms[_T_ANCHOR, b] = r * r * anchor_g
        d_a = -2.0 * r * anchor_g
        if anchor_ch < 0:
            s64[o_dok + nf, b] += d_a
        elif ak >= 0:
            s64[o_de + ak, b] += d_a
        else:
            d_own = d_a
    # ---- the ice-emissivity ceiling, (1/B) sum_c m_c max(e_c - 1, 0)^2 / sigma_e^2 over the observed channels
    if ip[22]:
        for ch in range(ncs):
            r = s64[o_emis + ch, b] - 1.0
            if r > 0.0 and (ints[i, c_mask + (ch >> 5)] >> (ch & 31)) & 1:
                terms[_T_CEIL, b] += r * r * fp[17]
                s64[o_de + ch, b] += 2.0 * r * fp[17]
    # ---- backward through the emissivity model
    for j in range(nin):
        s64[o_dz + j, b] = 0.0
    if version == 2:
        if d_own != 0.0:
            s64[o_dok + anchor_k[s, 1] * ns + anchor_k[s, 2], b] += d_own
        for ch in range(ncs):
            pc = pol[s, ch]
            kf = chan_freq[s, ch]
            de = s64[o_de + ch, b]
            if pc < 2:
                s64[o_dok + pc * ns + kf, b] += de
            else:
                wv = cos2 if pc == 2 else 1.0 - cos2
                s64[o_dok + kf, b] += wv * de
                s64[o_dok + ns + kf, b] += (1.0 - wv) * de
        s0 = 0.0
        s1 = 0.0
        for f in range(nfa):  # the output units' pre-activation gradients
            o0 = np.float64(s32[o_out + f, b])
            o1 = np.float64(s32[o_out + ns + f, b])
            dl0 = s64[o_dok + f, b] * o0 * (1.0 - o0)
            dl1 = s64[o_dok + ns + f, b] * o1 * (1.0 - o1)
            s64[o_dok + f, b] = dl0
            s64[o_dok + ns + f, b] = dl1
            s0 += dl0
            s1 += dl1
        gd[o_b2, b] += s0
        gd[o_b2 + 1, b] += s1
        for h in range(nh):  # the hidden units: the inputs are the same at every frequency
            w20 = np.float64(w2[0, h])
            w21 = np.float64(w2[1, h])
            dp = 0.0
            g20 = 0.0
            g21 = 0.0
            gf = 0.0
            for f in range(nfa):
                hv = np.float64(s32[h * ns + f, b])
                u0 = s64[o_dok + f, b]
                u1 = s64[o_dok + ns + f, b]
                g20 += u0 * hv
                g21 += u1 * hv
                dh = (w20 * u0 + w21 * u1) * hv * (1.0 - hv)
                dp += dh
                gf += dh * freq_pad[s, f]
            gd[o_w2 + h, b] += g20
            gd[o_w2 + nh + h, b] += g21
            gd[o_w1 + h * n_col1 + nin, b] += gf
            gd[o_b1 + h, b] += dp
            for j in range(nin):
                gd[o_w1 + h * n_col1 + j, b] += dp * s64[o_z + j, b]
                s64[o_dz + j, b] += w1[h, j] * dp
    else:
        for ch in range(ncs + 1):
            if ch < ncs:
                cb = cmap[s, ch]
                de = s64[o_de + ch, b]
            else:  # the anchor channel that the sensor lacks
                cb = anchor_ch
                de = d_own
            if de == 0.0:
                continue
            gd[o_b1 + cb, b] += de
            for j in range(nin):
                gd[o_w1 + cb * n_col1 + j, b] += de * s64[o_z + j, b]
                s64[o_dz + j, b] += w1[cb, j] * de
    for j in range(ngp + nop):
        gs[b, nlag + 1 + j] = s64[o_dz + 1 + j, b]


def _batch_cpu(  # pragma: no cover - compiled by _kernels
    nb, index, floats, ints, sv, rows, w1, b1, w2, b2, wc, bi, bo, p, ip, fp, lay,
    count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w, cmap, nch, anchor_k,
    terms, gd, gs, s32, s64,
):  # fmt: skip
    """:func:`_observation` of observations ``0 .. nb - 1`` on numba's threads (each its own columns)."""
    for b in prange(nb):
        _observation(
            b, index, floats, ints, sv, rows, w1, b1, w2, b2, wc, bi, bo, p, ip, fp, lay,
            count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w, cmap, nch, anchor_k,
            terms, gd, gs, s32, s64,
        )  # fmt: skip


def _batch_cuda(  # pragma: no cover - compiled for CUDA by _kernels
    nb, index, floats, ints, sv, rows, w1, b1, w2, b2, wc, bi, bo, p, ip, fp, lay,
    count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w, cmap, nch, anchor_k,
    terms, gd, gs, s32, s64,
):  # fmt: skip
    """:func:`_observation` of observation ``cuda.grid(1)`` (one thread each; those beyond ``nb`` idle)."""
    b = cuda.grid(1)
    if b < nb:
        _observation(
            b, index, floats, ints, sv, rows, w1, b1, w2, b2, wc, bi, bo, p, ip, fp, lay,
            count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w, cmap, nch, anchor_k,
            terms, gd, gs, s32, s64,
        )  # fmt: skip


def _retarget(fn, **names):
    """``fn`` with some of the globals its code reads replaced (the helpers it calls, compiled for
    another target): the same source compiled for the CPU and for CUDA."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__, fn.__closure__)


def _py(fn):
    """The Python function of a numba dispatcher (itself where numba compiled nothing)."""
    return getattr(fn, "py_func", fn)


_KERNELS: dict[str, Any] = {}
_LOW_OCCUPANCY = r".*Grid size \d+ will likely result in GPU under-utilization"
"""numba's warning at a launch of fewer blocks than twice the GPU's SMs (its message starts with a
terminal's bold code)."""


def _kernels(target: str):
    """The compiled batch function of ``target`` ("cpu": numba.njit, "cuda": numba.cuda.jit), made once."""
    if target in _KERNELS:
        return _KERNELS[target]
    if target == "cpu":
        import numba

        from empirical_seaice.compiled import njit

        sig = njit(cache=True)(_py(_sigmoid32))
        obs = njit(cache=True)(_retarget(_observation, _sigmoid32=sig, _false_ice=_false_ice))
        made = njit(cache=True, parallel=True)(_retarget(_batch_cpu, _observation=obs, prange=numba.prange))
    else:
        from numba import cuda

        # a batch of the default sizes fills a few blocks of the GPU's 132 SMs, and numba said so at every
        # launch of a new size (nine "NumbaPerformanceWarning: Grid size 4 will likely result in GPU
        # under-utilization" on a default run of the demo twin, an H200): the schedule is the run's choice
        warnings.filterwarnings("ignore", message=_LOW_OCCUPANCY)
        made = cuda.jit(cuda_kernel_function())
    _KERNELS[target] = made
    return made


def cuda_kernel_function():
    """:func:`_batch_cuda` with the functions it calls as numba CUDA device functions: what
    ``numba.cuda.jit`` compiles (and ``numba.cuda.compile_ptx``, without a GPU: the tests)."""
    from numba import cuda

    dev = cuda.jit(device=True)
    sig = dev(_py(_sigmoid32))
    false_ice = dev(_retarget(_py(_false_ice), max=dev(_max)))  # the same residual, its max a device function
    obs = dev(_retarget(_observation, _sigmoid32=sig, _false_ice=false_ice))
    return _retarget(_batch_cuda, _observation=obs, cuda=cuda)


def cuda_usable() -> tuple[bool, str]:
    """Whether numba can launch CUDA kernels here (its CUDA target and a driver it finds, or its
    simulator), and why not."""
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - numba's CUDA target missing or broken
        return False, f"numba's CUDA target cannot be imported ({type(exc).__name__}: {exc})"
    if getattr(cuda, "simulator_enabled", False) or cuda.is_available():
        return True, ""
    return False, "numba finds no CUDA driver"


@dataclass
class DeviceEvaluation:
    """A batch's cost terms and the gradients of their total (:meth:`DeviceCost.evaluate`)."""

    terms: dict[str, torch.Tensor]
    """The terms as the network's ``cost_terms`` names them (0-d float32)."""
    state_grads: list[torch.Tensor]
    """The gradient of each state-value tensor handed in, in its shape."""
    dense_grads: list[torch.Tensor]
    """The gradient of each dense weight (the network's ``dense_parameters``), in its shape (views of one vector)."""


class DeviceCost:
    """:func:`_observation` over a batch on ``target`` ("cuda", or "cpu" for the tests), with what it
    reads copied to the tables' device once (the packed observations stay the data's own tensors).

    Built by :func:`build_device_cost`; :meth:`evaluate` gives the tensor step's ``cost_terms`` of the
    batch (the same names and order) and the gradients of their total, from one launch."""

    def __init__(self, program, data, target: str) -> None:
        net = program.network
        self.program, self.network, self.data, self.target = program, net, data, target
        self.names = program.names
        dev = data.floats.device
        self.device = dev
        a = program.arrays

        def put(x, dtype=None):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=dev)

        ip = program.ip.copy()
        self.dense = list(net.dense_parameters())
        emis = self.dense[:-3]
        nh, nc = int(ip[5]), int(ip[1])
        sizes = [p.numel() for p in emis] + ([0, 0] if len(emis) == 2 else []) + [nc, nc, nc]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        self.offsets = offs
        ns = int(a["nfreq"].max()) + 1 if ip[0] == 2 else 0  # v2: the evaluations (+ the anchor's) at most
        nin_max = 2 + int(ip[3]) + int(ip[4])
        o_out = nh * ns
        o_emis, o_de = 0, nc
        o_dok = 2 * nc
        o_z = o_dok + 2 * ns
        o_dz = o_z + nin_max
        lay = [offs[0], int(emis[0].shape[1]), offs[1], offs[2], offs[3], offs[4], offs[5], offs[6]]
        lay += [ns, o_out, o_emis, o_de, o_dok, o_z, o_dz]
        self.n32, self.n64 = max(1, o_out + 2 * ns), o_dz + nin_max
        self.ndense = int(offs[-1])
        self.consts = dict(
            ip=put(ip),
            lay=put(np.asarray(lay, dtype=np.int64)),
            count=net.sic_count if net.sic_count is not None else put(a["count"]),
            bg=net.state.background_flat,
            t_map=net.t_map_flat,
            freq_pad=put(a["freq_pad"], torch.float64),
            nfreq=put(a["nfreq"], torch.int64),
            chan_freq=put(a["chan_freq"], torch.int64),
            pol=put(a["pol"], torch.int64),
            lag_w=put(a["lag_w"], torch.float64),
            cmap=put(a["cmap"], torch.int64),
            nch=put(a["nch"], torch.int64),
            anchor_k=put(a["anchor_k"], torch.int64),
        )
        self.bias_inv_var = net.bias_error_k.square().reciprocal()  # (as the tensor step's cost)
        self.empty2 = torch.zeros((2, 0), dtype=torch.float32, device=dev)
        self.empty1 = torch.zeros(0, dtype=torch.float32, device=dev)
        self.nsensor = int(a["cmap"].shape[0])
        self.nsv = 1 + int(ip[2]) + int(ip[3]) + int(ip[4])  # state values an observation reads
        self._fixed: dict[str, Any] = {}
        self._fixed_key: tuple | None = None
        self._kernel = _kernels(target)

    def _as_array(self, x: torch.Tensor):
        """A tensor as the kernel takes it: a numpy view (the CPU, or the CUDA simulator's host arrays) or
        a numba device array over the same memory (CUDA; without waiting for torch's stream: the kernel
        is launched on that stream, after whatever wrote the tensor)."""
        x = x.detach()
        if self.target == "cpu" or not x.is_cuda:
            return x.numpy()
        from numba import cuda

        return cuda.as_cuda_array(x, sync=False)

    def _fixed_args(self, nb: int, nb_norm: int) -> dict[str, Any]:
        """The kernel's arguments that do not change from step to step, converted once (:meth:`_as_array`)
        per batch size and ``B`` of the means: the packed tables, the dense weights (stepped in place), the
        program's constants, the per-observation outputs and scratch (rows of ``nb`` columns), and
        ``p = 2 / (sigma_c^2 B)`` and the constants of the means (``fp``) for ``B = nb_norm``."""
        key = (nb, nb_norm, tuple(p.data_ptr() for p in self.dense))
        if self._fixed_key == key:
            return self._fixed
        fp = self.program.batch_means(nb_norm, self.program.fp.copy())
        emis = self.dense[:-3]
        w2, b2 = (emis[2], emis[3]) if len(emis) == 4 else (self.empty2, self.empty1)
        wc, bi, bo = self.dense[-3:]
        terms, gd, gs, s32, s64 = self._scratch(nb)
        tensors = dict(
            floats=self.data.floats, ints=self.data.ints, w1=emis[0], b1=emis[1], w2=w2, b2=b2, wc=wc, bi=bi,
            bo=bo, p=torch.as_tensor(self.program.obs_weights(nb_norm), device=self.device),
            fp=torch.as_tensor(fp, device=self.device), **self.consts,
            terms=terms, gd=gd, gs=gs, s32=s32, s64=s64,
        )  # fmt: skip
        self._fixed = {k: self._as_array(v) for k, v in tensors.items()}
        self._fixed.update(outputs=(terms, gd, gs))
        self._fixed_key = key
        return self._fixed

    def _scratch(self, nb: int) -> tuple[torch.Tensor, ...]:
        """The per-observation outputs and scratch of a batch of ``nb``: terms, dense gradients (rows,
        ``nb``), state gradients (``nb``, columns), float32 and float64 scratch (rows, ``nb``)."""
        dev, f64 = self.device, torch.float64
        shapes = ((NTERMS, f64), (self.ndense, f64), (self.n32, torch.float32), (self.n64, f64))
        if self.target == "cpu":  # an observation's column contiguous (transposed views): one core's caches
            cols = [torch.empty((nb, k), dtype=t, device=dev).t() for k, t in shapes]
        else:  # an observation's column strided: the threads of a warp read neighbouring addresses
            cols = [torch.empty((k, nb), dtype=t, device=dev) for k, t in shapes]
        gs = torch.empty((nb, self.nsv), dtype=f64, device=dev)  # every column written by the kernel
        return cols[0], cols[1], gs, cols[2], cols[3]

    def launch(self, index: torch.Tensor, rows: torch.Tensor, sv: torch.Tensor, nb_norm: int):
        """The kernel over the batch: ``(terms (NTERMS, B), gd (ndense, B), gs (B, nsv))``, float64, per
        observation (``sv``: (B, nsv) float32 state values; ``rows``: (B, nlag + 1) SIC rows). The three
        are buffers of this batch size, overwritten by the next launch of the same size."""
        nb = int(index.shape[0])
        args, (terms, gd, gs) = self.kernel_args(index, rows, sv, nb_norm)
        if nb == 0:  # a rank without observations in this step (terms and gradients 0)
            terms.zero_()
            gd.zero_()
        elif self.target == "cpu":
            self._kernel(nb, *args)
        else:
            self._launch_cuda(nb, args, index)
        return terms, gd, gs

    def kernel_args(self, index: torch.Tensor, rows: torch.Tensor, sv: torch.Tensor, nb_norm: int):
        """The kernel's arguments after the observation count (:meth:`_as_array` of each, in the order of
        :func:`_batch_cuda`), and its outputs ``(terms, gd, gs)`` as tensors."""
        f = self._fixed_args(int(index.shape[0]), nb_norm)
        args = (
            self._as_array(index), f["floats"], f["ints"], self._as_array(sv.contiguous()), self._as_array(rows),
            f["w1"], f["b1"], f["w2"], f["b2"], f["wc"], f["bi"], f["bo"], f["p"], f["ip"], f["fp"], f["lay"],
            f["count"], f["bg"], f["t_map"], f["freq_pad"], f["nfreq"], f["chan_freq"], f["pol"], f["lag_w"],
            f["cmap"], f["nch"], f["anchor_k"], f["terms"], f["gd"], f["gs"], f["s32"], f["s64"],
        )  # fmt: skip
        return args, f["outputs"]

    def _launch_cuda(self, nb: int, args: tuple, index: torch.Tensor) -> None:
        """The CUDA kernel over ``nb`` observations, on torch's current stream (the simulator: on host arrays)."""
        from numba import cuda

        blocks = (nb + _THREADS - 1) // _THREADS
        if not index.is_cuda:  # numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): host arrays
            self._kernel[blocks, _THREADS](nb, *args)
            return
        stream = cuda.external_stream(torch.cuda.current_stream(index.device).cuda_stream)
        self._kernel[blocks, _THREADS, stream](nb, *args)

    def dense_grads(
        self, gd: torch.Tensor, isensor: torch.Tensor, share: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch's gradient of every dense weight, flat in the order of the network's dense parameters
        (float32), from the per-observation columns ``gd`` (sums over the observations; the biases' per
        sensor, ``isensor``), with the priors on the dense weights alone added: the bias prior
        ``share sum (b - b_bg)^2 / sigma_b^2 / nobs`` (float32, as the tensor step's) and v1's mean anchor
        ``share ((e0[a] - value) / sigma)^2 / nobs``; returns ``(flat, bias, anchor)`` (the v1 anchor 0-d,
        or None in v2, whose anchor floor is per observation: the kernel's)."""
        net, cc, o = self.network, self.network.cost_config, self.offsets
        n, nc = float(self.program.nobs_total), (o[6] - o[5])
        total = gd.sum(dim=1)
        onehot = torch.nn.functional.one_hot(isensor, self.nsensor).to(gd.dtype)  # (B, nsensor)
        per_sensor = gd[o[5] : o[7]] @ onehot  # (2 nchan, nsensor): the biases' gradients by sensor
        bi, bo = self.dense[-2:]
        bias = None
        grads = []
        for b, bg, g in ((bi, net.bias_ice_bg_k, per_sensor[:nc]), (bo, net.bias_ocean_bg_k, per_sensor[nc:])):
            r = b.detach() - bg
            wr = r * self.bias_inv_var
            term = torch.dot(wr.reshape(-1), r.reshape(-1))
            bias = term if bias is None else bias + term
            grads.append(g.t().add(wr, alpha=2.0 * share / n))
        flat = torch.cat([total[: o[5]], grads[0].reshape(-1), grads[1].reshape(-1)]).to(torch.float32)
        anchor = None
        if cc.anchor == "mean":  # v1: on the linear model's bias e0 (b1) of the anchor channel
            a = int(net.anchor_channel)
            r = (self.dense[1].detach()[a] - cc.anchor_value) / cc.anchor_error
            anchor = r.square() * (share / n)
            flat[o[1] + a] += (2.0 * share / (cc.anchor_error * n)) * r
        assert bias is not None
        return flat, bias * (share / n), anchor

    def batch_rows(self, index: torch.Tensor) -> types.SimpleNamespace:
        """What :meth:`terms` and the network's ``state_rows`` read of the batch ``index`` (packed rows):
        its grid point, time step, sensor and observation row."""
        ints = self.data.ints.index_select(0, index)
        return types.SimpleNamespace(
            igrid=ints[:, 0].long(),
            istep=ints[:, 1].long(),
            isensor=ints[:, 2].long(),
            iobs=self._iobs(index),
        )

    @torch.no_grad()
    def evaluate(
        self,
        batch: types.SimpleNamespace,
        index: torch.Tensor,
        state_values: list[torch.Tensor],
        batch_total: int | None,
        sic_rows: torch.Tensor | None = None,
    ) -> DeviceEvaluation:
        """The cost terms of the batch ``index`` (packed rows of the data; ``batch``: its
        :meth:`batch_rows`) and the gradients of their total, without autograd: one launch of the kernel,
        its sums, and the priors on the dense weights alone. ``state_values``: the rows the batch reads
        (:meth:`DeferredAdam.gather`, in the order of the network's ``state_rows``); ``batch_total``: the
        ``B`` of the batch means (None: ``len(index)``), as in ``cost_terms``; ``sic_rows``: the batch's
        SIC-map rows, the first table's of ``state_rows`` (None: found here).

        The gradients are those of the step's loss, the total of the terms
        (:func:`~empirical_seaice.cost.objective.total_cost`), in which every term that carries a
        gradient has weight 1 (the reference's "diagnostic" warm-ice term has none here: the kernel's
        warm-ice gradient is the "effective" form's alone); they are float32, as autograd's would be."""
        net, cc = self.network, self.network.cost_config
        nb = int(index.shape[0])
        nb_norm = nb if batch_total is None else int(batch_total)
        rows = net.state.sic_rows(batch.igrid, batch.istep) if sic_rows is None else sic_rows
        widths = [math.prod(v.shape[1:]) for v in state_values]
        sv = torch.cat([v.reshape(nb, w) for v, w in zip(state_values, widths, strict=True)], dim=1)
        share = float(getattr(net, "shared_prior_share", 1.0))
        kernel_terms, gd, gs = self.launch(index, rows, sv, nb_norm)
        flat, bias, anchor = self.dense_grads(gd, isensor=batch.isensor, share=share)
        extra = [bias.reshape(1)] + ([] if anchor is None else [anchor.reshape(1)])
        out = torch.cat([kernel_terms.sum(dim=1).to(torch.float32)] + extra).unbind()
        values = {"obs": out[_T_OBS], "sic_range": out[_T_RANGE]}
        if cc.sic_background_prior:
            values["sic_background"] = out[_T_BG]
        if cc.false_ice_prior:
            values["false_ice"] = out[_T_FALSE]
        values["warm_ice"] = out[_T_WARM]
        values["anchor"] = out[_T_ANCHOR] if anchor is None else out[NTERMS + 1]
        if cc.emis_ceiling_error is not None:
            values[CEILING] = out[_T_CEIL]
        values["bias"] = out[NTERMS]
        per_value = gs.to(torch.float32).split(widths, dim=1)
        dense = flat.split([p.numel() for p in self.dense])
        return DeviceEvaluation(
            terms={name: values[name] for name in self.names},
            state_grads=[g.reshape(v.shape) for g, v in zip(per_value, state_values, strict=True)],
            dense_grads=[g.view(p.shape) for g, p in zip(dense, self.dense, strict=True)],
        )

    def _iobs(self, index: torch.Tensor) -> torch.Tensor:
        """Each packed row's observation (its property row), as :meth:`ObservationTensors.batch` gives it."""
        obs_rows = getattr(self.data, "obs_rows", None)
        if obs_rows is not None:
            return obs_rows.index_select(0, index)
        row0 = int(getattr(self.data, "row0", 0))
        return index + row0 if row0 else index


def build_device_cost(network, data, nobs_total: int, target: str = "cuda") -> tuple[DeviceCost | None, str]:
    """:class:`DeviceCost` of ``network`` on ``data`` (:class:`ObservationTensors` on the device), or
    ``(None, reason)`` where it does not apply: numba or its CUDA target missing, the "full" prior
    mode, a configuration the fused program does not cover
    (:func:`~empirical_seaice.model.fused.build_program`)."""
    from empirical_seaice.model.fused import build_program

    if target == "cuda":
        ok, why = cuda_usable()
        if not ok:
            return None, why
    if getattr(network, "prior_mode", None) != "sampled":
        return None, "the device cost runs the sampled whole-map priors only (--map-priors sampled)"
    program, reason = build_program(network, data, nobs_total, training=True, host_tables=False)
    if program is None:
        return None, reason
    return DeviceCost(program, data, target), ""


__all__ = ["DeviceCost", "build_device_cost", "cuda_kernel_function", "cuda_usable"]
