"""What a run holds in memory at its peaks (docs/scaling.md, "Memory of a run"), on the small twin.

A run's memory should be its packed observation table, the optimiser's slab and the state, not
copies of them: no second observation-sized table beside the packed one while the fused step
trains, the trainer's slab freed before the held-out fit builds its own, and neither the packed
table nor a slab left once the final pass is done (the products need the state only).

And the table itself is lean (issue 16, the 2 GiB benchmark run): the mask as bits in int32
integers (4 (5 + 5 C) + 16 bytes per observation), no float64 copy of the map's rows in the fused
program, the row marks inside the slab; the whole table freed when training ends: the held-out fit
packs the held-out observations alone, the final pass one block at a time.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from empirical_seaice.training.deferred_adam import DeferredAdam

from .conftest import run_cli


def _storages_with_rows(nobs: int) -> dict[int, tuple]:
    """Every live torch tensor and numpy array in ordinary memory (not a memory map of the cache,
    not a view into a larger table such as the optimiser's slab) whose first dimension is
    ``nobs``, by the address of its memory: one entry per copy."""
    found: dict[int, tuple] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): a weak proxy among them whose object is gone raises on isinstance
        cands = [obj] if issubclass(type(obj), torch.Tensor) else []
        cands += [r for r in gc.get_referents(obj) if issubclass(type(r), np.ndarray)]
        for x in cands:
            if x.ndim == 0 or x.shape[0] != nobs:
                continue
            if isinstance(x, torch.Tensor):
                st = x.untyped_storage()
                if st.nbytes() <= x.numel() * x.element_size():  # not a view into a larger table (the slab)
                    found[st.data_ptr()] = ("tensor", tuple(x.shape), str(x.dtype))
                continue
            base = x
            while isinstance(base.base, np.ndarray):
                base = base.base
            if isinstance(base, np.memmap) or getattr(base, "_mmap", None) is not None or base.base is not None:
                continue  # a memory map of the cache (file pages), or a view of a tensor's storage
            found[base.__array_interface__["data"][0]] = ("ndarray", tuple(x.shape), str(x.dtype))
    return found


def _live(kind) -> int:
    return sum(issubclass(type(o), kind) for o in gc.get_objects())  # type(): as in _storages_with_rows


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the census touches torch's deprecated module objects
def test_a_run_holds_one_packed_table_and_frees_it_and_the_slabs(twin_dir, tmp_path, monkeypatch):
    from empirical_seaice.model.tensors import ObservationTensors
    from empirical_seaice.run import held_out, streamed
    from empirical_seaice.training import fused_step, runtime

    seen: dict[str, object] = {}
    step = fused_step.FusedStep.__call__

    def census_step(self, index, distinct=False, **kwargs):
        if "training" not in seen:  # one census in the middle of the fused training
            gc.collect()  # what the run holds, not garbage of earlier tests awaiting the collector
            floats = self.program.floats
            table = {floats.__array_interface__["data"][0], self.program.ints.__array_interface__["data"][0]}
            seen["training"] = (table, _storages_with_rows(floats.shape[0]))
            big = [k for k, a in self.program.arrays.items() if isinstance(a, np.ndarray) and a.nbytes > 1 << 16]
            seen["lean"] = (
                int(self.program.arrays["cmap"].shape[1]),  # channel columns of a row: the most one sensor has
                floats.dtype.itemsize * floats.shape[1] + self.program.ints.dtype.itemsize * self.program.ints.shape[1],
                self.program.arrays["count"].shape[0],
                {k: self.program.arrays[k].dtype.itemsize for k in big},
                np.shares_memory(self.mark, self.slab),
            )
        return step(self, index, distinct, **kwargs)

    packed: list[tuple[str, int]] = []  # (stage, rows) of every observation table packed
    current = {"stage": ""}
    init = ObservationTensors.__init__

    def census_pack(self, obs, *a, **k):
        packed.append((current["stage"], obs.nobs))
        return init(self, obs, *a, **k)

    fit = held_out.fit_held_out_state

    def census_held_out(network, *a, **k):
        gc.collect()
        seen["held_out"] = (
            _live(DeferredAdam),
            [p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in network.parameters()],
        )
        seen["tables_at_held_out"] = _live(ObservationTensors)
        return fit(network, *a, **k)

    stage = runtime.RunProgress.stage

    def census_stage(self, name):
        current["stage"] = name
        if name == "saving the model":
            gc.collect()
            seen["saving"] = (_live(ObservationTensors), _live(DeferredAdam))
        return stage(self, name)

    monkeypatch.setattr(fused_step.FusedStep, "__call__", census_step)
    monkeypatch.setattr(held_out, "fit_held_out_state", census_held_out)
    monkeypatch.setattr(runtime.RunProgress, "stage", census_stage)
    monkeypatch.setattr(ObservationTensors, "__init__", census_pack)
    # blocks of 2048 observations, so that the small twin's final pass has several
    monkeypatch.setattr(streamed.out, "block_rows", lambda n, c, **k: 2048)
    r = run_cli(
        ["--data", twin_dir, "--output", tmp_path / "out", "--tag", "mem", "--nepochs", "1", "--batchsize", "256",
         "--validation-fraction", "0.2", "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    assert r.code == 0, r.stderr
    table, copies = seen["training"]
    assert len(table) == 2  # the packed floats and integers
    assert set(copies) == table, f"observation-sized copies beside the packed table: {copies}"
    slabs, own = seen["held_out"]
    assert slabs == 0  # the trainer's slab is gone before the held-out fit makes its own
    assert own and all(own)  # the state tables own their storage (no view keeps a slab alive)
    assert seen["saving"] == (0, 0)  # neither the packed table nor a slab outlives the final pass
    width, row_bytes, map_rows, big_arrays, marks_in_slab = seen["lean"]
    # 13 channel columns (GMI's) of the twin's 17: 296 B a row, no float mask, int32 integers
    assert width == 13 and row_bytes == 4 * (5 + 5 * width) + 16 == 296
    assert map_rows > 1000 and all(size <= 4 for size in big_arrays.values()), big_arrays  # no float64 map copies
    assert marks_in_slab
    assert seen["tables_at_held_out"] == 0  # the training's table is gone before the held-out fit
    nobs = packed[0][1]
    stages = [stage for stage, _ in packed]
    assert packed[0][0] == "packing observations" and stages.count("packing observations") == 1
    held = [n for stage, n in packed if stage == "fitting the held-out state"]
    assert held == [round(0.2 * nobs)]  # the held-out observations alone
    blocks = [n for stage, n in packed if stage == "health checks"]
    assert len(blocks) >= 1 and sum(blocks) == nobs and max(blocks) < nobs  # the final pass: block by block
    assert len(packed) == 2 + len(blocks)
