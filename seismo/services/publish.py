"""Posting an event a service makes on its own (not a reply to a delivery) to its sink, with retries.

The drift service's time windows and the metrics server's data-quality findings go this way: a few
tries with backoff on network errors and transient statuses, then the caller counts what was given up.
"""

from __future__ import annotations

from seismo.protocol.cloudevents import CloudEvent, to_binary
from seismo.retry import Backoff, is_transient, retry_async
from seismo.transport.poster import EventPoster, SendError


class SinkRefused(Exception):
    def __init__(self, status: int):
        super().__init__(f"the sink answered HTTP {status}")
        self.status = status


async def publish_event(poster: EventPoster, sink_url: str, event: CloudEvent, what: str, tries: int = 5) -> None:
    """Post `event` in binary mode; SendError or SinkRefused once `tries` attempts failed (or the sink refused for good)."""
    headers, body = to_binary(event)

    async def post() -> None:
        answer = await poster.post(sink_url, headers, body, 10.0)
        if answer.status >= 300:
            raise SinkRefused(answer.status)

    def transient(exc: Exception) -> str | None:
        if isinstance(exc, SendError):
            return str(exc)
        return f"HTTP {exc.status}" if isinstance(exc, SinkRefused) and is_transient(exc.status) else None

    await retry_async(post, tries, Backoff(0.2, 3.2, jitter=False), what, transient)
