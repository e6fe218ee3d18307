"""Dotted config keys, the one place they are parsed and written: an :class:`Override` is
``objective.supcon.weight=0.2`` read into its key path and value (and written back the same way);
:func:`flat_settings` is a nested recipe as those keys. The config, the trainer (which weights an override
set), the verdict (its baseline arm) and the sweep (its grid points) all go through here.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["ConfigError", "Override", "flat_settings", "parse_scalar"]


class ConfigError(ValueError):
    """A recipe or override that does not validate; the message names every bad key."""


@dataclass(frozen=True)
class Override:
    """One ``key.path=value`` setting, as the command line and the recipes' overrides write it.

    Example:
        >>> o = Override.parse("objective.supcon.weight=0.2")
        >>> o.path, o.value, o.weight_of
        (('objective', 'supcon', 'weight'), 0.2, 'supcon')
        >>> o.key, str(o.with_value(0))
        ('objective.supcon.weight', 'objective.supcon.weight=0')
    """

    path: tuple[str, ...]
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        """Reads ``key.path=value``; the value parses as YAML (:func:`parse_scalar`).

        Raises:
            ConfigError: no "=", an empty key segment, or a value that is not valid YAML.
        """
        if "=" not in text:
            raise ConfigError(f"override {text!r} must look like key.path=value (e.g. trainer.epochs=5)")
        key, value = text.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {text!r} has an empty key segment")
        try:
            return cls(tuple(key.split(".")), parse_scalar(value))
        except ConfigError as exc:
            raise ConfigError(f"override {text!r}: {exc}") from None

    @classmethod
    def of(cls, key: str, value: Any) -> Override:
        """The override setting the dotted ``key`` to ``value``."""
        return cls(tuple(key.split(".")), value)

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def weight_of(self) -> str | None:
        """The term whose weight this sets (``objective.<term>.weight``), else None."""
        weight = len(self.path) == 3 and self.path[0] == "objective" and self.path[2] == "weight"
        return self.path[1] if weight else None

    @property
    def term(self) -> str | None:
        """The term this sets its weight of, or replaces whole (``objective.<term>=...``), else None."""
        whole = len(self.path) == 2 and self.path[0] == "objective"
        return self.weight_of or (self.path[1] if whole else None)

    def with_value(self, value: Any) -> Override:
        return Override(self.path, value)

    def __str__(self) -> str:
        """``key=value``, as the command line writes it: a string bare, anything else as JSON (which
        :meth:`parse` reads back as the same value)."""
        text = self.value if isinstance(self.value, str) else json.dumps(self.value)
        return f"{self.key}={text}"


#: Words YAML 1.1 turns into booleans that are ordinary values here (trainer.amp=off).
_YAML11_BOOLEANS = {"on", "off", "yes", "no", "y", "n"}


def parse_scalar(text: str) -> Any:
    """A command-line value: YAML (numbers, true/false, null, lists), except that "1e-3" is a number and
    "off"/"on"/"yes"/"no" stay words, as a user typing them means.

    Example:
        >>> [parse_scalar(v) for v in ("0.2", "1e-3", "off", "true", "[1, 2]", "")]
        [0.2, 0.001, 'off', True, [1, 2], None]
    """
    if text == "":
        return None
    if text.strip().lower() in _YAML11_BOOLEANS:
        return text.strip()
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # "[1" (unclosed), "!!python/object:os.system" (a tag we never load)
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(
            f"the value {text!r} is not valid YAML ({problem}); quote it, e.g. key='[1, 2]' for a list"
        ) from None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string; users mean the number
        with contextlib.suppress(ValueError):
            parsed = float(parsed)
    return parsed


def flat_settings(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{dotted key: leaf}`` (an empty mapping is a leaf); a recipe's keys as the
    command line writes them.

    Example:
        >>> flat_settings({"trainer": {"lr": 0.1, "views": {}}, "name": "x"})
        {'trainer.lr': 0.1, 'trainer.views': {}, 'name': 'x'}
    """
    if not (isinstance(settings, dict) and settings):
        return {prefix: settings}
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out.update(flat_settings(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
