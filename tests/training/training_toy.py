"""A tiny stand-in network that fulfils the trainer's contract.

``ToyNetwork`` predicts ``y_i = a[r(i)] + w x_i + b`` with a state table
``a`` (one row per (grid, step) cell, an embedding with sparse or dense
gradients) and two dense weights, and has one whole-map prior
``J_b = sum_r a_r^2 / sigma_p^2`` estimated per batch by the row-count
weighting the real network uses: ``(1/B) sum_{i in batch} a_{r(i)}^2 /
(sigma_p^2 n_{r(i)})`` has expectation ``J_b / nobs``. It lets the trainer's
mechanics be tested exactly and fast, without sea ice.
"""

from __future__ import annotations

import numpy as np
import torch


class ToyData:
    """Observations as tensors; ``batch(index)`` gathers rows."""

    def __init__(self, row: np.ndarray, x: np.ndarray, y: np.ndarray, device: str = "cpu"):
        self.device = torch.device(device)
        self.row = torch.as_tensor(row, dtype=torch.long, device=self.device)
        self.x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        self.y = torch.as_tensor(y, dtype=torch.float32, device=self.device)

    @property
    def nobs(self) -> int:
        return int(self.row.numel())

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"row": self.row[index], "x": self.x[index], "y": self.y[index]}


class ToyNetwork(torch.nn.Module):
    reads_state_values = False
    """It reads its table itself (DeferredAdam catches the rows up in the table before the forward)."""

    def __init__(
        self,
        nrow: int,
        row_counts: np.ndarray,
        sparse: bool = True,
        prior_mode: str = "sampled",
        sigma_o: float = 1.0,
        sigma_p: float = 2.0,
    ):
        super().__init__()
        self.sparse = sparse
        self.prior_mode = prior_mode
        self.table = torch.nn.Embedding(nrow, 1, sparse=sparse)
        torch.nn.init.zeros_(self.table.weight)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.b = torch.nn.Parameter(torch.zeros(1))
        self.sigma_o = sigma_o
        self.sigma_p = sigma_p
        self.nobs = float(np.sum(row_counts))
        self.register_buffer("inv_count", torch.as_tensor(1.0 / np.maximum(row_counts, 1), dtype=torch.float32))

    def forward(self, batch, state_values=None):
        a = self.table(batch["row"])[:, 0]
        return {"tb": a + self.w * batch["x"] + self.b, "a": a}

    def cost_terms(self, batch, out, nobs_total):
        obs = (((batch["y"] - out["tb"]) / self.sigma_o) ** 2).mean()
        if self.prior_mode == "full":
            prior = self.full_prior_terms(nobs_total)["prior"]
        else:
            prior = (out["a"] ** 2 * self.inv_count[batch["row"]]).mean() / self.sigma_p**2
        return {"obs": obs, "prior": prior}

    def full_prior_terms(self, nobs_total=None):
        n = self.nobs if nobs_total is None else nobs_total
        return {"prior": (self.table.weight**2).sum() / self.sigma_p**2 / n}

    @staticmethod
    def total_cost(terms):
        return sum(terms.values())

    def state_rows(self, batch):
        """The table rows a batch reads (lets DeferredAdam catch them up before the forward)."""
        return [(self.table.weight, batch["row"])]

    def region_rows(self, points, obs):
        """A part of the grid's rows: the toy's table rows are its grid points (no observation table)."""
        return [(self.table.weight, points)]

    def sparse_parameters(self):
        return [self.table.weight]

    def dense_parameters(self):
        return [self.w, self.b]


def make_toy(nrow: int = 40, nobs: int = 600, seed: int = 1, noise: float = 0.3):
    """Synthetic observations y = a_true[r] + 0.5 x - 0.2 + noise, every row observed."""
    rng = np.random.default_rng(seed)
    a_true = rng.normal(0.0, 1.0, nrow)
    row = np.concatenate([np.arange(nrow), rng.integers(0, nrow, nobs - nrow)])
    x = rng.normal(0.0, 1.0, nobs)
    y = a_true[row] + 0.5 * x - 0.2 + noise * rng.normal(0.0, 1.0, nobs)
    return row, x, y


def build(row, x, y, train_index=None, sparse=True, prior_mode="sampled"):
    train_index = np.arange(len(row)) if train_index is None else train_index
    counts = np.bincount(row[train_index], minlength=int(row.max()) + 1)
    return ToyNetwork(int(row.max()) + 1, counts, sparse=sparse, prior_mode=prior_mode), ToyData(row, x, y)
