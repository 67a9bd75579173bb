"""Every bad input raises before any work, with a message that names the problem and the value."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastnmf import NMF, non_negative_factorization

X_GOOD = np.random.RandomState(0).rand(6, 5)


def _torch_sparse(indices, values, shape, csr=False):
    tensor = torch.sparse_coo_tensor(indices, values, shape, check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return tensor.coalesce().to_sparse_csr() if csr else tensor


@pytest.mark.parametrize(
    "X,error,match",
    [
        (-X_GOOD, ValueError, r"Negative values in data passed to NMF \(X\): 30 negative entries, the smallest -0\.978618 at \(4, 0\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "Input X contains NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), ValueError, r"NaN or infinity: 1 non-finite entry, the first inf at \(0, 1\)"),
        (torch.tensor([[1.0, -2.0], [0.0, 1.0]]), ValueError, r"1 negative entry, the smallest -2 at \(0, 1\)"),
        (np.zeros((0, 3)), ValueError, "0 sample"),
        (torch.zeros(0, 3), ValueError, r"empty X of shape \(0, 3\)"),
        (np.ones(5), ValueError, "Expected 2D array"),
        (torch.ones(5), ValueError, r"Expected a 2-D X, got a tensor of shape \(5,\)"),
        (np.ones((3, 3)) * (1 + 1j), ValueError, "Complex data not supported"),
        (torch.ones(3, 3, dtype=torch.complex64), TypeError, "complex dtype torch.complex64"),
        (np.array([["a", "b"]], dtype=object), ValueError, "could not convert"),
        (sp.csr_matrix(([1.0, -2.0], ([0, 2], [1, 0])), shape=(3, 3)), ValueError,
         r"Negative values in data passed to NMF \(X\): 1 negative entry, the smallest -2 at \(2, 0\)"),
        (sp.coo_matrix(([1.0, np.nan], ([0, 1], [1, 2])), shape=(3, 3)), ValueError,
         r"Input X contains NaN or infinity: 1 non-finite entry, the first nan at \(1, 2\)"),
        (sp.csc_matrix((0, 4)), ValueError, r"Found empty X of shape \(0, 4\)"),
        (sp.csr_matrix(np.eye(3) * 1j), ValueError, "Complex data not supported"),
        (_torch_sparse([[1], [2]], [-0.5], (3, 3)), ValueError,
         r"1 negative entry, the smallest -0\.5 at \(1, 2\)"),
        (_torch_sparse([[0], [0]], [float("inf")], (3, 3), csr=True), ValueError, r"the first inf at \(0, 0\)"),
        (_torch_sparse([[0], [0]], [[1.0, 2.0]], (3, 3, 2)), ValueError,
         "Expected a 2-D sparse X without dense dimensions"),
    ],
    ids=["negative", "nan", "inf-torch", "negative-torch", "empty", "empty-torch", "1d", "1d-torch", "complex",
         "complex-torch", "strings", "scipy-negative", "scipy-nan", "scipy-empty", "scipy-complex",
         "torch-sparse-negative", "torch-sparse-inf", "torch-sparse-hybrid"],
)
def test_bad_x(X, error, match):
    with pytest.raises(error, match=match):
        NMF(2, max_iter=2).fit(X)


@pytest.mark.parametrize(
    "options,match",
    [
        (dict(n_components=0), r"Invalid n_components=0: expected an integer >= 1"),
        (dict(n_components=-3), r"Invalid n_components=-3"),
        (dict(n_components=2.5), r"Invalid n_components=2.5"),
        (dict(n_components="many"), r"Invalid n_components='many'"),
        (dict(init="svd"), r"Invalid init='svd': expected one of \['random', 'nndsvd'"),
        (dict(solver="cd"), r"Invalid solver='cd': expected one of \['mu', 'hals', 'newton', 'auto'\]"),
        (dict(beta_loss="kl"), r"Invalid beta_loss 'kl'"),
        (dict(tol=-1.0), r"Invalid tol=-1.0"),
        (dict(max_iter=0), r"Invalid max_iter=0"),
        (dict(check_every=0), r"Invalid check_every=0"),
        (dict(alpha_W=-0.1), r"Invalid alpha_W=-0.1"),
        (dict(alpha_H=-1.0), r"Invalid alpha_H=-1.0"),
        (dict(l1_ratio=1.5), r"Invalid l1_ratio=1.5: expected a finite real number in \[0.0, 1.0\]"),
        (dict(backend="cuda"), r"Invalid backend='cuda'"),
        (dict(precision="fp8"), r"Invalid precision='fp8'"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        NMF(**{"n_components": 2, "max_iter": 2, **options}).fit(X_GOOD)


def test_bad_options_are_reported_before_touching_x():
    # X is invalid too; the option error comes first, proving no pass over X happened before it.
    with pytest.raises(ValueError, match="Invalid solver"):
        non_negative_factorization(-X_GOOD, n_components=2, solver="nope")


@pytest.mark.parametrize(
    "W,H,match",
    [
        (np.ones((6, 3)), np.ones((2, 5)), r"Array with wrong shape passed to NMF \(W\): expected \(6, 2\), got \(6, 3\)"),
        (np.ones((6, 2)), np.ones((2, 4)), r"\(H\): expected \(2, 5\), got \(2, 4\)"),
        (-np.ones((6, 2)), np.ones((2, 5)), r"Negative values in data passed to NMF \(W\)"),
        (np.ones((6, 2)), np.full((2, 5), np.nan), r"Input H contains NaN"),
        (np.ones((6, 2)), None, "init='custom' needs both W"),
    ],
    ids=["W-shape", "H-shape", "W-negative", "H-nan", "H-missing"],
)
def test_bad_custom_factors(W, H, match):
    with pytest.raises(ValueError, match=match):
        non_negative_factorization(X_GOOD, W, H, n_components=2, init="custom")


@pytest.mark.parametrize("name", ["W", "H"])
def test_an_all_zero_custom_factor_is_refused_naming_it(name):
    # MU can never move a factor away from 0 (scikit-learn parity: it refuses such a start too).
    factors = {"W": np.ones((6, 2)), "H": np.ones((2, 5))}
    factors[name] = np.zeros_like(factors[name])
    with pytest.raises(ValueError, match=f"The custom {name} passed to NMF is all zeros"):
        non_negative_factorization(X_GOOD, factors["W"], factors["H"], n_components=2, init="custom")


def test_unknown_option_of_the_functional_api_names_it():
    with pytest.raises(TypeError, match=r"unexpected options \['tolerance'\]"):
        non_negative_factorization(X_GOOD, n_components=2, tolerance=1e-3)


def test_factors_on_another_device_are_rejected():
    X = torch.rand(6, 5)
    W, H = torch.rand(6, 2), torch.rand(2, 5, device="meta")
    with pytest.raises(ValueError, match="H is on meta but X is on cpu"):
        non_negative_factorization(X, W, H, n_components=2, init="custom")


def test_update_h_false_needs_h():
    with pytest.raises(ValueError, match="update_H=False needs the fixed H"):
        non_negative_factorization(X_GOOD, n_components=2, update_H=False)
