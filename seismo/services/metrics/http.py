"""The metrics server over HTTP: feedback in (`POST /feedback`, `/api/v1.0/feedback`, events at `POST /`),
performance, diagnosis and outcomes out."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.performance.config import ALL, ConfigError
from seismo.performance.tracker import Incoming
from seismo.protocol.cloudevents import CloudEventError
from seismo.protocol.feedback import FeedbackError
from seismo.services import senders
from seismo.services.api.metrics import OPERATIONS, DiagnosisQuery, OutcomesQuery, PerformanceQuery
from seismo.services.app import build_app, query
from seismo.services.common import BodyTooLarge, JSONResponse, error, header_dict, parse_json, read_body
from seismo.services.metrics.core import MetricsService
from seismo.services.metrics.settings import MetricsSettings
from seismo.services.queries import parse_since, parse_window
from seismo.store.base import StoreUnavailable
from seismo.tracing import Tracing, binary_trace, fail, trace_headers

log = logging.getLogger(__name__)
FEEDBACK_ERRORS = (FeedbackError, ConfigError, ValueError)


class MetricsEndpoints:
    def __init__(self, core: MetricsService):
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("/", self.feedback_event, methods=["POST"]),
            Route("/feedback", self.feedback_body, methods=["POST"]),
            Route("/api/v1.0/feedback", self.feedback_body, methods=["POST"]),
            Route("/v1/performance", self.performance, methods=["GET"]),
            Route("/v1/diagnosis", self.diagnosis, methods=["GET"]),
            Route("/v1/outcomes", self.outcomes, methods=["GET"]),
        ]

    async def submit(self, item: Incoming, headers: Mapping[str, str]) -> Response:
        core = self.core
        # The feedback's span continues the sender's traceparent (a feedback event's: the delivery's, else its own).
        parent = (trace_headers(headers) or binary_trace(headers)) if core.tracing.enabled else None
        with core.tracing.span("feedback", parent, "SERVER",
                               {"seismo.prediction_id": item.feedback.prediction_id, "seismo.model": item.feedback.model}) as span:
            try:
                outcome = await core.submit(item)
            except StoreUnavailable as exc:  # 503 so the sender (or the broker) retries
                fail(span, "record store unavailable")
                return error(503, f"record store unavailable: {exc}")
            if span is not None:
                span.set_attribute("seismo.feedback_status", outcome.status)
        if outcome.status == "rejected":
            return error(400, outcome.message or "feedback rejected")
        return JSONResponse(outcome.to_json(), status_code=200 if outcome.status == "scored" else 202)

    async def feedback_body(self, request: Request) -> Response:
        core = self.core
        headers = header_dict(request)  # read several times per feedback: one pass instead of a scan each
        try:
            doc = parse_json(await read_body(request, core.settings.max_body_bytes), "feedback body")
            if isinstance(doc, list) and request.url.path == "/feedback":
                status, answer = await core.submit_many(doc, headers)
                return JSONResponse(answer, status_code=status)
            item = core.incoming(doc, headers)
        except BodyTooLarge as exc:
            core.count_rejected("too_large")
            return error(413, str(exc))
        except FEEDBACK_ERRORS as exc:
            core.count_rejected("invalid")
            return error(400, str(exc))
        return await self.submit(item, headers)

    async def feedback_event(self, request: Request) -> Response:
        core = self.core
        try:
            body = await read_body(request, core.settings.max_body_bytes)
            item = core.incoming_event(request.headers, body, senders.caller(request.scope))
        except BodyTooLarge as exc:
            core.count_rejected("too_large")
            return error(413, str(exc))
        except PermissionError as exc:
            core.count_rejected("forbidden_sender")
            log.warning("refused feedback event: %s", exc)
            return error(403, str(exc))
        except (CloudEventError, *FEEDBACK_ERRORS) as exc:
            core.count_rejected("invalid")
            return error(400, str(exc))
        return await self.submit(item, request.headers)

    def model_of(self, named: str | None) -> str | Response:
        """The model a read is about, or the 404/400 answer naming the problem."""
        try:
            return self.core.resolve_model(named)
        except LookupError as exc:
            return error(404, str(exc.args[0]))
        except ValueError as exc:
            return error(400, str(exc))

    @query(DiagnosisQuery)
    async def diagnosis(self, request: Request, q: DiagnosisQuery) -> Response:
        model = self.model_of(q.model)
        if isinstance(model, Response):
            return model
        return JSONResponse(await self.core.diagnose(model, parse_since(q.since), q.cohort))

    @query(OutcomesQuery)
    async def outcomes(self, request: Request, q: OutcomesQuery) -> Response:
        model = self.model_of(q.model)
        if isinstance(model, Response):
            return model
        return JSONResponse(await self.core.outcomes(model, q.id_list))

    @query(PerformanceQuery)
    async def performance(self, request: Request, q: PerformanceQuery) -> Response:
        model = self.model_of(q.model)
        if isinstance(model, Response):
            return model
        window = parse_window(q.window, self.core.default_window)
        report = await self.core.report(model, q.cohort or ALL, None if q.group == "all" else q.group, window)
        return JSONResponse(report.to_json())


def create_app(settings: MetricsSettings, registry: CollectorRegistry) -> Starlette:
    """The `MetricsService` (on `app.state.metrics`) behind its routes."""
    core = MetricsService(settings, registry, Tracing("metrics"))
    return build_app(core, MetricsEndpoints(core).routes(), registry, OPERATIONS)
