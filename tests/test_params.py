"""Declarative parameter constraints: each names the value and what was expected, in documented order."""

import math

import pytest

from fastnmf.params import (BetaLoss, Boolean, Device, Either, Integer, MissingValues, NComponents, Options, Path,
                            RealRange, validate_parameters)


@pytest.mark.parametrize("constraint,good,bad,message", [
    (Options("mu", "hals", "auto"), "hals", "cd", r"Invalid p='cd': expected one of \['mu', 'hals', 'auto'\]\."),
    (Options("random", None), None, "svd", r"expected one of \['random', None\]"),
    (Integer(1), 3, 0, r"Invalid p=0: expected an integer >= 1\."),
    (Integer(1), 2, True, r"Invalid p=True"),
    (RealRange(0.0, 1.0), 0.5, 1.5, r"Invalid p=1.5: expected a finite real number in \[0.0, 1.0\]\."),
    (RealRange(0.0), 2.0, math.inf, r"Invalid p=inf: expected a finite real number >= 0.0\."),
    (Boolean(), False, 1, r"Invalid p=1: expected True or False\."),
    (Either(Options("same"), RealRange(0.0)), "same", -1.0, r"Invalid p=-1.0: expected one of \['same'\] or a finite"),
    (BetaLoss(), 1.5, "kl", r"Invalid beta_loss 'kl'"),
    (NComponents(), "auto", "many", r"Invalid n_components='many': expected 'auto', None or an integer >= 1\."),
    (MissingValues(), math.nan, -1, r"Invalid p=-1: expected None or np\.nan\."),
    (Device(), "cpu", "nonsense", r"Invalid p='nonsense'"),
    (Path(), "fit.npz", 3.5, r"Invalid p=3.5: expected None or a file path\."),
])
def test_each_constraint_accepts_and_refuses_naming_the_value(constraint, good, bad, message):
    checked = constraint.check("p", good)
    assert checked == good or (isinstance(good, float) and math.isnan(good))
    with pytest.raises(ValueError, match=message):
        constraint.check("p", bad)


def test_validate_parameters_normalizes_and_reports_the_first_bad_one():
    constraints = {"max_iter": Integer(1), "tol": RealRange(0.0)}
    assert validate_parameters(constraints, {"max_iter": 5, "tol": 0}) == {"max_iter": 5, "tol": 0.0}
    with pytest.raises(ValueError, match="Invalid tol=-1"):
        validate_parameters(constraints, {"max_iter": 5, "tol": -1})


def test_every_nmf_parameter_has_a_constraint():
    import inspect

    from fastnmf import NMF

    names = set(inspect.signature(NMF.__init__).parameters) - {"self"}
    assert names == set(NMF._parameter_constraints)
