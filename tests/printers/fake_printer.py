"""An asyncio ESC/POS printer on 127.0.0.1 that behaves like the real ones where it matters.

- `DLE EOT n` is real-time: answered at once from `status_replies`, even while paper is out.
- `GS r 1` is processed in order with print data: answered after `processing_delay`, and not at
  all while paper is out (the data is held and printed when the fault clears).
- Data of a connection that closes normally is printed (after the fault clears); data of a
  connection cut by `disconnect_after` is lost, as when a printer is switched off mid-job.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field

HEALTHY = {1: b"\x12", 2: b"\x12", 3: b"\x12", 4: b"\x12"}
PAPER_OUT = {1: b"\x1a", 2: b"\x32", 3: b"\x12", 4: b"\x7e"}
NEAR_END = {1: b"\x12", 2: b"\x12", 3: b"\x12", 4: b"\x1e"}
ASB_HEALTHY = b"\x10\x00\x00\x00"
ASB_PAPER_OUT = b"\x18\x00\x0f\x00"

_COMMAND = re.compile(rb"\x10\x04[\x00-\xff]|\x1d\x72[\x00-\xff]")
_PARTIAL_TAILS = (b"\x10\x04", b"\x1d\x72", b"\x10", b"\x1d")
_ACK = object()  # a GS r 1 in the processing queue
_CLOSE = object()


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes | object] = field(default_factory=asyncio.Queue)
    processed: bytearray = field(default_factory=bytearray)


class FakePrinter:
    def __init__(self) -> None:
        self.status_replies: dict[int, bytes] = dict(HEALTHY)
        self.gs_r_reply = b"\x00"
        self.silent = False  # no DLE EOT replies (some printers, while not ready)
        self.garbage: bytes | None = None  # sent instead of every reply
        self.asb = False  # push an ASB packet on connect and on each status change
        self.processing_delay = 0.0
        self.disconnect_after: int | None = None  # abort after this many print-data bytes
        self.connections = 0
        self.open_connections = 0  # whose client has not closed or reset them
        self.received: list[bytes] = []  # print data per connection, status commands removed
        self.printed: list[bytes] = []  # print data the printer finished processing
        self.queries = 0
        self.reading = asyncio.Event()  # clear it to stop reading, like a full printer buffer
        self.reading.set()
        self._paper = asyncio.Event()
        self._paper.set()
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakePrinter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self._conns):
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def paper_out(self) -> bool:
        return not self._paper.is_set()

    def set_paper_out(self, out: bool) -> None:
        self.status_replies = dict(PAPER_OUT if out else HEALTHY)
        self.gs_r_reply = b"\x0f" if out else b"\x00"
        if out:
            self._paper.clear()
        else:
            self._paper.set()
        if self.asb:
            for conn in self._conns:
                self._reply(conn, ASB_PAPER_OUT if out else ASB_HEALTHY)

    def _reply(self, conn: _Conn, data: bytes) -> None:
        if not conn.writer.is_closing():
            conn.writer.write(self.garbage if self.garbage is not None else data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(writer)
        self._conns.add(conn)
        self.connections += 1
        self.open_connections += 1
        received = bytearray()
        self.received.append(b"")
        index = len(self.received) - 1
        worker = asyncio.create_task(self._process(conn))
        self._tasks.add(worker)
        if self.asb:
            self._reply(conn, ASB_PAPER_OUT if self.paper_out else ASB_HEALTHY)
        try:
            closed_by_client = await self._read(conn, reader, received, index)
            self.open_connections -= 1
            if closed_by_client:
                conn.queue.put_nowait(_CLOSE)
                await worker  # a closed connection's data still prints, once paper is back
        except ConnectionError:
            self.open_connections -= 1
        except asyncio.CancelledError:
            pass  # stopping
        finally:
            worker.cancel()
            self._conns.discard(conn)
            self._tasks.discard(worker)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _read(
        self, conn: _Conn, reader: asyncio.StreamReader, received: bytearray, index: int
    ) -> bool:
        """Split the stream into print data and commands; False when `disconnect_after` cut it."""
        pending = b""
        while (await self.reading.wait()) and (data := await reader.read(65536)):
            pending += data
            # A command split across reads waits for its remaining bytes.
            cut = max(
                (len(pending) - len(t) for t in _PARTIAL_TAILS if pending.endswith(t)),
                default=len(pending),
            )
            buf, pending = pending[:cut], pending[cut:]
            pos = 0
            for match in _COMMAND.finditer(buf):
                if not self._data(conn, received, buf[pos : match.start()], index):
                    return False
                self._command(conn, match.group())
                pos = match.end()
            if not self._data(conn, received, buf[pos:], index):
                return False
        return True

    def _data(self, conn: _Conn, received: bytearray, data: bytes, index: int) -> bool:
        """Queue print data; False once `disconnect_after` bytes arrived (the link is cut)."""
        if self.disconnect_after is not None:
            data = data[: max(self.disconnect_after - len(received), 0)]
        received += data
        self.received[index] = bytes(received)
        if data:
            conn.queue.put_nowait(data)
        if self.disconnect_after is not None and len(received) >= self.disconnect_after:
            conn.writer.transport.abort()
            return False
        return True

    def _command(self, conn: _Conn, command: bytes) -> None:
        if command[0] == 0x10:
            self.queries += 1
            if not self.silent and (reply := self.status_replies.get(command[2])):
                self._reply(conn, reply)
        else:
            conn.queue.put_nowait(_ACK)

    async def _process(self, conn: _Conn) -> None:
        while True:
            item = await conn.queue.get()
            if isinstance(item, bytes):
                conn.processed += item
                continue
            if self.processing_delay:
                await asyncio.sleep(self.processing_delay)
            await self._paper.wait()
            if conn.processed:
                self.printed.append(bytes(conn.processed))
                conn.processed.clear()
            if item is _CLOSE:
                return
            self._reply(conn, self.gs_r_reply)

    @property
    def jobs(self) -> list[bytes]:
        """Print data of every connection that sent any."""
        return [data for data in self.received if data]


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
