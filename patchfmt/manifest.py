"""The `manifest.json` of a `ppatch/1` file: pydantic models in strict mode, and their rules.

`Manifest.from_json_bytes` reports every problem at once (pypa/installer's
`RecordEntry.from_elements` style): a vendor fixes a manifest in one round, not one per error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from patchfmt.blob_paths import is_sha256_hex
from patchfmt.canonical import canonical_json, loads_strict
from patchfmt.errors import (
    InvalidManifestError,
    InvalidNameError,
    InvalidVersionError,
    UnsupportedFormatError,
)
from patchfmt.names import (
    MAX_NAME_PART_LENGTH,
    NAME_PART_PATTERN,
    parse_package_name,
    validate_name_part,
)
from patchfmt.versions import parse_version
from patchfmt.weights import array_from_weights, inspect_weights

__all__ = [
    "DOMAINS",
    "FORMAT",
    "MAX_MANIFEST_BYTES",
    "MIN_PPATCH_VERSION",
    "WEIGHTS_ENTRY",
    "BaseModelRef",
    "FileDigest",
    "Manifest",
    "PatchSpec",
    "build_manifest",
    "check_format_version",
    "is_fingerprint",
]

FORMAT = "ppatch/1"
WEIGHTS_ENTRY = "weights.safetensors"
DOMAINS = ("toxicity", "bias", "harm")
MAX_MANIFEST_BYTES = 1024 * 1024
MIN_PPATCH_VERSION = "0.1.0"
MAX_VIRTUAL_TOKENS = 4096
MAX_HIDDEN_SIZE = 65536
MAX_FILE_SIZE = 2**32 - 1  # ZIP without zip64

_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_FORMAT_LIKE = re.compile(r"ppatch/(\d+)")
# Control characters, and lone surrogates, which have no UTF-8 encoding.
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def is_fingerprint(text: object) -> bool:
    """True for `sha256:` followed by 64 lowercase hex digits."""
    return isinstance(text, str) and _FINGERPRINT.fullmatch(text) is not None


def check_format_version(parsed: Mapping[str, Any]) -> None:
    """Raise `UnsupportedFormatError` for a `format` of `ppatch/N` with N other than 1."""
    declared = parsed.get("format")
    if isinstance(declared, str) and declared != FORMAT and _FORMAT_LIKE.fullmatch(declared):
        raise UnsupportedFormatError(declared, FORMAT)


def _check_fingerprint(value: str) -> str:
    if not is_fingerprint(value):
        raise ValueError("expected 'sha256:' followed by 64 lowercase hex digits")
    return value


def _one_line_text(value: str, limit: int) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters; at most {limit}")
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters or lone surrogates")
    return value


_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class FileDigest(BaseModel):
    model_config = _STRICT

    sha256: str
    size: Annotated[int, Field(ge=0, le=MAX_FILE_SIZE)]

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not is_sha256_hex(value):
            raise ValueError("expected 64 lowercase hex digits")
        return value


class BaseModelRef(BaseModel):
    model_config = _STRICT

    id: str
    revision: str | None = None
    fingerprint: str
    compatible_fingerprints: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _one_line_text(value, 256)

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        return None if value is None else _one_line_text(value, 256)

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        return _check_fingerprint(value)

    @field_validator("compatible_fingerprints")
    @classmethod
    def _compatible(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if not is_fingerprint(item)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not 'sha256:' followed by 64 lowercase hex digits")
        if len(set(value)) != len(value):
            raise ValueError("lists a fingerprint more than once")
        return value


class PatchSpec(BaseModel):
    model_config = _STRICT

    kind: Literal["prompt_tuning"]
    num_virtual_tokens: Annotated[int, Field(ge=1, le=MAX_VIRTUAL_TOKENS)]
    hidden_size: Annotated[int, Field(ge=1, le=MAX_HIDDEN_SIZE)]
    dtype: Literal["float32", "float16", "bfloat16"]


def _check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        canonical_json(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"must hold only finite JSON values ({error})") from None
    return value


class Manifest(BaseModel):
    """Every field DESIGN.md names; see docs/format.md for the rule of each."""

    model_config = _STRICT

    format: str
    name: str
    version: str
    domain: str
    summary: str
    license: str
    base_model: BaseModelRef
    patch: PatchSpec
    files: dict[str, FileDigest]
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    created: str
    requires: str

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != FORMAT:
            raise ValueError(f"expected {FORMAT!r}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            parse_package_name(value)
        except InvalidNameError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("version", "requires")
    @classmethod
    def _semver(cls, value: str) -> str:
        try:
            parse_version(value)
        except InvalidVersionError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if value in DOMAINS:
            return value
        word = value.removeprefix("custom:")
        if word != value:
            try:
                validate_name_part(word, what="custom domain word")
                return value
            except InvalidNameError:
                pass
        raise ValueError(
            "expected 'toxicity', 'bias', 'harm' or 'custom:<word>' with <word> matching "
            f"{NAME_PART_PATTERN.pattern} (at most {MAX_NAME_PART_LENGTH} characters)"
        )

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        return _one_line_text(value, 512)

    @field_validator("license")
    @classmethod
    def _license(cls, value: str) -> str:
        return _one_line_text(value, 128)

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, FileDigest]) -> dict[str, FileDigest]:
        if set(value) != {WEIGHTS_ENTRY}:
            raise ValueError(
                f"expected exactly one entry, {WEIGHTS_ENTRY!r}; found {sorted(value)!r}"
            )
        return value

    @field_validator("training", "evaluation")
    @classmethod
    def _json_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_json_object(value)

    @field_validator("created")
    @classmethod
    def _created(cls, value: str) -> str:
        try:
            if not _CREATED.fullmatch(value):
                raise ValueError
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ValueError(
                "expected an RFC 3339 UTC time without fractions, e.g. '2026-11-28T10:00:00Z'"
            ) from None
        return value

    # -- reading and writing -------------------------------------------------------------------

    @classmethod
    def from_json_bytes(cls, data: bytes, *, source: str = "manifest.json") -> Manifest:
        """Parse and validate; `InvalidManifestError` listing every problem found."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                [f"is {len(data)} bytes; at most {MAX_MANIFEST_BYTES}"], source=source
            )
        try:
            parsed = loads_strict(data)
        except ValueError as error:
            raise InvalidManifestError([f"not valid UTF-8 JSON ({error})"], source=source) from None
        return cls.from_object(parsed, source=source)

    @classmethod
    def from_object(cls, parsed: Any, *, source: str = "manifest.json") -> Manifest:
        """Validate an already parsed JSON value (e.g. from TOML), collecting every problem."""
        if not isinstance(parsed, dict):
            raise InvalidManifestError(
                [f"must be a JSON object, found {type(parsed).__name__}"], source=source
            )
        check_format_version(parsed)
        try:
            return cls.model_validate(parsed, strict=True)
        except ValidationError as error:
            raise InvalidManifestError(_describe(error), source=source) from None

    def canonical_bytes(self) -> bytes:
        """The bytes stored as `manifest.json`, hashed and signed."""
        return canonical_json(self.model_dump(mode="json"))

    def accepts_fingerprint(self, fingerprint: str) -> bool:
        """True for the base model's fingerprint or one the vendor lists as compatible."""
        return fingerprint == self.base_model.fingerprint or (
            fingerprint in self.base_model.compatible_fingerprints
        )

    @property
    def namespace(self) -> str:
        return parse_package_name(self.name)[0]


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        kind = item["type"]
        if kind == "missing":
            problems.append(f"{location}: required field is missing")
        elif kind == "extra_forbidden":
            problems.append(f"{location}: unknown field (not allowed under {FORMAT!r})")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{location}: {message} (found {_short_repr(item['input'])})")
    return problems


