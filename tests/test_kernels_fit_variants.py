"""fastnmf.kernels.fit_variants: the kernel variants one fit compiles, keyed by Triton's binder."""

from collections import Counter

import pytest
import torch

import fastnmf
from fastnmf.kernels.fit_variants import fit_variants, main

pytestmark = [pytest.mark.interpreter, pytest.mark.slow]  # 15 s of interpreted fits on 2 cores


def _fit(shape, **options):
    X = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    return lambda: fastnmf.non_negative_factorization(X, n_components=4, init="random", random_state=0,
                                                      backend="triton", max_iter=3, tol=0.0, **options)


@pytest.mark.parametrize("options, expected", [
    (dict(solver="mu"), {"_mu_frobenius_h_kernel": 2, "_beta_divergence_kernel": 1}),
    (dict(solver="mu", beta_loss="kullback-leibler"), {"_mu_beta_h_kernel": 2, "_beta_divergence_kernel": 1}),
])
def test_a_fit_compiles_one_variant_per_factor_update_and_a_second_fit_none(options, expected):
    fit = _fit((48, 32), **options)
    keys = fit_variants(fit)
    assert Counter(name for name, _ in keys) == expected  # the H and the W update specialize differently
    assert fit_variants(fit, set(keys)) == keys  # the same shape again: nothing new (what a warm-up relies on)
    odd = fit_variants(_fit((41, 23), **options))
    assert Counter(name for name, _ in odd) == expected and odd != keys  # sizes off 16: other specializations


def test_the_command_prints_every_fit_with_what_a_second_fit_adds(capsys):
    assert main(["--shape", "32", "24", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows[1:]] == [
        "frobenius hals", "frobenius mu", "kl mu", "beta=1.5 mu", "sparse kl mu"]
    assert all(row.endswith("| 0 |") for row in rows[1:])


def test_it_needs_the_interpreter(monkeypatch):
    from fastnmf.backends import contract

    monkeypatch.setattr(contract, "interpreting", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fit_variants(lambda: None)
