"""A loopback HTTP server that answers badly on purpose, for tests of lmgui's HTTP client.

It runs on plain sockets in background threads, so it works whatever event loop the test uses
(pytest-asyncio's, qasync's, or none). Each connection carries one request: the server reads the
request line, the headers and a body (Content-Length or chunked), records it in ``requests``, then
answers according to its mode with ``Connection: close`` (where it sends headers at all) and closes.

Modes and their parameters (defaults in brackets):

- ``json``: ``body`` [b"{}"], ``status`` [200], ``content_type`` ["application/json"]; any exact
  body, e.g. truncated JSON or wrong types.
- ``truncated``: ``body`` [b'{"models": ['], ``missing`` [1000], ``status`` [200],
  ``content_type``; claims ``Content-Length: len(body) + missing``, sends ``body`` and closes.
- ``huge``: ``size`` [200 MB], ``status`` [200], ``content_type`` ["application/json"],
  ``chunked`` [False], ``shape`` ["array": ``{"models": [{"key": "x"},...`` never closed, or
  "string": ``{"error": "xxx...`` never closed]; streams ``size`` body bytes in 64 KiB pieces, with
  ``Content-Length: size`` or chunked, and stops as soon as the client goes away.
- ``huge_error``: as ``huge`` but ``status`` [500], ``size`` [100 MB], ``content_type``
  ["text/plain; charset=utf-8"] (a JSON content type gives JSON filler).
- ``drip``: ``interval`` [2.0], ``headers_too`` [False], ``status`` [200], ``content_type``; a
  200 JSON response (no Content-Length: the body runs until the close) whose body comes one byte
  every ``interval`` seconds for ever; with ``headers_too`` the status line and headers drip too.
- ``stall``: ``partial`` [b'{"models": ['], ``send_headers`` [True], ``content_length``
  [None: no header], ``status`` [200], ``content_type``; sends the headers and ``partial``, then
  nothing until the client closes or the server stops. ``send_headers=False`` sends nothing at
  all (a server that accepts and never answers).
- ``html``: ``status`` [200], ``content_type`` ["text/html; charset=utf-8"], ``body`` [a small
  router login page whose title is "Router login"].
- ``sse``: ``events`` [[]] (raw chunks, bytes or str), ``interval`` [0.0] between chunks, ``then``
  ["close" | "hang" | "repeat": resend the last chunk every ``interval`` for ever], ``status``
  [200], ``content_type`` ["text/event-stream"], ``chunked`` [False].
- ``sse_huge_line``: ``size`` [50 MB], ``before`` [[]] (raw chunks sent first), ``then``
  ["close" | "hang"], ``chunked`` [False]; one ``data:`` line of ``size`` bytes (counting
  ``data: ``) with no newline, streamed in 64 KiB pieces, stopping when the client goes away.
- ``redirect``: ``target`` (required), ``status`` [302]; ``Location`` is ``target`` plus the
  request's path and query when ``target`` has no path of its own, else ``target`` as given.
- ``raw``: ``data`` [b""] sent as the whole response, then a close (``reset=True``: an RST).

Every mode also takes ``delay`` [0.0] (seconds before answering at all) and every mode but
``raw`` takes ``extra_headers`` [{}] (added to the response headers).

``bytes_sent`` counts what ``socket.send`` accepted (status line, headers, framing and body, all
connections). Accepted is not read: the kernel may still hold up to the send buffer (SO_SNDBUF of
64 KiB requested, which Linux doubles) plus whatever the client's receive buffer took in before it
closed (Linux autotunes that, typically a few MB on loopback).
"""

from __future__ import annotations

import contextlib
import http
import itertools
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = ["MODES", "HostileFactory", "HostileServer", "Request", "hostile"]

KiB = 1024
MB = 1000 * 1000
CHUNK = 64 * KiB

_POLL = 0.05  # how often a waiting handler looks at the stop event
_MAX_HEAD = 1024 * KiB
_MAX_BODY = 64 * 1024 * KiB

