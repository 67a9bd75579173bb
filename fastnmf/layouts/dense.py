"""Dense X: a strided tensor, any memory layout (the W update reads Xᵀ as a transposed view)."""

from __future__ import annotations

import torch

from .base import Block, BlockPart, Layout, row_blocks

__all__ = ["DenseMatrix", "DenseBlock", "Workspace", "reconstruction_like", "transposed_product"]

_ALL = slice(None)


class Workspace:
    """Reusable buffers for the m×n reconstruction, one per (shape, dtype, device), owned by one layout (so
    freed with it). A fresh 32 MB tensor per half-update cost its page faults on the CPU: reusing one took a
    KL MU iteration at 4000×2000, k = 32 from 47–54 to 28 ms on 2 cores. The caller consumes the buffer
    before asking for the next one (the rules and the objective use one reconstruction at a time)."""

    __slots__ = ("_buffers", "_copies")

    def __init__(self):
        self._buffers, self._copies = {}, {}

    def copy_of(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``tensor`` in ``dtype``, converted once and kept (X in bfloat16 for the torch backend's bf16 mode);
        a transposed view gets the transpose of its base orientation's copy, so X and Xᵀ share one."""
        transposed = tensor.stride(0) < tensor.stride(1)
        base = tensor.T if transposed else tensor
        key = (base.data_ptr(), tuple(base.shape), tuple(base.stride()), dtype)
        if key not in self._copies:
            self._copies[key] = base.to(dtype)
        copy = self._copies[key]
        return copy.T if transposed else copy

    def get(self, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (tuple(shape), dtype, device)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, dtype=dtype, device=device)
        return self._buffers[key]


def reconstruction_like(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor, workspace: Workspace | None = None
                        ) -> torch.Tensor:
    """``WH`` in X's memory layout, into ``workspace``'s buffer when given (it is overwritten by the next
    call). The W update sees X as a transposed (column-major) view; an R built row-major beside it made
    ``X / R`` 15× slower (120 vs 8 ms at 4000×2000 on 2 cores)."""
    transposed = X.stride(0) < X.stride(1)
    left, right = (H.T, W.T) if transposed else (W, H)
    if workspace is None or left.requires_grad or right.requires_grad:  # out= refuses autograd inputs
        product = left @ right
    else:
        out = workspace.get((left.shape[0], right.shape[1]), torch.result_type(left, right), left.device)
        product = torch.matmul(left, right, out=out)
    return product.T if transposed else product


# On the CPU (MKL, 2-core AMD EPYC) the faster form of WᵀQ depends on the rank, not on Q's layout: at
# 4000×2000 ``(QᵀW)ᵀ`` took 2.5 vs 4.0 ms at k = 16 and 6.5 vs 7.9 at k = 64 for a row-major Q (the H
# update), but 12.6 vs 3.7 ms at k = 8 (and 4.9 vs 2.6 for a column-major Q); 20000×5000 and 2000×4000
# gave the same crossover between k = 12 and 16.
_CPU_TRANSPOSED_FORM_MIN_RANK = 16


def transposed_product(W: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``WᵀQ`` in the faster of its two GEMM forms. CPU: ``(QᵀW)ᵀ`` from rank 16 on, ``WᵀQ`` below
    (measurements above). Elsewhere: ``(QᵀW)ᵀ`` when Q is column-major, so the GEMM reads Q row by row."""
    if W.device.type == "cpu":
        return (Q.T @ W).T if W.shape[1] >= _CPU_TRANSPOSED_FORM_MIN_RANK else W.T @ Q
    if Q.stride(0) < Q.stride(1):
        return (Q.T @ W).T
    return W.T @ Q


class DenseBlock(Block):
    """A dense rectangle of X (every entry stored), with optional dense weights of its shape and the
    workspace its reconstructions go to."""

    __slots__ = ("_x", "_weight", "_workspace")

    def __init__(self, x: torch.Tensor, weight: torch.Tensor | None = None, workspace: Workspace | None = None):
        self._x, self._weight, self._workspace = x, weight, workspace

    @property
    def x(self) -> torch.Tensor:
        return self._x

    @property
    def weight(self) -> torch.Tensor | None:
        return self._weight

    def reconstruction(self, W, H, workspace=None):
        return reconstruction_like(self._x, W, H, self._workspace if workspace is None else workspace)

    def wt_dot(self, W, values):
        return transposed_product(W, values)


class DenseMatrix(Layout):
    """X as a dense tensor (float16/bfloat16/float32/float64; any strides)."""

    __slots__ = ("tensor", "workspace")
    description = "dense X"

    def __init__(self, tensor: torch.Tensor, workspace: Workspace | None = None):
        # Xᵀ (the W update) shares the workspace: its reconstruction is the transpose of the same m×n buffer.
        self.tensor, self.workspace = tensor, Workspace() if workspace is None else workspace

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def dtype(self):
        return self.tensor.dtype

    @property
    def device(self):
        return self.tensor.device

    @property
    def T(self) -> "DenseMatrix":
        return DenseMatrix(self.tensor.T, self.workspace)

    def max(self):
        return self.tensor.max()

    def mean(self, dtype=None):
        return self.tensor.mean(dtype=dtype)

    def __truediv__(self, scale: float) -> "DenseMatrix":
        return DenseMatrix(self.tensor / scale)

    def astype(self, dtype):
        return self if dtype == self.dtype else DenseMatrix(self.tensor.to(dtype))

    def init_data(self):
        return self.tensor

    def blocks(self, bounded=False):
        X = self.tensor
        if not bounded:
            yield BlockPart(_ALL, _ALL, DenseBlock(X, workspace=self.workspace))
            return
        m, n = X.shape
        for rows in row_blocks(m, n):
            yield BlockPart(rows, _ALL, DenseBlock(X[rows], workspace=self.workspace))

    def wt_x(self, W):
        return transposed_product(W, self.tensor)
