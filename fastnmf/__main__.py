"""``python -m fastnmf``: see :mod:`fastnmf.cli`."""

from .cli import main

raise SystemExit(main())
