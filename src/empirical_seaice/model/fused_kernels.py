"""The compiled per-observation kernels of the fused step (numba): forward, cost, backward.

One more implementation of :meth:`HybridNetwork.forward` +
:meth:`HybridNetwork.cost_terms` (sampled whole-map priors, or none in "full" mode) and their
backward pass, written per observation so that a training step is a few compiled calls
instead of ~900 small tensor operations. The equations are those of
:mod:`empirical_seaice.model.physics` (factored form ``TB' = c TB_i + (1 - c) TB_o``,
``TB_i = e_ice A_i + K + b_ice``, ``TB_o = e_o A_o + K + b_ocean``,
``A_i = T_s tau* - D*``, ``A_o = max(T_s, floor) tau* - D*``,
``e_o = e_w + w_c u``), of :mod:`empirical_seaice.model.emissivity` (v1 linear,
v2 network with frequency input) and of :mod:`empirical_seaice.cost.terms`
(quadratic penalties ``r^2 / sigma^2`` with derivative ``2 r dr/dx / sigma^2``).

Arithmetic is float64 per observation (storage float32), except the v2 network's forward pass
(float32 sigmoids and output layer, as the tensor step). The network is evaluated at every frequency
of the observation's sensor and the anchor frequency at once: hidden units h-major, the
evaluations the contiguous axis, padded to a multiple of 8 and computed 16 at a time (the rest 8)
as LLVM vectors (:func:`~empirical_seaice.compiled.axpy16`, :func:`~empirical_seaice.compiled.gemv16`,
:func:`~empirical_seaice.compiled.sigmoid16`, :func:`~empirical_seaice.compiled.sigmoid_grad16` and
their 8-lane forms; the padding's gradients are 0; the sums over the batch kept lane by lane and added across the lanes
once per chunk). The radiative transfer, the observation term and its gradient run over 8 channels
at a time as one vector (:func:`~empirical_seaice.compiled.channels8`), the remaining channels
one by one. :func:`_step` splits the batch into
:data:`NCHUNK` fixed chunks, evaluated in parallel (``numba.prange``) with one gradient
buffer per chunk, summed in chunk order; per-observation gradients of the state rows are
summed into the rows in observation order afterwards. The result is therefore the same bit
for bit whatever the number of threads. The arrays these kernels read are prepared by
:func:`empirical_seaice.model.fused.build_program` (``ip``: integer switches and column
offsets, ``fp``: float constants).
"""

from __future__ import annotations

import math

import numpy as np

try:  # optional at import time: without numba the trainer keeps the unfused step
    import numba
    from numba import prange

    from empirical_seaice.compiled import (
        axpy8,
        axpy16,
        channels8,
        gemv8,
        gemv16,
        njit,
        prefetch,
        prefetch1,
        sigmoid8,
        sigmoid16,
        sigmoid_grad8,
        sigmoid_grad16,
        sum8,
    )

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None  # type: ignore[assignment]
    prange = range  # type: ignore[misc]
    HAVE_NUMBA = False

FASTMATH = frozenset({"nnan", "ninf", "nsz", "arcp", "contract", "afn"})
"""LLVM's fast-math flags of the per-observation kernel :func:`_chunk`: all but ``reassoc``. With
``reassoc`` a run that compiled :func:`_step` and a run that loaded it from numba's disk cache summed
some cost terms in a different order: the per-batch ``sic_range`` and ``total`` of ``models_run.nc``
differed in their last bits between a first run and the next (the trained state did not). Most likely
the two ran different copies of :func:`_chunk`: numba links a kernel's callees into it and optimises them
again there, and ``reassoc`` lets that second optimisation reorder sums. Without ``reassoc`` both keep
the source's order; the step is as fast (benchmarks/results.md, twenty-first round)."""

NCHUNK = 16
"""Fixed number of chunks a batch is split into (independent of the thread count)."""

# term order of HybridNetwork.cost_terms in sampled mode (switched-off priors left out)
_T_OBS, _T_RANGE, _T_BG, _T_FALSE, _T_WARM, _T_ANCHOR, _T_CEIL = range(7)
NTERMS = 7
"""Columns of the kernel's per-chunk terms (the last, ``_T_CEIL``, the ice-emissivity ceiling)."""
_MAXH = 64  # largest hidden layer / number of inputs the kernel's stack buffers hold
_MAXF = 64  # largest number of distinct frequencies per sensor
_MAXC = 128  # largest number of channels
_V = 8  # the network's evaluations are padded to a multiple of this (compiled.axpy8 ...: one AVX2 register)
_MAXS = (_MAXF + 1 + _V - 1) // _V * _V  # the network's evaluations per observation (+ anchor), padded to _V
_AHEAD = 3  # the observation whose rows :func:`_chunk` prefetches: this many ahead


