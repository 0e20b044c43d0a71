"""The hostile corpus, against real servers: every input an attacker (or bad luck) may send gets
its 4xx or 503 with the JSON error code, costs the server at most 300 MB over its idle RSS, and
leaves /healthz answering within 1 s meanwhile."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
from imagefiles import encode, eps_file, ico_trick, photo, png_bomb, tiff_tile_trick
from PIL import Image
from watch import MB, RawAnswer, raw_request, status_kib, watched

if TYPE_CHECKING:  # types only: which file `conftest` names depends on how pytest starts
    from app_processes import Server, StartServer

MAX_GROWTH_MB = 300
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> Server:
    """Default limits, short header and body timeouts."""
    return start_server(header_timeout_s=HEADER_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S)


@pytest.fixture(scope="module")
def strict(start_server: StartServer) -> Server:
    """TIFF allowed; small pixel, upload, connection and buffer limits."""
    return start_server(
        image_formats="JPEG,PNG,TIFF",
        max_image_pixels=16_000_000,
        max_upload_bytes=2_000_000,
        max_buffered_bytes=4_000_000,
        max_connections=8,
        header_timeout_s=HEADER_TIMEOUT_S,
        body_timeout_s=3,
    )


def float_tiff(side: int) -> bytes:
    """A 32-bit float greyscale TIFF, deflated."""
    pixels = np.full((side, side), 100.0, dtype=np.float32)
    return encode(Image.fromarray(pixels, "F"), "TIFF", compression="tiff_deflate")


def post_file(make: Callable[[], bytes]) -> Callable[[Server], RawAnswer]:
    """Post the file `make` builds (built when the case runs, not when tests are collected)."""

    def send(server: Server) -> RawAnswer:
        data = make()
        started = time.perf_counter()
        response = server.client.post("/classify", files={"file": ("upload", data)})
        return RawAnswer(
            response.status_code,
            dict(response.headers),
            response.content,
            time.perf_counter() - started,
        )

    return send


def post_raw(
    request: Callable[[], bytes], pieces: list[bytes] = (), every_s: float = 0.0
) -> Callable[[Server], RawAnswer]:
    """Send the bytes `request` builds over a raw socket, then trickle `pieces`."""

    def send(server: Server) -> RawAnswer:
        return raw_request(server, request(), list(pieces), every_s)

    return send


def classify_request(content_type: str, body: bytes = b"", length: int | None = None) -> bytes:
    """POST /classify with `body`, declaring `length` (default: the body's own)."""
    head = (
        f"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A multipart body; each part is (its header lines, its content)."""
    pieces = [f"--{boundary}\r\n{h}\r\n\r\n".encode() + content + b"\r\n" for h, content in parts]
    return b"".join(pieces) + f"--{boundary}--\r\n".encode()


def tiny_parts() -> bytes:
    """~16 MiB of one-byte parts that are not images."""
    return multipart("b", [('Content-Disposition: form-data; name="a"', b"x")] * (16 * MB // 52))


def padded_part_headers() -> bytes:
    """20 parts with 4 kB of headers each: 80 kB, each line within the parser's own limit."""
    headers = f'Content-Disposition: form-data; name="a"\r\nX-Pad: {"p" * 4000}'
    return multipart("b", [(headers, b"x")] * 20)


MULTIPART = "multipart/form-data; boundary=b"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"

# name -> (server fixture, request, expected status, expected error code or None for 200)
CASES: dict[str, tuple[str, Callable[[Server], RawAnswer], int, str | None]] = {
    "png 200000 x 1": ("server", post_file(lambda: png_bomb(200_000, 1)), 200, None),
    "png 1 x 200000": ("server", post_file(lambda: png_bomb(1, 200_000)), 200, None),
    "png 20000000 x 1": ("server", post_file(lambda: png_bomb(20_000_000, 1)), 200, None),
    "png 16-bit grey 6000 x 6000": (
        "server",
        post_file(lambda: png_bomb(6000, 6000, 16, 0)),
        200,
        None,
    ),
    "ico saying 16 x 16 holding 10000 x 10000": (
        "server",
        post_file(lambda: ico_trick(10_000)),
        400,
        "invalid_image",
    ),
    "eps": ("server", post_file(lambda: eps_file()), 400, "invalid_image"),
    "tiff where not allowed": (
        "server",
        post_file(lambda: encode(photo(), "TIFF")),
        400,
        "invalid_image",
    ),
    "tiff saying 1 x 1 holding a 16384 x 16384 tile": (
        "strict",
        post_file(lambda: tiff_tile_trick(16384)),
        413,
        "image_too_large",
    ),
    "png 16-bit rgba 4000 x 4000 (counts 4/3)": (
        "strict",
        post_file(lambda: png_bomb(4000, 4000, 16, 6)),
        413,
        "image_too_large",
    ),
    "tiff 32-bit float 3000 x 3000": ("strict", post_file(lambda: float_tiff(3000)), 200, None),
    "boundary of 300 characters": (
        "server",
        post_raw(
            lambda: classify_request(
                "multipart/form-data; boundary=" + "x" * 300, b"--" + b"x" * 300 + b"--\r\n"
            )
        ),
        422,
        "invalid_parameter",
    ),
    "16 MiB of tiny parts": (
        "server",
        post_raw(lambda: classify_request(MULTIPART, tiny_parts())),
        413,
        "payload_too_large",
    ),
    "80 kB of part headers": (
        "server",
        post_raw(lambda: classify_request(MULTIPART, padded_part_headers())),
        413,
        "payload_too_large",
    ),
    "1 MiB request header": (
        "server",
        post_raw(lambda: HEALTHZ + b"X-Big: " + b"a" * MB + b"\r\n\r\n"),
        431,
        "header_too_large",
    ),
    "header trickled a line every 0.5 s": (
        "server",
        post_raw(lambda: HEALTHZ, pieces=[b"X-A: b\r\n"] * 60, every_s=0.5),
        408,
        "request_timeout",
    ),
    "declared length of 1 GB, no body": (
        "server",
        post_raw(lambda: classify_request("image/png", length=10**9)),
        413,
        "payload_too_large",
    ),
    "body trickled 5 bytes every 0.5 s": (
        "server",
        post_raw(
            lambda: classify_request("image/png", length=1000), pieces=[b"x" * 5] * 60, every_s=0.5
        ),
        408,
        "request_timeout",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_corpus(name: str, request: pytest.FixtureRequest) -> None:
    fixture, send, status, code = CASES[name]
    server: Server = request.getfixturevalue(fixture)
    with watched(server) as watch:
        answer = send(server)
    print(
        f"{name}: {answer.status} {answer.code}, peak RSS +{watch.growth_mb:.0f} MB over idle, "
        f"slowest /healthz {watch.healthz_worst_s:.2f} s, answered in {answer.seconds:.2f} s"
    )
    assert (answer.status, answer.code) == (status, code), answer.body[:300]
    assert watch.growth_mb <= MAX_GROWTH_MB, f"peak RSS grew by {watch.growth_mb:.0f} MB"
    assert not watch.healthz_failures and watch.healthz_worst_s < 1.0, watch
    if status == 200:
        assert answer.headers.get("content-type") == "application/json"
    if status == 408:  # cut off in seconds, not minutes
        assert answer.seconds < max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 2.0
    if name.startswith("declared"):  # refused before the body is read
        assert answer.seconds < 1.0
    lowered = answer.body.lower()
    assert b"ghostscript" not in lowered and b"/usr/" not in lowered and b"pil" not in lowered


def test_connection_cap(strict: Server) -> None:
    """Beyond `VITSERVE_MAX_CONNECTIONS`, 503 + Retry-After at once; idle connections are
    closed by the header timeout, and the server answers again."""
    idle = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(8)]
    try:
        time.sleep(0.2)
        answer = raw_request(strict, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (answer.status, answer.code) == (503, "overloaded")
        assert answer.headers["retry-after"] == "1"
        firsts = []
        for sock in idle:  # the header timeout frees them
            sock.settimeout(HEADER_TIMEOUT_S + 3)
            firsts.append(sock.recv(100))
        # Closed without an answer; only a socket opened while the test client's own kept-alive
        # connection still held a slot may have been over the cap, and then got its 503 at once.
        refused = [first for first in firsts if first.startswith(b"HTTP/1.1 503 ")]
        assert len(refused) <= 1 and all(first == b"" for first in firsts if first not in refused)
    finally:
        for sock in idle:
            sock.close()
    assert strict.client.get("/healthz").status_code == 200


def test_buffered_bytes_cap(strict: Server) -> None:
    """Two stalled 1.9 MB uploads hold 3.8 MB of the 4 MB budget: a third request declaring
    1 MB gets 503 + Retry-After at once; once the stalled ones time out (408), it is served."""
    stalled = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", strict.port))
        sock.sendall(classify_request("image/png", b"x" * 1000, length=1_900_000))
        stalled.append(sock)
    try:
        time.sleep(0.3)
        answer = raw_request(strict, classify_request("image/png", b"x" * 100, length=1_000_000))
        assert (answer.status, answer.code) == (503, "overloaded")
        assert answer.headers["retry-after"] == "1"
        assert answer.seconds < 1.0
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.5)
    response = strict.client.post("/classify", files={"file": ("a.png", encode(photo(), "PNG"))})
    assert response.status_code == 200


def test_memory_error_is_a_413(start_server: StartServer) -> None:
    """An image within the pixel limit that the process cannot hold (its address space capped
    just above what it uses) is a 413, and the server goes on serving."""
    server = start_server(preprocess_threads=1)
    small = encode(photo(), "PNG")
    for _ in range(3):  # start every thread the raw-body path uses before capping memory
        raw = server.client.post("/classify", content=small, headers={"content-type": "image/png"})
        assert raw.status_code == 200
    pid = server.process.pid
    limit = (status_kib(pid, "VmSize") + 100 * 1024) * 1024
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
    big = encode(Image.new("RGB", (6000, 6000), (10, 20, 30)), "PNG")  # ~100 MB decoded
    response = server.client.post("/classify", content=big, headers={"content-type": "image/png"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] in ("image_too_large", "payload_too_large")
    assert server.client.get("/healthz").status_code == 200
