"""Cloud providers behind one interface (`provision.providers.base.Provider`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for a provider package: each name of ``exports`` is imported from its
    submodule on first use, so importing one light submodule (``options``, which `provision.profiles` composes
    the profile of) never imports the provider, its SDK seams, or `provision.providers.base`.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> the submodule (relative to ``package``) that defines it.

    Returns:
        The ``__getattr__`` function; it raises AttributeError for any other name (so ``from package import
        submodule`` still imports the submodule).
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
