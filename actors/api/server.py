"""The HTTP server framewatch owns (its API and the reference algorithm service run on it), and its JSON handler.

``HttpServer``: one selector thread (``<name>``) accepts connections and reads every request head itself,
non-blocking, with a deadline (a slow or idle client holds a socket, never a thread); a bounded pool of workers
(``<name>:worker-N``) answers complete requests, parsed by the standard library's ``BaseHTTPRequestHandler`` fed the
buffered bytes; keep-alive connections go back to the selector between requests. Connections are capped (past the
cap the one waiting longest is closed), heads, bodies, answers and idle connections are timed out, and a client that
goes away is a debug line (``ClientGone``), never a traceback. ``stop`` closes the listener and every connection and
joins every thread.

``JsonHandler``: JSON answers, a bounded body reader (413 past ``max_body_bytes``, 411 for chunked bodies), and
``answer``, which turns ``HttpError`` and any body that is not JSON, not UTF-8 or not the right shape into a 4xx
with the reason. ``decode_body`` is the one way a body meets its typed decoder.
"""

from __future__ import annotations

import logging
import queue
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

import msgspec

__all__ = ["ClientGone", "HttpError", "HttpServer", "JsonHandler", "ServerStats", "decode_body"]

log = logging.getLogger(__name__)
_JSON = msgspec.json.Encoder()


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ClientGone(Exception):
    """The client closed its connection, or did not send (or read) within the request's time: a debug line, never a
    traceback. Raised by the handler's ``rfile``/``wfile``; ``JsonHandler.answer`` lets it through to the server."""


_HEAD_MAX_BYTES = 64 * 1024
"""A request head (request line and headers) larger than this is answered 431 and closed."""
_PREREAD_BODY_BYTES = 64 * 1024
"""Bodies up to this size arrive with the head (read by the selector); larger ones are read by the worker."""
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,20})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_NO_PREREAD = re.compile(rb"^(transfer-encoding:.*chunked|expect:[ \t]*100-continue)", re.IGNORECASE | re.MULTILINE)
_CAP_WARNING_SEC = 60.0


class ServerStats(msgspec.Struct, frozen=True):
    """``HttpServer.statistics()``: connections now, and counters since the start."""

    open_connections: int
    waiting: int
    """Connections the selector holds: idle keep-alive ones and heads still arriving."""
    busy: int
    """Connections queued for a worker or being answered."""
    accepted: int
    answered: int
    head_timeouts: int
    idle_closed: int
    client_gone: int
    closed_over_cap: int
    refused_busy: int


class _Conn:
    """One client connection. Held by the selector thread while ``waiting``, by one worker while busy."""

    __slots__ = ("sock", "address", "buffer", "since", "deadline", "need", "large")

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.buffer = bytearray()
        self.since = self.deadline = 0.0  # monotonic: waiting since, closed at
        self.need = -1  # bytes of head + pre-read body; -1 while the head is incomplete
        self.large = False  # a body larger than _PREREAD_BODY_BYTES is left for the worker to read

    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}" if isinstance(self.address, tuple) else str(self.address)


class _Reader:
    """A handler's ``rfile``: the bytes the selector buffered, then the socket; every socket read ends by the
    request's deadline (``ClientGone`` past it, or when the client closes mid-request)."""

    def __init__(self, conn: _Conn, deadline: float) -> None:
        self._sock = conn.sock
        self._buffer = conn.buffer
        self._pos = 0
        self._deadline = deadline

    def _fill(self, size: int) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ClientGone("request timed out")
        try:
            self._sock.settimeout(remaining)
            data = self._sock.recv(max(size, 4096))
        except OSError as exc:
            raise ClientGone(f"reading: {exc}") from None
        if not data:
            raise ClientGone("closed the connection mid-request")
        del self._buffer[:self._pos]
        self._pos = 0
        self._buffer += data

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n", self._pos)
            available = len(self._buffer) - self._pos
            if end >= 0 or 0 <= limit <= available:
                stop = end + 1 if end >= 0 else len(self._buffer)
                if limit >= 0:
                    stop = min(stop, self._pos + limit)
                line = bytes(self._buffer[self._pos:stop])
                self._pos = stop
                return line
            self._fill(4096)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ClientGone("read to the end of the connection is not supported: send Content-Length")
        while len(self._buffer) - self._pos < size:
            self._fill(min(size - (len(self._buffer) - self._pos), 1024 * 1024))
        data = bytes(self._buffer[self._pos:self._pos + size])
        self._pos += size
        return data

    def leftover(self) -> bytearray:
        """Bytes received after the request (a pipelined next one): they go back to the selector with the socket."""
        return self._buffer[self._pos:]

    def close(self) -> None:
        pass


