"""The explainer over HTTP: `POST /v1/models/{model_name}:explain`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.services.api.explainer import OPERATIONS, ExplainRequest
from seismo.services.app import body, build_app
from seismo.services.auth import AuthSettings
from seismo.services.common import JSONResponse, error
from seismo.services.explainer.core import ExplainerBusy, ExplainerService, ExplainRequestError, ModelServerError, UnknownModel
from seismo.services.explainer.settings import ExplainerSettings
from seismo.tracing import Tracing, fail


class ExplainerEndpoints:
    def __init__(self, core: ExplainerService):
        self.core = core

    def routes(self) -> list[Route]:
        return [Route("/v1/models/{model_name}:explain", self.explain, methods=["POST"])]

    @body(ExplainRequest, "explain body")
    async def explain(self, request: Request, asked: ExplainRequest) -> Response:
        core, name = self.core, request.path_params["model_name"]
        try:
            core.model(name)
        except UnknownModel as exc:
            return error(404, str(exc))
        with core.tracing.span(f"explain {name}", request.headers, "SERVER", {"seismo.model": name}) as span:
            try:
                result = await core.explain(name, asked, core.tracing.context_of(span))
            except ExplainRequestError as exc:
                return error(400, str(exc))
            except ExplainerBusy as exc:
                return error(429, str(exc), headers={"Retry-After": "5"})
            except ModelServerError as exc:
                fail(span, str(exc))
                return error(exc.status, str(exc))
            if span is not None:
                span.set_attribute("seismo.model_calls", result.model_calls)
        return JSONResponse({"model": name, **result.to_json()})


def create_app(settings: ExplainerSettings, registry: CollectorRegistry) -> Starlette:
    """The `ExplainerService` (on `app.state.explainer`) behind its one route."""
    auth = AuthSettings()
    core = ExplainerService(settings, registry, auth, Tracing("explainer"))
    return build_app(core, ExplainerEndpoints(core).routes(), registry, OPERATIONS, event_paths=(), auth=auth)
