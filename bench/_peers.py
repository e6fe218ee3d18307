"""Loading the peer libraries the tests and benchmarks compare against.

lightly and open_clip import torchvision from their package ``__init__``, and no torchvision wheel imports
beside the CPU torch we pin. Their loss modules themselves are plain torch, so we load just those modules
with bare parent packages. If even that fails (a peer moved its code), ImportError says why.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bare_package(name: str, directory: Path) -> None:
    if name in sys.modules:
        return
    module = types.ModuleType(name)
    module.__path__ = [str(directory)]
    sys.modules[name] = module


@contextmanager
def _torchvision_ops_stub() -> Iterator[None]:
    """lightly's model utils import ``torchvision.ops.StochasticDepth`` at module level; its losses never
    call it. While the peer module loads, a stub stands in if the real torchvision cannot be imported; it
    is removed again so that nothing else in the test session sees it."""
    try:
        import torchvision.ops
    except Exception:
        pass
    else:
        yield
        return
    names = ("torchvision", "torchvision.ops")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    torchvision = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.StochasticDepth = type("StochasticDepth", (), {})  # type: ignore[attr-defined]
    torchvision.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": torchvision, "torchvision.ops": ops})
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@functools.cache
def import_peer(package: str, submodule: str) -> types.ModuleType:
    """Imports ``package.submodule`` with every package ``__init__`` of ``package`` left unexecuted.

    Raises:
        ImportError: the package is not installed, or the module needs something that is not.
    """
    spec = importlib.util.find_spec(package) if package not in sys.modules else sys.modules[package].__spec__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed (scripts/test.sh installs it with --no-deps)")
    root = Path(next(iter(spec.submodule_search_locations)))
    for init in sorted(root.rglob("__init__.py")):
        relative = init.parent.relative_to(root).parts
        _bare_package(".".join([package, *relative]), init.parent)
    try:
        with _torchvision_ops_stub():
            return importlib.import_module(f"{package}.{submodule}")
    except ImportError as exc:
        raise ImportError(f"cannot import {package}.{submodule} without its package __init__: {exc}") from exc
