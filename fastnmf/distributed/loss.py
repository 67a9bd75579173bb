"""The loss of a distributed factorization, from each rank's block and owned factor parts."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..functional import factorization_loss as block_loss
from . import comm
from .agreement import agree
from .grid import make_grid, split_sizes

__all__ = ["factorization_loss"]


def factorization_loss(X_local, W_owned, H_owned, beta_loss="frobenius", *, grid=None, group=None) -> float:
    """``D_β(X | WH)`` of the whole X, on every rank: each rank's block against its rows of W and
    columns of H (all-gathered in its row and column groups from the owned parts that
    ``fastnmf.distributed.non_negative_factorization`` returned), summed over the grid. A collective.
    Float64, no m×n temporary (``fastnmf.factorization_loss`` on each block, never densified)."""
    grid = make_grid(grid, group)
    i, j = grid.position
    on_gpu = dist.get_backend(grid.group) == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")

    def owned_parts():
        m_block, n_block = X_local.shape
        W, H = (torch.as_tensor(np.asarray(F) if not isinstance(F, torch.Tensor) else F.detach(), dtype=torch.float64)
                .to(device) for F in (W_owned, H_owned))
        rows, columns = split_sizes(m_block, grid.columns)[j], split_sizes(n_block, grid.rows)[i]
        if W.ndim != 2 or H.ndim != 2 or W.shape[0] != rows or H.shape[1] != columns or W.shape[1] != H.shape[0]:
            raise ValueError(f"This rank owns {rows} rows of W and {columns} columns of H for a block of shape "
                             f"{(m_block, n_block)}; got W {tuple(W.shape)} and H {tuple(H.shape)}.")
        return (W, H, m_block, n_block), None

    (W, H, m_block, n_block), _ = agree(owned_parts, grid.group)
    W_rows = comm.all_gather_parts(W, 0, split_sizes(m_block, grid.columns), j, grid.row_group)
    H_columns = comm.all_gather_parts(H, 1, split_sizes(n_block, grid.rows), i, grid.column_group)

    def local():
        if isinstance(X_local, torch.Tensor):
            return block_loss(X_local, W_rows.to(X_local.device), H_columns.to(X_local.device), beta_loss), None
        return block_loss(X_local, W_rows.cpu().numpy(), H_columns.cpu().numpy(), beta_loss), None

    value, _ = agree(local, grid.group)
    total = comm.all_reduce(torch.tensor([value], dtype=torch.float64, device=device), grid.group)
    return float(total[0])