ROUTER_LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Router login</title>
<style>body { font-family: sans-serif; } form { width: 20em; margin: 4em auto; }</style>
</head>
<body>
<form method="post" action="/cgi-bin/login">
<h1>Welcome to your router</h1>
<p>Please sign in to continue.</p>
<label>User name <input name="user" value="admin"></label>
<label>Password <input name="pass" type="password"></label>
<button type="submit">Log in</button>
</form>
</body>
</html>
"""

_JSON = "application/json"

# Parameters every mode takes, then each mode's own, with their defaults. A value of _REQUIRED
# must be given.
_REQUIRED: Any = object()
_COMMON: dict[str, Any] = {"delay": 0.0, "extra_headers": {}}
_MODE_PARAMS: dict[str, dict[str, Any]] = {
    "json": {"body": b"{}", "status": 200, "content_type": _JSON},
    "truncated": {
        "body": b'{"models": [',
        "missing": 1000,
        "status": 200,
        "content_type": _JSON,
    },
    "huge": {
        "size": 200 * MB,
        "status": 200,
        "content_type": _JSON,
        "chunked": False,
        "shape": "array",
    },
    "huge_error": {
        "size": 100 * MB,
        "status": 500,
        "content_type": "text/plain; charset=utf-8",
        "chunked": False,
        "shape": "array",
    },
    "drip": {"interval": 2.0, "headers_too": False, "status": 200, "content_type": _JSON},
    "stall": {
        "partial": b'{"models": [',
        "send_headers": True,
        "content_length": None,
        "status": 200,
        "content_type": _JSON,
    },
    "html": {
        "body": ROUTER_LOGIN_PAGE,
        "status": 200,
        "content_type": "text/html; charset=utf-8",
    },
    "sse": {
        "events": [],
        "interval": 0.0,
        "then": "close",
        "status": 200,
        "content_type": "text/event-stream",
        "chunked": False,
    },
    "sse_huge_line": {
        "size": 50 * MB,
        "before": [],
        "then": "close",
        "status": 200,
        "content_type": "text/event-stream",
        "chunked": False,
    },
    "redirect": {"target": _REQUIRED, "status": 302},
    "raw": {"data": b"", "reset": False},
}
MODES = frozenset(_MODE_PARAMS)


@dataclass(frozen=True)
class Request:
    """One request as the server read it. Header names are lower-case; repeats are joined."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _as_bytes(name: str, value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{name} must be bytes or str, not {type(value).__name__}")


