"""User code for the command line: modules or files that register models, datasets and metrics.

``contrastlab train recipe.yaml --plugin my_models.py --plugin mypackage.contrastlab_plugin`` imports each
before the recipe is read, so ``model.name`` and ``data.name`` can name what they register. Installed
packages can declare an entry point in the group ``contrastlab.plugins`` (loaded by every command). The
plugins a run loaded are recorded in its ``config.yaml``, and ``resume`` loads them again.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginImportError",
    "load_entry_points",
    "load_plugins",
    "loaded",
]

ENTRY_POINT_GROUP = "contrastlab.plugins"
_loaded: list[str] = []


class PluginError(RuntimeError):
    """A plugin that cannot be found."""


class PluginImportError(RuntimeError):
    """A plugin that raised while it was imported: a bug in the plugin, reported with its traceback (the
    cause) and a last line naming the plugin and the command."""


def loaded() -> list[str]:
    """The plugins loaded in this process, in order (what a run records)."""
    return list(_loaded)


def load_plugins(specs: Iterable[str], *, command: str = "contrastlab") -> None:
    """Imports each plugin: a ``.py`` file path or an importable module name (each once per process).

    Args:
        command: What loads them, for the error of a plugin that fails (``contrastlab train``).

    Raises:
        PluginError: no such file or module.
        PluginImportError: the plugin raised; its error is the cause, with its traceback.
    """
    for spec in specs:
        if spec in _loaded:
            continue
        path = Path(spec)
        if spec.endswith(".py"):
            if not path.is_file():
                raise PluginError(f"--plugin {spec}: no such file")
            name = f"contrastlab_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"--plugin {spec}: not a Python file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            with _named(spec, command):  # an error in the plugin keeps its own traceback
                module_spec.loader.exec_module(module)
            spec = str(path.resolve())
        else:
            if importlib.util.find_spec(spec) is None:
                raise PluginError(f"--plugin {spec}: no module of that name (give a module or a .py file)")
            with _named(spec, command):
                importlib.import_module(spec)
        _loaded.append(spec)


@contextmanager
def _named(spec: str, command: str) -> Iterator[None]:
    """An error raised while a plugin is imported keeps its traceback, with one line after it naming the
    plugin and the command that loaded it."""
    try:
        yield
    except Exception as exc:
        raise PluginImportError(f"`{command}` could not import the plugin {spec}: it raised "
                                f"{type(exc).__name__} (the plugin's traceback is above)") from exc


def load_entry_points() -> None:
    """Imports every installed package's ``contrastlab.plugins`` entry point."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.value in _loaded:
            continue
        point.load()
        _loaded.append(point.value)
