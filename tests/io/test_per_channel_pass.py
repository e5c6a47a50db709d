"""io/per_channel.py: the compiled per-block pass classifies, counts and scatters exactly as the numpy
classification (``validity.classify``) and the slice writes it replaced."""

import netCDF4
import numpy as np
import pytest

from empirical_seaice.io.per_channel import _classify_block, _scatter_block
from empirical_seaice.io.validity import RANGE_TOL, RANGES, classify


def _block(rng, nb, ncol, hi):
    values = rng.uniform(0.0, hi, size=(nb, ncol)).astype(np.float32)
    specials = np.array(
        [np.nan, np.inf, -np.inf, 9.96921e36, -999.0, -9999.0, -99999.0, -32767.0, -32768.0, -1.0, hi + 5.0,
         -RANGE_TOL / 2, hi + RANGE_TOL / 2, -2 * RANGE_TOL, -998.0, 2e10],
        dtype=np.float32,
    )  # fmt: skip
    flat = values.ravel()
    where = rng.choice(flat.size, size=flat.size // 7, replace=False)
    flat[where] = rng.choice(specials, size=where.size)
    return values


@pytest.mark.parametrize("name", ["OBSVALUE", "EMIS_WATER"])
def test_block_pass_equals_the_numpy_classification(name):
    rng = np.random.default_rng(3)
    lo, hi, _ = RANGES[name]
    nb, ncol = 500, 9
    values = _block(rng, nb, ncol, hi)
    cols = np.array([0, 2, 3, 4, 5, 7, 8], dtype=np.int64)  # file column 1 and 6 skipped (surface-blind)
    cmap = np.array([1, 0, 2, 5, 6, 4, 3], dtype=np.int64)  # file column -> basis slot
    rows = np.sort(rng.choice(nb, size=300, replace=False)).astype(np.int64)
    d0, nout, nchan = 11, 320, 8

    arr = np.zeros((nout, nchan), dtype=np.float32)
    mask = np.zeros((nout, nchan), dtype=bool)
    mask[:, cmap] = True
    dirty = np.zeros(nout, dtype=bool)
    counts = np.array([0.0, 0.0, 0.0, np.inf, -np.inf])
    lo32, hi32 = np.float32(lo - RANGE_TOL), np.float32(hi + RANGE_TOL)
    _scatter_block(values, cols, lo32, hi32, rows, d0, cmap, arr, mask, dirty, counts, np.float32(np.nan))

    sel = values[:, cols]
    missing, out = classify(np.ascontiguousarray(sel), name)
    bad = missing | out
    assert counts[:3].tolist() == [sel.size, missing.sum(), out.sum()]
    assert out.sum() > 0 and missing.sum() > 0
    assert (counts[3], counts[4]) == (np.nanmin(sel), np.nanmax(sel))

    want = np.zeros((nout, nchan), dtype=np.float32)
    want_mask = np.zeros((nout, nchan), dtype=bool)
    want_mask[:, cmap] = True
    kept = np.where(bad[rows], np.float32(0.0), sel[rows])
    want[d0 : d0 + rows.size][:, cmap] = kept
    want_mask[d0 : d0 + rows.size][:, cmap] = ~bad[rows]
    want_dirty = np.zeros(nout, dtype=bool)
    want_dirty[d0 : d0 + rows.size] = bad[rows].any(axis=1)
    np.testing.assert_array_equal(arr, want)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(dirty, want_dirty)


def test_block_pass_without_bad_values_keeps_the_range_unset():
    values = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    arr = np.zeros((2, 2), dtype=np.float32)
    mask = np.ones((2, 2), dtype=bool)
    dirty = np.zeros(2, dtype=bool)
    counts = np.array([0.0, 0.0, 0.0, np.inf, -np.inf])
    idx = np.array([0, 1], dtype=np.int64)
    _scatter_block(
        values,
        idx,
        np.float32(0),
        np.float32(400),
        idx,
        0,
        idx[::-1].copy(),
        arr,
        mask,
        dirty,
        counts,
        np.float32(np.nan),
    )
    assert counts.tolist() == [4.0, 0.0, 0.0, np.inf, -np.inf]
    np.testing.assert_array_equal(arr, [[2.0, 1.0], [4.0, 3.0]])
    assert mask.all() and not dirty.any()


def _both_passes(values, cols, rows, cmap, lo, hi, fill, nout=300, nchan=10, d0=5):
    """:func:`_scatter_block` and the value-by-value :func:`_classify_block` on the same block: their
    (arr, mask, dirty, counts)."""
    got = []
    for kernel in (_scatter_block, _classify_block):
        arr = np.full((nout, nchan), -7.0, dtype=np.float32)  # written rows only
        mask = np.zeros((nout, nchan), dtype=bool)
        mask[:, cmap] = True
        dirty = np.zeros(nout, dtype=bool)
        counts = np.array([0.0, 0.0, 0.0, np.inf, -np.inf])
        kernel(values, cols, lo, hi, rows, d0, cmap, arr, mask, dirty, counts, fill)
        got.append((arr, mask, dirty, counts))
    return got


@pytest.mark.parametrize("columns", ["all", "some"])
def test_block_of_valid_values_is_copied_as_the_classification_writes_it(columns):
    """A block with no invalid value takes the copy (one comparison pass, then the copy): the same
    array, mask, row flags and counts as the value-by-value pass, bit for bit (-0.0 kept); one
    value equal to the file's fill value, in range, sends the block through the classification."""
    rng = np.random.default_rng(5)
    nb, ncol = 257, 9
    values = rng.uniform(0.0, 1.0, size=(nb, ncol)).astype(np.float32)
    values[4, 2] = -0.0
    cols = np.arange(ncol, dtype=np.int64) if columns == "all" else np.array([0, 2, 3, 5, 8], dtype=np.int64)
    cmap = rng.permutation(10)[: cols.size].astype(np.int64)
    rows = np.sort(rng.choice(nb, size=200, replace=False)).astype(np.int64)
    lo, hi = np.float32(0.0), np.float32(1.0)
    fast, slow = _both_passes(values, cols, rows, cmap, lo, hi, np.float32(np.nan))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fast[3].tolist() == [nb * cols.size, 0.0, 0.0, np.inf, -np.inf] and not fast[2].any()
    np.testing.assert_array_equal(
        fast[0][5 : 5 + rows.size][:, cmap].view(np.uint32), values[rows][:, cols].view(np.uint32)
    )
    fill = values[rows[3], cols[1]]  # a fill value inside the range: missing, as the netCDF library masks it
    fast, slow = _both_passes(values, cols, rows, cmap, lo, hi, fill)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fast[3][:3].tolist() == [nb * cols.size, 1.0, 0.0] and fast[2][5 + 3] and not fast[1][5 + 3, cmap[1]]


def test_no_value_in_a_range_counts_as_missing():
    """The per-channel pass copies a block whose values all lie in their variable's range without asking
    whether each is missing: that holds only while no range reaches ``|x| > FILL_ABS`` or holds a
    conventional fill value."""
    from empirical_seaice.io import per_channel
    from empirical_seaice.io.validity import RANGES

    for name, (lo, hi, _) in RANGES.items():
        assert -per_channel.FILL_ABS <= lo <= hi <= per_channel.FILL_ABS, name
        assert not any(lo <= f <= hi for f in per_channel.FILL_VALUES), name


def test_a_follower_gives_the_lead_blocks_rows_whatever_its_own_blocks():
    from empirical_seaice.io.per_channel import _Follower

    data = np.arange(40, dtype=np.float32).reshape(20, 2)

    def blocks(bounds):
        buf = np.empty((20, 2), np.float32)  # reused between blocks, as the stored reads' buffer is
        for a, b in bounds:
            buf[: b - a] = data[a:b]
            yield a, b, buf[: b - a], 1, np.float32(-1.0)

    lead = [(0, 5), (5, 6), (6, 13), (13, 20)]
    for own in ([(0, 5), (5, 6), (6, 13), (13, 20)], [(0, 3), (3, 20)], [(0, 7), (7, 9), (9, 20)], [(0, 20)]):
        f = _Follower(blocks(own))
        for a, b in lead:
            values, first, fill = f.rows(a, b)
            np.testing.assert_array_equal(values, data[a:b], err_msg=f"{own} {a}:{b}")
            assert first == 1 and fill == np.float32(-1.0)


@pytest.mark.parametrize("fold_rows", [5, 8192])
def test_the_atmosphere_read_with_variables_chunked_each_their_own_way(dataset, monkeypatch, fold_rows):
    """The six atmosphere variables are read together block by block: a cloudy one chunked unlike the clear
    ones (deflated, 7-row chunks) gives the same observations as plain storage, folded in pieces of any size."""
    from empirical_seaice.all_sky import ALL_SKY_FIELDS
    from empirical_seaice.io import per_channel, read_training_data

    ds = dataset("C", sensors=("amsr2", "gmi"))
    plain, _ = read_training_data(ds.config, 1)
    monkeypatch.setattr(per_channel, "FOLD_ROWS", fold_rows)
    path = ds.root / "gmi" / "field_v2_TDOWN_CLD.nc"
    values = ds.fields["gmi"]["TDOWN_CLD"]
    path.unlink()
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("n", values.shape[0])
        f.createDimension("c", values.shape[1])
        chunks = (7, values.shape[1])
        var = f.createVariable("TDOWN_CLD", np.float32, ("n", "c"), zlib=True, shuffle=True, chunksizes=chunks)
        var[:] = values
    again, _ = read_training_data(ds.config, 1)
    assert plain.mask.sum() > 0 and np.abs(plain.const_k).max() > 0
    for name in ("mask", *ALL_SKY_FIELDS):
        np.testing.assert_array_equal(getattr(again, name), getattr(plain, name), err_msg=name)
