"""Blob downloads: immutable caching, range requests, unknown digests."""

from __future__ import annotations

import pytest

from registry_server.ranges import RangeNotSatisfiableError, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=4-2", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=x-y", 10, None),
    ],
)
def test_parse_range(header, size, expected) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header, size) -> None:
    with pytest.raises(RangeNotSatisfiableError, match="outside"):
        parse_range(header, size)


@pytest.fixture
def blob(acme, make_patch):
    data = make_patch()
    url = acme.upload(data).json()["url"]
    return acme, url, data


def test_blob_is_immutable_and_cacheable(blob) -> None:
    acme, url, data = blob
    response = acme.client.get(url)
    assert response.content == data
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(data))
    etag = response.headers["etag"]
    assert acme.client.get(url, headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-9", 0, 9), ("bytes=100-", 100, None), ("bytes=-16", -16, None)],
)
def test_blob_range_requests(blob, header, first, last) -> None:
    acme, url, data = blob
    response = acme.client.get(url, headers={"Range": header})
    assert response.status_code == 206
    expected = data[first : None if last is None else last + 1]
    assert response.content == expected
    start = first if first >= 0 else len(data) + first
    assert (
        response.headers["content-range"]
        == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    )


def test_blob_range_past_the_end_is_416(blob) -> None:
    acme, url, data = blob
    response = acme.client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"
    assert response.json()["error"]["code"] == "invalid_request"


def test_head_gives_headers_only(blob) -> None:
    acme, url, data = blob
    response = acme.client.head(url)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.content == b""


@pytest.mark.parametrize(
    ("digest", "status"),
    [("0" * 64, 404), ("A" * 64, 422), ("abc", 422), ("../../etc/passwd", 404), ("0" * 65, 422)],
)
def test_unknown_or_invalid_digests(acme, digest, status) -> None:
    response = acme.client.get(f"/blobs/sha256/{digest}")
    assert response.status_code == status
    assert response.json()["error"]["code"] in ("not_found", "invalid_request")
