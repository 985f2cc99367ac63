"""The OpenAPI description of /api/v1/, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from jobs.models import Decision, JobStatus


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    str(code): _json(_ref("Error"), text)
    for code, text in (
        (400, "Bad input; `field` names what was wrong"),
        (401, "No or invalid credentials"),
        (403, "Not allowed for your role"),
        (404, "No such job in your teams"),
        (409, "Not possible in the job's state; `conflicts` lists files for a merge"),
        (413, "The prompt is over its size limit"),
    )
}
JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
ATTEMPT = {"name": "attempt", "in": "query", "schema": {"type": "integer", "minimum": 1}}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[Any] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **ERRORS}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "AgentHub API", "version": "1"},
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/api/v1/jobs": {
            "post": _op(
                "Submit a job", {"202": _json(_ref("Accepted"), "Queued")}, body=_ref("Submit")
            ),
            "get": _op(
                "The caller's teams' jobs, newest first",
                {"200": _json(_ref("JobPage"), "A page of jobs")},
                params=[
                    {"name": n, "in": "query", "schema": s}
                    for n, s in (
                        ("status", {"type": "string", "enum": JobStatus.values}),
                        ("repo", {"type": "string"}),
                        ("page", {"type": "integer", "minimum": 1}),
                        ("per_page", {"type": "integer", "minimum": 1, "maximum": 200}),
                    )
                ],
            ),
        },
        "/api/v1/jobs/{id}": {
            "get": _op(
                "A job with its attempts and reviews",
                {"200": _json(_ref("Job"), "The job")},
                params=[JOB_ID],
            )
        },
        "/api/v1/jobs/{id}/wait": {
            "get": _op(
                "Long poll until the job leaves queued/running",
                {"200": _json(_ref("Job"), "The job, with timed_out")},
                params=[
                    JOB_ID,
                    {
                        "name": "timeout",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 60},
                    },
                ],
            )
        },
        "/api/v1/jobs/{id}/events": {
            "get": _op(
                "An attempt's events after a sequence number, in order",
                {"200": _json(_ref("Events"), "Events")},
                params=[
                    JOB_ID,
                    ATTEMPT,
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                ],
            )
        },
        "/api/v1/jobs/{id}/diff": {
            "get": _op(
                "The attempt's patch",
                {
                    "200": {
                        "description": "Patch",
                        "content": {"text/x-diff": {"schema": {"type": "string"}}},
                    }
                },
                params=[JOB_ID, ATTEMPT],
            )
        },
        "/api/v1/jobs/{id}/reviews": {
            "post": _op(
                "Approve, reject or request changes",
                {"201": _json({"type": "object"}, "Recorded")},
                params=[JOB_ID],
                body=_ref("Review"),
            )
        },
        "/api/v1/jobs/{id}/merge": {
            "post": _op(
                "Merge the approved result into its branch",
                {
                    "200": _json(
                        {"type": "object", "properties": {"commit": {"type": "string"}}}, "Merged"
                    )
                },
                params=[JOB_ID],
            )
        },
        "/api/v1/jobs/{id}/cancel": {
            "post": _op("Cancel", {"202": _json(_ref("Accepted"), "Cancelling")}, params=[JOB_ID])
        },
        "/api/v1/jobs/{id}/rerun": {
            "post": _op(
                "Run again on the latest base",
                {"202": _json(_ref("Accepted"), "Queued")},
                params=[JOB_ID],
            )
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {
                    "error": {"type": "string"},
                    "detail": {"type": "string"},
                    "field": {"type": "string"},
                    "conflicts": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Submit": {
                "type": "object",
                "required": ["repo", "agent", "prompt"],
                "properties": {
                    "repo": {"type": "string"},
                    "agent": {"type": "string"},
                    "prompt": {"type": "string", "maxLength": 65536},
                    "base_ref": {"type": "string"},
                    "title": {"type": "string"},
                    "attempts": {"type": "integer", "minimum": 1, "maximum": 5},
                    "priority": {"type": "integer", "minimum": -10, "maximum": 10},
                    "callback_url": {"type": "string", "format": "uri"},
                },
            },
            "Accepted": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string"},
                    "url": {"type": "string"},
                },
            },
            "Review": {
                "type": "object",
                "required": ["decision"],
                "properties": {
                    "decision": {"type": "string", "enum": Decision.values},
                    "comment": {"type": "string"},
                    "attempt": {"type": "integer"},
                },
            },
            "Job": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": JobStatus.values},
                    "title": {"type": "string"},
                    "repo": {"type": "string"},
                    "agent": {"type": "string"},
                    "progress": {"type": ["integer", "null"]},
                    "attempts": {"type": "array"},
                    "reviews": {"type": "array"},
                },
            },
            "JobPage": {
                "type": "object",
                "properties": {
                    "jobs": {"type": "array", "items": _ref("Job")},
                    "page": {"type": "integer"},
                    "pages": {"type": "integer"},
                    "count": {"type": "integer"},
                },
            },
            "Events": {
                "type": "object",
                "properties": {
                    "attempt": {"type": "integer"},
                    "status": {"type": "string"},
                    "last_seq": {"type": "integer"},
                    "events": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "seq": {"type": "integer"},
                                "ts": {"type": "string"},
                                "kind": {"type": "string"},
                                "stream": {"type": "string"},
                                "text": {"type": "string"},
                                "data": {"type": "object"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(SCHEMA)
