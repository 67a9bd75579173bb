"""Data far from 1 (1e-30 … 1e30, even in float32) is rescaled exactly by a power of two."""

import numpy as np
import pytest

from fastnmf import NMF
from fastnmf.scaling import choose_scaling

X32 = np.abs(np.random.RandomState(0).randn(40, 12)).astype(np.float32)


@pytest.mark.parametrize("beta,solver", [(2, "mu"), (2, "hals"), (1, "mu"), (0.5, "mu"), (0, "mu")])
@pytest.mark.parametrize("scale", [1e30, 1e-30], ids=["1e30", "1e-30"])
def test_extreme_float32_data_gives_the_same_fit_in_its_own_units(beta, solver, scale):
    # A power-of-two scale keeps X·scale/4^e exactly equal to X, so the two fits must agree to rounding.
    power = np.float32(4.0 ** round(np.log(scale) / np.log(4.0)))
    options = dict(n_components=3, beta_loss=beta, solver=solver, max_iter=40, tol=0.0, init="random", random_state=0)
    reference = NMF(**options)
    W_ref = reference.fit_transform(X32)
    model = NMF(**options)
    W = model.fit_transform(X32 * power)
    assert np.isfinite(W).all() and W.dtype == np.float32
    np.testing.assert_allclose(W / np.sqrt(power), W_ref, rtol=1e-4, atol=1e-6 * W_ref.max())
    np.testing.assert_allclose(model.components_ / np.sqrt(power), reference.components_, rtol=1e-4,
                               atol=1e-6 * reference.components_.max())
    assert model.loss_history_[-1] == pytest.approx(reference.loss_history_[-1] * float(power) ** beta, rel=1e-4)


def test_ordinary_data_is_left_alone():
    assert choose_scaling(3.0, 2.0).identity
    assert choose_scaling(0.0, 1.0).identity
    for x_max in (2.0**33, 1e30, 1e-30):
        scale = choose_scaling(x_max, 1.0).scale
        assert np.log(scale) / np.log(4.0) == round(np.log(scale) / np.log(4.0))  # a power of 4: exact √
        assert 0.5 <= x_max / scale <= 2.0
