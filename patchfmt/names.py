"""Package names and `[namespace/]name[@range]` specs.

Each part of a name is lowercase ASCII: it starts with a letter or digit and continues with
letters, digits, `-` or `_`, at most 64 characters per part. A full name is `namespace/name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchfmt.errors import InvalidNameError, InvalidRangeError
from patchfmt.versions import VersionRange

__all__ = [
    "MAX_NAME_PART_LENGTH",
    "NAME_PART_PATTERN",
    "PackageSpec",
    "is_name_part",
    "parse_package_name",
    "validate_name_part",
]

MAX_NAME_PART_LENGTH = 64
NAME_PART_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
_RULE = (
    f"each part must be lowercase [a-z0-9][a-z0-9_-]* and at most {MAX_NAME_PART_LENGTH} characters"
)


def is_name_part(text: str) -> bool:
    """True when `text` follows the rule (the check, without building an error message)."""
    return len(text) <= MAX_NAME_PART_LENGTH and NAME_PART_PATTERN.fullmatch(text) is not None


def validate_name_part(part: str, *, what: str = "name") -> str:
    """Return `part` if it follows the rule, else raise `InvalidNameError`."""
    if not isinstance(part, str):
        raise InvalidNameError(f"{what} must be a string, found {part!r}")
    if len(part) > MAX_NAME_PART_LENGTH:
        raise InvalidNameError(
            f"{what} {part[:20]!r}... is {len(part)} characters; at most {MAX_NAME_PART_LENGTH}"
        )
    if not NAME_PART_PATTERN.fullmatch(part):
        raise InvalidNameError(f"invalid {what} {part!r}: {_RULE}")
    return part


def parse_package_name(text: str) -> tuple[str, str]:
    """Split a full `namespace/name` into its validated parts."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise InvalidNameError(f"invalid package name {text!r}: expected 'namespace/name'; {_RULE}")
    namespace, name = text.split("/")
    try:
        validate_name_part(namespace, what="namespace")
        validate_name_part(name, what="name")
    except InvalidNameError as error:
        raise InvalidNameError(
            f"invalid package name {text!r} (expected 'namespace/name'): {error}"
        ) from None
    return namespace, name


@dataclass(frozen=True)
class PackageSpec:
    """What a user asks to install: `[namespace/]name[@range]`."""

    namespace: str | None
    name: str
    range: VersionRange

    @classmethod
    def parse(cls, text: str) -> PackageSpec:
        if not isinstance(text, str):
            raise InvalidNameError(f"package spec must be a string, found {text!r}")
        name_part, at, range_text = text.partition("@")
        if at and not range_text.strip():
            raise InvalidNameError(
                f"invalid package spec {text!r}: nothing after '@' (write 'name' or "
                "'name@RANGE', e.g. 'name@1.2' or 'name@latest')"
            )
        if name_part.count("/") > 1:
            raise InvalidNameError(
                f"invalid package spec {text!r}: expected '[namespace/]name[@range]'"
            )
        try:
            if "/" in name_part:
                namespace, name = parse_package_name(name_part)
                namespace_or_none: str | None = namespace
            else:
                namespace_or_none, name = None, validate_name_part(name_part)
            version_range = VersionRange.parse(range_text)
        except (InvalidNameError, InvalidRangeError) as error:
            raise type(error)(f"invalid package spec {text!r}: {error}") from None
        return cls(namespace=namespace_or_none, name=name, range=version_range)

    @property
    def full_name(self) -> str | None:
        """`namespace/name`, or None when the spec gives no namespace."""
        return None if self.namespace is None else f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        base = self.full_name or self.name
        return f"{base}@{self.range.text}" if self.range.text else base
