"""fastnmf: non-negative matrix factorization on PyTorch, with fused Triton kernels for the GPU.

``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``, all entries
≥ 0 — scikit-learn's names and shapes.
"""

__version__ = "0.1.0"
