"""What stands between the network and the app, whichever way it is started: bodies bounded while they are
read, no client-named file opened, security headers on every answer, and a server that always stops.

Gradio's page API takes files as ``{"path": ...}`` records that name a file on the server, and trusts the
client to name only what it uploaded; mounted on FastAPI, Gradio's own check of those paths is off. So every
JSON body is read here first (bounded) and refused when it names anything but a regular file in this
instance's upload folder; devices, pipes, folders, links out and URLs never reach Gradio.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Iterator

import uvicorn

from engine.images import MAX_FILE_BYTES

# A request body may hold one image of the largest size accepted, plus its form.
MAX_BODY_BYTES = MAX_FILE_BYTES + 1_000_000
# Seconds a stopping server may take to close its connections before it is stopped outright.
STOP_GRACE_S = 5.0
NOT_UPLOADED = ("This request names a file that was not uploaded to this page. "
                "Upload the photo (or take one with the camera) instead.")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # Only this site may frame the page, and Hugging Face, where a Space shows it in a frame. Browsers that
    # know frame-ancestors ignore X-Frame-Options, which the others get.
    (b"content-security-policy", b"frame-ancestors 'self' https://huggingface.co https://*.hf.space"),
    (b"x-frame-options", b"SAMEORIGIN"),
]


class RequestRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def send_error(send, status: int, message: str) -> None:
    """An error in the HTTP API's one shape, ``{"error": message, "status": code}``."""
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def uploaded_file(path: object, uploads: Path) -> str:
    """``path`` if it names a regular file inside ``uploads`` (after resolving links and ``..``), else
    ``RequestRefused``; the answer never says whether anything exists at the path."""
    if not isinstance(path, str) or not path:
        raise RequestRefused(400, NOT_UPLOADED)
    real = os.path.realpath(path)
    if not real.startswith(str(uploads.resolve()) + os.sep):
        raise RequestRefused(400, NOT_UPLOADED)
    try:
        regular = stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        regular = False
    if not regular:
        raise RequestRefused(400, NOT_UPLOADED)
    return real


def _file_records(data: object) -> Iterator[dict]:
    """Every dict in a JSON document that could name a file: one with a ``path`` or ``url``, or Gradio's
    file marker."""
    if isinstance(data, dict):
        meta = data.get("meta")
        if "path" in data or "url" in data or (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"):
            yield data
        for value in data.values():
            yield from _file_records(value)
    elif isinstance(data, list):
        for value in data:
            yield from _file_records(value)


def check_file_records(body: bytes, uploads: Path) -> None:
    """Refuse a JSON body naming a file outside the uploads, or a URL to fetch (pictures inline as data: only).

    In a Gradio call only the inputs (``data``) are files Gradio opens; ``event_data`` describes what was
    clicked (a result's picture, by its URL) and is never opened.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return  # not JSON: no file records for Gradio to follow
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    for record in _file_records(data):
        path, url = record.get("path"), record.get("url")
        if path is None and isinstance(url, str) and url.startswith("data:"):
            continue
        uploaded_file(path, uploads)


class Guard:
    """ASGI middleware: a body limit enforced while the body is read (a declared size over it is refused
    before reading), JSON bodies checked for file records, and security headers on every answer."""

    def __init__(self, app, uploads: Path, max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.uploads = uploads
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in SECURITY_HEADERS if h[0] not in present)]}
            await send(message)

        try:
            receive = await self._checked(scope, receive)
            await self.app(scope, receive, send_with_headers)
        except RequestRefused as refused:
            if not started:
                await send_error(send, refused.status, str(refused))

    async def _checked(self, scope, receive):
        """``receive`` bounded to the body limit; for a JSON-like body, read whole and checked first."""
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared and (not declared.isdigit() or int(declared) > self.max_body):
            raise RequestRefused(413, f"The request is too large ({self.max_body // 1_000_000} MB at most).")
        received = 0

        async def bounded():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise RequestRefused(413, f"The request is too large ({self.max_body // 1_000_000} MB at most).")
            return message

        if scope["method"] == "GET" or headers.get(b"content-type", b"").startswith(b"multipart/"):
            return bounded
        chunks, more = [], True
        while more:
            message = await bounded()
            if message["type"] != "http.request":
                return receive
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        check_file_records(body, self.uploads)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


class Server(uvicorn.Server):
    """uvicorn's server, stopped outright when a graceful stop takes longer than ``STOP_GRACE_S``: a signal
    to stop always stops it."""

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        timer = threading.Timer(STOP_GRACE_S, os._exit, args=(0,))
        timer.daemon = True
        timer.start()
