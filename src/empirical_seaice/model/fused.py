"""The fused step's program: a :class:`~empirical_seaice.model.operator.HybridNetwork` and its
observations as the compiled kernels read them (numba).

:func:`build_program` extracts from the network and its observation tensors what the
per-observation kernels of :mod:`empirical_seaice.model.fused_kernels` need (weights as numpy
views, switches, constants, per-row arrays); :class:`FusedProgram` runs one batch's forward
pass, cost and gradient (:meth:`FusedProgram.run`) and, in "full" prior mode, the exact
whole-map priors (:meth:`FusedProgram.map_priors`, :mod:`empirical_seaice.model.fused_map`);
:func:`simulate` is the forward pass alone over all observations (the diagnostics).
``tests/training/test_fused_step.py`` checks the parameters after 100 training steps and the
simulation against the tensor implementation, ``tests/training/test_fused_full.py`` the full
prior mode.

In "full" prior mode (the exact whole-map priors at every step) the program computes the
batch's terms without the map priors; the step adds them over the whole map. :func:`build_program`
returns None (with the reason) for what it does not cover: non-float32 or non-CPU tensors, or numba
missing. The v2 network's view-angle input (``angle_input``) is the observation's ``cos_view`` column,
the network input before the frequency at every evaluation, the anchor frequency's included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from empirical_seaice.cost.neighbours import pairs_csr
from empirical_seaice.cost.objective import CEILING
from empirical_seaice.model.fused_kernels import (
    _MAXC,
    _MAXF,
    _MAXH,
    _MAXS,
    _T_ANCHOR,
    _T_BG,
    _T_CEIL,
    _T_FALSE,
    _T_OBS,
    _T_RANGE,
    _T_WARM,
    HAVE_NUMBA,
    NCHUNK,
    NTERMS,
    _bias_prior,
    _refs,
    _step,
)
from empirical_seaice.model.tensors import MASK_COLUMN


@dataclass
class FusedProgram:
    """What :func:`build_program` extracts from a :class:`HybridNetwork` for the compiled step.

    ``dense`` are the dense parameters (torch Parameters, CPU float32) in the order of
    :meth:`HybridNetwork.dense_parameters`; ``tables`` the state tables in the order of
    :meth:`HybridNetwork.state_rows`, ``ref_table`` the table of each column of the
    rows :meth:`rows` returns. :meth:`run` fills the dense gradients
    (:attr:`dense_grads`, numpy views aligned with ``dense``) and the state-row
    gradients and returns the cost terms (:attr:`names`); in "full" mode (:attr:`full`)
    without the whole-map priors, which the step adds over the whole map.
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
    _cache: dict = field(default_factory=dict, repr=False)
    """Buffers reused from step to step (:meth:`run`: grown to the largest batch), and the weights' numpy views."""
    full: bool = False
    """The exact whole-map priors ("full" mode): :meth:`run` leaves the map priors out (their
    batch estimate is off) and the step adds them over every map row
    (:mod:`empirical_seaice.model.fused_map`)."""
    row0: int = 0
    """The observation of the packed tables' first row (a block of
    :class:`~empirical_seaice.model.tensors.ObservationBlocks`: :meth:`use`)."""
    obs_rows: np.ndarray | None = None
    """The observation of each packed row where the tables hold some observations only, in any order
    (``ObservationTensors.obs_rows``: the held-out fit's own table): the row of a packed row's
    observation property. None: packed row ``i`` is observation ``row0 + i``."""

    def use(self, data) -> None:
        """Read the packed tables of ``data`` from now on (another block of the same observations,
        packed alike: :meth:`ObservationBlocks.block`); the forward pass only."""
        self.floats, self.ints, self.row0 = data.floats.numpy(), data.ints.numpy(), int(getattr(data, "row0", 0))
        self.obs_rows = _obs_rows(data)

    def obs_cost_sum(self, index: np.ndarray) -> float:
        """:func:`obs_cost_sum` of this program: the observation cost summed over the packed rows ``index``."""
        return obs_cost_sum(self, index)

    def map_priors(self, values: np.ndarray, grad: np.ndarray) -> dict[str, float]:
        """In "full" mode: the exact whole-map SIC priors at the map ``values`` (the SIC table's
        column, float32, every row current), by term name (those of :attr:`names`); their
        derivatives into ``grad`` (float64, one per row) (:mod:`empirical_seaice.model.fused_map`)."""
        from empirical_seaice.model.fused_map import MAP_TERMS, map_priors

        sums = map_priors(self, values, grad)
        return {name: float(v) for name, v in zip(MAP_TERMS, sums, strict=True) if name in self.names}

    def rows(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(B, nref) table-local rows each observation reads (columns: ``ref_table``), into ``out`` if given."""
        ip = self.ip
        refs = np.empty((index.shape[0], self.ref_table.shape[0]), dtype=np.int64) if out is None else out
        a = self.arrays
        _refs(self.ints, index, a["ncolmap"], a["nstep"], int(ip[2]), bool(ip[3] > 0), bool(ip[4] > 0), refs)
        if self.obs_rows is not None and a["has_obs"]:  # the observation-property row: the observation's
            refs[:, -1] = self.obs_rows[index]
        return refs

    def batch_means(self, nb_norm: int, fp: np.ndarray) -> np.ndarray:
        """``fp`` (the program's constants, :attr:`fp` or a copy) with the factors of the batch means of
        ``B = nb_norm`` set in place (``1 / B``; the sampled priors' ``1 / (sigma^2 B)``; the warm-ice
        term's scale; the ice-emissivity ceiling's ``1 / (sigma_e^2 B)``); returns ``fp``."""
        a = self.arrays
        fp[3] = 1.0 / nb_norm
        fp[6] = 1.0 / (a["sig_range"] ** 2 * nb_norm)
        fp[7] = 1.0 / (a["sig_bg"] ** 2 * nb_norm)
        fp[8] = 1.0 / (a["sig_false"] ** 2 * nb_norm)
        fp[9] = a["warm_base"] / (nb_norm * self.nobs_total)
        fp[17] = a["ceil_inv_var"] / nb_norm
        return fp

    def obs_weights(self, nb_norm: int) -> np.ndarray:
        """``2 / (sigma_c^2 B)`` per basis channel (float64), the observation term's weight in a batch mean
        of ``B = nb_norm``."""
        return (2.0 / (self.arrays["obs_err2"] * nb_norm)).astype(np.float64)

    def _weights(self) -> list[np.ndarray]:
        """The dense parameters as numpy views, re-made only when a parameter's storage moved."""
        key = tuple(p.data_ptr() for p in self.dense)
        if self._cache.get("weights_key") != key:
            self._cache["weights"] = [p.detach().numpy() for p in self.dense]
            self._cache["weights_key"] = key
        return self._cache["weights"]

    def _batch_buffers(self, nb: int, w: list[np.ndarray], ncol_state: int, nb_norm: int) -> dict:
        """The per-chunk gradient buffers (zeroed by the kernel), allocated once; ``p`` for ``B = nb_norm``
        (re-made when ``B`` changes: the last batch of an epoch); the per-observation state gradients
        ``g_state`` for at least ``nb`` observations (the kernel reads its first ``nb`` rows), grown when a
        batch is larger: a sharded run's shares vary from step to step, and one set of buffers per size
        would pile up."""
        buf = self._cache.get("batch")
        if buf is None:
            a = self.arrays
            emis_w = w[: len(w) - 3]
            w1, b1 = emis_w[0], emis_w[1]
            w2, b2 = (emis_w[2], emis_w[3]) if len(emis_w) == 4 else (a["dummy2"], a["dummy1"])
            wc, bi, bo = w[-3:]
            # per chunk for the network's weights; wc's and the biases' per chunk are g_own's (by sensor
            # channel), these get their sums put back in the basis' channels (_step): one row each
            grads = [np.zeros((NCHUNK,) + x.shape) for x in (w1, b1, w2, b2)]
            grads += [np.zeros((1,) + x.shape) for x in (wc, bi, bo)]
            sums = [g[0] for g in grads[:5]] + [np.empty(bi.shape), np.empty(bo.shape)]  # bias: + the prior's
            if len(emis_w) == 2:
                sums = sums[:2] + sums[4:]
            buf = dict(
                terms=np.zeros((NCHUNK, NTERMS)),
                grads=grads,
                g_own=np.zeros((NCHUNK, 3) + a["cmap"].shape),  # wc, bi, bo per sensor channel (_step)
                g_state=np.empty((nb, ncol_state)),
                dense_grads=sums,
                flat=tuple(x.reshape(-1) for x in sums),
            )
            self._cache["batch"] = buf
        if buf["g_state"].shape[0] < nb:
            buf["g_state"] = np.empty((nb, ncol_state))
        if buf.get("p_for") != nb_norm:
            buf["p"] = self.obs_weights(nb_norm)
            buf["p_for"] = nb_norm
        return buf

    def run(
        self,
        index: np.ndarray,
        refs: np.ndarray,
        vals: np.ndarray,
        inv: np.ndarray,
        g_vals: np.ndarray,
        batch_total: int | None = None,
    ):
        """Cost terms (numpy float64, order :attr:`names`, without the total) of the batch ``index``;
        adds the state-row gradients into ``g_vals`` (aligned with the caught-up rows ``vals``)
        and sets :attr:`dense_grads` (float64, valid until the next call; :attr:`dense_flat`: the same, flat).

        ``batch_total``: the ``B`` of the batch means (None: ``len(index)``), as in the network's
        ``cost_terms``: in a run sharded over ranks a rank holds its share of a global batch of ``B``
        observations, and the ranks' terms and gradients add up to the global batch's. The priors on the
        shared parameters alone (the bias prior, v1's mean anchor) carry the network's
        ``shared_prior_share`` (1, or 0 on a rank other than the first), so that they count once."""
        a = self.arrays
        nb = index.shape[0]
        nb_norm = nb if batch_total is None else int(batch_total)
        net = self.network
        share = float(getattr(net, "shared_prior_share", 1.0))
        w = self._weights()
        emis_w = w[: len(w) - 3]
        if len(emis_w) == 4:
            w1, b1, w2, b2 = emis_w
        else:
            w1, b1 = emis_w
            w2, b2 = a["dummy2"], a["dummy1"]
        wc, bi, bo = w[-3:]
        fp = self.batch_means(nb_norm, self.fp)
        ncol_state = refs.shape[1] - (1 if a["has_obs"] and a["has_grid"] else 0) + a["nprop"]
        buf = self._batch_buffers(nb, w, ncol_state, nb_norm)
        terms = buf["terms"]
        gw1, gb1, gw2, gb2, gwc, gbi, gbo = buf["grads"]
        _step(
            self.floats, self.ints, index, vals, inv, refs, buf["p"], w1, b1, w2, b2, wc, bi, bo,
            self.ip, fp, a["count"], a["bg"], a["t_map"], a["freq_pad"], a["nfreq"], a["chan_freq"],
            a["pol"], a["lag_w"], terms, gw1, gb1, gw2, gb2, gwc, gbi, gbo, buf["g_state"][:nb], g_vals,
            a["no_tb"], a["no_tb"], a["no_sic"], a["no_sic"], a["cmap"], a["nch"], a["anchor_k"], a["absent"],
            buf["g_own"],
        )  # fmt: skip
        t = terms[0]  # the kernel summed the chunks into chunk 0, in order
        # the bias prior (dense, tiny): sum (b - b_bg)^2 / sigma^2 / nobs, gradient 2 (b - b_bg) / sigma^2 / nobs
        dense_grads = buf["dense_grads"]
        if share:  # (the prior and its gradient times the share through 1 / sigma^2)
            inv_var = a["bias_inv_var"] if share == 1.0 else a["bias_inv_var"] * share
            bias = _bias_prior(
                bi, bo, a["bias_ice_bg"], a["bias_ocean_bg"], inv_var, float(self.nobs_total),
                gbi[0], gbo[0], dense_grads[-2], dense_grads[-1],
            )  # fmt: skip
        else:  # carried by another rank: the batch's gradients alone
            bias = 0.0
            np.copyto(dense_grads[-2], gbi[0])
            np.copyto(dense_grads[-1], gbo[0])
        values = {"obs": t[_T_OBS], "sic_range": t[_T_RANGE]}
        if self.ip[9]:
            values["sic_background"] = t[_T_BG]
        if self.ip[11]:
            values["false_ice"] = t[_T_FALSE]
        if "sic_smoothness" in self.names:  # whole-map only: the step adds it over the map
            values["sic_smoothness"] = 0.0
        values["warm_ice"] = t[_T_WARM]
        self.dense_grads = dense_grads
        self.dense_flat = buf["flat"]
        if self.ip[22]:
            values[CEILING] = t[_T_CEIL]
        if self.ip[7]:
            values["anchor"] = t[_T_ANCHOR]
        else:  # v1: ((e0[a] - value) / sigma)^2 / nobs on the linear model's bias
            cc = net.cost_config
            e0 = float(b1[net.anchor_channel])
            values["anchor"] = share * ((e0 - cc.anchor_value) / cc.anchor_error) ** 2 / self.nobs_total
            g_e0 = dense_grads[1].copy()
            g_e0[net.anchor_channel] += share * 2.0 * (e0 - cc.anchor_value) / cc.anchor_error**2 / self.nobs_total
            self.dense_grads = [dense_grads[0], g_e0, *dense_grads[2:]]
            self.dense_flat = tuple(x.reshape(-1) for x in self.dense_grads)
        values["bias"] = bias
        return np.array([values[n] for n in self.names])


def _own_channels(cmap: np.ndarray, nc: int, anchor_ch: int, chan_freq: np.ndarray, pol: np.ndarray):
    """The kernels' per-sensor channel tables (``cmap``: :func:`~empirical_seaice.model.tensors.channel_map`):
    ``cmap``, ``nch`` (channels per sensor), ``chan_freq`` and ``pol`` of each sensor's channels
    (nsensor, width), ``anchor_k`` (the anchor channel's column, or -1 with its network output's
    polarisation and frequency index) and ``absent`` (the basis channels each sensor lacks, -1 after);
    or None and why."""
    ns, width = cmap.shape
    nch = (cmap < nc).sum(axis=1).astype(np.int64)
    safe = np.where(cmap < nc, cmap, 0)
    anchor_k = np.full((ns, 3), -1, dtype=np.int64)
    absent = np.full((ns, nc), -1, dtype=np.int64)
    for s in range(ns):
        lacks = np.setdiff1d(np.arange(nc), cmap[s, : nch[s]])
        absent[s, : lacks.size] = lacks
        if anchor_ch >= 0:
            where = np.flatnonzero(cmap[s, : nch[s]] == anchor_ch)
            if where.size:
                anchor_k[s, 0] = where[0]
            elif pol[anchor_ch] >= 2:
                return None, "no fused step for a quasi-polarised anchor channel that a sensor lacks"
            else:
                anchor_k[s, 1:] = pol[anchor_ch], chan_freq[s, anchor_ch]
    tables = dict(
        cmap=cmap,
        nch=nch,
        chan_freq=np.ascontiguousarray(np.take_along_axis(chan_freq, safe, axis=1)),
        pol=np.ascontiguousarray(pol[safe]),
        anchor_k=anchor_k,
        absent=absent,
    )
    return tables, ""


def _own_frequencies(own: dict, freq_in: np.ndarray, anchor_input: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each sensor's network evaluations (``freq_pad`` (nsensor, _MAXS), their count ``nfreq``): the inputs
    (``freq_in``, (nsensor, nf): the network's, every basis channel's frequency) of the frequencies of the
    sensor's own channels, and of the anchor channel where the sensor lacks it, in the network's order;
    then ``anchor_input`` (the v2 anchor frequency's), if any; zeros to :data:`_MAXS`. A sensor lacking
    most of a run's channels then evaluates the network at its few frequencies only (AMSR2 among GMI and
    SSMIS: 5, not 9, one 8-lane vector instead of 16). ``own``'s ``chan_freq`` and ``anchor_k``
    (:func:`_own_channels`) are renumbered to these evaluations in place."""
    ns = freq_in.shape[0]
    freq_pad = np.zeros((ns, _MAXS))
    nfreq = np.zeros(ns, dtype=np.int64)
    cf, ak, nch = own["chan_freq"], own["anchor_k"], own["nch"]
    for s in range(ns):
        used = set(cf[s, : nch[s]].tolist()) | ({int(ak[s, 2])} if ak[s, 0] < 0 and ak[s, 2] >= 0 else set())
        order = sorted(used)
        new = {old: j for j, old in enumerate(order)}
        nfreq[s] = len(order)
        freq_pad[s, : len(order)] = freq_in[s, order]
        if anchor_input is not None:
            freq_pad[s, len(order)] = anchor_input
        cf[s, : nch[s]] = [new[int(x)] for x in cf[s, : nch[s]]]
        if ak[s, 0] < 0 and ak[s, 2] >= 0:
            ak[s, 2] = new[int(ak[s, 2])]
    return freq_pad, nfreq


def _host(t) -> np.ndarray:
    """A tensor's values as numpy: a view of a CPU tensor, a copy of another device's."""
    return t.detach().cpu().numpy()


def _obs_rows(data) -> np.ndarray | None:
    """``data.obs_rows`` as int64 numpy (:attr:`FusedProgram.obs_rows`), None where it has none."""
    rows = getattr(data, "obs_rows", None)
    return None if rows is None else np.ascontiguousarray(rows.cpu().numpy(), dtype=np.int64)


def _gather_rows_py(t0, t1, t2, ref_table, refs, vals):  # pragma: no cover - compiled below
    """``vals[b, k, :w] = table[ref_table[k]][refs[b, k]]`` (the rows each observation reads, gathered;
    ``w`` the table's width; the tables are float32, 2-D, at most three), in :data:`NCHUNK` parts of the
    observations on numba's threads (a copy: the same values on any number)."""
    nb, nref = refs.shape
    nchunk = max(1, min(nb, NCHUNK))
    for q in prange(nchunk):
        hi = nb * (q + 1) // nchunk
        for b in range(nb * q // nchunk, hi):
            if b + 16 < hi:  # the rows of an observation ahead (random rows of the maps: memory latency)
                for k in range(nref):
                    tab = ref_table[k]
                    prefetch(t0 if tab == 0 else (t1 if tab == 1 else t2), refs[b + 16, k], 0)
            for k in range(nref):
                tab = ref_table[k]
                src = t0 if tab == 0 else (t1 if tab == 1 else t2)
                row = refs[b, k]
                for j in range(src.shape[1]):
                    vals[b, k, j] = src[row, j]


_gather_rows: Any = _gather_rows_py
if HAVE_NUMBA:
    from numba import prange

    from empirical_seaice.compiled import njit, prefetch

    _gather_rows = njit(cache=True, nogil=True, parallel=True)(_gather_rows_py)


def _simulate_into(program, start: int, stop: int, zero_sic: bool | str, tb, emis, sic, anchor) -> None:
    """Forward pass of observations ``start .. stop - 1`` with the tables' current values, into
    ``tb``, ``emis``, ``sic``, ``anchor`` (``stop - start`` rows each; ``zero_sic="both"``: ``tb`` has
    ``2 nc`` columns, the TB and then the TB with SIC 0)."""
    index = np.arange(start - program.row0, stop - program.row0, dtype=np.int64)  # rows of the packed tables
    _simulate_rows(program, index, zero_sic, tb, emis, sic, anchor)


def _simulate_rows(program, index: np.ndarray, zero_sic: bool | str, tb, emis, sic, anchor) -> None:
    """:func:`_simulate_into` of the packed tables' rows ``index`` (int64)."""
    a = program.arrays
    refs = program.rows(index)
    # the observation-property row is the observation's: the last column (rows() mapped it with obs_rows)
    if program.row0 and a["has_obs"] and program.obs_rows is None:
        refs[:, -1] += program.row0
    nb, nref = refs.shape
    tables = [t.detach().numpy() for t in program.tables]
    c = max(t.shape[1] for t in tables)
    # not zeroed: a narrower table's row leaves columns unset, which the kernel never reads (it reads a
    # table's own width)
    vals = np.empty((nb, nref, c), dtype=np.float32)
    _gather_rows(*(tables + [tables[0]] * (3 - len(tables))), program.ref_table, refs, vals)
    inv = np.arange(nb * nref, dtype=np.int64).reshape(nb, nref)
    w = [p.detach().numpy() for p in program.dense]
    emis_w = w[: len(w) - 3]
    w1, b1 = emis_w[0], emis_w[1]
    w2, b2 = (emis_w[2], emis_w[3]) if len(emis_w) == 4 else (a["dummy2"], a["dummy1"])
    wc, bi, bo = w[-3:]
    ip = program.ip.copy()
    ip[18], ip[19] = 1, 2 if zero_sic == "both" else int(bool(zero_sic))
    z1 = np.zeros((NCHUNK, 1))
    z3 = np.zeros((NCHUNK, 1, 1))
    _step(  # forward only (ip[18]); compiled without the GIL: the compression threads run meanwhile
        program.floats, program.ints, index, vals.reshape(nb * nref, c), inv, refs, np.zeros(w[-3].shape[0]),
        w1, b1, w2, b2, wc, bi, bo, ip, program.fp, a["count"], a["bg"], a["t_map"], a["freq_pad"],
        a["nfreq"], a["chan_freq"], a["pol"], a["lag_w"], np.zeros((NCHUNK, NTERMS)), z3, z1, z3, z1, z1, z3, z3,
        np.zeros((1, 1)), np.zeros((1, 1)), tb, emis, sic, anchor, a["cmap"], a["nch"], a["anchor_k"], a["absent"],
        np.zeros((NCHUNK, 3, 1, 1)),
    )  # fmt: skip


def simulate_range(program: FusedProgram, start: int, stop: int, zero_sic: bool | str = False, chunk: int = 1 << 16):
    """``(tb, emis_ice, sic, emis_anchor)`` of observations ``start .. stop - 1`` (float32 numpy), as
    :func:`simulate` gives them: one block of a streamed pass over the observations.
    ``zero_sic="both"``: ``(tb, emis_ice, sic, emis_anchor, tb_zero)``, the TB with SIC 0 (``zero_sic=True``'s,
    bit for bit) from the same pass."""
    nc, n = int(program.ip[1]), stop - start
    both = zero_sic == "both"
    tb = np.empty((n, 2 * nc if both else nc), dtype=np.float32)
    emis = np.empty((n, nc), dtype=np.float32)
    sic, anchor = np.empty(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        _simulate_into(program, a, b, zero_sic, *(x[a - start : b - start] for x in (tb, emis, sic, anchor)))
    if both:
        return tb[:, :nc], emis, sic, anchor, tb[:, nc:]
    return tb, emis, sic, anchor


def obs_cost_sum(program: FusedProgram, index: np.ndarray, chunk: int = 1 << 14) -> float:
    """``sum_i J_o,i = sum_i sum_c mask_ic (H(x)_ic - y_ic)^2 / sigma_c^2`` (float64) over the packed
    tables' rows ``index``, from the forward pass alone (the tables' current values): the held-out
    observation cost that :func:`empirical_seaice.training.history.evaluate_obs_cost` sums with the
    tensor step (its batches' mean ``obs`` term times their size), here without a backward pass or a
    graph. ``H(x)`` is the simulation's float32 TB, as the tensor step's."""
    nc = int(program.ip[1])
    c_tb, c_mask = int(program.ip[12]), int(program.ip[17])
    inv_var = 1.0 / program.arrays["obs_err2"]
    total = 0.0
    for a in range(0, index.shape[0], chunk):
        rows = np.ascontiguousarray(index[a : a + chunk], dtype=np.int64)
        n = rows.shape[0]
        tb = np.empty((n, nc), dtype=np.float32)
        emis = np.empty((n, nc), dtype=np.float32)
        sic, anchor = np.empty(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        _simulate_rows(program, rows, False, tb, emis, sic, anchor)
        arrays = program.arrays
        total += _obs_sum(tb, program.floats, program.ints, rows, c_tb, c_mask, inv_var, arrays["cmap"], arrays["nch"])
    return total


def _obs_sum_py(tb, floats, ints, rows, c_tb, c_mask, inv_var, cmap, nch):  # pragma: no cover - compiled below
    """``sum_b sum_c mask (tb[b, c] - y[rows[b], c])^2 inv_var[c]`` in float64 (y and the mask's bits from the
    packed tables' row ``rows[b]``, whose channel column ``k`` is basis channel ``cmap[s, k]``, ``k < nch[s]``
    for its sensor ``s``): the sums of :data:`NCHUNK` parts of the rows on numba's threads, added in the
    parts' order (the same sum on any number of threads)."""
    n = rows.shape[0]
    nchunk = max(1, min(n, NCHUNK))
    parts = np.zeros(nchunk)
    for q in prange(nchunk):
        part = 0.0
        for b in range(n * q // nchunk, n * (q + 1) // nchunk):
            i = rows[b]
            s = ints[i, 2]
            for k in range(nch[s]):
                if (ints[i, c_mask + (k >> 5)] >> (k & 31)) & 1:
                    ch = cmap[s, k]
                    d = np.float64(tb[b, ch]) - np.float64(floats[i, c_tb + k])
                    part += d * d * inv_var[ch]
        parts[q] = part
    total = 0.0
    for q in range(nchunk):
        total += parts[q]
    return total


_obs_sum: Any = _obs_sum_py
if HAVE_NUMBA:
    _obs_sum = njit(cache=True, nogil=True, parallel=True)(_obs_sum_py)


def simulate(program: FusedProgram, nobs: int, zero_sic: bool = False, chunk: int = 1 << 16):
    """``(tb, emis_ice, sic, emis_anchor)`` of observations ``0 .. nobs - 1`` (float32 numpy), as
    :meth:`HybridNetwork.forward` gives them (``zero_sic``: SIC 0), chunk by chunk in parallel."""
    return simulate_range(program, 0, nobs, zero_sic, chunk)


def build_program(  # noqa: C901 - one check or constant per configuration option
    network, data, nobs_total: int, training: bool = True, host_tables: bool = True
) -> tuple[FusedProgram | None, str]:
    """The compiled step's view of ``network`` (a :class:`HybridNetwork`) and ``data``
    (:class:`ObservationTensors`), or ``(None, reason)`` where it does not apply
    (``training=False``: for :func:`simulate` only, any prior mode). ``host_tables=False``: the
    constants only, from tensors on any device (copied to the host), for
    :class:`~empirical_seaice.model.fused_device.DeviceCost`, which reads the tables on their device:
    the program's ``floats``, ``ints``, ``tables`` and ``dense`` are then not numpy views to run."""
    import torch

    from empirical_seaice.model.emissivity import LinearEmissivity, NetworkEmissivity
    from empirical_seaice.model.fused_map import row_constants

    if not HAVE_NUMBA:
        return None, "numba is not installed"
    prior_mode = getattr(network, "prior_mode", None)
    if training and prior_mode not in ("sampled", "full"):
        return None, f"no fused step for the prior mode {prior_mode!r}"
    full = training and prior_mode == "full"
    floats = getattr(data, "floats", None)
    on_host = host_tables  # the tables must be the host's; else any device
    if floats is None or (on_host and floats.device.type != "cpu") or floats.dtype != torch.float32:
        return None, "the fused step runs on CPU float32 observation tensors"
    if any((on_host and p.device.type != "cpu") or p.dtype != torch.float32 for p in network.parameters()):
        return None, "the fused step runs on CPU float32 parameters"
    em = network.emissivity
    mc, cc = network.model_config, network.cost_config
    st = network.state
    nc = network.basis.nchan
    cmap = getattr(data, "channel_map", None)
    if cmap is None or np.ndim(cmap) != 2 or len(cmap) != network.basis.nsensor:
        return None, "the observation tensors hold no channel map of the network's sensors"
    cmap = np.ascontiguousarray(cmap, dtype=np.int64)
    if isinstance(em, NetworkEmissivity):
        version, nh = 2, em.nhidden
        if nh > _MAXH or em.nfreq >= _MAXF:
            return None, "network too wide for the fused step"
    elif isinstance(em, LinearEmissivity):
        version, nh = 1, 0
    else:
        return None, f"no fused step for {type(em).__name__}"
    nang = int(version == 2 and getattr(em, "angle_input", False))  # the view-angle input
    if nc > _MAXC or st.nlag >= 8 or 1 + st.nprop_grid + st.nprop_obs + nang + 1 > _MAXH:
        return None, "state or channel count too large for the fused step"
    sl = data._slices
    floor_on = cc.anchor != "mean"
    anchor_ch = -1 if network.anchor_channel is None else int(network.anchor_channel)
    ip = np.array(
        [
            version, nc, st.nlag, st.nprop_grid, st.nprop_obs, nh, anchor_ch, int(floor_on),
            0 if cc.false_ice_shape == "tent" else 1, int(cc.sic_background_prior), int(cc.warm_ice == "effective"),
            int(cc.false_ice_prior), sl["tb_obs_k"][0], sl["emis_water"][0], sl["tau_eff"][0], sl["down_eff_k"][0],
            sl["const_k"][0], MASK_COLUMN, 0, 0, sl["cos2_scan"][0] if "cos2_scan" in sl else -1,
            sl["cos_view"][0] if nang else -1, int(cc.emis_ceiling_error is not None),
        ],
        dtype=np.int64,
    )  # fmt: skip
    fp = np.zeros(18)
    fp[0], fp[1] = mc.t_ref_k, mc.t_scale_k
    fp[2] = -1.0 if mc.ocean_t_floor_k is None else mc.ocean_t_floor_k
    if version == 2 and anchor_ch < 0:
        # the anchor's frequency input exactly as the tensor path rounds it (float32 f, then / scale)
        fp[4] = float(np.float32(cc.anchor_frequency_ghz) / np.float32(em.freq_scale_ghz))
    fp[5] = cc.anchor_value
    fp[10] = 1.0 / (cc.anchor_error**2 * nobs_total)
    fp[11:15] = row_constants(cc, st.ngrid, st.nstep, float(nobs_total))[1][4:8]  # the false-ice bump's shape
    names = ["obs", "sic_range"]
    if cc.sic_background_prior:
        names.append("sic_background")
    if cc.false_ice_prior:
        names.append("false_ice")
    if cc.sic_smoothness and full:  # a whole-map prior only (the sampled priors run without it)
        names.append("sic_smoothness")
    elif training:
        network.note_sampled_without_smoothness()
    names += ["warm_ice", "anchor"] + ([CEILING] if cc.emis_ceiling_error is not None else []) + ["bias"]
    tables = [st.sic_map.weight]
    ref_table = [0] * (st.nlag + 1)
    if st.props_grid is not None:
        tables.append(st.props_grid.weight)
        ref_table.append(len(tables) - 1)
    if st.props_obs is not None:
        tables.append(st.props_obs.weight)
        ref_table.append(len(tables) - 1)
    # the per-row arrays are the network's own (float32): the kernels compute 1 / count, the background
    # and the warm-ice weight in float64 from them (no float64 copies of the map's size)
    cnt = (
        np.full(st.ngrid * st.ncol, np.inf, dtype=np.float32)
        if network.sic_count is None or full  # "full": no batch estimate (1 / count = 0), the exact priors instead
        else _host(network.sic_count)
    )
    fp[15], fp[16] = cc.warm_ice_threshold_k, cc.warm_ice_factor
    if version == 2:
        freq_in = np.ascontiguousarray(_host(em.freq_input_t).T.astype(np.float64))  # (nsensor, nf)
        chan_freq = _host(em.chan_freq).astype(np.int64)
        pol = _host(em.pol).astype(np.int64)
    else:
        freq_in = np.zeros((1, 1))
        freq_pad = np.zeros((1, _MAXS))
        chan_freq = np.zeros((network.basis.nsensor, nc), dtype=np.int64)
        pol = np.zeros(nc, dtype=np.int64)
        nfreq = np.zeros(network.basis.nsensor, dtype=np.int64)
    own, reason = _own_channels(cmap, nc, anchor_ch, chan_freq, pol)
    if own is None:
        return None, reason
    if version == 2:  # each sensor's network evaluations: its own channels' frequencies, then the anchor's
        freq_pad, nfreq = _own_frequencies(own, freq_in, fp[4] if anchor_ch < 0 and floor_on else None)
    arrays = dict(
        ncolmap=st.ncol,
        nstep=st.nstep,
        ngrid=st.ngrid,
        nprop=st.nprop_grid + st.nprop_obs,
        has_grid=st.props_grid is not None,
        has_obs=st.props_obs is not None,
        count=cnt,
        bg=_host(st.background_flat),
        t_map=_host(network.t_map_flat),
        freq_pad=freq_pad,
        nfreq=nfreq,
        **own,
        lag_w=_host(st.lag_weights).astype(np.float64),
        obs_err2=_host(network.obs_error_k).astype(np.float64) ** 2,
        sig_range=cc.sic_error,
        sig_bg=cc.sic_background_error,
        sig_false=cc.false_ice_error,
        ceil_inv_var=0.0 if cc.emis_ceiling_error is None else 1.0 / cc.emis_ceiling_error**2,
        warm_base=network.counts_nobs / network.n_warm_rows,
        bias_ice_bg=_host(network.bias_ice_bg_k),
        bias_ocean_bg=_host(network.bias_ocean_bg_k),
        bias_inv_var=(1.0 / _host(network.bias_error_k).astype(np.float64) ** 2),
        no_tb=np.zeros((1, 1), dtype=np.float32),
        no_sic=np.zeros(1, dtype=np.float32),
        dummy2=np.zeros((2, 1), dtype=np.float32),
        dummy1=np.zeros(2, dtype=np.float32),
    )
    if full and cc.sic_smoothness:  # each row's neighbours, for the whole-map pass
        first, second, inv_var = (_host(t) for t in network.smoothness_pairs())
        indptr, indices, weights = pairs_csr(st.ngrid * st.ncol, first, second, inv_var.astype(np.float64))
        arrays.update(smooth_indptr=indptr, smooth_indices=indices, smooth_weights=weights)
    program = FusedProgram(
        network=network,
        names=tuple(names),
        tables=tables,
        ref_table=np.asarray(ref_table, dtype=np.int64),
        dense=list(network.dense_parameters()),
        floats=data.floats.numpy() if on_host else np.empty((0, 0), dtype=np.float32),
        ints=data.ints.numpy() if on_host else np.empty((0, 0), dtype=np.int32),
        row0=int(getattr(data, "row0", 0)),
        obs_rows=_obs_rows(data),
        ip=ip,
        fp=fp,
        arrays=arrays,
        nobs_total=int(nobs_total),
        full=full,
    )
    return program, ""


__all__ = ["FusedProgram", "build_program", "simulate", "HAVE_NUMBA", "NCHUNK"]
