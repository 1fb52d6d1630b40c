"""Printers that misbehave on purpose, on 127.0.0.1, each on its own thread.

They stand in for the printer head at the same entry point real hardware uses (a TCP port), so
the gateway's real transports, workers and sweeper meet them: one that never answers, one that
resets every connection, one that answers garbage, and a port where nothing listens.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support import free_port


@dataclass
class HostilePrinter:
    """A TCP listener whose connections are handled by `behaviour(conn, stop)`."""

    name: str
    behaviour: Callable[[socket.socket, threading.Event], None]
    port: int = 0
    connections: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> HostilePrinter:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._spawn(self._accept)
        return self

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name=f"hostile-{self.name}")
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.2)
            self._spawn(self._handle, conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn, self._stop)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        for t in self._threads:
            t.join(timeout=2)


def _read(conn: socket.socket) -> bytes | None:
    """Bytes from the gateway, b"" on a quiet spell, None once it closed the connection."""
    try:
        data = conn.recv(65536)
    except TimeoutError:
        return b""
    return data or None


def never_answers(conn: socket.socket, stop: threading.Event) -> None:
    """Reads every byte, answers nothing: status queries and GS r acknowledgements time out."""
    while not stop.is_set() and _read(conn) is not None:
        pass


def resets(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts, reads what is there, then resets the connection (RST, not FIN)."""
    _read(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Answers every read with random bytes, status-like ones included."""
    rng = random.Random(conn.fileno())
    while not stop.is_set():
        data = _read(conn)
        if data is None:
            return
        conn.sendall(
            bytes(
                rng.choice((0x00, 0x10, 0x12, 0x1A, 0x1E, 0x7E, 0xFF, 0x04))
                for _ in range(rng.randint(1, 64))
            )
        )


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()
