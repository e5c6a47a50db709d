"""The compiled packing of the observation tensors (model/packing.py) equals the tensor path bit for bit,
straight from memory-mapped arrays, and drops the pages it read."""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from model_fixtures import make_obs

from empirical_seaice import observations
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import packing, tensors
from empirical_seaice.observations import PER_CHANNEL_FIELDS, PER_OBS_FIELDS, release_pages

pytestmark = pytest.mark.skipif(not packing.HAVE_NUMBA, reason="numba not installed")


def _tensor_path(obs, monkeypatch, dtype=torch.float32):
    with monkeypatch.context() as m:
        m.setattr(tensors, "pack_floats", lambda *a, **k: False)
        return tensors.ObservationTensors(obs, dtype=dtype)


@pytest.mark.parametrize("sensors", [("amsr2",), ("amsr2", "gmi", "ssmisf17"), ("amsr2", "gmi", "atms")])
def test_compiled_packing_equals_the_tensor_path_bit_for_bit(monkeypatch, sensors):
    obs, _ = make_obs(sensors=sensors, nobs=3000, ngrid=5, nstep=6, seed=3)
    rng = np.random.default_rng(4)
    cloud = obs.cloud_fraction.copy()
    cloud[:200] = rng.choice([0.0, 0.5, 1.0, np.nan], 200)  # a NaN cloud fraction packs as 0
    tau = obs.tau_eff.copy()
    tau[rng.random(tau.shape) < 0.01] = np.nan
    const = obs.const_k.copy()
    const[rng.random(const.shape) < 0.01] = np.inf
    zen = rng.uniform(0, 60, obs.nobs).astype(np.float32)  # the cross-track scan angle
    obs = replace(obs, cloud_fraction=cloud, tau_eff=tau, const_k=const, zenith_deg=zen)
    compiled = tensors.ObservationTensors(obs)
    ref = _tensor_path(obs, monkeypatch)
    assert compiled._slices == ref._slices
    assert torch.equal(compiled.ints, ref.ints)
    a, b = compiled.floats.numpy(), ref.floats.numpy()
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


