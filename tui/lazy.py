"""Packages whose names load their module when first asked for (PEP 562).

The screens and the widgets are exported this way: the first paint needs only the Runs panel and
its few widgets, and the rest (rich's syntax highlighting, Textual's ``Tree`` and ``Sparkline``…)
loads with the panel that shows it.
"""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name in ``where`` from the module named there."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(name)

    return __getattr__
