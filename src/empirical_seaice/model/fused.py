"""The observation operator and the sampled cost with their gradient, compiled (numba).

One more implementation of :meth:`HybridNetwork.forward` +
:meth:`HybridNetwork.cost_terms` (sampled whole-map priors) and their backward
pass, written per observation so that a training step is a few compiled calls
instead of ~900 small tensor operations. The equations are those of
:mod:`empirical_seaice.model.physics` (factored form ``TB' = c TB_i + (1 - c) TB_o``,
``TB_i = e_ice A_i + K + b_ice``, ``TB_o = e_o A_o + K + b_ocean``,
``A_i = T_s tau* - D*``, ``A_o = max(T_s, floor) tau* - D*``,
``e_o = e_w + w_c u``), of :mod:`empirical_seaice.model.emissivity` (v1 linear,
v2 network with frequency input) and of :mod:`empirical_seaice.cost.terms`
(quadratic penalties ``r^2 / sigma^2`` with derivative ``2 r dr/dx / sigma^2``);
``tests/model/test_fused.py`` checks every term and every gradient against the
tensor implementation, and ``tests/training/test_fused_step.py`` the parameters
after 100 training steps.

Arithmetic is float64 per observation (storage float32). The batch is split into
:data:`NCHUNK` fixed chunks, evaluated in parallel (``numba.prange``) with one
gradient buffer per chunk, summed in chunk order; per-observation gradients of
the state rows are summed into the rows in observation order afterwards. The
result is therefore the same bit for bit whatever the number of threads.

:func:`build_program` returns None (with the reason) for what it does not cover:
"full" prior mode, non-float32 or non-CPU tensors, or numba missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # optional at import time: without numba the trainer keeps the unfused step
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None  # type: ignore[assignment]
    HAVE_NUMBA = False

NCHUNK = 16
"""Fixed number of chunks a batch is split into (independent of the thread count)."""

# term order of HybridNetwork.cost_terms in sampled mode (switched-off priors left out)
_T_OBS, _T_RANGE, _T_BG, _T_FALSE, _T_WARM, _T_ANCHOR = range(6)
_MAXH = 64  # largest hidden layer / number of inputs the kernel's stack buffers hold
_MAXF = 64  # largest number of distinct frequencies per sensor
_MAXC = 128  # largest number of channels


def _sigmoid_block(pre, n, bits, out):
    """``out[k] = 1 / (1 + exp(-pre[k]))``, k < n, float32, in a loop the compiler vectorises.

    ``exp`` is Cephes' ``expf`` (range reduction ``x = k ln 2 + r``, |r| <= ln 2 / 2, a degree-7
    polynomial for ``exp(r)``, ``2^k`` built in the exponent bits of ``bits``, an int32 array viewed as
    float32): within 2 float32 ulps of ``exp`` on [-87, 88], and SIMD-able where a library ``exp`` is not
    (a scalar ``exp`` per hidden unit was most of the step's time).
    """
    scale = bits.view(np.float32)
    for k in range(n):
        x = -pre[k]
        x = min(max(x, np.float32(-87.0)), np.float32(88.0))
        fx = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
        r = x - fx * np.float32(0.693359375) + fx * np.float32(2.12194440e-4)
        y = np.float32(1.9875691500e-4)
        y = y * r + np.float32(1.3981999507e-3)
        y = y * r + np.float32(8.3334519073e-3)
        y = y * r + np.float32(4.1665795894e-2)
        y = y * r + np.float32(1.6666665459e-1)
        y = y * r + np.float32(5.0000001201e-1)
        y = y * r * r + r + np.float32(1.0)
        bits[k] = (np.int32(fx) + np.int32(127)) << np.int32(23)
        out[k] = np.float32(1.0) / (np.float32(1.0) + y * scale[k])


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
    (l = 0..nlag), grid row ``g nstep + t``, observation row ``iobs``."""
    for b in range(index.shape[0]):
        i = index[b]
        g = ints[i, 1]
        t = ints[i, 2]
        for lag in range(nlag + 1):
            refs[b, lag] = g * ncolmap + t + nlag - lag
        k = nlag + 1
        if has_grid:
            refs[b, k] = g * nstep + t
            k += 1
        if has_obs:
            refs[b, k] = ints[i, 0]


def _chunk(  # noqa: C901 - one compiled kernel per observation, branches on the configuration
    c0, c1, floats, ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
    ip, fp, inv_count, bg, warm_w, freq_in, nfreq, chan_freq, pol, lag_w,
    terms, g_w1, g_b1, g_w2, g_b2, g_wc, g_bi, g_bo, g_state, out_tb, out_emis, out_sic, out_anchor,
):  # fmt: skip
    """Forward, cost and backward of observations ``c0 .. c1 - 1`` of the batch (see :func:`_step`);
    with ``ip[18]`` (forward only) the simulation into ``out_*`` instead (``ip[19]``: SIC 0);
    ``ip[20]``: the column of ``cos^2`` of the scan angle (quasi-polarised channels), -1 = none."""
    version, nc, nlag, ngp, nop, nh = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    anchor_ch, floor_on, false_shape = ip[6], ip[7], ip[8]
    bg_on, warm_eff, false_on = ip[9], ip[10], ip[11]
    forward_only, zero_sic = ip[18], ip[19]
    t_ref, t_scale, t_floor, anchor_f, anchor_v = fp[0], fp[1], fp[2], fp[4], fp[5]
    s_range, s_bg, s_false, warm_scale, anchor_g = fp[6], fp[7], fp[8], fp[9], fp[10]
    fi_s, fi_lo, fi_hi, fi_h = fp[11], fp[12], fp[13], fp[14]
    nin = 1 + ngp + nop  # network inputs without the frequency
    z = np.empty(_MAXH)
    dz = np.empty(_MAXH)
    base = np.empty(_MAXH)
    hk = np.empty((_MAXF + 1, _MAXH))
    ok = np.empty((_MAXF + 1, 2))
    dok = np.empty((_MAXF + 1, 2))
    emis = np.empty(_MAXC)
    de = np.empty(_MAXC)
    dsum = np.empty(_MAXH)
    dfin = np.empty(_MAXH)
    lags = np.empty(8)
    pre = np.empty((_MAXF + 1) * _MAXH, dtype=np.float32)
    hflat = np.empty((_MAXF + 1) * _MAXH, dtype=np.float32)
    oflat = np.empty((_MAXF + 1) * 2, dtype=np.float32)
    bits = np.empty((_MAXF + 1) * _MAXH, dtype=np.int32)
    for b in range(c0, c1):
        i = index[b]
        s = ints[i, 3]
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
        c = 0.0
        for lag in range(nlag + 1):
            lags[lag] = vals[inv[b, lag], 0]
            c += lag_w[lag] * lags[lag]
        if zero_sic:
            c = 0.0
        # ---- ice emissivity per channel
        nf = nfreq[s]
        if version == 2:
            for h in range(nh):
                acc = b1[h]
                for j in range(nin):
                    acc += w1[h, j] * z[j]
                base[h] = acc
            nfa = nf + 1 if (anchor_ch < 0 and floor_on) else nf  # + the anchor frequency
            for f in range(nfa):
                fin = anchor_f if f == nf else freq_in[s, f]
                for h in range(nh):
                    pre[f * nh + h] = base[h] + w1[h, nin] * fin
            _sigmoid_block(pre, nfa * nh, bits, hflat)
            for f in range(nfa):
                for q in range(2):
                    acc = b2[q]
                    for h in range(nh):
                        acc += w2[q, h] * hflat[f * nh + h]
                    pre[f * 2 + q] = acc
                    dok[f, q] = 0.0
            _sigmoid_block(pre, nfa * 2, bits, oflat)
            for f in range(nfa):
                for q in range(2):
                    ok[f, q] = oflat[f * 2 + q]
                for h in range(nh):
                    hk[f, h] = hflat[f * nh + h]
            cos2 = floats[i, ip[20]] if ip[20] >= 0 else 1.0
            for ch in range(nc):
                pc = pol[ch]
                kf = chan_freq[s, ch]
                if pc < 2:  # V or H
                    emis[ch] = ok[kf, pc]
                else:  # QV / QH of a cross-track sounder: e_H + w_V (e_V - e_H), w_V = cos^2 a or sin^2 a
                    wv = cos2 if pc == 2 else 1.0 - cos2
                    emis[ch] = ok[kf, 1] + wv * (ok[kf, 0] - ok[kf, 1])
        else:
            for ch in range(nc):
                acc = b1[ch]
                for j in range(nin):
                    acc += w1[ch, j] * z[j]
                emis[ch] = acc
        # ---- TB, observation term and its gradient
        dc = 0.0
        obs = 0.0
        for ch in range(nc):
            tau = floats[i, ip[14] + ch]
            down = floats[i, ip[15] + ch]
            kk = floats[i, ip[16] + ch]
            a_i = ts * tau - down
            a_o = to_k * tau - down
            e_o = floats[i, ip[13] + ch] + wc[ch] * u
            tb_i = kk + bi[s, ch] + emis[ch] * a_i
            tb_o = kk + bo[s, ch] + e_o * a_o
            tb = tb_o + c * (tb_i - tb_o)
            if forward_only:
                out_tb[b, ch] = tb
                out_emis[b, ch] = emis[ch]
                continue
            d = tb - floats[i, ip[12] + ch]
            g = d * floats[i, ip[17] + ch] * p[ch]  # 2 (TB' - y) mask / (sigma^2 B)
            obs += d * g
            dc += g * (tb_i - tb_o)
            de[ch] = g * c * a_i
            g_wc[ch] += g * (1.0 - c) * a_o * u
            g_bi[s, ch] += g * c
            g_bo[s, ch] += g * (1.0 - c)
        if forward_only:
            out_sic[b] = c
            if version == 2 and anchor_ch < 0 and floor_on:
                out_anchor[b] = ok[nf, 0]
            elif anchor_ch >= 0:
                out_anchor[b] = emis[anchor_ch]
            continue
        terms[_T_OBS] += 0.5 * obs
        # ---- sampled map priors on the SIC rows seen (per row weight 1 / count(r))
        for lag in range(nlag + 1):
            cl = lags[lag]
            row = refs[b, lag]
            w = inv_count[row]
            dcl = dc * lag_w[lag]
            r = cl - min(max(cl, 0.0), 1.0)
            terms[_T_RANGE] += w * r * r * s_range
            dcl += 2.0 * w * r * s_range
            if bg_on:
                r = cl - bg[row]
                terms[_T_BG] += w * r * r * s_bg
                dcl += 2.0 * w * r * s_bg
            if false_on:
                r, sl = _false_ice(cl, false_shape, fi_s, fi_lo, fi_hi, fi_h)
                terms[_T_FALSE] += w * r * r * s_false
                dcl += 2.0 * w * r * sl * s_false
            ww = warm_w[row]
            if warm_eff:
                terms[_T_WARM] += w * max(cl, 0.0) * ww * warm_scale
                if cl >= 0.0:
                    dcl += ww * w * warm_scale
            elif cl > 0.01:
                terms[_T_WARM] += w * ww * warm_scale
            g_state[b, lag] = dcl
        # ---- anchor floor (v2), summed over the batch / nobs
        if floor_on:
            e_a = ok[nf, 0] if anchor_ch < 0 else emis[anchor_ch]
            r = max(anchor_v - e_a, 0.0)
            terms[_T_ANCHOR] += r * r * anchor_g
            d_a = -2.0 * r * anchor_g
            if anchor_ch >= 0:
                de[anchor_ch] += d_a
            else:
                dok[nf, 0] += d_a
        # ---- backward through the emissivity model
        for j in range(nin):
            dz[j] = 0.0
        if version == 2:
            for ch in range(nc):
                pc = pol[ch]
                kf = chan_freq[s, ch]
                if pc < 2:
                    dok[kf, pc] += de[ch]
                else:
                    wv = cos2 if pc == 2 else 1.0 - cos2
                    dok[kf, 0] += wv * de[ch]
                    dok[kf, 1] += (1.0 - wv) * de[ch]
            nfa = nf + 1 if (anchor_ch < 0 and floor_on) else nf
            # the inputs z are the same at every frequency: sum the hidden units' pre-activation
            # gradients over the frequencies first (dsum), apply them to W1[:, :nin], b1 and z once
            for h in range(nh):
                dsum[h] = 0.0
                dfin[h] = 0.0
            for f in range(nfa):
                fin = anchor_f if f == nf else freq_in[s, f]
                o0 = ok[f, 0]
                o1 = ok[f, 1]
                dl0 = dok[f, 0] * o0 * (1.0 - o0)
                dl1 = dok[f, 1] * o1 * (1.0 - o1)
                g_b2[0] += dl0
                g_b2[1] += dl1
                for h in range(nh):
                    hv = hk[f, h]
                    g_w2[0, h] += dl0 * hv
                    g_w2[1, h] += dl1 * hv
                    dp = (w2[0, h] * dl0 + w2[1, h] * dl1) * hv * (1.0 - hv)
                    dsum[h] += dp
                    dfin[h] += dp * fin
            for h in range(nh):
                dp = dsum[h]
                g_b1[h] += dp
                g_w1[h, nin] += dfin[h]
                for j in range(nin):
                    g_w1[h, j] += dp * z[j]
                    dz[j] += w1[h, j] * dp
        else:
            for ch in range(nc):
                g_b1[ch] += de[ch]
                for j in range(nin):
                    g_w1[ch, j] += de[ch] * z[j]
                    dz[j] += w1[ch, j] * de[ch]
        for j in range(ngp + nop):
            g_state[b, nlag + 1 + j] = dz[1 + j]


def _step(
    floats, ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
    ip, fp, inv_count, bg, warm_w, freq_in, nfreq, chan_freq, pol, lag_w,
    terms, g_w1, g_b1, g_w2, g_b2, g_wc, g_bi, g_bo, g_state, g_vals, out_tb, out_emis, out_sic, out_anchor,
):  # fmt: skip
    """One batch: terms (per chunk, summed in order), dense gradients, state-row gradients ``g_vals``."""
    nb = index.shape[0]
    nchunk = terms.shape[0]
    for k in prange(nchunk):
        c0 = (nb * k) // nchunk
        c1 = (nb * (k + 1)) // nchunk
        _chunk(
            c0, c1, floats, ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
            ip, fp, inv_count, bg, warm_w, freq_in, nfreq, chan_freq, pol, lag_w,
            terms[k], g_w1[k], g_b1[k], g_w2[k], g_b2[k], g_wc[k], g_bi[k], g_bo[k], g_state,
            out_tb, out_emis, out_sic, out_anchor,
        )  # fmt: skip
    if ip[18]:
        return
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


if HAVE_NUMBA:
    _sigmoid_block = njit(cache=True, fastmath=True)(_sigmoid_block)
    _false_ice = njit(cache=True)(_false_ice)
    _refs = njit(cache=True)(_refs)
    _chunk = njit(cache=True, fastmath=True)(_chunk)
    _step = njit(cache=True, parallel=True)(_step)


@dataclass
class FusedProgram:
    """What :func:`build_program` extracts from a :class:`HybridNetwork` for the compiled step.

    ``dense`` are the dense parameters (torch Parameters, CPU float32) in the order of
    :meth:`HybridNetwork.dense_parameters`; ``tables`` the state tables in the order of
    :meth:`HybridNetwork.state_rows`, ``ref_table`` the table of each column of the
    rows :meth:`rows` returns. :meth:`run` fills the dense gradients
    (:attr:`dense_grads`, numpy views aligned with ``dense``) and the state-row
    gradients and returns the cost terms (:attr:`names`).
    """

    network: Any
    names: tuple[str, ...]
    tables: list
    ref_table: np.ndarray
    dense: list
    floats: np.ndarray
    ints: np.ndarray
    ip: np.ndarray
    fp: np.ndarray
    arrays: dict
    nobs_total: int

    def rows(self, index: np.ndarray) -> np.ndarray:
        """(B, nref) table-local rows each observation reads (columns: ``ref_table``)."""
        ip = self.ip
        refs = np.empty((index.shape[0], self.ref_table.shape[0]), dtype=np.int64)
        a = self.arrays
        _refs(self.ints, index, a["ncolmap"], a["nstep"], int(ip[2]), bool(ip[3] > 0), bool(ip[4] > 0), refs)
        return refs

    def run(self, index: np.ndarray, refs: np.ndarray, vals: np.ndarray, inv: np.ndarray, g_vals: np.ndarray):
        """Cost terms (numpy float64, order :attr:`names`, without the total) of the batch ``index``;
        adds the state-row gradients into ``g_vals`` (aligned with the caught-up rows ``vals``)
        and sets :attr:`dense_grads`."""
        a = self.arrays
        nb = index.shape[0]
        net = self.network
        w = [p.detach().numpy() for p in self.dense]
        emis_w = w[: len(w) - 3]
        if len(emis_w) == 4:
            w1, b1, w2, b2 = emis_w
        else:
            w1, b1 = emis_w
            w2, b2 = a["dummy2"], a["dummy1"]
        wc, bi, bo = w[-3:]
        fp = self.fp
        fp[3] = 1.0 / nb
        fp[6] = 1.0 / (a["sig_range"] ** 2 * nb)
        fp[7] = 1.0 / (a["sig_bg"] ** 2 * nb)
        fp[8] = 1.0 / (a["sig_false"] ** 2 * nb)
        fp[9] = a["warm_base"] / (nb * self.nobs_total)
        p = (2.0 / (a["obs_err2"] * nb)).astype(np.float64)
        terms = np.zeros((NCHUNK, 6))
        gw1 = np.zeros((NCHUNK,) + w1.shape)
        gb1 = np.zeros((NCHUNK,) + b1.shape)
        gw2 = np.zeros((NCHUNK,) + w2.shape)
        gb2 = np.zeros((NCHUNK,) + b2.shape)
        gwc = np.zeros((NCHUNK,) + wc.shape)
        gbi = np.zeros((NCHUNK,) + bi.shape)
        gbo = np.zeros((NCHUNK,) + bo.shape)
        g_state = np.empty((nb, refs.shape[1] - (1 if a["has_obs"] and a["has_grid"] else 0) + a["nprop"]))
        _step(
            self.floats, self.ints, index, vals, inv, refs, p, w1, b1, w2, b2, wc, bi, bo,
            self.ip, fp, a["inv_count"], a["bg"], a["warm_w"], a["freq_in"], a["nfreq"], a["chan_freq"],
            a["pol"], a["lag_w"], terms, gw1, gb1, gw2, gb2, gwc, gbi, gbo, g_state, g_vals,
            a["no_tb"], a["no_tb"], a["no_sic"], a["no_sic"],
        )  # fmt: skip
        t = terms.sum(axis=0)
        # the bias prior (dense, tiny): sum (b - b_bg)^2 / sigma^2 / nobs, gradient 2 (b - b_bg) / sigma^2 / nobs
        ri = bi - a["bias_ice_bg"]
        ro = bo - a["bias_ocean_bg"]
        inv_var = a["bias_inv_var"]
        bias = (float((ri * ri * inv_var).sum()) + float((ro * ro * inv_var).sum())) / self.nobs_total
        gbi_sum = gbi.sum(axis=0) + ri * inv_var * (2.0 / self.nobs_total)
        gbo_sum = gbo.sum(axis=0) + ro * inv_var * (2.0 / self.nobs_total)
        g_emis = [gw1.sum(axis=0), gb1.sum(axis=0)] + ([gw2.sum(axis=0), gb2.sum(axis=0)] if len(emis_w) == 4 else [])
        values = {"obs": t[_T_OBS], "sic_range": t[_T_RANGE]}
        if self.ip[9]:
            values["sic_background"] = t[_T_BG]
        if self.ip[11]:
            values["false_ice"] = t[_T_FALSE]
        values["warm_ice"] = t[_T_WARM]
        if self.ip[7]:
            values["anchor"] = t[_T_ANCHOR]
        else:  # v1: ((e0[a] - value) / sigma)^2 / nobs on the linear model's bias
            cc = net.cost_config
            e0 = float(b1[net.anchor_channel])
            values["anchor"] = ((e0 - cc.anchor_value) / cc.anchor_error) ** 2 / self.nobs_total
            g_emis[1][net.anchor_channel] += 2.0 * (e0 - cc.anchor_value) / cc.anchor_error**2 / self.nobs_total
        values["bias"] = bias
        self.dense_grads = [*g_emis, gwc.sum(axis=0), gbi_sum, gbo_sum]
        return np.array([values[n] for n in self.names])


def _simulate_into(program, start: int, stop: int, zero_sic: bool, tb, emis, sic, anchor) -> None:
    """Forward pass of observations ``start .. stop - 1`` with the tables' current values, into
    ``tb``, ``emis``, ``sic``, ``anchor`` (``stop - start`` rows each)."""
    a = program.arrays
    index = np.arange(start, stop, dtype=np.int64)
    refs = program.rows(index)
    nb, nref = refs.shape
    tables = [t.detach().numpy() for t in program.tables]
    c = max(t.shape[1] for t in tables)
    vals = np.zeros((nb, nref, c), dtype=np.float32)
    for k in range(nref):
        t = tables[program.ref_table[k]]
        vals[:, k, : t.shape[1]] = t[refs[:, k]]
    inv = np.arange(nb * nref, dtype=np.int64).reshape(nb, nref)
    w = [p.detach().numpy() for p in program.dense]
    emis_w = w[: len(w) - 3]
    w1, b1 = emis_w[0], emis_w[1]
    w2, b2 = (emis_w[2], emis_w[3]) if len(emis_w) == 4 else (a["dummy2"], a["dummy1"])
    wc, bi, bo = w[-3:]
    ip = program.ip.copy()
    ip[18], ip[19] = 1, int(zero_sic)
    z1 = np.zeros((NCHUNK, 1))
    z3 = np.zeros((NCHUNK, 1, 1))
    _step(
        program.floats, program.ints, index, vals.reshape(nb * nref, c), inv, refs, np.zeros(w[-3].shape[0]),
        w1, b1, w2, b2, wc, bi, bo, ip, program.fp, a["inv_count"], a["bg"], a["warm_w"], a["freq_in"],
        a["nfreq"], a["chan_freq"], a["pol"], a["lag_w"], np.zeros((NCHUNK, 6)), z3, z1, z3, z1, z1, z3, z3,
        np.zeros((1, 1)), np.zeros((1, 1)), tb, emis, sic, anchor,
    )  # fmt: skip


def simulate_range(program: FusedProgram, start: int, stop: int, zero_sic: bool = False, chunk: int = 1 << 16):
    """``(tb, emis_ice, sic, emis_anchor)`` of observations ``start .. stop - 1`` (float32 numpy), as
    :func:`simulate` gives them: one block of a streamed pass over the observations."""
    nc, n = int(program.ip[1]), stop - start
    tb, emis = np.empty((n, nc), dtype=np.float32), np.empty((n, nc), dtype=np.float32)
    sic, anchor = np.empty(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        _simulate_into(program, a, b, zero_sic, *(x[a - start : b - start] for x in (tb, emis, sic, anchor)))
    return tb, emis, sic, anchor


def simulate(program: FusedProgram, nobs: int, zero_sic: bool = False, chunk: int = 1 << 16):
    """``(tb, emis_ice, sic, emis_anchor)`` of observations ``0 .. nobs - 1`` (float32 numpy), as
    :meth:`HybridNetwork.forward` gives them (``zero_sic``: SIC 0), chunk by chunk in parallel."""
    nc = int(program.ip[1])
    tb = np.empty((nobs, nc), dtype=np.float32)
    emis = np.empty((nobs, nc), dtype=np.float32)
    sic = np.empty(nobs, dtype=np.float32)
    anchor = np.zeros(nobs, dtype=np.float32)
    for start in range(0, nobs, chunk):
        sl = slice(start, min(start + chunk, nobs))
        _simulate_into(program, sl.start, sl.stop, zero_sic, tb[sl], emis[sl], sic[sl], anchor[sl])
    return tb, emis, sic, anchor


def build_program(  # noqa: C901 - one check or constant per configuration option
    network, data, nobs_total: int, training: bool = True
) -> tuple[FusedProgram | None, str]:
    """The compiled step's view of ``network`` (a :class:`HybridNetwork`) and ``data``
    (:class:`ObservationTensors`), or ``(None, reason)`` where it does not apply
    (``training=False``: for :func:`simulate` only, any prior mode)."""
    import torch

    from empirical_seaice.model.emissivity import LinearEmissivity, NetworkEmissivity

    if not HAVE_NUMBA:
        return None, "numba is not installed"
    if training and getattr(network, "prior_mode", None) != "sampled":
        return None, "the fused step needs the sampled whole-map priors"
    floats = getattr(data, "floats", None)
    if floats is None or floats.device.type != "cpu" or floats.dtype != torch.float32:
        return None, "the fused step runs on CPU float32 observation tensors"
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in network.parameters()):
        return None, "the fused step runs on CPU float32 parameters"
    em = network.emissivity
    mc, cc = network.model_config, network.cost_config
    st = network.state
    nc = network.basis.nchan
    if isinstance(em, NetworkEmissivity):
        if getattr(em, "angle_input", False):
            return None, "no fused step yet for the network's view-angle input"
        version, nh = 2, em.nhidden
        if nh > _MAXH or em.nfreq >= _MAXF:
            return None, "network too wide for the fused step"
    elif isinstance(em, LinearEmissivity):
        version, nh = 1, 0
    else:
        return None, f"no fused step for {type(em).__name__}"
    if nc > _MAXC or st.nlag >= 8 or 1 + st.nprop_grid + st.nprop_obs + 1 > _MAXH:
        return None, "state or channel count too large for the fused step"
    sl = data._slices
    floor_on = cc.anchor != "mean"
    anchor_ch = -1 if network.anchor_channel is None else int(network.anchor_channel)
    ip = np.array(
        [
            version, nc, st.nlag, st.nprop_grid, st.nprop_obs, nh, anchor_ch, int(floor_on),
            0 if cc.false_ice_shape == "tent" else 1, int(cc.sic_background_prior), int(cc.warm_ice == "effective"),
            int(cc.false_ice_prior), sl["tb_obs_k"][0], sl["emis_water"][0], sl["tau_eff"][0], sl["down_eff_k"][0],
            sl["const_k"][0], sl["mask"][0], 0, 0, sl["cos2_scan"][0] if "cos2_scan" in sl else -1,
        ],
        dtype=np.int64,
    )  # fmt: skip
    lo, hi, h = _smooth_pieces(cc.false_ice_peak_scaling)
    fp = np.zeros(15)
    fp[0], fp[1] = mc.t_ref_k, mc.t_scale_k
    fp[2] = -1.0 if mc.ocean_t_floor_k is None else mc.ocean_t_floor_k
    if version == 2 and anchor_ch < 0:
        # the anchor's frequency input exactly as the tensor path rounds it (float32 f, then / scale)
        fp[4] = float(np.float32(cc.anchor_frequency_ghz) / np.float32(em.freq_scale_ghz))
    fp[5] = cc.anchor_value
    fp[10] = 1.0 / (cc.anchor_error**2 * nobs_total)
    fp[11], fp[12], fp[13], fp[14] = cc.false_ice_peak_scaling, lo, hi, h
    names = ["obs", "sic_range"]
    if cc.sic_background_prior:
        names.append("sic_background")
    if cc.false_ice_prior:
        names.append("false_ice")
    names += ["warm_ice", "anchor", "bias"]
    tables = [st.sic_map.weight]
    ref_table = [0] * (st.nlag + 1)
    if st.props_grid is not None:
        tables.append(st.props_grid.weight)
        ref_table.append(len(tables) - 1)
    if st.props_obs is not None:
        tables.append(st.props_obs.weight)
        ref_table.append(len(tables) - 1)
    cnt = (
        np.full(st.ngrid * st.ncol, np.inf)
        if network.sic_count is None
        else network.sic_count.numpy().astype(np.float64)
    )
    warm = (np.maximum(network.t_map_flat.numpy().astype(np.float64) - cc.warm_ice_threshold_k, 0.0)) * (
        cc.warm_ice_factor
    )
    if version == 2:
        freq_in = np.ascontiguousarray(em.freq_input_t.numpy().T.astype(np.float64))  # (nsensor, nf)
        chan_freq = em.chan_freq.numpy().astype(np.int64)
        pol = em.pol.numpy().astype(np.int64)
        nfreq = np.array([len(np.unique(em.freq_table.numpy()[s])) for s in range(freq_in.shape[0])], dtype=np.int64)
    else:
        freq_in = np.zeros((1, 1))
        chan_freq = np.zeros((1, 1), dtype=np.int64)
        pol = np.zeros(1, dtype=np.int64)
        nfreq = np.zeros(network.basis.nsensor, dtype=np.int64)
    arrays = dict(
        ncolmap=st.ncol,
        nstep=st.nstep,
        nprop=st.nprop_grid + st.nprop_obs,
        has_grid=st.props_grid is not None,
        has_obs=st.props_obs is not None,
        inv_count=1.0 / cnt,
        bg=st.background_flat.numpy().astype(np.float64),
        warm_w=warm,
        freq_in=freq_in,
        nfreq=nfreq,
        chan_freq=chan_freq,
        pol=pol,
        lag_w=st.lag_weights.numpy().astype(np.float64),
        obs_err2=network.obs_error_k.numpy().astype(np.float64) ** 2,
        sig_range=cc.sic_error,
        sig_bg=cc.sic_background_error,
        sig_false=cc.false_ice_error,
        warm_base=network.counts_nobs / network.n_warm_rows,
        bias_ice_bg=network.bias_ice_bg_k.numpy(),
        bias_ocean_bg=network.bias_ocean_bg_k.numpy(),
        bias_inv_var=(1.0 / network.bias_error_k.numpy().astype(np.float64) ** 2),
        no_tb=np.zeros((1, 1), dtype=np.float32),
        no_sic=np.zeros(1, dtype=np.float32),
        dummy2=np.zeros((2, 1), dtype=np.float32),
        dummy1=np.zeros(2, dtype=np.float32),
    )
    program = FusedProgram(
        network=network,
        names=tuple(names),
        tables=tables,
        ref_table=np.asarray(ref_table, dtype=np.int64),
        dense=list(network.dense_parameters()),
        floats=data.floats.numpy(),
        ints=data.ints.numpy(),
        ip=ip,
        fp=fp,
        arrays=arrays,
        nobs_total=int(nobs_total),
    )
    return program, ""


def _smooth_pieces(peak_scaling: float) -> tuple[float, float, float]:
    from empirical_seaice.cost.terms import false_ice_smooth_pieces

    return false_ice_smooth_pieces(peak_scaling)


__all__ = ["FusedProgram", "build_program", "simulate", "HAVE_NUMBA", "NCHUNK"]
