"""Self-tests of tests/hostile.py, with plain sockets and httpx (nothing from lmgui)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from tests import hostile as hostile_module
from tests.hostile import MB, HostileFactory, HostileServer

# The fixture, by assignment: an imported name that test parameters shadow reads as F811 to ruff.
# A conftest that re-exports the fixture (with a no-qa for F401) avoids this too.
hostile = hostile_module.hostile


def raw_get(url: str, path: str = "/", *, timeout: float = 2.0) -> socket.socket:
    """A connected socket that has sent one GET."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def read_for(sock: socket.socket, seconds: float) -> bytes:
    """Whatever arrives within ``seconds`` (the socket stays open)."""
    deadline = time.monotonic() + seconds
    chunks = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_binds_loopback_and_records_requests(hostile: HostileFactory) -> None:
    srv = hostile("json", body=b'{"ok": true}')
    assert srv.url.startswith("http://127.0.0.1:")
    r = httpx.post(
        srv.url + "/api/v1/chat?x=1", json={"a": 1}, headers={"Authorization": "Bearer s"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["connection"] == "close"
    assert r.json() == {"ok": True}
    [req] = srv.requests
    assert (req.method, req.path) == ("POST", "/api/v1/chat?x=1")
    assert req.headers["authorization"] == "Bearer s"
    assert json.loads(req.body) == {"a": 1}
    assert srv.connections == 1
    assert srv.wait_idle(1.0)
    assert srv.bytes_sent == len(r.content) + len(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert srv.errors == []


def test_chunked_request_body_is_read(hostile: HostileFactory) -> None:
    srv = hostile("json")
    r = httpx.post(srv.url + "/x", content=iter([b"ab", b"cd"]))
    assert r.status_code == 200
    assert srv.requests[0].body == b"abcd"


def test_json_status_and_wrong_types(hostile: HostileFactory) -> None:
    srv = hostile("json", body='{"models": "not a list"', status=404)
    r = httpx.get(srv.url + "/api/v1/models")
    assert r.status_code == 404
    assert r.content == b'{"models": "not a list"'


def test_truncated_claims_more_than_it_sends(hostile: HostileFactory) -> None:
    srv = hostile("truncated", body=b'{"models": [{"ke')
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(srv.url + "/api/v1/models")
    data = read_all(raw_get(srv.url))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 1016" in head
    assert body == b'{"models": [{"ke'


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_small_size_is_complete_and_valid_looking(
    hostile: HostileFactory, chunked: bool
) -> None:
    srv = hostile("huge", size=300_000, chunked=chunked)
    r = httpx.get(srv.url + "/")
    assert r.status_code == 200
    assert len(r.content) == 300_000
    assert r.content.startswith(b'{"models": [{"key": "x"},{"key": "x"},')
    assert ("transfer-encoding" in r.headers) is chunked
    assert ("content-length" in r.headers) is not chunked
    string = hostile("huge", size=1000, shape="string")
    assert httpx.get(string.url).content.startswith(b'{"error": "xxx')


@pytest.mark.parametrize(
    ("mode", "chunked"), [("huge", False), ("huge", True), ("huge_error", False)]
)
def test_huge_stops_when_the_client_closes(
    hostile: HostileFactory, mode: str, chunked: bool
) -> None:
    srv = hostile(mode, chunked=chunked)  # 200 MB / 100 MB
    with httpx.Client() as client, client.stream("GET", srv.url + "/api/v1/models") as r:
        assert r.status_code == (200 if mode == "huge" else 500)
        got = 0
        for piece in r.iter_raw():
            got += len(piece)
            if got >= 1 * MB:
                break
    assert srv.wait_idle(2.0)
    assert srv.aborted == 1
    assert 1 * MB <= srv.bytes_sent < 4 * MB


async def test_huge_with_an_async_client(hostile: HostileFactory) -> None:
    srv = hostile("huge", size=50 * MB)
    async with httpx.AsyncClient() as client, client.stream("GET", srv.url) as r:
        got = 0
        async for piece in r.aiter_raw():
            got += len(piece)
            if got >= 1 * MB:
                break
    assert await asyncio.to_thread(srv.wait_idle, 2.0)
    assert srv.bytes_sent < 4 * MB


def test_huge_error_small_is_text(hostile: HostileFactory) -> None:
    srv = hostile("huge_error", size=10_000)
    r = httpx.get(srv.url)
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/plain")
    assert len(r.content) == 10_000
    assert r.text.startswith("Internal Server Error")


def test_drip_sends_at_the_interval_and_stop_is_prompt() -> None:
    srv = HostileServer("drip", interval=0.1).start()
    sock = raw_get(srv.url)
    first = read_for(sock, 0.05)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    head, _, body = first.partition(b"\r\n\r\n")
    assert b"Content-Length" not in head
    more = read_for(sock, 0.5)
    assert 3 <= len(body + more) <= 8  # one byte now, then one per 0.1 s
    assert (body + more).startswith(b'{"mo')
    srv.set_mode("drip", interval=2.0)
    slow = raw_get(srv.url)
    assert read_for(slow, 0.1).endswith(b"\r\n\r\n{")
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.0
    assert srv.active == 0
    assert read_for(slow, 0.5) == b""  # closed by the stop
    sock.close()
    slow.close()


def test_drip_headers_too(hostile: HostileFactory) -> None:
    srv = hostile("drip", interval=0.05, headers_too=True)
    sock = raw_get(srv.url)
    got = read_for(sock, 0.3)
    assert 2 <= len(got) <= 10
    assert b"HTTP/1.1 200 OK".startswith(got)
    sock.close()
    assert srv.wait_idle(1.0)
    assert srv.aborted == 1


def test_stall_sends_part_then_nothing(hostile: HostileFactory) -> None:
    srv = hostile("stall", partial=b'{"models": [{"key"')
    sock = raw_get(srv.url)
    got = read_for(sock, 0.3)
    assert got.endswith(b'\r\n\r\n{"models": [{"key"')
    with pytest.raises(httpx.ReadTimeout), httpx.stream("GET", srv.url, timeout=0.2) as r:
        r.read()
    sock.close()
    assert srv.wait_idle(1.0)


def test_stall_without_headers_never_answers(hostile: HostileFactory) -> None:
    srv = hostile("stall", send_headers=False)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(srv.url, timeout=0.2)
    assert srv.wait_idle(1.0)
    assert srv.bytes_sent == 0


def test_html(hostile: HostileFactory) -> None:
    srv = hostile("html")
    r = httpx.get(srv.url + "/api/v1/models")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Router login</title>" in r.text


def test_sse_close(hostile: HostileFactory) -> None:
    events = [b"event: a\ndata: 1\n\n", b"data: 2\n\n"]
    srv = hostile("sse", events=events, interval=0.01)
    r = httpx.get(srv.url + "/v1/chat/completions")
    assert r.headers["content-type"] == "text/event-stream"
    assert r.content == b"".join(events)


def test_sse_chunked(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=["data: 1\n\n"], chunked=True)
    r = httpx.get(srv.url)
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"data: 1\n\n"


def test_sse_hang(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=[b"data: 1\n\n"], then="hang")
    sock = raw_get(srv.url)
    got = read_for(sock, 0.3)
    assert got.endswith(b"\r\n\r\ndata: 1\n\n")
    sock.close()
    assert srv.wait_idle(1.0)


def test_sse_repeat(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=[b"data: 1\n\n", b": ping\n\n"], interval=0.02, then="repeat")
    sock = raw_get(srv.url)
    got = read_for(sock, 0.3)
    assert got.count(b": ping\n\n") >= 4
    assert got.count(b"data: 1\n\n") == 1
    sock.close()
    assert srv.wait_idle(1.0)


def test_sse_huge_line_stops_when_the_client_closes(hostile: HostileFactory) -> None:
    srv = hostile("sse_huge_line", before=[b": hello\n\n"])
    with httpx.Client() as client, client.stream("GET", srv.url) as r:
        got = b""
        for piece in r.iter_raw():
            got += piece
            if len(got) >= 1 * MB:
                break
    assert got.startswith(b': hello\n\ndata: {"text": "xxx')
    assert b"\n" not in got[len(b": hello\n\n") :]
    assert srv.wait_idle(2.0)
    assert srv.bytes_sent < 4 * MB


def test_redirect_target_records_headers(hostile: HostileFactory) -> None:
    target = hostile("json", body=b'{"data": []}')
    srv = hostile("redirect", target=target.url, status=307)
    headers = {"Authorization": "Bearer secret"}
    r = httpx.get(srv.url + "/api/v1/models?a=1", headers=headers, follow_redirects=True)
    assert r.json() == {"data": []}
    assert r.history[0].status_code == 307
    assert r.history[0].headers["location"] == target.url + "/api/v1/models?a=1"
    assert srv.requests[0].headers["authorization"] == "Bearer secret"
    [arrived] = target.requests
    assert arrived.path == "/api/v1/models?a=1"
    assert "authorization" not in arrived.headers  # httpx drops it across origins
    httpx.get(target.url, headers=headers)  # what a leaky client would send
    assert target.requests[1].headers["authorization"] == "Bearer secret"
    exact = hostile("redirect", target="http://127.0.0.1:9/elsewhere")
    assert httpx.get(exact.url + "/x").headers["location"] == "http://127.0.0.1:9/elsewhere"


def test_raw(hostile: HostileFactory) -> None:
    srv = hostile("raw", data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert read_all(raw_get(srv.url)) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    srv.set_mode("raw", data=b"garbage", reset=True)
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url)
    srv.set_mode("raw")  # nothing at all
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(srv.url)


def test_set_mode_delay_and_extra_headers(hostile: HostileFactory) -> None:
    srv = hostile("html")
    assert httpx.get(srv.url).headers["content-type"].startswith("text/html")
    srv.set_mode("json", delay=0.2, extra_headers={"X-Odd": "1"})
    t0 = time.monotonic()
    r = httpx.get(srv.url)
    assert time.monotonic() - t0 >= 0.2
    assert r.headers["x-odd"] == "1"
    assert srv.mode == "json"
    assert srv.connections == 2


def test_stop_is_prompt_with_a_client_that_does_not_read() -> None:
    with HostileServer("huge") as srv:
        sock = raw_get(srv.url)
        assert srv.wait_for(lambda s: s.bytes_sent > 0, 1.0)
        time.sleep(0.1)  # the kernel buffers fill, the handler is blocked sending
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.0
    assert srv.active == 0
    assert srv.aborted == 0  # stopped, not abandoned by the client
    sock.close()


def test_many_connections_at_once(hostile: HostileFactory) -> None:
    srv = hostile("json", body=b"[]", delay=0.1)
    results: list[int] = []

    def get() -> None:
        results.append(httpx.get(srv.url).status_code)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5.0)
    assert results == [200] * 8
    assert srv.connections == 8


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        HostileServer("nonsense")
    with pytest.raises(TypeError, match="takes no bodyy"):
        HostileServer("json", bodyy=b"")
    with pytest.raises(TypeError, match="needs target"):
        HostileServer("redirect")
    with pytest.raises(ValueError, match="then"):
        HostileServer("sse", then="later")
