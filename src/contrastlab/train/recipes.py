"""Reading recipes: a YAML file (``extends: base.yaml`` read first and merged under it), its name, the recipe
it extends, and overrides (``key.path=value``) set on its settings. :func:`~contrastlab.train.config.
load_config` validates the result.

The built-in recipes ship inside the package (``contrastlab/recipes``, :func:`builtin_recipes`): a recipe
given by name (``blobs_supcon``, ``text/rt_supcon``) is found there from any folder, and so is an
``extends:`` that names no file beside the extending recipe.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contrastlab._io import reading
from contrastlab.train.keys import ConfigError, Override

__all__ = ["BuiltinRecipe", "apply_overrides", "builtin_recipes", "extended_recipe", "find_recipe",
           "read_recipe", "recipe_name", "recipe_table"]  # fmt: skip

#: Where the built-in recipes live inside the package.
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


@dataclass(frozen=True)
class BuiltinRecipe:
    """A recipe that ships with contrastlab: its name (its path under ``contrastlab/recipes`` without
    ``.yaml``), file, and what its header comment says it is for."""

    name: str
    path: Path

    @property
    def purpose(self) -> str:
        """The recipe's first comment line (its header says what it is for)."""
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line.strip():
                break
        return ""

    def settings(self) -> dict[str, Any]:
        """The recipe's settings with what it extends merged in (not validated)."""
        return read_recipe(self.path)


def builtin_recipes() -> dict[str, BuiltinRecipe]:
    """Every built-in recipe by name, sorted (``blobs_supcon``, ``fusion/mp_gap_clip``, ``text/rt_ce``)."""
    found = sorted(RECIPES_DIR.rglob("*.yaml"))
    return {(n := p.relative_to(RECIPES_DIR).with_suffix("").as_posix()): BuiltinRecipe(n, p) for p in found}


def recipe_table(width: int = 110) -> str:
    """The built-in recipes as a table: name, data, model and (cut to ``width``) what each is for."""
    rows = []
    for name, recipe in builtin_recipes().items():
        settings = recipe.settings()
        data, model = settings.get("data", {}), settings.get("model", {})
        rows.append((name, str(data.get("name", "")), str(model.get("name", "mlp")), recipe.purpose))
    head = ("name", "data", "model", "what it is for")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = []
    for r in [head, *rows]:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True))
        lines.append(f"{line}  {r[3][: max(20, width - len(line))]}".rstrip())
    return "\n".join(lines)


def find_recipe(recipe: str | Path, *, beside: Path | None = None) -> Path:
    """The recipe file ``recipe`` names: a path (relative to ``beside``'s folder when given, else to the
    working directory; ``.yaml`` may be left out) when that file exists, else a built-in recipe by name
    (``blobs_supcon``, with or without ``.yaml``; ``text/rt_supcon`` or, when unambiguous, ``rt_supcon``;
    ``recipes/...`` as the repository writes it).

    Raises:
        ConfigError: neither a file nor a built-in recipe (with the closest built-in names).
    """
    path = (beside.parent / recipe) if beside is not None else Path(recipe)
    for candidate in (path, path.with_name(f"{path.name}.yaml")) if not path.suffix else (path,):
        if candidate.is_file():
            return candidate
    builtins = builtin_recipes()
    name = Path(recipe).as_posix().removesuffix(".yaml").removesuffix(".yml").removeprefix("recipes/")
    by_stem = {r.path.stem: r for r in builtins.values()}
    stems = [r.path.stem for r in builtins.values()]
    if name in builtins:
        return builtins[name].path
    if name in by_stem and stems.count(name) == 1:
        return by_stem[name].path
    close = difflib.get_close_matches(name, [*builtins, *stems], n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
    raise ConfigError(f"recipe {str(path)!r} does not exist, and no built-in recipe is named {name!r}{hint} "
                      "(contrastlab recipes lists the built-in ones)")  # fmt: skip


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of ``raw`` with each dotted override set (intermediate mappings are created)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        override = Override.parse(text)
        path, value = list(override.path), override.value
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' holds {child!r}, not a mapping")
            node = child
        node[path[-1]] = value
    return out


def recipe_name(recipe: str | Path | dict[str, Any] | None) -> str:
    """What a recipe is called: its ``name`` (a mapping's, default "run"), or its file's stem.

    Example:
        >>> recipe_name("recipes/blobs_supcon.yaml"), recipe_name({"name": "mine"}), recipe_name({})
        ('blobs_supcon', 'mine', 'run')
    """
    if isinstance(recipe, dict):
        return str(recipe.get("name") or "run")
    return Path(recipe).stem if recipe is not None else "run"


def extended_recipe(recipe: str | Path | dict[str, Any]) -> Path | None:
    """The recipe file that a recipe file extends (its ``extends:``, relative to it); None when it extends
    none, and for a mapping given from Python (which cannot extend a file).

    Raises:
        ConfigError: the recipe cannot be read, or names no single file.
    """
    if isinstance(recipe, dict):
        return None
    path = find_recipe(recipe)
    parent = _load_recipe_file(path).get("extends")
    if parent is None:
        return None
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must name one recipe file, got {parent!r}")
    return find_recipe(parent, beside=path)


def _load_recipe_file(path: Path) -> dict[str, Any]:
    """One recipe file's mapping, as written (its ``extends`` not followed).

    Raises:
        ConfigError: the file cannot be read, is not YAML, is empty or holds no mapping of settings.
    """
    with reading(f"recipe {str(path)!r}", "a YAML recipe (a mapping of settings)", error=ConfigError):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if loaded is None or loaded == {}:  # an empty file would train the built-in defaults
        raise ConfigError(
            f"recipe {str(path)!r} is empty (no settings); a recipe names at least its data, e.g. "
            "`data: {name: blobs}` (contrastlab config prints every setting with its default)"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, got {type(loaded).__name__}")
    wrong = [key for key in loaded if not isinstance(key, str)]
    if wrong:
        raise ConfigError(f"{path}: setting names are words, got {wrong[0]!r}")
    return loaded


def read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's mapping; ``extends: other.yaml`` (relative to the recipe) is read first and this recipe's
    settings are merged over it, mapping by mapping. A recipe that names another dataset (``data.name``) or
    model (``model.name``) than the one it extends does not inherit that one's ``options``."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"recipes extend each other in a cycle: {chain}")
    raw = _load_recipe_file(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must name one recipe file, got {parent!r}")
    base = read_recipe(find_recipe(parent, beside=path), (*seen, path.resolve()))
    for part in ("data", "model"):  # options belong to the dataset (model) named: another name starts afresh
        mine, theirs = raw.get(part), base.get(part)
        if isinstance(mine, dict) and isinstance(theirs, dict) and mine.get("name", theirs.get("name")) != \
                theirs.get("name"):  # fmt: skip
            base = {**base, part: {k: v for k, v in theirs.items() if k != "options"}}
    return _merge(base, raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested mappings merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
