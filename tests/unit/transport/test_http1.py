"""The lean HTTP/1.1 event client against real sockets: scripted raw servers for the edge cases, a real
uvicorn app for the ordinary path, and EventPoster's choice between it and aiohttp."""

import asyncio
import contextlib

import pytest
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.transport.http1 import MAX_HEADER_BYTES, MAX_RESPONSE_BYTES, Http1Client, HttpError, plain_http_origin
from seismo.transport.poster import EventPoster, SendError, Unsendable


class RawServer:
    """A TCP server that answers each request with the next scripted answer (bytes, or a callable
    taking the writer); it counts connections and keeps every request it read."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/events?x=1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if callable(answer):
                    if await answer(writer) == "close":
                        break
                else:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


OK = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok"


def then_close(answer: bytes):
    """A scripted answer after which the server closes the connection."""

    async def write(writer):
        writer.write(answer)
        await writer.drain()
        return "close"

    return write


def run(coro):
    return uvloop.run(coro)  # the services' loop (uvicorn picks uvloop); its transports differ from asyncio's


def test_keep_alive_reuses_one_connection_and_the_request_is_well_formed():
    async def go():
        async with RawServer([OK, OK, OK]) as server:
            client = Http1Client()
            origin = plain_http_origin(server.url)
            for i in range(3):
                status, headers, body = await client.post(origin, {"ce-id": f"e{i}", "content-type": "application/json"}, b'{"a":1}', 5)
                assert (status, body, headers["content-length"]) == (202, b"ok", "2")
            client.close()
            return server

    server = run(go())
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /events?x=1 HTTP/1.1\r\n")
    assert b"\r\nce-id: e0\r\n" in first and b"\r\ncontent-length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')
    assert f"host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}".encode() in first


def test_chunked_close_delimited_and_interim_answers_are_read_whole():
    async def go():
        chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone"
        async with RawServer([chunked, interim, then_close(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")]) as server:
            client = Http1Client()
            origin = plain_http_origin(server.url)
            answers = [await client.post(origin, {}, b"x", 5) for _ in range(3)]
            client.close()
            return answers, server.connections

    answers, connections = run(go())
    assert [(s, b) for s, _, b in answers] == [(200, b"hello world"), (201, b"done"), (200, b"until the end")]
    assert connections == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_an_error():
    async def go():
        async with RawServer([then_close(OK), OK]) as server:  # says keep-alive (HTTP/1.1's default), then closes, as an idle timeout would
            client = Http1Client()
            origin = plain_http_origin(server.url)
            first = await client.post(origin, {}, b"1", 5)
            await asyncio.sleep(0.1)  # the close arrives while the connection is idle
            second = await client.post(origin, {}, b"2", 5)
            client.close()
            return first[0], second[0], server.connections

    assert run(go()) == (202, 202, 2)


def test_a_connection_closed_before_it_is_noticed_is_retried_once_on_a_new_one():
    """The race an idle timeout makes: the client sends on a connection the server is closing."""

    async def go():
        async with RawServer([OK, OK]) as server:
            client = Http1Client()
            origin = plain_http_origin(server.url)
            await client.post(origin, {}, b"1", 5)
            idle = client._idle[origin.host, origin.port][0]
            idle.closed = False
            idle.transport.close()  # closed under the pool's feet, before connection_lost is seen
            status = (await client.post(origin, {}, b"2", 5))[0]
            client.close()
            return status, server.connections

    assert run(go()) == (202, 2)


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "closed the connection mid-answer"),
    (b"NOT HTTP AT ALL\r\n\r\n", "malformed response"),
    (b"", "closed the connection before answering"),
])
def test_broken_answers_are_http_errors_and_the_connection_is_not_reused(answer, message):
    async def go():
        async with RawServer([then_close(answer), OK]) as server:
            client = Http1Client()
            origin = plain_http_origin(server.url)
            with pytest.raises(HttpError, match=message):
                await client.post(origin, {}, b"x", 5)
            status = (await client.post(origin, {}, b"x", 5))[0]
            client.close()
            return status, server.connections

    assert run(go()) == (202, 2)


def test_a_silent_server_times_out_and_an_oversized_answer_is_refused():
    async def silent(writer):
        await asyncio.sleep(3)

    async def huge(writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_RESPONSE_BYTES + 10))
        for _ in range(MAX_RESPONSE_BYTES // (1 << 20) + 1):
            writer.write(b"x" * (1 << 20))
            await writer.drain()
        return "close"

    async def go():
        async with RawServer([silent, huge]) as server:
            client = Http1Client()
            origin = plain_http_origin(server.url)
            with pytest.raises(HttpError, match="no answer within 0.3 s"):
                await client.post(origin, {}, b"x", 0.3)
            assert not client._idle[origin.host, origin.port]  # a timed-out connection is not kept
            with pytest.raises(HttpError, match="larger than"):
                await client.post(origin, {}, b"x", 30)
            client.close()

    run(go())


def test_endless_headers_are_refused():
    async def endless(writer):
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(MAX_HEADER_BYTES // 1000 + 10):
            writer.write(b"x-%d: %s\r\n" % (i, b"v" * 1000))
            await writer.drain()
        writer.write(b"content-length: 0\r\n\r\n")
        return "close"

    async def go():
        async with RawServer([endless]) as server:
            client = Http1Client()
            with pytest.raises(HttpError, match="headers are larger than"):
                await client.post(plain_http_origin(server.url), {}, b"x", 30)
            client.close()

    run(go())


def test_nothing_listening_is_an_http_error():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(HttpError, match="ConnectionRefused"):
            await Http1Client().post(plain_http_origin(f"http://127.0.0.1:{port}/"), {}, b"x", 5)

    run(go())


@pytest.mark.parametrize("url, expected", [
    ("http://broker:8080/", ("broker", 8080, b"broker:8080", b"/")),
    ("http://broker.ns.svc.cluster.local/default/seismo", ("broker.ns.svc.cluster.local", 80, b"broker.ns.svc.cluster.local",
                                                          b"/default/seismo")),
    ("http://[::1]:9000/x?y=z", ("::1", 9000, b"[::1]:9000", b"/x?y=z")),
    ("http://127.0.0.1:1", ("127.0.0.1", 1, b"127.0.0.1:1", b"/")),
])
def test_plain_http_urls_are_taken(url, expected):
    origin = plain_http_origin(url)
    assert (origin.host, origin.port, origin.host_header, origin.target) == expected


@pytest.mark.parametrize("url", ["https://broker/", "http://user:pw@broker/", "http://broker:99999/", "http://broker/a b",
                                 "ftp://broker/", "http:///nohost", "http://bröker/", "http://broker/#frag"])
def test_other_urls_are_left_to_aiohttp(url):
    assert plain_http_origin(url) is None


def _echo_app():
    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(body[::-1], 200, headers={"x-seen-type": request.headers.get("content-type", "none")})

    return Starlette(routes=[Route("/", echo, methods=["POST"])])


@pytest.fixture
def echo_server():
    from helpers import ThreadServer

    server = ThreadServer(_echo_app())
    server.start()
    yield server.url
    server.stop()


def test_event_poster_posts_through_the_lean_client_to_a_real_server_and_refuses_bad_headers(echo_server):
    async def go():
        async with EventPoster() as poster:
            answer = await poster.post(echo_server + "/", {"content-type": "text/plain"}, b"abc", 5)
            assert (answer.status, answer.body, answer.headers["x-seen-type"]) == (200, b"cba", "text/plain")
            assert poster._http1 is not None and poster._http1._idle  # went through the lean client, connection kept
            with pytest.raises(Unsendable):
                await poster.post(echo_server + "/", {"ce-id": "a\r\nx-injected: 1"}, b"", 5)
            with pytest.raises(Unsendable):
                await poster.post(echo_server + "/", {"ce-source": "caf\u20ac"}, b"", 5)
            with contextlib.suppress(SendError):
                await poster.post("http://127.0.0.1:1/", {}, b"", 1)

    run(go())


def test_event_poster_without_the_lean_client_answers_the_same(echo_server):
    async def go():
        answers = []
        for lean in (True, False):
            async with EventPoster(lean=lean) as poster:
                answer = await poster.post(echo_server + "/", {"content-type": "application/json"}, b"[1,2]", 5)
                answers.append((answer.status, answer.body, answer.headers["x-seen-type"], answer.headers["content-length"]))
        return answers

    lean, aio = run(go())
    assert lean == aio == (200, b"]2,1[", "application/json", "5")


def test_the_client_is_chosen_by_environment_and_a_wrong_value_is_named():
    from seismo.transport.poster import lean_from_environment

    assert lean_from_environment({}) is True
    assert lean_from_environment({"SEISMO_EVENT_HTTP_CLIENT": "aiohttp"}) is False
    assert lean_from_environment({"SEISMO_EVENT_HTTP_CLIENT": " Lean "}) is True
    with pytest.raises(ValueError, match="SEISMO_EVENT_HTTP_CLIENT must be lean or aiohttp, not 'httpx'"):
        lean_from_environment({"SEISMO_EVENT_HTTP_CLIENT": "httpx"})
