"""Blocks of a global X for each rank (:func:`shard`), and the owned factor parts put back together
(:func:`gather`), with the geometry of ``fastnmf.distributed.grid``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from .agreement import exchange
from .comm import gather_into_tensor, run
from .grid import ProcessGrid, make_grid

__all__ = ["Shard", "shard", "owned_parts", "gather"]


class Shard(NamedTuple):
    """Rank's block ``X[rows, columns]`` of the global X."""

    X: object
    rows: range
    columns: range


def _as_grid(grid, rank: int) -> ProcessGrid:
    if isinstance(grid, ProcessGrid):
        return ProcessGrid(grid.rows, grid.columns, grid.position_of(rank))
    if grid is None:  # the distributed fit's default: row blocks over the world
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("grid=None means (world size, 1), but no process group is initialized: pass (p_r, p_c).")
        grid = (dist.get_world_size(), 1)
    elif hasattr(grid, "get_group") and hasattr(grid, "mesh"):  # a DeviceMesh: its shape, ranks row-major
        grid = tuple(int(size) for size in grid.shape)
    try:
        rows, columns = (int(value) for value in grid)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid grid={grid!r}: expected (p_r, p_c) or a ProcessGrid.") from None
    if rows < 1 or columns < 1:
        raise ValueError(f"Invalid grid={tuple(grid)!r}: p_r and p_c must be ≥ 1.")
    probe = ProcessGrid(rows, columns)
    return ProcessGrid(rows, columns, probe.position_of(rank))


def _block(X, rows: range, columns: range):
    r, c = slice(rows.start, rows.stop), slice(columns.start, columns.stop)
    if sp.issparse(X):
        matrix = X if X.format in ("csr", "csc") else X.tocsr()
        return matrix[r][:, c] if matrix.format == "csr" else matrix[:, c][r]
    if isinstance(X, torch.Tensor) and X.layout != torch.strided:
        coo = (X if X.layout == torch.sparse_coo else X.to_sparse_coo()).coalesce()
        indices, values = coo.indices(), coo.values()
        keep = ((indices[0] >= rows.start) & (indices[0] < rows.stop)
                & (indices[1] >= columns.start) & (indices[1] < columns.stop))
        offset = torch.tensor([[rows.start], [columns.start]], device=indices.device)
        block = torch.sparse_coo_tensor(indices[:, keep] - offset, values[keep], (len(rows), len(columns)))
        return block.coalesce().to_sparse_csr() if X.layout == torch.sparse_csr else block.coalesce()
    if isinstance(X, (np.ndarray, torch.Tensor)):
        return X[r, c]  # a view: a memmap stays on disk, only the block is read when it is used
    return np.asarray(X)[r, c]


def shard(X, grid, rank: int) -> Shard:
    """The block of X that group rank ``rank`` holds on ``grid`` (``(p_r, p_c)``, a ProcessGrid, a 2-D
    DeviceMesh, or None: ``(world size, 1)`` as in the distributed fit).

    X may be a numpy array or ``np.memmap`` (sliced as a view: nothing outside the block is read), a
    scipy.sparse matrix (CSR/CSC sliced, other formats converted to CSR) or a torch tensor, dense or sparse.
    Uneven sizes are split as evenly as possible, the first blocks one larger.
    """
    grid = _as_grid(grid, rank)
    m, n = X.shape
    if m < grid.rows or n < grid.columns:
        raise ValueError(f"X of shape ({m}, {n}) is too small for a {grid.rows}×{grid.columns} grid: every block needs "
                         "at least one row and one column.")
    rows, columns = grid.block_rows(m), grid.block_columns(n)
    return Shard(_block(X, rows, columns), rows, columns)


def owned_parts(shape, grid, rank: int) -> tuple[range, range]:
    """``(rows of W, columns of H)`` that rank ``rank`` owns on ``grid`` for an X of ``shape`` — what a
    distributed fit returns on that rank (docs/distributed.md, "Who owns what")."""
    grid = _as_grid(grid, rank)
    return grid.owned_rows(shape[0]), grid.owned_columns(shape[1])


def _collective_device(group):
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu")


def _gather_rows(part: torch.Tensor, sizes: list[int], order: list[int], group, dst):
    """Rows of every rank's ``part`` concatenated in ``order`` of ranks (padded all-gather or gather)."""
    widest = max(max(sizes), 1)
    padded = torch.zeros((widest, *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[:part.shape[0]] = part
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    if dst is None:
        gathered = torch.empty((world * widest, *padded.shape[1:]), dtype=part.dtype, device=part.device)
        run("all_gather", gather_into_tensor, gathered, padded, group=group)
        gathered = gathered.view(world, *padded.shape)
    else:
        gathered = [torch.empty_like(padded) for _ in range(world)] if rank == dst else None
        run("gather", dist.gather, padded, gathered,
            dst=dist.get_global_rank(group, dst) if group is not dist.group.WORLD else dst, group=group)
        if rank != dst:
            return None
    return torch.cat([gathered[r][:sizes[r]] for r in order], dim=0)


def gather(W_local, H_local, grid=None, group=None, dst: int | None = None):
    """The whole ``(W, H)`` from every rank's owned parts (what the distributed fit returned on each),
    on every rank (``dst=None``) or on group rank ``dst`` only (the others get ``(None, None)``).

    numpy in → numpy out; torch in → torch out on the parts' device. A collective: every rank calls it.
    """
    grid = make_grid(grid, group)
    group = grid.group
    is_numpy = not isinstance(W_local, torch.Tensor)
    device = _collective_device(group)
    W_part = torch.as_tensor(np.asarray(W_local) if is_numpy else W_local.detach()).to(device)
    H_part = torch.as_tensor(np.asarray(H_local) if is_numpy else H_local.detach()).to(device)
    if W_part.ndim != 2 or H_part.ndim != 2 or W_part.shape[1] != H_part.shape[0]:
        raise ValueError(f"gather needs this rank's W part (rows × k) and H part (k × columns), got shapes "
                         f"{tuple(W_part.shape)} and {tuple(H_part.shape)}.")
    sizes = exchange((W_part.shape[0], H_part.shape[1]), group)
    world = len(sizes)
    # W's rows go by block row i, then part j: rank order. H's columns by block column j, then part i.
    w_order = list(range(world))
    h_order = sorted(range(world), key=lambda r: grid.position_of(r)[::-1])
    W = _gather_rows(W_part, [s[0] for s in sizes], w_order, group, dst)
    H_t = _gather_rows(H_part.T.contiguous(), [s[1] for s in sizes], h_order, group, dst)
    if W is None:
        return None, None
    H = H_t.T.contiguous()
    if is_numpy:
        return W.cpu().numpy(), H.cpu().numpy()
    return W.to(W_local.device), H.to(H_local.device)

