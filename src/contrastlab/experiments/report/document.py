"""The pieces a report is made of (sections of tables, figures, badges and links) and the small helpers
that format numbers into them; the section builders fill them, the template renders them."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

__all__ = ["Badge", "Cell", "Figure", "Headline", "Link", "Report", "Section", "Table", "cell", "figure",
           "tidy", "verdict_css"]  # fmt: skip


@dataclass
class Cell:
    text: str
    sort: str = ""
    css: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    png: str  # base64
    caption: str


@dataclass
class Headline:
    text: str
    css: str = ""


@dataclass
class Badge:
    """The answer for one primary metric, in large type: the call, the effect and which way is better."""

    word: str
    metric: str
    effect: str
    interval: str
    better: str
    css: str = ""


@dataclass
class Link:
    """A link to a file of the result (its path relative to the result's directory)."""

    text: str
    path: str


@dataclass
class Section:
    title: str
    badges: list[Badge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower())


@dataclass
class Report:
    title: str
    kind: str
    source: str
    sections: list[Section]


def cell(value: Any, *, digits: int = 4, css: str = "") -> Cell:
    if isinstance(value, float | int | np.floating) and not isinstance(value, bool):
        number = float(value)
        text = "nan" if np.isnan(number) else f"{number:.{digits}g}"
        return Cell(text=text, sort=repr(number), css=css)
    return Cell(text=str(value), sort=str(value), css=css)


def figure(draw: Callable[[BinaryIO], None], caption: str) -> Figure:
    buffer = io.BytesIO()
    draw(buffer)
    return Figure(png=base64.b64encode(buffer.getvalue()).decode("ascii"), caption=caption)


def verdict_css(verdict: str) -> str:
    return {"helped": "helped", "hurt": "hurt", "equivalent": "equivalent"}.get(verdict, "none")


def tidy(value: float) -> float:
    """A difference with its float noise (below 1e-7 of one) shown as the 0 it is."""
    return 0.0 if abs(value) < 1e-7 else value
