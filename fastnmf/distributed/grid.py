"""The process grid: which block of X a rank holds, which parts of W and H it owns, and its groups.

A grid of ``p_r × p_c`` processes holds X in ``p_r`` row blocks and ``p_c`` column blocks; the rank at
grid position ``(i, j)`` — group rank ``i·p_c + j`` (row-major, as ``DeviceMesh`` lays out its ranks)
— holds block ``X[R_i, C_j]``. Sizes split as evenly as possible, the first blocks one larger
(``numpy.array_split``'s rule), so any shape fits any grid with at least one row and column per block.

Ownership (MPI-FAUN's pattern, Kannan, Ballard & Park 2016): the rows ``R_i`` of W are split again into
``p_c`` parts and rank ``(i, j)`` owns part j; the columns ``C_j`` of H are split into ``p_r`` parts and
rank ``(i, j)`` owns part i. Every rank owns a disjoint piece of W and of H; together they cover both.
The *row group* of ``(i, j)`` are the ranks ``(i, ·)`` (they share ``R_i`` and all-gather W's rows of block
i); the *column group* are the ranks ``(·, j)`` (they share ``C_j``). docs/distributed.md draws it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["ProcessGrid", "split_sizes", "split_ranges", "make_grid", "release_groups"]


def split_sizes(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` sizes as evenly as possible, the first ones larger."""
    base, extra = divmod(int(total), int(parts))
    return [base + (1 if index < extra else 0) for index in range(parts)]


def split_ranges(total: int, parts: int) -> list[range]:
    """The consecutive ranges of :func:`split_sizes`."""
    ranges, start = [], 0
    for size in split_sizes(total, parts):
        ranges.append(range(start, start + size))
        start += size
    return ranges


@dataclass(frozen=True)
class ProcessGrid:
    """A ``rows × columns`` grid of processes; ``position`` is this process's ``(i, j)``.

    The geometry (:meth:`block_rows`, :meth:`owned_rows`, …) needs no process group; the collectives run
    on ``group`` (all ranks of the grid), ``row_group`` and ``column_group`` (None where a group has a
    single member: no collective is needed there).
    """

    rows: int
    columns: int
    position: tuple[int, int] = (0, 0)
    group: object = None
    row_group: object = None
    column_group: object = None

    @property
    def size(self) -> int:
        return self.rows * self.columns

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.columns

    def position_of(self, rank: int) -> tuple[int, int]:
        """Grid position of group rank ``rank`` (row-major)."""
        if not 0 <= rank < self.size:
            raise ValueError(f"rank {rank} is not in a {self.rows}×{self.columns} grid of {self.size} processes.")
        return divmod(int(rank), self.columns)

    def block_rows(self, m: int, i: int | None = None) -> range:
        """Rows ``R_i`` of X (and of W) in row block i (default: this process's)."""
        i = self.position[0] if i is None else i
        return split_ranges(m, self.rows)[i]

    def block_columns(self, n: int, j: int | None = None) -> range:
        """Columns ``C_j`` of X (and of H) in column block j."""
        j = self.position[1] if j is None else j
        return split_ranges(n, self.columns)[j]

    def owned_rows(self, m: int, position: tuple[int, int] | None = None) -> range:
        """Rows of W owned by the rank at ``position``: part j of ``R_i`` split into ``columns`` parts."""
        i, j = self.position if position is None else position
        block = self.block_rows(m, i)
        part = split_ranges(len(block), self.columns)[j]
        return range(block.start + part.start, block.start + part.stop)

    def owned_columns(self, n: int, position: tuple[int, int] | None = None) -> range:
        """Columns of H owned by the rank at ``position``: part i of ``C_j`` split into ``rows`` parts."""
        i, j = self.position if position is None else position
        block = self.block_columns(n, j)
        part = split_ranges(len(block), self.rows)[i]
        return range(block.start + part.start, block.start + part.stop)


def _as_grid_shape(grid, world: int) -> tuple[int, int]:
    if grid is None:
        return world, 1
    try:
        rows, columns = (int(value) for value in grid)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid grid={grid!r}: expected (p_r, p_c), a 2-D DeviceMesh or None.") from None
    if rows < 1 or columns < 1 or rows * columns != world:
        raise ValueError(
            f"Invalid grid={tuple(grid)!r}: p_r·p_c must equal the number of processes ({world}), with p_r, p_c ≥ 1."
        )
    return rows, columns


# Groups are made once per (group, grid shape): creating a gloo or NCCL group costs a rendezvous.
_GROUPS: dict = {}


def release_groups() -> None:
    """Forget the row and column groups made by :func:`make_grid` (call it with, or after,
    ``torch.distributed.destroy_process_group()``): the cache would otherwise keep destroyed groups alive
    until the interpreter's finalization, when gloo's threads may still hold work that needs Python."""
    _GROUPS.clear()


def make_grid(grid=None, group=None, timeout: datetime.timedelta | None = None) -> ProcessGrid:
    """The :class:`ProcessGrid` of this process for ``grid`` on ``group`` (default: the world group).

    ``grid``: ``(p_r, p_c)`` with ``p_r·p_c`` = the group's size, a 2-D ``DeviceMesh`` (rows of the mesh =
    dimension 0; its groups are used), or None (``(size, 1)``: row blocks only). Sub-groups are created
    with local synchronization (only their members call), so every rank needs to call this — which the
    distributed fit does.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "fastnmf.distributed needs an initialized process group: call torch.distributed.init_process_group "
            "first (torchrun sets the environment it reads; docs/distributed.md)."
        )
    if grid is not None and hasattr(grid, "get_group") and hasattr(grid, "mesh"):
        return _mesh_grid(grid)
    group = group if group is not None else dist.group.WORLD
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if rank < 0:
        raise ValueError("This process is not a member of the group passed to the distributed fit.")
    rows, columns = _as_grid_shape(grid, world)
    i, j = divmod(rank, columns)
    key = (id(group), rows, columns, rank)
    if key not in _GROUPS:
        members = [dist.get_global_rank(group, r) for r in range(world)] if group is not dist.group.WORLD \
            else list(range(world))
        row_members = [members[i * columns + c] for c in range(columns)]
        column_members = [members[r * columns + j] for r in range(rows)]
        make = lambda ranks: (None if len(ranks) == 1 else  # noqa: E731
                              dist.new_group(ranks, timeout=timeout, use_local_synchronization=True))
        _GROUPS[key] = (group, make(row_members), make(column_members))
    _, row_group, column_group = _GROUPS[key]
    return ProcessGrid(rows, columns, (i, j), group, row_group, column_group)


def _mesh_grid(mesh) -> ProcessGrid:
    if mesh.ndim != 2:
        raise ValueError(f"grid must be a 2-D DeviceMesh, got one with {mesh.ndim} dimension(s) {tuple(mesh.shape)}.")
    rows, columns = (int(size) for size in mesh.shape)
    i, j = (int(value) for value in mesh.get_coordinate())
    single = lambda dim, size: None if size == 1 else mesh.get_group(dim)  # noqa: E731
    # The whole mesh: the world group when the mesh covers it (init_device_mesh's usual case).
    group = dist.group.WORLD if rows * columns == dist.get_world_size() else None
    if group is None:
        raise ValueError("A DeviceMesh grid must span every process of the job (init_device_mesh over the world).")
    return ProcessGrid(rows, columns, (i, j), group, single(1, columns), single(0, rows))
