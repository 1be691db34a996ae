"""The model server over HTTP: KServe V1, the Open Inference Protocol V2 (with Triton's config and
statistics), Seldon's protocol and its feedback endpoint. Predictions stay open, as KServe's do."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import seismo
from seismo.services.api.model import OPERATIONS, SeldonFeedback
from seismo.services.app import body, build_app
from seismo.services.auth import AuthSettings
from seismo.services.common import JSONResponse, error, header_dict, read_body
from seismo.services.model.core import ModelService
from seismo.services.model.settings import ModelSettings
from seismo.serving.dataplane import Outcome
from seismo.tracing import Tracing


def respond(outcome: Outcome) -> Response:
    headers = {"X-Prediction-Id": outcome.prediction_id}
    if outcome.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(outcome.header_length)
    return Response(outcome.body, outcome.status, headers=headers, media_type=outcome.content_type)


def compressed(request: Request) -> Response | None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    return error(415, f"Content-Encoding {encoding[:20]!r} is not supported: send the body uncompressed")


class ModelEndpoints:
    def __init__(self, core: ModelService):
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.v1_models, methods=["GET"]),
            Route("/v1/models/{model_name}:predict", self.v1_predict, methods=["POST"]),
            Route("/v1/models/{model_name}", self.v1_model, methods=["GET"]),
            Route("/v2", self.v2_server, methods=["GET"]),
            Route("/v2/health/live", self.v2_live, methods=["GET"]),
            Route("/v2/health/ready", self.v2_ready, methods=["GET"]),
            Route("/v2/models/{model_name}", self.v2_model, methods=["GET"]),
            Route("/v2/models/{model_name}/versions/{version}", self.v2_model, methods=["GET"]),
            Route("/v2/models/{model_name}/ready", self.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{model_name}/config", self.v2_model_config, methods=["GET"]),
            Route("/v2/models/{model_name}/stats", self.v2_model_stats, methods=["GET"]),
            Route("/v2/models/{model_name}/infer", self.v2_infer, methods=["POST"]),
            Route("/v2/models/{model_name}/versions/{version}/infer", self.v2_infer, methods=["POST"]),
            Route("/api/v1.0/predictions", self.seldon_predict, methods=["POST"]),
            Route("/api/v1.0/feedback", self.seldon_feedback, methods=["POST"]),
            Route("/", self.root, methods=["GET"]),
        ]

    async def serve(self, request: Request, protocol: str) -> Response:
        if (refused := compressed(request)) is not None:
            return refused
        name = request.path_params["model_name"]
        if not self.core.serves(name, request.path_params.get("version")):
            outcome = self.core.not_served(name, protocol)
            return Response(outcome.body, 404, media_type="application/json")
        return await self.infer(request, protocol)

    async def infer(self, request: Request, protocol: str) -> Response:
        limit = self.core.settings.max_body_bytes
        return respond(await self.core.infer(protocol, header_dict(request), lambda: read_body(request, limit)))

    async def v1_predict(self, request: Request) -> Response:
        return await self.serve(request, "v1")

    async def v2_infer(self, request: Request) -> Response:
        return await self.serve(request, "v2")

    async def seldon_predict(self, request: Request) -> Response:
        # Seldon's path names no model: this server's one model answers.
        if (refused := compressed(request)) is not None:
            return refused
        return await self.infer(request, "seldon")

    def model_or_404(self, request: Request) -> Response | None:
        name, version = request.path_params["model_name"], request.path_params.get("version")
        if self.core.serves(name, version):
            return None
        return error(404, f"model {name!r}" + (f" version {version!r}" if version else "") + " is not served here")

    async def root(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})  # KServe V1's server liveness (`GET /`)

    @body(SeldonFeedback, "feedback body")
    async def seldon_feedback(self, request: Request, parsed: SeldonFeedback) -> Response:
        """Seldon's feedback on the deployment's own endpoint: relayed as Seldon's executor does, as an
        `io.seldon.serving.feedback` event to the sink, which the metrics server and the logger take.
        Predictions are open; feedback scores them, so it needs a client token when auth is on."""
        try:
            pid = self.core.relay_feedback(parsed.parsed, request.state.body)
        except ValueError as exc:
            self.core.count_rejected("invalid")
            return error(400, str(exc))
        except LookupError as exc:
            return error(503, str(exc))
        return JSONResponse({"meta": {"puid": pid, "tags": {}, "routing": {}, "requestPath": {}, "metrics": []}})

    async def v1_models(self, request: Request) -> Response:
        return JSONResponse({"models": [self.core.predictor.info.name]})

    async def v1_model(self, request: Request) -> Response:
        return self.model_or_404(request) or JSONResponse({"name": self.core.predictor.info.name, "ready": True})

    async def v2_server(self, request: Request) -> Response:
        return JSONResponse({"name": "seismo", "version": seismo.__version__, "extensions": []})

    async def v2_live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        return JSONResponse({"ready": self.core.ready})

    async def v2_model(self, request: Request) -> Response:
        return self.model_or_404(request) or JSONResponse(self.core.model_metadata())

    async def v2_model_config(self, request: Request) -> Response:
        return self.model_or_404(request) or JSONResponse(self.core.model_config())

    async def v2_model_stats(self, request: Request) -> Response:
        return self.model_or_404(request) or JSONResponse(self.core.model_statistics())

    async def v2_model_ready(self, request: Request) -> Response:
        return self.model_or_404(request) or JSONResponse({"name": self.core.predictor.info.name, "ready": True})


def create_app(settings: ModelSettings, registry: CollectorRegistry) -> Starlette:
    """The `ModelService` (on `app.state.model`) behind every protocol's routes; /metrics follows
    SEISMO_AUTH_METRICS like every service's."""
    auth = AuthSettings()
    core = ModelService(settings, registry, auth, Tracing("model"))
    app = build_app(core, ModelEndpoints(core).routes(), registry, OPERATIONS, event_paths=(), auth=auth, open_prefixes=("/",),
                    protected_paths=("/api/v1.0/feedback",))
    return app
