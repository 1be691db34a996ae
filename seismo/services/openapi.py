"""`GET /openapi.json` for every service: an OpenAPI 3.1 document built from typed pydantic models.

Each service lists its public operations (`seismo.services.api.<service>.OPERATIONS`): the path, the
query parameters as a pydantic model, the request body model and a model per response status. The
document is generated from those models at start-up; the routes stay plain Starlette, so the
prediction and event paths pay nothing for it. What keeps the two honest is tests: every route of an
app is documented and every documented operation is a route, and the answers of a real stack
validate against the document's schemas (tests/hostile/test_api_contract.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

import seismo

_PATH_PARAM = re.compile(r"{(\w+)}")
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Body:
    """A request or response body: a pydantic model, or `None` for a body with no fixed JSON shape."""

    model: type[BaseModel] | None
    description: str = ""
    content_types: tuple[str, ...] = ("application/json",)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    responses: dict[int, Body]
    description: str = ""
    query: type[BaseModel] | None = None
    """Query parameters: one field each (a field's docstring is its description)."""
    headers: type[BaseModel] | None = None
    """Request headers the operation reads, as fields (names with '-' use an alias)."""
    body: Body | None = None
    protected: bool = True
    """Needs a bearer token when auth is on (SEISMO_AUTH_TOKENS)."""
    tags: tuple[str, ...] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    """Descriptions of the `{name}` segments of the path."""


def _parameters(model: type[BaseModel] | None, where: str, schemas: dict[Any, dict]) -> list[dict]:
    if model is None:
        return []
    properties = schemas[(model, "validation")]
    out = []
    for name, info in model.model_fields.items():
        wire_name = info.alias or name
        schema = properties.get("properties", {}).get(wire_name, {})
        schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
        out.append({"name": wire_name, "in": where, "required": info.is_required(),
                    "description": info.description or "", "schema": schema})
    return out


def _content(body: Body, refs: dict[Any, Any], mode: JsonSchemaMode) -> dict:
    schema = refs[(body.model, mode)] if body.model is not None else {}
    return {content_type: {"schema": schema} for content_type in body.content_types}


def _models_of(operations: list[Operation]) -> tuple[list[tuple[type[BaseModel], JsonSchemaMode]], list[type[BaseModel]]]:
    bodies: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    params: list[type[BaseModel]] = []
    for op in operations:
        if op.body is not None and op.body.model is not None:
            bodies.append((op.body.model, "validation"))
        bodies.extend((r.model, "serialization") for r in op.responses.values() if r.model is not None)
        params.extend(m for m in (op.query, op.headers) if m is not None)
    return list(dict.fromkeys(bodies)), list(dict.fromkeys(params))


class RequestSchemas(GenerateJsonSchema):
    """Request bodies, queries and headers leave optional fields out; none of the parsers takes a JSON
    null in their place (`{"binData": null}` is a 400), so the documents do not offer one. Answers may
    carry nulls: their (serialization) schemas keep them."""

    def nullable_schema(self, schema: Any) -> Any:
        if self.mode == "validation":
            return self.generate_inner(schema["schema"])
        return super().nullable_schema(schema)

    def default_schema(self, schema: Any) -> Any:
        json_schema = super().default_schema(schema)
        if self.mode == "validation" and "default" in json_schema and json_schema["default"] is None:
            del json_schema["default"]  # absent, not null
        return json_schema


def document(service: str, operations: list[Operation], description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of one service's operations."""
    bodies, params = _models_of(operations)
    refs: dict[Any, Any] = {}
    defs: dict[str, Any] = {}
    if bodies:
        refs, defs = models_json_schema(bodies, ref_template=_REF, schema_generator=RequestSchemas)
    inline = {(m, "validation"): m.model_json_schema(ref_template=_REF, schema_generator=RequestSchemas) for m in params}
    paths: dict[str, dict] = {}
    for op in operations:
        entry: dict[str, Any] = {"operationId": f"{op.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', op.path).strip('_') or 'root'}",
                                 "summary": op.summary, "tags": list(op.tags or (service,))}
        if op.description:
            entry["description"] = op.description
        parameters = [{"name": name, "in": "path", "required": True, "description": op.path_params.get(name, ""),
                       "schema": {"type": "string"}} for name in _PATH_PARAM.findall(op.path)]
        parameters += _parameters(op.query, "query", inline) + _parameters(op.headers, "header", inline)
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {"required": True, "description": op.body.description,
                                    "content": _content(op.body, refs, "validation")}
        entry["responses"] = {str(status): {"description": r.description or "answer",
                                            **({"content": _content(r, refs, "serialization")} if r.content_types else {})}
                              for status, r in sorted(op.responses.items())}
        if op.protected:
            entry["security"] = [{"bearer": []}, {}]  # a token when auth is on; none when it is off (the default)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Seismo {service}", "version": seismo.__version__,
                 "description": description or f"The HTTP API of Seismo's {service} service."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Only when auth is on (SEISMO_AUTH_TOKENS or SEISMO_AUTH_TOKENS_FILE)."}},
        },
    }
