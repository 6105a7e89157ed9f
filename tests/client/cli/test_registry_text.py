"""A registry that sends terminal escapes: the CLI prints its text without them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.client.http_servers import serving

ESCAPES = "\x1b[2K\x1b[1A\r\u202e"
HOSTILE_INDEX = {
    "namespace": "acme",
    "name": "toxicity",
    "domain": "toxicity",
    "summary": f"fine{ESCAPES} up to date",
    "releases": [
        {
            "version": "1.0.0",
            "yanked": True,
            "yanked_reason": f"broken{ESCAPES} up to date",
            "created": "2026-11-28T10:00:00Z",
            "artifacts": [],
        }
    ],
}


class Hostile(BaseHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass

    def _json(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/search"):
            entry = {k: HOSTILE_INDEX[k] for k in ("namespace", "name", "domain", "summary")}
            self._json(200, {"results": [{**entry, "latest_version": None, "fingerprints": []}]})
        elif self.path == "/api/v1/packages/acme/toxicity":
            self._json(200, HOSTILE_INDEX)
        else:
            message = f"no such thing{ESCAPES} all good"
            self._json(404, {"error": {"code": "not_found", "message": message}})


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Hostile)) as port:
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("PPATCH_REGISTRY", url)
        yield url


def _no_controls(text: str) -> None:
    assert not any(ord(c) < 32 and c != "\n" for c in text), repr(text)
    assert "\u202e" not in text, repr(text)


def test_search_and_info_print_registry_text_without_escapes(ppatch: Any, hostile: str) -> None:
    result = ppatch("search", "toxicity")
    assert result.code == 0, result.err
    _no_controls(result.out)
    assert "fine[2K[1A up to date" in result.out
    result = ppatch("info", "acme/toxicity")
    assert result.code == 0, result.err
    _no_controls(result.out)
    assert "YANKED: broken[2K[1A up to date" in result.out


def test_error_messages_from_a_registry_are_printed_without_escapes(
    ppatch: Any, hostile: str
) -> None:
    result = ppatch("info", "acme/missing")
    assert result.code != 0
    _no_controls(result.err)
    assert "no such thing[2K[1A all good" in result.err
