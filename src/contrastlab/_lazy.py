"""Names of a package imported on first use (PEP 562), so that importing the package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (``"module"`` or ``"module:attribute"``).

    Example:
        >>> getattr_ = lazy_attributes("pkg", {"dumps": "json:dumps"})
        >>> getattr_("dumps")({"a": 1})
        '{"a": 1}'
    """

    def getattr_(name: str) -> Any:
        if name in table:
            module, _, attr = table[name].partition(":")
            loaded = importlib.import_module(module)
            return getattr(loaded, attr) if attr else loaded
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_
