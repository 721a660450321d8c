"""A tiny stand-in for the Hugging Face Hub API, for testing failures without the internet.

Point huggingface_hub at it with the environment variable HF_ENDPOINT (read when huggingface_hub is imported, so set
it for a subprocess). It answers like the Hub does when things go wrong:

    Authorization: Bearer <anything but GOOD_TOKEN>   401 "Invalid credentials in Authorization header" (and, unlike
                                                      the Hub, echoes the token in the body: a leak test)
    stub/missing                                      404 RepoNotFound
    stub/gated                                        403 GatedRepo
    any revision named "no-such-revision"             404 RevisionNotFound
    stub/down                                         500
    stub/busy                                         429 (rate limit exhausted)
    anything else                                     404 RepoNotFound

    with HubStub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url}
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_TOKEN = "hf_stubGoodToken000000000000"
_REPO = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/?]+))?")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization") or ""
        self.server.requests.append((self.command, self.path, auth))
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else None
        if token is not None and token != GOOD_TOKEN:
            message = "Invalid credentials in Authorization header"
            return self._answer(401, {"error": message, "errors": [{"message": f"rejected token {token}"}]},
                                {"X-Error-Message": message})
        if self.path.startswith(("/api/repos/create", "/api/whoami")) and token is None:
            return self._answer(401, {"error": "You must be authenticated"}, {"X-Error-Message": "Unauthorized"})
        match = _REPO.match(self.path) or _RESOLVE.match(self.path)
        repo, revision = (match.group(1), match.group(2)) if match else (None, None)
        if revision == "no-such-revision":
            return self._answer(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound",
                                                                   "X-Error-Message": "Invalid rev id"})
        if repo == "stub/gated":
            message = "Access to model stub/gated is restricted. You must have access to it and be authenticated."
            return self._answer(403, {"error": message}, {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
        if repo == "stub/down":
            return self._answer(500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"})
        if repo == "stub/busy":
            return self._answer(429, {"error": "Too many requests"},
                                {"RateLimit": '"api";r=0;t=30', "RateLimit-Policy": '"fixed window";"api";q=100;w=300'})
        return self._answer(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound",
                                                                     "X-Error-Message": "Repository not found"})

    do_GET = do_HEAD = do_POST = do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list


class HubStub:
    """Serves on a free local port while the `with` block runs; `requests` records (method, path, authorization)."""

    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list:
        return self.server.requests

    def __enter__(self) -> "HubStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """An endpoint where nothing listens: connections are refused at once (no network)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
