"""Attacks on the running app, started as the README starts it (``python app.py``), from 127.0.0.1 only.

Every client-named file (system files, devices, a folder, a FIFO, ``..`` forms, URL forms) on every page
endpoint is refused without being opened or copied, and the server answers a normal search within a second
after each; bodies over the limit are refused before they are read; no answer carries a path of the server;
a stop signal always stops it; each instance has its own uploads, cleared on start.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import draw_furniture
from tests.test_app import ROOT, start_app, wait_until_indexed

pytestmark = pytest.mark.slow
# Every page endpoint that takes a file, with the other inputs it needs around it.
PAGE_ENDPOINTS = {
    "search_photo": lambda f: [f, 4, "auto"],
    "crop_photo": lambda f: [f],
    "crop_corner": lambda f: [f],
    "search_region": lambda f: [f, "Whole photo", 4, "auto"],
    "more_like_this": lambda f: [f, 4, "auto"],
    "search_crop": lambda f: [f, 4, "auto"],
}


def photo_bytes(category: str = "lamp", size: int = 300) -> bytes:
    buffer = io.BytesIO()
    draw_furniture(category, (200, 40, 40), 1, size=size).save(buffer, "JPEG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
              f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, (filename, data) in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(url: str, path: str, body: bytes | None = None, content_type: str = "application/json",
            method: str | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request, errors included."""
    headers = {"Content-Type": content_type} if body is not None else {}
    call = urllib.request.Request(url + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def search_time(url: str) -> float:
    """Seconds a normal HTTP API search takes; it must succeed."""
    body, kind = multipart({"k": "3"}, {"image": ("lamp.jpg", photo_bytes())})
    started = time.perf_counter()
    status, _, answer = request(url, "/api/search", body, kind)
    assert status == 200, answer
    return time.perf_counter() - started


def uploads_of(root: Path, pid: int) -> Path:
    return root / "tmp" / "furniture-search" / str(pid) / "uploads"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacked")
    (root / "tmp").mkdir()
    process, url = start_app(root, TMPDIR=str(root / "tmp"))
    photo = root / "lamp.jpg"
    photo.write_bytes(photo_bytes())
    from gradio_client import Client

    wait_until_indexed(Client(url, verbose=False, download_files=False), photo)
    yield url, root, process
    process.terminate()
    process.wait(timeout=20)


def attacks(url: str, root: Path, pid: int) -> dict[str, dict]:
    fifo = root / "a-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    uploads = uploads_of(root, pid)
    paths = {
        "/etc/passwd": "/etc/passwd",
        "/proc/self/environ": "/proc/self/environ",
        "/dev/zero": "/dev/zero",
        "a directory": str(root),
        "a FIFO": str(fifo),
        "the app's own code": str(ROOT / "app.py"),
        "a catalogue image": str(next((root / "catalogue").rglob("*.jpg"))),
        ".. out of the uploads": f"{uploads}/../../../../../../etc/passwd",
        ".. with the uploads' name": f"{uploads}/x/../../uploads-evil/../../../../../etc/passwd",
        "a file= URL as the path": f"{url}/gradio_api/file=/etc/passwd",
        "a file:// URL as the path": "file:///etc/passwd",
    }
    records = {name: {"path": path, "meta": {"_type": "gradio.FileData"}} for name, path in paths.items()}
    records["a path without Gradio's marker"] = {"path": "/etc/passwd"}
    records["a URL to fetch"] = {"path": None, "url": f"{url}/gradio_api/file=/etc/passwd",
                                 "meta": {"_type": "gradio.FileData"}}
    records["an outside URL to fetch"] = {"path": "http://198.51.100.7/x.jpg", "url": "http://198.51.100.7/x.jpg",
                                          "meta": {"_type": "gradio.FileData"}}
    return records


def test_client_named_files_are_refused_everywhere_and_never_stall_the_server(server):
    url, root, process = server
    uploads = uploads_of(root, process.pid)
    before = sorted(uploads.rglob("*"))
    tried = []
    for name, record in attacks(url, root, process.pid).items():
        for endpoint, inputs in PAGE_ENDPOINTS.items():
            body = json.dumps({"data": inputs(record)}).encode()
            for path in (f"/gradio_api/call/{endpoint}", "/gradio_api/queue/join"):
                payload = body if path.endswith(endpoint) else json.dumps(
                    {"data": inputs(record), "fn_index": 0, "session_hash": "attacker"}).encode()
                status, headers, answer = request(url, path, payload, timeout=5)
                assert status == 400, (name, endpoint, path, status, answer[:300])
                assert json.loads(answer)["error"].startswith("This request names a file that was not uploaded")
                tried.append((name, endpoint, path))
            assert search_time(url) < 1.0, f"the server was slow after {name} on {endpoint}"
    assert sorted(uploads.rglob("*")) == before  # nothing copied into the uploads
    assert not list(uploads.rglob("passwd")) and not list(uploads.rglob("environ"))
    assert process.poll() is None
    assert len(tried) == 2 * len(PAGE_ENDPOINTS) * len(attacks(url, root, process.pid))


def test_paths_in_urls_of_the_api_and_gradio_serve_nothing(server):
    url, root, _ = server
    catalogue_image = next((root / "catalogue").rglob("*.jpg"))
    for path in ("/api/images/..%2F..%2Fetc%2Fpasswd", "/api/images/%2Fetc%2Fpasswd", "/pictures/..%2Fapp.py",
                 "/pictures/%2Fetc%2Fpasswd.jpg", "/pictures/a-fifo.jpg", f"/gradio_api/file={catalogue_image}",
                 "/gradio_api/file=/etc/passwd", f"/gradio_api/file={ROOT / 'app.py'}", "/gradio_api/file=/dev/zero",
                 f"/gradio_api/file={root}"):
        status, _, body = request(url, path, timeout=5)
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in body and b"import" not in body
    body, kind = multipart({"image": "/etc/passwd"}, {})
    status, _, answer = request(url, "/api/search", body, kind)
    assert status == 400 and json.loads(answer) == {"error": json.loads(answer)["error"], "status": 400}


def test_a_huge_body_is_refused_before_it_is_read(server):
    url, _, process = server
    host, port = url.removeprefix("http://").split(":")
    for path in ("/api/search", "/gradio_api/upload", "/gradio_api/queue/join"):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            started = time.perf_counter()
            connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 200000000\r\n"
                               "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode() + b"x" * 65536)
            answer = ""
            while '"status"' not in answer and (chunk := connection.recv(65536)):
                answer += chunk.decode("latin-1")
            assert answer.startswith("HTTP/1.1 413"), answer[:200]
            assert time.perf_counter() - started < 1.0
            assert '"status": 413' in answer
    # Without a declared length (chunked), the body is cut off once it passes the limit: the server stops
    # reading and closes, so the client cannot send its 200 MB.
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"POST /api/search HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode())
        head = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        connection.sendall(b"%x\r\n" % len(head) + head + b"\r\n")
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        try:
            while sent < 200_000_000:
                connection.sendall(chunk)
                sent += 0x100000
        except OSError:
            pass
    assert sent < 100_000_000
    assert search_time(url) < 1.0
    assert process.poll() is None


def test_no_answer_carries_a_path_of_the_server(server):
    from gradio_client import Client, handle_file

    url, root, process = server
    photo = root / "room.jpg"
    from tests.test_page_handlers import room_photo

    room_photo(photo, 1600, 800)
    client = Client(url, verbose=False, download_files=False)
    answers = [client.predict(handle_file(str(photo)), 4, "auto", api_name="/search_photo")]
    body, kind = multipart({"k": "3", "regions": "true"}, {"image": ("room.jpg", photo.read_bytes())})
    answers.append(json.loads(request(url, "/api/search", body, kind)[2]))
    first = answers[-1]["results"][0]
    answers.append(json.loads(request(url, f"/api/items/{first['id']}")[2]))
    for broken in (b"", b"GIF89a broken", b"\xff\xd8\xff\xe0 broken"):
        body, kind = multipart({}, {"image": ("x.jpg", broken)})
        answers.append(json.loads(request(url, "/api/search", body, kind)[2]))
    for broken in (b"GIF89a broken", b"\xff\xd8\xff broken"):
        bad = root / "bad.jpg"
        bad.write_bytes(broken)
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(bad)), 4, "auto", api_name="/search_photo")
        answers.append(str(error.value))
    for call in (lambda: client.predict(handle_file(str(photo)), 4, "auto", api_name="/more_like_this"),
                 lambda: client.predict(handle_file(str(photo)), 4, "auto", api_name="/search_crop"),
                 lambda: client.predict("red", 4, "auto", api_name="/refine_by_colour")):
        with pytest.raises(Exception) as error:
            call()
        answers.append(str(error.value))
    text = json.dumps(answers)
    for server_path in (str(root), str(ROOT), "/tmp/", "/etc/", "/proc/", "/gradio_api/file="):
        assert server_path not in text, server_path
    assert "The file is empty" in text and "Click one of the results" in text


