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

from seismo.performance.config import ALL
from seismo.performance.tracker import Incoming
from seismo.services import senders
from seismo.services.api.metrics import OPERATIONS, DiagnosisQuery, Feedback, FeedbackOrArray, OutcomesQuery, PerformanceQuery
from seismo.services.app import body, build_app, query
from seismo.services.common import BodyTooLarge, JSONResponse, error, header_dict, read_body
from seismo.services.metrics.core import MetricsService
from seismo.services.metrics.settings import MetricsSettings
from seismo.services.queries import parse_since, parse_window
from seismo.store.base import StoreUnavailable
from seismo.tracing import Tracing, binary_trace, fail, trace_headers

log = logging.getLogger(__name__)


class MetricsEndpoints:
    def __init__(self, core: MetricsService):
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("/", self.feedback_event, methods=["POST"]),
            Route("/feedback", self.feedback, methods=["POST"]),
            Route("/api/v1.0/feedback", self.seldon_feedback, methods=["POST"]),
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

    @body(FeedbackOrArray, "feedback body", lambda core: {"max_items": core.settings.max_feedback_batch})
    async def feedback(self, request: Request, parsed: FeedbackOrArray) -> Response:
        headers = header_dict(request)  # read several times per feedback: one pass instead of a scan each
        if isinstance(parsed.root, list):
            try:
                status, answer = await self.core.submit_many(parsed.root, headers)
            except ValueError as exc:
                self.core.count_rejected("invalid")
                return error(400, str(exc))
            return JSONResponse(answer, status_code=status)
        return await self.one_feedback(parsed.root, headers)

    @body(Feedback, "feedback body")
    async def seldon_feedback(self, request: Request, parsed: Feedback) -> Response:
        return await self.one_feedback(parsed, header_dict(request))

    async def one_feedback(self, parsed: Feedback, headers: Mapping[str, str]) -> Response:
        try:
            item = self.core.incoming(parsed.parsed, headers)
        except ValueError as exc:  # a bad cohort header
            self.core.count_rejected("invalid")
            return error(400, str(exc))
        return await self.submit(item, headers)

    async def feedback_event(self, request: Request) -> Response:
        core = self.core
        try:
            raw = await read_body(request, core.settings.max_body_bytes)
            item = core.incoming_event(request.headers, raw, senders.caller(request.scope))
        except BodyTooLarge as exc:
            core.count_rejected("too_large")
            return error(413, str(exc))
        except PermissionError as exc:
            core.count_rejected("forbidden_sender")
            log.warning("refused feedback event: %s", exc)
            return error(403, str(exc))
        except ValueError as exc:  # CloudEventError, FeedbackError, ConfigError among them
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
