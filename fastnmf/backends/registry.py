"""The registry: which implementation runs which layout, and what it can do — checked in one place.

Entries are keyed by ``(implementation, layout class)``; a lookup walks the layout's class hierarchy, so
the generic torch implementation registered for :class:`fastnmf.layouts.Layout` runs every layout that has
no entry of its own (a new layout needs no registration). ``solvers`` is the capability flag checked by
``fastnmf.backends.resolve_backend``; ``make(precision)`` builds the :class:`~fastnmf.backends.contract.Backend`
(lazily: the Triton implementation compiles, or interprets, its kernels when first imported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Entry", "register", "find"]


@dataclass(frozen=True)
class Entry:
    implementation: str
    layout: type
    make: Callable  # precision -> Backend
    solvers: frozenset = frozenset({"mu", "hals", "newton"})


_ENTRIES: dict[tuple[str, type], Entry] = {}


def register(implementation: str, layout: type, make: Callable, *, solvers=("mu", "hals", "newton")) -> Entry:
    """Register ``make`` as ``implementation`` for ``layout`` (and its subclasses without an entry)."""
    entry = Entry(implementation, layout, make, frozenset(solvers))
    _ENTRIES[(implementation, layout)] = entry
    return entry


def find(implementation: str, layout: type) -> Entry | None:
    """The entry of the closest class in ``layout``'s hierarchy, or None."""
    for cls in layout.__mro__:
        entry = _ENTRIES.get((implementation, cls))
        if entry is not None:
            return entry
    return None
