"""One pooled HTTP client for posting events: the model server's logger and the broker's dispatcher.

Plain `http://` sinks get the lean keep-alive client of seismo.transport.http1 (a quarter of aiohttp's
CPU per post, measured); https and anything else go through aiohttp, as every sink does with
`SEISMO_EVENT_HTTP_CLIENT=aiohttp`.

aiohttp, not httpx, on these hot paths: measured here, an httpx POST of a 60 kB event cost about 1 ms
more CPU than aiohttp's (docs/performance.md), and the model server sends two events per
prediction on the same event loop that answers predictions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from seismo.transport.http1 import BadRequest, Http1Client, HttpError, Origin, plain_http_origin


class SendError(Exception):
    """No HTTP answer: connection refused or reset, DNS failure, timeout."""


class Unsendable(SendError):
    """The request could not even be built (a header value HTTP cannot carry): retrying cannot help."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


CLIENT_VARIABLE = "SEISMO_EVENT_HTTP_CLIENT"


def lean_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """`SEISMO_EVENT_HTTP_CLIENT`: `lean` (the default) or `aiohttp` for every sink; ValueError otherwise."""
    value = environ.get(CLIENT_VARIABLE, "lean").strip().lower() or "lean"
    if value not in ("lean", "aiohttp"):
        raise ValueError(f"{CLIENT_VARIABLE} must be lean or aiohttp, not {value!r}")
    return value == "lean"


class EventPoster:
    def __init__(self, max_connections: int = 100, lean: bool | None = None, bearer: Callable[[], str | None] | None = None):
        self.max_connections = max_connections
        self.bearer = bearer  # the sender token to send (seismo.services.auth.sender_token), read per post: it rotates
        self.lean = lean_from_environment() if lean is None else lean
        self._session: aiohttp.ClientSession | None = None
        self._http1: Http1Client | None = None
        self._origins: dict[str, Origin | None] = {}  # per URL: the lean client's target, or None for aiohttp

    async def __aenter__(self) -> EventPoster:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
        # No automatic Content-Type: an event without datacontenttype must arrive without one.
        self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("Content-Type",), auto_decompress=False)
        if self.lean:
            self._http1 = Http1Client(self.max_connections)

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
        assert self._session is not None, "EventPoster.start() was not awaited"
        token = self.bearer() if self.bearer is not None else None
        if token:
            headers = {**headers, "authorization": f"Bearer {token}"}
        if url in self._origins:
            origin = self._origins[url]
        else:
            origin = plain_http_origin(url)
            if len(self._origins) < 1024:  # subscribers and sinks are few; a bound all the same
                self._origins[url] = origin
        if origin is not None and self._http1 is not None:
            try:
                status, answer_headers, content = await self._http1.post(origin, headers, body, timeout)
            except BadRequest as exc:
                raise Unsendable(str(exc)) from None
            except HttpError as exc:
                raise SendError(str(exc)) from None
            return Answer(status, answer_headers, content)
        try:
            async with self._session.post(url, headers=dict(headers), data=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                content = await response.read()
                return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, content)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from None
        except (ValueError, TypeError, UnicodeError) as exc:  # aiohttp refuses a header with CR/LF or non-latin-1 text
            raise Unsendable(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._http1 is not None:
            self._http1.close()
            self._http1 = None
        if self._session is not None:
            await self._session.close()
            self._session = None
