"""Penalties: scikit-learn's parameterization as one value."""

import pytest
import torch

from fastnmf.penalties import Penalties


def test_value():
    W, H = torch.full((2, 2), 2.0), torch.full((2, 3), 1.0)
    # l1_w·ΣW + ½ l2_w·ΣW² + l1_h·ΣH + ½ l2_h·ΣH² = 0.5·8 + 0.5·0.25·16 + 1·6 + 0
    assert float(Penalties(0.5, 0.25, 1.0, 0.0).value(W, H)) == pytest.approx(4 + 2 + 6)


def test_from_alphas_uses_scikit_learns_scaling():
    # W's terms scale with n_features, H's with n_samples (scikit-learn ≥ 1.2).
    p = Penalties.from_alphas(alpha_W=0.1, alpha_H=0.2, l1_ratio=0.25, n_samples=10, n_features=4)
    assert p.w == pytest.approx((4 * 0.1 * 0.25, 4 * 0.1 * 0.75))
    assert p.h == pytest.approx((10 * 0.2 * 0.25, 10 * 0.2 * 0.75))
    assert Penalties().value(torch.ones(2, 2), torch.ones(2, 2)) == 0.0


def test_rescaled():
    p = Penalties(1.0, 2.0, 3.0, 4.0).rescaled(0.5, 0.25)
    assert (p.l1_w, p.l2_w, p.l1_h, p.l2_h) == (0.5, 0.5, 1.5, 1.0)