def _inverse(x):
    """``1 / x`` in float64 (compiled without fastmath, so the fused kernel gets the rounded quotient)."""
    return 1.0 / np.float64(x)


def warm_weight(t, threshold, factor):
    """The warm-ice prior's weight of a SIC row whose skin temperature is ``t`` (K):
    ``max(t - threshold, 0) factor`` in float64 (compiled without fastmath: the same rounding wherever
    it is computed)."""
    return max(np.float64(t) - threshold, 0.0) * factor


def _linear_emis(w1, b1, z, nin, c):
    """The v1 linear model's ice emissivity of basis channel ``c``: ``b1[c] + sum_j w1[c, j] z_j``."""
    acc = b1[c]
    for j in range(nin):
        acc += w1[c, j] * z[j]
    return acc


def _linear_emis_grad(w1, z, nin, c, d, g_w1, g_b1, dz):
    """The gradient ``d`` of :func:`_linear_emis` of channel ``c`` added into ``g_b1[c]``, ``g_w1[c, :]`` and
    the inputs' ``dz``."""
    g_b1[c] += d
    for j in range(nin):
        g_w1[c, j] += d * z[j]
        dz[j] += w1[c, j] * d


def _anchor_emis(version, a, w1, b1, z, nin, oflat, ns, anchor):
    """The ice emissivity of the anchor channel ``a`` for an observation whose sensor lacks it: v1 the
    linear model's row ``a`` (:func:`_linear_emis`), v2 the network's output ``anchor[1]`` (V 0, H 1) at
    frequency index ``anchor[2]`` (``oflat``: the outputs, ``ns`` per polarisation)."""
    if version == 2:
        return np.float64(oflat[anchor[1] * ns + anchor[2]])
    return _linear_emis(w1, b1, z, nin, a)


def _false_ice(c, shape, s, lo, hi, h):
    """(residual r, slope dr/dC) of the false-ice prior at C (tent: shape 0, smooth: shape 1)."""
    if c <= 0.0 or c >= 0.3:
        return 0.0, 0.0
    if shape == 0:
        r = 0.15 - abs(c - 0.15)
        if r <= 0.0:
            return 0.0, 0.0
        sl = 0.0
        if c > 0.15:
            sl = -1.0
        elif c < 0.15:
            sl = 1.0
        return r, sl
    if c <= lo:
        return c, 1.0
    if c < hi:
        r = math.sqrt(max(h - s * (0.15 - c) ** 2, 1.1754943508222875e-38))
        return r, s * (0.15 - c) / r
    return 0.3 - c, -1.0


