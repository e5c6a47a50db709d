"""What a run holds in memory at its peaks (docs/scaling.md, "Memory of a run"), on the small twin.

A run's memory should be its packed observation table, the optimiser's slab and the state, not
copies of them: no second observation-sized table beside the packed one while the fused step
trains, the trainer's slab freed before the held-out fit builds its own, and neither the packed
table nor a slab left once the final pass is done (the products need the state only).
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
        cands = [obj] if isinstance(obj, torch.Tensor) else []
        cands += [r for r in gc.get_referents(obj) if isinstance(r, np.ndarray)]
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
    return sum(isinstance(o, kind) for o in gc.get_objects())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the census touches torch's deprecated module objects
def test_a_run_holds_one_packed_table_and_frees_it_and_the_slabs(twin_dir, tmp_path, monkeypatch):
    from empirical_seaice.model.tensors import ObservationTensors
    from empirical_seaice.run import held_out
    from empirical_seaice.training import fused_step, runtime

    seen: dict[str, object] = {}
    step = fused_step.FusedStep.__call__

    def census_step(self, index):
        if "training" not in seen:  # one census in the middle of the fused training
            floats = self.program.floats
            table = {floats.__array_interface__["data"][0], self.program.ints.__array_interface__["data"][0]}
            seen["training"] = (table, _storages_with_rows(floats.shape[0]))
        return step(self, index)

    fit = held_out.fit_held_out_state

    def census_held_out(network, *a, **k):
        seen["held_out"] = (
            _live(DeferredAdam),
            [p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in network.parameters()],
        )
        return fit(network, *a, **k)

    stage = runtime.RunProgress.stage

    def census_stage(self, name):
        if name == "saving the model":
            seen["saving"] = (_live(ObservationTensors), _live(DeferredAdam))
        return stage(self, name)

    monkeypatch.setattr(fused_step.FusedStep, "__call__", census_step)
    monkeypatch.setattr(held_out, "fit_held_out_state", census_held_out)
    monkeypatch.setattr(runtime.RunProgress, "stage", census_stage)
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
