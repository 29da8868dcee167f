"""The emulator's OpenAPI description, and generated requests thrown at it over HTTP: every
answer is a well-formed JSON body, errors are {code, reason} or {message}, none is a 500, none
hangs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from emulator import EmulatorConfig, EmulatorServer, create_app, serve_in_thread
from tests.support.emulator import AUTH, FAST, Api

REST = "/v1/apps/{appid}/cloud_recording"
MAX_EXAMPLES = 12  # per operation and generation mode, on top of the schema-coverage cases
SCHEMA = schemathesis.openapi.from_dict(create_app(EmulatorConfig()).openapi())
SCHEMA.config.generation.update(max_examples=MAX_EXAMPLES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One emulator for every generated request (fast settings, no QPS limit)."""
    config = replace(FAST, storage_dir=tmp_path_factory.mktemp("openapi"))
    emulator = serve_in_thread(config)
    yield emulator
    emulator.stop()


def test_openapi_describes_the_rest_api(api: Api) -> None:
    r = api.http.get(f"{api.base}/openapi.json", timeout=10)
    assert r.status_code == 200
    schema = r.json()
    paths = schema["paths"]
    task = REST + "/resourceid/{resourceid}/sid/{sid}/mode/{mode}"
    expected = {
        (REST + "/acquire", "post"): "ApiRequest_AcquireClientRequest_",
        (REST + "/resourceid/{resourceid}/mode/{mode}/start", "post"): (
            "ApiRequest_StartClientRequest_"
        ),
        (task + "/update", "post"): "ApiRequest_UpdateClientRequest_",
        (task + "/updateLayout", "post"): "ApiRequest_LayoutUpdate_",
        (task + "/stop", "post"): "ApiRequest_StopClientRequest_",
    }
    for (path, method), model in expected.items():
        operation = paths[path][method]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert operation["security"] == [{"basicAuth": []}]
        assert {"200", "400", "401", "404", "429"} <= set(operation["responses"])
    query = paths[task + "/query"]["get"]
    assert "requestBody" not in query
    assert query["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QueryResponse"
    }
    components = schema["components"]["schemas"]
    recording = components["RecordingConfig"]["properties"]
    # every field may be null (not given); optional ones may be empty too (issue 8 item 4)
    assert {"type": "null"} in recording["maxIdleTime"]["anyOf"]
    assert recording["maxIdleTime"]["anyOf"][0]["minimum"] == 5
    assert recording["maxIdleTime"]["anyOf"][0]["maximum"] == 2592000
    assert components["RecordingConfig"]["additionalProperties"] is False
    transcoding = components["TranscodingConfig"]["properties"]
    assert transcoding["backgroundColor"]["anyOf"][0]["pattern"] == "^#[0-9A-Fa-f]{6}$"
    assert {"type": "string", "maxLength": 0} in transcoding["backgroundColor"]["anyOf"]
    assert {"type": "string", "maxLength": 0} in (
        components["StartClientRequest"]["properties"]["token"]["anyOf"]
    )
    secret_key = components["StorageConfig"]["properties"]["secretKey"]
    assert secret_key["writeOnly"] is True and secret_key["minLength"] == 1  # required
    assert schema["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert "HTTPValidationError" not in components  # no 422 is ever sent
    for operations in paths.values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
    assert paths["/dev/faults"]["put"]["requestBody"]["content"]["application/json"] == {
        "schema": {"$ref": "#/components/schemas/FaultSettings"}
    }


def check_well_formed(status: int, headers: dict[str, str], text: str) -> None:
    """``headers`` with lower-case names."""
    assert status < 500, (status, text)
    assert headers.get("x-request-id")
    assert headers.get("content-type", "").startswith("application/json"), text
    body: Any = json.loads(text)
    if status == 200:
        assert isinstance(body, dict | list)
        return
    assert isinstance(body, dict), body
    service = isinstance(body.get("code"), int) and isinstance(body.get("reason"), str)
    gateway = isinstance(body.get("message"), str) and "code" not in body
    assert service or gateway, body
    assert "Traceback" not in text and "pydantic" not in text


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=MAX_EXAMPLES)
def test_generated_requests_get_well_formed_answers(
    case: schemathesis.Case, server: EmulatorServer
) -> None:
    # The right credentials, so that requests reach the body validation.
    try:
        response = case.call(base_url=server.base_url, auth=AUTH, timeout=10)
    finally:
        if case.operation.path == "/dev/faults":  # generated faults must not slow the rest
            requests.put(f"{server.base_url}/dev/faults", json={}, timeout=10).raise_for_status()
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    check_well_formed(response.status_code, headers, response.text)


def test_generated_requests_without_credentials(server: EmulatorServer, tmp_path: Path) -> None:
    body = {"cname": "room", "uid": "1", "clientRequest": {}}
    r = requests.post(f"{server.base_url}/v1/apps/a/cloud_recording/acquire", json=body, timeout=10)
    check_well_formed(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)
    assert r.json() == {"message": "Unauthorized"}
