"""OpenTelemetry tracing: one trace per prediction, through every piece of monitoring work it causes.

Off unless configured by OpenTelemetry's own variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns the OTLP exporter on, `OTEL_TRACES_EXPORTER` picks `otlp`
or `console` (`none`: off), `OTEL_SDK_DISABLED=true` wins over both; the SDK reads the rest itself
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, headers, timeouts). When off,
no span is made and the hot paths pay one attribute check.

How a trace travels: the model server continues the client's W3C `traceparent` header (or starts a
trace) in its `predict` span and writes that span's context into the request and response events as
the CloudEvents distributed-tracing extension (`traceparent`, `tracestate`). The broker keeps the
extension as it is (the event's origin) and sends each delivery with its own `deliver` span's context
in the HTTP `traceparent` header, as Knative's broker does; the logger, detectors and metrics server
continue that header, else the event's extension (batched deliveries: each event's extension). Reply
events keep the extensions of the event they answer, so the logger's work on them joins the same trace.
With tracing off, the model server still carries a client's valid `traceparent` into its events, so a
traced deployment downstream can continue it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

# W3C Trace Context, version 00 (the only one defined): version-traceid-parentid-flags, lower-case hex;
# all-zero ids are invalid. Anything else a client sends is ignored, never carried on.
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
# tracestate: printable ASCII only, at most 512 characters (the spec lets a receiver drop a longer one).
_TRACESTATE = re.compile(r"^[\x20-\x7e]{1,512}$")
TRACE_EXTENSIONS = ("traceparent", "tracestate")


def trace_headers(carrier: Mapping[str, str] | None) -> dict[str, str]:
    """The valid `traceparent` (and its `tracestate`) of headers or event extensions; {} if none is valid."""
    if not carrier:
        return {}
    parent = carrier.get("traceparent")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        return {}
    out = {"traceparent": parent}
    state = carrier.get("tracestate")
    if isinstance(state, str) and _TRACESTATE.fullmatch(state):
        out["tracestate"] = state
    return out


def parent_of(http_headers: Mapping[str, str] | None, extensions: Mapping[str, str]) -> dict[str, str]:
    """What a subscriber's span continues: the delivery's HTTP `traceparent` (the broker's `deliver` span,
    or Knative's), else the event's distributed-tracing extension."""
    return trace_headers(http_headers) or trace_headers(extensions)


def binary_trace(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace extension of a binary-mode event's `ce-` headers (valid values only)."""
    return trace_headers({"traceparent": headers.get("ce-traceparent", ""), "tracestate": headers.get("ce-tracestate", "")})


def configured(environ: Mapping[str, str] = os.environ) -> str | None:
    """The exporter the OTEL_* variables ask for (`otlp` or `console`), or None: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return None
    if exporter:
        first = exporter.split(",")[0].strip()
        if first not in ("otlp", "console"):
            raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: Seismo supports 'otlp', 'console' or 'none'")
        return first
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


_providers: dict[str, Any] = {}  # one TracerProvider per service name: each service's spans carry its own service.name
_override: Any = None  # given by use_provider: every service's


def use_provider(provider: Any) -> Any:
    """Make every Tracing built from now on use `provider` (tests: an in-memory exporter); the old one back."""
    global _override
    previous, _override = _override, provider
    return previous


def _make_provider(service: str, exporter: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")) \
            not in ("http/protobuf", ""):
        raise ValueError("OTEL_EXPORTER_OTLP_PROTOCOL: Seismo exports OTLP over http/protobuf (port 4318); grpc is not bundled")
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"seismo-{service}",
                                "service.namespace": "seismo"})
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER and the span limits itself
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, timeout from OTEL_*
    log.info("tracing on: %s exporter, service.name %s", exporter, resource.attributes.get("service.name"))
    return provider


def shutdown() -> None:
    """Flush spans still queued (a service's shutdown): the batch processor would drop them at exit."""
    for provider in {id(p): p for p in (*_providers.values(), _override) if p is not None}.values():
        if hasattr(provider, "force_flush"):
            try:
                provider.force_flush(5000)
            except Exception as exc:  # the collector is down: spans are lost, the shutdown is not held up
                log.warning("tracing: flushing spans failed: %r", exc)


class Tracing:
    """A service's tracer, or nothing at all when tracing is off (`enabled` False).

    `provider`: a TracerProvider to use; default: the one use_provider gave, else this service's own
    (made from OTEL_* once per service name, so services sharing a process keep their own names)."""

    def __init__(self, service: str, provider: Any = None):
        self.service = service
        provider = provider or _override or _providers.get(service)
        if provider is None:
            exporter = configured()
            if exporter is not None:
                provider = _providers[service] = _make_provider(service, exporter)
        self.enabled = provider is not None
        if self.enabled:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            self._tracer = provider.get_tracer(f"seismo.{service}")
            self._propagator = TraceContextTextMapPropagator()

    @contextlib.contextmanager
    def span(self, name: str, parent: Mapping[str, str] | None = None, kind: str = "INTERNAL",
             attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A span continuing `parent` (headers or extensions with `traceparent`), else a new trace;
        yields the span (None when tracing is off). An exception marks the span as an error."""
        if not self.enabled:
            yield None
            return
        from opentelemetry.trace import SpanKind

        context = self._propagator.extract(trace_headers(parent))
        with self._tracer.start_as_current_span(name, context=context, kind=SpanKind[kind],
                                                attributes={k: v for k, v in (attributes or {}).items() if v is not None}) as span:
            yield span

    def start(self, name: str, parent: Mapping[str, str] | None = None, kind: str = "INTERNAL",
              attributes: Mapping[str, Any] | None = None) -> Any:
        """A span to end by hand (`span.end()`): work on several events at once, each in its own trace."""
        if not self.enabled:
            return None
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(name, context=self._propagator.extract(trace_headers(parent)), kind=SpanKind[kind],
                                       attributes={k: v for k, v in (attributes or {}).items() if v is not None})

    def context_of(self, span: Any) -> dict[str, str]:
        """`traceparent`/`tracestate` naming `span` as the parent (for headers or event extensions)."""
        if span is None:
            return {}
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier


def end(span: Any, error: str | None = None, **attributes: Any) -> None:
    """End a span from `Tracing.start`, with an error status when `error` says what failed."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error:
        span.set_status(Status(StatusCode.ERROR, error[:200]))
    span.end()


def fail(span: Any, error: str) -> None:
    """Mark a span from `Tracing.span` as failed (a 4xx/5xx answer, not an exception)."""
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error[:200]))
