"""The OpenAPI document at /api/v1/openapi.json: generated from the code, valid, covering the
contract's table, and describing what the API really answers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from jobs import services
from jobs.events import Draft, append_events
from jobs.serialize import job_detail

# The table of /work/shared/PRODUCT.md "Interfaces": (method, path, success status).
CONTRACT = [
    ("post", "/api/v1/jobs", "202"),
    ("get", "/api/v1/jobs", "200"),
    ("get", "/api/v1/jobs/{id}", "200"),
    ("get", "/api/v1/jobs/{id}/wait", "200"),
    ("get", "/api/v1/jobs/{id}/events", "200"),
    ("get", "/api/v1/jobs/{id}/diff", "200"),
    ("post", "/api/v1/jobs/{id}/reviews", "201"),
    ("post", "/api/v1/jobs/{id}/merge", "200"),
    ("post", "/api/v1/jobs/{id}/cancel", "202"),
    ("post", "/api/v1/jobs/{id}/rerun", "202"),
]


@pytest.fixture
def document(client: Any) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def matches(document: dict[str, Any], name: str, value: Any) -> list[str]:
    """The ways `value` breaks the document's schema `name` (none when it conforms)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return [e.message for e in Draft202012Validator(schema).iter_errors(value)]


def test_the_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    validate(document)


def test_every_call_of_the_contract_is_in_the_document(document):
    for method, path, status in CONTRACT:
        operation = document["paths"][path][method]
        assert status in operation["responses"], (method, path)
        errors = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert errors == {"$ref": "#/components/schemas/Error"}, (method, path)


def test_the_document_names_the_other_media_types(document):
    events = document["paths"]["/api/v1/jobs/{id}/events"]["get"]["responses"]["200"]
    assert set(events["content"]) == {"application/json", "text/event-stream"}
    diff = document["paths"]["/api/v1/jobs/{id}/diff"]["get"]["responses"]["200"]
    assert set(diff["content"]) == {"text/x-diff"}
    assert "409" in document["paths"]["/api/v1/jobs/{id}/merge"]["post"]["responses"]
    assert "413" in document["paths"]["/api/v1/jobs"]["post"]["responses"]


def test_bodies_are_described_with_their_required_fields(document):
    submit = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    ref = submit["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"repo", "agent", "prompt"}
    assert {"base_ref", "title", "attempts", "priority", "callback_url"} <= set(
        schema["properties"]
    )


def test_every_api_url_is_in_the_document(document):
    api = next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and str(p.pattern) == ""
        for p in p.url_patterns
        if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/"
    )
    routes = {
        "/api/v1/" + re.sub(r"<(\w+)>", r"{\1}", str(p.pattern))
        for p in api.url_patterns
        if isinstance(p, URLPattern) and p.name not in ("openapi-json", "api-root")
    }
    assert routes == set(document["paths"])


def test_the_document_needs_no_credentials(client):
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_security_schemes_are_bearer_tokens_and_sessions(document):
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"} in schemes.values()
    assert {"type": "apiKey", "in": "cookie", "name": "sessionid"} in schemes.values()


@pytest.mark.django_db
def test_answers_conform_to_the_document_and_carry_every_serialized_field(
    api, alice, repo, document
):
    client = api(alice)
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    shown = client.get(f"/api/v1/jobs/{job.public_id}").json()
    assert shown == job_detail(job)
    assert matches(document, "JobOut", shown) == []
    assert matches(document, "JobPage", client.get("/api/v1/jobs").json()) == []
    attempt = job.attempts.get()
    append_events(
        attempt.pk,
        [Draft("log", "hi", "stdout"), Draft("progress", data={"percent": 5})],
    )
    events = client.get(f"/api/v1/jobs/{job.public_id}/events").json()
    # `data` is there only where an event has some
    assert events["events"] == [e.as_dict() for e in attempt.events.order_by("seq")]
    assert matches(document, "EventsOut", events) == []
    refused = client.post("/api/v1/jobs", {"repo": "demo"})
    assert matches(document, "Error", refused.json()) == []