def _normalise(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a mode's parameters in the test's thread and fill in the defaults."""
    if mode not in _MODE_PARAMS:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(sorted(MODES))}")
    allowed = dict(_COMMON) | _MODE_PARAMS[mode]
    if mode == "raw":
        del allowed["extra_headers"]
    unknown = set(params) - set(allowed)
    if unknown:
        raise TypeError(
            f"mode {mode!r} takes no {', '.join(sorted(unknown))}; it takes {', '.join(allowed)}"
        )
    p = allowed | params
    missing = [k for k, v in p.items() if v is _REQUIRED]
    if missing:
        raise TypeError(f"mode {mode!r} needs {', '.join(missing)}")
    for key in ("body", "partial", "data"):
        if key in p:
            p[key] = _as_bytes(key, p[key])
    for key in ("events", "before"):
        if key in p:
            p[key] = [_as_bytes(key, e) for e in p[key]]
    for key in ("delay", "interval"):
        if key in p:
            p[key] = float(p[key])
            if p[key] < 0:
                raise ValueError(f"{key} must be >= 0")
    for key in ("status", "size", "missing"):
        if key in p:
            p[key] = int(p[key])
    if "extra_headers" in p:
        extra = p["extra_headers"]
        pairs = extra.items() if isinstance(extra, dict) else extra
        p["extra_headers"] = [(str(k), str(v)) for k, v in pairs]
    if mode == "sse" and p["then"] not in ("close", "hang", "repeat"):
        raise ValueError("then must be 'close', 'hang' or 'repeat'")
    if mode == "sse" and p["then"] == "repeat" and not p["events"]:
        raise ValueError("then='repeat' needs at least one event")
    if mode == "sse_huge_line" and p["then"] not in ("close", "hang"):
        raise ValueError("then must be 'close' or 'hang'")
    if "shape" in p and p["shape"] not in ("array", "string"):
        raise ValueError("shape must be 'array' or 'string'")
    if mode == "redirect":
        if p["status"] not in (301, 302, 303, 307, 308):
            raise ValueError("a redirect status is one of 301, 302, 303, 307, 308")
        p["target"] = str(p["target"])
    return p


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _filler(shape: str, json_like: bool) -> tuple[bytes, bytes]:
    """The opening and the repeated unit of a huge body."""
    if not json_like:
        return b"", b"Internal Server Error: something went wrong, and then some more. "
    if shape == "string":
        return b'{"error": "', b"x" * 64
    return b'{"models": [', b'{"key": "x"},'


def _stream(prefix: bytes, unit: bytes, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``prefix`` then ``unit`` repeated, in pieces of about CHUNK bytes."""
    block = unit * max(1, CHUNK // len(unit))  # whole units, so every piece ends on a boundary
    piece = prefix + block
    left = size
    while left > 0:
        out = piece[:left]
        yield out
        left -= len(out)
        piece = block


class _GoneError(Exception):
    """The client closed the connection, or the server is stopping."""


class _Conn:
    """One accepted connection: counted sends and waits that notice a close or a stop."""

    def __init__(self, server: HostileServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buf = b""
        self.client_gone = False

    def _stopping(self) -> bool:
        return self.server._stop.is_set()

    def _lost(self) -> None:
        if not self._stopping():
            self.client_gone = True
        raise _GoneError

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._stopping():
                raise _GoneError
            try:
                n = self.sock.send(view)
            except TimeoutError:
                continue
            except OSError:
                self._lost()
            self.server._count(n)
            view = view[n:]

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (0: just look); _GoneError early if the client closes or we stop."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping():
                raise _GoneError
            left = max(0.0, deadline - time.monotonic())
            try:
                readable, _, _ = select.select([self.sock], [], [], min(left, _POLL))
                # Anything the client sends after its request is discarded; an empty read is its
                # close (or our own shutdown from stop()).
                if readable and not self.sock.recv(64 * KiB):
                    self._lost()
            except TimeoutError:
                pass
            except (OSError, ValueError):
                self._lost()
            if left <= 0:
                return

    def hang(self) -> None:
        """Send nothing until the client closes or the server stops."""
        while True:
            self.pause(0.5)

    def _fill(self) -> None:
        while True:
            if self._stopping():
                raise _GoneError
            try:
                data = self.sock.recv(64 * KiB)
            except TimeoutError:
                continue
            except OSError:
                self._lost()
            if not data:
                self._lost()
            self.buf += data
            return

    def read_line(self, limit: int = _MAX_HEAD) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise _GoneError
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_request(self) -> Request | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                return None
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        first, *lines = head.decode("latin-1").split("\r\n")
        parts = first.split(" ")
        if len(parts) != 3:
            return None
        method, path, _version = parts
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.read_line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.read_line():  # trailers
                        pass
                    break
                if len(body) + size > _MAX_BODY:
                    return None
                body += self.read_exact(size)
                self.read_line()
        else:
            length = int(headers.get("content-length", "0") or "0")
            if length > _MAX_BODY:
                return None
            body = self.read_exact(length)
        return Request(method, path, headers, body)


class _Body:
    """Writes a response body, plain or chunked."""

    def __init__(self, conn: _Conn, chunked: bool) -> None:
        self.conn = conn
        self.chunked = chunked

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.conn.send(data)

    def end(self) -> None:
        if self.chunked:
            self.conn.send(b"0\r\n\r\n")


class HostileServer:
    """An HTTP server on 127.0.0.1 that answers every request according to its mode.

    >>> with HostileServer("huge", size=10 * MB) as srv:
    ...     ...  # point a client at srv.url, then look at srv.bytes_sent, srv.requests
    """

    SNDBUF = 64 * KiB  # SO_SNDBUF asked for on accepted sockets (Linux doubles it)

    def __init__(self, mode: str, **params: Any) -> None:
        self._lock = threading.Condition()
        self._mode = mode
        self._params = _normalise(mode, params)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._handlers: set[threading.Thread] = set()
        self._socks: set[socket.socket] = set()
        self._bytes_sent = 0
        self._requests: list[Request] = []
        self._connections = 0
        self._active = 0
        self._aborted = 0
        self._errors: list[BaseException] = []
        self.url = ""
        self.port = 0

    # -- state, safe to read from any thread ---------------------------------------------------

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    @property
    def bytes_sent(self) -> int:
        """Bytes socket.send accepted, over all connections (headers, framing and body)."""
        with self._lock:
            return self._bytes_sent

    @property
    def requests(self) -> list[Request]:
        """A copy of the requests read so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def active(self) -> int:
        """Connections whose handler is still running."""
        with self._lock:
            return self._active

    @property
    def aborted(self) -> int:
        """Responses cut short because the client closed the connection."""
        with self._lock:
            return self._aborted

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions in handlers (a bug in this module, not in the client)."""
        with self._lock:
            return list(self._errors)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted connection has been handled and closed; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._active == 0, timeout)

    def wait_for(self, condition: Callable[[HostileServer], bool], timeout: float = 5.0) -> bool:
        """Poll ``condition(self)`` until it holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- control --------------------------------------------------------------------------------

    def set_mode(self, mode: str, **params: Any) -> None:
        """Answer later requests in another mode (requests being answered keep theirs)."""
        normalised = _normalise(mode, params)
        with self._lock:
            self._mode = mode
            self._params = normalised

    def start(self) -> HostileServer:
        if self._listener is not None:
            raise RuntimeError("already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"hostile-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection, and return within about half a second."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
        if self._acceptor is not None:
            self._acceptor.join(1.0)
        with self._lock:
            socks = list(self._socks)
            handlers = list(self._handlers)
        for sock in socks:
            # Wakes a handler blocked on this socket; the handler closes it.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 0.5
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> HostileServer:
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<HostileServer {self._mode} {self.url or '(not started)'}>"

    # -- internals ------------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        with self._lock:
            self._bytes_sent += n

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._stop.is_set():
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if not self._stop.is_set():
                        with self._lock:
                            self._errors.append(exc)
                    break
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SNDBUF)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(_POLL)
                thread = threading.Thread(
                    target=self._handle, args=(sock,), name=f"hostile-{self.port}-conn", daemon=True
                )
                with self._lock:
                    self._connections += 1
                    self._active += 1
                    self._socks.add(sock)
                    self._handlers.add(thread)
                thread.start()
        finally:
            listener.close()

    def _handle(self, sock: socket.socket) -> None:
        conn = _Conn(self, sock)
        reset = False
        request: Request | None = None
        try:
            request = conn.read_request()
            if request is None:
                return
            with self._lock:
                self._requests.append(request)
                mode, params = self._mode, self._params
            if params["delay"]:
                conn.pause(params["delay"])
            reset = self._answer(conn, request, mode, params)
        except _GoneError:
            pass
        except Exception as exc:  # a bug here; kept for the test to see, not raised in a thread
            with self._lock:
                self._errors.append(exc)
        finally:
            self._close(sock, reset)
            with self._lock:
                if conn.client_gone and request is not None:
                    self._aborted += 1
                self._active -= 1
                self._socks.discard(sock)
                self._handlers.discard(threading.current_thread())
                self._lock.notify_all()

    @staticmethod
    def _close(sock: socket.socket, reset: bool) -> None:
        with contextlib.suppress(OSError):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_WR)
                # Discard anything left unread, so the close is a FIN rather than an RST.
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    for _ in range(16):
                        if not sock.recv(64 * KiB):
                            break
        sock.close()

    def _answer(self, conn: _Conn, request: Request, mode: str, p: dict[str, Any]) -> bool:
        """Send the response for ``mode``; True to close with an RST."""
        extra: list[tuple[str, str]] = p.get("extra_headers", [])

        def head(status: int, content_type: str | None, length: int | None, chunked: bool) -> bytes:
            headers: list[tuple[str, str]] = []
            if content_type is not None:
                headers.append(("Content-Type", content_type))
            if length is not None:
                headers.append(("Content-Length", str(length)))
            if chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            headers.append(("Connection", "close"))
            return _head(status, headers + extra)

        if mode in ("json", "html"):
            conn.send(head(p["status"], p["content_type"], len(p["body"]), False) + p["body"])
        elif mode == "truncated":
            body: bytes = p["body"]
            conn.send(head(p["status"], p["content_type"], len(body) + p["missing"], False) + body)
        elif mode in ("huge", "huge_error"):
            size: int = p["size"]
            chunked: bool = p["chunked"]
            conn.send(head(p["status"], p["content_type"], None if chunked else size, chunked))
            prefix, unit = _filler(p["shape"], "json" in p["content_type"].lower())
            writer = _Body(conn, chunked)
            for piece in _stream(prefix, unit, size):
                writer.write(piece)
            writer.end()
        elif mode == "drip":
            interval: float = p["interval"]
            start = head(p["status"], p["content_type"], None, False)
            if not p["headers_too"]:
                conn.send(start)
                start = b""
            endless = itertools.chain(start, b'{"models": [', itertools.cycle(b'{"key": "x"}, '))
            for byte in endless:
                conn.send(bytes((byte,)))
                conn.pause(interval)
        elif mode == "stall":
            if p["send_headers"]:
                conn.send(head(p["status"], p["content_type"], p["content_length"], False))
                conn.send(p["partial"])
            conn.hang()
        elif mode == "sse":
            events: list[bytes] = p["events"]
            writer = _Body(conn, p["chunked"])
            conn.send(head(p["status"], p["content_type"], None, p["chunked"]))
            for i, event in enumerate(events):
                if i:
                    conn.pause(p["interval"])
                writer.write(event)
            if p["then"] == "hang":
                conn.hang()
            while p["then"] == "repeat":
                conn.pause(p["interval"])
                writer.write(events[-1])
            writer.end()
        elif mode == "sse_huge_line":
            writer = _Body(conn, p["chunked"])
            conn.send(head(p["status"], p["content_type"], None, p["chunked"]))
            for event in p["before"]:
                writer.write(event)
            for piece in _stream(b'data: {"text": "', b"x" * 64, p["size"]):
                writer.write(piece)
            if p["then"] == "hang":
                conn.hang()
            writer.end()
        elif mode == "redirect":
            target: str = p["target"]
            if urlsplit(target).path in ("", "/"):
                target = target.rstrip("/") + request.path
            headers = [("Location", target), ("Content-Length", "0"), ("Connection", "close")]
            conn.send(_head(p["status"], headers + extra))
        elif mode == "raw":
            conn.send(p["data"])
            return bool(p["reset"])
        else:  # pragma: no cover - _normalise rejects unknown modes
            raise AssertionError(mode)
        return False


HostileFactory = Callable[..., HostileServer]


@pytest.fixture
def hostile() -> Iterator[HostileFactory]:
    """``hostile(mode, **params)`` starts a HostileServer; all of them stop at teardown."""
    started: list[HostileServer] = []

    def make(mode: str, **params: Any) -> HostileServer:
        server = HostileServer(mode, **params).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
