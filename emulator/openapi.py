"""The OpenAPI description the emulator serves at ``/openapi.json``.

The routes parse their bodies themselves (so that a bad body gets the real service's 400
code 8 / code 2 answers, not FastAPI's 422), which leaves FastAPI nothing to describe. This
module adds what a client needs: each REST operation's request body as the contract model of
``contract.models`` (the same models the emulator validates with), its success and error
bodies, HTTP Basic auth, and the dev API's bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from contract import routes
from contract.models import (
    AcquireClientRequest,
    AcquireResponse,
    ApiRequest,
    ErrorBody,
    LayoutUpdate,
    QueryResponse,
    StartClientRequest,
    StartResponse,
    StopClientRequest,
    StopResponse,
    UpdateClientRequest,
    UpdateResponse,
)
from emulator.channels import JoinRequest, PatchRequest
from emulator.faults import FailoverRequest, FaultSettings

_REF = "#/components/schemas/{model}"

# (path, method) -> (request body model or None, success status, success model, summary)
_REST: dict[tuple[str, str], tuple[type[BaseModel] | None, str, type[BaseModel], str]] = {
    (routes.ACQUIRE, "post"): (
        ApiRequest[AcquireClientRequest],
        "200",
        AcquireResponse,
        "acquire: get a resourceId (valid 5 minutes, for one start)",
    ),
    (routes.START, "post"): (
        ApiRequest[StartClientRequest],
        "200",
        StartResponse,
        "start a composite (mode mix) recording",
    ),
    (routes.QUERY, "get"): (None, "200", QueryResponse, "query a recording's status"),
    (routes.UPDATE, "post"): (
        ApiRequest[UpdateClientRequest],
        "200",
        UpdateResponse,
        "update the subscription lists or the storageConfig of a live recording",
    ),
    (routes.UPDATE_LAYOUT, "post"): (
        ApiRequest[LayoutUpdate],
        "200",
        UpdateResponse,
        "replace the whole layout of a live recording (omitted fields go back to defaults)",
    ),
    (routes.STOP, "post"): (
        ApiRequest[StopClientRequest],
        "200",
        StopResponse,
        "stop a recording; synchronous unless async_stop",
    ),
}
_REST_ERRORS = {
    "201": "code 7: already started (the resourceId was used)",
    "206": "code 65: request not completed (retry); on stop, 435: no recorded data, "
    "50: upload timeout",
    "400": "code 2: invalid parameter (reason names the field); 8: bad Content-Type or JSON; "
    "49, 53, 432, 433, 1001, 400, 401 (see the spec)",
    "401": 'gateway: {"message": "Unauthorized"} or "Invalid authentication credentials"',
    "404": 'code 404: "failed to find worker"; gateway: "no Route matched with those values"',
    "429": 'gateway: {"message": "API rate limit exceeded"}',
    "500": "code 500 / 502 / 62: service errors (retry)",
    "504": "code 62: request timeout (retry)",
}
_PARAMETER_NOTES = {
    "appid": "the App ID",
    "resourceid": "from acquire: opaque, valid 5 minutes, for one start",
    "sid": "from start: 32 hex characters",
    "mode": "mix (composite); individual and web are refused with 400 code 2 here",
    "cname": "channel name: under 64 bytes of a-z A-Z 0-9 space and !#$%&()+-:;<=.>?@[]^_{}|~,",
    "uid": "a decimal integer in 1..4294967295",
}
_DEV_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/dev/channels/{cname}/users", "post"): JoinRequest,
    ("/dev/channels/{cname}/users/{uid}", "patch"): PatchRequest,
    ("/dev/faults", "put"): FaultSettings,
    ("/dev/recordings/{sid}/failover", "post"): FailoverRequest,
}
_OPTIONAL_DEV_BODIES = {("/dev/recordings/{sid}/failover", "post")}  # no body: the defaults


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) return :func:`build_openapi`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description of the routes, completed with the bodies and auth."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    refs, components = _model_schemas()
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    schema["components"]["securitySchemes"] = {"basicAuth": {"type": "http", "scheme": "basic"}}
    paths: dict[str, Any] = schema["paths"]
    for (path, method), (body, status, success, summary) in _REST.items():
        operation = paths[path][method]
        operation["summary"] = summary
        operation["security"] = [{"basicAuth": []}]
        if body is not None:
            operation["requestBody"] = _json_body(refs[body])
        operation["responses"] = {
            status: _json_response("success", refs[success]),
            **{code: _json_response(text, refs[ErrorBody]) for code, text in _REST_ERRORS.items()},
        }
    for (path, method), model in _DEV_BODIES.items():
        required = (path, method) not in _OPTIONAL_DEV_BODIES
        paths[path][method]["requestBody"] = _json_body(refs[model], required=required)
    for path, operations in paths.items():
        for operation in operations.values():
            _fix_parameters_and_errors(path, operation, refs[ErrorBody])
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, never sent
        schemas.pop(unused, None)
    return schema


def _fix_parameters_and_errors(path: str, operation: dict[str, Any], error: dict[str, Any]) -> None:
    """Errors as this service sends them (400 code 2, never FastAPI's 422); parameter notes."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    if path.startswith("/dev/"):
        responses.setdefault(
            "400", _json_response("code 2: invalid parameter; 8: body is not JSON", error)
        )
        responses.setdefault("404", _json_response("no such user, recording or route", error))
        if path.endswith("/failover"):
            responses.setdefault(
                "409", _json_response("the recording is not live or already migrating", error)
            )
    for parameter in operation.get("parameters", []):
        note = _PARAMETER_NOTES.get(parameter["name"])
        if note:
            parameter["description"] = note


def _model_schemas() -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """A ``$ref`` per model, and every model's schema for ``components.schemas``."""
    modes: dict[type[BaseModel], JsonSchemaMode] = {}
    for body, _status, success, _summary in _REST.values():
        if body is not None:
            modes[body] = "validation"
        modes[success] = "serialization"
    modes[ErrorBody] = "serialization"
    for model in _DEV_BODIES.values():
        modes[model] = "validation"
    keyed, top = models_json_schema(list(modes.items()), ref_template=_REF)
    refs = {model: keyed[(model, mode)] for model, mode in modes.items()}
    return refs, top.get("$defs", {})


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
