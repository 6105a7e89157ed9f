"""Namespace and package names as they appear in URLs, checked with patchfmt's rule.

A name part is lowercase `[a-z0-9][a-z0-9_-]*`, at most 64 characters (patchfmt.names), so a
valid name is one URL path segment with no room for path tricks (`..`, `/`, `%2e`, uppercase
look-alikes). The database enforces the same rule (registry_server.models).
"""

from __future__ import annotations

from patchfmt.errors import InvalidNameError
from patchfmt.names import validate_name_part

__all__ = ["name_problem"]


def name_problem(kind: str, value: str) -> str | None:
    """Why `value` is not a valid `kind` name ("namespace", "package"), or None when it is."""
    try:
        validate_name_part(value, what=f"{kind} name")
    except InvalidNameError as error:
        return str(error)
    return None
