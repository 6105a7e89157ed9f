"""`/blobs/sha256/{digest}`: immutable content-addressed files, with range requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from patchfmt.blob_paths import BLOB_ROUTE
from registry_server.api.deps import RegistryDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.ranges import RangeNotSatisfiableError, parse_range
from registry_server.schemas import ERROR_RESPONSES
from registry_server.storage import BlobNotFoundError

__all__ = ["router"]

router = APIRouter(tags=["blobs"], responses=ERROR_RESPONSES)

IMMUTABLE = "public, max-age=31536000, immutable"
Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256, lowercase hex")]


@router.get(
    BLOB_ROUTE,
    summary="Download a .ppatch by its sha256",
    response_class=StreamingResponse,
    operation_id="get_blob",
)
@router.head(
    BLOB_ROUTE,
    summary="Size and headers of a blob",
    response_class=StreamingResponse,
    operation_id="head_blob",
)
async def get_blob(digest: Digest, request: Request, registry: RegistryDep) -> Response:
    storage = registry.storage
    try:
        size = await run_in_threadpool(storage.size, digest)
    except BlobNotFoundError:
        raise RegistryError(ErrorCode.NOT_FOUND, f"no blob with sha256 {digest}") from None
    headers = {
        "Cache-Control": IMMUTABLE,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
    }
    if request.headers.get("if-none-match", "").strip() in (f'"{digest}"', "*"):
        return Response(status_code=304, headers=headers)
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiableError as error:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            str(error),
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        ) from None
    first, last = wanted if wanted is not None else (0, size - 1)
    headers["Content-Length"] = str(max(last - first + 1, 0))
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    chunks = await run_in_threadpool(storage.read, digest, first, last)
    return StreamingResponse(
        chunks, status_code=status, headers=headers, media_type="application/octet-stream"
    )
