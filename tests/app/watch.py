"""Watching a server while it is attacked: its peak RSS over its idle RSS (VmHWM, reset through
/proc/PID/clear_refs), and the slowest /healthz answer meanwhile. Raw-socket HTTP for what
httpx will not send (huge or trickled headers, stalled bodies)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # types only: which file `conftest` names depends on how pytest starts
    from app_processes import Server

MB = 1024 * 1024


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/PID/status, e.g. VmRSS or VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Watch:
    idle_kib: int
    peak_kib: int = 0
    healthz_worst_s: float = 0.0
    healthz_failures: list[str] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return (self.peak_kib - self.idle_kib) / 1024


@contextmanager
def watched(server: Server) -> Iterator[Watch]:
    """Resets the server's peak RSS, probes /healthz every 0.1 s while the block runs, then
    records the peak and the slowest probe."""
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    watch = Watch(idle_kib=status_kib(pid, "VmRSS"))
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get("/healthz").status_code
                    if status != 200:
                        watch.healthz_failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    watch.healthz_failures.append(repr(exc))
                watch.healthz_worst_s = max(watch.healthz_worst_s, time.perf_counter() - started)
                stop.wait(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        yield watch
    finally:
        stop.set()
        prober.join()
        watch.peak_kib = status_kib(pid, "VmHWM")


@dataclass
class RawAnswer:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes
    seconds: float

    @property
    def code(self) -> str | None:
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


def raw_request(
    server: Server, head: bytes, pieces: list[bytes] = (), every_s: float = 0.0, timeout: float = 30
) -> RawAnswer:
    """Send `head`, then each of `pieces` `every_s` apart (a trickle), while reading whatever
    the server answers; stop sending once it answers or closes."""
    started = time.perf_counter()
    received = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                sock.settimeout(every_s or 0.001)
                try:
                    data = sock.recv(65536)
                    if not data:
                        break
                    received += data
                    break  # answered before we finished sending
                except TimeoutError:
                    pass
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server has closed its side: read what it said
        sock.settimeout(timeout)
        try:
            while not _complete(received) and (data := sock.recv(65536)):
                received += data
        except (TimeoutError, ConnectionResetError):
            pass
    return _parse(bytes(received), time.perf_counter() - started)


def _complete(data: bytearray) -> bool:
    """A whole answer: headers and as many body bytes as they declare."""
    head, found, body = bytes(data).partition(b"\r\n\r\n")
    if not found:
        return False
    answer = _parse(bytes(data), 0.0)
    return len(body) >= int(answer.headers.get("content-length", 0))


def _parse(data: bytes, seconds: float) -> RawAnswer:
    if not data:
        return RawAnswer(None, {}, b"", seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return RawAnswer(int(lines[0].split()[1]), headers, body, seconds)
