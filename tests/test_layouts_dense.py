"""Dense X as a layout: products in X's memory layout, transposed views without copies, bounded blocks."""

import torch

from fastnmf.layouts import DenseMatrix, base
from fastnmf.layouts.dense import reconstruction_like, transposed_product


def _problem():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(9, 7, generator=g, dtype=torch.float64), torch.rand(9, 3, generator=g, dtype=torch.float64),
            torch.rand(3, 7, generator=g, dtype=torch.float64))


def test_products_follow_the_memory_layout_of_x():
    X, W, H = _problem()
    column_major = X.T.contiguous().T
    R = reconstruction_like(column_major, W, H)
    assert R.stride() == column_major.stride()
    torch.testing.assert_close(R, W @ H)
    torch.testing.assert_close(transposed_product(W, column_major), W.T @ X)


def test_transpose_is_a_view_and_shapes_follow():
    X, W, H = _problem()
    layout = DenseMatrix(X)
    assert layout.T.tensor.data_ptr() == X.data_ptr() and layout.T.shape == (7, 9)
    torch.testing.assert_close(layout.wt_x(W), W.T @ X)
    torch.testing.assert_close(layout.T.wt_x(H.T), H @ X.T)
    assert layout.nnz is None and not layout.weighted and not layout.implicit_zeros
    assert layout.nbytes == 9 * 7 * 8 and layout.astype(torch.float64) is layout
    assert (layout / 2.0).tensor.max() == X.max() / 2.0


def test_bounded_blocks_cover_the_rows_once(monkeypatch):
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 15)  # two rows of 7 per block
    X, _, _ = _problem()
    parts = list(DenseMatrix(X).blocks(bounded=True))
    assert [p.rows for p in parts] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8), slice(8, 9)]
    torch.testing.assert_close(torch.cat([p.block.x for p in parts]), X)
    (whole,) = DenseMatrix(X).blocks()
    assert whole.block.x is X


def test_the_reconstruction_reuses_one_buffer_for_both_updates_and_changes_no_value():
    # A fresh m×n reconstruction per half-update cost its page faults on the CPU; the layout's workspace
    # keeps one buffer, which the W update (Xᵀ, a column-major view) sees transposed.
    from fastnmf.layouts.dense import DenseMatrix, reconstruction_like
    from fastnmf.updates import MURule

    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 20, generator=g, dtype=torch.float64)
    W, H = torch.rand(30, 4, generator=g, dtype=torch.float64), torch.rand(4, 20, generator=g, dtype=torch.float64)
    layout = DenseMatrix(X)
    (_, _, block), = layout.blocks()
    (_, _, block_t), = layout.T.blocks()
    first = block.reconstruction(W, H)
    second = block_t.reconstruction(H.T, W.T)
    assert first.data_ptr() == second.data_ptr() and second.stride() == (1, 20)
    rule = MURule(1.0, eps_r=1e-12)
    for update in (layout.update_h(rule, W, H)[0], layout.update_w(rule, W, H)[0].T):
        assert torch.isfinite(update).all()
    fresh = DenseMatrix(X, workspace=None)
    assert torch.equal(layout.update_h(rule, W, H)[0], MURule(1.0, eps_r=1e-12).update(fresh, W, H)[0])
    assert torch.equal(reconstruction_like(X, W, H), W @ H)
