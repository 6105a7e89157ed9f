"""Search by text, domain, base-model fingerprint, or exact name across namespaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from registry_server.api.deps import RegistryDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.schemas import ERROR_RESPONSES, SearchOut
from registry_server.search import MAX_SEARCH_OFFSET, MAX_SEARCH_RESULTS, search_packages

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["search"], responses=ERROR_RESPONSES)


@router.get("/search", response_model=SearchOut, summary="Search packages")
def search(
    registry: RegistryDep,
    q: Annotated[str, Query(description="text in the name or summary")] = "",
    domain: Annotated[str, Query(max_length=64)] = "",
    fingerprint: Annotated[str, Query(max_length=71)] = "",
    name: Annotated[str, Query(max_length=64, description="exact package name")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 50,
    offset: Annotated[
        int, Query(ge=0, le=MAX_SEARCH_OFFSET, description="results to skip, for paging")
    ] = 0,
) -> JSONResponse:
    if len(q) > registry.settings.max_query_length:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"search text is {len(q)} characters; the limit is "
            f"{registry.settings.max_query_length}",
        )
    # The session is opened here, in the route's worker thread: as a dependency (SessionDep)
    # it would cost two more hops to the thread pool, as much as the search's queries.
    with registry.sessions() as session:
        found = search_packages(
            session,
            text=q,
            domain=domain,
            fingerprint=fingerprint,
            name=name,
            limit=limit,
            offset=offset,
        )
    # Built to the documented shape (response_model documents it, tests compare the two);
    # skipping a second validation pass keeps an anonymous, frequent request cheap.
    return JSONResponse({"results": found})
