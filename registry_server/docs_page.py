"""`/docs`: Swagger UI over `/openapi.json`, every asset served by the registry itself
(`static/swagger-ui`, vendored from the npm package `swagger-ui-dist`; see its ORIGIN.md), and
started by a static script, since the pages' CSP forbids inline script."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from registry_server.page_headers import DOCS_PATH

__all__ = ["SWAGGER_UI_VERSION", "router"]

SWAGGER_UI_VERSION = "5.35.0"

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ppatch registry API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="/openapi.json"></div>
  <script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/static/swagger-start.js"></script>
</body>
</html>
"""


@router.get(DOCS_PATH, response_class=HTMLResponse)
def api_docs() -> HTMLResponse:
    return HTMLResponse(_PAGE)