def _created_now() -> str:
    # SOURCE_DATE_EPOCH (reproducible-builds.org) makes packing without `created` repeatable.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    fields: Mapping[str, Any], weights: bytes, *, source: str = "manifest.json"
) -> Manifest:
    """A manifest from the human fields and the weights: fills `format`, `patch`, `files`,
    `created` (if absent) and `requires` (if absent). `patch` or `files` given in `fields` must
    agree with the weights."""
    info = inspect_weights(weights)
    array_from_weights(weights)  # refuses NaN and Inf before anything is signed
    computed = {
        "patch": {
            "kind": "prompt_tuning",
            "num_virtual_tokens": info.shape[0],
            "hidden_size": info.shape[1],
            "dtype": info.dtype,
        },
        "files": {
            WEIGHTS_ENTRY: {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights)}
        },
    }
    data = dict(fields)
    problems = []
    for key, value in computed.items():
        if key in data and data[key] != value:
            problems.append(
                f"{key}: {_short_repr(data[key])} disagrees with the weights, which give "
                f"{_short_repr(value)} (leave it out and it is filled in)"
            )
        data[key] = value
    if problems:
        raise InvalidManifestError(problems, source=source)
    data.setdefault("format", FORMAT)
    data.setdefault("created", _created_now())
    data.setdefault("requires", MIN_PPATCH_VERSION)
    return Manifest.from_object(data, source=source)
