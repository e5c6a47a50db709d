"""The storage of :class:`~empirical_seaice.training.deferred_adam.DeferredAdam`: slab rows.

All tables of a parameter group live in one *slab*, one row per table row: ``[w | m | v |
last | padding]`` (value, Adam moments, the step of the last update), :func:`_slab_width`
columns wide, so that a row visit touches one cache line. :class:`_CaughtUp` records the
slab rows a catch-up before a forward pass brought up to date, so that the optimiser step
that follows needs no second gather and no sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(eq=False)
class _CaughtUp:
    """Slab rows that :meth:`DeferredAdam.catch_up_many` brought up to ``step`` before a
    forward pass (already written back), kept so that the step that follows needs no
    second gather and no sort."""

    params: tuple[torch.Tensor, ...]  # the tables caught up, in order
    rows: tuple[torch.Tensor, ...]  # each table's rows as the batch reads them (may repeat)
    joint_inverse: torch.Tensor  # the tables' rows, concatenated (plus offsets) == unique[joint_inverse]
    unique: torch.Tensor  # sorted distinct slab rows
    step: int
    r: torch.Tensor  # (slab width, len(unique)): the caught-up slab rows, column-major
    leaf: torch.Tensor | None = None  # (len(unique), ncol) weights handed out by :meth:`DeferredAdam.gather`

    @property
    def inverse(self) -> tuple[torch.Tensor, ...]:
        """Each table's part of :attr:`joint_inverse`: its rows == unique[inverse] - offset."""
        return self.joint_inverse.split([r.numel() for r in self.rows])

    def matches(self, params: list[torch.Tensor], step: int) -> bool:
        """Whether every table with a gradient was caught up here and its gradient is the
        uncoalesced sparse gradient of a lookup of exactly its caught-up rows
        (``nn.Embedding(sparse=True)``: indices = the looked-up rows, in order), and
        nothing has moved the tables since the catch-up at ``step``."""
        if self.step != step:
            return False
        caught = {id(p): rows for p, rows in zip(self.params, self.rows, strict=True)}
        for p in params:
            grad = p.grad
            if grad is None:
                continue
            rows = caught.get(id(p))
            if rows is None or not grad.is_sparse or grad.is_coalesced():
                return False
            idx = grad._indices()
            if idx.shape[1] != rows.numel() or not torch.equal(idx[0], rows.reshape(-1)):
                return False
        return True


def _slab_width(ncol: int) -> int:
    """Columns of a slab row ``[w | m | v | last]`` for tables of up to ``ncol`` columns
    (``3 ncol + 1``), rounded up to a power of two so that a row never straddles two
    cache lines (4 floats for one column, 8 for two)."""
    need = 3 * ncol + 1
    return 1 << (need - 1).bit_length()


__all__ = ["_CaughtUp", "_slab_width"]
