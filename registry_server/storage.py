"""Blob storage behind one interface: a local directory or an S3-compatible bucket.

Blobs are immutable and addressed by the sha256 of their bytes, so writing the same blob twice
is harmless and several server processes can share one store without coordinating.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from patchfmt.blob_paths import is_sha256_hex

__all__ = [
    "BlobNotFoundError",
    "BlobStorage",
    "LocalStorage",
    "S3Storage",
    "StorageError",
    "open_storage",
]

CHUNK = 256 * 1024


class StorageError(Exception):
    """The store could not be reached or failed; the request is answered 503."""


class BlobNotFoundError(StorageError, LookupError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"no blob with sha256 {digest!r} in storage")
        self.digest = digest


def _checked(digest: str) -> str:
    # Digests reach paths and object keys: refuse anything but 64 lowercase hex digits.
    if not is_sha256_hex(digest):
        raise ValueError(f"invalid sha256 digest {digest!r}: expected 64 lowercase hex digits")
    return digest


class BlobStorage(Protocol):
    def put(self, digest: str, source: Path) -> None:
        """Store the file `source` (whose sha256 is `digest`) under `digest`."""

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int:
        """The blob's size in bytes; `BlobNotFoundError` when absent."""

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes `start` to `end` inclusive (to the last byte when `end` is None)."""

    def delete(self, digest: str) -> None:
        """Remove the blob; absent is fine."""

    def describe(self) -> str: ...


class LocalStorage:
    """Blobs in `root/sha256/ab/<digest>`, written to a temporary file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        digest = _checked(digest)
        return self.root / "sha256" / digest[:2] / digest

    def put(self, digest: str, source: Path) -> None:
        target = self._path(digest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            try:
                with os.fdopen(handle, "wb") as out, source.open("rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                Path(temporary).replace(target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise StorageError(f"cannot write blob {digest} under {self.root}: {error}") from error

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = self._path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None
        return _read_file(handle, start, end)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


def _read_file(handle: Any, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


class S3Storage:
    """Blobs as objects `prefix/sha256/<digest>` in an S3-compatible bucket (boto3)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, region: str) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
        )

    def _key(self, digest: str) -> str:
        key = f"sha256/{_checked(digest)}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, digest: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(Bucket=self.bucket, Key=self._key(digest), **kwargs)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = error.response.get("Error", {}).get("Code")
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFoundError(digest) from None
            raise StorageError(f"S3 {what} of blob {digest} failed: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"S3 {what} of blob {digest} failed: {error}") from error

    def put(self, digest: str, source: Path) -> None:
        with source.open("rb") as body:
            self._call("upload", digest, self._client.put_object, Body=body)

    def exists(self, digest: str) -> bool:
        try:
            self._call("lookup", digest, self._client.head_object)
        except BlobNotFoundError:
            return False
        return True

    def size(self, digest: str) -> int:
        return int(self._call("lookup", digest, self._client.head_object)["ContentLength"])

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra = (
            {}
            if start == 0 and end is None
            else {"Range": f"bytes={start}-{'' if end is None else end}"}
        )
        body = self._call("download", digest, self._client.get_object, **extra)["Body"]
        return _read_stream(body)

    def delete(self, digest: str) -> None:
        self._call("delete", digest, self._client.delete_object)

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


def _read_stream(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def open_storage(
    location: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
) -> BlobStorage:
    """`s3://bucket/prefix` for S3, anything else is a local directory."""
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"invalid storage {location!r}: expected s3://bucket[/prefix]")
        return S3Storage(bucket, prefix, endpoint_url=endpoint_url, region=region)
    return LocalStorage(Path(location).expanduser())