def _refs(ints, index, ncolmap, nstep, nlag, has_grid, has_obs, refs):
    """Table-local state rows each observation reads: SIC lags ``g ncol + t + nlag - l``
    (l = 0..nlag), grid row ``g nstep + t``, observation row ``i`` (the packed row is ``iobs``; the
    integers of the observation ``4 _AHEAD`` ahead prefetched). :data:`NCHUNK` fixed chunks of the
    batch in parallel (each observation's rows are its own: the same result for any thread count)."""
    nb = index.shape[0]
    for c in prange(NCHUNK):
        b1 = (nb * (c + 1)) // NCHUNK
        for b in range((nb * c) // NCHUNK, b1):
            if b + 4 * _AHEAD < b1:
                prefetch(ints, index[b + 4 * _AHEAD], 0)
            i = index[b]
            g = np.int64(ints[i, 0])
            t = np.int64(ints[i, 1])
            for lag in range(nlag + 1):
                refs[b, lag] = g * ncolmap + t + nlag - lag
            k = nlag + 1
            if has_grid:
                refs[b, k] = g * nstep + t
                k += 1
            if has_obs:
                refs[b, k] = i


def _chunk(  # noqa: C901 - one compiled kernel per observation, branches on the configuration
    c0, c1, floats, ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
    ip, fp, count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w,
    terms, g_w1, g_b1, g_w2, g_b2, g_wc, g_bi, g_bo, g_state, out_tb, out_emis, out_sic, out_anchor,
    cmap, nch, anchor_k, absent,
):  # fmt: skip
    """Forward, cost and backward of observations ``c0 .. c1 - 1`` of the batch (see :func:`_step`);
    with ``ip[18]`` (forward only) the simulation into ``out_*`` instead (``ip[19]``: 1 = SIC 0; 2 = also
    the TB with SIC 0, the ocean's ``TB_o``, into ``out_tb[:, nc:]``: ``out_tb`` is then (B, 2 nc));
    ``ip[20]``: the column of ``cos^2`` of the scan angle (quasi-polarised channels), -1 = none;
    ``ip[21]``: the column of the view angle's cosine, the v2 network's input before the frequency
    (:attr:`NetworkEmissivity.angle_input`; the same at every frequency and at the anchor frequency), -1 = none;
    ``ip[22]``: the ice-emissivity ceiling on (``fp[17]``: its ``1 / (sigma_e^2 B)``).

    Channels are those of the observation's own sensor ``s``: its packed row's channel column ``k``
    (``k < nch[s]``) is basis channel ``cmap[s, k]``. ``p``, ``wc``, ``bi``, ``bo``, ``g_wc``, ``g_bi``,
    ``g_bo``, ``chan_freq``, ``pol`` are indexed the same way, ``[s, k]`` (:func:`_step` gathers and
    scatters them); ``w1``, ``b1``, ``g_w1``, ``g_b1`` (v1) and the outputs by the basis channel.
    ``anchor_k[s]``: the column of the anchor channel ``ip[6]`` in the sensor's rows, then (v2) the
    polarisation and frequency index of its output; column -1 where the sensor lacks the channel, whose
    emissivity is then computed on its own (:func:`_anchor_emis`). ``absent[s]``: the basis channels the
    sensor lacks, -1 after the last: NaN in the forward pass's outputs."""
    version, nc, nlag, ngp, nop, nh = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    anchor_ch, floor_on, false_shape = ip[6], ip[7], ip[8]
    bg_on, warm_eff, false_on = ip[9], ip[10], ip[11]
    forward_only, zero_sic = ip[18], ip[19]
    t_ref, t_scale, t_floor, anchor_v = fp[0], fp[1], fp[2], fp[5]
    s_range, s_bg, s_false, warm_scale, anchor_g = fp[6], fp[7], fp[8], fp[9], fp[10]
    fi_s, fi_lo, fi_hi, fi_h = fp[11], fp[12], fp[13], fp[14]
    angle_col = ip[21]
    ceil_on, s_ceil = ip[22], fp[17]  # the ice-emissivity ceiling
    c_tb, c_ew, c_tau, c_down, c_k = ip[12], ip[13], ip[14], ip[15], ip[16]  # float columns
    c_mask = ip[17]  # the mask: bit ch & 31 of integer column c_mask + ch >> 5
    cols = ip[12:17].copy()  # the same columns (but the mask's), for compiled.channels8
    acc8 = np.empty(16)
    pm = np.empty(_MAXC)
    nin = 1 + ngp + nop + (1 if angle_col >= 0 else 0)  # network inputs without the frequency
    z = np.empty(_MAXH)
    dz = np.empty(_MAXH)
    dok = np.empty(2 * _MAXS)
    emis = np.empty(_MAXC)
    de = np.empty(_MAXC)
    lags = np.empty(8)
    pre = np.empty(_MAXS * _MAXH, dtype=np.float32)
    hflat = np.empty(_MAXS * _MAXH, dtype=np.float32)
    opre = np.empty(2 * _MAXS, dtype=np.float32)
    # the backward pass's sums over the batch kept lane by lane (per hidden unit: W2[0, h], W2[1, h], the
    # frequency column of W1), added across the lanes at the end of the chunk
    lanes = np.zeros(nh * 3 * _V)
    fpad = freq_pad[0]
    oflat = np.empty(2 * _MAXS, dtype=np.float32)
    cos2 = 1.0
    ns = 8
    nbat = index.shape[0]
    ncolf = floats.shape[1]
    for b in range(c0, c1):
        if b + _AHEAD < nbat:  # the packed row, integers and SIC row constants of an observation ahead
            ia = index[b + _AHEAD]
            if ia != index[b] + _AHEAD:  # not rows in order (a streamed pass's block): the hardware fetches those
                for col in range(0, ncolf, 16):
                    prefetch(floats, ia, col)
                prefetch(floats, ia, ncolf - 1)
                prefetch(ints, ia, 0)
            if not forward_only:  # the priors' constants of its SIC row: read by the cost only
                ra = refs[b + _AHEAD, 0]
                prefetch1(count, ra)
                prefetch1(bg, ra)
                prefetch1(t_map, ra)
        i = index[b]
        s = ints[i, 2]
        ncs = nch[s]  # the sensor's channels: its row's channel columns 0 .. ncs - 1
        own = cmap[s]
        ts = floats[i, 0]
        u = floats[i, 1]
        xt = max(t_ref - ts, 0.0) / t_scale
        to_k = max(ts, t_floor) if t_floor > 0.0 else ts
        z[0] = xt
        k = nlag + 1
        for j in range(ngp):
            z[1 + j] = vals[inv[b, k], j]
        if ngp > 0:
            k += 1
        for j in range(nop):
            z[1 + ngp + j] = vals[inv[b, k], j]
        if angle_col >= 0:  # cos(theta) of the view angle: an input, not a state row (no gradient kept)
            z[nin - 1] = floats[i, angle_col]
        c = 0.0
        for lag in range(nlag + 1):
            lags[lag] = vals[inv[b, lag], 0]
            c += lag_w[lag] * lags[lag]
        if zero_sic == 1:
            c = 0.0
        # ---- ice emissivity per channel
        nf = nfreq[s]
        if version == 2:
            # hidden units h-major, the evaluations (frequencies, then the anchor's) the contiguous axis,
            # padded to ns (a multiple of _V) with the inputs of freq_pad (0 beyond): SIMD over frequencies,
            # 16 (the rest 8) at a time as one LLVM vector (compiled.axpy16 ...: fixed-length loops become
            # scalar code)
            nfa = nf + 1 if (anchor_ch < 0 and floor_on) else nf  # + the anchor frequency
            ns = (nfa + _V - 1) // _V * _V
            fpad = freq_pad[s]
            for h in range(nh):
                acc = np.float64(b1[h])
                for j in range(nin):
                    acc += w1[h, j] * z[j]
                for f0 in range(0, ns - 15, 16):  # 16 evaluations at a time, the rest 8
                    axpy16(pre, h * ns + f0, acc, np.float64(w1[h, nin]), fpad, f0)
                if ns % 16:
                    axpy8(pre, h * ns + ns - 8, acc, np.float64(w1[h, nin]), fpad, ns - 8)
            nsig = nh * ns
            for k0 in range(0, nsig - 15, 16):
                sigmoid16(pre, k0, hflat, k0)
            if nsig % 16:
                sigmoid8(pre, nsig - 8, hflat, nsig - 8)
            for q in range(2):
                for f0 in range(0, ns - 15, 16):
                    gemv16(opre, q * ns + f0, b2[q], w2[q], hflat, f0, ns, nh)
                if ns % 16:
                    gemv8(opre, q * ns + ns - 8, b2[q], w2[q], hflat, ns - 8, ns, nh)
            for k0 in range(0, 2 * ns, 16):  # 2 ns: a multiple of 16
                sigmoid16(opre, k0, oflat, k0)
            for f in range(2 * ns):
                dok[f] = 0.0
            cos2 = floats[i, ip[20]] if ip[20] >= 0 else 1.0
            for ch in range(ncs):
                pc = pol[s, ch]
                kf = chan_freq[s, ch]
                if pc < 2:  # V or H
                    emis[ch] = oflat[pc * ns + kf]
                else:  # QV / QH of a cross-track sounder: e_H + w_V (e_V - e_H), w_V = cos^2 a or sin^2 a
                    wv = cos2 if pc == 2 else 1.0 - cos2
                    e_v = np.float64(oflat[kf])
                    e_h = np.float64(oflat[ns + kf])
                    emis[ch] = e_h + wv * (e_v - e_h)
        else:
            for ch in range(ncs):
                emis[ch] = _linear_emis(w1, b1, z, nin, own[ch])
        ak = anchor_k[s, 0]  # the anchor channel's column (-1: the sensor lacks it; its emissivity on its own)
        e_anchor = 0.0
        if anchor_ch >= 0:
            e_anchor = emis[ak] if ak >= 0 else _anchor_emis(version, anchor_ch, w1, b1, z, nin, oflat, ns, anchor_k[s])
        # ---- TB, observation term and its gradient
        # (the observation's columns and its sensor's biases as 1-D views indexed by the channel alone:
        # no per-channel offset or negative-index arithmetic)
        row = floats[i]
        r_tau, r_down, r_k = row[c_tau : c_tau + ncs], row[c_down : c_down + ncs], row[c_k : c_k + ncs]
        r_ew = row[c_ew : c_ew + ncs]
        bi_s, bo_s = bi[s], bo[s]
        dc = 0.0
        obs = 0.0
        wc_s = wc[s]
        if forward_only:
            for ch in range(ncs):
                cb = own[ch]
                tau = r_tau[ch]
                down = r_down[ch]
                kk = r_k[ch]
                a_i = ts * tau - down
                a_o = to_k * tau - down
                e_o = r_ew[ch] + wc_s[ch] * u
                tb_i = kk + bi_s[ch] + emis[ch] * a_i
                tb_o = kk + bo_s[ch] + e_o * a_o
                out_tb[b, cb] = tb_o + c * (tb_i - tb_o)
                out_emis[b, cb] = emis[ch]
                if zero_sic == 2:  # TB' at c = 0 is TB_o (what the pass with SIC 0 gives, bit for bit)
                    out_tb[b, nc + cb] = tb_o
            for j in range(absent.shape[1]):  # the channels the sensor lacks: not simulated
                cb = absent[s, j]
                if cb < 0:
                    break
                out_tb[b, cb] = np.nan
                out_emis[b, cb] = np.nan
                if zero_sic == 2:
                    out_tb[b, nc + cb] = np.nan
        else:
            r_tb = row[c_tb : c_tb + ncs]
            p_s = p[s]
            for ch in range(ncs):
                m = 1.0 if (ints[i, c_mask + (ch >> 5)] >> (ch & 31)) & 1 else 0.0  # the mask's bit
                pm[ch] = m * p_s[ch]  # mask 2 / (sigma^2 B)
            g_bi_s, g_bo_s, g_wc_s = g_bi[s], g_bo[s], g_wc[s]
            # eight channels at a time as one vector (compiled.channels8), the rest one by one
            acc8[:] = 0.0
            ch0 = 0
            while ch0 + 8 <= ncs:
                channels8(row, cols, ch0, bi_s, bo_s, wc_s, emis, pm, de, g_wc_s, g_bi_s, g_bo_s, acc8, ts, to_k, u, c)
                ch0 += 8
            for ch in range(ch0, ncs):
                tau = r_tau[ch]
                down = r_down[ch]
                kk = r_k[ch]
                a_i = ts * tau - down
                a_o = to_k * tau - down
                e_o = r_ew[ch] + wc_s[ch] * u
                tb_i = kk + bi_s[ch] + emis[ch] * a_i
                tb_o = kk + bo_s[ch] + e_o * a_o
                tb = tb_o + c * (tb_i - tb_o)
                d = tb - r_tb[ch]
                g = d * pm[ch]  # 2 (TB' - y) mask / (sigma^2 B)
                obs += d * g
                dc += g * (tb_i - tb_o)
                de[ch] = g * c * a_i
                g_wc_s[ch] += g * (1.0 - c) * a_o * u
                g_bi_s[ch] += g * c
                g_bo_s[ch] += g * (1.0 - c)
            obs += sum8(acc8, 0)
            dc += sum8(acc8, 8)
        if forward_only:
            out_sic[b] = c
            if version == 2 and anchor_ch < 0 and floor_on:
                out_anchor[b] = oflat[nf]
            elif anchor_ch >= 0:
                out_anchor[b] = e_anchor
            continue
        terms[_T_OBS] += 0.5 * obs
        # ---- sampled map priors on the SIC rows seen (per row weight 1 / count(r))
        for lag in range(nlag + 1):
            cl = lags[lag]
            row = refs[b, lag]
            w = _inverse(count[row])  # 1 / count(r), 0 where the count is inf ("full": no batch estimate)
            dcl = dc * lag_w[lag]
            r = cl - min(max(cl, 0.0), 1.0)
            terms[_T_RANGE] += w * r * r * s_range
            dcl += 2.0 * w * r * s_range
            if bg_on:
                r = cl - np.float64(bg[row])
                terms[_T_BG] += w * r * r * s_bg
                dcl += 2.0 * w * r * s_bg
            if false_on:
                r, sl = _false_ice(cl, false_shape, fi_s, fi_lo, fi_hi, fi_h)
                terms[_T_FALSE] += w * r * r * s_false
                dcl += 2.0 * w * r * sl * s_false
            ww = warm_weight(t_map[row], fp[15], fp[16])
            if warm_eff:
                terms[_T_WARM] += w * max(cl, 0.0) * ww * warm_scale
                if cl >= 0.0:
                    dcl += ww * w * warm_scale
            elif cl > 0.01:
                terms[_T_WARM] += w * ww * warm_scale
            g_state[b, lag] = dcl
        # ---- anchor floor (v2), summed over the batch / nobs
        d_own = 0.0  # the anchor's gradient where the sensor lacks the anchor channel (applied below)
        if floor_on:
            e_a = np.float64(oflat[nf]) if anchor_ch < 0 else e_anchor
            r = max(anchor_v - e_a, 0.0)
            terms[_T_ANCHOR] += r * r * anchor_g
            d_a = -2.0 * r * anchor_g
            if anchor_ch < 0:
                dok[nf] += d_a
            elif ak >= 0:
                de[ak] += d_a
            else:
                d_own = d_a
        # ---- the ice-emissivity ceiling, (1/B) sum_c m_c max(e_c - 1, 0)^2 / sigma_e^2 over the observed channels
        if ceil_on:
            for ch in range(ncs):
                r = emis[ch] - 1.0
                if r > 0.0 and (ints[i, c_mask + (ch >> 5)] >> (ch & 31)) & 1:
                    terms[_T_CEIL] += r * r * s_ceil
                    de[ch] += 2.0 * r * s_ceil
        # ---- backward through the emissivity model
        for j in range(nin):
            dz[j] = 0.0
        if version == 2:
            if d_own != 0.0:  # the anchor channel that the sensor lacks: a V or H output (build_program)
                dok[anchor_k[s, 1] * ns + anchor_k[s, 2]] += d_own
            for ch in range(ncs):
                pc = pol[s, ch]
                kf = chan_freq[s, ch]
                if pc < 2:
                    dok[pc * ns + kf] += de[ch]
                else:
                    wv = cos2 if pc == 2 else 1.0 - cos2
                    dok[kf] += wv * de[ch]
                    dok[ns + kf] += (1.0 - wv) * de[ch]
            # the output units' pre-activation gradients (0 in the padding: dok is 0 there)
            s0 = 0.0
            s1 = 0.0
            for f in range(nfa):  # (dok is 0 from nfa on: so are these)
                o0 = np.float64(oflat[f])
                o1 = np.float64(oflat[ns + f])
                dl0 = dok[f] * o0 * (1.0 - o0)
                dl1 = dok[ns + f] * o1 * (1.0 - o1)
                dok[f] = dl0
                dok[ns + f] = dl1
                s0 += dl0
                s1 += dl1
            g_b2[0] += s0
            g_b2[1] += s1
            # the inputs z are the same at every frequency: the hidden units' pre-activation
            # gradients summed over the frequencies (dp), applied to W1[:, :nin], b1 and z once
            for h in range(nh):
                w20 = np.float64(w2[0, h])
                w21 = np.float64(w2[1, h])
                dp = 0.0
                for f0 in range(0, ns - 15, 16):
                    dp += sigmoid_grad16(
                        lanes, 3 * _V * h, hflat, h * ns + f0, dok, f0, dok, ns + f0, fpad, f0, w20, w21
                    )
                if ns % 16:
                    f0 = ns - 8
                    dp += sigmoid_grad8(
                        lanes, 3 * _V * h, hflat, h * ns + f0, dok, f0, dok, ns + f0, fpad, f0, w20, w21
                    )
                g_b1[h] += dp
                for j in range(nin):
                    g_w1[h, j] += dp * z[j]
                    dz[j] += w1[h, j] * dp
        else:
            for ch in range(ncs):
                _linear_emis_grad(w1, z, nin, own[ch], de[ch], g_w1, g_b1, dz)
            if d_own != 0.0:  # the anchor channel that the sensor lacks
                _linear_emis_grad(w1, z, nin, anchor_ch, d_own, g_w1, g_b1, dz)
        for j in range(ngp + nop):
            g_state[b, nlag + 1 + j] = dz[1 + j]
    if version == 2 and not forward_only:
        for h in range(nh):
            g_w2[0, h] += sum8(lanes, 3 * _V * h)
            g_w2[1, h] += sum8(lanes, 3 * _V * h + _V)
            g_w1[h, nin] += sum8(lanes, 3 * _V * h + 2 * _V)


def _step(
    floats, ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
    ip, fp, count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w,
    terms, g_w1, g_b1, g_w2, g_b2, g_wc, g_bi, g_bo, g_state, g_vals, out_tb, out_emis, out_sic, out_anchor,
    cmap, nch, anchor_k, absent, g_own,
):  # fmt: skip
    """One batch: terms and dense gradients per chunk (zeroed here), summed in chunk order into chunk 0
    (as numpy's ``sum(axis=0)``), state-row gradients added into ``g_vals``.

    ``p`` (nchan), ``wc`` (nchan), ``bi``, ``bo`` (nsensor, nchan) are gathered here into each sensor's
    channels (``cmap``, ``nch``: :func:`_chunk`), whose gradients the chunks add into ``g_own`` (nchunk,
    3, nsensor, width: ``wc``, ``bi``, ``bo``); summed in chunk order, they are put back in the basis'
    channels of ``g_wc[0]``, ``g_bi[0]``, ``g_bo[0]`` (``wc``'s summed over the sensors in order).
    ``chan_freq``, ``pol``: each sensor's channels' (nsensor, width)."""
    nb = index.shape[0]
    nchunk = terms.shape[0]
    p_own, wc_own, bi_own, bo_own = _own_parameters(p, wc, bi, bo, cmap, nch)
    for k in prange(nchunk):
        c0 = (nb * k) // nchunk
        c1 = (nb * (k + 1)) // nchunk
        if not ip[18]:
            terms[k][:] = 0.0
            g_w1[k][:] = 0.0
            g_b1[k][:] = 0.0
            g_w2[k][:] = 0.0
            g_b2[k][:] = 0.0
            g_own[k][:] = 0.0
        _chunk(
            c0, c1, floats, ints, index, vals, inv, refs, p_own, w1, b1, w2, b2, wc_own, bi_own, bo_own,
            ip, fp, count, bg, t_map, freq_pad, nfreq, chan_freq, pol, lag_w,
            terms[k], g_w1[k], g_b1[k], g_w2[k], g_b2[k], g_own[k, 0], g_own[k, 1], g_own[k, 2], g_state,
            out_tb, out_emis, out_sic, out_anchor, cmap, nch, anchor_k, absent,
        )  # fmt: skip
    if ip[18]:
        return
    _sum_chunks(terms)  # the chunks' sums, in chunk order
    _sum_chunks(g_w1.reshape(nchunk, -1))
    _sum_chunks(g_b1)
    _sum_chunks(g_w2.reshape(nchunk, -1))
    _sum_chunks(g_b2)
    _sum_chunks(g_own.reshape(nchunk, -1))
    _to_basis(g_own[0], cmap, nch, g_wc[0], g_bi[0], g_bo[0])
    # state-row gradients into the caught-up rows, in observation order (deterministic)
    nlag = ip[2]
    ngp = ip[3]
    nop = ip[4]
    for b in range(nb):
        for lag in range(nlag + 1):
            g_vals[inv[b, lag], 0] += g_state[b, lag]
        k = nlag + 1
        for j in range(ngp):
            g_vals[inv[b, k], j] += g_state[b, nlag + 1 + j]
        if ngp > 0:
            k += 1
        for j in range(nop):
            g_vals[inv[b, k], j] += g_state[b, nlag + 1 + ngp + j]


def _own_parameters(p, wc, bi, bo, cmap, nch):
    """``p``, ``wc`` (nchan) and ``bi``, ``bo`` (nsensor, nchan) by each sensor's own channels (nsensor,
    width: column ``k`` of sensor ``s`` is basis channel ``cmap[s, k]``, ``k < nch[s]``; 0 after)."""
    ns, width = cmap.shape
    p_own = np.zeros((ns, width))
    wc_own = np.zeros((ns, width), dtype=np.float32)
    bi_own = np.zeros((ns, width), dtype=np.float32)
    bo_own = np.zeros((ns, width), dtype=np.float32)
    for s in range(ns):
        for k in range(nch[s]):
            c = cmap[s, k]
            p_own[s, k] = p[c]
            wc_own[s, k] = wc[c]
            bi_own[s, k] = bi[s, c]
            bo_own[s, k] = bo[s, c]
    return p_own, wc_own, bi_own, bo_own


def _to_basis(g_own, cmap, nch, g_wc, g_bi, g_bo):
    """The gradients of ``wc``, ``bi``, ``bo`` by each sensor's own channels (``g_own``: 3, nsensor, width)
    back in the basis' channels (``g_wc``: summed over the sensors in order; 0 where none has the channel)."""
    g_wc[:] = 0.0
    g_bi[:] = 0.0
    g_bo[:] = 0.0
    for s in range(cmap.shape[0]):
        for k in range(nch[s]):
            c = cmap[s, k]
            g_wc[c] += g_own[0, s, k]
            g_bi[s, c] = g_own[1, s, k]
            g_bo[s, c] = g_own[2, s, k]


def _bias_prior(bi, bo, bg_i, bg_o, inv_var, nobs, g_bi, g_bo, out_i, out_o):
    """The bias prior ``sum (b - b_bg)^2 / sigma^2 / nobs`` over both bias tables (returned) and its
    gradient ``2 (b - b_bg) / sigma^2 / nobs`` added to the batch's (``g_bi``, ``g_bo``) into ``out_i``,
    ``out_o``; the same float32/float64 steps and summation order as numpy's
    ``((b - b_bg) ** 2 * inv_var).sum()`` (pairwise: eight running sums below 128 values)."""
    total = 0.0
    for b, bg, g, out in ((bi, bg_i, g_bi, out_i), (bo, bg_o, g_bo, out_o)):
        ns, nc = b.shape
        n = ns * nc
        sq = np.empty(n)
        for s in range(ns):
            for c in range(nc):
                r = b[s, c] - bg[s, c]  # float32, as numpy's float32 arrays
                sq[s * nc + c] = (r * r) * inv_var[s, 0]
                out[s, c] = g[s, c] + r * inv_var[s, 0] * (2.0 / nobs)
        total += _numpy_sum(sq)
    return total / nobs


def _numpy_sum(x):
    """``x.sum()`` of a contiguous float64 array as numpy adds it (pairwise summation, blocks of 128)."""
    n = x.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += x[i]
        return res
    if n <= 128:
        r = np.empty(8)
        for k in range(8):
            r[k] = x[k]
        i = 8
        while i < n - (n % 8):
            for k in range(8):
                r[k] += x[i + k]
            i += 8
        res = (r[0] + r[1]) + (r[2] + r[3]) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += x[i]
            i += 1
        return res
    n2 = (n // 2) - ((n // 2) % 8)
    return _numpy_sum(x[:n2]) + _numpy_sum(x[n2:])


def _sum_chunks(a):
    """``a[0] = a[0] + a[1] + ... + a[n - 1]`` (rows added in order, as numpy's ``a.sum(axis=0)``)."""
    for k in range(1, a.shape[0]):
        for j in range(a.shape[1]):
            a[0, j] += a[k, j]


if HAVE_NUMBA:
    _sum_chunks = njit(cache=True)(_sum_chunks)
    _numpy_sum = njit(cache=True)(_numpy_sum)
    _bias_prior = njit(cache=True)(_bias_prior)
    _own_parameters = njit(cache=True)(_own_parameters)
    _to_basis = njit(cache=True)(_to_basis)
    _false_ice = njit(cache=True)(_false_ice)
    _linear_emis = njit(cache=True, inline="always")(_linear_emis)
    _linear_emis_grad = njit(cache=True, inline="always")(_linear_emis_grad)
    _anchor_emis = njit(cache=True, inline="always")(_anchor_emis)
    _inverse = njit(cache=True)(_inverse)
    warm_weight = njit(cache=True)(warm_weight)
    _refs = njit(cache=True, parallel=True)(_refs)
    _chunk = njit(cache=True, fastmath=set(FASTMATH))(_chunk)  # not reassoc: FASTMATH
    _step = njit(cache=True, parallel=True, nogil=True)(_step)  # the GIL released: other threads compress meanwhile


__all__ = ["HAVE_NUMBA", "NCHUNK"]
