"""Rules the registry server and the client both obey, kept once in patchfmt: error codes,
blob paths, the version sort key and the name check."""

from __future__ import annotations

import pytest

from patchfmt.blob_paths import BLOB_ROUTE, blob_url
from patchfmt.error_codes import DEFAULT_STATUS, ErrorCode, code_for_status
from patchfmt.names import MAX_NAME_PART_LENGTH, is_name_part
from patchfmt.versions import is_prerelease, version_sort_key


def test_every_error_code_has_a_default_status() -> None:
    assert set(DEFAULT_STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "unauthorized"),
        (404, "not_found"),
        (413, "payload_too_large"),
        (422, "invalid_request"),
        (418, "invalid_request"),
        (503, "database_unavailable"),
        (502, "internal"),
    ],
)
def test_an_answer_without_a_code_is_named_by_its_status(status: int, code: str) -> None:
    assert code_for_status(status) == code


def test_the_blob_url_fills_the_blob_route() -> None:
    assert blob_url("ab" * 32) == "/blobs/sha256/" + "ab" * 32
    assert BLOB_ROUTE.format(digest="x") == blob_url("x")


def test_versions_sort_by_precedence_then_text() -> None:
    texts = ["1.0.0", "1.0.0+b", "1.0.0-rc.1", "0.9.0", "1.0.0+a", "1.10.0"]
    assert sorted(texts, key=version_sort_key) == [
        "0.9.0",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.0+a",
        "1.0.0+b",
        "1.10.0",
    ]
    assert is_prerelease("1.0.0-rc.1")
    assert not is_prerelease("1.0.0+rc")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("acme", True),
        ("a-b_c9", True),
        ("x" * MAX_NAME_PART_LENGTH, True),
        ("x" * (MAX_NAME_PART_LENGTH + 1), False),
        ("Acme", False),
        ("-acme", False),
        ("a.b", False),
        ("", False),
    ],
)
def test_the_name_check(text: str, valid: bool) -> None:
    assert is_name_part(text) is valid