def test_every_answer_has_the_security_headers(server):
    url, _, _ = server
    for path in ("/", "/api/docs", "/api/items/nothing", "/gradio_api/info", "/api/openapi.json"):
        _, headers, _ = request(url, path)
        headers = {name.lower(): value for name, value in headers.items()}
        assert headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "SAMEORIGIN", path


def test_a_stop_signal_stops_the_server_after_an_attack_and_uploads_never_outlive_it(tmp_path):
    (tmp_path / "tmp").mkdir()
    process, url = start_app(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    try:
        left = uploads_of(tmp_path, process.pid)
        (left / "someone-elses-photo.jpg").write_bytes(photo_bytes())
        record = {"path": "/dev/zero", "meta": {"_type": "gradio.FileData"}}
        status, _, _ = request(url, "/gradio_api/call/search_photo", json.dumps({"data": [record, 4, "auto"]}).encode())
        assert status == 400
        process.kill()  # no chance to clean up
        process.wait(timeout=10)
        assert left.exists()
        (tmp_path / "second").mkdir()
        process, url = start_app(tmp_path / "second", TMPDIR=str(tmp_path / "tmp"))
        assert not left.exists()  # the killed instance's uploads are gone once another starts
        assert uploads_of(tmp_path, process.pid).is_dir()
        assert not list((tmp_path / "tmp").rglob("someone-elses-photo.jpg"))
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert time.perf_counter() - started < 15
    finally:
        if process.poll() is None:
            process.kill()
