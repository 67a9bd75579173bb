"""The kernel variants one fit compiles on a GPU, counted on the CPU.

``TRITON_INTERPRET=1 python -m fastnmf.kernels.fit_variants`` (the interpreter must be on before fastnmf is
imported). A Triton kernel compiles once per distinct specialization — its binder's key: argument dtypes,
16-divisibility of pointers and integers, constexprs and launch options — and each compile is paid on the
first launch (the compile times of ``python -m bench.gpu_check``). Here a fit runs under the interpreter
with the GPU configs (``configs.interpreting`` off, an H100/H200's 132 SMs assumed), and every launch is keyed
by Triton's binder for sm_90 exactly as :mod:`compile_report` keys them, then run: the distinct keys are
the compiles the same fit would do on the GPU. A second fit at the same shape that adds no key is what a
benchmark's warm-up relies on.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from contextlib import ExitStack
from unittest import mock

import torch

from .compile_report import _KERNELS, SM90, _binder_specialization

__all__ = ["fit_variants", "main"]


class _Keyed:
    """Stands in for an interpreted kernel: keys each launch with the binder, then runs it."""

    def __init__(self, kernel, keys, backend):
        from triton.runtime.jit import JITFunction

        self.kernel, self.keys, self.backend = kernel, keys, backend
        self.jit = JITFunction(kernel.fn, **kernel.kwargs)  # what triton.jit builds on a GPU: its binder

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            key = _binder_specialization(self.jit, args, dict(kwargs), self.backend)[4]
            self.keys.add((self.kernel.fn.__name__, key))
            return launch(*args, **kwargs)
        return run


def fit_variants(fit, keys: set | None = None, target=SM90) -> set:
    """Run ``fit()`` with every launch keyed; returns the set of (kernel name, key) it launched, added to
    ``keys`` when given (so that a second fit shows what it adds)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    from . import configs, gemm, hals, mu_beta, mu_finalize, mu_frobenius, mu_sparse_kl, objective
    from ..backends.contract import interpreting

    if not interpreting():
        raise RuntimeError("fit_variants runs the kernels in Triton's interpreter: set TRITON_INTERPRET=1 before "
                           "fastnmf is imported.")
    modules = {"gemm": gemm, "mu_frobenius": mu_frobenius, "mu_beta": mu_beta, "mu_finalize": mu_finalize,
               "hals": hals, "objective": objective, "mu_sparse_kl": mu_sparse_kl}
    keys = set() if keys is None else keys
    backend = make_backend(GPUTarget(*target))
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(configs, "interpreting", lambda: False))  # the GPU configs
        stack.enter_context(mock.patch.object(configs, "_sm_count", lambda index: 132))
        stack.enter_context(mock.patch.object(torch.cuda, "current_device", lambda: 0))
        for module_name, kernel_name in _KERNELS:
            module = modules[module_name]
            stack.enter_context(mock.patch.object(module, kernel_name, _Keyed(getattr(module, kernel_name), keys,
                                                                              backend)))
        fit()
    return keys


def _cases(shape, k):
    import fastnmf

    g = torch.Generator().manual_seed(0)
    m, n = shape
    X = torch.rand(m, n, generator=g)
    sparse = (X * (torch.rand(m, n, generator=g) < 0.1)).to_sparse_csr()
    fits = {"frobenius hals": dict(X=X, solver="hals"), "frobenius mu": dict(X=X, solver="mu"),
            "kl mu": dict(X=X, solver="mu", beta_loss="kullback-leibler"),
            "beta=1.5 mu": dict(X=X, solver="mu", beta_loss=1.5),
            "sparse kl mu": dict(X=sparse, solver="mu", beta_loss="kullback-leibler")}
    for name, options in fits.items():
        options = dict(options)
        data = options.pop("X")
        yield name, lambda data=data, options=options: fastnmf.non_negative_factorization(
            data, n_components=k, init="random", random_state=0, backend="triton", max_iter=12, tol=1e-4,
            **options)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnmf.kernels.fit_variants",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 64, 8), metavar=("M", "N", "K"))
    args = parser.parse_args(argv)
    m, n, k = args.shape
    print(f"| fit ({m}×{n}, k = {k}, 12 iterations) | variants compiled | of which | a second fit adds |")
    print("|---|---|---|---|")
    for name, fit in _cases((m, n), k):
        keys = fit_variants(fit)
        added = len(fit_variants(fit, set(keys))) - len(keys)
        kernels = Counter(kernel for kernel, _ in keys)
        print(f"| {name} | {len(keys)} | {', '.join(f'{kernel} {count}' for kernel, count in sorted(kernels.items()))} "
              f"| {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
