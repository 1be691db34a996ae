"""A lean HTTP/1.1 client for posting events to plain-HTTP sinks: keep-alive connections, httptools parsing.

Why not aiohttp alone: measured here (`bench/http_client.py`), an aiohttp POST of a prediction's two
events to the broker cost about 750 us of the sender's CPU against about 210 us written straight to
a pooled connection, and the model server pays that on the event loop that answers predictions. This
client does only what posting an event needs: `http://` URLs, a request with a known length, and a
response with Content-Length, chunked encoding, or read until the server closes. `EventPoster`
keeps aiohttp for everything else (https, proxies).

A connection is reused only after a complete response that allows keep-alive. A request that fails on
a reused connection before any byte of the answer arrived is sent once more on a new connection: the
server may have closed the idle connection while the request was on its way (uvicorn closes after
5 s idle); event posts are at-least-once anyway.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""An answer bigger than this is refused (a sink's answer is a status and a small body, or a reply event)."""
MAX_HEADER_BYTES = 256 * 1024
"""An answer whose header lines add up to more than this is refused (aiohttp allows 8 KiB per line)."""


class HttpError(Exception):
    """No usable answer: connection refused, reset or closed early, timeout, a malformed response."""


class BadRequest(ValueError):
    """The request cannot be written (a header HTTP cannot carry): sending it again cannot help."""


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    host_header: bytes
    target: bytes


def plain_http_origin(url: str) -> Origin | None:
    """Where a plain `http://host[:port]/path` URL points; None for anything this client does not take."""
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password or parts.fragment:
        return None
    if not url.isascii() or any(c in url for c in "\r\n\t "):
        return None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    host_header = netloc if parts.port is None else f"{netloc}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(host, port, host_header.encode("ascii"), target.encode("ascii"))


def _header_bytes(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if not name or not name.isascii() or any(c in name for c in ":\r\n\t ") or any(c in value for c in "\r\n\0"):
            raise BadRequest(f"header {name!r} cannot be sent over HTTP")
        try:
            lines.append(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise BadRequest(f"header {name!r} has characters HTTP/1.1 cannot carry") from None
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._header_bytes = 0
        self._started = False  # a byte of the answer arrived
        self._headers_done = False
        self._complete = False
        self._keep_alive = False

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCP transport is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the server switched protocols"))
        except httptools.HttpParserError as exc:  # a callback's own HttpError (too large) arrives as its context
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpError) else HttpError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and "content-length" not in self._headers and "chunked" not in self._headers.get("transfer-encoding", ""):
                self._finish(keep_alive=False)  # a body delimited by the close
            else:
                self._waiter.set_exception(HttpError("the server closed the connection before answering"
                                                     if not self._started else "the server closed the connection mid-answer"))

    # -- httptools callbacks --

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HttpError(f"the answer's headers are larger than {MAX_HEADER_BYTES} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "surrogateescape")  # as aiohttp's parser decodes them
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            raise HttpError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:  # an interim answer: the real one follows
            self._reset()
            self._started = True
            return
        self._finish(keep_alive=self._parser.should_keep_alive())

    # -- the request --

    def _finish(self, keep_alive: bool) -> None:
        self._complete = True
        self._keep_alive = keep_alive
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.transport is not None
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines((head, body))
        try:
            return await self._waiter
        finally:
            self._waiter = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Pooled keep-alive connections per (host, port); at most `max_connections` requests at once."""

    def __init__(self, max_connections: int = 100):
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = collections.defaultdict(collections.deque)
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, origin: Origin, headers: Mapping[str, str], body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body); BadRequest or HttpError otherwise."""
        head = (b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n" % (origin.target, origin.host_header, len(body))
                + _header_bytes(headers) + b"\r\n")
        async with self._slots:
            try:
                async with asyncio.timeout(timeout):
                    for attempt in (1, 2):
                        connection = await self._connection(origin)
                        try:
                            answer = await connection.request(head, body)
                        except HttpError:
                            connection.close()
                            # A kept-alive connection the server had just closed: once more on a new one.
                            if attempt == 1 and connection.reused and not connection.started:
                                continue
                            raise
                        except BaseException:  # cancelled or timed out mid-request: the connection is in an unknown state
                            connection.close()
                            raise
                        if connection.reusable:
                            connection.reused = True
                            self._idle[origin.host, origin.port].append(connection)
                        else:
                            connection.close()
                        return answer
            except TimeoutError:
                raise HttpError(f"no answer within {timeout:g} s") from None
            except OSError as exc:
                raise HttpError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    async def _connection(self, origin: Origin) -> _Connection:
        idle = self._idle[origin.host, origin.port]
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        transport, connection = await asyncio.get_running_loop().create_connection(_Connection, origin.host, origin.port)
        connection.transport = transport  # uvloop may call connection_made only after create_connection returns
        return connection

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
