"""Errors a user causes, which the command line reports as one paragraph (exit code 2) instead of a
traceback. Everything else is a bug and keeps its traceback."""

from __future__ import annotations

__all__ = ["UnknownNameError"]


class UnknownNameError(KeyError, ValueError):
    """A dataset, model, term or module name that is not registered; the message lists the known ones.

    A KeyError for ``mapping[name]`` callers, a ValueError for the rest; printed without KeyError's quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