class _Writer:
    """A handler's ``wfile``: each write is one ``sendall`` bounded by the request timeout."""

    def __init__(self, sock: socket.socket, timeout_sec: float) -> None:
        self._sock = sock
        self._timeout = timeout_sec

    def write(self, data: bytes) -> int:
        try:
            self._sock.settimeout(self._timeout)
            self._sock.sendall(data)
        except OSError as exc:
            raise ClientGone(f"writing: {exc}") from None
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Request(NamedTuple):
    """What a handler is constructed with (its ``request``): see ``JsonHandler.setup``."""

    sock: socket.socket
    rfile: _Reader
    wfile: _Writer


class HttpServer:
    """An HTTP/1.1 server whose every thread is named, bounded and stopped by ``stop``.

    Threads: ``<name>`` runs the selector loop: it accepts connections and reads each request's head (and a body up
    to 64 KB) itself, non-blocking, so a client that is slow to send costs a socket, not a thread. A complete request
    goes to a fixed pool of ``<name>:worker-N`` threads, which answer it (reading a larger body with the request
    timeout); a keep-alive connection then goes back to the selector. Bounds: ``max_connections`` open connections
    (past it the longest-waiting one held by the selector is closed; when every one is busy, a new one gets 503);
    ``head_timeout_sec`` from a head's first byte (408, closed); ``keepalive_timeout_sec`` idle; at most
    ``large_body_workers`` workers read a large body at once (503 beyond, so slow uploads cannot take every worker).
    A client that goes away is a debug line. ``stop`` closes the listener and every connection and joins every
    thread."""

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], name: str, *, workers: int = 16,
                 max_connections: int = 512, head_timeout_sec: float = 10.0, request_timeout_sec: float = 30.0,
                 keepalive_timeout_sec: float | None = None, large_body_workers: int | None = None) -> None:
        self.name = name
        self.handler = handler
        self.workers = workers
        self.max_connections = max_connections
        self.head_timeout_sec = head_timeout_sec
        self.request_timeout_sec = request_timeout_sec
        self.keepalive_timeout_sec = float(handler.timeout if keepalive_timeout_sec is None else keepalive_timeout_sec)
        self.large_body_workers = workers if large_body_workers is None else max(1, large_body_workers)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.create_server(address, family=family, backlog=128)  # SO_REUSEADDR on POSIX
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, _Conn] = {}  # the selector thread's own
        self._queue: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()  # bounded by max_connections
        self._lock = threading.Lock()
        self._busy: set[_Conn] = set()
        self._returned: list[_Conn] = []
        self._large = 0
        self._stopping = False
        self._loop: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._counts = dict.fromkeys(("accepted", "answered", "head_timeouts", "idle_closed", "client_gone",
                                      "closed_over_cap", "refused_busy"), 0)
        self._cap_warned = -_CAP_WARNING_SEC
        self._over_cap_since_warning = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._work, name=f"{self.name}:worker-{i}")
                         for i in range(self.workers)]
        self._loop = threading.Thread(target=self._select_loop, name=self.name)
        for t in (*self._threads, self._loop):
            t.start()

    def serving(self) -> bool:
        return self._loop is not None and self._loop.is_alive()

    def statistics(self) -> ServerStats:
        with self._lock:
            busy = len(self._busy)
            counts = dict(self._counts)
        waiting = len(self._waiting)
        return ServerStats(open_connections=waiting + busy, waiting=waiting, busy=busy, **counts)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting, close every connection, join every thread; False if one did not end within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            busy = list(self._busy)
        self._wake()
        if self._loop is not None:
            self._loop.join(max(0.0, deadline - time.monotonic()))
        else:
            self._teardown()
        for conn in busy:  # a worker blocked on a client returns at once
            _shutdown(conn.sock)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        threads = [*self._threads, *([self._loop] if self._loop is not None else [])]
        alive = [t.name for t in threads if t.is_alive()]
        if not alive:
            self._wake_r.close()
            self._wake_w.close()
        return not alive

    # --- the selector thread ---

    def _select_loop(self) -> None:
        sel = self._selector
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        try:
            while not self._stopping:
                for key, _ in sel.select(0.25):
                    if key.data is None:
                        self._accept()
                    elif key.data is self._wake_r:
                        self._adopt_returned()
                    elif key.fileobj in self._waiting:
                        self._receive(key.data)
                self._expire(time.monotonic())
        finally:
            self._teardown()

    def _teardown(self) -> None:
        with self._lock:
            self._stopping = True
            returned, self._returned = self._returned, []
        for conn in [*self._waiting.values(), *returned]:
            conn.sock.close()
        self._waiting.clear()
        self._selector.close()
        self._listener.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (already woken) or closed (stopped)
            pass

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: the listener stays; the client retries
                log.warning("%s: accept failed: %s", self.name, exc)
                return
            with self._lock:
                self._counts["accepted"] += 1
                busy = len(self._busy)
            conn = _Conn(sock, address)
            if len(self._waiting) + busy >= self.max_connections and not self._make_room(conn, busy):
                continue
            sock.setblocking(False)
            if self.handler.disable_nagle_algorithm:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            self._wait(conn, time.monotonic())

    def _make_room(self, conn: _Conn, busy: int) -> bool:
        """At the connection cap: close the connection the selector has held longest; with none, 503 the new one."""
        if not self._waiting:
            self._refuse(conn, 503, "too many connections: every one is being answered, retry later", "refused_busy")
            return False
        oldest = min(self._waiting.values(), key=lambda c: c.since)
        self._close(oldest, "closed to make room (connection cap reached)", "closed_over_cap")
        self._over_cap_since_warning += 1
        now = time.monotonic()
        if now - self._cap_warned >= _CAP_WARNING_SEC:
            log.warning("%s: %d open connections (max_connections): closed the longest-waiting one (%d since the "
                        "last warning; more are logged at debug level)", self.name, self.max_connections,
                        self._over_cap_since_warning)
            self._cap_warned, self._over_cap_since_warning = now, 0
        return True

    def _wait(self, conn: _Conn, now: float) -> None:
        """Hold ``conn`` until its next request is complete (it may already be: a pipelined one)."""
        conn.since = now
        conn.deadline = now + (self.head_timeout_sec if conn.buffer else self.keepalive_timeout_sec)
        conn.need = -1
        if self._complete(conn):
            self._dispatch(conn)
            return
        if conn.sock.fileno() >= 0:
            self._waiting[conn.sock] = conn
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _adopt_returned(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            returned, self._returned = self._returned, []
        now = time.monotonic()
        for conn in returned:
            try:
                conn.sock.setblocking(False)  # a worker left it with a timeout
            except OSError:  # shut down by stop() meanwhile
                conn.sock.close()
                continue
            self._wait(conn, now)

    def _receive(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(conn, f"went away: {exc}", "client_gone")
            return
        if not data:
            self._close(conn, "closed" if not conn.buffer else "closed before sending a whole request",
                        "idle_closed" if not conn.buffer else "client_gone")
            return
        if not conn.buffer:
            conn.deadline = time.monotonic() + self.head_timeout_sec
        conn.buffer += data
        if self._complete(conn):
            del self._waiting[conn.sock]
            self._selector.unregister(conn.sock)
            self._dispatch(conn)

    def _complete(self, conn: _Conn) -> bool:
        """Has the head arrived, with the body when it is small enough to pre-read? Answers 431 to a huge head."""
        if conn.need < 0:
            end = conn.buffer.find(b"\r\n\r\n")
            if end >= 0:
                end += 4
            elif (bare := conn.buffer.find(b"\n\n")) >= 0:  # bare LF line ends (the stdlib's parser takes them)
                end = bare + 2
            if end < 0 or end > _HEAD_MAX_BYTES:
                if len(conn.buffer) > _HEAD_MAX_BYTES:
                    self._refuse(conn, 431, f"request head larger than {_HEAD_MAX_BYTES} bytes", "client_gone")
                return False
            head = bytes(conn.buffer[:end])
            length = _CONTENT_LENGTH.search(head)
            body = int(length.group(1)) if length is not None else 0
            conn.large = False
            if _NO_PREREAD.search(head) or body > _PREREAD_BODY_BYTES:  # the worker reads (or refuses) it
                conn.large = _NO_PREREAD.search(head) is None and body <= self.handler.max_body_bytes
                body = 0
            conn.need = end + body
        return len(conn.buffer) >= conn.need

    def _dispatch(self, conn: _Conn) -> None:
        with self._lock:
            if conn.large and self._large >= self.large_body_workers:
                refuse = True
            else:
                refuse = False
                self._large += conn.large
                self._busy.add(conn)
        if refuse:
            self._refuse(conn, 503, "busy reading other large bodies, retry later", "refused_busy")
            return
        self._queue.put(conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._waiting.values() if c.deadline <= now]:
            if conn.buffer:
                self._refuse(conn, 408, f"request head not received within {self.head_timeout_sec:g} s",
                             "head_timeouts")
            else:
                self._close(conn, f"idle for {self.keepalive_timeout_sec:g} s", "idle_closed")

    def _refuse(self, conn: _Conn, status: int, reason: str, counter: str) -> None:
        """Answer ``status`` without a worker (best effort: the socket is non-blocking) and close."""
        body = _JSON.encode({"error": reason})
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            conn.sock.setblocking(False)
            conn.sock.send(head + body)
        except OSError:
            pass
        self._close(conn, f"{status}: {reason}", counter)

    def _close(self, conn: _Conn, why: str, counter: str) -> None:
        if self._waiting.pop(conn.sock, None) is not None:
            self._selector.unregister(conn.sock)
        log.debug("%s: connection from %s %s", self.name, conn.peer(), why)
        with self._lock:
            self._counts[counter] += 1
        conn.sock.close()

    # --- the workers ---

    def _work(self) -> None:
        while (conn := self._queue.get()) is not None:
            keep = False
            try:
                keep = not self._stopping and self._answer(conn)
            finally:
                with self._lock:
                    self._busy.discard(conn)
                    self._large -= conn.large
                    conn.large = False
                    keep = keep and not self._stopping
                    if keep:
                        self._returned.append(conn)
                if keep:
                    self._wake()
                else:
                    conn.sock.close()

    def _answer(self, conn: _Conn) -> bool:
        """Answer the request at the head of ``conn.buffer``; True to keep the connection open."""
        reader = _Reader(conn, time.monotonic() + self.request_timeout_sec)
        try:
            handler = self.handler(_Request(conn.sock, reader, _Writer(conn.sock, self.request_timeout_sec)),
                                   conn.address, self)
        except ClientGone as exc:
            log.debug("%s: connection from %s went away: %s", self.name, conn.peer(), exc)
            with self._lock:
                self._counts["client_gone"] += 1
            return False
        except Exception:  # a bug in a handler: its connection is closed, the worker goes on
            log.exception("%s: error answering a request from %s", self.name, conn.peer())
            return False
        with self._lock:
            self._counts["answered"] += 1
        if handler.close_connection:
            return False
        conn.buffer = reader.leftover()
        return True


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler with JSON answers and a bounded body reader, run by ``HttpServer``'s workers: one request
    per instance (the server keeps the connection), ``rfile``/``wfile`` bounded by the request timeout."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # the stdlib's 0.9 answers a bad request line with no status line at all
    disable_nagle_algorithm = True  # headers and body are separate writes: without it, +40 ms per call (delayed ACK)
    timeout = 30  # an idle keep-alive connection is closed after this many seconds (unless the server says otherwise)
    max_body_bytes = 1024 * 1024

    def setup(self) -> None:
        request: _Request = self.request
        self.connection = request.sock
        self.rfile = request.rfile  # type: ignore[assignment]
        self.wfile = request.wfile  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s: " + format, self.server.name, *args)  # type: ignore[attr-defined]

    def send_body(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        self.send_body(status, _JSON.encode(obj))

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "Content-Length is negative")
        if length > self.max_body_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise HttpError(413, f"body of {length} bytes is larger than max_body_bytes ({self.max_body_bytes})")
        return self.rfile.read(length) if length else b""

    def answer(self, route: Callable[[], None]) -> None:
        try:
            route()
        except HttpError as exc:
            self.send_json(exc.status, {"error": str(exc)})
        except ClientGone:
            raise  # not an error of ours: the server logs one debug line
        except UnicodeDecodeError as exc:  # a body decoder met bytes that are not UTF-8 (inside a JSON string)
            self.send_json(400, {"error": _not_utf8(exc)})
        except msgspec.ValidationError as exc:  # a route group's decoder, whose error escaped it
            self.send_json(400, {"error": str(exc)})
        except msgspec.DecodeError as exc:
            self.send_json(400, {"error": f"not valid JSON: {exc}"})
        except Exception:  # a bug here must not take the worker (or the pipeline) down silently
            log.exception("%s: error answering %s %s", self.server.name, self.command, self.path)  # type: ignore[attr-defined]
            self.send_json(500, {"error": "internal error (logged)"})


def decode_body(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """A request body through its typed decoder; 400 naming what is wrong (empty, not JSON, a field's path)."""
    if not body:
        raise HttpError(400, "empty body: expected a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise HttpError(400, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise HttpError(400, _not_utf8(exc)) from None


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not valid JSON: a string is not valid UTF-8 ({exc.reason}); send the body encoded as UTF-8"
