"""Declarative parameter constraints, checked before any work, with messages that name the value.

``NMF._parameter_constraints`` maps each parameter to one constraint; :func:`validate_parameters` checks
them all and returns the normalized values. (scikit-learn's ``_parameter_constraints`` machinery is a
private module whose messages list options in set order and name the value last; these keep fastnmf's
``Invalid name=value: expected ...`` form, in the order the options are documented.)
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import torch

from .losses import parse_beta_loss

__all__ = ["Options", "Integer", "RealRange", "Boolean", "Either", "BetaLoss", "NComponents", "MissingValues",
           "Anything", "validate_parameters"]


def _invalid(name, value, expected: str) -> ValueError:
    return ValueError(f"Invalid {name}={value!r}: expected {expected}.")


class Options:
    """One of the given values (strings or None), in the order given."""

    def __init__(self, *options):
        self.options = options

    def describe(self) -> str:
        return f"one of {list(self.options)}"

    def accepts(self, value) -> bool:
        return (value is None and None in self.options) or (isinstance(value, str) and value in self.options)

    def check(self, name, value):
        if not self.accepts(value):
            raise _invalid(name, value, self.describe())
        return value


class Integer:
    """An integer ≥ ``minimum`` (not a bool)."""

    def __init__(self, minimum: int):
        self.minimum = minimum

    def describe(self) -> str:
        return f"an integer >= {self.minimum}"

    def accepts(self, value) -> bool:
        return not isinstance(value, bool) and isinstance(value, Integral) and value >= self.minimum

    def check(self, name, value):
        if not self.accepts(value):
            raise _invalid(name, value, self.describe())
        return int(value)


class RealRange:
    """A finite real number in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""

    def __init__(self, minimum: float = 0.0, maximum: float | None = None):
        self.minimum, self.maximum = minimum, maximum

    def describe(self) -> str:
        bound = f"in [{self.minimum}, {self.maximum}]" if self.maximum is not None else f">= {self.minimum}"
        return f"a finite real number {bound}"

    def accepts(self, value) -> bool:
        ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value >= self.minimum
        return ok and (self.maximum is None or value <= self.maximum)

    def check(self, name, value):
        if not self.accepts(value):
            raise _invalid(name, value, self.describe())
        return float(value)


class Boolean:
    def describe(self) -> str:
        return "True or False"

    def accepts(self, value) -> bool:
        return isinstance(value, bool)

    def check(self, name, value):
        if not self.accepts(value):
            raise _invalid(name, value, self.describe())
        return value


class Either:
    """Any of several constraints (the first that accepts normalizes the value)."""

    def __init__(self, *constraints):
        self.constraints = constraints

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self.constraints)

    def accepts(self, value) -> bool:
        return any(c.accepts(value) for c in self.constraints)

    def check(self, name, value):
        for constraint in self.constraints:
            if constraint.accepts(value):
                return constraint.check(name, value)
        raise _invalid(name, value, self.describe())


class BetaLoss:
    """"frobenius", "kullback-leibler", "itakura-saito" or a finite real β (``fastnmf.losses``)."""

    def check(self, name, value):
        parse_beta_loss(value)
        return value


class NComponents:
    def check(self, name, value):
        if value is None or (isinstance(value, str) and value == "auto"):
            return value
        if isinstance(value, str):
            raise ValueError(f"Invalid n_components={value!r}: expected 'auto', None or an integer >= 1.")
        return Integer(1).check(name, value)


class MissingValues:
    """None or NaN (the only missing-value marker fastnmf reads)."""

    def check(self, name, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return value
        raise ValueError(f"Invalid {name}={value!r}: expected None or np.nan.")


class Device:
    def check(self, name, value):
        if value is None or isinstance(value, torch.device):
            return value
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            try:
                torch.device(value)
            except (RuntimeError, ValueError) as error:
                raise _invalid(name, value, f"None, a torch.device or a device string ({error})") from None
            return value
        raise _invalid(name, value, "None, a torch.device or a device string such as 'cuda'")


class Path:
    def check(self, name, value):
        if value is None or isinstance(value, (str, os.PathLike)):
            return value
        raise _invalid(name, value, "None or a file path")


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"500MB"``, ``"2 GB"``, ``"1.5GiB"``, ``"4096"`` → bytes (decimal kB/MB/GB, binary KiB/MiB/GiB)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a size: use bytes or a number with kB, MB, GB, KiB, MiB, GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class MemoryBudget:
    """None, a number of bytes ≥ 1, or a size string ("500MB", "2GiB"); normalized to an int."""

    def check(self, name, value):
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = parse_bytes(value)
            except ValueError as error:
                raise _invalid(name, value, f"None, bytes or a size string ({error})") from None
        if isinstance(value, bool) or not isinstance(value, Real) or value < 1:
            raise _invalid(name, value, "None, a number of bytes ≥ 1 or a size string such as '2GB'")
        return int(value)


class Anything:
    """Checked where it is used (``random_state``: scikit-learn's ``check_random_state``)."""

    def check(self, name, value):
        return value


def validate_parameters(constraints: dict, values: dict) -> dict:
    """Check every ``values[name]`` against ``constraints[name]``; returns the normalized values."""
    return {name: constraints[name].check(name, value) for name, value in values.items()}
