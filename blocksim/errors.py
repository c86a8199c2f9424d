"""Error types shared by the whole package.

``InputError`` marks bad user input (a config field, a CLI argument, a function parameter). Its
message is one line: the field, the value and what is allowed. The CLI prints it and exits with code 2.
"""

from __future__ import annotations

import difflib

__all__ = ["InputError", "NonFiniteError", "suggest"]


class InputError(ValueError):
    """Invalid user input. The message names the field, the value and the allowed range in one line."""


class NonFiniteError(InputError):
    """An observable came out NaN or ±inf: the run stops before writing it (one line, exit code 2).

    The message names the step, the dataset and the count; completed steps stay in the partial file.
    """


def suggest(key: str, valid) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid key, or ``""`` if none is close."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