def _memory_mapped(obs, folder):
    """``obs`` with every array read from a ``.npy`` file of ``folder``, memory-mapped (as a run's cache)."""
    maps = {}
    for name in PER_OBS_FIELDS + PER_CHANNEL_FIELDS:
        np.save(folder / f"{name}.npy", getattr(obs, name))
        maps[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
    return replace(obs, **maps)


def test_packing_in_chunks_from_memory_maps_drops_the_pages(tmp_path, monkeypatch):
    obs, _ = make_obs(sensors=("amsr2", "gmi"), nobs=5000, ngrid=5, nstep=6, seed=5)
    mapped = _memory_mapped(obs, tmp_path)
    ref = tensors.ObservationTensors(obs)
    slices = ref._slices
    released = []
    orig = type(mapped).release

    def spy(self, rows=None):
        released.append(rows)
        orig(self, rows)

    monkeypatch.setattr(type(mapped), "release", spy)
    out = np.empty(tuple(ref.floats.shape), np.float32)
    ints = np.empty(tuple(ref.ints.shape), np.int32)
    assert packing.pack_floats(mapped, out, ints, slices, tensors._sensor_angles(mapped), ref.channel_map, chunk=1024)
    assert released == [slice(s, min(s + 1024, obs.nobs)) for s in range(0, obs.nobs, 1024)]
    np.testing.assert_array_equal(out.view(np.int32), ref.floats.numpy().view(np.int32))
    np.testing.assert_array_equal(ints, ref.ints.numpy())


def _spy_on_release_pages(monkeypatch) -> list:
    """The rows of every ``observations.release_pages`` call on a memory map from now on (each still made)."""
    dropped: list = []
    real = observations.release_pages

    def spy(arr, rows=None):
        if isinstance(arr, np.memmap):
            dropped.append(rows)
        real(arr, rows)

    monkeypatch.setattr(observations, "release_pages", spy)
    return dropped


def test_a_block_is_packed_without_dropping_the_pages_of_its_rows(tmp_path, monkeypatch):
    # the streamed passes drop a block's cache pages after its sums and files have read its rows again
    obs, _ = make_obs(sensors=("amsr2", "gmi"), nobs=3000, ngrid=5, nstep=6, seed=6)
    mapped = _memory_mapped(obs, tmp_path)
    dropped = _spy_on_release_pages(monkeypatch)
    whole = tensors.ObservationTensors(obs)
    part = tensors.ObservationBlocks(mapped).block(1000, 2400)
    assert dropped == []
    assert part.row0 == 1000 and part.nobs == 1400
    np.testing.assert_array_equal(part.floats.numpy().view(np.int32), whole.floats.numpy()[1000:2400].view(np.int32))
    np.testing.assert_array_equal(part.ints.numpy(), whole.ints.numpy()[1000:2400])
    mapped.release(slice(1000, 2400))  # what the pass does after the block: every memory-mapped array
    assert dropped == [slice(1000, 2400)] * len(mapped.arrays())


def test_the_mask_is_packed_as_bits_and_unpacked_exactly():
    # 4 bytes per observation instead of a float per channel; 40 channels: two words, bit 31 the sign bit
    rng = np.random.default_rng(7)
    mask = rng.random((500, 40)) < 0.5
    mask[0] = True
    words = packing.mask_words(mask)
    assert words.dtype == np.int32 and words.shape == (500, 2) and words[0, 0] == -1
    ch = np.arange(40)
    back = (words[:, ch >> 5] >> (ch & 31)) & 1  # as the fused kernel reads channel ch
    np.testing.assert_array_equal(back.astype(bool), mask)
    obs, _ = make_obs(sensors=("amsr2", "gmi", "atms"), nobs=400, seed=8)
    t = tensors.ObservationTensors(obs)
    assert t.ints.dtype == torch.int32 and t.ints.shape == (400, tensors.MASK_COLUMN + 1)
    assert t.floats.shape == (400, 5 + 5 * t.width)  # no float column for the mask
    b = t.batch(torch.tensor([5, 399, 0]))
    np.testing.assert_array_equal(b.mask.numpy(), obs.mask[[5, 399, 0]].astype(np.float32))
    assert b.igrid.dtype == b.iobs.dtype == torch.int64 and b.iobs.tolist() == [5, 399, 0]


@pytest.mark.parametrize("compiled", [True, False])
def test_rows_hold_their_sensors_channels_and_batches_every_basis_channel(monkeypatch, compiled):
    # AMSR2 10, GMI 13, ATMS 13 of the basis' 27 channels: rows 5 + 5 x 13 floats wide, not 5 + 5 x 27
    obs, _ = make_obs(sensors=("amsr2", "gmi", "atms"), nobs=600, ngrid=5, nstep=6, seed=11)
    t = tensors.ObservationTensors(obs) if compiled else _tensor_path(obs, monkeypatch)
    present = np.asarray(obs.basis.present, dtype=bool)
    assert obs.nchan == 27 and t.width == present.sum(axis=1).max() == 13
    assert t.floats.shape == (600, 5 + 5 * 13)
    np.testing.assert_array_equal(t.channel_map[0, :10], np.flatnonzero(present[0]))
    assert (t.channel_map[0, 10:] == obs.nchan).all()  # past AMSR2's last channel: no channel
    b = t.batch(torch.arange(600))
    own = present[obs.isensor]  # (nobs, nchan): the row's sensor has the channel
    for name in ("tb_obs_k", "emis_water"):
        want = np.where(own, np.nan_to_num(getattr(obs, name), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        np.testing.assert_array_equal(getattr(b, name).numpy(), want.astype(np.float32))
    np.testing.assert_array_equal(b.mask.numpy(), obs.mask.astype(np.float32))
    for name in ("tau_eff", "down_eff_k", "const_k"):
        assert (getattr(b, name).numpy()[~own] == 0).all()


@pytest.mark.parametrize("compiled", [True, False])
def test_a_mask_channel_that_the_sensor_lacks_is_refused(monkeypatch, compiled):
    obs, _ = make_obs(sensors=("amsr2", "gmi"), nobs=300, ngrid=5, nstep=6, seed=12)
    present = np.asarray(obs.basis.present, dtype=bool)
    i = int(np.flatnonzero(obs.isensor == 0)[7])
    c = int(np.flatnonzero(~present[0])[0])  # a GMI channel that AMSR2 lacks
    mask = obs.mask.copy()
    mask[i, c] = True
    obs = replace(obs, mask=mask)
    name = obs.basis.channel_names[c]
    with pytest.raises(SeaIceError, match=f"observation {i} \\(sensor amsr2\\) has channel {name}, which the basis"):
        tensors.ObservationTensors(obs) if compiled else _tensor_path(obs, monkeypatch)


def _mapped_rss_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_release_drops_the_resident_pages_of_a_memory_map(tmp_path):
    path = tmp_path / "tb.npy"
    np.save(path, np.ones((1 << 20, 4), np.float32))  # 16 MiB
    arr = np.load(path, mmap_mode="r")
    if not isinstance(arr, np.memmap) or not hasattr(arr._mmap, "madvise"):
        pytest.skip("no madvise on this platform")
    assert float(arr.sum()) == 4 * (1 << 20)
    before = _mapped_rss_kib(path)
    release_pages(arr, slice(0, 1 << 19))  # the first half
    half = _mapped_rss_kib(path)
    release_pages(arr)
    after = _mapped_rss_kib(path)
    # the first half gone (the kernel may unmap a whole large folio at the boundary), then all of it
    assert before >= 15 * 1024 and 4 * 1024 <= half <= 9 * 1024 and after <= 64
    assert float(arr[:10].sum()) == 40.0  # the data come back on the next access
    release_pages(np.ones(4))  # ordinary arrays: nothing to do


def test_release_of_a_written_map_keeps_its_data_and_a_private_copy_is_left_alone(tmp_path):
    # the data cache is written through shared writable maps: its written pages go to the file
    path = tmp_path / "mask.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1 << 20, 4))
    if not hasattr(arr._mmap, "madvise"):
        pytest.skip("no madvise on this platform")
    arr[:] = np.arange(4 << 20, dtype=np.float32).reshape(-1, 4)
    assert _mapped_rss_kib(path) >= 15 * 1024
    release_pages(arr)
    assert _mapped_rss_kib(path) <= 64
    arr[3] = -1.0  # written after the release: kept too
    release_pages(arr, slice(0, 16))
    arr.flush()
    want = np.arange(4 << 20, dtype=np.float32).reshape(-1, 4)
    want[3] = -1.0
    np.testing.assert_array_equal(np.load(path), want)
    # a copy-on-write map (mode "c"): dropping its pages would lose the changes, so it is not done
    cow = np.load(path, mmap_mode="c")
    cow[0] = 99.0
    release_pages(cow)
    assert float(cow[0, 0]) == 99.0


def test_float64_tables_stay_on_the_tensor_path(monkeypatch):
    obs, _ = make_obs(nobs=50)
    t64 = tensors.ObservationTensors(obs, dtype=torch.float64)
    ref = _tensor_path(obs, monkeypatch, dtype=torch.float64)
    assert torch.equal(t64.floats, ref.floats)


@pytest.mark.skipif(
    packing.HAVE_NUMBA and importlib.import_module("numba").config.NUMBA_NUM_THREADS < 2, reason="numba has one thread"
)
def test_packing_keeps_the_runs_thread_count():
    # numba's OpenMP layer, once its parallel loop is large enough to use its whole team, left that
    # team's size (all cores) as the count torch's intra-op pool reads: the tensor and fused steps
    # of a --threads 1 run then used every core (1e5 rows: the smallest size that showed it here)
    obs, _ = make_obs(nobs=100_000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        tensors.ObservationTensors(obs)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_sensor_index_outside_the_basis_is_a_one_line_error():
    """The compiled packing looks each row's sensor up unchecked: an ``isensor`` outside the basis is refused first."""
    from empirical_seaice.errors import SeaIceError

    obs, _ = make_obs(nobs=50, ngrid=5, nstep=6, seed=3)
    bad = obs.isensor.copy()
    bad[7] = obs.basis.nsensor
    with pytest.raises(SeaIceError, match=r"Observations.isensor: expected 0\.\.\d+, got 0\.\.\d+"):
        tensors.ObservationTensors(replace(obs, isensor=bad))


def test_a_shards_copy_is_taken_piece_by_piece_dropping_the_pages_it_read(tmp_path, monkeypatch):
    # a sharded run's rank copies its observations (ascending, spread over the whole cache) out of the memory
    # maps: piece by piece, each piece's span of rows dropped after it is copied, so that the rank does not
    # keep the whole cache resident; the copy is the rows, in every per-observation and per-channel array
    obs, _ = make_obs(sensors=("amsr2", "gmi"), nobs=3000, ngrid=5, nstep=6, seed=9)
    mapped = _memory_mapped(obs, tmp_path)
    index = np.flatnonzero(np.random.default_rng(3).random(obs.nobs) < 0.4)
    dropped = _spy_on_release_pages(monkeypatch)
    got = mapped.take(index, piece=500)
    pieces = [index[a : a + 500] for a in range(0, index.size, 500)]
    assert len(pieces) >= 3
    spans = [slice(int(p[0]), int(p[-1]) + 1) for p in pieces]
    assert dropped == spans * len(mapped.arrays())
    for name in PER_OBS_FIELDS + PER_CHANNEL_FIELDS:
        taken = getattr(got, name)
        assert not isinstance(taken, np.memmap) and taken.dtype == getattr(obs, name).dtype, name
        np.testing.assert_array_equal(taken, np.asarray(getattr(obs, name))[index], err_msg=name)
    assert got.nobs == index.size
