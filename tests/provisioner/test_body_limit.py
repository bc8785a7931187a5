"""The body cap on a real uvicorn process: an anonymous client streaming a huge body gets a 413
as soon as the cap is passed, and the service's memory does not grow by the body's size."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import psutil

from tests.provisioner.processes import services

MIB = 1024 * 1024
CAP = MIB  # the default PROVISIONER_MAX_BODY_BYTES
_CHUNK = b"x" * (64 * 1024)


class _Response:
    def __init__(self) -> None:
        self.data = b""
        self.done = threading.Event()

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1])

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def _read(sock: socket.socket, response: _Response) -> None:
    try:
        while b"\r\n\r\n" not in response.data or not response.body.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response.data += chunk
    except OSError:
        pass
    response.done.set()


def _post(port: int, size: int, *, chunked: bool) -> tuple[_Response, int]:
    """POST /environments without a key, streaming `size` bytes; returns the response and
    how many bytes the server let us send before it answered and closed."""
    sock = socket.create_connection(("127.0.0.1", port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(
        f"POST /environments HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    response = _Response()
    reader = threading.Thread(target=_read, args=(sock, response), daemon=True)
    reader.start()
    sent = 0
    try:
        while sent < size and not response.done.is_set():
            if chunked:
                sock.sendall(f"{len(_CHUNK):x}\r\n".encode() + _CHUNK + b"\r\n")
            else:
                sock.sendall(_CHUNK)
            sent += len(_CHUNK)
        if chunked and sent >= size:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server refused the rest: what it should do
    response.done.wait(30)
    sock.close()
    return response, sent


def test_a_huge_anonymous_body_gets_413_and_no_memory(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'registry.db'}"
    with services(tmp_path, database) as [service]:
        process = psutil.Process(service.process.pid)
        # A few times the cap, declared and chunked: refused, before auth.
        for chunked in (False, True):
            response, _sent = _post(service.port, 4 * CAP, chunked=chunked)
            assert response.status == 413, response.data[:300]
            assert b'"payload_too_large"' in response.body
        baseline = process.memory_info().rss
        peak = baseline
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        size = 64 * CAP
        try:
            for chunked in (True, False):
                response, _sent = _post(service.port, size, chunked=chunked)
                assert response.status == 413, response.data[:300]
        finally:
            sampling = False
            sampler.join()
        growth = peak - baseline
        # Far below the 64 MiB body (the service used to hold it, and a copy, in memory).
        assert growth < 16 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
